"""The one place that compiles, caches and launches sparse24's CUDA kernels.

On a GPU, kernels are compiled at run time with NVRTC through cuda-python
(``cuda.bindings.nvrtc``) for the GPU at hand (``sm_XY``), cached on disk per (source, arch,
options, NVRTC version) under ``$SPARSE24_KERNEL_CACHE`` (default ``~/.cache/sparse24/kernels``),
loaded with the driver API into the primary context torch already made current, and launched on
torch's current stream. ``SPARSE24_DISABLE_KERNELS=1`` turns them off.

For CPU tensors, when ``SPARSE24_KERNELS=emulate`` is set (or inside
:func:`sparse24.kernels.emulate.emulated`), the same sources run through the CPU emulation
(:mod:`sparse24.kernels.emulate`): same grid, block and arguments, launched through :func:`launch`.

Host code (``csrc/*.cpp``: the CPU kernels, loaded with ctypes) is built by the system C++
compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``) with :func:`host_library`, cached on disk
in the same folder; ``SPARSE24_DISABLE_KERNELS=1`` turns it off too.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sparse24.errors import Sparse24Error
from sparse24.io import atomic_path

__all__ = [
    "ENV_CACHE",
    "ENV_CXX",
    "ENV_DISABLE",
    "KernelUnavailable",
    "SOURCES",
    "cache_dir",
    "function",
    "host_compiler",
    "host_library",
    "kernels_unavailable",
    "launch",
    "require",
    "source_text",
]

logger = logging.getLogger("sparse24.kernels")

ENV_DISABLE = "SPARSE24_DISABLE_KERNELS"
ENV_CACHE = "SPARSE24_KERNEL_CACHE"
ENV_CXX = "CXX"  # the host C++ compiler (host_library and the emulation)
SOURCES = Path(__file__).with_name("csrc")
_HEADERS = ("common.cuh",)
_OPTIONS = ("-std=c++17", "--use_fast_math")
_lock = threading.Lock()
_functions: dict[tuple, Any] = {}
_modules: list[Any] = []  # loaded modules stay alive with the process


class KernelUnavailable(Sparse24Error):
    """The custom kernels cannot run here: disabled, no CUDA, GPU older than sm_80, or cuda-python missing."""


def _disabled() -> str | None:
    if os.environ.get(ENV_DISABLE, "").strip() not in ("", "0"):
        return f"custom kernels are disabled ({ENV_DISABLE}={os.environ[ENV_DISABLE]})"
    return None


def kernels_unavailable(device: torch.device | int | None = None) -> str | None:
    """Why the custom kernels cannot run on ``device`` (None: the current GPU), or None if they can.

    A CPU device can run them only through the emulation (``SPARSE24_KERNELS=emulate``).
    """
    disabled = _disabled()
    if disabled is not None:
        return disabled
    if isinstance(device, torch.device) and device.type == "cpu":
        from . import emulate

        if not emulate.emulation_requested():
            return f"the custom kernels run on CUDA tensors (set {emulate.ENV_MODE}=emulate to run their CUDA sources on the CPU, for tests)"
        return emulate.unavailable()
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 0):
        return f"{torch.cuda.get_device_name(device)} is sm_{major}{minor}: 2:4 sparse kernels need Ampere (sm_80) or newer"
    try:
        from cuda.bindings import driver, nvrtc  # noqa: F401
    except ImportError as error:
        return f"cuda-python is not installed ({error}); install it with: pip install cuda-python"
    return None


def require(device: torch.device) -> None:
    """Raise :class:`KernelUnavailable` with the reason unless the kernels can run on ``device``."""
    reason = kernels_unavailable(device)
    if reason is not None:
        raise KernelUnavailable(reason)


def source_text(name: str, sources: Path | None = None) -> str:
    """The text of ``csrc/<name>`` (or ``sources/<name>``)."""
    path = (sources or SOURCES) / name
    if not path.is_file():
        raise KernelUnavailable(f"kernel source not found: {path}")
    return path.read_text(encoding="utf-8")


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "sparse24" / "kernels")


def host_compiler() -> str | None:
    """The host C++ compiler: ``$CXX`` (None if it is not found), else the first of c++, g++, clang++ on PATH."""
    named = os.environ.get(ENV_CXX)
    if named:
        return shutil.which(named)
    return next((found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None)


_HOST_FLAGS = ("-std=c++17", "-O3", "-fPIC", "-shared", "-fvisibility=hidden")
_host_libraries: dict[tuple[str, str | None, str | None], ctypes.CDLL] = {}  # (source, $CXX, $PATH)


def host_library(source: str) -> ctypes.CDLL:
    """``csrc/<source>`` (host C++) built by the host compiler into a shared library, loaded with ctypes.

    Built once per (source, flags, compiler and its version) and cached on disk under
    :func:`cache_dir` (written atomically; portable flags, no ``-march=native``, so a shared home
    serves other CPUs); loaded once per (source, ``$CXX``, ``$PATH``) in the process. Raises
    :class:`KernelUnavailable` with the reason when custom kernels are disabled, no compiler is
    found, or the build fails.
    """
    reason = _disabled()
    if reason is not None:
        raise KernelUnavailable(reason)
    where = (source, os.environ.get(ENV_CXX), os.environ.get("PATH"))  # what picks the compiler
    found = _host_libraries.get(where)
    if found is not None:
        return found
    compiler = host_compiler()
    if compiler is None:
        raise KernelUnavailable(f"no C++ compiler found for the CPU kernels (c++, g++ or clang++ on PATH, or ${ENV_CXX})")
    with _lock:
        found = _host_libraries.get(where)
        if found is not None:
            return found
        text = source_text(source)
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
        key = hashlib.sha256("\0".join([source, text, *_HOST_FLAGS, compiler, *version]).encode()).hexdigest()[:32]
        target = cache_dir() / "host" / f"{Path(source).stem}-{key}.so"
        if not target.is_file():
            with tempfile.TemporaryDirectory(prefix="sparse24-host-") as tmp:
                built = Path(tmp) / "out.so"
                result = subprocess.run([compiler, *_HOST_FLAGS, str(SOURCES / source), "-o", str(built)], capture_output=True, text=True)
                if result.returncode:
                    raise KernelUnavailable(f"the C++ compiler could not build {source}:\n{result.stderr.strip()[-4000:]}")
                try:  # the cache is an optimization: a read-only home must not stop the kernel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(target) as tmp_target:
                        shutil.copyfile(built, tmp_target)
                except (OSError, Sparse24Error) as error:
                    logger.warning("could not cache %s: %s", target, error)
                    target = Path(tmp) / f"{Path(source).stem}.so"
                    built.rename(target)
                    found = _host_libraries[where] = ctypes.CDLL(str(target))  # loaded before the folder goes
                    return found
            logger.info("built %s with %s", source, compiler)
        found = _host_libraries[where] = ctypes.CDLL(str(target))
        return found


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple, raising on an error code."""
    from cuda.bindings import driver, nvrtc

    error, *values = result if isinstance(result, tuple) else (result,)
    if isinstance(error, driver.CUresult) and error != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(error)
        raise KernelUnavailable(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    if isinstance(error, nvrtc.nvrtcResult) and error != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, text = nvrtc.nvrtcGetErrorString(error)
        raise KernelUnavailable(f"{what} failed: {text.decode() if isinstance(text, bytes) else text}")
    return values[0] if len(values) == 1 else tuple(values)


def _compile(name: str, arch: str, sources: Path | None = None) -> bytes:
    """A cubin of ``csrc/<name>`` for ``arch`` (``sm_90``), from the disk cache or NVRTC."""
    from cuda.bindings import nvrtc

    source = source_text(name, sources)
    headers = [source_text(h) for h in _HEADERS]
    try:
        version = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    except RuntimeError as error:  # cuda-python could not load libnvrtc
        raise KernelUnavailable(f"NVRTC is not loadable ({error}); install nvidia-cuda-nvrtc or a CUDA toolkit") from error
    key = hashlib.sha256("\0".join([name, source, *headers, arch, *_OPTIONS, str(version)]).encode()).hexdigest()[:32]
    cached = cache_dir() / f"{Path(name).stem}-{arch}-{key}.cubin"
    if cached.is_file():
        return cached.read_bytes()
    program = _check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), len(headers), [h.encode() for h in headers], [h.encode() for h in _HEADERS]), "nvrtcCreateProgram")
    try:
        options = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in _OPTIONS)]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = _check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            log = bytearray(size)
            nvrtc.nvrtcGetProgramLog(program, log)
            text = bytes(log).rstrip(b"\0").decode(errors="replace").strip()  # the log ends with its NUL
            raise KernelUnavailable(f"NVRTC could not compile {name} for {arch}: {text}")
        size = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        buffer = bytearray(size)
        _check(nvrtc.nvrtcGetCUBIN(program, buffer), "nvrtcGetCUBIN")
        cubin = bytes(buffer)
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    try:  # the cache is an optimization: a read-only home must not stop the kernels
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_bytes(cubin)
    except (OSError, Sparse24Error) as error:
        logger.warning("could not cache %s: %s", cached, error)
    logger.info("compiled %s for %s with NVRTC %s", name, arch, version)
    return cubin


def function(source: str, kernel: str, device: torch.device, *, sources: Path | None = None) -> Any:
    """The ``CUfunction`` named ``kernel`` in ``csrc/<source>`` for ``device``, compiled and loaded once.

    For a CPU device (emulation requested) it is the :class:`sparse24.kernels.emulate.Kernel` instead.
    ``sources`` names another folder for the source (the tests' probe kernels; headers stay ``csrc``'s).
    """
    require(device)
    if device.type == "cpu":
        from . import emulate

        try:
            return emulate.library(source, sources=sources).kernel(kernel)
        except emulate.KernelFault as error:
            raise KernelUnavailable(str(error)) from error
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    arch = f"sm_{major}{minor}"
    key = (str(sources), source, kernel, index, arch)
    with _lock:
        found = _functions.get(key)
        if found is not None:
            return found
        from cuda.bindings import driver

        with torch.cuda.device(index):
            torch.zeros(1, device=f"cuda:{index}")  # torch makes its primary context current on this thread
            context = _check(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
            if not int(context):
                raise KernelUnavailable("no current CUDA context after torch initialized the device")
            module = _check(driver.cuModuleLoadData(_compile(source, arch, sources)), "cuModuleLoadData")
            _modules.append(module)
            found = _check(driver.cuModuleGetFunction(module, kernel.encode()), f"cuModuleGetFunction({kernel})")
        _functions[key] = found
        return found


def launch(kernel: Any, grid: Sequence[int], block: Sequence[int], args: Sequence[tuple[str, Any]], *, device: torch.device, shared_bytes: int = 0) -> None:
    """Launch ``kernel`` on torch's current stream of ``device`` (or run its CPU emulation).

    ``args`` are ``("ptr", tensor-or-None)`` or ``("i32", int)`` in the kernel's order.
    """
    if device.type == "cpu":
        if shared_bytes:
            raise ValueError("the emulation models static __shared__ arrays only, not dynamic shared memory")
        kernel.launch(grid, block, args)
        return
    import numpy as np
    from cuda.bindings import driver

    holders = []
    for kind, value in args:
        if kind == "ptr":
            holders.append(np.array([0 if value is None else value.data_ptr()], dtype=np.uint64))
        elif kind == "i32":
            holders.append(np.array([int(value)], dtype=np.int32))
        else:
            raise ValueError(f"unknown kernel argument kind {kind!r}")
    pointers = np.array([h.ctypes.data for h in holders], dtype=np.uint64)
    stream = driver.CUstream(torch.cuda.current_stream(device).cuda_stream)
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
    with torch.cuda.device(device):  # a module's functions belong to that device's (primary) context
        _check(driver.cuLaunchKernel(kernel, *grid, *block, shared_bytes, stream, pointers.ctypes.data, 0), "cuLaunchKernel")
