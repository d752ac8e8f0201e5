"""bench/recovery_start.py on a tiny digits transformer: every start, recovered, in the table."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import sparse24
from sparse24.bench import oneshot_models as om
from sparse24.bench import recovery_start


def test_starts_recover_and_the_table_is_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(om, "load", lambda name, recipe: om.build(name, recipe=dataclasses.replace(om.TINY[name], seed=recipe.seed)).eval())
    starts = recovery_start._starts("digits-transformer")
    solved, mask_only, dense = starts["SparseGPT"], starts["SparseGPT's mask, dense weights"], starts["dense"]
    for key, value in solved.state_dict().items():  # the same masks; the mask-only start keeps the dense values it keeps
        if key.endswith(sparse24.MASK_SUFFIX):
            assert torch.equal(mask_only.state_dict()[key], value)
    weight = "encoder.layers.0.linear1.weight"
    kept = next(mask for w, mask in sparse24.masked_weights(mask_only) if w.name == weight)
    assert torch.equal(mask_only.state_dict()[weight], dense.state_dict()[weight] * kept)
    assert not torch.equal(solved.state_dict()[weight], mask_only.state_dict()[weight])  # SparseGPT moved the kept weights

    argv = ["--out", str(tmp_path), "--steps", "2", "1", "--train-seeds", "0,1", "--lrs", "1e-3", "1e-4"]
    assert recovery_start.main(argv) == 0
    results = json.loads((tmp_path / "recovery_start.json").read_text())
    assert results["command"] == "python bench/recovery_start.py " + " ".join(argv) and results["steps"] == [1, 2] and results["lrs"] == [1e-4, 1e-3]
    assert list(results["seeds"]) == ["0", "1"]
    assert list(results["rows"]) == ["dense", "magnitude", "SparseGPT", "SparseGPT's mask, dense weights"]
    for row, cells in results["rows"].items():
        assert sorted(cells) == (["0"] if row == "dense" else ["0", "1@0.0001", "1@0.001", "2@0.0001", "2@0.001"])
        assert all(0 <= c["accuracy"] <= 100 and 0 <= c["val_accuracy"] <= 100 and c["cross_entropy"] > 0 for c in cells.values())
        for column, cell in cells.items():  # the mean of the two trained models
            per_seed = [run["rows"][row][column]["cross_entropy"] for run in results["seeds"].values()]
            assert cell["cross_entropy"] == pytest.approx(sum(per_seed) / 2)
    magnitude = results["seeds"]["0"]["rows"]["magnitude"]
    assert magnitude["2@0.001"]["cross_entropy"] != magnitude["2@0.0001"]["cross_entropy"]  # the learning rate reached the finetune
    dense = [run["rows"]["dense"]["0"]["cross_entropy"] for run in results["seeds"].values()]
    assert dense[0] != dense[1]  # two models, from two seeds
    text = (tmp_path / "recovery_start.md").read_text()
    columns = "| start | one-shot | after 1 steps, lr 0.0001 | after 2 steps, lr 0.0001 | after 1 steps, lr 0.001 | after 2 steps, lr 0.001 |"
    assert text.count(columns) == 4 and "Generated from recovery_start.json." in text  # test and validation means, each seed's
    assert "Test accuracy (cross-entropy), mean over the 2 models trained from seeds 0, 1:" in text and "Trained from seed 1:" in text
    validation = text.split("Validation accuracy, mean over the 2 models trained from seeds 0, 1 (the split to choose a learning rate on):")[1]
    row = next(line for line in validation.splitlines() if line.startswith("| magnitude |"))
    assert row == "| magnitude | " + " | ".join(f"{results['rows']['magnitude'][c]['val_accuracy']:.2f}" for c in ["0", "1@0.0001", "2@0.0001", "1@0.001", "2@0.001"]) + " |"


def test_bad_train_seeds_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        recovery_start.main(["--out", str(tmp_path), "--train-seeds", "0,x"])
    assert stopped.value.code == 2 and "comma-separated non-negative ints" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        recovery_start.main(["--out", str(tmp_path), "--lrs", "0"])
    assert stopped.value.code == 2 and "--lrs must be in (0, 1)" in capsys.readouterr().err
