"""One-shot 2:4 on many trained models: are the criteria's differences systematic, or seed noise?

``bench_oneshot.py`` trains each digits model from 3 seeds, and its rankings are judged on their
means; the spread between the 3 is often larger than the differences between the criteria. This
script trains each digits model from ``--seeds`` seeds (cached, as the benchmark's models are),
prunes every one with the benchmark's rows (no permutation; the same 32 calibration batches of 4,
and Taylor also with 128, as in the benchmark's calibration sweep) and compares the rows model by
model, paired: wins, ties and losses, the mean difference with its standard error, and the exact
two-sided sign test (ties left out). Accuracy on the test split and the test cross-entropy (finer
than the accuracy of a few hundred examples) are compared apart.
With ``--recovery``, magnitude and SparseGPT also get the benchmark's recovery finetune, and the
half-the-gap target is judged on every model.

    python bench/oneshot_seeds.py --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sparse24.bench import oneshot_models as models
from sparse24.bench._common import environment, header, publish
from sparse24.bench.bench_oneshot import CALIBRATION, METHODS, MORE_CALIBRATION, RECOVERY, recover, sparsify_row

logger = logging.getLogger(__name__)

MODELS = ("digits-resnet", "digits-transformer", "vit-digits")
TAYLOR = "Taylor (model Fisher, per sample, pairs)"
MORE = MORE_CALIBRATION[0]  # gradient-based scores need more data than input statistics
# row -> (bench_oneshot's row, calibration batches)
ROWS = {
    "magnitude": ("magnitude", CALIBRATION["batches"]), TAYLOR: (TAYLOR, CALIBRATION["batches"]), f"{TAYLOR}, {MORE} batches": (TAYLOR, MORE),
    "Wanda": ("Wanda", CALIBRATION["batches"]), "SparseGPT": ("SparseGPT", CALIBRATION["batches"]),
}  # fmt: skip
# (row, the row it should beat): the one-shot targets
PAIRS = (("SparseGPT", "Wanda"), ("Wanda", "magnitude"), (TAYLOR, "magnitude"), (f"{TAYLOR}, {MORE} batches", "magnitude"))
RECOVERED = ("magnitude", "SparseGPT")
SEEDS = 10


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven between ``wins`` and ``losses``
    if each were a fair coin (ties are left out before)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(better: list[float], worse: list[float], higher_is_better: bool) -> dict[str, Any]:
    """``better`` against ``worse``, model by model: differences signed so that > 0 means ``better`` won."""
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (a - b) for a, b in zip(better, worse, strict=True)]
    wins, losses = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
    spread = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else float("nan")
    return {
        "wins": wins, "ties": len(differences) - wins - losses, "losses": losses,
        "mean": statistics.fmean(differences), "standard_error": spread, "sign_test_p": sign_test(wins, losses),
    }  # fmt: skip


def run_model(name: str, seed: int, recovery_steps: int | None) -> dict[str, Any]:
    """Every row once on ``name`` trained from ``seed``: accuracy and cross-entropy one-shot (and recovered)."""
    dense = models.load(name, recipe=models.seeded(name, seed)).eval()
    calibration = {n: models.calibration_batches(name, n, CALIBRATION["seed"], batch_size=CALIBRATION["batch_size"]) for n in {n for _, n in ROWS.values()}}
    found: dict[str, Any] = {"dense": _quality(models.evaluate(name, dense))}
    for row, (method_row, batches) in ROWS.items():
        method, options = METHODS[method_row]
        model = copy.deepcopy(dense)
        sparsify_row(name, model, method, options, calibration[batches])
        found[row] = _quality(models.evaluate(name, model))
        if recovery_steps and row in RECOVERED:
            recover(name, model, dense, recovery_steps)
            found[row]["recovered"] = _quality(models.evaluate(name, model))
    logger.info("%s seed %d: %s", name, seed, {row: values["accuracy"] for row, values in found.items()})
    return found


def _quality(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": float(evaluation["value"]), "cross_entropy": float(evaluation["cross_entropy"])}


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The paired comparisons over one model's trained copies (``runs``: seed -> :func:`run_model`)."""
    found: dict[str, Any] = {}
    for better, worse in PAIRS:
        found[f"{better} vs {worse}"] = {
            "accuracy": paired([r[better]["accuracy"] for r in runs.values()], [r[worse]["accuracy"] for r in runs.values()], True),
            "cross_entropy": paired([r[better]["cross_entropy"] for r in runs.values()], [r[worse]["cross_entropy"] for r in runs.values()], False),
        }
    if all("recovered" in r[row] for r in runs.values() for row in RECOVERED):
        closed = []
        for r in runs.values():
            gap_magnitude = r["dense"]["accuracy"] - r["magnitude"]["recovered"]["accuracy"]
            gap_sparsegpt = r["dense"]["accuracy"] - r["SparseGPT"]["recovered"]["accuracy"]
            closed.append(None if gap_magnitude <= 0 else gap_sparsegpt <= gap_magnitude / 2)
        judged = [c for c in closed if c is not None]
        found["SparseGPT + recovery closes >= half the gap of magnitude + recovery"] = {"met": sum(judged), "judged": len(judged), "models": len(closed)}
    return found


def markdown(results: dict[str, Any]) -> str:
    lines = header("One-shot 2:4 on many trained models: systematic differences or seed noise?", results, f"; took {results['seconds']:.0f} s")
    lines += [
        "",
        f"Each digits model trained from {results['seeds']} seeds; every copy pruned by each row (no permutation; "
        f"{CALIBRATION['batches']} calibration batches of {CALIBRATION['batch_size']}, seed {CALIBRATION['seed']}, or the number the row names, as in `bench_oneshot.py`).",
        "Paired over the trained copies: wins / ties / losses of the first row, the mean difference in its favour ± its standard error, "
        "and the exact two-sided sign test (ties left out): p < 0.05 reads as a systematic difference, a larger p as one seed noise could make.",
        "",
    ]
    for name, model in results["models"].items():
        runs = model["runs"]
        lines += [f"## {name} ({len(runs)} trained models)", "", "| row | one-shot accuracy, mean ± sd | cross-entropy, mean ± sd |", "|---|---|---|"]
        for row in ("dense", *ROWS):
            accuracy = [r[row]["accuracy"] for r in runs.values()]
            loss = [r[row]["cross_entropy"] for r in runs.values()]
            lines.append(f"| {row} | {statistics.fmean(accuracy):.2f} ± {statistics.stdev(accuracy):.2f} | {statistics.fmean(loss):.3f} ± {statistics.stdev(loss):.3f} |")
        lines += ["", "| comparison | accuracy: W / T / L | mean (points) | sign test p | cross-entropy: W / T / L | mean | sign test p |", "|---|---|---|---|---|---|---|"]
        for pair, values in model["comparisons"].items():
            if "accuracy" not in values:
                continue
            a, c = values["accuracy"], values["cross_entropy"]
            lines.append(
                f"| {pair} | {a['wins']} / {a['ties']} / {a['losses']} | {a['mean']:+.2f} ± {a['standard_error']:.2f} | {a['sign_test_p']:.3f} "
                f"| {c['wins']} / {c['ties']} / {c['losses']} | {c['mean']:+.3f} ± {c['standard_error']:.3f} | {c['sign_test_p']:.3f} |"
            )
        half = model["comparisons"].get("SparseGPT + recovery closes >= half the gap of magnitude + recovery")
        if half is not None:
            recovered = {row: statistics.fmean(r[row]["recovered"]["accuracy"] for r in runs.values()) for row in RECOVERED}
            lines += [
                "",
                f"After the benchmark's recovery ({results['recovery_steps']} steps): magnitude {recovered['magnitude']:.2f}, SparseGPT "
                f"{recovered['SparseGPT']:.2f} (means); SparseGPT + recovery closes >= half of magnitude + recovery's gap to dense on "
                f"{half['met']} of {half['judged']} trained models" + (f" ({half['models'] - half['judged']} with no gap to close)" if half["judged"] < half["models"] else "") + ".",
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="train each model from seeds 0..N-1")
    parser.add_argument("--recovery", action="store_true", help="also the recovery finetune of magnitude and SparseGPT")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the models trained with 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or args.seeds < 2 or args.threads < 1:
        problem = f"unknown model {unknown[0]}; choose from {', '.join(MODELS)}" if unknown else "--seeds must be at least 2" if args.seeds < 2 else "--threads must be positive"
        print(problem, file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    command = " ".join(["python", "bench/oneshot_seeds.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {"command": command, "environment": environment(), "seeds": args.seeds, "recovery_steps": RECOVERY["steps"] if args.recovery else None, "models": {}}
    for name in names:
        runs = {str(seed): run_model(name, seed, results["recovery_steps"]) for seed in range(args.seeds)}
        results["models"][name] = {"runs": runs, "comparisons": compare(runs)}
    results["seconds"] = time.perf_counter() - start
    publish(Path(args.out), "oneshot_seeds", results, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
