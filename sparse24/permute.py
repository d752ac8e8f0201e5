"""Channel permutations for 2:4 sparsity (Pool & Yu, NeurIPS 2021), in place.

2:4 keeps the 2 most important of every 4 consecutive input channels of a GEMM. Reordering
those channels changes which weights compete, and so how much importance survives. The
reorder is free where the hidden channels between *producers* (layers writing them: Linear
rows, conv output channels) and *consumers* (layers reducing over them: Linear columns, conv
input channels) pass only through elementwise or per-channel ops: permuting the producers'
outputs and the consumers' inputs the same way leaves the function unchanged.

:func:`permute` finds such groups (with ``torch.fx`` where the model traces, with explicit
rules for common ``transformers`` blocks and torch's own transformer modules where it does
not), searches a permutation per group that keeps more importance under 2:4 along the
consumers' reduction axis (:mod:`sparse24.axes`), and applies it to every tensor indexed by
those channels. Run it on
the dense model, before :func:`sparse24.sparsify`.

The search (:func:`search_permutation`) is the published greedy channel swap, vectorized:
the gain of every swap between two columns of different groups of 4 is computed at once from
``sum_r max(second_r, v_r)`` (for a group that loses column ``a`` and gains column ``b``, the
kept value of a row is ``top_r + max(second_r, b_r)``, with ``top``/``second`` the two largest
of the three that stay), the best non-conflicting swaps are applied, and only the touched
groups are recomputed. Wide layers are searched in windows of ``window`` columns that are
redrawn every round, so every column can meet every other over the rounds.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
import operator
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from . import dist, interrupts, source
from .axes import gemm_axes, is_fused_experts, is_llama4_experts, is_parallel_experts
from .calibrate import no_kv_cache, qualified, within
from .enforce import MASK_SUFFIX
from .errors import Sparse24Error

__all__ = [
    "PermutationReport",
    "PermutedGroup",
    "SkippedGroup",
    "kept_importance",
    "permute",
    "permute_like",
    "search_permutation",
]

logger = logging.getLogger(__name__)

_NEG = float("-inf")
_NOISE = 1e-5  # relative uncertainty of a swap's gain (float32 L1 distances over the rows)

# ---------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------


def _max_mid3(p: Tensor, q: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Largest and middle of three, elementwise."""
    lo, hi = torch.minimum(p, q), torch.maximum(p, q)
    return torch.maximum(hi, r), torch.maximum(lo, torch.minimum(hi, r))


def _top2_sums(groups: Tensor) -> Tensor:
    """``groups [..., 4, R]`` -> ``[...]``: sum over R of the 2 largest of each 4 (float64)."""
    a, b, c, d = groups.unbind(-2)
    top, second = _max_mid3(b, c, d)
    return (top + torch.maximum(second, a)).sum(-1, dtype=torch.float64)


def _check_matrix(importance: Tensor, what: str = "importance") -> None:
    if not isinstance(importance, Tensor) or importance.dim() != 2:
        raise ValueError(f"{what} must be a 2-D tensor [rows, channels], got {_describe(importance)}")
    if not importance.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {importance.dtype}")
    if importance.shape[1] % 4:
        raise ValueError(f"{what}: {importance.shape[1]} channels is not a multiple of 4")
    _check_values(importance, what)


def _check_values(importance: Tensor, what: str) -> None:
    if importance.numel() and not bool(torch.isfinite(importance).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    if importance.numel() and bool((importance < 0).any()):
        raise ValueError(f"{what} has negative entries; importance must be >= 0 (e.g. |W|, Taylor or Wanda scores)")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"{type(value).__name__}"


def kept_importance(importance: Tensor, permutation: Tensor | None = None) -> float:
    """Importance kept by 2:4 along the channels of ``importance [rows, channels]``.

    The sum, over every row and every 4 consecutive channels, of the 2 largest entries --
    after reordering the channels by ``permutation`` (column ``i`` becomes ``permutation[i]``)
    when given.
    """
    _check_matrix(importance)
    if permutation is not None:
        _check_permutation(permutation, importance.shape[1])
        importance = importance[:, permutation]
    rows, channels = importance.shape
    return float(_top2_sums(importance.detach().t().reshape(channels // 4, 4, rows)).sum())


def _check_permutation(permutation: Tensor, size: int) -> None:
    if (
        not isinstance(permutation, Tensor)
        or permutation.dtype != torch.long
        or permutation.shape != (size,)
        or not torch.equal(permutation.sort().values, torch.arange(size, device=permutation.device))
    ):
        raise ValueError(f"permutation must be a LongTensor holding each of 0..{size - 1} once, got {_describe(permutation)}")


class _Windows:
    """A batch of windows, each ``n`` columns (``n / 4`` groups of 4), and their swap gains.

    ``x[b, i]`` is the importance column at position ``i`` of window ``b`` (zeros for padding).
    For position ``i`` in group ``s``, ``top[b, i]`` and ``second[b, i]`` are the largest and
    middle of the 3 other columns of ``s`` (per row); replacing column ``i`` by column ``j``
    leaves group ``s`` worth ``sum(top_i) + sum(max(second_i, x_j))``, and
    ``sum(max(p, q)) = (sum(p) + sum(q) + |p - q|_1) / 2`` gives every pair with one
    ``cdist``.
    """

    def __init__(self, vectors: Tensor, cols: Tensor) -> None:
        self.cols = cols
        self.B, self.n = cols.shape
        self.W = self.n // 4
        pad = cols < 0
        self.x = vectors[cols.clamp(min=0)].masked_fill_(pad[..., None], 0.0)  # [B, n, R]
        self.xsum = self.x.sum(-1).double()
        self.second = torch.empty_like(self.x)
        self.secsum = torch.empty(self.B, self.n, dtype=torch.float64, device=vectors.device)
        self.topsum = torch.empty_like(self.secsum)
        self.base = torch.empty(self.B, self.W, dtype=torch.float64, device=vectors.device)
        ar = torch.arange(self.B, device=cols.device)
        self._update_groups(ar.repeat_interleave(self.W), torch.arange(self.W, device=cols.device).repeat(self.B))
        self.l1 = torch.cdist(self.second, self.x, p=1).double()
        group = torch.arange(self.n, device=cols.device) // 4
        self.invalid = (group[:, None] == group[None, :]) | pad[:, :, None] | pad[:, None, :]

    def _update_groups(self, b: Tensor, s: Tensor) -> None:
        """Recompute ``top``, ``second`` and the kept value of groups ``s`` of windows ``b``."""
        g = self.x.view(self.B, self.W, 4, -1)[b, s]  # [K, 4, R]
        a0, a1, a2, a3 = g.unbind(1)
        tops, seconds = [], []
        for others in ((a1, a2, a3), (a0, a2, a3), (a0, a1, a3), (a0, a1, a2)):
            top, second = _max_mid3(*others)
            tops.append(top.sum(-1).double())
            seconds.append(second)
        second = torch.stack(seconds, 1)
        pos = (s * 4)[:, None] + torch.arange(4, device=s.device)
        self.second.view(self.B, self.W, 4, -1)[b, s] = second
        self.secsum[b[:, None], pos] = second.sum(-1).double()
        self.topsum[b[:, None], pos] = torch.stack(tops, 1)
        self.base[b, s] = tops[0] + torch.maximum(seconds[0], a0).sum(-1).double()

    def gains(self) -> Tensor:
        """``[B, n, n]``: change of the window's kept importance when positions ``i``, ``j`` swap."""
        value = self.topsum[:, :, None] + 0.5 * (self.secsum[:, :, None] + self.xsum[:, None, :] + self.l1)
        base = self.base.repeat_interleave(4, dim=1)
        after = value + value.transpose(1, 2)
        before = base[:, :, None] + base[:, None, :]
        # the L1 distances are float32 sums, so a gain is only known to a small fraction of the two
        # groups' values; a smaller one is rounding noise, and taking it would swap back and forth
        return (after - before - _NOISE * (after + before)).masked_fill_(self.invalid, _NEG)

    def swap(self, b: Tensor, i: Tensor, j: Tensor) -> None:
        """Swap positions ``i`` and ``j`` of windows ``b``; no two swaps may share a group."""
        for t in (self.cols, self.x, self.xsum):
            ti, tj = t[b, i].clone(), t[b, j].clone()
            t[b, i], t[b, j] = tj, ti
        li, lj = self.l1[b, :, i].clone(), self.l1[b, :, j].clone()
        self.l1[b, :, i], self.l1[b, :, j] = lj, li
        tb, ts = torch.cat([b, b]), torch.cat([i // 4, j // 4])
        self._update_groups(tb, ts)
        # the rows of l1 of every position in a touched group, window by window (padded)
        touched = torch.zeros(self.B, self.W, dtype=torch.bool, device=b.device)
        touched[tb, ts] = True
        counts = touched.sum(1)
        windows = torch.nonzero(counts).squeeze(1)
        order = torch.argsort(touched[windows].to(torch.int8), dim=1, descending=True, stable=True)[:, : int(counts.max())]
        valid = torch.gather(touched[windows], 1, order).repeat_interleave(4, dim=1)
        pos = ((order * 4)[:, :, None] + torch.arange(4, device=b.device)).flatten(1)
        dist = torch.cdist(self.second[windows[:, None], pos], self.x[windows], p=1).double()
        self.l1[windows[:, None].expand_as(pos)[valid], pos[valid]] = dist[valid]

    def kept(self) -> Tensor:
        """Exact kept importance of each window (float64)."""
        return _top2_sums(self.x.view(self.B, self.W, 4, -1)).sum(1)


def _pick(gain: Tensor, W: int, threshold: float, lower: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Best-first swaps with a gain above ``threshold``, at most one per group: ``(b, i, j)``."""
    B = gain.shape[0]
    blocks = gain.view(B, W, 4, W, 4).permute(0, 1, 3, 2, 4).reshape(B, W, W, 16)
    best, where = blocks.max(-1)
    best = best.masked_fill(lower, _NEG)
    picked = []
    for _ in range(W // 2):
        value, index = best.view(B, -1).max(1)
        b = torch.nonzero(value > threshold).squeeze(1)
        if not len(b):
            break
        s, t = index[b] // W, index[b] % W
        a = where[b, s, t]
        picked.append((b, s * 4 + a // 4, t * 4 + a % 4))
        for u in (s, t):
            best[b, u, :] = _NEG
            best[b, :, u] = _NEG
    if not picked:
        empty = torch.empty(0, dtype=torch.long, device=gain.device)
        return empty, empty, empty
    b, i, j = (torch.cat(parts) for parts in zip(*picked))
    return b, i, j


def _escape_swaps(cols: Tensor, need: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """One random swap between two different groups in each window of ``need`` (bool [B])."""
    valid = (cols >= 0).sum(1)  # padding only ever trails
    b = torch.nonzero(need & (valid >= 8)).squeeze(1)
    u = torch.rand(len(b), 2, generator=generator).to(cols.device)
    size = valid[b]
    i = (u[:, 0] * size).long().clamp(max=size - 1)
    step = 4 * (1 + (u[:, 1] * (size // 4 - 1)).long().clamp(max=size // 4 - 2))
    return b, i, (i + step) % size


def _optimize(vectors: Tensor, cols: Tensor, escapes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Greedy swaps inside each window of ``cols [B, n]`` until none gains; returns (cols, gain)."""
    win = _Windows(vectors, cols)
    start = win.kept()
    best, best_cols = start.clone(), win.cols.clone()
    left = torch.full((win.B,), escapes, dtype=torch.long, device=cols.device)
    threshold = 1e-6 * float(win.base.abs().mean()) if win.base.numel() else 0.0
    lower = ~torch.ones(win.W, win.W, dtype=torch.bool, device=cols.device).triu(1)
    for _ in range(64 * max(win.n, 1) * (escapes + 1)):  # a bound, never reached in practice
        b, i, j = _pick(win.gains(), win.W, threshold, lower)
        if escapes:
            converged = torch.ones(win.B, dtype=torch.bool, device=cols.device)
            converged[b] = False
            need = converged & (left > 0)
            if bool(need.any()):
                kept = win.kept()
                better = need & (kept > best)
                best = torch.where(better, kept, best)
                best_cols[better] = win.cols[better]
                eb, ei, ej = _escape_swaps(win.cols, need, generator)
                left[need] -= 1
                b, i, j = torch.cat([b, eb]), torch.cat([i, ei]), torch.cat([j, ej])
        if not len(b):
            break
        win.swap(b, i, j)
    kept = win.kept()
    better = kept > best
    best = torch.where(better, kept, best)
    best_cols[better] = win.cols[better]
    return best_cols, best - start


def search_permutation(
    importance: Tensor,
    *,
    seed: int = 0,
    window: int = 64,
    rounds: int = 2,
    escapes: int = 0,
) -> Tensor:
    """A permutation of the channels of ``importance [rows, channels]`` that keeps more under 2:4.

    Returns a LongTensor ``p`` of length ``channels``: reorder the channels (columns) as
    ``importance[:, p]``. Kept importance (:func:`kept_importance`) never decreases: every
    window keeps its old order unless the new one keeps strictly more.

    Greedy channel swaps (Pool & Yu 2021; TETRIS, Ji et al. 2018): the gain of every swap of
    two channels in different groups of 4 is computed at once, the best non-conflicting ones
    are made, and only the touched groups are recomputed, until no swap gains. A matrix with
    more than ``window`` channels is searched in windows of ``window`` channels (whole groups
    of 4, drawn at random), redrawn for each of ``rounds`` rounds; at most ``window``
    channels, it is searched as a whole in one round. ``escapes`` random swaps per window
    and round let the search leave a local optimum ("bounded regressions"); the best order
    seen is kept. Deterministic for a given ``seed`` on the same machine and thread count.
    Runs on the device of ``importance``.
    """
    _check_matrix(importance)
    for name, value, low in (("window", window, 8), ("rounds", rounds, 1), ("escapes", escapes, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if window % 4:
        raise ValueError(f"window must be a multiple of 4, got {window}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    rows, channels = importance.shape
    device = importance.device
    perm = torch.arange(channels, device=device)
    groups = channels // 4
    if groups < 2 or rows == 0:
        return perm
    vectors = importance.detach().to(torch.float32).t().contiguous()
    per_window = min(window // 4, groups)
    generator = torch.Generator().manual_seed(seed)
    windows = -(-groups // per_window)
    for _ in range(rounds if windows > 1 or escapes else 1):
        order = torch.randperm(groups, generator=generator).to(device) if windows > 1 else torch.arange(groups, device=device)
        slots = torch.cat([order, order.new_full((windows * per_window - groups,), -1)]).view(windows, per_window)
        valid = slots >= 0
        cols = torch.full((windows, per_window, 4), -1, dtype=torch.long, device=device)
        cols[valid] = perm.view(groups, 4)[slots[valid]]
        cols, gain = _optimize(vectors, cols.view(windows, -1), escapes, generator)
        perm.view(groups, 4)[slots[valid]] = cols.view(windows, per_window, 4)[valid]
        if not bool((gain > 0).any()):
            break
    return perm


# ---------------------------------------------------------------------------------------------
# Groups: the tensors a permutation of hidden channels touches
# ---------------------------------------------------------------------------------------------


@dataclass
class _Member:
    """One dimension of one tensor indexed by the hidden channels.

    Along ``dim``, from ``offset``, the tensor is runs of ``block`` channels; run ``k`` is
    reordered by the permutation number ``blocks[k]`` of the group (the rest of the dim stays).
    """

    module_name: str
    module: nn.Module
    attr: str
    dim: int
    blocks: Tensor
    role: str  # "producer", "consumer" or "per-channel"
    offset: int = 0  # the runs start here along ``dim`` (a slice: the value rows of a fused q/k/v projection)
    expert: int | None = None  # a fused experts tensor's slice [expert] (``dim`` counts in the slice)

    @property
    def param_name(self) -> str:
        """The whole tensor's name (as in ``state_dict``)."""
        return f"{self.module_name}.{self.attr}" if self.module_name else self.attr

    @property
    def name(self) -> str:
        return self.param_name if self.expert is None else f"{self.param_name}[{self.expert}]"

    @property
    def param(self) -> Tensor:
        """The whole tensor (an expert's slice is a view of it)."""
        return getattr(self.module, self.attr)

    @property
    def tensor(self) -> Tensor:
        param = self.param
        return param if self.expert is None else param[self.expert]

    @property
    def key(self) -> tuple[int, int, int | None]:
        """What a permutation claims: this tensor's dim (in one expert's slice)."""
        return id(self.param), self.dim, self.expert

    def scores(self, importance: Mapping[str, Tensor]) -> Tensor | None:
        """The importance given for this member's tensor (its expert's slice), if any."""
        found = importance.get(self.param_name)
        return found if found is None or self.expert is None else found[self.expert]


@dataclass
class _Group:
    kind: str
    block: int
    count: int  # number of independent permutations of `block` channels
    members: list[_Member]

    def names(self, role: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.module_name for m in self.members if m.role == role))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.module_name for m in self.members))


def _uniform(length: int, block: int) -> Tensor:
    return torch.zeros(length // block, dtype=torch.long)


def _producer(
    name: str, module: nn.Module, block: int, blocks: Tensor | None = None, *, offset: int = 0, weight: str = "weight", bias: str | None = "bias"
) -> list[_Member]:
    """The output channels of ``module.<weight>`` (its axis from :func:`sparse24.axes.gemm_axes`) and of its bias.

    ``offset`` (with ``blocks``): only the channels from there, as in a fused q/k/v or gate/up projection.
    """
    axis = gemm_axes(module)[weight]
    length = getattr(module, weight).shape[axis.output]
    blocks = _uniform(length, block) if blocks is None else blocks
    members = [_Member(name, module, weight, axis.output, blocks, "producer", offset)]
    if bias is not None and isinstance(getattr(module, bias, None), Tensor):
        members.append(_Member(name, module, bias, 0, blocks, "producer", offset))
    return members


def _strided_rows(name: str, module: nn.Module, block: int, heads: int, stride: int, start: int) -> list[_Member]:
    """:func:`_producer` of one run of ``block`` output rows per head, head ``h``'s at ``h * stride + start`` (a fused
    projection laid out head after head: DeepSeek's kv_b_proj, MiniMax's qkv_proj), each head its own order."""
    return [m for h in range(heads) for m in _producer(name, module, block, torch.tensor([h]), offset=h * stride + start)]


def _halves(name: str, module: nn.Module, width: int, block: int | None = None, blocks: Tensor | None = None) -> list[_Member]:
    """:func:`_producer` of both halves of a fused projection whose output rows ``[0, width)`` and ``[width, 2 width)``
    hold the same channels (gate and up, a GLU's value and gate, Mamba's x and z), in one order (per ``block``)."""
    block = width if block is None else block
    blocks = _uniform(width, block) if blocks is None else blocks
    return [m for offset in (0, width) for m in _producer(name, module, block, blocks, offset=offset)]


def _consumer(name: str, module: nn.Module, block: int, blocks: Tensor | None = None, *, offset: int = 0) -> list[_Member]:
    """The input channels of ``module.weight`` (its reduction axis from :func:`sparse24.axes.gemm_axes`); ``offset``
    (with ``blocks``): only the channels from there, as one part of a concatenated input."""
    axis = gemm_axes(module)["weight"]
    length = module.weight.shape[axis.reduction]
    blocks = _uniform(length, block) if blocks is None else blocks
    return [_Member(name, module, "weight", axis.reduction, blocks, "consumer", offset)]


def _per_channel(
    name: str, module: nn.Module, block: int, blocks: Tensor | None = None, *, offset: int = 0, attrs: Sequence[str] = ("weight", "bias", "running_mean", "running_var")
) -> list[_Member]:
    """BatchNorm parameters and running statistics, a norm's weight, or a depthwise convolution's filters and bias
    (``attrs`` of ``module`` for other per-channel tensors, such as Mamba's A_log and D), along their first dim;
    ``blocks`` and ``offset`` as for :func:`_producer`."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return [_Member(m.module_name, m.module, m.attr, m.dim, m.blocks, "per-channel", m.offset) for m in _producer(name, module, block, blocks, offset=offset)]
    members = []
    for attr in attrs:
        value = getattr(module, attr, None)
        if isinstance(value, Tensor):
            members.append(_Member(name, module, attr, 0, _uniform(value.shape[0] - offset, block) if blocks is None else blocks, "per-channel", offset))
    return members


# Elementwise modules: exact types (a subclass may override forward).
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.AlphaDropout,
)  # fmt: skip
# transformers.activations classes that act elementwise (ACT2FN values).
_ELEMENTWISE_TRANSFORMERS = {
    "GELUActivation", "NewGELUActivation", "GELUTanh", "PytorchGELUTanh", "FastGELUActivation",
    "QuickGELUActivation", "ClippedGELUActivation", "AccurateGELUActivation", "MishActivation",
    "LinearActivation", "LaplaceActivation", "ReLUSquaredActivation", "SiLUActivation", "XIELUActivation",
    "SqrtSoftplusActivation",
}  # fmt: skip
# elementwise activations that a transformers model defines itself: (module, class)
_ELEMENTWISE_MODEL_ACTIVATIONS = {("transformers.models.bloom.modeling_bloom", "BloomGelu")}  # the tanh GELU


def _transformers_class(module: nn.Module) -> str | None:
    """The class name of a module defined in ``transformers`` (None for any other module)."""
    cls = type(module)
    return cls.__name__ if cls.__module__.split(".")[0] == "transformers" else None


def _elementwise_module(module: nn.Module) -> bool:
    if type(module) in _ELEMENTWISE_MODULES:
        return True
    if type(module) is nn.PReLU:
        return module.num_parameters == 1
    cls = type(module)
    return (cls.__module__, cls.__name__) in _ELEMENTWISE_MODEL_ACTIVATIONS or (
        _transformers_class(module) in _ELEMENTWISE_TRANSFORMERS and cls.__module__ == "transformers.activations"
    )


@functools.lru_cache(maxsize=None)
def _repeats_forward(cls: type, module: str, name: str) -> bool:
    """``cls`` is ``transformers.models.<module>.<name>``, or a transformers class whose ``forward`` is the same code
    (transformers copies a block into the families built on it); False where this transformers lacks the reference."""
    if not cls.__module__.startswith("transformers."):
        return False
    import importlib

    try:
        reference = getattr(importlib.import_module(f"transformers.models.{module}"), name)
    except (ImportError, AttributeError):
        return False
    return cls is reference or source.same_code(cls.forward, reference.forward, (cls, reference))


def _frozen_batchnorm_class(cls: type) -> bool:
    """DETR's FrozenBatchNorm2d and the 13 detector families' copies of it (Conditional/Deformable/DAB-DETR, RT-DETR,
    D-FINE, Grounding DINO, ...): BatchNorm2d's inference affine from fixed buffers (weight, bias, running_mean,
    running_var), one scale and shift per channel at dim -3."""
    return cls.__name__.endswith("FrozenBatchNorm2d") and _repeats_forward(cls, "detr.modeling_detr", "DetrFrozenBatchNorm2d")


def _elementwise_activation(act: object) -> bool:
    """A module's activation attribute (a module, or a plain function such as ``F.gelu``) is elementwise."""
    return _elementwise_module(act) if isinstance(act, nn.Module) else act in _UNARY_FUNCTIONS


def _not_elementwise(module: nn.Module, attr: str) -> str | None:
    """Why ``module.<attr>``, the activation its own forward applies, keeps a rule from permuting; None where it is a
    known elementwise module."""
    act = _attr(module, attr)
    return None if _elementwise_module(act) else f"{attr} {type(act).__name__} is not a known elementwise activation"


def _is_depthwise(conv: object, width: int) -> bool:
    """A convolution over ``width`` channels, each its own group (it moves with its channel)."""
    return isinstance(conv, nn.modules.conv._ConvNd) and conv.groups == conv.in_channels == conv.out_channels == width


def _is_linear(module: object) -> bool:
    return isinstance(module, nn.Linear) and set(gemm_axes(module)) == {"weight"}


def _attr(module: object, path: str) -> Any:
    """``module``'s attribute at the dotted ``path``, or None where a step is missing."""
    for part in path.split("."):
        module = getattr(module, part, None)
    return module


def _is_gemm(module: nn.Module) -> bool:
    """A layer whose weight maps input channels to output channels: Linear, Conv1d/2d/3d, GPT-2 Conv1D."""
    axes = gemm_axes(module)
    return set(axes) == {"weight"} and not isinstance(module, nn.MultiheadAttention)


# ---- explicit rules for transformers blocks that torch.fx cannot trace ----------------------


def _gated_mlp(
    name: str, module: nn.Module, gate: str = "gate_proj", up: str = "up_proj", down: str = "down_proj", act: str | None = "act_fn"
) -> _Group | str:
    """``down(act(gate(x)) * up(x))``: the Llama, Mistral, Qwen2/3 and Gemma 1-3 MLPs (gate_proj, up_proj, down_proj,
    act_fn) and T5's gated feed-forward (wi_0, wi_1, wo, act); ``act=None`` for a class whose forward calls an
    elementwise function itself (LFM2's ``F.silu``). The names may be dotted paths (CPM-Ant's ``w_in.w_0``)."""
    gate_layer, up_layer, down_layer = (_attr(module, attr) for attr in (gate, up, down))
    if not all(_is_linear(m) for m in (gate_layer, up_layer, down_layer)):
        return f"{gate}, {up} and {down} are not all nn.Linear"
    if act is not None and (refused := _not_elementwise(module, act)) is not None:
        return refused
    width = gate_layer.out_features
    if up_layer.out_features != width or down_layer.in_features != width:
        return f"{gate}/{up} outputs ({gate_layer.out_features}, {up_layer.out_features}) and {down} input ({down_layer.in_features}) differ"
    members = _producer(qualified(name, gate), gate_layer, width) + _producer(qualified(name, up), up_layer, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, down), down_layer, width))


def _fused_experts(name: str, module: nn.Module) -> _Group | str:
    """A transformers fused mixture-of-experts module: per expert ``e``, ``down_proj[e] @ act(gate) * up`` with
    ``gate, up`` the two halves of ``gate_up_proj[e] @ x`` (``act(up_proj[e] @ x)`` without a gate; Llama 4's
    experts too; a class's own ``_apply_gate`` where :func:`_gate_channelwise` finds it channel by channel,
    as DeepSeek-V4's clamped SwiGLU). Every expert is its own gated MLP: one permutation of the intermediate channels per expert, of
    its gate and up rows (and biases) and its ``down_proj`` columns. The tensors and their dims come from
    :func:`sparse24.axes.gemm_axes` (the output dim of the up projection, the reduction dim of ``down_proj``)."""
    axes = gemm_axes(module)
    up_name = "gate_up_proj" if "gate_up_proj" in axes else "up_proj"
    if set(axes) != {up_name, "down_proj"}:
        return f"its GEMM weights are {sorted(axes)}, not an up projection and down_proj"
    gated, own_gate = up_name == "gate_up_proj", False
    if not is_llama4_experts(module):
        if getattr(module, "is_concatenated", True) is not True:
            return "its gate and up rows are interleaved; only the concatenated [gate; up] layout has a rule"
        if getattr(module, "_is_expert_parallel", False):
            return "its experts are sharded across ranks (expert parallel)"
        if gated:
            from transformers.integrations.moe import _default_apply_gate

            own_gate = getattr(type(module), "_apply_gate", _default_apply_gate) is not _default_apply_gate
    if not own_gate and (refused := _not_elementwise(module, "act_fn")) is not None:
        return refused
    rows, cols = axes[up_name].output - 1, axes["down_proj"].reduction - 1  # the dims in one expert's slice
    up, down = getattr(module, up_name), module.down_proj
    width = down.shape[1 + cols]
    if up.shape[1 + rows] != (2 if gated else 1) * width:
        return f"{up_name} has {up.shape[1 + rows]} intermediate channels, down_proj reads {width}"
    why = _gate_channelwise(module, width, up) if own_gate else None
    if why:
        return why
    bias = getattr(module, f"{up_name}_bias", None) if getattr(module, "has_bias", False) else None
    members = _expert_mlps((name, module, up_name), (name, module, "down_proj"), rows, cols, width, up.shape[0], gated, f"{up_name}_bias" if isinstance(bias, Tensor) else None)
    return _Group(type(module).__name__, width, up.shape[0], members)


def _expert_mlps(
    up: tuple[str, nn.Module, str], down: tuple[str, nn.Module, str], rows: int, cols: int, width: int, experts: int, gated: bool, bias: str | None = None,
) -> list[_Member]:
    """Stacked experts, each its own MLP with its own order of its ``width`` intermediate channels: expert e's rows of
    ``up`` (``(module name, module, tensor)``; both halves where ``gated``, and its ``bias`` tensor's) -> its columns
    of ``down``. ``rows`` and ``cols``: the dims in one expert's slice."""
    members = []
    for e in range(experts):
        which = torch.tensor([e])
        for offset in (0, width) if gated else (0,):
            members.append(_Member(*up, rows, which, "producer", offset, expert=e))
            if bias is not None:
                members.append(_Member(up[0], up[1], bias, 0, which, "producer", offset, expert=e))
        members.append(_Member(*down, cols, which, "consumer", expert=e))
    return members


def _gate_channelwise(module: nn.Module, width: int, like: Tensor) -> str | None:
    """None where an experts class's own ``_apply_gate`` (the ``[gate; up]`` rows of ``gate_up_proj @ x`` in,
    ``width`` channels out) follows an order of the channels: on random rows at two scales (beyond the clamps
    such gates apply), both halves in one random order give the output in that order; else why not. Any
    per-channel gate (a clamp, a two-input activation, a float32 round trip) does; one that ties a channel to its
    position, or reads the rows interleaved, does not."""
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(width, generator=generator)
    rows = torch.randn(64, 2 * width, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 30.0], dtype=torch.float64).repeat_interleave(32)[:, None]
    rows = rows.to(like.device, like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32)
    reordered = torch.cat([rows[:, :width][:, order], rows[:, width:][:, order]], dim=1)
    reason = f"{type(module).__name__} gates with its own _apply_gate"
    try:
        with torch.no_grad():
            out, out_reordered = module._apply_gate(rows), module._apply_gate(reordered)
    except Exception as error:  # a gate that needs other inputs or shapes: no rule can vouch for it
        return f"{reason}, which fails on a probe of [gate; up] rows: {type(error).__name__}: {error}"
    if not (isinstance(out, Tensor) and out.shape == (64, width) and isinstance(out_reordered, Tensor) and out_reordered.shape == out.shape):
        return f"{reason}, which does not map [gate; up] rows of {2 * width} to {width} channels"
    if not torch.allclose(out[:, order], out_reordered, rtol=1e-5, atol=1e-5 * float(out.abs().max())):
        return f"{reason}, which does not act channel by channel on the [gate; up] halves (a probe in another order of the channels changed its output)"
    return None


def _c_fc_mlp(name: str, module: nn.Module) -> _Group | str:
    """c_proj(act(c_fc(x))): GPT-2's MLP (both transformers Conv1D, weight [in, out]) and StarCoder 1/2's (both nn.Linear)."""
    fc, proj, act = getattr(module, "c_fc", None), getattr(module, "c_proj", None), getattr(module, "act", None)
    if not (all(_transformers_class(m) == "Conv1D" for m in (fc, proj)) or all(_is_linear(m) for m in (fc, proj))):
        return "c_fc and c_proj are not both transformers Conv1D or both nn.Linear"
    if not _elementwise_activation(act):
        return f"act {getattr(act, '__name__', type(act).__name__)} is not a known elementwise activation"
    width = fc.weight.shape[gemm_axes(fc)["weight"].output]
    if proj.weight.shape[gemm_axes(proj)["weight"].reduction] != width:
        return "c_fc's outputs and c_proj's inputs differ in size"
    return _Group(type(module).__name__, width, 1, _producer(qualified(name, "c_fc"), fc, width) + _consumer(qualified(name, "c_proj"), proj, width))


def _bert_layer(
    name: str, module: nn.Module, family: str = "Bert", activation: str | None = "intermediate_act_fn", output_class: str | None = None,
    intermediate: str = "intermediate", output: str = "output",
) -> _Group | str:
    """BertLayer (and RoBERTa's, XLM-R's, ELECTRA's: ``family``): output.dense(intermediate.intermediate_act_fn(intermediate.dense(x))).
    A layer class whose code repeats another family's (CLAP's text layer, LayoutLM's code) is checked against its own
    ``{prefix}Intermediate``/``{prefix}Output`` where it has those.
    ``activation=None``: the intermediate's forward applies a fixed elementwise function itself (ESM's GELU);
    ``output_class``: the output's class where it is not ``{family}Output`` (MobileBERT's extra FFNs' FFNOutput);
    ``intermediate`` and ``output``: the two modules' names (the Q-Former's query feed-forward: intermediate_query, output_query)."""
    inter, out = getattr(module, intermediate, None), getattr(module, output, None)
    own = type(module).__name__.removesuffix("Layer")  # a class copied from another family's layer: its own names
    if output_class is None and (_transformers_class(inter), _transformers_class(out)) == (f"{own}Intermediate", f"{own}Output"):
        family = own
    output_class = output_class or f"{family}Output"
    if _transformers_class(inter) != f"{family}Intermediate" or _transformers_class(out) != output_class:
        return f"{intermediate}/{output} are not {family}Intermediate/{output_class}"
    dense_in, dense_out = getattr(inter, "dense", None), getattr(out, "dense", None)
    if not (_is_linear(dense_in) and _is_linear(dense_out)):
        return "intermediate.dense and output.dense are not nn.Linear"
    if activation is not None and not _elementwise_module(getattr(inter, activation, None)):
        return f"intermediate.{activation} {type(getattr(inter, activation, None)).__name__} is not a known elementwise activation"
    width = dense_in.out_features
    if dense_out.in_features != width:
        return "intermediate.dense outputs and output.dense inputs differ in size"
    members = _producer(qualified(name, f"{intermediate}.dense"), dense_in, width) + _consumer(qualified(name, f"{output}.dense"), dense_out, width)
    return _Group(type(module).__name__, width, 1, members)


def _channel_group_attention(name: str, module: nn.Module) -> str:
    """Florence-2's (DaViT's) channel attention: each group's channels attend to one another (the tokens are its
    channels), and its output reaches proj's inputs interleaved across the groups, which no run of channels can follow."""
    return "its attention runs over each group's channels, whose outputs reach proj interleaved across the groups: no run of channels follows them"


def _sam3_mask_decoder(name: str, module: nn.Module) -> str:
    """SAM 3's mask decoder: instance_projection and semantic_projection read its pixel decoder's output, which comes
    from whichever of conv_layers the number of feature levels passed reaches last (then a GroupNorm and a ReLU)."""
    return "instance_projection and semantic_projection read the pixel decoder's last conv, which depends on the number of feature levels passed"


def _sam3_geometry_encoder(name: str, module: nn.Module) -> str:
    """SAM 3's geometry encoder: final_proj reads the box prompts, each the sum of three projections and a label
    embedding, and a CLS embedding: its hidden channels are embedding columns too, which no rule moves."""
    return "final_proj reads box_direct/pool/pos_enc projections summed with label_embed's and cls_embed's rows: embedding columns no rule moves"


def _vibevoice_diffusion_head(name: str, module: nn.Module) -> list[_Group | str]:
    """VibeVoice's diffusion head: two streams of ``hidden_size`` channels that begin and end inside it.

    - The condition: cond_proj's rows and timestep_proj.fc2's rows (summed) -> through each AdaLN layer's elementwise
      act_fn -> the columns of every layer's ``linear`` and of final_layer.linear_1.
    - The hidden states: noisy_images_proj's rows; in each AdaLN layer the shift, scale and gate rows of ``linear``
      (three chunks), the RMS norm's weight (its mean square is the same in any order), the feed-forward's gate_proj
      and up_proj columns and down_proj's rows (added back); final_layer.linear_1's shift and scale rows (the final
      norm has no weight) -> final_layer.linear_2's columns."""
    width = getattr(getattr(module, "cond_proj", None), "out_features", None)
    layers, final = list(getattr(module, "layers", ())), getattr(module, "final_layer", None)
    parts = {f"layers.{i}.{part}": _attr(layer, part) for i, layer in enumerate(layers) for part in ("linear", "ffn.gate_proj", "ffn.up_proj", "ffn.down_proj")}
    parts |= {path: _attr(module, path) for path in ("cond_proj", "timestep_proj.fc2", "noisy_images_proj", "final_layer.linear_1", "final_layer.linear_2")}
    if not (isinstance(width, int) and layers and all(_is_linear(m) for m in parts.values())):
        return [f"cond_proj, timestep_proj.fc2, noisy_images_proj, each layer's linear and feed-forward and final_layer's linear_1 and linear_2 are not all nn.Linear"]
    chunks = {f"layers.{i}.linear": 3 for i in range(len(layers))} | {"final_layer.linear_1": 2}  # shift, scale (and gate) chunks
    if any(parts[path].out_features != n * width or parts[path].in_features != width for path, n in chunks.items()):
        return [f"each layer's linear and final_layer.linear_1 do not read {width} condition channels into chunks of {width}"]
    acts = [f"layers.{i}.act_fn" for i in range(len(layers))] + ["final_layer.act_fn"]
    bad = next((_not_elementwise(module, act) for act in acts if _not_elementwise(module, act)), None)
    if bad is not None or parts["timestep_proj.fc2"].out_features != width:
        return [bad or f"timestep_proj.fc2 does not make {width} condition channels"]
    condition = [m for path in ("cond_proj", "timestep_proj.fc2") for m in _producer(qualified(name, path), parts[path], width)]
    condition += [m for path in chunks for m in _consumer(qualified(name, path), parts[path], width)]
    found: list[_Group | str] = [_Group(type(module).__name__, width, 1, condition)]
    norms = [_attr(layer, "norm") for layer in layers]
    if not all(type(n).__name__.endswith("RMSNorm") and set(dict(n.named_parameters())) == {"weight"} and n.weight.shape == (width,) for n in norms):
        return [*found, f"the layers' norms are not RMS norms with a weight over {width} channels"]
    if parts["noisy_images_proj"].out_features != width or parts["final_layer.linear_2"].in_features != width:
        return [*found, f"noisy_images_proj and final_layer.linear_2 do not make and read {width} channels"]
    stream = _producer(qualified(name, "noisy_images_proj"), parts["noisy_images_proj"], width)
    for path, n in chunks.items():
        stream += _producer(qualified(name, path), parts[path], width, torch.zeros(n, dtype=torch.long))
    for i in range(len(layers)):
        stream += _per_channel(qualified(name, f"layers.{i}.norm"), norms[i], width) + _producer(qualified(name, f"layers.{i}.ffn.down_proj"), parts[f"layers.{i}.ffn.down_proj"], width)
        stream += [m for part in ("gate_proj", "up_proj") for m in _consumer(qualified(name, f"layers.{i}.ffn.{part}"), parts[f"layers.{i}.ffn.{part}"], width)]
    return [*found, _Group(type(module).__name__, width, 1, stream + _consumer(qualified(name, "final_layer.linear_2"), parts["final_layer.linear_2"], width))]


def _fsmn_attention(name: str, module: nn.Module) -> _Group | str:
    """FunASR-Nano's attention (SANM): Llama's value path; in the encoder's layers the values also pass through the
    FSMN memory block (a depthwise conv plus its input) and are added to o_proj's output, so there they are the
    layer's output channels and keep their order."""
    if getattr(module, "fsmn", None) is not None:
        return "the values are also added to the output through the FSMN memory block: they are the residual stream's channels"
    return _attention(name, module)


def _convbert_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """ConvBERT's mixed attention (``self``, then ``output.dense`` over ``cat(attention heads, span-conv heads)``, each
    ``num_attention_heads`` heads of ``attention_head_size``). Three groups, each head's channels in their own order:

    - the attention's values: value's rows -> output.dense's first half of columns;
    - the span-based dynamic convolution: conv_out_layer's rows, each channel convolved over the positions with its
      head's softmaxed kernel -> output.dense's second half of columns;
    - the queries: query's rows (dotted per head with key's rows, which move with them) times key_conv_attn_layer's
      (a separable conv: its pointwise rows and bias) -> conv_kernel_layer's columns, which make the kernels."""
    attention, dense = _attr(module, "self"), _attr(module, "output.dense")
    heads, size = getattr(attention, "num_attention_heads", None), getattr(attention, "attention_head_size", None)
    if not (isinstance(heads, int) and isinstance(size, int) and heads > 0 and size > 0):
        return ["self.num_attention_heads / self.attention_head_size missing"]
    width, blocks = heads * size, torch.arange(heads)
    layers = {path: _attr(attention, path) for path in ("query", "key", "value", "conv_out_layer", "conv_kernel_layer")}
    pointwise, separable = _attr(attention, "key_conv_attn_layer.pointwise"), _attr(attention, "key_conv_attn_layer")
    if not (all(_is_linear(m) for m in (*layers.values(), dense)) and all(layers[p].out_features == width for p in ("query", "key", "value", "conv_out_layer"))):
        return [f"self's query, key, value, conv_out_layer, conv_kernel_layer and output.dense are not nn.Linear of {heads} heads of {size}"]
    if dense.in_features != 2 * width or layers["conv_kernel_layer"].in_features != width:
        return [f"output.dense ({dense.in_features} inputs) and conv_kernel_layer ({layers['conv_kernel_layer'].in_features}) do not read 2 x {width} and {width} channels"]
    path = {part: qualified(name, f"self.{part}") for part in (*layers, "key_conv_attn_layer", "key_conv_attn_layer.pointwise")}
    found: list[_Group | str] = [
        _Group(type(module).__name__, size, heads, _producer(path["value"], layers["value"], size, blocks) + _consumer(qualified(name, "output.dense"), dense, size, blocks)),
        _Group(type(module).__name__, size, heads, _producer(path["conv_out_layer"], layers["conv_out_layer"], size, blocks) + _consumer(qualified(name, "output.dense"), dense, size, blocks, offset=width)),
    ]
    bias = getattr(separable, "bias", None)
    if not (isinstance(pointwise, nn.Conv1d) and pointwise.groups == 1 and pointwise.out_channels == width and isinstance(bias, Tensor) and bias.shape == (width, 1)):
        return [*found, f"key_conv_attn_layer is not a separable conv with a pointwise nn.Conv1d and a bias of {width} channels"]
    queries = [m for part in ("query", "key") for m in _producer(path[part], layers[part], size, blocks)]
    queries += _producer(path["key_conv_attn_layer.pointwise"], pointwise, size, blocks) + _per_channel(path["key_conv_attn_layer"], separable, size, blocks, attrs=("bias",))
    return [*found, _Group(type(module).__name__, size, heads, queries + _consumer(path["conv_kernel_layer"], layers["conv_kernel_layer"], size, blocks))]


def _hgnet_basic_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """HGNetV2's basic layer: ``layers`` run one after another and every output, with the input, is concatenated into
    the aggregation's squeeze conv. Each layer's output channels form a group: its conv layer's filters, BatchNorm,
    (elementwise) activation and scalar learnable affine block (:func:`_conv_norm_act`; a light layer,
    HGNetV2ConvLayerLight: its 1 x 1 conv1, then the depthwise conv2) -> the next layer's first conv's columns and the
    squeeze conv's columns of that layer's slice of the concatenation."""
    layers, squeeze = list(getattr(module, "layers", ())), _attr(module, "aggregation.0.convolution")
    if not (layers and isinstance(squeeze, nn.Conv2d) and squeeze.groups == 1):
        return ["aggregation.0.convolution is not an ungrouped nn.Conv2d after nn.ModuleList layers"]
    chains = []  # each layer's conv layers: (path, depthwise), the first one ungrouped
    for i, layer in enumerate(layers):
        light = _transformers_class(layer) == "HGNetV2ConvLayerLight"
        if not light and _transformers_class(layer) != "HGNetV2ConvLayer":
            return [f"layers.{i} is neither an HGNetV2ConvLayer nor an HGNetV2ConvLayerLight"]
        chains.append([(f"layers.{i}.conv1", False), (f"layers.{i}.conv2", True)] if light else [(f"layers.{i}", False)])
    width = getattr(_attr(module, f"{chains[0][0][0]}.convolution"), "out_channels", None)
    if not (isinstance(width, int) and squeeze.in_channels > len(layers) * width):
        return [f"the layers' convs and aggregation.0 ({squeeze.in_channels} inputs) do not fit {len(layers)} slices of the layers' channels"]
    start, found = squeeze.in_channels - len(layers) * width, []
    for i, chain in enumerate(chains):
        reason = next((r for path, depthwise in chain if (r := _conv_norm_act(module, path, width, depthwise))), None)
        if reason:
            found.append(reason)
            continue
        first = chain[0][0]
        members = _producer(qualified(name, f"{first}.convolution"), _attr(module, f"{first}.convolution"), width)
        members += [m for path, depthwise in chain for part in (("convolution", "normalization") if depthwise else ("normalization",))
                    for m in _per_channel(qualified(name, f"{path}.{part}"), _attr(module, f"{path}.{part}"), width)]
        if i + 1 < len(chains):
            members += _consumer(qualified(name, f"{chains[i + 1][0][0]}.convolution"), _attr(module, f"{chains[i + 1][0][0]}.convolution"), width)
        members += _consumer(qualified(name, "aggregation.0.convolution"), squeeze, width, torch.zeros(1, dtype=torch.long), offset=start + i * width)
        found.append(_Group(type(module).__name__, width, 1, members))
    return found


def _conv_norm_act(module: nn.Module, path: str, width: int, depthwise: bool) -> str | None:
    """Why the conv layer at ``path`` (PP-LCNet's and HGNetV2's ConvLayer: ``convolution`` -> BatchNorm2d ``normalization`` ->
    elementwise ``activation``, and V4's scalar affine ``lab``) does not act on each of its ``width`` output channels
    alone after its convolution (``depthwise``: the convolution too); None where it does."""
    conv, norm, lab = (_attr(module, f"{path}.{part}") for part in ("convolution", "normalization", "lab"))
    if not (isinstance(conv, nn.Conv2d) and conv.out_channels == width and (_is_depthwise(conv, width) if depthwise else conv.groups == 1)):
        return f"{path}.convolution is not {'a depthwise' if depthwise else 'an ungrouped'} nn.Conv2d of {width} channels"
    if not _batch_norm_2d(norm, width):
        return f"{path}.normalization is not a BatchNorm2d (or a frozen one) of its {width} channels"
    if lab is not None and not isinstance(lab, nn.Identity) and not (_transformers_class(lab) or "").endswith("LearnableAffineBlock"):
        return f"{path}.lab is not a scalar learnable affine block"
    return _not_elementwise(module, f"{path}.activation")


def _uvdoc_residual_block(name: str, module: nn.Module) -> _Group | str:
    """UVDoc's residual block: conv_start (a conv layer: convolution -> BatchNorm2d -> activation, as PP-LCNet's) ->
    conv_final: conv_start's filters, bias and BatchNorm -> conv_final's columns (the sum with conv_down reads the
    stream)."""
    conv, reader = _attr(module, "conv_start.convolution"), _attr(module, "conv_final.convolution")
    width = getattr(conv, "out_channels", None)
    if not (isinstance(width, int) and isinstance(reader, nn.Conv2d) and reader.groups == 1 and reader.in_channels == width):
        return "conv_start and conv_final are not convolutions of the same channels"
    if (refused := _conv_norm_act(module, "conv_start", width, depthwise=False)) is not None:
        return refused
    members = _producer(qualified(name, "conv_start.convolution"), conv, width) + _per_channel(qualified(name, "conv_start.normalization"), module.conv_start.normalization, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "conv_final.convolution"), reader, width))


def _pp_lcnet_block(name: str, module: nn.Module) -> list[_Group | str]:
    """PP-LCNet's block: depthwise-separable layers one after another (no residual). Between two of them, the channels of
    layer k's pointwise conv (its filters, BatchNorm and activation), then of layer k+1's depthwise conv (filters,
    BatchNorm, activation) and squeeze-excitation (its channel scales: conv 0's columns read them pooled, conv 2's
    rows and bias make them) -> layer k+1's pointwise conv's columns. The block's output keeps its order (a
    backbone returns it)."""
    layers = list(getattr(module, "layers", ()))
    found: list[_Group | str] = []
    for k in range(len(layers) - 1):
        out, here = f"layers.{k}.pointwise_convolution", f"layers.{k + 1}"
        conv, reader = _attr(module, f"{out}.convolution"), _attr(module, f"{here}.pointwise_convolution.convolution")
        width = getattr(conv, "out_channels", None)
        if any((_transformers_class(_attr(module, path)) or "").endswith("LearnableRepLayer") for path in (out, f"{here}.depthwise_convolution", f"{here}.pointwise_convolution")):
            found.append(f"{out} or {here}'s convs are reparameterisable layers (conv branches summed, with an identity BatchNorm): no rule")
            continue
        if not (isinstance(width, int) and isinstance(reader, nn.Conv2d) and reader.groups == 1 and reader.in_channels == width):
            found.append(f"{out} and {here}.pointwise_convolution are not convolutions of the same channels")
            continue
        reason = _conv_norm_act(module, out, width, depthwise=False) or _conv_norm_act(module, f"{here}.depthwise_convolution", width, depthwise=True)
        se = _attr(module, f"{here}.squeeze_excitation_module")
        squeeze, excite = _attr(se, "convolutions.0"), _attr(se, "convolutions.2")
        if not (reason or isinstance(se, nn.Identity) or (isinstance(squeeze, nn.Conv2d) and isinstance(excite, nn.Conv2d) and squeeze.in_channels == excite.out_channels == width)):
            reason = f"{here}.squeeze_excitation_module does not read and scale the {width} channels"
        if reason:
            found.append(reason)
            continue
        members = _producer(qualified(name, f"{out}.convolution"), conv, width) + _per_channel(qualified(name, f"{out}.normalization"), _attr(module, f"{out}.normalization"), width)
        members += [m for part in ("convolution", "normalization") for m in _per_channel(qualified(name, f"{here}.depthwise_convolution.{part}"), _attr(module, f"{here}.depthwise_convolution.{part}"), width)]
        if not isinstance(se, nn.Identity):
            members += _consumer(qualified(name, f"{here}.squeeze_excitation_module.convolutions.0"), squeeze, width)
            members += _producer(qualified(name, f"{here}.squeeze_excitation_module.convolutions.2"), excite, width)
        found.append(_Group(type(module).__name__, width, 1, members + _consumer(qualified(name, f"{here}.pointwise_convolution.convolution"), reader, width)))
    return found


def _pp_lcnet_classifier(name: str, module: nn.Module) -> _Group | str:
    """PP-LCNet's classifier: the pooled features through ``last_convolution`` (1 x 1), its elementwise ``act_fn`` and a
    constant scale, flattened (one position) -> ``head``: last_convolution's filters -> head's columns."""
    conv, head = getattr(module, "last_convolution", None), getattr(module, "head", None)
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.kernel_size == (1, 1) and _is_linear(head) and head.in_features == conv.out_channels):
        return "last_convolution is not a 1 x 1 nn.Conv2d read by an nn.Linear head"
    reason = _not_elementwise(module, "act_fn")
    if reason:
        return reason
    width = conv.out_channels
    return _Group(type(module).__name__, width, 1, _producer(qualified(name, "last_convolution"), conv, width) + _consumer(qualified(name, "head"), head, width))


def _pp_lcnet_v4_layer(name: str, module: nn.Module) -> _Group | str:
    """PP-LCNet V4's depthwise-separable layer: its channel MLP ``channel_conv2(gelu(channel_conv1(x)))`` (1 x 1 conv
    layers with BatchNorm, no activation of their own): channel_conv1's filters and BatchNorm -> channel_conv2's
    columns. Its token conv and the residual read and write the stream."""
    first, second = _attr(module, "channel_conv1.convolution"), _attr(module, "channel_conv2.convolution")
    width = getattr(first, "out_channels", None)
    if not (isinstance(width, int) and isinstance(second, nn.Conv2d) and second.groups == 1 and second.in_channels == width):
        return "channel_conv1 and channel_conv2 are not convolutions of the same channels"
    reason = _conv_norm_act(module, "channel_conv1", width, depthwise=False) or _not_elementwise(module, "channel_act_fn")
    if reason:
        return reason
    members = _producer(qualified(name, "channel_conv1.convolution"), first, width) + _per_channel(qualified(name, "channel_conv1.normalization"), _attr(module, "channel_conv1.normalization"), width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "channel_conv2.convolution"), second, width))


def _phi4_audio_convolution(name: str, module: nn.Module) -> list[_Group | str]:
    """Phi-4-multimodal's audio conv module: ``ext_pw_conv_1d(act(pw_conv(dw_conv(glu(x)))))``. Two groups:

    - the GLU's channels: both halves of glu.ext_pw_conv_1d's rows (``(a + b1) * act(b + b2)``) with their biases
      b1 and b2 (``[1, channels, 1]``), the depthwise dw_conv's filters -> pw_conv's columns;
    - pw_conv's rows -> the elementwise act -> ext_pw_conv_1d's columns."""
    glu, dw, pw, out = (_attr(module, path) for path in ("glu.ext_pw_conv_1d", "dw_sep_conv_1d.dw_conv", "dw_sep_conv_1d.pw_conv", "ext_pw_conv_1d"))
    if not all(isinstance(m, nn.Conv1d) for m in (glu, dw, pw, out)) or any(m.groups != 1 for m in (glu, pw, out)):
        return ["glu.ext_pw_conv_1d, dw_sep_conv_1d's convs and ext_pw_conv_1d are not nn.Conv1d (dw_conv depthwise, the others ungrouped)"]
    width, inner = dw.in_channels, pw.out_channels
    found: list[_Group | str] = []
    b1, b2 = (_attr(module, f"glu.{b}") for b in ("b1", "b2"))
    if not (glu.out_channels == 2 * width and _is_depthwise(dw, width) and pw.in_channels == width):
        found.append(f"glu's {glu.out_channels} outputs, dw_conv and pw_conv do not fit a GLU of {width} channels each with one depthwise filter")
    elif not all(isinstance(b, Tensor) and b.shape == (1, width, 1) for b in (b1, b2)) or _not_elementwise(module, "glu.glu_act"):
        found.append(_not_elementwise(module, "glu.glu_act") or f"glu's b1 and b2 are not a bias per channel of the {width}")
    else:
        one = _uniform(width, width)
        members = _halves(qualified(name, "glu.ext_pw_conv_1d"), glu, width) + [_Member(qualified(name, "glu"), _attr(module, "glu"), b, 1, one, "per-channel", 0) for b in ("b1", "b2")]
        members += _per_channel(qualified(name, "dw_sep_conv_1d.dw_conv"), dw, width) + _consumer(qualified(name, "dw_sep_conv_1d.pw_conv"), pw, width)
        found.append(_Group(type(module).__name__, width, 1, members))
    if out.in_channels != inner or _not_elementwise(module, "act"):
        return [*found, _not_elementwise(module, "act") or f"ext_pw_conv_1d does not read pw_conv's {inner} channels"]
    return [*found, _Group(type(module).__name__, inner, 1, _producer(qualified(name, "dw_sep_conv_1d.pw_conv"), pw, inner) + _consumer(qualified(name, "ext_pw_conv_1d"), out, inner))]


def _phi4_audio_projections(name: str, module: nn.Module) -> list[_Group | str]:
    """Phi-4-multimodal's audio embedding: the encoder's output through ``down_proj_for_<mode>(gelu(up_proj_for_<mode>(x)))``,
    speech or vision-speech: one group each (the gelu fixed in the forward)."""
    return [_two_layer_mlp(name, module, f"up_proj_for_{mode}", f"down_proj_for_{mode}", None) for mode in ("speech", "vision_speech")]


def _snake_unit(name: str, module: nn.Module) -> _Group | str:
    """DAC's residual unit ``conv2(snake2(conv1(snake1(x)))) + x``: conv1's filters and bias, through the Snake
    activation ``x + sin(alpha x)^2 / alpha`` with one alpha per channel (``[1, channels, 1]``), -> conv2's columns."""
    conv1, conv2, snake = getattr(module, "conv1", None), getattr(module, "conv2", None), getattr(module, "snake2", None)
    if not all(isinstance(c, nn.Conv1d) and c.groups == 1 for c in (conv1, conv2)) or conv2.in_channels != conv1.out_channels:
        return "conv1 and conv2 are not ungrouped nn.Conv1d over one set of channels"
    width, alpha = conv1.out_channels, getattr(snake, "alpha", None)
    if not (isinstance(alpha, Tensor) and alpha.shape == (1, width, 1) and set(dict(snake.named_parameters())) == {"alpha"}):
        return f"snake2 has no alpha per channel of the {width}"
    members = _producer(qualified(name, "conv1"), conv1, width) + [_Member(qualified(name, "snake2"), snake, "alpha", 1, _uniform(width, width), "per-channel")]
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "conv2"), conv2, width))


def _returned_latents(name: str, module: nn.Module) -> str:
    """DAC's vector quantizer: in_proj's latents are looked up in the codebook (its columns could move with them) but
    are also returned as the model's projected_latents, so they keep their order."""
    return "in_proj's latents are returned (projected_latents) and read by the codebook lookup: they keep their order"


def _univnet_kernel_predictor(name: str, module: nn.Module) -> _Group | str:
    """UnivNet's kernel predictor: input_conv -> leaky ReLU -> residual blocks (each adds leaky_relu(conv2(...)) to
    the stream) -> kernel_conv and bias_conv: one stream, input_conv's and every block's conv2's rows -> every block's
    conv1's and kernel_conv's and bias_conv's columns (each block's conv1 -> conv2 is the block's own group)."""
    blocks = list(getattr(module, "resblocks", ()))
    convs = ["input_conv", "kernel_conv", "bias_conv", *(f"resblocks.{i}.{conv}" for i in range(len(blocks)) for conv in ("conv1", "conv2"))]
    if not all(_is_plain_conv1d(_attr(module, path)) for path in convs):
        return f"{', '.join(convs[:3])} and the residual blocks' conv1 and conv2 are not all ungrouped Conv1d"
    width = module.input_conv.out_channels
    members = _producer(qualified(name, "input_conv"), module.input_conv, width)
    for i, block in enumerate(blocks):
        members += _consumer(qualified(name, f"resblocks.{i}.conv1"), block.conv1, width) + _producer(qualified(name, f"resblocks.{i}.conv2"), block.conv2, width)
    members += _consumer(qualified(name, "kernel_conv"), module.kernel_conv, width) + _consumer(qualified(name, "bias_conv"), module.bias_conv, width)
    return _Group(type(module).__name__, width, 1, members)


def _clvp_attention(name: str, module: nn.Module) -> _Group | str:
    """CLVP's attention: in its decoder the values are BART's (v_proj -> out_proj per head). Its encoders rotate the
    first ``rotary`` channels of each head's values too, as the queries and keys (the encoder's rotary embedding, built
    from the same config, gives that width): those keep their order (a rotary pair's angle is its channel's), and each
    head's remaining value channels take their own order, v_proj's rows -> out_proj's columns."""
    if not getattr(getattr(module, "config", None), "use_rotary_embedding", False):
        return _OUT_PROJ_ATTENTION(name, module)
    from transformers.models.clvp.modeling_clvp import ClvpRotaryPositionalEmbedding

    v, out, heads, size = _attr(module, "v_proj"), _attr(module, "out_proj"), module.num_heads, module.head_dim
    if not (_is_linear(v) and _is_linear(out) and v.out_features == out.in_features == heads * size):
        return f"v_proj and out_proj are not nn.Linear over {heads} heads of {size}"
    rotary = 2 * ClvpRotaryPositionalEmbedding(module.config).inv_freq.numel()
    if rotary >= size:
        return f"the rotary embedding's {rotary} channels cover all {size} value channels of a head: none is free to move"
    members = []
    for h in range(heads):
        one, offset = torch.tensor([h]), h * size + rotary
        members += _producer(qualified(name, "v_proj"), v, size - rotary, one, offset=offset) + _consumer(qualified(name, "out_proj"), out, size - rotary, one, offset=offset)
    return _Group(type(module).__name__, size - rotary, heads, members)


def _clvp_encoder_mlp(name: str, module: nn.Module) -> _Group | str:
    """CLVP's encoder MLP: fc1 (a gated linear unit) splits proj's rows into values and gates, values * act(gates) ->
    fc2: both halves' rows in one order -> fc2's columns."""
    proj, fc2 = _attr(module, "fc1.proj"), _attr(module, "fc2")
    if not (_is_linear(proj) and _is_linear(fc2) and proj.out_features == 2 * fc2.in_features):
        return "fc1.proj and fc2 are not nn.Linear of twice and once the intermediate channels"
    if (refused := _not_elementwise(module, "fc1.activation_fn")) is not None:
        return refused
    width = fc2.in_features
    return _Group(type(module).__name__, width, 1, _halves(qualified(name, "fc1.proj"), proj, width) + _consumer(qualified(name, "fc2"), fc2, width))


def _oneformer_decoder(name: str, module: nn.Module) -> str:
    """OneFormer's transformer decoder: class_embed reads the normed queries; query_input_projection's outputs are the
    query transformer's memory, which each of its layers' nn.MultiheadAttention reads as keys and values through one
    in_proj_weight, whose columns the queries share: they keep their order."""
    return "query_input_projection's outputs are the query transformer's memory, read through each layer's in_proj_weight, whose columns the queries share: they keep their order"


def _superpoint_encoder(name: str, module: nn.Module) -> list[_Group | str]:
    """SuperPoint's encoder: conv blocks one after another, each conv_a -> ReLU -> conv_b -> ReLU (-> max pooling, per
    channel): block k's conv_b rows -> block k+1's conv_a columns. The last block's output is the encoder's
    last_hidden_state, read by both decoders: it keeps its order (each block's conv_a -> conv_b is its own group)."""
    blocks = list(getattr(module, "conv_blocks", ()))
    pairs = [(f"conv_blocks.{k}.conv_b", f"conv_blocks.{k + 1}.conv_a") for k in range(len(blocks) - 1)]
    return [_two_layer_mlp(name, module, first=first, second=second, activation=None) for first, second in pairs]


def _dot_product_only(name: str, module: nn.Module) -> str:
    """LightGlue's match assignment: final_projection's outputs meet the other image's in a dot product (both in one
    order, whatever it is), no layer's input."""
    return "final_projection's outputs meet each other in a dot product, no layer's input"


def _mra_attention(name: str, module: nn.Module) -> str:
    """MRA's attention: its values go through mra2_attention, a CUDA kernel (kernels-community/mra; without it the
    attention returns zeros), which no check here can run: they keep their order."""
    return "its values go through mra2_attention's CUDA kernel (kernels-community/mra), which no check here runs: they keep their order"


def _vits_attention(name: str, module: nn.Module) -> _Group | str:
    """VITS's (MMS-TTS's) text encoder attention: with a window, emb_rel_v ``[1, 2 * window + 1, head_dim]`` adds to
    every head's output channel by channel, so the values take one order of head_dim channels for every head: v_proj's
    rows, out_proj's columns and emb_rel_v's channels (the queries and keys, with emb_rel_k, keep theirs)."""
    group = _OUT_PROJ_ATTENTION(name, module)
    if isinstance(group, str) or not getattr(module, "window_size", None):
        return group
    if module.emb_rel_v.shape[-1] != group.block:
        return f"emb_rel_v's {module.emb_rel_v.shape[-1]} channels are not a head's {group.block}"
    members = [replace(m, blocks=torch.zeros_like(m.blocks)) for m in group.members]
    members.append(_Member(name, module, "emb_rel_v", 2, torch.zeros(1, dtype=torch.long), "per-channel"))
    return _Group(group.kind, group.block, 1, members)


def _is_plain_conv1d(module: object) -> bool:
    return isinstance(module, nn.Conv1d) and module.groups == 1


def _normed_conv_chain(name: str, module: nn.Module, steps: Sequence[tuple[str, str, str]], act: str | None = None) -> list[_Group | str]:
    """For each ``(conv, norm, next)`` of ``steps``: conv -> ReLU -> a LayerNorm over the channels -> next (an ungrouped
    Conv1d, or an nn.Linear over the channels): the conv's rows and the norm -> next's columns. The ReLU is the
    forward's own, or ``act`` (checked elementwise). VITS's duration predictor (conv_1, norm_1, conv_2, norm_2, proj),
    SeamlessM4T's variance predictors (conv1, ln1, conv2, ln2, proj)."""
    if act is not None and (refused := _not_elementwise(module, act)) is not None:
        return [refused]
    groups: list[_Group | str] = []
    for first, norm, second in steps:
        up, layer_norm, down = (_attr(module, attr) for attr in (first, norm, second))
        if not (_is_plain_conv1d(up) and (_is_plain_conv1d(down) or _is_linear(down)) and type(layer_norm) is nn.LayerNorm):
            groups.append(f"{first}, {norm} and {second} are not an ungrouped Conv1d, an nn.LayerNorm and an ungrouped Conv1d or nn.Linear")
            continue
        width = up.out_channels
        if layer_norm.normalized_shape != (width,) or down.weight.shape[gemm_axes(down)["weight"].reduction] != width:
            groups.append(f"{first}'s {width} outputs are not {norm}'s and {second}'s channels")
            continue
        members = _producer(qualified(name, first), up, width) + _per_channel(qualified(name, norm), layer_norm, width) + _consumer(qualified(name, second), down, width)
        groups.append(_Group(type(module).__name__, width, 1, members))
    return groups


def _vits_wavenet(name: str, module: nn.Module) -> list[_Group | str]:
    """VITS's WaveNet, layer by layer: in_layers[i] gives a tanh half and a sigmoid half of hidden_size channels each
    (cond_layer's rows for layer i added, where a speaker embedding conditions it), whose product res_skip_layers[i]
    reads: both halves' rows in one order -> res_skip_layers[i]'s columns. Its input, residual stream and skip sum are
    its parent's groups (:func:`_vits_wavenet_streams`). Its convs are weight-normed as built: remove the norm first."""
    hidden, cond = module.hidden_size, getattr(module, "cond_layer", None)
    groups: list[_Group | str] = []
    for i, (gated, res_skip) in enumerate(zip(module.in_layers, module.res_skip_layers)):
        if not (_is_plain_conv1d(gated) and _is_plain_conv1d(res_skip) and gated.out_channels == 2 * hidden and res_skip.in_channels == hidden):
            groups.append(f"in_layers.{i} and res_skip_layers.{i} are not ungrouped Conv1d of {2 * hidden} outputs and {hidden} inputs")
            continue
        members = _halves(qualified(name, f"in_layers.{i}"), gated, hidden)
        if _is_plain_conv1d(cond):  # layer i's tanh and sigmoid rows of it
            one = torch.zeros(1, dtype=torch.long)
            members += [m for offset in (2 * i * hidden, (2 * i + 1) * hidden) for m in _producer(qualified(name, "cond_layer"), cond, hidden, one, offset=offset)]
        groups.append(_Group(type(module).__name__, hidden, 1, members + _consumer(qualified(name, f"res_skip_layers.{i}"), res_skip, hidden)))
    return groups


def _vits_wavenet_streams(name: str, module: nn.Module, post: str) -> list[_Group | str]:
    """A VITS WaveNet between two 1 x 1 convs (the posterior encoder's conv_pre -> wavenet -> conv_proj, a coupling
    layer's conv_pre -> wavenet -> conv_post): two streams of hidden_size channels. The residual stream: conv_pre's rows
    and every layer's but the last's residual rows of res_skip_layers (their first half) -> every in_layers' columns.
    The skip sum: every layer's skip rows (the second half; the last layer's, all) -> ``post``'s columns."""
    pre, net, out = _attr(module, "conv_pre"), _attr(module, "wavenet"), _attr(module, post)
    if _transformers_class(net) != "VitsWaveNet" or not (_is_plain_conv1d(pre) and _is_plain_conv1d(out)):
        return f"conv_pre and {post} are not ungrouped Conv1d around a VitsWaveNet"
    hidden, last, one = net.hidden_size, net.num_layers - 1, torch.zeros(1, dtype=torch.long)
    if not all(_is_plain_conv1d(conv) for conv in (*net.in_layers, *net.res_skip_layers)):
        return "the WaveNet's in_layers and res_skip_layers are not all ungrouped Conv1d"
    residual, skip = _producer(qualified(name, "conv_pre"), pre, hidden), []
    for i, (gated, res_skip) in enumerate(zip(net.in_layers, net.res_skip_layers)):
        path = qualified(name, f"wavenet.res_skip_layers.{i}")
        residual += _consumer(qualified(name, f"wavenet.in_layers.{i}"), gated, hidden)
        if i < last:
            residual += _producer(path, res_skip, hidden, one)
            skip += _producer(path, res_skip, hidden, one, offset=hidden)
        else:
            skip += _producer(path, res_skip, hidden)
    kind = type(module).__name__
    return [_Group(kind, hidden, 1, residual), _Group(kind, hidden, 1, skip + _consumer(qualified(name, post), out, hidden))]


def _vits_dds_stream(name: str, dds: nn.Module, width: int) -> list[_Member] | str:
    """The stream members of a VitsDilatedDepthSeparableConv of ``width`` channels: each layer's depthwise dilated conv,
    norms_1, pointwise conv (its columns read the stream, its rows add to it) and norms_2."""
    if _transformers_class(dds) != "VitsDilatedDepthSeparableConv":
        return f"{name} is not a VitsDilatedDepthSeparableConv"
    members = []
    for i in range(dds.num_layers):
        dilated, pointwise, norm_1, norm_2 = dds.convs_dilated[i], dds.convs_pointwise[i], dds.norms_1[i], dds.norms_2[i]
        if not (_is_depthwise(dilated, width) and _is_plain_conv1d(pointwise) and type(norm_1) is type(norm_2) is nn.LayerNorm):
            return f"{name}'s layer {i} is not a depthwise conv, a LayerNorm, an ungrouped Conv1d and a LayerNorm over {width} channels"
        members += _per_channel(qualified(name, f"convs_dilated.{i}"), dilated, width) + _per_channel(qualified(name, f"norms_1.{i}"), norm_1, width)
        members += _consumer(qualified(name, f"convs_pointwise.{i}"), pointwise, width) + _producer(qualified(name, f"convs_pointwise.{i}"), pointwise, width)
        members += _per_channel(qualified(name, f"norms_2.{i}"), norm_2, width)
    return members


def _vits_stochastic_duration_predictor(name: str, module: nn.Module) -> list[_Group | str]:
    """VITS's stochastic duration predictor: streams of hidden_size channels through dilated depth-separable convs
    (:func:`_vits_dds_stream`). conv_pre's rows (and cond's, with a speaker embedding) -> conv_dds -> conv_proj's
    columns; post_conv_pre's rows -> post_conv_dds -> post_conv_proj's columns (training only); and conv_proj's and
    post_conv_proj's rows, the conditioning every flow adds to its own stream: each VitsConvFlow's conv_pre rows -> its
    conv_dds -> its conv_proj's columns, one order for all of them."""
    convs = ("conv_pre", "conv_proj", "post_conv_pre", "post_conv_proj")
    if not all(_is_plain_conv1d(_attr(module, conv)) for conv in convs):
        return [f"{', '.join(convs)} are not all ungrouped Conv1d"]
    width, kind = module.conv_pre.out_channels, type(module).__name__
    groups: list[_Group | str] = []
    for prefix in ("", "post_"):
        stream = _vits_dds_stream(qualified(name, f"{prefix}conv_dds"), _attr(module, f"{prefix}conv_dds"), width)
        if isinstance(stream, str):
            groups.append(stream)
            continue
        members = _producer(qualified(name, f"{prefix}conv_pre"), _attr(module, f"{prefix}conv_pre"), width) + stream
        if not prefix and _is_plain_conv1d(getattr(module, "cond", None)):
            members += _producer(qualified(name, "cond"), module.cond, width)
        groups.append(_Group(kind, width, 1, members + _consumer(qualified(name, f"{prefix}conv_proj"), _attr(module, f"{prefix}conv_proj"), width)))
    conditioning = _producer(qualified(name, "conv_proj"), module.conv_proj, width) + _producer(qualified(name, "post_conv_proj"), module.post_conv_proj, width)
    for flows in ("flows", "post_flows"):
        for i, flow in enumerate(_attr(module, flows)):
            if _transformers_class(flow) == "VitsElementwiseAffine":  # the 2 latent channels: no hidden ones
                continue
            path = qualified(name, f"{flows}.{i}")
            stream = _vits_dds_stream(qualified(path, "conv_dds"), getattr(flow, "conv_dds", None), width)
            if _transformers_class(flow) != "VitsConvFlow" or isinstance(stream, str) or not (_is_plain_conv1d(flow.conv_pre) and _is_plain_conv1d(flow.conv_proj)):
                return [*groups, f"{path} is not a VitsConvFlow of ungrouped Conv1d around {width}-channel depth-separable convs: the flows' conditioning stays"]
            conditioning += _producer(qualified(path, "conv_pre"), flow.conv_pre, width) + stream + _consumer(qualified(path, "conv_proj"), flow.conv_proj, width)
    return [*groups, _Group(kind, width, 1, conditioning)]


def _hifigan_residual_block(name: str, module: nn.Module) -> list[_Group | str]:
    """HiFi-GAN's residual block: for each pair, ``conv2(leaky_relu(conv1(leaky_relu(x)))) + x``: convs1[i]'s filters
    and bias -> convs2[i]'s columns (the leaky ReLU fixed in the forward), one group per pair."""
    pairs = len(getattr(module, "convs1", ()))
    if pairs == 0 or pairs != len(getattr(module, "convs2", ())):
        return ["convs1 and convs2 are not nn.ModuleList of as many convolutions"]
    return [_two_layer_mlp(name, module, f"convs1.{i}", f"convs2.{i}", None) for i in range(pairs)]


def _seanet_block(name: str, module: nn.Module) -> list[_Group | str]:
    """EnCodec's SEANet residual block: ``block`` alternates an elementwise activation (ELU) and an EncodecConv1d
    (zero or reflect padding per channel, a conv, and with time_group_norm a GroupNorm of one group: statistics over
    all the channels, weight and bias per channel): each conv's channels -> the next conv's columns. With weight norm
    (EnCodec's default) the group stays, as any parametrized weight does."""
    block = list(getattr(module, "block", ()))
    convs = [i for i, layer in enumerate(block) if isinstance(getattr(layer, "conv", None), nn.Conv1d)]
    if not convs or any(not _elementwise_module(block[i]) for i in range(len(block)) if i not in convs):
        return ["block is not elementwise activations and EncodecConv1d layers"]
    found: list[_Group | str] = []
    for a, b in zip(convs, convs[1:]):
        up, down = block[a].conv, block[b].conv
        width = up.out_channels
        if not (up.groups == down.groups == 1 and down.in_channels == width):
            found.append(f"block.{a}.conv and block.{b}.conv are not ungrouped convolutions over one set of channels")
            continue
        members = _producer(qualified(name, f"block.{a}.conv"), up, width)
        norm = getattr(block[a], "norm", None)
        if norm is not None:
            if not (isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.num_channels == width):
                found.append(f"block.{a}.norm is not a GroupNorm of one group over its {width} channels")
                continue
            members += _per_channel(qualified(name, f"block.{a}.norm"), norm, width)
        found.append(_Group(type(module).__name__, width, 1, members + _consumer(qualified(name, f"block.{b}.conv"), down, width)))
    return found


def _group_norm_resnet_block(name: str, module: nn.Module, activation: str | None = "activation2") -> _Group | str:
    """A ResNet block ``conv2(act(norm2(conv1(act(norm1(x)))))) + x`` (Xcodec2's and NeuCodec's, Conv1d; the VQ-VAE
    tokenizers' of Janus, Chameleon and Apertus 1.5, Conv2d with the forward's own swish: ``activation`` None): conv1's
    channels through norm2, a GroupNorm whose statistics run over each group of channels, so each group keeps its
    channels and takes its own order: conv1's filters and bias, norm2's weight and bias -> conv2's columns, per group."""
    conv1, conv2, norm = getattr(module, "conv1", None), getattr(module, "conv2", None), getattr(module, "norm2", None)
    if not (all(isinstance(c, (nn.Conv1d, nn.Conv2d)) and c.groups == 1 for c in (conv1, conv2)) and conv2.in_channels == conv1.out_channels):
        return "conv1 and conv2 are not ungrouped nn.Conv1d or nn.Conv2d over one set of channels"
    width = conv1.out_channels
    if not (isinstance(norm, nn.GroupNorm) and norm.num_channels == width and norm.affine):
        return f"norm2 is not an affine GroupNorm over the {width} channels"
    reason = _not_elementwise(module, activation) if activation is not None else None
    if reason:
        return reason
    size, groups = width // norm.num_groups, torch.arange(norm.num_groups)
    members = _producer(qualified(name, "conv1"), conv1, size, groups) + _per_channel(qualified(name, "norm2"), norm, size, groups)
    return _Group(type(module).__name__, size, norm.num_groups, members + _consumer(qualified(name, "conv2"), conv2, size, groups))


def _vq_vae(name: str, module: nn.Module) -> list[_Group | str]:
    """A VQ-VAE tokenizer (Janus's; GLM-Image's, without encoder and decoder): the codebook entries -> post_quant_conv
    -> the decoder's conv_in: post_quant_conv's rows -> conv_in's columns. quant_conv reads encode's last_hidden_state
    (the encoder's output, or GLM-Image's input), returned as it is: those channels keep their order."""
    found: list[_Group | str] = ["quant_conv's inputs are encode's last_hidden_state, returned as they are: they keep their order"]
    if _attr(module, "decoder.conv_in") is not None:
        found.append(_two_layer_mlp(name, module, first="post_quant_conv", second="decoder.conv_in", activation=None))
    return found


def _scalar_quantizer(name: str, module: nn.Module) -> str:
    """Xcodec2's finite scalar quantizer: project_in's outputs are each bounded and rounded to their own number of
    levels (quantization_levels), so they keep their order."""
    return "project_in's outputs are each quantized to their own number of levels: they keep their order"


def _jetmoe_attention(name: str, module: nn.Module) -> _Group | str:
    """JetMoE's mixture of attention heads: kv_proj's ``[keys; values]``, ``num_key_value_heads`` heads of
    ``kv_channels`` each, are shared by the routed experts; each expert's ``input_linear`` makes its queries for
    those heads and its ``output_linear`` reads the heads' outputs in kv_proj's head order, the same for every
    expert. One permutation of each head's value channels: kv_proj's value rows and every expert's output_linear
    columns (the queries and keys, rotated, keep their order)."""
    kv, experts = getattr(module, "kv_proj", None), getattr(module, "experts", None)
    out = getattr(experts, "output_linear", None)
    if not (_is_linear(kv) and is_parallel_experts(out)):
        return "kv_proj is not nn.Linear or experts.output_linear is not JetMoeParallelExperts"
    heads, size = module.num_key_value_heads, module.head_dim
    if kv.out_features != 2 * heads * size or out.weight.shape[2] != heads * size:
        return f"kv_proj's {kv.out_features} outputs or output_linear's {out.weight.shape[2]} inputs are not {heads} heads of {size}"
    blocks, cols = torch.arange(heads), gemm_axes(out)["weight"].reduction - 1  # the dim in one expert's slice
    members = _producer(qualified(name, "kv_proj"), kv, size, blocks, offset=heads * size)
    members += [_Member(qualified(name, "experts.output_linear"), out, "weight", cols, blocks, "consumer", expert=e) for e in range(out.weight.shape[0])]
    return _Group(type(module).__name__, size, heads, members)


def _jetmoe_moe(name: str, module: nn.Module) -> _Group | str:
    """JetMoE's feed-forward experts: per expert ``e``, ``output_linear.weight[e] @ (activation(a) * b)`` with ``a, b``
    the two halves of ``input_linear.weight[e] @ x``. Every expert is its own gated MLP: one permutation of its
    intermediate channels per expert, of both halves' rows and its output_linear columns."""
    up, down = getattr(module, "input_linear", None), getattr(module, "output_linear", None)
    if not (is_parallel_experts(up) and is_parallel_experts(down)):
        return "input_linear and output_linear are not JetMoeParallelExperts"
    if (refused := _not_elementwise(module, "activation")) is not None:
        return refused
    rows, cols = gemm_axes(up)["weight"].output - 1, gemm_axes(down)["weight"].reduction - 1  # the dims in one expert's slice
    width, experts = down.weight.shape[1 + cols], down.weight.shape[0]
    if up.weight.shape[1 + rows] != 2 * width or up.weight.shape[0] != experts:
        return f"input_linear's {up.weight.shape[1 + rows]} outputs are not the two halves of output_linear's {width} inputs, for each of {experts} experts"
    members = _expert_mlps((qualified(name, "input_linear"), up, "weight"), (qualified(name, "output_linear"), down, "weight"), rows, cols, width, experts, gated=True)
    return _Group(type(module).__name__, width, experts, members)


def _heads_one_order_attention(name: str, module: nn.Module) -> _Group | str:
    """EdgeTAM's perceiver attention: the attention helper's output, [batch, positions, heads, head_dim], is transposed
    once more and viewed as [batch, positions, heads * head_dim], so o_proj's columns read other heads at other
    positions, but column ``c`` always reads channel ``c % head_dim`` of a head: one order of ``head_dim`` channels for
    every head, v_proj's rows and o_proj's columns alike: :func:`_attention`'s group with all the runs in one order."""
    group = _HEADS_OWN_VALUES(name, module)
    if isinstance(group, str):
        return group
    return _Group(group.kind, group.block, 1, [replace(m, blocks=torch.zeros_like(m.blocks)) for m in group.members])


def _perceiver_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """EdgeTAM's perceiver resampler layer: self_attention's values (:func:`_heads_one_order_attention`).
    cross_attention's values may have the features' positional encoding added channel by channel (the 1-D latents'
    pass), so v_proj's rows cannot move alone."""
    refused = "cross_attention: its values may have the input's positional encoding added channel by channel: v_proj's rows cannot move alone"
    return [_heads_one_order_attention(qualified(name, "self_attention"), _attr(module, "self_attention")), refused]


def _timesformer_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """TimesformerLayer: BERT's feed-forward (intermediate -> output), and with divided space-time attention the
    temporal attention's output.dense -> (drop path, positions regrouped) -> temporal_dense."""
    groups: list[_Group | str] = [_bert_layer(name, module, family="Timesformer")]
    if getattr(module, "attention_type", None) == "divided_space_time":
        groups.append(_two_layer_mlp(name, module, first="temporal_attention.output.dense", second="temporal_dense", activation=None))
    return groups


def _qformer_layer(name: str, module: nn.Module, family: str) -> list[_Group | str]:
    """Blip2QFormerLayer (InstructBLIP's): BERT's feed-forward twice, one for the learned queries (intermediate_query ->
    output_query) and, with text input, one for the text tokens (intermediate -> output)."""
    pairs = [("intermediate_query", "output_query")] + ([("intermediate", "output")] if hasattr(module, "intermediate") else [])
    return [_bert_layer(name, module, family=family, intermediate=inter, output=out) for inter, out in pairs]


def _lilt_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """LiltLayer: BERT's feed-forward for the text stream (intermediate -> output) and again, channel_shrink_ratio
    times narrower, for the layout stream (layout_intermediate -> layout_output)."""
    return [_bert_layer(name, module, family="Lilt"), _bert_layer(name, module, family="Lilt", intermediate="layout_intermediate", output="layout_output")]


def _lilt_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """LiltAttention: the text and the layout streams share their scores (each adds the other's) but keep their own
    values: self.value -> output.dense within each head, and self.layout_value -> layout_output.dense within each
    head of attention_head_size / channel_shrink_ratio."""
    return [_bert_attention(name, module), _bert_attention(name, module, value_attr="layout_value", output="layout_output.dense", head_dim_attr=None)]


def _prefix_cache_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """PI0 and PI0.5 (PI0Model, PI05Model): the action expert's layer i (dit) attends over the keys and values the VLM's
    layer i cached for the prefix, then over its own; the two layers' values share their channels. So the VLM's v_proj
    rows, the expert's v_proj rows and both o_projs' columns take one order per key/value head (alone, either order
    would break the other). This group claims the VLM's layers before the VLM's own rule reaches them. The pair forms
    for any model that runs: concatenating the cached values with its own needs the same head size and key/value heads."""
    vlm_layers = getattr(getattr(getattr(module, "vlm", None), "language_model", None), "layers", None)
    dit_layers = getattr(getattr(module, "dit", None), "layers", None)
    if not (isinstance(vlm_layers, nn.ModuleList) and isinstance(dit_layers, nn.ModuleList)):
        return ["vlm.language_model.layers and dit.layers are not both module lists"]
    found: list[_Group | str] = []
    for i, (vlm_layer, dit_layer) in enumerate(zip(vlm_layers, dit_layers)):
        pair = [_attention(qualified(name, f"{path}.{i}.self_attn"), layer.self_attn) for path, layer in (("vlm.language_model.layers", vlm_layer), ("dit.layers", dit_layer))]
        reason = next((each for each in pair if isinstance(each, str)), None)
        if reason is None and (pair[0].block, pair[0].count) != (pair[1].block, pair[1].count):
            reason = f"the VLM's and the expert's values differ in head size or key/value heads ({pair[0].block} x {pair[0].count}, {pair[1].block} x {pair[1].count})"
        kind = type(dit_layer.self_attn).__name__
        found.append(f"layer {i}: {reason}" if reason else _Group(kind, pair[0].block, pair[0].count, pair[0].members + pair[1].members))
    return found


def _mvp_stack(name: str, module: nn.Module) -> list[_Group | str]:
    """MvpEncoder / MvpDecoder: BART's layers (fc1 -> fc2; v_proj -> out_proj per head, in self- and cross-attention).
    With prompts (use_prompt, MVP's lightweight tuning) every attention's values are extended with the prompt's, whose
    channels come from MvpPrompt's last layer: the attentions stay, the feed-forwards are permuted."""
    layers = getattr(module, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        return ["layers is not a module list"]
    found: list[_Group | str] = []
    for i, layer in enumerate(layers):
        prefix = qualified(name, f"layers.{i}")
        found.append(_two_layer_mlp(prefix, layer))
        for attention in ("self_attn", "encoder_attn"):
            if isinstance(getattr(layer, attention, None), nn.Module):
                prompted = f"layers.{i}.{attention}: its keys and values are extended with learned prompts (use_prompt): their value channels would have to move too"
                found.append(prompted if getattr(module, "use_prompt", False) else _OUT_PROJ_ATTENTION(qualified(prefix, attention), getattr(layer, attention)))
    return found


def _module_dict_mlp(name: str, module: nn.Module) -> _Group | str:
    """BridgeTowerResidualAttention (CLIP's original resblock): its MLP an nn.ModuleDict run in order, c_fc -> gelu
    (QuickGELU) -> c_proj."""
    found = _two_layer_mlp(qualified(name, "mlp"), getattr(module, "mlp", None), first="c_fc", second="c_proj", activation="gelu")
    return replace(found, kind=type(module).__name__) if isinstance(found, _Group) else found


def _no_groups(name: str, module: nn.Module) -> list[_Group | str]:
    """A ruled module whose own layers have no hidden channels to group (they read the model's input, a norm or the
    residual stream): the rule keeps the report from calling it unruled; its children named in the entry keep theirs."""
    return []


def _two_layer_mlp(name: str, module: nn.Module, first: str = "fc1", second: str = "fc2", activation: str | None = "activation_fn") -> _Group | str:
    """``second(activation(first(x)))`` with two nn.Linear: ViTMLP and OPTDecoderLayer (fc1, activation_fn, fc2),
    torch's TransformerEncoderLayer/TransformerDecoderLayer feed-forward (linear1, activation, dropout, linear2);
    or two ungrouped convolutions of any kernel, stride and padding (PoolFormer's 1 x 1 conv1, act_fn, conv2): a
    channel's filters, bias and zero padding move with it. ``activation`` None: the class's own forward applies an
    elementwise function between them (Whisper's ``F.gelu``), read there, mixes the positions channel by channel
    (GroupViT's assignment attention, ``proj(attn @ v_proj(x))``), applies a softmax over the channels, which permutes
    with them (Granite Speech's CTC branch), or nothing at all (GOT-OCR 2's and SAM towers' strided convs). One may be
    an nn.Linear over the channels and the other a convolution, where the forward only transposes between them
    (Moonshine Streaming's embedder: linear -> silu -> conv1)."""
    up, down = _attr(module, first), _attr(module, second)
    if not all(_is_linear(m) or (isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.groups == 1) for m in (up, down)):
        return f"{first} and {second} are not both nn.Linear (or ungrouped convolutions)"
    act = _attr(module, activation) if activation is not None else None
    if activation is not None and not _elementwise_activation(act):
        return f"{activation} {getattr(act, '__name__', type(act).__name__)} is not a known elementwise activation"
    width = up.out_features if _is_linear(up) else up.out_channels
    reads = down.in_features if _is_linear(down) else down.in_channels
    if reads != width:
        return f"{first} outputs ({width}) and {second} inputs ({reads}) differ"
    return _Group(type(module).__name__, width, 1, _producer(qualified(name, first), up, width) + _consumer(qualified(name, second), down, width))


def _layer_chain(name: str, module: nn.Module, layers: Sequence[str], activation: str | None) -> list[_Group | str]:
    """``layers`` run one after another with ``activation`` (see :func:`_two_layer_mlp`) between each two: one group
    per pair, as :func:`_two_layer_mlp`."""
    return [_two_layer_mlp(name, module, a, b, activation) for a, b in zip(layers, layers[1:])]


def _module_list(module: nn.Module) -> list[str]:
    """The names of the nn.ModuleList ``layers``' entries (none where it has no such list)."""
    return [f"layers.{i}" for i in range(len(getattr(module, "layers", ())))]


def _linear_chain(name: str, module: nn.Module) -> list[_Group | str]:
    """SAM 2's feed-forward: ``proj_in``, each layer of the nn.ModuleList ``layers``, then ``proj_out``, the
    elementwise ``activation`` between each two."""
    return _layer_chain(name, module, ["proj_in", *_module_list(module), "proj_out"], "activation")


def _activation_layers(name: str, module: nn.Module) -> list[_Group | str]:
    """SAM 3's mask embedder: the nn.ModuleList ``layers`` with the elementwise ``activation`` after all but the last."""
    return _layer_chain(name, module, _module_list(module), "activation")


def _relu_mlp(name: str, module: nn.Module) -> list[_Group | str]:
    """SAM 3's decoder MLP: ``layer2(relu(layer1(x)))``, or with a third, ``layer3(relu(layer2(relu(layer1(x)))))``
    (the ReLU fixed in its forward)."""
    third = ["layer3"] if getattr(module, "layer3", None) is not None else []
    return _layer_chain(name, module, ["layer1", "layer2", *third], None)


def _relu_layers(name: str, module: nn.Module, activation: str | None = None) -> list[_Group | str] | str:
    """DETR's MLPPredictionHead (the box heads of the detectors copying it): ``relu(layers[i](x))`` for all but the last
    of the nn.ModuleList ``layers``, the ReLU fixed in the forward: one group per pair, as :func:`_two_layer_mlp`.
    ``activation``: the module's own elementwise activation instead (D-FINE's MLP: ``act``)."""
    count = len(getattr(module, "layers", ()))
    if getattr(module, "num_layers", None) != count:
        return f"num_layers ({getattr(module, 'num_layers', None)}) is not the number of its {count} layers"
    return _layer_chain(name, module, _module_list(module), activation)


def _conv_stem(
    name: str, module: nn.Module, convs: Sequence[str] = ("conv1", "conv2"), norms: Mapping[str, str] = MappingProxyType({})
) -> list[_Group | str]:
    """A speech encoder's convolution stem: ``convs`` one after another with an elementwise function between
    them in the encoder's own forward (Whisper's ``gelu(conv2(gelu(conv1(x))))``); one group per pair, each
    conv's output channels -> the next one's input channels, as :func:`_two_layer_mlp`. ``norms[conv]``: a
    GroupNorm of one group after that conv, or a LayerNorm over the channels of [N, C, H, W] (SAM's channels_first
    SamLayerNorm): its statistics run over all the channels, its weight and bias move."""
    found: list[_Group | str] = []
    for first, second in zip(convs, convs[1:]):
        group = _two_layer_mlp(name, module, first, second, activation=None)
        if isinstance(group, _Group) and first in norms:
            norm = getattr(module, norms[first], None)
            one_group = isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.num_channels == group.block
            if not (one_group or _channels_first_layer_norm(norm, group.block)):
                group = f"{norms[first]} is not a GroupNorm of one group or a channels-first LayerNorm over the {group.block} channels of {first}"
            else:
                group.members += _per_channel(qualified(name, norms[first]), norm, group.block)
        found.append(group)
    return found


def _channels_first_layer_norm(norm: object, width: int) -> bool:
    """A LayerNorm over the ``width`` channels of [N, C, H, W] (SAM's and RF-DETR's channels_first LayerNorms): its
    statistics run over all the channels, so only its weight and bias move with them."""
    return isinstance(norm, nn.LayerNorm) and getattr(norm, "data_format", None) == "channels_first" and tuple(norm.normalized_shape) == (width,)


def _batch_norm_2d(norm: object, width: int) -> bool:
    """A BatchNorm2d over ``width`` channels, or a detector's frozen copy of one (the backbones D-FINE, DEIMv2 and
    RT-DETR load): per channel, its parameters and statistics move with it."""
    if _frozen_batchnorm_class(type(norm)):
        return tuple(getattr(norm, "weight", torch.empty(0)).shape) == (width,)
    return type(norm) is nn.BatchNorm2d and norm.num_features == width


def _channel_norm(norm: object, width: int) -> bool:
    """A BatchNorm2d (or a frozen one) or a channels-first LayerNorm over ``width`` channels: each channel's
    parameters (and running statistics) move with it."""
    return _batch_norm_2d(norm, width) or _channels_first_layer_norm(norm, width)


def _wav2vec2_conv_layer(layer: nn.Module) -> str | None:
    """Which wav2vec 2.0 feature-encoder layer's code ``layer`` runs: conv -> activation (``"none"``), conv ->
    LayerNorm over the channels -> activation (``"layer"``), conv -> GroupNorm of one group per channel ->
    activation (``"group"``); None for other code."""
    from transformers.models.wav2vec2 import modeling_wav2vec2 as wav2vec2

    for kind, cls in (("none", wav2vec2.Wav2Vec2NoLayerNormConvLayer), ("layer", wav2vec2.Wav2Vec2LayerNormConvLayer), ("group", wav2vec2.Wav2Vec2GroupNormConvLayer)):
        if type(layer) is cls or source.same_code(type(layer).forward, cls.forward, (type(layer), cls)):
            return kind
    return None


def _conv_feature_encoder(name: str, module: nn.Module) -> list[_Group | str]:
    """wav2vec 2.0's feature encoder (HuBERT's, WavLM's, data2vec-audio's...): ``conv_layers`` one after another, each
    conv -> [norm] -> activation; one group per pair of layers, the first one's conv output channels (with its
    norm's weight and bias: a LayerNorm over the channels, or a GroupNorm of one group per channel) -> the next
    one's conv input channels. The last layer's channels stay: they reach the model's ``extract_features`` output."""
    layers = getattr(module, "conv_layers", None)
    if not isinstance(layers, nn.ModuleList):
        return ["conv_layers is not a ModuleList"]
    found: list[_Group | str] = []
    kinds = [_wav2vec2_conv_layer(layer) for layer in layers]
    for index, (layer, after) in enumerate(zip(layers, layers[1:])):
        first, second = f"conv_layers.{index}", f"conv_layers.{index + 1}"
        kind = kinds[index]
        up, down = getattr(layer, "conv", None), getattr(after, "conv", None)
        if kind is None or kinds[index + 1] is None:
            found.append(f"{first} or {second} does not run a wav2vec 2.0 conv layer's code")
        elif not (all(isinstance(conv, nn.Conv1d) and conv.groups == 1 for conv in (up, down)) and up.out_channels == down.in_channels):
            found.append(f"{first}.conv and {second}.conv are not ungrouped nn.Conv1d of matching widths")
        elif not _elementwise_activation(getattr(layer, "activation", None)):
            found.append(f"{first}.activation is not a known elementwise activation")
        else:
            width, norm = up.out_channels, getattr(layer, "layer_norm", None)
            per_channel = (
                kind == "none"
                or (kind == "layer" and isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (width,))
                or (kind == "group" and isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels == width)
            )
            if not per_channel:
                found.append(f"{first}.layer_norm does not normalise each of the {width} channels alike")
                continue
            members = _producer(qualified(name, f"{first}.conv"), up, width)
            members += _per_channel(qualified(name, f"{first}.layer_norm"), norm, width) if norm is not None else []
            found.append(_Group(type(module).__name__, width, 1, members + _consumer(qualified(name, f"{second}.conv"), down, width)))
    return found


def _normed_fan_out(name: str, module: nn.Module, producer: str, norm: str, consumers: Sequence[str], activation: str | None = None) -> _Group | str:
    """``producer``'s output channels -> ``norm`` (a LayerNorm over them: its statistics take every channel, its weight
    and bias move), an elementwise function in the module's forward before or after it -> every one of ``consumers``
    (GLM-4V's patch merger: proj -> post_projection_norm -> GELU -> gate_proj and up_proj; RoBERTa's masked-LM head:
    dense -> GELU -> layer_norm -> decoder). ``activation``: the attribute holding that function, where the module
    has one (RemBERT's masked-LM head)."""
    if activation is not None and (refused := _not_elementwise(module, activation)) is not None:
        return refused
    first, norm_layer = getattr(module, producer, None), getattr(module, norm, None)
    readers = [getattr(module, consumer, None) for consumer in consumers]
    if not (_is_linear(first) and all(_is_linear(reader) for reader in readers)):
        return f"{producer} and {', '.join(consumers)} are not nn.Linear"
    width = first.out_features
    if not (isinstance(norm_layer, nn.LayerNorm) and tuple(norm_layer.normalized_shape) == (width,)) or any(r.in_features != width for r in readers):
        return f"{norm} is not a LayerNorm over {producer}'s {width} channels, or {', '.join(consumers)} read another width"
    members = _producer(qualified(name, producer), first, width) + _per_channel(qualified(name, norm), norm_layer, width)
    return _Group(type(module).__name__, width, 1, members + [m for consumer, reader in zip(consumers, readers) for m in _consumer(qualified(name, consumer), reader, width)])


def _concat_mlp(name: str, module: nn.Module, producers: Sequence[str], activation: str, consumer: str) -> list[_Group | str]:
    """``consumer(activation(cat([p(x_p) for p in producers], -1)))`` (DeepSeek-VL-Hybrid's aligner: the high- and
    low-resolution towers' projections concatenated, GELU, proj): one group per producer, its output channels -> its
    range of the consumer's input columns."""
    if (refused := _not_elementwise(module, activation)) is not None:
        return [refused]
    layers, reader = [getattr(module, attr, None) for attr in producers], getattr(module, consumer, None)
    if not (all(_is_linear(layer) for layer in layers) and _is_linear(reader)):
        return [f"{', '.join(producers)} and {consumer} are not nn.Linear"]
    if reader.in_features != sum(layer.out_features for layer in layers):
        return [f"{consumer} reads {reader.in_features} channels, not the {' + '.join(str(layer.out_features) for layer in layers)} of {', '.join(producers)}"]
    found: list[_Group | str] = []
    offset = 0
    for attr, layer in zip(producers, layers):
        width = layer.out_features
        members = _producer(qualified(name, attr), layer, width) + _consumer(qualified(name, consumer), reader, width, _uniform(width, width), offset=offset)
        found.append(_Group(type(module).__name__, width, 1, members))
        offset += width
    return found


def _config_activation_head(
    name: str, module: nn.Module, key: str = "hidden_act", first: str = "dense", second: str = "out_proj", config: str = "config"
) -> _Group | str:
    """BigBird's classification head (Nystromformer's, RoFormer's, YOSO's, MRA's; ConvBERT's): RoBERTa's, dense ->
    ``ACT2FN[config.hidden_act]`` -> out_proj, the activation looked up by ``key`` in the module's ``config`` in the
    forward; DeBERTa's pooled classification (pooler.dense -> ``pooler_hidden_act`` -> classifier)."""
    from transformers.activations import ACT2FN

    act = getattr(_attr(module, config), key, None)
    if not (isinstance(act, str) and act in ACT2FN and _elementwise_module(ACT2FN[act])):
        return f"config.{key} {act!r} is not a known elementwise activation"
    return _two_layer_mlp(name, module, first=first, second=second, activation=None)


def _seamless_adapter(name: str, module: nn.Module) -> _Group | str:
    """SeamlessM4T's conformer adapter layer: self_attn_conv (channels -> 2 x channels) -> GLU -> its self-attention's
    linear_q, linear_k and linear_v, which read those channels as they are (no rotary: the adapter's attention has
    no position embeddings)."""
    conv, attention = getattr(module, "self_attn_conv", None), getattr(module, "self_attn", None)
    readers = [getattr(attention, attr, None) for attr in ("linear_q", "linear_k", "linear_v")]
    if not (isinstance(conv, nn.Conv1d) and conv.groups == 1 and all(_is_linear(r) for r in readers)):
        return "self_attn_conv is not an ungrouped nn.Conv1d, or self_attn's linear_q/k/v are not nn.Linear"
    if not (isinstance(getattr(module, "activation", None), nn.GLU) and module.activation.dim == 1):
        return "activation is not a GLU over the channels"
    if getattr(attention, "position_embeddings_type", "?") is not None:
        return "self_attn has position embeddings acting on its input channels"
    width = readers[0].in_features
    if conv.out_channels != 2 * width or any(r.in_features != width for r in readers):
        return f"self_attn_conv's {conv.out_channels} outputs are not twice the {width} inputs of linear_q/k/v"
    members = _halves(qualified(name, "self_attn_conv"), conv, width)
    consumers = [m for attr, reader in zip(("linear_q", "linear_k", "linear_v"), readers) for m in _consumer(qualified(name, f"self_attn.{attr}"), reader, width)]
    return _Group(type(module).__name__, width, 1, members + consumers)


def _all_of(*rules: Callable[[str, nn.Module], _Group | str | list[_Group | str]]) -> Callable[[str, nn.Module], list[_Group | str]]:
    """One rule that returns every group of ``rules`` (a module with several independent sets of hidden channels)."""

    def rule(name: str, module: nn.Module) -> list[_Group | str]:
        found: list[_Group | str] = []
        for each in rules:
            result = each(name, module)
            found += result if isinstance(result, list) else [result]
        return found

    return rule


def _multihead_attention(name: str, module: nn.Module) -> _Group | str:
    """torch's nn.MultiheadAttention: the value rows of its input projection and out_proj's input columns, within each head.

    Head ``h`` reads value channels ``[h * head_dim, (h + 1) * head_dim)``, rows ``2E + h * head_dim ...``
    of ``in_proj_weight`` (``v_proj_weight`` when ``kdim``/``vdim`` differ) and of ``in_proj_bias``,
    and ``bias_v`` (``add_bias_kv``) is a value too; out_proj reads them in the same order.
    """
    out = getattr(module, "out_proj", None)
    if not _is_linear(out):
        return "out_proj is not nn.Linear"
    embed, heads = module.embed_dim, module.num_heads
    head_dim = embed // heads
    if head_dim * heads != embed or out.in_features != embed:
        return f"embed_dim {embed} is not {heads} heads of the same size, or out_proj reads {out.in_features}"
    blocks = torch.arange(heads)
    if module._qkv_same_embed_dim:
        members = _producer(name, module, head_dim, blocks, offset=2 * embed, weight="in_proj_weight", bias="in_proj_bias")
    else:  # separate projections, one bias for the three
        members = _producer(name, module, head_dim, blocks, weight="v_proj_weight", bias=None)
        if isinstance(module.in_proj_bias, Tensor):
            members.append(_Member(name, module, "in_proj_bias", 0, blocks, "producer", 2 * embed))
    if isinstance(module.bias_v, Tensor):  # a value vector concatenated along the sequence
        members.append(_Member(name, module, "bias_v", 2, blocks, "producer"))
    members += _consumer(qualified(name, "out_proj"), out, head_dim, blocks)
    return _Group("MultiheadAttention", head_dim, heads, members)


def _aria_cross_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """Aria's projector cross-attention ``linear(multihead_attn(q_proj(x), k_proj(kv), v_proj(kv)))``: q_proj's, k_proj's
    and v_proj's rows in one order -> the columns of multihead_attn's in_proj_weight (its query, key and value rows
    read them through the same columns); multihead_attn.out_proj's rows -> linear (the attention's own values by
    the nn.MultiheadAttention rule)."""
    projections = [(attr, getattr(module, attr, None)) for attr in ("q_proj", "k_proj", "v_proj")]
    attention, linear = getattr(module, "multihead_attn", None), getattr(module, "linear", None)
    if not (isinstance(attention, nn.MultiheadAttention) and attention._qkv_same_embed_dim and _is_linear(attention.out_proj) and _is_linear(linear)):
        return ["multihead_attn is not an nn.MultiheadAttention with one in_proj_weight, or linear is not an nn.Linear"]
    width = attention.embed_dim
    if not all(_is_linear(layer) and layer.out_features == width for _, layer in projections):
        return [f"q_proj, k_proj and v_proj are not nn.Linear with multihead_attn's {width} inputs"]
    inputs = [m for attr, layer in projections for m in _producer(qualified(name, attr), layer, width)]
    reads = gemm_axes(attention)["in_proj_weight"].reduction
    inputs.append(_Member(qualified(name, "multihead_attn"), attention, "in_proj_weight", reads, _uniform(width, width), "consumer"))
    output = _two_layer_mlp(name, module, "multihead_attn.out_proj", "linear", activation=None)
    return [_Group(type(module).__name__, width, 1, inputs), output]


def _gpt2_attention(name: str, module: nn.Module) -> _Group | str:
    """GPT2Attention: the value columns of c_attn (Conv1D ``[E, 3E]``: q, k, v; ``[E, 2E]``: k, v for
    cross-attention) and c_proj's input rows, within each head."""
    return _conv1d_values(name, module, module.embed_dim, module.num_heads, 2 if module.is_cross_attention else 3)


def _openai_gpt_attention(name: str, module: nn.Module) -> _Group | str:
    """OpenAI GPT's Attention: GPT-2's layout (c_attn's q, k, v columns split at ``split_size``, ``n_head`` heads)."""
    embed, heads = getattr(module, "split_size", None), getattr(module, "n_head", None)
    if not all(isinstance(n, int) and n > 0 for n in (embed, heads)) or embed % heads:
        return f"split_size {embed} / n_head {heads} do not make heads"
    return _conv1d_values(name, module, embed, heads, 3)


def _conv1d_values(name: str, module: nn.Module, embed: int, heads: int, parts: int) -> _Group | str:
    """The value columns of a Conv1D ``c_attn`` of ``parts`` runs of ``embed`` (the value last) and ``c_proj``'s input
    rows, within each of ``heads`` heads."""
    fused, proj = getattr(module, "c_attn", None), getattr(module, "c_proj", None)
    if not all(_transformers_class(m) == "Conv1D" for m in (fused, proj)):
        return "c_attn and c_proj are not transformers Conv1D"
    head_dim = embed // heads
    if heads * head_dim != embed or fused.weight.shape != (embed, parts * embed) or proj.weight.shape != (embed, embed):
        return f"c_attn {list(fused.weight.shape)} / c_proj {list(proj.weight.shape)} do not fit {heads} heads of {head_dim}"
    blocks = torch.arange(heads)
    members = _producer(qualified(name, "c_attn"), fused, head_dim, blocks, offset=(parts - 1) * embed)
    members += _consumer(qualified(name, "c_proj"), proj, head_dim, blocks)
    return _Group(type(module).__name__, head_dim, heads, members)


def _bert_attention(
    name: str, module: nn.Module, value_attr: str | Sequence[str] = "value", attention_attr: str = "self", output: str = "output.dense",
    heads_attr: str = "num_attention_heads", head_dim_attr: str | None = "attention_head_size",
) -> _Group | str:
    """BertAttention (RoBERTa's, XLM-R's, ELECTRA's; DeBERTa-v2's with ``value_proj``; MobileViT's under ``attention``):
    self.value's rows and output.dense's input columns, within each head. An attention whose values are projected in
    its ``attention_attr`` child and leave through ``output``: BigBird-Pegasus's encoder attention (self.value ->
    output, full or block-sparse), Longformer's (the local and the global values: ``value_attr`` both value and
    value_global, each head's rows in one order -> output.dense), LED's encoder attention (longformer_self_attn -> output).
    ``head_dim_attr=None``: the head size is the values' width over the heads (CvT's)."""
    attention = getattr(module, attention_attr, None)
    values = [value_attr] if isinstance(value_attr, str) else list(value_attr)
    layers = [getattr(attention, value, None) for value in values]
    dense = _attr(module, output)
    if not (all(_is_linear(layer) for layer in layers) and _is_linear(dense)):
        return f"{attention_attr}.{' and '.join(values)} and {output} are not nn.Linear"
    heads, width = getattr(attention, heads_attr, None), layers[0].out_features
    head_dim = getattr(attention, head_dim_attr, None) if head_dim_attr else width // heads if isinstance(heads, int) and heads > 0 else None
    if not isinstance(heads, int) or not isinstance(head_dim, int) or any(layer.out_features != heads * head_dim for layer in layers) or dense.in_features != width:
        return f"{attention_attr}.{values[0]} ({width}) and {output} ({dense.in_features}) do not fit {heads} heads of {head_dim}"
    blocks = torch.arange(heads)
    members = [m for value, layer in zip(values, layers) for m in _producer(qualified(name, f"{attention_attr}.{value}"), layer, head_dim, blocks)]
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, output), dense, head_dim, blocks))


def _roformer_attention(name: str, module: nn.Module) -> _Group | str:
    """RoFormerAttention: BERT's value path, unless the values are rotated too (``rotary_value``): the rotation mixes
    each pair of a head's value channels, which an order of their own would split."""
    if getattr(getattr(module, "self", None), "rotary_value", False):
        return "its values are rotated (rotary_value): the rotary embedding mixes pairs of each head's value channels"
    return _bert_attention(name, module)


def _fused_halves_mlp(name: str, module: nn.Module, fused: str = "gate_up_proj", down: str = "down_proj", act: str | None = "activation_fn") -> _Group | str:
    """Phi3MLP: down_proj(up * activation_fn(gate)), gate and up the two halves of the fused gate_up_proj's rows
    (ModernBertMLP: ``Wo(act(input) * gate)`` from the halves of ``Wi``); ``act=None`` for a class whose forward
    gates with fixed elementwise code itself (MiniMax-M3-VL's clamped ``(up + 1) * gate * sigmoid(alpha * gate)``)."""
    fused_layer, down_layer = getattr(module, fused, None), getattr(module, down, None)
    if not (_is_linear(fused_layer) and _is_linear(down_layer)):
        return f"{fused} and {down} are not nn.Linear"
    if act is not None and (refused := _not_elementwise(module, act)) is not None:
        return refused
    width = down_layer.in_features
    if fused_layer.out_features != 2 * width:
        return f"{fused}'s {fused_layer.out_features} outputs are not twice {down}'s {width} inputs"
    members = _halves(qualified(name, fused), fused_layer, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, down), down_layer, width))


def _conformer_convolution(
    name: str, module: nn.Module, up: str = "pointwise_conv1", depthwise: str = "depthwise_conv", norm: str = "batch_norm",
    act: str | None = "activation", down: str = "pointwise_conv2",
) -> _Group | str:
    """A conformer's convolution module: ``up`` (channels -> 2 x channels) -> GLU (the first half gated by the
    second) -> the ``depthwise`` convolution (each channel its own filter) -> ``norm`` (BatchNorm, or a LayerNorm
    over the channels: per channel either way) -> ``act`` -> ``down``. A channel moves with both of its rows in
    ``up``, its filter and bias, its norm parameters (and running statistics) and its column of ``down``; the
    padding mask and the time padding in between act on whole time steps. ``up`` and ``down`` are 1 x 1
    nn.Conv1d, or nn.Linear over the channels (Granite Speech 5's; Gemma 3n's and Gemma 4's audio light conv, whose
    norm is an RMS norm: its mean square is the same in any order); ``act`` None: the forward's own silu."""
    try:
        up_conv, dw, norm_layer, down_conv = (module.get_submodule(path) for path in (up, depthwise, norm, down))
    except AttributeError as error:
        return f"{error}"
    if not (all(isinstance(conv, nn.Conv1d) and conv.groups == 1 for conv in (up_conv, down_conv)) or (_is_linear(up_conv) and _is_linear(down_conv))):
        return f"{up} and {down} are not ungrouped nn.Conv1d (or both nn.Linear)"
    width = down_conv.in_features if _is_linear(down_conv) else down_conv.in_channels
    outputs = up_conv.out_features if _is_linear(up_conv) else up_conv.out_channels
    if outputs != 2 * width:
        return f"{up}'s {outputs} outputs are not twice {down}'s {width} inputs"
    if not _is_depthwise(dw, width) or not isinstance(dw, nn.Conv1d):
        return f"{depthwise} is not a depthwise nn.Conv1d over {width} channels"
    per_channel = (isinstance(norm_layer, nn.BatchNorm1d) and norm_layer.num_features == width) or (
        isinstance(norm_layer, nn.LayerNorm) and tuple(norm_layer.normalized_shape) == (width,)
    ) or (type(norm_layer).__name__.endswith("RMSNorm") and set(dict(norm_layer.named_parameters())) == {"weight"} and norm_layer.weight.shape == (width,))
    if not per_channel:
        return f"{norm} is not a BatchNorm1d, LayerNorm or RMS norm over the {width} channels"
    if act is not None and not _elementwise_activation(getattr(module, act, None)):
        return f"{act} is not a known elementwise activation"
    members = _halves(qualified(name, up), up_conv, width)
    members += _per_channel(qualified(name, depthwise), dw, width) + _per_channel(qualified(name, norm), norm_layer, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, down), down_conv, width))


def _phi3_attention(name: str, module: nn.Module, qkv: str = "qkv_proj", output: str = "o_proj") -> _Group | str:
    """Phi3Attention (and Ergo's; EXAONE 4.5's vision attention: ``qkv`` and ``output`` qkv and proj): the value rows of
    the fused qkv_proj (after the query and key heads) and o_proj's columns, per kv head."""
    fused, o = getattr(module, qkv, None), getattr(module, output, None)
    if not (_is_linear(fused) and _is_linear(o)):
        return f"{qkv} and {output} are not nn.Linear"
    head_dim, groups = getattr(module, "head_dim", None), getattr(module, "num_key_value_groups", None)
    kv_heads = getattr(module, "num_key_value_heads", getattr(getattr(module, "config", None), "num_key_value_heads", None))  # Ergo: the config's
    if not all(isinstance(n, int) and n > 0 for n in (head_dim, groups, kv_heads)):
        return "head_dim / num_key_value_groups / num_key_value_heads missing"
    heads = kv_heads * groups
    if fused.out_features != (heads + 2 * kv_heads) * head_dim or o.in_features != heads * head_dim:
        return f"{qkv} ({fused.out_features}) and {output} ({o.in_features}) do not fit {heads} query and {kv_heads} kv heads of {head_dim}"
    members = _producer(qualified(name, qkv), fused, head_dim, torch.arange(kv_heads), offset=(heads + kv_heads) * head_dim)
    members += _consumer(qualified(name, output), o, head_dim, torch.arange(heads) // groups)
    return _Group(type(module).__name__, head_dim, kv_heads, members)


def _grouped_qkv(
    name: str, module: nn.Module, head_dim: int, heads: int, kv_heads: int, fused_attr: str = "query_key_value", dense_attr: str = "dense"
) -> _Group | str:
    """A fused ``fused_attr`` projection whose rows are, key/value head after key/value head, the query heads that
    read it, its key and its value (``heads // kv_heads`` + 2 runs of ``head_dim``); that value's rows and
    ``dense_attr``'s input columns of the query heads reading it move together."""
    fused, dense = getattr(module, fused_attr, None), getattr(module, dense_attr, None)
    if not (_is_linear(fused) and _is_linear(dense)):
        return f"{fused_attr} and {dense_attr} are not nn.Linear"
    if not all(isinstance(n, int) and n > 0 for n in (head_dim, heads, kv_heads)) or heads % kv_heads:
        return f"{heads} heads of {head_dim} do not share {kv_heads} key/value heads"
    per = heads // kv_heads
    if fused.out_features != kv_heads * (per + 2) * head_dim or dense.in_features != heads * head_dim:
        return f"{fused_attr} ({fused.out_features}) / {dense_attr} ({dense.in_features}) do not fit {heads} heads and {kv_heads} key/value heads of {head_dim}"
    members = [
        m for g in range(kv_heads) for m in _producer(qualified(name, fused_attr), fused, head_dim, torch.tensor([g]), offset=(g * (per + 2) + per + 1) * head_dim)
    ]
    return _Group(type(module).__name__, head_dim, kv_heads, members + _consumer(qualified(name, dense_attr), dense, head_dim, torch.arange(heads) // per))


def _gpt_bigcode_attention(name: str, module: nn.Module) -> _Group | str:
    """GPTBigCodeAttention: c_attn's rows are all the query heads, then one key and one value head (multi-query,
    as StarCoder), or head after head its query, key and value; c_proj reads the heads. Cross-attention (a separate
    q_attn) stays in place."""
    if getattr(module, "is_cross_attention", True):
        return "cross-attention (q_attn and a key/value c_attn) has no rule"
    heads, kv_heads = getattr(module, "num_heads", None), getattr(module, "kv_heads", None)
    return _grouped_qkv(name, module, getattr(module, "head_dim", None), heads, kv_heads, "c_attn", "c_proj")


def _stacked_qkv_attention(
    name: str, module: nn.Module, fused: str = "qkv", output: str = "projection", heads_attr: str | None = "num_heads", parts: int = 3,
    head_dim_attr: str = "head_dim",
) -> _Group | str:
    """A fused ``fused`` projection whose rows are all the query heads, all the key heads, then all the value heads
    (BLIP's and Qwen2-VL's vision attention: ``reshape(..., 3, num_heads, head_dim)``; MPT's ``Wqkv(x).chunk(3)``);
    the value heads' rows and ``output``'s input columns move together, head by head. ``heads_attr=None``: the
    number of heads is the fused rows over 3 x ``head_dim`` (ModernBERT's ``Wqkv``); without ``head_dim``, the fused
    rows over 3 x the number of heads (VitDet's). ``parts=2``: keys then values (Granite Speech's ``to_kv``). The names
    may be dotted paths (TimeSformer's ``attention.qkv`` and ``output.dense``)."""
    qkv, proj = _attr(module, fused), _attr(module, output)
    if not (_is_linear(qkv) and _is_linear(proj)):
        return f"{fused} and {output} are not nn.Linear"
    head_dim = _attr(module, head_dim_attr)
    heads = _attr(module, heads_attr) if heads_attr else qkv.out_features // (parts * head_dim) if isinstance(head_dim, int) and head_dim > 0 else None
    if head_dim is None and isinstance(heads, int) and heads > 0:
        head_dim = qkv.out_features // (parts * heads)
    if not all(isinstance(n, int) and n > 0 for n in (heads, head_dim)):
        return f"{heads_attr or 'the number of heads'} / {head_dim_attr} missing"
    width = heads * head_dim
    if qkv.out_features != parts * width or proj.in_features != width:
        return f"{fused} ({qkv.out_features}) and {output} ({proj.in_features}) do not fit {parts} x {heads} heads of {head_dim}"
    blocks = torch.arange(heads)
    members = _producer(qualified(name, fused), qkv, head_dim, blocks, offset=(parts - 1) * width) + _consumer(qualified(name, output), proj, head_dim, blocks)
    return _Group(type(module).__name__, head_dim, heads, members)


def _codegen_attention(name: str, module: nn.Module) -> _Group | str:
    """CodeGenAttention: qkv_proj's rows are ``mp_num`` model-parallel slices of ``embed_dim / mp_num`` query, value
    and key rows each; the value rows, slice after slice, are the heads out_proj reads. Each slice's value heads move
    with out_proj's columns of those heads (refused where a head's values straddle two slices)."""
    qkv, proj = getattr(module, "qkv_proj", None), getattr(module, "out_proj", None)
    if not (_is_linear(qkv) and _is_linear(proj)):
        return "qkv_proj and out_proj are not nn.Linear"
    slices, heads, head_dim = (getattr(module, a, None) for a in ("mp_num", "num_attention_heads", "head_dim"))
    if not all(isinstance(n, int) and n > 0 for n in (slices, heads, head_dim)):
        return "mp_num / num_attention_heads / head_dim missing"
    width = heads * head_dim
    if qkv.out_features != 3 * width or proj.in_features != width or width % slices:
        return f"qkv_proj ({qkv.out_features}) and out_proj ({proj.in_features}) do not fit {slices} slices of 3 x {heads} heads of {head_dim}"
    local = width // slices
    if local % head_dim:
        return f"a head's values ({head_dim} rows) straddle two of qkv_proj's {slices} model-parallel slices of {local}"
    per = local // head_dim
    members = [m for k in range(slices) for m in _producer(qualified(name, "qkv_proj"), qkv, head_dim, torch.arange(k * per, (k + 1) * per), offset=(3 * k + 1) * local)]
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, "out_proj"), proj, head_dim, torch.arange(heads)))


def _per_head_qkv(name: str, module: nn.Module, head_dim_attr: str = "head_size") -> _Group | str:
    """GPT-NeoX / BLOOM attention: query_key_value's rows are, head after head, that head's query, key and value."""
    head_dim, fused = getattr(module, head_dim_attr, None), getattr(module, "query_key_value", None)
    if not isinstance(head_dim, int) or head_dim <= 0 or not _is_linear(fused) or fused.out_features % (3 * head_dim):
        return f"query_key_value is not heads of 3 x {head_dim_attr} {head_dim}"
    heads = fused.out_features // (3 * head_dim)
    return _grouped_qkv(name, module, head_dim, heads, heads)


def _falcon_attention(name: str, module: nn.Module) -> _Group | str:
    """FalconAttention, its three layouts of query_key_value: classic (per head: q, k, v), multi-query (all queries,
    one k, one v) and the new decoder architecture (per key/value head: its queries, k, v); ``num_kv_heads`` is 1 for
    multi-query."""
    return _grouped_qkv(name, module, getattr(module, "head_dim", None), getattr(module, "num_heads", None), getattr(module, "num_kv_heads", None))


def _mla_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """DeepseekV3Attention (multi-head latent attention; DeepSeek-V2's and LongCat-Flash's the same): three groups.

    - The values: kv_b_proj's rows are, head after head, its key (``qk_nope_head_dim``) and its value
      (``v_head_dim``); each head's value rows and o_proj's columns of that head move together.
    - The key/value latent: kv_a_proj_with_mqa's first ``kv_lora_rank`` rows (the rest is the shared
      rotary key), kv_a_layernorm (an RMS norm: per-channel weight, the mean square is the same in any
      order) and kv_b_proj's input columns. The cache holds this latent, in the model's own order.
    - The query latent (``q_lora_rank``): q_a_proj's rows, q_a_layernorm and q_b_proj's columns.
    """
    kv_a = getattr(module, "kv_a_proj_with_mqa", None)
    if not _is_linear(kv_a):
        return ["kv_a_proj_with_mqa is not an nn.Linear"]
    values = _mla_values(name, module)
    if isinstance(values, str):
        return [values]
    if kv_a.out_features < module.kv_lora_rank:  # equal: no rotary key (Mistral Large 4's layers without rotary positions)
        return [f"kv_a_proj_with_mqa ({kv_a.out_features} outputs) does not start with a latent of {module.kv_lora_rank}"]
    found: list[_Group | str] = [values]
    for down, norm, up in (("kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj"), ("q_a_proj", "q_a_layernorm", "q_b_proj")):
        if getattr(module, down, None) is None and down == "q_a_proj":  # no query latent: q_proj reads the hidden states
            continue
        b = getattr(module, up, None)
        found.append(_latent(name, module, down, norm, [up], b.in_features if _is_linear(b) else None))
    return found


def _mla_values(name: str, module: nn.Module) -> _Group | str:
    """Multi-head latent attention's values: kv_b_proj's rows are, head after head, its key (``qk_nope_head_dim``) and
    its value (``v_head_dim``) from a latent of ``kv_lora_rank``; each head's value rows -> o_proj's columns of it."""
    kv_b, o_proj = getattr(module, "kv_b_proj", None), getattr(module, "o_proj", None)
    if not (_is_linear(kv_b) and _is_linear(o_proj)):
        return "kv_b_proj and o_proj are not nn.Linear"
    heads, nope, v_dim, rank = (getattr(module, attr, None) for attr in ("num_heads", "qk_nope_head_dim", "v_head_dim", "kv_lora_rank"))
    if not all(isinstance(n, int) and n > 0 for n in (heads, nope, v_dim, rank)):
        return "num_heads / qk_nope_head_dim / v_head_dim / kv_lora_rank missing"
    if kv_b.out_features != heads * (nope + v_dim) or o_proj.in_features != heads * v_dim or kv_b.in_features != rank:
        return f"kv_b_proj ({kv_b.in_features} -> {kv_b.out_features}) / o_proj ({o_proj.in_features}) do not fit {heads} heads of {nope} + {v_dim} from a latent of {rank}"
    values = _strided_rows(qualified(name, "kv_b_proj"), kv_b, v_dim, heads, nope + v_dim, nope)
    return _Group(type(module).__name__, v_dim, heads, values + _consumer(qualified(name, "o_proj"), o_proj, v_dim, torch.arange(heads)))


def _kv_shared_mla(name: str, module: nn.Module) -> list[_Group | str]:
    """Mistral Large 4's attention: DeepSeek-V3's latent attention without a query latent (q_proj reads the stream)
    whose layers may share one key/value latent (``kv_source_layers``). A layer reusing an earlier layer's latent has
    no kv_a_proj_with_mqa and reads it with its own kv_b_proj; a layer storing its latent for them keeps the
    latent's order (its other readers are in later layers). Each layer's values -> o_proj move as DeepSeek-V3's."""
    if getattr(module, "is_kv_shared_layer", None) is True:
        return [_mla_values(name, module), "the key/value latent is an earlier layer's (kv_source_layers)"]
    if getattr(module, "store_full_length_kv", None) is True:
        return [_mla_values(name, module), "the key/value latent is also read by the later layers that reuse it (kv_source_layers)"]
    return _mla_attention(name, module)


def _latent(name: str, module: nn.Module, down: str, norm: str, readers: Sequence[str], width: int | None, halves: str | None = None) -> _Group | str:
    """A latent of multi-head latent attention: the first ``width`` rows of ``down`` (after them, DeepSeek's shared
    rotary key), the RMS norm ``norm`` over them (its weight moves; its mean square is the same in any order) ->
    the columns of every reader (paths from ``module``); ``halves``, a reader reading ``cat(norm(latent), latent)``
    (AXK2's q_gate_proj): both halves of its columns."""
    a, n = getattr(module, down, None), getattr(module, norm, None)
    layers = [(path, _attr(module, path), 1) for path in readers] + ([(halves, _attr(module, halves), 2)] if halves else [])
    if not (isinstance(width, int) and _is_linear(a) and a.out_features >= width and all(_is_linear(layer) and layer.in_features == parts * width for _, layer, parts in layers)):
        return f"{down} and {' and '.join(path for path, _, _ in layers)} are not nn.Linear from a latent of {width}"
    if not (type(n).__name__.endswith("RMSNorm") and set(dict(n.named_parameters())) == {"weight"} and n.weight.shape == (width,)):
        return f"{norm} is not an RMS norm over the {width} latent channels"
    members = _producer(qualified(name, down), a, width, torch.zeros(1, dtype=torch.long)) + _per_channel(qualified(name, norm), n, width)
    members += [m for path, layer, parts in layers for m in _consumer(qualified(name, path), layer, width, torch.zeros(parts, dtype=torch.long))]
    return _Group(type(module).__name__, width, 1, members)


def _indexed_mla_attention(name: str, module: nn.Module, gate: str | None = None) -> list[_Group | str]:
    """DeepSeek-V3.2's attention (GLM-5's and HY-V4's): multi-head latent attention whose sparse-attention indexer reads
    the normed query latent too (``indexer.wq_b(q_a_layernorm(q_a_proj(x)))``): wq_b's columns move with the query
    latent's channels; a layer reusing another's top-k has no indexer. ``gate`` (HY-V4's gate_proj): the attention
    output gated channel by channel, ``o_proj(out * sigmoid(gate_proj(x)))``: its rows move with each head's values."""
    found = _mla_attention(name, module)
    if gate is not None and isinstance(found[0], _Group):
        values, layer = found[0], getattr(module, gate, None)
        if _is_linear(layer) and layer.out_features == values.block * values.count:
            values.members += _producer(qualified(name, gate), layer, values.block, torch.arange(values.count))
        else:
            found[0] = f"{gate} is not an nn.Linear with a row for each of the {values.count} heads' {values.block} value channels"
    indexer = getattr(module, "indexer", None)
    if indexer is None:
        return found
    reader = getattr(indexer, "wq_b", None)
    for i, group in enumerate(found):
        if isinstance(group, _Group) and any(m.module_name == qualified(name, "q_b_proj") for m in group.members):
            if _is_linear(reader) and reader.in_features == group.block:
                group.members += _consumer(qualified(name, "indexer.wq_b"), reader, group.block)
            else:
                found[i] = f"indexer.wq_b is not an nn.Linear reading the {group.block} query latent channels"
    return found


def _query_gated_mla(name: str, module: nn.Module) -> list[_Group | str]:
    """AXK2's attention: DeepSeek-V3's latent attention (values, key/value latent) without q_b_proj. Its fused
    q_gate_proj reads ``cat(q_a_layernorm(q), q)`` of the query latent ``q = q_a_proj(x)`` and makes, head after head,
    the head's query then its output gate, ``o_proj(out * sigmoid(gate))``: the gate rows move with each head's
    values; the query latent's channels are q_a_proj's rows, q_a_layernorm's weight, both halves of q_gate_proj's
    columns and the indexer's wq_b columns (it reads the normed latent)."""
    found = _mla_attention(name, module)[:2]  # values and the key/value latent; the query latent has no q_b_proj here
    fused, down = getattr(module, "q_gate_proj", None), getattr(module, "q_a_proj", None)
    heads, qk_dim, v_dim, rank = (getattr(module, attr, None) for attr in ("num_heads", "qk_head_dim", "v_head_dim", "q_lora_rank"))
    if not all(isinstance(n, int) and n > 0 for n in (heads, qk_dim, v_dim, rank)):
        return found + ["num_heads / qk_head_dim / v_head_dim / q_lora_rank missing"]
    if not (_is_linear(fused) and _is_linear(down) and fused.in_features == 2 * rank and fused.out_features == heads * (qk_dim + v_dim) and down.out_features == rank):
        return found + [f"q_a_proj and q_gate_proj do not fit a query latent of {rank} and {heads} heads of {qk_dim} + {v_dim}"]
    values = found[0]
    if isinstance(values, _Group):
        values.members += _strided_rows(qualified(name, "q_gate_proj"), fused, v_dim, heads, qk_dim + v_dim, qk_dim)
    readers = ["indexer.wq_b"] if getattr(module, "indexer", None) is not None else []
    return found + [_latent(name, module, "q_a_proj", "q_a_layernorm", readers, rank, halves="q_gate_proj")]


def _grouped_output_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """DeepSeek-V4's attention. Its keys are its values (kv_proj's rows, rotated on their last channels, against the
    queries), so the value channels keep their order; two groups move:

    - the grouped low-rank output ``o_b_proj(o_a_proj(out))``: o_a_proj's rows are ``o_groups`` blocks of
      ``o_lora_rank``, each reading its own group of heads, so each block takes its own order -> o_b_proj's columns;
    - the query latent: q_a_proj's rows and q_a_norm's weight -> q_b_proj's columns and, in the compressed sparse
      attention layers, the compressor's indexer's q_b_proj's columns (it reads the normed latent too)."""
    o_a, o_b, q_a = (getattr(module, attr, None) for attr in ("o_a_proj", "o_b_proj", "q_a_proj"))
    groups = getattr(o_a, "n_groups", None)
    found: list[_Group | str] = []
    if _transformers_class(o_a) != "DeepseekV4GroupedLinear" or not (isinstance(groups, int) and groups > 0 and o_a.out_features % groups == 0):
        found.append("o_a_proj is not a DeepseekV4GroupedLinear")
    elif not (_is_linear(o_b) and o_b.in_features == o_a.out_features):
        found.append(f"o_b_proj is not an nn.Linear reading o_a_proj's {o_a.out_features} outputs")
    else:
        rank, blocks = o_a.out_features // groups, torch.arange(groups)
        output = _producer(qualified(name, "o_a_proj"), o_a, rank, blocks) + _consumer(qualified(name, "o_b_proj"), o_b, rank, blocks)
        found.append(_Group(type(module).__name__, rank, groups, output))
    readers = ["q_b_proj"] + (["compressor.indexer.q_b_proj"] if hasattr(getattr(module, "compressor", None), "indexer") else [])
    found.append(_latent(name, module, "q_a_proj", "q_a_norm", readers, q_a.out_features if _is_linear(q_a) else None))
    return found


def _attention(
    name: str, module: nn.Module, groups: int | None = None, output: str = "o_proj", value: str = "v_proj", head_dim_attr: str = "head_dim",
    heads_attr: str | None = None,
) -> _Group | str:
    """LlamaAttention / Qwen2Attention (and the same layout elsewhere): v_proj output dims and o_proj input dims, within each kv head.

    ``groups`` for a class without ``num_key_value_groups`` (ViT, OPT: 1, every head its own
    values); ``output`` and ``value`` the projections' names (OPT: ``out_proj``; T5: ``v``,
    ``o``; Moshi's wrapped ``v_proj.linear``), ``head_dim_attr`` the attribute holding the head size (T5: ``key_value_proj_dim``);
    ``heads_attr``, for a class that keeps no head size, the attribute holding the number of value heads (the head
    size is then the value projection's width over it: Aimv2's pooling head).

    Query head ``h`` reads kv head ``h // num_key_value_groups``; its ``head_dim`` columns of
    o_proj take the permutation of that kv head's ``head_dim`` rows of v_proj.
    """
    v, o = _attr(module, value), _attr(module, output)
    if not (_is_linear(v) and _is_linear(o)):
        return f"{value} and {output} are not nn.Linear"
    head_dim = _attr(module, head_dim_attr)  # a path: Gemma 3n's audio attention keeps it on attn
    if heads_attr is not None:
        heads = _attr(module, heads_attr)
        if not (isinstance(heads, int) and heads > 0 and v.out_features % heads == 0):
            return f"{value} ({v.out_features}) is not {heads_attr} {heads} whole heads"
        head_dim, head_dim_attr = v.out_features // heads, f"{value}'s width over {heads_attr}"
    groups = getattr(module, "num_key_value_groups", None) if groups is None else groups
    if not isinstance(head_dim, int) or not isinstance(groups, int) or head_dim <= 0 or groups <= 0:
        return f"{head_dim_attr} / num_key_value_groups missing"
    if v.out_features % head_dim or o.in_features != v.out_features * groups:
        return f"{value} ({v.out_features}) and {output} ({o.in_features}) do not fit {head_dim_attr} {head_dim} x {groups} groups"
    kv_heads = v.out_features // head_dim
    members = _producer(qualified(name, value), v, head_dim, torch.arange(kv_heads))
    members += _consumer(qualified(name, output), o, head_dim, torch.arange(kv_heads * groups) // groups)
    return _Group(type(module).__name__, head_dim, kv_heads, members)


def _query_head_runs(kv_heads: int, groups: int, per: int) -> Tensor:
    """For o_proj's columns, run after run: which of the values' ``kv_heads * per`` runs each reads, a key/value head
    being ``per`` runs and query head ``q`` reading key/value head ``q // groups``."""
    return ((torch.arange(kv_heads * groups) // groups)[:, None] * per + torch.arange(per)).reshape(-1)


def _cca_attention(name: str, module: nn.Module) -> _Group | str:
    """ZAYA's attention with its Compressed Convolutional Attention projection: the values are ``cat(v_proj_current(x),
    v_proj_delayed(x) one position later)`` viewed as key/value heads of ``head_dim``, so each half head of values
    (``head_dim / 2`` channels, from one of the two projections) takes its own order: value run ``r`` is
    v_proj_current's run ``r`` below ``kv_heads`` and v_proj_delayed's run ``r - kv_heads`` above -> o_proj's columns
    of the query heads reading that key/value head (the convolutions mix only the queries and keys)."""
    o, cca = getattr(module, "o_proj", None), getattr(module, "qkv_proj", None)
    current, delayed = getattr(cca, "v_proj_current", None), getattr(cca, "v_proj_delayed", None)
    head_dim, groups = getattr(module, "head_dim", None), getattr(module, "num_key_value_groups", None)
    if not all(_is_linear(m) for m in (o, current, delayed)):
        return "o_proj, qkv_proj.v_proj_current and qkv_proj.v_proj_delayed are not all nn.Linear"
    if not (isinstance(head_dim, int) and isinstance(groups, int) and head_dim > 0 and groups > 0 and head_dim % 2 == 0):
        return "head_dim (even) / num_key_value_groups missing"
    half = head_dim // 2
    runs = current.out_features // half  # = the key/value heads
    if current.out_features != delayed.out_features or current.out_features % half or o.in_features != 2 * runs * half * groups:
        return f"v_proj_current ({current.out_features}), v_proj_delayed ({delayed.out_features}) and o_proj ({o.in_features}) do not fit half heads of {half} x {groups} groups"
    members = _producer(qualified(name, "qkv_proj.v_proj_current"), current, half, torch.arange(runs))
    members += _producer(qualified(name, "qkv_proj.v_proj_delayed"), delayed, half, torch.arange(runs, 2 * runs))
    return _Group(type(module).__name__, half, 2 * runs, members + _consumer(qualified(name, "o_proj"), o, half, _query_head_runs(runs, groups, 2)))


def _short_conv_attention(name: str, module: nn.Module) -> _Group | str:
    """Inkling 2's attention (sliding and full): Llama's value path through the value projection's short causal
    convolution (a depthwise conv1d with a residual, or the full layers' dynamic one: static taps per channel, dynamic
    taps shared by a head's channels) and an RMS norm without weights over each head, then each query head's output
    gated channel by channel: v_proj.linear's rows, the conv's taps and o_proj.gate_proj's rows -> o_proj.linear."""
    group = _attention(name, module, value="v_proj.linear", output="o_proj.linear")
    if isinstance(group, str):
        return group
    width, heads = group.block * group.count, group.count
    conv, norm, gate = _attr(module, "v_proj.sconv"), _attr(module, "v_proj.norm"), _attr(module, "o_proj.gate_proj")
    if _transformers_class(norm) != "Inkling2UnweightedRMSNorm":
        return "v_proj.norm is not an RMS norm without weights over each head"
    consumer, _ = _consumer_width(group)
    if not (_is_linear(gate) and gate.out_features == consumer.tensor.shape[consumer.dim]):
        return "o_proj.gate_proj is not an nn.Linear with a row for each of o_proj.linear's inputs"
    blocks = torch.arange(heads)
    sconv = qualified(name, "v_proj.sconv")
    if _transformers_class(conv) == "Inkling2ShortConvolution" and isinstance(conv.conv1d, nn.Conv1d) and _is_depthwise(conv.conv1d, width):
        taps = _per_channel(qualified(sconv, "conv1d"), conv.conv1d, group.block, blocks)
    elif _transformers_class(conv) == "Inkling2DynamicShortConvolution" and conv.num_heads == heads and conv.static_weight.shape[1] == width:
        taps = [_Member(sconv, conv, "static_weight", 1, blocks, "per-channel")]
    else:
        return f"v_proj.sconv is not a short convolution over the {heads} key/value heads' {width} channels"
    group.members += taps + _producer(qualified(name, "o_proj.gate_proj"), gate, group.block, consumer.blocks)
    return group


def _short_conv_values(name: str, module: nn.Module) -> _Group | str:
    """Inkling's attention: Llama's value path through v_sconv, a depthwise causal conv1d over v_proj's channels with a
    residual (its taps move with their channels); the relative-position and query/key paths read no values."""
    group = _attention(name, module)
    if isinstance(group, str):
        return group
    sconv, conv = _attr(module, "v_sconv"), _attr(module, "v_sconv.conv1d")
    if not (_transformers_class(sconv) == "InklingShortConvolution" and _is_depthwise(conv, group.block * group.count)):
        return "v_sconv is not a depthwise short convolution over v_proj's channels"
    group.members += _per_channel(qualified(name, "v_sconv.conv1d"), conv, group.block, torch.arange(group.count))
    return group


def _diff_attention(name: str, module: nn.Module) -> _Group | str:
    """DiffLlamaAttention (differential attention): the key/value heads' values split in two halves, each query head
    reading its key/value head's value in both (``[v_g, v_{K/2 + g}]``, ``g`` its head's in the first half); the
    query heads' outputs subtracted in pairs ``h``, ``h + H/2`` (the same channels) and RMS-normed without a scale
    over each pair's ``2 head_dim`` channels (any order). o_proj's input is, output pair ``h`` after pair, the
    channels of key/value head ``h // groups``, then of ``K/2 + h // groups``."""
    group = _attention(name, module)
    if isinstance(group, str):
        return group
    norm, kv_heads, groups = getattr(module, "groupnorm", None), group.count, module.num_key_value_groups
    if not (type(norm) is nn.RMSNorm and norm.weight is None and norm.normalized_shape == (2 * group.block,)) or kv_heads % 2:
        return f"groupnorm is not an nn.RMSNorm without a scale over pairs of {group.block} channels, or {kv_heads} key/value heads do not halve"
    pairs = torch.arange(kv_heads * groups // 2)
    blocks = torch.stack([pairs // groups, kv_heads // 2 + pairs // groups], dim=1).flatten()
    group.members = [m for m in group.members if m.role != "consumer"] + _consumer(qualified(name, "o_proj"), module.o_proj, group.block, blocks)
    return group


def _doge_attention(name: str, module: nn.Module) -> _Group | str:
    """DogeAttention: Llama's value path, and dt_proj reads the values of every key/value head (the dynamic mask's
    step per head): its input columns move with v_proj's rows."""
    group = _attention(name, module)
    dt = getattr(module, "dt_proj", None)
    if isinstance(group, str):
        return group
    width = group.block * group.count
    if not (_is_linear(dt) and dt.in_features == width):
        return f"dt_proj is not an nn.Linear reading v_proj's {width} outputs"
    group.members += _consumer(qualified(name, "dt_proj"), dt, group.block, torch.arange(group.count))
    return group


def _consumer_width(group: _Group) -> tuple[_Member, int]:
    """``group``'s first consumer member and the number of channels along its permuted dim."""
    consumer = next(m for m in group.members if m.role == "consumer")
    return consumer, consumer.tensor.shape[consumer.dim]


def _normed(name: str, module: nn.Module, rule: _Rule, norm: str) -> _Group | str:
    """``rule``'s group with ``module``'s ``norm`` between producer and consumer, an nn.LayerNorm or a Llama-style
    RMS norm over all the consumer's input channels (its statistics the same in any order; its weight and bias move
    with them), or absent (None): Kosmos-2's text attention (inner_attn_ln before out_proj) and feed-forward
    (ffn_layernorm before fc2), BitNet's (attn_sub_norm before o_proj, ffn_sub_norm before down_proj)."""
    group = rule(name, module)
    found = getattr(module, norm, None)
    if isinstance(group, str) or found is None:
        return group
    consumer, width = _consumer_width(group)
    layer_norm = type(found) is nn.LayerNorm and found.normalized_shape == (width,)
    rms_norm = _repeats_forward(type(found), "llama.modeling_llama", "LlamaRMSNorm") and getattr(found, "weight", None) is not None and found.weight.shape == (width,)
    if not (layer_norm or rms_norm):
        return f"{norm} is not an nn.LayerNorm or a Llama-style RMS norm over the {width} channels"
    group.members += _per_channel(qualified(name, norm), found, group.block, consumer.blocks)
    return group


def _channel_scaled(name: str, module: nn.Module, rule: _Rule, scales: Sequence[str], norm: str, norm_class: str) -> _Group | str:
    """``rule``'s group with ``module``'s own per-channel ``scales`` (one value for each of the consumer's input
    channels) moving with the channels, the ``norm`` between them a ``norm_class`` without parameters over all the
    channels (the same in any order): Dory's nGPT blocks, ``o_proj(l2norm(out * sigmoid(gate_proj(x) * s_gate²)))``
    and ``down_proj(l2norm(act(gate_proj(x) * suv_gate) * up_proj(x) * suv_up))``."""
    group = rule(name, module)
    if isinstance(group, str):
        return group
    found = getattr(module, norm, None)
    if _transformers_class(found) != norm_class or any(True for _ in found.parameters()):
        return f"{norm} is not a {norm_class} without parameters"
    consumer, width = _consumer_width(group)
    for attr in scales:
        value = getattr(module, attr, None)
        if not (isinstance(value, Tensor) and value.shape == (width,)):
            return f"{attr} is not one scale for each of the {width} channels"
    group.members += _per_channel(name, module, group.block, consumer.blocks, attrs=scales)
    return group


def _kv_sharing(module: nn.Module) -> str | None:
    """Why an attention layer sharing its keys and values with other layers (Gemma 3n's, Gemma 4's and Kolibri 1.1's
    KV sharing) keeps its value order; None where it shares none."""
    if getattr(module, "store_full_length_kv", False):
        return "it stores its keys and values for KV sharing: the layers or the assistant model reading them would need this order too"
    if getattr(module, "is_kv_shared_layer", False):
        return "it reads another layer's keys and values (KV sharing): that layer's v_proj sets their order"
    return None


def _nvfp4_attention(name: str, module: nn.Module) -> _Group | str:
    """Kolibri 1.1's attention: Llama's value path in its sliding-window layers. Its sparse (indexed) layers round the
    values to NVFP4, one scale per run of 16 channels of a head (the run's largest magnitude, the same in any order
    within the run), so there each run of 16 value channels takes its own order within itself -> o_proj's columns
    of the query heads reading it. A layer sharing its keys and values with others keeps its order (as Gemma's)."""
    shared = _kv_sharing(module)
    if shared is not None:
        return shared
    group = _attention(name, module)
    if isinstance(group, str) or getattr(module, "indexer", None) is None:
        return group
    run, head_dim, groups = 16, group.block, module.num_key_value_groups
    if head_dim % run:
        return f"head_dim {head_dim} is not whole runs of {run} (the NVFP4 scale blocks of the values)"
    per, kv_heads = head_dim // run, group.count
    v, o = _attr(module, "v_proj"), _attr(module, "o_proj")
    members = _producer(qualified(name, "v_proj"), v, run, torch.arange(kv_heads * per)) + _consumer(qualified(name, "o_proj"), o, run, _query_head_runs(kv_heads, groups, per))
    return _Group(type(module).__name__, run, kv_heads * per, members)


def _gemma_attention(name: str, module: nn.Module) -> _Group | str:
    """Gemma 3n's and Gemma 4's text attention: Llama's value path (v_norm without a scale), unless its keys and values
    are shared (KV sharing: a layer storing them for later layers or for an assistant model reading the model's
    ``shared_kv_states``, or a layer reading another's) or its values are k_proj's rows (Gemma 4's ``attention_k_eq_v``)."""
    shared = _kv_sharing(module)
    if shared is not None:
        return shared
    if getattr(module, "v_proj", None) is None:
        return "its values are its keys (attention_k_eq_v): the keys' rotary embedding ties their channels' order"
    return _scale_free_v_norm(name, module, _attention)


def _per_layer_input_gate(name: str, module: nn.Module) -> str | list:
    """Gemma 3n's and Gemma 4's decoder layers (EmbeddingGemma 2's PLE block): ``per_layer_projection(act(per_layer_input_gate(h)) * per_layer_input)``,
    the per-layer input this layer's slice of the model's per-layer embeddings, normed by one scale all layers share."""
    if getattr(module, "per_layer_input_gate", None) is None:  # a model without per-layer inputs
        return []
    return (
        "per_layer_input_gate's outputs multiply the model's per-layer inputs, normed with one scale all layers share "
        "(per_layer_projection_norm): their channels cannot take this layer's order alone"
    )


def _scale_free_v_norm(name: str, module: nn.Module, rule: _Rule, norm_attr: str = "v_norm") -> _Group | str:
    """``rule``'s group where ``norm_attr`` (v_norm; Muse Spark's o_norm, on each head's attention output), an RMS norm
    over each head's channels, has no parameters (any order gives the same norm); a scaled one stays in place."""
    norm = getattr(module, norm_attr, None)
    if not isinstance(norm, nn.Module) or any(True for _ in norm.parameters()):
        return f"{norm_attr} is not a norm without a scale over each head's channels"
    return rule(name, module)


def _clipped(name: str, module: nn.Module, rule: _Rule, layers: Sequence[str]) -> _Group | str:
    """``rule``'s group over Gemma 4's clippable linears (``layers``, each an ``nn.Linear`` at ``.linear``), where their
    input and output clamps are one bound for all the channels (a per-channel bound would not move with them)."""
    for attr in layers:
        wrapper = getattr(module, attr, None)
        if _transformers_class(wrapper) != "Gemma4ClippableLinear":
            return f"{attr} is not a Gemma4ClippableLinear"
        if any(buffer.numel() != 1 for buffer in wrapper.buffers()):
            return f"{attr} clamps its channels with bounds of their own"
    return rule(name, module)


def _gated_output_attention(name: str, module: nn.Module, gate_attr: str = "gate_proj", output: str = "o_proj") -> _Group | str:
    """AfmoeAttention: Llama's value path, and the attention output gated channel by channel,
    ``o_proj(out * sigmoid(gate_proj(x)))``: gate_proj's rows of each query head move with that head's values
    (``gate_attr`` and ``output`` may be paths: NeoMME's output_projection.gate_proj and output_projection.o_proj)."""
    group = _attention(name, module, output=output)
    gate = _attr(module, gate_attr)
    if isinstance(group, str):
        return group
    consumer = next(m for m in group.members if m.role == "consumer")
    if not (_is_linear(gate) and gate.out_features == consumer.module.in_features):
        return f"{gate_attr} is not an nn.Linear with {output}'s {consumer.module.in_features} inputs"
    group.members += _producer(qualified(name, gate_attr), gate, group.block, consumer.blocks)
    return group


def _neomme_attention(name: str, module: nn.Module) -> _Group | str:
    """NeoMME's attention: Llama's value path with per-channel output gates (output_projection's gate_proj rows move
    with each query head's values, :func:`_gated_output_attention`); its exclusive self-attention removes from each
    head's output its projection on that position's normalised value (a dot product and a norm: the same in any
    order of a head's channels). The first and last full-attention layers add the model's shared value_embeddings to
    their values, embedding columns no rule moves: those layers keep their order."""
    config, layer = getattr(module, "config", None), getattr(module, "layer_idx", None)
    full = [i for i, kind in enumerate(getattr(config, "layer_types", None) or ()) if kind == "full_attention"]
    if not full or not isinstance(layer, int):
        return "no layer_types / layer_idx to tell whether this layer adds the value embeddings"
    if layer in (full[0], full[-1]):
        return "its values add the model's shared value_embeddings (embedding columns no rule moves)"
    return _gated_output_attention(name, module, gate_attr="output_projection.gate_proj", output="output_projection.o_proj")


def _head_gated_attention(name: str, module: nn.Module) -> _Group | str:
    """Step 3.7's attention: Llama's value path, each head's output scaled whole by its sigmoid(g_proj(x)) (one gate per
    head, ``gate_per_head``); its per-channel gating variant is refused."""
    if not getattr(module, "gate_per_head", False):
        return "its output gate is per channel, not per head: no rule moves g_proj's rows"
    return _attention(name, module)


def _laguna_attention(name: str, module: nn.Module) -> _Group | str:
    """LagunaAttention: the output gated by ``softplus(g_proj(x))``, one gate per head (the same for all of a head's
    channels: Llama's value path) or per channel (g_proj's rows move with the values, as AFMoE's gate_proj's)."""
    if getattr(module, "gate_per_head", False):
        return _attention(name, module)
    return _gated_output_attention(name, module, gate_attr="g_proj")


def _query_gated_attention(name: str, module: nn.Module, query: str = "q_proj") -> _Group | str:
    """Qwen3-Next / Qwen3.5 attention (MiniCPM5-MoE's: ``query`` q_gate_proj): Llama's value path, and q_proj's rows are,
    head after head, that head's query and its output gate, ``o_proj(out * sigmoid(gate))``: each query head's gate
    rows move with the values it reads."""
    group = _attention(name, module)
    q = getattr(module, query, None)
    if isinstance(group, str):
        return group
    consumer = next(m for m in group.members if m.role == "consumer")
    heads, head_dim = len(consumer.blocks), group.block
    if not (_is_linear(q) and q.out_features == 2 * heads * head_dim):
        return f"{query} is not an nn.Linear with a query and a gate of {head_dim} for each of {heads} heads"
    for head, kv_head in enumerate(consumer.blocks.tolist()):
        group.members += _producer(qualified(name, query), q, head_dim, torch.tensor([kv_head]), offset=(2 * head + 1) * head_dim)
    return group


def _gated_delta_net(name: str, module: nn.Module) -> _Group | str:
    """Qwen3.5's and Qwen3-Next's Gated DeltaNet (their linear-attention layers): the value channels, one order for
    every value head (the gated RMS norm's weight is one ``head_v_dim`` vector shared by the heads). They are the
    value rows of the input projection, the depthwise causal conv1d's filters (and bias) of the value channels
    (after the queries' and keys'), the norm's gate rows z, the norm's weight and out_proj's columns; the delta rule
    treats every value channel alike, the norm's mean square is the same in any order.

    Qwen3.5 projects with in_proj_qkv (all queries, keys, then values) and in_proj_z; Qwen3-Next with one
    in_proj_qkvz whose rows are, key head after key head, its query, its key, then the values and the z of the
    ``num_v_heads // num_k_heads`` value heads that read it."""
    out, conv, norm = (getattr(module, attr, None) for attr in ("out_proj", "conv1d", "norm"))
    heads, head_dim, k_heads, k_dim = (getattr(module, attr, None) for attr in ("num_v_heads", "head_v_dim", "num_k_heads", "head_k_dim"))
    if not all(isinstance(n, int) and n > 0 for n in (heads, head_dim, k_heads, k_dim)) or heads % k_heads:
        return "num_v_heads / head_v_dim / num_k_heads / head_k_dim missing, or the value heads do not share the key heads"
    width, key_dim, per = heads * head_dim, k_heads * k_dim, heads // k_heads
    channels = 2 * key_dim + width
    if not (_is_linear(out) and out.in_features == width and isinstance(conv, nn.Conv1d) and _is_depthwise(conv, channels)):
        return f"out_proj and a depthwise conv1d do not fit {heads} value heads of {head_dim} after 2 x {key_dim} key channels"
    weight = getattr(norm, "weight", None)
    if not (isinstance(weight, Tensor) and weight.shape == (head_dim,) and set(dict(norm.named_parameters())) == {"weight"}):
        return f"norm has no per-channel weight of the {head_dim} value channels"
    one = torch.zeros(1, dtype=torch.long)
    shared = torch.zeros(heads, dtype=torch.long)
    qkv, z_proj, fused = (getattr(module, attr, None) for attr in ("in_proj_qkv", "in_proj_z", "in_proj_qkvz"))
    if _is_linear(qkv) and _is_linear(z_proj) and qkv.out_features == channels and z_proj.out_features == width:
        members = _producer(qualified(name, "in_proj_qkv"), qkv, head_dim, shared, offset=2 * key_dim) + _producer(qualified(name, "in_proj_z"), z_proj, head_dim, shared)
    elif _is_linear(fused) and fused.out_features == 2 * (key_dim + width):
        stride = 2 * (k_dim + per * head_dim)  # one key head's rows: q, k, its value heads' v, then their z
        members = [
            m
            for head in range(heads)
            for part in (0, per)  # v, z
            for m in _producer(qualified(name, "in_proj_qkvz"), fused, head_dim, one, offset=(head // per) * stride + 2 * k_dim + (part + head % per) * head_dim)
        ]
    else:
        return f"no in_proj_qkv and in_proj_z, nor an in_proj_qkvz, for {heads} value heads of {head_dim} and {k_heads} key heads of {k_dim}"
    members += _per_channel(qualified(name, "conv1d"), conv, head_dim, shared, offset=2 * key_dim) + _per_channel(qualified(name, "norm"), norm, head_dim)
    return _Group(type(module).__name__, head_dim, 1, members + _consumer(qualified(name, "out_proj"), out, head_dim, shared))


def _kimi_delta_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """Kimi Linear's delta attention (Kimi Delta Attention: a gated delta net whose decay is per key channel; Bailing
    Hybrid's the same). The value channels, one order for every head (the gated RMS norm's weight is one ``head_dim``
    vector shared by the heads): v_proj's rows, the depthwise causal conv1d's filters of the values (after the
    queries' and keys'), the output gate's rows (Bailing's g_proj; Kimi's g_b_proj), o_norm's weight and o_proj's
    columns; the delta rule treats every value channel alike (the decay acts on the state's key channels), the
    norm's mean square is the same in any order. Kimi's output gate is a low-rank bottleneck ``g_b_proj(g_a_proj(x))``:
    g_a_proj's rows -> g_b_proj's columns, a second group."""
    gate = "g_b_proj" if hasattr(module, "g_a_proj") else "g_proj"
    v_proj, conv, g, norm, out = (getattr(module, attr, None) for attr in ("v_proj", "conv1d", gate, "o_norm", "o_proj"))
    heads, head_dim = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    if not (isinstance(heads, int) and isinstance(head_dim, int) and heads > 0 and head_dim > 0):
        return ["num_heads / head_dim missing"]
    width = heads * head_dim
    found: list[_Group | str] = [_two_layer_mlp(name, module, "g_a_proj", gate, None)] if gate == "g_b_proj" else []
    if not (all(_is_linear(m) for m in (v_proj, g, out)) and v_proj.out_features == g.out_features == out.in_features == width and _is_depthwise(conv, 3 * width)):
        return [f"v_proj, {gate}, o_proj and a depthwise conv1d do not fit {heads} heads of {head_dim} after 2 x {width} query and key channels", *found]
    weight = getattr(norm, "weight", None)
    if not (isinstance(weight, Tensor) and weight.shape == (head_dim,) and set(dict(norm.named_parameters())) == {"weight"}):
        return [f"o_norm has no per-channel weight of the {head_dim} value channels", *found]
    shared = torch.zeros(heads, dtype=torch.long)
    members = _producer(qualified(name, "v_proj"), v_proj, head_dim, shared) + _per_channel(qualified(name, "conv1d"), conv, head_dim, shared, offset=2 * width)
    members += _producer(qualified(name, gate), g, head_dim, shared) + _per_channel(qualified(name, "o_norm"), norm, head_dim)
    return [_Group(type(module).__name__, head_dim, 1, members + _consumer(qualified(name, "o_proj"), out, head_dim, shared)), *found]


def _mamba_mixer(name: str, module: nn.Module) -> _Group | str:
    """MambaMixer (Mamba 1; Falcon-Mamba's and Jamba's too): the ``intermediate_size`` inner channels, each its own
    selective scan. They are both halves of in_proj's rows (the scanned x and the gate z), the depthwise conv1d's
    filters and bias, dt_proj's rows and bias (each channel's step), A_log's and D's rows (and Falcon-Mamba's
    placeholder dt_layernorm weight), and the inputs of x_proj and out_proj."""
    in_proj, x_proj, dt_proj, out_proj, conv = (getattr(module, attr, None) for attr in ("in_proj", "x_proj", "dt_proj", "out_proj", "conv1d"))
    width = getattr(module, "intermediate_size", None)
    if not all(_is_linear(m) for m in (in_proj, x_proj, out_proj)) or not isinstance(dt_proj, nn.Linear) or not isinstance(width, int):
        return "in_proj, x_proj, dt_proj and out_proj are not nn.Linear"
    per_channel = {attr: getattr(module, attr, None) for attr in ("A_log", "D")}
    if (
        in_proj.out_features != 2 * width or dt_proj.out_features != width or x_proj.in_features != width or out_proj.in_features != width
        or not _is_depthwise(conv, width) or not all(isinstance(t, Tensor) and t.shape[0] == width for t in per_channel.values())
    ):  # fmt: skip
        return f"in_proj, conv1d, dt_proj, A_log, D, x_proj and out_proj do not share {width} inner channels"
    members = _halves(qualified(name, "in_proj"), in_proj, width)
    members += _per_channel(qualified(name, "conv1d"), conv, width) + _producer(qualified(name, "dt_proj"), dt_proj, width)
    members += _per_channel(name, module, width, attrs=tuple(per_channel))
    dt_norm = getattr(module, "dt_layernorm", None)
    if isinstance(getattr(dt_norm, "weight", None), Tensor) and dt_norm.weight.shape == (width,):
        members += _per_channel(qualified(name, "dt_layernorm"), dt_norm, width)
    members += _consumer(qualified(name, "x_proj"), x_proj, width) + _consumer(qualified(name, "out_proj"), out_proj, width)
    return _Group(type(module).__name__, width, 1, members)


def _mamba2_mixer(name: str, module: nn.Module) -> _Group | str:
    """Mamba2Mixer (Bamba's, Nemotron-H's, Zamba2's, Granite 4's the same): within each of ``num_heads`` heads, its
    ``head_dim`` channels, each its own scan (the head's A, D and step are shared by its channels). They are in_proj's
    gate rows z and scanned rows x (before B, C and the steps), the depthwise conv1d's filters of x, the gated norm's
    weight (its groups of ``group_size`` channels hold whole heads) and out_proj's columns."""
    in_proj, out_proj, conv, norm = (getattr(module, attr, None) for attr in ("in_proj", "out_proj", "conv1d", "norm"))
    heads, head_dim, width = (getattr(module, attr, None) for attr in ("num_heads", "head_dim", "intermediate_size"))
    if not (_is_linear(in_proj) and _is_linear(out_proj)) or not all(isinstance(n, int) and n > 0 for n in (heads, head_dim, width)):
        return "in_proj and out_proj are not nn.Linear, or num_heads / head_dim / intermediate_size missing"
    conv_dim = getattr(conv, "in_channels", None)
    group = getattr(norm, "group_size", None)
    if group is None and isinstance(getattr(norm, "n_groups", None), int) and norm.n_groups > 0:  # Falcon-H1's gated norm
        group = width // norm.n_groups
    if heads * head_dim != width or out_proj.in_features != width or not _is_depthwise(conv, conv_dim) or in_proj.out_features != width + conv_dim + heads:
        return f"in_proj, conv1d and out_proj do not fit {heads} heads of {head_dim} (z, x, B, C, steps)"
    weight = getattr(norm, "weight", None)
    gated_norm = isinstance(weight, Tensor) and weight.shape == (width,) and isinstance(group, int) and group % head_dim == 0 and set(dict(norm.named_parameters())) == {"weight"}
    if not (gated_norm or isinstance(norm, nn.Identity)):  # Falcon-H1 without its norm gates in the scan
        return f"norm is not a gated norm with a weight per channel over groups of whole heads of {head_dim}"
    blocks = torch.arange(heads)
    members = _halves(qualified(name, "in_proj"), in_proj, width, head_dim, blocks)
    members += _per_channel(qualified(name, "conv1d"), conv, head_dim, blocks) + (_per_channel(qualified(name, "norm"), norm, head_dim, blocks) if gated_norm else [])
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, "out_proj"), out_proj, head_dim, blocks))


def _falcon_h1_mixer(name: str, module: nn.Module) -> _Group | str:
    """FalconH1Mixer: Mamba 2's mixer with in_proj's outputs scaled row by row by ``mup_vector`` (z, x, B, C and the
    steps each by its own multiplier): the z and x rows that move must share their scale."""
    mup, width = getattr(module, "mup_vector", None), getattr(module, "intermediate_size", None)
    if not isinstance(mup, Tensor) or not isinstance(width, int) or mup.shape[-1] < 2 * width:
        return "mup_vector does not cover in_proj's z and x rows"
    flat = mup.reshape(-1)
    if not all(bool((flat[offset : offset + width] == flat[offset]).all()) for offset in (0, width)):
        return "mup_vector scales the z or x rows of in_proj unevenly: a channel's scale would not move with it"
    return _mamba2_mixer(name, module)


_TORCH_FEED_FORWARD = functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation="activation")  # linear2(dropout(activation(linear1(x))))
_HEADS_OWN_VALUES = functools.partial(_attention, groups=1)  # ViT-style: no grouped kv heads
_SQUEEZE_EXCITATION = functools.partial(_two_layer_mlp, first="convolutions.0", second="convolutions.2", activation="convolutions.1")  # PP-LCNet's
_OUT_PROJ_ATTENTION = functools.partial(_attention, groups=1, output="out_proj")  # BART, Whisper, CLIP, wav2vec 2.0
_H_TO_4H_MLP = functools.partial(_two_layer_mlp, first="dense_h_to_4h", second="dense_4h_to_h", activation="act")  # GPT-NeoX, Falcon
_T5_FEED_FORWARD = functools.partial(_two_layer_mlp, first="wi", second="wo", activation="act")  # wo(dropout(act(wi(x))))
_T5_GATED = functools.partial(_gated_mlp, gate="wi_0", up="wi_1", down="wo", act="act")
_T5_ATTENTION = functools.partial(_attention, groups=1, value="v", output="o", head_dim_attr="key_value_proj_dim")
_UP_DOWN_MLP = functools.partial(_two_layer_mlp, first="up_proj", second="down_proj", activation="act_fn")  # Nemotron, Arcee
_LINEAR_1_2_MLP = functools.partial(_two_layer_mlp, first="linear_1", second="linear_2", activation="act")  # LLaVA's projector
_LINEAR_FC_MLP = functools.partial(_two_layer_mlp, first="linear_fc1", second="linear_fc2", activation="act_fn")  # Qwen3-VL's vision MLP and merger
# GLM-4V's patch merger: down_proj(act(gate_proj(h)) * up_proj(h)), h = gelu(post_projection_norm(proj(x)))
# Granite Speech's encoder: its mid-network CTC branch, out -> softmax over the channels (it permutes with them) -> out_mid
_GRANITE_SPEECH_MID_CTC = functools.partial(_two_layer_mlp, first="out", second="out_mid", activation=None)
# Gemma 3n's and Gemma 4's audio light conv: a conformer convolution between two nn.Linear, with an RMS norm (3n: silu fixed)
_LIGHT_CONV1D = functools.partial(_conformer_convolution, up="linear_start", depthwise="depthwise_conv1d", norm="conv_norm", act=None, down="linear_end")
_CONV1_CONV2 = functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation=None)  # two convs, nothing (or the forward's own activation) between
# the VQ-VAE image tokenizers' blocks (Janus's, Chameleon's, Apertus 1.5's): conv1 -> GroupNorm -> swish (the forward's) -> conv2,
# and a one-head attention over the channels, v -> proj_out
_VQ_RESNET_BLOCK = functools.partial(_group_norm_resnet_block, activation=None)
_VQ_ATTN_BLOCK = functools.partial(_two_layer_mlp, first="v", second="proj_out", activation=None)
_LINEAR1_LINEAR2 = functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation=None)  # the forward's own activation between
_GLM_PATCH_MERGER = _all_of(_gated_mlp, functools.partial(_normed_fan_out, producer="proj", norm="post_projection_norm", consumers=("gate_proj", "up_proj")))
_VALUE_PROJ_ATTENTION = functools.partial(_attention, groups=1, value="value", output="proj", head_dim_attr="attention_head_size")  # PVT v2, V-JEPA 2
_ACT_LAYERS = functools.partial(_relu_layers, activation="act")  # D-FINE's and DEIMv2's MLP
_DENSE_OUT_HEAD = functools.partial(_two_layer_mlp, first="dense", second="out_proj", activation=None)  # RoBERTa's classification head (tanh)
_MLM_HEAD = functools.partial(_normed_fan_out, producer="dense", norm="layer_norm", consumers=("decoder",))  # RoBERTa's masked-LM head
_SAM_ATTENTION = functools.partial(_stacked_qkv_attention, output="proj", heads_attr="num_attention_heads")
# the local and the global values (value, value_global), each head's rows in one order -> output.dense
_LONGFORMER_ATTENTION = functools.partial(_bert_attention, value_attr=("value", "value_global"), heads_attr="num_heads", head_dim_attr="head_dim")
_WAV2VEC2_FEED_FORWARD = functools.partial(_two_layer_mlp, first="intermediate_dense", second="output_dense", activation="intermediate_act_fn")


# a rule: the group of a module's hidden channels, or why it has none; a list for a module with several
_Rule = Callable[[str, nn.Module], "_Group | str | list[_Group | str]"]


def _family(module: str, rules: Mapping[str, tuple[_Rule, tuple[str, ...]]]) -> dict:
    """``_RULES`` entries for the classes of one ``transformers.models.<module>``."""
    return {(f"transformers.models.{module}", cls): rule for cls, rule in rules.items()}


def _families(families: Iterable[tuple[str, str]], rules: Mapping[str, tuple[_Rule, tuple[str, ...]]]) -> dict:
    """:func:`_family` for families that share a layout: ``(class prefix, module)`` pairs, ``rules`` by class name
    with ``{}`` for the prefix."""
    return {key: rule for prefix, module in families for key, rule in _family(module, {cls.format(prefix): r for cls, r in rules.items()}).items()}


def _bert_family(
    module: str, family: str, value_attr: str = "value", activation: str | None = "intermediate_act_fn", attention: _Rule | None = None
) -> dict:
    """The BERT layout under another name (RoBERTa, XLM-R, ELECTRA, DeBERTa-v2): the layer's feed-forward and the attention values.
    ``activation``: as :func:`_bert_layer`'s; ``attention``: a rule of the family's own for its attention (RoFormer's)."""
    return _family(module, {
        f"{family}Layer": (functools.partial(_bert_layer, family=family, activation=activation), ("attention", "crossattention")),
        f"{family}Attention": (attention or functools.partial(_bert_attention, value_attr=value_attr), ()),
    })  # fmt: skip


def _segformer_mix_mlp(
    name: str, module: nn.Module, first: str = "fc1", second: str = "fc2", activation: str = "activation_fn", elementwise: Sequence[str] = ()
) -> _Group | str:
    """SegformerMixMLP: fc2(act(dwconv(fc1(x)))), dwconv a depthwise 3x3 over fc1's channels (per channel: it moves with them).
    PVT v2's the same under other names (``first``, ``second``, ``activation``), with a ReLU or identity after dense1
    (``elementwise``: more modules that must act elementwise)."""
    fc1, fc2, conv = getattr(module, first, None), getattr(module, second, None), getattr(getattr(module, "dwconv", None), "dwconv", None)
    if not (_is_linear(fc1) and _is_linear(fc2) and isinstance(conv, nn.Conv2d)):
        return f"{first}, dwconv.dwconv and {second} are not nn.Linear, nn.Conv2d and nn.Linear"
    width = fc1.out_features
    if not (_is_depthwise(conv, width) and fc2.in_features == width):
        return f"dwconv.dwconv is not depthwise over {first}'s {width} channels, or {second} reads {fc2.in_features}"
    for attr in (activation, *elementwise):
        if (refused := _not_elementwise(module, attr)) is not None:
            return refused
    members = _producer(qualified(name, first), fc1, width) + _per_channel(qualified(name, "dwconv.dwconv"), conv, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, second), fc2, width))


_CONVNEXT_MLP = functools.partial(_two_layer_mlp, first="pwconv1", second="pwconv2", activation="act")  # channels-last Linears


def _convnextv2_mlp(name: str, module: nn.Module) -> _Group | str:
    """ConvNextV2Layer: pwconv2(grn(act(pwconv1(x)))). GRN scales each channel by its spatial L2 norm over the
    channels' mean norm (the mean is the same in any order) with per-channel ``weight``/``bias`` ``[1, 1, 1, C]``."""
    group = _CONVNEXT_MLP(name, module)
    grn = getattr(module, "grn", None)
    if isinstance(group, str):
        return group
    width = group.block
    if type(grn).__name__ != "ConvNextV2GRN" or not all(isinstance(getattr(grn, a, None), Tensor) and getattr(grn, a).shape == (1, 1, 1, width) for a in ("weight", "bias")):
        return f"grn is not a ConvNextV2GRN over the {width} channels"
    grn_members = [_Member(qualified(name, "grn"), grn, attr, 3, _uniform(width, width), "per-channel") for attr in ("weight", "bias")]
    return _Group(type(module).__name__, width, 1, group.members + grn_members)


def _mobilenet_v2_block(name: str, module: nn.Module, layer: str = "MobileNetV2ConvLayer") -> _Group | str:
    """MobileNetV2InvertedResidual (MobileViT's too): reduce_1x1(conv_3x3(expand_1x1(x))), each a ``layer`` (its conv,
    then BatchNorm and an activation when present; TF-style padding only pads): the expanded channels run from
    expand_1x1's conv through its BatchNorm, the depthwise conv_3x3 and its BatchNorm, into reduce_1x1's conv."""
    expand, depthwise, reduce = (getattr(module, attr, None) for attr in ("expand_1x1", "conv_3x3", "reduce_1x1"))
    if not all(type(part).__name__ == layer and isinstance(getattr(part, "convolution", None), nn.Conv2d) for part in (expand, depthwise, reduce)):
        return f"expand_1x1, conv_3x3 and reduce_1x1 are not {layer}s"
    up, dw, down = expand.convolution, depthwise.convolution, reduce.convolution
    width = up.out_channels
    if up.groups != 1 or down.groups != 1 or down.in_channels != width or not _is_depthwise(dw, width):
        return f"conv_3x3 is not depthwise over expand_1x1's {width} channels, or reduce_1x1 reads {down.in_channels}"
    members = _producer(qualified(name, "expand_1x1.convolution"), up, width) + _per_channel(qualified(name, "conv_3x3.convolution"), dw, width)
    for attr in ("expand_1x1", "conv_3x3"):
        after = _norm_and_activation(name, module, attr, width)
        if isinstance(after, str):
            return after
        members += after
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "reduce_1x1.convolution"), down, width))


def _norm_and_activation(name: str, module: nn.Module, attr: str, width: int) -> list[_Member] | str:
    """What follows the conv of MobileNetV2's (and MobileViT's) conv layer ``module.<attr>``: its BatchNorm's members
    over ``width`` channels when it has one, and a check that its activation (if any) is elementwise."""
    part = getattr(module, attr)
    norm, act = part.normalization, part.activation
    if norm is not None and not (isinstance(norm, nn.BatchNorm2d) and norm.num_features == width):
        return f"{attr}.normalization is not a BatchNorm2d over the {width} channels"
    if act is not None and not _elementwise_activation(act):
        return f"{attr}.activation {getattr(act, '__name__', type(act).__name__)} is not a known elementwise activation"
    return [] if norm is None else _per_channel(qualified(name, f"{attr}.normalization"), norm, width)


def _mobilevit_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """MobileViT's block ``fusion(cat(x, conv_projection(fold(transformer(unfold(conv_1x1(conv_kxk(x))))))))``, each a
    MobileViTConvLayer (a conv, then a BatchNorm and an activation when present): conv_kxk's channels -> conv_1x1;
    conv_projection's channels -> fusion's input channels after the residual's (the second half of the concat). The
    downsampling block and the transformer by their own rules."""
    parts = {attr: getattr(module, attr, None) for attr in ("conv_kxk", "conv_1x1", "conv_projection", "fusion")}
    if not all(type(part).__name__ == "MobileViTConvLayer" and type(getattr(part, "convolution", None)) is nn.Conv2d and part.convolution.groups == 1 for part in parts.values()):
        return ["conv_kxk, conv_1x1, conv_projection and fusion are not MobileViTConvLayers of ungrouped convs"]
    found: list[_Group | str] = []
    for first, second, offset in (("conv_kxk", "conv_1x1", 0), ("conv_projection", "fusion", parts["conv_projection"].convolution.out_channels)):
        up, down = parts[first].convolution, parts[second].convolution
        width = up.out_channels
        if down.in_channels != offset + width:
            found.append(f"{second} reads {down.in_channels} channels, not {first}'s {width} after {offset}")
            continue
        after = _norm_and_activation(name, module, first, width)
        if isinstance(after, str):
            found.append(after)
            continue
        consumer = _consumer(qualified(name, f"{second}.convolution"), down, width, _uniform(width, width), offset=offset)
        found.append(_Group(type(module).__name__, width, 1, _producer(qualified(name, f"{first}.convolution"), up, width) + after + consumer))
    return found


def _conv_layer_ffn(name: str, module: nn.Module) -> _Group | str:
    """MobileViTV2FFN: conv2(conv1(x)), each a MobileViTV2ConvLayer of a 1 x 1 conv; conv1's activation (no norm) acts
    per channel between them."""
    first, second = getattr(module, "conv1", None), getattr(module, "conv2", None)
    up, down = getattr(first, "convolution", None), getattr(second, "convolution", None)
    if not (isinstance(up, nn.Conv2d) and isinstance(down, nn.Conv2d) and up.groups == down.groups == 1 and down.in_channels == up.out_channels):
        return "conv1.convolution and conv2.convolution are not ungrouped nn.Conv2d over the same channels"
    if first.normalization is not None or not (first.activation is None or _elementwise_activation(first.activation)):
        return "conv1 normalizes, or its activation is not a known elementwise one"
    width = up.out_channels
    return _Group(type(module).__name__, width, 1, _producer(qualified(name, "conv1.convolution"), up, width) + _consumer(qualified(name, "conv2.convolution"), down, width))


def _value_heads(kind: str, value: str, v: nn.Module, output: str, o: nn.Module, heads: int, head_dim: int) -> _Group:
    """Every head's values its own: ``v``'s rows, ``heads`` blocks of ``head_dim``, -> the same blocks of ``o``'s
    columns (``value`` and ``output`` their full names)."""
    blocks = torch.arange(heads)
    return _Group(kind, head_dim, heads, _producer(value, v, head_dim, blocks) + _consumer(output, o, head_dim, blocks))


def _deformable_attention(name: str, module: nn.Module) -> _Group | str:
    """Deformable DETR's multiscale deformable attention: value_proj's rows, ``n_heads`` blocks of ``d_model //
    n_heads`` channels (padding positions zeroed), each channel bilinearly sampled at its head's points and summed
    with its head's weights on its own -> output_proj's columns; sampling_offsets and attention_weights read the
    queries."""
    v, o = _attr(module, "value_proj"), _attr(module, "output_proj")
    heads, width = getattr(module, "n_heads", None), getattr(module, "d_model", None)
    if not (_is_linear(v) and _is_linear(o)):
        return "value_proj and output_proj are not nn.Linear"
    if not (isinstance(heads, int) and isinstance(width, int) and heads > 0 and width % heads == 0):
        return "n_heads / d_model missing"
    if v.out_features != width or o.in_features != width:
        return f"value_proj ({v.out_features}) and output_proj ({o.in_features}) do not have d_model {width} channels"
    return _value_heads(type(module).__name__, qualified(name, "value_proj"), v, qualified(name, "output_proj"), o, heads, width // heads)


def _outside_value_attention(name: str, module: nn.Module, value: str, attention: str) -> _Group | str:
    """DAB-DETR's decoder attention layers: the layer's own value projection ``value``, split by its DabDetrAttention
    ``attention`` into ``attention_heads`` heads of ``values_head_dim`` channels -> that attention's output_proj."""
    v, attn = _attr(module, value), getattr(module, attention, None)
    o = _attr(attn, "output_proj")
    heads, head_dim = getattr(attn, "attention_heads", None), getattr(attn, "values_head_dim", None)
    if not (_is_linear(v) and _is_linear(o)):
        return f"{value} and {attention}.output_proj are not nn.Linear"
    if not (isinstance(heads, int) and isinstance(head_dim, int) and v.out_features == o.in_features == heads * head_dim):
        return f"{value} ({v.out_features}) and {attention}.output_proj ({o.in_features}) are not {attention}'s attention_heads x values_head_dim"
    return _value_heads(type(module).__name__, qualified(name, value), v, qualified(name, f"{attention}.output_proj"), o, heads, head_dim)


def _pre_act_residual(name: str, module: nn.Module) -> _Group | str:
    """DPT's and Depth Anything's pre-activation residual unit ``x + bn2(conv2(act2(bn1(conv1(act1(x))))))`` (the
    BatchNorms when ``use_batch_norm``): convolution1's channels, with batch_norm1's -> convolution2."""
    found = _two_layer_mlp(name, module, "convolution1", "convolution2", "activation2")
    if not isinstance(found, _Group) or not getattr(module, "use_batch_norm", False):
        return found
    norm = getattr(module, "batch_norm1", None)
    if not (type(norm) is nn.BatchNorm2d and norm.num_features == found.block):
        return f"batch_norm1 is not a BatchNorm2d over the {found.block} channels of convolution1"
    found.members += _per_channel(qualified(name, "batch_norm1"), norm, found.block)
    return found


def _reassemble(name: str, module: nn.Module) -> _Group | str:
    """DPT's and Depth Anything's reassemble layer ``resize(projection(x))``: the 1 x 1 projection's channels -> the
    strided 3 x 3 resize conv (factor < 1); a transposed conv (factor > 1) takes no 2:4 mask, an Identity (factor 1)
    leaves the channels as the layer's output."""
    resize = getattr(module, "resize", None)
    if isinstance(resize, nn.Identity):
        return "resize is an Identity (factor 1): projection's channels are the layer's output"
    if not isinstance(resize, nn.Conv2d):
        return f"resize is a {type(resize).__name__}, which takes no 2:4 mask: no layer to permute projection's channels for"
    return _two_layer_mlp(name, module, "projection", "resize", activation=None)


def _depth_head(name: str, module: nn.Module) -> list[_Group | str]:
    """Depth Anything's depth head ``act2(conv3(act1(conv2(interpolate(conv1(x))))))``: conv1's channels, resized
    each on its own -> conv2; conv2's -> conv3."""
    return [_two_layer_mlp(name, module, "conv1", "conv2", activation=None), _two_layer_mlp(name, module, "conv2", "conv3", "activation1")]


def _short_conv(name: str, module: nn.Module, conv_attr: str = "conv") -> _Group | str:
    """LFM2's (and LFM3's) gated short convolution ``out_proj(C * conv(B * x))``, B, C and x the three chunks of
    in_proj's rows and conv depthwise: every channel on its own, so one order for the three chunks' rows, the conv's
    filters and bias -> out_proj's columns. LFM3-VL's vision short conv the same over the image (``conv_attr``
    spatial_conv, a depthwise nn.Conv2d over the patches' grid)."""
    proj, conv, out = getattr(module, "in_proj", None), getattr(module, conv_attr, None), getattr(module, "out_proj", None)
    if not (_is_linear(proj) and _is_linear(out)):
        return "in_proj and out_proj are not nn.Linear"
    width = out.in_features
    if proj.out_features != 3 * width:
        return f"in_proj's {proj.out_features} outputs are not three chunks of out_proj's {width} inputs"
    if not (isinstance(conv, (nn.Conv1d, nn.Conv2d)) and _is_depthwise(conv, width)):
        return f"{conv_attr} is not a depthwise nn.Conv1d or nn.Conv2d over the {width} channels"
    chunks = [m for offset in (0, width, 2 * width) for m in _producer(qualified(name, "in_proj"), proj, width, _uniform(width, width), offset=offset)]
    return _Group(type(module).__name__, width, 1, chunks + _per_channel(qualified(name, conv_attr), conv, width) + _consumer(qualified(name, "out_proj"), out, width))


def _mlstm_layer(name: str, module: nn.Module) -> _Group | str:
    """xLSTM's mLSTM layer ``out_proj(sigmoid(o) * multihead_norm(mlstm(q, k, v)))``: the cell weighs every value
    channel of a head alike (its state and normalizer come from q, k and the gates), and the per-head LayerNorm's
    statistics are the same in any order, so each head's value channels take their own order: v's rows (the value
    rows of the fused qkv_opreact), the output gate's rows, the norm's weight and bias -> out_proj's columns."""
    config, norm, out = getattr(module, "config", None), getattr(module, "multihead_norm", None), getattr(module, "out_proj", None)
    heads, width, qk_width = getattr(config, "num_heads", None), getattr(module, "v_dim", None), getattr(module, "qk_dim", None)
    if not all(isinstance(n, int) and n > 0 for n in (heads, width, qk_width)) or width % heads:
        return "config.num_heads / v_dim / qk_dim missing, or v_dim is not whole heads"
    head_dim, blocks = width // heads, torch.arange(heads)
    if not (_is_linear(out) and out.in_features == width):
        return f"out_proj is not an nn.Linear over the {width} value channels"
    if _transformers_class(norm) != "xLSTMMultiHeadLayerNorm" or (norm.num_heads, norm.head_dim) != (heads, head_dim):
        return f"multihead_norm is not an xLSTMMultiHeadLayerNorm over {heads} heads of {head_dim}"
    mode = getattr(config, "weight_mode", None)
    if mode == "single" and all(_is_linear(getattr(module, attr, None)) and getattr(module, attr).out_features == width for attr in ("v", "ogate_preact")):
        members = _producer(qualified(name, "v"), module.v, head_dim, blocks) + _producer(qualified(name, "ogate_preact"), module.ogate_preact, head_dim, blocks)
    elif mode == "fused" and _is_linear(fused := getattr(module, "qkv_opreact", None)) and fused.out_features == 2 * (qk_width + width):
        members = [m for offset in (2 * qk_width, 2 * qk_width + width) for m in _producer(qualified(name, "qkv_opreact"), fused, head_dim, blocks, offset=offset)]
    else:
        return f"weight_mode {mode!r}: no v and ogate_preact, nor a qkv_opreact, with {width} value rows each"
    members += _per_channel(qualified(name, "multihead_norm"), norm, head_dim, blocks, attrs=("weight", "bias"))
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, "out_proj"), out, head_dim, blocks))


def _xlstm_feed_forward(name: str, module: nn.Module) -> _Group | str:
    """xLSTM's gated feed-forward ``proj_down(act(gate) * up)``: gate and up from proj_up_gate and proj_up
    (``weight_mode`` single), or the two halves of proj_up_gate_z (fused)."""
    if getattr(getattr(module, "config", None), "weight_mode", None) == "fused":
        return _fused_halves_mlp(name, module, "proj_up_gate_z", "proj_down", "act_fn")
    return _gated_mlp(name, module, "proj_up_gate", "proj_up", "proj_down", "act_fn")


def _recurrent_block(name: str, module: nn.Module) -> _Group | str:
    """Griffin's (RecurrentGemma's) recurrent block ``linear_out(rg_lru(conv_1d(linear_x(x))) * act(linear_y(x)))``: the
    depthwise conv and the recurrence act channel by channel, and the RG-LRU's input and recurrence gates are
    block-diagonal (one ``block_width`` square per head, read and written in the head's channel order), so each head's
    channels take their own order: linear_x's and linear_y's rows, the conv's filters and bias, the recurrence's
    parameter, both gates' weights (rows and columns) and biases -> linear_out's columns."""
    x_proj, y_proj, out, conv, lru = (getattr(module, attr, None) for attr in ("linear_x", "linear_y", "linear_out", "conv_1d", "rg_lru"))
    if not all(_is_linear(m) for m in (x_proj, y_proj, out)):
        return "linear_x, linear_y and linear_out are not all nn.Linear"
    if (refused := _not_elementwise(module, "act_fn")) is not None:
        return refused
    width = out.in_features
    if x_proj.out_features != width or y_proj.out_features != width:
        return f"linear_x ({x_proj.out_features}) and linear_y ({y_proj.out_features}) outputs are not linear_out's {width} inputs"
    if not (isinstance(conv, nn.Conv1d) and _is_depthwise(conv, width)):
        return f"conv_1d is not a depthwise nn.Conv1d over the {width} channels"
    heads, head_dim = getattr(lru, "num_attention_heads", None), getattr(lru, "block_width", None)
    gates = ("input_gate", "recurrent_gate")
    if _transformers_class(lru) != "RecurrentGemmaRglru" or not (isinstance(heads, int) and isinstance(head_dim, int) and heads * head_dim == width):
        return f"rg_lru is not a RecurrentGemmaRglru of heads x block_width = {width} channels"
    if any(getattr(lru, f"{gate}_weight").shape != (heads, head_dim, head_dim) or getattr(lru, f"{gate}_bias").shape != (heads, head_dim) for gate in gates):
        return f"rg_lru's gates are not {heads} blocks of {head_dim} x {head_dim}"
    blocks, lru_name = torch.arange(heads), qualified(name, "rg_lru")
    members = _producer(qualified(name, "linear_x"), x_proj, head_dim, blocks) + _producer(qualified(name, "linear_y"), y_proj, head_dim, blocks)
    members += _per_channel(qualified(name, "conv_1d"), conv, head_dim, blocks) + _per_channel(lru_name, lru, head_dim, blocks, attrs=("recurrent_param",))
    one = torch.zeros(1, dtype=torch.long)
    for head in range(heads):  # the head's square and bias: the slice [head], its own permutation
        for gate in gates:
            members += [_Member(lru_name, lru, f"{gate}_weight", dim, one + head, "per-channel", expert=head) for dim in (0, 1)]
            members.append(_Member(lru_name, lru, f"{gate}_bias", 0, one + head, "per-channel", expert=head))
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, "linear_out"), out, head_dim, blocks))


def _lightning_attention(name: str, module: nn.Module) -> _Group | str:
    """MiniMax's lightning attention ``out_proj(sigmoid(output_gate(x)) * norm(attn(act(qkv_proj(x)))))``: qkv_proj's rows
    are head after head its q, k and v; the linear attention decays per head and weighs every value channel of a head
    alike, so each head's values take their own order: the head's v rows and output_gate's rows -> out_proj's columns
    (the norm over all heads' channels by :func:`_normed`)."""
    qkv, gate, out = (getattr(module, attr, None) for attr in ("qkv_proj", "output_gate", "out_proj"))
    heads, head_dim = getattr(module, "num_attention_heads", None), getattr(module, "head_dim", None)
    if not all(_is_linear(m) for m in (qkv, gate, out)):
        return "qkv_proj, output_gate and out_proj are not all nn.Linear"
    if not (isinstance(heads, int) and isinstance(head_dim, int) and heads > 0 and head_dim > 0):
        return "num_attention_heads / head_dim missing"
    width = heads * head_dim
    if qkv.out_features != 3 * width or gate.out_features != width or out.in_features != width:
        return f"qkv_proj ({qkv.out_features}), output_gate ({gate.out_features}) and out_proj ({out.in_features}) do not fit {heads} heads of {head_dim}"
    if (refused := _not_elementwise(module, "act_fn")) is not None:
        return refused
    blocks = torch.arange(heads)
    members = _strided_rows(qualified(name, "qkv_proj"), qkv, head_dim, heads, 3 * head_dim, 2 * head_dim)
    members += _producer(qualified(name, "output_gate"), gate, head_dim, blocks)
    return _Group(type(module).__name__, head_dim, heads, members + _consumer(qualified(name, "out_proj"), out, head_dim, blocks))


def _hq_mask_decoder(name: str, module: nn.Module) -> list[_Group | str]:
    """SAM-HQ's mask decoder: its HQ feature path ``mask_conv2(activation(mask_norm(mask_conv1(x))))``, mask_norm a
    channels-first LayerNorm (:func:`_conv_stem`); its two-way transformer and MLPs by their own rules, its
    transposed convs take no 2:4 mask."""
    if (refused := _not_elementwise(module, "activation")) is not None:
        return [refused]
    return _conv_stem(name, module, ("mask_conv1", "mask_conv2"), {"mask_conv1": "mask_norm"})


def _focal_modulation(name: str, module: nn.Module) -> list[_Group | str]:
    """FocalNet's focal modulation ``projection_out(norm(q * projection_context(sum_l ctx_l * gate_l)))``, q, ctx and
    the gates the chunks of projection_in's rows, ctx_l the depthwise focal_layers (and GELUs) one after another:
    two groups. The context channels: projection_in's ctx rows and every focal layer's filters -> projection_context's
    input channels (the gates scale each level whole, the global context averages each channel over the image). The
    modulated channels: projection_in's q rows and projection_context's output channels (their product, channel by
    channel), with the post LayerNorm's weight and bias when it has one -> projection_out."""
    proj_in, context, proj_out = (getattr(module, attr, None) for attr in ("projection_in", "projection_context", "projection_out"))
    width, level = getattr(module, "dim", None), getattr(module, "focal_level", None)
    if not (_is_linear(proj_in) and _is_linear(proj_out) and isinstance(width, int) and isinstance(level, int)):
        return ["projection_in and projection_out are not nn.Linear, or dim / focal_level missing"]
    if proj_in.out_features != 2 * width + level + 1 or proj_out.in_features != width:
        return [f"projection_in's {proj_in.out_features} outputs are not q, ctx of {width} and {level + 1} gates, or projection_out does not read {width}"]
    if not (type(context) is nn.Conv2d and context.kernel_size == (1, 1) and context.groups == 1 and context.in_channels == context.out_channels == width):
        return [f"projection_context is not a 1 x 1 nn.Conv2d over the {width} channels"]
    layers = list(getattr(module, "focal_layers", None) or [])
    if len(layers) != level or not all(
        isinstance(layer, nn.Sequential) and len(layer) == 2 and type(layer[0]) is nn.Conv2d and _is_depthwise(layer[0], width) and _elementwise_module(layer[1]) for layer in layers
    ):
        return [f"focal_layers are not {level} depthwise nn.Conv2d with an elementwise activation"]
    if (refused := _not_elementwise(module, "activation")) is not None:
        return [refused]
    found: list[_Group | str] = []
    one = _uniform(width, width)  # projection_in's rows: q, then ctx, then the gates
    ctx = _producer(qualified(name, "projection_in"), proj_in, width, one, offset=width)
    ctx += [m for i, layer in enumerate(layers) for m in _per_channel(qualified(name, f"focal_layers.{i}.0"), layer[0], width)]
    found.append(_Group(type(module).__name__, width, 1, ctx + _consumer(qualified(name, "projection_context"), context, width)))
    modulated = _producer(qualified(name, "projection_in"), proj_in, width, one) + _producer(qualified(name, "projection_context"), context, width)
    if getattr(module, "use_post_layernorm_in_modulation", False):
        norm = getattr(module, "layernorm", None)
        if not (type(norm) is nn.LayerNorm and norm.normalized_shape == (width,)):
            return found + [f"layernorm is not an nn.LayerNorm over the {width} channels"]
        modulated += _per_channel(qualified(name, "layernorm"), norm, width)
    found.append(_Group(type(module).__name__, width, 1, modulated + _consumer(qualified(name, "projection_out"), proj_out, width)))
    return found


def _conv_module(name: str, module: nn.Module, width: int) -> list[_Member] | str:
    """UperNet's conv module ``relu(batch_norm(conv(x)))`` at ``name``: its conv's output channels and its BatchNorm's."""
    conv, norm = getattr(module, "conv", None), getattr(module, "batch_norm", None)
    if _transformers_class(module) != "UperNetConvModule" or not (type(conv) is nn.Conv2d and conv.groups == 1 and conv.out_channels == width):
        return f"{name} is not an UperNetConvModule of an ungrouped conv with {width} outputs"
    if not (type(norm) is nn.BatchNorm2d and norm.num_features == width and _elementwise_module(getattr(module, "activation", None))):
        return f"{name}'s batch_norm and activation are not a BatchNorm2d over its {width} channels and an elementwise function"
    return _producer(qualified(name, "conv"), conv, width) + _per_channel(qualified(name, "batch_norm"), norm, width)


def _upernet_head(name: str, module: nn.Module) -> list[_Group | str]:
    """UperNet's decode head: its conv modules (conv, BatchNorm, ReLU), resized and concatenated channel by channel.

    - Each pyramid pooling block's channels -> the bottleneck's input channels after the top feature map's.
    - The top-down stream: every lateral conv's channels and the bottleneck's, summed level into level (each
      resized) -> every fpn conv, and the last part of fpn_bottleneck's input channels (the bottleneck's level).
    - Each fpn conv's channels -> its part of fpn_bottleneck's input channels.
    - fpn_bottleneck's channels -> the classifier.
    """
    width, levels = getattr(module, "channels", None), getattr(module, "in_channels", None)
    blocks = list(getattr(getattr(module, "psp_modules", None), "blocks", None) or [])
    laterals, fpns = list(getattr(module, "lateral_convs", None) or []), list(getattr(module, "fpn_convs", None) or [])
    bottleneck, fpn_bottleneck = (_attr(module, f"{attr}.conv") for attr in ("bottleneck", "fpn_bottleneck"))
    classifier = getattr(module, "classifier", None)
    if not (isinstance(width, int) and isinstance(levels, (list, tuple)) and len(laterals) == len(fpns) == len(levels) - 1):
        return ["channels / in_channels missing, or not one lateral and one fpn conv per level below the top"]
    convs = [bottleneck, fpn_bottleneck, classifier, *(_attr(part, "conv") for part in fpns)]
    if not all(type(conv) is nn.Conv2d and conv.groups == 1 for conv in convs):
        return ["bottleneck, fpn_bottleneck, the fpn convs and the classifier are not ungrouped nn.Conv2d"]
    if bottleneck.in_channels != levels[-1] + len(blocks) * width or fpn_bottleneck.in_channels != len(levels) * width or classifier.in_channels != width:
        return [f"bottleneck ({bottleneck.in_channels}), fpn_bottleneck ({fpn_bottleneck.in_channels}) and classifier ({classifier.in_channels}) do not read the head's {width} channels per part"]
    one, kind = _uniform(width, width), type(module).__name__
    found: list[_Group | str] = []

    def group(producers: list[tuple[str, nn.Module]], consumers: list[_Member]) -> None:
        members = [_conv_module(qualified(name, path), part, width) for path, part in producers]
        refused = next((m for m in members if isinstance(m, str)), None)
        found.append(refused if refused is not None else _Group(kind, width, 1, [m for each in members for m in each] + consumers))

    for i, block in enumerate(blocks):
        pooled = _attr(block, "1")
        group([(f"psp_modules.{i}.1", pooled)], _consumer(qualified(name, "bottleneck.conv"), bottleneck, width, one, offset=levels[-1] + i * width))
    stream = [(f"lateral_convs.{j}", part) for j, part in enumerate(laterals)] + [("bottleneck", module.bottleneck)]
    readers = [m for j, part in enumerate(fpns) for m in _consumer(qualified(name, f"fpn_convs.{j}.conv"), part.conv, width)]
    group(stream, readers + _consumer(qualified(name, "fpn_bottleneck.conv"), fpn_bottleneck, width, one, offset=len(fpns) * width))
    for j, part in enumerate(fpns):
        group([(f"fpn_convs.{j}", part)], _consumer(qualified(name, "fpn_bottleneck.conv"), fpn_bottleneck, width, one, offset=j * width))
    group([("fpn_bottleneck", module.fpn_bottleneck)], _consumer(qualified(name, "classifier"), classifier, width))
    return found


def _fcn_head(name: str, module: nn.Module) -> list[_Group | str]:
    """UperNet's auxiliary FCN head ``classifier(conv_cat(cat(x, convs(x))))``, its conv modules one after another:
    each conv module's channels -> the next one's conv; the last one's -> conv_cat's input channels after x's (with
    ``concat_input``) or the classifier; conv_cat's -> the classifier."""
    width, classifier = getattr(module, "channels", None), getattr(module, "classifier", None)
    convs = list(module.convs) if isinstance(getattr(module, "convs", None), nn.Sequential) else []
    if not (isinstance(width, int) and type(classifier) is nn.Conv2d and classifier.groups == 1 and classifier.in_channels == width):
        return ["channels missing, or the classifier is not an ungrouped nn.Conv2d reading them"]
    readers: list[tuple[str, list[_Member] | str]] = []
    for k in range(1, len(convs)):
        conv = _attr(convs[k], "conv")
        readers.append((f"convs.{k - 1}", _consumer(qualified(name, f"convs.{k}.conv"), conv, width) if type(conv) is nn.Conv2d and conv.groups == 1 else f"convs.{k} has no ungrouped nn.Conv2d"))
    cat = _attr(module, "conv_cat.conv") if getattr(module, "concat_input", False) else None
    if convs and cat is not None:
        fits = type(cat) is nn.Conv2d and cat.groups == 1 and cat.in_channels == module.in_channels + width
        readers.append((f"convs.{len(convs) - 1}", _consumer(qualified(name, "conv_cat.conv"), cat, width, _uniform(width, width), offset=module.in_channels) if fits else "conv_cat does not read x and the convs' channels"))
    elif convs:
        readers.append((f"convs.{len(convs) - 1}", _consumer(qualified(name, "classifier"), classifier, width)))
    if cat is not None:
        readers.append(("conv_cat", _consumer(qualified(name, "classifier"), classifier, width)))
    found: list[_Group | str] = []
    for producer, consumer in readers:
        members = _conv_module(qualified(name, producer), _attr(module, producer), width)
        refused = next((m for m in (members, consumer) if isinstance(m, str)), None)
        found.append(refused if refused is not None else _Group(type(module).__name__, width, 1, members + consumer))
    return found


def _lasr_subsampling(name: str, module: nn.Module) -> list[_Group | str]:
    """LASR's subsampling ``dense_1(act(conv_1(act(conv_0(act(dense_0(x))))))``, the convs over time between two
    transposes that only move the channels: dense_0's channels -> conv_0, conv_0's -> conv_1, conv_1's -> dense_1."""
    layers = [(attr, getattr(module, attr, None)) for attr in ("dense_0", "conv_0", "conv_1", "dense_1")]
    if not (_is_linear(layers[0][1]) and _is_linear(layers[3][1]) and all(type(layer) is nn.Conv1d and layer.groups == 1 for _, layer in layers[1:3])):
        return ["dense_0 and dense_1 are not nn.Linear, or conv_0 and conv_1 are not ungrouped nn.Conv1d"]
    if (refused := _not_elementwise(module, "act_fn")) is not None:
        return [refused]
    found: list[_Group | str] = []
    for (first, up), (second, down) in zip(layers, layers[1:]):
        width = up.weight.shape[gemm_axes(up)["weight"].output]
        if down.weight.shape[gemm_axes(down)["weight"].reduction] != width:
            found.append(f"{second} does not read {first}'s {width} channels")
        else:
            found.append(_Group(type(module).__name__, width, 1, _producer(qualified(name, first), up, width) + _consumer(qualified(name, second), down, width)))
    return found


def _streaming_subsampling(name: str, module: nn.Module) -> list[_Group | str]:
    """Nemotron ASR streaming's subsampling: conv_in (a causal nn.Conv2d from one channel) -> ReLU, then each of
    ``layers`` a depthwise causal conv -> its pointwise conv -> ReLU, frames past each length zeroed. One group per
    pointwise conv: the channels of the conv before it (conv_in or the previous pointwise conv: filters and bias),
    through the depthwise conv's filters -> its columns. The last conv's channels are flattened with the frequencies,
    channel by channel, into linear's columns: runs no rule moves, so they keep their order."""
    layers, act = list(getattr(module, "layers", ())), getattr(module, "act_fn", None)
    if not isinstance(act, nn.ReLU):
        return ["act_fn is not an nn.ReLU"]
    found: list[_Group | str] = []
    before = "conv_in"
    for i in range(len(layers)):
        up, depthwise, pointwise = (_attr(module, path) for path in (before, f"layers.{i}.depthwise_conv", f"layers.{i}.pointwise_conv"))
        width = getattr(up, "out_channels", None)
        if not (isinstance(up, nn.Conv2d) and up.groups == 1 and _is_depthwise(depthwise, width) and isinstance(pointwise, nn.Conv2d) and pointwise.groups == 1 and pointwise.in_channels == width):
            found.append(f"{before}, layers.{i}.depthwise_conv and layers.{i}.pointwise_conv are not a conv, a depthwise conv and a 1 x 1 conv over one set of channels")
        else:
            members = _producer(qualified(name, before), up, width) + _per_channel(qualified(name, f"layers.{i}.depthwise_conv"), depthwise, width)
            found.append(_Group(type(module).__name__, width, 1, members + _consumer(qualified(name, f"layers.{i}.pointwise_conv"), pointwise, width)))
        before = f"layers.{i}.pointwise_conv"
    return found


def _newline_patch_merger(name: str, module: nn.Module) -> list[_Group | str]:
    """HunYuan-VL's patch merger ``mlp(cat(proj_out(act(proj_conv(x))), image_newline))``, the newline a column of
    one learned value per channel appended to each row of the image: proj_conv's channels -> proj_out; proj_out's
    channels, with image_newline's values -> mlp."""
    found: list[_Group | str] = [_two_layer_mlp(name, module, "proj_conv", "proj_out", "proj_act")]
    out, mlp, newline = (getattr(module, attr, None) for attr in ("proj_out", "mlp", "image_newline"))
    if not (type(out) is nn.Conv2d and out.groups == 1 and _is_linear(mlp) and mlp.in_features == out.out_channels):
        return found + ["proj_out is not an ungrouped nn.Conv2d whose channels mlp (an nn.Linear) reads"]
    width = out.out_channels
    if not (isinstance(newline, Tensor) and newline.shape == (width,)):
        return found + [f"image_newline is not one value for each of the {width} channels"]
    members = _producer(qualified(name, "proj_out"), out, width) + _per_channel(name, module, width, attrs=("image_newline",))
    return found + [_Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "mlp"), mlp, width))]


def _additive_attention(name: str, module: nn.Module) -> _Group | str:
    """SwiftFormer's efficient additive attention ``final(proj(g * normalize(to_key(x))) + q)``, ``q =
    normalize(to_query(x))`` and ``g`` the tokens' sum of q weighted by a softmax of ``q @ w_g``: the L2 norms run over
    all the channels, the products are channel by channel, and proj's output joins q, so one order for to_query's,
    to_key's and proj's rows and w_g's -> proj's and final's columns."""
    layers = {attr: getattr(module, attr, None) for attr in ("to_query", "to_key", "proj", "final")}
    weight = getattr(module, "w_g", None)
    if not all(_is_linear(layer) for layer in layers.values()):
        return "to_query, to_key, proj and final are not all nn.Linear"
    width = layers["to_query"].out_features
    if any(layer.in_features != width or layer.out_features != width for attr, layer in layers.items() if attr in ("to_key", "proj")) or layers["final"].in_features != width:
        return f"to_key, proj and final do not read and write to_query's {width} channels"
    if not (isinstance(weight, Tensor) and weight.shape == (width, 1)):
        return f"w_g is not one weight for each of the {width} channels"
    members = [m for attr in ("to_query", "to_key", "proj") for m in _producer(qualified(name, attr), layers[attr], width)]
    members += _per_channel(name, module, width, attrs=("w_g",))
    members += _consumer(qualified(name, "proj"), layers["proj"], width) + _consumer(qualified(name, "final"), layers["final"], width)
    return _Group(type(module).__name__, width, 1, members)


def _rep_conv_branches(name: str, layer: nn.Module, role: str) -> list[_Member] | str:
    """TextNet's re-parameterisable conv layer ``relu(sum of main, vertical and horizontal conv -> BatchNorm [+
    BatchNorm(x)])``: ``role`` "producer", its branches' output channels and BatchNorms; "consumer", their input
    channels."""
    if _transformers_class(layer) != "TextNetRepConvLayer" or not _elementwise_module(getattr(layer, "activation_function", None)):
        return f"{name} is not a TextNetRepConvLayer with an elementwise activation"
    members: list[_Member] = []
    for branch in ("main", "vertical", "horizontal"):
        conv, norm = getattr(layer, f"{branch}_conv", None), getattr(layer, f"{branch}_batch_norm", None)
        if conv is None:
            continue
        if not (type(conv) is nn.Conv2d and conv.groups == 1 and type(norm) is nn.BatchNorm2d and norm.num_features == conv.out_channels):
            return f"{name}.{branch}_conv is not an ungrouped nn.Conv2d with its BatchNorm2d"
        if role == "producer":
            members += _producer(qualified(name, f"{branch}_conv"), conv, conv.out_channels) + _per_channel(qualified(name, f"{branch}_batch_norm"), norm, conv.out_channels)
        else:
            members += _consumer(qualified(name, f"{branch}_conv"), conv, conv.in_channels)
    return members


def _rep_conv_stage(name: str, module: nn.Module) -> list[_Group | str]:
    """TextNet's stage: its re-parameterisable conv layers one after another. A layer's channels -> the next layer's
    branches; where that layer has an identity branch (a BatchNorm of its input added to its output), its output
    channels are its input's, so the group runs on through it (its branches' rows, both BatchNorms) to the next
    layer without one. A run that reaches the stage's output, or starts at a layer with an identity branch (its
    order is its input's), stays."""
    layers = list(getattr(module, "stage", None) or [])
    found: list[_Group | str] = []
    i = 0
    while i < len(layers) - 1:
        if getattr(layers[i], "rbr_identity", None) is not None:
            i += 1
            continue
        members = _rep_conv_branches(qualified(name, f"stage.{i}"), layers[i], "producer")
        j = i + 1
        while isinstance(members, list) and j < len(layers):
            reads = _rep_conv_branches(qualified(name, f"stage.{j}"), layers[j], "consumer")
            identity = getattr(layers[j], "rbr_identity", None)
            if isinstance(reads, str) or identity is None:
                members = reads if isinstance(reads, str) else members + reads
                break
            writes = _rep_conv_branches(qualified(name, f"stage.{j}"), layers[j], "producer")
            members = writes if isinstance(writes, str) else members + reads + writes + _per_channel(qualified(name, f"stage.{j}.rbr_identity"), identity, identity.num_features)
            j += 1
        if isinstance(members, str):
            found.append(members)
        elif j == len(layers):
            found.append(f"stage.{i}'s channels run through identity branches to the stage's output")
        else:
            width = members[0].tensor.shape[members[0].dim]
            found.append(_Group(type(module).__name__, width, 1, members))
        i = j
    return found


def _internal_dim_attention(name: str, module: nn.Module) -> _Group | str:
    """SAM's mask decoder attention: q/k/v project to ``internal_dim`` (the width over the downsample rate), split
    into ``num_attention_heads`` heads: v_proj's rows per head -> out_proj."""
    v, o = _attr(module, "v_proj"), _attr(module, "out_proj")
    heads, width = getattr(module, "num_attention_heads", None), getattr(module, "internal_dim", None)
    if not (_is_linear(v) and _is_linear(o)):
        return "v_proj and out_proj are not nn.Linear"
    if not (isinstance(heads, int) and isinstance(width, int) and heads > 0 and width % heads == 0 and v.out_features == o.in_features == width):
        return f"v_proj ({v.out_features}) and out_proj ({o.in_features}) are not internal_dim {width} in num_attention_heads heads"
    return _value_heads(type(module).__name__, qualified(name, "v_proj"), v, qualified(name, "out_proj"), o, heads, width // heads)


def _bi_attention(name: str, module: nn.Module) -> list[_Group | str]:
    """Grounding DINO's bidirectional image-text attention: the image's queries read the text's values and the text's
    queries the image's, per head: values_text_proj's rows -> out_vision_proj, values_vision_proj's -> out_text_proj."""
    return [
        _attention(name, module, groups=1, value="values_text_proj", output="out_vision_proj"),
        _attention(name, module, groups=1, value="values_vision_proj", output="out_text_proj"),
    ]


def _conv_norm_layer(name: str, module: nn.Module, attr: str, width: int, piece: int = 0, pieces: int = 1) -> list[_Member] | str:
    """RT-DETR's ConvNormLayer ``attr`` (conv -> BatchNorm2d -> an elementwise activation; RF-DETR's: a channels-first
    LayerNorm) writing ``pieces`` runs of ``width`` channels (split after it, as D-FINE's ELAN and DEIMv2's CSP layers
    do): run ``piece``'s filters with the norm's parameters and statistics."""
    layer, total = getattr(module, attr, None), width * pieces
    conv, norm = getattr(layer, "conv", None), getattr(layer, "norm", None)
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.out_channels == total and _channel_norm(norm, total)):
        return f"{attr} is not an ungrouped Conv2d and a BatchNorm2d or channels-first LayerNorm over {total} channels"
    if not _elementwise_module(getattr(layer, "activation", None)):
        return f"{attr}.activation is not a known elementwise activation"
    one, offset = _uniform(width, width), piece * width
    return _producer(qualified(name, f"{attr}.conv"), conv, width, one, offset=offset) + _per_channel(qualified(name, f"{attr}.norm"), norm, width, one, offset=offset)


def _conv_norm_reader(name: str, module: nn.Module, attr: str, width: int, piece: int = 0, pieces: int = 1) -> list[_Member] | str:
    """The input channels of ConvNormLayer ``attr``'s ungrouped conv reading ``pieces`` runs of ``width`` channels (a
    concatenation): run ``piece``'s."""
    conv = _attr(module, f"{attr}.conv")
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.in_channels == width * pieces):
        return f"{attr}.conv is not an ungrouped Conv2d reading {width * pieces} channels"
    return _consumer(qualified(name, f"{attr}.conv"), conv, width, _uniform(width, width), offset=piece * width)


def _summed(parts: Sequence[list[_Member] | str]) -> list[_Member] | str:
    """The members of channels summed from ``parts`` (or why one has none: the first reason)."""
    problem = next((part for part in parts if isinstance(part, str)), None)
    return problem if problem is not None else [m for part in parts for m in part]


def _members_group(kind: str, width: int, parts: Sequence[list[_Member] | str]) -> _Group | str:
    """One group of ``width`` channels from ``parts`` (each a list of members, or why it has none: the first reason)."""
    members = _summed(parts)
    return members if isinstance(members, str) else _Group(kind, width, 1, members)


def _rep_vgg_output(name: str, block: nn.Module, width: int) -> list[_Member] | str:
    """A RepVGG block's output channels ``act(conv1(y) + conv2(y))`` (two ConvNormLayers over the same ``width``
    channels, 3 x 3 and 1 x 1): both convs' members, its ``activation`` elementwise."""
    if not _elementwise_module(getattr(block, "activation", None)):
        return f"{name}.activation is not a known elementwise activation"
    return _summed([_conv_norm_layer(name, block, "conv1", width), _conv_norm_layer(name, block, "conv2", width)])


def _bottlenecks(module: nn.Module) -> nn.Sequential | nn.ModuleList | None:
    blocks = getattr(module, "bottlenecks", None)
    return blocks if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) else None


def _rep_vgg_chain(name: str, module: nn.Module, width: int, source: list[_Member] | str) -> list[_Group | str]:
    """``source``'s ``width`` channels through ``module.bottlenecks``, RepVGG blocks one after another: source -> the
    first block's two convs; in an nn.ModuleList (D-FINE's, DEIMv2's loop), each block's output -> the next one's
    (an nn.Sequential, RT-DETR's, torch.fx traces)."""
    blocks, kind = _bottlenecks(module), type(module).__name__
    if blocks is None:
        return ["bottlenecks is not a non-empty nn.Sequential or nn.ModuleList"]
    found: list[_Group | str] = []
    for i, block in enumerate(blocks if isinstance(blocks, nn.ModuleList) else blocks[:1]):
        prefix = qualified(name, f"bottlenecks.{i}")
        found.append(_members_group(kind, width, [source, _conv_norm_reader(prefix, block, "conv1", width), _conv_norm_reader(prefix, block, "conv2", width)]))
        source = _rep_vgg_output(prefix, block, width)
    return found


def _last_rep_vgg(name: str, module: nn.Module, width: int) -> list[_Member] | str:
    """The output channels of ``module``'s last bottleneck (:func:`_rep_vgg_output`)."""
    blocks = _bottlenecks(module)
    if blocks is None:
        return "bottlenecks is not a non-empty nn.Sequential or nn.ModuleList"
    return _rep_vgg_output(qualified(name, f"bottlenecks.{len(blocks) - 1}"), blocks[-1], width)


def _csp_width(module: nn.Module, attr: str) -> int | None:
    return getattr(_attr(module, f"{attr}.conv"), "out_channels", None)


def _csp_rep_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """RT-DETR's (and D-FINE's) CSPRepLayer: ``conv3(bottlenecks(conv1(x)) + conv2(x))``, each bottleneck a RepVGG
    block ``act(conv1(y) + conv2(y))`` (two ConvNormLayers, 3 x 3 and 1 x 1, on the same channels). conv1's channels
    -> the first bottleneck's two convs, each bottleneck's -> the next one's (:func:`_rep_vgg_chain`); the last
    bottleneck's channels and conv2's, summed -> conv3 when conv3 is a ConvNormLayer (else, hidden_expansion 1, they
    are the layer's output: :func:`_csp_rep_output`)."""
    width = _csp_width(module, "conv1")
    if not isinstance(width, int):
        return ["conv1 has no conv"]
    found = _rep_vgg_chain(name, module, width, _conv_norm_layer(name, module, "conv1", width))
    if not isinstance(getattr(module, "conv3", None), nn.Identity):
        summed = [_last_rep_vgg(name, module, width), _conv_norm_layer(name, module, "conv2", width), _conv_norm_reader(name, module, "conv3", width)]
        found.append(_members_group(type(module).__name__, width, summed))
    return found


def _csp_rep_output(name: str, module: nn.Module) -> tuple[list[_Member] | str, int]:
    """A CSPRepLayer's output channels and their number: conv3's (a ConvNormLayer), else the last bottleneck's and
    conv2's, summed."""
    if not isinstance(getattr(module, "conv3", None), nn.Identity):
        width = _csp_width(module, "conv3") or 0
        return _conv_norm_layer(name, module, "conv3", width), width
    width = _csp_width(module, "conv2") or 0
    return _summed([_last_rep_vgg(name, module, width), _conv_norm_layer(name, module, "conv2", width)]), width


def _split_csp_rep_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """DEIMv2's CSPRepLayer: ``conv2(residual + bottlenecks(hidden))`` where ``residual, hidden = conv1(x).chunk(2)``:
    conv1's second half -> the first bottleneck's two convs, each bottleneck's -> the next one's
    (:func:`_rep_vgg_chain`); conv1's first half and the last bottleneck's channels, summed -> conv2 when it is a
    ConvNormLayer (else, no trailing conv, they are the layer's output: :func:`_split_csp_rep_output`)."""
    total = _csp_width(module, "conv1")
    if not (isinstance(total, int) and total % 2 == 0):
        return ["conv1 has no conv of an even number of channels"]
    width = total // 2
    found = _rep_vgg_chain(name, module, width, _conv_norm_layer(name, module, "conv1", width, piece=1, pieces=2))
    if not isinstance(getattr(module, "conv2", None), nn.Identity):
        summed = [_conv_norm_layer(name, module, "conv1", width, piece=0, pieces=2), _last_rep_vgg(name, module, width), _conv_norm_reader(name, module, "conv2", width)]
        found.append(_members_group(type(module).__name__, width, summed))
    return found


def _split_csp_rep_output(name: str, module: nn.Module) -> tuple[list[_Member] | str, int]:
    """DEIMv2's CSPRepLayer's output channels and their number: conv2's (a ConvNormLayer), else conv1's first half
    and the last bottleneck's, summed."""
    if not isinstance(getattr(module, "conv2", None), nn.Identity):
        width = _csp_width(module, "conv2") or 0
        return _conv_norm_layer(name, module, "conv2", width), width
    width = (_csp_width(module, "conv1") or 0) // 2
    return _summed([_conv_norm_layer(name, module, "conv1", width, piece=0, pieces=2), _last_rep_vgg(name, module, width)]), width


def _concatenation_readers(name: str, module: nn.Module, attr: str, sizes: Sequence[int]) -> list[list[_Member]] | str:
    """ConvNormLayer ``attr``'s ungrouped conv reading pieces of ``sizes`` channels concatenated: each piece's columns."""
    conv = _attr(module, f"{attr}.conv")
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.in_channels == sum(sizes)):
        return f"{attr}.conv is not an ungrouped Conv2d reading the {sum(sizes)} concatenated channels"
    return [_consumer(qualified(name, f"{attr}.conv"), conv, size, _uniform(size, size), offset=sum(sizes[:i])) for i, size in enumerate(sizes)]


def _rep_ncsp_elan4(name: str, module: nn.Module) -> list[_Group | str]:
    """D-FINE's RepNCSPELAN4: ``a, b = conv1(x).split(conv_dim)``; ``c = conv2(csp_rep1(b))``; ``d =
    conv3(csp_rep2(c))``; ``conv4(cat(a, b, c, d))``. conv1's halves -> their parts of conv4 (b -> csp_rep1's conv1
    and conv2 too); csp_rep1's output -> conv2; conv2's -> csp_rep2's conv1 and conv2 and its part of conv4;
    csp_rep2's output -> conv3; conv3's -> its part of conv4. Inside each CSP layer: its own rule."""
    half, kind = getattr(module, "conv_dim", None), type(module).__name__
    out1, mid = _csp_rep_output(qualified(name, "csp_rep1"), getattr(module, "csp_rep1", None))
    out2, _ = _csp_rep_output(qualified(name, "csp_rep2"), getattr(module, "csp_rep2", None))
    if not (isinstance(half, int) and half > 0 and mid > 0 and _csp_width(module, "conv1") == 2 * half and _csp_width(module, "conv2") == _csp_width(module, "conv3") == mid):
        return ["conv1 is not 2 x conv_dim wide, or conv2 and conv3 not as wide as csp_rep1's output"]
    part = _concatenation_readers(name, module, "conv4", (half, half, mid, mid))
    if isinstance(part, str):
        return [part]

    def reads(attr: str, width: int) -> list[list[_Member] | str]:  # CSP layer ``attr``'s conv1 and conv2 read the channels
        layer = getattr(module, attr, None)
        return [_conv_norm_reader(qualified(name, attr), layer, reader, width) for reader in ("conv1", "conv2")]

    return [
        _members_group(kind, half, [_conv_norm_layer(name, module, "conv1", half, piece=0, pieces=2), part[0]]),
        _members_group(kind, half, [_conv_norm_layer(name, module, "conv1", half, piece=1, pieces=2), part[1], *reads("csp_rep1", half)]),
        _members_group(kind, mid, [out1, _conv_norm_reader(name, module, "conv2", mid)]),
        _members_group(kind, mid, [_conv_norm_layer(name, module, "conv2", mid), part[2], *reads("csp_rep2", mid)]),
        _members_group(kind, mid, [out2, _conv_norm_reader(name, module, "conv3", mid)]),
        _members_group(kind, mid, [_conv_norm_layer(name, module, "conv3", mid), part[3]]),
    ]


def _rep_ncsp_elan5(name: str, module: nn.Module) -> list[_Group | str]:
    """DEIMv2's RepNCSPELAN5: ``a, b = conv1(x).chunk(2)``; ``c = csp_rep1(b)``; ``d = csp_rep2(c)``;
    ``conv2(cat(a, b, c, d))``. Each piece -> its part of conv2; b -> csp_rep1's conv1 too, c -> csp_rep2's (each
    CSP layer's conv1 reads its input; inside, its own rule)."""
    total = _csp_width(module, "conv1")
    if not (isinstance(total, int) and total % 2 == 0 and getattr(module, "csp_rep1", None) is not None):
        return ["conv1 has no conv of an even number of channels, or csp_rep1 is missing"]
    half, kind = total // 2, type(module).__name__
    csp1, csp2 = (qualified(name, attr) for attr in ("csp_rep1", "csp_rep2"))
    out1, mid = _split_csp_rep_output(csp1, getattr(module, "csp_rep1", None))
    out2, _ = _split_csp_rep_output(csp2, getattr(module, "csp_rep2", None))
    if mid <= 0:
        return ["csp_rep1 has no output convs"]
    part = _concatenation_readers(name, module, "conv2", (half, half, mid, mid))
    if isinstance(part, str):
        return [part]

    return [
        _members_group(kind, half, [_conv_norm_layer(name, module, "conv1", half, piece=0, pieces=2), part[0]]),
        _members_group(kind, half, [_conv_norm_layer(name, module, "conv1", half, piece=1, pieces=2), part[1], _conv_norm_reader(csp1, module.csp_rep1, "conv1", half)]),
        _members_group(kind, mid, [out1, part[2], _conv_norm_reader(csp2, getattr(module, "csp_rep2", None), "conv1", mid)]),
        _members_group(kind, mid, [out2, part[3]]),
    ]


def _projected_experts(name: str, module: nn.Module) -> str:
    """Muse Spark's MoE: pre_expert_proj writes the experts' own width, which runs through a centered RMS norm, every
    expert's fused weights and post-expert norm, into post_expert_proj. Each expert's hidden channels are the experts
    module's own group (its rule); the projected width would move in every expert's fused weights at once, which no
    rule does: it stays in place."""
    if not (_is_linear(getattr(module, "pre_expert_proj", None)) and _is_linear(getattr(module, "post_expert_proj", None))):
        return "pre_expert_proj and post_expert_proj are not nn.Linear, which this rule does not expect"
    return "pre_expert_proj's channels run through every expert's fused weights into post_expert_proj; no rule reorders that width across the experts: it stays in place"


def _sc_down(name: str, module: nn.Module) -> str:
    """D-FINE's (DEIMv2's) SCDown: conv1, a 1 x 1 ConvNormLayer, then conv2, a depthwise strided one: conv1's channels
    pass through conv2 (per channel) to the block's output, which the hybrid encoder concatenates with a feature map
    in its own forward: they keep their order."""
    width = _csp_width(module, "conv1")
    if not (isinstance(width, int) and _is_depthwise(_attr(module, "conv2.conv"), width)):
        return "conv2.conv is not a depthwise conv over conv1's channels, which this rule does not expect"
    return "conv1's channels pass through conv2 (depthwise) to the block's output, which the hybrid encoder concatenates in its own forward: they keep their order"


def _unprojected_deformable_attention(name: str, module: nn.Module) -> str:
    """D-FINE's (DEIMv2's) multiscale deformable attention: no value or output projection (the values are the
    encoder's states as they come); sampling_offsets and attention_weights read the queries and write offsets and
    weights: no hidden channels."""
    if getattr(module, "value_proj", None) is not None or getattr(module, "output_proj", None) is not None:
        return "it has a value_proj or output_proj, which this rule does not expect"
    return "no value or output projection; sampling_offsets and attention_weights read the queries and write offsets and weights"


def _conv_norm_pair(name: str, module: nn.Module) -> _Group | str:
    """LW-DETR's (RF-DETR's) RepVGG block ``conv2(conv1(x))``, both ConvNormLayers (conv -> norm -> an elementwise
    activation): conv1's channels with its norm -> conv2's conv."""
    width, reader = getattr(_attr(module, "conv1.conv"), "out_channels", None), _attr(module, "conv2.conv")
    if not (isinstance(width, int) and isinstance(reader, nn.Conv2d) and reader.groups == 1 and reader.in_channels == width):
        return "conv2.conv is not an ungrouped Conv2d reading conv1.conv's channels"
    first = _conv_norm_layer(name, module, "conv1", width)
    return first if isinstance(first, str) else _Group(type(module).__name__, width, 1, first + _consumer(qualified(name, "conv2.conv"), reader, width))


def _c2f_layer(name: str, module: nn.Module) -> list[_Group | str]:
    """LW-DETR's (RF-DETR's) C2F layer: conv1's channels (a ConvNormLayer) split into two pieces of hidden_channels,
    the second run through the chain of bottlenecks, and every piece (both halves, each bottleneck's output)
    concatenated -> conv2. The first half -> its columns of conv2; the second half and each bottleneck's output (its
    conv2, a ConvNormLayer) -> the next bottleneck's conv1 and their columns of conv2. Inside each bottleneck: its own
    rule."""
    width, blocks, reader = getattr(module, "hidden_channels", None), getattr(module, "bottlenecks", None), _attr(module, "conv2.conv")
    pieces = 2 + len(blocks) if isinstance(blocks, nn.ModuleList) else None
    if not (isinstance(width, int) and pieces and isinstance(reader, nn.Conv2d) and reader.groups == 1 and reader.in_channels == pieces * width):
        return ["conv2.conv is not an ungrouped Conv2d reading the two halves of conv1 and each bottleneck's output"]
    kind, layer, one = type(module).__name__, getattr(module, "conv1", None), _uniform(width, width)
    conv, norm = getattr(layer, "conv", None), getattr(layer, "norm", None)
    if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.out_channels == 2 * width and _channel_norm(norm, 2 * width)):
        return [f"conv1 is not an ungrouped Conv2d and a BatchNorm2d or channels-first LayerNorm over 2 x {width} channels"]
    if (refused := _not_elementwise(layer, "activation")) is not None:
        return [f"conv1.{refused}"]

    def half(offset: int) -> list[_Member]:
        return _producer(qualified(name, "conv1.conv"), conv, width, one, offset=offset) + _per_channel(qualified(name, "conv1.norm"), norm, width, one, offset=offset)

    def columns(piece: int) -> list[_Member]:
        return _consumer(qualified(name, "conv2.conv"), reader, width, one, offset=piece * width)

    found: list[_Group | str] = [_Group(kind, width, 1, half(0) + columns(0))]
    sources = [half(width)] + [_conv_norm_layer(qualified(name, f"bottlenecks.{i}"), block, "conv2", width) for i, block in enumerate(blocks)]
    for i, source in enumerate(sources):
        following = _attr(blocks[i], "conv1.conv") if i < len(blocks) else None
        if isinstance(source, str):
            found.append(source)
        elif i < len(blocks) and not (isinstance(following, nn.Conv2d) and following.groups == 1 and following.in_channels == width):
            found.append(f"bottlenecks.{i}.conv1.conv is not an ungrouped Conv2d reading {width} channels")
        else:
            readers = columns(1 + i) + (_consumer(qualified(name, f"bottlenecks.{i}.conv1.conv"), following, width) if following is not None else [])
            found.append(_Group(kind, width, 1, source + readers))
    return found


def _linear_with_bn(module: nn.Module, attr: str, rows: int) -> tuple[nn.Linear, nn.BatchNorm1d] | str:
    """LeViT's MLPLayerWithBN ``attr``: an nn.Linear writing ``rows`` channels, then a BatchNorm1d over them (the
    tokens flattened into the batch: per channel)."""
    linear, norm = _attr(module, f"{attr}.linear"), _attr(module, f"{attr}.batch_norm")
    if not (_is_linear(linear) and linear.out_features == rows and type(norm) is nn.BatchNorm1d and norm.num_features == rows):
        return f"{attr} is not an nn.Linear and a BatchNorm1d over {rows} channels"
    return linear, norm


def _levit_mlp(name: str, module: nn.Module) -> _Group | str:
    """LeViT's MLP layer: linear_down(hardswish(linear_up(x))), each an MLPLayerWithBN: linear_up's rows with its
    BatchNorm's parameters and statistics -> linear_down's linear."""
    width = getattr(_attr(module, "linear_up.linear"), "out_features", None)
    up, down = _linear_with_bn(module, "linear_up", width), _attr(module, "linear_down.linear")
    if isinstance(up, str) or not (_is_linear(down) and down.in_features == width):
        return up if isinstance(up, str) else f"linear_down.linear does not read linear_up's {width} channels"
    if (refused := _not_elementwise(module, "activation")) is not None:
        return refused
    members = _producer(qualified(name, "linear_up.linear"), up[0], width) + _per_channel(qualified(name, "linear_up.batch_norm"), up[1], width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "linear_down.linear"), down, width))


def _levit_attention(name: str, module: nn.Module, fused: str = "queries_keys_values", keys: int = 2) -> _Group | str:
    """LeViT's attention: ``fused`` (an MLPLayerWithBN) writes, head after head, ``keys`` runs of key_dim (the query and
    the key; the subsampling attention's keys_values: the key) and attention_ratio x key_dim values; each head's values
    (their rows and their BatchNorm's parameters and statistics), weighted over the positions and through a
    Hardswish -> the same head's columns of projection's linear. Each head its own order."""
    heads, key_dim, ratio = (getattr(module, attr, None) for attr in ("num_attention_heads", "key_dim", "attention_ratio"))
    if not all(isinstance(v, int) and v > 0 for v in (heads, key_dim, ratio)):
        return "num_attention_heads, key_dim or attention_ratio missing"
    width = ratio * key_dim
    stride = keys * key_dim + width
    found, out = _linear_with_bn(module, fused, heads * stride), _attr(module, "projection.linear")
    if isinstance(found, str):
        return found
    if not (_is_linear(out) and out.in_features == heads * width):
        return f"projection.linear does not read {heads} heads of {width} values"
    if (refused := _not_elementwise(module, "activation")) is not None:
        return refused
    linear, norm = found
    members = [
        m
        for h in range(heads)
        for m in _producer(qualified(name, f"{fused}.linear"), linear, width, torch.tensor([h]), offset=h * stride + keys * key_dim)
        + _per_channel(qualified(name, f"{fused}.batch_norm"), norm, width, torch.tensor([h]), offset=h * stride + keys * key_dim)
    ]
    return _Group(type(module).__name__, width, heads, members + _consumer(qualified(name, "projection.linear"), out, width, torch.arange(heads)))


def _levit_patch_embeddings(name: str, module: nn.Module) -> list[_Group | str]:
    """LeViT's patch embedding: four strided convs, each with a BatchNorm2d, a Hardswish after each of the first three:
    embedding_layer_k's filters with its BatchNorm's parameters and statistics -> embedding_layer_{k+1}'s conv."""
    found: list[_Group | str] = []
    for k in (1, 2, 3):
        group = _two_layer_mlp(name, module, f"embedding_layer_{k}.convolution", f"embedding_layer_{k + 1}.convolution", f"activation_layer_{k}")
        norm = _attr(module, f"embedding_layer_{k}.batch_norm")
        if isinstance(group, _Group):
            if _batch_norm_2d(norm, group.block):
                group.members += _per_channel(qualified(name, f"embedding_layer_{k}.batch_norm"), norm, group.block)
            else:
                group = f"embedding_layer_{k}.batch_norm is not a BatchNorm2d over its {group.block} channels"
        found.append(group)
    return found


def _linear_self_attention(name: str, module: nn.Module) -> _Group | str:
    """MobileViTV2LinearSelfAttention: qkv_proj's rows are one query, then the keys and the values; each channel's
    context sums its key over the positions (weighted by the query's softmax) and scales relu(value) of the same
    channel -> out_proj. The key rows and the value rows take one order, with out_proj's input columns."""
    qkv, out = getattr(getattr(module, "qkv_proj", None), "convolution", None), getattr(getattr(module, "out_proj", None), "convolution", None)
    width = getattr(module, "embed_dim", None)
    if not (isinstance(qkv, nn.Conv2d) and isinstance(out, nn.Conv2d) and isinstance(width, int) and qkv.out_channels == 1 + 2 * width and out.in_channels == width):
        return "qkv_proj.convolution (1 + 2 x embed_dim rows) and out_proj.convolution (embed_dim columns) not found"
    if qkv.groups != 1 or out.groups != 1:
        return "qkv_proj or out_proj is a grouped convolution"
    rows = [m for offset in (1, 1 + width) for m in _producer(qualified(name, "qkv_proj.convolution"), qkv, width, _uniform(width, width), offset=offset)]
    return _Group(type(module).__name__, width, 1, rows + _consumer(qualified(name, "out_proj.convolution"), out, width))


def _bit_bottleneck(name: str, module: nn.Module) -> list[_Group | str]:
    """BiT's bottlenecks: conv1 -> GroupNorm (+ activation) -> conv2 -> GroupNorm -> conv3 (the pre-activation layer
    norms before each conv: norm2 and norm3 sit between them). A GroupNorm's statistics are over each group of
    channels, so the channels move only within their group: one permutation per group, the norm's weight and bias
    with them. Weight standardization (per output filter, over all its inputs) is blind to the input order."""
    norms = ("norm2", "norm3") if type(module).__name__ == "BitPreActivationBottleneckLayer" else ("norm1", "norm2")
    found: list[_Group | str] = []
    for first, norm_name, second in (("conv1", norms[0], "conv2"), ("conv2", norms[1], "conv3")):
        up, norm, down = getattr(module, first, None), getattr(module, norm_name, None), getattr(module, second, None)
        if not (isinstance(up, nn.Conv2d) and isinstance(down, nn.Conv2d) and isinstance(norm, nn.GroupNorm)):
            found.append(f"{first}, {norm_name} and {second} are not nn.Conv2d, nn.GroupNorm and nn.Conv2d")
            continue
        width, groups = up.out_channels, norm.num_groups
        if up.groups != 1 or down.groups != 1 or down.in_channels != width or norm.num_channels != width or width % groups:
            found.append(f"{first} -> {norm_name} -> {second} are grouped convolutions, or do not share {width} channels in {groups} norm groups")
            continue
        act = getattr(norm, "activation", None)
        if act is not None and not _elementwise_module(act):
            found.append(f"{norm_name}.activation {type(act).__name__} is not a known elementwise activation")
            continue
        block, blocks = width // groups, torch.arange(groups)
        members = _producer(qualified(name, first), up, block, blocks) + _per_channel(qualified(name, norm_name), norm, block, blocks, attrs=("weight", "bias"))
        found.append(_Group(type(module).__name__, block, groups, members + _consumer(qualified(name, second), down, block, blocks)))
    return found


def _bit_stage(name: str, module: nn.Module) -> list[_Group | str]:
    """BitStage: :func:`_bit_bottleneck` for each of its layers (an nn.Sequential that torch.fx would trace through)."""
    return [group for i, layer in enumerate(module.layers) for group in _bit_bottleneck(qualified(name, f"layers.{i}"), layer)]


def _efficientnet_block(name: str, module: nn.Module) -> _Group | str:
    """EfficientNetBlock (MBConv) with an expansion: expand_conv -> BatchNorm, act -> depthwise conv, BatchNorm, act
    (per channel) -> squeeze-excite, whose reduce conv reads the channels and whose expand conv makes each channel's
    sigmoid gate (so it moves with them) -> project_conv."""
    if getattr(module, "expand_ratio", 1) == 1 or not hasattr(module, "expansion"):
        return "no expansion: the block's hidden channels are its input, the residual stream"
    expansion, depthwise, excite, projection = module.expansion, module.depthwise_conv, module.squeeze_excite, module.projection
    up, dw, down = expansion.expand_conv, depthwise.depthwise_conv, projection.project_conv
    reduce, gate = getattr(excite, "reduce", None), getattr(excite, "expand", None)
    width = up.out_channels
    convs = (up, dw, down, reduce, gate)
    if not all(isinstance(c, nn.Conv2d) for c in convs) or up.groups != 1 or down.groups != 1 or not _is_depthwise(dw, width):
        return f"expand_conv, a depthwise conv over its {width} channels and project_conv are not as in MBConv"
    if down.in_channels != width or reduce.in_channels != width or gate.out_channels != width or reduce.groups != 1 or gate.groups != 1:
        return f"project_conv or squeeze_excite do not read and gate the {width} expanded channels"
    for act in (expansion.expand_act, depthwise.depthwise_act, excite.act_expand):
        if not _elementwise_module(act):
            return f"{type(act).__name__} is not a known elementwise activation"
    members = _producer(qualified(name, "expansion.expand_conv"), up, width) + _per_channel(qualified(name, "expansion.expand_bn"), expansion.expand_bn, width)
    members += _per_channel(qualified(name, "depthwise_conv.depthwise_conv"), dw, width) + _per_channel(qualified(name, "depthwise_conv.depthwise_norm"), depthwise.depthwise_norm, width)
    members += _consumer(qualified(name, "squeeze_excite.reduce"), reduce, width) + _producer(qualified(name, "squeeze_excite.expand"), gate, width)
    return _Group(type(module).__name__, width, 1, members + _consumer(qualified(name, "projection.project_conv"), down, width))


# (defining module, class name) -> (rule, children still to search inside it): exact classes (a subclass may override forward)
_RULES: dict[tuple[str, str], tuple[_Rule, tuple[str, ...]]] = {
    ("transformers.models.llama.modeling_llama", "LlamaMLP"): (_gated_mlp, ()),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2MLP"): (_gated_mlp, ()),
    ("transformers.models.gpt2.modeling_gpt2", "GPT2MLP"): (_c_fc_mlp, ()),
    ("transformers.models.bert.modeling_bert", "BertLayer"): (_bert_layer, ("attention", "crossattention")),
    ("transformers.models.llama.modeling_llama", "LlamaAttention"): (_attention, ()),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2Attention"): (_attention, ()),
    ("transformers.models.mistral.modeling_mistral", "MistralMLP"): (_gated_mlp, ()),
    ("transformers.models.mistral.modeling_mistral", "MistralAttention"): (_attention, ()),
    ("transformers.models.qwen3.modeling_qwen3", "Qwen3MLP"): (_gated_mlp, ()),
    ("transformers.models.qwen3.modeling_qwen3", "Qwen3Attention"): (_attention, ()),
    ("transformers.models.gemma.modeling_gemma", "GemmaMLP"): (_gated_mlp, ()),
    ("transformers.models.gemma.modeling_gemma", "GemmaAttention"): (_attention, ()),
    ("transformers.models.phi3.modeling_phi3", "Phi3MLP"): (_fused_halves_mlp, ()),
    ("transformers.models.phi3.modeling_phi3", "Phi3Attention"): (_phi3_attention, ()),
    ("transformers.models.opt.modeling_opt", "OPTDecoderLayer"): (_two_layer_mlp, ("self_attn",)),
    ("transformers.models.opt.modeling_opt", "OPTAttention"): (_OUT_PROJ_ATTENTION, ()),
    # project_in reads the embeddings and project_out the final norm (OPT-350M's and BLIP-2's word_embed_proj_dim): no group
    ("transformers.models.opt.modeling_opt", "OPTDecoder"): (_no_groups, ("layers",)),
    ("transformers.models.gpt2.modeling_gpt2", "GPT2Attention"): (_gpt2_attention, ()),
    ("transformers.models.imagegpt.modeling_imagegpt", "ImageGPTAttention"): (_gpt2_attention, ()),  # GPT-2's older code
    ("transformers.models.decision_transformer.modeling_decision_transformer", "DecisionTransformerGPT2Attention"): (_gpt2_attention, ()),
    ("transformers.models.bert.modeling_bert", "BertAttention"): (_bert_attention, ()),
    ("transformers.models.vit.modeling_vit", "ViTMLP"): (_two_layer_mlp, ()),
    ("transformers.models.vit.modeling_vit", "ViTAttention"): (_HEADS_OWN_VALUES, ()),
    ("torch.nn.modules.transformer", "TransformerEncoderLayer"): (_TORCH_FEED_FORWARD, ("self_attn",)),
    ("torch.nn.modules.transformer", "TransformerDecoderLayer"): (_TORCH_FEED_FORWARD, ("self_attn", "multihead_attn")),
    ("torch.nn.modules.activation", "MultiheadAttention"): (_multihead_attention, ()),
    **_family("gemma2.modeling_gemma2", {"Gemma2MLP": (_gated_mlp, ()), "Gemma2Attention": (_attention, ())}),
    **_family("gemma3.modeling_gemma3", {"Gemma3MLP": (_gated_mlp, ()), "Gemma3Attention": (_attention, ())}),  # q_norm/k_norm only
    **_family("mixtral.modeling_mixtral", {"MixtralAttention": (_attention, ())}),
    **_family("qwen3_moe.modeling_qwen3_moe", {"Qwen3MoeAttention": (_attention, ())}),
    **_family("phi.modeling_phi", {"PhiMLP": (_two_layer_mlp, ()), "PhiAttention": (functools.partial(_attention, output="dense"), ())}),
    **_family("gptj.modeling_gptj", {
        "GPTJMLP": (functools.partial(_two_layer_mlp, first="fc_in", second="fc_out", activation="act"), ()),
        "GPTJAttention": (_OUT_PROJ_ATTENTION, ()),
    }),
    **_family("codegen.modeling_codegen", {
        "CodeGenMLP": (functools.partial(_two_layer_mlp, first="fc_in", second="fc_out", activation="act"), ()),
        "CodeGenAttention": (_codegen_attention, ()),
    }),
    **_family("gpt_neox.modeling_gpt_neox", {"GPTNeoXMLP": (_H_TO_4H_MLP, ()), "GPTNeoXAttention": (_per_head_qkv, ())}),
    **_family("bloom.modeling_bloom", {
        "BloomMLP": (functools.partial(_H_TO_4H_MLP, activation="gelu_impl"), ()),  # pretraining_tp slices of dense_4h_to_h sum alike in any order
        "BloomAttention": (functools.partial(_per_head_qkv, head_dim_attr="head_dim"), ()),
    }),
    **_family("falcon.modeling_falcon", {"FalconMLP": (_H_TO_4H_MLP, ()), "FalconAttention": (_falcon_attention, ())}),
    **_family("distilbert.modeling_distilbert", {
        "FFN": (functools.partial(_two_layer_mlp, first="lin1", second="lin2", activation="activation"), ()),
        "DistilBertSelfAttention": (functools.partial(_attention, groups=1, value="v_lin", output="out_lin", head_dim_attr="attention_head_size"), ()),
    }),
    **_bert_family("roberta.modeling_roberta", "Roberta"),
    **_bert_family("xlm_roberta.modeling_xlm_roberta", "XLMRoberta"),
    **_bert_family("electra.modeling_electra", "Electra"),
    # the heads: sequence classification, dense -> tanh (RoBERTa's and its copies' on the first token; BART's and T5's on
    # the last end-of-sequence token; LayoutLMv3's) or the config's activation (ELECTRA's, BigBird's) -> out_proj; the
    # masked-LM head, dense -> GELU -> LayerNorm -> decoder (a decoder tied to the input embeddings, the configs'
    # default, stays with that reason); RemBERT's, of its own width, is never tied
    **_family("roberta.modeling_roberta", {"RobertaClassificationHead": (_DENSE_OUT_HEAD, ()), "RobertaLMHead": (_MLM_HEAD, ())}),
    **_family("electra.modeling_electra", {"ElectraClassificationHead": (functools.partial(_DENSE_OUT_HEAD, activation="activation"), ())}),
    **_family("rembert.modeling_rembert", {"RemBertLMPredictionHead": (functools.partial(_MLM_HEAD, norm="LayerNorm", activation="activation"), ())}),
    **{
        (f"transformers.models.{module}", cls): (_DENSE_OUT_HEAD, ())
        for module, cls in (
            ("longformer.modeling_longformer", "LongformerClassificationHead"), ("bart.modeling_bart", "BartClassificationHead"),
            ("t5.modeling_t5", "T5ClassificationHead"), ("layoutlmv3.modeling_layoutlmv3", "LayoutLMv3ClassificationHead"),
            ("ibert.modeling_ibert", "IBertClassificationHead"),  # RoBERTa's under other names
        )
    },
    **_family("big_bird.modeling_big_bird", {"BigBirdClassificationHead": (_config_activation_head, ())}),
    # classification on the pooled first token, the rule on the task model (its output is the classifier's alone; the base
    # model's pooler_output is not returned): BERT's pooler.dense -> tanh, DistilBERT's pre_classifier -> ReLU, ALBERT's
    # pooler -> pooler_activation, DeBERTa's ContextPooler dense -> config.pooler_hidden_act -> classifier
    **_family("bert.modeling_bert", {
        f"BertFor{task}": (functools.partial(_two_layer_mlp, first="bert.pooler.dense", second="classifier", activation="bert.pooler.activation"), ("bert",))
        for task in ("SequenceClassification", "MultipleChoice")
    }),
    **_family("distilbert.modeling_distilbert", {
        f"DistilBertFor{task}": (functools.partial(_two_layer_mlp, first="pre_classifier", second="classifier", activation=None), ("distilbert",))
        for task in ("SequenceClassification", "MultipleChoice")
    }),
    **_family("albert.modeling_albert", {
        f"AlbertFor{task}": (functools.partial(_two_layer_mlp, first="albert.pooler", second="classifier", activation="albert.pooler_activation"), ("albert",))
        for task in ("SequenceClassification", "MultipleChoice")
    }),
    **{
        (f"transformers.models.{module}", f"{family}For{task}"): (
            functools.partial(_config_activation_head, key="pooler_hidden_act", first="pooler.dense", second="classifier", config="pooler.config"), ("deberta",),
        )
        for module, family, tasks in (
            ("deberta.modeling_deberta", "Deberta", ("SequenceClassification",)), ("deberta_v2.modeling_deberta_v2", "DebertaV2", ("SequenceClassification", "MultipleChoice")),
        )
        for task in tasks
    },
    **_family("convbert.modeling_convbert", {  # BERT's feed-forward (not with num_groups > 1: grouped linear layers); its mixed attention
        "ConvBertLayer": (functools.partial(_bert_layer, family="ConvBert"), ("attention", "crossattention")), "ConvBertAttention": (_convbert_attention, ()),
        "ConvBertClassificationHead": (_config_activation_head, ()),
    }),
    **_bert_family("data2vec.modeling_data2vec_text", "Data2VecText"),
    **_bert_family("bert_generation.modeling_bert_generation", "BertGeneration"),
    **_bert_family("megatron_bert.modeling_megatron_bert", "MegatronBert"),  # pre-norm: the norms read the residual stream only
    **_bert_family("rembert.modeling_rembert", "RemBert"),
    **_bert_family("roc_bert.modeling_roc_bert", "RoCBert"),
    **_bert_family("xlm_roberta_xl.modeling_xlm_roberta_xl", "XLMRobertaXL"),  # pre-norm
    **_bert_family("roberta_prelayernorm.modeling_roberta_prelayernorm", "RobertaPreLayerNorm"),
    **_bert_family("roformer.modeling_roformer", "RoFormer", attention=_roformer_attention),
    **_bert_family("layoutlm.modeling_layoutlm", "LayoutLM"),
    **_bert_family("luke.modeling_luke", "Luke"),  # the entity tokens' values go through the same value and output.dense
    **_bert_family("tapas.modeling_tapas", "Tapas"),
    # Nystromformer and YOSO: their approximate attentions, and a depthwise conv over each head's values along the
    # sequence, keep each value channel apart (YOSO L2-normalises the context per head: any order of its channels)
    **_bert_family("nystromformer.modeling_nystromformer", "Nystromformer"),
    **_bert_family("yoso.modeling_yoso", "Yoso"),
    **_bert_family("deberta.modeling_deberta", "Deberta"),  # the layers' feed-forward; its attention's fused in_proj has no rule
    **_bert_family("esm.modeling_esm", "Esm", activation=None),  # pre-norm, rotary q/k; its intermediate applies GELU itself
    **_bert_family("git.modeling_git", "Git"),  # GIT's text layers (the image tokens first); its vision tower is CLIP's
    **_family("git.modeling_git", {"GitVisionAttention": (_OUT_PROJ_ATTENTION, ())}),
    **_bert_family("deberta_v2.modeling_deberta_v2", "DebertaV2", value_attr="value_proj"),
    **_bert_family("sew_d.modeling_sew_d", "SEWD", value_attr="value_proj"),  # SEW-D's encoder: DeBERTa-v2's layers in a speech model
    **_family("albert.modeling_albert", {
        "AlbertLayer": (functools.partial(_two_layer_mlp, first="ffn", second="ffn_output", activation="activation"), ("attention",)),
        "AlbertAttention": (functools.partial(_attention, groups=1, value="value", output="dense", head_dim_attr="attention_head_size"), ()),
    }),
    **_family("segformer.modeling_segformer", {
        "SegformerMixMLP": (_segformer_mix_mlp, ()), "SegformerAttention": (_HEADS_OWN_VALUES, ()),
        "SegformerStage": (_no_groups, ("blocks",)),  # its overlapping patch embedding reads the pixels or the last stage's residual stream
    }),
    # GLPN's encoder: SegFormer's before its refactor (BERT's attention layout, the mix FFN under PVT v2's names)
    **_family("glpn.modeling_glpn", {
        "GLPNAttention": (_bert_attention, ()),
        "GLPNMixFFN": (functools.partial(_segformer_mix_mlp, first="dense1", second="dense2", activation="intermediate_act_fn"), ()),
    }),
    # DETR and the detectors built on its code (Table Transformer, Deformable DETR's decoder self-attention, ...):
    # positions added to the queries and keys only, the values per head -> o_proj; fc1 -> act -> fc2
    **_family("detr.modeling_detr", {
        "DetrSelfAttention": (_HEADS_OWN_VALUES, ()), "DetrCrossAttention": (_HEADS_OWN_VALUES, ()), "DetrMLP": (_two_layer_mlp, ()),
        "DetrMLPPredictionHead": (_relu_layers, ()),  # the box head: layers.0 -> ReLU -> layers.1 -> ReLU -> layers.2
    }),
    **_family("conditional_detr.modeling_conditional_detr", {  # content and position projections for q/k only
        "ConditionalDetrDecoderSelfAttention": (_HEADS_OWN_VALUES, ()),
        "ConditionalDetrDecoderCrossAttention": (_HEADS_OWN_VALUES, ()),
    }),
    **_family("deformable_detr.modeling_deformable_detr", {"DeformableDetrMultiscaleDeformableAttention": (_deformable_attention, ())}),
    **_family("rt_detr_v2.modeling_rt_detr_v2", {"RTDetrV2MultiscaleDeformableAttention": (_deformable_attention, ())}),  # points per level; bilinear or discrete sampling, per channel either way
    **_family("rt_detr.modeling_rt_detr", {"RTDetrCSPRepLayer": (_csp_rep_layer, ("bottlenecks",))}),
    # D-FINE and DEIMv2: RT-DETR's layout, their CSP layers' bottlenecks run in a loop (an nn.ModuleList), ELAN blocks
    # of CSP layers; the decoder's deformable attention projects no values, its gateway gates cat(residual, attention)
    **_families([("DFine", "d_fine.modeling_d_fine"), ("Deimv2", "deimv2.modeling_deimv2")], {
        "{}SCDown": (_sc_down, ()), "{}MLP": (_ACT_LAYERS, ()), "{}MultiscaleDeformableAttention": (_unprojected_deformable_attention, ()),
        "{}DecoderLayer": (_no_groups, ("self_attn", "encoder_attn", "mlp")),
    }),
    **_family("d_fine.modeling_d_fine", {"DFineCSPRepLayer": (_csp_rep_layer, ()), "DFineRepNCSPELAN4": (_rep_ncsp_elan4, ("csp_rep1", "csp_rep2"))}),
    **_family("deimv2.modeling_deimv2", {"Deimv2CSPRepLayer": (_split_csp_rep_layer, ()), "Deimv2RepNCSPELAN5": (_rep_ncsp_elan5, ("csp_rep1", "csp_rep2"))}),
    # LW-DETR and RF-DETR (one code): the decoder's self-attention (v_proj -> o_proj per head; values read the input
    # without the query positions) and MLP, LW-DETR's ViT attention, and the projector's C2F layers and RepVGG blocks
    **_families([("LwDetr", "lw_detr.modeling_lw_detr"), ("RfDetr", "rf_detr.modeling_rf_detr")], {
        "{}Attention": (_attention, ()), "{}MLP": (_two_layer_mlp, ()), "{}C2FLayer": (_c2f_layer, ("bottlenecks",)), "{}RepVggBlock": (_conv_norm_pair, ()),
    }),
    **_family("lw_detr.modeling_lw_detr", {"LwDetrViTAttention": (_attention, ())}),  # its forward: MoonshineStreamingEncoderAttention's (grouped kv heads)
    **_family("sam.modeling_sam", {  # its mask decoder's two-way attention, its vision neck, its mask prompt's embedding
        "SamAttention": (_internal_dim_attention, ()),
        "SamVisionNeck": (functools.partial(_conv_stem, norms={"conv1": "layer_norm1"}), ()),
        "SamMaskEmbedding": (functools.partial(_conv_stem, convs=("conv1", "conv2", "conv3"), norms={"conv1": "layer_norm1", "conv2": "layer_norm2"}), ()),
    }),
    **_family("dab_detr.modeling_dab_detr", {  # the decoder's value projections sit in its layers, outside the attention
        "DabDetrDecoderLayerSelfAttention": (functools.partial(_outside_value_attention, value="self_attn_value_proj", attention="self_attn"), ()),
        "DabDetrDecoderLayerCrossAttention": (functools.partial(_outside_value_attention, value="cross_attn_value_proj", attention="cross_attn"), ()),
        "DabDetrDecoderLayerFFN": (_two_layer_mlp, ()),
        "DabDetrEncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "DetrAttention": (_OUT_PROJ_ATTENTION, ()),  # DETR's earlier attention, in the encoder
    }),
    **_family("grounding_dino.modeling_grounding_dino", {  # the text enhancer, image-text fusion, deformable image layers; the decoder
        "GroundingDinoMultiheadAttention": (functools.partial(_attention, groups=1, value="value", output="out_proj", head_dim_attr="attention_head_size"), ()),
        "GroundingDinoBiMultiHeadAttention": (_bi_attention, ()),
        "GroundingDinoMultiscaleDeformableAttention": (_deformable_attention, ()),
        "GroundingDinoTextEnhancerLayer": (functools.partial(_two_layer_mlp, activation="activation"), ("self_attn",)),
        "GroundingDinoDeformableLayer": (_two_layer_mlp, ("self_attn",)),
        "GroundingDinoDecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn_text", "encoder_attn")),
    }),
    **_family("dpt.modeling_dpt", {"DPTPreActResidualLayer": (_pre_act_residual, ())}),  # its reassemble layers repeat Depth Anything's; its head an nn.Sequential (traced)
    **_family("depth_anything.modeling_depth_anything", {
        "DepthAnythingPreActResidualLayer": (_pre_act_residual, ()),
        "DepthAnythingReassembleLayer": (_reassemble, ()),
        "DepthAnythingDepthEstimationHead": (_depth_head, ()),
    }),
    **_family("oneformer.modeling_oneformer", {  # Mask2Former's pixel decoder; its decoders' feed-forwards as torch's layers
        "OneFormerPixelDecoderEncoderMultiscaleDeformableAttention": (_deformable_attention, ()),
        "OneFormerPixelDecoderEncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "OneFormerTransformerDecoderFFNLayer": (_TORCH_FEED_FORWARD, ()),
        "OneFormerTransformerDecoderQueryTransformerDecoderLayer": (_TORCH_FEED_FORWARD, ("self_attn", "multihead_attn")),
        "OneFormerTransformerDecoder": (_oneformer_decoder, ("query_transformer", "layers", "mask_embed")),
    }),
    **_family("mask2former.modeling_mask2former", {  # its pixel decoder's deformable encoder; its masked-attention decoder
        "Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention": (_deformable_attention, ()),
        "Mask2FormerPixelDecoderEncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "Mask2FormerAttention": (_OUT_PROJ_ATTENTION, ()),  # positions on q/k only; the cross-attention an nn.MultiheadAttention
        "Mask2FormerMaskedAttentionDecoderLayer": (_two_layer_mlp, ("self_attn", "cross_attn")),
    }),
    **_family("table_transformer.modeling_table_transformer", {  # DETR's earlier layout, BART's (pre-norm here)
        "TableTransformerEncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "TableTransformerDecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn")),
        "TableTransformerAttention": (_OUT_PROJ_ATTENTION, ()),
    }),
    **_families([("Bart", "bart.modeling_bart"), ("Whisper", "whisper.modeling_whisper")], {
        "{}EncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "{}DecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn")),
        "{}Attention": (_OUT_PROJ_ATTENTION, ()),
    }),
    **_family("pegasus_x.modeling_pegasus_x", {  # the encoder's global-local attention: the local and the global tokens' values, per head -> out_proj
        "PegasusXEncoderLayer": (_two_layer_mlp, ("self_attn",)), "PegasusXGlobalLocalAttention": (_OUT_PROJ_ATTENTION, ()),
    }),
    **_families([("Wav2Vec2", "wav2vec2.modeling_wav2vec2"), ("Hubert", "hubert.modeling_hubert")], {
        "{}FeedForward": (_WAV2VEC2_FEED_FORWARD, ()),
        "{}Attention": (_OUT_PROJ_ATTENTION, ()),
        "{}FeatureEncoder": (_conv_feature_encoder, ()),  # the convolutions over the raw waveform
    }),
    **_families([("CLIP", "clip.modeling_clip"), ("Siglip", "siglip.modeling_siglip")], {"{}MLP": (_two_layer_mlp, ()), "{}Attention": (_OUT_PROJ_ATTENTION, ())}),
    **_families(
        [("DeiT", "deit.modeling_deit"), ("Dinov2", "dinov2.modeling_dinov2"), ("Beit", "beit.modeling_beit"), ("Swin", "swin.modeling_swin")],
        {"{}MLP": (_two_layer_mlp, ()), "{}Attention": (_HEADS_OWN_VALUES, ())},
    ),
    # Llama's value path (v_proj rows per kv head -> attention -> o_proj columns) with other code around it: clamped or
    # normalised q/k/v (elementwise on v), interleaved rotary, dropout after o_proj
    **{
        (f"transformers.models.{module}", f"{cls}Attention"): (_attention, ())
        for module, cls in [
            ("olmo.modeling_olmo", "Olmo"), ("olmo2.modeling_olmo2", "Olmo2"), ("olmoe.modeling_olmoe", "Olmoe"),
            ("cohere.modeling_cohere", "Cohere"), ("starcoder2.modeling_starcoder2", "Starcoder2"),
            ("seed_oss.modeling_seed_oss", "SeedOss"), ("nemotron.modeling_nemotron", "Nemotron"), ("stablelm.modeling_stablelm", "StableLm"),
            ("olmo3.modeling_olmo3", "Olmo3"), ("exaone4.modeling_exaone4", "Exaone4"), ("llama4.modeling_llama4", "Llama4Text"),
            ("ernie4_5.modeling_ernie4_5", "Ernie4_5"), ("hunyuan_v1_dense.modeling_hunyuan_v1_dense", "HunYuanDenseV1"),
            ("helium.modeling_helium", "Helium"), ("apertus.modeling_apertus", "Apertus"), ("gpt_oss.modeling_gpt_oss", "GptOss"),
            ("glm.modeling_glm", "Glm"), ("glm4.modeling_glm4", "Glm4"), ("glm4_moe.modeling_glm4_moe", "Glm4Moe"),
            ("smollm3.modeling_smollm3", "SmolLM3"), ("cohere2.modeling_cohere2", "Cohere2"), ("minimax_m2.modeling_minimax_m2", "MiniMaxM2"),
            ("cohere2_moe.modeling_cohere2_moe", "Cohere2Moe"), ("ministral3.modeling_ministral3", "Ministral3"),
            ("flint.modeling_flint", "Flint"), ("granite_swa.modeling_granite_swa", "GraniteSWA"), ("lara_mini.modeling_lara_mini", "LaraMini"),
            ("granitemoe_swa.modeling_granitemoe_swa", "GraniteMoeSWA"), ("nanochat.modeling_nanochat", "NanoChat"),
            ("jamba.modeling_jamba", "Jamba"), ("bamba.modeling_bamba", "Bamba"), ("granitemoehybrid.modeling_granitemoehybrid", "GraniteMoeHybrid"),
            # the language models of vision-language families (multimodal rotary positions act on the queries and keys;
            # GLM-Image's, GLM-OCR's, Qwen3-VL-MoE's, Qwen2.5-VL's, Qwen2.5-Omni's and PaddleOCR-VL's repeat these classes' code)
            ("glm4v.modeling_glm4v", "Glm4vText"), ("glm4v_moe.modeling_glm4v_moe", "Glm4vMoeText"), ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLText"),
            ("ernie4_5_vl_moe.modeling_ernie4_5_vl_moe", "Ernie4_5_VLMoeText"),
            ("hunyuan_vl.modeling_hunyuan_vl", "HunYuanVLDenseV1"), ("qwen2_vl.modeling_qwen2_vl", "Qwen2VL"), ("molmo2.modeling_molmo2", "Molmo2"),
            ("mllama.modeling_mllama", "MllamaTextSelf"), ("mllama.modeling_mllama", "MllamaTextCross"),  # Llama 3.2 Vision: cross-attention values read the image
            ("ultrabert.modeling_ultrabert", "Ultrabert"),
        ]
    },  # fmt: skip
    **_family("starcoder2.modeling_starcoder2", {"Starcoder2MLP": (_c_fc_mlp, ())}),  # nn.Linear, unlike GPT-2's Conv1D
    **_family("gpt_bigcode.modeling_gpt_bigcode", {"GPTBigCodeMLP": (_c_fc_mlp, ()), "GPTBigCodeAttention": (_gpt_bigcode_attention, ())}),
    **_family("gpt_neo.modeling_gpt_neo", {"GPTNeoSelfAttention": (_OUT_PROJ_ATTENTION, ())}),  # local or global: a mask only
    **{  # BLIP's vision attention, and BLIP-2's, InstructBLIP's and InstructBLIP-Video's (through the attention interface)
        (f"transformers.models.{module}", cls): (_stacked_qkv_attention, ())
        for module, cls in (
            ("blip.modeling_blip", "BlipAttention"), ("blip_2.modeling_blip_2", "Blip2Attention"), ("instructblip.modeling_instructblip", "InstructBlipAttention"),
            ("instructblipvideo.modeling_instructblipvideo", "InstructBlipVideoAttention"),
        )
    },  # fmt: skip
    **_family("qwen2_5_vl.modeling_qwen2_5_vl", {  # the vision encoder (its language model: Qwen2's MLP and Qwen2-VL's attention)
        "Qwen2_5_VLVisionAttention": (functools.partial(_stacked_qkv_attention, output="proj"), ()),
        "Qwen2_5_VLMLP": (_gated_mlp, ()),
    }),
    **_family("deepseek_v3.modeling_deepseek_v3", {"DeepseekV3Attention": (_mla_attention, ())}),
    **_family("mistral4.modeling_mistral4", {"Mistral4Attention": (_mla_attention, ())}),  # DeepSeek-V3's latent attention; the queries scaled per position (Llama 4's)
    **_family("mistral_large4.modeling_mistral_large4", {"MistralLarge4TextAttention": (_kv_shared_mla, ())}),  # DeepSeek-V3's values and key/value latent; layers may share the latent
    **_family("axk1.modeling_axk1", {"AXK1Attention": (_mla_attention, ())}),
    **_family("axk2.modeling_axk2", {  # its gated norms' low-rank gate MLP: fc1 -> fc2
        "AXK2Attention": (_query_gated_mla, ()), "AXK2GateMLP": (_two_layer_mlp, ()),
    }),
    **_family("minicpm3.modeling_minicpm3", {"MiniCPM3Attention": (_mla_attention, ())}),
    **_family("deepseek_v32.modeling_deepseek_v32", {"DeepseekV32Attention": (_indexed_mla_attention, ())}),
    **_family("glm_moe_dsa.modeling_glm_moe_dsa", {"GlmMoeDsaAttention": (_indexed_mla_attention, ())}),
    # dots.3 Note's: the latents scaled by a constant, and a gate per head (one g_proj row per head: it scales a head's
    # value channels alike, in any order)
    **_family("dots3_note.modeling_dots3_note", {"Dots3NoteTextAttention": (_indexed_mla_attention, ())}),
    **{  # and attention sinks; the vision-language model's language layers the same
        (f"transformers.models.{module}", cls): (functools.partial(_indexed_mla_attention, gate="gate_proj"), ())
        for module, cls in (("hy_v4.modeling_hy_v4", "HYV4Attention"), ("hy_v4_vl.modeling_hy_v4_vl", "HYV4VLAttention"))
    },
    **_family("deepseek_v2.modeling_deepseek_v2", {"DeepseekV2Attention": (_mla_attention, ())}),
    **_family("longcat_flash.modeling_longcat_flash", {"LongcatFlashMLA": (_mla_attention, ())}),  # the latents also scaled by constants
    **_family("qwen2_vl.modeling_qwen2_vl", {"VisionMlp": (functools.partial(_two_layer_mlp, activation="act"), ())}),  # VisionAttention: Qwen2.5-VL's code
    **_family("qwen3_vl.modeling_qwen3_vl", {  # Qwen3VLVisionAttention: Qwen2.5-VL's code
        "Qwen3VLVisionMLP": (_LINEAR_FC_MLP, ()),
        "Qwen3VLVisionPatchMerger": (_LINEAR_FC_MLP, ()),  # its norm comes before linear_fc1
    }),
    **_family("llava.modeling_llava", {"LlavaMultiModalProjector": (_LINEAR_1_2_MLP, ())}),
    # multimodal projectors ending in linear_2(act(linear_1(x))) as LLaVA's, with their own code before linear_1
    # (a norm, a patch merger, a pixel shuffle: the input side); LLaVA-NeXT, LLaVA-OneVision... are LLaVA's code
    **{
        (f"transformers.models.{module}.modeling_{module}", f"{cls}MultiModalProjector"): (_LINEAR_1_2_MLP, ())
        for module, cls in [
            ("internvl", "InternVL"), ("mistral3", "Mistral3"), ("lfm2_vl", "Lfm2Vl"), ("vipllava", "VipLlava"), ("lighton_ocr", "LightOnOcr"),
            ("qianfan_ocr", "QianfanOCR"), ("voxtral", "Voxtral"), ("qwen3_asr", "Qwen3ASR"), ("audioflamingo3", "AudioFlamingo3"), ("glmasr", "GlmAsr"),
            ("moss_transcribe_diarize", "MossTranscribeDiarize"), ("lfm3_vl", "Lfm3Vl"),  # Moss's a LayerNorm after linear_2
        ]
    },  # fmt: skip
    **{  # the same under other names: the projectors of PaddleOCR-VL and MiniCPM-V 4.6/4.7/OCR (a norm before linear_1),
        # Kimi K2.5 (in_proj -> act -> out_proj), DeepSeek-VL (linear1 -> activation -> linear2), Cosmos 3 Edge's and
        # Qwen3-Omni's patch mergers (Qwen3-VL's linear_fc1 -> act_fn -> linear_fc2; an nn.ModuleList mlp: Linear, GELU, Linear)
        (f"transformers.models.{module}", cls): (rule, ())
        for module, cls, rule in (
            ("paddleocr_vl.modeling_paddleocr_vl", "PaddleOCRProjector", _LINEAR_1_2_MLP),
            *(
                (f"{family}.modeling_{family}", f"{prefix}DownsampleMLP", _LINEAR_1_2_MLP)
                for family, prefix in (("minicpmv4_6", "MiniCPMV4_6"), ("minicpmv4_7", "MiniCPMV4_7"), ("minicpm_ocr", "MiniCPMOcr"))
            ),
            ("kimi_k25.modeling_kimi_k25", "Kimi_K25MultimodalProjection", functools.partial(_two_layer_mlp, first="in_proj", second="out_proj", activation="act")),
            ("deepseek_vl.modeling_deepseek_vl", "DeepseekVLAligner", _TORCH_FEED_FORWARD),
            ("cosmos3_edge.modeling_cosmos3_edge", "Cosmos3EdgePatchMerger", _LINEAR_FC_MLP),
            ("qwen3_omni_moe.modeling_qwen3_omni_moe", "Qwen3OmniMoeVisionPatchMerger", functools.partial(_two_layer_mlp, first="mlp.0", second="mlp.2", activation="mlp.1")),
        )
    },  # fmt: skip
    **_family("deepseek_vl_hybrid.modeling_deepseek_vl_hybrid", {
        "DeepseekVLHybridAligner": (functools.partial(_concat_mlp, producers=("high_res_vision_proj", "vision_proj"), activation="act", consumer="proj"), ()),
        "DeepseekVLSamVisionProj": (_CONV1_CONV2, ()),  # the high-resolution SAM tower's two strided convs (after resizing its input)
    }),
    # UnlimitedOCR: its SAM tower's two strided convs; its language model's attention (Llama's value path)
    **_family("unlimited_ocr.modeling_unlimited_ocr", {"UnlimitedOcrSamVisionProj": (_CONV1_CONV2, ()), "UnlimitedOcrTextAttention": (_attention, ())}),
    # VibeVoice-ASR's: the acoustic and the semantic latents each through linear_1 -> RMS norm -> linear_2, then summed
    **_family("vibevoice_asr.modeling_vibevoice_asr", {
        "VibeVoiceAsrMultiModalProjector": (_all_of(*(
            functools.partial(_normed, rule=functools.partial(_two_layer_mlp, first=f"{path}_linear_1", second=f"{path}_linear_2", activation=None), norm=f"{path}_norm")
            for path in ("acoustic", "semantic")
        )), ()),
    }),
    # GOT-OCR 2's projector: conv_upsampler1 -> conv_upsampler2 with nothing between (then the linear multimodal_projector)
    **_family("got_ocr2.modeling_got_ocr2", {
        "GotOcr2MultiModalProjector": (functools.partial(_two_layer_mlp, first="conv_upsampler1", second="conv_upsampler2", activation=None), ()),
    }),
    # MiniMax-M3-VL's: linear_1 -> act -> linear_2 per patch, the patches merged into channels, merge_linear_1 -> merge_act -> merge_linear_2
    **_family("minimax_m3_vl.modeling_minimax_m3_vl", {
        "MiniMaxM3VLMultiModalProjector": (
            _all_of(_LINEAR_1_2_MLP, functools.partial(_two_layer_mlp, first="merge_linear_1", second="merge_linear_2", activation="merge_act")), (),
        ),
    }),
    **_family("perception_lm.modeling_perception_lm", {"PerceptionLMMultiModalProjector": (functools.partial(_two_layer_mlp, first="linear_1", second="linear_2", activation="gelu"), ())}),
    **_families([("AyaVision", "aya_vision.modeling_aya_vision"), ("Cohere2Vision", "cohere2_vision.modeling_cohere2_vision")], {
        "{}MultiModalProjector": (functools.partial(_fused_halves_mlp, fused="linear_1", down="linear_2", act="act"), ()),  # SwiGLU: act(gate) * x, linear_1's halves
    }),
    **_family("nemotron.modeling_nemotron", {"NemotronMLP": (_UP_DOWN_MLP, ())}),  # ReLU^2, no gate
    **_family("arcee.modeling_arcee", {"ArceeMLP": (_UP_DOWN_MLP, ())}),
    **_family("apertus.modeling_apertus", {"ApertusMLP": (_UP_DOWN_MLP, ())}),  # xIELU, no gate
    **_family("llama4.modeling_llama4", {"Llama4TextMLP": (functools.partial(_gated_mlp, act="activation_fn"), ())}),
    **_family("mpt.modeling_mpt", {
        "MptMLP": (functools.partial(_two_layer_mlp, first="up_proj", second="down_proj", activation="act"), ()),  # the residual is added after down_proj
        "MptAttention": (functools.partial(_stacked_qkv_attention, fused="Wqkv", output="out_proj", heads_attr="n_heads"), ()),  # Wqkv.chunk(3)
    }),
    **_family("lfm2.modeling_lfm2", {
        "Lfm2Attention": (functools.partial(_attention, output="out_proj"), ()),
        "Lfm2MLP": (functools.partial(_gated_mlp, gate="w1", up="w3", down="w2", act=None), ()),  # w2(F.silu(w1(x)) * w3(x))
        "Lfm2ShortConv": (_short_conv, ()),  # LFM3's repeats its code
    }),
    **_family("lfm3.modeling_lfm3", {"Lfm3Attention": (_attention, ())}),  # Llama's values; g_proj's gate scales each head's output whole
    **_family("lfm3_vl.modeling_lfm3_vl", {  # its vision short conv runs over the image (a depthwise Conv2d); its attention Llama's (grouped key/value heads)
        "Lfm3VlVisionShortConv": (functools.partial(_short_conv, conv_attr="spatial_conv"), ()), "Lfm3VlVisionAttention": (functools.partial(_attention, output="out_proj"), ()),
    }),
    **_family("minimax.modeling_minimax", {"MiniMaxLightningAttention": (functools.partial(_normed, rule=_lightning_attention, norm="norm"), ())}),
    **_family("zaya.modeling_zaya", {"ZayaAttention": (_cca_attention, ())}),
    **_family("textnet.modeling_textnet", {"TextNetStage": (_rep_conv_stage, ())}),
    **_family("swiftformer.modeling_swiftformer", {  # its conv encoders' and local representations' 1 x 1 convs, its MLPs, its additive attention
        **{cls: (functools.partial(_two_layer_mlp, first="point_wise_conv1", second="point_wise_conv2", activation="act"), ()) for cls in (
            "SwiftFormerConvEncoder", "SwiftFormerLocalRepresentation",
        )},
        "SwiftFormerMlp": (functools.partial(_two_layer_mlp, activation="act"), ()),
        "SwiftFormerEfficientAdditiveAttention": (_additive_attention, ()),
    }),
    **_family("minicpmv4_6.modeling_minicpmv4_6", {  # the vision tower: SigLIP's values; the window merger's MLP (its act a GELU function)
        "MiniCPMV4_6VisionAttention": (_OUT_PROJ_ATTENTION, ()),
        "MiniCPMV4_6ViTWindowAttentionMerger": (functools.partial(_two_layer_mlp, first="linear_1", second="linear_2", activation=None), ("self_attn",)),
    }),
    **_family("step3p7.modeling_step3p7", {
        "Step3p7Attention": (_head_gated_attention, ()), "Step3p7MLP": (_gated_mlp, ()),  # the MLP clamps gate and up elementwise
        # its vision tower: rotary attention (v_proj -> out_proj per head), then two strided convs, nothing between
        "Step3p7VisionAttention": (_OUT_PROJ_ATTENTION, ()),
        "Step3p7VisionModel": (functools.partial(_two_layer_mlp, first="downsampler1", second="downsampler2", activation=None), ("embeddings", "layers")),
    }),
    **_family("upernet.modeling_upernet", {"UperNetHead": (_upernet_head, ()), "UperNetFCNHead": (_fcn_head, ())}),
    **_family("sam_hq.modeling_sam_hq", {"SamHQMaskDecoder": (_hq_mask_decoder, ("transformer", "output_hypernetworks_mlps", "iou_prediction_head", "hq_mask_mlp"))}),
    # BLT: its local encoder's and decoder's and its global transformer's self-attention, and the cross-attention between bytes and patches
    # (the keys and values read the other stream, k_norm-ed): Llama's value path
    **_family("blt.modeling_blt", {"BltSelfAttention": (_attention, ()), "BltCrossAttention": (_attention, ())}),
    # MarkupLM: its XPath embedding's xpath_unitseq2_inner -> ReLU -> inner2emb (its BERT layers: BERT's code)
    **_family("markuplm.modeling_markuplm", {
        "XPathEmbeddings": (functools.partial(_two_layer_mlp, first="xpath_unitseq2_inner", second="inner2emb", activation="activation"), ()),
    }),
    **_family("tvp.modeling_tvp", {  # TVP's encoder: BERT's layout under its own names
        "TvpAttention": (functools.partial(_attention, groups=1, value="value", output="dense", head_dim_attr="attention_head_size"), ()),
        "TvpEncodeLayer": (functools.partial(_bert_layer, family="Tvp", output_class="TvpOutputLayer"), ("attention",)),
    }),
    **_family("seggpt.modeling_seggpt", {"SegGptAttention": (_SAM_ATTENTION, ())}),  # SAM's fused qkv (relative positions on the scores)
    **_family("inkling.modeling_inkling", {
        "InklingAttention": (_short_conv_values, ()),
        "InklingMLP": (_gated_mlp, ()),  # times one learned scalar (global_scale)
        # its short convs after the attention and the MLP run on the residual stream, channel by channel
        "InklingDecoderLayer": (_no_groups, ("self_attn", "mlp")),
    }),
    **_family("inkling2.modeling_inkling2", {
        "Inkling2SlidingAttention": (_short_conv_attention, ()), "Inkling2FullAttention": (_short_conv_attention, ()),
        # the short convs after the attention and the MLP run on the residual stream, channel by channel
        **{f"Inkling2{kind}DecoderLayer": (_no_groups, ("attention_input", "mlp_input", "self_attn", "mlp")) for kind in ("Sliding", "Full")},
        "Inkling2VisionAttention": (_OUT_PROJ_ATTENTION, ()),  # rotary, per image (cu_seqlens)
    }),
    **_family("kolibri1_1.modeling_kolibri1_1", {"Kolibri1_1Attention": (_nvfp4_attention, ())}),
    **_family("xlstm.modeling_xlstm", {"xLSTMLayer": (_mlstm_layer, ()), "xLSTMFeedForward": (_xlstm_feed_forward, ())}),
    **_family("afmoe.modeling_afmoe", {"AfmoeAttention": (_gated_output_attention, ())}),
    # Ergo: Phi-3's fused qkv_proj; ReLU^2 up/down MLPs (the shared expert's RMS norm is on its output, the hidden size)
    **_family("ergo.modeling_ergo", {"ErgoAttention": (_phi3_attention, ()), "ErgoMLP": (_UP_DOWN_MLP, ()), "ErgoSharedExpert": (_UP_DOWN_MLP, ())}),
    **_family("mimo_v2_flash.modeling_mimo_v2_flash", {"MiMoV2FlashAttention": (functools.partial(_attention, head_dim_attr="v_head_dim"), ())}),  # values of their own size
    **_family("minicpm5_moe.modeling_minicpm5_moe", {"MiniCPM5MoeAttention": (functools.partial(_query_gated_attention, query="q_gate_proj"), ())}),
    # XLM and FlauBERT (the same code): v_lin -> out_lin per head, lin1 -> act -> lin2
    **_families([("xlm", "xlm.modeling_xlm"), ("flaubert", "flaubert.modeling_flaubert")], {
        "MultiHeadAttention": (functools.partial(_attention, groups=1, value="v_lin", output="out_lin"), ()),
        "TransformerFFN": (functools.partial(_two_layer_mlp, first="lin1", second="lin2", activation="act"), ()),
    }),
    **_family("hiera.modeling_hiera", {"HieraMaskUnitAttention": (functools.partial(_stacked_qkv_attention, output="proj"), ())}),  # qkv: all q, k, v heads
    # PVT: BERT's attention layout, dense1 -> act -> dense2; PVT v2: values -> proj in one module, SegFormer's mix MLP
    **_family("pvt.modeling_pvt", {
        "PvtAttention": (_bert_attention, ()),
        "PvtFFN": (functools.partial(_two_layer_mlp, first="dense1", second="dense2", activation="intermediate_act_fn"), ()),
    }),
    **_family("pvt_v2.modeling_pvt_v2", {
        "PvtV2SelfAttention": (_VALUE_PROJ_ATTENTION, ()),
        "PvtV2ConvFeedForwardNetwork": (
            functools.partial(_segformer_mix_mlp, first="dense1", second="dense2", activation="intermediate_act_fn", elementwise=("relu",)), (),
        ),
        "PvtV2EncoderLayer": (_no_groups, ("blocks",)),  # its overlapping patch embedding reads the pixels or the last stage's residual stream
    }),
    **_family("laguna.modeling_laguna", {"LagunaAttention": (_laguna_attention, ())}),
    **_family("modernbert_decoder.modeling_modernbert_decoder", {"ModernBertDecoderAttention": (functools.partial(_attention, groups=1, output="Wo"), ())}),
    **_family("openai.modeling_openai", {"Attention": (_openai_gpt_attention, ()), "MLP": (_c_fc_mlp, ())}),  # GPT-1: GPT-2's Conv1D layout
    **_family("trocr.modeling_trocr", {"TrOCRDecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn")), "TrOCRAttention": (_OUT_PROJ_ATTENTION, ())}),  # BART's
    # Beam: AFMoE's gated attention output (and a gate bias per head: the same for a head's every channel); a gated
    # MLP that computes its product in float32
    **_family("beam.modeling_beam", {"BeamAttention": (_gated_output_attention, ()), "BeamMLP": (_gated_mlp, ())}),
    **_family("diffllama.modeling_diffllama", {"DiffLlamaAttention": (_diff_attention, ())}),
    # clamped SwiGLU MLPs (their experts: the fused experts rule, through their own _apply_gate)
    **_family("deepseek_v4.modeling_deepseek_v4", {"DeepseekV4MLP": (_gated_mlp, ()), "DeepseekV4Attention": (_grouped_output_attention, ())}),  # act(gate.clamp(max)) * up.clamp(min, max)
    **_family("minimax_m3_vl.modeling_minimax_m3_vl", {
        "MiniMaxM3VLDenseMLP": (functools.partial(_fused_halves_mlp, act=None), ()),  # (up + 1) * gate * sigmoid(alpha * gate), clamped
        "MiniMaxM3VLAttention": (_attention, ()),  # its sparse layers' lightning indexer reads the layer's input, not the values
        "MiniMaxM3VLVisionAttention": (_OUT_PROJ_ATTENTION, ()),  # rotary, per image (cu_seqlens)
    }),
    **_family("doge.modeling_doge", {"DogeAttention": (_doge_attention, ())}),
    **_family("dory.modeling_dory", {  # nGPT: per-channel scales and a parameter-free L2 norm between the layers
        "DoryAttention": (functools.partial(_channel_scaled, rule=_gated_output_attention, scales=("s_gate",), norm="attn_sub_norm", norm_class="DoryL2Norm"), ()),
        "DoryMLP": (functools.partial(_channel_scaled, rule=_gated_mlp, scales=("suv_gate", "suv_up"), norm="ffn_sub_norm", norm_class="DoryL2Norm"), ()),
    }),
    **_family("ctrl.modeling_ctrl", {"MultiHeadAttention": (functools.partial(_attention, groups=1, value="Wv", output="dense"), ())}),
    **_family("gpt_neox_japanese.modeling_gpt_neox_japanese", {"GPTNeoXJapaneseAttention": (_per_head_qkv, ()), "GPTNeoXJapaneseMLP": (_H_TO_4H_MLP, ())}),
    **_family("cpmant.modeling_cpmant", {
        "CpmAntAttention": (functools.partial(_attention, groups=1, value="project_v", output="attention_out", head_dim_attr="dim_head"), ()),
        "CpmAntFeedForward": (functools.partial(_gated_mlp, gate="w_in.w_0", up="w_in.w_1", down="w_out", act="w_in.act"), ()),  # dropout before w_out
    }),
    # Moshi's decoder: fc2(act(x0) * x1) from fc1's halves; Llama's value path in MoshiLinear wrappers (the depth
    # decoder's per-codebook MoshiFlexibleLinear weights: no rule)
    **_family("moshi.modeling_moshi", {
        "MoshiGatingMLP": (functools.partial(_fused_halves_mlp, fused="fc1", down="fc2"), ()),
        "MoshiAttention": (functools.partial(_attention, value="v_proj.linear", output="o_proj.linear"), ()),
    }),
    **{
        (f"transformers.models.{module}.modeling_{module}", f"{cls}Attention"): (_query_gated_attention, ())
        for module, cls in [("qwen3_next", "Qwen3Next"), ("qwen3_5", "Qwen3_5"), ("qwen3_5_moe", "Qwen3_5Moe")]
    },
    **_family("qwen3_5.modeling_qwen3_5", {"Qwen3_5GatedDeltaNet": (_gated_delta_net, ())}),
    **_family("qwen3_5_moe.modeling_qwen3_5_moe", {"Qwen3_5MoeGatedDeltaNet": (_gated_delta_net, ())}),
    **_family("qwen3_next.modeling_qwen3_next", {"Qwen3NextGatedDeltaNet": (_gated_delta_net, ())}),
    **_family("vibevoice_acoustic_tokenizer.modeling_vibevoice_acoustic_tokenizer", {  # ConvNeXt-1d layers: the depthwise mixer reads the stream
        "VibeVoiceAcousticTokenizerFeedForward": (functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation="activation"), ()),
        "VibeVoiceAcousticTokenizerConvNext1dLayer": (_no_groups, ("ffn",)), "VibeVoiceAcousticTokenizerEncoderLayer": (_no_groups, ("stage",)),
    }),
    **_family("vibevoice.modeling_vibevoice", {  # its layers' feed-forwards and the timestep MLP keep their groups
        "VibeVoiceDiffusionHead": (_vibevoice_diffusion_head, ("timestep_proj", "layers")), "VibeVoiceDiffusionHeadAdaLayerNorm": (_no_groups, ("ffn",)),
    }),
    **_family("neomme.modeling_neomme", {"NeoMMEAttention": (_neomme_attention, ())}),
    **_family("fun_asr_nano.modeling_fun_asr_nano", {
        "FunAsrNanoAttention": (_fsmn_attention, ()), "FunAsrNanoMLP": (_two_layer_mlp, ()),
        "FunAsrNanoMultiModalProjector": (functools.partial(_two_layer_mlp, first="linear_1", second="linear_2", activation="act"), ("layers",)),
    }),
    **_family("hgnet_v2.modeling_hgnet_v2", {  # a stage's downsampling conv is depthwise over the stream: no group
        "HGNetV2BasicLayer": (_hgnet_basic_layer, ("aggregation",)), "HGNetV2Stage": (_no_groups, ("blocks",)),
    }),
    # PP-LCNet (V1, V3, V4) and PP-OCRv6's detection neck: their squeeze-excitation bottlenecks (conv 0 -> ReLU -> conv 2), PP-LCNet's
    # depthwise-separable chains within a block (V3's block too: its reparameterisable layers, summed conv branches, are refused), V4's channel MLPs
    **_family("pp_lcnet.modeling_pp_lcnet", {  # a layer's own convs: their groups are its block's
        "PPLCNetSqueezeExcitationModule": (_SQUEEZE_EXCITATION, ()), "PPLCNetBlock": (_pp_lcnet_block, ("layers",)),
        "PPLCNetDepthwiseSeparableConvLayer": (_no_groups, ("squeeze_excitation_module",)), "PPLCNetForImageClassification": (_pp_lcnet_classifier, ("encoder",)),
    }),
    **_family("pp_lcnet_v3.modeling_pp_lcnet_v3", {"PPLCNetV3SqueezeExcitationModule": (_SQUEEZE_EXCITATION, ()), "PPLCNetV3Block": (_pp_lcnet_block, ("layers",))}),
    **_family("pp_lcnet_v4.modeling_pp_lcnet_v4", {
        "PPLCNetV4SqueezeExcitationModule": (_SQUEEZE_EXCITATION, ()), "PPLCNetV4DepthwiseSeparableConvLayer": (_pp_lcnet_v4_layer, ("token_squeeze_excitation",)),
    }),
    # PP-DocLayout v4's reading-order scorer: q_proj and k_proj read the decoder's queries and meet in a dot product, no layer's input
    **_family("pp_doclayout_v4.modeling_pp_doclayout_v4", {"PPDocLayoutV4GlobalPointer": (_no_groups, ())}),
    **_family("pp_ocrv6_small_det.modeling_pp_ocrv6_small_det", {  # its layers' depthwise and pointwise convs read and write the stream
        "PPOCRV6SmallDetSqueezeExcitationModule": (functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation="act_fn"), ()),
        "PPOCRV6SmallDetDepthwiseSeparableConvLayer": (_no_groups, ("squeeze_excitation_module",)),
    }),
    # DAC's codec: each residual unit's conv1 -> Snake -> conv2; the blocks' own convs read and write the stream; the quantizers' projections
    # stay (their latents are one of the model's outputs)
    **_family("dac.modeling_dac", {
        "DacResidualUnit": (_snake_unit, ()),
        **{cls: (_no_groups, children) for cls, children in (
            ("DacEncoder", ("block",)), ("DacDecoder", ("block",)), ("DacEncoderBlock", ("res_unit1", "res_unit2", "res_unit3")),
            ("DacDecoderBlock", ("res_unit1", "res_unit2", "res_unit3")),
        )},
        "DacVectorQuantize": (_returned_latents, ()),
    }),
    # HiFi-GAN's residual blocks (FastSpeech 2's vocoder; SeamlessM4T's and VITS's copy it) and EnCodec's SEANet blocks (Bark's codec)
    **{  # the vocoders: conv_pre reads the spectrogram, the transposed upsampling convs and conv_post the stream of the residual blocks
        (f"transformers.models.{module}", cls): rule
        for module, cls, rule in (
            ("fastspeech2_conformer.modeling_fastspeech2_conformer", "HifiGanResidualBlock", (_hifigan_residual_block, ())),
            ("fastspeech2_conformer.modeling_fastspeech2_conformer", "FastSpeech2ConformerHifiGan", (_no_groups, ("resblocks",))),
            ("seamless_m4t.modeling_seamless_m4t", "SeamlessM4THifiGan", (_no_groups, ("resblocks",))),
            ("seamless_m4t_v2.modeling_seamless_m4t_v2", "SeamlessM4Tv2HifiGan", (_no_groups, ("resblocks",))),
            ("vits.modeling_vits", "VitsHifiGan", (_no_groups, ("resblocks",))),
        )
    },
    # SuperPoint's keypoint network: its conv blocks (within and between) and its two decoders' conv_a -> ReLU -> conv_b;
    # LightGlue's matcher: Llama-style attention (self and cross), fc1 -> LayerNorm -> act -> fc2
    **_family("superpoint.modeling_superpoint", {
        "SuperPointConvBlock": (functools.partial(_two_layer_mlp, first="conv_a", second="conv_b", activation="relu"), ()),
        "SuperPointEncoder": (_superpoint_encoder, ("conv_blocks",)),
        "SuperPointInterestPointDecoder": (functools.partial(_two_layer_mlp, first="conv_score_a", second="conv_score_b", activation="relu"), ()),
        "SuperPointDescriptorDecoder": (functools.partial(_two_layer_mlp, first="conv_descriptor_a", second="conv_descriptor_b", activation="relu"), ()),
    }),
    **_family("lightglue.modeling_lightglue", {
        "LightGlueAttention": (_attention, ()),
        "LightGlueMLP": (functools.partial(_normed_fan_out, producer="fc1", norm="layer_norm", consumers=("fc2",), activation="activation_fn"), ()),
        "LightGlueMatchAssignmentLayer": (_dot_product_only, ()),
    }),
    # MRA: BERT's feed-forward (its attention's values pass through a CUDA kernel)
    **_family("mra.modeling_mra", {"MraLayer": (functools.partial(_bert_layer, family="Mra"), ("attention",)), "MraAttention": (_mra_attention, ())}),
    # CLVP: its attention (the encoders' values rotated in part) and its encoders' gated MLPs
    **_family("clvp.modeling_clvp", {"ClvpSelfAttention": (_clvp_attention, ()), "ClvpEncoderMLP": (_clvp_encoder_mlp, ())}),
    # UnivNet's kernel predictor: its stream and its residual blocks' conv1 -> leaky ReLU -> conv2; UVDoc's residual blocks
    **_family("univnet.modeling_univnet", {
        "UnivNetKernelPredictor": (_univnet_kernel_predictor, ("resblocks",)), "UnivNetKernelPredictorResidualBlock": (_CONV1_CONV2, ()),
    }),
    **_family("uvdoc.modeling_uvdoc", {"UVDocResidualBlock": (_uvdoc_residual_block, ())}),
    # SeamlessM4T's (v1, v2) unit duration predictors; v2's text-to-unit decoder layers' conv1 -> act -> conv2 (masked between)
    **{
        (f"transformers.models.{module}", cls): (functools.partial(_normed_conv_chain, steps=(("conv1", "ln1", "conv2"), ("conv2", "ln2", "proj")), act="activation_function"), ())
        for module, cls in (("seamless_m4t.modeling_seamless_m4t", "SeamlessM4TVariancePredictor"), ("seamless_m4t_v2.modeling_seamless_m4t_v2", "SeamlessM4Tv2VariancePredictor"))
    },
    **_family("seamless_m4t_v2.modeling_seamless_m4t_v2", {
        "SeamlessM4Tv2TextToUnitDecoderLayer": (functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation="activation_fn"), ("self_attn",)),
    }),
    # Apertus 1.5's VQ-VAE image tokenizer (Janus's, with Janus's family): ResNet blocks with GroupNorms, one-head
    # attention blocks over the channels (v -> proj_out)
    **_family("apertus1p5.modeling_apertus1p5", {
        "Apertus1p5VisionTokenizerResnetBlock": (_VQ_RESNET_BLOCK, ()), "Apertus1p5VisionTokenizerAttnBlock": (_VQ_ATTN_BLOCK, ()),
        "Apertus1p5VisionTokenizerEncoder": (_no_groups, ("stages", "mid")), "Apertus1p5VisionTokenizerEncoderStage": (_no_groups, ("layers",)),
    }),
    # VITS (MMS-TTS): its text encoder's attention and feed-forward, duration predictors, WaveNets (the prior's coupling
    # flows, the posterior encoder) and their streams; the HiFi-GAN above
    **_family("vits.modeling_vits", {
        "VitsAttention": (_vits_attention, ()),
        "VitsFeedForward": (functools.partial(_two_layer_mlp, first="conv_1", second="conv_2", activation="act_fn"), ()),
        "VitsDurationPredictor": (functools.partial(_normed_conv_chain, steps=(("conv_1", "norm_1", "conv_2"), ("conv_2", "norm_2", "proj"))), ()),
        "VitsStochasticDurationPredictor": (_vits_stochastic_duration_predictor, ()),
        "VitsWaveNet": (_vits_wavenet, ()),
        "VitsPosteriorEncoder": (functools.partial(_vits_wavenet_streams, post="conv_proj"), ("wavenet",)),
        "VitsResidualCouplingLayer": (functools.partial(_vits_wavenet_streams, post="conv_post"), ("wavenet",)),
    }),
    **_family("encodec.modeling_encodec", {"EncodecResnetBlock": (_seanet_block, ())}),
    # Xcodec2 (NeuCodec repeats it): ResNet blocks with GroupNorm (an order per group), Llama's attention, the semantic adapter's conv2 -> ReLU
    # -> conv3 (conv1's and conv3's outputs join a residual), the decoder's fc -> embed (a Linear, then a conv over its channels)
    # ERNIE 4.5 VL's resampler: its spatial and temporal MLPs, fc1 -> GELU -> fc2 (then a norm over fc2's outputs)
    **_family("ernie4_5_vl_moe.modeling_ernie4_5_vl_moe", {"Ernie4_5_VLMoeVisionMLP": (functools.partial(_two_layer_mlp, activation="act_fn"), ())}),
    # Funnel Transformer: relative attention (its positional and segment terms act on the queries and keys only), each
    # head's values (v_head) -> post_proj; linear_1 -> act -> linear_2; the classifier's linear_hidden -> tanh -> linear_out
    **_family("funnel.modeling_funnel", {
        "FunnelRelMultiheadAttention": (functools.partial(_attention, groups=1, value="v_head", output="post_proj", head_dim_attr="config.d_head"), ()),
        "FunnelPositionwiseFFN": (functools.partial(_two_layer_mlp, first="linear_1", second="linear_2", activation="activation_function"), ()),
        "FunnelClassificationHead": (functools.partial(_two_layer_mlp, first="linear_hidden", second="linear_out", activation=None), ()),
    }),
    # ProphetNet: BART's layout under its own names; its decoder's n-gram self-attention runs the main and the predicting
    # streams through the same value_proj, each head's values -> out_proj (a relative position bias on the scores only)
    **_family("prophetnet.modeling_prophetnet", {
        **dict.fromkeys(("ProphetNetAttention", "ProphetNetNgramSelfAttention"), (functools.partial(_OUT_PROJ_ATTENTION, value="value_proj"), ())),
        "ProphetNetFeedForward": (functools.partial(_two_layer_mlp, first="intermediate", second="output", activation="activation_fn"), ()),
    }),
    # X-Codec's semantic encoder and decoder: residual units act -> conv1 -> act -> conv2 (+ input); the decoder's conv2
    # reads its blocks' residual stream
    **_family("xcodec.modeling_xcodec", {
        "XcodecResidualUnit": (functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation="activation"), ()),
        "SemanticDecoder": (_no_groups, ("conv_blocks",)),
    }),
    **_family("xcodec2.modeling_xcodec2", {
        "Xcodec2ResNetBlock": (_group_norm_resnet_block, ()), "Xcodec2Attention": (_attention, ()),
        "Xcodec2SemanticAdapter": (functools.partial(_two_layer_mlp, first="conv2", second="conv3", activation="act2"), ()),
        "Xcodec2Decoder": (functools.partial(_two_layer_mlp, first="fc", second="embed", activation=None), ("prior_net", "layers", "post_net")),
        "Xcodec2Quantizer": (_scalar_quantizer, ()),
    }),
    **_family("jetmoe.modeling_jetmoe", {"JetMoeAttention": (_jetmoe_attention, ()), "JetMoeMoE": (_jetmoe_moe, ())}),
    **_family("kimi_linear.modeling_kimi_linear", {  # its full-attention layers DeepSeek-V3's latent attention; the forget gate's bottleneck f_a_proj -> f_b_proj
        "KimiLinearAttention": (_mla_attention, ()), "KimiLinearDeltaAttention": (_kimi_delta_attention, ("forget_gate",)),
        "KimiLinearForgetGate": (functools.partial(_two_layer_mlp, first="f_a_proj", second="f_b_proj", activation=None), ()),
    }),
    **_family("bailing_hybrid.modeling_bailing_hybrid", {  # its latent attention's output gated per head (g_proj: one gate for all of a head's channels)
        "BailingHybridAttention": (_mla_attention, ()), "BailingHybridDeltaAttention": (_kimi_delta_attention, ()),
    }),
    **_family("mamba.modeling_mamba", {"MambaMixer": (_mamba_mixer, ())}),
    **_family("falcon_mamba.modeling_falcon_mamba", {"FalconMambaMixer": (_mamba_mixer, ())}),  # RMS norms on dt, B, C: x_proj's outputs
    **_family("jamba.modeling_jamba", {"JambaMambaMixer": (_mamba_mixer, ())}),
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (_mamba2_mixer, ())
        for module, cls in [
            ("mamba2", "Mamba2Mixer"), ("bamba", "BambaMixer"), ("nemotron_h", "NemotronHMamba2Mixer"), ("zamba2", "Zamba2MambaMixer"),
            ("granitemoehybrid", "GraniteMoeHybridMambaLayer"),
        ]
    },
    **_family("granitemoehybrid.modeling_granitemoehybrid", {  # the shared MLP: output_linear(act(x0) * x1), input_linear's halves
        "GraniteMoeHybridMLP": (functools.partial(_fused_halves_mlp, fused="input_linear", down="output_linear", act="activation"), ()),
    }),
    **_family("biogpt.modeling_biogpt", {"BioGptDecoderLayer": (_two_layer_mlp, ("self_attn",))}),
    **_family("modernbert.modeling_modernbert", {
        "ModernBertMLP": (functools.partial(_fused_halves_mlp, fused="Wi", down="Wo", act="act"), ()),  # Wo(act(input) * gate), Wi's halves
        "ModernBertAttention": (functools.partial(_stacked_qkv_attention, fused="Wqkv", output="Wo", heads_attr=None), ()),
    }),
    **_family("mpnet.modeling_mpnet", {
        "MPNetLayer": (functools.partial(_bert_layer, family="MPNet"), ("attention",)),
        "MPNetSelfAttention": (functools.partial(_attention, groups=1, value="v", output="o", head_dim_attr="attention_head_size"), ()),
    }),
    **_bert_family("camembert.modeling_camembert", "Camembert"),
    **_bert_family("ernie.modeling_ernie", "Ernie"),
    **_family("dinov3_vit.modeling_dinov3_vit", {"DINOv3ViTAttention": (_HEADS_OWN_VALUES, ())}),  # rotary on the patches' q and k only
    # embedding encoders with rotary q/k (GTE, Jina Embeddings v3, NomicBERT): every head its own values -> o_proj
    **_family("gte.modeling_gte", {"GteAttention": (_HEADS_OWN_VALUES, ()), "GteMLP": (_gated_mlp, ())}),  # dropout after the product
    **_family("jina_embeddings_v3.modeling_jina_embeddings_v3", {"JinaEmbeddingsV3Attention": (_HEADS_OWN_VALUES, ())}),
    **_family("nomic_bert.modeling_nomic_bert", {"NomicBertAttention": (_HEADS_OWN_VALUES, ())}),
    **_bert_family("big_bird.modeling_big_bird", "BigBird"),  # full or block-sparse attention: blocks of positions, not of channels
    **{  # BLIP-2's, InstructBLIP's and InstructBLIP-Video's Q-Former: BERT's attention under other names, and two feed-forwards per layer
        (f"transformers.models.{module}", f"{family}{cls}"): rule
        for module, family in (
            ("blip_2.modeling_blip_2", "Blip2QFormer"), ("instructblip.modeling_instructblip", "InstructBlipQFormer"),
            ("instructblipvideo.modeling_instructblipvideo", "InstructBlipVideoQFormer"),
        )
        for cls, rule in (
            ("Attention", (functools.partial(_bert_attention, attention_attr="attention"), ())),
            ("Layer", (functools.partial(_qformer_layer, family=family), ("attention", "crossattention"))),
        )
    },
    **_bert_family("visual_bert.modeling_visual_bert", "VisualBert"),  # text and image embeddings in one sequence
    **_bert_family("xmod.modeling_xmod", "Xmod"),  # its language adapters act on the hidden size, after output.dense
    **_bert_family("bros.modeling_bros", "Bros"),  # box positions act on the scores
    **_family("lilt.modeling_lilt", {"LiltLayer": (_lilt_layer, ("attention",)), "LiltAttention": (_lilt_attention, ())}),  # text and layout streams
    # TimesFM (1 and 2.5): Llama's value path (a learned per-channel scale on the queries); Pax's MLP (gate_proj -> F.relu
    # -> down_proj) and the residual blocks of the input and output heads (input_layer -> activation -> output_layer,
    # residual_layer beside them on the block's input)
    **_family("timesfm.modeling_timesfm", {
        "TimesFmAttention": (functools.partial(_attention, groups=1), ()),  # every head its own keys and values
        "TimesFmMLP": (functools.partial(_two_layer_mlp, first="gate_proj", second="down_proj", activation=None), ()),
        "TimesFmResidualBlock": (functools.partial(_two_layer_mlp, first="input_layer", second="output_layer", activation="activation"), ()),
    }),
    **_family("timesfm2_5.modeling_timesfm2_5", {
        "TimesFm2_5Attention": (_attention, ()),
        "TimesFm2_5ResidualBlock": (functools.partial(_two_layer_mlp, first="input_layer", second="output_layer", activation="activation"), ()),
    }),
    **_family("pi0.modeling_pi0", {  # PI0Model: PI05Model's code (its rule); the action expert a plain Gemma
        "PI0ActionTimeEmbedding": (functools.partial(_two_layer_mlp, first="action_time_mlp_in", second="action_time_mlp_out", activation=None), ()),  # F.silu between
    }),
    **_family("pi05.modeling_pi05", {
        "PI05Model": (_prefix_cache_attention, ("vlm", "dit")),
        "PI05Attention": (_no_groups, ()),  # its values are in PI05Model's groups, with the VLM layer's
        # its adaptive norms' dense layers read the timestep embedding (scale, shift and gate of the residual stream)
        "PI05DecoderLayer": (_no_groups, ("self_attn", "mlp")),
        "PI05ActionTimeEmbedding": (functools.partial(_two_layer_mlp, first="time_mlp_in", second="time_mlp_out", activation=None), ()),  # F.silu between
    }),
    **_family("mvp.modeling_mvp", {"MvpEncoder": (_mvp_stack, ()), "MvpDecoder": (_mvp_stack, ())}),  # BART's layers, and prompts
    **_family("perceiver.modeling_perceiver", {  # the latents' cross-attention to the inputs and self-attention; the decoders' queries
        "PerceiverAttention": (functools.partial(_bert_attention, heads_attr="num_heads", head_dim_attr="v_channels_per_head"), ()),
        "PerceiverMLP": (functools.partial(_two_layer_mlp, first="dense1", second="dense2", activation="intermediate_act_fn"), ()),
    }),
    **_bert_family("blip.modeling_blip_text", "BlipText"),  # BLIP's text encoder and decoder: self-attention, and cross-attention to the image
    **_family("bridgetower.modeling_bridgetower", {  # BERT's layout in the text tower and the cross-modal layers; CLIP's vision tower
        "BridgeTowerAttention": (_bert_attention, ()),
        "BridgeTowerTextLayer": (functools.partial(_bert_layer, family="BridgeTower"), ("attention", "crossattention")),
        "BridgeTowerBertCrossLayer": (functools.partial(_bert_layer, family="BridgeTower"), ("attention", "crossattention")),
        "BridgeTowerResidualAttention": (_module_dict_mlp, ("attn",)),  # its attn an nn.MultiheadAttention (that class's rule)
    }),
    **_family("fnet.modeling_fnet", {"FNetLayer": (functools.partial(_bert_layer, family="FNet"), ())}),  # Fourier mixing in place of attention
    # IDEFICS (1): Llama's MLP and every head's own values (v_proj -> o_proj) in its decoder layers and its gated
    # cross-attention to the images; CLIP's vision tower; the perceiver resampler (latents over [image; latents]: v_proj
    # -> output_proj; fc -> ReLU -> c_proj)
    **_family("idefics.modeling_idefics", {"IdeficsMLP": (_gated_mlp, ()), "IdeficsAttention": (functools.partial(_attention, groups=1), ())}),
    **_family("idefics.vision", {"IdeficsVisionAttention": (_OUT_PROJ_ATTENTION, ())}),
    **_family("idefics.perceiver", {
        "IdeficsPerceiverAttention": (functools.partial(_attention, groups=1, output="output_proj"), ()),
        "IdeficsMLP": (functools.partial(_two_layer_mlp, first="fc", second="c_proj", activation="act"), ()),
    }),
    # Aria's projector: its feed-forward (linear_in -> GELU -> linear_out) and its cross-attention (its nn.MultiheadAttention's
    # values by that class's rule)
    **_family("aria.modeling_aria", {
        "AriaProjectorMLP": (functools.partial(_two_layer_mlp, first="linear_in", second="linear_out", activation="act"), ()),
        "AriaCrossAttention": (_aria_cross_attention, ("multihead_attn",)),
    }),
    # PatchTSMixer: its MLPs (fc1 -> F.gelu -> fc2) mix patches, features or channels, whichever axis the block moves last
    # (the blocks' gated attention, attn_layer -> softmax over the same axis -> times the input, has no hidden channels)
    **_family("patchtsmixer.modeling_patchtsmixer", {
        "PatchTSMixerMLP": (functools.partial(_two_layer_mlp, activation=None), ()),
        **{block: (_no_groups, ("mlp", "self_attn_layer")) for block in ("PatchMixerBlock", "FeatureMixerBlock", "PatchTSMixerChannelFeatureMixerBlock")},
    }),
    # CLAP: its audio encoder (HTS-AT, Swin's layout: windowed attention, self.value -> output.dense per head; intermediate
    # -> output) and both towers' projections (linear1 -> activation -> linear2); its text tower is RoBERTa's code
    **_family("clap.modeling_clap", {
        "ClapAudioAttention": (_bert_attention, ()),
        "ClapAudioLayer": (functools.partial(_bert_layer, family="ClapAudio"), ("attention",)),
        "ClapProjectionLayer": (functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation="activation"), ()),
    }),
    # Swin's stages and their variants': the patch merging's reduction reads a LayerNorm of 2 x 2 patches, no hidden
    # channels; the blocks have their own rules
    **{
        (f"transformers.models.{module}", stage): (_no_groups, ("blocks",))
        for module, stage in [
            ("swin.modeling_swin", "SwinStage"), ("swinv2.modeling_swinv2", "Swinv2Stage"), ("donut.modeling_donut_swin", "DonutSwinStage"),
            ("maskformer.modeling_maskformer_swin", "MaskFormerSwinStage"),
        ]
    },
    **_family("mobilevitv2.modeling_mobilevitv2", {  # MobileNetV2's blocks, and transformer blocks of linear self-attention
        "MobileViTV2InvertedResidual": (functools.partial(_mobilenet_v2_block, layer="MobileViTV2ConvLayer"), ()),
        "MobileViTV2LinearSelfAttention": (_linear_self_attention, ()),
        "MobileViTV2FFN": (_conv_layer_ffn, ()),
        # the block's own convs: a depthwise conv_kxk over its input's channels, conv_1x1 into the transformer's stream
        # and conv_projection out of it (after a GroupNorm of one group): no hidden channels of their own
        "MobileViTV2Layer": (_no_groups, ("downsampling_layer", "transformer")),
    }),
    # BiT: its stages hold their bottlenecks in an nn.Sequential, which torch.fx would trace through: the stage's rule
    # reads each bottleneck (the downsampling shortcut conv reads the stage's input: nothing to group)
    **_family("bit.modeling_bit", {"BitStage": (_bit_stage, ())}),
    **_bert_family("canine.modeling_canine", "Canine"),  # local attention in chunks of positions; characters to molecules by a strided conv
    # ViLT: text tokens and image patches (a random sample of them) in one sequence; ViT's attention under `attention`
    **_bert_family("vilt.modeling_vilt", "Vilt", attention=functools.partial(_bert_attention, attention_attr="attention")),
    **_family("dia.modeling_dia", {"DiaCrossAttention": (_attention, ())}),  # Dia's decoder reading the text encoder: Llama's value path
    **_family("lxmert.modeling_lxmert", {  # LXMERT: BERT's attention and feed-forward in its language, vision and cross-modality layers
        "LxmertSelfAttentionLayer": (_bert_attention, ()),
        "LxmertCrossAttentionLayer": (functools.partial(_bert_attention, attention_attr="att"), ()),  # both directions, one set of weights
        "LxmertLayer": (functools.partial(_bert_layer, family="Lxmert"), ("attention",)),
        "LxmertXLayer": (_all_of(*(
            functools.partial(_bert_layer, family="Lxmert", intermediate=f"{side}_inter", output=f"{side}_output") for side in ("lang", "visn")
        )), ("visual_attention", "lang_self_att", "visn_self_att")),
        "LxmertVisualFeatureEncoder": (_no_groups, ()),  # visn_fc and box_fc read the model's region features and boxes
    }),
    **_bert_family("flava.modeling_flava", "Flava", attention=functools.partial(_bert_attention, attention_attr="attention")),  # ViLT's layout: image, text, multimodal
    **_bert_family("layoutlmv3.modeling_layoutlmv3", "LayoutLMv3"),  # text and image patches; relative positions on the scores
    # LayoutLMv3's relative-position biases (rel_pos_bias, rel_pos_x_bias, rel_pos_y_bias) read one-hot position buckets
    # and write a score per head: no hidden channels, so nothing to group; its layers have their own rules
    **_family("layoutlmv3.modeling_layoutlmv3", {"LayoutLMv3Encoder": (_no_groups, ("layer",))}),
    # MobileBERT: BERT's layout between bottlenecks on the residual stream (the values read the bottleneck's or the
    # layer's input); more feed-forwards (FFNLayer) before the layer's own
    **_family("mobilebert.modeling_mobilebert", {
        "MobileBertAttention": (_bert_attention, ()),
        "MobileBertLayer": (functools.partial(_bert_layer, family="MobileBert"), ("attention", "ffn")),
        "FFNLayer": (functools.partial(_bert_layer, family="MobileBert", output_class="FFNOutput"), ()),
    }),
    **_family("neomme.modeling_neomme", {"NeoMMEPatchEmbeddings": (_UP_DOWN_MLP, ())}),  # its attention's values get value embeddings shared by two layers: no rule
    **_family("cvt.modeling_cvt", {  # the values after a depthwise conv projection over the residual stream
        "CvtLayer": (functools.partial(_bert_layer, family="Cvt", activation="activation"), ("attention",)),
        "CvtAttention": (functools.partial(_bert_attention, attention_attr="attention", value_attr="projection_value", heads_attr="num_heads", head_dim_attr=None), ()),
        "CvtStage": (_no_groups, ("layers",)),  # its convolutional embedding reads the pixels or the last stage's residual stream
    }),
    **_family("pixtral.modeling_pixtral", {"PixtralAttention": (_HEADS_OWN_VALUES, ())}),  # 2-D rotary on q and k; block-diagonal mask per image
    # vision towers of multimodal models: per-head values -> the output projection, and their MLPs
    **_family("mllama.modeling_mllama", {"MllamaVisionAttention": (_HEADS_OWN_VALUES, ())}),
    **_family("glm4v.modeling_glm4v", {"Glm4vVisionPatchMerger": (_GLM_PATCH_MERGER, ())}),
    **_family("llama4.modeling_llama4", {
        "Llama4VisionAttention": (_HEADS_OWN_VALUES, ()),  # 2-D rotary on q and k
        "Llama4VisionMLP2": (functools.partial(_two_layer_mlp, activation="activation_fn"), ()),  # gelu(fc2(gelu(fc1(x))))
    }),
    **_family("janus.modeling_janus", {
        "JanusVisionAttention": (functools.partial(_attention, groups=1, output="projection_layer"), ()),  # q/k norms only
        "JanusVisionMLP": (_two_layer_mlp, ()),
        # its VQ-VAE image tokenizer (Chameleon's blocks are this code): ResNet blocks, one-head attention blocks, the generation head
        "JanusVQVAEResnetBlock": (_VQ_RESNET_BLOCK, ()), "JanusVQVAEAttnBlock": (_VQ_ATTN_BLOCK, ()),
        "JanusVQVAEHead": (functools.partial(_two_layer_mlp, first="proj_out", second="vision_head", activation="activation_fn"), ()),
        "JanusVQVAEEncoder": (_no_groups, ("down", "mid")), "JanusVQVAEDecoder": (_no_groups, ("mid", "up")),
        "JanusVQVAE": (_vq_vae, ("encoder", "decoder")),
    }),
    **_family("phi4_multimodal.modeling_phi4_multimodal", {
        "Phi4MultimodalVisionAttention": (_OUT_PROJ_ATTENTION, ()),
        # the audio conformer: feed-forwards (the halves of gate_up_proj), attention, conv module; the speech and image projections
        # (up -> gelu -> down, the gelu fixed in the forward)
        "Phi4MultimodalAudioConformerEncoderLayer": (_no_groups, ("feed_forward_in", "self_attn", "conv", "feed_forward_out")),
        "Phi4MultimodalAudioMLP": (functools.partial(_fused_halves_mlp, act="act_fn"), ()),
        "Phi4MultimodalAudioAttention": (_HEADS_OWN_VALUES, ()),
        "Phi4MultimodalAudioConvModule": (_phi4_audio_convolution, ()),
        "Phi4MultimodalAudioEmbedding": (_phi4_audio_projections, ("encoder",)),
        "Phi4MultimodalImageEmbedding": (functools.partial(_two_layer_mlp, first="img_projection_up", second="img_projection_down", activation=None), ("img_processor",)),
    }),
    # WavLM: v_proj's rows per head -> out_proj through F.multi_head_attention_forward; its gated relative position
    # bias reads the layer's input, not the values
    **_family("wavlm.modeling_wavlm", {"WavLMAttention": (_OUT_PROJ_ATTENTION, ())}),
    # SAM's ViT layout (GOT-OCR 2's encoder): qkv reshaped (3, heads, head_dim); decomposed relative positions on the queries
    **_families([("Sam", "sam.modeling_sam"), ("SamHQ", "sam_hq.modeling_sam_hq"), ("GotOcr2", "got_ocr2.modeling_got_ocr2")], {
        "{}VisionAttention": (_SAM_ATTENTION, ()),
        "{}VisionSdpaAttention": (_SAM_ATTENTION, ()),  # the same value path through scaled_dot_product_attention
        "{}MLPBlock": (functools.partial(_two_layer_mlp, first="lin1", second="lin2", activation="act"), ()),
    }),
    # ViT's older layout (intermediate -> output; attention.value -> output.dense): YOLOS, data2vec-vision (BEiT's
    # relative position bias, on the scores), Swin v2 (cosine attention, on the scores), Donut's Swin (Swin 1's older
    # code), MaskFormer's Swin backbone (the same)
    **{
        (f"transformers.models.{module}", f"{family}{cls}"): rule
        for module, family, attention in [
            ("yolos.modeling_yolos", "Yolos", "attention"), ("data2vec.modeling_data2vec_vision", "Data2VecVision", "attention"),
            ("swinv2.modeling_swinv2", "Swinv2", "self"), ("donut.modeling_donut_swin", "DonutSwin", "self"),
            ("maskformer.modeling_maskformer_swin", "MaskFormerSwin", "self"),
        ]
        for cls, rule in (
            ("Layer", (functools.partial(_bert_layer, family=family), ("attention",))),
            ("Attention", (functools.partial(_bert_attention, attention_attr=attention), ())),
        )
    },
    # BART's feed-forward in pre-norm decoder layers whose code is not BART's (their encoder layers match Whisper's)
    **_families(
        [("MBart", "mbart.modeling_mbart"), ("Pegasus", "pegasus.modeling_pegasus"), ("M2M100", "m2m_100.modeling_m2m_100"),
         ("Blenderbot", "blenderbot.modeling_blenderbot"), ("BlenderbotSmall", "blenderbot_small.modeling_blenderbot_small")],
        {"{}DecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn"))},
    ),  # fmt: skip
    # speech encoders: the convolution stem (conv1 -> F.gelu -> conv2 in the encoder's forward; Qwen2.5-Omni's padding
    # mask between them is per time step), the attention values, the feed-forward
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (_conv_stem, ("layers",))
        for module, cls in [
            ("whisper", "WhisperEncoder"), ("qwen2_audio", "Qwen2AudioEncoder"), ("voxtral", "VoxtralEncoder"),
            ("audioflamingo3", "AudioFlamingo3Encoder"), ("glmasr", "GlmAsrEncoder"), ("moss_transcribe_diarize", "MossTranscribeDiarizeAudioModel"),
            ("qwen2_5_omni", "Qwen2_5OmniAudioEncoder"),
        ]
    },
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (_OUT_PROJ_ATTENTION, ())
        for module, cls in [
            ("qwen2_audio", "Qwen2AudioAttention"), ("voxtral", "VoxtralAttention"), ("moss_transcribe_diarize", "MossTranscribeDiarizeAudioAttention"),
            ("qwen2_5_omni", "Qwen2_5OmniAudioAttention"), ("qwen3_asr", "Qwen3ASRAudioAttention"), ("qwen3_omni_moe", "Qwen3OmniMoeAudioAttention"),
        ]
    },
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (_two_layer_mlp, ("self_attn",))
        for module, cls in [
            ("qwen2_5_omni", "Qwen2_5OmniAudioEncoderLayer"), ("qwen3_asr", "Qwen3ASRAudioEncoderLayer"), ("qwen3_omni_moe", "Qwen3OmniMoeAudioEncoderLayer"),
        ]
    },
    **_family("glmasr.modeling_glmasr", {"GlmAsrAttention": (_attention, ()), "GlmAsrMLP": (functools.partial(_two_layer_mlp, activation="act_fn"), ())}),
    **_family("moonshine.modeling_moonshine", {  # conv1 -> tanh -> GroupNorm(1) -> conv2 -> gelu -> conv3
        "MoonshineEncoder": (functools.partial(_conv_stem, convs=("conv1", "conv2", "conv3"), norms={"conv1": "groupnorm"}), ("layers",)),
        "MoonshineAttention": (_attention, ()),  # zero padding of the head dim after the values, cut off before o_proj
        "MoonshineDecoderMLP": (functools.partial(_fused_halves_mlp, fused="fc1", down="fc2"), ()),  # fc2(act(gate) * x), fc1's halves
    }),
    # Qwen3-ASR's and Qwen3-Omni's 2-D stem (conv2d3's channels reach conv_out flattened with the frequency bins: in place)
    **_family("qwen3_asr.modeling_qwen3_asr", {"Qwen3ASREncoder": (functools.partial(_conv_stem, convs=("conv2d1", "conv2d2", "conv2d3")), ("layers",))}),
    **_family("qwen3_omni_moe.modeling_qwen3_omni_moe", {
        "Qwen3OmniMoeAudioEncoder": (
            _all_of(functools.partial(_conv_stem, convs=("conv2d1", "conv2d2", "conv2d3")), functools.partial(_two_layer_mlp, first="proj1", second="proj2", activation="act")),
            ("layers",),
        ),
    }),
    # conformer convolution modules (their GLU in the code or an nn.GLU; the depthwise filters, the norm per channel)
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (functools.partial(_conformer_convolution, norm=norm), ())
        for module, cls, norm in [
            ("wav2vec2_conformer", "Wav2Vec2ConformerConvolutionModule", "batch_norm"), ("wav2vec2_bert", "Wav2Vec2BertConvolutionModule", "depthwise_layer_norm"),
            ("seamless_m4t", "SeamlessM4TConformerConvolutionModule", "batch_norm"), ("seamless_m4t_v2", "SeamlessM4Tv2ConformerConvolutionModule", "depthwise_layer_norm"),
            ("fastspeech2_conformer", "FastSpeech2ConformerConvolutionModule", "norm"), ("parakeet", "ParakeetEncoderConvolutionModule", "norm"),
            ("lasr", "LasrEncoderConvolutionModule", "norm"), ("nemotron_asr_streaming", "NemotronAsrStreamingEncoderConvolutionModule", "norm"),
        ]
    },
    **{
        (f"transformers.models.{module}.modeling_{module}", f"{cls}ConformerAdapterLayer"): (_seamless_adapter, ("self_attn", "ffn"))
        for module, cls in [("seamless_m4t", "SeamlessM4T"), ("seamless_m4t_v2", "SeamlessM4Tv2")]
    },
    **_family("granite_speech.modeling_granite_speech", {  # silu(batch_norm(depth_conv(glu(up_conv(x))))) -> down_conv
        "GraniteSpeechConformerConvModule": (
            functools.partial(_conformer_convolution, up="up_conv", depthwise="depth_conv.conv", act="silu", down="down_conv"), (),
        ),
        "GraniteSpeechConformerFeedForward": (functools.partial(_two_layer_mlp, first="up_proj", second="down_proj", activation="silu"), ()),
        "GraniteSpeechCTCEncoder": (_GRANITE_SPEECH_MID_CTC, ("layers",)),
        "GraniteSpeechConformerAttention": (  # to_kv(x).chunk(2): keys, then values; relative positions on the scores
            functools.partial(_stacked_qkv_attention, fused="to_kv", output="to_out", parts=2, head_dim_attr="dim_head"), (),
        ),
    }),
    # FastSpeech 2's conformer: its relative-position attention (linear_v -> linear_out per head) and its position-wise
    # feed-forward of two convs, conv1 -> ReLU -> conv2
    **_family("fastspeech2_conformer.modeling_fastspeech2_conformer", {
        "FastSpeech2ConformerAttention": (functools.partial(_attention, groups=1, value="linear_v", output="linear_out"), ()),
        "FastSpeech2ConformerMultiLayeredConv1d": (functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation=None), ()),
    }),
    # Granite Speech Plus: the same encoder, some layers' outputs concatenated to the last
    **_family("granite_speech_plus.modeling_granite_speech_plus", {"GraniteSpeechPlusCTCEncoder": (_GRANITE_SPEECH_MID_CTC, ("layers",))}),
    # conformer attentions: Llama's value path under other names (relative positions act on the scores)
    **{
        (f"transformers.models.{module}.modeling_{module}", cls): (functools.partial(_attention, groups=1, value="linear_v", output="linear_out", head_dim_attr="head_size"), ())
        for module, cls in [
            ("wav2vec2_conformer", "Wav2Vec2ConformerSelfAttention"), ("wav2vec2_bert", "Wav2Vec2BertSelfAttention"),
            ("seamless_m4t_v2", "SeamlessM4Tv2ConformerSelfAttention"),
        ]
    },
    **{
        (f"transformers.models.{module}.modeling_{module}", f"{cls}Encoder{part}"): rule
        for module, cls in [("parakeet", "Parakeet"), ("lasr", "Lasr"), ("nemotron_asr_streaming", "NemotronAsrStreaming")]  # Nemotron's attention: Parakeet's with a cache
        for part, rule in (("Attention", (_attention, ())), ("FeedForward", (functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation="activation"), ())))
    },
    **_family("lasr.modeling_lasr", {"LasrEncoderSubsampling": (_lasr_subsampling, ())}),
    **_family("nemotron_asr_streaming.modeling_nemotron_asr_streaming", {"NemotronAsrStreamingEncoderSubsamplingConv2D": (_streaming_subsampling, ())}),
    # the streaming speech encoders' conv stems: Voxtral Realtime's conv1 -> gelu -> conv2 (and its text model's time-conditioned norm scale,
    # linear1 -> gelu -> linear2); Moonshine Streaming's linear -> silu -> conv1 -> silu -> conv2, frames past the mask zeroed in between
    **_family("voxtral_realtime.modeling_voxtral_realtime", {"VoxtralRealtimeEmbedder": (_CONV1_CONV2, ()), "VoxtralRealtimeTextAdaRmsNorm": (_LINEAR1_LINEAR2, ())}),
    **_family("moonshine_streaming.modeling_moonshine_streaming", {
        "MoonshineStreamingEncoderEmbedder": (functools.partial(_layer_chain, layers=("linear", "conv1", "conv2"), activation=None), ()),
    }),
    **_family("nemotron3_5_asr.modeling_nemotron3_5_asr", {"Nemotron3_5AsrPromptProjector": (_LINEAR_1_2_MLP, ())}),  # linear_1 -> ReLU -> linear_2
    **_family("granite_speech5.modeling_granite_speech5", {  # Nemotron's layout; its convolution module's pointwise layers are nn.Linear
        "GraniteSpeech5EncoderAttention": (_attention, ()),  # block-local attention with relative positions on the scores; a value head per query head
        "GraniteSpeech5EncoderFeedForward": (functools.partial(_two_layer_mlp, first="linear1", second="linear2", activation="activation"), ()),
        "GraniteSpeech5EncoderConvolutionModule": (functools.partial(_conformer_convolution, up="pointwise_lin1", norm="norm", act=None, down="pointwise_lin2"), ()),
        "GraniteSpeech5Encoder": (_GRANITE_SPEECH_MID_CTC, ("layers",)),  # Granite Speech's mid-network CTC branch: out -> softmax -> out_mid
    }),
    **_family("gemma3n.modeling_gemma3n", {
        "Gemma3nTextAttention": (_gemma_attention, ()),
        "Gemma3nTextMLP": (_gated_mlp, ()),  # the gate's Gaussian top-k: a mean and deviation over all the channels, then elementwise
        "Gemma3nTextLaurelBlock": (functools.partial(_two_layer_mlp, first="linear_left", second="linear_right", activation=None), ()),  # nothing between them
        "Gemma3nTextDecoderLayer": (_per_layer_input_gate, ("self_attn", "mlp", "laurel", "altup")),
        # the audio tower's conformer blocks (Gemma 4's layout before the clamps; silu fixed in the forwards)
        "Gemma3nAudioConformerBlock": (_no_groups, ("ffw_layer_start", "attention", "lconv1d", "ffw_layer_end")),
        "Gemma3nAudioConformerFeedForward": (functools.partial(_two_layer_mlp, first="ffw_layer_1", second="ffw_layer_2", activation=None), ()),
        "Gemma3nAudioConformerAttention": (functools.partial(_attention, groups=1, value="attn.v_proj", output="post", head_dim_attr="attn.head_dim"), ()),
        "Gemma3nAudioConformerLightConv1d": (_LIGHT_CONV1D, ()),
    }),
    # vision towers of vision-language models: values -> output per head (one head per value head but EXAONE 4.5's)
    **_family("internvl.modeling_internvl", {"InternVLVisionAttention": (functools.partial(_attention, groups=1, output="projection_layer"), ())}),
    **_family("exaone4_5.modeling_exaone4_5", {"Exaone4_5_VisionAttention": (functools.partial(_phi3_attention, qkv="qkv", output="proj"), ())}),
    **_family("granite_docling.modeling_granite_docling", {"GraniteDoclingVisionAttention": (_OUT_PROJ_ATTENTION, ())}),
    **_family("cosmos3_edge.modeling_cosmos3_edge", {"Cosmos3EdgeVisionAttention": (_OUT_PROJ_ATTENTION, ())}),
    **_family("hunyuan_vl.modeling_hunyuan_vl", {"HunYuanVLVisionAttention": (_HEADS_OWN_VALUES, ()), "HunYuanVLVisionPatchMerger": (_newline_patch_merger, ())}),
    # copies the code matcher misses (a helper or a keyword differs): HY-V4-VL's vision attention (HunYuan-VL's), VideoPrism's
    # (ViT's, its scores soft-capped), Cohere ASR's self- and cross-attention (Llama's value path, no rotary), HRM's
    # (AFMoE's gate per channel), the OpenAI Privacy Filter's (GPT-OSS's: sinks per head, q and k scaled before the
    # scores) and PE Audio's encoder attention (Llama's, with q/k norms), GLM-OCR's and GLM-5-Next's vision attention
    # (Qwen2.5-VL's fused qkv -> proj, with q/k norms), and GLM-5-Next's vision MLP and patch merger (GLM-4V's, gate and up
    # clamped elementwise); HY-V4-VL's patch merger: HunYuan-VL's proj_conv -> proj_act -> proj_out, whose output
    # (newline column appended) is the merger's; and two attention-pooling heads of their own (VideoPrism's, Aimv2's)
    **{
        (f"transformers.models.{module}", cls): rule
        for module, cls, rule in (
            ("hy_v4_vl.modeling_hy_v4_vl", "HYV4VLVisionAttention", (_HEADS_OWN_VALUES, ())),
            ("videoprism.modeling_videoprism", "VideoPrismAttention", (_HEADS_OWN_VALUES, ())),
            ("videoprism.modeling_videoprism", "VideoPrismMultiheadAttentionPoolingHead", (_HEADS_OWN_VALUES, ())),  # a learned query
            # Aimv2's pooling head: a learned query (cls_token); it keeps no head size
            ("aimv2.modeling_aimv2", "Aimv2AttentionPoolingHead", (functools.partial(_attention, groups=1, output="output_proj", heads_attr="num_heads"), ())),
            ("cohere_asr.modeling_cohere_asr", "CohereAsrSelfAttention", (_attention, ())),
            # Nemotron 3.5 Transcribe's audio attention: v_proj makes a value head for every query head (runs only with as many key heads)
            ("nemotron3_5_transcribe.modeling_nemotron3_5_transcribe", "Nemotron3_5TranscribeAttention", (_attention, ())),
            ("cohere_asr.modeling_cohere_asr", "CohereAsrCrossAttention", (_attention, ())),
            ("hrm_text.modeling_hrm_text", "HrmTextAttention", (_gated_output_attention, ())),
            ("glm_ocr.modeling_glm_ocr", "GlmOcrVisionAttention", (functools.partial(_stacked_qkv_attention, output="proj"), ())),
            ("glm5_next.modeling_glm5_next", "Glm5NextVisionAttention", (functools.partial(_stacked_qkv_attention, output="proj"), ())),
            ("openai_privacy_filter.modeling_openai_privacy_filter", "OpenAIPrivacyFilterAttention", (_attention, ())),
            ("pe_audio.modeling_pe_audio", "PeAudioEncoderAttention", (_attention, ())),
            # PE Audio's embedder: its DAC encoder's last conv -> bottleneck -> data_proj (a 1 x 1 conv, then an nn.Linear over the channels)
            ("pe_audio.modeling_pe_audio", "PeAudioEncoderEmbedder", (functools.partial(_layer_chain, layers=("dac_encoder.conv2", "bottleneck", "data_proj"), activation=None), ("dac_encoder",))),
            ("glm5_next.modeling_glm5_next", "Glm5NextVisionMLP", (_gated_mlp, ())),
            ("glm5_next.modeling_glm5_next", "Glm5NextVisionPatchMerger", (_GLM_PATCH_MERGER, ())),
            ("hy_v4_vl.modeling_hy_v4_vl", "HYV4VLVisionPatchMerger", (functools.partial(_two_layer_mlp, first="proj_conv", second="proj_out", activation="proj_act"), ())),
        )
    },
    **_family("glm5_next.modeling_glm5_next", {
        "Glm5NextTextMLP": (_gated_mlp, ()),  # gate and up clamped elementwise
        # the linear attention's forget gate: f_a_proj -> f_b_proj with nothing between (a low-rank projection)
        "Glm5NextTextForgetGate": (functools.partial(_two_layer_mlp, first="f_a_proj", second="f_b_proj", activation=None), ()),
    }),
    **_family("xlnet.modeling_xlnet", {"XLNetFeedForward": (functools.partial(_two_layer_mlp, first="layer_1", second="layer_2", activation="activation_function"), ())}),
    # the speaker classifier: act -> dense -> act -> out_proj (act_fn a ReLU, checked elementwise)
    **_family("nemotron3_diarization.modeling_nemotron3_diarization", {
        "Nemotron3DiarizationClassificationHead": (functools.partial(_DENSE_OUT_HEAD, activation="act_fn"), ()),
    }),
    # each level's patch embedder reads the last level's residual stream (its conv blocks' MLPs have rules of their own)
    **_family("muse_spark.modeling_muse_spark", {
        "MuseSparkAudioLayer": (_no_groups, ("conv_blocks",)),
        # Llama's values (a key/value head's channels for each of its query heads), each head's output RMS-normed without
        # a scale, then gated channel by channel: o_proj(o_norm(out) * sigmoid(gate_proj(x)))
        "MuseSparkTextAttention": (functools.partial(_scale_free_v_norm, rule=_gated_output_attention, norm_attr="o_norm"), ()),
        "MuseSparkMoE": (_projected_experts, ("experts",)),
    }),
    **_family("kimi_k25.modeling_kimi_k25", {"Kimi_K25VisionAttention": (functools.partial(_attention, groups=1, output="proj"), ())}),
    **{  # CLIP's and SigLIP's attention (v_proj -> out_proj per head) in code of their own (Ovis 2.5's, OWL-ViT's and
        # Chinese-CLIP's repeat these classes' code)
        (f"transformers.models.{module}", cls): (_OUT_PROJ_ATTENTION, ())
        for module, cls in (
            ("mlcd.modeling_mlcd", "MLCDAttention"), ("owlv2.modeling_owlv2", "Owlv2Attention"), ("paddleocr_vl.modeling_paddleocr_vl", "PaddleOCRVisionAttention"),
            ("altclip.modeling_altclip", "AltCLIPAttention"), ("idefics2.modeling_idefics2", "Idefics2VisionAttention"),
            ("kosmos2.modeling_kosmos2", "Kosmos2VisionAttention"), ("groupvit.modeling_groupvit", "GroupViTAttention"),
        )
    },  # fmt: skip
    **_family("radio.modeling_radio", {"RadioAttention": (_HEADS_OWN_VALUES, ())}),
    **_family("idefics2.modeling_idefics2", {  # the connector: the modality projection and the perceiver resampler's layers
        "Idefics2MLP": (_gated_mlp, ()),
        "Idefics2PerceiverAttention": (_attention, ()),  # the latents' queries read the image features' and the latents' values
    }),
    **_family("sam2.modeling_sam2", {  # the Hiera image encoder: all query, key, value rows of qkv (queries pooled at a stage's start)
        "Sam2MultiScaleAttention": (_SAM_ATTENTION, ()),
        "Sam2FeedForward": (_linear_chain, ()),
        "Sam2Attention": (functools.partial(_attention, groups=1), ()),  # the mask decoder's two-way attentions: v_proj -> o_proj per head of internal_dim
        # conv_s0 and conv_s1 read the FPN's summed features; their outputs join the transposed upscaling convs' and meet the
        # hypernetworks' outputs in a product, no layer's input
        "Sam2MaskDecoder": (_no_groups, ("transformer", "output_hypernetworks_mlps", "iou_prediction_head", "pred_obj_score_head")),
    }),
    **_family("sam2_video.modeling_sam2_video", {  # SAM 2's video memory: attention to the memory bank, the memory encoder
        "Sam2VideoRoPEAttention": (_HEADS_OWN_VALUES, ()),  # rotary queries and keys; cross_attn_image's v_proj reads the 64-wide memory
        "Sam2VideoMemoryAttentionLayer": (_TORCH_FEED_FORWARD, ("self_attn", "cross_attn_image")),  # linear1 -> activation -> linear2
        # ConvNeXt's block: the depthwise conv and norm on the residual stream, then pointwise_conv1 -> activation -> pointwise_conv2
        "Sam2VideoMemoryFuserCXBlock": (functools.partial(_two_layer_mlp, first="pointwise_conv1", second="pointwise_conv2", activation="activation"), ()),
        # feature_projection reads the image features, projection the fused stream (feature_projection's and the mask downsampler's
        # outputs summed, through the CX blocks' residuals)
        "Sam2VideoMemoryEncoder": (_no_groups, ("mask_downsampler", "memory_fuser")),
    }),
    **_family("sam3_tracker_video.modeling_sam3_tracker_video", {  # SAM 3's tracker: its own layers read a mask prompt and sine encodings
        "Sam3TrackerVideoModel": (_no_groups, (
            "shared_image_embedding", "vision_encoder", "prompt_encoder", "mask_decoder", "memory_attention", "memory_encoder", "object_pointer_proj",
        )),
    }),
    **_family("sam3.modeling_sam3", {  # SAM 3: its ViT (rotary), DETR encoder and decoder, FPN neck, mask decoder and scoring
        "Sam3ViTRoPEAttention": (_HEADS_OWN_VALUES, ()),
        "Sam3Attention": (_HEADS_OWN_VALUES, ()),  # self- and cross-attention: v_proj reads the keys' sequence, per head -> o_proj
        "Sam3MLP": (_two_layer_mlp, ()),  # fc1 -> dropout -> activation_fn -> fc2
        "Sam3DecoderMLP": (_relu_mlp, ()),
        "Sam3MaskEmbedder": (_activation_layers, ()),
        "Sam3FPNLayer": (functools.partial(_two_layer_mlp, first="proj1", second="proj2", activation=None), ()),  # nothing between them
        # text_proj and query_proj read the normed text and the decoder's queries; their outputs meet in a dot product, no layer's input
        "Sam3DotProductScoring": (_no_groups, ("text_mlp",)),
        "Sam3MaskDecoder": (_sam3_mask_decoder, ("pixel_decoder", "mask_embedder", "prompt_cross_attn")),
        "Sam3GeometryEncoder": (_sam3_geometry_encoder, ("layers",)),
    }),
    **_family("muse_glimmer.modeling_muse_glimmer", {
        "MuseGlimmerTextAttention": (_gated_output_attention, ()),  # o_proj(out * sigmoid(gate_proj(x))), unscaled q/k norms
        "MuseGlimmerVisionAdapter": (functools.partial(_two_layer_mlp, activation="act"), ()),  # act(fc2(act(fc1(x))))
    }),
    # its draft model: keys and values over [context; window] (v_proj -> o_proj), Llama's value path
    **_family("muse_glimmer_assistant.modeling_muse_glimmer_assistant", {"MuseGlimmerAssistantAttention": (_attention, ())}),
    **_family("glm_image.modeling_glm_image", {
        "GlmImageVisionAttention": (functools.partial(_stacked_qkv_attention, output="proj"), ()),  # Qwen2-VL's qkv layout
        "GlmImageVQVAE": (_vq_vae, ()),
    }),
    **_family("mimi.modeling_mimi", {"MimiAttention": (_attention, ())}),  # the codec's transformers: Llama's value path (grouped kv heads)
    **_family("edgetam_video.modeling_edgetam_video", {  # EdgeTAM video: SAM 2's memory attention under other names, its perceiver resampler
        "EdgeTamVideoRoPESelfAttention": (_HEADS_OWN_VALUES, ()),
        "EdgeTamVideoRoPECrossAttention": (_HEADS_OWN_VALUES, ()),  # v_proj reads the 64-wide memory
        "EdgeTamVideoMemoryAttentionMLP": (_UP_DOWN_MLP, ()),  # up_proj -> act_fn -> down_proj
        "EdgeTamVideoPerceiverMLP": (_UP_DOWN_MLP, ()),  # a LayerNorm, then up_proj -> GELU -> down_proj
        "EdgeTamVideoPerceiverEncoderLayer": (_perceiver_layer, ("mlp", "self_mlp")),
    }),
    **_family("sam3_lite_text.modeling_sam3_lite_text", {  # SAM 3 with a MobileCLIP-style text encoder; its attention helper is not SAM 3's code
        "Sam3LiteTextAttention": (_HEADS_OWN_VALUES, ()),
        "Sam3LiteTextConvMLP": (_two_layer_mlp, ()),  # the text encoder's RepMixer blocks: 1 x 1 convs fc1 -> activation_fn -> fc2
        # their depthwise convs (the token mixer's, the feed-forward's before its MLP) read the residual stream channel by channel
        "Sam3LiteTextRepMixerBlock": (_no_groups, ("conv_feed_forward",)),
        "Sam3LiteTextConvolutionalFeedForward": (_no_groups, ("mlp",)),
        "Sam3LiteTextMaskDecoder": (_sam3_mask_decoder, ("pixel_decoder", "mask_embedder", "prompt_cross_attn")),
        "Sam3LiteTextGeometryEncoder": (_sam3_geometry_encoder, ("layers",)),
    }),
    **_family("tipsv2.modeling_tipsv2", {"Tipsv2TextAttention": (_OUT_PROJ_ATTENTION, ())}),
    **_family("vjepa2.modeling_vjepa2", {  # rotary positions on the queries and keys
        "VJEPA2RopeAttention": (_VALUE_PROJ_ATTENTION, ()),
        "VJEPA2MLP": (functools.partial(_two_layer_mlp, activation="activation"), ()),
    }),
    **_family("umt5.modeling_umt5", {"UMT5Attention": (_T5_ATTENTION, ())}),  # T5's, with a relative position bias in every layer
    **_family("kosmos2.modeling_kosmos2", {
        "KosmosTextAttention": (functools.partial(_normed, rule=_OUT_PROJ_ATTENTION, norm="inner_attn_ln"), ()),
        "Kosmos2TextFFN": (functools.partial(_normed, rule=_two_layer_mlp, norm="ffn_layernorm"), ()),
    }),
    **_family("qwen4_exp.modeling_qwen4_exp", {  # its hyper-connections' low-rank mixer: input_mix_weight_down -> silu -> input_mix_weight_up
        "Qwen4ExpTextGatedResidual": (functools.partial(_two_layer_mlp, first="input_mix_weight_down", second="input_mix_weight_up", activation=None), ()),
    }),
    **_family("bitnet.modeling_bitnet", {  # Llama's layout with an RMS norm over the values before o_proj, and over the gated product
        "BitNetAttention": (functools.partial(_normed, rule=_attention, norm="attn_sub_norm"), ()),
        "BitNetMLP": (functools.partial(_normed, rule=_gated_mlp, norm="ffn_sub_norm"), ()),
    }),
    **_family("recurrent_gemma.modeling_recurrent_gemma", {
        "RecurrentGemmaMlp": (_gated_mlp, ()), "RecurrentGemmaAttention": (_attention, ()), "RecurrentGemmaRecurrentBlock": (_recurrent_block, ()),
    }),
    **_family("t5gemma.modeling_t5gemma", {"T5GemmaCrossAttention": (_attention, ())}),  # the values read the encoder's output
    **_family("t5gemma2.modeling_t5gemma2", {"T5Gemma2MergedAttention": (_attention, ())}),  # one v_proj for the decoder's and the encoder's values
    **_family("sapiens2.modeling_sapiens2", {"Sapiens2Attention": (_attention, ())}),  # key/value heads per layer
    **_family("molmo2.modeling_molmo2", {"Molmo2VisionAttention": (_attention, ())}),  # or reading another sequence's keys and values
    **_family("qwen2_5_omni.modeling_qwen2_5_omni", {"Qwen2_5OmniVisionAttention": (functools.partial(_attention, groups=1, value="v", output="proj"), ())}),
    **_family("gemma4_unified.modeling_gemma4_unified", {"Gemma4UnifiedTextAttention": (_gemma_attention, ())}),
    **_family("embedding_gemma2.modeling_embedding_gemma2", {
        "EmbeddingGemma2Attention": (functools.partial(_scale_free_v_norm, rule=_attention), ()),
        "EmbeddingGemma2TextPLEBlock": (_per_layer_input_gate, ()),
    }),
    **_family("gemma4.modeling_gemma4", {
        "Gemma4TextAttention": (_gemma_attention, ()),
        "Gemma4TextMLP": (_gated_mlp, ()),
        "Gemma4TextDecoderLayer": (_per_layer_input_gate, ("self_attn", "mlp", "router", "experts")),
        # the vision tower's layers wrapped in clamps of one bound each (not offered to copies: _NOT_COPIED)
        "Gemma4VisionAttention": (functools.partial(
            _clipped, layers=("q_proj", "k_proj", "v_proj", "o_proj"),
            rule=functools.partial(_scale_free_v_norm, rule=functools.partial(_attention, value="v_proj.linear", output="o_proj.linear")),
        ), ()),
        "Gemma4VisionMLP": (functools.partial(
            _clipped, layers=("gate_proj", "up_proj", "down_proj"), rule=functools.partial(_gated_mlp, gate="gate_proj.linear", up="up_proj.linear", down="down_proj.linear"),
        ), ()),
        # the audio tower's conformer layers, clipped too: feed-forwards, chunked attention with relative positions (values per head -> post),
        # the light conv (GLU -> depthwise conv -> RMS norm -> act); the layer's own norms read the stream
        "Gemma4AudioLayer": (_no_groups, ("feed_forward1", "feed_forward2", "self_attn", "lconv1d")),
        "Gemma4AudioFeedForward": (functools.partial(
            _clipped, layers=("ffw_layer_1", "ffw_layer_2"), rule=functools.partial(_two_layer_mlp, first="ffw_layer_1.linear", second="ffw_layer_2.linear", activation="act_fn"),
        ), ()),
        "Gemma4AudioAttention": (functools.partial(
            _clipped, layers=("v_proj", "post"), rule=functools.partial(_attention, groups=1, value="v_proj.linear", output="post.linear"),
        ), ()),
        "Gemma4AudioLightConv1d": (functools.partial(
            _clipped, layers=("linear_start", "linear_end"), rule=functools.partial(_LIGHT_CONV1D, up="linear_start.linear", down="linear_end.linear", act="act_fn"),
        ), ()),
    }),
    **_family("falcon_h1.modeling_falcon_h1", {  # scalar multipliers on the gate, the MLP's output and the keys
        "FalconH1MLP": (_gated_mlp, ()),
        "FalconH1Attention": (_attention, ()),
        "FalconH1Mixer": (_falcon_h1_mixer, ()),
    }),
    **_family("xglm.modeling_xglm", {"XGLMAttention": (_OUT_PROJ_ATTENTION, ())}),  # BART's attention in a decoder-only model
    **_family("bark.modeling_bark", {  # Bark's GPT-style sub-models (semantic, coarse, fine): att_proj's q, k, v rows stacked
        "BarkSelfAttention": (functools.partial(_stacked_qkv_attention, fused="att_proj", output="out_proj"), ()),
        "BarkMLP": (functools.partial(_two_layer_mlp, first="in_proj", second="out_proj", activation="gelu"), ()),
    }),
    # BART's attention in older copies: Speech2Text's, SeamlessM4T's (its text encoder and decoder), SpeechT5's (a relative
    # position bias on the scores only)
    **{
        (f"transformers.models.{module}", cls): (_OUT_PROJ_ATTENTION, ())
        for module, cls in (
            ("speech_to_text.modeling_speech_to_text", "Speech2TextAttention"), ("seamless_m4t.modeling_seamless_m4t", "SeamlessM4TAttention"),
            ("seamless_m4t_v2.modeling_seamless_m4t_v2", "SeamlessM4Tv2Attention"), ("speecht5.modeling_speecht5", "SpeechT5Attention"),
        )
    },  # fmt: skip
    # BART's layout with other attentions: NLLB-MoE (each expert its own fc1 -> fc2), FSMT, LED (Longformer's attention in
    # its encoder), BigBird-Pegasus (full or block-sparse attention in its encoder)
    **_family("nllb_moe.modeling_nllb_moe", {"NllbMoeAttention": (_OUT_PROJ_ATTENTION, ()), "NllbMoeDenseActDense": (functools.partial(_two_layer_mlp, activation="act"), ())}),
    **_family("fsmt.modeling_fsmt", {
        "Attention": (_OUT_PROJ_ATTENTION, ()),
        "EncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "DecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn")),
    }),
    **_families([("LED", "led.modeling_led"), ("BigBirdPegasus", "bigbird_pegasus.modeling_bigbird_pegasus")], {
        "{}EncoderLayer": (_two_layer_mlp, ("self_attn",)),
        "{}DecoderLayer": (_two_layer_mlp, ("self_attn", "encoder_attn")),
        "{}DecoderAttention": (_OUT_PROJ_ATTENTION, ()),
    }),
    **_family("bigbird_pegasus.modeling_bigbird_pegasus", {"BigBirdPegasusEncoderAttention": (functools.partial(_bert_attention, output="output"), ())}),
    **_family("led.modeling_led", {
        "LEDEncoderAttention": (functools.partial(_LONGFORMER_ATTENTION, attention_attr="longformer_self_attn", output="output"), ()),
    }),
    **_family("longformer.modeling_longformer", {
        "LongformerAttention": (_LONGFORMER_ATTENTION, ()),
        "LongformerLayer": (functools.partial(_bert_layer, family="Longformer"), ("attention",)),  # BERT's intermediate -> output
    }),
    **_family("vitdet.modeling_vitdet", {  # decomposed relative positions act on the queries
        "VitDetAttention": (functools.partial(_stacked_qkv_attention, output="proj"), ()),
        "VitDetMlp": (functools.partial(_two_layer_mlp, activation="act"), ()),
    }),
    **_family("focalnet.modeling_focalnet", {
        "FocalNetMlp": (functools.partial(_two_layer_mlp, activation="activation"), ()), "FocalNetModulation": (_focal_modulation, ()),
        "FocalNetStage": (_no_groups, ("layers",)),  # its downsampling patch embedding's conv reads the stage's stream
    }),
    **_family("groupvit.modeling_groupvit", {  # the grouping blocks: the token mixer's hidden channels; the assignment's values, per channel
        "GroupViTMixerMLP": (_two_layer_mlp, ()), "GroupViTAssignAttention": (functools.partial(_two_layer_mlp, first="v_proj", second="proj", activation=None), ()),
    }),
    **_family("poolformer.modeling_poolformer", {"PoolFormerOutput": (functools.partial(_two_layer_mlp, first="conv1", second="conv2", activation="act_fn"), ())}),  # conv1 -> act -> drop path (per sample) -> conv2
    **_family("persimmon.modeling_persimmon", {"PersimmonAttention": (functools.partial(_per_head_qkv, head_dim_attr="head_dim"), ())}),
    **_family("seed_oss.modeling_seed_oss", {"SeedOssMLP": (_gated_mlp, ())}),  # dropout after down_proj
    # a stage's downsampling conv (and its channels-first norm) reads the last stage's residual stream
    **_family("convnext.modeling_convnext", {"ConvNextLayer": (_CONVNEXT_MLP, ()), "ConvNextStage": (_no_groups, ("layers",))}),
    **_family("mobilenet_v2.modeling_mobilenet_v2", {"MobileNetV2InvertedResidual": (_mobilenet_v2_block, ())}),
    **_family("efficientnet.modeling_efficientnet", {"EfficientNetBlock": (_efficientnet_block, ())}),
    # LeViT: MLPLayerWithBN (a Linear, then a BatchNorm1d over its outputs) throughout; the attention's fused
    # projection writes each head's query, key and values in turn
    **_family("levit.modeling_levit", {
        "LevitMLPLayer": (_levit_mlp, ()),
        "LevitAttention": (_levit_attention, ()),
        "LevitAttentionSubsample": (functools.partial(_levit_attention, fused="keys_values", keys=1), ()),
        "LevitPatchEmbeddings": (_levit_patch_embeddings, ()),
    }),
    **_family("mobilevit.modeling_mobilevit", {
        "MobileViTInvertedResidual": (functools.partial(_mobilenet_v2_block, layer="MobileViTConvLayer"), ()),
        "MobileViTLayer": (_mobilevit_layer, ("downsampling_layer", "transformer")),
        "MobileViTTransformerLayer": (functools.partial(_bert_layer, family="MobileViT"), ("attention",)),
        "MobileViTAttention": (functools.partial(_bert_attention, attention_attr="attention"), ()),
    }),
    **_family("convnextv2.modeling_convnextv2", {"ConvNextV2Layer": (_convnextv2_mlp, ()), "ConvNextV2Stage": (_no_groups, ("layers",))}),
    **_family("florence2.modeling_florence2", {  # Florence-2's DaViT vision tower: window attention (fused qkv's value heads -> proj)
        "Florence2VisionWindowAttention": (functools.partial(_stacked_qkv_attention, output="proj"), ()),
        "Florence2VisionChannelAttention": (_channel_group_attention, ()),
        "Florence2VisionSpatialBlock": (_no_groups, ("window_attn", "ffn")),  # conv1 and conv2: depthwise, on the residual stream
        "Florence2VisionChannelBlock": (_no_groups, ("channel_attn", "ffn")),
    }),
    **_family("x_clip.modeling_x_clip", {  # X-CLIP's prompt generator: the text queries' cross-attention to the video
        "XCLIPCrossAttention": (functools.partial(_attention, groups=1, output="proj"), ()),
    }),
    **_family("timesformer.modeling_timesformer", {  # divided space-time attention: a temporal and a spatial attention per layer
        "TimeSformerAttention": (functools.partial(_stacked_qkv_attention, fused="attention.qkv", output="output.dense", heads_attr="attention.num_heads"), ()),
        "TimesformerLayer": (_timesformer_layer, ("attention", "temporal_attention")),
    }),
    **_family("dinov3_convnext.modeling_dinov3_convnext", {  # DINOv3's ConvNeXt: the same block, other names
        "DINOv3ConvNextLayer": (functools.partial(_two_layer_mlp, first="pointwise_conv1", second="pointwise_conv2", activation="activation_fn"), ()),
        # a stage's downsampling conv reads the image, or a norm of the previous stage's stream: no hidden channels
        "DINOv3ConvNextStage": (_no_groups, ("layers",)),
    }),
    **_family("kosmos2_5.modeling_kosmos2_5", {  # Kosmos-2.5: its Pix2Struct-style vision attention (value -> output) and BART-style text attention
        "Kosmos2_5VisionAttention": (functools.partial(_attention, groups=1, value="value", output="output"), ()), "Kosmos2_5TextAttention": (_OUT_PROJ_ATTENTION, ()),
    }),
    # LongT5's encoder attention: T5's, over blocks of positions (local), and with transient global tokens summed from
    # blocks of positions (the same v reads them)
    **_family("longt5.modeling_longt5", {"LongT5LocalAttention": (_T5_ATTENTION, ()), "LongT5TransientGlobalAttention": (_T5_ATTENTION, ())}),
    **_families([("T5", "t5.modeling_t5"), ("MT5", "mt5.modeling_mt5")], {
        "{}DenseActDense": (_T5_FEED_FORWARD, ()),
        "{}DenseGatedActDense": (_T5_GATED, ()),
        "{}Attention": (_T5_ATTENTION, ()),
    }),
}


_FUSED_EXPERTS_RULE = (_fused_experts, ())

# rules for their class alone: its forward is another ruled class's code (Gemma 4's vision MLP is Llama's MLP), but
# the rule checks wrappers only this class holds, so classes copying that code keep the other class's rule; PP-LCNet's
# blocks run their layers in a loop, a forward many containers share (EnCodec's encoder): the rule is for their own layers
_NOT_COPIED = frozenset(("transformers.models.gemma4.modeling_gemma4", cls) for cls in ("Gemma4VisionMLP", "Gemma4VisionAttention")) | {
    ("transformers.models.pp_lcnet.modeling_pp_lcnet", "PPLCNetBlock"), ("transformers.models.pp_lcnet_v3.modeling_pp_lcnet_v3", "PPLCNetV3Block"),
    ("transformers.models.janus.modeling_janus", "JanusVQVAE"),  # the VQ-VAE rule names its own layers and outputs
}


def _own_forward(cls: type) -> bool:
    """Whether ``cls`` runs a forward of its own: not torch's (nn.Module's unimplemented one, which GLM-Image's VQ-VAE
    keeps, is every such class's code, so no rule may pass through it to another class)."""
    forward = getattr(cls, "forward", None)
    return callable(forward) and not getattr(forward, "__module__", "").startswith("torch.")


def _rule_for(module: nn.Module):
    """The ``_RULES`` entry of ``module``'s class, else of the ruled transformers class whose code it repeats; the
    fused experts rule for any transformers fused mixture-of-experts module."""
    cls = type(module)
    rule = _RULES.get((cls.__module__, cls.__name__)) or _copied_rule(cls)
    if rule is None and is_fused_experts(module) and gemm_axes(module):
        return _FUSED_EXPERTS_RULE
    return rule


@functools.lru_cache(maxsize=None)
def _ruled_transformers_classes() -> dict[str, list[tuple[type, tuple]]]:
    """The ruled transformers classes (their modules imported) with their rules, by :func:`source.code_key` of ``forward``."""
    import importlib

    found: dict[str, list[tuple[type, tuple]]] = defaultdict(list)
    for (module_name, class_name), rule in _RULES.items():
        if not module_name.startswith("transformers.") or (module_name, class_name) in _NOT_COPIED:
            continue
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):  # an older or newer transformers without this family
            continue
        key = source.code_key(cls.forward) if _own_forward(cls) else None
        if key is not None:
            found[key].append((cls, rule))
    return found


@functools.lru_cache(maxsize=None)
def _copied_rule(cls: type) -> tuple | None:
    """The rule of the ruled class whose ``forward`` (with the functions and methods it uses) is the same code as
    ``cls``'s: transformers generates most families' blocks from Llama's, ViT's, BART's... by copying them.
    The rule still checks the class's layers and sizes; None when no such class, or ruled classes with
    different rules, match (so rules that mean the same are one object in ``_RULES``: ViT's and DeiT's
    attention, GPT-2's and StarCoder's MLP)."""
    if not cls.__module__.startswith("transformers.") or not _own_forward(cls):
        return None
    key = source.code_key(cls.forward)
    if key is None:
        return None
    rules = {
        (id(rule[0]), rule[1]): rule
        for ruled, rule in _ruled_transformers_classes().get(key, ())
        if source.same_code(cls.forward, ruled.forward, (cls, ruled))
    }
    if len(rules) != 1:
        return None
    (rule,) = rules.values()
    logger.debug("permute: %s.%s runs the same code as a ruled class: its rule applies", cls.__module__, cls.__name__)
    return rule


# ---- torch.fx: follow the hidden channels through a traced graph -----------------------------

_UNARY_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.elu, F.selu, F.celu, F.softplus,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.mish, F.dropout, F.sigmoid, F.tanh, torch.sigmoid,
    torch.tanh, torch.exp, torch.abs, torch.neg, operator.neg, torch.square, torch.clamp, torch.clip,
}  # fmt: skip
_UNARY_METHODS = {
    "relu", "sigmoid", "tanh", "exp", "abs", "neg", "square", "clamp", "clip", "contiguous",
    "clone", "detach", "float", "double", "half", "bfloat16", "to",
}  # fmt: skip
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
_BINARY_METHODS = {"add", "sub", "mul", "div", "__add__", "__sub__", "__mul__", "__truediv__", "__radd__", "__rmul__"}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze"}
_RESHAPE_FUNCTIONS = {torch.reshape, torch.flatten, torch.unflatten, torch.squeeze, torch.unsqueeze}
_TRANSPOSE_METHODS = {"transpose", "swapaxes", "permute"}
_TRANSPOSE_FUNCTIONS = {torch.transpose, torch.swapaxes, torch.permute}
_MATMUL_FUNCTIONS = {operator.matmul, torch.matmul, torch.bmm}
_MATMUL_METHODS = {"matmul", "bmm"}
_QUERY_METHODS = {"size", "dim", "numel"}
_QUERY_ATTRIBUTES = {"shape", "dtype", "device", "ndim", "is_cuda"}
_POOLS = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2,
    nn.AvgPool3d: 3, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}  # fmt: skip
_BATCHNORMS = {nn.BatchNorm1d: None, nn.BatchNorm2d: -3, nn.BatchNorm3d: -4}


class _Refused(Exception):
    """Why a set of hidden channels cannot be permuted."""


def _nodes_in(value: object) -> list:
    found: list = []
    torch.fx.node.map_arg(value, found.append)
    return found


def _describe_node(node, modules: Mapping[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(modules[node.target]).__name__})"
    if node.op == "call_function":
        return f"{getattr(node.target, '__name__', node.target)}() [{node.name}]"
    if node.op == "call_method":
        return f".{node.target}() [{node.name}]"
    return f"{node.op} {node.target}"


def _gemm_axis(module: nn.Module) -> int:
    """Where the channels sit in a GEMM layer's input/output activations (negative index)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return -(module.weight.dim() - 1)
    return -1


def _gemm_sizes(module: nn.Module) -> tuple[int, int]:
    """(input channels, output channels) of a GEMM layer, from its 2:4 axes."""
    axis = gemm_axes(module)["weight"]
    shape = module.weight.shape
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels, module.out_channels
    return shape[axis.reduction], shape[axis.output]


class _Scan:
    """Hidden-channel groups of one traced module (``prefix`` is its name in the model)."""

    def __init__(self, gm: torch.fx.GraphModule, prefix: str, shapes: Mapping[Any, tuple[int, ...]] | None) -> None:
        self.gm, self.prefix, self.shapes = gm, prefix, shapes
        self.modules = dict(gm.named_modules())
        self.calls: dict[str, int] = defaultdict(int)
        self.attrs: set[str] = set()
        for node in gm.graph.nodes:
            if node.op == "call_module":
                self.calls[node.target] += 1
            elif node.op == "get_attr":
                self.attrs.add(node.target)

    def qualified(self, target: str) -> str:
        return f"{self.prefix}.{target}" if self.prefix else target

    def run(self) -> tuple[list[_Group], list[tuple[tuple[str, ...], str]]]:
        groups, skipped, seen = [], [], set()
        for node in self.gm.graph.nodes:
            if node.op != "call_module" or node in seen or not self._producer_kind(node):
                continue
            walk = _Walk(self, node)
            try:
                group = walk.explore()
            except _Refused as refused:
                seen.update(walk.producers)
                layers = tuple(self.qualified(n.target) for n in (*walk.producers, *walk.consumers))
                skipped.append((layers, str(refused)))
                continue
            seen.update(walk.producers)
            groups.append(group)
        return groups, skipped

    def _producer_kind(self, node) -> bool:
        module = self.modules[node.target]
        if not _is_gemm(module):
            return False
        return not isinstance(module, nn.modules.conv._ConvNd) or module.groups == 1

    def shape(self, node) -> tuple[int, ...] | None:
        return None if self.shapes is None else self.shapes.get(node)


class _Walk:
    """One connected set of tensors that carry the same hidden channels, from one producer."""

    def __init__(self, scan: _Scan, start) -> None:
        self.scan = scan
        self.start = start
        self.state: dict[Any, tuple[int, int]] = {}  # node -> (axis, length)
        self.producers: dict[Any, None] = {}
        self.consumers: dict[Any, None] = {}
        self.per_channel: dict[Any, None] = {}
        self.not_hidden: list[tuple[Any, Any]] = []  # (node, operand that must not carry the channels)
        self.block = 0
        self.queue: list = []

    # -- helpers --
    def refuse(self, why: str) -> _Refused:
        return _Refused(why)

    def name(self, node) -> str:
        return _describe_node(node, self.scan.modules)

    def module(self, node) -> nn.Module:
        return self.scan.modules[node.target]

    def add(self, node, axis: int, length: int) -> None:
        if node in self.state:
            if self.state[node] != (axis, length):
                raise self.refuse(f"{self.name(node)} carries the channels in two different layouts")
            return
        shape = self.scan.shape(node)
        if shape is not None and (len(shape) < -axis or shape[axis] != length):
            raise self.refuse(f"{self.name(node)} has shape {list(shape)}, expected {length} channels at dim {axis}")
        self.state[node] = (axis, length)
        self.block = math.gcd(self.block, length)
        self.queue.append(node)

    def need_shapes(self, node, what: str) -> tuple[int, ...]:
        shape = self.scan.shape(node)
        if shape is None:
            raise self.refuse(f"{self.name(node)} {what}; pass example_inputs so its shapes can be checked")
        return shape

    # -- exploration --
    def explore(self) -> _Group:
        module = self.module(self.start)
        self.producers[self.start] = None
        self.add(self.start, _gemm_axis(module), _gemm_sizes(module)[1])
        while self.queue:
            node = self.queue.pop(0)
            for user in list(node.users):
                if user not in self.state and user not in self.consumers:
                    self.forward(node, user)
        return self.finish()

    def forward(self, node, user) -> None:
        """``user`` reads the hidden tensor ``node``: a consumer, or an op that keeps the channels."""
        axis, length = self.state[node]
        if user.op == "output":
            raise self.refuse(f"the channels reach the output of {self.scan.prefix or 'the model'}, so they cannot be reordered")
        if user.op == "call_module":
            return self.forward_module(node, user, axis, length)
        target = user.target
        fn = user.op == "call_function"
        method = user.op == "call_method"
        if (method and target in _QUERY_METHODS) or (fn and target is getattr and len(user.args) > 1 and user.args[1] in _QUERY_ATTRIBUTES):
            return  # a shape/dtype query: not data
        if (fn and target in _UNARY_FUNCTIONS) or (method and target in _UNARY_METHODS):
            self.only_data(user, node)
            return self.add(user, axis, length)
        if (fn and target in _BINARY_FUNCTIONS) or (method and target in _BINARY_METHODS):
            return self.binary(user, axis, length)
        if (fn and target in _RESHAPE_FUNCTIONS) or (method and target in _RESHAPE_METHODS):
            return self.reshape(node, user, axis, length)
        if (fn and target in _TRANSPOSE_FUNCTIONS) or (method and target in _TRANSPOSE_METHODS):
            return self.transpose(node, user, axis, length)
        if (fn and target in _MATMUL_FUNCTIONS) or (method and target in _MATMUL_METHODS):
            return self.matmul(node, user, axis, length)
        if fn and target is F.interpolate:
            self.only_data(user, node)
            return self.resize(node, user, axis, length)
        if fn and target is F.scaled_dot_product_attention:
            return self.attention(node, user, axis, length)
        raise self.refuse(f"{self.name(user)} is not an elementwise or per-channel op, so it may mix the channels")

    def only_data(self, user, node) -> None:
        """``node`` must be the only tensor ``user`` reads (as its first argument)."""
        others = [n for n in _nodes_in((user.args[1:], user.kwargs)) if not self.is_query(n)]
        if not user.args or user.args[0] is not node or others:
            raise self.refuse(f"{self.name(user)} combines the channels with other tensors")

    def is_query(self, node) -> bool:
        shape = self.scan.shape(node)
        if self.scan.shapes is not None and shape is None and node.op != "placeholder":
            return True  # a Python value (a size), not a tensor
        return node.op == "call_method" and node.target in _QUERY_METHODS or (
            node.op == "call_function" and node.target in (getattr, operator.getitem) and bool(node.args)
            and isinstance(node.args[0], torch.fx.Node) and node.args[0].op in ("call_method", "call_function")
            and (node.args[0].target in _QUERY_METHODS or node.args[0].target is getattr)
        )

    def resize(self, node, user, axis: int, length: int) -> None:
        """``user`` (nn.Upsample, F.interpolate) resizes every dim after the channels of [N, C, *spatial], each channel
        on its own: the channels must be at dim 1 (a convolution's output)."""
        shape = self.scan.shape(node)
        if axis > -2 or (shape is not None and len(shape) + axis != 1):
            raise self.refuse(f"{self.name(user)} resizes the channel dim")
        self.add(user, axis, length)

    def batchnorm(self, node, user, axis: int, length: int) -> bool:
        """Whether ``user`` is a BatchNorm (or a frozen one) that normalizes ``node``'s channels one by one."""
        module = self.module(user)
        if not (type(module) in _BATCHNORMS or _frozen_batchnorm_class(type(module))):
            return False
        expected = _BATCHNORMS.get(type(module), -3)
        if expected is None:  # BatchNorm1d: channels at dim 1 of [N, C] or [N, C, L]
            rank = len(self.need_shapes(node, "feeds a BatchNorm1d"))
            expected = {2: -1, 3: -2}.get(rank)
        shape = self.scan.shape(node)
        frozen = type(module) not in _BATCHNORMS  # its buffers reshaped to [1, C, 1, 1]: a 4-d input only
        features = module.weight.shape[0] if frozen else module.num_features
        if axis != expected or features != length or frozen and shape is not None and len(shape) != 4:
            raise self.refuse(f"{self.name(user)} normalizes another dim than the channels")
        return True

    def forward_module(self, node, user, axis: int, length: int) -> None:
        module = self.module(user)
        if user.kwargs or len(user.args) != 1 or user.args[0] is not node:
            raise self.refuse(f"{self.name(user)} is called with more than the hidden tensor")
        if _is_gemm(module):
            inputs, outputs = _gemm_sizes(module)
            if axis != _gemm_axis(module) or length != inputs:
                raise self.refuse(f"{self.name(user)} reads {inputs} channels at dim {_gemm_axis(module)}, the tensor has {length} at dim {axis}")
            groups = getattr(module, "groups", 1)
            if groups == 1:
                if user in self.producers:
                    raise self.refuse(f"{self.name(user)} both reads and writes these channels (a residual join)")
                self.consumers[user] = None
                return
            if groups == inputs == outputs:  # depthwise: one filter per channel
                self.per_channel[user] = None
                return self.add(user, axis, length)
            raise self.refuse(f"{self.name(user)} is a grouped convolution (groups={groups}); permuting across its groups changes it")
        if self.batchnorm(node, user, axis, length):
            self.per_channel[user] = None
            return self.add(user, axis, length)
        if type(module) in (nn.Flatten, nn.Unflatten):
            return self.reshape(node, user, axis, length)
        if type(module) in _POOLS:
            if axis >= -_POOLS[type(module)] or getattr(module, "return_indices", False):
                raise self.refuse(f"{self.name(user)} pools over the channel dim")
            return self.add(user, axis, length)
        if type(module) is nn.Upsample:
            return self.resize(node, user, axis, length)
        if _elementwise_module(module):
            return self.add(user, axis, length)
        raise self.refuse(f"{self.name(user)} is not a known elementwise or per-channel module")

    def binary(self, user, axis: int, length: int) -> None:
        others = [n for n in _nodes_in(user.kwargs)] + [a for a in user.args[2:] if isinstance(a, torch.fx.Node)]
        if len(user.args) != 2 or others:
            raise self.refuse(f"{self.name(user)} has unexpected arguments")
        for operand in user.args:
            if isinstance(operand, torch.fx.Node):
                self.backward(operand, axis, length, user)
            elif not isinstance(operand, (int, float, bool)):
                raise self.refuse(f"{self.name(user)} combines the channels with {type(operand).__name__}")
        self.add(user, axis, length)

    def backward(self, node, axis: int, length: int, via) -> None:
        """``node`` is combined elementwise with the hidden channels: it must carry them too."""
        if node in self.state:
            if self.state[node] != (axis, length):
                raise self.refuse(f"{self.name(via)} combines the channels in two layouts")
            return
        if node.op == "call_module":
            module = self.module(node)
            if _is_gemm(module) and getattr(module, "groups", 1) == 1:
                if node in self.consumers:
                    self.producers[node] = None  # so that the scan does not start over from it
                    raise self.refuse(f"{self.name(node)} both reads and writes these channels (a residual join)")
                if (_gemm_axis(module), _gemm_sizes(module)[1]) != (axis, length):
                    raise self.refuse(f"{self.name(via)} combines {self.name(node)} with channels of another size or layout")
                self.producers[node] = None
                return self.add(node, axis, length)
            if len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], torch.fx.Node):
                if _elementwise_module(module):
                    self.backward(node.args[0], axis, length, node)
                    return self.add(node, axis, length)
                if self.batchnorm(node.args[0], node, axis, length):  # a producer's BatchNorm, summed with the channels
                    self.per_channel[node] = None
                    self.backward(node.args[0], axis, length, node)
                    return self.add(node, axis, length)
        elif (node.op == "call_function" and node.target in _UNARY_FUNCTIONS) or (node.op == "call_method" and node.target in _UNARY_METHODS):
            if node.args and isinstance(node.args[0], torch.fx.Node):
                self.only_data(node, node.args[0])
                self.backward(node.args[0], axis, length, node)
                return self.add(node, axis, length)
        elif (node.op == "call_function" and node.target in _BINARY_FUNCTIONS) or (node.op == "call_method" and node.target in _BINARY_METHODS):
            if len(node.args) == 2 and not node.kwargs:
                for operand in node.args:
                    if isinstance(operand, torch.fx.Node):
                        self.backward(operand, axis, length, node)
                    elif not isinstance(operand, (int, float, bool)):
                        break
                else:
                    return self.add(node, axis, length)
        elif node.op == "get_attr" and isinstance(value := _attr(self.scan.gm, node.target), Tensor) and value.numel() == 1:
            return  # one number for every channel (HGNetV2's learnable affine block: scale * x + bias)
        raise self.refuse(
            f"{self.name(via)} joins the channels with {self.name(node)}, which is not computed from them "
            "by permutable layers (a residual or other join)"
        )

    def reshape(self, node, user, axis: int, length: int) -> None:
        before = self.need_shapes(node, "is reshaped")
        after = self.need_shapes(user, "is reshaped")
        if not user.args or user.args[0] is not node:
            raise self.refuse(f"{self.name(user)} reshapes another tensor with the channels")
        right = before[len(before) + axis + 1 :]
        k = len(right)
        if len(after) < k + 1 or tuple(after[len(after) - k :]) != tuple(right):
            raise self.refuse(f"{self.name(user)} reshapes {list(before)} to {list(after)}, mixing the channels with the dims after them")
        new = after[-(k + 1)]
        left_before, left_after = before[: len(before) - k - 1], after[: len(after) - k - 1]
        if not self.fits(new, length, left_before, left_after):
            raise self.refuse(f"{self.name(user)} reshapes {list(before)} to {list(after)}, which splits the channels unevenly")
        if new < length:
            self.block = math.gcd(self.block, new)
        self.add(user, axis, new)

    @staticmethod
    def fits(new: int, length: int, left_before: Sequence[int], left_after: Sequence[int]) -> bool:
        """The channel dim is kept, split into trailing runs of ``new``, or merged with dims before it."""
        if new == length:
            return math.prod(left_before) == math.prod(left_after)
        small, large, short, wide = (new, length, left_before, left_after) if new < length else (length, new, left_after, left_before)
        if large % small or math.prod(wide) != math.prod(short) * (large // small):
            return False
        product = 1  # the split-off (or merged-in) factor must be whole trailing dims of `wide`
        for size in reversed(wide):
            if product == large // small:
                break
            product *= size
        return product == large // small

    def transpose(self, node, user, axis: int, length: int) -> None:
        if not user.args or user.args[0] is not node:
            raise self.refuse(f"{self.name(user)} moves dims of another tensor")
        dims = list(user.args[1:]) + [user.kwargs[k] for k in ("dim0", "dim1", "dims") if k in user.kwargs]
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = list(dims[0])
        if not all(isinstance(d, int) for d in dims):
            raise self.refuse(f"{self.name(user)} has dims that are not constants")
        shape = self.scan.shape(node)
        permute_op = user.target in ("permute", torch.permute)
        rank = len(dims) if permute_op else (len(shape) if shape is not None else None)
        if rank is None and not all(d < 0 for d in dims):
            raise self.refuse(f"{self.name(user)} moves dims by position; pass example_inputs so the rank is known")
        if permute_op:
            order = [d % rank for d in dims]
            new = order.index(axis % rank) - rank
        else:
            a, b = dims
            if rank is not None:
                a, b, here = a % rank, b % rank, axis % rank
                new = (b if here == a else a if here == b else here) - rank
            else:
                new = b if axis == a else a if axis == b else axis
        self.add(user, new, length)

    def matmul(self, node, user, axis: int, length: int) -> None:
        if len(user.args) != 2 or user.kwargs:
            raise self.refuse(f"{self.name(user)} has unexpected arguments")
        left, right = user.args
        left_shape = self.need_shapes(left, "is multiplied")
        right_shape = self.need_shapes(right, "is multiplied")
        if len(left_shape) < 2 or len(right_shape) < 2 or left is right:
            raise self.refuse(f"{self.name(user)} reduces over the channels")
        if right is node and axis == -1:  # A @ V: V's last dim (the channels) stays last
            self.not_hidden.append((user, left))
        elif left is node and axis == -2:  # H @ B: H's rows stay rows
            self.not_hidden.append((user, right))
        else:
            raise self.refuse(f"{self.name(user)} reduces over (or batches along) the channels")
        self.add(user, axis, length)

    def attention(self, node, user, axis: int, length: int) -> None:
        names = ("query", "key", "value")
        bound = dict(zip(names, user.args[:3]))
        bound.update({k: v for k, v in user.kwargs.items() if k in names})
        if bound.get("value") is not node or axis != -1:
            raise self.refuse(f"{self.name(user)} reads the channels as query or key")
        for other in [bound.get("query"), bound.get("key"), *user.args[3:], *[v for k, v in user.kwargs.items() if k not in names]]:
            for n in _nodes_in(other):
                self.not_hidden.append((user, n))
        self.add(user, -1, length)

    def finish(self) -> _Group:
        scan = self.scan
        for user, operand in self.not_hidden:
            if operand in self.state:
                raise self.refuse(f"{self.name(user)} reads the channels in more than one operand")
        for producer in self.producers:
            source = producer.args[0] if producer.args else None
            if source in self.state:
                raise self.refuse(f"{self.name(producer)} both reads and writes these channels (a residual join)")
        if not self.consumers:
            raise self.refuse("no Linear or convolution reads these channels")
        for node in (*self.producers, *self.consumers, *self.per_channel):
            if scan.calls[node.target] > 1:
                raise self.refuse(f"{node.target} is called {scan.calls[node.target]} times")
            if any(within(attr, node.target) for attr in scan.attrs):
                raise self.refuse(f"the parameters of {node.target} are also read directly")
        block = self.block
        if block % 4:
            raise self.refuse(f"the channels can only be permuted in runs of {block}, not a multiple of 4")
        members: list[_Member] = []
        for node in self.producers:
            members += _producer(scan.qualified(node.target), self.module(node), block)
        for node in self.per_channel:
            members += _per_channel(scan.qualified(node.target), self.module(node), block)
        for node in self.consumers:
            members += _consumer(scan.qualified(node.target), self.module(node), block)
        for member in members:
            if member.tensor.shape[member.dim] % block:
                raise self.refuse(f"{member.name} has {member.tensor.shape[member.dim]} channels, not runs of {block}")
        return _Group("fx", block, 1, members)


# ---- finding the groups of a model -----------------------------------------------------------


class _Tracer(torch.fx.Tracer):
    """``torch.fx.symbolic_trace``'s tracer, with fused experts modules kept whole (their rule looks inside them) and
    frozen BatchNorms kept as per-channel modules, as BatchNorm2d is."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_fused_experts(m) or _frozen_batchnorm_class(type(m)) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> torch.fx.GraphModule | None:
    try:
        tracer = _Tracer()
        graph = tracer.trace(module)
        return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)
    except Exception:  # untraceable forward (control flow on values, unsupported calls): look inside
        return None


@dataclass
class _Traced:
    prefix: str
    module: nn.Module
    gm: torch.fx.GraphModule
    inputs: tuple[tuple, dict] | None = None


def _structure(model: nn.Module) -> tuple[list[_Group], list[tuple[tuple[str, ...], str]], list[_Traced], set[str]]:
    """Groups from the explicit rules, their refusals, the modules that torch.fx traced, and the modules a rule
    looked inside (a ruled module and what it holds, but for the children it leaves to their own rules)."""
    groups: list[_Group] = []
    skipped: list[tuple[tuple[str, ...], str]] = []
    traced: list[_Traced] = []
    ruled: set[str] = set()

    def apply(prefix: str, module: nn.Module, rule: tuple, inside: Callable[[str, nn.Module], None]) -> None:
        own = [qualified(prefix, child) for child in rule[1]]
        ruled.update(sub for sub, _ in module.named_modules(prefix=prefix) if not any(within(sub, o) for o in own))
        found = rule[0](prefix, module)
        for each in found if isinstance(found, list) else [found]:
            if isinstance(each, _Group) and each.block % 4:
                each = f"{each.kind}'s channels can only be permuted in runs of {each.block}, not a multiple of 4"
            if isinstance(each, str):
                skipped.append(((prefix,), f"{type(module).__name__}: {each}"))
            else:
                groups.append(each)
        for child in rule[1]:
            sub = getattr(module, child, None)
            if isinstance(sub, nn.Module):
                inside(qualified(prefix, child), sub)

    def visit(prefix: str, module: nn.Module) -> None:
        rule = _rule_for(module)
        if rule is not None:
            apply(prefix, module, rule, visit)
            return
        children = list(module.named_children())
        if not children:
            return
        if _transformers_class(module) is None:  # transformers models do not trace with plain torch.fx
            gm = _trace(module)
            if gm is not None:
                traced.append(_Traced(prefix, module, gm))
                called = dict.fromkeys(node.target for node in gm.graph.nodes if node.op == "call_module")
                for target in called:  # torch.nn modules fx keeps whole (TransformerEncoder, MultiheadAttention): their rules
                    opaque(qualified(prefix, target), gm.get_submodule(target))
                return
        for name, child in children:
            visit(qualified(prefix, name), child)

    def opaque(prefix: str, module: nn.Module) -> None:
        """A module the traced graph calls as one node: only the explicit rules look inside it."""
        rule = _rule_for(module)
        if rule is not None:
            apply(prefix, module, rule, opaque)
            return
        for name, child in module.named_children():
            opaque(qualified(prefix, name), child)

    visit("", model)
    return groups, skipped, traced, ruled


class _ShapeRecorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[Any, tuple[int, ...]] = {}

    def run_node(self, n):  # noqa: ANN001
        result = super().run_node(n)
        if isinstance(result, Tensor):
            self.shapes[n] = tuple(result.shape)
        return result


def _shapes(item: _Traced) -> dict[Any, tuple[int, ...]] | None:
    """Shapes of every tensor in ``item``'s graph on the inputs it got in the example forward."""
    if item.inputs is None:
        return None
    args, kwargs = item.inputs
    values = []
    for index, node in enumerate(n for n in item.gm.graph.nodes if n.op == "placeholder"):
        if node.target.startswith("*"):
            return None
        if node.target in kwargs:
            values.append(kwargs[node.target])
        elif index < len(args):
            values.append(args[index])
        elif node.args:
            values.append(node.args[0])
        else:
            return None
    recorder = _ShapeRecorder(item.gm)
    try:
        with torch.no_grad():
            recorder.run(*values)
    except Exception:  # the traced graph does not run on these inputs: analyse it without shapes
        return None
    return recorder.shapes


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PermutedGroup:
    """One set of hidden channels and the permutation applied to it.

    ``permutation`` indexes the producers' output channels: new channel ``i`` is old channel
    ``permutation[i]`` (within each run of ``block_size`` channels when ``blocks > 1``, e.g.
    one permutation per key/value head). ``kept_before``/``kept_after`` are the fractions of
    the consumers' total importance that 2:4 along their inputs keeps.
    """

    kind: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    per_channel: tuple[str, ...]
    permutation: Tensor
    block_size: int
    blocks: int
    kept_before: float
    kept_after: float
    importance_total: float
    seconds: float

    @property
    def gain(self) -> float:
        """Kept importance gained, as a fraction of the total."""
        return self.kept_after - self.kept_before

    @property
    def changed(self) -> bool:
        return not torch.equal(self.permutation, torch.arange(len(self.permutation)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "producers": list(self.producers),
            "consumers": list(self.consumers),
            "per_channel": list(self.per_channel),
            "block_size": self.block_size,
            "blocks": self.blocks,
            "kept_before": self.kept_before,
            "kept_after": self.kept_after,
            "gain": self.gain,
            "importance_total": self.importance_total,
            "seconds": self.seconds,
            "permutation": self.permutation.tolist(),
        }


@dataclass(frozen=True)
class SkippedGroup:
    """Layers whose channels were left in place, and why."""

    layers: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "reason": self.reason}


@dataclass(frozen=True)
class PermutationReport:
    """What :func:`permute` did: the groups permuted, the ones skipped, and every tensor touched.

    ``indices`` maps each tensor name (as in ``state_dict``; a tied tensor under each of its names)
    to the ``(dim, index)`` reorders applied to it, in order (a fused experts tensor's index is ``[experts, size]``: each expert's
    slice has its own order along ``dim``); :meth:`permute_like` applies them to another tensor.
    """

    groups: tuple[PermutedGroup, ...]
    skipped: tuple[SkippedGroup, ...]
    seed: int
    indices: Mapping[str, tuple[tuple[int, Tensor], ...]] = field(default_factory=dict, repr=False)

    @property
    def kept_before(self) -> float:
        return self._overall("kept_before")

    @property
    def kept_after(self) -> float:
        return self._overall("kept_after")

    def _overall(self, attr: str) -> float:
        total = sum(g.importance_total for g in self.groups)
        if not total:
            return float("nan")
        return sum(getattr(g, attr) * g.importance_total for g in self.groups) / total

    def permute_like(self, name: str, tensor: Tensor) -> Tensor:
        """``tensor`` (shaped like tensor ``name`` of the model) reordered as ``name`` was.

        For scores computed before :func:`permute` (Taylor, Wanda): ``permute_like(name, s)``
        lines them up with the permuted weight. A name :func:`permute` did not touch returns
        ``tensor`` itself.
        """
        if not isinstance(name, str):
            raise ValueError(f"name must be a tensor name (str), got {name!r}")
        if not isinstance(tensor, Tensor):
            raise ValueError(f"tensor must be a Tensor, got {type(tensor).__name__}")
        for dim, index in self.indices.get(name, ()):
            size = index.shape[-1]
            if tensor.dim() <= dim or tensor.shape[dim] != size or (index.dim() == 2 and tensor.shape[0] != index.shape[0]):
                experts = f"{index.shape[0]} experts, " if index.dim() == 2 else ""
                raise ValueError(f"{name} was permuted along dim {dim} ({experts}{size} channels); got a tensor of shape {list(tensor.shape)}")
            if index.dim() == 1:
                tensor = tensor.index_select(dim, index.to(tensor.device))
            else:  # [experts, size]: expert e's slice reordered by its own row
                shape = [index.shape[0]] + [1] * (tensor.dim() - 1)
                shape[dim] = size
                tensor = tensor.gather(dim, index.to(tensor.device).reshape(shape).expand(tensor.shape))
        return tensor

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "kept_before": self.kept_before,
            "kept_after": self.kept_after,
            "groups": [g.to_dict() for g in self.groups],
            "skipped": [s.to_dict() for s in self.skipped],
            "tensors": {name: [dim for dim, _ in steps] for name, steps in self.indices.items()},
        }

    def __str__(self) -> str:
        changed = sum(g.changed for g in self.groups)
        lines = [f"Channel permutation (seed {self.seed}): {changed} of {len(self.groups)} groups reordered, {len(self.skipped)} skipped"]
        if self.groups:
            lines.append(
                f"  importance kept by 2:4 in the consumers: {self.kept_before:.4f} -> {self.kept_after:.4f} "
                f"({self.kept_after - self.kept_before:+.4f})"
            )
        for g in self.groups:
            runs = f"{g.blocks} x {g.block_size}" if g.blocks > 1 else f"{g.block_size}"
            lines.append(
                f"  {', '.join(g.producers)} -> {', '.join(g.consumers)} [{g.kind}, {runs} channels]: "
                f"kept {g.kept_before:.4f} -> {g.kept_after:.4f} ({g.gain:+.4f}), {g.seconds:.2f}s"
            )
        for s in self.skipped:
            lines.append(f"  skipped {', '.join(s.layers) or '(model)'}: {s.reason}")
        return "\n".join(lines)


def permute_like(report: PermutationReport, name: str, tensor: Tensor) -> Tensor:
    """``report.permute_like(name, tensor)``: reorder ``tensor`` as :func:`permute` reordered ``name``."""
    if not isinstance(report, PermutationReport):
        raise ValueError(f"report must be the PermutationReport permute() returned, got {type(report).__name__}")
    return report.permute_like(name, tensor)


# ---------------------------------------------------------------------------------------------
# permute()
# ---------------------------------------------------------------------------------------------

# Largest difference, relative to the largest |output|, that counts as the same function when
# example_inputs are checked (the reduction order of every permuted GEMM changes).
_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}
_LOW_PRECISION_TOLERANCE = 5e-2


def _patterns(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    patterns = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else None
    if patterns is None or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{what} must be a glob string or a sequence of them, got {value!r}")
    return patterns


def _matching(names: Iterable[str], patterns: tuple[str, ...]) -> str | None:
    for name in names:
        for pattern in patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return f"{pattern!r} ({name})"
    return None


def _check_importance(model: nn.Module, importance: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    if importance is None:
        return {}
    if not isinstance(importance, Mapping):
        raise ValueError(f"importance must be a mapping from parameter name to tensor, got {type(importance).__name__}")
    params = dict(model.named_parameters(remove_duplicate=False))
    checked = {}
    for name, value in importance.items():
        if name not in params:
            raise ValueError(f"importance[{name!r}]: the model has no parameter {name!r}")
        if not isinstance(value, Tensor) or value.shape != params[name].shape:
            raise ValueError(f"importance[{name!r}] must be a tensor of shape {list(params[name].shape)}, got {_describe(value)}")
        if not value.is_floating_point():
            raise ValueError(f"importance[{name!r}] must be floating point, got {value.dtype}")
        _check_values(value.detach(), f"importance[{name!r}]")
        checked[name] = value.detach()
    return checked


def _flat_outputs(value: object) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _flat_outputs(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_outputs(v)]
    return []


def _example_forward(
    model: nn.Module, example_inputs: Sequence[Any] | Mapping[str, Any], hooked: Sequence[_Traced], calls: dict[int, int] | None = None, what: str = "example_inputs"
) -> list[Tensor]:
    """Run ``model(*example_inputs)`` (``model(**example_inputs)`` for a dict) in eval mode without gradients.

    Records the inputs of the traced modules ``hooked`` and, into ``calls``, how many times
    each module ran (by ``id``); a failure is one error naming the inputs as ``what``.
    """
    modes = [(m, m.training) for m in model.modules()]
    handles = []

    def count(module: nn.Module, args: tuple) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1

    def recorder(item: _Traced):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if item.inputs is None:
                item.inputs = (args, kwargs)

        return hook

    try:
        for item in hooked:
            handles.append(item.module.register_forward_pre_hook(recorder(item), with_kwargs=True))
        if calls is not None:
            handles += [m.register_forward_pre_hook(count) for m in model.modules()]
        model.eval()
        with torch.no_grad(), no_kv_cache(model):  # a cache is no output to compare, and costs memory
            outputs = model(**example_inputs) if isinstance(example_inputs, Mapping) else model(*example_inputs)
    except Exception as error:
        call = "model(**inputs)" if isinstance(example_inputs, Mapping) else "model(*inputs)"
        raise Sparse24Error(f"{what}: {call} failed: {type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    return [t.detach().clone() for t in _flat_outputs(outputs)]


def _difference(before: list[Tensor], after: list[Tensor]) -> str | None:
    """Why ``after`` is not the same function output as ``before`` (None when it is)."""
    if len(before) != len(after):
        return f"the model returned {len(after)} tensors, {len(before)} before"
    for index, (a, b) in enumerate(zip(before, after)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {index} changed shape or dtype"
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return f"output {index} ({a.dtype}) changed"
            continue
        finite = torch.isfinite(a)  # masked logits (-inf) and the like: the same entries, the same values, exactly
        if not torch.equal(finite, torch.isfinite(b)) or not torch.equal(a[~finite].nan_to_num(0.0), b[~finite].nan_to_num(0.0)):
            return f"output {index} has its infinite or NaN entries elsewhere"
        a, b = a[finite], b[finite]
        scale = float(a.abs().max()) if a.numel() else 0.0
        tolerance = _TOLERANCE.get(a.dtype, _LOW_PRECISION_TOLERANCE) * max(scale, 1e-12)
        worst = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        if not worst <= tolerance:
            return f"output {index} moved by {worst:.3g} (largest |output| {scale:.3g}, tolerance {tolerance:.3g})"
    return None


def _called_elsewhere(group: _Group, item: _Traced, scan: _Scan, calls: Mapping[int, int]) -> str | None:
    """A layer of ``group`` that ran more often in the example forward than its traced graph says."""
    runs = calls.get(id(item.module), 0)
    if not runs:
        return None
    prefix = f"{item.prefix}." if item.prefix else ""
    for member in group.members:
        expected = runs * scan.calls[member.module_name[len(prefix) :]]
        if calls.get(id(member.module), 0) != expected:
            return (
                f"{member.module_name} ran {calls.get(id(member.module), 0)} times in the example forward, "
                f"{expected} by the traced graph of {item.prefix or 'the model'}: it is also called from outside"
            )
    return None


def _unruled_owner(model: nn.Module, name: str, ruled: set[str]) -> nn.Module | None:
    """The transformers module without a rule whose code could hold layer ``name``'s producer and consumer: its
    parent where that holds another GEMM layer, else, inside a model's layer (an element of an nn.ModuleList), the
    nearest module up to that layer holding another (BigBird's layer, over intermediate.dense and output.dense);
    None where a rule looked inside (BertAttention's covers BertSelfAttention's query) or no module qualifies."""
    parts = name.split(".")
    chain = [".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]  # the parent first, up to the model's child
    layer = next((i for i, prefix in enumerate(chain) if isinstance(model.get_submodule(prefix.rpartition(".")[0]), nn.ModuleList)), 0)
    for i, prefix in enumerate(chain[: layer + 1]):
        module = model.get_submodule(prefix)
        if prefix in ruled:
            return None
        gemms = sum(_is_gemm(child) for child in (module.children() if i == 0 else module.modules()))  # a producer and a consumer might be in it
        if gemms >= 2 and _transformers_class(module) is not None and _rule_for(module) is None:
            return module
    return None


def _router(model: nn.Module, name: str) -> bool:
    """Whether layer ``name`` is (or is inside) a mixture-of-experts router: a part of its path named router, gate or
    shared_expert_gate whose parent holds experts (Mixtral's gate, Llama 4's router, HunYuan's gate.wg, JetMoE's
    router.layer, Qwen's shared_expert_gate). Its outputs score the experts: no channels to permute."""
    parts = name.split(".")
    for end, part in enumerate(parts):
        if part in ("router", "gate", "shared_expert_gate"):
            parent = model.get_submodule(".".join(parts[:end]))
            if hasattr(parent, "experts") or any(word in type(parent).__name__.lower() for word in ("moe", "expert")):
                return True
    return False


def _tensor_owners(model: nn.Module) -> dict[int, list[str]]:
    owners: dict[int, list[str]] = defaultdict(list)
    for name, tensor in (*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)):
        owners[id(tensor)].append(name)
    return owners


def _span(member: _Member, block: int) -> tuple[int, int]:
    """The range of its dim that ``member`` reorders (runs of ``block`` from its offset)."""
    return member.offset, member.offset + len(member.blocks) * block


def _claimed_by(claimed: Mapping[tuple, list[tuple[int, int]]], member: _Member, block: int) -> bool:
    """Whether another group already reorders part of ``member``'s range of its tensor's dim (disjoint ranges of one
    dim, such as FocalNet's q and ctx rows of projection_in, may go to different groups)."""
    start, end = _span(member, block)
    return any(start < other_end and other_start < end for other_start, other_end in claimed.get(member.key, ()))


def _claim(claimed: dict[tuple, list[tuple[int, int]]], group: _Group) -> None:
    """Record the ranges ``group`` reorders, for :func:`_claimed_by`."""
    for member in group.members:
        claimed.setdefault(member.key, []).append(_span(member, group.block))


def _signature(group: _Group) -> tuple:
    """What ``group`` reorders, whatever the names: its members' tensors, dims, runs and roles. Two groups with one
    signature are one module under two names (Deformable DETR's box heads, held by the model and its decoder) or
    modules whose every tensor is tied (its box heads without refinement): one permutation serves both."""
    members = tuple((id(m.param), m.dim, m.expert, m.offset, m.role, tuple(m.blocks.tolist())) for m in group.members)
    return group.block, group.count, members


def _admit(
    group: _Group, owners: Mapping[int, list[str]], claimed: Mapping[tuple, list[tuple[int, int]]], include, exclude, twins: Sequence[_Group] = ()
) -> str | None:
    """Why ``group`` must be left alone (None to permute it). ``twins``: the groups of the same signature, whose
    names the patterns see too and whose tensors' other names are no tie."""
    names_seen = [name for g in (group, *twins) for name in (*g.layers, *(m.name for m in g.members))]
    excluded = _matching(names_seen, exclude)
    if excluded:
        return f"excluded by {excluded}"
    if include and not _matching(names_seen, include):
        return "not matched by include patterns"
    covered = {m.param_name for g in (group, *twins) for m in g.members}
    for member in group.members:
        if parametrize.is_parametrized(member.module, member.attr):  # weight norm: the stored tensors are others
            kinds = ", ".join(type(p).__name__ for p in member.module.parametrizations[member.attr])
            return f"{member.name} is computed by a parametrization ({kinds}), whose own tensors no rule moves"
        tensor = member.param
        others = [n for n in owners.get(id(tensor), []) if n not in covered]
        if others:
            return f"{member.param_name} is shared with {', '.join(others)} (tied)"
        if not tensor.is_floating_point():
            return f"{member.name} is {tensor.dtype}, not floating point"
        if tensor.device.type == "meta":
            return f"{member.name} is on the meta device"
        if _claimed_by(claimed, member, group.block):
            return f"{member.name} dim {member.dim} is already permuted by another group"
    return None


def _indices(member: _Member, perms: Tensor, block: int) -> Tensor:
    """The index along the member's whole ``dim`` (identity outside its runs)."""
    starts = torch.arange(len(member.blocks)) * block + member.offset
    runs = (starts[:, None] + perms[member.blocks]).reshape(-1)
    size = member.tensor.shape[member.dim]
    if member.offset == 0 and len(runs) == size:
        return runs
    index = torch.arange(size)
    index[member.offset : member.offset + len(runs)] = runs
    return index


def _search_group(group: _Group, importance: Mapping[str, Tensor], seed: int) -> tuple[Tensor, float, float, float]:
    """Per-block permutations ``[count, block]`` and the kept fractions before/after, and the total."""
    block = group.block
    consumers = [m for m in group.members if m.role == "consumer"]
    if any(m.param_name in importance for m in consumers):  # search on the scores given; consumers without follow along
        consumers = [m for m in consumers if m.param_name in importance]
    pieces: list[list[Tensor]] = [[] for _ in range(group.count)]
    total = 0.0
    for member in consumers:
        scores = member.scores(importance)
        scores = member.tensor.detach().abs() if scores is None else scores
        scores = scores.to(torch.float32).narrow(member.dim, member.offset, len(member.blocks) * block)
        total += float(scores.sum(dtype=torch.float64))
        length = scores.shape[member.dim]
        runs = scores.movedim(member.dim, -1).reshape(-1, length // block, block)
        for k, which in enumerate(member.blocks.tolist()):
            pieces[which].append(runs[:, k])
    perms, before, after = [], 0.0, 0.0
    base = zlib.crc32(group.layers[0].encode()) if group.layers else 0
    for which, parts in enumerate(pieces):
        matrix = torch.cat(parts) if len(parts) > 1 else parts[0]
        perm = search_permutation(matrix, seed=(seed * 1_000_003 + base + which) % 2**63)
        old, new = kept_importance(matrix), kept_importance(matrix, perm)
        if new < old:  # never happens by construction; keep the promise regardless
            perm, new = torch.arange(block, device=perm.device), old
        perms.append(perm.cpu())
        before += old
        after += new
    scale = total if total > 0 else 1.0
    return torch.stack(perms), before / scale, after / scale, total


def _reorder_(tensor: Tensor, dim: int, index: Tensor) -> None:
    with torch.no_grad():
        tensor.copy_(tensor.index_select(dim, index.to(tensor.device)))
        grad = tensor.grad if isinstance(tensor, nn.Parameter) else None
        if grad is not None:
            grad.copy_(grad.index_select(dim, index.to(grad.device)))


def _apply(plan: Sequence[tuple[Tensor, int, Tensor]]) -> None:
    """Reorder every tensor of ``plan`` in place; on any error undo the ones already done."""
    done: list[tuple[Tensor, int, Tensor]] = []
    try:
        with interrupts.deferred():
            for tensor, dim, index in plan:
                _reorder_(tensor, dim, index)
                done.append((tensor, dim, index))
    except BaseException:
        _undo(done)
        raise


def _undo(done: Sequence[tuple[Tensor, int, Tensor]]) -> None:
    with interrupts.deferred():
        for tensor, dim, index in reversed(done):
            _reorder_(tensor, dim, torch.argsort(index))


def permute(
    model: nn.Module,
    importance: Mapping[str, Tensor] | None = None,
    *,
    example_inputs: tuple | Mapping[str, Any] | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    seed: int = 0,
) -> PermutationReport:
    """Reorder ``model``'s hidden channels, in place, so that 2:4 pruning keeps more importance.

    Finds every group of layers whose hidden channels can be reordered without changing the
    function -- producers whose outputs are the channels, consumers that reduce over them,
    and only elementwise or per-channel ops (activations, gating products, BatchNorm,
    depthwise convolutions, dropout, pooling) in between -- and permutes each with
    :func:`search_permutation` on the consumers' importance (``importance[name]`` of their
    weights, shaped like the weight, else ``|W|``; when only some consumers of a group have
    scores, the search uses those and the others follow). In traced code, channels that reach a residual
    join with anything the group's layers do not compute (a module input), a norm over them (the explicit rules
    name the norms they move), a reshape that mixes them, the model output or any op not known to be elementwise
    are left alone, with the reason in the report; a join of the group's own convs (through BatchNorms) is permuted whole.

    Groups come from ``torch.fx.symbolic_trace`` where a module traces, and from explicit
    rules (``_RULES``, by exact class; the README lists the families, each tested) for transformers
    blocks that do not: feed-forwards, attention values per (key/value) head, fused q/k/v projections
    by their value rows, latent attention, linear attention and Mamba mixers, multimodal
    projectors; any transformers class whose ``forward`` is the same code as a ruled class's
    (:func:`sparse24.source.same_code`: transformers copies blocks into the families built on them);
    every fused mixture-of-experts module (each expert its own gated MLP, with its own permutation);
    and for torch's TransformerEncoderLayer/TransformerDecoderLayer feed-forward and MultiheadAttention
    value/output heads, which a traced model calls as single nodes. ``example_inputs`` (one
    forward's inputs: a tuple of positional ones, or a dict of keyword ones as transformers
    models take) let reshapes, transposes and attention matmuls be checked against real
    shapes, and the model's outputs on them are compared before and after (eval mode, no
    gradients): a difference undoes everything and raises :class:`~sparse24.Sparse24Error`.

    ``include``/``exclude`` are globs on layer and tensor names (a group is skipped when any
    of its layers matches ``exclude``, or none matches ``include``). All or nothing: on any
    error the model is unchanged. Gradients present on permuted parameters are reordered too;
    optimizer state is not -- permute before building the optimizer. A model that already
    has 2:4 masks is refused: permute the dense model, then call :func:`sparse24.sparsify`.
    Returns a :class:`PermutationReport`; :meth:`PermutationReport.permute_like` reorders
    scores computed before the call.
    """
    return _permute(model, importance, example_inputs, include, exclude, seed, "example_inputs")


def _permute(
    model: nn.Module,
    importance: Mapping[str, Tensor] | None,
    example_inputs: tuple | Mapping[str, Any] | None,
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
    seed: int,
    inputs_name: str,
) -> PermutationReport:
    """:func:`permute`, its errors naming ``example_inputs`` as ``inputs_name`` (sparsify: "the first calibration batch")."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    model = dist.unwrap(model)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if example_inputs is not None and not isinstance(example_inputs, (tuple, list, Mapping)):
        raise ValueError(
            f"example_inputs must be a tuple of positional inputs, e.g. (x,), or a dict of keyword ones, got {type(example_inputs).__name__}"
        )
    include_patterns, exclude_patterns = _patterns(include, "include"), _patterns(exclude, "exclude")
    names = [name for name, _ in model.named_modules() if name] + [name for name, _ in model.named_parameters()]
    for what, patterns in (("include", include_patterns), ("exclude", exclude_patterns)):
        unmatched = [pattern for pattern in patterns if not _matching(names, (pattern,))]
        if unmatched:
            raise Sparse24Error(f"{what} pattern {unmatched[0]!r} matches no layer or tensor of {type(model).__name__}; nothing was changed")
    masks = [name for name, _ in model.named_buffers() if name.endswith(MASK_SUFFIX)]
    if masks:
        raise Sparse24Error(
            f"the model already has 2:4 masks ({masks[0]}{' and more' if len(masks) > 1 else ''}); "
            "permute the dense model before sparsify (or sparse24.strip the masks first)"
        )
    scores = _check_importance(model, importance)

    rule_groups, rule_skips, traced, ruled = _structure(model)
    calls: dict[int, int] = {}
    reference = _example_forward(model, example_inputs, traced, calls, inputs_name) if example_inputs is not None else None
    groups = list(rule_groups)
    skipped = [SkippedGroup(layers, reason) for layers, reason in rule_skips]
    for item in traced:
        scan = _Scan(item.gm, item.prefix, _shapes(item))
        found, refused = scan.run()
        skipped += [SkippedGroup(layers, reason) for layers, reason in refused]
        for group in found:
            reason = _called_elsewhere(group, item, scan, calls)
            if reason is None:
                groups.append(group)
            else:
                skipped.append(SkippedGroup(group.layers, reason))

    owners = _tensor_owners(model)
    claimed: dict[tuple[int, int, int | None], list[tuple[int, int]]] = {}  # (tensor, dim, expert) -> the ranges reordered
    chosen: list[_Group] = []
    signatures = [_signature(group) for group in groups]
    twins: dict[tuple, list[_Group]] = defaultdict(list)
    for group, signature in zip(groups, signatures):
        twins[signature].append(group)
    outcome: dict[tuple, str | None] = {}  # signature -> the first group's refusal (None: permuted)
    for group, signature in zip(groups, signatures):
        first, *rest = twins[signature]
        if group is not first:
            done = "permuted with it" if outcome[signature] is None else f"left alone with it: {outcome[signature]}"
            twin = f"the same tensors as {first.layers[0]}'s group (one module under two names, or modules with every tensor tied)"
            skipped.append(SkippedGroup(group.layers, f"{twin}: {done}"))
            continue
        reason = outcome[signature] = _admit(group, owners, claimed, include_patterns, exclude_patterns, rest)
        if reason is not None:
            skipped.append(SkippedGroup(group.layers, reason))
            continue
        _claim(claimed, group)
        chosen.append(group)
    mentioned = {name for g in groups for name in g.layers} | {name for s in skipped for name in s.layers}
    for name, module in model.named_modules():
        if is_fused_experts(module) and gemm_axes(module) and name not in mentioned:
            reason = f"{type(module).__name__}: fused mixture-of-experts weights have no permutation rule (each expert's hidden channels stay in place)"
            skipped.append(SkippedGroup((name,), reason))
        if _is_gemm(module) and name not in mentioned:
            if _router(model, name):
                reason = "in no permutable group: a mixture-of-experts router (its outputs score the experts)"
            elif (owner := _unruled_owner(model, name, ruled)) is not None:
                reason = f"in no permutable group: {type(owner).__name__} has no permutation rule (transformers modules are not traced; only rules look inside them)"
            else:
                reason = "in no permutable group: its input comes from a model input, embedding, norm, residual stream or untraceable code"
            skipped.append(SkippedGroup((name,), reason))

    results, plan = [], []
    indices: dict[str, list[tuple[int, Tensor]]] = defaultdict(list)
    per_expert: dict[tuple[str, int], Tensor] = {}  # (tensor, dim) -> [experts, size]: each expert's own order
    for group in chosen:
        start = time.perf_counter()
        perms, before, after, total = _search_group(group, scores, seed)
        member_indices = [(m, _indices(m, perms, group.block)) for m in group.members]
        first_producer = next((index for m, index in member_indices if m.role == "producer"), member_indices[0][1])
        result = PermutedGroup(
            kind=group.kind,
            producers=group.names("producer"),
            consumers=group.names("consumer"),
            per_channel=group.names("per-channel"),
            permutation=first_producer,
            block_size=group.block,
            blocks=group.count,
            kept_before=before,
            kept_after=after,
            importance_total=total,
            seconds=time.perf_counter() - start,
        )
        results.append(result)
        if result.changed:
            for member, index in member_indices:
                plan.append((member.tensor, member.dim, index))
                if member.expert is None:
                    indices[member.name].append((member.dim, index))
                    continue
                key = (member.param_name, member.dim + 1)  # the dim in the whole [experts, ...] tensor
                if key not in per_expert:
                    per_expert[key] = torch.arange(len(index)).repeat(member.param.shape[0], 1)
                per_expert[key][member.expert] = per_expert[key][member.expert][index]  # after the earlier reorders
    for (name, dim), index in per_expert.items():
        indices[name].append((dim, index))
    named = {name: key for key, names in owners.items() for name in names}
    for name in list(indices):  # a tied tensor's other names (a detector's box heads, held by the model and by its decoder)
        for alias in owners.get(named.get(name), ()):
            indices.setdefault(alias, list(indices[name]))
    _apply(plan)
    if reference is not None:
        try:
            difference = _difference(reference, _example_forward(model, example_inputs, (), what=inputs_name))
        except BaseException:
            _undo(plan)
            raise
        if difference is not None:
            _undo(plan)
            again = _difference(reference, _example_forward(model, example_inputs, (), what=inputs_name))
            if again is not None:  # the model itself: random numbers drawn in eval mode
                raise Sparse24Error(
                    f"the model's outputs on {inputs_name} change from one run to the next without any permutation ({again}), so no "
                    "permutation can be checked on them; nothing was changed. Give the forward fixed values for what it draws at "
                    "random in eval mode (ViT-MAE: noise=...)"
                )
            raise Sparse24Error(
                f"permuting changed the model's outputs on {inputs_name}: {difference}; nothing was changed. "
                "This is a bug in the group analysis; exclude= the offending layers to work around it"
            )
    report = PermutationReport(
        groups=tuple(results),
        skipped=tuple(skipped),
        seed=seed,
        indices=MappingProxyType({name: tuple(steps) for name, steps in indices.items()}),
    )
    logger.info("permute: %d groups permuted, %d skipped", len(results), len(skipped))
    return report
