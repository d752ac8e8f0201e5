"""2:4 by pattern: the cost of pruning each of a group's 6 pairs, cross terms included.

A 2:4 mask prunes two weights of every group of 4 together. The second-order loss increase of
pruning the pair ``{j, k}`` with a Fisher ``F = E[g g^T]`` is ``1/2 w_P^T F_PP w_P`` =
``1/2 E[(g_j w_j + g_k w_k)^2]``: the two weights' own terms *and* ``2 E[g_j w_j g_k w_k]``.
Per-weight scores (OBD, ``w^2 F_jj``) drop that cross term, which is large where a group's
inputs are correlated (neighbouring pixels, a residual stream's features). Here every group's
6 costs are accumulated from the same products ``a = w * g`` the per-weight score squares, and
the pair with the smallest cost is pruned.

Costs live in the GEMM layout of :func:`sparse24.axes.gemm_matrix` (groups of 4 consecutive
columns along the reduction axis): ``[parts, rows, d // 4, 6]``, 1.5 fp32 per weight on top of
the per-weight scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..axes import GemmWeight, from_gemm_matrix, gemm_matrix
from ..mask import PAIRS  # the pruned pair of each pattern: (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)

_FIRST = [i for i, _ in PAIRS]
_SECOND = [j for _, j in PAIRS]


@dataclass
class PairCosts:
    """What a pattern-level criterion gives for one weight.

    ``scores``: per-weight importance (the weight's shape; the diagonal part, used for the
    report's kept importance and for channel permutation); ``cross``: ``sum a_j a_k`` per group
    and pair, ``[parts, rows, d // 4, 6]`` in :data:`PAIRS` order.
    """

    scores: Tensor
    cross: Tensor

    def keep(self, weight: GemmWeight) -> Tensor:
        """The bool mask (the weight's shape) that prunes, in every group, the pair of least cost.

        Cost of pruning ``{j, k}``: ``d_j + d_k + 2 x_jk`` (``d`` the per-weight scores, ``x``
        the cross sums). Ties go to the first pair in :data:`PAIRS` order.
        """
        diag = gemm_matrix(weight, self.scores)
        groups = diag.reshape(*diag.shape[:-1], -1, 4)
        cost = groups[..., _FIRST] + groups[..., _SECOND] + 2 * self.cross
        pruned = cost.argmin(-1, keepdim=True)  # [..., groups, 1]
        table = torch.ones(len(PAIRS), 4, dtype=torch.bool, device=cost.device)
        for index, (j, k) in enumerate(PAIRS):
            table[index, j] = table[index, k] = False
        keep = table[pruned.squeeze(-1)]  # [..., groups, 4]
        return from_gemm_matrix(weight, keep.reshape(diag.shape))


def new_cross(weight: GemmWeight) -> Tensor:
    """A zero accumulator for ``weight``'s cross sums (fp32, on its device)."""
    matrix = gemm_matrix(weight, weight.param.detach())
    return torch.zeros(*matrix.shape[:-1], matrix.shape[-1] // 4, len(PAIRS), dtype=torch.float32, device=matrix.device)


def add_cross(weight: GemmWeight, product: Tensor, cross: Tensor) -> None:
    """``cross += a_j a_k`` for every group and pair, ``product`` being ``a = w * g`` (the weight's shape)."""
    matrix = gemm_matrix(weight, product)
    groups = matrix.reshape(*matrix.shape[:-1], -1, 4)
    cross.addcmul_(groups[..., _FIRST], groups[..., _SECOND])
