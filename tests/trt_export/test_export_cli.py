"""``sparse24 export``, ``inspect`` and ``build`` on the command line: outputs, reports and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sparse24
from sparse24.cli import main
from sparse24.demo import DigitsTransformer
from sparse24.trt_export import tensorrt_unavailable

MODEL = "sparse24.demo:DigitsTransformer"
MODELS_FILE = Path(__file__).with_name("export_models.py")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = DigitsTransformer()
    sparse24.sparsify(model, "magnitude", policy="any")
    path = tmp_path_factory.mktemp("cli") / "sparse.safetensors"
    sparse24.save(model, path)
    return path


@pytest.fixture(scope="module")
def exported(sparse_file) -> tuple[Path, Path]:
    onnx_path, report = sparse_file.with_name("model.onnx"), sparse_file.with_name("export.json")
    code = main(["export", MODEL, "--weights", str(sparse_file), "--input-shape", "1x1x8x8", "--dtype", "fp16", "--out", str(onnx_path), "--report", str(report)])
    assert code == 0
    return onnx_path, report


def test_export_writes_the_onnx_and_a_json_report(exported) -> None:
    onnx_path, report = exported
    assert onnx_path.is_file()
    data = json.loads(report.read_text())
    assert data["dtype"] == "fp16" and data["parity"]["passed"]
    assert len(data["sparsified"]) == 10 and data["unused"] == []
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["export.json", "model.onnx", "sparse.safetensors"]


def test_inspect_prints_the_table_and_json(capsys, exported) -> None:
    onnx_path, _ = exported
    code, out, _ = run(capsys, "inspect", str(onnx_path))
    assert code == 0 and "10 of 10 constant-weight GEMM/conv layers are 2:4 and eligible" in out
    assert "encoder.layers.0.linear1.weight" in out
    code, out, _ = run(capsys, "inspect", str(onnx_path), "--json", "--dim", "batch=16")
    data = json.loads(out)
    assert data["sparse_share"] > 0.9 and any("batch=16" in note for note in data["notes"])
    report = onnx_path.with_name("inspect.md")
    code, _, _ = run(capsys, "inspect", str(onnx_path), "--report", str(report))
    assert code == 0 and report.read_text().startswith("# 2:4 sparsity of model.onnx")
    report.unlink()


@pytest.mark.parametrize(
    ("dim", "words"),
    [
        ("batch", ["--dim batch: expected NAME=N"]),
        ("=16", ["--dim =16: expected NAME=N"]),
        ("batch=x", ["--dim batch=x"]),
        ("batch=0", ["--dim batch=0"]),
        ("batch=-2", ["--dim batch=-2"]),
        ("btach=16", ["symbolic dimension 'btach' is not in", "dimensions are batch"]),
    ],
)
def test_inspect_dim_errors_are_one_line(capsys, exported, dim, words) -> None:
    onnx_path, _ = exported
    code, out, err = run(capsys, "inspect", str(onnx_path), "--dim", dim)
    assert code == 2 and out == ""
    one_line_error(err, *words)


def test_export_with_an_example_callable_from_a_file(capsys, tmp_path) -> None:
    out = tmp_path / "tokens.onnx"
    code, stdout, _ = run(capsys, "export", f"{MODELS_FILE}:TokenModel", "--example", f"{MODELS_FILE}:token_example", "--out", str(out), "--static-batch")
    assert code == 0 and out.is_file()
    assert "inputs: ids 2x12 int64" in stdout and "parity PASS" in stdout


def test_export_errors_are_one_line(capsys, tmp_path, sparse_file) -> None:
    out = str(tmp_path / "m.onnx")
    code, _, err = run(capsys, "export", MODEL, "--out", out)
    assert code == 2
    one_line_error(err, "--input-shape or --example")
    code, _, err = run(capsys, "export", MODEL, "--input-shape", "1xax8", "--out", out)
    assert code == 2
    one_line_error(err, "--input-shape 1xax8")
    code, _, err = run(capsys, "export", MODEL, "--input-shape", "1x3x8x8", "--weights", str(sparse_file), "--out", out)
    assert code == 2
    one_line_error(err, "does not run on the example inputs")
    code, _, err = run(capsys, "export", MODEL, "--input-shape", "1x1x8x8", "--out", str(tmp_path / "no" / "m.onnx"))
    assert code == 2
    one_line_error(err, "output directory does not exist")
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, "export", MODEL, "--input-shape", "fp8:1x1x8x8", "--out", out)
    assert code == 2
    one_line_error(err, "--input-shape fp8:1x1x8x8: dtype must be one of float32, float16, bfloat16, int64, int32, bool (or fp32, fp16, bf16)")
    assert list(tmp_path.iterdir()) == []


def test_input_shape_takes_the_short_dtype_names(capsys, tmp_path, sparse_file) -> None:
    out = tmp_path / "m.onnx"
    code, printed, err = run(capsys, "export", MODEL, "--weights", str(sparse_file), "--input-shape", "bf16:1x1x8x8", "--out", str(out))
    assert code == 0, err  # a bf16 example: the fp32 reference runs it as fp32, the graph's input is float32
    assert out.is_file() and "float32" in printed


def test_inspect_and_build_missing_file_exit_2_through_the_real_command(tmp_path) -> None:
    for command in ("inspect", "build"):
        result = subprocess.run([sys.executable, "-m", "sparse24", command, str(tmp_path / "missing.onnx")], capture_output=True, text=True)
        assert result.returncode == 2
        one_line_error(result.stderr, "ONNX file not found")


def test_build_shape_arguments_are_checked_first(capsys, exported) -> None:
    onnx_path, _ = exported
    code, _, err = run(capsys, "build", str(onnx_path), "--min-shapes", "x:1x1x8x8")
    assert code == 2
    one_line_error(err, "--min-shapes, --opt-shapes and --max-shapes together")
    code, _, err = run(capsys, "build", str(onnx_path), "--shapes", "x:1xbx8")
    assert code == 2
    one_line_error(err, "dimensions must be integers")


@pytest.mark.skipif(tensorrt_unavailable() is None, reason="TensorRT and an sm_80+ GPU are here: test_tensorrt.py builds for real")
def test_build_without_tensorrt_says_why(capsys, exported) -> None:
    onnx_path, _ = exported
    code, out, _ = run(capsys, "build", str(onnx_path), "--skip-unavailable")
    assert code == 0 and out.strip() == f"skipped the TensorRT build: {tensorrt_unavailable()}"
    code, _, err = run(capsys, "build", str(onnx_path))
    assert code == 2
    one_line_error(err, tensorrt_unavailable().split(";")[0])
