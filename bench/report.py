"""Results on disk: JSON (the source of truth), CSV and Markdown generated from it, and the plots.

Every table shows only what ran: a backend that did not run here has no column, and a case
that failed or gave a wrong answer says so instead of showing a number.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from sparse24.io import write_text

from .env import describe

__all__ = ["SCHEMA", "load_results", "markdown", "to_csv", "unfinished", "write_suite"]

logger = logging.getLogger(__name__)

SCHEMA = 1
SUITES = ("gemm", "model", "accuracy")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a result JSON written by ``sparse24 bench`` (raises ValueError naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    suite = data.get("suite") if isinstance(data, dict) else None
    if suite not in SUITES or (suite != "accuracy" and "rows" not in data):
        raise ValueError(f"{path} is not a sparse24 bench result (no 'suite' and 'rows')")
    return data


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _speed(row: dict[str, Any], *, nested: bool = False) -> str:
    if "speedup" not in row:
        return ""
    noise = row["verdict"] == "noise"
    return f"{row['speedup']:.2f}x" + ((", noise" if nested else " (noise)") if noise else "")


def _status(row: dict[str, Any]) -> str:
    return "failed" if row["status"] == "failed" else "wrong output"


def _header(results: dict[str, Any], title: str) -> list[str]:
    env = results["environment"]
    s = results["settings"]
    method = f"median of {s['runs']} runs x {s['reps']} repetitions ({s['timer']}, {s['warmup']} warm-up"
    method += ", L2 flushed before each" if s.get("l2_flush") else ""
    method += ", CUDA graphs" if s.get("cuda_graphs") else ""
    method += f"; {s['working_set']})"
    lines = [f"# {title}", "", f"Command: `{env['command']}`  ", f"Environment: {describe(env)}  ", f"Method: {method}."]
    if results.get("skipped"):
        lines += ["", "Not run here:"]
        for item in results["skipped"]:
            what = item.get("backend") or item.get("variant") or item.get("model")
            lines.append(f"- {what}{' (' + item['dtype'] + ')' if 'dtype' in item else ''}: {item['reason']}")
    lines += [f"\nNote: {note}" for note in results.get("notes", ())]
    if partial := unfinished(results):
        lines.append(f"\n**Partial result: {partial} measured (the run was cut off, or is still running).**")
    return lines


def unfinished(results: dict[str, Any]) -> str | None:
    """``"3 of 58 cases"`` for a result written before its run finished; None for a finished one."""
    progress = results.get("progress")  # results written before progress was recorded are finished ones
    if not progress or progress["done"] >= progress["total"]:
        return None
    return f"{progress['done']} of {progress['total']} {progress['unit']}"


def _gemm_markdown(results: dict[str, Any]) -> str:
    gpu = results["environment"].get("gpu")
    lines = _header(results, f"GEMM suite: dense vs 2:4 on {gpu['name'] if gpu else 'CPU'}")
    lines += [
        "",
        "Y[M, N] = X[M, K] W^T. x = dense median / backend median (for tensorrt: tensorrt-dense / tensorrt); "
        "noise = the difference is within the run-to-run spread.",
        "TFLOP/s counts the dense 2MNK for every backend. Every output was checked against fp32 before timing.",
    ]
    roofline = results.get("roofline")
    if roofline:
        peaks = ", ".join(f"{d} {p:.0f} TFLOP/s" for d, p in roofline["dense_peak_tflops"].items())
        lines.append(
            f"limit = roofline bound on the 2:4 speedup from this GPU's measured dense peak ({peaks}) and copy bandwidth "
            f"({roofline['copy_gbps']:.0f} GB/s): 2x when math-bound, the bytes ratio when memory-bound; share = speedup / limit."
        )
    for dtype in results["settings"]["dtypes"]:
        rows = [r for r in results["rows"] if r["dtype"] == dtype]
        if not rows:
            continue
        others = [b for b in results["settings"]["backends"] if b != "dense" and any(r["backend"] == b for r in rows)]
        head = ["set", "layer", "M", "N x K", "dense ms", "dense TFLOP/s", *[f"{b} ms (x)" for b in others]]
        if roofline:
            head += ["limit", "best share"]
        lines += ["", f"## {dtype}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        cases: dict[tuple, dict[str, dict[str, Any]]] = {}
        for row in rows:
            cases.setdefault((row["set"], row["layer"], row["m"], row["n"], row["k"]), {})[row["backend"]] = row
        for (set_, layer, m, n, k), by_backend in cases.items():
            dense = by_backend.get("dense", {"status": "failed"})
            cells = [set_, layer, str(m), f"{n} x {k}"]
            cells += [_ms(dense["latency_ms"]["median"]), f"{dense['tflops']:.3g}"] if dense["status"] == "ok" else [_status(dense), ""]
            for backend in others:
                row = by_backend.get(backend)
                if row is None:
                    cells.append("n/a")
                elif row["status"] == "ok":
                    cells.append(f"{_ms(row['latency_ms']['median'])} ({_speed(row, nested=True) or '-'})")
                else:
                    cells.append(_status(row))
            if roofline:
                limit = next((r["limit"] for r in by_backend.values() if "limit" in r), None)
                shares = [r["share_of_limit"] for r in by_backend.values() if "share_of_limit" in r]
                cells += [f"{limit:.2f}x" if limit else "", f"{max(shares):.0%}" if shares else ""]
            lines.append("| " + " | ".join(cells) + " |")
    problems = [r for r in results["rows"] if r["status"] != "ok"]
    if problems:
        lines += ["", "## Failures (never timed)", ""]
        lines += [f"- {r['dtype']} {r['set']} {r['layer']} M={r['m']} {r['backend']}: {r['status']}: {r.get('message', '')}" for r in problems]
    lines += ["", "Generated from gemm.json (every sample is there; gemm.csv has the same rows)."]
    return "\n".join(lines) + "\n"


def _model_markdown(results: dict[str, Any]) -> str:
    gpu = results["environment"].get("gpu")
    lines = _header(results, f"Model suite: dense vs 2:4 end to end on {gpu['name'] if gpu else 'CPU'} ({results['dtype']})")
    lines += [
        "",
        "Latency per batch (p50/p90/p99 over all repetitions); samples/s = batch / p50; speedup = dense p50 / sparse p50 in the same mode",
        "((noise) = within the run-to-run spread). Every output was checked against eager dense before timing.",
    ]
    for name, info in results["models"].items():
        rows = [r for r in results["rows"] if r["model"] == name]
        runtime = info.get("runtime")
        extra = f"; sparse runtime: {len(runtime['layers'])} Linear layers replaced, {len(runtime['skipped'])} kept" if runtime else ""
        lines += [
            "",
            f"## {name}: {info['description']}",
            "",
            f"2:4 weights: {info['sparse_weights']} of {info['weights']} GEMM weights (policy {info['policy']}){extra}.",
            "",
            "| batch | variant | p50 ms | p90 ms | p99 ms | samples/s | speedup | kernels / note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if row["status"] != "ok":
                lines.append(f"| {row['batch']} | {row['variant']} | {_status(row)} |  |  |  |  | {row.get('message', '')} |")
                continue
            latency = row["latency_ms"]
            kernels = ", ".join(f"{k} {v}" for k, v in sorted(row.get("kernels", {}).items()))
            lines.append(
                f"| {row['batch']} | {row['variant']} | {_ms(latency['median'])} | {_ms(latency['p90'])} | {_ms(latency['p99'])} | "
                f"{row['throughput']:.0f} | {_speed(row)} | {kernels} |"
            )
    lines += ["", "Generated from model.json (every sample is there; model.csv has the same rows)."]
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """The Markdown report of a gemm or model result."""
    if results["suite"] == "gemm":
        return _gemm_markdown(results)
    if results["suite"] == "model":
        return _model_markdown(results)
    from .bench_recovery import markdown as accuracy_markdown

    return accuracy_markdown(results)


_CSV = {
    "gemm": ("set", "layer", "m", "n", "k", "dtype", "backend", "status", "tflops", "gbps", "speedup", "verdict", "noise", "limit", "share_of_limit", "error", "message"),
    "model": ("model", "batch", "variant", "status", "throughput", "speedup", "verdict", "noise", "error", "message"),
}
_LATENCY = ("median", "p90", "p99", "mean", "min", "max", "spread", "n", "runs")


def to_csv(results: dict[str, Any]) -> str:
    """One line per row of a gemm or model result (latency in ms); the accuracy suite per model/row/split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if results["suite"] == "accuracy":
        writer.writerow(("model", "row", "split", "mean", "std"))
        for model, data in results["models"].items():
            for row, splits in data["summary"].items():
                for split, stats in splits.items():
                    writer.writerow((model, row, split, f"{stats['mean']:.4f}", f"{stats['std']:.4f}"))
        return buffer.getvalue()
    columns = _CSV[results["suite"]]
    writer.writerow([*columns[:8], *[f"{k}_ms" if k not in ("spread", "n", "runs") else k for k in _LATENCY], *columns[8:]])
    for row in results["rows"]:
        latency = row.get("latency_ms", {})
        writer.writerow([*(row.get(c, "") for c in columns[:8]), *(latency.get(k, "") for k in _LATENCY), *(row.get(c, "") for c in columns[8:])])
    return buffer.getvalue()


def write_suite(out: Path, results: dict[str, Any], *, plots: bool = True) -> tuple[list[Path], list[str]]:
    """Write ``<suite>.json``, ``.csv``, ``.md`` (atomically) and the plots; return the paths and notes."""
    name = "recovery" if results["suite"] == "accuracy" else results["suite"]
    written = []
    for suffix, text in (("json", json.dumps(results, indent=1) + "\n"), ("csv", to_csv(results)), ("md", markdown(results))):
        path = out / f"{name}.{suffix}"
        write_text(path, text)
        written.append(path)
    notes = []
    if plots and results["suite"] in ("gemm", "model"):
        from .plots import plot_results

        try:
            written += plot_results(results, out)
        except ModuleNotFoundError as error:
            notes.append(f"plots not written: {error.name} is not installed (pip install matplotlib)")
    logger.info("wrote %s", ", ".join(map(str, written)))
    return written, notes
