"""Helpers of the kernel tests: the emulation's availability, 2:4 test weights, errors against fp64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparse24.kernels import emulate
from sparse24.mask import prune_

HERE = Path(__file__).parent
EMULATION = emulate.unavailable()
needs_emulation = pytest.mark.skipif(EMULATION is not None, reason=f"the kernel emulation cannot run here: {EMULATION}")


def two_four(n: int, k: int, dtype: torch.dtype, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A random [n, k] weight with 2 nonzeros in every group of 4 along k."""
    generator = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn(n, k, device=device, generator=generator)
    prune_(weight, 1)
    return weight.to(dtype)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected).abs().max() / expected.abs().max())
