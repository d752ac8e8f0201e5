"""Wanda (Sun et al. 2023): score ``|W_ij| * ||X_j||_2``, compared within each group of 4 along the reduction axis.

``||X_j||_2`` is the norm of input column ``j`` over every calibration token: per input
feature for Linear and ``Conv1D``, per (kernel position, channel) for convs, so every conv
weight element is weighed by its own input (:func:`sparse24.axes.gemm_columns`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..axes import GemmWeight, from_gemm_matrix, gemm_matrix
from ..calibrate import gather, unseen_parts

KIND = "norms"  # the input statistics this criterion reads (sparse24.calibrate)


def from_stats(weight: GemmWeight, norms: Tensor, count: int) -> Tensor:
    """Wanda scores (fp32, the weight's shape) from the input columns' L2 norms ``[parts, d]``."""
    matrix = gemm_matrix(weight, weight.param.detach()).float().abs()
    norms = torch.where(unseen_parts(weight, norms).unsqueeze(1), 1.0, norms)  # no inputs: magnitude
    return from_gemm_matrix(weight, matrix * norms.unsqueeze(1))


def score(
    model: nn.Module,
    weights: Sequence[GemmWeight],
    *,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    progress: bool = True,
    **options: Any,
) -> list[Tensor]:
    """Wanda scores of ``weights`` from one forward pass over ``data`` (``loss_fn(model, batch)`` runs a batch when given)."""
    if options:
        raise ValueError(f"wanda takes no options, got {sorted(options)}")
    stats, counts = gather(model, weights, KIND, data, loss_fn=loss_fn, num_batches=num_batches, progress=progress)
    return [from_stats(w, stats[id(w.param)], counts[id(w.param)]) for w in weights]
