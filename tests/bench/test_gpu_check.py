"""``make gpu-check``'s steps, with a stand-in for the GPU machine's python: order, outputs, failures, default settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sparse24.bench import gemm, model
from sparse24.bench.cli import _run_parser

REPO = Path(__file__).resolve().parents[2]

# Plays GPU_PYTHON: records every call; `bench env --results-dir` names the folder; the kernel step
# sleeps $KERNELS_SLEEP s; pytest writes its XML and exits with $PYTEST_STATUS; each suite records its
# arguments one per line.
STAND_IN = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  "-m sparse24.bench env --results-dir") echo "$RESULTS" ;;
  "-m sparse24.bench kernels"*) sleep "$KERNELS_SLEEP"; echo "kernel small_m fp16 (CUDA cores): correct" ;;
  "-m pytest"*) echo "tests/x.py::test_a PASSED"; echo "tests/x.py::test_b FAILED"; echo "<testsuites/>" > "$RESULTS/pytest.xml"; exit "$PYTEST_STATUS" ;;
  "-m sparse24.bench gemm"*) printf '%s\\n' "$@" > "$RESULTS/gemm-args" ;;
  "-m sparse24.bench model"*) printf '%s\\n' "$@" > "$RESULTS/model-args" ;;
esac
"""

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def gpu_check(tmp_path: Path, pytest_status: int, *options: str, kernels_sleep: float = 0) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    results = tmp_path / "results" / "nvidia-test-gpu"
    env = {**os.environ, "CALLS": str(tmp_path / "calls"), "RESULTS": str(results), "PYTEST_STATUS": str(pytest_status), "KERNELS_SLEEP": str(kernels_sleep)}
    env.pop("MAKEFLAGS", None)
    done = subprocess.run(["make", "-s", "-C", str(REPO), "gpu-check", f"GPU_PYTHON={stand_in}", *options], env=env, capture_output=True, text=True, timeout=60)
    return done, results, (tmp_path / "calls").read_text().splitlines()


@needs_make
def test_every_step_runs_in_order_into_one_folder_and_a_failing_one_fails_the_target_at_the_end(tmp_path) -> None:
    done, results, calls = gpu_check(tmp_path, pytest_status=1)
    assert done.returncode != 0, done.stdout
    assert [c.split(" --")[0] if c.startswith("-m") else "-c" for c in calls] == [
        "-c",  # the dependency check
        "-m sparse24.bench env",  # --require-gpu
        "-m sparse24.bench env",  # --results-dir
        "-m sparse24.bench kernels",
        "-m pytest -v -m cuda -p no:cacheprovider",
        "-m sparse24.bench gemm",  # still run after the tests failed
        "-m sparse24.bench model",
    ]
    assert calls[1] == "-m sparse24.bench env --require-gpu" and calls[2] == "-m sparse24.bench env --results-dir"
    assert calls[3] == f"-m sparse24.bench kernels --require --out {results}"
    assert calls[4].endswith(f"--junitxml={results}/pytest.xml tests")
    log = (results / "pytest.log").read_text().splitlines()
    assert (results / "pytest.xml").is_file() and log[1:] == ["tests/x.py::test_a PASSED", "tests/x.py::test_b FAILED"]
    assert log[0] == f"gpu-check: tests (limit 240 s): {tmp_path / 'python'} {calls[4]}"  # the command heads the log
    assert [p.name for p in results.iterdir() if p.name.startswith(".")] == []
    assert f"gpu-check: FAILED: tests (everything measured is in {results})" in done.stdout
    assert "kernel small_m fp16 (CUDA cores): correct" in done.stdout


@needs_make
def test_all_steps_passing_pass_the_target(tmp_path) -> None:
    done, results, calls = gpu_check(tmp_path, pytest_status=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"gpu-check: all passed; results in {results}")


@needs_make
def test_a_step_over_its_limit_is_stopped_and_the_later_ones_still_run(tmp_path) -> None:
    if shutil.which("timeout") is None:
        pytest.skip("needs coreutils timeout")
    started = time.monotonic()
    done, results, calls = gpu_check(tmp_path, 0, "GPU_CHECK_LIMITS=1 0 0 0", kernels_sleep=30)
    assert time.monotonic() - started < 20
    assert done.returncode != 0 and [c.split(" --")[0] for c in calls[3:]] == ["-m sparse24.bench kernels", "-m pytest -v -m cuda -p no:cacheprovider", "-m sparse24.bench gemm", "-m sparse24.bench model"]
    assert f"gpu-check: kernels stopped at its 1 s limit (what it measured is in {results})" in done.stdout
    assert f"gpu-check: FAILED: kernels (everything measured is in {results})" in done.stdout
    assert "gpu-check: model (no limit): " in done.stdout


@needs_make
def test_bad_limits_are_refused(tmp_path) -> None:
    done, _, calls = gpu_check(tmp_path, 0, "GPU_CHECK_LIMITS=60 240")
    assert done.returncode != 0 and "GPU_CHECK_LIMITS takes 4 numbers of seconds (kernels tests gemm model), got '60 240'" in done.stderr
    assert not [c for c in calls if c.startswith("-m sparse24.bench kernels")]


@needs_make
def test_the_default_settings_are_the_ones_the_makefile_estimate_counts(tmp_path) -> None:
    """The Makefile's time estimate counts 58 GEMM cases x 2 dtypes x 3 backends and 14 model batches x 2 variants at 3 x (3 + 20) calls."""
    done, results, calls = gpu_check(tmp_path, pytest_status=0)
    assert "gpu-check: kernels (limit 60 s): " in done.stdout and "gpu-check: tests (limit 240 s): " in done.stdout
    assert "gpu-check: gemm (limit 50 s): " in done.stdout and "gpu-check: model (limit 75 s): " in done.stdout
    for suite in ("gemm", "model"):
        argv = (results / f"{suite}-args").read_text().splitlines()
        assert argv[:5] == ["-m", "sparse24.bench", suite, "--out", str(results)]
        args = _run_parser("bench").parse_args(argv[2:])
        assert (args.runs, args.reps, args.warmup) == (3, 20, 3)
        assert args.backends == ["dense", "cusparselt", "custom"] and args.dtypes is None  # fp16 and bf16 on a GPU
        assert len(gemm.cases_for(args.sets, m_values=args.m)) == 58
        assert args.variants == ["eager dense", "eager sparse"] and args.models is None and args.batches is None  # every model, its own sweep
    assert sum(len(spec.batches) for spec in model.MODELS.values()) == 14


def test_env_results_dir_is_the_folder_the_suites_write_by_default(capsys) -> None:
    from sparse24.bench.cli import default_results_dir, main
    from sparse24.bench.env import device_slug

    assert main(["env", "--results-dir"]) == 0
    assert capsys.readouterr().out == f"{Path('bench') / 'results' / device_slug()}\n" == f"{default_results_dir()}\n"
