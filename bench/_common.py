"""Shared by the bench scripts: interleaved timing and the environment record."""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def environment(command: str | None = None) -> dict:
    """The environment record of :mod:`sparse24.bench.env` (``command`` defaults to this process's)."""
    return full_environment(command or shlex.join(["python", *sys.argv]))


def write_results(out: Path, name: str, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``<name>.json`` and the Markdown generated from it (both atomically); return the Markdown."""
    write_text(out / f"{name}.json", json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    write_text(out / f"{name}.md", text)
    return text


def header(title: str, results: dict[str, Any], extra: str = "") -> list[str]:
    """The first lines of every result table: title, the command that made it, the environment."""
    return [
        f"# {title}",
        "",
        f"Command: `{results['command']}`  ",
        f"Environment: {describe(results['environment'])}{extra}",
    ]
