"""SparseGPT (Frantar & Alistarh 2023, Algorithm 1) with 2:4 selection: prune and update the kept weights.

For each weight seen as its GEMM ``W [rows, d]`` (:func:`sparse24.axes.gemm_matrix`; conv
columns ordered so every group of 4 runs along C at one kernel position, grouped convs per
group) and its inputs' ``H = X^T X`` (or a power of 4 times it, where :mod:`sparse24.calibrate` keeps it in float32's
range: the solution does not depend on H's scale):

- dead columns (``H_jj = 0``) are zeroed, ``H`` is dampened by ``dampening * mean(diag H)``;
- with ``H^-1 = U^T U`` (upper Cholesky factor of the inverse), columns are processed in
  blocks of ``blocksize``; at the first column of every group of 4 the two elements with the
  smallest ``w^2 / [U]_jj^2`` are chosen for pruning; each column's pruning error is spread
  over the remaining columns of the block (``W[:, j:] -= e U[j, j:]``) and, lazily, over the
  later blocks.

Weights are solved in fp32 whatever their dtype. A Hessian that is not positive definite even
after dampening gets 10x more dampening (logged), up to a limit; one that is not finite (NaN or
Inf inputs) is refused at once (by :mod:`sparse24.calibrate` as it is gathered); the result is
checked to be finite. The criterion returns new weights as well as masks: ``sparsify`` writes both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..axes import GemmWeight, from_gemm_matrix, gemm_matrix
from ..calibrate import all_finite, gather, unseen_parts
from ..errors import Sparse24Error
from ..mask import prune_

logger = logging.getLogger(__name__)

KIND = "hessian"  # the input statistics this criterion reads (sparse24.calibrate)
OPTIONS = ("blocksize", "dampening")


def _check_options(blocksize: int, dampening: float) -> None:
    if not isinstance(blocksize, int) or blocksize < 4 or blocksize % 4:
        raise ValueError(f"blocksize must be a positive multiple of 4, got {blocksize!r}")
    if not isinstance(dampening, (int, float)) or not 0 < dampening < 1:
        raise ValueError(f"dampening must be in (0, 1), got {dampening!r}")


def _inverse_factor(hessian: Tensor, dampening: float, name: str) -> Tensor:
    """Upper Cholesky factor of ``(H + damp I)^-1``, raising the dampening until it exists."""
    if not all_finite(hessian):  # a direct solve() caller's (sparsify's are checked as they are gathered)
        raise Sparse24Error(
            f"sparsegpt: {name}: the layer's inputs hold NaN or Inf (their X^T X is not finite); "
            "check the calibration data and the model's outputs before this layer"
        )
    mean = float(hessian.diagonal().mean())
    if 0 < mean < torch.finfo(torch.float32).tiny:  # subnormal: dampening relative to it cannot make H positive definite
        raise Sparse24Error(
            f"sparsegpt: {name}: the layer's inputs are too small for a float32 Hessian (mean of diag X^T X = {mean:.3g}); "
            "check the model's weights (a random initialisation?) or exclude this layer"
        )
    scale = dampening
    for _ in range(6):
        damped = hessian.clone()
        damped.diagonal().add_(scale * mean)
        factor, info = torch.linalg.cholesky_ex(damped)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0 and all_finite(upper):
                if scale != dampening:
                    logger.warning("sparsegpt: %s: the Hessian needed dampening %.3g (asked %.3g) to be positive definite", name, scale, dampening)
                return upper
        scale *= 10
    raise Sparse24Error(f"sparsegpt: {name}: the input Hessian is not positive definite even with dampening {scale / 10:.3g}; more calibration data may help")


def _solve_matrix(w: Tensor, hessian: Tensor, blocksize: int, dampening: float, name: str) -> tuple[Tensor, Tensor]:
    """One ``[rows, d]`` fp32 matrix and its ``[d, d]`` Hessian -> (pruned and updated W, keep mask)."""
    w = w.clone()
    hessian = hessian.clone()
    rows, d = w.shape
    dead = hessian.diagonal() == 0
    hessian[dead, dead] = 1
    w[:, dead] = 0
    u = _inverse_factor(hessian, dampening, name)
    keep = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, d, blocksize):
        stop = min(start + blocksize, d)
        block = w[:, start:stop].clone()
        errors = torch.zeros_like(block)
        u_block = u[start:stop, start:stop]
        for j in range(stop - start):
            if j % 4 == 0:
                saliency = block[:, j : j + 4].square() / u_block.diagonal()[j : j + 4].square()
                pruned = saliency.topk(2, dim=1, largest=False).indices
                keep[:, start + j : start + j + 4].scatter_(1, pruned, False)
            column = block[:, j]
            quantized = column * keep[:, start + j]
            error = (column - quantized) / u_block[j, j]
            block[:, j:] -= error.unsqueeze(1) * u_block[j, j:].unsqueeze(0)
            block[:, j] = quantized
            errors[:, j] = error
        w[:, start:stop] = block
        w[:, stop:] -= errors @ u[start:stop, stop:]
    w *= keep
    if not all_finite(w):
        raise Sparse24Error(f"sparsegpt: {name}: the solve produced non-finite weights")
    return w, keep


def solve(weight: GemmWeight, hessian: Tensor, count: int, *, blocksize: int = 128, dampening: float = 0.01) -> tuple[Tensor, Tensor, float]:
    """``(new weight in the parameter's dtype, keep mask, fraction of the output kept)`` from ``H = X^T X``.

    The fraction kept is ``1 - ||(W - W') X||^2 / ||W X||^2`` over the calibration inputs.
    """
    _check_options(blocksize, dampening)
    original = gemm_matrix(weight, weight.param.detach()).float()
    new = torch.empty_like(original)
    keep = torch.empty_like(original, dtype=torch.bool)
    lost = total = 0.0
    unseen = unseen_parts(weight, hessian)
    for part in range(original.shape[0]):
        label = weight.name if original.shape[0] == 1 else f"{weight.name} (part {part})"
        if unseen[part]:  # no inputs (an expert no token was routed to, or dead activations): magnitude's mask, no update
            keep[part] = prune_(original[part].clone(), 1)
            new[part] = original[part] * keep[part]
            continue
        new[part], keep[part] = _solve_matrix(original[part], hessian[part], blocksize, dampening, label)
        delta = original[part] - new[part]
        lost += float((delta @ hessian[part] * delta).sum())
        total += float((original[part] @ hessian[part] * original[part]).sum())
    kept = 1.0 - lost / total if total > 0 else 1.0
    return from_gemm_matrix(weight, new).to(weight.param.dtype), from_gemm_matrix(weight, keep), kept


def solve_all(
    model: nn.Module,
    weights: Sequence[GemmWeight],
    *,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    progress: bool = True,
    blocksize: int = 128,
    dampening: float = 0.01,
) -> list[tuple[Tensor, Tensor, float]]:
    """:func:`solve` for every weight from one forward pass over ``data`` (all layers' Hessians at once).

    For large models use ``sparsify(..., sequential=True)``: one block's Hessians at a time,
    each block calibrated on the outputs of the already pruned blocks before it.
    """
    _check_options(blocksize, dampening)
    stats, counts = gather(model, weights, KIND, data, loss_fn=loss_fn, num_batches=num_batches, progress=progress)
    results = []
    for weight in weights:
        results.append(solve(weight, stats.pop(id(weight.param)), counts[id(weight.param)], blocksize=blocksize, dampening=dampening))
    return results
