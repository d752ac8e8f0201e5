"""Statistics of timing samples: summaries, the spread between repeated runs, and noise-aware verdicts.

A measurement is several *runs* of many *repetitions*. The pooled samples give the
percentiles; the medians of the runs give the *spread*: ``(max - min) / median`` of the run
medians (with a single run, the interquartile range of its samples over their median). A
difference between two measurements smaller than the larger of their spreads is called noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Summary", "Verdict", "percentile", "relative_spread", "summarize", "verdict"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def relative_spread(runs: Sequence[Sequence[float]]) -> float:
    """How much repeated runs disagree, as a fraction of their median (see the module docstring)."""
    runs = [r for r in runs if r]
    if not runs:
        raise ValueError("spread of no samples")
    if len(runs) == 1:
        only = runs[0]
        middle = statistics.median(only)
        return (percentile(only, 75) - percentile(only, 25)) / middle if middle else 0.0
    medians = [statistics.median(r) for r in runs]
    middle = statistics.median(medians)
    return (max(medians) - min(medians)) / middle if middle else 0.0


@dataclass(frozen=True)
class Summary:
    """Latency statistics of one measurement, in the unit of its samples (milliseconds in bench)."""

    n: int
    runs: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    p90: float
    p99: float
    run_medians: tuple[float, ...]
    spread: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_medians"] = list(self.run_medians)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        fields = {k: data[k] for k in cls.__dataclass_fields__}
        fields["run_medians"] = tuple(fields["run_medians"])
        return cls(**fields)


def summarize(runs: Sequence[Sequence[float]]) -> Summary:
    """Summarize the samples of one or more runs (each a sequence of positive times)."""
    runs = [list(r) for r in runs if len(r)]
    samples = [t for r in runs for t in r]
    if not samples:
        raise ValueError("no timing samples")
    if any(not math.isfinite(t) or t < 0 for t in samples):
        raise ValueError("timing samples must be finite and non-negative")
    return Summary(
        n=len(samples),
        runs=len(runs),
        median=statistics.median(samples),
        mean=statistics.fmean(samples),
        stdev=statistics.stdev(samples) if len(samples) > 1 else 0.0,
        min=min(samples),
        max=max(samples),
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
        run_medians=tuple(statistics.median(r) for r in runs),
        spread=relative_spread(runs),
    )


@dataclass(frozen=True)
class Verdict:
    """``other`` against ``base``: ``ratio`` = base median / other median (> 1: other is faster)."""

    ratio: float
    change: float  # other / base - 1, in time: negative is faster
    noise: float  # the band within which a change is noise
    label: str  # "faster", "slower" or "noise"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(base: Summary, other: Summary, *, floor: float = 0.0) -> Verdict:
    """Is ``other`` faster or slower than ``base`` beyond the larger of their spreads (and ``floor``)?"""
    if base.median <= 0 or other.median <= 0:
        raise ValueError("medians must be positive to compare")
    change = other.median / base.median - 1
    noise = max(base.spread, other.spread, floor)
    label = "noise" if abs(change) <= noise else "faster" if change < 0 else "slower"
    return Verdict(ratio=base.median / other.median, change=change, noise=noise, label=label)
