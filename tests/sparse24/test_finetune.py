"""sparse24.finetune: masks stay enforced, schedule, distillation, accumulation, AMP, clipping,
history, argument checks, progress, and atomic checkpoints that resume to the same bits."""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from sparse24_testing import same_bits
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import sparse24
from sparse24 import FinetuneHistory, Sparse24Error, distill_loss, finetune
from sparse24.finetune import SCHEDULES, WarmupSchedule


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (tests/conftest.py)


# -- small models and data ---------------------------------------------------------------


def mlp(dropout: float = 0.0) -> nn.Sequential:
    """Linear(16, 32) + ReLU [+ Dropout] + Linear(32, 8): both layers fit the TensorRT policy."""
    layers: list[tuple[str, nn.Module]] = [("fc1", nn.Linear(16, 32)), ("act", nn.ReLU())]
    if dropout:
        layers.append(("drop", nn.Dropout(dropout)))
    layers.append(("fc2", nn.Linear(32, 8)))
    return nn.Sequential(OrderedDict(layers))


def sparse_mlp(dropout: float = 0.0, seed: int | None = None) -> nn.Sequential:
    if seed is not None:
        torch.manual_seed(seed)
    model = mlp(dropout)
    report = sparse24.sparsify(model, "magnitude", progress=False)
    assert {layer.name for layer in report.sparse_layers} == {"fc1.weight", "fc2.weight"}
    return model


def mlp_batches(n: int, batch: int = 4) -> list[tuple[Tensor, Tensor]]:
    return [(torch.randn(batch, 16), torch.randn(batch, 8)) for _ in range(n)]


def mse(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)


def state_of(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert list(actual) == list(expected)
    differ = [k for k in expected if not same_bits(actual[k], expected[k])]
    assert not differ, f"not bitwise equal: {differ}"


def assert_masks_hold(model: nn.Module) -> None:
    masked = sparse24.masked_weights(model)
    assert masked, "the model has no masks"
    for weight, mask in masked:
        pruned = weight.param.detach()[~mask]
        assert pruned.numel() > 0
        assert bool((pruned == 0).all()), f"{weight.name}: a pruned weight is nonzero"
    sparse24.verify(model)


def quiet(**options):
    return {"progress": False, **options}


# -- 1. masks stay enforced --------------------------------------------------------------


def test_masks_stay_enforced_and_weights_train(convnet, batches, loss_fn):
    model = convnet()
    sparse24.sparsify(model, "magnitude", progress=False)
    before = state_of(model)
    history = finetune(model, batches(6), loss_fn=loss_fn, epochs=2, lr=1e-2, **quiet())
    assert_masks_hold(model)
    after = state_of(model)
    for weight, mask in sparse24.masked_weights(model):
        key = weight.name
        assert same_bits(after[key + sparse24.MASK_SUFFIX], before[key + sparse24.MASK_SUFFIX]), f"{key}: mask changed"
        assert not torch.equal(after[key][mask], before[key][mask]), f"{key}: kept weights did not train"
    assert not torch.equal(after["fc.bias"], before["fc.bias"])
    assert len(history.steps) == 12
    assert all(math.isfinite(r["loss"]) for r in history.steps)


def test_user_optimizer_with_momentum_from_before_sparsify(convnet, batches, loss_fn, train_steps):
    model = convnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_steps(model, optimizer, 3)  # momentum on every weight, pruned ones included
    sparse24.sparsify(model, "magnitude", progress=False)
    for weight, mask in sparse24.masked_weights(model):
        assert optimizer.state[weight.param]["momentum_buffer"][~mask].abs().sum() > 0

    # The hazard is real: a plain step with this optimizer moves pruned weights.
    copy_model, copy_optimizer = copy.deepcopy((model, optimizer))
    copy_optimizer.zero_grad()
    loss_fn(copy_model, batches(1)[0]).backward()
    copy_optimizer.step()
    moved = [w.name for w, mask in sparse24.masked_weights(copy_model) if bool((w.param.detach()[~mask] != 0).any())]
    assert moved, "stale momentum should move pruned weights without attach_optimizer"

    before = state_of(model)
    finetune(model, batches(4), loss_fn=loss_fn, optimizer=optimizer, epochs=1, **quiet())
    assert_masks_hold(model)
    assert not torch.equal(model.fc.weight.detach(), before["fc.weight"])


def test_ctrl_c_during_the_optimizer_step_lets_the_step_finish():
    model = sparse_mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    count = [0]

    def press_ctrl_c(opt, args, kwargs):
        count[0] += 1
        if count[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    optimizer.register_step_pre_hook(press_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        finetune(model, mlp_batches(6), loss_fn=mse, optimizer=optimizer, epochs=1, **quiet())
    assert signal.getsignal(signal.SIGINT) is handler
    assert count[0] == 3
    assert all(int(optimizer.state[p]["step"]) == 3 for p in model.parameters()), "step 3 was cut short"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * WarmupSchedule("cosine", 1, 6)(3)), "the schedule advanced too"
    assert_masks_hold(model)


@pytest.mark.parametrize(
    ("loss_fn", "message"),
    [
        (lambda model, batch: model(batch[0]).sum(dim=1), "scalar"),
        (lambda model, batch: torch.tensor(1.0), "no gradient"),
        (lambda model, batch: mse(model, batch).long(), "scalar float"),
    ],
    ids=["vector", "constant", "integer"],
)
def test_bad_training_loss_is_refused(loss_fn, message):
    model = sparse_mlp()
    before = state_of(model)
    with pytest.raises(Sparse24Error, match=message):
        finetune(model, mlp_batches(2), loss_fn=loss_fn, **quiet())
    assert_same_state(state_of(model), before)


def test_a_model_output_without_loss_names_the_ways_to_give_one():
    """No loss_fn and an output with no loss (a causal LM's batches without labels): each way to give one is named."""

    class NoLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = sparse_mlp()

        def forward(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
            return {"logits": self.inner(x)}

    model = NoLoss()
    before = state_of(model)
    with pytest.raises(Sparse24Error, match=r"the model's output \(dict\) has no loss: give a loss_fn\(model, batch\) \(Python: loss_fn=\.\.\., recipe: loss: module:name, CLI: --loss module:name\), or batches .*labels=True"):
        finetune(model, mlp_batches(2), **quiet())
    assert_same_state(state_of(model), before)


def test_an_error_in_the_users_loss_says_which_batch_and_step():
    calls = []

    def failing(model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the user's loss failed")
        return mse(model, batch)

    with pytest.raises(RuntimeError, match="the user's loss failed") as raised:
        finetune(sparse_mlp(), mlp_batches(2), loss_fn=failing, epochs=2, **quiet())
    assert raised.value.__notes__ == ["sparse24: while running training batch 0 of epoch 2 (step 3: forward and backward)"]
    with pytest.raises(ZeroDivisionError) as raised:
        finetune(sparse_mlp(), mlp_batches(2), loss_fn=mse, eval_fn=lambda model, data: 1 / 0, eval_data=mlp_batches(1), steps=1, **quiet())
    assert raised.value.__notes__ == ["sparse24: while running eval_fn"]
    calls.clear()
    with pytest.raises(RuntimeError, match="the user's loss failed") as raised:  # the evaluation before training: its third batch
        finetune(sparse_mlp(), mlp_batches(1), loss_fn=failing, eval_data=mlp_batches(4), steps=1, **quiet())
    assert raised.value.__notes__ == ["sparse24: while running evaluation batch 2"]


# -- 2. a model without masks -----------------------------------------------------------------


def test_model_without_masks_is_refused():
    model = mlp()
    before = state_of(model)
    with pytest.raises(Sparse24Error, match="sparsify"):
        finetune(model, mlp_batches(2), loss_fn=mse, **quiet())
    assert_same_state(state_of(model), before)


# -- 3. schedule --------------------------------------------------------------------------------


def test_warmup_is_linear_and_reaches_one():
    for kind in SCHEDULES:
        schedule = WarmupSchedule(kind, warmup=4, total=20)
        assert [schedule(k) for k in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_cosine_decays_to_zero():
    schedule = WarmupSchedule("cosine", warmup=4, total=20)
    values = [schedule(k) for k in range(4, 21)]
    assert values[0] == pytest.approx(1.0)
    assert schedule(12) == pytest.approx(0.5)  # half way through the decay
    assert schedule(8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert schedule(19) < 0.01
    assert schedule(20) == pytest.approx(0.0, abs=1e-12)
    assert schedule(25) == pytest.approx(0.0, abs=1e-12)  # stays at the floor past the end
    assert WarmupSchedule("cosine", 0, 10, final=0.1)(10) == pytest.approx(0.1)


def test_linear_and_constant_schedules():
    linear = WarmupSchedule("linear", warmup=4, total=20)
    assert [linear(k) for k in (4, 8, 12, 16, 20)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    constant = WarmupSchedule("constant", warmup=4, total=20)
    assert [constant(k) for k in range(4, 30)] == pytest.approx([1.0] * 26)
    assert WarmupSchedule("constant", warmup=0, total=5)(0) == 1.0


def test_unknown_schedule_kind():
    with pytest.raises(ValueError, match="'step'"):
        WarmupSchedule("step", 1, 10)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_history_lr_follows_the_schedule(kind):
    model = sparse_mlp()
    lr = 1e-2
    history = finetune(model, mlp_batches(10), loss_fn=mse, epochs=2, lr=lr, warmup_steps=4, scheduler=kind, **quiet())
    lrs = [r["lr"] for r in history.steps]
    schedule = WarmupSchedule(kind, 4, 20)
    assert lrs == pytest.approx([lr * schedule(k) for k in range(20)])
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:5]))  # warm-up rises
    assert max(lrs) == pytest.approx(lr)
    if kind == "constant":
        assert lrs[-1] == pytest.approx(lr)
    else:
        assert lrs[-1] < 0.1 * lr
    assert history.epochs[-1]["lr"] == pytest.approx(lr * schedule(20))


def test_default_warmup_is_short_and_cosine():
    history = finetune(sparse_mlp(), mlp_batches(10), loss_fn=mse, epochs=2, lr=1e-2, **quiet())
    lrs = [r["lr"] for r in history.steps]
    assert lrs[:2] == pytest.approx([5e-3, 1e-2])  # one warm-up step (5% of 20)
    assert lrs[-1] < 1e-4


def test_user_scheduler_bound_to_user_optimizer():
    model = sparse_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    history = finetune(model, mlp_batches(6), loss_fn=mse, optimizer=optimizer, scheduler=scheduler, epochs=1, **quiet())
    assert [r["lr"] for r in history.steps] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])

    unbound = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=0.1), step_size=2)
    with pytest.raises(ValueError, match="bound"):
        finetune(model, mlp_batches(2), loss_fn=mse, scheduler=unbound, **quiet())


# -- 4. distillation ----------------------------------------------------------------------------


def test_distill_kl_zero_for_identical_positive_otherwise():
    logits = torch.randn(5, 10)
    assert float(distill_loss(logits, logits.clone())) == pytest.approx(0.0, abs=1e-7)
    assert float(distill_loss(logits, logits + 3.0)) == pytest.approx(0.0, abs=1e-6)  # softmax is shift-invariant
    assert float(distill_loss(logits, torch.randn(5, 10))) > 0


def _kl_by_hand(student: list[float], teacher: list[float], temperature: float) -> float:
    def softmax(values):
        exps = [math.exp(v / temperature) for v in values]
        return [e / sum(exps) for e in exps]

    p, q = softmax(teacher), softmax(student)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temperature**2


def test_distill_kl_matches_hand_computation():
    student = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    teacher = [[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]
    for temperature in (1.0, 2.0, 4.0):
        expected = sum(_kl_by_hand(s, t, temperature) for s, t in zip(student, teacher)) / 2
        got = distill_loss(torch.tensor(student), torch.tensor(teacher), "kl", temperature)
        assert float(got) == pytest.approx(expected, rel=1e-5)
    # [batch, positions, classes]: averaged over every position
    s3, t3 = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    per_row = [_kl_by_hand(s.tolist(), t.tolist(), 2.0) for s, t in zip(s3.reshape(6, 5), t3.reshape(6, 5))]
    assert float(distill_loss(s3, t3)) == pytest.approx(sum(per_row) / 6, rel=1e-5)


def test_distill_mse_and_shape_check():
    student, teacher = torch.randn(4, 6), torch.randn(4, 6)
    assert float(distill_loss(student, teacher, "mse")) == pytest.approx(float(((student - teacher) ** 2).mean()), rel=1e-6)
    assert float(distill_loss(student, student.clone(), "mse")) == 0.0
    student.requires_grad_(True)
    distill_loss(student, teacher.requires_grad_(True), "kl").backward()
    assert teacher.grad is None, "no gradient may flow into the teacher"
    with pytest.raises(Sparse24Error, match="shape"):
        distill_loss(torch.randn(4, 6), torch.randn(4, 7))


@pytest.mark.parametrize("teacher_training", [True, False])
def test_finetune_with_teacher_records_task_and_distill(teacher_training):
    torch.manual_seed(3)
    teacher = mlp(dropout=0.5)
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    teacher.train(teacher_training)
    teacher_state = state_of(teacher)
    seen = []
    handle = teacher.register_forward_pre_hook(lambda module, args: seen.append((module.training, torch.is_grad_enabled())))
    data = mlp_batches(5)
    try:
        history = finetune(model, data, loss_fn=mse, teacher=teacher, alpha=0.3, epochs=2, lr=1e-2, **quiet())
    finally:
        handle.remove()
    assert len(history.steps) == 10
    for record in history.steps:
        assert {"task", "distill"} <= set(record)
        assert record["distill"] > 0
        assert record["loss"] == pytest.approx(0.3 * record["distill"] + 0.7 * record["task"], rel=1e-5)
    assert seen == [(False, False)] * 10, "the teacher runs once per batch, in eval mode, without gradients"
    assert all(module.training == teacher_training for module in teacher.modules())
    assert_same_state(state_of(teacher), teacher_state)
    assert_masks_hold(model)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_first_distill_record_matches_distill_loss(kind):
    teacher = mlp()
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    data = mlp_batches(3)
    with torch.no_grad():
        expected = float(distill_loss(model(data[0][0]), teacher(data[0][0]), kind, 3.0))
        task = float(mse(model, data[0]))
    history = finetune(model, data, loss_fn=mse, teacher=teacher, distill=kind, temperature=3.0, alpha=0.5, epochs=1, **quiet())
    assert history.steps[0]["distill"] == pytest.approx(expected, rel=1e-5)
    assert history.steps[0]["task"] == pytest.approx(task, rel=1e-5)


def test_callable_distill_gets_student_teacher_and_batch():
    teacher = mlp()
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    data = mlp_batches(3)
    calls = []

    def kd(student_out, teacher_out, batch):
        calls.append((student_out, teacher_out, batch))
        return F.mse_loss(student_out, teacher_out)

    history = finetune(model, data, loss_fn=mse, teacher=teacher, distill=kd, epochs=1, **quiet())
    assert len(calls) == 3
    for (student_out, teacher_out, batch), (x, y) in zip(calls, data):
        assert student_out.requires_grad and not teacher_out.requires_grad
        assert torch.equal(batch[0], x) and torch.equal(batch[1], y)
        with torch.no_grad():
            assert torch.allclose(teacher_out, teacher(x))
    assert [r["distill"] for r in history.steps] == pytest.approx(
        [float(F.mse_loss(s.detach(), t)) for s, t, _ in calls], rel=1e-6
    )


def test_loss_fn_calling_the_model_twice_is_refused_with_teacher():
    teacher = mlp()
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    teacher.train()
    before = state_of(model)

    def twice(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y) + F.mse_loss(model(x * 2), y)

    with pytest.raises(Sparse24Error, match="exactly one forward"):
        finetune(model, mlp_batches(2), loss_fn=twice, teacher=teacher, **quiet())
    assert teacher.training, "the teacher's mode is restored after an error"
    assert_same_state(state_of(model), before)
    # the recording hook is gone: the same loss_fn trains without a teacher
    finetune(model, mlp_batches(2), loss_fn=twice, **quiet())


def test_teacher_must_not_be_the_model():
    model = sparse_mlp()
    with pytest.raises(ValueError, match="teacher"):
        finetune(model, mlp_batches(2), loss_fn=mse, teacher=model, **quiet())


def test_distillation_only_on_plain_logits():
    teacher = mlp()
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    inputs = [torch.randn(8, 16) for _ in range(5)]  # batches are the model's input only
    everything = torch.cat(inputs)
    with torch.no_grad():
        gap_before = float(distill_loss(model(everything), teacher(everything)))
    before = state_of(model)
    history = finetune(model, inputs, teacher=teacher, alpha=1.0, epochs=4, lr=1e-2, **quiet())
    with torch.no_grad():
        gap_after = float(distill_loss(model(everything), teacher(everything)))
    assert not torch.equal(model.fc1.weight, before["fc1.weight"])
    assert gap_after < gap_before
    assert all(r["task"] == 0.0 and r["distill"] > 0 for r in history.steps)
    assert all(r["loss"] == pytest.approx(r["distill"]) for r in history.steps)
    assert_masks_hold(model)


def test_plain_logits_without_loss_fn_need_alpha_one():
    teacher = mlp()
    model = copy.deepcopy(teacher)
    sparse24.sparsify(model, "magnitude", progress=False)
    with pytest.raises(Sparse24Error, match="scalar"):
        finetune(model, [torch.randn(8, 16)], teacher=teacher, alpha=0.5, **quiet())


# -- 5. gradient accumulation ------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_grad_accum_matches_the_large_batch(optimizer):
    large = mlp_batches(4, batch=8)
    small = [(x[i : i + 4], y[i : i + 4]) for x, y in large for i in (0, 4)]
    one = sparse_mlp()
    two = copy.deepcopy(one)
    initial = state_of(one)

    def options(model):
        if optimizer == "sgd":
            return {"optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)}
        return {"lr": 1e-2}

    h1 = finetune(one, large, loss_fn=mse, epochs=2, grad_accum=1, seed=0, **options(one), **quiet())
    h2 = finetune(two, small, loss_fn=mse, epochs=2, grad_accum=2, seed=0, **options(two), **quiet())
    assert len(h1.steps) == len(h2.steps) == 8
    assert [r["lr"] for r in h1.steps] == [r["lr"] for r in h2.steps]
    assert [r["loss"] for r in h2.steps] == pytest.approx([r["loss"] for r in h1.steps], rel=1e-5)
    s1, s2 = state_of(one), state_of(two)
    assert not torch.equal(s1["fc1.weight"], initial["fc1.weight"]), "no training happened"
    for key in s1:
        if s1[key].is_floating_point():
            torch.testing.assert_close(s2[key], s1[key], rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(s2[key], s1[key])
    assert_masks_hold(two)


def test_grad_accum_drops_an_incomplete_tail(caplog):
    caplog.set_level(logging.WARNING, logger="sparse24.finetune")
    history = finetune(sparse_mlp(), mlp_batches(5), loss_fn=mse, grad_accum=2, epochs=2, **quiet())
    assert len(history.steps) == 4 and history.total_steps == 4
    assert any("skipped" in r.getMessage() for r in caplog.records)


# -- 6. AMP ------------------------------------------------------------------------------------


def test_amp_bf16_on_cpu_keeps_masks(convnet, batches, loss_fn, tmp_path):
    model = convnet()
    sparse24.sparsify(model, "magnitude", progress=False)
    before = state_of(model)
    history = finetune(model, batches(4), loss_fn=loss_fn, amp="bf16", epochs=1, lr=1e-2, checkpoint_dir=tmp_path, **quiet())
    assert len(history.steps) == 4 and all(math.isfinite(r["loss"]) for r in history.steps)
    assert_masks_hold(model)
    assert model.fc.weight.dtype == torch.float32
    assert not torch.equal(model.fc.weight.detach(), before["fc.weight"])
    state = torch.load(tmp_path / "step-00000004" / "trainer.pt", weights_only=True)
    assert state["scaler"] is None, "bf16 needs no GradScaler"


def test_float16_weights_with_an_eps_float16_cannot_hold_are_refused_before_any_step():
    model = sparse_mlp(seed=0).half()
    before = state_of(model)
    data = [(x.half(), y.half()) for x, y in mlp_batches(4)]
    with pytest.raises(Sparse24Error, match=r"AdamW with eps=1e-08 on masked float16 weights: eps is 0 in float16, .* NaN at the first step\. Keep the weights in float32"):
        finetune(model, data, loss_fn=mse, epochs=1, **quiet())
    assert_same_state(state_of(model), before)  # it used to train one step, NaN every pruned weight, then stop on the NaN loss
    history = finetune(model, data, loss_fn=mse, epochs=1, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-4), **quiet())
    assert all(math.isfinite(r["loss"]) for r in history.steps)
    assert not any(p.isnan().any() for p in model.parameters())
    assert_masks_hold(model)


def test_amp_fp16_uses_a_grad_scaler(convnet, batches, loss_fn, tmp_path):
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            convnet()(batches(1)[0][0])
        torch.amp.GradScaler("cpu")
    except (RuntimeError, TypeError, AssertionError) as error:
        pytest.skip(f"CPU autocast/GradScaler for float16 is not supported by this torch: {error}")
    model = convnet()
    sparse24.sparsify(model, "magnitude", progress=False)
    before = state_of(model)
    history = finetune(
        model, batches(4), loss_fn=loss_fn, amp="fp16", grad_clip=10.0, epochs=2, lr=1e-2, checkpoint_dir=tmp_path, **quiet()
    )
    assert len(history.steps) == 8 and history.total_steps == 8
    assert all("grad_norm" in r for r in history.steps)
    assert_masks_hold(model)
    assert not torch.equal(model.fc.weight.detach(), before["fc.weight"])
    state = torch.load(tmp_path / "step-00000008" / "trainer.pt", weights_only=True)
    assert isinstance(state["scaler"], dict) and state["scaler"]["scale"] > 0, "fp16 trains through a GradScaler"


# -- 7. gradient clipping ------------------------------------------------------------------------


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_grad_clip_records_the_norm_and_bounds_the_update():
    data = mlp_batches(1)
    model = sparse_mlp()
    probe = copy.deepcopy(model)
    mse(probe, data[0]).backward()
    true_norm = float(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in probe.parameters()])))

    lr, clip = 10.0, 1e-3
    before = _flat(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = finetune(model, data, loss_fn=mse, optimizer=optimizer, scheduler="constant", warmup_steps=0, grad_clip=clip, steps=1, **quiet())
    (record,) = history.steps
    assert record["grad_norm"] == pytest.approx(true_norm, rel=1e-5)
    assert record["grad_norm"] > 100 * clip, "the test needs a gradient far above the clip"
    step = float(torch.linalg.vector_norm(_flat(model) - before))
    assert step <= lr * clip * 1.001
    assert step >= lr * clip * 0.99
    assert_masks_hold(model)

    unclipped = sparse_mlp()
    unclipped.load_state_dict(probe.state_dict())
    history = finetune(unclipped, data, loss_fn=mse, optimizer=torch.optim.SGD(unclipped.parameters(), lr=lr), scheduler="constant", warmup_steps=0, steps=1, **quiet())
    assert "grad_norm" not in history.steps[0]
    assert float(torch.linalg.vector_norm(_flat(unclipped) - before)) > 100 * lr * clip


# -- 8. history --------------------------------------------------------------------------------


def test_history_counts_steps_and_epochs():
    history = finetune(sparse_mlp(), mlp_batches(5), loss_fn=mse, epochs=3, log_every=2, **quiet())
    assert history.total_steps == 15
    assert [r["step"] for r in history.steps] == list(range(1, 16))
    assert [r["epoch"] for r in history.steps] == [1] * 5 + [2] * 5 + [3] * 5
    assert [(r["epoch"], r["step"]) for r in history.epochs] == [(1, 5), (2, 10), (3, 15)]
    for record in history.epochs:
        losses = [r["loss"] for r in history.steps if r["epoch"] == record["epoch"]]
        assert record["train_loss"] == pytest.approx(sum(losses) / len(losses))
    assert history.initial == {} and history.final == {}
    assert history.resumed_from is None and history.seconds > 0


def test_history_eval_fn_before_and_after_every_epoch():
    calls = []

    def eval_fn(model, data):
        calls.append((model.training, torch.is_grad_enabled()))
        with torch.no_grad():
            losses = [float(mse(model, batch)) for batch in data]
        return {"loss": sum(losses) / len(losses), "calls": float(len(calls))}

    model = sparse_mlp()
    eval_data = mlp_batches(3)  # the training data, so that training lowers the eval loss
    history = finetune(model, eval_data, loss_fn=mse, epochs=2, eval_fn=eval_fn, eval_data=eval_data, lr=1e-2, **quiet())
    assert calls == [(False, False)] * 3
    assert model.training
    assert history.initial["calls"] == 1.0 and set(history.initial) == {"loss", "calls"}
    assert [r["calls"] for r in history.epochs] == [2.0, 3.0]
    assert history.final == {"loss": history.epochs[-1]["loss"], "calls": 3.0}
    model.eval()
    expected = eval_fn(model, eval_data)["loss"]
    assert history.final["loss"] == pytest.approx(expected)
    assert history.final["loss"] < history.initial["loss"]


def test_history_eval_fn_returning_a_number():
    history = finetune(sparse_mlp(), mlp_batches(2), loss_fn=mse, eval_fn=lambda model, data: 0.5, **quiet())
    assert history.initial == {"metric": 0.5} and history.final == {"metric": 0.5}


def test_history_eval_data_alone_gives_eval_loss():
    model = sparse_mlp(dropout=0.5)
    eval_data = mlp_batches(3)
    history = finetune(model, mlp_batches(4), loss_fn=mse, eval_data=eval_data, epochs=1, lr=1e-2, **quiet())
    assert set(history.initial) == {"eval_loss"} and set(history.final) == {"eval_loss"}
    model.eval()  # the eval loss is taken in eval mode (no dropout)
    with torch.no_grad():
        expected = sum(float(mse(model, batch)) for batch in eval_data) / 3
    assert history.final["eval_loss"] == pytest.approx(expected, rel=1e-6)


def test_history_json_round_trip():
    history = finetune(sparse_mlp(), mlp_batches(3), loss_fn=mse, epochs=2, eval_data=mlp_batches(1), teacher=mlp(), grad_clip=1.0, **quiet())
    data = json.loads(history.to_json())
    again = FinetuneHistory.from_dict(data)
    assert again == history
    assert again.final == history.final and again.initial == history.initial
    assert {"task", "distill", "grad_norm"} <= set(again.steps[0])


def test_steps_cycles_over_epochs():
    calls = []

    def counting(model, batch):
        calls.append(batch)
        return mse(model, batch)

    data = mlp_batches(3)
    history = finetune(sparse_mlp(), data, loss_fn=counting, steps=7, **quiet())
    assert len(calls) == 7 and history.total_steps == 7 and len(history.steps) == 7
    assert [c[0] for c in calls] == [data[i % 3][0] for i in range(7)]
    assert [(r["epoch"], r["step"]) for r in history.epochs] == [(1, 3), (2, 6), (3, 7)]

    calls.clear()
    history = finetune(sparse_mlp(), mlp_batches(4), loss_fn=counting, steps=3, grad_accum=2, **quiet())
    assert len(calls) == 6 and len(history.steps) == 3


def test_steps_with_an_unsized_reiterable():
    class Stream:  # re-iterable, no len()
        def __init__(self, batches):
            self.batches = batches

        def __iter__(self):
            return iter(self.batches)

    history = finetune(sparse_mlp(), Stream(mlp_batches(3)), loss_fn=mse, steps=5, **quiet())
    assert len(history.steps) == 5 and [r["step"] for r in history.epochs] == [3, 5]


# -- 9. argument checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"lr": 0},
        {"lr": -1e-3},
        {"alpha": 1.5},
        {"alpha": -0.1},
        {"distill": "js"},
        {"scheduler": "step"},
        {"grad_accum": 0},
        {"amp": "fp8"},
        {"epochs": 0},
        {"steps": 2.5},
        {"checkpoint_every": 0},
        {"grad_clip": -1.0},
        {"temperature": 0},
        {"log_every": 0},
        {"keep_checkpoints": 0},
        {"keep_checkpoints": -1},
    ],
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()),
)
def test_bad_arguments_raise_value_error_naming_the_value(options, tmp_path):
    ((name, value),) = options.items()
    model = sparse_mlp()
    before = state_of(model)
    with pytest.raises(ValueError, match=rf"{name}\b.*got {re.escape(repr(value))}$"):
        finetune(model, mlp_batches(2), loss_fn=mse, checkpoint_dir=tmp_path / "ck", **quiet(**options))
    assert_same_state(state_of(model), before)
    assert not (tmp_path / "ck").exists()


def test_epochs_and_steps_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        finetune(sparse_mlp(), mlp_batches(2), loss_fn=mse, epochs=1, steps=2, **quiet())


def test_resume_true_needs_a_directory():
    with pytest.raises(ValueError, match="checkpoint_dir"):
        finetune(sparse_mlp(), mlp_batches(2), loss_fn=mse, resume=True, **quiet())


def test_generator_with_two_epochs_is_refused():
    data = mlp_batches(3)
    model = sparse_mlp()
    before = state_of(model)
    with pytest.raises((Sparse24Error, ValueError), match="re-iterable|steps="):
        finetune(model, (batch for batch in data), loss_fn=mse, epochs=2, **quiet())
    assert_same_state(state_of(model), before)  # refused up front, before any training
    with pytest.raises(Sparse24Error, match="re-iterable"):
        finetune(model, (batch for batch in data), loss_fn=mse, steps=5, **quiet())


def test_sized_one_shot_iterable_with_two_epochs():
    class Once:
        def __init__(self, batches):
            self.it = iter(batches)
            self.n = len(batches)

        def __len__(self):
            return self.n

        def __iter__(self):
            return self.it

    with pytest.raises(Sparse24Error, match="re-iterable"):
        finetune(sparse_mlp(), Once(mlp_batches(3)), loss_fn=mse, epochs=2, **quiet())


def test_unsized_iterable_needs_steps():
    with pytest.raises(ValueError, match="steps="):
        finetune(sparse_mlp(), iter(mlp_batches(2)), loss_fn=mse, **quiet())


def test_too_few_batches_for_grad_accum():
    with pytest.raises(ValueError, match="grad_accum=4"):
        finetune(sparse_mlp(), mlp_batches(3), loss_fn=mse, grad_accum=4, **quiet())


# -- 10. checkpoints and resume ----------------------------------------------------------------


def _entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _latest(directory: Path) -> str:
    return (directory / "latest").read_text(encoding="utf-8").strip()


@pytest.mark.parametrize(("keep", "kept"), [(2, [6, 7]), (1, [7]), (None, [2, 4, 6, 7])])
def test_checkpoint_layout(keep, kept, tmp_path):
    directory = tmp_path / "ck"
    model = sparse_mlp()
    history = finetune(model, mlp_batches(7), loss_fn=mse, epochs=1, checkpoint_dir=directory, checkpoint_every=2, keep_checkpoints=keep, **quiet())
    assert _entries(directory) == ["latest"] + [f"step-{step:08d}" for step in kept]  # no hidden temp dirs
    assert _latest(directory) == "step-00000007"
    for step in kept:
        assert _entries(directory / f"step-{step:08d}") == ["model.safetensors", "trainer.pt"]
        state = torch.load(directory / f"step-{step:08d}" / "trainer.pt", weights_only=True)
        assert state["step"] == step and state["format"] == 1
        assert state["micro"] == (0 if step == 7 else step) and state["epoch"] == (1 if step == 7 else 0)
        assert len(json.loads(state["history"])["steps"]) == step
    restored = sparse_mlp(seed=99)
    sparse24.load(restored, directory / "step-00000007" / "model.safetensors")
    assert_same_state(state_of(restored), state_of(model))
    assert history.total_steps == 7


def test_checkpoint_rerun_into_the_same_directory_leaves_no_temporaries(tmp_path, caplog):
    directory = tmp_path / "ck"
    first = sparse_mlp(seed=1)
    finetune(first, mlp_batches(4), loss_fn=mse, epochs=1, checkpoint_dir=directory, checkpoint_every=2, seed=0, **quiet())
    caplog.set_level(logging.WARNING, logger="sparse24.finetune")
    second = sparse_mlp(seed=2)
    finetune(second, mlp_batches(4), loss_fn=mse, epochs=1, checkpoint_dir=directory, checkpoint_every=2, seed=0, **quiet())
    assert any("already holds checkpoints" in r.getMessage() for r in caplog.records)
    assert _entries(directory) == ["latest", "step-00000002", "step-00000004"]
    check = sparse_mlp(seed=3)
    sparse24.load(check, directory / "step-00000004" / "model.safetensors")
    assert_same_state(state_of(check), state_of(second))


class Augmented(TensorDataset):
    """A dataset with a random augmentation drawn from torch's global RNG (as torchvision transforms do)."""

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return x + 0.1 * torch.randn_like(x), y


def _dropout_setup(data: str = "global-rng"):
    """A sparse model with dropout, and a shuffling DataLoader whose batches depend on an RNG.

    ``data``: "global-rng" (order from torch's global RNG), "loader-generator" (the DataLoader has
    its own seeded generator) or "augmented" (global-RNG order plus a random augmentation).
    """
    model = sparse_mlp(dropout=0.3, seed=1)
    torch.manual_seed(2)
    tensors = torch.randn(40, 16), torch.randn(40, 8)
    dataset = Augmented(*tensors) if data == "augmented" else TensorDataset(*tensors)
    generator = torch.Generator().manual_seed(5) if data == "loader-generator" else None
    return model, DataLoader(dataset, batch_size=4, shuffle=True, generator=generator)


def _interrupting(stop_at: int, loss=mse):
    calls = [0]

    def interrupted(model, batch):
        calls[0] += 1
        if calls[0] == stop_at:
            raise KeyboardInterrupt
        return loss(model, batch)

    return interrupted


def _noisy_mse(np):
    """MSE scaled by draws from Python's and NumPy's global RNGs: their states must be resumed too."""

    def loss(model, batch):
        return mse(model, batch) * (1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand()))

    return loss


@pytest.mark.parametrize(
    ("data", "stop_at", "grad_accum", "resumed_from"),
    [
        ("global-rng", 8, 1, 6),
        ("global-rng", 11, 1, 10),
        ("global-rng", 17, 1, 15),
        ("global-rng", 15, 2, 6),
        ("loader-generator", 11, 1, 10),
        ("loader-generator", 17, 1, 15),
        ("augmented", 11, 1, 10),
        ("augmented", 17, 1, 15),
    ],
    ids=[
        "mid-epoch-1",
        "epoch-boundary",
        "mid-epoch-2",
        "accum-mid-epoch-2",
        "loader-generator-epoch-boundary",
        "loader-generator-mid-epoch-2",
        "augmented-epoch-boundary",
        "augmented-mid-epoch-2",
    ],
)
def test_resume_after_interrupt_is_bitwise_equal(data, stop_at, grad_accum, resumed_from, tmp_path):
    np = pytest.importorskip("numpy")
    loss = _noisy_mse(np)
    probe = (torch.ones(4, 16), torch.zeros(4, 8))
    evaluate = lambda model, data: {"probe": float(mse(model, probe))}
    options = quiet(loss_fn=loss, epochs=2, seed=0, lr=1e-2, checkpoint_every=3, grad_accum=grad_accum, log_every=4, eval_fn=evaluate)

    probe_model, probe_loader = _dropout_setup(data)
    # the test can fail: the model's output and the batches depend on the RNG
    x = torch.randn(2, 16)
    assert not torch.equal(probe_model(x), probe_model(x))
    assert [b[0].sum() for b in probe_loader] != [b[0].sum() for b in probe_loader]

    model_a, loader_a = _dropout_setup(data)
    history_a = finetune(model_a, loader_a, checkpoint_dir=tmp_path / "a", **options)

    model_b, loader_b = _dropout_setup(data)
    with pytest.raises(KeyboardInterrupt):
        finetune(model_b, loader_b, checkpoint_dir=tmp_path / "b", **{**options, "loss_fn": _interrupting(stop_at, loss)})
    sparse24.verify(model_b)  # the interrupted model is still 2:4
    assert _latest(tmp_path / "b") == f"step-{resumed_from:08d}"
    assert not [name for name in _entries(tmp_path / "b") if name.startswith(".")]

    torch.manual_seed(1234)  # the resumed run must not depend on the caller's RNG
    model_c, loader_c = _dropout_setup(data)
    torch.manual_seed(4321)
    random.seed(4321)
    np.random.seed(4321)
    history_c = finetune(model_c, loader_c, checkpoint_dir=tmp_path / "b", resume=True, **options)
    assert history_c.resumed_from == resumed_from
    assert [r["loss"] for r in history_c.steps] == [r["loss"] for r in history_a.steps]
    assert [r["lr"] for r in history_c.steps] == [r["lr"] for r in history_a.steps]
    assert history_c.epochs == history_a.epochs and "probe" in history_c.final
    assert history_c.initial == history_a.initial
    assert_same_state(state_of(model_c), state_of(model_a))
    assert_masks_hold(model_c)
    assert _entries(tmp_path / "b") == _entries(tmp_path / "a")


def test_resume_from_an_older_checkpoint_path(tmp_path):
    directory = tmp_path / "ck"
    options = quiet(loss_fn=mse, epochs=1, seed=0, lr=1e-2, checkpoint_every=3, keep_checkpoints=None, checkpoint_dir=directory)
    model_a, loader_a = _dropout_setup()
    history_a = finetune(model_a, loader_a, **options)
    assert _entries(directory) == ["latest", "step-00000003", "step-00000006", "step-00000009", "step-00000010"]
    final_a = state_of(model_a)

    model_c, loader_c = _dropout_setup()
    history_c = finetune(model_c, loader_c, resume=directory / "step-00000003", **options)
    assert history_c.resumed_from == 3
    assert [r["loss"] for r in history_c.steps] == [r["loss"] for r in history_a.steps]
    assert_same_state(state_of(model_c), final_a)
    assert _entries(directory) == ["latest", "step-00000003", "step-00000006", "step-00000009", "step-00000010"]
    assert _latest(directory) == "step-00000010"

    # resuming a finished run restores its final weights and trains no further
    model_d, loader_d = _dropout_setup()
    history_d = finetune(model_d, loader_d, resume=True, **options)
    assert history_d.resumed_from == 10 and len(history_d.steps) == 10
    assert_same_state(state_of(model_d), final_a)


@pytest.mark.parametrize("rerun", ["resume-from-older", "shorter-fresh-run"])
def test_keep_checkpoints_never_deletes_the_one_just_written(rerun, tmp_path):
    """A second run into a directory that holds newer (higher-step) checkpoints of an earlier run."""
    directory = tmp_path / "ck"
    options = quiet(seed=0, lr=1e-2, checkpoint_every=3, checkpoint_dir=directory)
    model, loader = _dropout_setup()
    finetune(model, loader, loss_fn=mse, epochs=1, keep_checkpoints=None, **options)
    assert _entries(directory) == ["latest", "step-00000003", "step-00000006", "step-00000009", "step-00000010"]
    model, loader = _dropout_setup()
    with pytest.raises(KeyboardInterrupt):
        if rerun == "resume-from-older":  # resumed at step 3; writes step 6, stops in step 7
            finetune(model, loader, loss_fn=_interrupting(4), epochs=1, keep_checkpoints=1, resume=directory / "step-00000003", **options)
        else:  # a fresh 8-step run; writes step 6, stops in step 7
            finetune(model, loader, loss_fn=_interrupting(7), steps=8, keep_checkpoints=1, **options)
    latest = _latest(directory)
    assert latest == "step-00000006"
    assert (directory / latest / "trainer.pt").is_file(), f"`latest` names {latest}, which keep_checkpoints=1 deleted: {_entries(directory)}"


def test_a_failed_checkpoint_write_leaves_no_trace(tmp_path, monkeypatch):
    directory = tmp_path / "ck"
    real_save = torch.save
    calls = [0]

    def failing_save(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    model = sparse_mlp()
    with pytest.raises(OSError, match="disk full"):
        finetune(model, mlp_batches(5), loss_fn=mse, epochs=1, checkpoint_dir=directory, checkpoint_every=2, **quiet())
    assert _entries(directory) == ["latest", "step-00000002"]
    assert _latest(directory) == "step-00000002"
    assert read_back_step(directory) == 2
    sparse24.verify(model)


def read_back_step(directory: Path) -> int:
    state = torch.load(directory / _latest(directory) / "trainer.pt", weights_only=True)
    return int(state["step"])


@pytest.mark.parametrize("change", [{"epochs": 2}, {"grad_accum": 2}, {"steps": 3}])
def test_resume_with_another_plan_is_refused(change, tmp_path):
    directory = tmp_path / "ck"
    data = mlp_batches(6)
    finetune(sparse_mlp(seed=1), data, loss_fn=mse, epochs=1, checkpoint_dir=directory, **quiet())
    model = sparse_mlp(seed=2)
    before = state_of(model)
    options = {"epochs": 1, **change}
    if "steps" in change:
        del options["epochs"]
    with pytest.raises(Sparse24Error, match="different run"):
        finetune(model, data, loss_fn=mse, checkpoint_dir=directory, resume=True, **quiet(**options))
    assert_same_state(state_of(model), before)
    assert all(p.grad is None for p in model.parameters())
    assert _entries(directory) == ["latest", "step-00000006"]


def test_resume_from_something_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "step-00000001").mkdir()
    with pytest.raises(Sparse24Error, match="not a sparse24 checkpoint"):
        finetune(sparse_mlp(), mlp_batches(2), loss_fn=mse, resume=tmp_path / "step-00000001", **quiet())


@pytest.mark.parametrize("exists", [True, False])
def test_resume_with_an_empty_directory_starts_fresh(exists, tmp_path):
    directory = tmp_path / "ck"
    if exists:
        directory.mkdir()
    model_a, loader_a = _dropout_setup()
    history_a = finetune(model_a, loader_a, loss_fn=mse, epochs=1, seed=0, **quiet())
    model_b, loader_b = _dropout_setup()
    history_b = finetune(model_b, loader_b, loss_fn=mse, epochs=1, seed=0, checkpoint_dir=directory, resume=True, **quiet())
    assert history_b.resumed_from is None
    assert [r["loss"] for r in history_b.steps] == [r["loss"] for r in history_a.steps]
    assert_same_state(state_of(model_b), state_of(model_a))
    assert _latest(directory) == "step-00000010"


KILLED_CHILD = textwrap.dedent(
    """
    \"\"\"A finetune run that SIGKILLs itself mid-epoch; also imported by the test for the reference runs.\"\"\"
    import os
    import signal
    import sys
    from collections import OrderedDict

    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import sparse24

    OPTIONS = dict(epochs=2, seed=0, lr=1e-2, checkpoint_every=3, progress=False)


    def setup():
        torch.manual_seed(1)
        model = nn.Sequential(OrderedDict(
            fc1=nn.Linear(16, 32), act=nn.ReLU(), drop=nn.Dropout(0.3), fc2=nn.Linear(32, 8)
        ))
        sparse24.sparsify(model, "magnitude", progress=False)
        dataset = TensorDataset(torch.randn(40, 16), torch.randn(40, 8))
        return model, DataLoader(dataset, batch_size=4, shuffle=True)


    def loss_fn(kill_at=0):
        calls = [0]

        def loss(model, batch):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            x, y = batch
            return F.mse_loss(model(x), y)

        return loss


    if __name__ == "__main__":
        checkpoints, kill_at, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        torch.set_num_threads(threads)
        model, loader = setup()
        sparse24.finetune(model, loader, loss_fn=loss_fn(kill_at), checkpoint_dir=checkpoints, **OPTIONS)
        sys.exit("finetune finished: the kill never happened")
    """
)


def test_resume_after_sigkill_is_bitwise_equal(tmp_path):
    import importlib.util

    from safetensors.torch import load_file

    script = tmp_path / "killed_child.py"
    script.write_text(KILLED_CHILD, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("killed_child", script)
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)

    directory = tmp_path / "killed"
    args = [sys.executable, str(script), str(directory), "14", str(torch.get_num_threads())]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        full_model, full_loader = child.setup()  # the uninterrupted reference, while the child runs
        full = finetune(full_model, full_loader, loss_fn=child.loss_fn(), **child.OPTIONS)
        sparse24.save(full_model, tmp_path / "full.safetensors")
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, f"rc={process.returncode}: {err}"
    assert _latest(directory) == "step-00000012"  # killed in step 14, after the step-12 checkpoint
    assert not [name for name in _entries(directory) if name.startswith(".")]

    model, loader = child.setup()
    resumed = finetune(model, loader, loss_fn=child.loss_fn(), checkpoint_dir=directory, resume=True, **child.OPTIONS)
    sparse24.save(model, tmp_path / "resumed.safetensors")
    assert resumed.resumed_from == 12 and full.resumed_from is None
    assert [r["loss"] for r in resumed.steps] == [r["loss"] for r in full.steps]
    assert len(resumed.steps) == 20

    expected, actual = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "resumed.safetensors"))
    assert sorted(actual) == sorted(expected)
    assert [k for k in expected if not same_bits(actual[k], expected[k])] == []
    sparse24.verify(model)


# -- 11. progress ------------------------------------------------------------------------------


def test_progress_logs_lines_when_stderr_is_not_a_tty(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="sparse24.finetune")
    finetune(sparse_mlp(), mlp_batches(6), loss_fn=mse, epochs=1, log_every=2, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "sparse24.finetune" and re.match(r"finetune \d+/\d+ ", r.getMessage())]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("loss=" in line and "lr=" in line for line in lines)
    assert sys.stderr.getvalue() == "", "no bar is drawn on a non-terminal"


def test_no_progress_lines_when_disabled(caplog):
    caplog.set_level(logging.INFO, logger="sparse24.finetune")
    finetune(sparse_mlp(), mlp_batches(4), loss_fn=mse, epochs=1, log_every=1, progress=False)
    assert not [r for r in caplog.records if re.match(r"finetune \d+/\d+ ", r.getMessage())]
    assert any("epoch 1 done" in r.getMessage() for r in caplog.records)


# -- the model comes back in the mode it came in -----------------------------------------


@pytest.mark.parametrize("stop", [None, RuntimeError("bad batch"), KeyboardInterrupt()], ids=["finished", "error", "ctrl-c"])
@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_finetune_gives_the_model_back_in_the_mode_it_came_in(mode, stop):
    model = sparse_mlp(dropout=0.5)
    if mode == "eval":
        model.eval()
    elif mode == "mixed":  # a train model with one module the user froze in eval
        model.drop.eval()
    before = {name: module.training for name, module in model.named_modules()}
    seen = []

    def loss_fn(m, batch):
        seen.append(m.training)
        if stop is not None and len(seen) == 2:
            raise stop
        return mse(m, batch)

    if stop is None:
        finetune(model, mlp_batches(3), loss_fn=loss_fn, **quiet())
    else:
        with pytest.raises(type(stop)):
            finetune(model, mlp_batches(3), loss_fn=loss_fn, **quiet())
    assert seen and all(seen), "training steps run in train mode"
    assert {name: module.training for name, module in model.named_modules()} == before
