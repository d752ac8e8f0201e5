"""The benchmark harness's custom backend, on the CPU emulation: the GPU suite's code path for our kernels runs in CI."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import needs_emulation

from sparse24.bench import gemm
from sparse24.kernels import emulate

pytestmark = [needs_emulation, pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the suite runs the real kernels")]


def test_gemm_suite_runs_and_checks_the_custom_kernels_on_tiny_shapes() -> None:
    with emulate.emulated(), emulate.launches() as launched:
        results = gemm.run(sets=["tiny"], dtypes=["fp16", "bf16"], backends=["dense", "custom"], reps=1, runs=1, warmup=0)
    rows = results["rows"]
    assert results["skipped"] == []
    assert sorted((r["dtype"], r["m"], r["backend"]) for r in rows) == sorted((d, m, b) for d in ("fp16", "bf16") for m in (1, 16, 80) for b in ("dense", "custom"))
    for row in rows:
        assert row["status"] == "ok", row
        assert row["error"] <= gemm.TOLERANCE[row["dtype"]]  # checked against float64 before being timed
    assert any("CPU emulation" in note for note in results["notes"])
    kernels = {s.kernel for s in launched}
    assert {"sparse24_compress_16bit", "sparse24_small_m_f16_1", "sparse24_small_m_bf16_16", "sparse24_mma_sp_f16", "sparse24_mma_sp_bf16"} <= kernels


def test_without_the_emulation_the_custom_backend_is_skipped_with_its_reason() -> None:
    results = gemm.run(sets=["tiny"], dtypes=["fp16"], backends=["dense", "custom"], m_values=[1], reps=1, runs=1, warmup=0)
    assert results["skipped"] == [{"backend": "custom", "dtype": "fp16", "reason": "needs an sm_80+ CUDA GPU"}]
    assert [r["backend"] for r in results["rows"]] == ["dense"]
