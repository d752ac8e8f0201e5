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
        raise Sparse24Error(
            f"the model's output ({type(output).__name__}) has no loss: give a loss_fn(model, batch) (Python: loss_fn=..., "
            "recipe: loss: module:name, CLI: --loss module:name), or batches the model computes its loss from "
            "(a transformers model: labels in the batch; sparse24.data.text_windows(..., labels=True))"
        )
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


def _take(batch: Any, index: int, runs: tuple[int, Tensor] | None = None) -> Any:
    """Sample ``index`` of ``batch``: row ``index`` of every tensor; with ``runs`` (a packed batch's patch total and
    the offsets of each sample's patches), a tensor as long as the total gives that sample's run of rows."""
    if isinstance(batch, Tensor):
        if not batch.dim():
            return batch
        if runs is not None and batch.shape[0] == runs[0]:
            offsets = runs[1]
            return batch[int(offsets[index]) : int(offsets[index + 1])]
        return batch[index : index + 1]
    if isinstance(batch, Mapping):
        return {key: _take(value, index, runs) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(_take(value, index, runs) for value in batch)
    return batch


# a vision model's packed images (Qwen2-VL's and the families built on it): the patches of all images in one tensor,
# with each image's [frames, height, width] in patches in its grid
_GRIDS = ("grid_thw", "image_grid_thw", "video_grid_thw")


def _packed_runs(batch: Any) -> tuple[int, Tensor] | None:
    """A mapping batch's one grid of packed images (``[images, 3]``): the patch total and each image's offsets."""
    if not isinstance(batch, Mapping):
        return None
    grids = [batch[key] for key in _GRIDS if isinstance(batch.get(key), Tensor)]
    if len(grids) != 1 or grids[0].dim() != 2 or grids[0].shape[-1] != 3 or grids[0].is_floating_point():
        return None
    counts = grids[0].prod(-1).cpu()
    return int(counts.sum()), torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def split_samples(batch: Any) -> list[Any]:
    """``batch`` as single-sample batches: every tensor sliced along dim 0 (they must agree on its size). A batch of
    packed images (its patches in one tensor, a ``grid_thw`` giving each image's patch grid, as Qwen2-VL's processor
    makes) splits by image: the tensors with a row per image give theirs, those with a row per patch its patches."""
    sizes: set[int] = set()
    _leading(batch, sizes)
    runs = _packed_runs(batch)
    if runs is not None and len(sizes) > 1:
        images = len(runs[1]) - 1
        if sizes <= {images, runs[0]}:
            return [_take(batch, i, runs) for i in range(images)]
    if len(sizes) != 1:
        packed = "" if runs is None else f" (not one per image of its grid nor one per patch: {len(runs[1]) - 1} images, {runs[0]} patches)"
        raise Sparse24Error(
            f"cannot split a batch into samples: its tensors have leading sizes {sorted(sizes) or 'none'}{packed}; "
            "per_sample=True needs every tensor batched along dim 0, or a vision model's packed images with their grid_thw"
        )
    return [_take(batch, i) for i in range(sizes.pop())]
