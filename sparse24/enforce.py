"""Keep 2:4 masks in force through training, with PyTorch's public hooks only.

A masked weight ``W`` of module ``m`` gets:

- a persistent uint8 buffer ``m.<name>_sparse24_mask`` holding the mask at 1 bit per weight
  (:func:`sparse24.mask.pack_bits`: shape ``[W.shape[0], ceil(W[0].numel() / 8)]``, the weight's
  rows kept, 8 elements per byte, least significant bit first). It is saved in ``state_dict``
  under that key; the module's own parameter names never change. :func:`mask_of` gives it back
  as a bool tensor of the weight's shape. State dicts and files of earlier versions, whose masks
  are bool tensors of the weight's shape, still load (:func:`load_masks`, ``load_state_dict``);
- a gradient hook on ``W`` that multiplies each incoming gradient by the mask *before* it is
  accumulated into ``W.grad``, so pruned gradients are exactly zero for every backward,
  gradient accumulation, ``GradScaler`` and DDP alike. With zero gradients and zero weights,
  SGD (momentum, Nesterov, weight decay), Adam/AdamW and the other stock optimizers leave
  pruned weights at exactly zero. The hook expands the packed mask straight into the
  gradient's dtype (one table lookup) for that multiply and drops it after: no full-size
  copy of any mask outlives its layer's step;
- forward pre-hooks (on the owner module and on the model ``sparsify``/``load_masks`` got)
  that re-install the gradient hook where a copy lost it (``copy.deepcopy`` and unpickling
  drop tensor hooks; ``MultiheadAttention`` uses ``out_proj.weight`` without calling
  ``out_proj``, so the model-level hook covers it);
- a ``load_state_dict`` post-hook that re-applies the mask to freshly loaded weights.

An optimizer whose state predates the masks (momentum built up on now-pruned weights) would
still move them; :func:`attach_optimizer` registers a step post-hook that re-applies the
masks after every step.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .axes import GemmWeight, gemm_axes, gemm_weights
from .errors import Sparse24Error
from .mask import expand_bits, pack_bits, packed_shape, require_two_four, unpack_bits

__all__ = [
    "MASK_SUFFIX",
    "mask_name",
    "mask_of",
    "stored_mask",
    "attach",
    "masked_weights",
    "strip",
    "load_masks",
    "attach_optimizer",
    "watch",
]

MASK_SUFFIX = "_sparse24_mask"
_RECORD = "_sparse24_grad_hook"
_MODULE_HOOKS = "_sparse24_hooks"
_MODEL_HOOK = "_sparse24_model_hook"


def mask_name(param_name: str) -> str:
    """Buffer name of the mask of parameter ``param_name`` (``weight`` -> ``weight_sparse24_mask``)."""
    return param_name + MASK_SUFFIX


def _no_module() -> None:
    return None


def mask_of(module: nn.Module, param_name: str, dtype: torch.dtype = torch.bool) -> Tensor | None:
    """The mask of ``module.<param_name>`` expanded to the weight's shape (a new tensor), or None."""
    packed = module._buffers.get(mask_name(param_name))
    return None if packed is None else unpack_bits(packed, getattr(module, param_name).shape, dtype)


def stored_mask(mask: Tensor, shape: tuple[int, ...] | torch.Size, what: str) -> Tensor:
    """A mask as stored (packed uint8, or an earlier version's bool of the weight's shape) as bool of ``shape``.

    Raises :class:`Sparse24Error` naming ``what`` when it is neither form for that shape.
    """
    shape = tuple(shape)
    if mask.dtype == torch.bool and tuple(mask.shape) == shape:
        return mask
    if mask.dtype == torch.uint8 and tuple(mask.shape) == packed_shape(shape):
        return unpack_bits(mask, shape)
    raise Sparse24Error(
        f"{what} is {str(mask.dtype).removeprefix('torch.')} {list(mask.shape)}; for a weight of shape {list(shape)} a mask is "
        f"uint8 {list(packed_shape(shape))} (1 bit per weight) or, as earlier versions wrote it, bool {list(shape)}"
    )


class _GradMask:
    """Gradient hook: multiply the gradient by the owner module's current mask.

    The mask buffer is looked up at call time, so ``model.to(device)`` and ``load_state_dict``
    (which replace or refill buffers) are followed; it is expanded into the gradient's dtype
    for the multiply only.
    """

    def __init__(self, module: nn.Module, param_name: str) -> None:
        self._module = weakref.ref(module)
        self.param_name = param_name
        self._buffer = mask_name(param_name)

    def mask(self, dtype: torch.dtype) -> Tensor | None:
        module = self._module()
        packed = None if module is None else module._buffers.get(self._buffer)
        return None if packed is None else expand_bits(packed, module._parameters[self.param_name].shape, dtype)

    def __call__(self, grad: Tensor) -> Tensor | None:
        mask = self.mask(grad.dtype)
        return None if mask is None else grad * mask

    def __getstate__(self) -> dict:
        return {"param_name": self.param_name}

    def __setstate__(self, state: dict) -> None:
        self._module = _no_module
        self.param_name = state["param_name"]
        self._buffer = mask_name(self.param_name)


class _HookRecord:
    """Parameter attribute naming the live gradient hook; copies and pickles come back empty."""

    def __init__(self, handle: RemovableHandle | None = None, masker: _GradMask | None = None) -> None:
        self.handle = handle
        self.masker = masker

    def __reduce__(self):
        return (_HookRecord, ())

    def __deepcopy__(self, memo: dict) -> _HookRecord:
        return _HookRecord()


class _Live:
    """Set once the model's hooks are checked; a copy or an unpickle starts unset."""

    def __init__(self) -> None:
        self.checked = False

    def __reduce__(self):
        return (_Live, ())

    def __deepcopy__(self, memo: dict) -> _Live:
        return _Live()


def _masked_param_names(module: nn.Module) -> list[str]:
    return [name[: -len(MASK_SUFFIX)] for name in module._buffers if name.endswith(MASK_SUFFIX)]


def _install_grad_hook(module: nn.Module, param_name: str) -> None:
    param = getattr(module, param_name)
    record = getattr(param, _RECORD, None)
    if not param.requires_grad or (record is not None and record.handle is not None):
        return
    masker = _GradMask(module, param_name)
    setattr(param, _RECORD, _HookRecord(param.register_hook(masker), masker))


def _remove_grad_hook(param: Tensor) -> None:
    record = getattr(param, _RECORD, None)
    if record is not None:
        if record.handle is not None:
            record.handle.remove()
        delattr(param, _RECORD)


def _ensure_grad_hooks(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: re-install gradient hooks that a copy or an unpickle dropped."""
    if torch.is_grad_enabled():
        for param_name in _masked_param_names(module):
            _install_grad_hook(module, param_name)


def _ensure_model_grad_hooks(model: nn.Module, args: tuple) -> None:
    """Model forward pre-hook: after a copy or unpickle, re-install every gradient hook once."""
    live = getattr(model, _MODEL_HOOK)[1]
    if live.checked or not torch.is_grad_enabled():
        return
    for module in model.modules():
        _ensure_grad_hooks(module, args)
    live.checked = True


def watch(model: nn.Module) -> None:
    """Register the model-level pre-hook that restores gradient hooks on copies (idempotent)."""
    if getattr(model, _MODEL_HOOK, None) is None:
        live = _Live()
        live.checked = True
        object.__setattr__(model, _MODEL_HOOK, (model.register_forward_pre_hook(_ensure_model_grad_hooks), live))


def _pack_loaded_masks(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: a mask saved by an earlier version (bool, the weight's shape) is packed."""
    for param_name in _masked_param_names(module):
        key = prefix + mask_name(param_name)
        mask = state_dict.get(key)
        if isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.shape == getattr(module, param_name).shape:
            state_dict[key] = pack_bits(mask)  # load_state_dict works on its own copy of the dict


def _reapply_after_load(module: nn.Module, incompatible_keys) -> None:
    """``load_state_dict`` post-hook: loaded weights obey the (possibly loaded) masks."""
    with torch.no_grad():
        for param_name in _masked_param_names(module):
            param = getattr(module, param_name)
            param.mul_(mask_of(module, param_name, param.dtype))


def attach(module: nn.Module, param_name: str, mask: Tensor, *, apply: bool = True) -> None:
    """Enforce ``mask`` on ``module.<param_name>``, in place.

    ``mask`` is bool of the weight's shape, or already packed (:func:`sparse24.mask.pack_bits`;
    a packed tensor on the weight's device is used as the buffer itself, so tied weights can
    share one). ``apply=True`` also zeroes the weight where the mask is False. The mask is
    stored as a buffer at 1 bit per weight (see the module docstring), so it is saved in
    ``state_dict`` and moves with ``module.to()``.
    """
    param = getattr(module, param_name)
    if mask.dtype == torch.uint8 and tuple(mask.shape) == packed_shape(param.shape):
        packed = mask.to(param.device)
    elif mask.dtype == torch.bool and mask.shape == param.shape:
        packed = pack_bits(mask.to(param.device))
    else:
        raise ValueError(
            f"mask for {param_name} must be bool {list(param.shape)} or packed uint8 {list(packed_shape(param.shape))}, got {mask.dtype} {list(mask.shape)}"
        )
    module.register_buffer(mask_name(param_name), packed, persistent=True)
    if apply:
        with torch.no_grad():
            param.mul_(unpack_bits(packed, param.shape, param.dtype))
    if getattr(module, _MODULE_HOOKS, None) is None:
        hooks = (
            module.register_forward_pre_hook(_ensure_grad_hooks),
            module.register_load_state_dict_pre_hook(_pack_loaded_masks),
            module.register_load_state_dict_post_hook(_reapply_after_load),
        )
        object.__setattr__(module, _MODULE_HOOKS, hooks)
    _install_grad_hook(module, param_name)


def _detach(module: nn.Module, param_name: str) -> None:
    _remove_grad_hook(getattr(module, param_name))
    del module._buffers[mask_name(param_name)]
    if not _masked_param_names(module):
        for handle in getattr(module, _MODULE_HOOKS, ()):
            handle.remove()
        if _MODULE_HOOKS in module.__dict__:
            object.__delattr__(module, _MODULE_HOOKS)


def masked_weights(model: nn.Module) -> list[tuple[GemmWeight, Tensor]]:
    """Every GEMM weight of ``model`` that carries a 2:4 mask, with its mask.

    The masks are expanded to bool tensors of their weights' shapes: new tensors, so writing
    to one changes nothing (:func:`attach` replaces a mask).
    """
    found = []
    for weight in gemm_weights(model):
        mask = mask_of(weight.module, weight.param_name)
        if mask is not None:
            found.append((weight, mask))
    return found


def strip(model: nn.Module) -> list[str]:
    """Remove masks and hooks in place; weights keep their zeros (for export).

    Returns the names of the weights that were masked.
    """
    stripped = []
    if getattr(model, _MODEL_HOOK, None) is not None:
        getattr(model, _MODEL_HOOK)[0].remove()
        object.__delattr__(model, _MODEL_HOOK)
    for module_name, module in model.named_modules():
        for param_name in _masked_param_names(module):
            _detach(module, param_name)
            stripped.append(f"{module_name}.{param_name}" if module_name else param_name)
    return stripped


def _split_mask_key(key: str) -> tuple[str, str]:
    path, _, buffer = key.rpartition(".")
    return path, buffer[: -len(MASK_SUFFIX)]


def load_masks(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Attach the masks found in ``state_dict`` (keys ``*_sparse24_mask``) to ``model``, in place.

    A mask is either form :func:`stored_mask` reads (packed, or an earlier version's bool).
    Use it on a plain model before ``model.load_state_dict(state_dict)``, to restore
    enforcement from a checkpoint. Every mask is checked (layer exists and is a GEMM weight,
    shape matches, mask is 2:4 along the layer's axis) before any is attached. Returns the
    names of the masked weights.
    """
    planned = []
    for key, mask in state_dict.items():
        if not key.endswith(MASK_SUFFIX):
            continue
        module_path, param_name = _split_mask_key(key)
        try:
            module = model.get_submodule(module_path)
        except AttributeError:
            raise Sparse24Error(f"mask {key!r}: the model has no module {module_path!r}") from None
        axis = gemm_axes(module).get(param_name)
        if axis is None or not isinstance(getattr(module, param_name, None), nn.Parameter):
            raise Sparse24Error(f"mask {key!r}: {module_path or 'model'} ({type(module).__name__}) has no GEMM weight {param_name!r}")
        param = getattr(module, param_name)
        mask = stored_mask(mask, param.shape, f"mask {key!r}").to(device=param.device, copy=True)  # never alias the caller's tensors
        require_two_four(mask, axis.reduction, f"mask {key!r}")
        planned.append((module, param_name, mask, key[: -len(MASK_SUFFIX)]))
    for module, param_name, mask, _ in planned:
        attach(module, param_name, mask)
    if planned:
        watch(model)
    return [name for *_, name in planned]


def attach_optimizer(optimizer: torch.optim.Optimizer) -> RemovableHandle:
    """Re-apply the masks of the optimizer's masked parameters after every ``step()``.

    Only needed when the optimizer's state predates the masks (or for optimizers that move
    weights whose gradient and state are zero); uses ``register_step_post_hook``.
    """

    def reapply(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        with torch.no_grad():
            for param in _params(opt.param_groups):
                record = getattr(param, _RECORD, None)
                mask = None if record is None or record.masker is None else record.masker.mask(param.dtype)
                if mask is not None:
                    param.mul_(mask)

    return optimizer.register_step_post_hook(reapply)


def _params(groups: Iterable[dict]) -> Iterable[Tensor]:
    for group in groups:
        yield from group["params"]
