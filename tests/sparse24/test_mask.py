"""sparse24.mask: 2:4 masks, checks and in-place pruning against a brute-force reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import sparse24.mask
from sparse24 import first_violation, is_two_four, prune_, two_four_mask

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32)
FLOAT_DTYPES = DTYPES[:4]


def reference_mask(scores: Tensor, dim: int) -> Tensor:
    """Brute force: in every 4 consecutive along ``dim`` keep the 2 best by (-score, index)."""
    moved = scores.movedim(dim, -1)
    values = moved.reshape(-1, 4).tolist()
    keep = []
    for group in values:
        best = sorted(range(4), key=lambda i: (-group[i], i))[:2]
        keep.append([i in best for i in range(4)])
    return torch.tensor(keep, dtype=torch.bool).reshape(moved.shape).movedim(-1, dim)


@st.composite
def tensors(draw, dtypes=DTYPES):
    """A tensor of 1-4 dims whose ``dim`` (returned, sometimes negative) has a size divisible by 4."""
    ndim = draw(st.integers(1, 4))
    dim = draw(st.integers(0, ndim - 1))
    shape = [draw(st.integers(1, 6)) for _ in range(ndim)]
    shape[dim] = 4 * draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(dtypes))
    values = draw(st.sampled_from(["small ints", "zeros and ones", "normal", "all equal"]))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    transposed = draw(st.booleans())
    # build non-contiguous inputs too: generate in reversed dim order and permute back
    gen_shape = shape[::-1] if transposed else shape
    if values == "small ints":
        tensor = torch.randint(-3, 4, gen_shape, generator=generator).to(dtype)
    elif values == "zeros and ones":
        tensor = torch.randint(0, 2, gen_shape, generator=generator).to(dtype)
    elif values == "all equal":
        tensor = torch.full(gen_shape, 2).to(dtype)
    elif dtype.is_floating_point:
        tensor = torch.randn(gen_shape, generator=generator, dtype=torch.float64).to(dtype)
    else:
        tensor = torch.randint(-(2**31), 2**31 - 1, gen_shape, generator=generator, dtype=torch.int64).to(dtype)
    if transposed:
        tensor = tensor.permute(*reversed(range(ndim)))
    assert list(tensor.shape) == shape
    if draw(st.booleans()):
        dim -= ndim
    return tensor, dim


@PROPERTY
@given(tensors())
def test_two_four_mask_matches_reference(case):
    scores, dim = case
    mask = two_four_mask(scores, dim)
    assert mask.dtype == torch.bool
    assert mask.shape == scores.shape
    assert bool((sparse24.mask.group_view(mask, dim).sum(-1) == 2).all())
    assert torch.equal(mask, reference_mask(scores, dim))


@PROPERTY
@given(tensors())
def test_prune_zeroes_exactly_the_non_kept_elements(case):
    original, dim = case
    weight = original.clone()
    mask = prune_(weight, dim)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert torch.equal(mask, two_four_mask(original.abs(), dim))
    assert torch.equal(mask, reference_mask(original.abs(), dim))
    assert torch.equal(weight[mask], original[mask])
    assert bool((weight[~mask] == 0).all())
    if weight.is_floating_point():
        assert not bool(torch.signbit(weight[~mask]).any()), "pruned floats must be +0.0"
    assert is_two_four(weight, dim)


@PROPERTY
@given(tensors(FLOAT_DTYPES), st.integers(0, 2**31 - 1))
def test_prune_ranks_by_given_scores(case, seed):
    scores, dim = case
    weight = torch.randn(scores.shape, generator=torch.Generator().manual_seed(seed)).to(scores.dtype)
    original = weight.clone()
    mask = prune_(weight, dim, scores=scores)
    assert torch.equal(mask, reference_mask(scores, dim))
    assert torch.equal(weight, torch.where(mask, original, torch.zeros_like(original)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_pruned_negative_values_become_positive_zero(dtype):
    weight = torch.tensor([[-1.0, -4.0, -2.0, -3.0], [-0.0, 5.0, -0.5, -6.0]], dtype=dtype)
    mask = prune_(weight, 1)
    expected = torch.tensor([[False, True, False, True], [False, True, False, True]])
    assert torch.equal(mask, expected)
    assert torch.equal(weight, torch.tensor([[0.0, -4.0, 0.0, -3.0], [0.0, 5.0, 0.0, -6.0]], dtype=dtype))
    assert not bool(torch.signbit(weight[~mask]).any())
    assert bool(torch.signbit(weight[mask]).any()), "kept negative values keep their sign"


def test_prune_writes_mask_to_out():
    weight = torch.randn(8, 16)
    out = torch.empty(8, 16, dtype=torch.bool)
    expected = two_four_mask(weight.abs(), 1)
    assert prune_(weight, 1, out=out) is out
    assert torch.equal(out, expected)


def test_prune_rejects_scores_of_another_shape():
    with pytest.raises(ValueError, match="shape"):
        prune_(torch.randn(4, 8), 1, scores=torch.randn(8, 4))


def test_ties_go_to_the_lower_index():
    scores = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 3.0, 3.0, 3.0])
    assert two_four_mask(scores).tolist() == [True, True, False, False, False, True, True, False]


def test_is_two_four_after_pruning_but_not_for_dense():
    dense = torch.randn(16, 32)
    assert not is_two_four(dense, 1)
    assert not is_two_four(dense, 0)
    pruned = dense.clone()
    prune_(pruned, 1)
    assert is_two_four(pruned, 1)
    assert is_two_four(pruned, -1)
    assert not is_two_four(pruned, 0), "2:4 along dim 1 is (almost surely) not 2:4 along dim 0"


@pytest.mark.parametrize("count", [3, 4])
def test_first_violation_reports_original_coordinates(count):
    # conv-like [K, C, R, S], 2:4 along C (dim 1)
    weight = torch.randn(3, 8, 2, 2)
    prune_(weight, 1)
    assert first_violation(weight, 1) is None
    weight[1, 4:8, 1, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0][:count] + [0.0] * (4 - count))
    assert first_violation(weight, 1) == ((1, 4, 1, 0), count)
    assert first_violation(weight, -3) == ((1, 4, 1, 0), count)
    assert not is_two_four(weight, 1)


def test_first_violation_none_for_two_four_tensor():
    weight = torch.randn(5, 12, 3)
    prune_(weight, 1)
    assert first_violation(weight, 1) is None
    assert first_violation(torch.zeros(4, 4), 0) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda t: two_four_mask(t, 1),
        lambda t: is_two_four(t, 1),
        lambda t: first_violation(t, 1),
        lambda t: prune_(t, 1),
    ],
    ids=["two_four_mask", "is_two_four", "first_violation", "prune_"],
)
def test_size_not_divisible_by_four_raises(call):
    with pytest.raises(ValueError, match="not divisible by 4"):
        call(torch.randn(4, 6))


def test_scalar_raises():
    with pytest.raises(ValueError, match="scalar"):
        two_four_mask(torch.tensor(1.0))
    with pytest.raises(ValueError, match="scalar"):
        prune_(torch.tensor(1.0))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_scores_raise(dtype):
    scores = torch.randn(4, 8).to(dtype)
    scores[2, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        two_four_mask(scores, 1)


def test_infinite_scores_are_ranked():
    scores = torch.tensor([float("inf"), 0.0, float("-inf"), 1.0])
    assert two_four_mask(scores).tolist() == [True, False, False, True]


@pytest.mark.parametrize("chunk", [8, 40, 100])
@pytest.mark.parametrize(
    "shape, dim, view",
    [
        ((37, 16), 1, "contiguous Linear weight"),
        ((24, 8, 3, 3), 1, "conv weight along C (non-contiguous view)"),
        ((12, 40), 0, "along dim 0"),
    ],
)
def test_chunked_matches_unchunked(monkeypatch, chunk, shape, dim, view):
    weight = torch.randint(-3, 4, shape).float() + 0.25 * torch.randn(shape).round()
    scores = torch.randn(shape)
    expected_mask = two_four_mask(weight.abs(), dim)
    expected_scored = two_four_mask(scores, dim)
    expected_weight = weight.clone()
    prune_(expected_weight, dim)

    monkeypatch.setattr(sparse24.mask, "CHUNK_ELEMENTS", chunk)
    grouped = sparse24.mask.group_view(weight, dim)
    assert len(list(sparse24.mask._chunks(grouped))) > 3, "the tensor must span many chunks"
    assert torch.equal(two_four_mask(weight.abs(), dim), expected_mask)
    assert torch.equal(two_four_mask(scores, dim), expected_scored)
    assert torch.equal(expected_mask, reference_mask(weight.abs(), dim))
    pruned = weight.clone()
    assert torch.equal(prune_(pruned, dim), expected_mask)
    assert same_values_and_signs(pruned, expected_weight)
    scored = weight.clone()
    assert torch.equal(prune_(scored, dim, scores=scores), expected_scored)


def same_values_and_signs(a: Tensor, b: Tensor) -> bool:
    return torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


# -- masks at rest: 1 bit per weight --------------------------------------------------------


def test_pack_bits_layout_by_hand() -> None:
    # rows kept, the rest flattened, 8 per byte, element 8*b + i in bit i; the last byte zero-padded
    row = [True, False, False, True, False, True, True, False, True]
    packed = sparse24.mask.pack_bits(torch.tensor([row, [False] * 9]))
    assert packed.dtype == torch.uint8 and packed.tolist() == [[1 + 8 + 32 + 64, 1], [0, 0]]
    conv = torch.zeros(2, 4, 1, 2, dtype=torch.bool)
    conv[1, 3, 0, 1] = True  # flat position 7 of row 1
    assert sparse24.mask.pack_bits(conv).tolist() == [[0], [128]]


@pytest.mark.parametrize("shape", [(16, 64), (8, 12), (32, 16, 3, 3), (16, 8, 1, 1), (4, 20, 5), (0, 8)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.float16, torch.bfloat16])
def test_pack_then_unpack_round_trips(shape, dtype) -> None:
    mask = torch.rand(shape) > 0.5
    packed = sparse24.mask.pack_bits(mask)
    assert tuple(packed.shape) == sparse24.mask.packed_shape(shape)
    if shape[0]:
        assert packed.numel() <= -(-mask.numel() // 8) + shape[0], "at most one padding byte per row"
    unpacked = sparse24.mask.unpack_bits(packed, shape, dtype)
    assert unpacked.dtype == dtype and torch.equal(unpacked, mask.to(dtype))


def test_unpack_bits_rejects_a_packed_mask_of_another_shape() -> None:
    packed = sparse24.mask.pack_bits(torch.ones(4, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"uint8 \[4, 3\]"):
        sparse24.mask.unpack_bits(packed, (4, 24))
    with pytest.raises(ValueError, match="bool mask"):
        sparse24.mask.pack_bits(torch.ones(4, 16))


def test_pack_bits_of_a_non_contiguous_mask_leaves_it_unchanged() -> None:
    mask = (torch.rand(64, 32) > 0.5).t()  # a transposed view
    one_byte_rows = torch.rand(5, 8) > 0.5  # one byte per row
    offset = (torch.rand(6 * 16 + 3) > 0.5)[3:].view(6, 16)  # a view 3 bytes into its storage
    for given in (mask, one_byte_rows, offset):
        before = given.clone()
        packed = sparse24.mask.pack_bits(given)
        assert packed.is_contiguous() and torch.equal(given, before), "pack_bits wrote to the mask"
        assert torch.equal(sparse24.mask.unpack_bits(packed, given.shape), given)


@pytest.mark.parametrize("shape", [(8, 16), (5, 3, 3, 3), (7, 13), (1, 4)])
@pytest.mark.parametrize("chunk", [1, 40, 1 << 18])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_mask_rows_equals_the_whole_mask_multiply(shape, chunk, dtype) -> None:
    """Rows at a time (blocks of ~chunk elements, padding bits in each row's last byte) = one multiply by the expanded mask, bit for bit."""
    torch.manual_seed(0)
    tensor = torch.randn(shape).to(dtype)
    mask = torch.rand(shape) < 0.5
    packed = sparse24.mask.pack_bits(mask)
    expected = tensor * sparse24.mask.unpack_bits(packed, shape, dtype)
    got = sparse24.mask.mask_rows_(tensor.clone(), packed, chunk=chunk)
    assert torch.equal(got.view(torch.int16 if dtype != torch.float32 else torch.int32), expected.view(torch.int16 if dtype != torch.float32 else torch.int32))
