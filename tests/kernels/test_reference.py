"""The pure-PyTorch references: the compressed layout, round trips, and torch's own CUTLASS conversion."""

from __future__ import annotations

import pytest
import torch
from torch.sparse._semi_structured_conversions import (
    _calculate_meta_reordering_scatter_offsets,
    sparse_semi_structured_from_dense_cutlass,
)

from sparse24.kernels import reference
from sparse24 import SparsityError
from sparse24.mask import prune_


def two_four(n: int, k: int, dtype: torch.dtype = torch.float16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=generator)
    prune_(weight, 1)
    return weight.to(dtype)


def test_layout_of_one_word_by_hand() -> None:
    row = torch.tensor([[0, 1.5, 0, 2.5, 3.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4.0, 5.0]], dtype=torch.float16)
    values, meta = reference.compress(row)
    # groups: (1,3) -> 0xD; (0) + lowest unused 1 -> (0,1) = 0x4; none -> (0,1) = 0x4; (2,3) -> 0xE
    assert values.tolist() == [[1.5, 2.5, 3.0, 0.0, 0.0, 0.0, 4.0, 5.0]]
    assert meta.dtype == torch.int16 and (int(meta[0, 0]) & 0xFFFF) == 0xE44D


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_round_trip(dtype: torch.dtype) -> None:
    weight = two_four(48, 96, dtype)
    weight[0, :8] = 0  # groups with fewer than 2 nonzeros
    weight[1, 4] = 0
    values, meta = reference.compress(weight)
    assert values.shape == (48, 48) and meta.shape == (48, 6)
    assert torch.equal(reference.decompress(values, meta), weight)
    nibbles = torch.stack([(meta.to(torch.int64) & 0xFFFF) >> (4 * q) & 0xF for q in range(4)], -1)
    assert set(nibbles.unique().tolist()) <= {0x4, 0x8, 0x9, 0xC, 0xD, 0xE}  # first < second everywhere


def test_matches_torch_cutlass_values_and_meta_before_reordering() -> None:
    weight = two_four(64, 128)
    assert bool(((weight.reshape(64, 32, 4) != 0).sum(-1) == 2).all())  # every group exactly 2: the layouts coincide
    values, meta = reference.compress(weight)
    torch_values, torch_meta = sparse_semi_structured_from_dense_cutlass(weight)
    offsets = _calculate_meta_reordering_scatter_offsets(64, 128 // 16, torch.int16, weight.device)
    plain = torch_meta.reshape(-1)[offsets].reshape(64, 128 // 16)
    assert torch.equal(values, torch_values)
    assert torch.equal(meta, plain)


def test_not_2_4_and_bad_shapes_are_refused() -> None:
    weight = two_four(16, 32)
    weight[3, 0:4] = 1.0
    with pytest.raises(SparsityError, match="1 groups of 4 hold more than 2 nonzeros"):
        reference.compress(weight)
    with pytest.raises(ValueError, match="multiple of 16"):
        reference.compress(torch.zeros(4, 24, dtype=torch.float16))
    with pytest.raises(ValueError, match="2-D"):
        reference.compress(torch.zeros(4, 4, 16, dtype=torch.float16))
    values, meta = reference.compress(two_four(16, 32))
    with pytest.raises(ValueError, match="meta has shape"):
        reference.decompress(values, meta[:, :1])


@pytest.mark.parametrize("m", [1, 3, 17, 100])
def test_sparse_mm_matches_dense(m: int) -> None:
    weight = two_four(64, 128, torch.float32)
    bias = torch.randn(64)
    x = torch.randn(m, 128)
    values, meta = reference.compress(weight)
    expected = x.double() @ weight.double().t() + bias.double()
    assert torch.allclose(reference.sparse_mm(x, values, meta, bias).double(), expected, atol=1e-5)
    assert torch.allclose(reference.sparse_mm(x, values, meta).double(), expected - bias.double(), atol=1e-5)
