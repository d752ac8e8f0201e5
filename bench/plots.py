"""Plots of gemm and model results (matplotlib, imported here only, with the Agg backend).

- ``gemm_throughput_<dtype>.png``: TFLOP/s vs M per backend, one panel per weight shape, with
  the roofline limit lines of dense and 2:4 where the GPU's peak and bandwidth were measured.
- ``gemm_speedup_<dtype>.png``: speedup vs dense against M per sparse backend, with the limit.
- ``model_latency.png``: p50 latency vs batch size per variant, one panel per model.
- ``model_speedup.png``: speedup vs batch size per sparse variant (only where one ran).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparse24.io import atomic_path

__all__ = ["plot_results"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, count: int) -> tuple[Any, list[Any]]:
    columns = min(3, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for extra in flat[count:]:
        extra.set_visible(False)
    return figure, flat[:count]


def _save(plt: Any, figure: Any, path: Path, title: str) -> Path:
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def _subtitle(results: dict[str, Any]) -> str:
    env = results["environment"]
    gpu = env.get("gpu")
    return f"{gpu['name'] if gpu else 'CPU'}, torch {env['torch']}, {env['date'][:10]}"


def _gemm(results: dict[str, Any], out: Path, plt: Any) -> list[Path]:
    written = []
    for dtype in results["settings"]["dtypes"]:
        rows = [r for r in results["rows"] if r["dtype"] == dtype and r["status"] == "ok"]
        if not rows:
            continue
        shapes = list(dict.fromkeys((r["set"], r["layer"], r["n"], r["k"]) for r in rows))
        for kind, metric, ylabel in (("throughput", "tflops", "TFLOP/s (dense FLOP count)"), ("speedup", "speedup", "speedup vs dense")):
            if kind == "speedup" and not any("speedup" in r for r in rows):
                continue
            figure, axes = _grid(plt, len(shapes))
            for ax, (set_, layer, n, k) in zip(axes, shapes):
                mine = sorted((r for r in rows if (r["set"], r["layer"], r["n"], r["k"]) == (set_, layer, n, k)), key=lambda r: r["m"])
                for backend in dict.fromkeys(r["backend"] for r in mine):
                    points = [(r["m"], r[metric]) for r in mine if r["backend"] == backend and metric in r]
                    if points:
                        ax.plot(*zip(*points), marker="o", label=backend)
                limits = sorted({(r["m"], r["sparse_tflops"], r["dense_tflops"], r["limit"]) for r in mine if "limit" in r})
                if limits:
                    ms = [m for m, *_ in limits]
                    if kind == "throughput":
                        ax.plot(ms, [s for _, s, _, _ in limits], "k--", linewidth=1, label="2:4 limit")
                        ax.plot(ms, [d for _, _, d, _ in limits], "k:", linewidth=1, label="dense limit")
                    else:
                        ax.plot(ms, [lim for *_, lim in limits], "k--", linewidth=1, label="limit")
                if kind == "speedup":
                    ax.axhline(1.0, color="grey", linewidth=0.8)
                ax.set_xscale("log", base=2)
                ax.set_xlabel("M")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{set_}: {layer} ({n}x{k})", fontsize=9)
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=7)
            title = f"GEMM {kind} vs M, {dtype} ({_subtitle(results)})"
            written.append(_save(plt, figure, out / f"gemm_{kind}_{dtype}.png", title))
    return written


def _model(results: dict[str, Any], out: Path, plt: Any) -> list[Path]:
    rows = [r for r in results["rows"] if r["status"] == "ok"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        return []
    written = []
    plots: list[tuple[str, str, str, Callable[[dict[str, Any]], bool]]] = [("latency", "p50 latency (ms)", "median", lambda r: True)]
    if any("speedup" in r for r in rows):
        plots.append(("speedup", "speedup vs dense (same mode)", "speedup", lambda r: "speedup" in r))
    for kind, ylabel, metric, keep in plots:
        figure, axes = _grid(plt, len(models))
        for ax, model in zip(axes, models):
            mine = [r for r in rows if r["model"] == model and keep(r)]
            for variant in dict.fromkeys(r["variant"] for r in mine):
                points = sorted((r["batch"], r["latency_ms"]["median"] if metric == "median" else r[metric]) for r in mine if r["variant"] == variant)
                ax.plot(*zip(*points), marker="o", label=variant)
            if kind == "speedup":
                ax.axhline(1.0, color="grey", linewidth=0.8)
            else:
                ax.set_yscale("log")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylabel)
            ax.set_title(model, fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        written.append(_save(plt, figure, out / f"model_{kind}.png", f"{kind} vs batch size ({_subtitle(results)})"))
    return written


def plot_results(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots of a gemm or model result into ``out``; return their paths."""
    plt = _pyplot()
    return _gemm(results, out, plt) if results["suite"] == "gemm" else _model(results, out, plt)
