"""bench/bench_memory.py: peak memory of sparsify + finetune against plain training, in fresh processes."""

from __future__ import annotations

import json
import sys

import pytest

from sparse24.bench import bench_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU peak is read from /proc/self (Linux)")


def test_one_process_case_measures_both_variants(tmp_path) -> None:
    argv = ["--out", str(tmp_path), "--cases", "one process", "--width", "64", "--depth", "2", "--steps", "2", "--batch", "8", "--repeats", "2"]
    assert bench_memory.main(argv) == 0
    results = json.loads((tmp_path / "memory.json").read_text())
    assert results["command"] == "python bench/bench_memory.py " + " ".join(argv)
    assert [row["malloc"] for row in results["rows"]] == list(bench_memory.MALLOCS)
    row = results["rows"][0]
    plain, sparse = row["plain"], row["sparse"]
    assert row["case"] == "one process" and plain["ranks"] == sparse["ranks"] == 1
    params = 2 * (64 * 64 + 64) + 16 * 64 + 16
    assert plain["param_bytes"] == sparse["param_bytes"] == 4 * params
    assert plain["train_peak_bytes"] > 0 and sparse["train_peak_bytes"] > 0 and sparse["sparsify_peak_bytes"] >= 0
    assert len(row["plain_runs"]) == len(row["sparse_runs"]) == 2 and plain["train_peak_bytes"] == min(row["plain_runs"]), "the lower middle of 2 runs"
    assert sparse["mask_bytes"] == (2 * 64 * 64 + 16 * 64) // 8, "masks at 1 bit per weight"
    text = (tmp_path / "memory.md").read_text()
    assert f"`{results['command']}`" in text and "| one process | 1 | glibc default |" in text and "| one process | 1 | fixed mmap threshold |" in text and "Generated from memory.json." in text
    assert f"Targets: sparse / plain <= {bench_memory.TARGET};" in text and "{" not in text, "an unformatted placeholder in the table's text"


def test_unknown_case_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_memory.main(["--out", str(tmp_path), "--cases", "tpu"])
    assert exit_info.value.code == 2 and "unknown tpu" in capsys.readouterr().err
    assert not (tmp_path / "memory.json").exists()
