"""inspect_onnx on hand-built ONNX graphs: TensorRT's axis per op, the walk back to the constant, preconditions, FLOPs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import dense, graph_model, tensor, two_four

from sparse24 import Sparse24Error
from sparse24.trt_export import inspect_onnx


def conv_model(weight: np.ndarray, *, group: int = 1, hw: int = 8):
    k, c, r, s = weight.shape
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=group, pads=[r // 2] * 4)
    return graph_model([node], [tensor("x", ["batch", c * group, hw, hw])], [tensor("y", ["batch", k, hw, hw])], {"w": weight})


def test_conv_kcrs_is_checked_along_c_for_every_k_r_s() -> None:
    weight = two_four((256, 64, 3, 3), axis=1)
    layer = inspect_onnx(conv_model(weight)).layer("conv")
    assert layer.axis == 1 and layer.two_four and layer.eligible and layer.status == "2:4"
    assert layer.weight == "w" and layer.shape == (256, 64, 3, 3) and layer.dtype == "float32"
    assert layer.flops == 2 * 256 * 8 * 8 * 64 * 3 * 3  # batch taken as 1


def test_conv_pruned_along_the_kernel_positions_is_not_2_4_and_names_the_group() -> None:
    weight = two_four((256, 64 * 9), axis=1).reshape(256, 64, 3, 3)  # ModelOpt's SparseGPT order: groups along (C, R, S) flattened
    report = inspect_onnx(conv_model(weight))
    layer = report.layer("conv")
    assert not layer.two_four and not layer.eligible and layer.status == "not 2:4"
    assert "along axis 1" in layer.violation
    assert report.sparse_layers == () and report.sparse_share == 0.0
    assert "conv" in str(report) and "not 2:4" in str(report)


def test_grouped_conv_checks_channels_within_each_group_and_depthwise_is_not_eligible() -> None:
    grouped = inspect_onnx(conv_model(two_four((256, 32, 3, 3), axis=1), group=2)).layer("conv")
    assert grouped.eligible and grouped.flops == 2 * 256 * 64 * 32 * 9
    depthwise = inspect_onnx(conv_model(np.zeros((64, 1, 3, 3), np.float32), group=64)).layer("conv")
    assert not depthwise.eligible
    assert any("depthwise" in issue for issue in depthwise.issues)


def test_channels_not_a_multiple_of_4_is_an_issue() -> None:
    layer = inspect_onnx(conv_model(np.zeros((256, 6, 3, 3), np.float32))).layer("conv")
    assert not layer.two_four and not layer.eligible
    assert any("reduction size 6 is not a multiple of 4" in issue for issue in layer.issues)


@pytest.mark.parametrize("trans_b", [1, 0])
def test_gemm_b_axis_follows_transB(trans_b: int) -> None:
    k, n = 512, 256
    weight = two_four((n, k), axis=1) if trans_b else two_four((k, n), axis=0)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=trans_b)
    model = graph_model([node], [tensor("x", ["batch", k])], [tensor("y", ["batch", n])], {"w": weight})
    layer = inspect_onnx(model).layer("fc")
    assert layer.axis == (1 if trans_b else 0) and layer.eligible
    assert layer.flops == 2 * n * k
    # The same array read with the other transB runs its groups along the wrong axis.
    flipped = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1 - trans_b)
    wrong = graph_model([flipped], [tensor("x", ["batch", n if trans_b else k])], [tensor("y", ["batch", k if trans_b else n])], {"w": weight})
    assert not inspect_onnx(wrong).layer("fc").two_four


def test_gemm_with_a_constant_left_operand() -> None:
    weight = two_four((256, 512), axis=1)  # A [M, K]: reduction along axis 1
    node = helper.make_node("Gemm", ["w", "x"], ["y"], name="fc")
    model = graph_model([node], [tensor("x", [512, 16])], [tensor("y", [256, 16])], {"w": weight})
    layer = inspect_onnx(model).layer("fc")
    assert layer.axis == 1 and layer.eligible


def test_matmul_constant_b_is_checked_along_axis_0_and_constant_a_along_its_last_axis() -> None:
    b = two_four((512, 256), axis=0)
    node = helper.make_node("MatMul", ["x", "b"], ["y"], name="mm")
    model = graph_model([node], [tensor("x", ["batch", 128, 512])], [tensor("y", ["batch", 128, 256])], {"b": b})
    layer = inspect_onnx(model, symbols={"batch": 4}).layer("mm")
    assert layer.axis == 0 and layer.eligible and layer.flops == 2 * 4 * 128 * 256 * 512

    with pytest.raises(ValueError, match=r"symbolic dimension 'btach' is not in test: its inputs' symbolic dimensions are batch"):
        inspect_onnx(model, symbols={"btach": 4})  # a misspelt name is an error, not silently batch=1

    a = two_four((256, 512), axis=1)
    node = helper.make_node("MatMul", ["a", "x"], ["y"], name="mm")
    model = graph_model([node], [tensor("x", [512, 64])], [tensor("y", [256, 64])], {"a": a})
    assert inspect_onnx(model).layer("mm").axis == 1 and inspect_onnx(model).layer("mm").eligible
    with pytest.raises(ValueError, match="its inputs have no symbolic dimensions"):
        inspect_onnx(model, symbols={"batch": 4})


def test_walks_back_through_transpose_cast_identity_to_the_named_initializer() -> None:
    stored = two_four((256, 512), axis=1)  # a Linear weight [out, in]; the graph transposes it for MatMul
    nodes = [
        helper.make_node("Identity", ["fc.weight"], ["w_id"]),
        helper.make_node("Transpose", ["w_id"], ["w_t"], perm=[1, 0]),
        helper.make_node("Cast", ["w_t"], ["w_h"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["x", "w_h"], ["y"], name="mm"),
    ]
    model = graph_model(nodes, [tensor("x", ["batch", 512], TensorProto.FLOAT16)], [tensor("y", ["batch", 256], TensorProto.FLOAT16)], {"fc.weight": stored})
    layer = inspect_onnx(model).layer("fc.weight")
    assert layer.node == "mm" and layer.weight == "fc.weight"
    assert layer.axis == 1 and layer.shape == (256, 512) and layer.eligible
    assert layer.dtype == "float16"
    assert layer.path == ("Cast(to=float16)", "Transpose(perm=[1, 0])", "Identity")
    # Without the Transpose the same stored array would be read along its output axis: not 2:4.
    direct = graph_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [tensor("x", ["batch", 256])], [tensor("y", ["batch", 512])], {"w": stored})
    assert not inspect_onnx(direct).layer("mm").two_four


def test_transpose_without_perm_reverses_the_axes() -> None:
    stored = two_four((256, 512), axis=1)
    nodes = [helper.make_node("Transpose", ["w"], ["w_t"]), helper.make_node("MatMul", ["x", "w_t"], ["y"], name="mm")]
    model = graph_model(nodes, [tensor("x", [8, 512])], [tensor("y", [8, 256])], {"w": stored})
    assert inspect_onnx(model).layer("mm").axis == 1 and inspect_onnx(model).layer("mm").two_four


def test_constant_node_weights_are_found() -> None:
    weight = two_four((256, 512), axis=1)
    nodes = [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight, "w_value")),
        helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1),
    ]
    model = graph_model(nodes, [tensor("x", [8, 512])], [tensor("y", [8, 256])], {})
    layer = inspect_onnx(model).layer("fc")
    assert layer.weight == "w_value" and layer.eligible


def test_dequantized_int8_weight_counts_zero_point_values_as_zeros() -> None:
    pattern = two_four((256, 512), axis=1)
    zero_point = np.int8(3)
    quantized = np.where(pattern != 0, np.clip(np.round(pattern * 20), -100, 100), 0).astype(np.int8) + zero_point
    quantized[pattern != 0] = np.where(quantized[pattern != 0] == zero_point, zero_point + 1, quantized[pattern != 0])
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"]),
        helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1),
    ]
    inits = {"wq": quantized, "scale": np.array(0.05, np.float32), "zp": np.array(zero_point, np.int8)}
    model = graph_model(nodes, [tensor("x", [8, 512])], [tensor("y", [8, 256])], inits)
    layer = inspect_onnx(model).layer("fc")
    assert layer.two_four and layer.dtype == "int8" and layer.path == ("DequantizeLinear",)
    # The raw int8 values are mostly nonzero (zero point 3): read without the zero point they are dense.
    assert np.count_nonzero(quantized) > 0.9 * quantized.size


def test_activation_times_activation_counts_in_the_total_but_is_never_eligible() -> None:
    weight = two_four((64, 64), axis=0)
    nodes = [
        helper.make_node("MatMul", ["q", "k"], ["scores"], name="attention"),
        helper.make_node("MatMul", ["scores", "w"], ["y"], name="proj"),
    ]
    inputs = [tensor("q", ["batch", 64, 32]), tensor("k", ["batch", 32, 64])]
    model = graph_model(nodes, inputs, [tensor("y", ["batch", 64, 64])], {"w": weight})
    report = inspect_onnx(model)
    attention = report.layer("attention")
    assert attention.weight is None and attention.status == "no constant weight" and not attention.eligible
    assert attention.flops == 2 * 64 * 64 * 32
    assert report.total_flops == attention.flops + report.layer("proj").flops
    assert report.sparse_share == pytest.approx(report.layer("proj").flops / report.total_flops)


def test_a_dense_model_reports_zero_eligible() -> None:
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)
    report = inspect_onnx(graph_model([node], [tensor("x", [8, 512])], [tensor("y", [8, 256])], {"w": dense((256, 512))}))
    assert report.sparse_layers == () and report.sparse_flops == 0 and report.sparse_share == 0.0
    assert report.layer("fc").violation.startswith("4 nonzeros in the group of 4 at [0, 0]")
    assert report.summary().startswith("0 of 1 ")


def test_small_and_misaligned_layers_are_warned_not_blocked() -> None:
    small = two_four((64, 64), axis=1)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)
    layer = inspect_onnx(graph_model([node], [tensor("x", [8, 64])], [tensor("y", [8, 64])], {"w": small})).layer("fc")
    assert layer.eligible and any("small" in w for w in layer.warnings)
    misaligned = two_four((260, 516), axis=1)
    layer = inspect_onnx(graph_model([node], [tensor("x", [8, 516])], [tensor("y", [8, 260])], {"w": misaligned})).layer("fc")
    assert layer.eligible and any("% 16" in w for w in layer.warnings)


def test_unsupported_weight_type_is_an_issue() -> None:
    weight = two_four((256, 512), axis=1, dtype=np.float64)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)
    model = graph_model([node], [tensor("x", [8, 512], TensorProto.DOUBLE)], [tensor("y", [8, 256], TensorProto.DOUBLE)], {"w": weight})
    layer = inspect_onnx(model).layer("fc")
    assert layer.two_four and not layer.eligible and layer.status == "2:4, not eligible"
    assert any("float64" in issue for issue in layer.issues)


def test_reports_serialize_and_files_are_read_with_external_data(tmp_path) -> None:
    weight = two_four((256, 64, 3, 3), axis=1)
    model = conv_model(weight)
    path = tmp_path / "conv.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="conv.onnx.data", size_threshold=0)
    assert (tmp_path / "conv.onnx.data").is_file()
    report = inspect_onnx(path)
    assert report.layer("conv").eligible and report.path == str(path)
    data = json.loads(report.to_json())
    assert data["layers"][0]["status"] == "2:4" and data["sparse_share"] == 1.0
    assert "| w | Conv | w | 256x64x3x3 | 1 | float32 | 2:4 |" in report.to_markdown()  # no PyTorch name: the constant's


def test_missing_and_unreadable_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(Sparse24Error, match="ONNX file not found"):
        inspect_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff not a protobuf \xff" * 10)
    with pytest.raises(Sparse24Error, match="not a readable ONNX model"):
        inspect_onnx(garbage)
