"""``sparsify``: choose 2:4 masks for a model's GEMM weights and enforce them, in place."""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import criteria, dist, interrupts
from .axes import GemmWeight, from_gemm_matrix, gemm_axes, gemm_matrix, gemm_weights
from .batch import to_device
from .batchnorm import batchnorms, recalibrate_batchnorm
from .calibrate import all_finite, find_blocks, record, unscored_parts
from .criteria._pairs import PairCosts, full_costs
from .enforce import MASK_SUFFIX, attach, full_weight_and_mask, is_sharded, mask_name, masked_weights, shard_like, shard_masks, stored_mask, undo_attach, watch
from .errors import CheckFailed, Sparse24Error, SparsityError
from .mask import pack_bits, prune_, require_two_four
from .report import LayerReport, SparsityReport

__all__ = ["sparsify", "verify", "verify_file", "check_masked", "POLICIES"]

logger = logging.getLogger(__name__)

POLICIES = ("tensorrt", "any")


@dataclass
class _Candidate:
    """A GEMM weight (one per distinct parameter; ``owners`` lists every module sharing it)."""

    owners: list[GemmWeight]
    reason: str | None = None

    @property
    def weight(self) -> GemmWeight:
        return self.owners[0]


def _patterns(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"{what} must be a glob string or a sequence of them, got {value!r}")
    return patterns


def _match(name: str, patterns: tuple[str, ...]) -> str | None:
    """The first pattern matching the parameter name ``name`` or its module's name."""
    module_name = name.rpartition(".")[0]
    for pattern in patterns:
        if fnmatch.fnmatchcase(module_name, pattern) or fnmatch.fnmatchcase(name, pattern):
            return pattern
    return None


def _structural_reason(weight: GemmWeight) -> str | None:
    """Why this weight cannot be 2:4 at all (None if it can)."""
    param, module = weight.param, weight.module
    if isinstance(param, nn.parameter.UninitializedParameter):
        return "uninitialized (lazy) parameter"
    if not param.is_floating_point():
        return f"dtype {param.dtype} is not a floating type"
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 and module.groups == module.in_channels:
        return "depthwise convolution (one input channel per group)"
    if weight.reduction_size % 4:
        return f"reduction size {weight.reduction_size} is not divisible by 4"
    return None


def _router_reason(model: nn.Module, weight: GemmWeight) -> str | None:
    """Why a mixture-of-experts router stays dense: a Linear scoring the experts of itself or its parent
    (``num_experts`` outputs: Llama 4's ``Llama4Router``, the ``gate`` of an MoE block)."""
    module = weight.module
    if not isinstance(module, nn.Linear):
        return None
    parent = model.get_submodule(weight.module_name.rpartition(".")[0]) if weight.module_name else None
    experts = {getattr(m, "num_experts", None) for m in (module, parent)}
    if module.out_features not in experts:
        return None
    return (
        f"an MoE router (scores {module.out_features} experts): pruning it changes which experts run, for "
        "almost no compute; an include= pattern that names it prunes it"
    )


def _tensorrt_reason(weight: GemmWeight) -> str | None:
    """TensorRT/ASP policy: reduction % 16 == 0 and outputs % 8 == 0."""
    if weight.reduction_size % 16:
        return f"reduction size {weight.reduction_size} is not a multiple of 16 (TensorRT policy; policy='any' allows it)"
    if weight.output_size % 8:
        return f"output size {weight.output_size} is not a multiple of 8 (TensorRT policy; policy='any' allows it)"
    return None


_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def _embedding_names(model: nn.Module) -> set[str]:
    """Qualified names of the embedding tables' weights (every alias of a tied one)."""
    return {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules(remove_duplicate=False)
        if isinstance(module, _EMBEDDINGS)
        for name, _ in module.named_parameters(recurse=False, remove_duplicate=False)
    }


def _tie_reason(owners: list[GemmWeight], users: list[str], embeddings: set[str]) -> str | None:
    if len({owner.axis for owner in owners}) > 1:
        return "tied weight used along different axes: " + ", ".join(o.name for o in owners)
    gemm_names = {owner.name for owner in owners}
    others = [name for name in users if name not in gemm_names]
    tables = [name for name in others if name in embeddings]
    if tables:  # a tied output head: its weight is also the input embedding table
        return f"shared with the embedding table {', '.join(tables)} (tied: a lookup, not a GEMM; 2:4 here would also prune the input embeddings)"
    if others:
        return f"shared with {', '.join(others)}, which is not a GEMM weight"
    return None


def _embedding_note(model: nn.Module) -> str | None:
    """The report's line on the embedding tables, which sparsify leaves dense (they are not GEMM weights)."""
    embeddings = _embedding_names(model)
    named = list(model.named_parameters(remove_duplicate=False))
    tables = {id(param): param for name, param in named if name in embeddings}
    if not tables:
        return None
    items = []
    for key, param in tables.items():
        names = sorted((name for name, p in named if id(p) == key), key=lambda name: name not in embeddings)  # the table's own name first
        tied = f" (tied to {', '.join(names[1:])})" if names[1:] else ""
        items.append(f"{names[0]} {'x'.join(map(str, param.shape))}{tied}")
    return f"embedding tables stay dense (a lookup, not a GEMM, so no 2:4 kernel applies): {'; '.join(items)}"


def _batchnorm_note(model: nn.Module) -> str | None:
    """The report's line on BatchNorm statistics left as the dense model's (``recalibrate_bn`` re-estimates them)."""
    count = len(batchnorms(model))
    if not count:
        return None
    return f"{count} BatchNorm layers keep the dense model's running statistics: recalibrate_bn=True (with data) re-estimates them on the pruned model"


def _computed_note(model: nn.Module) -> str | None:
    """The report's line on GEMM layers whose weight is not a parameter (a parametrization computes it, or it is a
    buffer): sparsify cannot mask those and leaves them dense, and says so rather than leave them out."""
    from torch.nn.utils import parametrize

    found = []
    for module_name, module in model.named_modules():
        for param_name in gemm_axes(module):
            name = f"{module_name}.{param_name}" if module_name else param_name
            if parametrize.is_parametrized(module, param_name):
                kinds = ", ".join(type(p).__name__ for p in module.parametrizations[param_name])
                found.append(f"{name} (computed by a parametrization: {kinds})")
            elif isinstance(module._buffers.get(param_name), Tensor):
                found.append(f"{name} (a buffer)")
            elif param_name not in module._parameters and isinstance(getattr(module, param_name, None), Tensor):
                found.append(f"{name} (a plain tensor attribute, e.g. the deprecated torch.nn.utils.weight_norm)")
    if not found:
        return None
    return (
        f"left dense, their weights are not parameters: {'; '.join(found)}; remove the parametrization "
        "(torch.nn.utils.parametrize.remove_parametrizations) or make the weight a parameter to prune them"
    )


def _experts_note(model: nn.Module) -> str | None:
    """The report's line on stacked mixture-of-experts weights (one ``[experts, ...]`` parameter per projection,
    used a slice per expert) of a module sparse24 has no layout for (transformers' ``use_experts_implementation``
    modules and JetMoE's parallel experts are pruned: :func:`sparse24.axes.is_stacked_experts`), which sparsify
    leaves dense: they are often most of the model, so the report says so rather than count only the layers it knows."""
    found = [
        (f"{module_name}.{name}" if module_name else name, param)
        for module_name, module in model.named_modules()
        if isinstance(getattr(module, "num_experts", None), int) and not gemm_axes(module)
        for name, param in module.named_parameters(recurse=False)
        if param.dim() == 3 and param.shape[0] == module.num_experts
    ]
    if not found:
        return None
    held = sum(param.numel() for _, param in found)
    total = sum(param.numel() for param in model.parameters())
    listed = "; ".join(f"{name} {'x'.join(map(str, param.shape))}" for name, param in found[:4])
    more = f"; and {len(found) - 4} more" if len(found) > 4 else ""
    return (
        f"left dense: {len(found)} fused mixture-of-experts weight(s), {held:,} of {total:,} model parameters "
        f"({held / total:.1%}), stacked [experts, ...] tensors that sparse24 does not prune (it prunes nn.Linear, "
        f"convolutions, transformers Conv1D, MultiheadAttention, the experts of transformers' use_experts_implementation "
        f"modules, whose layout that decorator states, and JetMoE's parallel experts): {listed}{more}"
    )


def _candidates(
    model: nn.Module,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    policy: str,
    min_params: int,
    include_frozen: bool,
) -> list[_Candidate]:
    by_param: dict[int, list[GemmWeight]] = defaultdict(list)
    for weight in gemm_weights(model):
        if weight not in by_param[id(weight.param)]:
            by_param[id(weight.param)].append(weight)
    users: dict[int, list[str]] = defaultdict(list)
    for name, param in model.named_parameters(remove_duplicate=False):
        users[id(param)].append(name)
    embeddings = _embedding_names(model)
    names = [owner.name for owners in by_param.values() for owner in owners]
    for what, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns:  # a typo must not prune what the user meant to keep dense (or keep all dense)
            if not any(_match(name, (pattern,)) for name in names):
                shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
                raise Sparse24Error(
                    f"{what} pattern {pattern!r} matches no GEMM weight of {type(model).__name__} (by module or weight name; "
                    f"they are {shown or 'none'}); nothing was changed"
                )

    found = []
    for key, owners in by_param.items():
        weight = owners[0]
        reason = _structural_reason(weight) or _tie_reason(owners, users[key], embeddings)
        if reason is None:
            excluded = next(filter(None, (_match(o.name, exclude) for o in owners)), None)
            if excluded:
                reason = f"excluded by {excluded!r}"
            elif include and not any(_match(o.name, include) for o in owners):
                reason = "not matched by include patterns"
            elif not include and (router := _router_reason(model, weight)):
                reason = router
            elif not weight.param.requires_grad and not include_frozen:
                reason = "frozen (requires_grad=False); include_frozen=True prunes it"
            elif weight.param.numel() < min_params:
                reason = f"{weight.param.numel()} parameters < min_params={min_params}"
            elif policy == "tensorrt":
                reason = _tensorrt_reason(weight)
        found.append(_Candidate(owners, reason))
    return found


_CHUNK = 1 << 20  # elements summed at a time by _accumulate


def _accumulate(values: Tensor, absolute: bool, dtype: torch.dtype) -> Tensor:
    """The sum of ``values`` (of their magnitudes where ``absolute``, a chunk at a time through one small buffer) in
    ``dtype``. Not ``vector_norm(values, 1)``: on the CPU it adds float32 magnitudes one after another, 31% low on
    an 8192x8192 weight on one thread; ``sum`` adds in a cascade."""
    if not absolute:
        return values.sum(dtype=dtype)
    flat = values.reshape(-1)
    buffer = torch.empty(min(flat.numel(), _CHUNK), dtype=flat.dtype, device=flat.device)
    total = torch.zeros((), dtype=dtype, device=flat.device)
    for start in range(0, flat.numel(), _CHUNK):
        chunk = flat[start : start + _CHUNK]
        total += torch.abs(chunk, out=buffer[: chunk.numel()]).sum(dtype=dtype)
    return total


def _sum(values: Tensor, *, absolute: bool = False) -> float | None:
    """The sum of ``values`` (of their magnitudes where ``absolute``), accumulated in float32 or the values' wider
    type; None where they hold NaN or Inf. Where a float32 sum of finite values overflows (values near float32's
    largest), it is taken again in float64, which never overflows on them (and is several times slower on the CPU)."""
    values = values.detach()
    wide = torch.promote_types(values.dtype, torch.float32)
    total = _accumulate(values, absolute, wide)
    if not torch.isfinite(total):
        if not all_finite(values):
            return None
        if wide != torch.float64:  # (float64 values: the same sum again would overflow again)
            total = _accumulate(values, absolute, torch.float64)
    return float(total)


def _total_importance(weight: GemmWeight, scores: Tensor | PairCosts | None) -> float:
    """Sum of (per-weight) importance before pruning; also the NaN/Inf check of the scores (pair costs' cross sums too)."""
    if scores is None:
        total = _sum(weight.param, absolute=True)
        what = "weights contain"
    else:
        per_weight = scores.scores if isinstance(scores, PairCosts) else scores
        if per_weight.shape != weight.param.shape:
            raise Sparse24Error(f"{weight.name}: criterion gave scores of shape {list(per_weight.shape)}, weight is {list(weight.param.shape)}")
        total = _sum(per_weight)
        what = "importance scores contain"
    if total is None or (isinstance(scores, PairCosts) and _sum(scores.cross) is None):
        raise Sparse24Error(f"{weight.name}: {what} NaN or Inf; nothing was changed")
    return total


def _kept_importance(weight: GemmWeight, scores: Tensor | None, mask: Tensor) -> float:
    kept = _sum(weight.param, absolute=True) if scores is None else _sum(scores * mask)
    return float("nan") if kept is None else kept


@dataclass
class _Result:
    """What a criterion decided for one weight: scores to prune by, or a mask (and new values)."""

    param: Tensor
    kept: float | None = None  # fraction of the importance (or of the output) kept; after pruning when None
    scores: Tensor | None = None
    total: float = 0.0  # importance before pruning, for ``kept``
    mask: Tensor | None = None
    weight: Tensor | None = None
    packed: Tensor | None = None  # sharded: this rank's rows of the packed mask (decided and written already)
    applied: bool = False  # the weight is pruned (and updated) already

    def kept_after(self, weight: GemmWeight) -> float:
        if self.kept is not None:
            return self.kept
        return _kept_importance(weight, self.scores, self.mask) / self.total if self.total > 0 else 1.0


def _from_scores(weight: GemmWeight, scores: Tensor | PairCosts | None) -> _Result:
    """Scores to prune by (checked for NaN/Inf here, before anything changes), magnitude's in the parts they leave
    unscored (:func:`_magnitude_where_unscored`); pair costs decide the mask here."""
    if scores is not None:
        per_weight = scores.scores if isinstance(scores, PairCosts) else scores
        filled = _magnitude_where_unscored(weight, per_weight)
        if filled is not per_weight:
            scores = PairCosts(filled, scores.cross) if isinstance(scores, PairCosts) else filled
    total = _total_importance(weight, scores)
    if isinstance(scores, PairCosts):
        return _Result(weight.param, scores=scores.scores, total=total, mask=scores.keep(weight))
    return _Result(weight.param, scores=scores, total=total)


def _magnitude_where_unscored(weight: GemmWeight, scores: Tensor) -> Tensor:
    """``scores``, or a copy with magnitude's (``w^2``) in each part of ``weight`` (:func:`~sparse24.axes.gemm_matrix`)
    whose scores are all 0 while its weights are not: Taylor's where no gradient reached the layer on any calibration
    batch (the loss, or ``logits_fn``'s output, does not depend on it). Ties there would keep the first two of every
    group, a mask chosen by nothing; the parts are counted for the report (:func:`sparse24.calibrate.unscored_parts`).
    Pair costs need nothing more: their cross sums are 0 wherever the scores are."""
    matrix = gemm_matrix(weight, scores)
    weights = gemm_matrix(weight, weight.param.detach())
    unscored = unscored_parts(weight, matrix, weights)
    if not bool(unscored.any()):
        return scores
    filled = torch.where(unscored[:, None, None], weights.float().square(), matrix.float())
    return from_gemm_matrix(weight, filled).contiguous()


def _prune_by(weight: GemmWeight, scores: Tensor | PairCosts | None) -> _Result:
    """Prune ``weight`` in place by ``scores`` (``|weight|`` when None); its result with the mask."""
    result = _from_scores(weight, scores)
    if result.mask is None:
        result.mask = torch.empty(weight.param.shape, dtype=torch.bool, device=weight.param.device)
        prune_(weight.param.detach(), weight.axis.reduction, result.scores, out=result.mask)
    else:
        _zero_pruned(weight.param, result.mask)
    result.kept = result.kept_after(weight)
    result.applied = True
    return result


def _zero_pruned(param: Tensor, mask: Tensor) -> None:
    """Pruned elements become +0.0 (as :func:`sparse24.mask.prune_` leaves them)."""
    with torch.no_grad():
        param.masked_fill_(~mask, 0)


def _settle(weight: GemmWeight, decide: Callable[[GemmWeight], _Result]) -> _Result:
    """``decide(target)`` prunes ``target`` in place; for a sharded weight on its gathered copy, one layer at a time.

    Sharded, this rank's rows are then written into its shard and the result carries them
    as the packed mask (``packed``); every rank must settle the same weights in the same order.
    """
    if not is_sharded(weight.param):
        return decide(weight)
    from .sharded import gathered, write_back

    target = gathered(weight)
    result = decide(target)
    write_back(weight.param, target.param)
    result.packed = shard_like(weight.param, pack_bits(result.mask))
    result.param = weight.param
    result.mask = result.scores = result.weight = None
    return result


def _full_scores(weight: GemmWeight, local: Tensor | PairCosts) -> Tensor | PairCosts:
    """A weight's whole scores (or pair costs) from this rank's: gathered for a sharded weight (collectives), else ``local``."""
    if isinstance(local, PairCosts):
        return full_costs(weight, local) if is_sharded(weight.param) else local
    from .sharded import full_from_local

    return full_from_local(weight.param, local)


def _one_pass_sharded(model: nn.Module, criterion: Any, weights: list[GemmWeight], *, options: dict[str, Any], **call: Any) -> list[_Result]:
    """:func:`_one_pass` on an FSDP2-sharded model: statistics on every rank, then one gathered layer at a time."""
    from .calibrate import gather
    from .sharded import reshard_all

    kind = getattr(criterion, "KIND", None)
    if kind is not None:
        if not hasattr(criterion, "solve") and options:
            raise ValueError(f"{criterion.__name__.rpartition('.')[2]} takes no options, got {sorted(options)}")
        stats, counts = gather(model, weights, kind, call["data"], loss_fn=call["loss_fn"], num_batches=call["num_batches"], progress=call["progress"])
    else:
        local_scores = criterion.score(model, weights, **call, **options)  # taylor: this rank's rows; magnitude: None
    reshard_all(model)  # a root unit stays unsharded after a forward without gradients
    results = []
    for index, weight in enumerate(weights):
        if kind is not None:
            stat, count = stats.pop(id(weight.param)), counts[id(weight.param)]
            results.append(_settle(weight, lambda target, stat=stat, count=count: _decide_in_place(criterion, target, stat, count, options)))
        else:
            local = local_scores[index]
            scores = None if local is None else _full_scores(weight, local)
            results.append(_settle(weight, lambda target, scores=scores: _prune_by(target, scores)))
            local_scores[index] = scores = None
    return results


def _one_pass(model: nn.Module, criterion: Any, weights: list[GemmWeight], *, options: dict[str, Any], **call: Any) -> list[_Result]:
    """Every weight decided from one calibration over the whole model."""
    if hasattr(criterion, "solve_all"):
        solved = criterion.solve_all(model, weights, **call, **options)
        return [_Result(w.param, kept, mask=mask, weight=new) for w, (new, mask, kept) in zip(weights, solved)]
    scores = criterion.score(model, weights, **call, **options)
    return [_from_scores(w, s) for w, s in zip(weights, scores)]


def _decide_in_place(criterion: Any, weight: GemmWeight, stat: Tensor, count: int, options: dict[str, Any]) -> _Result:
    """One weight from its statistics, applied to the weight now (the next blocks see it pruned)."""
    param = weight.param
    with torch.no_grad():
        if hasattr(criterion, "solve"):
            new, mask, kept = criterion.solve(weight, stat, count, **options)
            param.copy_(new)
            return _Result(param, kept, mask=mask, applied=True)
        result = _from_scores(weight, criterion.from_stats(weight, stat, count))
        result.mask = torch.empty(param.shape, dtype=torch.bool, device=param.device)
        prune_(param.detach(), weight.axis.reduction, result.scores, out=result.mask)
        result.kept = result.kept_after(weight)
        result.applied = True
        return result


def _sequential(
    model: nn.Module,
    criterion: Any,
    weights: list[GemmWeight],
    blocks: list[tuple[str, nn.Module]],
    *,
    offload: bool,
    options: dict[str, Any],
    data: Any,
    loss_fn: Any,
    num_batches: int | None,
    progress: bool,
) -> list[_Result]:
    """Block by block, in the order the forward runs them: each block decided (and pruned in place) on the outputs
    of the pruned blocks before it.

    Weights outside every block come last, from the whole pruned model. On any failure
    (Ctrl-C included) every weight is put back as it was (sharded: every rank's shards).
    Taylor orders the blocks by one forward of the first batch (:func:`sparse24.calibrate.run_order`), Wanda and
    SparseGPT by their dense pass (:class:`sparse24.calibrate.Sequential`).
    """
    from .sharded import Snapshot, reshard_all

    originals = Snapshot(w.param for w in weights)
    results: dict[int, _Result] = {}
    engine = None
    if hasattr(criterion, "KIND"):
        from .calibrate import Sequential

        engine = Sequential(model, blocks, data, loss_fn=loss_fn, num_batches=num_batches, offload=offload, progress=progress)
        blocks = engine.blocks  # in the order the forward runs them
    elif data is not None:
        from .calibrate import run_order

        data = list(data)
        blocks = run_order(model, blocks, data, _forward_fn(loss_fn, options))
    inside: dict[int, int] = {}
    for index, (_, block) in enumerate(blocks):
        for param in block.parameters():
            inside.setdefault(id(param), index)
    per_block: list[list[GemmWeight]] = [[] for _ in blocks]
    rest = []
    for weight in weights:
        (per_block[inside[id(weight.param)]] if id(weight.param) in inside else rest).append(weight)

    def decide_from(weight: GemmWeight, stats: dict[int, Tensor], counts: dict[int, int]) -> _Result:
        stat, count = stats.pop(id(weight.param)), counts[id(weight.param)]
        return _settle(weight, lambda target: _decide_in_place(criterion, target, stat, count, options))

    try:
        if engine is not None:
            from .calibrate import gather

            for index, block_weights in enumerate(per_block):
                if block_weights:
                    stats, counts = engine.gather(index, block_weights, criterion.KIND)
                    reshard_all(model)
                    for weight in block_weights:
                        results[id(weight.param)] = decide_from(weight, stats, counts)
                    logger.info("sequential: block %s done (%d weights)", blocks[index][0], len(block_weights))
                engine.advance(index)
            if rest:
                stats, counts = gather(model, rest, criterion.KIND, engine.batches, loss_fn=loss_fn, progress=progress)
                reshard_all(model)
                for weight in rest:
                    results[id(weight.param)] = decide_from(weight, stats, counts)
        else:  # taylor: gradients need the whole model; blocks are scored in order, earlier ones pruned
            reached = False  # a group the loss does not reach scores 0 (magnitude's mask); none reached is an error
            for group in [*per_block, rest]:
                if not group:
                    continue
                scores = criterion.score(model, group, data=data, loss_fn=loss_fn, num_batches=num_batches, progress=progress, require_gradient=False, **options)
                reshard_all(model)
                for weight, score in zip(group, scores):
                    full = _full_scores(weight, score)  # sharded: gathered, one layer at a time
                    reached = reached or bool((full.scores if isinstance(full, PairCosts) else full).ne(0).any())
                    results[id(weight.param)] = _settle(weight, lambda target, full=full: _prune_by(target, full))
            if not reached:
                raise Sparse24Error(f"taylor, block by block: {criterion.NO_GRADIENT}")
    except BaseException:
        originals.restore()
        raise
    return [results[id(w.param)] for w in weights]


def sparsify(
    model: nn.Module,
    method: str = "magnitude",
    *,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    policy: str = "tensorrt",
    min_params: int = 0,
    include_frozen: bool = False,
    sequential: bool | str | Sequence[str] | None = None,
    offload: bool = False,
    permute: bool = False,
    example_inputs: tuple | Mapping[str, Any] | None = None,
    recalibrate_bn: bool = False,
    progress: bool = True,
    **options: Any,
) -> SparsityReport:
    """Make ``model``'s eligible GEMM weights 2:4 sparse, in place, and keep them so.

    ``method`` names a criterion (``"magnitude"``, ``"taylor"``, ``"wanda"``,
    ``"sparsegpt"``; see :mod:`sparse24.criteria`); ``data``/``loss_fn``/``num_batches``
    feed calibrating criteria and ``**options`` go to the criterion (Taylor: ``squared``,
    ``per_sample``, ``autocast``, ``mode``, ``labels`` with ``logits_fn``, ``samples``, ``seed``, ``pairs``; SparseGPT: ``blocksize``, ``dampening``). SparseGPT also updates
    the weights it keeps.

    ``sequential`` calibrates block by block (``True``: the layer stacks holding the weights pruned; a
    ``ModuleList``/``Sequential`` name; or a list of module names), in the order the forward runs
    the blocks: each block's statistics come from the outputs of the blocks run before it, already
    pruned, and only one block's inputs are held (on the CPU with ``offload=True``). Weights outside the blocks are calibrated
    last, on the pruned model.

    ``permute=True`` first reorders hidden channels where that leaves the function unchanged
    (:func:`sparse24.permute`; ``example_inputs`` are one forward's inputs, a tuple or a dict of
    keyword ones, for its checks; without them, a calibrating method without ``loss_fn`` or
    ``logits_fn`` checks on the first batch of a re-iterable ``data``) to maximize the importance
    the 2:4 masks keep: ``|W|`` for magnitude, the
    criterion's scores for Taylor and Wanda, Wanda's scores for SparseGPT. The report's notes
    give the gain per permuted group.

    ``recalibrate_bn=True`` then re-estimates every BatchNorm's running statistics on ``data``
    (any method, magnitude too; :func:`sparse24.recalibrate_batchnorm`): pruning shifts the
    activations a BatchNorm normalises, and on a CNN most of the one-shot loss is that shift.

    Weights on the meta device (``init_empty_weights``, offloaded by a ``device_map``) are an
    error before anything changes. Layers are skipped, with the reason in the report, when their reduction size is not a
    multiple of 4, they are depthwise, excluded by ``exclude`` or not matched by
    ``include`` (module-name globs; a pattern that matches no GEMM weight is an error), frozen (unless ``include_frozen``), smaller than
    ``min_params``, or -- with ``policy="tensorrt"`` -- when the reduction size is not a
    multiple of 16 or the output size not a multiple of 8.

    All or nothing: if anything fails (bad batch, loss_fn error, NaN/Inf scores,
    KeyboardInterrupt) the model's weights and buffers are as before.

    A ``DistributedDataParallel`` or ``torch.compile`` model is unwrapped (masks go on the inner module). Under
    ``torch.distributed`` calibrating criteria sum their scores across ranks, so every rank
    chooses the same masks; ``progress`` shows calibration progress (rank 0 only).

    An FSDP2-sharded model (``fully_shard``; call on every rank, each with its own batches) is
    pruned as it is: statistics are gathered with every rank running the same number of passes
    (Taylor runs every rank's batches on every rank, as FSDP averages gradients over ranks),
    then one layer at a time is gathered, decided as unsharded, and this rank's rows written
    back; masks become packed ``Shard(0)`` buffers like ``finetune(strategy="fsdp")``'s. The
    masks equal one process's on all ranks' batches. A failure between passes (data, NaN,
    a solve) raises on every rank with the process group intact; an exception inside a sharded
    pass on some ranks only aborts the process group (see :mod:`sparse24.sharded`), so that no
    rank waits forever. Every rank's shards are restored either way. ``permute=True`` needs the
    unsharded model.
    """
    model = dist.unwrap(model)
    if dist.is_fsdp(model):
        from .sharded import reshard_all

        reshard_all(model)  # a root unit stays unsharded after a forward without gradients
        if permute:
            raise Sparse24Error("permute=True needs the unsharded model: permute (sparse24.permute) before sharding it with fully_shard")
    if permute and method != "magnitude" and isinstance(data, Iterator):
        raise ValueError(
            f"permute=True with {method!r} reads data twice (the scores for the permutation, then the masks): "
            "pass a list or a DataLoader, not a one-pass iterator"
        )
    if not isinstance(recalibrate_bn, bool):
        raise ValueError(f"recalibrate_bn must be True or False, got {recalibrate_bn!r}")
    if recalibrate_bn and data is None:
        raise ValueError("recalibrate_bn=True needs data: the batches whose activations give the BatchNorms' new statistics")
    if recalibrate_bn and method != "magnitude" and isinstance(data, Iterator):
        raise ValueError(
            f"recalibrate_bn=True with {method!r} reads data twice (the masks' statistics, then the BatchNorms'): "
            "pass a list or a DataLoader, not a one-pass iterator"
        )
    if recalibrate_bn and dist.is_fsdp(model):
        raise Sparse24Error("recalibrate_bn=True needs the unsharded model: sparsify before fully_shard, or without recalibrate_bn")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not isinstance(min_params, int) or min_params < 0:
        raise ValueError(f"min_params must be a non-negative int, got {min_params!r}")
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
    criterion = criteria.get(method)
    candidates = _candidates(
        model, _patterns(include, "include"), _patterns(exclude, "exclude"), policy, min_params, include_frozen
    )
    if hasattr(criterion, "KIND"):  # wanda, sparsegpt: statistics of each layer's inputs
        _uncalled(model, candidates, method, data, loss_fn)
    chosen = [c for c in candidates if c.reason is None]
    on_meta = [c.weight.name for c in chosen if c.weight.param.is_meta]
    if on_meta:
        raise Sparse24Error(
            f"sparsify: {len(on_meta)} weight(s) hold no data here (meta device), first {on_meta[0]}: a model built under "
            "init_empty_weights, or offloaded by a device_map; load its weights (or sparsify before offloading)"
        )
    if sequential not in (None, False) and not hasattr(criterion, "KIND") and method != "taylor":
        raise ValueError(f"sequential calibration applies to the data-aware methods (wanda, sparsegpt, taylor), not {method!r}")
    experts = _experts_note(model)
    if experts:
        logger.warning("sparsify: %s", experts)
    notes: list[str] = list(filter(None, [_embedding_note(model), _computed_note(model), experts, None if recalibrate_bn else _batchnorm_note(model)]))
    kept: dict[int, float] = {}
    if chosen:
        snapshot = None
        if permute or recalibrate_bn:  # both change the model outside _choose's own all-or-nothing
            snapshot = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
        unmasked = [(o.module, o.param_name) for c in chosen for o in c.owners if mask_name(o.param_name) not in o.module._buffers]
        if permute:
            notes += _permute(model, method, [c.weight for c in chosen], data, loss_fn, num_batches, progress, options, example_inputs, include, exclude)
        try:
            with record() as seen:
                kept = _choose(model, criterion, chosen, sequential, offload, dict(data=data, loss_fn=loss_fn, num_batches=num_batches, progress=progress, options=options))
            padded = max(seen.passes, key=lambda p: p.seen, default=None)  # every pass reads the same batches
            windows = any(p.windows for p in seen.passes)  # a Conv1d pass may count no frames
            if padded is not None and (padded.left_out or windows):
                windows = "; the convolutions' windows over padded samples too" if windows else ""
                what = "the model Fisher's draws" if method == "taylor" else "the input statistics"
                notes.append(f"{what} leave out padding: {padded.left_out} of {padded.seen} {padded.unit} ({' and '.join(sorted(padded.keys))} == 0){windows}")
            if seen.unseen:
                listed = "; ".join(f"{name} {unseen} of {parts}" for name, (unseen, parts) in seen.unseen.items())
                notes.append(f"no calibration input reached some parts (experts no token was routed to): magnitude's mask there, more calibration data gives them statistics: {listed}")
            if seen.unscored:
                listed = "; ".join(name if parts == 1 else f"{name} {unscored} of {parts} parts" for name, (unscored, parts) in seen.unscored.items())
                notes.append(f"some layers got no importance from the calibration (taylor: no gradient reached them on any batch; the loss, or logits_fn's output, does not depend on them): magnitude's mask there: {listed}")
            if seen.zero:
                listed = "; ".join(name if parts == 1 else f"{name} {zero} of {parts} groups" for name, (zero, parts) in seen.zero.items())
                notes.append(f"some layers' inputs were zero on every calibration batch (dead activations: a random initialization, or a layer that never fires): magnitude's mask there: {listed}")
            if recalibrate_bn:
                notes.append(_recalibrate(model, unmasked, data, _forward_fn(loss_fn, options), num_batches, progress))
        except BaseException:
            if snapshot is not None:  # undo the permutation and the pruning too
                with torch.no_grad():
                    for key, value in model.state_dict().items():
                        value.copy_(snapshot[key])
            raise
    else:
        logger.warning("sparsify: no eligible layer in %s", type(model).__name__)
    report = _report(model, candidates, method, kept, tuple(notes))
    logger.info("sparsify: %s", report._summary())
    return report


def _forward_fn(loss_fn: Any, options: dict[str, Any]) -> Any:
    """How a pass that only runs the model (the blocks' order, BatchNorm statistics) calls it on a batch: as the
    scoring does, through ``loss_fn``, or ``logits_fn`` for Taylor with ``labels="model"`` (its batches may hold labels
    the model cannot take); None: the model called on the batch as it is."""
    return loss_fn if loss_fn is not None else options.get("logits_fn")


def _recalibrate(model: nn.Module, unmasked: list[tuple[nn.Module, str]], data: Any, loss_fn: Any, num_batches: int | None, progress: bool) -> str:
    """BatchNorm statistics re-estimated on the pruned model; the report's note. On failure the masks just attached to
    ``unmasked`` (the weights that had none) come off again; the caller restores the weights, buffers and older masks."""
    try:
        count = recalibrate_batchnorm(model, data, loss_fn=loss_fn, num_batches=num_batches, progress=progress)
    except BaseException:
        with interrupts.deferred():
            undo_attach(model, unmasked)
        raise
    if not count:
        return "recalibrate_bn: the model has no BatchNorm with running statistics; nothing was re-estimated"
    return f"BatchNorm statistics re-estimated on the pruned model's activations: {count} layers"


def _uncalled(model: nn.Module, candidates: list[_Candidate], method: str, data: Any, loss_fn: Any) -> None:
    """Give a reason to the candidates whose parent's code uses their weight without calling them (hands it to
    a fused function): no forward of theirs runs, so ``method`` has no input statistics for them. Not for
    the uses the calibration sees the inputs of (``nn.MultiheadAttention``'s ``out_proj``, torch's functional
    attention, a matmul by the weight such as Mamba's ``dt_proj.weight @ x``).

    Where the code also calls the layer on another path, one forward of the first calibration batch tells
    (not for a one-pass iterator, whose batch it would use up, nor a sharded model, whose forward needs
    every rank: there a layer that never runs is the calibration's error)."""
    from .calibrate import functional_attention
    from .source import calls_child, multiplies_by_weight, weight_reader

    ambiguous: dict[int, tuple[_Candidate, str]] = {}
    dense: list[_Candidate] = []
    for candidate in candidates:
        weight = candidate.weight
        reader = weight_reader(model, weight.module_name, metadata=False) if candidate.reason is None and weight.param_name == "weight" else None
        if reader is None or isinstance(reader[0], nn.MultiheadAttention) or functional_attention(reader[0]) or multiplies_by_weight(*reader):
            continue  # MHA's out_proj, WavLM's projections, Mamba's dt_proj.weight @ x: the calibration sees their inputs
        parent, child = reader
        why = f"{type(parent).__name__} uses {child}.weight without calling {child}"
        if calls_child(parent, child):
            ambiguous[id(weight.module)] = (candidate, why)
        else:
            candidate.reason = f"{why}: no input statistics for {method} (magnitude or taylor can prune it)"
            dense.append(candidate)
    if ambiguous and not is_sharded(model) and isinstance(data, Iterable) and not isinstance(data, Iterator):
        from .calibrate import called_on_first_batch

        ran = called_on_first_batch(model, [candidate.weight.module for candidate, _ in ambiguous.values()], data, loss_fn)
        for key, (candidate, why) in ambiguous.items():
            if key not in ran:
                candidate.reason = f"{why} in this forward (the first calibration batch): no input statistics for {method} (magnitude or taylor can prune it)"
                dense.append(candidate)
    for candidate in dense:
        logger.warning("sparsify: %s left dense: %s", candidate.weight.name, candidate.reason)


def _choose(model: nn.Module, criterion: Any, chosen: list[_Candidate], sequential: Any, offload: bool, call: dict[str, Any]) -> dict[int, float]:
    """Decide, prune and attach the masks of ``chosen`` (all or nothing); the importance kept per parameter."""
    weights = [c.weight for c in chosen]
    sharded = is_sharded(model)
    if sharded:
        from .sharded import Snapshot, reshard_all

        snapshot = Snapshot(w.param for w in weights)
    try:
        if sequential not in (None, False):
            results = _sequential(model, criterion, weights, find_blocks(model, sequential, weights), offload=offload, **call)
        elif sharded:
            results = _one_pass_sharded(model, criterion, weights, **call)
        else:
            results = _one_pass(model, criterion, weights, **call)
    except BaseException:
        if sharded:  # every rank puts its own shards back (the others do the same)
            reshard_all(model)
            snapshot.restore()
        raise
    kept = {}
    with interrupts.deferred():
        packed = []
        for candidate, result in zip(chosen, results):  # one layer's bool mask and scores at a time
            weight = candidate.weight
            if result.packed is not None:  # sharded: decided, pruned and packed already
                kept[id(result.param)] = result.kept
                packed.append(result.packed)
                result.packed = None
                continue
            if result.mask is None:
                result.mask = torch.empty(weight.param.shape, dtype=torch.bool, device=weight.param.device)
                prune_(weight.param.detach(), weight.axis.reduction, result.scores, out=result.mask)
            elif result.weight is not None:
                with torch.no_grad():
                    weight.param.copy_(result.weight)
            elif not result.applied:  # a mask chosen by pattern (taylor pairs)
                _zero_pruned(weight.param, result.mask)
            kept[id(result.param)] = result.kept_after(weight)
            packed.append(pack_bits(result.mask))  # one buffer, shared by tied owners
            result.mask = result.scores = result.weight = None
        for candidate, mask in zip(chosen, packed):
            for owner in candidate.owners:
                attach(owner.module, owner.param_name, mask, apply=False)
        if sharded:
            shard_masks(model)  # masks of weights outside FSDP too; tags the sharded weights for finetune
        watch(model)
    return kept


def _permute(
    model: nn.Module, method: str, weights: list[GemmWeight], data: Any, loss_fn: Any, num_batches: int | None, progress: bool,
    options: dict[str, Any], example_inputs: tuple | Mapping[str, Any] | None, include: Any, exclude: Any,
) -> list[str]:
    """Channel permutation before pruning, on the criterion's importance; the report's notes."""
    from .permute import _permute as permute

    importance = None
    if method in ("taylor", "wanda", "sparsegpt"):
        scorer = criteria.get("wanda" if method == "sparsegpt" else method)
        scores = scorer.score(model, weights, data=data, loss_fn=loss_fn, num_batches=num_batches, progress=progress, **({} if method == "sparsegpt" else options))
        importance = {w.name: score.scores if isinstance(score, PairCosts) else score for w, score in zip(weights, scores)}
    checked_on = "example_inputs" if example_inputs is not None else None
    if example_inputs is None and method != "magnitude" and loss_fn is None and "logits_fn" not in options:
        example_inputs = _first_batch(model, data)  # the calibration calls the model on the batches as they are: check on one
        checked_on = "the first calibration batch" if example_inputs is not None else None
    result = permute(model, importance, example_inputs, include, exclude, 0, checked_on or "example_inputs")
    notes = [f"permuted {', '.join(g.consumers)}: kept importance {g.kept_before:.4f} -> {g.kept_after:.4f} (+{g.gain:.4f})" for g in result.groups]
    notes += _left_in_place(result.skipped)
    checked = f"; the model's outputs on {checked_on} are unchanged" if checked_on and result.groups else ""
    notes.append(f"channel permutation: {len(result.groups)} groups permuted, {len(result.skipped)} left in place{checked}")
    return notes


def _left_in_place(skipped: Sequence[Any], shown: int = 4) -> list[str]:
    """One note per reason a group's channels stayed in place: the reason, then its layers (the first ``shown``, and a count)."""
    by_reason: dict[str, list[str]] = {}
    for group in skipped:
        by_reason.setdefault(group.reason, []).extend(group.layers)
    notes = []
    for reason, layers in by_reason.items():
        more = f" and {len(layers) - shown} more" if len(layers) > shown else ""
        notes.append(f"left in place ({reason}): {', '.join(layers[:shown])}{more}")
    return notes


def _first_batch(model: nn.Module, data: Any) -> tuple | Mapping | None:
    """``data``'s first batch as one forward's inputs (a dict as keyword ones), on the model's device; None without
    data, or for a one-pass iterator, which this would consume before the calibration."""
    if not isinstance(data, Iterable) or isinstance(data, Iterator):
        return None
    first = next(iter(data), None)
    if first is None:
        return None
    first = to_device(first, next((p.device for p in model.parameters()), torch.device("cpu")))
    return first if isinstance(first, (Mapping, tuple, list)) else (first,)


def _layer(candidate: _Candidate, sparse: bool, reason: str | None, method: str | None, kept: float | None) -> LayerReport:
    weight = candidate.weight
    return LayerReport(
        name=weight.name,
        module_type=type(weight.module).__name__,
        shape=tuple(weight.param.shape),
        reduction_dim=weight.axis.reduction,
        numel=weight.param.numel(),
        sparse=sparse,
        reason=reason,
        criterion=method,
        importance_kept=kept,
        tied_to=tuple(owner.name for owner in candidate.owners[1:]),
    )


def _report(model: nn.Module, candidates: list[_Candidate], method: str | None, kept: dict[int, float], notes: tuple[str, ...] = ()) -> SparsityReport:
    layers = []
    for candidate in candidates:
        key = id(candidate.weight.param)
        if key in kept:
            layers.append(_layer(candidate, True, None, method, kept[key]))
        else:
            layers.append(_layer(candidate, False, candidate.reason, None, None))
    total = sum(p.numel() for p in model.parameters())
    return SparsityReport(layers=tuple(layers), total_params=total, method=method, notes=notes)


def check_masked(name: str, weight: Tensor, mask: Tensor, dim: int) -> None:
    """Raise :class:`SparsityError` unless ``weight`` and ``mask`` are 2:4 along ``dim`` and agree."""
    if tuple(mask.shape) != tuple(weight.shape):
        raise SparsityError(f"{name}: mask shape {list(mask.shape)} != weight shape {list(weight.shape)}")
    require_two_four(weight, dim, f"{name}: weight")
    require_two_four(mask, dim, f"{name}: mask")
    outside = weight.ne(0) & ~mask.to(torch.bool)
    if bool(outside.any()):
        index = [int(i) for i in torch.nonzero(outside)[0]]
        raise SparsityError(f"{name}: nonzero weight where the mask is 0, first at {index}")


Expect = str | Sequence[str] | SparsityReport | None


def _expected(expect: Expect, names: Sequence[str], where: str) -> set[str]:
    """The names among ``names`` that ``expect`` asks to be 2:4 (a pattern matching none is an error)."""
    if expect is None:
        return set()
    if isinstance(expect, SparsityReport):
        wanted = tuple(layer.name for layer in expect.sparse_layers)
        if not wanted:
            raise ValueError("expect: the report lists no 2:4 layer")
        missing = [name for name in wanted if name not in names]
        if missing:
            raise CheckFailed(f"expected 2:4 weight {missing[0]} is not a GEMM weight of {where}")
        return set(wanted)
    patterns = _patterns(expect, "expect")
    if not patterns:
        raise ValueError("expect is empty: give weight names or globs, or None")
    found = set()
    for pattern in patterns:
        matched = {name for name in names if _match(name, (pattern,))}
        if not matched:
            raise CheckFailed(f"expected 2:4 weights {pattern!r} match no GEMM weight of {where}")
        found |= matched
    return found


def _nothing_checked(where: str, hint: str) -> CheckFailed:
    return CheckFailed(f"nothing was checked: {where} has no 2:4 masks; {hint}")


def _require_expected(name: str, weight: Tensor, dim: int) -> None:
    """Raise :class:`SparsityError` unless the unmasked ``weight`` is 2:4 along ``dim``."""
    if weight.shape[dim] % 4:
        raise SparsityError(f"{name}: reduction size {weight.shape[dim]} (dim {dim}) is not divisible by 4, so it cannot be 2:4")
    require_two_four(weight, dim, f"{name}: weight")


def verify(model: nn.Module, *, expect: Expect = None) -> SparsityReport:
    """Check that every masked weight is 2:4 along its axis and zero outside its mask.

    ``expect`` names weights that must be 2:4 whether or not they carry a mask -- the
    way to verify a stripped model before export: parameter or module names and globs
    (as ``sparsify``'s ``include``), or the :class:`SparsityReport` ``sparsify`` returned.

    Raises :class:`~sparse24.SparsityError` naming the layer and the first bad group, and
    :class:`~sparse24.CheckFailed` when an ``expect`` pattern matches no GEMM weight or when
    nothing was checked (no masks and no ``expect``): a return always means that weights
    were checked. Returns a report of all GEMM weights; the ones neither masked nor expected
    are listed as "no 2:4 mask".
    """
    model = dist.unwrap(model)
    masked = {id(w.param): w for w in gemm_weights(model) if mask_name(w.param_name) in w.module._buffers}
    candidates = _candidates(model, (), (), "any", 0, True)
    where = type(model).__name__
    expected = _expected(expect, [owner.name for c in candidates for owner in c.owners], where)
    layers = []
    for candidate in candidates:
        weight = candidate.weight
        if id(weight.param) in masked:
            full, mask = full_weight_and_mask(masked[id(weight.param)])  # a sharded (FSDP2) weight: gathered, one layer at a time
            check_masked(weight.name, full, mask, weight.axis.reduction)
            del full, mask
        elif any(owner.name in expected for owner in candidate.owners):
            _require_expected(weight.name, full_weight_and_mask(weight)[0], weight.axis.reduction)
        else:
            layers.append(_layer(candidate, False, "no 2:4 mask", None, None))
            continue
        layers.append(_layer(candidate, True, None, None, None))
    report = SparsityReport(layers=tuple(layers), total_params=sum(p.numel() for p in model.parameters()))
    if not report.sparse_layers:
        raise _nothing_checked(where, "pass expect= the weights that must be 2:4 (names, globs, or the report sparsify returned)")
    return report


def verify_file(path: str | os.PathLike, model: nn.Module | None = None, *, expect: Expect = None, hf_class: str | None = None) -> SparsityReport:
    """Check the tensors of a weights file as they are stored, before anything is applied.

    Every ``*_sparse24_mask`` in the file is checked against its weight: both 2:4 along the
    weight's reduction axis, and the weight zero outside the mask. The axes come from
    ``model`` (whose shapes the file must fit) or, without one, from the metadata
    :func:`sparse24.save` wrote; a mask whose axis neither gives is an error. ``expect``
    (names or globs) adds weights that must be 2:4 without a mask. Raises
    :class:`~sparse24.SparsityError` for a weight or mask that is not 2:4, and
    :class:`~sparse24.CheckFailed` for any other failed check, including nothing to check.
    A from_pretrained directory (``sparse24 prune hf:... --out DIR``) is checked by
    :func:`sparse24.hub.verify_dir`, its class from ``hf_class`` or its ``config.json``.
    """
    from .io import check_fits, file_axes, file_format, read_state_dict

    if Path(path).is_dir():  # a from_pretrained directory (sparse24 prune hf:... --out DIR): its config.json names the model
        from .hub import verify_dir

        if model is not None:
            raise Sparse24Error(f"{path} is a directory: its config.json gives the model (hf_class picks the class), not a model argument")
        return verify_dir(path, hf_class=hf_class, expect=expect)
    if hf_class is not None:
        raise ValueError("hf_class applies to a from_pretrained directory; for a file, pass the model")
    source = str(path)
    state = read_state_dict(path)
    recorded = file_axes(path) if file_format(path) == "safetensors" else None
    if model is not None:
        check_fits(model, state, source)
        weights = {w.name: w for w in gemm_weights(model)}
        axes = {name: w.axis.reduction for name, w in weights.items()}
        types = {name: type(w.module).__name__ for name, w in weights.items()}
        for name, dim in (recorded or {}).items():
            if name not in axes:
                raise CheckFailed(f"{source}: its metadata lists {name} as 2:4, but the model has no GEMM weight {name}")
            if dim != axes[name]:
                raise CheckFailed(f"{source}: its metadata gives {name} the 2:4 dim {dim}, the model's layer reduces along dim {axes[name]}")
        unknown = "the model has no GEMM weight of that name"
    elif recorded is None:
        raise Sparse24Error(f"{source} has no sparse24 metadata; pass the model (--model module:callable) to check it against its layers")
    else:
        axes, types = recorded, dict.fromkeys(recorded, "(from file)")
        unknown = "the file's metadata does not list it, so its 2:4 axis is unknown (pass --model to check it against the model)"
    masks = {key[: -len(MASK_SUFFIX)]: value for key, value in state.items() if key.endswith(MASK_SUFFIX)}
    for name in masks:
        if name not in axes:
            raise CheckFailed(f"{source}: mask {name + MASK_SUFFIX}: {unknown}")
    if model is None:
        for name in axes:
            if name not in masks or name not in state:
                raise CheckFailed(f"{source}: its metadata names {name}, but its {'mask' if name not in masks else 'weight'} is missing")
    expected = _expected(expect, list(axes), source)
    layers = []
    for name, dim in axes.items():
        if name not in masks and name not in expected:
            continue
        weight = state.get(name)
        if weight is None:
            raise CheckFailed(f"{source}: {name} is {'masked' if name in masks else 'expected 2:4'}, but the file has no tensor {name}")
        if name in masks:
            check_masked(name, weight, stored_mask(masks[name], weight.shape, f"{source}: mask {name + MASK_SUFFIX}"), dim)
        else:
            _require_expected(name, weight, dim)
        layers.append(LayerReport(name, types[name], tuple(weight.shape), dim, weight.numel(), True))
    total = sum(t.numel() for key, t in state.items() if not key.endswith(MASK_SUFFIX))
    report = SparsityReport(layers=tuple(layers), total_params=total, notes=("read from the file as stored: totals count every tensor in it, buffers included",))
    if not layers:
        raise _nothing_checked(source, "pass --expect (expect=) to name the weights that must be 2:4" + ("" if model is not None else ", with --model"))
    return report
