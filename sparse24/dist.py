"""What sparse24 needs from ``torch.distributed``: rank, world size, the module under a DDP wrapper, FSDP2 sharding."""

from __future__ import annotations

import logging
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
    """The user's module inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if is_ddp(model) else model


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
    """Names of the direct children of ``model`` that hold parameters: what ``fsdp_shard`` shards by default."""
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def fsdp_shard(model: nn.Module, blocks: Sequence[str] | None = None, what: str = "the model") -> list[str]:
    """Shard ``model`` in place with FSDP2: ``fully_shard`` each block, then the root.

    ``blocks`` are module names (``model.get_submodule``); by default every direct child that
    holds parameters. The mesh is 1-D over the default process group, on the device of the
    model's parameters (``cpu`` with gloo, ``cuda`` with NCCL). Raises
    :class:`Sparse24Error` without a process group or for a name that is not a submodule.
    Returns the block names sharded.
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
    for module in modules:
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    logger.info("fsdp: sharded %s over %d ranks (%d blocks, then the root)", what, world_size(), len(modules))
    return names
