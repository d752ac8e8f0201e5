"""First-order Taylor importance ``|w * dL/dw|`` accumulated over calibration batches.

Per batch, the gradient of the loss is taken and ``|w * g|`` (or ``(w * g)**2`` with
``squared=True``) is added to one fp32 accumulator per weight; gradients are freed as soon as
they are used. No optimizer step is taken, and the model's ``.grad``s, train/eval modes,
``requires_grad`` flags and buffers are restored afterwards, on success or failure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import dist
from ..axes import GemmWeight
from ..batch import call, check_loss, model_loss, split_samples, to_device
from ..errors import Sparse24Error
from ..progress import Progress

logger = logging.getLogger(__name__)

_MODES = ("eval", "train")
_AUTOCAST = (None, torch.float16, torch.bfloat16)


def score(
    model: nn.Module,
    weights: Sequence[GemmWeight],
    *,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    squared: bool = False,
    per_sample: bool = False,
    autocast: torch.dtype | None = None,
    mode: str = "eval",
    progress: bool = True,
) -> list[Tensor]:
    """Taylor scores (fp32, shape of each weight) from ``data``.

    ``per_sample=True`` takes the gradient of every sample on its own (each batch split along
    dim 0): with ``squared=True`` the score is then ``w^2 * sum_i g_i^2``, the empirical-Fisher
    (OBD) estimate of the loss increase, which does not vanish where the batch gradient
    averages to zero at a trained minimum.

    ``loss_fn(model, batch)`` gives the loss; without it the model's own output is used
    (a scalar tensor, or ``.loss`` / ``["loss"]``). ``autocast`` runs the forward under
    fp16/bf16 autocast; ``mode`` is the train/eval mode used for calibration (``"eval"``
    keeps BatchNorm statistics and dropout out of the scores).

    Under ``torch.distributed`` (torchrun) each rank scores its own batches and the scores
    are summed across ranks (``all_reduce``) before they are returned, so every rank chooses
    the same masks.
    """
    if data is None:
        raise ValueError("method='taylor' needs calibration data: sparsify(model, 'taylor', data=...)")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if autocast not in _AUTOCAST:
        raise ValueError(f"autocast must be torch.float16, torch.bfloat16 or None, got {autocast!r}")
    params = list({id(w.param): w.param for w in weights}.values())
    accumulators = {id(p): torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in params}
    device = params[0].device

    def accumulate(param: Tensor) -> None:
        product = param.detach().float() * param.grad.float()
        accumulators[id(param)].add_(product.square_() if squared else product.abs_())
        param.grad = None

    with _restored(model, buffers=mode == "train"):
        model.train(mode == "train")
        targets = {id(p) for p in params}
        for param in model.parameters():
            param.grad = None
            param.requires_grad_(id(param) in targets)
        handles = [p.register_post_accumulate_grad_hook(accumulate) for p in params]
        try:
            seen = _calibrate(model, data, loss_fn, num_batches, device, autocast, progress, per_sample)
        finally:
            for handle in handles:
                handle.remove()
    if dist.world_size() > 1:
        _all_reduce(list(accumulators.values()))
        logger.info("taylor: summed scores over %d ranks", dist.world_size())
    logger.info("taylor: scored %d weights over %d calibration batches", len(params), seen)
    return [accumulators[id(w.param)] for w in weights]


def _all_reduce(tensors: list[Tensor]) -> None:
    """Sum ``tensors`` across ranks in place, as one flat buffer (one collective)."""
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def _calibrate(model, data, loss_fn, num_batches, device, autocast, progress, per_sample=False) -> int:
    seen = 0
    total = num_batches
    if hasattr(data, "__len__"):
        total = len(data) if num_batches is None else min(num_batches, len(data))
    with Progress(logger, "taylor calibration", total, enabled=progress and dist.is_main()) as bar:
        for batch in data:
            if num_batches is not None and seen >= num_batches:
                break
            batch = to_device(batch, device)
            for sample in split_samples(batch) if per_sample else [batch]:
                amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
                with amp:
                    loss = loss_fn(model, sample) if loss_fn is not None else model_loss(call(model, sample))
                check_loss(loss, f"calibration batch {seen}: the loss")
                loss.backward()
            seen += 1
            bar.update()
    if seen == 0:
        raise Sparse24Error("calibration data yielded no batches")
    return seen


@contextlib.contextmanager
def _restored(model: nn.Module, buffers: bool):
    """Put back modes, ``requires_grad``, ``.grad`` (and buffers) however the block ends."""
    modes = [(module, module.training) for module in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    saved_buffers = [(b, b.clone()) for b in model.buffers()] if buffers else []
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad, grad in params:
            param.requires_grad_(requires_grad)
            param.grad = grad
        with torch.no_grad():
            for buffer, saved in saved_buffers:
                buffer.copy_(saved)
