"""``finetune``: the short recovery training that brings a 2:4 model back to dense accuracy.

The recipe follows the recovery practice (ASP, Mishra et al. 2021): keep the masks, train
briefly with warm-up and a cosine decay at a learning rate below the dense run's, and distill
from the dense model. It runs in one process or under ``torchrun`` (DDP, or FSDP2 with
``strategy="fsdp"``), with AMP, gradient clipping and accumulation, and atomic, resumable
checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import dist, interrupts
from .batch import call, check_loss, describe, logits, model_loss, to_device
from .checkpoint import (
    MODEL_FILE,
    is_sharded_checkpoint,
    latest_checkpoint,
    load_sharded_checkpoint,
    read_trainer_state,
    rng_state,
    save_checkpoint,
    save_sharded_checkpoint,
    set_rng_state,
)
from .enforce import attach_optimizer, check_optimizer, has_masks, is_sharded, mask_sharded_grads, masked_gemm_weights, shard_masks
from .errors import Sparse24Error, running
from .io import load as load_weights
from .progress import Progress

__all__ = ["finetune", "FinetuneHistory", "WarmupSchedule", "distill_loss", "SCHEDULES", "DISTILL"]

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine", "linear", "constant")
STRATEGIES = ("ddp", "fsdp")
DISTILL = ("kl", "mse")
_END = object()
_AMP = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}

LossFn = Callable[[nn.Module, Any], Tensor]
DistillFn = Callable[[Any, Any, Any], Tensor]
EvalFn = Callable[[nn.Module, Any], "float | Mapping[str, float]"]


@dataclass
class FinetuneHistory:
    """What ``finetune`` did: one record per optimizer step and per epoch, and eval before training.

    ``steps``: ``{"step", "epoch", "loss", "lr"}`` (+ ``"task"``, ``"distill"`` when
    distilling, ``"grad_norm"`` with ``grad_clip``, ``"loss_scale"`` with ``amp="fp16"``: the
    GradScaler's scale this step's backward used; it halves after a step skipped for inf/NaN
    gradients). ``epochs``: ``{"epoch", "step",
    "train_loss", "lr"}`` plus the eval metrics. ``initial``: eval metrics before the first
    step (empty without eval). ``resumed_from``: the step a resumed run started at.
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)
    total_steps: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        """Eval metrics after the last epoch (empty without eval)."""
        if not self.epochs:
            return {}
        skip = {"epoch", "step", "train_loss", "lr"}
        return {k: v for k, v in self.epochs[-1].items() if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneHistory:
        return cls(**{k: data[k] for k in ("steps", "epochs", "initial", "total_steps", "resumed_from", "seconds") if k in data})


class WarmupSchedule:
    """``LambdaLR`` factor: linear warm-up over ``warmup`` steps, then cosine/linear decay or constant.

    The factor for optimizer step ``k`` (0-based) is ``(k + 1) / (warmup + 1)`` during warm-up,
    then decays from 1 towards ``final`` at step ``total``. Plain attributes, so the scheduler's
    ``state_dict`` round-trips it.
    """

    def __init__(self, kind: str, warmup: int, total: int, final: float = 0.0) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"scheduler must be one of {SCHEDULES}, an LRScheduler or None, got {kind!r}")
        self.kind, self.warmup, self.total, self.final = kind, warmup, total, final

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
        return self.final + (1.0 - self.final) * shape


def distill_loss(student: Tensor, teacher: Tensor, kind: str = "kl", temperature: float = 2.0) -> Tensor:
    """Distillation loss between logits ``[..., classes]`` in fp32.

    ``"kl"``: ``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over all positions
    (Hinton et al. 2015); ``"mse"``: mean squared error of the logits.
    """
    student, teacher = student.float(), teacher.float().detach()
    if student.shape != teacher.shape:
        raise Sparse24Error(f"student logits {list(student.shape)} and teacher logits {list(teacher.shape)} differ in shape")
    if kind == "mse":
        return F.mse_loss(student, teacher)
    s = F.log_softmax(student.reshape(-1, student.shape[-1]) / temperature, dim=-1)
    t = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


class _Forwards:
    """Forward hook on the student: the inputs and output of each call, to replay on the teacher."""

    def __init__(self, module: nn.Module) -> None:
        self.calls: list[tuple[tuple, dict, Any]] = []
        self.handle = module.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if torch.is_grad_enabled():  # eval forwards are not training steps
            self.calls.append((args, kwargs, output))

    def take(self) -> tuple[tuple, dict, Any]:
        calls, self.calls = self.calls, []
        if len(calls) != 1:
            raise Sparse24Error(f"distillation needs exactly one forward call of the model per batch; loss_fn made {len(calls)}")
        return calls[0]


@dataclass
class _Plan:
    """How many micro-batches and optimizer steps each rank runs."""

    total_steps: int
    steps_per_epoch: int | None  # None: until the data runs out
    grad_accum: int
    world_size: int
    sharded: bool  # plain data under DDP: rank r takes batches r, r + W, ...

    @property
    def micro_per_epoch(self) -> int | None:
        return None if self.steps_per_epoch is None else self.steps_per_epoch * self.grad_accum

    def key(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch, "grad_accum": self.grad_accum, "world_size": self.world_size}


def _distributed_sampler(data: Any) -> Any:
    from torch.utils.data import DistributedSampler

    sampler = getattr(data, "sampler", None)
    return sampler if isinstance(sampler, DistributedSampler) else None


def _plan(data: Any, epochs: int | None, steps: int | None, grad_accum: int) -> _Plan:
    world = dist.world_size()
    sampler = _distributed_sampler(data)
    sharded = world > 1 and sampler is None
    try:
        batches = len(data)
    except TypeError:
        batches = None
    if batches is None:
        if sharded:
            raise ValueError("under torch.distributed, train_data must have a len() (a list or DataLoader) or a DistributedSampler")
        if steps is None:
            raise ValueError("train_data has no len(); pass steps= (the number of optimizer steps)")
        return _Plan(steps, None, grad_accum, world, sharded)
    per_rank = batches // world if sharded else batches
    steps_per_epoch = per_rank // grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"train_data has {batches} batches: fewer than grad_accum={grad_accum} per rank (world size {world})")
    if per_rank % grad_accum:
        logger.warning("finetune: %d batches per epoch per rank; the last %d do not fill a grad_accum=%d step and are skipped", per_rank, per_rank % grad_accum, grad_accum)
    total = steps if steps is not None else (epochs or 1) * steps_per_epoch
    return _Plan(total, steps_per_epoch, grad_accum, world, sharded)


def _epoch_batches(data: Iterable[Any], plan: _Plan) -> Iterable[Any]:
    if not plan.sharded:
        yield from data
        return
    rank = dist.rank()
    for index, batch in enumerate(data):
        if index % plan.world_size == rank:
            yield batch


def _data_generators(data: Any) -> list[torch.Generator]:
    """Generators that decide a DataLoader's order (their state is saved per epoch for resuming)."""
    found = []
    for owner in (data, getattr(data, "sampler", None), getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _amp_dtype(amp: Any) -> torch.dtype | None:
    if amp is None or amp is False:
        return None
    if amp in (torch.float16, torch.bfloat16):
        return amp
    if isinstance(amp, str) and amp.lower() in _AMP:
        return _AMP[amp.lower()]
    raise ValueError(f"amp must be None, 'bf16' or 'fp16' (or torch.bfloat16/float16), got {amp!r}")


def _default_optimizer(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation parameters (ndim < 2)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise Sparse24Error("the model has no parameter with requires_grad=True: nothing to finetune")
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        return scheduler
    kind = "constant" if scheduler is None else scheduler
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule(kind, warmup, total))


def _metrics(result: Any) -> dict[str, float]:
    if isinstance(result, Mapping):
        return {str(k): float(v) for k, v in result.items()}
    if isinstance(result, (int, float)) or (isinstance(result, Tensor) and result.numel() == 1):
        return {"metric": float(result)}
    raise Sparse24Error(f"eval_fn must return a number or a mapping of name -> number, got {describe(result)}")


def _broadcast(value: Any) -> Any:
    """``value`` from rank 0 on every rank (identity without a process group)."""
    if dist.world_size() == 1:
        return value
    import torch.distributed as tdist

    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(value: Any) -> list[Any]:
    if dist.world_size() == 1:
        return [value]
    import torch.distributed as tdist

    out: list[Any] = [None] * dist.world_size()
    tdist.all_gather_object(out, value)
    return out


def _validate_strategy(strategy: Any, fsdp_blocks: Any) -> None:
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None (fsdp for a sharded model, ddp otherwise), got {strategy!r}")
    if fsdp_blocks is not None:
        if isinstance(fsdp_blocks, str) or not isinstance(fsdp_blocks, Sequence) or not all(isinstance(n, str) for n in fsdp_blocks):
            raise ValueError(f"fsdp_blocks must be a list of module names, got {fsdp_blocks!r}")
        if strategy != "fsdp":
            raise ValueError("fsdp_blocks is for strategy='fsdp' (the blocks finetune shards)")


def _validate(epochs, steps, lr, warmup_steps, grad_accum, grad_clip, alpha, temperature, distill, checkpoint_every, log_every, keep_checkpoints) -> None:
    if epochs is not None and steps is not None:
        raise ValueError("pass epochs= or steps=, not both")
    for name, value in (("epochs", epochs), ("steps", steps), ("checkpoint_every", checkpoint_every)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name, value in (("grad_accum", grad_accum), ("log_every", log_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if warmup_steps is not None and (not isinstance(warmup_steps, int) or warmup_steps < 0):
        raise ValueError(f"warmup_steps must be a non-negative int or None, got {warmup_steps!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if grad_clip is not None and (not isinstance(grad_clip, (int, float)) or not grad_clip > 0):
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if keep_checkpoints is not None and (not isinstance(keep_checkpoints, int) or isinstance(keep_checkpoints, bool) or keep_checkpoints < 1):
        raise ValueError(f"keep_checkpoints must be a positive int or None (keep all), got {keep_checkpoints!r}")
    if not callable(distill) and distill not in DISTILL:
        raise ValueError(f"distill must be one of {DISTILL} or a callable(student_out, teacher_out, batch), got {distill!r}")


class _Trainer:
    """State of one ``finetune`` call; see :func:`finetune` for the meaning of the options."""

    def __init__(self, model: nn.Module, train_data: Iterable[Any], options: dict[str, Any]) -> None:
        self.options = options
        self.train_data = train_data
        self.module = dist.unwrap(model)
        self.fsdp = self.setup_fsdp(model, options)
        if not (has_masks(self.module) if self.fsdp else masked_gemm_weights(self.module)):
            raise Sparse24Error("the model has no 2:4 masks: run sparse24.sparsify(model, ...) (or load_masks) before finetune")
        self.device = next(self.module.parameters()).device
        self.train_model = model
        if self.fsdp:
            shard_masks(self.module)
            from torch.distributed.fsdp import FSDPModule

            self.fsdp_modules = [m for m in self.module.modules() if isinstance(m, FSDPModule)]
        elif not dist.is_ddp(model) and dist.world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.module, device_ids=ids)
            logger.info("finetune: wrapped the model in DistributedDataParallel (world size %d)", dist.world_size())
        self.ddp = dist.is_ddp(self.train_model)
        self.amp = _amp_dtype(options["amp"])
        self.plan = _plan(train_data, options["epochs"], options["steps"], options["grad_accum"])
        total = self.plan.total_steps
        warmup = options["warmup_steps"]
        if warmup is None:
            warmup = min(total // 2, max(1, round(0.05 * total)))
        self.optimizer = options["optimizer"] or _default_optimizer(self.module, options["lr"], options["weight_decay"])
        check_optimizer(self.optimizer)  # before any step: float16 weights with an eps that is 0 in float16
        self.scheduler = _scheduler(options["scheduler"], self.optimizer, warmup, total)
        use_scaler = self.amp is torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler) if use_scaler else None
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.history = FinetuneHistory(total_steps=total)
        self.step = 0
        self.epoch = 0
        self.micro = 0  # micro-batches of the current epoch already consumed
        self.epoch_rng_all: list[dict[str, Any]] | None = None  # every rank's RNG at the start of the epoch
        self.resume_rng: dict[str, Any] | None = None
        self.pending: list[tuple[int, int, float, float | None, Tensor]] = []  # (step, epoch, lr, loss scale, [loss, task, distill, grad_norm])
        self.teacher = options["teacher"]
        self.forwards: _Forwards | None = None
        self.accumulated: Tensor | None = None

    def setup_fsdp(self, model: nn.Module, options: dict[str, Any]) -> bool:
        """Decide the strategy; shard the model (FSDP2) when asked. True for a sharded run."""
        strategy, sharded = options["strategy"], is_sharded(self.module)
        if strategy is None:
            strategy = "fsdp" if sharded else "ddp"
        if strategy == "ddp":
            if sharded:
                raise Sparse24Error("the model is sharded (FSDP2 fully_shard): use strategy='fsdp' (or leave strategy unset)")
            return False
        if dist.is_ddp(model):
            raise Sparse24Error("strategy='fsdp' takes the plain model (or one sharded with fully_shard), not a DistributedDataParallel wrapper")
        if not sharded:
            if options["optimizer"] is not None:
                raise Sparse24Error(
                    "strategy='fsdp' shards the model, which replaces its parameters, so an optimizer= built on them would train nothing; "
                    "shard it yourself (fully_shard) and build the optimizer after, or leave optimizer unset"
                )
            dist.fsdp_shard(self.module, options["fsdp_blocks"])
        return True

    def gradient_sync(self, enabled: bool) -> None:
        """FSDP2: reduce-scatter gradients on this backward (the last micro-batch of a step) or not."""
        for module in self.fsdp_modules:
            module.set_requires_gradient_sync(enabled, recurse=False)

    # -- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "epoch": self.epoch,
            "micro": self.micro,
            "optimizer": None if self.fsdp else self.optimizer.state_dict(),  # sharded: in the DCP files
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": _gather(self.rng()),
            "epoch_rng": self.epoch_rng_all,
            "plan": self.plan.key(),
            "history": json.dumps(self.history.to_dict()),
        }

    def save(self) -> None:
        directory = self.options["checkpoint_dir"]
        if directory is None:
            return
        self.flush()
        state = self.state()  # every rank takes part in gathering the RNG states
        if self.fsdp:  # every rank writes its shards
            save_sharded_checkpoint(directory, self.step, self.module, self.optimizer, state, self.options["keep_checkpoints"])
            return
        if dist.is_main():
            save_checkpoint(directory, self.step, self.module, state, self.options["keep_checkpoints"])
        if dist.world_size() > 1:
            import torch.distributed as tdist

            tdist.barrier()

    def restore(self) -> bool:
        resume, directory = self.options["resume"], self.options["checkpoint_dir"]
        if not resume:
            if directory is not None and latest_checkpoint(directory) is not None:
                logger.warning("finetune: %s already holds checkpoints; resume=True would continue from them", directory)
            return False
        if resume is True:
            if directory is None:
                raise ValueError("resume=True needs checkpoint_dir= (or pass resume='path/to/step-dir')")
            path = latest_checkpoint(directory)
            if self.fsdp:  # every rank loads the same step
                path = dist.broadcast_object(None if path is None else str(path))
                path = None if path is None else Path(path)
            if path is None:
                logger.info("finetune: no checkpoint in %s yet; starting from step 0", directory)
                return False
        else:
            path = Path(resume)
        state = read_trainer_state(path)
        saved = state.get("plan", {})
        mismatched = {k: (saved.get(k), v) for k, v in self.plan.key().items() if saved.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a}, now {b}" for k, (a, b) in mismatched.items())
            raise Sparse24Error(f"checkpoint {path} was made by a different run ({detail}); resume with the same settings")
        if self.fsdp != is_sharded_checkpoint(path):
            written, now = ("strategy='fsdp'", "without it") if not self.fsdp else ("a run without strategy='fsdp'", "with strategy='fsdp'")
            raise Sparse24Error(f"checkpoint {path} was written by {written}; it cannot be resumed {now}")
        if self.fsdp:
            load_sharded_checkpoint(path, self.module, self.optimizer)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if not self.fsdp:
            load_weights(self.module, path / MODEL_FILE)
        self.step, self.epoch, self.micro = int(state["step"]), int(state["epoch"]), int(state["micro"])
        self.history = FinetuneHistory.from_dict(json.loads(state["history"]))
        self.history.resumed_from = self.step
        rank = dist.rank()
        self.resume_rng = state["rng"][rank]
        self.epoch_rng_all = state["epoch_rng"]
        logger.info("finetune: resumed from %s (step %d of %d, epoch %d)", path, self.step, self.plan.total_steps, self.epoch + 1)
        return True

    # -- one step ------------------------------------------------------------------------
    def micro_loss(self, batch: Any, first: bool) -> tuple[Tensor, Tensor, Tensor]:
        options = self.options
        loss_fn, alpha = options["loss_fn"], options["alpha"]
        batch = to_device(batch, self.device)
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else contextlib.nullcontext()
        zero = torch.zeros((), device=self.device)
        if self.forwards is not None:
            self.forwards.calls.clear()
        with autocast:
            if loss_fn is not None:
                task = loss_fn(self.train_model, batch)
            else:
                output = call(self.train_model, batch)
                task = None if (self.teacher is not None and alpha == 1.0) else model_loss(output)
            if task is not None and first:
                check_loss(task, "the training loss")
            if self.teacher is None:
                return task, task.detach(), zero
            args, kwargs, student_out = self.forwards.take()
            with torch.no_grad():
                teacher_out = self.teacher(*args, **kwargs)
            distill = options["distill"]
            if callable(distill):
                kd = distill(student_out, teacher_out, batch)
            else:
                kd = distill_loss(logits(student_out), logits(teacher_out), distill, options["temperature"])
            if first:
                check_loss(kd, "the distillation loss")
        loss = alpha * kd if task is None else alpha * kd + (1.0 - alpha) * task
        return loss, (zero if task is None else task.detach()), kd.detach()

    def optimizer_step(self) -> tuple[Tensor, float, float | None]:
        """Clip, step (through the scaler for fp16), advance the schedule; returns (grad norm, lr used, loss scale used or None).

        fp16 under FSDP: ``GradScaler`` finds inf/NaN in the sharded gradients through DTensor's
        handler for ``_amp_foreach_non_finite_check_and_unscale_``, which all-reduces ``found_inf``
        (max) over the mesh, so a non-finite value in one rank's shard skips the step on every rank.
        """
        lr = self.scheduler.get_last_lr()[0]
        scale = self.scaler.get_scale() if self.scaler is not None else None  # fp16 steps already sync (scaler.step reads found_inf)
        grad_norm = torch.zeros((), device=self.device)
        if self.fsdp:  # hooks on sharded parameters never fire: mask the reduced shards here
            mask_sharded_grads(self.params)
        if self.options["grad_clip"] is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.options["grad_clip"]).detach()
            if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
                grad_norm = grad_norm.full_tensor()
        with interrupts.deferred():  # never leave a half-updated set of weights
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, lr, scale

    def flush(self) -> dict[str, float]:
        """Turn the pending per-step tensors into history records (one device sync)."""
        if not self.pending:
            return {}
        values = torch.stack([stats for *_, stats in self.pending]).tolist()
        last: dict[str, float] = {}
        for (step, epoch, lr, scale, _), (loss, task, kd, grad_norm) in zip(self.pending, values):
            if not math.isfinite(loss) and self.scaler is None:
                raise Sparse24Error(f"the training loss is {loss} at step {step}; lower lr, or use amp='bf16' instead of fp16")
            record = {"step": step, "epoch": epoch, "loss": loss, "lr": lr}
            if self.teacher is not None:
                record.update(task=task, distill=kd)
            if self.options["grad_clip"] is not None:
                record["grad_norm"] = grad_norm
            if scale is not None:
                record["loss_scale"] = scale
            last = record
            self.history.steps.append(record)
        self.pending.clear()
        return last

    # -- eval --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        eval_fn, eval_data = self.options["eval_fn"], self.options["eval_data"]
        if eval_fn is None and eval_data is None:
            return {}
        metrics = None
        if dist.is_main() or self.fsdp:  # a sharded forward needs every rank; rank 0's metrics count
            was_training = self.module.training
            self.module.eval()
            try:
                with torch.no_grad():
                    if eval_fn is not None:
                        with running("running eval_fn"):
                            metrics = _metrics(eval_fn(self.module, eval_data))
                    else:
                        metrics = self.eval_loss(eval_data)
            finally:
                self.module.train(was_training)
        return _broadcast(metrics)

    def eval_loss(self, eval_data: Iterable[Any]) -> dict[str, float]:
        total, count = 0.0, 0
        for batch in eval_data:
            batch = to_device(batch, self.device)
            loss_fn = self.options["loss_fn"]
            with running(f"running evaluation batch {count}"):
                loss = loss_fn(self.module, batch) if loss_fn is not None else model_loss(call(self.module, batch))
            total, count = total + float(loss), count + 1
        if count == 0:
            raise Sparse24Error("eval_data yielded no batches")
        return {"eval_loss": total / count}

    # -- the loop ----------------------------------------------------------------------
    def end_epoch(self) -> None:
        self.flush()
        losses = [record["loss"] for record in self.history.steps if record["epoch"] == self.epoch + 1]
        totals = torch.tensor([sum(losses), len(losses)], dtype=torch.float64, device=self.device)
        if dist.world_size() > 1:  # mean over every rank's steps
            import torch.distributed as tdist

            tdist.all_reduce(totals)
        train_loss = float(totals[0] / totals[1].clamp(min=1))
        record = {"epoch": self.epoch + 1, "step": self.step, "train_loss": train_loss, "lr": self.scheduler.get_last_lr()[0]}
        record.update(self.evaluate())
        self.history.epochs.append(record)
        logger.info("finetune: epoch %d done at step %d: %s", self.epoch + 1, self.step, ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "step")))
        self.epoch += 1
        self.micro = 0

    def start_epoch(self) -> None:
        sampler = _distributed_sampler(self.train_data)
        if sampler is not None:
            sampler.set_epoch(self.epoch)
        if self.resume_rng is not None and not self.micro:  # resuming at an epoch boundary
            self.set_rng(self.resume_rng)
            self.resume_rng = None
        if self.micro and self.epoch_rng_all is not None:  # resuming mid-epoch: replay the epoch's data order
            self.set_rng(self.epoch_rng_all[dist.rank()])
        else:
            self.epoch_rng_all = _gather(self.rng())

    def rng(self) -> dict[str, Any]:
        """This rank's RNG states: global ones and the train DataLoader's own generators."""
        return {"global": rng_state(), "data": [g.get_state() for g in _data_generators(self.train_data)]}

    def set_rng(self, saved: dict[str, Any]) -> None:
        set_rng_state(saved["global"])
        for generator, state in zip(_data_generators(self.train_data), saved["data"]):
            generator.set_state(state)

    def run(self) -> FinetuneHistory:
        start = time.perf_counter()
        resumed = self.restore()
        if not resumed:
            if self.options["seed"] is not None:
                _seed_everything(self.options["seed"] + dist.rank())
            self.history.initial = self.evaluate()
        accum, total = self.plan.grad_accum, self.plan.total_steps
        progress = Progress(logger, "finetune", total, initial=self.step, enabled=self.options["progress"] and dist.is_main(), every=self.options["log_every"])
        self.module.train()
        try:
            while self.step < total:
                self.start_epoch()
                skip, seen, first = self.micro, 0, self.step == 0 and self.micro == 0
                limit = self.plan.micro_per_epoch
                batches = iter(_epoch_batches(self.train_data, self.plan))
                while seen < skip and next(batches, _END) is not _END:  # resuming mid-epoch
                    seen += 1
                if self.resume_rng is not None:  # before the next batch is drawn
                    self.set_rng(self.resume_rng)
                    self.resume_rng = None
                for batch in batches:
                    if limit is not None and seen >= limit:
                        break
                    last_micro = (seen + 1) % accum == 0
                    sync = self.train_model.no_sync() if self.ddp and not last_micro else contextlib.nullcontext()
                    if self.fsdp and accum > 1:
                        self.gradient_sync(last_micro)
                    with sync, running(f"running training batch {seen} of epoch {self.epoch + 1} (step {self.step + 1}: forward and backward)"):
                        loss, task, kd = self.micro_loss(batch, first)
                        first = False
                        scaled = loss / accum
                        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
                    stats = torch.stack([loss.detach().float(), task.float(), kd.float()]) / accum
                    self.accumulated = stats if seen % accum == 0 else self.accumulated + stats
                    seen += 1
                    self.micro = seen
                    if not last_micro:
                        continue
                    grad_norm, lr, scale = self.optimizer_step()
                    self.step += 1
                    self.pending.append((self.step, self.epoch + 1, lr, scale, torch.cat([self.accumulated, grad_norm.float().reshape(1)])))
                    fields = self.flush() if self.step % self.options["log_every"] == 0 else {}
                    progress.update(1, **{k: v for k, v in fields.items() if k in ("loss", "lr")})
                    epoch_done = limit is not None and seen >= limit
                    every = self.options["checkpoint_every"]
                    if every is not None and self.step % every == 0 and not epoch_done and self.step < total:
                        self.save()
                    if self.step >= total:
                        break
                if seen == 0 and self.step < total:
                    raise Sparse24Error(
                        f"train_data yielded no batches in epoch {self.epoch + 1}; pass a re-iterable (a list or a DataLoader), not a generator"
                    )
                if limit is not None and seen < limit and self.step < total:
                    raise Sparse24Error(f"train_data yielded {seen} batches in epoch {self.epoch + 1}, fewer than its len() promised ({limit})")
                if seen % accum:
                    logger.warning("finetune: dropping %d accumulated micro-batches at the end of epoch %d", seen % accum, self.epoch + 1)
                    self.optimizer.zero_grad(set_to_none=True)
                self.end_epoch()
                self.save()
        finally:
            progress.close()
        _sync_buffers(self.module)
        from .sparsify import verify

        verify(self.module)  # a sharded model's layers are gathered one at a time
        self.history.seconds += time.perf_counter() - start
        return self.history


def _sync_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), as DDP does before each forward."""
    if dist.world_size() == 1:
        return
    import torch.distributed as tdist

    for buffer in module.buffers():
        if not is_sharded(buffer):  # sharded masks are each rank's own rows
            tdist.broadcast(buffer, src=0)


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _seed_everything(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)


def finetune(
    model: nn.Module,
    train_data: Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    teacher: nn.Module | None = None,
    distill: str | DistillFn = "kl",
    temperature: float = 2.0,
    alpha: float = 0.5,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    warmup_steps: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: str | torch.optim.lr_scheduler.LRScheduler | None = "cosine",
    amp: str | torch.dtype | None = None,
    grad_clip: float | None = None,
    grad_accum: int = 1,
    eval_fn: EvalFn | None = None,
    eval_data: Iterable[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int | None = 2,
    resume: bool | str | Path = False,
    seed: int | None = None,
    log_every: int = 10,
    progress: bool = True,
    strategy: str | None = None,
    fsdp_blocks: Sequence[str] | None = None,
) -> FinetuneHistory:
    """Recovery-finetune a 2:4 ``model`` in place; its masks stay enforced and ``verify`` passes at the end.

    Training:
        ``loss_fn(model, batch)`` gives the task loss (default: the model's own output, a
        tensor or ``.loss``). ``epochs`` (default 1) or ``steps`` (optimizer steps) set the
        length. The default optimizer is AdamW (``lr``, ``weight_decay`` on weights, none on
        biases and norms) with linear warm-up over ``warmup_steps`` (default 5% of the steps)
        and cosine decay (``scheduler="linear"|"constant"``, or your own ``LRScheduler``
        bound to your ``optimizer``). Use a learning rate well below the dense run's (about
        a tenth). ``amp="bf16"|"fp16"`` runs the forward under autocast (fp16 with a
        ``GradScaler``); ``grad_clip`` clips the global grad norm; ``grad_accum``
        accumulates micro-batches per optimizer step.

    Distillation:
        with a ``teacher`` (the dense model), each batch's student forward (the one call
        ``loss_fn`` makes) is replayed on the teacher in eval mode without gradients, and
        the loss is ``alpha * distill + (1 - alpha) * task``. ``distill="kl"`` is the
        temperature-scaled KL of the logits, ``"mse"`` their squared error; a callable gets
        ``(student_out, teacher_out, batch)``. The teacher is moved to the model's device
        and its train/eval mode is restored afterwards.

    Evaluation:
        ``eval_fn(model, eval_data)`` (a number or ``{name: number}``) runs in eval mode
        without gradients before training and after every epoch; with ``eval_data`` alone
        the mean task loss is reported.

    Distributed:
        under ``torchrun`` (an initialised process group) the model is wrapped in
        ``DistributedDataParallel`` unless it already is; plain data is split by rank (batch
        ``i`` goes to rank ``i % world_size``), a ``DistributedSampler`` is used as is. Only
        rank 0 evaluates, logs progress and writes checkpoints.

        ``strategy="fsdp"`` shards the model with FSDP2 instead (``fully_shard`` on every
        direct child that holds parameters, or on the modules named in ``fsdp_blocks``, then
        on the root), and a teacher that is not sharded yet alike; a model already sharded
        with ``fully_shard`` is trained as it is (``strategy`` left unset picks ``"fsdp"``
        for it). Weights, 2:4 masks (each rank keeps its rows) and optimizer state are
        sharded; gradients are masked on each rank's shard after the reduce-scatter. Every
        rank runs eval (the sharded forward needs them all) and writes its shards of each
        checkpoint (``torch.distributed.checkpoint``, into ``step-N/sharded/`` on a filesystem
        all ranks see). Data is split by rank as under DDP. ``amp`` works as in one process
        (an inf or NaN in any rank's gradient shard skips the fp16 step on every rank); for
        FSDP2's own ``MixedPrecisionPolicy``, shard the model yourself (``fully_shard(...,
        mp_policy=...)``) and leave ``amp`` unset.

    Checkpoints:
        with ``checkpoint_dir``, a checkpoint is written at the end of every epoch and every
        ``checkpoint_every`` steps (keeping the newest ``keep_checkpoints``); ``resume=True``
        continues from the newest one (or starts fresh if there is none), ``resume=path``
        from that one. A resumed run with the same settings reaches the same weights as an
        uninterrupted one.

    Returns the :class:`FinetuneHistory`. Training is in place: if it stops early (error,
    Ctrl-C), the model holds the weights of the last completed step, still 2:4. Either way
    every module is given back in the train/eval mode it came in (an eval model stays eval).
    """
    _validate(epochs, steps, lr, warmup_steps, grad_accum, grad_clip, alpha, temperature, distill, checkpoint_every, log_every, keep_checkpoints)
    _validate_strategy(strategy, fsdp_blocks)
    if scheduler is not None and not isinstance(scheduler, (str, torch.optim.lr_scheduler.LRScheduler)):
        raise ValueError(f"scheduler must be one of {SCHEDULES}, an LRScheduler or None, got {scheduler!r}")
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler) and (optimizer is None or scheduler.optimizer is not optimizer):
        raise ValueError("a scheduler object must be bound to the optimizer= you pass")
    if teacher is not None and (teacher is model or teacher is dist.unwrap(model)):
        raise ValueError("teacher must be a separate (dense) copy of the model, not the model itself")
    options = dict(
        loss_fn=loss_fn, teacher=teacher, distill=distill, temperature=float(temperature), alpha=float(alpha), epochs=epochs,
        steps=steps, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, optimizer=optimizer, scheduler=scheduler,
        amp=amp, grad_clip=grad_clip, grad_accum=grad_accum, eval_fn=eval_fn, eval_data=eval_data,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
        resume=resume, seed=seed, log_every=log_every, progress=progress, strategy=strategy, fsdp_blocks=fsdp_blocks,
    )  # fmt: skip
    trainer = _Trainer(model, train_data, options)
    handles = []
    teacher_mode = None
    modes = [(module, module.training) for module in trainer.module.modules()]  # given back as they came, also on error
    try:
        if optimizer is not None or trainer.fsdp:  # a user's state may predate the masks; sharded weights are masked per shard
            handles.append(attach_optimizer(trainer.optimizer))
        if teacher is not None:
            teacher_mode = [(m, m.training) for m in teacher.modules()]
            teacher_device = next(iter(teacher.parameters()), torch.empty(0)).device
            if teacher_device != trainer.device:
                logger.info("finetune: moving the teacher from %s to %s", teacher_device, trainer.device)
                teacher.to(trainer.device)
            if trainer.fsdp and not is_sharded(teacher):
                blocks = fsdp_blocks if fsdp_blocks is not None and all(_has_module(teacher, n) for n in fsdp_blocks) else None
                dist.fsdp_shard(teacher, blocks, what="the teacher")
            teacher.eval()
            trainer.forwards = _Forwards(trainer.module)
            handles.append(trainer.forwards.handle)
        return trainer.run()
    finally:
        for handle in handles:
            handle.remove()
        for module, training in (*modes, *(teacher_mode or ())):
            module.training = training
