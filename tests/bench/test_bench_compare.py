"""bench compare: regressions beyond noise, noise, cases now failing, new and gone cases; its CLI."""

from __future__ import annotations

import json

import pytest
from synthetic_results import gemm_results, model_results

from sparse24.bench.cli import main
from sparse24.bench.compare import compare


def test_regressions_improvements_and_noise() -> None:
    old = gemm_results(spread=0.02)
    new = gemm_results({(1, "dense"): 0.0402, (1, "cusparselt"): 0.060, (1, "custom"): 0.030, (16, "dense"): 0.045}, spread=0.02)
    result = compare(old, new)
    labels = {c.case: c.label for c in result.changes}
    assert labels["fp16 decode gate/up proj M=1 dense"] == "noise"  # +0.5%
    assert labels["fp16 decode gate/up proj M=1 cusparselt"] == "improvement"
    assert labels["fp16 decode gate/up proj M=1 custom"] == "regression"  # +20%
    assert labels["fp16 decode gate/up proj M=16 cusparselt"] == "now failing"
    assert [c.case for c in result.regressions] == ["fp16 decode gate/up proj M=1 custom", "fp16 decode gate/up proj M=16 cusparselt"]
    text = result.to_markdown()
    assert "+20.0%" in text and "±2.0%" in text and "M=1 dense" not in text
    assert "M=1 dense" in result.to_markdown(show_all=True)


def test_threshold_widens_the_noise_band_and_noisy_runs_are_not_regressions() -> None:
    old = gemm_results()
    new = gemm_results({**{k: v for k, v in [((1, "dense"), 0.040), ((1, "cusparselt"), 0.080), ((16, "dense"), 0.045), ((16, "cusparselt"), 0.0445)]}, (1, "custom"): 0.030})
    assert compare(old, new).regressions
    assert not compare(old, new, threshold=0.25).regressions
    noisy = gemm_results({(1, "dense"): 0.040, (1, "cusparselt"): 0.080, (1, "custom"): 0.030, (16, "dense"): 0.045, (16, "cusparselt"): 0.0445}, spread=0.5)
    assert not compare(old, noisy).regressions


def test_new_and_gone_cases_and_warnings() -> None:
    old, new = model_results(), model_results()
    new["rows"] = [r for r in new["rows"] if r["batch"] == 1]
    new["environment"]["gpu"]["name"] = "NVIDIA Other GPU"
    result = compare(old, new)
    assert sum(c.label == "gone" for c in result.changes) == 4
    assert result.warnings == ("the old result ran on NVIDIA Test GPU, the new one on NVIDIA Other GPU",)
    with pytest.raises(ValueError, match="cannot compare a gemm result with a model result"):
        compare(gemm_results(), model_results())


def test_cli_exit_codes(tmp_path, capsys) -> None:
    old, same, slow = tmp_path / "old.json", tmp_path / "same.json", tmp_path / "slow.json"
    old.write_text(json.dumps(model_results()))
    same.write_text(json.dumps(model_results()))
    slow.write_text(json.dumps(model_results({(1, "eager dense"): 5.0, (1, "eager sparse"): 6.0, (8, "eager dense"): 12.0, (8, "eager sparse"): 12.1, (1, "compile dense"): 3.0, (1, "compile sparse"): 2.5, (8, "compile dense"): 9.0})))
    assert main(["compare", str(old), str(same)]) == 0
    report = tmp_path / "cmp.md"
    assert main(["compare", str(old), str(slow), "--report", str(report)]) == 1
    err = capsys.readouterr().err
    assert "1 case(s) slower beyond noise or now failing: bert-base batch 1 eager sparse" in err and "Traceback" not in err
    assert "| bert-base batch 1 eager sparse | 4.0000 | 6.0000 | +50.0% |" in report.read_text()
    assert main(["compare", str(old), str(tmp_path / "missing.json")]) == 2
    assert "results file not found" in capsys.readouterr().err
