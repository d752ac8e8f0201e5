"""Importance criteria: one module per criterion, found by its name.

A criterion module defines
``score(model, weights, *, data, loss_fn, num_batches, progress, **options)``
returning, for each :class:`~sparse24.axes.GemmWeight`, a float tensor of the weight's shape
(higher = more important) or ``None`` to rank by ``|weight|`` (magnitude, taylor, wanda).

A criterion that also rewrites the weights it keeps (sparsegpt) defines
``solve_all(model, weights, ...)`` returning ``(new weight, keep mask, fraction kept)`` per
weight instead. Criteria that read input statistics (:mod:`sparse24.calibrate`) name them in
``KIND`` and decide one weight from them with ``from_stats(weight, stat, count)`` (scores)
or ``solve(weight, stat, count, **options)``: that is what ``sparsify(..., sequential=...)``
calls block by block. Adding a criterion is adding one file here;
``sparsify(model, method="<file name>")`` finds it.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["available", "get"]


def available() -> list[str]:
    """Names of the criteria shipped in this package."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def get(method: str) -> ModuleType:
    """The criterion module called ``method``; ``ValueError`` naming the choices otherwise."""
    if not isinstance(method, str) or method not in available():
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{method}")
