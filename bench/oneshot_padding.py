"""Calibrating on padded text: Wanda, SparseGPT and the model-Fisher Taylor with the padding left out.

The one-shot benchmark's LM calibrates on full windows of text. Users' batches are usually
tokenizer output: sequences of different lengths, right-padded, with ``attention_mask`` 0 on the
pads. This script cuts each calibration window of ``gpt2-stdlib`` to a random length (at least
``--min-length`` bytes), pads it with byte 0 and calibrates on:

- ``full windows``: the benchmark's own calibration set (no padding), for reference;
- ``padded, pads left out``: the padded batches as ``{"input_ids", "attention_mask"}`` (what
  ``sparsify`` does with them: :class:`sparse24.calibrate.Padding`);
- ``padded, pads included``: the same batches with the padded positions' inputs counted in the
  norms and Hessians, and their predictions in the model Fisher's draws, as sparse24 did before
  (:class:`~sparse24.calibrate.Padding` switched off, here only);
- ``each sequence alone``: every cut sequence as its own unpadded batch: the same tokens, no pads
  (``pads left out`` should match it).

    python bench/oneshot_padding.py --out bench/results
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import sparse24
from sparse24 import calibrate
from sparse24.bench import oneshot_models as models
from sparse24.bench._common import environment, header, publish

logger = logging.getLogger(__name__)

MODEL = "gpt2-stdlib"
POLICY = "tensorrt"
METHODS = {  # column -> (method, options)
    "wanda": ("wanda", {}),
    "sparsegpt": ("sparsegpt", {}),
    "Taylor (model Fisher, per sample, pairs)": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "pairs": True}),
}
ROWS = ("full windows", "padded, pads left out", "padded, pads included", "each sequence alone")


def padded_batches(windows: list[Tensor], seed: int, min_length: int, pad: int = 0) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Each ``[batch, length]`` window cut to a random length in ``[min_length, length]``: right-padded batches
    with their ``attention_mask``, and every cut sequence as its own ``[1, n]`` batch."""
    generator = torch.Generator().manual_seed(seed)
    padded, alone = [], []
    for ids in windows:
        ids, mask = ids.clone(), torch.ones_like(ids)
        for row in range(ids.shape[0]):
            size = int(torch.randint(min_length, ids.shape[1] + 1, (1,), generator=generator))
            ids[row, size:], mask[row, size:] = pad, 0
            alone.append({"input_ids": ids[row : row + 1, :size].clone()})
        padded.append({"input_ids": ids, "attention_mask": mask})
    return padded, alone


@contextlib.contextmanager
def pads_included() -> Iterator[None]:
    """``sparsify`` as before :class:`sparse24.calibrate.Padding`: no batch's padding is recognised."""
    original = calibrate.Padding.batch

    def every_position(self: calibrate.Padding, batch: Any) -> None:
        self.masks, self.lengths, self.counted = {}, {}, set()

    calibrate.Padding.batch = every_position
    try:
        yield
    finally:
        calibrate.Padding.batch = original


def run(batches: int, seed: int, min_length: int) -> dict[str, Any]:
    dense = models.load(MODEL)
    windows = models.calibration_batches(MODEL, batches, seed, batch_size=4)
    padded, alone = padded_batches(windows, seed + 1, min_length)
    tokens = sum(int(b["attention_mask"].sum()) for b in padded)
    positions = sum(b["attention_mask"].numel() for b in padded)
    quality = lambda model: models.evaluate(MODEL, model)["value"]  # noqa: E731
    magnitude = copy.deepcopy(dense)
    sparse24.sparsify(magnitude, "magnitude", policy=POLICY, progress=False)
    result: dict[str, Any] = {"dense": quality(dense), "magnitude": quality(magnitude), "positions": positions, "tokens": tokens, "rows": {}}
    data = {"full windows": windows, "padded, pads left out": padded, "padded, pads included": padded, "each sequence alone": alone}
    for column, (method, options) in METHODS.items():
        for row in ROWS:
            model = copy.deepcopy(dense)
            start = time.perf_counter()
            with pads_included() if row == "padded, pads included" else contextlib.nullcontext():
                report = sparse24.sparsify(model, method, data=data[row], policy=POLICY, progress=False, **options)
            seconds = time.perf_counter() - start
            notes = [note for note in report.notes if "padding" in note]
            result["rows"].setdefault(row, {})[column] = {"perplexity": quality(model), "seconds": seconds, "notes": notes}
            logger.info("%s %s: %.3f (%.1f s)", column, row, result["rows"][row][column]["perplexity"], seconds)
    return result


def markdown(results: dict[str, Any]) -> str:
    """The table of ``oneshot_padding.json``."""
    result = results["result"]
    padding = 1 - result["tokens"] / result["positions"]
    lines = [
        *header("One-shot 2:4 calibrated on padded text", results, f"; took {results['seconds']:.0f} s"),
        "",
        f"Model: {MODEL} (test perplexity per byte, lower is better; policy {POLICY}). Calibration: {results['batches']} batches of 4 "
        f"windows (seed {results['seed']}), each sequence cut to a random length of at least {results['min_length']} bytes and right-padded "
        f"with byte 0: {result['tokens']:,} tokens in {result['positions']:,} positions ({100 * padding:.1f}% padding). "
        f"Dense {result['dense']:.3f}, magnitude {result['magnitude']:.3f}.",
        "",
        "| calibration data | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(f"{result['rows'][row][m]['perplexity']:.3f}" for m in METHODS) + " |")
    notes = sorted({note for row in ROWS for m in METHODS for note in result["rows"][row][m]["notes"]})
    lines += ["", "The reports' notes: " + ("; ".join(notes) if notes else "none about padding") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write oneshot_padding.json and .md here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    command = " ".join(["python", "bench/oneshot_padding.py", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {"command": command, "environment": environment(command), "batches": args.batches, "seed": args.seed, "min_length": args.min_length}
    results["result"] = run(args.batches, args.seed, args.min_length)
    results["seconds"] = time.perf_counter() - start
    publish(args.out, "oneshot_padding", results, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
