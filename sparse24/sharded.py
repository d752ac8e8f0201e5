"""What ``sparsify`` needs on an FSDP2-sharded model: one layer gathered at a time, every rank in lockstep.

A sharded forward or backward pass issues FSDP's collectives (an all-gather per unit, a
reduce-scatter per unit in backward), so every rank must run the same number of passes, in
the same order, and none may leave a pass early. Here:

- :func:`agreed_batches` materialises this rank's calibration batches and agrees on every
  rank's count (a rank whose data fails or yields nothing fails every rank, before any pass);
- :func:`agree` turns a problem found on some ranks between passes (a NaN loss) into the same
  error on every rank, the process group intact;
- :func:`in_pass` wraps the code that runs a sharded pass: an exception raised there (in a
  ``loss_fn``, on some ranks only) cannot be realigned -- the other ranks may be waiting in
  FSDP's collectives -- so the process group is aborted, every rank's pending collective fails,
  and every rank raises instead of waiting forever;
- :func:`gathered`, :func:`write_back` and :func:`rows_of` move between a weight's shard and
  its full value (``torch.chunk`` rows along dim 0, FSDP2's sharding), one layer at a time;
- :class:`Snapshot` keeps a copy of this rank's shards and puts them back on failure.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from . import dist
from .axes import GemmWeight
from .calibrate import inside, within
from .enforce import is_sharded
from .errors import Sparse24Error, first_line

__all__ = ["Gathered", "Snapshot", "agree", "agreed_batches", "broadcast_batch", "dim0_chunk", "full_from_local", "gathered", "in_pass", "owner_unit", "reshard_all", "rows_of", "write_back"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gathered(GemmWeight):
    """A :class:`GemmWeight` whose ``param`` is a full (gathered) copy of a sharded weight.

    The criteria read and prune it like the weight itself; :func:`write_back` then copies this
    rank's rows into the shard.
    """

    tensor: Tensor | None = None

    @property
    def param(self) -> Tensor:  # type: ignore[override]
        return self.tensor


def gathered(weight: GemmWeight) -> Gathered:
    """``weight`` with its full value: gathered from every rank for a sharded one (a collective), else the weight itself."""
    param = weight.param.detach()
    full = param.full_tensor() if is_sharded(param) else param
    return Gathered(weight.module_name, weight.module, weight.param_name, weight.axis, full)


def rows_of(param: Tensor, full: Tensor) -> Tensor:
    """This rank's rows of ``full`` (a tensor of ``param``'s global shape), sharded as ``param`` is; no communication."""
    if not is_sharded(param):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.detach(), param.device_mesh, param.placements, src_data_rank=None).to_local()


def write_back(param: Tensor, full: Tensor) -> None:
    """Copy this rank's rows of ``full`` into ``param``'s shard (nothing when ``full`` is the parameter itself)."""
    with torch.no_grad():
        if is_sharded(param):
            param.to_local().copy_(rows_of(param, full))
        elif full.data_ptr() != param.data_ptr():
            param.copy_(full)


def full_from_local(param: Tensor, local: Tensor, shape: Sequence[int] | None = None) -> Tensor:
    """The full tensor whose shard on each rank is ``local`` (sharded like ``param``): a collective.

    ``shape``: the full tensor's shape when it is not ``param``'s, for a tensor whose dim 0 is
    split across the ranks as ``param``'s is (``torch.chunk`` along dim 0, the same number of
    pieces); contiguous.
    """
    if not is_sharded(param):
        return local
    from torch.distributed.tensor import DTensor

    if shape is None:
        shape, stride = param.shape, param.stride()
    else:
        shape, stride = torch.Size(shape), torch.empty(shape, device="meta").stride()
    return DTensor.from_local(local, param.device_mesh, param.placements, run_check=False, shape=shape, stride=stride).full_tensor()


def dim0_chunk(param: Tensor) -> int:
    """How many dim-0 slices of ``param`` each shard but the last holds (``torch.chunk``'s ``ceil(n / shards)``); ``n`` unsharded."""
    size = param.shape[0]
    if not is_sharded(param):
        return size
    from torch.distributed.tensor import Shard

    shards = 1
    for index, placement in enumerate(param.placements):
        if isinstance(placement, Shard) and placement.dim == 0:
            shards *= param.device_mesh.size(index)
    return -(-size // shards)


class Snapshot:
    """A CPU copy of this rank's shards of ``params`` (the whole tensor for an unsharded one), put back by :meth:`restore`."""

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.saved = [(param, _local(param).detach().to("cpu", copy=True)) for param in {id(p): p for p in params}.values()]

    def restore(self) -> None:
        with torch.no_grad():
            for param, saved in self.saved:
                _local(param).copy_(saved)


def _local(param: Tensor) -> Tensor:
    return param.to_local() if is_sharded(param) else param


def agree(error: BaseException | None, what: str) -> None:
    """Raise on every rank if ``error`` is set on any: a collective, outside any sharded pass.

    The rank(s) that failed re-raise their own error; the others raise :class:`Sparse24Error`
    naming the first failed rank and its error's first line.
    """
    if dist.world_size() <= 1:
        if error is not None:
            raise error
        return
    import torch.distributed as torch_dist

    flag = torch.tensor([0 if error is None else 1], dtype=torch.int32)
    torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
    if int(flag) == 0:
        return
    lines: list[Any] = [None] * dist.world_size()
    torch_dist.all_gather_object(lines, None if error is None else first_line(error))
    if error is not None:
        raise error
    failed = next(r for r, line in enumerate(lines) if line is not None)
    raise Sparse24Error(f"{what}: rank {failed} failed ({lines[failed]}); every rank stopped, nothing was changed")


@contextlib.contextmanager
def in_pass(what: str, model: nn.Module | None = None) -> Iterator[None]:
    """Run sharded passes; on an exception abort the process group (see the module docstring) and re-raise.

    The rank where the pass failed re-raises its error; the ranks whose collectives fail
    because of it raise :class:`Sparse24Error` chained to that failure. After the passes,
    ``model``'s units are resharded (a root unit stays unsharded after a forward without
    gradients, its modules holding the unsharded parameters).
    """
    try:
        yield
        if model is not None:
            reshard_all(model)
    except BaseException as error:
        aborted = _abort(what, error)
        if aborted and isinstance(error, Exception) and _collective_failure(error):
            raise Sparse24Error(f"{what}: a collective failed, most likely because another rank failed (its log names the error); the process group is aborted") from error
        raise


def _collective_failure(error: BaseException) -> bool:
    """True for an error raised by a torch.distributed collective (a closed connection, a backend error)."""
    import torch.distributed as torch_dist

    text = str(error)
    return isinstance(error, torch_dist.DistError) or "gloo" in text or "Connection closed" in text or "NCCL" in text


def _abort(what: str, error: BaseException) -> bool:
    """Abort the default process group (if still there), so that ranks waiting in a collective fail instead of hanging."""
    if dist.world_size() <= 1:
        return False
    logger.error("%s failed on rank %d (%s); aborting the process group so that no rank waits forever in FSDP's collectives", what, dist.rank(), first_line(error))
    import torch.distributed as torch_dist

    try:
        from torch.distributed.distributed_c10d import _abort_process_group
    except ImportError:  # an older torch: destroying the group closes its connections too
        torch_dist.destroy_process_group()
    else:
        _abort_process_group()
    return True


def agreed_batches(data: Iterable[Any] | None, num_batches: int | None, what: str) -> tuple[list[Any], list[int]]:
    """This rank's first ``num_batches`` batches (a list) and every rank's batch count.

    Raises on every rank when the data fails or yields no batch on any rank.
    """
    if data is None:
        raise ValueError(f"{what} needs calibration data: sparsify(model, method, data=...)")
    error: BaseException | None = None
    try:
        batches = list(data if num_batches is None else islice(data, num_batches))
    except Exception as caught:  # noqa: BLE001 -- shared with every rank below
        batches, error = [], caught
    if error is None and not batches:
        error = Sparse24Error(f"calibration data yielded no batches on rank {dist.rank()}")
    agree(error, what)
    counts = [len(batches)]
    if dist.world_size() > 1:
        import torch.distributed as torch_dist

        counts = [0] * dist.world_size()
        torch_dist.all_gather_object(counts, len(batches))
        if len(set(counts)) > 1:
            logger.info("%s: ranks hold %s batches; the ranks with fewer run extra passes that count for nothing", what, counts)
    return batches, counts


def broadcast_batch(batch: Any, source: int) -> Any:
    """``batch`` from rank ``source`` on every rank (moved to the CPU to travel)."""
    if dist.world_size() <= 1:
        return batch
    import torch.distributed as torch_dist

    from .batch import to_device

    box = [to_device(batch, torch.device("cpu")) if dist.rank() == source else None]
    torch_dist.broadcast_object_list(box, src=source)
    return box[0]


def _fsdp_type() -> type | None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return None
    return FSDPModule


def owner_unit(model: nn.Module, name: str, module: nn.Module) -> nn.Module | None:
    """The FSDP unit to unshard before calling ``module`` (named ``name`` in ``model``) on its own.

    None when ``module`` is itself a unit (calling it unshards it) or nothing is sharded; else
    the innermost unit holding it.
    """
    unit = _fsdp_type()
    if unit is None or isinstance(module, unit) or not is_sharded(module):
        return None
    best: tuple[int, nn.Module] | None = None
    for path, candidate in model.named_modules():
        if isinstance(candidate, unit) and within(name, path):
            if best is None or len(path) > best[0]:
                best = (len(path), candidate)
    return None if best is None else best[1]


def reshard_all(model: nn.Module) -> None:
    """Put every FSDP unit of ``model`` back in its sharded state; local, no collective.

    After a forward without gradients a root unit keeps its parameters unsharded, and a pass
    stopped by an exception leaves its units mid-forward: the outermost units are reset
    (``reset_iter_state``, where this torch has it), then every unit resharded.
    """
    unit = _fsdp_type()
    if unit is None:
        return
    units = [(name, module) for name, module in model.named_modules() if isinstance(module, unit)]
    outermost = [module for name, module in units if not any(inside(name, other) for other, _ in units)]
    for module in outermost:
        try:
            module.reset_iter_state()
        except (AttributeError, RuntimeError):  # an older torch, or a unit never run (nothing to reset)
            pass
    for _, module in units:
        module.reshard()


def padding(batches: Sequence[Any], steps: int) -> list[Any]:
    """The extra batches a rank runs (for nothing) so that it makes ``steps`` passes like the others."""
    return [batches[i % len(batches)] for i in range(steps - len(batches))]
