"""Pure-PyTorch references of the kernels (any device, CPU in CI): compress, decompress, sparse GEMM.

The compressed layout is the one ``csrc/common.cuh`` documents:

- ``values [N, K/2]``: the 2 kept values of each group of 4 along K, lower index first;
- ``meta [N, K/16]`` (int16 holding 16 bits): word ``(n, c)`` covers dense columns
  ``16c .. 16c+15``; bits ``4q .. 4q+3`` describe group ``q``: bits 0-1 the first kept index,
  bits 2-3 the second (first < second).
- A group with fewer than 2 nonzeros keeps its nonzero positions plus the lowest unused ones.

Before CUTLASS's reordering, torch's ``sparse_semi_structured_from_dense_cutlass`` uses the
same values and the same meta words wherever every group holds exactly 2 nonzeros.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparse24.errors import SparsityError

__all__ = ["compress", "decompress", "sparse_mm", "check_compressible"]


def check_compressible(weight: Tensor) -> None:
    """Raise ``ValueError`` unless ``weight`` is a 2-D tensor with K % 16 == 0."""
    if weight.dim() != 2:
        raise ValueError(f"a 2:4 weight must be 2-D [N, K], got shape {list(weight.shape)}")
    if weight.shape[1] % 16:
        raise ValueError(f"K = {weight.shape[1]} must be a multiple of 16 for the compressed layout")


def _kept_indices(nonzero: Tensor) -> Tensor:
    """[..., 4] flags -> [..., 2] kept indices: nonzero positions first, then the lowest unused; sorted."""
    positions = torch.arange(4, device=nonzero.device)
    priority = positions + 4 * (~nonzero).to(torch.int64)
    kept = priority.topk(2, dim=-1, largest=False).indices
    return kept.sort(dim=-1).values


def compress(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(values [N, K/2], meta [N, K/16] int16)`` of a 2:4 ``weight [N, K]``; raises SparsityError if not 2:4."""
    check_compressible(weight)
    n, k = weight.shape
    groups = weight.reshape(n, k // 4, 4)
    nonzero = groups != 0
    too_many = int((nonzero.sum(-1) > 2).sum())
    if too_many:
        raise SparsityError(f"weight {list(weight.shape)} is not 2:4 along K: {too_many} groups of 4 hold more than 2 nonzeros")
    kept = _kept_indices(nonzero)  # [N, K/4, 2]
    values = groups.gather(-1, kept).reshape(n, k // 2)
    nibbles = (kept[..., 0] | (kept[..., 1] << 2)).reshape(n, k // 16, 4)
    words = sum(nibbles[..., q] << (4 * q) for q in range(4))  # int64 in [0, 65535]
    meta = torch.where(words >= 32768, words - 65536, words).to(torch.int16)
    return values.contiguous(), meta.contiguous()


def decompress(values: Tensor, meta: Tensor) -> Tensor:
    """The dense ``[N, K]`` weight back from ``(values, meta)``."""
    n, half = values.shape
    k = half * 2
    if meta.shape != (n, k // 16):
        raise ValueError(f"meta has shape {list(meta.shape)}, expected {[n, k // 16]} for values {list(values.shape)}")
    words = meta.to(torch.int64) & 0xFFFF
    nibbles = torch.stack([(words >> (4 * q)) & 0xF for q in range(4)], dim=-1).reshape(n, k // 4)
    kept = torch.stack([nibbles & 3, nibbles >> 2], dim=-1)  # [N, K/4, 2]
    dense = torch.zeros(n, k // 4, 4, dtype=values.dtype, device=values.device)
    dense.scatter_(-1, kept, values.reshape(n, k // 4, 2))
    return dense.reshape(n, k)


def sparse_mm(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None = None, *, accumulate: torch.dtype = torch.float32) -> Tensor:
    """``x [M, K] @ W^T (+ bias)`` from the compressed W, accumulated in ``accumulate``, returned in ``x.dtype``."""
    weight = decompress(values, meta).to(accumulate)
    out = x.to(accumulate) @ weight.t()
    if bias is not None:
        out = out + bias.to(accumulate)
    return out.to(x.dtype)
