"""Shared by the bench scripts: interleaved timing, peak memory, the environment record, a call in its own process."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import shlex
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparse24.bench.env import describe
from sparse24.bench.env import environment as full_environment
from sparse24.io import write_text


def interleaved(base: Callable[[], object], op: Callable[[object], object], reps: int) -> dict:
    """Median seconds of ``base()`` and of ``op(base())``, timed alternately; one warm-up each."""
    base_times, op_times = [], []
    for rep in range(reps + 1):
        start = time.perf_counter()
        value = base()
        middle = time.perf_counter()
        op(value)
        end = time.perf_counter()
        if rep:
            base_times.append(middle - start)
            op_times.append(end - middle)
        del value
    base_median, op_median = statistics.median(base_times), statistics.median(op_times)
    return {"base_s": base_median, "op_s": op_median, "ratio": op_median / base_median, "reps": reps}


@dataclass
class PeakMemory:
    """What :func:`peak_memory` measured: ``bytes`` is the peak above the level at the start (set on exit; None if unmeasurable)."""

    source: str  # "cuda" (max_memory_allocated) or "VmHWM" (peak resident set of this process)
    start: int = 0
    bytes: int | None = None


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that a block's peak is not hidden in memory an earlier block freed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device | str | None = None) -> Iterator[PeakMemory]:
    """Measure the peak memory of the block above its level at the start, in bytes (``.bytes`` after it ends).

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only,
    not the allocator's cache). CPU (Linux): the process's peak resident set ``VmHWM``, reset by
    writing ``5`` to ``/proc/self/clear_refs`` after freed heap is returned to the OS, minus the
    resident set at the start: everything the process touched, the Python heap and the
    allocator's slack included, so a few MiB of noise. Elsewhere ``.bytes`` stays None.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        found = PeakMemory("cuda", start=torch.cuda.memory_allocated(device))
        yield found
        torch.cuda.synchronize(device)
        found.bytes = torch.cuda.max_memory_allocated(device) - found.start
        return
    _release_free_heap()
    try:
        _CLEAR_REFS.write_text("5")
        resettable = True
    except OSError:
        resettable = False
    start = _status_bytes("VmRSS")
    found = PeakMemory("VmHWM", start=start or 0)
    yield found
    peak = _status_bytes("VmHWM")
    if resettable and start is not None and peak is not None:
        found.bytes = max(0, peak - start)


def environment(command: str | None = None) -> dict:
    """The environment record of :mod:`sparse24.bench.env` (``command`` defaults to this process's)."""
    return full_environment(command or shlex.join(["python", *sys.argv]))


def write_results(out: Path, name: str, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``<name>.json`` and the Markdown generated from it (both atomically); return the Markdown."""
    write_text(out / f"{name}.json", json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    write_text(out / f"{name}.md", text)
    return text


def publish(out: Path | None, name: str, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """Print the Markdown of ``results``; with ``out``, write ``<name>.json`` and ``<name>.md`` there first (:func:`write_results`)."""
    if out is None:
        print(markdown(results))
        return
    out.mkdir(parents=True, exist_ok=True)
    print(write_results(out, name, results, markdown))


def header(title: str, results: dict[str, Any], extra: str = "") -> list[str]:
    """The first lines of every result table: title, the command that made it, the environment."""
    return [
        f"# {title}",
        "",
        f"Command: `{results['command']}`  ",
        f"Environment: {describe(results['environment'])}{extra}",
    ]


class ChildDied(Exception):
    """The forked child of :func:`in_child` gave no result: it was killed (by a signal, or past its wall-clock
    limit: ``timed_out``) or it raised."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def in_child(fn: Callable[..., Any], *args: Any, memory_limit: int | None = None, wall: float | None = None) -> Any:
    """``fn(*args)`` in a forked child process, its result back through JSON, so that what one call allocates, leaks,
    or crashes leaves this process (and the next call) as it was. ``memory_limit``: the child's address space in
    bytes; ``wall``: seconds after which it is killed. :class:`ChildDied` says how it ended without a result."""
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs this process's exit handlers (pytest's, say)
        os.close(read)
        code = 0
        try:
            if memory_limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
            payload = {"result": fn(*args)}
        except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises ChildDied)
            payload, code = {"raised": "".join(traceback.format_exception_only(type(exc), exc)).strip()}, 1
        try:
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(payload).encode())
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    chunks, timed_out = [], False
    deadline = None if wall is None else time.monotonic() + wall
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([read], [], [], left)[0]:  # nothing more by the deadline
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read, 1 << 16)
            if not chunk:  # the child closed its end
                break
            chunks.append(chunk)
    finally:
        os.close(read)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        raise ChildDied(f"killed past {wall:g} s", timed_out=True)
    if os.WIFSIGNALED(status):
        raise ChildDied(f"its process died of {signal.Signals(os.WTERMSIG(status)).name}")
    try:
        payload = json.loads(b"".join(chunks))
    except ValueError:
        raise ChildDied(f"its process exited with {os.waitstatus_to_exitcode(status)} and no result") from None
    if "raised" in payload:
        raise ChildDied(f"its process raised {payload['raised']}")
    return payload["result"]
