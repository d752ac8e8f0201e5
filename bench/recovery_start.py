"""Which one-shot start recovers best: a mask, or a mask with SparseGPT's updated weights.

``bench_oneshot.py`` finds that SparseGPT + recovery does not close the digits transformer's gap
to dense by half of magnitude + recovery's, although SparseGPT is far better one-shot. This
separates SparseGPT's two changes. From the same dense model and calibration set as
``bench_oneshot.py``, each row is a one-shot start, then the same recovery finetune
(``bench_oneshot.RECOVERY``) for each number of steps:

- ``magnitude``: the magnitude mask on the dense weights;
- ``SparseGPT``: its mask and its updated kept weights;
- ``SparseGPT's mask, dense weights``: the same mask on the dense weights (no update).

Each cell is the test accuracy and, in brackets, the test cross-entropy. Writes
``recovery_start.json`` and ``recovery_start.md`` (generated from the JSON).

    python bench/recovery_start.py --out /tmp/recovery-start
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sparse24
from sparse24.bench import oneshot_models as models
from sparse24.bench._common import environment, header, write_results
from sparse24.bench.bench_oneshot import CALIBRATION, RECOVERY, recover, sparsify_row

CLASSIFIERS = ("digits-transformer", "digits-resnet", "vit-digits")


def _starts(name: str) -> dict[str, torch.nn.Module]:
    dense = models.load(name)
    calibration = models.calibration_batches(name, CALIBRATION["batches"], CALIBRATION["seed"], batch_size=CALIBRATION["batch_size"])
    magnitude, solved = copy.deepcopy(dense), copy.deepcopy(dense)
    sparsify_row(name, magnitude, "magnitude", {}, calibration)
    sparsify_row(name, solved, "sparsegpt", {}, calibration)
    mask_only = copy.deepcopy(dense)
    sparse24.load_masks(mask_only, {k: v for k, v in solved.state_dict().items() if k.endswith(sparse24.MASK_SUFFIX)})  # zeroes the pruned weights
    return {"dense": dense, "magnitude": magnitude, "SparseGPT": solved, "SparseGPT's mask, dense weights": mask_only}


def _cell(name: str, model: torch.nn.Module) -> dict[str, float]:
    evaluation = models.evaluate(name, model)
    return {"accuracy": float(evaluation["value"]), "cross_entropy": float(evaluation["cross_entropy"])}


def measure(name: str, steps: list[int]) -> dict[str, Any]:
    starts = _starts(name)
    dense = starts.pop("dense")
    rows: dict[str, dict[str, Any]] = {"dense": {"0": _cell(name, dense)}}
    for row, start in starts.items():
        sparse24.verify(start)
        rows[row] = {"0": _cell(name, start)}
        for count in steps:
            model = copy.deepcopy(start)
            recover(name, model, dense, count)
            sparse24.verify(model)
            rows[row][str(count)] = _cell(name, model)
    return {"model": name, "steps": steps, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [*header("Which one-shot start recovers best (test accuracy %, test cross-entropy in brackets)", results, f"; took {results['seconds']:.0f} s"), ""]
    recovery = {k: v for k, v in results["recovery"].items() if k != "steps"}
    lines += [f"Model {results['model']}; calibration {results['calibration']}; recovery as bench_oneshot.py ({recovery}) for each number of steps.", ""]
    columns = ["0", *(str(s) for s in results["steps"])]
    lines += ["| start | " + " | ".join("one-shot" if c == "0" else f"after {c} steps" for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row, cells in results["rows"].items():
        lines.append(f"| {row} | " + " | ".join(f"{cells[c]['accuracy']:.2f} ({cells[c]['cross_entropy']:.4f})" if c in cells else "" for c in columns) + " |")
    lines += ["", "Generated from recovery_start.json.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--model", default="digits-transformer", choices=CLASSIFIERS)
    parser.add_argument("--steps", type=int, nargs="+", default=[RECOVERY["steps"], 3 * RECOVERY["steps"]])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.steps):
        parser.error("--steps must be positive")
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
        **measure(args.model, sorted(set(args.steps))),
    }
    results["seconds"] = time.perf_counter() - start
    print(write_results(out, "recovery_start", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
