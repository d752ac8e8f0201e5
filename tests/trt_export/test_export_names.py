"""The export's by-name 2:4 check with the real exporter: every masked weight is found, or the export fails naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_models import CapitalNames, ComputedWeight, DeadLayer, TiedLinears, WeightWithActivations

import sparse24
from sparse24.cli import main
from sparse24.trt_export import export_onnx, inspect_onnx


def _sparse(model: torch.nn.Module) -> torch.nn.Module:
    sparse24.sparsify(model, "magnitude", policy="any")
    return model.eval()


def test_capitalised_module_names_are_found_and_credited(tmp_path) -> None:
    report = export_onnx(_sparse(CapitalNames()), torch.randn(2, 5, 32), tmp_path / "caps.onnx")
    assert sorted(report.sparsified) == ["Down.0.weight", "Up.weight"] and report.unused == ()
    assert {layer.source for layer in report.sparsity.sparse_layers} == {"Up.weight", "Down.0.weight"}


def test_a_weight_computed_in_forward_fails_the_export_naming_the_op(tmp_path) -> None:
    with pytest.raises(sparse24.SparsityError, match=r"fc\.weight \(its GEMM \w+ uses a weight computed from it by aten\.mul"):
        export_onnx(_sparse(ComputedWeight()), torch.randn(2, 32), tmp_path / "computed.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_inspector_does_not_credit_a_computed_weight_to_the_bias(tmp_path) -> None:
    model = ComputedWeight().eval()
    path = tmp_path / "computed.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(2, 32),), dynamo=True, verbose=False).save(path)
    (layer,) = inspect_onnx(path).layers
    assert layer.source is None and layer.fx_node is not None  # the GEMM's weight operand is %mul, not a parameter


def test_a_weight_read_with_activations_only_fails(tmp_path) -> None:
    with pytest.raises(sparse24.SparsityError, match=r"fc\.weight \(read only by mul with activations, never as a GEMM weight\)"):
        export_onnx(_sparse(WeightWithActivations()), torch.randn(2, 32), tmp_path / "elementwise.onnx")


def test_a_layer_forward_never_calls_is_listed_as_unused(tmp_path) -> None:
    report = export_onnx(_sparse(DeadLayer()), torch.randn(2, 32), tmp_path / "dead.onnx")
    assert report.sparsified == ("fc.weight",) and report.unused == ("spare.weight",)
    assert "never read by the exported program (dead code in forward): spare.weight" in str(report)


def test_tied_weights_are_found_under_both_names(tmp_path) -> None:
    report = export_onnx(_sparse(TiedLinears()), torch.randn(2, 32), tmp_path / "tied.onnx")
    assert sorted(report.sparsified) == ["a.weight", "b.weight"]


def test_a_dense_export_says_there_was_nothing_to_check(tmp_path, caplog) -> None:
    report = export_onnx(DeadLayer().eval(), torch.randn(2, 32), tmp_path / "dense.onnx")
    assert report.sparsified == () and "no 2:4 weights to check" in str(report)
    assert "no 2:4 weights to check" in caplog.text


def test_t5_encoder_every_masked_weight_is_found(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    model = transformers.T5EncoderModel(config).eval()
    masked = {layer.name for layer in sparse24.sparsify(model, "magnitude", policy="any").sparse_layers}
    assert len(masked) == 12 and all(".SelfAttention." in n or ".DenseReluDense." in n for n in masked)
    report = export_onnx(model, torch.randint(0, 64, (2, 8)), tmp_path / "t5.onnx")
    assert set(report.sparsified) == masked and report.unused == ()
    assert {layer.source for layer in report.sparsity.sparse_layers} == masked


def test_export_cli_exits_1_naming_the_weight(tmp_path, capsys) -> None:
    path = tmp_path / "models.py"
    path.write_text(
        "import sparse24, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from export_models import ComputedWeight\n"
        "def build():\n    m = ComputedWeight()\n    sparse24.sparsify(m, policy='any')\n    return m\n"
    )
    out = tmp_path / "m.onnx"
    assert main(["export", f"{path}:build", "--input-shape", "2x32", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sparse24: not 2:4: ") and "fc.weight" in err and "aten.mul" in err
    assert not out.exists()
