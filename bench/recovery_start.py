"""Which one-shot start recovers best: a mask, or a mask with SparseGPT's updated weights.

``bench_oneshot.py`` finds that SparseGPT + recovery does not close the digits transformer's gap
to dense by half of magnitude + recovery's, although SparseGPT is far better one-shot. This
separates SparseGPT's two changes. From the same dense model and calibration set as
``bench_oneshot.py``, each row is a one-shot start, then the same recovery finetune
(``bench_oneshot.RECOVERY``) for each number of steps and each learning rate (``--lrs``; the
benchmark's by default):

- ``magnitude``: the magnitude mask on the dense weights;
- ``SparseGPT``: its mask and its updated kept weights;
- ``SparseGPT's mask, dense weights``: the same mask on the dense weights (no update).

Each cell is the test accuracy and, in brackets, the test cross-entropy: the mean over the models
trained from each of ``--train-seeds`` (default 0, 1, 2, as ``bench_oneshot.py``), then each
model's own table. The validation accuracy of every cell is in a table of its own: the learning
rate a user would choose is the one best there, not on the test split. Writes
``recovery_start.json`` and ``recovery_start.md`` (generated from the JSON).

    python bench/recovery_start.py --out /tmp/recovery-start
    python bench/recovery_start.py --train-seeds 0,1,2,3,4,5,6,7,8,9 --lrs 1e-5 3e-5 1e-4 3e-4 --steps 100
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sparse24
from sparse24.bench import oneshot_models as models
from sparse24.bench._common import environment, header, write_results
from sparse24.bench.bench_oneshot import CALIBRATION, RECOVERY, TRAIN_SEEDS, recover, sparsify_row, train_seeds

CLASSIFIERS = ("digits-transformer", "digits-resnet", "vit-digits")


def _starts(name: str, seed: int = 0) -> dict[str, torch.nn.Module]:
    dense = models.load(name, recipe=models.seeded(name, seed))
    calibration = models.calibration_batches(name, CALIBRATION["batches"], CALIBRATION["seed"], batch_size=CALIBRATION["batch_size"])
    magnitude, solved = copy.deepcopy(dense), copy.deepcopy(dense)
    sparsify_row(name, magnitude, "magnitude", {}, calibration)
    sparsify_row(name, solved, "sparsegpt", {}, calibration)
    mask_only = copy.deepcopy(dense)
    sparse24.load_masks(mask_only, {k: v for k, v in solved.state_dict().items() if k.endswith(sparse24.MASK_SUFFIX)})  # zeroes the pruned weights
    return {"dense": dense, "magnitude": magnitude, "SparseGPT": solved, "SparseGPT's mask, dense weights": mask_only}


def _cell(name: str, model: torch.nn.Module) -> dict[str, float]:
    evaluation = models.evaluate(name, model)
    validation = models.evaluate(name, model, split="val")
    return {"accuracy": float(evaluation["value"]), "cross_entropy": float(evaluation["cross_entropy"]), "val_accuracy": float(validation["value"])}


def column(steps: int, lr: float) -> str:
    """The key of the cell recovered for ``steps`` at ``lr`` (``"0"`` is the one-shot start)."""
    return f"{steps}@{lr:g}"


def measure(name: str, steps: list[int], lrs: list[float], seed: int = 0) -> dict[str, Any]:
    """Every start on ``name`` trained from ``seed``, one-shot and after each number of recovery steps at each learning rate."""
    starts = _starts(name, seed)
    dense = starts.pop("dense")
    rows: dict[str, dict[str, Any]] = {"dense": {"0": _cell(name, dense)}}
    for row, start in starts.items():
        sparse24.verify(start)
        rows[row] = {"0": _cell(name, start)}
        for lr in lrs:
            for count in steps:
                model = copy.deepcopy(start)
                recover(name, model, dense, count, lr=lr)
                sparse24.verify(model)
                rows[row][column(count, lr)] = _cell(name, model)
    return {"rows": rows}


def mean_rows(seeds: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each cell's accuracy and cross-entropy averaged over the trained models."""
    runs = [run["rows"] for run in seeds.values()]
    return {
        row: {column: {key: statistics.fmean(run[row][column][key] for run in runs) for key in cell} for column, cell in cells.items()}
        for row, cells in runs[0].items()
    }


def _heading(key: str) -> str:
    if key == "0":
        return "one-shot"
    steps, lr = key.split("@")
    return f"after {steps} steps, lr {lr}"


def _value(cell: dict[str, float], validation: bool) -> str:
    return f"{cell['val_accuracy']:.2f}" if validation else f"{cell['accuracy']:.2f} ({cell['cross_entropy']:.4f})"


def _table(rows: dict[str, Any], columns: list[str], validation: bool = False) -> list[str]:
    lines = ["| start | " + " | ".join(_heading(c) for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row, cells in rows.items():
        lines.append(f"| {row} | " + " | ".join(_value(cells[c], validation) if c in cells else "" for c in columns) + " |")
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    lines = [*header("Which one-shot start recovers best (test accuracy %, test cross-entropy in brackets)", results, f"; took {results['seconds']:.0f} s"), ""]
    recovery = {k: v for k, v in results["recovery"].items() if k not in ("steps", "lr")}
    lines += [
        f"Model {results['model']}; calibration {results['calibration']}; recovery as bench_oneshot.py ({recovery}) for each number of steps, "
        f"at each learning rate ({', '.join(f'{lr:g}' for lr in results['lrs'])}).",
        "",
    ]
    columns = ["0", *(column(s, lr) for lr in results["lrs"] for s in results["steps"])]
    seeds = results["seeds"]
    mean = f"mean over the {len(seeds)} models trained from seeds {', '.join(seeds)}" if len(seeds) > 1 else f"the model trained from seed {next(iter(seeds))}"
    lines += [f"Test accuracy (cross-entropy), {mean}:", ""]
    lines += _table(results["rows"], columns)
    lines += [f"Validation accuracy, {mean} (the split to choose a learning rate on):", "", *_table(results["rows"], columns, validation=True)]
    if len(seeds) > 1:
        for seed, run in seeds.items():
            lines += [f"Trained from seed {seed}:", "", *_table(run["rows"], columns)]
    lines += ["Generated from recovery_start.json.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--model", default="digits-transformer", choices=CLASSIFIERS)
    parser.add_argument("--steps", type=int, nargs="+", default=[RECOVERY["steps"], 3 * RECOVERY["steps"]])
    parser.add_argument("--lrs", type=float, nargs="+", default=[RECOVERY["lr"]], help="recovery learning rates (default: the benchmark's)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--train-seeds", type=train_seeds, help="comma-separated training seeds (default: bench_oneshot.py's for the model)")
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.steps):
        parser.error("--steps must be positive")
    if any(not 0 < lr < 1 for lr in args.lrs):
        parser.error("--lrs must be in (0, 1)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {
        "command": " ".join(["python", "bench/recovery_start.py", *(sys.argv[1:] if argv is None else argv)]),
        "environment": environment(),
        "calibration": CALIBRATION,
        "recovery": RECOVERY,
        "model": args.model,
        "steps": sorted(set(args.steps)),
        "lrs": sorted(set(args.lrs)),
    }
    results["seeds"] = {str(seed): measure(args.model, results["steps"], results["lrs"], seed) for seed in args.train_seeds or TRAIN_SEEDS[args.model]}
    results["rows"] = mean_rows(results["seeds"])
    results["seconds"] = time.perf_counter() - start
    print(write_results(out, "recovery_start", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
