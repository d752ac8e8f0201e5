"""Each kernel, through sparse24.kernels.ops, against fp64 references on fresh random inputs.

Every test runs twice: on the CPU emulation of the same CUDA sources (in `make test`), and on a
real sm_80+ GPU (marked cuda; `make gpu-check`). Shapes are kept small for the emulation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from kernel_testing import EMULATION, assert_same, relative_error, special, two_four

from sparse24.kernels import emulate, kernels_unavailable, ops
from sparse24 import SparsityError
from sparse24.mask import mask_rows_, pack_bits

GPU = kernels_unavailable()
DTYPES = [torch.float16, torch.bfloat16]
SCHEDULES = ["forward", "reverse", "random"]


@pytest.fixture(
    params=[
        pytest.param("emulate", marks=pytest.mark.skipif(EMULATION is not None, reason=f"the kernel emulation cannot run here: {EMULATION}")),
        pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(GPU is not None, reason=f"custom kernels cannot run here: {GPU}")]),
    ]
)
def device(request: pytest.FixtureRequest) -> Iterator[str]:
    """The tensors' device: "cpu" under the emulation, or "cuda"."""
    if request.param == "emulate":
        with emulate.emulated():
            yield "cpu"
    else:
        yield "cuda"


@contextlib.contextmanager
def schedule(device: str, name: str, seed: int = 0) -> Iterator[None]:
    """The emulation's thread order for the block (nothing on a GPU)."""
    if device == "cpu":
        with emulate.emulated(name, seed):
            yield
    else:
        yield


def random(*shape: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=generator, device=device).to(dtype)


def check_sparse_mm(device: str, dtype: torch.dtype, kernel: str, m: int, n: int, k: int, with_bias: bool, seed: int = 0) -> None:
    weight = two_four(n, k, dtype, seed=seed, device=device)
    values, meta = ops.compress(weight)
    x = random(m, k, dtype=dtype, device=device, seed=seed + 1)
    bias = random(n, dtype=dtype, device=device, seed=seed + 2) if with_bias else None
    out = torch.full((m, n), float("nan"), device=device, dtype=dtype)  # poisoned: every element must be written
    ops.sparse_mm(x, values, meta, bias, kernel=kernel, out=out)
    expected = x.double() @ weight.double().t() + (bias.double() if with_bias else 0)
    assert not torch.isnan(out).any(), f"{int(torch.isnan(out).sum())} outputs never written"
    assert relative_error(out, expected) < 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_compress_matches_the_reference_and_round_trips(device: str, dtype: torch.dtype) -> None:
    from sparse24.kernels import reference

    weight = two_four(48, 96, dtype, device=device)
    weight[0, :16] = 0  # groups with no nonzero
    weight[1, 4] = 0  # a group with one
    weight[2, 9] = -0.0  # -0 is zero too
    with emulate.launches() as launched:
        values, meta = ops.compress(weight)
    ref_values, ref_meta = reference.compress(weight.cpu())
    assert torch.equal(values.cpu(), ref_values) and torch.equal(meta.cpu(), ref_meta)
    assert torch.equal(ops.decompress(values, meta), weight)
    if device == "cpu":
        assert [s.kernel for s in launched] == ["sparse24_compress_16bit"]  # the kernel ran, not the reference
    weight[5, 8:12] = 1  # 4 nonzeros
    weight[7, 0:3] = 1  # 3 nonzeros
    with pytest.raises(SparsityError, match="not 2:4 along K: 2 groups"):
        ops.compress(weight)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["small_m", "mma_sp"])
@pytest.mark.parametrize("m", [1, 3, 17, 64, 70])
@pytest.mark.parametrize("with_bias", [True, False])
def test_sparse_mm_against_fp64(device: str, dtype: torch.dtype, kernel: str, m: int, with_bias: bool) -> None:
    # N = 140: off the 128-row mma.sp tile and the 8-row small-M block; K = 544: 17 k-blocks (more
    # than the 4 pipeline stages) and a partial 512-column small-M tile
    check_sparse_mm(device, dtype, kernel, m, 140, 544, with_bias, seed=m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 16, 17, 64])
def test_small_m_at_every_tile_template(device: str, dtype: torch.dtype, m: int) -> None:
    tile = next(t for t in ops._SMALL_TILES if t >= m) if m <= 16 else 16
    with emulate.launches() as launched:
        check_sparse_mm(device, dtype, "auto", m, 24, 32, with_bias=m % 2 == 0, seed=m)
    if device == "cpu":
        names = [s.kernel for s in launched]
        assert names[-1] == f"sparse24_small_m_{'f16' if dtype == torch.float16 else 'bf16'}_{tile}", names


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [32, 64, 96, 160])
def test_mma_sp_with_fewer_and_more_k_blocks_than_stages(device: str, dtype: torch.dtype, k: int) -> None:
    with emulate.launches() as launched:
        check_sparse_mm(device, dtype, "auto", 70, 136, k, with_bias=True, seed=k)  # M = 70 > 64: "auto" takes mma.sp
    if device == "cpu":
        assert launched[-1].kernel.startswith("sparse24_mma_sp_")
        assert launched[-1].races == 0 and launched[-1].mma_sp > 0


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("kernel", ["small_m", "mma_sp"])
def test_every_thread_schedule_gives_the_same_bits(device: str, name: str, kernel: str) -> None:
    weight = two_four(136, 160, torch.float16, device=device)
    values, meta = ops.compress(weight)
    x = random(33, 160, dtype=torch.float16, device=device, seed=5)
    with schedule(device, "forward"):
        expected = ops.sparse_mm(x, values, meta, kernel=kernel)
    for seed in (1, 2):
        with schedule(device, name, seed):
            assert torch.equal(ops.sparse_mm(x, values, meta, kernel=kernel), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_odd_inputs_are_copied_to_aligned_contiguous_ones(device: str, dtype: torch.dtype) -> None:
    weight = two_four(40, 64, dtype, device=device)
    values, meta = ops.compress(weight)
    x = random(5, 65, dtype=dtype, device=device, seed=3)[:, 1:]  # not contiguous, not 16-byte aligned
    expected = x.double() @ weight.double().t()
    for kernel in ("small_m", "mma_sp"):
        assert relative_error(ops.sparse_mm(x, values, meta, kernel=kernel), expected) < 1e-2


def test_custom_op_under_compile(device: str) -> None:
    weight = two_four(64, 128, torch.float16, device=device)
    values, meta = ops.compress(weight)
    x = random(8, 128, dtype=torch.float16, device=device, seed=4)
    expected = ops.sparse_mm(x, values, meta)
    compiled = torch.compile(lambda a: torch.ops.sparse24.sparse_mm(a, values, meta, None, "auto"), fullgraph=True, backend="aot_eager" if device == "cpu" else "inductor")
    assert torch.equal(compiled(x), expected)


@pytest.mark.cuda
@pytest.mark.skipif(GPU is not None, reason=f"custom kernels cannot run here: {GPU}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["small_m", "mma_sp"])
@pytest.mark.parametrize("m", [100, 257])
def test_larger_shapes_on_the_gpu(dtype: torch.dtype, kernel: str, m: int) -> None:
    check_sparse_mm("cuda", dtype, kernel, m, 384, 1024, True, seed=m)


@pytest.mark.cuda
@pytest.mark.skipif(GPU is not None or (torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0)), reason=f"needs cuSPARSELt on sm_80+: {GPU}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_cusparselt(dtype: torch.dtype) -> None:
    weight = two_four(512, 1024, dtype, device="cuda")
    x = torch.randn(64, 1024, device="cuda", dtype=dtype)
    theirs = torch.nn.functional.linear(x, torch.sparse.to_sparse_semi_structured(weight))
    values, meta = ops.compress(weight)
    for kernel in ("small_m", "mma_sp"):
        assert relative_error(ops.sparse_mm(x, values, meta, kernel=kernel), theirs.double()) < 1e-2


@pytest.mark.cuda
@pytest.mark.skipif(GPU is not None, reason=f"custom kernels cannot run here: {GPU}")
def test_cuda_graph_capture_reads_the_new_input() -> None:
    weight = two_four(256, 512, torch.float16, device="cuda")
    values, meta = ops.compress(weight)
    static_x = torch.randn(8, 512, device="cuda", dtype=torch.float16)
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


@pytest.mark.parametrize("dtype", list(ops.HOST_DTYPES), ids=str)
@pytest.mark.parametrize("shape", [(8, 24), (5, 13), (3, 4, 3, 3), (7, 1)], ids=str)
def test_mask_rows_matches_the_reference(device: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    """The gradient hook's GPU step: one thread per mask byte; padded rows; signed zeros, inf and NaN as torch's multiply."""
    generator = torch.Generator().manual_seed(sum(shape))
    tensor = special(torch.randn(shape, generator=generator).to(dtype)).to(device)
    packed = pack_bits(torch.rand(shape, generator=generator) > 0.5)
    packed.view(-1)[0] = 0b00001000 if shape[-1] >= 6 and len(shape) == 2 else packed.view(-1)[0]  # only -0.0 of the specials kept
    packed = packed.to(device)
    expected = mask_rows_(tensor.clone(), packed)
    actual = tensor.clone()
    assert ops.mask_rows_(actual, packed) is actual
    assert_same(actual.cpu(), expected.cpu())


def test_mask_rows_refuses_bad_arguments(device: str) -> None:
    tensor, packed = torch.randn(8, 16, device=device), torch.zeros(8, 2, dtype=torch.uint8, device=device)
    with pytest.raises(ValueError, match="tensor must be contiguous"):
        ops.mask_rows_(torch.randn(16, 8, device=device).t(), packed)
    with pytest.raises(ValueError, match=r"packed must be a contiguous uint8 \[8, 2\]"):
        ops.mask_rows_(tensor, packed[:, :1])
    with pytest.raises(ValueError, match="tensor must be one of"):
        ops.mask_rows_(tensor.int(), packed)
