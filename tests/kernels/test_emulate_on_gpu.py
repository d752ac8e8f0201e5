"""The emulation against the hardware: every probe kernel gives the same bits on a GPU as on the CPU model.

This is how the CPU model itself is checked (fragment layouts, cvt rounding and NaNs, cp.async
zero-fill, shuffles) the first time a GPU is available; `make gpu-check` runs it.
"""

from __future__ import annotations

import pytest
import torch
from kernel_testing import EMULATION, HERE

from sparse24.kernels import kernels_unavailable, loader

GPU = kernels_unavailable()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(GPU is not None, reason=f"custom kernels cannot run here: {GPU}"),
    pytest.mark.skipif(EMULATION is not None, reason=f"the kernel emulation cannot run here: {EMULATION}"),
]


def both(probes, kernel: str, grid, block, args: list[tuple[str, object]], outputs: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run ``kernel`` on the emulation and on the GPU from the same inputs; the pairs of the ``outputs`` arguments."""
    cpu_args = [(kind, value.clone() if isinstance(value, torch.Tensor) else value) for kind, value in args]
    gpu_args = [(kind, value.cuda() if isinstance(value, torch.Tensor) else value) for kind, value in args]
    probes.kernel(kernel).launch(grid, block, cpu_args)
    device = torch.device("cuda", torch.cuda.current_device())
    loader.launch(loader.function("probes.cu", kernel, device, sources=HERE), grid, block, gpu_args, device=device)
    torch.cuda.synchronize()
    return [(cpu_args[i][1], gpu_args[i][1].cpu()) for i in outputs]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def test_cvt(probes) -> None:
    from test_emulate_ptx import edge_floats

    values = edge_floats()
    n = values.numel()
    halves = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).repeat(n // 65536 + 1)[:n].contiguous()
    outs = [torch.zeros(n, dtype=torch.int16), torch.zeros(n, dtype=torch.int16), torch.zeros(n)]
    args = [("ptr", values), ("ptr", halves), ("ptr", outs[0]), ("ptr", outs[1]), ("ptr", outs[2]), ("i32", n)]
    for name, (cpu, gpu) in zip(("f16", "bf16", "widened"), both(probes, "probe_cvt", ((n + 255) // 256,), (256,), args, [2, 3, 4])):
        if name == "widened":  # NaN payloads of cvt.f32.f16 are unspecified: compare NaN-ness there
            nan = torch.isnan(gpu)
            assert torch.equal(torch.isnan(cpu), nan) and same_bits(cpu[~nan], gpu[~nan]), name
        else:
            assert same_bits(cpu, gpu), f"{name}: {int((cpu != gpu).sum())} of {n} differ"


@pytest.mark.parametrize("column", [0, 8])
def test_ldmatrix(probes, column: int) -> None:
    tile = torch.arange(32 * 16, dtype=torch.int32).to(torch.int16)
    rows = torch.tensor([(7 * lane) % 32 for lane in range(32)], dtype=torch.int32)
    ((cpu, gpu),) = both(probes, "probe_ldmatrix", (1,), (32,), [("ptr", tile), ("ptr", rows), ("ptr", torch.zeros(128, dtype=torch.int32)), ("i32", column)], [2])
    assert torch.equal(cpu, gpu)


@pytest.mark.parametrize(("kernel", "dtype", "selector"), [("probe_mma_sp_f16_s0", torch.float16, 0), ("probe_mma_sp_f16_s1", torch.float16, 1), ("probe_mma_sp_bf16_s0", torch.bfloat16, 0)])
def test_mma_sp(probes, kernel: str, dtype: torch.dtype, selector: int) -> None:
    from test_emulate_ptx import NIBBLES, fragments

    generator = torch.Generator().manual_seed(7)
    compressed = torch.randn(16, 16, generator=generator).to(dtype)
    b = torch.randn(32, 8, generator=generator).to(dtype)
    c = torch.randn(16, 8, generator=generator)
    nibbles = torch.tensor(list(NIBBLES))[torch.randint(0, 6, (16, 8), generator=generator)]
    a, b_regs, c_regs, e = fragments(compressed, b, c, nibbles, selector, dtype)
    args = [("ptr", a.reshape(-1)), ("ptr", b_regs.reshape(-1)), ("ptr", c_regs.reshape(-1)), ("ptr", e), ("ptr", torch.zeros(128))]
    ((cpu, gpu),) = both(probes, kernel, (1,), (32,), args, [4])
    # the accumulation order inside the tensor core is unspecified: the same up to f32 rounding
    assert torch.allclose(cpu, gpu, rtol=1e-5, atol=1e-5), (cpu - gpu).abs().max()


def test_cp_async_waited_and_zero_filled(probes) -> None:
    ((cpu, gpu),) = both(probes, "probe_cp_async", (1,), (1,), [("ptr", torch.arange(1, 25, dtype=torch.int16)), ("ptr", torch.zeros(24, dtype=torch.int16)), ("i32", 0)], [1])
    assert torch.equal(cpu, gpu)


def test_shuffle(probes) -> None:
    values = torch.randn(32)
    ((cpu, gpu),) = both(probes, "probe_shuffle", (1,), (32,), [("ptr", values), ("ptr", torch.zeros(32)), ("i32", 0)], [1])
    assert torch.equal(cpu, gpu)
