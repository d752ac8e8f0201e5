"""One layer at a time: which criterion hurts which layer, on the one-shot benchmark's models.

Every criterion scores the dense model once (the benchmark's calibration set); then each
2:4-eligible weight is pruned ALONE with each criterion's mask (and, the other way round, every
weight but that one), and the script records the model's quality and the layer's relative
output reconstruction error on the calibration inputs,

    err = ||(W - W_hat) X||_F^2 / ||W X||_F^2 = tr(dW H dW^T) / tr(W H W^T),   H = X^T X,

with ``X`` the layer's GEMM input columns (:func:`sparse24.axes.gemm_columns`; gathered by
:func:`sparse24.calibrate.gather`). A criterion that loses to magnitude on a layer by both
measures points at that layer (its statistics, its axis) rather than at the method.

    python bench/oneshot_ablation.py --models digits-transformer
    python bench/oneshot_ablation.py --models digits-transformer,vit-digits,digits-resnet --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import sparse24
from sparse24 import criteria
from sparse24.axes import GemmWeight, gemm_matrix, gemm_weights
from sparse24.bench import oneshot_models as models
from sparse24.bench._common import environment, header, publish
from sparse24.calibrate import gather
from sparse24.criteria._pairs import PairCosts
from sparse24.mask import prune_

logger = logging.getLogger(__name__)

POLICY = {"digits-resnet": "tensorrt", "digits-transformer": "any", "vit-digits": "any", "gpt2-stdlib": "tensorrt"}
# name -> (criterion, options)
CRITERIA: dict[str, tuple[str, dict[str, Any]]] = {
    "magnitude": ("magnitude", {}),
    "wanda": ("wanda", {}),
    "taylor": ("taylor", {"squared": True}),
    "taylor-per-sample": ("taylor", {"squared": True, "per_sample": True}),
    "taylor-model": ("taylor", {"squared": True, "labels": "model"}),
    "taylor-model-per-sample": ("taylor", {"squared": True, "labels": "model", "per_sample": True}),
    "taylor-model-pairs": ("taylor", {"squared": True, "labels": "model", "per_sample": True, "pairs": True}),
    "sparsegpt": ("sparsegpt", {}),
}


def eligible(model: nn.Module, policy: str) -> list[GemmWeight]:
    """The weights ``sparsify`` would prune under ``policy`` (from a dry run on a copy)."""
    report = sparse24.sparsify(copy.deepcopy(model), "magnitude", policy=policy, progress=False)
    names = {layer.name for layer in report.sparse_layers}
    return [w for w in gemm_weights(model) if w.name in names]


def relative_error(weight: GemmWeight, dense: Tensor, pruned: Tensor, hessian: Tensor, *, diagonal: bool = False) -> float:
    """``tr(dW H dW^T) / tr(W H W^T)`` over the GEMM parts of ``weight``.

    ``diagonal=True``: the numerator with ``diag(H)`` only, ``sum dW_ij^2 ||X_j||^2`` -- the part
    of the error Wanda's score minimises (it ignores the correlation between input columns).
    """
    delta = gemm_matrix(weight, (dense - pruned).float())
    full = gemm_matrix(weight, dense.float())
    if diagonal:
        num = torch.einsum("prd,pd->", delta.square(), hessian.diagonal(dim1=1, dim2=2))
    else:
        num = torch.einsum("prd,pde,pre->", delta, hessian, delta)
    den = torch.einsum("prd,pde,pre->", full, hessian, full)
    return float(num / den)


def input_norm_spread(hessian: Tensor) -> float:
    """``max_j ||X_j|| / median_j ||X_j||`` over the layer's live input columns (all GEMM parts) from ``H = X^T X``.

    Wanda weighs each weight by its input column's norm; where the norms are alike (a ratio near 1) its
    masks are magnitude's. Large language models have a few input features far above the rest (the
    outlier features Wanda's paper starts from); this says whether the benchmark's models have any.
    """
    norms = hessian.diagonal(dim1=-2, dim2=-1).flatten().double().clamp(min=0).sqrt()
    live = norms[norms > 0]
    if not len(live):
        raise ValueError("no input column of this layer was ever non-zero")
    return float(live.max() / live.median())


def decisions(
    name: str, model: nn.Module, weights: list[GemmWeight], labels: list[str], calibration: list, loss: Callable, hessians: dict[int, Tensor], counts: dict[int, int]
) -> dict[str, dict[str, Tensor]]:
    """Per criterion (``labels``, keys of :data:`CRITERIA`), the pruned value of every weight, decided on the dense model."""
    found: dict[str, dict[str, Tensor]] = {}
    for label in labels:
        method, options = CRITERIA[label]
        criterion = criteria.get(method)
        start = time.perf_counter()
        pruned: dict[str, Tensor] = {}
        if method == "sparsegpt":
            for w in weights:
                new, _, _ = criterion.solve(w, hessians[id(w.param)].clone(), counts[id(w.param)])
                pruned[w.name] = new.detach().clone()
        else:
            data = None if method == "magnitude" else calibration
            if options.get("labels") == "model":
                options = {**options, "logits_fn": models.logits_fn(name)}
                scores = criterion.score(model, weights, data=data, progress=False, **options)
            else:
                scores = criterion.score(model, weights, data=data, loss_fn=None if data is None else loss, progress=False, **options)
            for w, score in zip(weights, scores):
                value = w.param.detach().clone()
                if isinstance(score, PairCosts):  # the pattern is chosen per group, not by ranking
                    value.masked_fill_(~score.keep(w), 0)
                else:
                    prune_(value, w.axis.reduction, score)
                pruned[w.name] = value
        logger.info("%s: %s scored in %.1f s", name, label, time.perf_counter() - start)
        found[label] = pruned
    return found


def ablate(name: str, labels: list[str], batches: int, *, all_layers: bool = True) -> dict[str, Any]:
    """Per criterion and weight: quality with that weight pruned alone, with every weight but it pruned, and its reconstruction errors."""
    model = models.load(name)
    loss = models.loss_fn(name)
    calibration = models.calibration_batches(name, batches, 0, batch_size=4)
    weights = eligible(model, POLICY[name])
    hessians, counts = gather(model, weights, "hessian", calibration, loss_fn=loss, progress=False)
    pruned = decisions(name, model, weights, labels, calibration, loss, hessians, counts)
    dense_quality = models.evaluate(name, model)["value"]
    layers: dict[str, dict[str, Any]] = {}
    spread = {w.name: input_norm_spread(hessians[id(w.param)]) for w in weights}
    for w in weights:
        original = w.param.detach().clone()
        row: dict[str, Any] = {}
        for label in labels:
            with torch.no_grad():
                w.param.copy_(pruned[label][w.name])
            row[label] = {
                "quality": models.evaluate(name, model)["value"],
                "error": relative_error(w, original, pruned[label][w.name], hessians[id(w.param)]),
                "diagonal_error": relative_error(w, original, pruned[label][w.name], hessians[id(w.param)], diagonal=True),
            }
            with torch.no_grad():
                w.param.copy_(original)
        layers[w.name] = row
    total: dict[str, float] = {}
    if all_layers:
        originals = {w.name: w.param.detach().clone() for w in weights}
        for label in labels:
            with torch.no_grad():
                for w in weights:
                    w.param.copy_(pruned[label][w.name])
            total[label] = models.evaluate(name, model)["value"]
            for w in weights:  # every layer pruned but this one
                with torch.no_grad():
                    w.param.copy_(originals[w.name])
                layers[w.name][label]["others"] = models.evaluate(name, model)["value"]
                with torch.no_grad():
                    w.param.copy_(pruned[label][w.name])
            with torch.no_grad():
                for w in weights:
                    w.param.copy_(originals[w.name])
    return {"model": name, "dense": dense_quality, "batches": batches, "layers": layers, "all_layers": total, "input_norm_spread": spread}


def model_markdown(result: dict[str, Any], labels: list[str]) -> list[str]:
    """Per layer: quality with that layer alone pruned, its relative reconstruction error, and that error's diagonal part."""
    lines = [f"## {result['model']} (dense {result['dense']:.3f}; {result['batches']} calibration batches of 4)", ""]
    spread = result["input_norm_spread"]
    lines.append("| layer | max / median ||X_j|| | " + " | ".join(labels) + " |")
    lines.append("|---|---|" + "---|" * len(labels))
    for layer, row in result["layers"].items():
        lines.append(f"| {layer} | {spread[layer]:.2f} | " + " | ".join(_cell(row[l]) for l in labels) + " |")
    if result["all_layers"]:
        lines.append("| (all layers at once) | | " + " | ".join(f"{result['all_layers'][l]:.2f}" for l in labels) + " |")
    return [*lines, ""]


def _cell(values: dict[str, float]) -> str:
    others = f" / {values['others']:.2f}" if "others" in values else ""
    return f"{values['quality']:.2f}{others} / {values['error']:.4f} / {values['diagonal_error']:.4f}"


def markdown(results: dict[str, Any]) -> str:
    """The table of ``oneshot_ablation.json``."""
    labels = results["criteria"]
    lines = [
        *header("One-shot 2:4, one layer at a time", results, f"; took {results['seconds']:.0f} s"),
        "",
        "Every criterion decides every layer's mask on the dense model (32 calibration batches of 4, seed 0, as in `bench_oneshot.py`); then each "
        "layer is pruned ALONE. Each cell: quality (accuracy %, or perplexity) with only that layer pruned / quality with every layer pruned BUT that one / relative output error on the calibration "
        "inputs ||(W - W_hat) X||^2 / ||W X||^2 / its diagonal part sum (W - W_hat)_ij^2 ||X_j||^2 over the same denominator (what Wanda's score "
        "minimises; the difference is the inputs' correlation). The last row prunes every layer at once. "
        "max / median ||X_j||: the spread of the layer's input-column norms over the calibration set (Wanda's weighting; near 1, "
        "Wanda's masks are magnitude's). Criteria: "
        + "; ".join(f"{label} = {CRITERIA[label][0]} {CRITERIA[label][1] or ''}".rstrip() for label in labels) + ".",
        "",
    ]
    for result in results["models"].values():
        lines += model_markdown(result, labels)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits-transformer", help=f"comma-separated, from {', '.join(models.NAMES)}")
    parser.add_argument("--criteria", default=",".join(CRITERIA), help=f"comma-separated, from {', '.join(CRITERIA)}")
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write oneshot_ablation.json and .md here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = [c.strip() for c in args.criteria.split(",") if c.strip()]
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [c for c in labels if c not in CRITERIA] + [n for n in names if n not in models.NAMES]
    if unknown:
        print(f"unknown criterion or model {unknown[0]}; criteria: {', '.join(CRITERIA)}; models: {', '.join(models.NAMES)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    command = " ".join(["python", "bench/oneshot_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {"command": command, "environment": environment(command), "criteria": labels, "models": {}}
    for name in names:
        results["models"][name] = ablate(name, labels, args.batches)
    results["seconds"] = time.perf_counter() - start
    publish(args.out, "oneshot_ablation", results, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
