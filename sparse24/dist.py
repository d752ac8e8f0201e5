"""What sparse24 needs from ``torch.distributed``: rank, world size, the module under a DDP (or torch.compile) wrapper, FSDP2 sharding."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from torch import nn

from .errors import Sparse24Error

__all__ = ["rank", "world_size", "is_main", "unwrap", "is_ddp", "is_fsdp", "fsdp_shard", "default_blocks", "broadcast_object", "barrier"]

logger = logging.getLogger(__name__)


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    import torch.distributed as dist

    return dist.get_rank() if _initialized() else 0


def world_size() -> int:
    """Processes in the default process group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if _initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and without a process group): the process that writes files and reports."""
    return rank() == 0


def is_ddp(model: nn.Module) -> bool:
    """True for a ``DistributedDataParallel`` wrapper."""
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside ``DistributedDataParallel`` and ``torch.compile`` wrappers, in any
    nesting (the model itself otherwise): its names and state-dict keys are the model's own, without
    ``module.`` or ``_orig_mod.``."""
    while True:
        if is_ddp(model):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module) and type(model).__name__ == "OptimizedModule":
            model = model._orig_mod
        else:
            return model


def is_fsdp(model: nn.Module) -> bool:
    """True when ``model`` or any submodule was sharded with FSDP2 ``fully_shard``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return any(isinstance(module, FSDPModule) for module in model.modules())


def broadcast_object(value: Any) -> Any:
    """``value`` from rank 0 on every rank (identity without a process group)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def default_blocks(model: nn.Module) -> list[str]:
    """What ``fsdp_shard`` shards by default: each layer of the model's outermost lists of repeated layers
    (:func:`sparse24.calibrate.repeated_blocks`: a transformer's decoder layers, T5's encoder and decoder blocks),
    the rest (embeddings, head) staying in the root unit; without such a list, every direct child that holds
    parameters."""
    from .calibrate import inside, qualified, repeated_blocks

    names: list[str] = []
    for name, blocks in repeated_blocks(model):
        if not any(inside(name, outer) for outer in names):
            names += [qualified(name, index) for index in range(len(blocks))]
    if names:
        return names
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def _tied_units(model: nn.Module, names: Sequence[str], modules: Sequence[nn.Module]) -> list[list[int]]:
    """``names``/``modules`` as FSDP units: blocks that share a parameter (a tied head and its embedding) go into
    one unit; a block sharing one with a module outside every block is left to the root unit (logged). A block
    inside another (``"h"`` and ``"h.0"``) is a unit of its own, nested as FSDP allows."""
    from .calibrate import inside

    holders: dict[int, list[int]] = defaultdict(list)  # parameter id -> the blocks holding it
    for index, module in enumerate(modules):
        for param in module.parameters():
            holders[id(param)].append(index)
    parent = list(range(len(modules)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for held_by in holders.values():
        innermost = [i for i in held_by if not any(inside(names[j], names[i]) for j in held_by)]
        for i in innermost[1:]:
            parent[root(i)] = root(innermost[0])
    groups: dict[int, list[int]] = {}
    for index in range(len(modules)):
        groups.setdefault(root(index), []).append(index)
    units = []
    for members in groups.values():
        held = {id(p) for i in members for p in modules[i].parameters()}
        outside = [
            name for name, param in model.named_parameters(remove_duplicate=False)
            if id(param) in held and not any(inside(name, names[i]) for i in members)
        ]
        if outside:
            logger.info("fsdp: %s left in the root unit: it shares %s with the rest of the model", ", ".join(names[i] for i in members), outside[0])
            continue
        units.append(members)
    units.sort(key=lambda unit: -min(names[i].count(".") for i in unit))  # a nested block is sharded before the one around it
    return units


def fsdp_shard(model: nn.Module, blocks: Sequence[str] | None = None, what: str = "the model") -> list[str]:
    """Shard ``model`` in place with FSDP2: ``fully_shard`` each block, then the root.

    ``blocks`` are module names (``model.get_submodule``); by default :func:`default_blocks`.
    Blocks sharing a parameter (a tied output head and its embedding table) are one unit; a
    block sharing one with the root's own modules stays in the root unit. The mesh is 1-D over the default process group, on the device of the
    model's parameters (``cpu`` with gloo, ``cuda`` with NCCL). Raises
    :class:`Sparse24Error` without a process group or for a name that is not a submodule.
    Returns the block names sharded as (part of) their own units.
    """
    if not _initialized():
        raise Sparse24Error("strategy='fsdp' needs torch.distributed: launch with torchrun (no process group is initialised)")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    params = list(model.parameters())
    if not params:
        raise Sparse24Error(f"{what} has no parameters to shard")
    device = params[0].device
    names = list(default_blocks(model) if blocks is None else blocks)
    modules = []
    for name in names:
        try:
            modules.append(model.get_submodule(name))
        except AttributeError:
            raise Sparse24Error(f"fsdp_blocks: {what} has no module {name!r}") from None
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (world_size(),))
    units = _tied_units(model, names, modules)
    for unit in units:
        fully_shard([modules[i] for i in unit] if len(unit) > 1 else modules[unit[0]], mesh=mesh)
    fully_shard(model, mesh=mesh)
    logger.info("fsdp: sharded %s over %d ranks (%d units, then the root)", what, world_size(), len(units))
    return [names[i] for unit in units for i in unit]
