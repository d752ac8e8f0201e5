"""Plots are written, are PNGs and are not empty; the speedup plots only where a sparse case ran."""

from __future__ import annotations

import pytest
from synthetic_results import gemm_results, model_results

pytest.importorskip("matplotlib")

from sparse24.bench.plots import plot_results  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _check(paths, names: list[str]) -> None:
    assert sorted(p.name for p in paths) == sorted(names)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, path


def test_gemm_plots(tmp_path) -> None:
    _check(plot_results(gemm_results(), tmp_path), ["gemm_throughput_fp16.png", "gemm_speedup_fp16.png"])


def test_model_plots(tmp_path) -> None:
    _check(plot_results(model_results(), tmp_path), ["model_latency.png", "model_speedup.png"])


def test_without_a_sparse_case_there_is_no_speedup_plot(tmp_path) -> None:
    results = model_results()
    results["rows"] = [r for r in results["rows"] if not r["sparse"]]
    _check(plot_results(results, tmp_path), ["model_latency.png"])
    results["rows"] = []
    assert plot_results(results, tmp_path / "none") == []
