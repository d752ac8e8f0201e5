"""How sparse24 reads a user's batch: move it to a device, call the model on it, find the loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .errors import Sparse24Error

__all__ = ["to_device", "call", "model_loss", "logits", "describe", "check_loss", "split_samples"]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in tuples, lists and dicts) moved to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def call(model: nn.Module, batch: Any) -> Any:
    """``model(**batch)`` for a mapping, ``model(*batch)`` for a tuple/list, else ``model(batch)``."""
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch) if isinstance(batch, (list, tuple)) else model(batch)


def model_loss(output: Any) -> Tensor:
    """The loss in a model's output: the output itself if a tensor, else ``.loss`` / ``["loss"]``."""
    if isinstance(output, Tensor):
        return output
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if loss is None:
        raise Sparse24Error("the model's output has no loss; pass loss_fn=lambda model, batch: ...")
    return loss


def logits(output: Any) -> Tensor:
    """The logits in a model's output: the output itself if a tensor, else ``.logits`` / ``["logits"]``."""
    if isinstance(output, Tensor):
        return output
    found = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if found is None and isinstance(output, (list, tuple)) and output and isinstance(output[0], Tensor):
        found = output[0]
    if not isinstance(found, Tensor):
        raise Sparse24Error(
            f"cannot find logits in the model's output ({type(output).__name__}); "
            "pass distill=callable(student_out, teacher_out, batch)"
        )
    return found


def describe(value: Any) -> str:
    """A short description of a value for error messages."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__


def check_loss(loss: Any, what: str) -> None:
    """Raise :class:`Sparse24Error` unless ``loss`` is a finite scalar float tensor with a gradient."""
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        raise Sparse24Error(f"{what} must be a scalar float tensor, got {describe(loss)}")
    if not loss.requires_grad:
        raise Sparse24Error(f"{what} does not depend on any trainable weight (no gradient)")
    if not torch.isfinite(loss.detach()).all():
        raise Sparse24Error(f"{what} is {loss.item()}")


def _leading(batch: Any, found: set[int]) -> None:
    if isinstance(batch, Tensor):
        if batch.dim():
            found.add(batch.shape[0])
    elif isinstance(batch, Mapping):
        for value in batch.values():
            _leading(value, found)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            _leading(value, found)


def _take(batch: Any, index: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[index : index + 1] if batch.dim() else batch
    if isinstance(batch, Mapping):
        return {key: _take(value, index) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(_take(value, index) for value in batch)
    return batch


def split_samples(batch: Any) -> list[Any]:
    """``batch`` as single-sample batches: every tensor sliced along dim 0 (they must agree on its size)."""
    sizes: set[int] = set()
    _leading(batch, sizes)
    if len(sizes) != 1:
        raise Sparse24Error(f"cannot split a batch into samples: its tensors have leading sizes {sorted(sizes) or 'none'}")
    return [_take(batch, i) for i in range(sizes.pop())]
