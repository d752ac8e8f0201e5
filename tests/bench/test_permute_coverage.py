"""bench/permute_coverage.py on three model types: the JSON, the table generated from it, bad input."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from sparse24.bench import permute_coverage  # noqa: E402


def test_lists_the_classes_without_a_rule_and_the_types_that_do_not_build(tmp_path, unruled_mra) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2,mra,bit"]) == 0
    results = json.loads((tmp_path / "permute_coverage.json").read_text())
    assert results["command"] == f"python bench/permute_coverage.py --out {tmp_path} --types gpt2,mra,bit"
    rows = {r["type"]: r for r in results["types"]}
    assert rows["gpt2"]["status"] == "permuted" and rows["gpt2"]["model"] == "GPT2LMHeadModel" and rows["gpt2"]["unruled"] == {}
    assert rows["gpt2"]["groups"] == 2  # its attention's values and its MLP
    assert rows["mra"]["unruled"]["MraSelfAttention"] == 3  # query, key, value: MRA's rules taken away (unruled_mra)
    assert rows["bit"]["status"] == "not built" and "layer_types" in rows["bit"]["error"]  # BiT's config refuses the tiny sizes
    markdown = (tmp_path / "permute_coverage.md").read_text()
    assert markdown == permute_coverage.markdown(results)
    assert "3 types: 2 built and permuted, 1 of them with no layer in a class without a rule, 1 with such classes" in markdown
    assert "| mra | MraModel | 0 | MraAttention (1), MraLayer (2), MraSelfAttention (3) |" in markdown
    assert "| bit | StrictDataclassClassValidationError" in markdown


def test_the_classification_models_of_a_type(tmp_path) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "roberta", "--task", "classify"]) == 0
    row = json.loads((tmp_path / "permute_coverage_classify.json").read_text())["types"][0]
    assert row["model"] == "RobertaForSequenceClassification" and row["unruled"] == {} and row["groups"] == 3  # and its classification head


@pytest.mark.parametrize("types", ["gpt2,no-such-type", ","])
def test_an_unknown_model_type_is_one_clear_error(tmp_path, capsys, types: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_info:
        permute_coverage.main(["--out", str(tmp_path), "--types", types])
    assert exit_info.value.code == 2
    assert "not a model type of this transformers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_nothing_built_is_a_failure_not_an_empty_success(tmp_path, capsys) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "bit"]) == 1  # BiT's config refuses the tiny sizes
    assert "no model type built from the tiny config: nothing was checked" in capsys.readouterr().err


def test_a_permute_failure_is_reported_apart_and_fails_the_run(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import importlib

    permute_module = importlib.import_module("sparse24.permute")  # the module (the package exports the function as sparse24.permute)

    def broken(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise RuntimeError("a bug in a rule")

    monkeypatch.setattr(permute_module, "permute", broken)
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2"]) == 1
    row = json.loads((tmp_path / "permute_coverage.json").read_text())["types"][0]
    assert row["status"] == "permute failed" and row["error"] == "RuntimeError: a bug in a rule"
    assert "raised on 1 models that built" in (tmp_path / "permute_coverage.md").read_text()
    assert "sparse24.permute raised on 1 model types" in capsys.readouterr().err


def test_a_permutation_over_the_timeout_is_listed_apart_not_as_not_built(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The model built: a permutation cut by the timeout is its own status (nemo_speechlm's and NLLB-MoE's nested
    configs keep their full sizes, and their permutation took 275 s and 95 s), with the model and its size."""
    import importlib
    import time

    permute_module = importlib.import_module("sparse24.permute")

    real = permute_module.permute

    def slow_on_gpt2(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if type(model).__name__ == "GPT2LMHeadModel":
            time.sleep(5)
        return real(model, **kwargs)

    monkeypatch.setattr(permute_module, "permute", slow_on_gpt2)
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llama", "--timeout", "2"]) == 0  # llama was checked
    rows = json.loads((tmp_path / "permute_coverage.json").read_text())["types"]
    assert rows[1]["status"] == "permuted"
    row = rows[0]
    assert row["status"] == "permute timed out" and row["error"] == "over 2 s" and row["model"] == "GPT2LMHeadModel" and row["parameters"] > 0
    markdown = (tmp_path / "permute_coverage.md").read_text()
    assert "2 types: 1 built and permuted, 1 of them with no layer in a class without a rule, 0 with such classes (below); 1 built but not permuted within the timeout; 0 not built" in markdown
    assert f"| gpt2 | GPT2LMHeadModel | {row['parameters']:,} |" in markdown
