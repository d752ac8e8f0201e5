"""sparse24.sparsify: eligibility, all-or-nothing failures, Taylor scores, reports."""

from __future__ import annotations

import copy
import importlib
import json
import logging
import re
import signal
from collections import OrderedDict

import pytest
import torch
from torch import nn

import sparse24
from sparse24 import MASK_SUFFIX, two_four_mask
from sparse24.mask import is_two_four

# the package exports the function sparsify under the submodule's name
sparsify_module = importlib.import_module("sparse24.sparsify")


def linears(**sizes: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((name, nn.Linear(*size)) for name, size in sizes.items()))


def layers_of(report: sparse24.SparsityReport) -> dict[str, sparse24.LayerReport]:
    return {layer.name: layer for layer in report.layers}


# ---------------------------------------------------------------- eligibility


def test_reasons_under_tensorrt_and_any_policies():
    model = linears(odd=(6, 8), short=(8, 8), narrow=(16, 12), ok=(16, 16))
    trt = layers_of(sparse24.sparsify(copy.deepcopy(model)))
    assert "not divisible by 4" in trt["odd.weight"].reason
    assert "TensorRT" in trt["short.weight"].reason and "reduction" in trt["short.weight"].reason
    assert "16" in trt["short.weight"].reason and "policy='any'" in trt["short.weight"].reason
    assert "TensorRT" in trt["narrow.weight"].reason and "output" in trt["narrow.weight"].reason
    assert "8" in trt["narrow.weight"].reason
    assert [name for name, layer in trt.items() if layer.sparse] == ["ok.weight"]

    anything = layers_of(sparse24.sparsify(model, policy="any"))
    assert "not divisible by 4" in anything["odd.weight"].reason
    assert [name for name, layer in anything.items() if layer.sparse] == ["short.weight", "narrow.weight", "ok.weight"]
    assert not hasattr(model.odd, "weight" + MASK_SUFFIX)
    sparse24.verify(model)


def _encoder() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(encoder=nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16)), head=nn.Linear(16, 16))
    )


@pytest.mark.parametrize(
    "options, sparse, reasons",
    [
        ({"exclude": "head"}, {"encoder.0.weight", "encoder.1.weight"}, {"head.weight": "excluded by 'head'"}),
        ({"exclude": ["encoder.1", "head"]}, {"encoder.0.weight"}, {"encoder.1.weight": "excluded by 'encoder.1'"}),
        ({"exclude": "*.1.weight"}, {"encoder.0.weight", "head.weight"}, {"encoder.1.weight": "excluded"}),
        ({"include": "encoder.*"}, {"encoder.0.weight", "encoder.1.weight"}, {"head.weight": "not matched by include"}),
        ({"include": "encoder.*", "exclude": "encoder.0"}, {"encoder.1.weight"}, {"encoder.0.weight": "excluded"}),
        ({"min_params": 257}, set(), {"head.weight": "256 parameters < min_params=257"}),
        ({"min_params": 256}, {"encoder.0.weight", "encoder.1.weight", "head.weight"}, {}),
    ],
)
def test_include_exclude_and_min_params(options, sparse, reasons):
    model = _encoder()
    report = sparse24.sparsify(model, **options)
    layers = layers_of(report)
    assert {name for name, layer in layers.items() if layer.sparse} == sparse
    for name, words in reasons.items():
        assert words in layers[name].reason
    assert {w.name for w, _ in sparse24.masked_weights(model)} == sparse


@pytest.mark.parametrize("options, pattern", [({"include": ["encoder.*", "haed"]}, "include pattern 'haed'"), ({"exclude": "haed*"}, "exclude pattern 'haed*'")])
def test_a_pattern_that_matches_no_gemm_weight_is_an_error(options, pattern, snapshot):
    model = _encoder()
    before = snapshot(model)
    with pytest.raises(sparse24.Sparse24Error, match=re.escape(pattern) + r" matches no GEMM weight of Sequential \(by module or weight name; they are encoder.0.weight, encoder.1.weight, head.weight\); nothing was changed"):
        sparse24.sparsify(model, **options)
    before.assert_unchanged(model)


def test_gemm_layers_whose_weight_is_not_a_parameter_are_named_in_the_report():
    from torch.nn.utils import parametrizations

    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16), nn.Linear(16, 8), nn.Linear(8, 8))
    parametrizations.weight_norm(model[0])
    weight = model[3].weight.detach().clone()
    del model[3].weight
    model[3].register_buffer("weight", weight)
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(model[4])  # the deprecated hook-based one: weight is a plain attribute
    report = sparse24.sparsify(model)
    assert [layer.name for layer in report.sparse_layers] == ["2.weight"]
    note = next(n for n in report.notes if n.startswith("left dense"))  # they used to be left out of the report without a word
    assert "0.weight (computed by a parametrization: _WeightNorm); 3.weight (a buffer); 4.weight (a plain tensor attribute" in note
    assert "remove_parametrizations" in note and "note: left dense" in str(report)


def test_fused_moe_experts_are_pruned_per_expert(caplog):
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
    )
    model = transformers.MixtralForCausalLM(config)
    with caplog.at_level(logging.WARNING, logger="sparse24"):
        report = sparse24.sparsify(model)
    experts = [n for n, _ in model.named_parameters() if ".experts." in n]
    assert len(experts) == 4  # gate_up_proj [4, 128, 32] and down_proj [4, 32, 64] per layer, used a slice per expert
    assert set(experts) <= {layer.name for layer in report.sparse_layers}  # 80% of the model, once left dense
    assert not any("mixture-of-experts" in n for n in report.notes) and "mixture-of-experts" not in caplog.text
    for name in experts:
        assert is_two_four(model.get_parameter(name).detach(), 2)  # [experts, out, in]: along each expert's inputs


def test_only_stacked_expert_weights_are_named():
    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 3
            self.up = nn.Parameter(torch.randn(3, 16, 8))
            self.scale = nn.Parameter(torch.ones(3, 16))  # not a stacked matrix
            self.pos = nn.Parameter(torch.zeros(1, 4, 8))  # 3-D, but not one slice per expert

    gate = nn.Conv1d(4, 3, 2)  # weight [3, 4, 2]: 3-D, one slice per output
    gate.num_experts = 3  # a GEMM layer that knows the expert count is still pruned as itself
    model = nn.Sequential(nn.Linear(8, 8), Experts(), gate)
    report = sparse24.sparsify(model, policy="any")
    (note,) = [n for n in report.notes if "mixture-of-experts" in n]
    assert "left dense: 1 fused mixture-of-experts weight(s), 384 of" in note and note.endswith(": 1.up 3x16x8")
    assert {layer.name for layer in report.sparse_layers} == {"0.weight", "2.weight"}
    assert not any("mixture-of-experts" in n for n in sparse24.sparsify(nn.Sequential(nn.Linear(8, 8))).notes)


def test_frozen_weights_are_skipped_unless_included():
    model = _encoder()
    model.head.weight.requires_grad_(False)
    layers = layers_of(sparse24.sparsify(copy.deepcopy(model)))
    assert "frozen" in layers["head.weight"].reason and "include_frozen=True" in layers["head.weight"].reason

    data = [torch.randn(4, 16) for _ in range(2)]
    report = sparse24.sparsify(model, "taylor", data=data, loss_fn=lambda m, x: m(x).square().mean(), include_frozen=True)
    assert layers_of(report)["head.weight"].sparse
    assert not model.head.weight.requires_grad, "requires_grad is restored after scoring"
    sparse24.verify(model)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"policy": "fast"}, "policy"),
        ({"min_params": -1}, "min_params"),
        ({"num_batches": 0}, "num_batches"),
        ({"include": [1]}, "include"),
        ({"method": "magnitude", "squared": True}, "magnitude takes no options"),
        ({"method": "taylor", "data": [torch.randn(2, 16)], "mode": "fast"}, "mode"),
        ({"method": "taylor", "data": [torch.randn(2, 16)], "autocast": torch.float64}, "autocast"),
    ],
)
def test_bad_options_raise_value_error(options, words, snapshot):
    model = _encoder()
    before = snapshot(model)
    with pytest.raises(ValueError, match=words):
        sparse24.sparsify(model, **options)
    before.assert_unchanged(model)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_precision_weights(dtype, convnet):
    model = convnet().to(dtype)
    originals = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = sparse24.sparsify(model)
    assert len(report.sparse_layers) == 2
    for weight, mask in sparse24.masked_weights(model):
        assert weight.param.dtype == dtype and mask.dtype == torch.bool
        original = originals[weight.name]
        assert torch.equal(mask, two_four_mask(original.abs(), weight.axis.reduction))
        assert torch.equal(weight.param.detach(), torch.where(mask, original, torch.zeros_like(original)))
        assert not bool(torch.signbit(weight.param.detach()[~mask]).any())
    sparse24.verify(model)


def test_bfloat16_model_with_taylor(convnet, batches, loss_fn):
    model = convnet().to(torch.bfloat16)
    data = [(x.to(torch.bfloat16), y.to(torch.bfloat16)) for x, y in batches(2)]
    report = sparse24.sparsify(model, "taylor", data=data, loss_fn=loss_fn)
    assert len(report.sparse_layers) == 2
    sparse24.verify(model)


def test_no_eligible_layer_changes_nothing(snapshot):
    model = linears(odd=(6, 8))
    before = snapshot(model)
    report = sparse24.sparsify(model)
    assert isinstance(report, sparse24.SparsityReport)
    assert report.sparse_layers == () and len(report.layers) == 1
    before.assert_unchanged(model)


# ---------------------------------------------------------------- all or nothing


@pytest.fixture
def prepared(convnet, batches, loss_fn):
    """A BatchNorm convnet with .grads, a frozen parameter and mixed train/eval modes."""
    model = convnet(batchnorm=True)
    model.train()
    for _ in range(2):  # non-trivial running stats
        loss_fn(model, batches(1)[0]).backward()
    model.bn.weight.requires_grad_(False)
    model.bn.weight.grad = None
    model.act.eval()
    return model


def _raise_on_second(error):
    calls = []

    def loss(model, batch):
        calls.append(1)
        if len(calls) == 2:
            raise error
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    return loss


def _scaled_loss(factor):
    def loss(model, batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y) * factor

    return loss


FAILURES = {
    "loss_fn raises": (lambda b: {"data": b(3), "loss_fn": _raise_on_second(RuntimeError("boom"))}, RuntimeError, "boom"),
    "KeyboardInterrupt": (lambda b: {"data": b(3), "loss_fn": _raise_on_second(KeyboardInterrupt())}, KeyboardInterrupt, None),
    "wrong batch shape": (
        lambda b: {"data": [*b(1), (torch.randn(8, 3, 6, 6), torch.randn(8, 64))], "loss_fn": _scaled_loss(1.0)},
        RuntimeError,
        None,
    ),
    "NaN loss": (lambda b: {"data": b(2), "loss_fn": _scaled_loss(float("nan"))}, sparse24.Sparse24Error, "nan"),
    "Inf loss": (lambda b: {"data": b(2), "loss_fn": _scaled_loss(float("inf"))}, sparse24.Sparse24Error, "inf"),
    "empty data": (lambda b: {"data": [], "loss_fn": _scaled_loss(1.0)}, sparse24.Sparse24Error, "no batches"),
    "non-scalar loss": (
        lambda b: {"data": b(1), "loss_fn": lambda m, batch: m(batch[0])},
        sparse24.Sparse24Error,
        "scalar",
    ),
    "loss without gradient": (
        lambda b: {"data": b(1), "loss_fn": lambda m, batch: torch.tensor(1.0)},
        sparse24.Sparse24Error,
        "gradient",
    ),
    "model output is not a scalar loss": (lambda b: {"data": [b(1)[0][0]]}, sparse24.Sparse24Error, "scalar"),
}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("failure", FAILURES)
def test_taylor_failure_leaves_model_untouched(failure, mode, prepared, batches, snapshot):
    make_args, error, words = FAILURES[failure]
    before = snapshot(prepared)
    with pytest.raises(error, match=words):
        sparse24.sparsify(prepared, "taylor", mode=mode, **make_args(batches))
    before.assert_unchanged(prepared)


def test_nan_weight_with_magnitude_leaves_model_untouched(prepared, snapshot):
    with torch.no_grad():
        prepared.fc.weight[3, 5] = float("nan")
    before = snapshot(prepared)
    with pytest.raises(sparse24.Sparse24Error, match=r"fc\.weight.*NaN"):
        sparse24.sparsify(prepared)
    before.assert_unchanged(prepared)


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_finite_importance_whose_float32_sum_overflows_is_pruned(method):
    """Weights near float32's largest are finite, but their importance summed in float32 overflows: they are pruned
    (the sums taken again in float64), with the fraction kept the float64 one, not refused as "NaN or Inf"."""
    model = nn.Sequential(nn.Linear(64, 8))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(8, 64) * 1e37)
    dense = model[0].weight.detach().clone()
    x = torch.randn(16, 64)
    assert torch.isinf(dense.abs().sum(dtype=torch.float32))
    report = sparse24.sparsify(model, method, data=[x] if method == "wanda" else None)
    (layer,) = report.layers
    assert layer.sparse
    kept = model[0].weight.detach()
    importance = dense.double().abs() * (x.double().norm(dim=0) if method == "wanda" else 1)
    assert torch.equal(kept != 0, sparse24.two_four_mask(importance))
    assert layer.importance_kept == pytest.approx(float(importance[kept != 0].sum() / importance.sum()), rel=1e-5)


def test_magnitude_importance_kept_is_exact_on_a_large_layer():
    """The report's fraction kept of a 4096x4096 weight's L1 norm is the float64 one (torch's CPU ``vector_norm``,
    which it used, adds float32 magnitudes one after another: 0.5% low on this weight with two threads, 31% on an
    8192x8192 one with one, and the reported fraction was off with them)."""
    model = nn.Sequential(nn.Linear(4096, 4096, bias=False))
    dense = model[0].weight.detach().clone()
    (layer,) = sparse24.sparsify(model, progress=False).layers
    kept = model[0].weight.detach()
    assert layer.importance_kept == pytest.approx(float(kept.double().abs().sum() / dense.double().abs().sum()), rel=1e-6)


def test_taylor_without_data_raises(prepared, snapshot):
    before = snapshot(prepared)
    with pytest.raises(ValueError, match="data"):
        sparse24.sparsify(prepared, "taylor")
    before.assert_unchanged(prepared)


def test_unknown_method_names_the_choices(prepared, snapshot):
    before = snapshot(prepared)
    with pytest.raises(ValueError, match="'obs'") as info:
        sparse24.sparsify(prepared, "obs")
    assert all(name in str(info.value) for name in ("magnitude", "taylor", "wanda", "sparsegpt"))
    before.assert_unchanged(prepared)


@pytest.mark.parametrize("initially_training", [True, False])
def test_taylor_train_mode_restores_batchnorm_stats_on_success(initially_training, prepared, batches, loss_fn):
    prepared.train(initially_training)
    stats = {k: v.clone() for k, v in prepared.bn.state_dict().items()}
    assert {"running_mean", "running_var", "num_batches_tracked"} <= set(stats)
    report = sparse24.sparsify(prepared, "taylor", data=batches(3), loss_fn=loss_fn, mode="train")
    assert len(report.sparse_layers) == 2
    for key, value in prepared.bn.state_dict().items():
        assert torch.equal(value, stats[key]), key
    assert all(m.training == initially_training for m in prepared.modules())
    sparse24.verify(prepared)


def test_interrupt_during_pruning_is_deferred_until_all_masks_are_attached(monkeypatch, convnet):
    model = convnet()
    real_prune = sparsify_module.prune_
    calls = []

    def interrupted_prune(*args, **kwargs):
        if not calls:
            signal.raise_signal(signal.SIGINT)
        calls.append(1)
        return real_prune(*args, **kwargs)

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(sparsify_module, "prune_", interrupted_prune)
    with pytest.raises(KeyboardInterrupt):
        sparse24.sparsify(model)
    assert len(calls) == 2
    assert signal.getsignal(signal.SIGINT) is handler
    assert len(sparse24.masked_weights(model)) == 2
    sparse24.verify(model)


# ---------------------------------------------------------------- Taylor scores


def _regression_data(n=3, batch=6):
    return [(torch.randn(batch, 16), torch.randn(batch, 8)) for _ in range(n)]


def _expected_taylor(model, data, squared=False):
    expected = torch.zeros_like(model.weight, dtype=torch.float32)
    for x, y in data:
        ref = copy.deepcopy(model)
        loss = nn.functional.mse_loss(ref(x), y)
        (grad,) = torch.autograd.grad(loss, ref.weight)
        product = ref.weight.detach().float() * grad.float()
        expected += product.square() if squared else product.abs()
    return expected


@pytest.mark.parametrize("squared", [False, True])
def test_taylor_mask_matches_hand_computed_scores(squared, loss_fn):
    model = nn.Linear(16, 8)
    data = _regression_data()
    original = model.weight.detach().clone()
    expected = _expected_taylor(model, data, squared)
    expected_mask = two_four_mask(expected, 1)
    assert not torch.equal(expected_mask, two_four_mask(original.abs(), 1)), "Taylor must differ from magnitude here"

    report = sparse24.sparsify(model, "taylor", data=data, loss_fn=loss_fn, squared=squared)
    (layer,) = report.layers
    assert layer.sparse and layer.criterion == "taylor"
    assert torch.equal(sparse24.enforce.mask_of(model, "weight"), expected_mask)
    assert torch.equal(model.weight.detach(), original * expected_mask)
    kept = float((expected * expected_mask).sum() / expected.sum())
    assert layer.importance_kept == pytest.approx(kept, rel=1e-5)


class SelfLoss(nn.Module):
    """Returns its own loss: a scalar, or a dict with ``"loss"``."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.as_dict = as_dict

    def forward(self, x, y):
        out = self.fc(x)
        loss = nn.functional.mse_loss(out, y)
        return {"loss": loss, "logits": out} if self.as_dict else loss


@pytest.mark.parametrize("as_dict", [False, True])
@pytest.mark.parametrize("keyword_batches", [False, True])
def test_taylor_uses_the_model_returned_loss(as_dict, keyword_batches):
    model = SelfLoss(as_dict)
    data = _regression_data()
    expected = two_four_mask(_expected_taylor(model.fc, data), 1)
    calibration = [{"x": x, "y": y} for x, y in data] if keyword_batches else data
    sparse24.sparsify(model, "taylor", data=calibration)
    assert torch.equal(sparse24.enforce.mask_of(model.fc, "weight"), expected)


def test_taylor_model_output_without_loss_raises(snapshot):
    model = SelfLoss(as_dict=True)
    model.forward = lambda x, y: {"logits": model.fc(x)}
    before = snapshot(model)
    with pytest.raises(sparse24.Sparse24Error, match="no loss"):
        sparse24.sparsify(model, "taylor", data=_regression_data(1))
    before.assert_unchanged(model)


def test_taylor_with_bfloat16_autocast_on_cpu(convnet, batches, loss_fn):
    model = convnet()
    report = sparse24.sparsify(model, "taylor", data=batches(2), loss_fn=loss_fn, autocast=torch.bfloat16)
    assert len(report.sparse_layers) == 2
    assert all(p.dtype == torch.float32 for p in model.parameters())
    sparse24.verify(model)


def test_taylor_keeps_existing_grad_tensors(convnet, batches, loss_fn):
    model = convnet()
    loss_fn(model, batches(1)[0]).backward()
    grads = {name: (p.grad, p.grad.clone()) for name, p in model.named_parameters()}
    sparse24.sparsify(model, "taylor", data=batches(2), loss_fn=loss_fn)
    for name, p in model.named_parameters():
        grad, value = grads[name]
        assert p.grad is grad, name
        assert torch.equal(p.grad, value), name


def test_num_batches_limits_calibration(convnet, batches):
    calls = []

    def loss(model, batch):
        calls.append(1)
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    sparse24.sparsify(convnet(), "taylor", data=iter(batches(10)), loss_fn=loss, num_batches=3)
    assert len(calls) == 3
    calls.clear()
    sparse24.sparsify(convnet(), "taylor", data=batches(4), loss_fn=loss)
    assert len(calls) == 4


# ---------------------------------------------------------------- reports


@pytest.fixture
def report_and_model(convnet):
    model = convnet()
    model.add_module("extra", nn.Linear(64, 6))  # outputs % 8 != 0: skipped under TensorRT
    return sparse24.sparsify(model), model


def test_report_markdown(report_and_model):
    report, _ = report_and_model
    lines = report.to_markdown().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(report.layers) == 5
    assert table[0].split("|")[1].strip() == "layer"
    assert set(table[1]) <= {"|", "-"}
    for row, layer in zip(table[2:], report.layers):
        assert row.split("|")[1].strip().startswith(layer.name)
    assert "skipped" in table[4] and "2:4" in table[2]


def test_report_json_totals(report_and_model):
    report, model = report_and_model
    data = json.loads(report.to_json())
    assert data["method"] == "magnitude"
    assert [layer["name"] for layer in data["layers"]] == ["conv.weight", "fc.weight", "extra.weight"]
    sparse = [layer for layer in data["layers"] if layer["sparse"]]
    totals = data["totals"]
    assert totals["sparse_params"] == sum(layer["numel"] for layer in sparse) == 32 * 16 * 9 + 64 * 512
    assert totals["sparse_params"] == report.sparse_params
    assert totals["prunable_params"] == sum(layer["numel"] for layer in data["layers"])
    assert totals["total_params"] == sum(p.numel() for p in model.parameters())
    assert totals["sparse_layers"] == 2 and totals["skipped_layers"] == 1
    assert totals["model_sparsity"] == pytest.approx(totals["sparse_params"] // 2 / totals["total_params"])
    assert totals["prunable_share"] == pytest.approx(totals["sparse_params"] / totals["prunable_params"])
    assert data["layers"][0]["shape"] == [32, 16, 3, 3]


def top_two_of_four_share(weight: torch.Tensor, dim: int) -> float:
    """sum |w| over the 2 largest |w| of every 4 consecutive along ``dim``, over sum |w| (computed here, not by sparse24)."""
    groups = weight.abs().double().movedim(dim, -1).reshape(-1, 4)
    return float(groups.sort(dim=1, descending=True).values[:, :2].sum() / groups.sum())


def test_report_text_and_importance(convnet):
    model = convnet()
    model.add_module("extra", nn.Linear(64, 6))  # as in report_and_model, but the weights before pruning are kept
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    report = sparse24.sparsify(model)
    text = str(report)
    for layer in report.layers:
        assert layer.name in text
    reduction_dims = {"conv.weight": 1, "fc.weight": 1}  # conv [K, C, R, S]: groups along C at every kernel position
    assert [layer.name for layer in report.sparse_layers] == list(reduction_dims)
    for layer in report.sparse_layers:
        expected = top_two_of_four_share(before[layer.name], reduction_dims[layer.name])
        assert layer.importance_kept == pytest.approx(expected, rel=1e-5), layer.name
    extra = layers_of(report)["extra.weight"]
    assert extra.importance_kept is None and extra.criterion is None
    assert extra.status.startswith("skipped: ")


def test_verify_report_lists_unmasked_layers(report_and_model):
    _, model = report_and_model
    layers = layers_of(sparse24.verify(model))
    assert layers["conv.weight"].sparse and layers["fc.weight"].sparse
    assert not layers["extra.weight"].sparse and layers["extra.weight"].reason == "no 2:4 mask"


def test_weights_on_the_meta_device_are_one_clear_error() -> None:
    with torch.device("meta"):
        empty = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))  # what init_empty_weights builds
    with pytest.raises(sparse24.Sparse24Error, match=r"2 weight\(s\) hold no data here \(meta device\), first 0\.weight: .*init_empty_weights"):
        sparse24.sparsify(empty)
    assert not sparse24.masked_weights(empty)
