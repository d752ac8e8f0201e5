"""Resumable finetune checkpoints: one directory per step, written atomically.

``<dir>/step-00000120/model.safetensors`` holds the weights and 2:4 masks (as
:func:`sparse24.save` writes them); ``trainer.pt`` holds the optimizer, scheduler, scaler,
step counters, history and every rank's RNG states, and is read back with
``torch.load(weights_only=True)``. A step directory is built under a temporary name and
renamed into place; ``<dir>/latest`` (rewritten atomically afterwards) names the newest.
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

from .errors import Sparse24Error

__all__ = ["save_checkpoint", "read_trainer_state", "latest_checkpoint", "rng_state", "set_rng_state", "MODEL_FILE", "STATE_FILE"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
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
        old = None
        if final.exists():  # a rerun reached the same step: swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=directory))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text(directory / LATEST, final.name + "\n")
    if keep is not None:
        others = _step_dirs(directory)
        for other_step, path in others:
            if other_step > step:  # a later step of an abandoned or rewound run: this run supersedes it
                logger.info("checkpoint: removing %s, a later step than this run's %d", path, step)
                shutil.rmtree(path, ignore_errors=True)
        older = [path for other_step, path in others if other_step < step]
        for path in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    logger.info("checkpoint: wrote %s", final)
    return final


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint named by ``<directory>/latest`` (or the highest step), None if there is none."""
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        path = directory / pointer.read_text(encoding="utf-8").strip()
        if (path / STATE_FILE).is_file() and (path / MODEL_FILE).is_file():
            return path
        logger.warning("checkpoint: %s names %s, which is incomplete; using the newest complete one", pointer, path.name)
    complete = [path for _, path in _step_dirs(directory) if (path / STATE_FILE).is_file() and (path / MODEL_FILE).is_file()]
    return complete[-1] if complete else None


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer state of checkpoint ``path`` (read with ``weights_only=True``), checked for completeness."""
    path = Path(path)
    if not (path / STATE_FILE).is_file() or not (path / MODEL_FILE).is_file():
        raise Sparse24Error(f"not a sparse24 checkpoint (needs {MODEL_FILE} and {STATE_FILE}): {path}")
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as error:
        raise Sparse24Error(f"cannot read {path / STATE_FILE}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from error
    if not isinstance(state, dict) or state.get("format") != 1:
        raise Sparse24Error(f"{path / STATE_FILE} is not a sparse24 trainer state (format 1)")
    return state
