"""CPU benchmark of the masker: mask cost vs ``weight.clone()``, Taylor calibration overhead.

Every figure is a ratio measured in one run with the two sides interleaved (A, B, A, B, ...)
and compared by their medians, so a busy machine slows both sides alike. Writes
``sparsify_cpu.json`` (raw timings + environment) and ``sparsify_cpu.md`` (generated from it).

    python bench/bench_sparsify.py --out bench/results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import sparse24
from sparse24.bench._common import environment, header, interleaved, write_results
from sparse24 import criteria
from sparse24.demo import DigitsResNet, batches, load_digits, loss_fn
from sparse24.mask import prune_, two_four_mask

COMMAND = "python bench/bench_sparsify.py --out bench/results"


def topk_mask(weight: torch.Tensor) -> torch.Tensor:
    """Reference: a plain torch ``topk`` 2:4 mask, as the issue's baseline."""
    groups = weight.abs().reshape(-1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.topk(2, dim=1).indices, True)
    return keep.view_as(weight)


def mask_speed(size: int, reps: int) -> list[dict]:
    torch.manual_seed(0)
    weight = torch.randn(size, size)
    rows = []
    cases = {
        "prune_ (compute + apply magnitude mask, in place)": lambda w: prune_(w, 1),
        "two_four_mask(w.abs()) (compute only)": lambda w: two_four_mask(w.abs(), 1),
        "torch topk mask (reference, compute only)": topk_mask,
    }
    for name, op in cases.items():
        result = interleaved(weight.clone, op, reps)
        rows.append({"case": name, "shape": [size, size], "dtype": "float32", **result})

    def sparsify_linear(w: torch.Tensor) -> None:
        layer = nn.Linear(size, size, bias=False, device="meta")  # no init cost in the timing
        layer.weight = nn.Parameter(w)
        sparse24.sparsify(layer, "magnitude")

    result = interleaved(weight.clone, sparsify_linear, max(3, reps // 2))
    rows.append({"case": "sparse24.sparsify(nn.Linear) end to end", "shape": [size, size], "dtype": "float32", **result})
    return rows


def taylor_overhead(reps: int, num_batches: int) -> list[dict]:
    """Taylor scoring vs the same forward+backward passes without scoring."""
    digits = load_digits()
    data = batches(digits.x_train, digits.y_train, 64)[:num_batches]
    torch.manual_seed(0)
    mlp_data = [(torch.randn(256, 1024), torch.randint(0, 16, (256,))) for _ in range(num_batches)]
    models = {
        "DigitsResNet (demo CNN), batch 64": (DigitsResNet(), data),
        "MLP 4x Linear(1024, 1024), batch 256": (
            nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(1024, 1024), nn.ReLU())], nn.Linear(1024, 16)),
            mlp_data,
        ),
    }
    rows = []
    for name, (model, batches_) in models.items():
        model.eval()
        weights = [w for w in sparse24.gemm_weights(model) if w.reduction_size % 16 == 0 and w.output_size % 8 == 0]

        def plain(model=model, batches_=batches_) -> None:
            for batch in batches_:
                loss_fn(model, batch).backward()
            model.zero_grad(set_to_none=True)

        def scored(_: object, model=model, weights=weights, batches_=batches_) -> None:
            criteria.get("taylor").score(model, weights, data=batches_, loss_fn=loss_fn)

        result = interleaved(plain, scored, reps)
        rows.append({"case": name, "batches": len(batches_), "weights_scored": len(weights), **result})
    return rows


def markdown(results: dict) -> str:
    size = results["mask_speed"][0]["shape"][0]
    lines = [
        *header("Masker speed on CPU", results),
        "",
        f"## 2:4 mask of a {size}x{size} fp32 weight vs `weight.clone()` (target: compute + apply <= 2x)",
        "",
        "| case | clone ms | case ms | ratio vs clone | target |",
        "|---|---|---|---|---|",
    ]
    for row in results["mask_speed"]:
        target = ""
        if row["case"].startswith("prune_"):
            target = "met (<= 2x)" if row["ratio"] <= 2.0 else "NOT met (> 2x)"
        lines.append(f"| {row['case']} | {row['base_s'] * 1e3:.1f} | {row['op_s'] * 1e3:.1f} | {row['ratio']:.2f}x | {target} |")
    lines += [
        "",
        "## Taylor calibration vs the same forward+backward passes without scoring (target <= 1.3x)",
        "",
        "| model | batches | weights scored | plain ms | Taylor ms | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["taylor_overhead"]:
        target = "met (<= 1.3x)" if row["ratio"] <= 1.3 else "NOT met (> 1.3x)"
        lines.append(
            f"| {row['case']} | {row['batches']} | {row['weights_scored']} | {row['base_s'] * 1e3:.1f} | "
            f"{row['op_s'] * 1e3:.1f} | {row['ratio']:.2f}x | {target} |"
        )
    lines += ["", "Ratios are medians of interleaved repetitions within this one run; generated from sparsify_cpu.json."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="directory for sparsify_cpu.json/.md")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--batches", type=int, default=16)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "command": COMMAND if (args.size, args.reps, args.batches) == (8192, 11, 16) else " ".join(["python"] + sys.argv),
        "environment": environment(),
        "mask_speed": mask_speed(args.size, args.reps),
        "taylor_overhead": taylor_overhead(args.reps, args.batches),
    }
    print(write_results(out, "sparsify_cpu", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
