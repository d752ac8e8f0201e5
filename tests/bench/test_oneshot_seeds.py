"""oneshot_seeds' paired comparisons and table, from synthetic runs (the real run trains 30 models)."""

from __future__ import annotations

import pytest

from sparse24.bench import oneshot_seeds


@pytest.mark.parametrize(("wins", "losses", "p"), [(10, 0, 2 / 1024), (0, 10, 2 / 1024), (5, 5, 1.0), (8, 2, 2 * (1 + 10 + 45) / 1024), (0, 0, 1.0), (1, 0, 1.0)])
def test_sign_test_is_the_exact_two_sided_binomial(wins: int, losses: int, p: float) -> None:
    assert oneshot_seeds.sign_test(wins, losses) == pytest.approx(p)


def test_paired_counts_ties_and_follows_the_metric_direction() -> None:
    accuracy = oneshot_seeds.paired([90.0, 91.0, 92.0], [89.0, 91.0, 93.0], higher_is_better=True)
    assert (accuracy["wins"], accuracy["ties"], accuracy["losses"]) == (1, 1, 1)
    assert accuracy["mean"] == pytest.approx(0.0)
    loss = oneshot_seeds.paired([0.1, 0.2], [0.3, 0.5], higher_is_better=False)  # lower cross-entropy wins
    assert (loss["wins"], loss["losses"]) == (2, 0)
    assert loss["mean"] == pytest.approx(0.25)
    assert loss["standard_error"] == pytest.approx(0.05)


def _run(magnitude: float, wanda: float, sparsegpt: float, recovered: tuple[float, float] | None = None) -> dict:
    taylor = oneshot_seeds.TAYLOR
    rows = {"dense": 98.0, "magnitude": magnitude, taylor: magnitude - 1, f"{taylor}, 128 batches": magnitude + 0.5, "Wanda": wanda, "SparseGPT": sparsegpt}
    run = {row: {"accuracy": value, "cross_entropy": (100 - value) / 100} for row, value in rows.items()}
    if recovered is not None:
        run["magnitude"]["recovered"] = {"accuracy": recovered[0], "cross_entropy": 0.1}
        run["SparseGPT"]["recovered"] = {"accuracy": recovered[1], "cross_entropy": 0.1}
    return run


def test_compare_judges_each_pair_and_the_half_gap_per_model() -> None:
    runs = {"0": _run(90, 92, 96, (96, 97.5)), "1": _run(91, 90, 95, (97, 96)), "2": _run(92, 92, 97, (98, 98))}
    found = oneshot_seeds.compare(runs)
    wanda = found["Wanda vs magnitude"]["accuracy"]
    assert (wanda["wins"], wanda["ties"], wanda["losses"]) == (1, 1, 1)
    assert found["SparseGPT vs Wanda"]["accuracy"]["wins"] == 3
    assert found["Taylor (model Fisher, per sample, pairs) vs magnitude"]["cross_entropy"]["losses"] == 3
    assert found["Taylor (model Fisher, per sample, pairs), 128 batches vs magnitude"]["accuracy"]["wins"] == 3
    # gaps: 2 -> 0.5 (closed), 1 -> 2 (not), none to close on the third
    assert found["SparseGPT + recovery closes >= half the gap of magnitude + recovery"] == {"met": 1, "judged": 2, "models": 3}


def test_table_shows_every_row_and_comparison() -> None:
    runs = {str(seed): _run(90 + seed, 91 + seed, 96, (96, 97.5)) for seed in range(3)}
    results = {
        "command": "python bench/oneshot_seeds.py", "seconds": 1.0, "seeds": 3, "recovery_steps": 100,
        "environment": {"cpu": "x86_64", "cpu_threads": 1, "torch": "2.13.0", "sparse24": "0.1.0", "git_commit": "abc", "date": "2026-12-03"},
        "models": {"digits-transformer": {"runs": runs, "comparisons": oneshot_seeds.compare(runs)}},
    }  # fmt: skip
    text = oneshot_seeds.markdown(results)
    assert "## digits-transformer (3 trained models)" in text
    assert "| Wanda | 92.00 ± 1.00 | 0.080 ± 0.010 |" in text
    assert "| Wanda vs magnitude | 3 / 0 / 0 | +1.00 ± 0.00 | 0.250 |" in text
    assert "closes >= half of magnitude + recovery's gap to dense on 3 of 3 trained models." in text


@pytest.mark.parametrize(("argv", "message"), [(["--models", "gpt2-stdlib"], "unknown model gpt2-stdlib"), (["--seeds", "1"], "--seeds must be at least 2")])
def test_bad_arguments_are_one_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert oneshot_seeds.main(argv) == 2
    assert message in capsys.readouterr().err
