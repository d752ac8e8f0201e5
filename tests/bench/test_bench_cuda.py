"""The GPU suites on a real sm_80+ GPU: every backend checked, timed and compared (run by make gpu-check)."""

from __future__ import annotations

import pytest

from bench.env import cuda_problem

REASON = cuda_problem()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(REASON is not None, reason=f"needs an sm_80+ CUDA GPU: {REASON}")]


def test_gemm_suite_times_every_available_backend_after_checking_it() -> None:
    from bench import gemm

    results = gemm.run(sets=["decode"], dtypes=["fp16", "bf16"], backends=["dense", "cusparselt", "custom"], m_values=[1, 64], reps=5, runs=2, warmup=1)
    rows = results["rows"]
    ran = {s["backend"] for s in results["skipped"]} | {r["backend"] for r in rows}
    assert ran == {"dense", "cusparselt", "custom"}
    assert results["roofline"]["copy_gbps"] > 100 and all(p > 10 for p in results["roofline"]["dense_peak_tflops"].values())
    for row in rows:
        assert row["status"] == "ok", row
        assert row["error"] <= gemm.TOLERANCE[row["dtype"]]
        assert row["latency_ms"]["n"] == 10 and row["tflops"] > 0
        if row["backend"] != "dense":
            assert row["speedup"] > 0 and row["verdict"] in ("faster", "slower", "noise")
            assert 1.0 < row["limit"] <= 2.0 and row["share_of_limit"] > 0


def test_gemm_suite_with_cuda_graphs() -> None:
    from bench import gemm

    results = gemm.run(sets=["decode"], dtypes=["fp16"], backends=["dense", "custom"], m_values=[16], reps=5, runs=2, warmup=1, cuda_graphs=True)
    assert all(row["status"] == "ok" for row in results["rows"]), results["rows"]


def test_model_suite_eager_dense_and_sparse() -> None:
    from bench import model

    results = model.run(models=["digits-transformer"], batches=[1, 64], variants=["eager dense", "eager sparse"], reps=5, runs=2, warmup=1)
    rows = {(r["batch"], r["variant"]): r for r in results["rows"]}
    assert set(rows) == {(1, "eager dense"), (1, "eager sparse"), (64, "eager dense"), (64, "eager sparse")}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["latency_ms"]["p99"] >= row["latency_ms"]["median"] > 0 and row["throughput"] > 0
    assert rows[64, "eager sparse"]["speedup"] > 0 and "runtime" in results["models"]["digits-transformer"]
