"""Accuracy evidence: do 2:4 models recover to dense accuracy after a short finetune?

Two models, trained dense first on scikit-learn's digits (70/10/20 train/val/test split, the
test split held out): the demo CNN (residual blocks + BatchNorm, TensorRT policy) and a small
transformer-encoder classifier (every Linear 2:4, ``policy="any"``). For each of 3 seeds:
dense; one-shot 2:4 magnitude; one-shot 2:4 Taylor; each criterion after recovery finetune
without and with distillation from the dense model. The recipe is fixed in this file (chosen
on the validation split); the test split is only reported. Writes ``recovery.json`` and
``recovery.md`` (generated from the JSON).

    python bench/bench_recovery.py --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

import sparse24
from sparse24.bench._common import environment, header, write_results
from sparse24.demo import MODELS as MODELS_BY_KIND
from sparse24.demo import accuracy, batches, load_digits, loss_fn, train_dense

logger = logging.getLogger(__name__)

COMMAND = "python bench/bench_recovery.py --out bench/results"
SEEDS = (0, 1, 2)
TARGET_PP = 0.5  # recovered 2:4 accuracy within this many points of dense

MODELS = {
    # name: (demo model, dense epochs, dense lr, sparsify policy)
    "DigitsResNet (CNN, residual + BatchNorm)": ("resnet", 20, 3e-3, "tensorrt"),
    "DigitsTransformer (encoder, all Linear 2:4)": ("transformer", 30, 3e-3, "any"),
}
RECIPE = {"epochs": 10, "lr": 1e-3, "warmup_steps": 10, "grad_clip": 1.0, "temperature": 2.0, "alpha": 0.5}
TAYLOR = {"squared": True, "batch_size": 4, "num_batches": 64}
ROWS = (
    "dense",
    "2:4 magnitude, one-shot",
    "2:4 Taylor, one-shot",
    "2:4 magnitude + finetune",
    "2:4 magnitude + finetune + distillation",
    "2:4 Taylor + finetune",
    "2:4 Taylor + finetune + distillation",
)


def _scores(model: torch.nn.Module, digits) -> dict[str, float]:
    return {"val": accuracy(model, digits.x_val, digits.y_val), "test": accuracy(model, digits.x_test, digits.y_test)}


def _loader(digits, seed: int) -> torch.utils.data.DataLoader:
    dataset = torch.utils.data.TensorDataset(digits.x_train, digits.y_train)
    return torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))


def run_seed(kind: str, epochs: int, lr: float, policy: str, seed: int, digits, recipe: dict) -> dict[str, dict[str, float]]:
    """Every row for one model and seed: ``{row: {"val": %, "test": %}}``."""
    dense = train_dense(digits, epochs=epochs, lr=lr, seed=seed, model=kind)
    results = {"dense": _scores(dense, digits)}
    calibration = batches(digits.x_train, digits.y_train, TAYLOR["batch_size"])[: TAYLOR["num_batches"]]
    for method, label in (("magnitude", "magnitude"), ("taylor", "Taylor")):
        oneshot = copy.deepcopy(dense)
        options = {"data": calibration, "loss_fn": loss_fn, "squared": TAYLOR["squared"]} if method == "taylor" else {}
        sparse24.sparsify(oneshot, method, policy=policy, progress=False, **options)
        results[f"2:4 {label}, one-shot"] = _scores(oneshot, digits)
        for distill in (False, True):
            model = copy.deepcopy(oneshot)
            sparse24.finetune(
                model,
                _loader(digits, seed),
                loss_fn=loss_fn,
                teacher=dense if distill else None,
                epochs=recipe["epochs"],
                lr=recipe["lr"],
                warmup_steps=recipe["warmup_steps"],
                grad_clip=recipe["grad_clip"],
                temperature=recipe["temperature"],
                alpha=recipe["alpha"],
                seed=seed,
                progress=False,
            )
            sparse24.verify(model)
            results[f"2:4 {label} + finetune" + (" + distillation" if distill else "")] = _scores(model, digits)
    return results


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {row: {split: _stats([seed[row][split] for seed in per_seed]) for split in ("val", "test")} for row in ROWS}


def markdown(results: dict) -> str:
    lines = [
        *header("Accuracy recovery after 2:4 pruning (scikit-learn digits)", results, f"; took {results['seconds']:.0f} s  "),
        f"Seeds {', '.join(map(str, results['seeds']))} (mean ± std); test split {results['test_size']} images, held out "
        "(the recipe was chosen on the validation split). "
        f"Finetune: {results['recipe']['epochs']} epochs, AdamW lr {results['recipe']['lr']:g} (dense: 3e-3), warm-up "
        f"{results['recipe']['warmup_steps']} steps + cosine, grad clip {results['recipe']['grad_clip']}; distillation: KL at "
        f"T={results['recipe']['temperature']}, alpha={results['recipe']['alpha']}. Taylor: squared, "
        f"{results['taylor']['num_batches']} training batches of {results['taylor']['batch_size']}.",
        "",
    ]
    if results.get("quick"):
        lines += ["**Quick smoke run** (short dense training, 1 finetune epoch, one seed): it checks the pipeline; it is not accuracy evidence.", ""]
    for name, model in results["models"].items():
        summary = model["summary"]
        dense_test = summary["dense"]["test"]["mean"]
        lines += [
            f"## {name}",
            "",
            f"{model['sparse_layers']} GEMM weights 2:4 (policy {model['policy']}).",
            "",
            "| row | val accuracy % | test accuracy % | test Δ vs dense (pp) | target |",
            "|---|---|---|---|---|",
        ]
        for row in ROWS:
            val, test = summary[row]["val"], summary[row]["test"]
            delta = test["mean"] - dense_test
            target = ""
            if "finetune" in row:
                target = f"met (within {TARGET_PP} pp)" if delta >= -TARGET_PP else f"NOT met (> {TARGET_PP} pp below dense)"
            lines.append(
                f"| {row} | {val['mean']:.2f} ± {val['std']:.2f} | {test['mean']:.2f} ± {test['std']:.2f} | "
                f"{'' if row == 'dense' else f'{delta:+.2f}'} | {target} |"
            )
        taylor = summary["2:4 Taylor, one-shot"]["test"]["mean"]
        magnitude = summary["2:4 magnitude, one-shot"]["test"]["mean"]
        verdict = "met" if taylor >= magnitude else "NOT met"
        lines += ["", f"Taylor one-shot ≥ magnitude one-shot on average (test): {taylor:.2f} vs {magnitude:.2f}: **{verdict}**.", ""]
    lines += ["Per-seed values are in recovery.json; this table is generated from it."]
    return "\n".join(lines) + "\n"


def collect(seeds: list[int], recipe: dict, dense_epochs: int | None = None) -> dict:
    """Every model, seed and row (``dense_epochs`` overrides each model's dense training, for quick runs)."""
    digits = load_digits()
    start = time.perf_counter()
    models = {}
    for name, (kind, epochs, lr, policy) in MODELS.items():
        epochs = dense_epochs or epochs
        per_seed = []
        for seed in seeds:
            began = time.perf_counter()
            per_seed.append(run_seed(kind, epochs, lr, policy, seed, digits, recipe))
            logger.info("%s, seed %d: %.0f s", name, seed, time.perf_counter() - began)
        report = sparse24.sparsify(MODELS_BY_KIND[kind](), "magnitude", policy=policy, progress=False)
        models[name] = {
            "model": kind,
            "policy": policy,
            "dense_epochs": epochs,
            "dense_lr": lr,
            "sparse_layers": f"{len(report.sparse_layers)}/{len(report.layers)}",
            "per_seed": dict(zip(map(str, seeds), per_seed)),
            "summary": summarize(per_seed),
        }
    return {"seconds": time.perf_counter() - start, "seeds": seeds, "test_size": len(digits.y_test), "recipe": recipe, "taylor": TAYLOR, "models": models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="directory for recovery.json/.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"], help="finetune epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    default = args.seeds == list(SEEDS) and args.epochs == RECIPE["epochs"]
    command = COMMAND if default else " ".join(["python"] + sys.argv)
    results = {"command": command, "environment": environment(command), **collect(args.seeds, {**RECIPE, "epochs": args.epochs})}
    print(write_results(out, "recovery", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
