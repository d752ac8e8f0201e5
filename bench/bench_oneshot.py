"""One-shot 2:4 quality by criterion, and after the same short recovery finetune, on several model families.

Models (:mod:`sparse24.bench.oneshot_models`, trained here and cached): the demo CNN and transformer
on the digits, a ViT on the digits, and a GPT-2-architecture byte-level LM on Python's
standard library (perplexity on held-out files). Rows: dense; magnitude; Taylor (squared,
batch gradients; per sample with the data's labels: the empirical Fisher; per sample with the
model's own predictive distribution: the true Fisher, ``labels="model"``, per weight and by
pattern with ``pairs=True``); Wanda; SparseGPT; each also with channel permutation.
Columns per model: one-shot quality, quality after a short recovery finetune with distillation
from the dense model (the same recipe for every row), and the calibration time and peak memory
(:func:`sparse24.bench._common.peak_memory`) relative to one forward pass over the calibration
set; for a model with BatchNorm (the CNN), also the one-shot quality once its BatchNorm
statistics are re-estimated on the calibration batches. Then the data-aware rows once more,
one-shot only, with 128 calibration batches
(``--no-sweep`` skips them): gradient-based scores need more data than input statistics.
Writes ``oneshot.json`` and ``oneshot.md`` (generated from the JSON).

    python bench/bench_oneshot.py --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sparse24
from sparse24.bench import oneshot_models as models
from sparse24.batchnorm import batchnorms
from sparse24.bench._common import environment, header, peak_memory, write_results
from sparse24.calibrate import run_batches

logger = logging.getLogger(__name__)

COMMAND = "python bench/bench_oneshot.py --out bench/results"
MODELS = ("digits-resnet", "digits-transformer", "vit-digits", "gpt2-stdlib")  # the default run (oneshot.md)
OPTIONAL = ("moe-stdlib",)  # run with --models (its own --out: bench/results/moe)
# the models each row is measured on: the digits models train in seconds, the LMs in minutes
TRAIN_SEEDS = {"digits-resnet": (0, 1, 2), "digits-transformer": (0, 1, 2), "vit-digits": (0, 1, 2), "gpt2-stdlib": (0,), "moe-stdlib": (0,)}
POLICY = {"digits-resnet": "tensorrt", "digits-transformer": "any", "vit-digits": "any", "gpt2-stdlib": "tensorrt", "moe-stdlib": "tensorrt"}
METHODS = {  # row -> (method, options); each also with channel permutation ("+ permutation")
    "magnitude": ("magnitude", {}),
    "Taylor (squared)": ("taylor", {"squared": True}),
    "Taylor (squared, per sample)": ("taylor", {"squared": True, "per_sample": True}),
    "Taylor (model Fisher, per sample)": ("taylor", {"squared": True, "per_sample": True, "labels": "model"}),
    "Taylor (model Fisher, per sample, pairs)": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "pairs": True}),
    "Wanda": ("wanda", {}),
    "SparseGPT": ("sparsegpt", {}),
}
PERMUTED = " + permutation"
CALIBRATION = {"batches": 32, "batch_size": 4, "seed": 0}
# one-shot only, with more calibration batches (the same seed and batch size): how each data-aware row scales
MORE_CALIBRATION = (128,)
SWEPT = ("Taylor (model Fisher, per sample)", "Taylor (model Fisher, per sample, pairs)", "Wanda", "SparseGPT")
RECOVERY = {"steps": 100, "lr": 1e-4, "warmup_steps": 10, "temperature": 2.0, "alpha": 0.5, "seed": 0}


def _measured(name: str, model: torch.nn.Module, stage: str, evaluation: dict[str, Any] | None = None) -> dict[str, float]:
    """``{stage: quality}``, and ``{stage}_cross_entropy`` for a classifier (the test loss, finer than its accuracy)."""
    evaluation = models.evaluate(name, model) if evaluation is None else evaluation
    found = {stage: float(evaluation["value"])}
    if "cross_entropy" in evaluation:
        found[f"{stage}_cross_entropy"] = float(evaluation["cross_entropy"])
    return found


def recover(name: str, model: torch.nn.Module, dense: torch.nn.Module, steps: int, *, lr: float | None = None) -> None:
    """The short recovery finetune every row gets (:data:`RECOVERY`, distilled from ``dense``; ``lr`` overrides its learning rate), in place."""
    options = {k: v for k, v in RECOVERY.items() if k != "steps"}
    if lr is not None:
        options["lr"] = lr
    sparse24.finetune(model, models.finetune_batches(name, steps, RECOVERY["seed"]), loss_fn=models.loss_fn(name), teacher=dense, steps=steps, progress=False, **options)


def _warm_up() -> None:
    """Every method once (with and without permutation) on a tiny model, unmeasured: the first model's
    first row must not carry the process's one-time costs (lazy imports, first-use caches)."""
    torch.manual_seed(0)
    data = [torch.randn(8, 32) for _ in range(2)]
    for method, options in METHODS.values():
        for permute in (False, True):
            tiny = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
            if options.get("labels") == "model":
                options = {**options, "logits_fn": lambda m, x: m(x)}
            loss = (lambda m, x: m(x).square().mean()) if method == "taylor" and "logits_fn" not in options else None
            sparse24.sparsify(tiny, method, data=None if method == "magnitude" else data, loss_fn=loss, policy="any", permute=permute, progress=False, **options)


def sparsify_row(name: str, model: torch.nn.Module, method: str, options: dict[str, Any], calibration: list, *, permute: bool = False) -> Any:
    """One row's ``sparsify`` on ``model``: magnitude without data; the true Fisher (``labels="model"``) reads the logits, not the loss."""
    model_labels = options.get("labels") == "model"
    if model_labels:
        options = {**options, "logits_fn": models.logits_fn(name)}
    data = None if method == "magnitude" else calibration
    loss = None if method == "magnitude" or model_labels else models.loss_fn(name)
    return sparse24.sparsify(model, method, data=data, loss_fn=loss, policy=POLICY[name], permute=permute, progress=False, **options)


def train_seeds(text: str) -> tuple[int, ...]:
    """``--train-seeds``: comma-separated non-negative ints, each once (an argparse ``type``)."""
    try:
        seeds = tuple(dict.fromkeys(int(seed) for seed in text.split(",")))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"comma-separated non-negative ints, got {text!r}")
    return seeds


def trained(name: str, seed: int) -> dict[str, Any]:
    """What the cache recorded when this model was trained (the thread count changes the model too)."""
    record = models.info(name, recipe=models.seeded(name, seed))
    return {key: record.get(key) for key in ("threads", "train_seconds", "load_average", "torch", "date")}


def run_model(name: str, recovery_steps: int, seed: int = 0) -> dict[str, Any]:
    """Every row on ``name`` trained with ``seed``: one-shot and recovered quality, calibration time and peak memory."""
    dense = models.load(name, recipe=models.seeded(name, seed))
    loss = models.loss_fn(name)
    calibration = models.calibration_batches(name, CALIBRATION["batches"], CALIBRATION["seed"], batch_size=CALIBRATION["batch_size"])
    times = []
    for _ in range(4):  # the first pass warms up; the median of the other 3
        start = time.perf_counter()
        run_batches(dense, calibration, loss_fn=loss, num_batches=None, what="forward", progress=False)
        times.append(time.perf_counter() - start)
    forward_s = sorted(times[1:])[1]
    device = next(dense.parameters()).device
    with peak_memory(device) as forward_peak:
        run_batches(dense, calibration, loss_fn=loss, num_batches=None, what="forward", progress=False)
    evaluation = models.evaluate(name, dense)
    rows: dict[str, Any] = {"dense": {**_measured(name, dense, "oneshot", evaluation), **_measured(name, dense, "recovered", evaluation)}}
    has_bn = bool(batchnorms(dense))
    if has_bn:
        rows["dense"].update(_bn_measured(name, dense, calibration))
    plan = [(row + suffix, method, options, bool(suffix)) for row, (method, options) in METHODS.items() for suffix in ("", PERMUTED)]
    for row, method, options, permute in plan:
        model = copy.deepcopy(dense)
        start = time.perf_counter()
        with peak_memory(device) as peak:
            report = sparsify_row(name, model, method, options, calibration, permute=permute)
        seconds = time.perf_counter() - start
        sparse24.verify(model)
        oneshot = _measured(name, model, "oneshot")
        if has_bn:
            oneshot.update(_bn_measured(name, model, calibration))
        recover(name, model, dense, recovery_steps)
        sparse24.verify(model)
        rows[row] = {
            **oneshot,
            **_measured(name, model, "recovered"),
            "calibration_s": seconds,
            "calibration_x_forward": seconds / forward_s if forward_s > 0 else None,
            "peak_bytes": peak.bytes,
            "peak_x_forward": peak.bytes / forward_peak.bytes if peak.bytes is not None and forward_peak.bytes else None,
            "sparse_layers": len(report.sparse_layers),
            "notes": list(report.notes),
        }
        logger.info("%s %s: one-shot %.3f, recovered %.3f (%.1f s)", name, row, rows[row]["oneshot"], rows[row]["recovered"], seconds)
    return {
        "metric": evaluation["metric"],
        "higher_is_better": evaluation["higher_is_better"],
        "policy": POLICY[name],
        "forward_s": forward_s,
        "forward_peak_bytes": forward_peak.bytes,
        "peak_source": forward_peak.source,
        "layers": rows["magnitude"]["sparse_layers"],
        "rows": rows,
    }


def _bn_measured(name: str, model: torch.nn.Module, calibration: list) -> dict[str, float]:
    """``oneshot_bn``: the quality of a copy of ``model`` whose BatchNorm statistics are re-estimated on the
    calibration batches (:func:`sparse24.recalibrate_batchnorm`); ``model`` itself goes on to the recovery as it is."""
    copied = copy.deepcopy(model)
    sparse24.recalibrate_batchnorm(copied, calibration, loss_fn=models.loss_fn(name), progress=False)
    return _measured(name, copied, "oneshot_bn")


def calibration_sweep(name: str, sizes: tuple[int, ...] = MORE_CALIBRATION, seed: int = 0) -> dict[str, dict[str, Any]]:
    """One-shot quality and calibration time of the :data:`SWEPT` rows with ``sizes`` calibration batches each."""
    dense = models.load(name, recipe=models.seeded(name, seed))
    found: dict[str, dict[str, Any]] = {}
    for batches in sizes:
        calibration = models.calibration_batches(name, batches, CALIBRATION["seed"], batch_size=CALIBRATION["batch_size"])
        for row in SWEPT:
            method, options = METHODS[row]
            model = copy.deepcopy(dense)
            start = time.perf_counter()
            sparsify_row(name, model, method, options, calibration)
            seconds = time.perf_counter() - start
            sparse24.verify(model)
            found.setdefault(row, {})[str(batches)] = {**_measured(name, model, "oneshot"), "calibration_s": seconds}
            logger.info("%s %s, %d calibration batches: one-shot %.3f (%.1f s)", name, row, batches, found[row][str(batches)]["oneshot"], seconds)
    return found


_STAGES = ("oneshot", "oneshot_bn", "recovered")
_AVERAGED = ("oneshot", "recovered", "oneshot_bn", "oneshot_cross_entropy", "recovered_cross_entropy", "oneshot_bn_cross_entropy", "calibration_s", "calibration_x_forward", "peak_bytes", "peak_x_forward")


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when any value is missing."""
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def combine(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One model name's results over its trained models (``{seed: run_model(...)}``, each perhaps with its
    ``calibration_sweep``): every figure averaged, each quality's ``<stage>_std`` (sample standard deviation)
    with two or more, the runs themselves under ``seeds``."""
    if not runs:
        raise ValueError("combine: no runs")
    first = next(iter(runs.values()))
    combined = {key: first[key] for key in ("metric", "higher_is_better", "policy", "peak_source", "layers")}
    for key in ("forward_s", "forward_peak_bytes"):
        combined[key] = _mean([run.get(key) for run in runs.values()])
    combined["rows"] = {}
    for row in first["rows"]:
        values = [run["rows"][row] for run in runs.values()]
        merged = {key: value for key, value in values[0].items() if key not in _AVERAGED}  # layers and notes: the first model's
        merged.update({key: _mean([v.get(key) for v in values]) for key in _AVERAGED if key in values[0]})
        if len(values) > 1:
            merged.update({f"{stage}_std": statistics.stdev(v[stage] for v in values) for stage in _STAGES if stage in values[0]})
        combined["rows"][row] = merged
    sweeps = [run.get("calibration_sweep") for run in runs.values()]
    if sweeps[0] and all(sweeps):
        combined["calibration_sweep"] = {
            row: {size: {key: _mean([sweep[row][size][key] for sweep in sweeps]) for key in values} for size, values in by_size.items()}
            for row, by_size in sweeps[0].items()
        }
    combined["seeds"] = runs
    return combined


def _better(model: dict[str, Any], a: float, b: float) -> bool:
    return a > b if model["higher_is_better"] else a < b


def _ranking(name: str, model: dict[str, Any], stage: str) -> list[tuple[str, bool | None, str]]:
    """The one-shot ranking targets on ``stage`` (``oneshot``, or ``oneshot_bn``: BatchNorm statistics re-estimated)."""
    found = []
    digits = 2 if model["higher_is_better"] else 3
    rows = model["rows"]
    what = "one-shot" if stage == "oneshot" else "one-shot with BatchNorm re-estimated"
    sgpt, wanda, mag = (rows[r][stage] for r in ("SparseGPT", "Wanda", "magnitude"))
    found.append((f"{name}: SparseGPT {what} beats Wanda", _better(model, sgpt, wanda), f"{sgpt:.{digits}f} vs {wanda:.{digits}f}"))
    found.append((f"{name}: Wanda {what} beats magnitude", _better(model, wanda, mag), f"{wanda:.{digits}f} vs {mag:.{digits}f}"))
    for row in (r for r in METHODS if r.startswith("Taylor")):
        if row in rows:
            taylor = rows[row][stage]
            found.append((f"{name}: {row} {what} >= magnitude", taylor == mag or _better(model, taylor, mag), f"{taylor:.{digits}f} vs {mag:.{digits}f}"))
    for row in METHODS:
        if row + PERMUTED in rows:
            plain, permuted = rows[row][stage], rows[row + PERMUTED][stage]
            found.append((f"{name}: permutation does not lower {row} {what} quality", permuted == plain or _better(model, permuted, plain), f"{permuted:.{digits}f} vs {plain:.{digits}f}"))
    return found


def _model_targets(name: str, model: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """One model's targets (from its ``rows`` and ``calibration_sweep``), each (description, met or None, evidence)."""
    digits = 2 if model["higher_is_better"] else 3
    rows = model["rows"]
    mag = rows["magnitude"]["oneshot"]
    found = _ranking(name, model, "oneshot")
    if all("oneshot_bn" in values for values in rows.values()):
        found += _ranking(name, model, "oneshot_bn")
    for row, by_size in model.get("calibration_sweep", {}).items():
        if row.startswith("Taylor"):
            for batches, values in by_size.items():
                taylor = values["oneshot"]
                found.append((f"{name}: {row} one-shot >= magnitude with {batches} calibration batches", taylor == mag or _better(model, taylor, mag), f"{taylor:.{digits}f} vs {mag:.{digits}f}"))
    measured = [row for row, values in rows.items() if row != "dense" and values.get("peak_bytes") is not None]
    pruned = [row for row in rows if row != "dense"]
    found.append((f"{name}: calibration peak memory measured", len(measured) == len(pruned), f"{len(measured)} of {len(pruned)} rows"))
    dense = rows["dense"]["oneshot"]
    gap_mag = max(0.0, -(rows["magnitude"]["recovered"] - dense) if model["higher_is_better"] else rows["magnitude"]["recovered"] - dense)
    gap_sgpt = max(0.0, -(rows["SparseGPT"]["recovered"] - dense) if model["higher_is_better"] else rows["SparseGPT"]["recovered"] - dense)
    if gap_mag > 0:
        found.append((f"{name}: SparseGPT + recovery closes >= half the gap of magnitude + recovery", gap_sgpt <= gap_mag / 2, f"gap {gap_sgpt:.{digits}f} vs {gap_mag:.{digits}f}"))
    else:
        found.append((f"{name}: SparseGPT + recovery closes >= half the gap of magnitude + recovery", None, "not measurable: magnitude + recovery is already at dense"))
    return found


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """The targets, each (description, met or None when it cannot be judged, evidence). With several trained
    models per name, judged on the means, and the evidence says for how many of the models alone it holds."""
    found = []
    for name, model in results["models"].items():
        seeds = model.get("seeds", {})
        if len(seeds) < 2:
            found += _model_targets(name, model)
            continue
        per_model = [{d: met for d, met, _ in _model_targets(name, run)} for run in seeds.values()]
        for description, met, evidence in _model_targets(name, model):
            verdicts = [verdict.get(description) for verdict in per_model]
            judged = [v for v in verdicts if v is not None]
            if not judged:
                found.append((description, met, f"{evidence} (means; on each trained model alone too)"))
                continue
            unjudged = f", {len(verdicts) - len(judged)} not measurable" if len(judged) < len(verdicts) else ""
            found.append((description, met, f"{evidence} (means; alone, met by {sum(judged)} of {len(judged)} trained models{unjudged})"))
    return found


def markdown(results: dict[str, Any]) -> str:
    lines = header("One-shot 2:4: criteria compared, before and after a short recovery", results, f"; took {results['seconds']:.0f} s")
    lines += [
        "",
        f"Calibration: {results['calibration']['batches']} batches of {results['calibration']['batch_size']} from each model's training data "
        f"(seed {results['calibration']['seed']}). Recovery: {results['recovery']['steps']} steps, AdamW lr {results['recovery']['lr']}, "
        f"warm-up {results['recovery']['warmup_steps']}, distillation from the dense model (KL at T={results['recovery']['temperature']}, "
        f"alpha={results['recovery']['alpha']}), the same for every row. Calibration time and peak memory are relative to one forward pass over the "
        "calibration set (no gradients). Peak memory is the peak above the level at the start of `sparsify` (or of that forward pass): the peak resident "
        "set `VmHWM`, reset through `/proc/self/clear_refs`, on the CPU (the whole process: masks, scores, autograd buffers, allocator slack; "
        "about 0.1 MiB of noise), `torch.cuda.max_memory_allocated` on a GPU. The digits models' forward pass needs well under 1 MiB, so their ratios are large "
        "and coarse; the MiB column is the comparable figure.",
        "",
    ]
    for name, model in results["models"].items():
        arrow = "higher is better" if model["higher_is_better"] else "lower is better"
        lines += [f"## {name} ({model['metric']}, {arrow}; {model['layers']} layers 2:4, policy {model['policy']})", ""]
        seeds = model.get("seeds", {})
        if len(seeds) > 1:
            lines += [f"{len(seeds)} models trained from seeds {', '.join(seeds)}: each figure is their mean, ± the standard deviation over them.", ""]
        forward_peak = model.get("forward_peak_bytes")
        if forward_peak is not None:
            lines += [f"One forward pass over the calibration set: {model['forward_s']:.3f} s, peak {_mib(forward_peak)} MiB above its start ({model['peak_source']}).", ""]
        stages = [stage for stage in _STAGES if all(stage in values for values in model["rows"].values())]
        heads = {"oneshot": "one-shot", "oneshot_bn": "one-shot, BatchNorm re-estimated", "recovered": "after recovery"}
        lines += ["| row | " + " | ".join(heads[stage] for stage in stages) + " | calibration (x forward) | peak memory, MiB (x forward) |", "|---|" + "---|" * (len(stages) + 2)]
        digits = 2 if model["higher_is_better"] else 3  # perplexities differ in the third decimal
        for row, values in model["rows"].items():
            ratio = values.get("calibration_x_forward")
            quality = [_quality(values, stage, digits) for stage in stages]
            lines.append(f"| {row} | " + " | ".join(quality) + f" | {'' if ratio is None else f'{ratio:.1f}'} | {_peak(values)} |")
        lines.append("")
        if "oneshot_bn" in stages:
            lines += [
                f"BatchNorm re-estimated: the one-shot model with its BatchNorm running statistics measured again on the {results['calibration']['batches']} "
                "calibration batches (`sparse24.recalibrate_batchnorm`, `sparsify(..., recalibrate_bn=True)`); the recovery starts from the one-shot model as it is.",
                "",
            ]
        if "oneshot_cross_entropy" in model["rows"]["dense"]:
            lines += ["In brackets: the test cross-entropy (lower is better), finer than the accuracy of a few hundred test examples.", ""]
        lines += _per_seed_table(model, digits)
        sweep = model.get("calibration_sweep")
        if sweep:
            sizes = sorted({int(b) for by_size in sweep.values() for b in by_size})
            base = results["calibration"]["batches"]
            averaged = "; means over the trained models" if len(model.get("seeds", {})) > 1 else ""
            lines += [f"One-shot with more calibration batches (of {results['calibration']['batch_size']}, calibration seed {results['calibration']['seed']}; {base} is the table above{averaged}; seconds in brackets):", ""]
            lines += ["| row | " + " | ".join(f"{b} batches" for b in [base, *sizes]) + " |", "|---|" + "---|" * (1 + len(sizes))]
            lines.append(f"| magnitude (no calibration) | " + " | ".join(f"{model['rows']['magnitude']['oneshot']:.{digits}f}" for _ in [base, *sizes]) + " |")
            for row, by_size in sweep.items():
                cells = [f"{model['rows'][row]['oneshot']:.{digits}f} ({model['rows'][row]['calibration_s']:.1f} s)"]
                cells += [f"{by_size[str(b)]['oneshot']:.{digits}f} ({by_size[str(b)]['calibration_s']:.1f} s)" if str(b) in by_size else "" for b in sizes]
                lines.append(f"| {row} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Targets", ""]
    for description, met, evidence in targets(results):
        lines.append(f"- {description}: {evidence}: **{'n/a' if met is None else 'met' if met else 'NOT met'}**")
    lines.append("")
    return "\n".join(lines)


def _quality(values: dict[str, Any], stage: str, digits: int) -> str:
    """``96.10 ± 1.20 (0.123)``: the mean, its spread over the trained models, the test cross-entropy."""
    text = f"{values[stage]:.{digits}f}"
    if f"{stage}_std" in values:
        text += f" ± {values[f'{stage}_std']:.{digits}f}"
    if f"{stage}_cross_entropy" in values:
        text += f" ({values[f'{stage}_cross_entropy']:.3f})"
    return text


def _per_seed_table(model: dict[str, Any], digits: int) -> list[str]:
    """One-shot quality on each trained model, with what each was trained with; nothing for a single model."""
    seeds = model.get("seeds", {})
    if len(seeds) < 2:
        return []

    def heading(seed: str) -> str:
        record = seeds[seed].get("trained") or {}
        threads, seconds = record.get("threads"), record.get("train_seconds")
        return f"seed {seed}" + (f" ({threads} thread{'s' if threads != 1 else ''}, {seconds:.0f} s)" if threads and seconds is not None else "")

    def cell(values: dict[str, Any]) -> str:
        return f"{values['oneshot']:.{digits}f}" + (f" / {values['oneshot_bn']:.{digits}f}" if "oneshot_bn" in values else "")

    bn = all("oneshot_bn" in run["rows"][row] for run in seeds.values() for row in run["rows"])
    lines = [f"One-shot{' / with BatchNorm re-estimated' if bn else ''} on each trained model (the training seed; the thread count it trained with, which changes the model too):", ""]
    lines += ["| row | " + " | ".join(heading(seed) for seed in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for row in model["rows"]:
        lines.append(f"| {row} | " + " | ".join(cell(run["rows"][row]) for run in seeds.values()) + " |")
    return [*lines, ""]


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _peak(values: dict[str, Any]) -> str:
    """``12.3 (4.5)``: the row's peak in MiB and relative to the forward pass; empty when not measured."""
    peak = values.get("peak_bytes")
    if peak is None:
        return ""
    ratio = values.get("peak_x_forward")
    return _mib(peak) + ("" if ratio is None else f" ({ratio:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--table-only", action="store_true", help="regenerate oneshot.md from the oneshot.json in --out, without running")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS + OPTIONAL)}")
    parser.add_argument("--recovery-steps", type=int, default=RECOVERY["steps"])
    parser.add_argument("--no-sweep", action="store_true", help=f"skip the one-shot runs with {', '.join(map(str, MORE_CALIBRATION))} calibration batches")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 times steadily on a machine others keep busy)")
    parser.add_argument("--train-seeds", type=train_seeds, help="comma-separated training seeds for every model (default: 0,1,2 for the digits models, 0 for the LMs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        if args.threads < 1:
            print(f"--threads must be a positive int, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    if args.table_only:
        source = Path(args.out) / "oneshot.json"
        if not source.is_file():
            print(f"--table-only: no results to read at {source}", file=sys.stderr)
            return 2
        results = json.loads(source.read_text(encoding="utf-8"))
        print(write_results(Path(args.out), "oneshot", results, markdown))
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS + OPTIONAL]
    if unknown:
        print(f"unknown model {unknown[0]}; choose from {', '.join(MODELS + OPTIONAL)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    command = " ".join(["python", "bench/bench_oneshot.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {"command": command, "environment": environment(), "calibration": CALIBRATION, "recovery": {**RECOVERY, "steps": args.recovery_steps}, "models": {}}
    _warm_up()
    for name in names:
        runs = {}
        for seed in args.train_seeds or TRAIN_SEEDS[name]:
            run = run_model(name, args.recovery_steps, seed)
            if not args.no_sweep:
                run["calibration_sweep"] = calibration_sweep(name, seed=seed)
            runs[str(seed)] = {**run, "trained": trained(name, seed)}
        results["models"][name] = combine(runs)
    results["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(write_results(out, "oneshot", results, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
