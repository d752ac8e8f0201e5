"""sparse24 bench end to end on this machine: CPU mode, outputs, exit codes, the README block."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic_results import gemm_results, model_results

from sparse24.bench.cli import main as bench_main
from sparse24.bench.readme import END, START, perf_section, update_readme
from sparse24.cli import main

REPO = Path(__file__).resolve().parents[2]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU mode; this machine has a CUDA GPU")


@no_gpu
def test_cpu_mode_runs_what_it_can_says_so_once_and_prints_no_sparse_number(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    args = ["bench", "gemm", "model", "--quick", "--out", str(out), "--sets", "decode", "--m", "1,8", "--models", "digits-resnet", "--batches", "1,4"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert len(re.findall(r"^gemm: no CUDA GPU here.*dense CPU timings only$", stdout, re.M)) == 1
    assert len(re.findall(r"^model: no CUDA GPU here.*eager dense CPU timings only$", stdout, re.M)) == 1
    for backend in ("cusparselt", "custom", "tensorrt", "eager sparse", "compile"):  # never a number for these
        assert not re.search(rf"{backend}[^|\n]*\|\s*[0-9]", stdout), backend
    names = {p.name for p in out.iterdir()}
    assert {"gemm.json", "gemm.csv", "gemm.md", "gemm_throughput_fp32.png", "model.json", "model.csv", "model.md", "model_latency.png"} <= names
    gemm = json.loads((out / "gemm.json").read_text())
    assert {r["backend"] for r in gemm["rows"]} == {"dense"} and {r["m"] for r in gemm["rows"]} == {1, 8}
    assert all(r["status"] == "ok" and r["latency_ms"]["n"] == 10 and 0 < r["error"] < 1e-4 for r in gemm["rows"])  # fp32 against float64: small, not 0
    assert {s["backend"] for s in gemm["skipped"]} == {"cusparselt", "custom", "tensorrt-dense", "tensorrt"}
    env = gemm["environment"]
    assert env["command"] == "sparse24 bench " + " ".join(args[1:]) and env["gpu"] is None and env["torch"] == torch.__version__
    model = json.loads((out / "model.json").read_text())
    assert [(r["batch"], r["variant"]) for r in model["rows"]] == [(1, "eager dense"), (4, "eager dense")]
    assert model["models"]["digits-resnet"]["sparse_weights"] == 5


@no_gpu
def test_gemm_suite_reports_a_wrong_dense_result_and_does_not_time_it(monkeypatch) -> None:
    from sparse24.bench import gemm

    calls = gemm._Prepared.calls

    def off_by_one_percent(self, backend, xs):
        right = calls(self, backend, xs)
        return [lambda call=call: call() * 1.01 for call in right] if backend == "dense" else right

    monkeypatch.setattr(gemm._Prepared, "calls", off_by_one_percent)
    results = gemm.run(sets=["bert-base"], dtypes=["fp32"], backends=["dense"], m_values=[4], reps=2, runs=1, warmup=0)
    rows = results["rows"]
    assert [(r["layer"], r["backend"]) for r in rows] == [(layer, "dense") for layer in gemm.SHAPE_SETS["bert-base"][2]]
    for row in rows:
        assert row["status"] == "wrong" and "latency_ms" not in row and "speedup" not in row, row
        assert row["error"] == pytest.approx(0.01, rel=1e-3)
        assert re.fullmatch(r"relative error 0\.01 > 0\.0001: not timed", row["message"]), row["message"]


def test_accuracy_suite_quick(tmp_path, capsys) -> None:
    assert main(["bench", "accuracy", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "recovery.json").read_text())
    assert results["suite"] == "accuracy" and results["seeds"] == [0] and results["recipe"]["epochs"] == 1
    assert len(results["models"]) == 2
    assert "Quick smoke run" in (tmp_path / "recovery.md").read_text()
    assert (tmp_path / "recovery.csv").read_text().startswith("model,row,split,mean,std\n")


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["bench", "fast", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "sparse24 bench: error: unknown suite fast; choose from gemm, model, accuracy"
    assert main(["bench", "gemm", "--sets", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown shape set nope" in capsys.readouterr().err
    assert main(["bench", "model", "--models", "gpt5", "--out", str(tmp_path)]) == 2
    assert "unknown model gpt5" in capsys.readouterr().err
    assert main(["bench", "plot", str(tmp_path / "none.json")]) == 2
    assert "results file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "gemm", "--m", "0"])
    assert exit_.value.code == 2


@no_gpu
def test_env_and_require_gpu(capsys) -> None:
    assert bench_main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["gpu"] is None and env["sparse24"] and "git_commit" in env
    assert bench_main(["env", "--require-gpu"]) == 2
    assert "this command is for a GPU machine" in capsys.readouterr().err


def test_python_dash_m_bench_runs_from_the_checkout() -> None:
    result = subprocess.run([sys.executable, "-m", "sparse24.bench", "env"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch " + torch.__version__ in result.stdout


def test_plot_command_redraws_from_json(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "model.json").write_text(json.dumps(model_results()))
    assert bench_main(["plot", str(tmp_path / "model.json")]) == 0
    assert (tmp_path / "model_speedup.png").stat().st_size > 10_000


def test_readme_block_from_gpu_results(tmp_path) -> None:
    root = tmp_path / "results"
    (root / "nvidia-test-gpu").mkdir(parents=True)
    (root / "cpu").mkdir()
    (root / "nvidia-test-gpu" / "model.json").write_text(json.dumps(model_results()))
    (root / "nvidia-test-gpu" / "gemm.json").write_text(json.dumps(gemm_results()))
    cpu = model_results()
    cpu["environment"]["gpu"] = None
    (root / "cpu" / "model.json").write_text(json.dumps(cpu))
    section = perf_section(root)
    assert section.count("### ") == 1 and "### NVIDIA Test GPU (`bench/results/nvidia-test-gpu/`)" in section
    assert "| bert-base | 1 | 5.000 ms | 4.000 ms (1.25x) | 3.000 ms | 2.500 ms (1.20x) |" in section
    assert "| bert-base | 8 | 12.000 ms | 12.100 ms (0.99x, noise) | 9.000 ms | failed |" in section
    assert "| 1 | 0.040 ms | 0.080 ms (0.50x) | 0.025 ms (1.60x) |" in section
    assert "driver 580.1" in section and "2026-11-23" in section
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\nrest\n")
    assert not update_readme(readme, root, check=True) and "old" in readme.read_text()
    assert not update_readme(readme, root)
    assert update_readme(readme, root, check=True)
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith(f"{END}\nrest\n")


def test_committed_readme_block_is_generated_from_committed_results() -> None:
    assert update_readme(REPO / "README.md", REPO / "bench" / "results", check=True), "run `python -m sparse24.bench readme`"


@no_gpu
def test_a_run_cut_off_part_way_leaves_the_cases_it_finished(tmp_path, capsys, monkeypatch) -> None:
    from sparse24.bench import gemm, model

    run_case, run_batch = gemm._run_case, model._run_batch
    finished = []

    def third_case_never_ends(case, *args, **kwargs):
        if len(finished) == 2:
            raise KeyboardInterrupt  # the GPU is taken back here
        finished.append(case.layer)
        return run_case(case, *args, **kwargs)

    monkeypatch.setattr(gemm, "_run_case", third_case_never_ends)
    out = tmp_path / "results"
    assert bench_main(["gemm", "--out", str(out), "--sets", "bert-base", "--m", "4", "--reps", "2", "--runs", "1", "--no-plots"]) == 130
    assert "interrupted; what was measured is on disk" in capsys.readouterr().err
    saved = json.loads((out / "gemm.json").read_text())
    assert saved["progress"] == {"done": 2, "total": 3, "unit": "cases"}
    assert [r["layer"] for r in saved["rows"]] == finished == ["q/k/v/out proj", "fc1"]
    assert all(r["status"] == "ok" and r["latency_ms"]["n"] == 2 for r in saved["rows"])
    assert "**Partial result: 2 of 3 cases measured" in (out / "gemm.md").read_text()
    assert len((out / "gemm.csv").read_text().splitlines()) == 3

    def second_batch_never_ends(name, batch, *args, **kwargs):
        if batch == 4:
            raise KeyboardInterrupt
        return run_batch(name, batch, *args, **kwargs)

    monkeypatch.setattr(model, "_run_batch", second_batch_never_ends)
    assert bench_main(["model", "--out", str(out), "--models", "digits-resnet", "--batches", "1,4", "--reps", "2", "--runs", "1", "--no-plots"]) == 130
    saved = json.loads((out / "model.json").read_text())
    assert saved["progress"] == {"done": 1, "total": 2, "unit": "model batches"} and [r["batch"] for r in saved["rows"]] == [1]
    assert "**Partial result: 1 of 2 model batches measured" in (out / "model.md").read_text()


@no_gpu
def test_a_finished_run_says_so(tmp_path) -> None:
    out = tmp_path / "results"
    assert bench_main(["gemm", "--out", str(out), "--sets", "bert-base", "--m", "4", "--reps", "2", "--runs", "1", "--no-plots"]) == 0
    saved = json.loads((out / "gemm.json").read_text())
    assert saved["progress"] == {"done": 3, "total": 3, "unit": "cases"} and len(saved["rows"]) == 3
    assert "Partial" not in (out / "gemm.md").read_text()


def test_partial_results_are_flagged_in_compare_and_the_readme(tmp_path) -> None:
    from sparse24.bench.compare import compare

    finished, partial = gemm_results(), gemm_results()
    partial["progress"] = {"done": 1, "total": 4, "unit": "cases"}
    partial["rows"] = partial["rows"][:3]
    assert compare(finished, partial).warnings == ("the new result is partial: only 1 of 4 cases measured",)
    assert compare(finished, finished).warnings == ()
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "gemm.json").write_text(json.dumps(partial))
    assert "(partial run: only 1 of 4 cases measured)" in perf_section(tmp_path)
