"""Re-estimate BatchNorm statistics on the pruned model's own activations.

Pruning shifts the mean and variance of every later layer's inputs, while a BatchNorm in eval
mode keeps normalising with the dense model's running statistics; on a CNN that mismatch, not
the lost weights, is most of the one-shot loss. One forward pass over calibration data with the
BatchNorms measuring (everything else in eval mode) replaces those statistics: no gradients, no
weight changes (AdaBN, Li et al. 2016; the batchnorm correction of one-shot CNN pruning in
Frantar et al. 2022, Optimal Brain Compression).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from . import dist
from .calibrate import run_batches
from .errors import Sparse24Error

__all__ = ["batchnorms", "recalibrate_batchnorm"]

logger = logging.getLogger(__name__)


def batchnorms(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """The BatchNorm layers (1d, 2d, 3d, sync; lazy ones once initialized) of ``model`` that keep running statistics, by name."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.track_running_stats
        and module.running_mean is not None
        and not nn.parameter.is_lazy(module.running_mean)
    ]


def recalibrate_batchnorm(
    model: nn.Module,
    data: Iterable[Any],
    *,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    progress: bool = True,
) -> int:
    """Replace every BatchNorm's running mean and variance by those of ``model``'s activations on ``data``; in place.

    Each batch runs as the calibration's do (``loss_fn(model, batch)`` when given, its value
    ignored, else ``model(batch)``), without gradients, with every module in eval mode but the
    BatchNorms, whose statistics become the average over the batches of each batch's mean and
    (unbiased) variance. Weights, affine parameters and modes are left as they were. Under
    ``torch.distributed`` the statistics are averaged over every rank's batches. All or nothing:
    on any failure (Ctrl-C included) the statistics are as before.

    Returns the number of BatchNorm layers re-estimated; 0, without running anything, when the
    model has none.
    """
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
    if data is None:
        raise ValueError("recalibrate_batchnorm needs data: the batches whose activations give the new statistics")
    model = dist.unwrap(model)
    norms = [module for _, module in batchnorms(model)]
    if not norms:
        logger.warning("recalibrate_batchnorm: %s has no BatchNorm with running statistics; nothing to re-estimate", type(model).__name__)
        return 0
    if dist.is_fsdp(model):
        raise Sparse24Error("recalibrate_batchnorm needs the unsharded model (its passes would have to pair up across ranks): re-estimate before fully_shard")
    saved = [(m, m.momentum, m.running_mean.clone(), m.running_var.clone(), None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: every batch counts the same
            module.train()
        seen = run_batches(model, data, loss_fn=loss_fn, num_batches=num_batches, what="BatchNorm statistics", progress=progress)
        _average_over_ranks(norms, seen)
        for module in norms:
            if not (torch.isfinite(module.running_mean).all() and torch.isfinite(module.running_var).all()):
                raise Sparse24Error(f"recalibrate_batchnorm: non-finite statistics in a {type(module).__name__} after {seen} batches (check the data)")
    except BaseException:
        with torch.no_grad():
            for module, _, mean, var, tracked in saved:
                module.running_mean.copy_(mean)
                module.running_var.copy_(var)
                if tracked is not None:
                    module.num_batches_tracked.copy_(tracked)
        raise
    finally:
        for module, momentum, *_ in saved:
            module.momentum = momentum
        for module, training in modes:
            module.training = training
    logger.info("recalibrate_batchnorm: %d BatchNorm layers re-estimated on %d batches", len(norms), seen)
    return len(norms)


def _average_over_ranks(norms: list[nn.Module], seen: int) -> None:
    """Each rank's statistics weighted by its number of batches, summed over ranks."""
    if dist.world_size() <= 1:
        return
    import torch.distributed as torch_dist

    device = norms[0].running_mean.device
    count = torch.tensor([float(seen)], dtype=torch.float64, device=device)
    torch_dist.all_reduce(count, op=torch_dist.ReduceOp.SUM)
    with torch.no_grad():
        for module in norms:
            for stat in (module.running_mean, module.running_var):
                weighted = stat.double() * seen
                torch_dist.all_reduce(weighted, op=torch_dist.ReduceOp.SUM)
                stat.copy_(weighted / count)
