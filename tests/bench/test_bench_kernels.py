"""``bench kernels``: one line per custom kernel and dtype; the logic on synthetic rows, the real thing on a GPU."""

from __future__ import annotations

import json
import re

import pytest
import torch
from synthetic_results import kernel_results

from sparse24.bench import kernel_summary
from sparse24.bench.cli import main as bench_main
from sparse24.bench.kernel_summary import problems, summary_lines
from sparse24.kernels import kernels_unavailable

KERNELS_REASON = kernels_unavailable()
SPEEDS = "vs dense F.linear at N=4096 K=4096:"


def test_one_line_per_kernel_and_dtype_with_the_verdict_and_the_speedups() -> None:
    lines = summary_lines(kernel_results())
    assert lines == [
        f"small_m fp16 (CUDA cores): correct (max error 5.0e-04 vs float64, tolerance 0.01); {SPEEDS} M=1 1.60x, M=16 1.50x, M=4096 0.20x",
        f"mma_sp fp16 (tensor cores): correct (max error 5.0e-04 vs float64, tolerance 0.01); {SPEEDS} M=1 0.80x, M=16 1.00x (noise), M=4096 1.50x",
        "compress fp16: correct (equals sparse24.kernels.reference.compress, decompress round-trips); 4096x4096 in 0.0120 ms per call",
        "mask_rows fp16 (gradient hook): correct (equals sparse24.mask.mask_rows_); a 4096x4096 gradient in 0.0500 ms per call, speedup 16.00x over the torch ops (0.8000 ms)",
        f"small_m bf16 (CUDA cores): FAILED at M=4096 (RuntimeError: timing failed); {SPEEDS} M=1 1.60x, M=16 1.50x, M=4096 failed",
        f"mma_sp bf16 (tensor cores): WRONG at M=16 (error up to 0.31 > 0.02 vs float64); {SPEEDS} M=1 0.80x, M=16 wrong, M=4096 1.50x",
        "compress bf16: correct (equals sparse24.kernels.reference.compress, decompress round-trips); 4096x4096 in 0.0120 ms per call",
        "mask_rows bf16 (gradient hook): correct (equals sparse24.mask.mask_rows_); a 4096x4096 gradient in 0.0500 ms per call, speedup 16.00x over the torch ops (0.8000 ms)",
    ]


def test_problems_are_the_wrong_and_failed_rows_and_with_require_those_not_run() -> None:
    results = kernel_results()
    assert [(r["kernel"], r["dtype"], r["m"], r["status"]) for r in problems(results)] == [("mma_sp", "bf16", 16, "wrong"), ("small_m", "bf16", 4096, "failed")]
    results["rows"] = [r for r in results["rows"] if r["dtype"] == "fp16"]
    assert problems(results) == [] and problems(results, require=True) == []
    results["rows"].append({"kernel": "compress", "dtype": "bf16", "status": "not run", "message": "no CUDA GPU"})
    assert problems(results) == [] and [r["status"] for r in problems(results, require=True)] == ["not run"]
    assert summary_lines(results)[-1] == "compress bf16: not run: no CUDA GPU"


def test_a_kernel_without_a_dense_baseline_has_no_speedup_and_dense_failing_is_a_problem() -> None:
    results = kernel_results()
    dense = next(r for r in results["rows"] if (r["kernel"], r["dtype"], r.get("m")) == ("dense", "fp16", 1))
    dense.update(status="wrong", error=0.5, message="relative error 0.5 > 0.01 against float64: not timed")
    del dense["latency_ms"]
    for row in results["rows"]:
        if row["dtype"] == "fp16" and row.get("m") == 1:
            row.pop("speedup", None)
    kernel_summary._derive(results["rows"])
    small_m = summary_lines(results)[0]
    assert small_m.endswith(f"{SPEEDS} M=1 no speedup (dense wrong), M=16 1.50x, M=4096 0.20x"), small_m
    assert dense in problems(results)


@pytest.mark.skipif(KERNELS_REASON is None, reason="checks the machine without the kernels; they can run here")
def test_cli_without_the_kernels_says_why_per_kernel_and_require_fails(tmp_path, capsys) -> None:
    assert bench_main(["kernels", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    not_run = [line for line in out if line.startswith("kernel ")]
    assert len(not_run) == 8 and all(line.endswith(f": not run: {KERNELS_REASON}") for line in not_run), out
    saved = json.loads((tmp_path / "kernels.json").read_text())
    assert saved["suite"] == "kernels" and saved["summary"] == [line.removeprefix("kernel ") for line in not_run]
    assert saved["environment"]["command"] == f"python -m sparse24.bench kernels --out {tmp_path}"
    assert bench_main(["kernels", "--out", str(tmp_path), "--require"]) == 1
    assert "8 kernel check(s) did not pass or did not run" in capsys.readouterr().err


def test_cli_prints_the_lines_exits_1_on_a_wrong_kernel_and_keeps_what_a_cut_off_run_measured(tmp_path, capsys, monkeypatch) -> None:
    synthetic = kernel_results()

    def measure(**kwargs):
        assert (kwargs["reps"], kwargs["runs"], kwargs["warmup"]) == (20, 3, 3)
        kwargs["on_progress"](synthetic)
        return synthetic

    monkeypatch.setattr(kernel_summary, "measure", measure)
    assert bench_main(["kernels", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert [line.removeprefix("kernel ") for line in captured.out.splitlines() if line.startswith("kernel ")] == summary_lines(synthetic)
    assert re.search(r"2 kernel check\(s\) did not pass: mma_sp bf16 M=16 wrong; small_m bf16 M=4096 failed$", captured.err.strip()), captured.err

    def cut_off(**kwargs):
        kwargs["on_progress"]({**synthetic, "rows": synthetic["rows"][:5]})  # fp16 compress, mask_rows and M=1 done
        raise KeyboardInterrupt

    monkeypatch.setattr(kernel_summary, "measure", cut_off)
    assert bench_main(["kernels", "--out", str(tmp_path)]) == 130
    saved = json.loads((tmp_path / "kernels.json").read_text())
    assert len(saved["rows"]) == 5 and [line.split(":")[0] for line in saved["summary"]] == ["small_m fp16 (CUDA cores)", "mma_sp fp16 (tensor cores)", "compress fp16", "mask_rows fp16 (gradient hook)"]


def test_unknown_dtype_is_bad_input(tmp_path, capsys) -> None:
    assert bench_main(["kernels", "--out", str(tmp_path), "--dtypes", "fp32"]) == 2
    assert "unknown dtype fp32; the kernels take fp16, bf16" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(KERNELS_REASON is not None, reason=f"custom kernels cannot run here: {KERNELS_REASON}")
def test_every_kernel_is_correct_and_timed_on_this_gpu() -> None:
    results = kernel_summary.measure(reps=3, runs=2, warmup=1)
    rows = results["rows"]
    assert sorted((r["kernel"], r["dtype"], r.get("m")) for r in rows if r["kernel"] not in ("compress", "mask_rows")) == sorted(
        (kernel, dtype, m) for kernel in ("dense", "small_m", "mma_sp") for dtype in ("fp16", "bf16") for m in kernel_summary.M_VALUES
    )
    for row in rows:
        assert row["status"] == "ok", row
        assert row["latency_ms"]["n"] == 6 and row["latency_ms"]["median"] > 0, row
        if row["kernel"] == "mask_rows":
            assert row["torch_latency_ms"]["n"] == 6 and row["speedup"] > 0 and row["verdict"] in ("faster", "slower", "noise"), row
        elif row["kernel"] != "compress":
            assert 0 < row["error"] <= results["settings"]["tolerance"][row["dtype"]], row  # fp16/bf16 against float64: never exactly 0
        if row["kernel"] in kernel_summary.GEMM_KERNELS:
            assert row["speedup"] > 0 and row["verdict"] in ("faster", "slower", "noise"), row
    lines = summary_lines(results)
    assert len(lines) == 8 and all(": correct (" in line for line in lines), lines
    assert problems(results, require=True) == [] and results["progress"]["done"] == results["progress"]["total"] == 6


@pytest.mark.cuda
@pytest.mark.skipif(KERNELS_REASON is not None, reason=f"custom kernels cannot run here: {KERNELS_REASON}")
def test_a_wrong_kernel_output_is_reported_and_not_timed(monkeypatch) -> None:
    from sparse24.kernels import ops

    real = ops.sparse_mm

    def off_by_five_percent(*args, kernel="auto", **kwargs):
        out = real(*args, kernel=kernel, **kwargs)
        return out * 1.05 if kernel == "mma_sp" else out

    monkeypatch.setattr(ops, "sparse_mm", off_by_five_percent)
    results = kernel_summary.measure(dtypes=["fp16"], reps=2, runs=1, warmup=0)
    wrong = [r for r in results["rows"] if r["kernel"] == "mma_sp"]
    assert len(wrong) == 3 and all(r["status"] == "wrong" and "latency_ms" not in r and r["error"] == pytest.approx(0.05, rel=0.05) for r in wrong), wrong
    line = summary_lines(results)[1]
    assert line.startswith("mma_sp fp16 (tensor cores): WRONG at M=1,16,4096 (error up to 0.05") and line.endswith("M=1 wrong, M=16 wrong, M=4096 wrong"), line
    assert all(r["status"] == "ok" for r in results["rows"] if r["kernel"] != "mma_sp")


def test_check_then_time_on_the_cpu_with_the_references_standing_in_for_the_kernels(monkeypatch) -> None:
    """The GPU steps' logic, run on the CPU: the pure-PyTorch references play the kernels, one plays a wrong one."""
    from sparse24.kernels import ops, reference

    from sparse24.bench.timing import CpuTimer
    from sparse24.mask import prune_

    def stand_in(x, values, meta, bias=None, *, kernel="auto"):
        out = reference.sparse_mm(x, values, meta, bias)
        return out * 1.05 if kernel == "mma_sp" else out

    monkeypatch.setattr(ops, "sparse_mm", stand_in)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 128, generator=generator)
    prune_(weight, 1)
    weight = weight.to(torch.bfloat16)
    row, compressed = kernel_summary._compress_row(weight, "bf16", CpuTimer(), reps=2, runs=2, warmup=0)  # ops.compress: the reference on the CPU
    assert row["status"] == "ok" and row["latency_ms"]["n"] == 4
    x = torch.randn(8, 128, generator=generator).to(torch.bfloat16)
    rows = {r["kernel"]: r for r in kernel_summary._gemm_rows(x, weight, compressed, "bf16", 2e-2, CpuTimer(), reps=2, runs=2, warmup=0)}
    assert rows["dense"]["status"] == rows["small_m"]["status"] == "ok" and rows["mma_sp"]["status"] == "wrong"
    assert 0 < rows["small_m"]["error"] <= 2e-2 and rows["small_m"]["speedup"] > 0 and rows["small_m"]["latency_ms"]["n"] == 4
    assert rows["mma_sp"]["error"] == pytest.approx(0.05, rel=0.1) and "latency_ms" not in rows["mma_sp"] and "speedup" not in rows["mma_sp"]
