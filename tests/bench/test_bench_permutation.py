"""bench/bench_permutation.py on tiny matrices: the JSON, the table generated from it, the checks."""

from __future__ import annotations

import json

import pytest

from sparse24.bench import bench_permutation


def test_writes_json_and_markdown(tmp_path) -> None:  # noqa: ANN001
    assert bench_permutation.main(["--out", str(tmp_path), "--shapes", "128x64", "16x40", "--window", "32"]) == 0
    results = json.loads((tmp_path / "permutation.json").read_text())
    assert results["command"] == "python bench/bench_permutation.py --out " + str(tmp_path) + " --shapes 128x64 16x40 --window 32"
    assert results["options"] == {"window": 32, "rounds": 2, "escapes": 0}
    cases = results["cases"]
    assert [(c["rows"], c["channels"], c["kind"]) for c in cases] == [(128, 64, "iid"), (128, 64, "scaled"), (16, 40, "iid"), (16, 40, "scaled")]
    for c in cases:
        assert c["kept_identity"] <= c["kept_permuted"] <= c["limit_per_row"] <= c["limit_unstructured"] + 1e-6
        assert 0 <= c["gap_closed_per_row"] <= 1
    assert cases[0]["gap_closed_per_row"] >= 0.25  # APEX: 32-37% on random 64x128
    markdown = (tmp_path / "permutation.md").read_text()
    assert markdown == bench_permutation.markdown(results)
    assert "| 128 x 64 | iid |" in markdown and results["command"] in markdown


@pytest.mark.parametrize("shapes", [["4096"], ["8x6"], ["ax4"]])
def test_bad_shapes(tmp_path, shapes: list[str]) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit):
        bench_permutation.main(["--out", str(tmp_path), "--shapes", *shapes])
