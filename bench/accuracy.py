"""The accuracy suite: the recovery table (``bench/bench_recovery.py``), rerun.

Dense -> one-shot 2:4 (magnitude, Taylor) -> recovery finetune with and without distillation,
for the demo CNN and transformer over several seeds. ``quick`` trains 3 dense epochs,
finetunes 1 and uses one seed: a smoke run, not a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bench_recovery import RECIPE, SEEDS, collect

__all__ = ["run"]

QUICK_DENSE_EPOCHS = 3


def run(*, seeds: Sequence[int] | None = None, epochs: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Rerun the recovery table; return its results (the recovery.json layout, with ``suite``)."""
    seeds = list(seeds or ((0,) if quick else SEEDS))
    recipe = {**RECIPE, "epochs": epochs or (1 if quick else RECIPE["epochs"])}
    return {"suite": "accuracy", "quick": quick, **collect(seeds, recipe, QUICK_DENSE_EPOCHS if quick else None)}
