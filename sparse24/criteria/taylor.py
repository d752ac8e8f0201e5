"""First-order Taylor importance ``|w * dL/dw|`` accumulated over calibration batches.

Per batch, the gradient of the loss is taken and ``|w * g|`` (or ``(w * g)**2`` with
``squared=True``) is added to one fp32 accumulator per weight; gradients are freed as soon as
they are used. No optimizer step is taken, and the model's ``.grad``s, train/eval modes,
``requires_grad`` flags and buffers are restored afterwards, on success or failure.

Which gradient (``labels``):

- ``"data"`` (default): the gradient of ``loss_fn`` on the calibration data's own labels. With
  ``squared=True, per_sample=True`` the score ``w^2 * sum_i g_i^2`` is the *empirical* Fisher
  estimate of the loss increase. On a model that fits its training data those gradients are
  near zero and say little about curvature (Kunstner et al. 2019).
- ``"model"``: the *true* Fisher, in expectation over labels drawn from the model's own
  predictive distribution (``softmax`` of ``logits_fn(model, batch)``, every position a
  prediction). For a softmax it is the Gauss-Newton diagonal ``F_ii = E_x[(J^T (diag p - p p^T) J)_ii]``;
  with ``squared=True`` the score is ``w^2 * F_ii``, twice the OBD saliency ``1/2 w^2 F_ii``
  (LeCun et al. 1990). It is estimated by backpropagating ``<u, logits>`` with
  ``u ~ N(0, diag p - p p^T)`` at every position (:func:`_model_fisher`): unbiased, every class
  weighted by its probability in each draw. Cross terms between positions and samples vanish in
  expectation, so batch gradients are unbiased too; ``per_sample`` and ``samples`` lower the variance.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import dist
from ..axes import GemmWeight
from ..batch import call, check_loss, describe, logits, model_loss, split_samples, to_device
from ..errors import Sparse24Error, first_line
from ..progress import Progress

logger = logging.getLogger(__name__)

_MODES = ("eval", "train")
_AUTOCAST = (None, torch.float16, torch.bfloat16)
LABELS = ("data", "model")

Loss = Callable[[nn.Module, Any], Tensor]


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
    labels: str = "data",
    logits_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    samples: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> list[Tensor]:
    """Taylor scores (fp32, shape of each weight) from ``data``.

    ``labels="model"`` estimates the true Fisher of the model's predictive distribution instead
    of using ``loss_fn`` (see the module docstring): ``logits_fn(model, batch)`` gives the logits
    ``[..., classes]`` (every leading position is one prediction; without it, the logits of the
    model's output on the batch, a tensor or ``.logits``); ``samples`` random draws per batch
    (one backward pass each) from a generator seeded with ``seed`` (plus the rank under
    ``torch.distributed``). ``loss_fn`` is not used then.

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
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if labels == "data" and (logits_fn is not None or samples != 1):
        raise ValueError("logits_fn and samples apply to labels='model' only")
    if labels == "model" and loss_fn is not None:
        logger.info("taylor: labels='model' draws its labels from the model's logits; loss_fn is not used")
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
        if labels == "model":
            generator = torch.Generator(device=device).manual_seed(seed + dist.rank())
            backward = _model_fisher(logits_fn, samples, generator)
        else:
            backward = _data_loss(loss_fn)
        try:
            seen = _calibrate(model, data, backward, num_batches, device, autocast, progress, per_sample)
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


def _data_loss(loss_fn: Loss | None) -> Callable[[nn.Module, Any, Any, int], None]:
    """One backward pass of ``loss_fn`` (or the model's own loss) on a batch, under ``amp``."""

    def backward(model: nn.Module, batch: Any, amp: Any, seen: int) -> None:
        with amp:
            loss = loss_fn(model, batch) if loss_fn is not None else model_loss(_called(model, batch, seen, "loss_fn (CLI: --loss MODULE:CALLABLE)"))
        check_loss(loss, f"calibration batch {seen}: the loss")
        loss.backward()

    return backward


def _called(model: nn.Module, batch: Any, seen: int, instead: str) -> Any:
    """The model's output on ``batch`` called as it is; a batch the model cannot take is one error naming ``instead``."""
    try:
        return call(model, batch)
    except TypeError as error:  # (inputs, labels) given to forward(x): the user needs a function that picks the inputs
        raise Sparse24Error(f"calibration batch {seen}: the model cannot be called on the batch as it is ({describe(batch)}: {first_line(error)}); pass {instead}") from error


def _model_fisher(logits_fn: Callable[[nn.Module, Any], Tensor] | None, samples: int, generator: torch.Generator) -> Callable[[nn.Module, Any, Any, int], None]:
    """``samples`` backward passes of ``sum <u, z>`` over the logits ``z``, ``u ~ N(0, diag(p) - p p^T)`` per position.

    ``diag(p) - p p^T`` is the Fisher of a softmax in its logits, so the squared gradient is an
    unbiased estimate of the Fisher diagonal ``E_{y~p}[g_y^2]`` -- the same covariance as the
    gradient ``J^T (p - e_y)`` of ``-log p(y~)`` for a drawn label -- but every class takes part
    in every draw (a drawn label is almost always the likely one on a confident model).
    """

    def backward(model: nn.Module, batch: Any, amp: Any, seen: int) -> None:
        with amp:
            if logits_fn is not None:
                found = logits_fn(model, batch)
            else:
                output = _called(model, batch, seen, "logits_fn (CLI: --logits MODULE:CALLABLE)")
                if not isinstance(output, Tensor) and getattr(output, "logits", None) is None and not (isinstance(output, Mapping) and "logits" in output):
                    raise Sparse24Error(f"calibration batch {seen}: no logits in the model's output ({type(output).__name__}); pass logits_fn=lambda model, batch: ...")
                found = logits(output)
        if not isinstance(found, Tensor) or found.dim() < 1 or not found.is_floating_point() or not found.requires_grad:
            raise Sparse24Error(f"calibration batch {seen}: logits_fn must return float logits [..., classes] that depend on the weights, got {describe(found)}")
        z = found.float().reshape(-1, found.shape[-1])
        p = torch.softmax(z.detach(), dim=-1)
        root = p.sqrt()
        for draw in range(samples):
            u = root * torch.randn(p.shape, generator=generator, device=p.device)
            u -= p * u.sum(1, keepdim=True)  # u ~ N(0, diag(p) - p p^T)
            loss = (z * u).sum()
            check_loss(loss, f"calibration batch {seen}: the Fisher draw")
            loss.backward(retain_graph=draw + 1 < samples)

    return backward


def _calibrate(model, data, backward, num_batches, device, autocast, progress, per_sample=False) -> int:
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
                backward(model, sample, amp, seen)
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
