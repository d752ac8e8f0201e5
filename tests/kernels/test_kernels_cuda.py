"""Each kernel against fp64 references on fresh random inputs (needs an sm_80+ GPU and cuda-python)."""

from __future__ import annotations

import pytest
import torch

from kernels import kernels_unavailable, ops, reference
from sparse24 import SparsityError
from sparse24.mask import prune_

REASON = kernels_unavailable()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(REASON is not None, reason=f"custom kernels cannot run here: {REASON}")]

DTYPES = [torch.float16, torch.bfloat16]


def two_four(n: int, k: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    weight = torch.randn(n, k, device="cuda", generator=generator)
    prune_(weight, 1)
    return weight.to(dtype)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_kernel_matches_the_reference_and_round_trips(dtype: torch.dtype) -> None:
    weight = two_four(256, 512, dtype)
    weight[0, :16] = 0
    values, meta = ops.compress(weight)
    ref_values, ref_meta = reference.compress(weight.cpu())
    assert torch.equal(values.cpu(), ref_values) and torch.equal(meta.cpu(), ref_meta)
    assert torch.equal(ops.decompress(values, meta), weight)
    weight[5, 8:12] = 1
    with pytest.raises(SparsityError, match="not 2:4 along K: 1 groups"):
        ops.compress(weight)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["small_m", "mma_sp"])
@pytest.mark.parametrize("m", [1, 3, 17, 64, 100, 257])
@pytest.mark.parametrize("with_bias", [True, False])
def test_sparse_mm_against_fp64(dtype: torch.dtype, kernel: str, m: int, with_bias: bool) -> None:
    n, k = 384, 1024  # N not a multiple of the 128-row tile; K spans two 512-column tiles
    weight = two_four(n, k, dtype, seed=m)
    values, meta = ops.compress(weight)
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    bias = torch.randn(n, device="cuda", dtype=dtype) if with_bias else None
    out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)  # poisoned: every element must be written
    ops.sparse_mm(x, values, meta, bias, kernel=kernel, out=out)
    expected = x.double() @ weight.double().t() + (bias.double() if with_bias else 0)
    assert not torch.isnan(out).any()
    assert relative_error(out, expected) < 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_odd_n_and_k_tails(dtype: torch.dtype) -> None:
    weight = two_four(200, 768, dtype)  # 768: a partial 512-column tile
    values, meta = ops.compress(weight)
    for m in (1, 5, 70):
        x = torch.randn(m, 768, device="cuda", dtype=dtype)
        expected = x.double() @ weight.double().t()
        for kernel in ("small_m", "mma_sp"):
            assert relative_error(ops.sparse_mm(x, values, meta, kernel=kernel), expected) < 1e-2


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0), reason="cuSPARSELt needs sm_80+")
@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_cusparselt(dtype: torch.dtype) -> None:
    weight = two_four(512, 1024, dtype)
    x = torch.randn(64, 1024, device="cuda", dtype=dtype)
    semi = torch.sparse.to_sparse_semi_structured(weight)
    theirs = torch.nn.functional.linear(x, semi)
    values, meta = ops.compress(weight)
    for kernel in ("small_m", "mma_sp"):
        ours = ops.sparse_mm(x, values, meta, kernel=kernel)
        assert relative_error(ours, theirs.double()) < 1e-2


def test_custom_op_under_compile_and_graph_capture() -> None:
    weight = two_four(256, 512, torch.float16)
    values, meta = ops.compress(weight)
    x = torch.randn(8, 512, device="cuda", dtype=torch.float16)
    expected = ops.sparse_mm(x, values, meta)
    compiled = torch.compile(lambda a: torch.ops.sparse24.sparse_mm(a, values, meta, None, "auto"), fullgraph=True)
    assert torch.equal(compiled(x), expected)
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ops.sparse_mm(static_x, values, meta)  # warm-up: compile and load outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = ops.sparse_mm(static_x, values, meta)
    static_x.copy_(torch.randn_like(static_x))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, ops.sparse_mm(static_x, values, meta))
