"""bench_oneshot's targets and table, from synthetic results (the real run trains models for minutes)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from sparse24.axes import gemm_columns, gemm_matrix, gemm_weights
from sparse24.bench import bench_oneshot, oneshot_ablation
from sparse24.bench._common import peak_memory
from sparse24.calibrate import gather
from sparse24.mask import prune_


def results(lm_sparsegpt: float) -> dict:
    rows = {
        "dense": {"oneshot": 98.0, "recovered": 98.0},
        "magnitude": {"oneshot": 90.0, "recovered": 94.0, "calibration_x_forward": 0.0, "peak_bytes": 2**20, "peak_x_forward": 0.5},
        "Taylor (squared)": {"oneshot": 90.5, "recovered": 95.0, "calibration_x_forward": 2.0, "peak_bytes": 3 * 2**20, "peak_x_forward": 1.5},
        "Taylor (squared, per sample)": {"oneshot": 91.0, "recovered": 95.0, "calibration_x_forward": 3.0, "peak_bytes": 3 * 2**20, "peak_x_forward": 1.5},
        "Taylor (model Fisher, per sample)": {"oneshot": 91.5, "recovered": 95.0, "calibration_x_forward": 3.0, "peak_bytes": 3 * 2**20, "peak_x_forward": 1.5},
        "Wanda": {"oneshot": 92.0, "recovered": 96.0, "calibration_x_forward": 1.0, "peak_bytes": 2 * 2**20, "peak_x_forward": 1.0},
        "SparseGPT": {"oneshot": 96.0, "recovered": 97.0, "calibration_x_forward": 4.0, "peak_bytes": 5 * 2**20, "peak_x_forward": 2.5},
    }
    lm = {k: {**v} for k, v in rows.items()}
    for row, ppl in (("dense", 3.0), ("magnitude", 9.0), ("Taylor (squared)", 8.5), ("Taylor (squared, per sample)", 8.0), ("Taylor (model Fisher, per sample)", 7.5), ("Wanda", 6.0), ("SparseGPT", lm_sparsegpt)):
        lm[row]["oneshot"] = ppl
        lm[row]["recovered"] = 3.0 + (ppl - 3.0) / 4
    return {
        "command": bench_oneshot.COMMAND,
        "environment": {"cpu": "x86_64", "cpu_threads": 2, "torch": "2.13.0", "sparse24": "0.1.0", "git_commit": "abc", "date": "2026-12-01"},
        "seconds": 1.0,
        "calibration": bench_oneshot.CALIBRATION,
        "recovery": bench_oneshot.RECOVERY,
        "models": {
            "digits-transformer": {"metric": "accuracy", "higher_is_better": True, "policy": "any", "layers": 10, "rows": rows, "forward_s": 0.1, "forward_peak_bytes": 2 * 2**20, "peak_source": "VmHWM"},
            "gpt2-stdlib": {"metric": "perplexity", "higher_is_better": False, "policy": "tensorrt", "layers": 8, "rows": lm},
        },
    }


def test_targets_follow_each_metric_direction() -> None:
    verdicts = {d: met for d, met, _ in bench_oneshot.targets(results(lm_sparsegpt=4.0))}
    assert all(verdicts.values())
    verdicts = {d: met for d, met, _ in bench_oneshot.targets(results(lm_sparsegpt=7.0))}  # perplexity: higher is worse
    assert verdicts["gpt2-stdlib: SparseGPT one-shot beats Wanda"] is False
    assert verdicts["gpt2-stdlib: SparseGPT + recovery closes >= half the gap of magnitude + recovery"] is False


def test_table_lists_every_row_and_every_target() -> None:
    text = bench_oneshot.markdown(results(lm_sparsegpt=4.0))
    assert "## gpt2-stdlib (perplexity, lower is better; 8 layers 2:4, policy tensorrt)" in text
    assert "| SparseGPT | 96.00 | 97.00 | 4.0 | 5.0 (2.5) |" in text
    assert "One forward pass over the calibration set: 0.100 s, peak 2.0 MiB above its start (VmHWM)." in text
    assert "- digits-transformer: Taylor (model Fisher, per sample) one-shot >= magnitude: 91.50 vs 90.00: **met**" in text
    assert "- gpt2-stdlib: calibration peak memory measured: 6 of 6 rows: **met**" in text
    assert text.count("**met**") == 14 and "NOT met" not in text
    assert "cross-entropy" not in text
    data = results(lm_sparsegpt=4.0)
    data["models"]["digits-transformer"]["rows"]["magnitude"]["recovered"] = 98.0
    assert "not measurable: magnitude + recovery is already at dense: **n/a**" in bench_oneshot.markdown(data)


def test_classifier_cells_carry_the_test_cross_entropy() -> None:
    data = results(lm_sparsegpt=4.0)
    rows = data["models"]["digits-transformer"]["rows"]
    for row in rows.values():
        row.update(oneshot_cross_entropy=0.25, recovered_cross_entropy=0.125)
    text = bench_oneshot.markdown(data)
    assert "| SparseGPT | 96.00 (0.250) | 97.00 (0.125) | 4.0 | 5.0 (2.5) |" in text
    assert text.count("In brackets: the test cross-entropy") == 1  # the LM's perplexity needs none


def test_the_calibration_sweep_is_tabled_and_judged_per_size() -> None:
    data = results(lm_sparsegpt=4.0)
    data["models"]["digits-transformer"]["rows"]["Taylor (model Fisher, per sample)"]["calibration_s"] = 0.5
    data["models"]["digits-transformer"]["rows"]["Wanda"]["calibration_s"] = 0.25
    data["models"]["digits-transformer"]["calibration_sweep"] = {
        "Taylor (model Fisher, per sample)": {"128": {"oneshot": 89.0, "calibration_s": 2.0}},
        "Wanda": {"128": {"oneshot": 93.0, "calibration_s": 1.0}},
    }
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["digits-transformer: Taylor (model Fisher, per sample) one-shot >= magnitude with 128 calibration batches"] == (False, "89.00 vs 90.00")
    assert not any("Wanda" in d and "calibration batches" in d for d in verdicts)  # only Taylor has a target per size
    text = bench_oneshot.markdown(data)
    assert "| row | 32 batches | 128 batches |" in text
    assert "| magnitude (no calibration) | 90.00 | 90.00 |" in text
    assert "| Taylor (model Fisher, per sample) | 91.50 (0.5 s) | 89.00 (2.0 s) |" in text
    assert "| Wanda | 92.00 (0.2 s) | 93.00 (1.0 s) |" in text
    assert "with 128 calibration batches: 89.00 vs 90.00: **NOT met**" in text


def _seeded(data: dict, shifts: tuple[float, ...]) -> dict:
    """digits-transformer as trained models whose one-shot figures differ by ``shifts`` (Wanda's only), combined."""
    runs = {}
    for seed, shift in enumerate(shifts):
        run = copy.deepcopy(data["models"]["digits-transformer"])
        run["rows"]["Wanda"]["oneshot"] += shift
        run["rows"]["Wanda"]["recovered"] += shift / 2
        run["rows"]["Taylor (model Fisher, per sample)"]["calibration_s"] = 0.5
        run["calibration_sweep"] = {"Taylor (model Fisher, per sample)": {"128": {"oneshot": 91.0 + shift, "calibration_s": 2.0}}}
        run["trained"] = {"threads": 1 + seed, "train_seconds": 20.4}
        runs[str(seed)] = run
    return bench_oneshot.combine(runs)


def test_trained_models_are_averaged_and_counted() -> None:
    data = results(lm_sparsegpt=4.0)
    one = _seeded(data, (0.0,))
    assert one["rows"]["Wanda"]["oneshot"] == 92.0 and "oneshot_std" not in one["rows"]["Wanda"]
    data["models"]["digits-transformer"] = _seeded(data, (-4.0, 1.0, 6.0))  # Wanda 88, 93, 98: beats magnitude (90) on two
    model = data["models"]["digits-transformer"]
    wanda = model["rows"]["Wanda"]
    assert wanda["oneshot"] == pytest.approx(93.0) and wanda["oneshot_std"] == pytest.approx(5.0)
    assert wanda["recovered"] == pytest.approx(96.5) and wanda["recovered_std"] == pytest.approx(2.5)
    assert model["rows"]["magnitude"]["oneshot_std"] == 0.0 and model["rows"]["magnitude"]["peak_bytes"] == 2**20
    assert model["calibration_sweep"]["Taylor (model Fisher, per sample)"]["128"]["oneshot"] == pytest.approx(92.0)
    assert list(model["seeds"]) == ["0", "1", "2"]
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["digits-transformer: Wanda one-shot beats magnitude"] == (True, "93.00 vs 90.00 (means; alone, met by 2 of 3 trained models)")
    assert verdicts["digits-transformer: SparseGPT one-shot beats Wanda"] == (True, "96.00 vs 93.00 (means; alone, met by 2 of 3 trained models)")
    assert verdicts["gpt2-stdlib: SparseGPT one-shot beats Wanda"] == (True, "4.000 vs 6.000")  # one model: as before
    text = bench_oneshot.markdown(data)
    assert "3 models trained from seeds 0, 1, 2: each figure is their mean, ± the standard deviation over them." in text
    assert "| Wanda | 93.00 ± 5.00 | 96.50 ± 2.50 | 1.0 | 2.0 (1.0) |" in text
    assert "| row | seed 0 (1 thread, 20 s) | seed 1 (2 threads, 20 s) | seed 2 (3 threads, 20 s) |" in text
    assert "| Wanda | 88.00 | 93.00 | 98.00 |" in text and "| dense | 98.00 | 98.00 | 98.00 |" in text
    assert text.count("One-shot on each trained model") == 1  # gpt2-stdlib has one
    assert "(of 4, calibration seed 0; 32 is the table above; means over the trained models; seconds in brackets)" in text


def test_a_target_not_measurable_on_some_trained_models_says_so() -> None:
    data = results(lm_sparsegpt=4.0)
    data["models"]["digits-transformer"]["rows"]["magnitude"]["recovered"] = 97.0  # gap 1.0; SparseGPT's 1.0
    data["models"]["digits-transformer"] = _seeded(data, (0.0, 0.0))
    data["models"]["digits-transformer"]["seeds"]["1"]["rows"]["magnitude"]["recovered"] = 98.0  # at dense: no gap to close
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["digits-transformer: SparseGPT + recovery closes >= half the gap of magnitude + recovery"] == (
        False, "gap 1.00 vs 1.00 (means; alone, met by 0 of 1 trained models, 1 not measurable)")
    data["models"]["digits-transformer"] = _seeded(results(lm_sparsegpt=4.0), (0.0, 0.0))
    for run in data["models"]["digits-transformer"]["seeds"].values():
        run["rows"]["magnitude"]["recovered"] = 98.0
    data["models"]["digits-transformer"]["rows"]["magnitude"]["recovered"] = 98.0
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["digits-transformer: SparseGPT + recovery closes >= half the gap of magnitude + recovery"] == (
        None, "not measurable: magnitude + recovery is already at dense (means; on each trained model alone too)")


@pytest.mark.parametrize("seeds", ["", "0,x", "-1", ","])
def test_bad_train_seeds_are_one_clear_error(tmp_path, capsys, seeds) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_oneshot.main(["--out", str(tmp_path), "--train-seeds", seeds])
    assert stopped.value.code == 2
    assert "argument --train-seeds: comma-separated non-negative ints" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_batchnorm_column_is_tabled_and_ranked_where_measured() -> None:
    data = results(lm_sparsegpt=4.0)
    for i, values in enumerate(data["models"]["digits-transformer"]["rows"].values()):
        values.update(oneshot_bn=97.0 + i / 10, oneshot_bn_cross_entropy=0.5)
    data["models"]["digits-transformer"]["rows"]["Wanda"]["oneshot_bn"] = 96.0  # below magnitude's 97.1
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["digits-transformer: Wanda one-shot beats magnitude"] == (True, "92.00 vs 90.00")
    assert verdicts["digits-transformer: Wanda one-shot with BatchNorm re-estimated beats magnitude"] == (False, "96.00 vs 97.10")
    assert verdicts["digits-transformer: SparseGPT one-shot with BatchNorm re-estimated beats Wanda"] == (True, "97.60 vs 96.00")
    assert not any("BatchNorm" in d for d in verdicts if d.startswith("gpt2-stdlib"))
    text = bench_oneshot.markdown(data)
    assert "| row | one-shot | one-shot, BatchNorm re-estimated | after recovery | calibration (x forward) | peak memory, MiB (x forward) |" in text
    assert "| Wanda | 92.00 | 96.00 (0.500) | 96.00 | 1.0 | 2.0 (1.0) |" in text
    assert "| row | one-shot | after recovery | calibration (x forward) | peak memory, MiB (x forward) |" in text  # the LM's
    data["models"]["digits-transformer"] = _seeded(data, (0.0, 1.0))
    text = bench_oneshot.markdown(data)
    assert "One-shot / with BatchNorm re-estimated on each trained model" in text and "| Wanda | 92.00 / 96.00 | 93.00 / 96.00 |" in text
    assert "| Wanda | 92.50 ± 0.71 | 96.00 ± 0.00 (0.500) |" in text


def test_a_row_without_peak_memory_fails_that_target() -> None:
    data = results(lm_sparsegpt=4.0)
    data["models"]["gpt2-stdlib"]["rows"]["Wanda"]["peak_bytes"] = None
    verdicts = {d: (met, evidence) for d, met, evidence in bench_oneshot.targets(data)}
    assert verdicts["gpt2-stdlib: calibration peak memory measured"] == (False, "5 of 6 rows")
    assert "| Wanda | 6.000 | 3.750 | 1.0 |  |" in bench_oneshot.markdown(data)


def test_peak_memory_sees_a_large_allocation() -> None:
    """The CPU peak (VmHWM reset per block) of a block that allocates and frees 64 MiB is about 64 MiB; an empty block's about 0."""
    with peak_memory() as big:
        block = torch.ones(16 * 2**20)  # 64 MiB of float32
        del block
    with peak_memory() as empty:
        pass
    if big.bytes is None:
        pytest.skip("peak resident set not resettable here (needs Linux /proc/self/clear_refs)")
    assert big.source == "VmHWM"
    assert 60 * 2**20 <= big.bytes <= 80 * 2**20
    assert empty.bytes < 8 * 2**20


def test_table_only_without_results_is_one_clear_error(tmp_path, capsys) -> None:
    assert bench_oneshot.main(["--out", str(tmp_path), "--table-only"]) == 2
    assert "no results to read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_ablation_error_is_the_output_error_on_the_calibration_inputs() -> None:
    """oneshot_ablation.relative_error from H = X^T X equals ||(W - W_hat) X||^2 / ||W X||^2 computed from X itself; its diagonal part from ||X_j||^2."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3, padding=1, bias=False)
    data = [torch.randn(2, 8, 5, 5) + 1.0 for _ in range(3)]  # correlated columns (a shared mean)
    (weight,) = gemm_weights(conv)
    stats, _ = gather(conv, [weight], "hessian", data, progress=False)
    hessian = stats[id(conv.weight)]
    dense = conv.weight.detach().clone()
    pruned = dense.clone()
    prune_(pruned, 1)
    x = torch.cat([gemm_columns(weight, (batch,))[0] for batch in data])  # [tokens, d]

    def out(w: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(torch.cat(data), w, padding=1)

    expected = float((out(dense) - out(pruned)).square().sum() / out(dense).square().sum())
    assert oneshot_ablation.relative_error(weight, dense, pruned, hessian) == pytest.approx(expected, rel=1e-4)
    delta = gemm_matrix(weight, dense - pruned)[0]
    diagonal = float((delta.square() * x.square().sum(0)).sum() / out(dense).square().sum())
    assert oneshot_ablation.relative_error(weight, dense, pruned, hessian, diagonal=True) == pytest.approx(diagonal, rel=1e-4)
    assert diagonal != pytest.approx(expected, rel=1e-2)  # the inputs are correlated: the diagonal part is not the error


def test_ablation_input_norm_spread_is_over_the_live_im2col_columns() -> None:
    """max / median of the input columns' norms, from H's diagonal, over every GEMM part, leaving out columns never non-zero."""
    conv = nn.Conv2d(8, 4, 3, groups=2, bias=False)
    data = [torch.randn(2, 8, 5, 5) * torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 9]).view(1, 8, 1, 1) for _ in range(3)]
    (weight,) = gemm_weights(conv)
    stats, _ = gather(conv, [weight], "hessian", data, progress=False)
    norms = torch.cat([torch.cat(parts).norm(dim=0) for parts in zip(*(gemm_columns(weight, (x,)) for x in data))])
    live = norms[norms > 0]
    assert len(live) == 7 * 9  # channel 0 is dead at every kernel position
    spread = oneshot_ablation.input_norm_spread(stats[id(conv.weight)])
    assert spread == pytest.approx(float(live.max() / live.median()), rel=1e-4) and spread > 5  # channel 7, in the second group
    with pytest.raises(ValueError, match="no input column of this layer was ever non-zero"):
        oneshot_ablation.input_norm_spread(torch.zeros(1, 4, 4))


@pytest.mark.parametrize("name", ["digits-transformer", "digits-resnet"])
def test_run_model_on_a_tiny_model_measures_every_row(monkeypatch, name) -> None:
    """The real path (sparsify each row, verify, recover, evaluate) on a tiny untrained model; the other tests use
    synthetic results. The CNN's rows also have the one-shot with BatchNorm re-estimated."""
    from sparse24.bench import oneshot_models as om

    loaded = []

    def load(name, recipe):
        loaded.append(recipe.seed)
        return om.build(name, recipe=dataclasses.replace(om.TINY[name], seed=recipe.seed)).eval()

    monkeypatch.setattr(om, "load", load)
    result = bench_oneshot.run_model(name, 2, seed=1)
    assert loaded == [1]  # the model trained from that seed
    assert list(result["rows"]) == ["dense", *(row + suffix for row in bench_oneshot.METHODS for suffix in ("", bench_oneshot.PERMUTED))]
    for row, values in result["rows"].items():
        assert 0 <= values["oneshot"] <= 100 and 0 <= values["recovered"] <= 100, row
        assert values["oneshot_cross_entropy"] > 0 and values["recovered_cross_entropy"] > 0, row
        assert ("oneshot_bn_cross_entropy" in values) == (name == "digits-resnet"), row
        if row != "dense":
            assert values["sparse_layers"] == result["layers"] > 0 and values["calibration_s"] > 0, row


def test_padding_bench_cuts_and_pads_the_windows() -> None:
    from sparse24.bench import oneshot_padding

    windows = [torch.randint(1, 256, (4, 32)) for _ in range(3)]
    padded, alone = oneshot_padding.padded_batches(windows, seed=0, min_length=8)
    assert len(padded) == 3 and len(alone) == 12
    for window, batch in zip(windows, padded):
        mask = batch["attention_mask"]
        lengths = mask.sum(1)
        assert (lengths >= 8).all() and (lengths <= 32).all() and lengths.min() < 32  # cut, some of them
        assert torch.equal(mask, (torch.arange(32) < lengths[:, None]).long())  # right padding
        assert torch.equal(batch["input_ids"][mask.bool()], window[mask.bool()]) and (batch["input_ids"][~mask.bool()] == 0).all()
    assert [a["input_ids"].shape[1] for a in alone] == [int(n) for b in padded for n in b["attention_mask"].sum(1)]
    assert torch.equal(alone[0]["input_ids"][0], windows[0][0, : alone[0]["input_ids"].shape[1]])


def test_padding_bench_baseline_counts_every_position_and_restores() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    import sparse24
    from sparse24.bench import oneshot_padding

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=64, n_layer=1, n_head=4, n_positions=32))
    padded, _ = oneshot_padding.padded_batches([torch.randint(1, 96, (3, 16)) for _ in range(2)], seed=0, min_length=4)
    with oneshot_padding.pads_included():
        included = sparse24.sparsify(copy.deepcopy(model), "wanda", data=padded, progress=False)
    left_out = sparse24.sparsify(copy.deepcopy(model), "wanda", data=padded, progress=False)
    assert not any("padding" in note for note in included.notes)
    assert any(note.startswith("the input statistics leave out padding") for note in left_out.notes)
    taylor = oneshot_padding.METHODS["Taylor (model Fisher, per sample, pairs)"][1]
    with oneshot_padding.pads_included():
        included = sparse24.sparsify(copy.deepcopy(model), "taylor", data=padded, progress=False, **taylor)
    left_out = sparse24.sparsify(copy.deepcopy(model), "taylor", data=padded, progress=False, **taylor)
    assert not any("padding" in note for note in included.notes)
    assert any(note.startswith("the model Fisher's draws leave out padding") for note in left_out.notes)


def test_padding_bench_table() -> None:
    from sparse24.bench import oneshot_padding

    rows = {row: {m: {"perplexity": 6.0 + i + j / 10, "seconds": 1.0, "notes": ["the input statistics leave out padding: 5 of 10 token positions (attention_mask == 0)"] if "left out" in row else []} for j, m in enumerate(oneshot_padding.METHODS)} for i, row in enumerate(oneshot_padding.ROWS)}
    results = {
        "command": "python bench/oneshot_padding.py", "environment": {"cpu": "x86_64", "cpu_threads": 2, "torch": "2.13.0", "sparse24": "0.1.0", "git_commit": "abc", "date": "2026-12-02"},
        "seconds": 3.0, "batches": 32, "seed": 0, "min_length": 16,
        "result": {"dense": 5.0, "magnitude": 7.0, "positions": 100, "tokens": 60, "rows": rows},
    }
    text = oneshot_padding.markdown(results)
    assert "60 tokens in 100 positions (40.0% padding). Dense 5.000, magnitude 7.000." in text
    assert "| calibration data | wanda | sparsegpt | Taylor (model Fisher, per sample, pairs) |" in text
    assert "| padded, pads left out | 7.000 | 7.100 | 7.200 |" in text and "| each sequence alone | 9.000 | 9.100 | 9.200 |" in text
    assert "The reports' notes: the input statistics leave out padding: 5 of 10 token positions (attention_mask == 0)." in text
