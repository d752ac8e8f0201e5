"""What sparse24 needs from ``torch.distributed``: rank, world size, and the module under a DDP wrapper."""

from __future__ import annotations

from torch import nn

__all__ = ["rank", "world_size", "is_main", "unwrap", "is_ddp"]


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
