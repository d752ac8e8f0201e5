"""First-order Taylor importance ``|w * dL/dw|`` accumulated over calibration batches.

Per batch, the gradient of the loss is taken and ``|w * g|`` (or ``(w * g)**2`` with
``squared=True``) is added to one fp32 accumulator per weight, in units of a power of two
(:class:`sparse24.calibrate.ScaledSums`: a deep random-init network's ~1e-28 gradients square to
below float32); the scores are returned as true values where float32 holds them, else every
weight's times one power of two. Gradients are freed as soon as they are used. No optimizer
step is taken, and the model's ``.grad``s, train/eval modes, ``requires_grad`` flags and
buffers are restored afterwards, on success or failure.

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

On an FSDP2-sharded model FSDP averages each gradient over the ranks, so a rank's own squared
gradient is out of reach: every rank runs every rank's batches instead (rank 0's first, each
broadcast from its owner), the owner's loss counting once and the others' times zero, so the
reduced shard is exactly that batch's gradient over the world size; ``|w * g|`` is accumulated
on each rank's own rows. The scores equal one process's over all the batches in that order
(bitwise for a power-of-two world size). Losses are checked on every rank together between the
forward and the backward (:mod:`sparse24.sharded`).
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
from ..calibrate import Padding, ScaledSums, in_float32_range, new_padding, no_kv_cache
from ..enforce import is_sharded
from ..errors import Sparse24Error, first_line, running
from ..progress import Progress
from ._pairs import PairCosts, add_cross, new_cross

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
    pairs: bool = False,
    progress: bool = True,
    require_gradient: bool = True,
) -> list[Tensor] | list[PairCosts]:
    """Taylor scores (fp32, shape of each weight) from ``data``.

    ``pairs=True`` (with ``squared=True``) chooses each group's pattern by the cost of pruning
    both weights of a pair, cross term included (:mod:`sparse24.criteria._pairs`): the result per
    weight is a :class:`~sparse24.criteria._pairs.PairCosts` (the per-weight scores and the cross
    sums, 1.5 more fp32 per weight during calibration). On an FSDP-sharded model, the cross sums
    are this rank's too (the groups of its rows), which needs every shard of a weight reduced
    along dim 0 (transformers ``Conv1D``) to hold whole groups of 4.

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
    the same masks. On an FSDP2-sharded model every rank runs every rank's batches (see the
    module docstring) and the scores returned are this rank's rows of each weight's (the shape
    of its local shard).

    A loss (or logits) that does not depend on ``weights`` is an error; with ``require_gradient=False`` that batch
    adds nothing instead (block by block, a group of layers the loss does not reach scores 0, and
    :func:`sparse24.sparsify` gives it magnitude's mask).
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
    if pairs and not squared:
        raise ValueError("pairs=True scores the squared first-order change of pruning a pair: it needs squared=True")
    if labels == "model" and loss_fn is not None:
        logger.info("taylor: labels='model' draws its labels from the model's logits; loss_fn is not used")
    params = list({id(w.param): w.param for w in weights}.values())
    sharded = is_sharded(model)
    owner = {id(w.param): w for w in weights}
    if pairs and sharded:
        _require_whole_groups(weights)
    cross = {id(p): new_cross(owner[id(p)], _local(p).shape) for p in params} if pairs else {}
    accumulators = {id(p): torch.zeros(_local(p).shape, dtype=torch.float32, device=p.device) for p in params}
    # in units of a power of two per weight: (w * g)**2 of a deep random-init network's ~1e-28 gradients is below float32
    sums = {id(p): ScaledSums([accumulators[id(p)], *([cross[id(p)]] if pairs else [])], power=2 if squared else 1) for p in params}
    device = params[0].device
    world = dist.world_size()

    def accumulate(param: Tensor) -> None:
        if is_sharded(param):  # FSDP's mean over the ranks of one batch's gradient and zeros: times the world size
            product = param.detach().to_local().float() * param.grad.to_local().float().mul_(world)
        else:
            product = param.detach().float() * param.grad.float()
        product.mul_(sums[id(param)].scale([product]))
        if pairs:
            add_cross(owner[id(param)], product, cross[id(param)])
        accumulators[id(param)].add_(product.square_() if squared else product.abs_())
        param.grad = None

    with _restored(model, buffers=mode == "train"), no_kv_cache(model):
        model.train(mode == "train")
        targets = {id(p) for p in params}
        for param in model.parameters():
            param.grad = None
            param.requires_grad_(id(param) in targets)
        handles = [p.register_post_accumulate_grad_hook(accumulate) for p in params]
        if labels == "model":  # sharded: every rank runs every batch, in one process's order
            generator = torch.Generator(device=device).manual_seed(seed + (0 if sharded else dist.rank()))
            backward = _model_fisher(logits_fn, samples, generator, sharded, require_gradient, new_padding(model))
        else:
            backward = _data_loss(loss_fn, sharded, require_gradient)
        try:
            if sharded:
                seen = _calibrate_sharded(model, data, backward, num_batches, device, autocast, progress, per_sample)
            else:
                seen = _calibrate(model, data, backward, num_batches, device, autocast, progress, per_sample)
        finally:
            for handle in handles:
                handle.remove()
    _one_unit(list(sums.values()))
    summed = [p for p in params if not is_sharded(p)]  # sharded: a weight outside FSDP, where only each batch's owner rank added
    if summed and dist.world_size() > 1:
        _all_reduce([accumulators[id(p)] for p in summed] + [cross[id(p)] for p in summed if pairs])
        if not sharded:
            logger.info("taylor: summed scores over %d ranks", dist.world_size())
    _true_values(list(sums.values()), sharded)
    if require_gradient:
        _require_some_score(list(accumulators.values()), sharded)
    logger.info("taylor: scored %d weights over %d calibration batches", len(params), seen)
    if pairs:
        return [PairCosts(accumulators[id(w.param)], cross[id(w.param)]) for w in weights]
    return [accumulators[id(w.param)] for w in weights]


def _one_unit(sums: list[ScaledSums]) -> None:
    """Every weight's scores in one unit, the largest any weight has on any rank: scores stay comparable across weights
    (channel permutation adds up its consumers'), and the ranks' sums can be added."""
    top = torch.stack([s.top for s in sums]).amax()
    if dist.world_size() > 1:
        import torch.distributed as torch_dist

        torch_dist.all_reduce(top, op=torch_dist.ReduceOp.MAX)
    for s in sums:
        s.rescale(top)


def _true_values(sums: list[ScaledSums], sharded: bool) -> None:
    """The scores' (and cross sums') true values where float32 holds them well (:func:`~sparse24.calibrate.in_float32_range`
    of the largest score, on every rank); else they stay in the one unit, which no mask or permutation depends on."""
    first = sums[0].tensors[0]
    largest = torch.stack([first.new_zeros(())] + [s.tensors[0].amax() for s in sums if s.tensors[0].numel()]).amax()
    if sharded and dist.world_size() > 1:
        import torch.distributed as torch_dist

        torch_dist.all_reduce(largest, op=torch_dist.ReduceOp.MAX)
    true = float(largest) * float(sums[0].unit()) ** sums[0].power
    if float(largest) > 0 and not in_float32_range(true):
        logger.info("taylor: the largest score is %.3g, outside float32's good range: every score is kept times %.3g", true, float(largest) / true)
        return
    for s in sums:
        s.to_true_values()


NO_GRADIENT = "every importance score is 0: no gradient reached any of the weights on any calibration batch; the loss (or logits_fn's output) depends on none of them"


def _require_some_score(accumulators: list[Tensor], sharded: bool) -> None:
    """Raise :data:`NO_GRADIENT` when every score is 0 (sharded: on every rank's rows)."""
    found = torch.tensor([float(any(bool(a.ne(0).any()) for a in accumulators))], device=accumulators[0].device)
    if sharded and dist.world_size() > 1:
        _all_reduce([found])
    if not bool(found.item()):
        raise Sparse24Error(f"taylor: {NO_GRADIENT}")


def _require_whole_groups(weights: Sequence[GemmWeight]) -> None:
    """Sharded ``pairs``: every shard must hold whole groups of 4 (always so unless the weight is reduced along dim 0, the dim FSDP2 shards)."""
    from ..sharded import dim0_chunk

    for weight in weights:
        chunk = dim0_chunk(weight.param)
        if weight.axis.reduction == 0 and chunk % 4 and chunk < weight.param.shape[0]:
            raise Sparse24Error(
                f"taylor pairs=True: {weight.name} is reduced along dim 0, which FSDP2 shards, and its shards of {chunk} input "
                f"features cut groups of 4; shard it over a number of ranks that gives shards of a multiple of 4, or drop pairs"
            )


def _all_reduce(tensors: list[Tensor]) -> None:
    """Sum ``tensors`` across ranks in place, as one flat buffer (one collective)."""
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def _local(param: Tensor) -> Tensor:
    return param.to_local() if is_sharded(param) else param


def _guard(sharded: bool) -> contextlib.AbstractContextManager:
    """Around a sharded pass: a failure there aborts the process group (:func:`sparse24.sharded.in_pass`)."""
    if not sharded:
        return contextlib.nullcontext()
    from ..sharded import in_pass

    return in_pass("taylor calibration")


def _checked(sharded: bool, check: Callable[[], Any]) -> Any:
    """``check()``; sharded, its failure on any rank raises on every rank (between passes)."""
    if not sharded:
        return check()
    from ..sharded import agree

    result, error = None, None
    try:
        result = check()
    except Exception as caught:  # noqa: BLE001 -- raised on every rank by agree
        error = caught
    agree(error, "taylor calibration")
    return result


def _data_loss(loss_fn: Loss | None, sharded: bool, require_gradient: bool) -> Callable[..., None]:
    """One backward pass of ``loss_fn`` (or the model's own loss) on a batch, under ``amp``, its gradient times ``scale``
    (none, without ``require_gradient``, for a loss that does not depend on the weights being scored)."""

    def backward(model: nn.Module, batch: Any, amp: Any, seen: int, scale: float = 1.0) -> None:
        with _guard(sharded), amp:
            output = loss_fn(model, batch) if loss_fn is not None else _called(model, batch, seen, "loss_fn (CLI: --loss MODULE:CALLABLE)")

        def check() -> Tensor | None:
            loss = output if loss_fn is not None else model_loss(output)
            if not require_gradient and isinstance(loss, Tensor) and not loss.requires_grad:
                return None
            check_loss(loss, f"calibration batch {seen}: the loss")
            return loss

        loss = _checked(sharded, check)
        if loss is None:
            _no_backward(model, sharded)
            return
        with _guard(sharded):
            (loss if scale == 1.0 else loss * scale).backward()

    return backward


def _no_backward(model: nn.Module, sharded: bool) -> None:
    """A batch that adds nothing (no gradient reaches the weights scored): sharded, every rank skips its backward,
    in which FSDP would have resharded the root unit, so reshard it here (local, no collective)."""
    if sharded:
        from ..sharded import reshard_all

        reshard_all(model)


def _called(model: nn.Module, batch: Any, seen: int, instead: str) -> Any:
    """The model's output on ``batch`` called as it is; a batch the model cannot take is one error naming ``instead``."""
    try:
        return call(model, batch)
    except TypeError as error:  # (inputs, labels) given to forward(x): the user needs a function that picks the inputs
        raise Sparse24Error(f"calibration batch {seen}: the model cannot be called on the batch as it is ({describe(batch)}: {first_line(error)}); pass {instead}") from error


def _model_fisher(
    logits_fn: Callable[[nn.Module, Any], Tensor] | None, samples: int, generator: torch.Generator, sharded: bool, require_gradient: bool, padding: Padding
) -> Callable[..., None]:
    """``samples`` backward passes of ``sum <u, z>`` over the logits ``z``, ``u ~ N(0, diag(p) - p p^T)`` per position
    (none, without ``require_gradient``, for logits that do not depend on the weights being scored). A padded
    position is no prediction: where the logits are ``[batch, length, classes]`` of a text batch's ``attention_mask``
    (``padding``, the rule of Wanda's and SparseGPT's statistics), ``u`` is 0 at its pads.

    ``diag(p) - p p^T`` is the Fisher of a softmax in its logits, so the squared gradient is an
    unbiased estimate of the Fisher diagonal ``E_{y~p}[g_y^2]`` -- the same covariance as the
    gradient ``J^T (p - e_y)`` of ``-log p(y~)`` for a drawn label -- but every class takes part
    in every draw (a drawn label is almost always the likely one on a confident model).
    """

    def backward(model: nn.Module, batch: Any, amp: Any, seen: int, scale: float = 1.0) -> None:
        padding.batch(batch)
        with _guard(sharded), amp:
            output = logits_fn(model, batch) if logits_fn is not None else _called(model, batch, seen, "logits_fn (CLI: --logits MODULE:CALLABLE)")

        def check() -> Tensor | None:
            found = output
            if logits_fn is None:
                if not isinstance(output, Tensor) and getattr(output, "logits", None) is None and not (isinstance(output, Mapping) and "logits" in output):
                    raise Sparse24Error(f"calibration batch {seen}: no logits in the model's output ({type(output).__name__}); pass logits_fn=lambda model, batch: ...")
                found = logits(output)
            if isinstance(found, Tensor) and not found.requires_grad and not require_gradient:
                return None  # block by block: logits these weights do not reach
            if not isinstance(found, Tensor) or found.dim() < 1 or not found.is_floating_point() or not found.requires_grad:
                raise Sparse24Error(f"calibration batch {seen}: logits_fn must return float logits [..., classes] that depend on the weights, got {describe(found)}")
            if found.shape[-1] < 2:
                raise Sparse24Error(f"calibration batch {seen}: logits_fn must return logits of 2 or more classes [..., classes] (a softmax over one is constant: no Fisher), got {describe(found)}")
            return found

        found = _checked(sharded, check)
        if found is None:
            _no_backward(model, sharded)
            return
        z = found.float().reshape(-1, found.shape[-1])
        p = torch.softmax(z.detach(), dim=-1)
        root = p.sqrt()
        kept = padding.kept(tuple(found.shape[:2]), z.device) if found.dim() >= 3 else None
        for draw in range(samples):
            u = root * torch.randn(p.shape, generator=generator, device=p.device)
            u -= p * u.sum(1, keepdim=True)  # u ~ N(0, diag(p) - p p^T)
            if kept is not None:
                u *= kept.reshape(-1, 1)
            loss = (z * u).sum()
            _checked(sharded, lambda: check_loss(loss, f"calibration batch {seen}: the Fisher draw"))
            with _guard(sharded):
                (loss if scale == 1.0 else loss * scale).backward(retain_graph=draw + 1 < samples)

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
                with running(f"running calibration batch {seen} (taylor: forward and backward)"):
                    backward(model, sample, amp, seen)
            seen += 1
            bar.update()
    if seen == 0:
        raise Sparse24Error("calibration data yielded no batches")
    return seen


def _calibrate_sharded(model, data, backward, num_batches, device, autocast, progress, per_sample=False) -> int:
    """Every rank's batches on every rank, rank 0's first; a batch's own rank backpropagates its loss, the others zero."""
    from ..sharded import agreed_batches, broadcast_batch, in_pass

    mine, counts = agreed_batches(data, num_batches, "taylor calibration")
    rank, seen = dist.rank(), 0
    with Progress(logger, "taylor calibration", sum(counts), enabled=progress and dist.is_main()) as bar:
        for source, count in enumerate(counts):
            for index in range(count):
                with in_pass("taylor calibration: sending a batch"):
                    batch = broadcast_batch(mine[index] if rank == source else None, source)
                batch = to_device(batch, device)
                for sample in split_samples(batch) if per_sample else [batch]:
                    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
                    with running(f"running calibration batch {seen} (taylor: forward and backward)"):
                        backward(model, sample, amp, seen, 1.0 if rank == source else 0.0)
                seen += 1
                bar.update()
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
