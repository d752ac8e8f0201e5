"""Fixtures of the kernel tests."""

from __future__ import annotations

import pytest
from kernel_testing import EMULATION, HERE

from sparse24.kernels import emulate


@pytest.fixture(scope="session")
def probes() -> emulate.Library:
    """tests/kernels/probes.cu (one kernel per PTX helper or check), built for the CPU emulation."""
    if EMULATION is not None:
        pytest.skip(f"the kernel emulation cannot run here: {EMULATION}")
    return emulate.library("probes.cu", sources=HERE)
