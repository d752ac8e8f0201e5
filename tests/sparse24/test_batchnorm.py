"""BatchNorm statistics re-estimated on the pruned model (sparse24.recalibrate_batchnorm, sparsify(recalibrate_bn=True))."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

import sparse24
from sparse24.enforce import has_masks


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 32), nn.BatchNorm1d(32), nn.Linear(32, 8),
    ).eval()


def batches(n: int = 4, size: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(size, 8, 6, 6, generator=generator) * 2 + 1 for _ in range(n)]


def bn_inputs(model: nn.Module, data: list[torch.Tensor]) -> dict[nn.Module, list[torch.Tensor]]:
    """Each BatchNorm's input on every batch, the model in eval mode (dropout off)."""
    seen: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach().clone())) for m in seen]
    with torch.no_grad():
        for batch in data:
            model(batch)
    for hook in hooks:
        hook.remove()
    return seen


def test_the_statistics_are_those_of_the_models_activations() -> None:
    """The first BatchNorm's new statistics: the mean over the batches of each batch's per-channel mean and
    unbiased variance of its input (the pruned conv's output)."""
    model = cnn()
    data = batches()
    model[0].weight.data[:, ::2] = 0  # "pruned": the dense statistics no longer fit
    inputs = bn_inputs(model, data)[model[1]]
    old_mean = model[1].running_mean.clone()
    params = {k: v.clone() for k, v in model.named_parameters()}
    model.train()  # the caller's mode survives
    assert sparse24.recalibrate_batchnorm(model, data, progress=False) == 3
    torch.testing.assert_close(model[1].running_mean, torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, torch.stack([x.var((0, 2, 3)) for x in inputs]).mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.equal(model[1].running_mean, old_mean)
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())  # weights and affine parameters untouched
    assert all(m.training for m in model.modules()) and all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_dropout_is_off_and_later_batchnorms_see_the_earlier_ones_in_training_mode() -> None:
    """Two runs agree bitwise (no dropout); the last BatchNorm's statistics are of its inputs with the earlier
    BatchNorms normalising each batch by its own statistics, as in training."""
    a, b = cnn().train(), cnn().train()  # called in training mode, dropout included
    data = batches()
    sparse24.recalibrate_batchnorm(a, data, progress=False)
    sparse24.recalibrate_batchnorm(b, data, progress=False)
    assert torch.equal(a[9].running_mean, b[9].running_mean) and torch.equal(a[9].running_var, b[9].running_var)
    reference = cnn()
    for m in reference.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    seen = bn_inputs(reference, data)[reference[9]]
    torch.testing.assert_close(a[9].running_mean, torch.stack([x.mean(0) for x in seen]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[9].running_var, torch.stack([x.var(0) for x in seen]).mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("error", [RuntimeError("bad batch"), KeyboardInterrupt()])
def test_a_failure_leaves_the_statistics_as_they_were(error) -> None:
    model = cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def loss_fn(m, batch):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return m(batch).sum()

    with pytest.raises(type(error)):
        sparse24.recalibrate_batchnorm(model, batches(), loss_fn=loss_fn, progress=False)
    assert len(calls) == 3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules()) and model[1].momentum == 0.1


def test_non_finite_statistics_are_an_error_and_left_out() -> None:
    model = cnn()
    before = model[1].running_mean.clone()
    data = batches()
    data[1] = data[1].clone()
    data[1][0, 0, 0, 0] = float("inf")
    with pytest.raises(sparse24.Sparse24Error, match="non-finite statistics"):
        sparse24.recalibrate_batchnorm(model, data, progress=False)
    assert torch.equal(model[1].running_mean, before)


def test_a_model_without_batchnorm_runs_nothing_and_says_so(caplog) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))

    def never(m, batch):
        raise AssertionError("no forward should run")

    with caplog.at_level(logging.WARNING, logger="sparse24.batchnorm"):
        assert sparse24.recalibrate_batchnorm(model, [torch.randn(2, 8)], loss_fn=never, progress=False) == 0
    assert "no BatchNorm with running statistics" in caplog.text


def test_only_batchnorms_with_running_statistics_count() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.LazyBatchNorm1d(), nn.BatchNorm1d(8))
    assert [name for name, _ in sparse24.batchnorm.batchnorms(model)] == ["3"]  # not the lazy one before its first forward
    assert sparse24.recalibrate_batchnorm(model, [torch.randn(4, 8) for _ in range(2)], progress=False) == 1


def test_num_batches_limits_the_pass() -> None:
    a, b = cnn(), cnn()
    data = batches()
    sparse24.recalibrate_batchnorm(a, data, num_batches=2, progress=False)
    sparse24.recalibrate_batchnorm(b, data[:2], progress=False)
    assert torch.equal(a[1].running_var, b[1].running_var) and int(a[1].num_batches_tracked) == 2


def test_a_sharded_model_is_refused_before_any_change(monkeypatch) -> None:
    from sparse24 import batchnorm

    model = cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(batchnorm.dist, "is_fsdp", lambda m: m is model)  # what fully_shard would make it
    with pytest.raises(sparse24.Sparse24Error, match="needs the unsharded model"):
        sparse24.recalibrate_batchnorm(model, batches(), progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_batches": 0}, "num_batches must be a positive int"), ({"data": None}, "needs data")],
)
def test_bad_arguments_are_one_clear_error(kwargs, match) -> None:
    call = {"data": batches(), **kwargs}
    with pytest.raises(ValueError, match=match):
        sparse24.recalibrate_batchnorm(cnn(), call.pop("data"), progress=False, **call)


# --- sparsify(recalibrate_bn=True) ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_sparsify_re_estimates_on_the_pruned_model(method) -> None:
    data = batches()
    plain, recalibrated = cnn(), cnn()
    sparse24.sparsify(plain, method, data=data, policy="any", progress=False)
    sparse24.recalibrate_batchnorm(plain, data, progress=False)
    report = sparse24.sparsify(recalibrated, method, data=data, policy="any", recalibrate_bn=True, progress=False)
    assert "BatchNorm statistics re-estimated on the pruned model's activations: 3 layers" in report.notes
    assert not any("keep the dense model's running statistics" in note for note in report.notes)
    plain_report = sparse24.sparsify(cnn(), method, data=data, policy="any", progress=False)
    assert "3 BatchNorm layers keep the dense model's running statistics: recalibrate_bn=True (with data) re-estimates them on the pruned model" in plain_report.notes
    for (key, a), b in zip(plain.state_dict().items(), recalibrated.state_dict().values()):
        assert torch.equal(a, b), key
    sparse24.verify(recalibrated)


def test_taylor_with_the_models_labels_re_estimates_through_logits_fn() -> None:
    """The model Fisher's batches hold labels the model cannot take: the re-estimation calls it as the scoring
    does, through ``logits_fn``, and gives the statistics of the inputs alone."""
    data = batches()
    labelled = [(x, torch.randint(0, 8, (x.shape[0],))) for x in data]
    options = {"squared": True, "per_sample": True, "labels": "model", "logits_fn": lambda m, batch: m(batch[0])}
    plain, recalibrated = cnn(), cnn()
    sparse24.sparsify(plain, "taylor", data=labelled, policy="any", progress=False, **options)
    sparse24.recalibrate_batchnorm(plain, data, progress=False)
    report = sparse24.sparsify(recalibrated, "taylor", data=labelled, policy="any", recalibrate_bn=True, progress=False, **options)
    assert "BatchNorm statistics re-estimated on the pruned model's activations: 3 layers" in report.notes
    for (key, a), b in zip(plain.state_dict().items(), recalibrated.state_dict().values()):
        assert torch.equal(a, b), key


def test_sparsify_without_batchnorm_notes_that_nothing_was_re_estimated() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    report = sparse24.sparsify(model, "magnitude", data=[torch.randn(4, 16)], policy="any", recalibrate_bn=True, progress=False)
    assert any("no BatchNorm" in note and "nothing was re-estimated" in note for note in report.notes)


@pytest.mark.parametrize("premasked", [False, True])
def test_a_failed_re_estimation_leaves_the_model_as_it_was(premasked) -> None:
    """The masks just attached come off, the weights and statistics go back, masks from before stay as they were."""
    model = cnn()
    if premasked:
        sparse24.sparsify(model, "magnitude", policy="any", include="0", progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = dict(model._forward_pre_hooks)

    def failing(m, batch):
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        sparse24.sparsify(model, "magnitude", data=batches(), loss_fn=failing, policy="any", recalibrate_bn=True, progress=False)
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert has_masks(model) == premasked and dict(model._forward_pre_hooks).keys() == hooks.keys()
    if premasked:
        sparse24.verify(model)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"data": None}, ValueError, "recalibrate_bn=True needs data"),
        ({"data": iter(batches()), "method": "wanda"}, ValueError, "reads data twice"),
        ({"recalibrate_bn": 1}, ValueError, "recalibrate_bn must be True or False"),
    ],
)
def test_sparsify_refuses_bad_recalibrate_bn_arguments_before_any_change(kwargs, error, match) -> None:
    model = cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    call = {"method": "magnitude", "data": batches(), "recalibrate_bn": True, **kwargs}
    with pytest.raises(error, match=match):
        sparse24.sparsify(model, call.pop("method"), policy="any", progress=False, **call)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and not has_masks(model)


def test_cli_prune_recalibrate_bn(tmp_path, capsys) -> None:
    """`sparse24 prune --recalibrate-bn`: the saved BatchNorm statistics are the pruned model's; the same command
    without --data is one clear error and writes nothing."""
    from sparse24.cli import main
    from sparse24.io import read_state_dict

    common = ["prune", "sparse24.demo:DigitsResNet", "--method", "magnitude", "--data", "sparse24.demo:calibration_batches", "--loss", "sparse24.demo:loss_fn", "--num-batches", "4"]
    assert main([*common, "--out", str(tmp_path / "plain.safetensors")]) == 0
    assert main([*common, "--recalibrate-bn", "--out", str(tmp_path / "bn.safetensors")]) == 0
    assert "BatchNorm statistics re-estimated on the pruned model's activations" in capsys.readouterr().out
    plain, recalibrated = read_state_dict(tmp_path / "plain.safetensors"), read_state_dict(tmp_path / "bn.safetensors")
    assert torch.equal(plain["block1.bn1.running_var"], torch.ones(32))  # a fresh model's statistics, as they were
    assert not torch.allclose(recalibrated["block1.bn1.running_var"], torch.ones(32))
    assert main(["prune", "sparse24.demo:DigitsResNet", "--recalibrate-bn", "--out", str(tmp_path / "bad.safetensors")]) == 2
    assert "recalibrate_bn=True needs data" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


def test_a_transformers_resnet_is_re_estimated_through_its_keyword_batches() -> None:
    """A model users bring: transformers' ResNet (random init), calibrated on {"pixel_values": ...} batches."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10)
    model = transformers.ResNetForImageClassification(config).eval()
    data = [{"pixel_values": torch.randn(4, 3, 32, 32)} for _ in range(3)]
    plain = copy.deepcopy(model)
    sparse24.sparsify(plain, "wanda", data=data, policy="any", progress=False)
    report = sparse24.sparsify(model, "wanda", data=data, policy="any", recalibrate_bn=True, progress=False)
    assert "BatchNorm statistics re-estimated on the pruned model's activations: 8 layers" in report.notes
    sparse24.recalibrate_batchnorm(plain, data, progress=False)  # the same statistics as in one call
    for (key, a), b in zip(plain.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), key
    assert model.training is False and not any(m.training for m in model.modules())
