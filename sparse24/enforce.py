"""Keep 2:4 masks in force through training, with PyTorch's public hooks only.

A masked weight ``W`` of module ``m`` gets:

- a persistent uint8 buffer ``m.<name>_sparse24_mask`` holding the mask at 1 bit per weight
  (:func:`sparse24.mask.pack_bits`: shape ``[W.shape[0], ceil(W[0].numel() / 8)]``, the weight's
  rows kept, 8 elements per byte, least significant bit first). It is saved in ``state_dict``
  under that key; the module's own parameter names never change. :func:`mask_of` gives it back
  as a bool tensor of the weight's shape. State dicts and files of earlier versions, whose masks
  are bool tensors of the weight's shape, still load (:func:`load_masks`, ``load_state_dict``);
- a post-accumulate-grad hook on ``W`` (``register_post_accumulate_grad_hook``) that multiplies
  ``W.grad`` by the mask in place as soon as a backward has accumulated into it -- before
  DistributedDataParallel's reducer, which hooks the same accumulation, copies it -- so pruned
  gradients are exactly zero after every backward, with gradient accumulation, ``GradScaler``
  and DDP alike. With zero gradients and zero weights, SGD (momentum, Nesterov, weight decay),
  Adam/AdamW and the other stock optimizers leave pruned weights at exactly zero (on float16
  weights only with an ``eps`` float16 can hold; :func:`check_optimizer`). On a GPU the hook
  masks a layer with one launch of a CUDA kernel (:func:`sparse24.kernels.ops.mask_rows_`); on the
  CPU a layer of up to ``CHUNK_ELEMENTS`` weights in one pass of a C++ kernel
  (:func:`sparse24.kernels.ops.host_mask_rows`, built at first use). Where neither can run, it
  expands the packed mask straight into the gradient's dtype (one table lookup; a block of rows
  at a time for a large layer). It makes no new gradient tensor: no full-size copy of any mask
  outlives its layer's step;
- forward pre-hooks (on the owner module and on the model ``sparsify``/``load_masks`` got)
  that re-install the gradient hook where a copy lost it (``copy.deepcopy`` and unpickling
  drop tensor hooks; ``MultiheadAttention`` uses ``out_proj.weight`` without calling
  ``out_proj``, so the model-level hook covers it);
- a ``load_state_dict`` post-hook that re-applies the mask to freshly loaded weights.

An optimizer whose state predates the masks (momentum built up on now-pruned weights) would
still move them; :func:`attach_optimizer` registers a step post-hook that re-applies the
masks after every step.

Sharded weights (FSDP2, ``torch.distributed.fsdp.fully_shard``): the parameters are
``DTensor``s sharded along dim 0. :func:`shard_masks` makes each mask buffer a ``DTensor``
with the weight's placements (the packed mask keeps the weight's rows, so ``torch.chunk``
splits both alike) and every rank enforces its own shard. FSDP writes a sharded ``.grad``
after its reduce-scatter, so no gradient hook is installed there: the trainer calls
:func:`mask_sharded_grads` before clipping and stepping, and :func:`attach_optimizer`'s
post-step hook masks the local weight shards.
:func:`mask_of` and :func:`full_weight_and_mask` gather one layer at a time (collectives:
every rank must call them in the same order).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .axes import GemmWeight, gemm_axes, gemm_weights
from .errors import Sparse24Error
from .mask import CHUNK_ELEMENTS, bit_table, expand_bits, mask_rows_, pack_bits, packed_shape, require_two_four, unpack_bits

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
    "check_optimizer",
    "watch",
    "has_masks",
    "is_sharded",
    "shard_masks",
    "shard_like",
    "mask_sharded_grads",
    "full_weight_and_mask",
]

MASK_SUFFIX = "_sparse24_mask"
_RECORD = "_sparse24_grad_hook"
_MODULE_HOOKS = "_sparse24_hooks"
_MODEL_HOOK = "_sparse24_model_hook"

logger = logging.getLogger(__name__)


def mask_name(param_name: str) -> str:
    """Buffer name of the mask of parameter ``param_name`` (``weight`` -> ``weight_sparse24_mask``)."""
    return param_name + MASK_SUFFIX


def _no_module() -> None:
    return None


def _dtensor_type() -> type | None:
    """``torch.distributed.tensor.DTensor`` (imported on first use), or None in a build without it."""
    global _DTENSOR
    if _DTENSOR is False:
        try:
            from torch.distributed.tensor import DTensor
        except ImportError:  # torch built without distributed
            DTensor = None
        _DTENSOR = DTensor
    return _DTENSOR


_DTENSOR: Any = False


def _is_dtensor(tensor: Any) -> bool:
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def _local(tensor: Tensor) -> Tensor:
    """A DTensor's local shard (the same storage, under ``no_grad``), any other tensor itself."""
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def is_sharded(model: nn.Module | Tensor) -> bool:
    """True for a ``DTensor``, or a model with any ``DTensor`` parameter (sharded by FSDP2 ``fully_shard``)."""
    if isinstance(model, Tensor):
        return _is_dtensor(model)
    return any(_is_dtensor(param) for param in model.parameters())


def has_masks(model: nn.Module) -> bool:
    """True when any module of ``model`` holds a 2:4 mask buffer (no mask is expanded or gathered)."""
    return any(_masked_param_names(module) for module in model.modules())


def mask_of(module: nn.Module, param_name: str, dtype: torch.dtype = torch.bool) -> Tensor | None:
    """The mask of ``module.<param_name>`` expanded to the weight's shape (a new tensor), or None.

    A sharded mask (a ``DTensor``, see :func:`shard_masks`) is gathered first: every rank must
    call this for the same layers in the same order.
    """
    packed = module._buffers.get(mask_name(param_name))
    if packed is None:
        return None
    if _is_dtensor(packed):
        packed = packed.full_tensor()
    return unpack_bits(packed, getattr(module, param_name).shape, dtype)


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


_TABLE, _HOST, _DEVICE = "table", "host", "device"  # how a _Lookup multiplies


class _Lookup:
    """The gradient hook's usual step for one unsharded mask, worked out once.

    Only a view of the packed buffer (1 bit per weight) and what the step needs are kept, no
    expanded mask. The step is, by ``mode``:

    - ``"device"``: on a GPU (or on the CPU inside the kernels' emulation), one launch of the CUDA
      kernel (:func:`sparse24.kernels.ops.mask_rows_`) for a layer of any size, no temporary;
    - ``"host"``: on the CPU, a layer of up to ``CHUNK_ELEMENTS`` weights, one call of the C++
      kernel (:func:`sparse24.kernels.ops.host_mask_rows`) with the addresses and sizes kept here;
    - ``"table"``: where neither kernel can run, for a layer of up to ``CHUNK_ELEMENTS`` weights
      without padding bits, one conversion, one lookup of the dtype's bit table and the multiply
      on the gradient's ``[bytes, 8]`` view.

    The hook runs between backward kernels that leave the caches cold, where every extra tensor op
    or Python call costs several times what it costs in a loop. Any other case (sharded, strided,
    larger than a block or padded without a kernel) goes through :func:`sparse24.mask.mask_rows_`.
    """

    __slots__ = ("packed", "flat", "address", "dtype", "shape", "table", "mode", "kernel", "args")

    def __init__(self, packed: Tensor, param: Tensor, dtype: torch.dtype, mode: str, kernel: Callable[..., Any] | None, code: int | None) -> None:
        self.packed = packed
        self.flat = packed.view(-1)
        self.address = packed.data_ptr()
        self.dtype = dtype
        self.shape = param.shape
        self.table = bit_table(dtype, packed.device)
        self.mode = mode
        self.kernel = kernel
        rows, row_bytes = packed.shape
        self.args = (code, self.address, rows, param.numel() // rows if rows else 0, row_bytes)  # the host kernel's, after the gradient's address

    @staticmethod
    def build(packed: Tensor, param: Tensor, dtype: torch.dtype) -> _Lookup | None:
        """The step for this mask, weight and gradient dtype; None where it does not fit (see the class)."""
        if not packed.is_contiguous() or packed.dim() != 2 or packed.device != param.device:
            return None
        launch = _device_kernel(packed.device, dtype)
        if launch is not None:
            return _Lookup(packed, param, dtype, _DEVICE, launch, None)
        if param.numel() > CHUNK_ELEMENTS:
            return None
        found = _cpu_kernel() if packed.device.type == "cpu" else None
        code = found[1].get(dtype) if found is not None else None
        if code is not None:
            return _Lookup(packed, param, dtype, _HOST, found[0], code)
        if packed.numel() * 8 != param.numel():
            return None  # padding bits: the table's [bytes, 8] is not the weight
        return _Lookup(packed, param, dtype, _TABLE, None, None)

    def holds(self, packed: Tensor | None, grad: Tensor) -> bool:
        """True while the module's buffer (same object, same storage) and the gradient's dtype, shape, layout and (for the host kernel) device are the ones this was worked out for."""
        return (
            self.packed is packed
            and self.address == packed.data_ptr()
            and grad.dtype is self.dtype
            and grad.shape == self.shape
            and grad.is_contiguous()
            and (self.mode is not _HOST or grad.is_cpu)
        )

    def mul_(self, tensor: Tensor) -> None:
        """Multiply a contiguous tensor of the weight's shape (on the mask's device) by the mask in place."""
        if self.mode is _HOST:
            self.kernel(tensor.data_ptr(), *self.args)
        elif self.mode is _DEVICE:
            self.kernel(tensor, self.packed)  # checks the arguments, then one launch
        else:
            tensor.view(-1, 8).mul_(self.table.index_select(0, self.flat.int()))


_kernels_found: dict[tuple, Any] = {}  # (kind, device, dtype, SPARSE24_DISABLE_KERNELS) -> what the step uses, None included


def _found(key: tuple, find: Callable[[], Any], what: str) -> Any:
    """``find()``'s result for ``key``, worked out once: a kernel that cannot be built is not tried again (the reason logged once)."""
    from .kernels import ENV_DISABLE, KernelUnavailable

    key = (*key, os.environ.get(ENV_DISABLE, ""))
    if key not in _kernels_found:
        try:
            _kernels_found[key] = find()
        except KernelUnavailable as error:
            logger.info("the %s mask kernel is not available (%s); gradients are masked with torch ops", what, error)
            _kernels_found[key] = None
    return _kernels_found[key]


def _cpu_kernel() -> tuple[Callable[..., int], Mapping[torch.dtype, int]] | None:
    """The CPU mask kernel and its dtype codes (:mod:`sparse24.kernels.ops`), or None where it cannot be built."""
    from .kernels import ops

    return _found(("host",), lambda: (ops.host_mask_rows(), ops.HOST_DTYPES), "CPU")


def _device_kernel(device: torch.device, dtype: torch.dtype) -> Callable[[Tensor, Tensor], Tensor] | None:
    """:func:`sparse24.kernels.ops.mask_rows_` where the custom kernels run on ``device`` (a GPU, or the CPU
    inside their emulation) and its kernel for ``dtype`` compiles; else None."""
    if device.type == "cpu":
        from .kernels.emulate import emulation_requested

        if not emulation_requested():
            return None
    from .kernels import KernelUnavailable, kernels_unavailable, ops

    if dtype not in ops.MASK_DTYPES:  # the device kernel's dtypes (csrc/mask_rows.cu), not the host one's
        return None

    def find() -> Callable[[Tensor, Tensor], Tensor]:
        reason = kernels_unavailable(device)
        if reason is not None:
            raise KernelUnavailable(reason)
        ops.mask_rows_kernel(dtype, device)  # compiled now, not at the first launch inside a backward
        return ops.mask_rows_

    return _found(("device", str(device), dtype), find, "GPU")


class _GradMask:
    """Gradient hook (after accumulation): multiply the weight's gradient by the owner module's current mask.

    The mask buffer is looked up at call time, so ``model.to(device)`` and ``load_state_dict``
    (which replace or refill buffers) are followed. The usual step (:class:`_Lookup`: a kernel
    call, or one table lookup) is worked out at the first call and kept while the buffer and the
    gradient's dtype, shape and layout stay the same; it holds no expanded mask.
    """

    def __init__(self, module: nn.Module, param_name: str) -> None:
        self._module = weakref.ref(module)
        self.param_name = param_name
        self._buffer = mask_name(param_name)
        self._lookup: _Lookup | None = None

    def mask(self, dtype: torch.dtype) -> Tensor | None:
        """The mask in ``dtype``; for a sharded weight, the mask of this rank's shard (its local shape)."""
        module = self._module()
        packed = None if module is None else module._buffers.get(self._buffer)
        if packed is None:
            return None
        param = module._parameters[self.param_name]
        if _is_dtensor(packed):
            return expand_bits(packed.to_local(), _local(param).shape, dtype)
        if _is_dtensor(param):  # a sharded weight whose mask is not sharded yet: this rank's rows of it
            from torch.distributed.tensor import distribute_tensor

            rows = distribute_tensor(packed, param.device_mesh, param.placements, src_data_rank=None).to_local()
            return expand_bits(rows, param.to_local().shape, dtype)
        return expand_bits(packed, param.shape, dtype)

    def apply_(self, param: Tensor) -> None:
        """Multiply ``param`` (this rank's shard of a sharded one) by its mask in place, a block of rows at a time."""
        module = self._module()
        packed = None if module is None else module._buffers.get(self._buffer)
        if packed is None:
            return
        local = _local(param)
        if _is_dtensor(packed):
            packed = packed.to_local()
        elif _is_dtensor(param) or not local.is_contiguous():  # a mask not sharded yet, or a strided weight: expand it whole
            local.mul_(self.mask(local.dtype))
            return
        mask_rows_(local, packed)

    def after_accumulate(self, param: Tensor) -> None:
        """Post-accumulate-grad hook: multiply ``param.grad`` by the mask in place.

        ``param.grad`` belongs to the parameter here (accumulation is done), so no new gradient
        tensor is made: a layer up to one block of rows is masked with one expanded mask, a larger
        one a block of rows at a time (:func:`sparse24.mask.mask_rows_`). It runs before
        DistributedDataParallel's own hook on the same accumulation, so the reducer sees the
        masked gradient.
        """
        grad = param.grad
        module = self._module()
        if grad is None or module is None:
            return
        packed = module._buffers.get(self._buffer)
        lookup = self._lookup
        if lookup is not None and lookup.holds(packed, grad):
            lookup.mul_(grad)  # the usual step, everything it needs checked by holds()
            return
        if packed is None or _is_dtensor(packed) or _is_dtensor(grad):
            return  # sharded: mask_sharded_grads masks the reduced shard instead
        if not grad.is_contiguous():
            grad.mul_(expand_bits(packed, param.shape, grad.dtype))
            return
        mask_rows_(grad, packed)  # a block of rows at a time (one block for a small layer)
        self._lookup = _Lookup.build(packed, param, grad.dtype)

    def __getstate__(self) -> dict:
        return {"param_name": self.param_name}

    def __setstate__(self, state: dict) -> None:
        self._module = _no_module
        self.param_name = state["param_name"]
        self._buffer = mask_name(self.param_name)
        self._lookup = None


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
    if _is_dtensor(param) or _is_dtensor(module._buffers.get(mask_name(param_name))):
        return  # sharded (FSDP2): the hook would not fire; see mask_sharded_grads
    masker = _GradMask(module, param_name)
    setattr(param, _RECORD, _HookRecord(param.register_post_accumulate_grad_hook(masker.after_accumulate), masker))


def _remove_grad_hook(param: Tensor) -> None:
    record = getattr(param, _RECORD, None)
    if record is not None:
        if record.handle is not None:
            record.handle.remove()
        delattr(param, _RECORD)


def _ensure_grad_hooks(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: re-install gradient hooks that a copy or an unpickle dropped.

    Runs before every forward, so the usual case (every hook in place) costs a look at each
    mask buffer's weight and its record only.
    """
    if torch.is_grad_enabled():
        params = module._parameters
        for name in module._buffers:
            if name.endswith(MASK_SUFFIX):
                record = getattr(params.get(name[: -len(MASK_SUFFIX)]), _RECORD, None)
                if record is None or record.handle is None:
                    _install_grad_hook(module, name[: -len(MASK_SUFFIX)])


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
            _local(param).mul_(_GradMask(module, param_name).mask(param.dtype))


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


def _unwatch(model: nn.Module) -> None:
    if getattr(model, _MODEL_HOOK, None) is not None:
        getattr(model, _MODEL_HOOK)[0].remove()
        object.__delattr__(model, _MODEL_HOOK)


def undo_attach(model: nn.Module, owners: Iterable[tuple[nn.Module, str]]) -> None:
    """Take the masks off ``owners`` (weights that had none before), and the model's pre-hook once none is left: a
    failed operation's undo."""
    for module, param_name in owners:
        if mask_name(param_name) in module._buffers:
            _detach(module, param_name)
    if not has_masks(model):
        _unwatch(model)


def masked_gemm_weights(model: nn.Module) -> list[GemmWeight]:
    """Every GEMM weight of ``model`` that carries a 2:4 mask; no mask is expanded or gathered (nothing is allocated on
    the model's device, and no collective runs on a sharded one)."""
    return [weight for weight in gemm_weights(model) if mask_name(weight.param_name) in weight.module._buffers]


def masked_weights(model: nn.Module) -> list[tuple[GemmWeight, Tensor]]:
    """Every GEMM weight of ``model`` that carries a 2:4 mask, with its mask.

    The masks are expanded to bool tensors of their weights' shapes: new tensors, so writing
    to one changes nothing (:func:`attach` replaces a mask). For the weights alone, use
    :func:`masked_gemm_weights`.
    """
    return [(weight, mask_of(weight.module, weight.param_name)) for weight in masked_gemm_weights(model)]


def strip(model: nn.Module) -> list[str]:
    """Remove masks and hooks in place; weights keep their zeros (for export).

    Returns the names of the weights that were masked.
    """
    from .dist import unwrap

    model = unwrap(model)
    stripped = []
    _unwatch(model)
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
    from .dist import unwrap

    model = unwrap(model)
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


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`Sparse24Error` when ``optimizer`` would turn pruned weights into NaN.

    A pruned weight's gradient is exactly 0, so an Adam-family optimizer (Adam, AdamW, NAdam,
    RAdam, Adagrad, RMSprop, ...) divides 0 by ``sqrt(0) + eps``. For float16 weights the update
    runs in float16, where an ``eps`` below half of float16's smallest step (2**-24, about 6e-8;
    the default 1e-8 is) rounds to 0: the update is 0/0 = NaN at every pruned weight on the first
    step (torch does this to any float16 weight whose gradient is exactly 0; masks make it all the
    pruned ones).
    """
    for group in optimizer.param_groups:
        eps = group.get("eps")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0 or float(torch.tensor(eps, dtype=torch.float16)) != 0:
            continue  # eps survives float16 rounding (or is no eps at all)
        for param in group["params"]:
            if param.dtype == torch.float16 and getattr(param, _RECORD, None) is not None:
                raise Sparse24Error(
                    f"{type(optimizer).__name__} with eps={eps:g} on masked float16 weights: eps is 0 in float16, so every pruned "
                    f"weight (gradient and moments exactly 0) becomes 0/0 = NaN at the first step. Keep the weights in float32 "
                    f"and train with autocast (finetune's amp='fp16'), or use bfloat16 weights (or an eps float16 holds: 1e-4 is usual)"
                )


def attach_optimizer(optimizer: torch.optim.Optimizer) -> RemovableHandle:
    """Re-apply the masks of the optimizer's masked parameters after every ``step()``.

    Only needed when the optimizer's state predates the masks (or for optimizers that move
    weights whose gradient and state are zero); uses ``register_step_post_hook``. Raises
    :class:`Sparse24Error` for an optimizer that would make pruned weights NaN
    (:func:`check_optimizer`).
    """
    check_optimizer(optimizer)

    def reapply(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        with torch.no_grad():
            for param in _params(opt.param_groups):
                record = getattr(param, _RECORD, None)
                if record is not None and record.masker is not None:
                    record.masker.apply_(param)  # no full-size mask: rows at a time (a sharded weight: its shard)

    return optimizer.register_step_post_hook(reapply)


def _params(groups: Iterable[dict]) -> Iterable[Tensor]:
    for group in groups:
        yield from group["params"]


def shard_like(param: Tensor, packed: Tensor) -> Tensor:
    """The packed mask ``packed`` (of the whole weight) as a ``DTensor`` sharded like ``param``: this rank's rows, no communication.

    ``packed`` itself when ``param`` is not sharded.
    """
    if not _is_dtensor(param):
        return packed
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(packed.to(param.to_local().device), param.device_mesh, param.placements, src_data_rank=None)


def shard_masks(model: nn.Module) -> int:
    """Shard the mask buffers of ``model``'s sharded weights like the weights themselves, in place.

    For every masked weight that is a ``DTensor`` (after ``fully_shard``) and whose mask is
    still a plain tensor, the packed mask becomes a ``DTensor`` with the weight's mesh and
    placements: each rank keeps the rows of its own weight shard (``torch.chunk`` along dim 0,
    as FSDP2 splits the weight; no communication, every rank holds the same full mask). The
    weight is then tagged so that :func:`mask_sharded_grads` and :func:`attach_optimizer` find
    its mask. Returns how many masks were sharded. Raises :class:`Sparse24Error` for a weight
    sharded along another dim than 0.
    """
    from torch.distributed.tensor import Shard

    count = 0
    for module_name, module in model.named_modules():
        for param_name in _masked_param_names(module):
            param = module._parameters.get(param_name)
            packed = module._buffers[mask_name(param_name)]
            if not _is_dtensor(param):
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            if any(isinstance(p, Shard) and p.dim != 0 for p in param.placements) or any(p.is_partial() for p in param.placements):
                raise Sparse24Error(f"{name} is sharded as {list(param.placements)}; 2:4 masks follow weights sharded along dim 0 only (FSDP2's default)")
            if not _is_dtensor(packed):
                if tuple(packed.shape) != packed_shape(param.shape):
                    raise Sparse24Error(f"mask of {name} has shape {list(packed.shape)}, not {list(packed_shape(param.shape))} for the weight {list(param.shape)}")
                sharded = shard_like(param, packed)
                if sharded.to_local().shape[0] != param.to_local().shape[0]:
                    raise Sparse24Error(f"{name}: its mask shard has {sharded.to_local().shape[0]} rows, its weight shard {param.to_local().shape[0]}")
                module._buffers[mask_name(param_name)] = sharded
                count += 1
            setattr(param, _RECORD, _HookRecord(None, _GradMask(module, param_name)))
            with torch.no_grad():
                param.to_local().mul_(_GradMask(module, param_name).mask(param.dtype))
    return count


def mask_sharded_grads(params: Iterable[Tensor]) -> None:
    """Multiply the local shard of each sharded masked weight's ``.grad`` by its mask, in place.

    For FSDP2, where gradient hooks on sharded parameters never fire: call it after the
    last backward of an optimizer step and before unscaling, clipping and stepping.
    Plain (unsharded) parameters are left alone: their gradient hooks already masked them.
    """
    with torch.no_grad():
        for param in params:
            if param.grad is None or not _is_dtensor(param):
                continue
            record = getattr(param, _RECORD, None)
            if record is None or record.masker is None:
                continue
            grad = param.grad.to_local()
            mask = record.masker.mask(grad.dtype)
            if mask is not None:
                grad.mul_(mask)


def full_weight_and_mask(weight: GemmWeight) -> tuple[Tensor, Tensor | None]:
    """The whole weight (detached) and its bool mask (or None), gathered if sharded.

    For a sharded weight both are gathered with ``full_tensor()`` (collectives: every rank
    must call this for the same layers in the same order); the caller should drop them
    before the next layer, so only one layer's full copy exists at a time.
    """
    param = weight.param.detach()
    full = param.full_tensor() if _is_dtensor(param) else param
    return full, mask_of(weight.module, weight.param_name)
