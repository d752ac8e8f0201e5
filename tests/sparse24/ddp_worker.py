"""One rank of the 2-process DDP scenario that ``test_distributed.py`` launches with torchrun.

Not a test module (pytest collects ``test_*.py`` only, and ``__test__ = False`` says so
again); importing it does nothing but define functions. Run as a script by
``python -m torch.distributed.run --nproc_per_node=2 ddp_worker.py --out DIR ...``:

1. builds the same seeded ``DigitsResNet(width=16)`` on every rank, keeps a dense copy as the
   teacher, and picks calibration batches that differ per rank;
2. *before* the process group exists, computes this rank's local (un-reduced) Taylor scores
   with ``sparse24.criteria.taylor.score`` (it only all-reduces under an initialised group)
   and saves them, so the test can show that local scores alone would give different masks;
3. initialises the gloo group, runs ``sparse24.sparsify(model, "taylor", ...)`` and saves the
   model (``sparsified_rank{r}.safetensors``); then re-estimates its BatchNorm statistics on the
   rank's calibration batches (``sparse24.recalibrate_batchnorm``, averaged over ranks) and saves
   it again (``recalibrated_rank{r}.safetensors``);
4. runs ``sparse24.finetune`` (distillation from the dense copy, 2 epochs over plain list
   data that finetune shards by rank), recording a hash of every batch its ``loss_fn`` saw;
   ``--stop-at-call N`` makes ``loss_fn`` raise on every rank at its N-th call, to
   interrupt the run the same way everywhere (the worker catches it and still exits 0);
5. runs ``sparse24.verify`` and saves ``final_rank{r}.safetensors`` and ``rank{r}.json``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
from pathlib import Path

from sparse24_testing import run_worker

__test__ = False

WIDTH = 16
BATCH = 32
CALIBRATION_PER_RANK = 2
TRAIN_BATCHES = 8  # 4 per rank and epoch with 2 ranks
EPOCHS = 2
CHECKPOINT_EVERY = 3
SEED = 1234
LR = 1e-3


class StopRun(Exception):
    """Raised by the recording loss_fn at ``--stop-at-call`` (on every rank at once)."""


def batch_hash(batch) -> str:
    images, labels = batch
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for this run's per-rank dumps")
    parser.add_argument("--checkpoint-dir", required=True, help="finetune checkpoint_dir; '{rank}' is replaced by the rank")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-at-call", type=int, default=None, help="loss_fn raises at its N-th call (1-based)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    import torch
    import torch.distributed as tdist
    from safetensors.torch import save_file

    import sparse24
    from sparse24.criteria import taylor
    from sparse24.demo import DigitsResNet, batches, load_digits, loss_fn

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(name)s %(levelname)s: %(message)s")
    torch.manual_seed(0)  # same initial weights on every rank
    model = DigitsResNet(width=WIDTH)
    dense = copy.deepcopy(model)
    digits = load_digits()
    train = batches(digits.x_train, digits.y_train, BATCH)
    calibration = train[rank * CALIBRATION_PER_RANK : (rank + 1) * CALIBRATION_PER_RANK]
    train_batches = train[len(train) - TRAIN_BATCHES :]

    # Local scores: no process group yet, so taylor.score sums over this rank's batches only.
    assert not tdist.is_initialized()
    local_model = copy.deepcopy(model)
    weights = sparse24.gemm_weights(local_model)
    local_scores = taylor.score(local_model, weights, data=calibration, loss_fn=loss_fn, progress=False)
    save_file({w.name: s.contiguous() for w, s in zip(weights, local_scores)}, str(args.out / f"local_scores_rank{rank}.safetensors"))

    tdist.init_process_group("gloo")
    try:
        assert tdist.get_rank() == rank and tdist.get_world_size() == world
        sparse24.sparsify(model, "taylor", data=calibration, loss_fn=loss_fn, progress=False)
        sparse24.save(model, args.out / f"sparsified_rank{rank}.safetensors")
        sparse24.recalibrate_batchnorm(model, calibration, loss_fn=loss_fn, progress=False)
        sparse24.save(model, args.out / f"recalibrated_rank{rank}.safetensors")

        seen: list[str] = []

        def recording_loss(module, batch):
            seen.append(batch_hash(batch))
            if args.stop_at_call is not None and len(seen) == args.stop_at_call:
                raise StopRun(f"stopped at loss_fn call {len(seen)}")
            return loss_fn(module, batch)

        stopped = False
        history = None
        try:
            history = sparse24.finetune(
                model,
                train_batches,
                loss_fn=recording_loss,
                teacher=dense,
                epochs=EPOCHS,
                lr=LR,
                checkpoint_dir=args.checkpoint_dir.format(rank=rank),
                checkpoint_every=CHECKPOINT_EVERY,
                keep_checkpoints=None,
                resume=args.resume,
                seed=SEED,
                progress=False,
            )
        except StopRun:
            stopped = True
        report = sparse24.verify(model)
        sparse24.save(model, args.out / f"final_rank{rank}.safetensors")
        record = {
            "rank": rank,
            "world_size": world,
            "sparse24_file": sparse24.__file__,
            "seen": seen,
            "train_hashes": [batch_hash(b) for b in train_batches],
            "stopped": stopped,
            "verified_layers": sum(layer.sparse for layer in report.layers),
            "total_steps": None if history is None else history.total_steps,
            "resumed_from": None if history is None else history.resumed_from,
            "steps_recorded": None if history is None else [s["step"] for s in history.steps],
        }
        (args.out / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
        tdist.barrier()
    finally:
        tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_worker(main)
