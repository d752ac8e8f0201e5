"""``make gpu-check``'s steps, with a stand-in for the GPU machine's python: order, outputs, failures, default settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import gemm, model
from bench.cli import _run_parser

REPO = Path(__file__).resolve().parents[2]

# Plays GPU_PYTHON: records every call; `bench env --results-dir` names the folder; pytest writes its
# XML and exits with $PYTEST_STATUS; the suites record their arguments one per line.
STAND_IN = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  "-m bench env --results-dir") echo "$RESULTS" ;;
  "-m bench kernels"*) echo "kernel small_m fp16 (CUDA cores): correct" ;;
  "-m pytest"*) echo "tests/x.py::test_a PASSED"; echo "tests/x.py::test_b FAILED"; echo "<testsuites/>" > "$RESULTS/pytest.xml"; exit "$PYTEST_STATUS" ;;
  "-m bench gemm model"*) printf '%s\\n' "$@" > "$RESULTS/suite-args" ;;
esac
"""

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def gpu_check(tmp_path: Path, pytest_status: int) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    results = tmp_path / "results" / "nvidia-test-gpu"
    env = {**os.environ, "CALLS": str(tmp_path / "calls"), "RESULTS": str(results), "PYTEST_STATUS": str(pytest_status)}
    env.pop("MAKEFLAGS", None)
    done = subprocess.run(["make", "-s", "-C", str(REPO), "gpu-check", f"GPU_PYTHON={stand_in}"], env=env, capture_output=True, text=True, timeout=60)
    return done, results, (tmp_path / "calls").read_text().splitlines()


@needs_make
def test_every_step_runs_in_order_into_one_folder_and_a_failing_one_fails_the_target_at_the_end(tmp_path) -> None:
    done, results, calls = gpu_check(tmp_path, pytest_status=1)
    assert done.returncode != 0, done.stdout
    assert [c.split(" --")[0] if c.startswith("-m") else "-c" for c in calls] == [
        "-c",  # the dependency check
        "-m bench env",  # --require-gpu
        "-m bench env",  # --results-dir
        "-m bench kernels",
        "-m pytest -v -m cuda -p no:cacheprovider",
        "-m bench gemm model",  # still run after the tests failed
    ]
    assert calls[1] == "-m bench env --require-gpu" and calls[2] == "-m bench env --results-dir"
    assert calls[3] == f"-m bench kernels --require --out {results}"
    assert calls[4].endswith(f"--junitxml={results}/pytest.xml tests")
    assert (results / "pytest.xml").is_file() and (results / "pytest.log").read_text().splitlines() == ["tests/x.py::test_a PASSED", "tests/x.py::test_b FAILED"]
    assert [p.name for p in results.iterdir() if p.name.startswith(".")] == []
    assert f"gpu-check: FAILED: pytest (everything measured is in {results})" in done.stdout
    assert "kernel small_m fp16 (CUDA cores): correct" in done.stdout


@needs_make
def test_all_steps_passing_pass_the_target(tmp_path) -> None:
    done, results, calls = gpu_check(tmp_path, pytest_status=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"gpu-check: all passed; results in {results}")


@needs_make
def test_the_default_settings_are_the_ones_the_makefile_estimate_counts(tmp_path) -> None:
    """The Makefile's time estimate counts 58 GEMM cases x 2 dtypes x 3 backends and 14 model batches x 2 variants at 3 x (3 + 20) calls."""
    done, results, _ = gpu_check(tmp_path, pytest_status=0)
    argv = (results / "suite-args").read_text().splitlines()
    assert argv[:6] == ["-m", "bench", "gemm", "model", "--out", str(results)]
    args = _run_parser("bench").parse_args(argv[2:])
    assert (args.runs, args.reps, args.warmup) == (3, 20, 3)
    assert args.backends == ["dense", "cusparselt", "custom"] and args.dtypes is None  # fp16 and bf16 on a GPU
    assert len(gemm.cases_for(args.sets, m_values=args.m)) == 58
    assert args.variants == ["eager dense", "eager sparse"] and args.models is None and args.batches is None  # every model, its own sweep
    assert sum(len(spec.batches) for spec in model.MODELS.values()) == 14


def test_env_results_dir_is_the_folder_the_suites_write_by_default(capsys) -> None:
    from bench.cli import default_results_dir, main
    from bench.env import device_slug

    assert main(["env", "--results-dir"]) == 0
    assert capsys.readouterr().out == f"{Path('bench') / 'results' / device_slug()}\n" == f"{default_results_dir()}\n"
