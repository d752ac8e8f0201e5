"""Shared by the bench scripts: interleaved timing and the environment record."""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import sparse24
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


def environment() -> dict:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "sparse24": sparse24.__version__,
    }


def write_results(out: Path, name: str, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``<name>.json`` and the Markdown generated from it (both atomically); return the Markdown."""
    write_text(out / f"{name}.json", json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    write_text(out / f"{name}.md", text)
    return text


def header(title: str, results: dict[str, Any], extra: str = "") -> list[str]:
    """The first lines of every result table: title, the command that made it, the environment."""
    env = results["environment"]
    return [
        f"# {title}",
        "",
        f"Command: `{results['command']}`  ",
        f"Environment: torch {env['torch']}, {env['threads']} threads, {env['cpu']}, {env['date']}{extra}",
    ]
