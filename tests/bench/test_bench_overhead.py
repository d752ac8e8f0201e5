"""bench/bench_overhead.py: enforced vs plain training steps, with the two reference copies."""

from __future__ import annotations

import json

import copy

import pytest
import torch
from synthetic_results import environment

import sparse24
from sparse24.bench import bench_overhead
from sparse24.demo import MODELS
from sparse24.kernels import loader


def test_run_records_every_variant_and_renders_the_table(tmp_path) -> None:
    argv = ["--out", str(tmp_path), "--reps", "2", "--batch-sizes", "8"]
    assert bench_overhead.main(argv) == 0
    results = json.loads((tmp_path / "enforcement_overhead.json").read_text())
    assert results["command"] == "python bench/bench_overhead.py " + " ".join(argv)
    assert [row["case"] for row in results["rows"]] == list(bench_overhead.CASES)
    for row in results["rows"]:
        assert row["batch_size"] == 8 and row["reps"] == 2
        assert row["ratio"] > 0 and row["unguarded_ratio"] > 0 and row["float_cache_ratio"] > 0
        assert row["mask_bytes"] * 8 == row["bool_mask_bytes"], "1 bit per weight (the demo layers need no padding)"
        assert row["float_cache_bytes"] == 4 * row["bool_mask_bytes"], "the reference holds a float32 mask per weight"
        assert row["kernel_steps"] == (row["masked_weights"] if loader.host_compiler() else 0), "the hook's step on the CPU is the kernel wherever it builds"
    text = (tmp_path / "enforcement_overhead.md").read_text()
    assert f"`{results['command']}`" in text and "| reference: no copy guard | reference: float masks held |" in text
    assert "Generated from enforcement_overhead.json." in text and "{" not in text
    assert f"| {results['rows'][0]['masked_weights']} ({results['rows'][0]['kernel_steps']} by the CPU kernel) |" in text


def test_verdicts_follow_the_target() -> None:
    row = {"case": "m", "batch_size": 64, "masked_weights": 1, "reps": 3, "plain_ms": 10.0, "enforced_ms": 10.4, "ratio": 1.04}
    results = {"command": "python bench/bench_overhead.py", "environment": environment(gpu=False), "rows": [row, {**row, "ratio": 1.06}]}
    text = bench_overhead.markdown(results)
    assert "| 1.040x | met (<= 1.05x) |" in text and "| 1.060x | NOT met (> 1.05x) |" in text


def test_references_enforce_by_other_means() -> None:
    """The copy without the guard keeps its gradient hooks; the float-mask copy keeps pruned weights at zero."""
    torch.manual_seed(0)
    enforced = MODELS["transformer"]()
    sparse24.sparsify(enforced, "magnitude", policy="any", progress=False)
    plain = copy.deepcopy(enforced)
    sparse24.strip(plain)
    unguarded = bench_overhead._without_copy_guard(enforced)
    assert not any(module._forward_pre_hooks for module in unguarded.modules() if sparse24.enforce._masked_param_names(module))
    cached, held = bench_overhead._float_cache(plain, enforced)
    for model in (unguarded, cached):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.randn(4, 1, 8, 8)).square().sum().backward()
        optimizer.step()
    sparse24.verify(unguarded)
    for weight, mask in sparse24.masked_weights(enforced):
        assert not cached.get_parameter(weight.name).detach()[~mask].any(), weight.name


@pytest.mark.parametrize(("argv", "message"), [(["--reps", "0"], "--reps must be at least 1"), (["--batch-sizes", "64", "100000"], "--batch-sizes must be between 1 and")])
def test_bad_arguments_are_one_usage_error(tmp_path, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_overhead.main(["--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
