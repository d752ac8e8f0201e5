"""Real TensorRT builds: they run where ``tensorrt`` imports and an sm_80+ GPU exists, and are skipped with the reason elsewhere."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict

import onnx
import pytest
import torch
from onnx import helper
from onnx_graphs import graph_model, tensor, two_four
from torch import nn

import sparse24
from sparse24.trt_export import (
    BuildError,
    ExportError,
    TrtRunner,
    build_engine,
    export_onnx,
    tensorrt_unavailable,
)

REASON = tensorrt_unavailable()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT and an sm_80+ GPU: {REASON}")]


def _wide_model() -> nn.Module:
    """Channels large enough (256, 3x3) that TensorRT's sparse tactics can win."""
    layers = OrderedDict(
        conv1=nn.Conv2d(256, 256, 3, padding=1),
        act1=nn.ReLU(),
        conv2=nn.Conv2d(256, 256, 3, padding=1),
        act2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        fc=nn.Linear(256, 256),
    )
    model = nn.Sequential(layers)
    sparse24.sparsify(model, "magnitude")
    return model


@pytest.fixture(scope="module")
def wide_model() -> nn.Module:
    return _wide_model()


@pytest.fixture(scope="module")
def fp16_onnx(tmp_path_factory, wide_model):
    path = tmp_path_factory.mktemp("trt") / "wide.onnx"
    export_onnx(wide_model, torch.randn(8, 256, 16, 16), path, dtype="fp16")
    return path


@pytest.fixture(scope="module")
def engines(fp16_onnx):
    name = onnx.load(str(fp16_onnx), load_external_data=False).graph.input[0].name
    shapes = {name: ((1, 256, 16, 16), (32, 256, 16, 16), (64, 256, 16, 16))}
    out = fp16_onnx.parent
    sparse = build_engine(fp16_onnx, out / "wide.sparse.engine", sparse=True, shapes=shapes, log_path=out / "sparse.log", timing_cache=out / "tc.bin")
    dense = build_engine(fp16_onnx, out / "wide.dense.engine", sparse=False, shapes=shapes)
    return sparse, dense


def test_sparse_build_reports_the_2_4_layers_as_eligible(engines, fp16_onnx) -> None:
    sparse, dense = engines
    assert sparse.sparse and not dense.sparse and sparse.precision == "fp16"
    assert sparse.log.eligible is not None, "no '(Sparsity)' lines in the build log"
    outcomes = {o.name: o for o in sparse.outcomes}
    for name in ("conv1.weight", "conv2.weight", "fc.weight"):
        assert outcomes[name].onnx_status == "2:4"
        assert outcomes[name].eligible, f"{name} not in TensorRT's eligible list {sparse.log.eligible}"
    assert sparse.log.picked is not None, "no 'picked sparse implementation' line: the log and the inspector cannot be compared"
    assert any(layer.tactic for layer in sparse.layers), "no inspector tactics: the log and the inspector cannot be compared"
    assert sparse.disagreements == ()  # compared, and they agree
    assert "--sparsity=enable" in sparse.trtexec and "--sparsity" not in dense.trtexec
    assert "(Sparsity)" in (fp16_onnx.parent / "sparse.log").read_text()
    assert (fp16_onnx.parent / "tc.bin").stat().st_size > 0
    assert any(layer.tactic for layer in sparse.layers)  # DETAILED inspector output was parsed
    json.loads(sparse.to_json())


def test_engines_match_onnxruntime_and_pytorch(engines, fp16_onnx, wide_model) -> None:
    for report in engines:
        runner = TrtRunner(report.engine_path)
        for reference in (fp16_onnx, wide_model):
            parity = runner.check(reference)
            assert parity.passed, str(parity)
        x = torch.randn(3, 256, 16, 16, device="cuda", dtype=torch.float16)
        (y,) = runner(x)
        assert y.shape == (3, 256) and y.dtype == torch.float16 and torch.isfinite(y).all()
        with pytest.raises(ValueError, match="CUDA tensor"):
            runner(x.cpu())
        with pytest.raises(ValueError, match="optimization profile"):
            runner(torch.randn(65, 256, 16, 16, device="cuda", dtype=torch.float16))


def test_engine_check_fails_against_a_different_model(engines, wide_model) -> None:
    """TrtRunner.check's broken input: a reference whose weights differ (one conv's weights scaled)."""
    other = copy.deepcopy(wide_model)
    with torch.no_grad():
        other.conv2.weight.mul_(1.5)
    parity = TrtRunner(engines[0].engine_path).check(other)
    assert not parity.passed and "FAILED" in str(parity)


@pytest.fixture(scope="module")
def token_engine(tmp_path_factory):
    from export_models import TokenModel

    model = TokenModel(vocab=1000, dim=256)
    sparse24.sparsify(model, "magnitude", policy="any")
    model.eval()
    out = tmp_path_factory.mktemp("tokens")
    onnx_path = out / "tokens.onnx"
    export_onnx(model, torch.zeros(2, 12, dtype=torch.long), onnx_path, dtype="fp16")
    shapes = {"ids": ((1, 12), (8, 12), (16, 12))}
    report = build_engine(onnx_path, out / "tokens.sparse.engine", sparse=True, shapes=shapes)
    return model, onnx_path, report


def test_engine_check_draws_token_ids_over_the_vocabulary(token_engine) -> None:
    model, onnx_path, report = token_engine
    runner = TrtRunner(report.engine_path)
    parity = runner.check(onnx_path)
    assert parity.passed, str(parity)
    assert parity.notes == ("integer input ids: values drawn from [0, 1000), the rows of the embedding table embed.weight it indexes",)
    with pytest.raises(sparse24.Sparse24Error, match=r"integer input ids is constant \(0\)"):
        runner.check(model)  # a PyTorch reference does not say which ids are valid
    parity = runner.check(model, input_ranges={"ids": (0, 1000)})
    assert parity.passed, str(parity)


def test_parser_rejection_names_the_node_and_writes_nothing(tmp_path) -> None:
    nodes = [helper.make_node("NoSuchOp", ["x"], ["h"], name="mystery_node", domain="sparse24.test"), helper.make_node("Relu", ["h"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "bad", [tensor("x", [1, 8])], [tensor("y", [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("sparse24.test", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="mystery_node"):
        build_engine(path, tmp_path / "bad.engine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_fp32_onnx_with_fp16_precision(tmp_path) -> None:
    import tensorrt as trt

    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)
    path = tmp_path / "fc.onnx"
    onnx.save(graph_model([node], [tensor("x", [8, 512])], [tensor("y", [8, 256])], {"w": two_four((256, 512), axis=1)}), str(path))
    if int(trt.__version__.split(".")[0]) >= 11:
        with pytest.raises(BuildError, match="dtype='fp16'"):
            build_engine(path, tmp_path / "fc.engine", precision="fp16")
    else:
        report = build_engine(path, tmp_path / "fc.engine", precision="fp16")
        assert report.precision == "fp16" and "--fp16" in report.trtexec
