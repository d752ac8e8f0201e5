"""to_sparse_runtime: replacement, plans and errors on CPU (reference backend); the GPU backends where a GPU is."""

from __future__ import annotations

import copy
import itertools
import re
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import sparse24.kernels.reference
import sparse24
from sparse24.runtime import BUCKETS, PROBE_TOLERANCE, SparseLinear, _auto_plan, bucket_of, describe_plan
from sparse24_testing import LooksUpTable


def sparse_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32, bias=False), nn.Conv1d(4, 8, 3))
    sparse24.sparsify(model, "magnitude", policy="any")
    return model.to(dtype)


def test_reference_backend_replaces_2_4_linears_and_matches_dense() -> None:
    model = sparse_model()
    dense = copy.deepcopy(model)
    report = sparse24.to_sparse_runtime(model, "reference")
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    assert isinstance(model[3], nn.Conv1d)
    assert [layer.name for layer in report.layers] == ["0", "2"]
    assert report.skipped == (("3", "convolutions stay on dense cuDNN (no sparse im2col path)"),)
    x = torch.randn(3, 5, 64)  # 3-D input: flattened to M = 15 rows
    assert torch.allclose(model[:3](x), dense[:3](x), atol=1e-5)
    assert model[0].values.shape == (128, 32) and model[0].meta.dtype == torch.int16
    assert "plan=(reference: all M)" in repr(model[0])


def test_dense_layers_and_attention_projections_are_left_with_reasons() -> None:
    model = nn.Sequential(nn.Linear(64, 64))
    attention = nn.MultiheadAttention(64, 4, batch_first=True)
    model.add_module("attn", attention)
    sparse24.sparsify(model, "magnitude", policy="any", exclude="0")
    report = sparse24.to_sparse_runtime(model, "reference")
    reasons = dict(report.skipped)
    assert reasons["0"] == "weight is not 2:4 along in_features"
    assert reasons["attn.out_proj"] == "MultiheadAttention reads out_proj.weight directly"
    assert reasons["attn.in_proj_weight"] == "MultiheadAttention computes this GEMM inside its own forward"  # 2:4 too: said, not passed over
    assert report.layers == ()


def test_transformer_encoder_layer_keeps_its_linears_so_its_fast_path_runs() -> None:
    """nn.TransformerEncoderLayer's eval fast path reads linear1/linear2.weight; replacing them broke its forward."""
    model = nn.Sequential(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), nn.Linear(64, 32)).eval()
    report = _pruned_to_reference_runtime(model)
    reasons = dict(report.skipped)
    assert reasons["0.linear1"] == "TransformerEncoderLayer reads linear1.weight directly"
    assert reasons["0.linear2"] == "TransformerEncoderLayer reads linear2.weight directly"
    assert [layer.name for layer in report.layers] == ["1"]


def _pruned_to_reference_runtime(model: nn.Module) -> sparse24.RuntimeReport:
    """``model`` pruned by magnitude, stripped and put on the reference runtime; its output on a ``[3, 5, 64]`` input
    the same as before (the layers kept as Linears still work)."""
    sparse24.sparsify(model, "magnitude", policy="any")
    sparse24.strip(model)
    x = torch.randn(3, 5, 64)
    with torch.no_grad():
        expected = model(x)
        report = sparse24.to_sparse_runtime(model, "reference")
        assert torch.allclose(model(x), expected, atol=1e-5)
    return report


def test_layers_a_backend_cannot_take_are_left_with_the_reason() -> None:
    """The reference backend keeps the custom kernel's compressed layout (in_features a multiple of 16: a 24-wide
    layer raised a ValueError from inside before), and cuSPARSELt torch's minimum shapes (its RuntimeError, on a GPU)."""
    from sparse24.runtime import _layer_problem

    model = nn.Sequential(nn.Linear(24, 64), nn.GELU(), nn.Linear(64, 40))
    sparse24.sparsify(model, "magnitude", policy="any")
    dense = copy.deepcopy(model)
    report = sparse24.to_sparse_runtime(model, "reference")
    assert dict(report.skipped)["0"] == "K = 24 must be a multiple of 16 for the compressed layout"
    assert [layer.name for layer in report.layers] == ["2"]
    x = torch.randn(3, 24)
    assert torch.allclose(model(x), dense(x), atol=1e-5)
    half = dense.half()
    assert _layer_problem(half[2], "cusparselt") == "weight 40x64: torch's semi-structured sparsity takes multiples of 16x16"
    assert _layer_problem(half[2], "custom") is None  # 64 in, any number out


def test_a_linear_whose_weight_a_helper_reads_stays_a_linear() -> None:
    """A layer handed to a helper that reads its ``.weight`` keeps its weight: replaced, the helper's read failed."""
    report = _pruned_to_reference_runtime(nn.Sequential(LooksUpTable(64)).eval())
    assert dict(report.skipped)["0.table"] == "LooksUpTable reads table.weight directly"
    assert [layer.name for layer in report.layers] == ["0.proj"]


def test_gpt2_conv1d_layers_run_as_sparse_linears() -> None:
    """transformers' Conv1D stores its weight [in, out] (2:4 along dim 0): it runs as a SparseLinear of the transpose."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32)
    model = transformers.GPT2LMHeadModel(config).eval()
    sparse24.sparsify(model, "magnitude", policy="any")
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        report = sparse24.to_sparse_runtime(model, "reference")
        actual = model(input_ids=ids).logits
    names = [f"transformer.h.{i}.{layer}" for i in range(2) for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert [layer.name for layer in report.layers] == names
    assert dict(report.skipped) == {"lm_head": "weight is not 2:4 along in_features"}  # tied to the embedding: left dense
    assert [layer.shape for layer in report.layers[:4]] == [(192, 64), (64, 64), (256, 64), (64, 256)]  # [out, in]
    assert all(isinstance(model.get_submodule(name), SparseLinear) for name in names)
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_t5_feed_forward_output_stays_a_linear_because_t5_reads_its_weight(feed_forward: str) -> None:
    """T5's feed-forward reads ``self.wo.weight.dtype`` in its forward: a SparseLinear there was an AttributeError."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=96, d_model=64, d_ff=128, num_layers=1, num_heads=4, d_kv=16, decoder_start_token_id=0, feed_forward_proj=feed_forward)
    model = transformers.T5ForConditionalGeneration(config).eval()
    sparse24.sparsify(model, "magnitude", policy="any")
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        expected = model(input_ids=ids, decoder_input_ids=ids).logits
        report = sparse24.to_sparse_runtime(model, "reference")
        actual = model(input_ids=ids, decoder_input_ids=ids).logits
    kept = {name: reason for name, reason in report.skipped if name.endswith(".wo")}
    reader = "T5DenseGatedActDense" if feed_forward == "gated-gelu" else "T5DenseActDense"
    assert kept == {f"{part}.block.0.layer.{index}.DenseReluDense.wo": f"{reader} reads wo.weight directly" for part, index in (("encoder", 1), ("decoder", 2))}
    assert isinstance(model.encoder.block[0].layer[0].SelfAttention.q, SparseLinear)
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("backend", ["auto", "custom", "cusparselt", "dense"])
def test_without_a_gpu_one_clear_error_and_the_model_unchanged(backend: str) -> None:
    model = sparse_model(torch.float16)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(sparse24.Sparse24Error, match="needs the model on a CUDA GPU"):
        sparse24.to_sparse_runtime(model, backend)
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        sparse24.to_sparse_runtime(sparse_model(), "fast")
    with pytest.raises(ValueError, match="buckets"):
        sparse24.to_sparse_runtime(sparse_model(), "reference", buckets=[0])


def test_buckets_and_plan_descriptions() -> None:
    assert bucket_of(1) == 1 and bucket_of(3) == 4 and bucket_of(65) == 128 and bucket_of(10**6) == BUCKETS[-1]
    plan = {1: "custom", 16: "custom", 64: "custom", 128: "cusparselt", 16384: "cusparselt"}
    assert describe_plan(plan) == "custom: M<=64, cusparselt: M>64"
    assert describe_plan({1: "dense", 2: "dense"}) == "dense: all M"
    layer = SparseLinear(sparse_model()[0].weight, None, {1: "reference", 4: "reference"}, buckets=(1, 4))
    assert layer.backend_for(3) == "reference" and layer.backend_for(100) == "reference"


def wall_clock_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def scripted_timer(milliseconds: list[float]) -> Callable[[Callable[[], object]], float]:
    """Runs ``fn`` and reports the given times in turn (the candidates are timed in the order given)."""
    times = itertools.cycle(milliseconds)

    def timer(fn: Callable[[], object]) -> float:
        fn()
        return next(times)

    return timer


PROBE_BUCKETS = (1, 16)


def probe_layer() -> tuple[torch.Tensor, torch.Tensor]:
    layer = sparse_model()[0]  # Linear(64, 128), 2:4
    return layer.weight.detach(), layer.bias.detach()


def test_auto_plan_times_a_correct_backend_and_can_choose_it() -> None:
    weight, bias = probe_layer()
    plan, timings, notes = _auto_plan(weight, bias, ["dense", "reference"], PROBE_BUCKETS, PROBE_TOLERANCE, timer=wall_clock_ms)
    assert notes == []
    assert set(timings) == set(PROBE_BUCKETS)
    for bucket, times in timings.items():
        assert set(times) == {"dense", "reference"} and all(ms > 0 for ms in times.values())
        assert plan[bucket] == min(times, key=times.get)
    reference_faster = scripted_timer([2.0, 1.0])  # dense 2 ms, reference 1 ms
    plan, _, notes = _auto_plan(weight, bias, ["dense", "reference"], PROBE_BUCKETS, PROBE_TOLERANCE, timer=reference_faster)
    assert plan == dict.fromkeys(PROBE_BUCKETS, "reference") and notes == []
    dense_faster = scripted_timer([1.0, 2.0])
    plan, _, _ = _auto_plan(weight, bias, ["dense", "reference"], PROBE_BUCKETS, PROBE_TOLERANCE, timer=dense_faster)
    assert plan == dict.fromkeys(PROBE_BUCKETS, "dense")


def test_auto_plan_rejects_a_backend_whose_output_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    right = sparse24.kernels.reference.sparse_mm
    monkeypatch.setattr(sparse24.kernels.reference, "sparse_mm", lambda *args, **kwargs: right(*args, **kwargs) * 1.1)
    weight, bias = probe_layer()
    # even when the wrong backend would be the fastest
    plan, timings, notes = _auto_plan(weight, bias, ["dense", "reference"], PROBE_BUCKETS, PROBE_TOLERANCE, timer=scripted_timer([2.0, 1.0]))
    assert plan == dict.fromkeys(PROBE_BUCKETS, "dense")
    assert all(set(times) == {"dense"} for times in timings.values())
    assert len(notes) == len(PROBE_BUCKETS)
    for bucket, note in zip(PROBE_BUCKETS, notes):
        assert re.fullmatch(rf"reference rejected at M={bucket} for \[128, 64\]: relative error 0\.1 > 0\.01", note), note


@pytest.mark.parametrize(("broken", "message"), [("sparse_mm", r"reference failed at M=\d+ for \[128, 64\]: kernel exploded"), ("compress", r"reference cannot hold \[128, 64\] torch\.float32: kernel exploded")])
def test_auto_plan_reports_a_backend_that_raises_and_does_not_choose_it(monkeypatch: pytest.MonkeyPatch, broken: str, message: str) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(sparse24.kernels.reference, broken, explode)
    weight, bias = probe_layer()
    plan, timings, notes = _auto_plan(weight, bias, ["dense", "reference"], PROBE_BUCKETS, PROBE_TOLERANCE, timer=wall_clock_ms)
    assert plan == dict.fromkeys(PROBE_BUCKETS, "dense")
    assert all(set(times) == {"dense"} for times in timings.values())
    assert notes and all(re.fullmatch(message, note) for note in notes), notes


GPU = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
GPU_BUCKETS = (1, 16, 256)


@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="needs an sm_80+ CUDA GPU")
@pytest.mark.parametrize("backend", ["dense", "cusparselt", "custom", "auto"])
def test_gpu_backends_match_a_float64_reference(backend: str, tmp_path, monkeypatch) -> None:
    from sparse24.kernels import kernels_unavailable

    if backend == "custom" and kernels_unavailable() is not None:
        pytest.skip(f"custom kernels cannot run here: {kernels_unavailable()}")
    monkeypatch.setenv("SPARSE24_RUNTIME_CACHE", str(tmp_path / "plans.json"))
    model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
    sparse24.sparsify(model, "magnitude")
    model = model.cuda().half().eval()
    original = copy.deepcopy(model)
    (w1, b1), (w2, b2) = [(layer.weight.detach().cpu().double(), layer.bias.detach().cpu().double()) for layer in (model[0], model[2])]
    report = sparse24.to_sparse_runtime(model, backend, buckets=GPU_BUCKETS)
    assert [layer.name for layer in report.layers] == ["0", "2"]
    assert isinstance(model[0], SparseLinear) and isinstance(model[2], SparseLinear)
    if backend == "auto":
        sparse = {"cusparselt"} | ({"custom"} if kernels_unavailable() is None else set())
        for layer in report.layers:
            (key,) = [k for k in report.timings if k.startswith(f"{layer.shape[0]}x{layer.shape[1]}:{layer.dtype}:")]
            assert set(report.timings[key]) == set(GPU_BUCKETS)
            for bucket, times in report.timings[key].items():
                assert set(times) == {"dense"} | sparse, (layer.name, bucket, times, report.notes)  # every sparse candidate passed the probe
                assert layer.plan[bucket] == min(times, key=times.get)
            assert model.get_submodule(layer.name).plan == layer.plan
    else:
        assert model[0].plan == model[2].plan == dict.fromkeys(GPU_BUCKETS, backend)
    with torch.no_grad():
        for m in (1, 7, 300):
            x = torch.randn(m, 1024, device="cuda", dtype=torch.half)
            expected = F.gelu(x.cpu().double() @ w1.T + b1) @ w2.T + b2
            error = float((model(x).cpu().double() - expected).abs().max() / expected.abs().max())
            assert error < 2e-2, (backend, m, error)
    if backend == "auto":
        assert (tmp_path / "plans.json").is_file() and report.timings
        again = sparse24.to_sparse_runtime(copy.deepcopy(original), "auto", buckets=GPU_BUCKETS)
        assert again.timings == {} and [l.plan for l in again.layers] == [l.plan for l in report.layers]  # from the cache


@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="needs an sm_80+ CUDA GPU")
def test_runtime_under_cuda_graph_capture_reads_the_new_input() -> None:
    model = nn.Sequential(nn.Linear(512, 512))
    sparse24.sparsify(model, "magnitude")
    model = model.cuda().half().eval()
    sparse24.to_sparse_runtime(model, "cusparselt")
    assert isinstance(model[0], SparseLinear) and set(model[0].plan.values()) == {"cusparselt"}
    x = torch.randn(32, 512, device="cuda", dtype=torch.half)
    with torch.no_grad():
        model(x)  # warm-up outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            y = model(x)
        graph.replay()
        torch.cuda.synchronize()
        first = y.clone()
        torch.testing.assert_close(first, model(x))
        new_x = torch.randn_like(x)
        x.copy_(new_x)  # new values in the captured input, in place
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(y, model(new_x))
        assert not torch.allclose(y, first), "the replay did not read the new input"
