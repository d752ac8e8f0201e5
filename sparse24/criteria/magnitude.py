"""Magnitude: keep the 2 largest ``|w|`` of every 4."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import Tensor, nn

from ..axes import GemmWeight

logger = logging.getLogger(__name__)


def score(model: nn.Module, weights: Sequence[GemmWeight], *, data=None, loss_fn=None, num_batches=None, progress=True, **options) -> list[Tensor | None]:
    """``None`` for every weight: rank by ``|weight|`` (computed chunk by chunk while pruning)."""
    if options:
        raise ValueError(f"magnitude takes no options, got {sorted(options)}")
    if data is not None or loss_fn is not None:
        logger.info("magnitude criterion ignores data and loss_fn")
    return [None] * len(weights)
