"""Tensor-level 2:4 rule: masks, checks and in-place pruning along one dimension.

A *group* is 4 consecutive elements along ``dim``; a tensor is 2:4 when every group holds
at most 2 nonzeros. Masks keep the 2 highest scores of each group; on equal scores the
lower index wins, so the result is deterministic.

The work runs in chunks of 256K elements so that each chunk stays in cache, with
buffers reused across chunks: six pairwise comparisons give a 6-bit code per group, and a
64-entry table turns the code into the group's 4 keep flags (packed in one int32).
bench/bench_sparsify.py measures it against ``weight.clone()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .errors import SparsityError

__all__ = ["two_four_mask", "is_two_four", "first_violation", "require_two_four", "prune_", "group_view", "pack_bits", "unpack_bits", "packed_shape"]

CHUNK_ELEMENTS = 1 << 18  # the largest temporary a chunked pass makes, in elements (about)
PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # the 6 pairs of a group of 4, in the one order used everywhere
_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _keep_table() -> Tensor:
    """Row ``code`` holds the keep flags of a group whose comparisons gave ``code``.

    Bit ``k`` of ``code`` is set when, for pair ``(i, j) = PAIRS[k]``, ``s[i] >= s[j]``
    (the lower index wins ties). An element is kept when it loses fewer than 2 comparisons;
    codes that no total order produces still keep exactly 2 (fewest losses, lower index).
    """
    rows = []
    for code in range(64):
        losses = [0, 0, 0, 0]
        for bit, (i, j) in enumerate(PAIRS):
            losses[j if code >> bit & 1 else i] += 1
        kept = sorted(range(4), key=lambda k: (losses[k], k))[:2]
        rows.append([k in kept for k in range(4)])
    return torch.tensor(rows, dtype=torch.bool)


_KEEP = _keep_table()


def group_view(tensor: Tensor, dim: int = -1) -> Tensor:
    """View ``tensor`` as ``[..., groups, 4]`` with the groups running along ``dim``."""
    if tensor.dim() == 0:
        raise ValueError("2:4 needs a tensor with at least one dimension, got a scalar")
    dim = dim % tensor.dim()
    size = tensor.shape[dim]
    if size % 4:
        raise ValueError(f"size {size} of dim {dim} is not divisible by 4 (shape {list(tensor.shape)})")
    return tensor.movedim(dim, -1).unflatten(-1, (size // 4, 4))


def _chunks(grouped: Tensor, chunk: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` slices along dim 0 of about ``chunk`` (default ``CHUNK_ELEMENTS``) elements each."""
    rows = grouped.shape[0]
    per_row = max(1, grouped.numel() // max(rows, 1))
    step = max(1, (CHUNK_ELEMENTS if chunk is None else chunk) // per_row)
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


class _Workspace:
    """Buffers reused across chunks: allocating per chunk costs more than the arithmetic."""

    def __init__(self, grouped: Tensor, element_size: int = 0) -> None:
        rows = max(grouped.shape[0], 1)
        step = next(_chunks(grouped), (0, 1))[1]
        groups = -(-(grouped.numel() // 4) * step // rows)
        device = grouped.device
        self.table = _KEEP.view(torch.int32).view(64).to(device)
        self.bit = torch.empty(groups, dtype=torch.bool, device=device)
        self.code = torch.empty(groups, dtype=torch.int32, device=device)
        self.keep = torch.empty(groups, dtype=torch.int32, device=device)
        self.magnitude = torch.empty(groups * 4, dtype=grouped.dtype, device=device)
        int_dtype = _SAME_SIZE_INT.get(element_size)
        self.bits = None if int_dtype is None else torch.empty(groups * 4, dtype=int_dtype, device=device)

    def keep_flags(self, scores: Tensor) -> Tensor:
        """Keep flags (bool, contiguous, shape of ``scores``) of grouped ``scores`` ``[..., 4]``."""
        a, b, c, d = scores.unbind(-1)
        n = a.numel()
        bit, code = self.bit[:n].view(a.shape), self.code[:n].view(a.shape)
        torch.ge(a, b, out=bit)
        code.copy_(bit)
        for shift, (x, y) in enumerate(((a, c), (a, d), (b, c), (b, d), (c, d)), start=1):
            torch.ge(x, y, out=bit)
            code.add_(bit.view(torch.uint8), alpha=1 << shift)
        keep = torch.index_select(self.table, 0, self.code[:n], out=self.keep[:n])
        return keep.view(torch.bool).view(scores.shape)

    def magnitude_of(self, chunk: Tensor) -> Tensor:
        return torch.abs(chunk, out=self.magnitude[: chunk.numel()].view(chunk.shape))

    def zero_pruned_(self, chunk: Tensor, keep: Tensor) -> None:
        """Write zeros where ``keep`` is False, in place (+0.0 by a bitwise AND for floats)."""
        if self.bits is None or not chunk.is_floating_point():
            chunk.mul_(keep)
            return
        bits = self.bits[: chunk.numel()].view(chunk.shape)
        bits.copy_(keep.view(torch.uint8))
        chunk.view(bits.dtype).bitwise_and_(bits.neg_())


def _check_no_nan(scores: Tensor) -> None:
    if scores.is_floating_point() and not torch.isfinite(scores.sum(dtype=torch.float32)):
        if torch.isnan(scores).any():
            raise ValueError("scores contain NaN; a 2:4 mask needs comparable scores")


def two_four_mask(scores: Tensor, dim: int = -1) -> Tensor:
    """Boolean mask keeping the 2 highest ``scores`` of every 4 consecutive along ``dim``.

    Ties go to the lower index. The mask has the shape and device of ``scores``; the size
    of ``dim`` must be divisible by 4, and NaN scores raise ``ValueError``.
    """
    grouped = group_view(scores, dim)
    _check_no_nan(scores)
    mask = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    mask_grouped = group_view(mask, dim)
    workspace = _Workspace(grouped)
    for start, stop in _chunks(grouped):
        mask_grouped[start:stop].copy_(workspace.keep_flags(grouped[start:stop]))
    return mask


def prune_(
    weight: Tensor, dim: int = -1, scores: Tensor | None = None, out: Tensor | None = None
) -> Tensor:
    """Zero, in place, the 2 lowest-scoring elements of every 4 along ``dim``; return the mask.

    ``scores`` (same shape) rank the elements; ``None`` ranks by magnitude ``|weight|``.
    The mask (bool, shape of ``weight``) is written to ``out`` when given. Pruned float
    elements become +0.0. The caller checks the scores for NaN first.
    """
    if scores is not None and scores.shape != weight.shape:
        raise ValueError(f"scores shape {list(scores.shape)} != weight shape {list(weight.shape)}")
    mask = out if out is not None else torch.empty(weight.shape, dtype=torch.bool, device=weight.device)
    w_grouped = group_view(weight, dim)
    s_grouped = None if scores is None else group_view(scores, dim)
    m_grouped = group_view(mask, dim)
    workspace = _Workspace(w_grouped, weight.element_size())
    with torch.no_grad():
        for start, stop in _chunks(w_grouped):
            chunk = w_grouped[start:stop]
            scores_chunk = workspace.magnitude_of(chunk) if s_grouped is None else s_grouped[start:stop]
            keep = workspace.keep_flags(scores_chunk)
            m_grouped[start:stop].copy_(keep)
            workspace.zero_pruned_(chunk, keep)
    return mask


def _group_counts(tensor: Tensor, dim: int) -> Tensor:
    return group_view(tensor, dim).ne(0).sum(-1)


def is_two_four(tensor: Tensor, dim: int = -1) -> bool:
    """True when every 4 consecutive elements along ``dim`` hold at most 2 nonzeros."""
    return bool((_group_counts(tensor, dim) <= 2).all())


def first_violation(tensor: Tensor, dim: int = -1) -> tuple[tuple[int, ...], int] | None:
    """Index of the first element of the first group with more than 2 nonzeros, and its count.

    The index is in ``tensor``'s own coordinates; ``None`` when the tensor is 2:4.
    """
    counts = _group_counts(tensor, dim)
    bad = counts > 2
    if not bool(bad.any()):
        return None
    position = [int(i) for i in torch.nonzero(bad)[0]]
    count = int(counts[tuple(position)])
    dim = dim % tensor.dim()
    group = position.pop()
    index = position[:dim] + [group * 4] + position[dim:]
    return tuple(index), count


def require_two_four(tensor: Tensor, dim: int, what: str) -> None:
    """Raise :class:`SparsityError` naming ``what`` and the first bad group unless ``tensor`` is 2:4 along ``dim``."""
    bad = first_violation(tensor, dim)
    if bad is not None:
        index, count = bad
        parts = [str(i) for i in index]
        parts[dim] = f"{index[dim]}:{index[dim] + 4}"
        raise SparsityError(f"{what} is not 2:4 along dim {dim}; group [{', '.join(parts)}] has {count} nonzeros")


# Masks at rest: 1 bit per weight. Each mask is viewed as [rows, rest] (dim 0 kept, the other dims
# flattened) and packed along ``rest``, 8 elements per byte (element 8*b + i in bit i of byte b; the
# last byte of a row zero-padded): a conv's kernel positions do not pad every byte, and a weight
# sharded by rows (FSDP) has its mask sharded alike.
_BIT_TABLES: dict[tuple[torch.dtype, torch.device], Tensor] = {}
_PACK_MAGIC = 0x0102040810204080


def packed_shape(shape: tuple[int, ...] | torch.Size) -> tuple[int, int]:
    """Shape of the bit-packed form of a mask of ``shape``: ``[shape[0], ceil(prod(shape[1:]) / 8)]``."""
    if len(shape) == 0:
        raise ValueError("a mask needs at least one dimension")
    rest = 1
    for size in shape[1:]:
        rest *= size
    return (shape[0], (rest + 7) // 8)


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a bool ``mask`` into uint8 ``[rows, ceil(rest / 8)]`` (see :func:`packed_shape`), LSB first."""
    if mask.dtype != torch.bool or mask.dim() == 0:
        raise ValueError(f"pack_bits takes a bool mask with at least one dim, got {mask.dtype} {list(mask.shape)}")
    rows = mask.reshape(mask.shape[0], _numel(mask.shape[1:])).view(torch.uint8)  # a view of a contiguous mask: no copy
    if rows.shape[1] % 8:
        rows = torch.nn.functional.pad(rows, (0, -rows.shape[1] % 8))
    rows = rows.contiguous() if rows.storage_offset() % 8 == 0 else rows.clone()  # int64 words need 8-byte alignment
    packed = torch.empty(rows.shape[0], rows.shape[1] // 8, dtype=torch.uint8, device=mask.device)
    if packed.numel() == 0:
        return packed
    # 8 flags (bytes of 0 or 1) read as one int64 x: the top byte of x * 0x0102040810204080 is
    # sum(flag_i << i), since no two partial products meet in a bit. Row chunks keep the int64
    # temporaries small.
    for start, stop in _chunks(rows):
        words = rows[start:stop].view(torch.int64)
        product = words * _PACK_MAGIC
        packed[start:stop] = product.bitwise_right_shift_(56)
    return packed


def unpack_bits(packed: Tensor, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.bool) -> Tensor:
    """The mask of ``shape`` that :func:`pack_bits` packed, as ``dtype`` (a new tensor: 0/1 or False/True).

    One table lookup per byte, so a float mask for a gradient costs one pass and no bool copy.
    """
    shape = tuple(shape)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != packed_shape(shape):
        raise ValueError(f"a packed mask for shape {list(shape)} is uint8 {list(packed_shape(shape))}, got {packed.dtype} {list(packed.shape)}")
    return expand_bits(packed, shape, dtype)


def bit_table(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The ``[256, 8]`` table whose row ``b`` holds the bits of ``b`` (least significant first) as 0/1 in ``dtype``.

    One per (dtype, device), built on first use and kept (8 KiB at most).
    """
    table = _BIT_TABLES.get((dtype, device))
    if table is None:
        bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        table = _BIT_TABLES[(dtype, device)] = bits.to(device=device, dtype=dtype)
    return table


def expand_bits(packed: Tensor, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
    """:func:`unpack_bits` without its checks, for the per-step gradient hook."""
    bits = bit_table(dtype, packed.device).index_select(0, packed.view(-1).int())  # index_select: CPU indexing is ~3x slower
    if bits.numel() == _numel(shape):  # no padding bits: the lookup's [bytes, 8] is the mask, element for element
        return bits.view(shape)
    return bits.view(packed.shape[0], -1)[:, : _numel(shape[1:])].reshape(shape)


def mask_rows_(tensor: Tensor, packed: Tensor, chunk: int | None = None) -> Tensor:
    """Multiply ``tensor`` in place by its packed mask, about ``chunk`` (default ``CHUNK_ELEMENTS``) elements of rows at a time.

    The same result as ``tensor.mul_(unpack_bits(packed, tensor.shape, tensor.dtype))`` without a
    full-size expanded mask: the largest temporary is one block of rows. ``tensor`` is contiguous
    and ``packed`` has its rows (:func:`packed_shape`).
    """
    rows = packed.shape[0]
    if rows == 0:
        return tensor
    flat = tensor.view(rows, -1)
    for start, stop in _chunks(flat, chunk):
        flat[start:stop].mul_(expand_bits(packed[start:stop], (stop - start, flat.shape[1]), tensor.dtype))
    return tensor


def _numel(shape: tuple[int, ...] | torch.Size) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
