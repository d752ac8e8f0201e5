"""Reports of gemm and model results: speedups, limits, Markdown, CSV, and only what ran."""

from __future__ import annotations

import csv
import io
import json

import pytest
from synthetic_results import ROOFLINE, gemm_results, model_results

from sparse24.bench.gemm import GemmCase, cases_for, roofline_limit
from sparse24.bench.report import load_results, markdown, to_csv, write_suite


def test_roofline_limit_is_2x_when_math_bound_and_the_bytes_ratio_when_memory_bound() -> None:
    large = GemmCase("s", "l", 16384, 11008, 4096)
    assert roofline_limit(large, 2, 700.0, 3000.0)["limit"] == pytest.approx(2.0)
    decode = GemmCase("s", "l", 1, 11008, 4096)
    expected = decode.dense_bytes(2) / decode.sparse_bytes(2)
    assert roofline_limit(decode, 2, 700.0, 3000.0)["limit"] == pytest.approx(expected)
    assert 1.7 < expected < 1.78  # 8 B vs 4.5 B per 4 weights, plus X and Y
    assert decode.sparse_bytes(2) == 11008 * 4096 + 11008 * 4096 // 8 + 2 * (4096 + 11008)


def test_cases_for_sets_quick_override_and_cap() -> None:
    cases = cases_for(["bert-base"])
    assert {c.m for c in cases} == {128, 512, 2048, 8192} and len(cases) == 12
    assert {c.m for c in cases_for(["decode"], quick=True)} == {1, 64}
    assert {c.m for c in cases_for(["decode"], m_values=[3, 5])} == {3, 5}
    assert all(c.m <= 256 for c in cases_for(["resnet50-im2col", "decode"], max_m=256))
    with pytest.raises(ValueError, match="unknown shape set nope"):
        cases_for(["nope"])


def test_gemm_speedups_verdicts_and_share_of_limit() -> None:
    rows = {(r["m"], r["backend"]): r for r in gemm_results()["rows"]}
    custom = rows[1, "custom"]
    assert custom["speedup"] == pytest.approx(0.040 / 0.025) and custom["verdict"] == "faster"
    assert custom["share_of_limit"] == pytest.approx(custom["speedup"] / custom["limit"])
    assert rows[1, "cusparselt"]["verdict"] == "slower" and rows[1, "cusparselt"]["speedup"] == pytest.approx(0.5)
    assert rows[16, "cusparselt"]["verdict"] == "noise"  # 1.1% faster, within the 2% spread
    assert "speedup" not in rows[16, "custom"] and rows[16, "custom"]["status"] == "wrong"
    assert rows[1, "dense"]["tflops"] == pytest.approx(2 * 11008 * 4096 / 0.040e-3 / 1e12)


def test_gemm_markdown_shows_only_what_ran() -> None:
    text = markdown(gemm_results())
    assert "| decode | gate/up proj | 1 | 11008 x 4096 | 0.0400 |" in text
    assert "0.0250 (1.60x)" in text and "0.0445 (1.01x, noise)" in text
    assert "wrong output" in text and "## Failures (never timed)" in text
    assert "tensorrt ms" not in text  # not run: no column
    assert "- tensorrt (fp16): tensorrt is not installed" in text
    assert "Command: `sparse24 bench gemm model`" in text and "NVIDIA Test GPU (sm_90, 132 SMs), driver 580.1" in text
    assert f"({ROOFLINE['copy_gbps']:.0f} GB/s)" in text


def test_model_markdown_percentiles_throughput_and_failures() -> None:
    results = model_results()
    text = markdown(results)
    assert "| 1 | eager sparse | 4.000 | 4.040 | 4.040 | 250 | 1.25x |" in text
    assert "| 8 | compile sparse | failed |" in text and "RuntimeError: compile failed" in text
    assert "| 8 | eager sparse | 12.100 |" in text and "0.99x (noise)" in text
    assert "- tensorrt dense: tensorrt is not installed" in text
    assert "| tensorrt" not in text and "| 1 | tensorrt" not in text  # not run: no row


def test_csv_has_one_line_per_row_and_the_latency_columns() -> None:
    for results in (gemm_results(), model_results()):
        table = list(csv.DictReader(io.StringIO(to_csv(results))))
        assert len(table) == len(results["rows"])
        ok = [row for row in table if row["status"] == "ok"]
        assert all(float(row["median_ms"]) > 0 and float(row["p99_ms"]) >= float(row["median_ms"]) for row in ok)
        assert all(row["median_ms"] == "" for row in table if row["status"] != "ok")


def test_write_suite_writes_json_csv_markdown_and_plots(tmp_path) -> None:
    results = gemm_results()
    written, notes = write_suite(tmp_path, results)
    names = sorted(p.name for p in written)
    assert names == ["gemm.csv", "gemm.json", "gemm.md", "gemm_speedup_fp16.png", "gemm_throughput_fp16.png"] and notes == []
    assert load_results(tmp_path / "gemm.json") == json.loads(json.dumps(results))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_load_results_names_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="results file not found"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not a sparse24 bench result"):
        load_results(tmp_path / "other.json")
