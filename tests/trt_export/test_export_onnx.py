"""export_onnx end to end with the real torch exporter and onnxruntime: names, axes, parity, failures."""

from __future__ import annotations

import copy
import json

import onnx
import pytest
import torch
from export_models import (
    ConvNet,
    CustomOp,
    DataDependent,
    TokenModel,
    conv_example,
    token_example,
)
from onnx import helper
from onnx_graphs import dense, graph_model, tensor

import sparse24
from sparse24.demo import DigitsTransformer
from sparse24.trt_export import ExportError, ParityError, export_onnx, inspect_onnx
from sparse24.trt_export.export import WeightUse, _match_names


def _sparse(model: torch.nn.Module) -> torch.nn.Module:
    sparse24.sparsify(model, "magnitude", policy="any")
    return model


def _files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def convnet_export(tmp_path_factory):
    model = _sparse(ConvNet())
    with torch.no_grad():  # give BatchNorm statistics that matter
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    before = copy.deepcopy(model.state_dict())
    model.train()
    path = tmp_path_factory.mktemp("conv") / "convnet.onnx"
    report = export_onnx(model, conv_example(), path)
    return model, before, path, report


def test_convnet_export_keeps_every_sparsified_weight_2_4_by_name(convnet_export) -> None:
    model, _, path, report = convnet_export
    masked = [w.name for w, _ in sparse24.masked_weights(model)]
    assert sorted(masked) == ["conv.weight", "fc.weight", "grouped.weight"]  # depthwise is never masked
    assert sorted(report.sparsified) == sorted(masked) and report.unused == ()
    assert report.files == (str(path),) and path.is_file()
    assert _files(path.parent) == ["convnet.onnx"]  # no temporary files left
    sparsity = report.sparsity
    assert {layer.name: layer.op_type for layer in sparsity.sparse_layers} == {"conv.weight": "Conv", "grouped.weight": "Conv", "fc.weight": "Gemm"}
    depthwise = sparsity.layer("depthwise.weight")
    assert depthwise is not None and not depthwise.eligible and any("depthwise" in issue for issue in depthwise.issues)
    assert sparsity.layer("grouped.weight").shape == (32, 16, 3, 3)
    assert 0.5 < sparsity.sparse_share < 1.0


def test_convnet_parity_is_tight_at_two_batch_sizes(convnet_export) -> None:
    _, _, _, report = convnet_export
    parity = report.parity
    assert parity.passed and parity.batch_sizes == (2, 4)
    assert parity.worst.relative_error < 1e-5 and parity.worst.tolerance == 1e-4
    assert report.inputs == (("x", ("batch", 16, 8, 8), "float32"),)
    assert report.outputs[0][1] == ("batch", 16)
    assert report.dtype == "fp32" and report.opset >= 17


def test_export_leaves_the_model_untouched(convnet_export) -> None:
    model, before, _, _ = convnet_export
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # still in train mode
    assert len(sparse24.masked_weights(model)) == 3  # masks and enforcement still attached
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(conv_example()).sum().backward()
    optimizer.step()
    sparse24.verify(model)


def test_onnx_file_holds_the_zeros_and_a_dynamic_batch(convnet_export) -> None:
    _, _, path, _ = convnet_export
    proto = onnx.load(str(path))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv = torch.from_numpy(weights["conv.weight"].copy())
    assert sparse24.is_two_four(conv, 1) and (conv == 0).float().mean() == 0.5
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_transformer_linears_export_as_matmul_and_gemm_and_are_found_by_name(tmp_path) -> None:
    model = _sparse(DigitsTransformer()).eval()
    report = export_onnx(model, torch.randn(1, 1, 8, 8), tmp_path / "transformer.onnx")  # batch 1 is widened for tracing
    names = {w.name for w, _ in sparse24.masked_weights(model)}
    assert set(report.sparsified) == names and len(names) == 10
    by_name = {layer.name: layer for layer in report.sparsity.layers if layer.weight is not None}
    linear1 = by_name["encoder.layers.0.linear1.weight"]
    assert linear1.op_type == "MatMul" and linear1.weight.startswith("val_")  # anonymous, transposed initializer
    assert linear1.axis == 0 and linear1.shape == (64, 128) and linear1.eligible
    out_proj = by_name["encoder.layers.0.self_attn.out_proj.weight"]
    assert out_proj.op_type == "Gemm" and out_proj.weight == out_proj.name and out_proj.axis == 1
    assert by_name["encoder.layers.1.self_attn.in_proj_weight"].shape == (64, 192)
    attention = [layer for layer in report.sparsity.layers if layer.weight is None]
    assert len(attention) == 4 and all(layer.flops for layer in attention)  # Q.K^T and P.V, counted in the total
    assert report.parity.passed and report.parity.batch_sizes == (1, 3)


def test_fp16_export_stores_fp16_weights_and_types(tmp_path) -> None:
    model = _sparse(DigitsTransformer()).eval()
    report = export_onnx(model, torch.randn(2, 1, 8, 8), tmp_path / "fp16.onnx", dtype="fp16")
    proto = onnx.load(report.path)
    float_types = {t.data_type for t in proto.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    assert float_types == {onnx.TensorProto.FLOAT16}
    assert report.inputs[0][2] == "float16" and report.outputs[0][2] == "float16"
    assert report.parity.passed and report.parity.worst.tolerance == 1e-2
    assert report.parity.worst.relative_error > 1e-5  # it really ran in fp16
    assert all(layer.dtype == "float16" for layer in report.sparsity.sparse_layers)
    assert len(report.sparsified) == 10
    assert next(p for p in model.parameters()).dtype == torch.float32  # the user's model stays fp32


@pytest.mark.parametrize("model_dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_a_model_in_another_dtype_exports_with_inputs_in_its_dtype(tmp_path, model_dtype) -> None:
    model = _sparse(ConvNet()).to(model_dtype).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = export_onnx(model, conv_example().to(model_dtype), tmp_path / "m.onnx")  # it was "the model does not run on the example inputs"
    assert report.parity.passed and report.inputs[0][2] == "float32"
    assert set(report.sparsified) == {w.name for w, _ in sparse24.masked_weights(model)}
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items())


def test_token_inputs_and_dict_outputs(tmp_path) -> None:
    model = _sparse(TokenModel())
    report = export_onnx(model, token_example(), tmp_path / "tokens.onnx")
    assert [(name, shape) for name, shape, _ in report.outputs] == [("logits", ("batch", 12, 8)), ("pooled", ("batch", 32))]
    assert [o.name for o in report.parity.outputs] == ["logits", "pooled"]
    assert report.inputs[0][2] == "int64"
    assert report.parity.batch_sizes == (2, 4)
    # each output's worst run, whichever batch that is (float noise decides it, and differs between machines)
    assert [(o.shape[0] in (2, 4), o.shape[1:]) for o in report.parity.outputs] == [(True, (12, 8)), (True, (32,))]
    assert report.parity.passed
    assert set(report.sparsified) == {"up.weight", "down.weight", "head.weight"}


def test_a_dense_model_reports_zero_eligible(tmp_path) -> None:
    report = export_onnx(ConvNet(), conv_example(), tmp_path / "dense.onnx", dynamic_batch=False)
    assert report.sparsified == () and report.sparsity.sparse_layers == ()
    assert report.sparsity.sparse_share == 0.0 and report.parity.batch_sizes == (2,)
    assert report.inputs[0][1] == (2, 16, 8, 8)


def test_a_conv_pruned_along_the_wrong_axis_is_reported_by_name(tmp_path) -> None:
    model = ConvNet()
    with torch.no_grad():  # ModelOpt-SparseGPT order: groups of 4 along (C, R, S) flattened, not along C
        flat = model.conv.weight.reshape(32, -1)
        sparse24.prune_(flat, 1)
        model.conv.weight.copy_(flat.reshape(32, 16, 3, 3))
    report = export_onnx(model, conv_example(), tmp_path / "wrong.onnx")
    layer = report.sparsity.layer("conv.weight")
    assert layer.status == "not 2:4" and "along axis 1" in layer.violation
    assert "conv.weight" in str(report.sparsity) and "not 2:4" in str(report.sparsity)


def test_parity_failure_raises_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(ParityError, match="does not match PyTorch"):
        export_onnx(_sparse(TokenModel()), token_example(), tmp_path / "strict.onnx", dtype="fp16", tolerance=0.0)
    assert _files(tmp_path) == []


def test_a_vanishing_output_is_said_to_be_uncheckable(tmp_path, monkeypatch) -> None:
    """A random-init MobileNetV2's logits are about 1e-26: any difference is 'inf' of that, which said nothing useful."""
    from sparse24.trt_export import export as export_module
    from sparse24.trt_export.parity import OutputDiff, ParityReport

    vanishing = ParityReport("onnxruntime CPU", "PyTorch", (2,), (OutputDiff("logits", (2, 8), 1.2e-32, 3.1e-26, 1e-4),))
    assert vanishing.outputs[0].vanishing and not vanishing.passed
    monkeypatch.setattr(export_module, "_check_parity", lambda *args, **kwargs: vanishing)
    with pytest.raises(ParityError, match=r"cannot be checked: PyTorch's output logits is \(near\) zero everywhere \(max \|ref\| 3.1e-26; the ONNX differs by 1.2e-32\)"):
        export_onnx(_sparse(TokenModel()), token_example(), tmp_path / "vanishing.onnx")
    assert _files(tmp_path) == []


def test_exporter_failure_is_one_clear_error_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(ExportError, match="torch.onnx.export failed"):
        export_onnx(DataDependent(), torch.randn(2, 8), tmp_path / "fails.onnx")
    assert _files(tmp_path) == []


def test_exporter_failure_names_its_cause(tmp_path) -> None:
    with pytest.raises(ExportError) as raised:
        export_onnx(CustomOp(), torch.randn(2, 8), tmp_path / "fails.onnx")
    message = str(raised.value)  # the exporter's own first line is "Failed to convert ... step 3/3" in colour codes
    assert message.startswith("torch.onnx.export failed: No ONNX function found for <OpOverload(op='sparse24_tests.mixed'")
    assert "\x1b" not in message and "\n" not in message
    assert _files(tmp_path) == []


def test_bad_arguments(tmp_path) -> None:
    model, x = ConvNet(), conv_example()
    with pytest.raises(ValueError, match="dtype must be one of fp32, fp16"):
        export_onnx(model, x, tmp_path / "m.onnx", dtype="bf16")
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(model, x, tmp_path / "m.pt")
    with pytest.raises(sparse24.Sparse24Error, match="output directory does not exist"):
        export_onnx(model, x, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="only tensors"):
        export_onnx(model, (x, 3), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="empty"):
        export_onnx(model, (), tmp_path / "m.onnx")
    with pytest.raises(sparse24.Sparse24Error, match=r"does not run on the example inputs \[\[2, 3, 8, 8\]\]"):
        export_onnx(model, torch.randn(2, 3, 8, 8), tmp_path / "m.onnx")
    assert _files(tmp_path) == []


def test_a_sparsified_weight_that_is_not_2_4_in_the_graph_is_an_error() -> None:
    node = helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="node_Gemm_0", transB=1)
    report = inspect_onnx(graph_model([node], [tensor("x", [8, 512])], [tensor("y", [8, 256])], {"fc.weight": dense((256, 512))}))
    uses = {"fc.weight": WeightUse(True, ("fc.weight",), gemms=("linear",)), "unused.weight": WeightUse(True, ("unused.weight",))}
    with pytest.raises(sparse24.SparsityError, match=r"fc.weight \(node node_Gemm_0: 4 nonzeros"):
        _match_names(["fc.weight"], report, uses)
    assert _match_names(["unused.weight"], report, uses) == ([], ["unused.weight"])
    with pytest.raises(sparse24.SparsityError, match=r"other.weight \(not a parameter of the exported program\)"):
        _match_names(["other.weight"], report, uses)
    uses["fc.weight"] = WeightUse(True, ("fc.weight",), gemms=("linear_7",))  # a GEMM whose ONNX node is gone
    with pytest.raises(sparse24.SparsityError, match=r"its GEMM linear_7 has no Conv/Gemm/MatMul in the ONNX graph"):
        _match_names(["fc.weight"], inspect_onnx(graph_model([], [tensor("x", [8, 512])], [tensor("x", [8, 512])], {})), uses)


def test_report_serializes(convnet_export) -> None:
    _, _, path, report = convnet_export
    data = json.loads(report.to_json())
    assert data["parity"]["passed"] and data["path"] == str(path)
    assert {layer["status"] for layer in data["sparsity"]["layers"]} >= {"2:4"}
    assert "3 weights sparse24 made 2:4 are 2:4 in the ONNX" in str(report)
    markdown = report.to_markdown()
    assert markdown.startswith("# ONNX export: convnet.onnx") and "parity PASS" in markdown
    assert "\n\n## 2:4 sparsity of convnet.onnx\n" in markdown and "| conv.weight | Conv |" in markdown


def test_the_export_copy_is_made_on_the_cpu_tensor_by_tensor() -> None:
    from sparse24.trt_export.export import _cpu_copy

    model = torch.nn.Sequential(torch.nn.Embedding(32, 16), torch.nn.Linear(16, 32, bias=False))
    model[1].weight = model[0].weight  # tied
    model[0].weight.requires_grad_(False)
    model.register_buffer("scale", torch.ones(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied, note = _cpu_copy(model)
    assert note is None, "a CPU model needs no note"
    assert copied[1].weight is copied[0].weight, "tied weights stay tied in the copy"
    assert copied[0].weight.requires_grad is False and isinstance(copied[0].weight, torch.nn.Parameter)
    originals = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    assert not originals & {t.untyped_storage().data_ptr() for t in (*copied.parameters(), *copied.buffers())}
    with torch.no_grad():
        copied[0].weight.zero_()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the copy shares nothing with the model"


def test_the_export_expands_no_mask_of_the_users_model(tmp_path, monkeypatch) -> None:
    """Masks are expanded only on the CPU copy: expanding them on the model itself would allocate a bool tensor per weight
    on its GPU (what the H200 run of test_a_gpu_model_is_not_duplicated_on_its_gpu caught: 10.5 MB over its 8.4 MB bound)."""
    import sparse24.enforce as enforce

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
    sparse24.sparsify(model, progress=False)
    users = {id(module) for module in model.modules()}
    expanded = []
    real = enforce.mask_of

    def recording(module, param_name, dtype=torch.bool):
        expanded.append(id(module) in users)
        return real(module, param_name, dtype)

    monkeypatch.setattr(enforce, "mask_of", recording)
    report = export_onnx(model, torch.randn(2, 64), tmp_path / "m.onnx")
    assert expanded and not any(expanded), f"masks expanded: {expanded.count(True)} on the user's model, {expanded.count(False)} on the copy"
    assert sorted(report.sparsified) == ["0.weight", "2.weight"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_model_is_not_duplicated_on_its_gpu(tmp_path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1024)).cuda()
    sparse24.sparsify(model, progress=False)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    report = export_onnx(model, torch.randn(2, 1024, device="cuda"), tmp_path / "m.onnx")
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - start < weights / 4, "the export made a copy of the model on the GPU"
    assert any("CPU copy made one tensor at a time" in note for note in report.notes)
    assert all(p.device.type == "cuda" for p in model.parameters()) and sparse24.masked_weights(model)
