"""2:4 by pattern: the cost of pruning each of a group's 6 pairs, cross terms included.

A 2:4 mask prunes two weights of every group of 4 together. The second-order loss increase of
pruning the pair ``{j, k}`` with a Fisher ``F = E[g g^T]`` is ``1/2 w_P^T F_PP w_P`` =
``1/2 E[(g_j w_j + g_k w_k)^2]``: the two weights' own terms *and* ``2 E[g_j w_j g_k w_k]``.
Per-weight scores (OBD, ``w^2 F_jj``) drop that cross term, which is large where a group's
inputs are correlated (neighbouring pixels, a residual stream's features). Here every group's
6 costs are accumulated from the same products ``a = w * g`` the per-weight score squares, and
the pair with the smallest cost is pruned.

Costs live in the group layout of :func:`sparse24.axes.gemm_groups` (the groups of 4 along the
reduction axis, dim 0 following the weight's dim 0, so a shard of the weight has the rows of
its costs): ``[a, b, 6]``, 1.5 fp32 per weight on top of the per-weight scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..axes import GemmWeight, from_gemm_groups, gemm_groups
from ..mask import PAIRS  # the pruned pair of each pattern: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)

_FIRST = [i for i, _ in PAIRS]
_SECOND = [j for _, j in PAIRS]


@dataclass
class PairCosts:
    """What a pattern-level criterion gives for one weight.

    ``scores``: per-weight importance (the weight's shape; the diagonal part, used for the
    report's kept importance and for channel permutation); ``cross``: ``sum a_j a_k`` per group
    and pair, ``[a, b, 6]`` in the group layout of :func:`~sparse24.axes.gemm_groups`, in :data:`PAIRS` order.
    """

    scores: Tensor
    cross: Tensor

    def keep(self, weight: GemmWeight) -> Tensor:
        """The bool mask (the weight's shape) that prunes, in every group, the pair of least cost.

        Cost of pruning ``{j, k}``: ``d_j + d_k + 2 x_jk`` (``d`` the per-weight scores, ``x``
        the cross sums). Ties go to the first pair in :data:`PAIRS` order.
        """
        groups = gemm_groups(weight, self.scores)
        cost = groups[..., _FIRST] + groups[..., _SECOND] + 2 * self.cross
        pruned = cost.argmin(-1)  # [a, b]
        table = torch.ones(len(PAIRS), 4, dtype=torch.bool, device=cost.device)
        for index, (j, k) in enumerate(PAIRS):
            table[index, j] = table[index, k] = False
        return from_gemm_groups(weight, table[pruned], self.scores.shape)


def cross_shape(weight: GemmWeight, shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
    """The shape of the cross sums of ``weight``, or of its dim-0 slices of ``shape``."""
    a, b, _ = gemm_groups(weight, torch.empty(shape, device="meta")).shape
    return a, b, len(PAIRS)


def new_cross(weight: GemmWeight, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """A zero accumulator of the cross sums of ``weight`` or of its dim-0 slices of ``shape`` (fp32, on its device)."""
    return torch.zeros(cross_shape(weight, shape), dtype=torch.float32, device=weight.param.device)


def full_costs(weight: GemmWeight, local: PairCosts) -> PairCosts:
    """A sharded weight's whole pair costs from each rank's (its rows' scores and groups): collectives, every rank in the same order."""
    from ..sharded import full_from_local

    return PairCosts(full_from_local(weight.param, local.scores), full_from_local(weight.param, local.cross, cross_shape(weight, weight.param.shape)))


def add_cross(weight: GemmWeight, product: Tensor, cross: Tensor) -> None:
    """``cross += a_j a_k`` for every group and pair, ``product`` being ``a = w * g`` (the shape ``cross`` was made for)."""
    groups = gemm_groups(weight, product)
    cross.addcmul_(groups[..., _FIRST], groups[..., _SECOND])
