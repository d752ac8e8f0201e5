"""sparse24 CUDA kernels: 2:4 compress/decompress and sparse GEMMs, compiled at run time with NVRTC.

Sources are in ``csrc/`` (header-free CUDA C++), the one loader is :mod:`sparse24.kernels.loader`,
the launch wrappers are :mod:`sparse24.kernels.ops`, and :mod:`sparse24.kernels.reference` holds the
pure-PyTorch references every kernel is tested against. :mod:`sparse24.kernels.emulate` runs the same
sources on the CPU with the hardware's semantics, for tests (``SPARSE24_KERNELS=emulate``).
``SPARSE24_DISABLE_KERNELS=1`` turns the custom kernels off. cuda-python is imported only
when a kernel is first needed.
"""

from __future__ import annotations

from .loader import ENV_DISABLE, KernelUnavailable, kernels_unavailable

__all__ = ["ENV_DISABLE", "KernelUnavailable", "kernels_unavailable"]
