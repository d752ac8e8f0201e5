"""Resumable finetune checkpoints: one directory per step, written atomically.

``<dir>/step-00000120/model.safetensors`` holds the weights and 2:4 masks (as
:func:`sparse24.save` writes them); ``trainer.pt`` holds the optimizer, scheduler, scaler,
step counters, history and every rank's RNG states, and is read back with
``torch.load(weights_only=True)``. A step directory is built under a temporary name and
renamed into place; ``<dir>/latest`` (rewritten atomically afterwards) names the newest.

A model sharded with FSDP2 is checkpointed with ``torch.distributed.checkpoint`` (DCP)
instead: ``step-N/sharded/`` holds the model (weights and masks) and optimizer state as
every rank's shards, ``trainer.pt`` the rest. All ranks write into one temporary directory
that rank 0 chose and broadcast; after a barrier rank 0 renames it into place and then
rewrites ``latest``. The checkpoint directory must be on a filesystem every rank sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import Sparse24Error, first_line

__all__ = [
    "save_checkpoint",
    "save_sharded_checkpoint",
    "load_sharded_checkpoint",
    "is_sharded_checkpoint",
    "read_trainer_state",
    "latest_checkpoint",
    "rng_state",
    "set_rng_state",
    "MODEL_FILE",
    "STATE_FILE",
    "SHARDED_DIR",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
SHARDED_DIR = "sharded"  # DCP: weights, masks and optimizer state of a sharded (FSDP2) model
LATEST = "latest"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """This process's RNG states: torch CPU and CUDA, Python ``random`` and NumPy (if present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    with contextlib.suppress(ImportError):
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        with contextlib.suppress(ImportError):
            import numpy as np

            saved = state["numpy"]
            np.random.set_state((saved["kind"], saved["keys"].numpy().astype("uint32"), saved["pos"], saved["has_gauss"], saved["cached"]))


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file() and ((path / MODEL_FILE).is_file() or (path / SHARDED_DIR / ".metadata").is_file())


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """True for a checkpoint written by :func:`save_sharded_checkpoint` (DCP)."""
    return (Path(path) / SHARDED_DIR / ".metadata").is_file()


def _prune(directory: Path, step: int, keep: int | None) -> None:
    if keep is None:
        return
    others = _step_dirs(directory)
    for other_step, path in others:
        if other_step > step:  # a later step of an abandoned or rewound run: this run supersedes it
            logger.info("checkpoint: removing %s, a later step than this run's %d", path, step)
            shutil.rmtree(path, ignore_errors=True)
    older = [path for other_step, path in others if other_step < step]
    for path in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)


def _move_into_place(tmp: Path, final: Path) -> None:
    old = None
    if final.exists():  # a rerun reached the same step: swap, then drop the old one
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(directory: str | os.PathLike, step: int, module: nn.Module, state: dict[str, Any], keep: int | None = 2) -> Path:
    """Write ``step-<step>/`` (weights + masks, trainer state) atomically.

    Keeps it and the ``keep - 1`` newest earlier steps; later steps (left by a run this one
    restarted or rewound) are removed, so ``latest`` always names the newest step on disk.
    """
    from .io import save, write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=directory))
    try:
        save(module, tmp / MODEL_FILE)
        torch.save(state, tmp / STATE_FILE)
        _move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text(directory / LATEST, final.name + "\n")
    _prune(directory, step, keep)
    logger.info("checkpoint: wrote %s", final)
    return final


def save_sharded_checkpoint(
    directory: str | os.PathLike, step: int, module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int | None = 2
) -> Path:
    """Write ``step-<step>/`` for a sharded (FSDP2) model on every rank at once, atomically.

    Collective: every rank calls it. The model's and optimizer's sharded state go through
    ``torch.distributed.checkpoint`` into ``sharded/`` of a temporary directory named by
    rank 0; rank 0 adds ``trainer.pt`` (``state``, which must not hold the optimizer), and after
    a barrier renames the directory into place, rewrites ``latest`` and prunes as
    :func:`save_checkpoint` does. A failure on rank 0 is raised on every rank.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from . import dist
    from .io import write_text

    directory = Path(directory)
    final = directory / f"step-{step:08d}"
    name = None
    if dist.is_main():
        directory.mkdir(parents=True, exist_ok=True)
        name = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=directory)).name
    tmp = directory / dist.broadcast_object(name)
    error = None
    try:
        model_state, optimizer_state = get_state_dict(module, optimizer)
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(tmp / SHARDED_DIR))
        del model_state, optimizer_state
        dist.barrier()
        if dist.is_main():
            try:
                torch.save(state, tmp / STATE_FILE)
                _move_into_place(tmp, final)
                write_text(directory / LATEST, final.name + "\n")
                _prune(directory, step, keep)
            except OSError as failure:
                error = f"checkpoint: cannot write {final}: {failure}"
        error = dist.broadcast_object(error)
    finally:
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
    if error is not None:
        raise Sparse24Error(error)
    logger.info("checkpoint: wrote %s (sharded, %d ranks)", final, dist.world_size())
    return final


def load_sharded_checkpoint(path: str | os.PathLike, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load what :func:`save_sharded_checkpoint` wrote into a model sharded the same way (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    if not is_sharded_checkpoint(path):
        raise Sparse24Error(f"{path} is not a sharded checkpoint (no {SHARDED_DIR}/.metadata); it was written by a run without strategy='fsdp'")
    model_state, optimizer_state = get_state_dict(module, optimizer)
    dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(path / SHARDED_DIR))
    set_state_dict(module, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint named by ``<directory>/latest`` (or the highest step), None if there is none."""
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        path = directory / pointer.read_text(encoding="utf-8").strip()
        if _complete(path):
            return path
        logger.warning("checkpoint: %s names %s, which is incomplete; using the newest complete one", pointer, path.name)
    complete = [path for _, path in _step_dirs(directory) if _complete(path)]
    return complete[-1] if complete else None


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer state of checkpoint ``path`` (read with ``weights_only=True``), checked for completeness."""
    path = Path(path)
    if not _complete(path):
        raise Sparse24Error(f"not a sparse24 checkpoint (needs {STATE_FILE} and {MODEL_FILE} or {SHARDED_DIR}/): {path}")
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as error:
        raise Sparse24Error(f"cannot read {path / STATE_FILE}: {first_line(error)}") from error
    if not isinstance(state, dict) or state.get("format") != 1:
        raise Sparse24Error(f"{path / STATE_FILE} is not a sparse24 trainer state (format 1)")
    return state
