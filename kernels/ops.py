"""Launch wrappers: compress / decompress a 2:4 weight and multiply by it, on CUDA with the custom kernels.

:func:`mask_rows_` (CUDA, ``csrc/mask_rows.cu``) and :func:`mask_rows_cpu_` (host C++,
``csrc/mask_cpu.cpp``) multiply a tensor by its bit-packed 2:4 mask in one pass; the training
gradient hook uses them (the CPU one through :func:`host_mask_rows`).

``sparse_mm`` is also registered as the torch custom op ``sparse24::sparse_mm`` (with a fake
implementation), so it runs under torch.compile and CUDA graph capture as one opaque op.
CPU tensors run the same launches through the kernels' CPU emulation when it is requested
(``SPARSE24_KERNELS=emulate`` or :func:`sparse24.kernels.emulate.emulated`); otherwise compress and
decompress fall back to the references and ``sparse_mm`` refuses them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import torch
from torch import Tensor

from sparse24.errors import SparsityError

from . import loader, reference

__all__ = ["HOST_DTYPES", "MASK_DTYPES", "SMALL_M_MAX", "compress", "decompress", "host_mask_rows", "mask_rows_", "mask_rows_cpu_", "mask_rows_kernel", "sparse_mm"]

SMALL_M_MAX = 64  # the CUDA-core kernel's range; larger M goes to mma.sp
_SMALL_TILES = (1, 2, 4, 8, 16)
_DTYPES = {torch.float16: "f16", torch.bfloat16: "bf16"}
HOST_DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}  # csrc/mask_cpu.cpp's dtype codes
MASK_DTYPES = {torch.float32: "f32", torch.float64: "f64", **_DTYPES}  # csrc/mask_rows.cu's sparse24_mask_rows_<suffix>


def _on_kernels(tensor: Tensor) -> bool:
    """Whether ``tensor`` goes to the kernels: CUDA, or CPU with the emulation requested."""
    if tensor.is_cuda:
        return True
    from .emulate import emulation_requested

    return tensor.device.type == "cpu" and emulation_requested()


def _check_dtype(tensor: Tensor, what: str) -> None:
    if tensor.dtype not in _DTYPES:
        raise ValueError(f"{what} must be float16 or bfloat16, got {tensor.dtype}")


def compress(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(values [N, K/2], meta [N, K/16] int16)`` of a 2:4 ``weight [N, K]``; CUDA tensors use the kernel.

    Raises :class:`sparse24.SparsityError` when a group of 4 holds more than 2 nonzeros.
    """
    if not _on_kernels(weight):
        return reference.compress(weight)
    reference.check_compressible(weight)
    _check_dtype(weight, "weight")
    weight = weight.contiguous()
    n, k = weight.shape
    values = torch.empty(n, k // 2, dtype=weight.dtype, device=weight.device)
    meta = torch.empty(n, k // 16, dtype=torch.int16, device=weight.device)
    bad = torch.zeros(1, dtype=torch.int32, device=weight.device)
    chunks = n * (k // 16)
    kernel = loader.function("compress.cu", "sparse24_compress_16bit", weight.device)
    args = [("ptr", weight), ("ptr", values), ("ptr", meta), ("ptr", bad), ("i32", n), ("i32", k)]
    loader.launch(kernel, ((chunks + 255) // 256,), (256,), args, device=weight.device)
    too_many = int(bad.item())
    if too_many:
        raise SparsityError(f"weight {list(weight.shape)} is not 2:4 along K: {too_many} groups of 4 hold more than 2 nonzeros")
    return values, meta


def decompress(values: Tensor, meta: Tensor) -> Tensor:
    """The dense ``[N, K]`` weight from ``(values, meta)``; CUDA tensors use the kernel."""
    if not _on_kernels(values):
        return reference.decompress(values, meta)
    _check_dtype(values, "values")
    n, k = values.shape[0], values.shape[1] * 2
    if meta.shape != (n, k // 16) or meta.dtype != torch.int16:
        raise ValueError(f"meta must be int16 {[n, k // 16]}, got {meta.dtype} {list(meta.shape)}")
    dense = torch.empty(n, k, dtype=values.dtype, device=values.device)
    kernel = loader.function("compress.cu", "sparse24_decompress_16bit", values.device)
    args = [("ptr", values.contiguous()), ("ptr", meta.contiguous()), ("ptr", dense), ("i32", n), ("i32", k)]
    loader.launch(kernel, ((n * (k // 16) + 255) // 256,), (256,), args, device=values.device)
    return dense


def _validate(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None, kernel: str) -> tuple[int, int, int]:
    if kernel not in ("auto", "small_m", "mma_sp"):
        raise ValueError(f"kernel must be 'auto', 'small_m' or 'mma_sp', got {kernel!r}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D [M, K], got {list(x.shape)}")
    _check_dtype(x, "x")
    m, k = x.shape
    n = values.shape[0]
    if values.shape != (n, k // 2) or values.dtype != x.dtype:
        raise ValueError(f"values must be {x.dtype} {[n, k // 2]} for x {list(x.shape)}, got {values.dtype} {list(values.shape)}")
    if meta.shape != (n, k // 16) or meta.dtype != torch.int16:
        raise ValueError(f"meta must be int16 {[n, k // 16]}, got {meta.dtype} {list(meta.shape)}")
    if bias is not None and (bias.shape != (n,) or bias.dtype != x.dtype):
        raise ValueError(f"bias must be {x.dtype} [{n}], got {bias.dtype} {list(bias.shape)}")
    if k % 16:
        raise ValueError(f"K = {k} must be a multiple of 16")
    if not (x.device == values.device == meta.device) or (bias is not None and bias.device != x.device):
        raise ValueError("x, values, meta and bias must be on the same device")
    return m, n, k


def _aligned(tensor: Tensor | None) -> Tensor | None:
    """Contiguous and 16-byte aligned (the kernels use 16-byte loads); copies only when needed."""
    if tensor is None:
        return None
    tensor = tensor.contiguous()
    return tensor if tensor.data_ptr() % 16 == 0 else tensor.clone()


def _launch_sparse_mm(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None, out: Tensor, kernel: str) -> None:
    x, values, meta, bias = _aligned(x), _aligned(values), _aligned(meta), _aligned(bias)
    m, n, k = x.shape[0], values.shape[0], x.shape[1]
    if kernel == "auto":
        kernel = "small_m" if m <= SMALL_M_MAX or k % 32 else "mma_sp"
    name = _DTYPES[x.dtype]
    args = [("ptr", x), ("ptr", values), ("ptr", meta), ("ptr", bias), ("ptr", out), ("i32", m), ("i32", n), ("i32", k)]
    if kernel == "small_m":
        tile = next((t for t in _SMALL_TILES if t >= m), _SMALL_TILES[-1])
        function = loader.function("small_m.cu", f"sparse24_small_m_{name}_{tile}", x.device)
        loader.launch(function, ((n + 7) // 8, (m + tile - 1) // tile), (256,), args, device=x.device)
    else:
        if k % 32:
            raise ValueError(f"the mma.sp kernel needs K % 32 == 0, got K = {k}")
        function = loader.function("mma_sp.cu", f"sparse24_mma_sp_{name}", x.device)
        loader.launch(function, ((m + 63) // 64, (n + 127) // 128), (128,), args, device=x.device)


# The schema is spelled out: torch 2.4 cannot infer one from string annotations.
@torch.library.custom_op("sparse24::sparse_mm", mutates_args=(), schema="(Tensor x, Tensor values, Tensor meta, Tensor? bias, str kernel) -> Tensor")
def _sparse_mm_op(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None, kernel: str) -> Tensor:
    out = torch.empty(x.shape[0], values.shape[0], dtype=x.dtype, device=x.device)
    if x.shape[0]:
        _launch_sparse_mm(x, values, meta, bias, out, kernel)
    return out


@_sparse_mm_op.register_fake
def _(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None, kernel: str) -> Tensor:
    return x.new_empty(x.shape[0], values.shape[0])


def sparse_mm(x: Tensor, values: Tensor, meta: Tensor, bias: Tensor | None = None, *, kernel: str = "auto", out: Tensor | None = None) -> Tensor:
    """``x [M, K] @ W^T (+ bias)`` with W 2:4-compressed, fp32 accumulation, in ``x.dtype``.

    ``kernel="auto"`` takes the CUDA-core kernel for M <= 64 (or K % 32 != 0) and the mma.sp
    tensor-core kernel above. ``out`` (contiguous ``[M, N]``) is written in place when given.
    """
    m, n, _ = _validate(x, values, meta, bias, kernel)
    if not _on_kernels(x):
        raise ValueError("the custom kernels run on CUDA tensors (on the CPU only through their emulation, SPARSE24_KERNELS=emulate); sparse24.kernels.reference.sparse_mm is the CPU reference")
    loader.require(x.device)
    if out is None:
        return _sparse_mm_op(x, values, meta, bias, kernel)
    if out.shape != (m, n) or out.dtype != x.dtype or not out.is_contiguous() or out.device != x.device:
        raise ValueError(f"out must be a contiguous {x.dtype} [{m}, {n}] tensor on {x.device}")
    if m:
        _launch_sparse_mm(x, values, meta, bias, out, kernel)
    return out


def host_mask_rows() -> Callable[[int, int, int, int, int, int], int]:
    """The CPU kernel ``sparse24_mask_rows(data, dtype_code, packed, rows, cols, row_bytes) -> 0`` (ctypes).

    It multiplies the contiguous ``[rows, cols]`` tensor at address ``data`` (dtype per
    :data:`HOST_DTYPES`) in place by the packed mask at ``packed`` (``row_bytes`` per row) and
    takes raw addresses, unchecked: :func:`mask_rows_cpu_` is the checked call. Built on first use;
    raises :class:`sparse24.kernels.KernelUnavailable` with the reason when it cannot be.
    """
    function = loader.host_library("mask_cpu.cpp").sparse24_mask_rows  # the same object on every call (ctypes caches it)
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


def _mask_rows_shape(tensor: Tensor, packed: Tensor) -> tuple[int, int, int]:
    """``(rows, cols, row_bytes)`` of a mask multiply, after checking the arguments (``ValueError`` naming the problem)."""
    from sparse24.mask import packed_shape

    if tensor.device != packed.device:
        raise ValueError(f"tensor and packed must be on one device, got {tensor.device} and {packed.device}")
    if tensor.dtype not in HOST_DTYPES:
        raise ValueError(f"tensor must be one of {', '.join(str(d).removeprefix('torch.') for d in HOST_DTYPES)}, got {tensor.dtype}")
    if not tensor.is_contiguous():
        raise ValueError("tensor must be contiguous")
    expected = packed_shape(tensor.shape)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != expected or not packed.is_contiguous():
        raise ValueError(f"packed must be a contiguous uint8 {list(expected)} tensor for a tensor of shape {list(tensor.shape)}, got {packed.dtype} {list(packed.shape)}")
    rows, row_bytes = expected
    return rows, tensor.numel() // rows if rows else 0, row_bytes


def mask_rows_(tensor: Tensor, packed: Tensor) -> Tensor:
    """Multiply a contiguous CUDA ``tensor`` in place by its packed 2:4 mask with the CUDA kernel; returns it.

    One launch, no temporary. ``packed`` is the uint8 ``[rows, ceil(cols / 8)]`` of
    :func:`sparse24.mask.pack_bits` for ``tensor`` seen as ``[tensor.shape[0], -1]``. The result
    equals :func:`sparse24.mask.mask_rows_` bit for bit where that is finite and is NaN where that
    is NaN. CPU tensors run it through the emulation when that is requested. Raises ``ValueError``
    for bad arguments and :class:`sparse24.kernels.KernelUnavailable` where the kernels cannot run.
    """
    if not _on_kernels(tensor):
        raise ValueError("the custom kernels run on CUDA tensors (on the CPU only through their emulation, SPARSE24_KERNELS=emulate); mask_rows_cpu_ is the CPU kernel")
    rows, cols, row_bytes = _mask_rows_shape(tensor, packed)
    if rows * row_bytes >= 2**31 or cols >= 2**31:
        raise ValueError(f"a tensor of shape {list(tensor.shape)} is too large for the kernel's 32-bit sizes")
    if tensor.numel():
        kernel = mask_rows_kernel(tensor.dtype, tensor.device)
        args = [("ptr", tensor), ("ptr", packed), ("i32", rows), ("i32", cols), ("i32", row_bytes)]
        loader.launch(kernel, ((rows * row_bytes + 255) // 256,), (256,), args, device=tensor.device)
    return tensor


def mask_rows_kernel(dtype: torch.dtype, device: torch.device) -> object:
    """The kernel :func:`mask_rows_` launches for ``dtype`` on ``device``, compiled and loaded (once).

    Raises :class:`sparse24.kernels.KernelUnavailable` where it cannot be (and ``ValueError`` for a dtype it lacks).
    """
    if dtype not in MASK_DTYPES:
        raise ValueError(f"tensor must be one of {', '.join(str(d).removeprefix('torch.') for d in MASK_DTYPES)}, got {dtype}")
    return loader.function("mask_rows.cu", f"sparse24_mask_rows_{MASK_DTYPES[dtype]}", device)


def mask_rows_cpu_(tensor: Tensor, packed: Tensor) -> Tensor:
    """Multiply a contiguous CPU ``tensor`` in place by its packed 2:4 mask with the CPU kernel; returns it.

    ``packed`` as for :func:`mask_rows_`. The result equals the pure-PyTorch
    :func:`sparse24.mask.mask_rows_` bit for bit where that is finite (signed zeros included) and is
    NaN where that is NaN. Raises ``ValueError`` for another device, layout, dtype or mask shape,
    and :class:`sparse24.kernels.KernelUnavailable` when the kernel cannot be built.
    """
    if tensor.device.type != "cpu" or packed.device.type != "cpu":
        raise ValueError(f"mask_rows_cpu_ takes CPU tensors, got {tensor.device} and {packed.device}")
    rows, cols, row_bytes = _mask_rows_shape(tensor, packed)
    if tensor.numel():
        code = host_mask_rows()(tensor.data_ptr(), HOST_DTYPES[tensor.dtype], packed.data_ptr(), rows, cols, row_bytes)
        if code:
            raise RuntimeError(f"sparse24_mask_rows returned {code}")
    return tensor
