"""Helpers of the kernel tests: the emulation's availability, 2:4 test weights, errors against fp64, special values."""

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


SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def special(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with inf, -inf, NaN, -0.0, 0.0 and -1.5 written over its first elements (as many as fit)."""
    values = torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0, 0.0, -1.5])
    flat = tensor.view(-1)
    count = min(len(values), flat.numel())
    flat[:count] = values[:count].to(tensor.dtype)
    return tensor


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit for bit where ``expected`` is not NaN (signed zeros count); NaN exactly where it is NaN."""
    nan = expected.isnan()
    assert torch.equal(actual.isnan(), nan), "NaN in other places"
    ints = SAME_SIZE_INT[expected.element_size()]
    assert torch.equal(actual[~nan].view(ints), expected[~nan].view(ints)), "values differ"
