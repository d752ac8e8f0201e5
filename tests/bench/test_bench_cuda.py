"""The GPU suites on a real sm_80+ GPU: every backend checked, timed and compared (run by make gpu-check)."""

from __future__ import annotations

import itertools

import pytest
import torch

from sparse24.bench.env import cuda_problem

REASON = cuda_problem()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(REASON is not None, reason=f"needs an sm_80+ CUDA GPU: {REASON}")]


def skip_unless_available(backends: list[str], dtypes: list[str]) -> None:
    """Skip, with the reason, when a backend cannot run on this GPU (the suite's own check); never count it as run."""
    from sparse24.bench import gemm

    for backend in backends:
        for dtype in dtypes:
            reason = gemm.backend_problem(backend, torch.device("cuda"), dtype)
            if reason is not None:
                pytest.skip(f"{backend} ({dtype}) cannot run here: {reason}")


def test_gemm_suite_times_every_backend_after_checking_it() -> None:
    from sparse24.bench import gemm

    backends, dtypes, m_values = ["dense", "cusparselt", "custom"], ["fp16", "bf16"], [1, 64]
    skip_unless_available(backends, dtypes)
    results = gemm.run(sets=["decode"], dtypes=dtypes, backends=backends, m_values=m_values, reps=5, runs=2, warmup=1)
    rows = results["rows"]
    assert results["skipped"] == []
    layers = gemm.SHAPE_SETS["decode"][2]
    assert sorted((r["dtype"], r["layer"], r["m"], r["backend"]) for r in rows) == sorted(itertools.product(dtypes, layers, m_values, backends))
    assert results["roofline"]["copy_gbps"] > 100 and all(p > 10 for p in results["roofline"]["dense_peak_tflops"].values())
    for row in rows:
        assert row["status"] == "ok", row
        assert 0 < row["error"] <= gemm.TOLERANCE[row["dtype"]], row  # against the float64 reference: never exactly 0 in fp16/bf16
        assert row["latency_ms"]["n"] == 10 and row["tflops"] > 0
        if row["backend"] != "dense":
            assert row["speedup"] > 0 and row["verdict"] in ("faster", "slower", "noise")
            assert 1.0 < row["limit"] <= 2.0 and row["share_of_limit"] > 0


def test_gemm_suite_with_cuda_graphs() -> None:
    from sparse24.bench import gemm

    skip_unless_available(["custom"], ["fp16"])
    results = gemm.run(sets=["decode"], dtypes=["fp16"], backends=["dense", "custom"], m_values=[16], reps=5, runs=2, warmup=1, cuda_graphs=True)
    assert results["skipped"] == []
    assert sorted((r["layer"], r["backend"]) for r in results["rows"]) == sorted(itertools.product(gemm.SHAPE_SETS["decode"][2], ["dense", "custom"]))
    assert all(row["status"] == "ok" for row in results["rows"]), results["rows"]


def test_model_suite_eager_dense_and_sparse() -> None:
    from sparse24.bench import model

    results = model.run(models=["digits-transformer"], batches=[1, 64], variants=["eager dense", "eager sparse"], reps=5, runs=2, warmup=1)
    rows = {(r["batch"], r["variant"]): r for r in results["rows"]}
    assert set(rows) == {(1, "eager dense"), (1, "eager sparse"), (64, "eager dense"), (64, "eager sparse")}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["latency_ms"]["p99"] >= row["latency_ms"]["median"] > 0 and row["throughput"] > 0
    assert rows[64, "eager sparse"]["speedup"] > 0 and "runtime" in results["models"]["digits-transformer"]
