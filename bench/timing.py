"""Timers: CUDA events on the GPU, ``perf_counter`` on the CPU, repeated runs interleaved.

Every case is a list of callables, one per *slot* of the working set: repetition ``i`` calls
slot ``i % len(slots)``, so inputs (and, for GEMMs, weights) rotate over more memory than the
L2 cache holds. The CUDA timer can also flush L2 before every repetition (outside the timed
span) and replay CUDA graphs instead of launching eagerly. Nothing here changes clocks or any
other GPU setting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from .stats import Summary, summarize

__all__ = ["CpuTimer", "CudaTimer", "capture_graphs", "first_line", "measure", "relative_error", "working_set_slots"]

Call = Callable[[], object]


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def relative_error(output: object, expected: torch.Tensor) -> float:
    """max |output - expected| / max |expected| in float64 (a tuple or list output: its first tensor)."""
    output = output[0] if isinstance(output, (tuple, list)) else output
    expected = expected.double()
    scale = float(expected.abs().max()) or 1.0
    return float((output.double() - expected).abs().max()) / scale


def working_set_slots(bytes_per_slot: int, l2_bytes: int | None, *, cap: int = 8) -> int:
    """How many distinct copies make a working set of at least twice the L2 cache (2..cap)."""
    if not l2_bytes or bytes_per_slot <= 0:
        return 2
    return max(2, min(cap, math.ceil(2 * l2_bytes / bytes_per_slot)))


class CpuTimer:
    """Wall-clock milliseconds per call with ``time.perf_counter``."""

    kind = "cpu perf_counter"

    def time(self, calls: Sequence[Call], reps: int, warmup: int) -> list[float]:
        for i in range(warmup):
            calls[i % len(calls)]()
        times = []
        for i in range(reps):
            start = time.perf_counter()
            calls[i % len(calls)]()
            times.append((time.perf_counter() - start) * 1e3)
        return times


class CudaTimer:
    """GPU milliseconds per call between two CUDA events, on a stream of its own.

    ``flush_l2`` writes a buffer twice the size of L2 before every repetition (not timed).
    Events of all repetitions are recorded first and read after one synchronization. With
    ``run_ahead``, a GPU sleep is queued before the repetitions so the host enqueues them all
    while the GPU waits: the events then time the GPU's work, not the Python launch overhead
    (for kernel benchmarks; whole models are timed as a user runs them, without it).
    """

    kind = "cuda events"
    HOST_MS_PER_CALL = 0.2  # generous bound on one call's host-side enqueue time

    def __init__(self, device: torch.device | None = None, *, flush_l2: bool = False, run_ahead: bool = False) -> None:
        self.device = torch.device(device or "cuda")
        l2 = getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0) or 64 * 2**20
        self.l2_bytes = int(l2)
        self.stream = torch.cuda.Stream(self.device)  # not the legacy default stream: no implicit syncs
        self._flush = torch.empty(2 * self.l2_bytes, dtype=torch.uint8, device=self.device) if flush_l2 else None
        self._cycles_per_ms = self._sleep_rate() if run_ahead else None
        if run_ahead:
            self.kind = "cuda events, host enqueues ahead of the GPU"

    def _sleep_rate(self) -> float:
        cycles = 10_000_000
        with torch.cuda.stream(self.stream):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda._sleep(cycles)  # warm
            start.record()
            torch.cuda._sleep(cycles)
            end.record()
        end.synchronize()
        return cycles / max(start.elapsed_time(end), 1e-3)

    def time(self, calls: Sequence[Call], reps: int, warmup: int) -> list[float]:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for i in range(warmup):
                calls[i % len(calls)]()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
            if self._cycles_per_ms is not None:
                torch.cuda._sleep(int(min(reps * self.HOST_MS_PER_CALL, 1000.0) * self._cycles_per_ms))
            for i, (start, end) in enumerate(events):
                if self._flush is not None:
                    self._flush.zero_()
                start.record()
                calls[i % len(calls)]()
                end.record()
        torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) for start, end in events]


def capture_graphs(calls: Sequence[Call], *, warmup: int = 3) -> list[Call]:
    """Capture each call in its own CUDA graph (after warm-up on a side stream); return their replays.

    A call that cannot be captured (it synchronizes, say) raises; the current stream is restored.
    """
    saved = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(saved)
    with torch.cuda.stream(side):
        for _ in range(warmup):
            for call in calls:
                call()
    saved.wait_stream(side)
    replays = []
    try:
        for call in calls:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                call()
            replays.append(graph.replay)
    finally:
        torch.cuda.set_stream(saved)  # torch.cuda.graph leaves its capture stream current if capture_end raises
    return replays


def measure(
    cases: Mapping[str, Sequence[Call]], timer: CpuTimer | CudaTimer, *, runs: int, reps: int, warmup: int
) -> tuple[dict[str, Summary], dict[str, str]]:
    """Time every case ``runs`` times, interleaved (the order rotates each run so drift is shared).

    Returns the summaries of the cases that ran and, for those that raised, the error's first line.
    """
    if runs < 1 or reps < 1 or warmup < 0:
        raise ValueError(f"runs and reps must be >= 1 and warmup >= 0 (got {runs}, {reps}, {warmup})")
    names = list(cases)
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    failures: dict[str, str] = {}
    for run in range(runs):
        shift = run % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if name in failures:
                continue
            try:
                samples[name].append(timer.time(cases[name], reps, warmup))
            except Exception as error:  # noqa: BLE001 - a case that fails is a result (TensorRT, kernels, OOM ...)
                failures[name] = first_line(error)
    return {name: summarize(runs_) for name, runs_ in samples.items() if name not in failures}, failures
