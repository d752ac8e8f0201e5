"""Run sparse24's CUDA sources on the CPU, with the hardware's semantics, for tests without a GPU.

The very ``csrc/*.cu`` text NVRTC compiles is compiled by the system C++ compiler into a shared
library, with ``csrc/emulate.h`` force-included and ``SPARSE24_EMULATE`` defined: threads become
cooperative fibers, ``common.cuh``'s PTX helpers follow the PTX ISA, and every global and
shared access is checked (see emulate.h). Libraries are cached on disk per (sources, headers,
options, compiler) next to the NVRTC cubins, written atomically.

This is a correctness tool for our kernels, not a CPU backend for users: it is slow. The kernel
path uses it for CPU tensors when ``SPARSE24_KERNELS=emulate`` is set, or inside
:func:`emulated`; :func:`launches` records what ran.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparse24.errors import Sparse24Error
from sparse24.io import atomic_path

from .loader import ENV_CXX, host_compiler

__all__ = [
    "ENV_MODE",
    "SCHEDULES",
    "AccessCounts",
    "Kernel",
    "KernelFault",
    "LaunchStats",
    "Library",
    "emulated",
    "emulation_requested",
    "launches",
    "library",
    "unavailable",
]

logger = logging.getLogger("sparse24.kernels")

ENV_MODE = "SPARSE24_KERNELS"  # "emulate": CPU tensors run the CUDA sources through this module
SCHEDULES = ("forward", "reverse", "random")
_RUNTIME = "emulate.h"
_HEADERS = ("common.cuh",)
_FLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-strict-aliasing", "-Wno-unknown-pragmas", "-Wno-attributes")
_requested: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("sparse24_emulate", default=None)  # (schedule, seed)
_recorders: contextvars.ContextVar[tuple[list, ...]] = contextvars.ContextVar("sparse24_emulate_recorders", default=())
_libraries: dict[str, Library] = {}
_build_lock = threading.Lock()
_launch_lock = threading.Lock()  # the runtime keeps one launch's state in globals


class KernelFault(Sparse24Error):
    """An emulated kernel did something undefined on a GPU: out of bounds, a race, a divergent barrier, bad metadata, ..."""


def emulation_requested() -> bool:
    """Whether CPU tensors should run the kernels through the emulation (environment or :func:`emulated`)."""
    return _requested.get() is not None or os.environ.get(ENV_MODE, "").strip().lower() == "emulate"


@contextlib.contextmanager
def emulated(schedule: str = "random", seed: int = 0) -> Iterator[None]:
    """Within the block, the kernel wrappers run CPU tensors through the emulated kernels.

    ``schedule`` and ``seed`` are the thread order of those launches (see :meth:`Kernel.launch`).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    token = _requested.set((schedule, seed))
    try:
        yield
    finally:
        _requested.reset(token)


@contextlib.contextmanager
def launches() -> Iterator[list[LaunchStats]]:
    """Collect the :class:`LaunchStats` of every emulated launch made inside the block."""
    record: list[LaunchStats] = []
    token = _recorders.set((*_recorders.get(), record))
    try:
        yield record
    finally:
        _recorders.reset(token)


def unavailable() -> str | None:
    """Why the emulation cannot run here (no C++ compiler, or no ucontext), or None."""
    if os.name != "posix":
        return "the kernel emulation needs a POSIX system (ucontext fibers)"
    if host_compiler() is None:
        return f"no C++ compiler found for the kernel emulation (c++, g++ or clang++ on PATH, or ${ENV_CXX})"
    return None


@dataclass(frozen=True)
class AccessCounts:
    """Warp-wide shared accesses of one kind: instructions, wavefronts, and the conflict-free minimum."""

    instructions: int
    wavefronts: int
    ideal: int

    @property
    def conflicts(self) -> int:
        """Extra wavefronts caused by bank conflicts (0 when conflict-free)."""
        return self.wavefronts - self.ideal


@dataclass(frozen=True)
class LaunchStats:
    """What one emulated launch did."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    blocks: int
    threads: int
    barriers: int
    shared_loads: AccessCounts
    shared_stores: AccessCounts
    ldmatrix: AccessCounts
    mma_sp: int
    cp_async: int
    shared_bytes: int
    races: int
    first_race: str | None


class _Launch(ctypes.Structure):  # emu::LaunchDesc in emulate.h
    _fields_ = [
        ("grid", ctypes.c_uint32 * 3),
        ("block", ctypes.c_uint32 * 3),
        ("n_args", ctypes.c_int32),
        ("args", ctypes.POINTER(ctypes.c_uint64)),
        ("kinds", ctypes.POINTER(ctypes.c_int32)),
        ("sizes", ctypes.POINTER(ctypes.c_uint64)),
        ("schedule", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("report_races", ctypes.c_int32),
        ("stats", ctypes.c_uint64 * 16),
        ("message", ctypes.c_char_p),
        ("message_size", ctypes.c_int32),
    ]


def _dims(values: Sequence[int], what: str) -> tuple[int, int, int]:
    dims = tuple(int(v) for v in values) + (1,) * (3 - len(values))
    if len(dims) != 3:
        raise ValueError(f"{what} has more than 3 dimensions: {values}")
    return dims  # type: ignore[return-value]


class Kernel:
    """One emulated ``__global__`` function; :meth:`launch` runs it over a grid."""

    def __init__(self, library: Library, name: str) -> None:
        self.library = library
        self.name = name
        self._entry = getattr(library.handle, f"sparse24_emulate__{name}")
        self._entry.argtypes = [ctypes.POINTER(_Launch)]
        self._entry.restype = ctypes.c_int

    def __repr__(self) -> str:
        return f"Kernel({self.name!r} from {self.library.source})"

    def launch(
        self,
        grid: Sequence[int],
        block: Sequence[int],
        args: Sequence[tuple[str, Any]],
        *,
        schedule: str | None = None,
        seed: int | None = None,
        races: str = "raise",
    ) -> LaunchStats:
        """Run the kernel; ``args`` are ``("ptr", CPU tensor or None)`` or ``("i32", int)`` in the kernel's order.

        ``schedule`` orders the runnable threads at every switch: ``forward`` (lowest id first),
        ``reverse`` or ``random`` (seeded by ``seed``). ``races="report"`` counts races and
        cp.async hazards in the result instead of raising. The defaults come from
        :func:`emulated` (else ``random``, seed 0). Raises :class:`KernelFault` with the
        kernel, block and thread on anything a GPU would leave undefined.
        """
        context = _requested.get() or ("random", 0)
        schedule = context[0] if schedule is None else schedule
        seed = context[1] if seed is None else seed
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if races not in ("raise", "report"):
            raise ValueError(f"races must be 'raise' or 'report', got {races!r}")
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        raw, kinds, sizes = [], [], []
        for index, (kind, value) in enumerate(args):
            if kind == "ptr":
                if value is not None and (not isinstance(value, torch.Tensor) or value.device.type != "cpu"):
                    raise ValueError(f"{self.name}: argument {index} must be a CPU tensor or None for the emulation, got {type(value).__name__}")
                raw.append(0 if value is None else value.data_ptr())
                kinds.append(0)
                sizes.append(0 if value is None else value.numel() * value.element_size())
            elif kind == "i32":
                raw.append(int(value) & 0xFFFFFFFF)
                kinds.append(1)
                sizes.append(0)
            else:
                raise ValueError(f"unknown kernel argument kind {kind!r}")
        count = len(raw)
        message = ctypes.create_string_buffer(4096)
        desc = _Launch(
            grid=(ctypes.c_uint32 * 3)(*grid),
            block=(ctypes.c_uint32 * 3)(*block),
            n_args=count,
            args=(ctypes.c_uint64 * max(count, 1))(*raw),
            kinds=(ctypes.c_int32 * max(count, 1))(*kinds),
            sizes=(ctypes.c_uint64 * max(count, 1))(*sizes),
            schedule=SCHEDULES.index(schedule),
            seed=seed & 0xFFFFFFFFFFFFFFFF,
            report_races=int(races == "report"),
            message=ctypes.cast(message, ctypes.c_char_p),
            message_size=len(message),
        )
        with _launch_lock:
            code = self._entry(ctypes.byref(desc))
        text = message.value.decode(errors="replace")
        if code:
            raise KernelFault(text)
        s = list(desc.stats)
        stats = LaunchStats(
            kernel=self.name,
            grid=grid,
            block=block,
            blocks=s[11],
            threads=s[12],
            barriers=s[9],
            shared_loads=AccessCounts(s[0], s[1], s[2]),
            shared_stores=AccessCounts(s[3], s[4], s[5]),
            ldmatrix=AccessCounts(s[6], s[7], s[8]),
            mma_sp=s[14],
            cp_async=s[15],
            shared_bytes=s[13],
            races=s[10],
            first_race=text or None,
        )
        for record in _recorders.get():
            record.append(stats)
        return stats


@dataclass
class Library:
    """The emulated build of one ``csrc`` source: its shared library and its kernels."""

    source: str
    path: Path
    handle: Any
    kernels: tuple[str, ...]

    def kernel(self, name: str) -> Kernel:
        if name not in self.kernels:
            raise KernelFault(f"{self.source} defines no kernel {name!r} (it has {', '.join(sorted(self.kernels))})")
        return Kernel(self, name)


def _preprocess(compiler: str, staging: Path, source: str, defines: Sequence[str]) -> str:
    command = [compiler, "-std=c++17", "-E", "-P", "-DSPARSE24_EMULATE", "-DSPARSE24_DISCOVER", *defines, "-include", str(staging / _RUNTIME), "-I", str(staging), "-x", "c++", str(staging / source)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise KernelFault(f"the C++ preprocessor failed on {source}:\n{result.stderr.strip()}")
    return result.stdout


_KERNEL = re.compile(r'extern\s+"C"\s+SPARSE24_GLOBAL\s+void\s+(?:SPARSE24_BOUNDS\s*\((?P<bounds>.*?)\)\s*)?(?P<name>\w+)\s*\(', re.S)


def _trampolines(kernels: Mapping[str, str | None], source: str) -> str:
    lines = [f'#include "{source}"', ""]
    for name, bounds in kernels.items():
        lines.append(
            f'extern "C" __attribute__((visibility("default"))) int sparse24_emulate__{name}(emu::LaunchDesc* desc) '
            f'{{ return emu::launch_kernel(desc, "{name}", {f"({bounds})" if bounds else "0"}, &{name}); }}'
        )
    return "\n".join(lines) + "\n"


def library(source: str, *, sources: Path | None = None, defines: Mapping[str, str] | None = None) -> Library:
    """The emulated build of ``csrc/<source>``, compiled once and cached.

    ``sources`` names another folder for the source (tests' probe kernels; the headers always
    come from ``csrc``), and ``defines`` add ``-DNAME=VALUE``.
    """
    from .loader import SOURCES, cache_dir

    reason = unavailable()
    if reason is not None:
        raise KernelFault(reason)
    folder = Path(sources) if sources is not None else SOURCES
    flags = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    texts = {}
    for name in (source, _RUNTIME, *_HEADERS):
        path = folder / name if name == source else SOURCES / name
        if not path.is_file():
            raise KernelFault(f"kernel source not found: {path}")
        texts[name] = path.read_text(encoding="utf-8")
    compiler = host_compiler()
    assert compiler is not None
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256("\0".join([*texts.values(), *_FLAGS, *flags, compiler, *version]).encode()).hexdigest()[:32]
    with _build_lock:
        found = _libraries.get(key)
        if found is not None:
            return found
        folder_out = cache_dir() / "emulate"
        target = folder_out / f"{Path(source).stem}-{key}.so"
        names_file = target.with_suffix(".kernels")
        with tempfile.TemporaryDirectory(prefix="sparse24-emulate-") as tmp:
            staging = Path(tmp)
            for name, text in texts.items():
                (staging / name).write_text(text, encoding="utf-8")
            if not (target.is_file() and names_file.is_file()):
                kernels = {m["name"]: (m["bounds"] or "").strip() or None for m in _KERNEL.finditer(_preprocess(compiler, staging, source, flags))}
                if not kernels:
                    raise KernelFault(f"{source} defines no extern \"C\" __global__ kernel")
                (staging / "trampolines.cpp").write_text(_trampolines(kernels, source), encoding="utf-8")
                built = staging / "out.so"
                command = [compiler, *_FLAGS, "-DSPARSE24_EMULATE", *flags, "-include", str(staging / _RUNTIME), "-I", str(staging), str(staging / "trampolines.cpp"), "-o", str(built)]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode:
                    raise KernelFault(f"the C++ compiler could not build {source} for the emulation:\n{result.stderr.strip()[-4000:]}")
                folder_out.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp_target:
                    shutil.copyfile(built, tmp_target)
                with atomic_path(names_file) as tmp_names:  # last: its presence means the library is complete
                    tmp_names.write_text("\n".join(kernels) + "\n", encoding="utf-8")
                logger.info("built the CPU emulation of %s (%d kernels) with %s", source, len(kernels), compiler)
        names = tuple(names_file.read_text(encoding="utf-8").split())
        found = Library(source=source, path=target, handle=ctypes.CDLL(str(target)), kernels=names)
        _libraries[key] = found
        return found
