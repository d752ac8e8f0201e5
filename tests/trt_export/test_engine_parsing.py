"""The plain parts of the TensorRT layer, on text in TensorRT's documented formats (no TensorRT needed)."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from onnx import helper
from onnx_graphs import dense, graph_model, tensor, two_four

from sparse24.trt_export import BuildError, UnsupportedGpu, inspect_onnx
from sparse24.trt_export.engine import (
    EngineLayer,
    SparsityLog,
    _disagreements,
    check_gpu,
    gpu_problem,
    layer_outcomes,
    parse_engine_information,
    parse_shape_spec,
    parse_sparsity_log,
    precision_plan,
    profile_shapes,
    trtexec_command,
)

# trtexec 8.x, as in the TensorRT developer guide's "Structured Sparsity" section.
TRTEXEC_LOG = """\
[03/23/2021-00:14:05] [I] [TRT] Detected 1 inputs and 1 output network tensors.
[03/23/2021-00:14:05] [I] [TRT] (Sparsity) Layers eligible for sparse math: conv1, conv2, conv3
[03/23/2021-00:14:05] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers: conv2, conv3
[03/23/2021-00:14:05] [I] [TRT] [MemUsageChange] Init cuBLAS/cuBLASLt: CPU +0, GPU +8, now: CPU 0, GPU 8 (MiB)
"""


def test_trtexec_log_lines_give_both_lists() -> None:
    log = parse_sparsity_log(TRTEXEC_LOG)
    assert log == SparsityLog(eligible=("conv1", "conv2", "conv3"), picked=("conv2", "conv3"))


def test_python_logger_prefix_and_raw_messages_parse_the_same() -> None:
    python_lines = ["[11/23/2026-10:00:00] [TRT] [I] (Sparsity) Layers eligible for sparse math: a, b", "[11/23/2026-10:00:00] [TRT] [I] (Sparsity) TRT inference plan picked sparse implementation for layers: b"]
    raw = ["(Sparsity) Layers eligible for sparse math: a, b", "(Sparsity) TRT inference plan picked sparse implementation for layers: b"]
    assert parse_sparsity_log(python_lines) == parse_sparsity_log(raw) == SparsityLog(("a", "b"), ("b",))


def test_empty_lists_and_missing_lines_differ() -> None:
    empty = parse_sparsity_log(
        "[09/16/2022-09:55:37] [I] [TRT] (Sparsity) Layers eligible for sparse math:\n"
        "[09/16/2022-09:55:37] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers: \n"
    )
    assert empty == SparsityLog(eligible=(), picked=())
    assert parse_sparsity_log("[I] [TRT] nothing about sparsity\n") == SparsityLog(None, None)


def test_fused_layer_names_keep_their_commas() -> None:
    line = (
        "(Sparsity) Layers eligible for sparse math: MatMul_401, Conv_619 + Relu_620, "
        "/blocks.1/fc1/Conv + PWN(PWN(/act/Constant_output_0 + (Unnamed Layer* 1080) [Shuffle], /act/Div), /act/Erf), Gemm_725"
    )
    log = parse_sparsity_log(line)
    assert log.eligible == (
        "MatMul_401",
        "Conv_619 + Relu_620",
        "/blocks.1/fc1/Conv + PWN(PWN(/act/Constant_output_0 + (Unnamed Layer* 1080) [Shuffle], /act/Div), /act/Erf)",
        "Gemm_725",
    )
    assert log.picked is None


# TensorRT 8.x trtexec --exportLayerInfo (TREx example, A100 fp16 ResNet), trimmed.
INSPECTOR_8X = {
    "Layers": [
        {
            "Name": "Conv_3 + Relu_4",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "input.8", "Location": "Device", "Dimensions": [32, 64, 56, 56], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
            "Outputs": [{"Name": "onnx::Conv_129", "Location": "Device", "Dimensions": [32, 64, 56, 56], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
            "ParameterType": "Convolution",
            "Kernel": [3, 3],
            "OutMaps": 64,
            "Groups": 1,
            "Weights": {"Type": "Half", "Count": 36864},
            "HasSparseWeights": 0,
            "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize256x64x32_stage3_warpsize4x1x1_g1_tensor16x8x16_t1r3s3_aACCESS",
            "TacticValue": "0x0866ddee325d07a6",
        },
        {
            "Name": "Conv_5",
            "LayerType": "CaskConvolution",
            "HasSparseWeights": 1,
            "TacticName": "sm80_xmma_fprop_sparse_conv_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize128x128x64_stage3_warpsize2x2x1_g1_sptensor16x8x32",
            "TacticValue": "0x0000000000000001",
        },
        {"Name": "Reformatting CopyNode for Output Tensor 0 to Conv_5", "LayerType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x00000000000003e8"},
    ],
    "Bindings": ["input", "output"],
}


def test_inspector_8x_detailed_layers() -> None:
    layers = parse_engine_information(json.dumps(INSPECTOR_8X))
    assert [e.name for e in layers] == ["Conv_3 + Relu_4", "Conv_5", "Reformatting CopyNode for Output Tensor 0 to Conv_5"]
    dense_conv, sparse_conv, reformat = layers
    assert dense_conv.has_sparse_weights is False and not dense_conv.sparse_kernel
    assert sparse_conv.has_sparse_weights is True and sparse_conv.sparse_kernel
    assert reformat.tactic is None and reformat.has_sparse_weights is None and not reformat.sparse_kernel


def test_inspector_10x_metadata_and_sparse_weights_with_a_dense_tactic() -> None:
    data = {
        "Layers": [
            {
                "Name": "resnetv15_dense0_fwd",
                "LayerType": "CaskConvolution",
                "HasSparseWeights": 1,
                "TacticName": "sm70_xmma_fprop_conv1x1_i8f32_f32_f32_nchw_vect_c_4kcrs_vect_c_4_nchw_simt_small_batch_bias_relu",
                "TacticValue": "0xc073b0053ce90eac",
                "StreamId": 0,
                "Metadata": "[ONNX Layer: resnetv15_dense0_fwd]\u001f[ONNX Layer: resnetv15_relu0]",
            }
        ],
        "Bindings": ["data", "resnetv15_dense0_fwd"],
    }
    (layer,) = parse_engine_information(json.dumps(data))
    assert layer.has_sparse_weights is True and not layer.sparse_kernel  # 2:4 weights, dense kernel
    assert layer.onnx_nodes == ("resnetv15_dense0_fwd", "resnetv15_relu0")


def test_inspector_11x_io_tensors_and_names_only() -> None:
    data = {
        "Layers": [{"Name": "node_Conv_3", "LayerType": "CaskConvolution", "TacticName": "sm90_xmma_fprop_sparse_conv_f16_sptensor", "Metadata": "[ONNX Layer: node_Conv_3]"}],
        "I/O Tensors": [{"Name": "x", "IOMode": "Input", "DataType": "Half", "Dimensions": [-1, 256, 8, 8]}],
    }
    (layer,) = parse_engine_information(json.dumps(data))
    assert layer.sparse_kernel and layer.has_sparse_weights is None and layer.onnx_nodes == ("node_Conv_3",)
    names_only = parse_engine_information(json.dumps({"Layers": ["conv1 + relu1", "fc"], "Bindings": ["x", "y"]}))
    assert [(e.name, e.tactic) for e in names_only] == [("conv1 + relu1", None), ("fc", None)]
    with pytest.raises(ValueError, match="not JSON"):
        parse_engine_information("{not json")


def _onnx_report():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="node_Conv_1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="node_Relu_2"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="node_Conv_3", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["y", "w3"], ["z"], name="node_Conv_4", pads=[1, 1, 1, 1]),
    ]
    inits = {"w1": two_four((256, 256, 3, 3), axis=1), "w2": two_four((256, 256, 3, 3), axis=1, seed=1), "w3": dense((256, 256, 3, 3))}
    return inspect_onnx(graph_model(nodes, [tensor("x", ["batch", 256, 8, 8])], [tensor("z", ["batch", 256, 8, 8])], inits))


def test_layer_outcomes_join_onnx_log_and_inspector_by_node_name() -> None:
    log = SparsityLog(eligible=("node_Conv_1 + node_Relu_2", "node_Conv_3"), picked=("node_Conv_3",))
    layers = (
        EngineLayer("node_Conv_1 + node_Relu_2", "CaskConvolution", "sm80_xmma_fprop_implicit_gemm_f16f16", True),
        EngineLayer("node_Conv_3", "CaskConvolution", "sm80_xmma_fprop_sparse_conv_f16f16_sptensor16x8x32", True),
        EngineLayer("node_Conv_4", "CaskConvolution", "sm80_xmma_fprop_implicit_gemm_f16f16", False),
    )
    outcomes = {o.node: o for o in layer_outcomes(_onnx_report(), log, layers)}
    assert set(outcomes) == {"node_Conv_1", "node_Conv_3", "node_Conv_4"}
    first, second, third = outcomes["node_Conv_1"], outcomes["node_Conv_3"], outcomes["node_Conv_4"]
    assert (first.onnx_status, first.eligible, first.picked, first.sparse_kernel) == ("2:4", True, False, False)
    assert first.trt_layers == ("node_Conv_1 + node_Relu_2",)
    assert (second.eligible, second.picked, second.sparse_kernel) == (True, True, True)
    assert (third.onnx_status, third.eligible, third.picked, third.sparse_kernel) == ("not 2:4", False, False, False)
    assert _disagreements(log, layers) == []


def test_layer_outcomes_without_log_lines_or_tactics_say_unknown() -> None:
    outcomes = layer_outcomes(_onnx_report(), SparsityLog(None, None), (EngineLayer("node_Conv_3"),))
    assert all(o.eligible is None and o.picked is None and o.sparse_kernel is None for o in outcomes)


def test_disagreements_between_log_and_inspector_are_reported() -> None:
    log = SparsityLog(eligible=("a", "b"), picked=("a",))
    layers = (EngineLayer("a", tactic="sm80_xmma_gemm_f16f16_dense"), EngineLayer("b", tactic="sm80_xmma_gemm_sparse_f16"))
    problems = _disagreements(log, layers)
    assert len(problems) == 2
    assert "a picked a sparse implementation" in problems[0] and "b runs sparse tactic" in problems[1]


def test_shape_specs_in_trtexec_syntax() -> None:
    assert parse_shape_spec("x:1x3x224x224,mask:1x128") == {"x": (1, 3, 224, 224), "mask": (1, 128)}
    assert parse_shape_spec("'input:0':8x16,s:scalar") == {"input:0": (8, 16), "s": ()}
    for bad in ("x", "x:1xa", "x:-1x3"):
        with pytest.raises(ValueError, match="shape"):
            parse_shape_spec(bad)


def test_profile_shapes_default_dynamic_dims_to_one_and_validate() -> None:
    inputs = [("x", (-1, 3, 224, 224)), ("ids", (1, 128))]
    profiles, notes = profile_shapes(inputs, None)
    assert profiles == {"x": ((1, 3, 224, 224),) * 3} and "x" in notes[0]
    profiles, notes = profile_shapes(inputs, {"x": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))})
    assert profiles == {"x": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))} and notes == []
    assert profile_shapes(inputs, {"x": (4, 3, 224, 224)})[0] == {"x": ((4, 3, 224, 224),) * 3}
    with pytest.raises(ValueError, match="inputs are x, ids"):
        profile_shapes(inputs, {"y": (1, 2)})
    with pytest.raises(ValueError, match="rank"):
        profile_shapes(inputs, {"x": (1, 3, 224)})
    with pytest.raises(ValueError, match="fixed dimension"):
        profile_shapes(inputs, {"x": (1, 4, 224, 224)})
    with pytest.raises(ValueError, match="min <= opt <= max"):
        profile_shapes(inputs, {"x": ((8, 3, 224, 224), (1, 3, 224, 224), (32, 3, 224, 224))})


def test_precision_plan_per_tensorrt_version() -> None:
    assert precision_plan(11, "fp16", None) == ("fp16", False)
    assert precision_plan(11, "fp32", "fp32") == ("fp32", False)
    with pytest.raises(BuildError, match="export the ONNX with dtype='fp16'"):
        precision_plan(11, "fp32", "fp16")
    assert precision_plan(10, "fp16", None) == ("fp16", True)  # 10.x needs BuilderFlag.FP16 for fp16 kernels
    assert precision_plan(10, "fp32", "fp16") == ("fp16", True)
    assert precision_plan(8, "fp32", None) == ("fp32", False)
    with pytest.raises(ValueError, match="precision"):
        precision_plan(10, "fp32", "int8")


def test_trtexec_command_matches_the_build() -> None:
    profiles = {"x": ((1, 256, 8, 8), (32, 256, 8, 8), (256, 256, 8, 8))}
    line = trtexec_command("m dir/model.onnx", "out/model.sparse.engine", sparse=True, fp16_flag=True, workspace_bytes=4 << 30, profiles=profiles, timing_cache="tc.bin")
    args = shlex.split(line)
    assert args[:3] == ["trtexec", "--onnx=m dir/model.onnx", "--saveEngine=out/model.sparse.engine"]
    assert "--sparsity=enable" in args and "--fp16" in args and "--memPoolSize=workspace:4096" in args
    assert "--minShapes=x:1x256x8x8" in args and "--optShapes=x:32x256x8x8" in args and "--maxShapes=x:256x256x8x8" in args
    assert "--timingCacheFile=tc.bin" in args and "--profilingVerbosity=detailed" in args
    dense_line = shlex.split(trtexec_command("m.onnx", "m.dense.engine", sparse=False, fp16_flag=False, workspace_bytes=1 << 30))
    assert "--sparsity=enable" not in dense_line and "--fp16" not in dense_line
    assert not any(a.startswith("--minShapes") for a in dense_line)


def test_gpu_problems_name_the_requirement() -> None:
    assert "no CUDA GPU" in gpu_problem(None, None, sparse=False)
    assert gpu_problem("Tesla T4", (7, 5), sparse=True) == "Tesla T4 is sm_75: 2:4 sparse tensor cores need Ampere (sm_80) or newer"
    assert gpu_problem("Tesla T4", (7, 5), sparse=False) is None  # a dense engine builds anywhere
    assert gpu_problem("NVIDIA A100", (8, 0), sparse=True) is None
    assert gpu_problem("NVIDIA H100", (9, 0), sparse=True) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_check_gpu_without_a_gpu() -> None:
    with pytest.raises(UnsupportedGpu, match="no CUDA GPU is visible"):
        check_gpu(sparse=False)
