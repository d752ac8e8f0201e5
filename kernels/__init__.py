"""sparse24 CUDA kernels: 2:4 compress/decompress and sparse GEMMs, compiled at run time with NVRTC.

Sources are in ``csrc/`` (header-free CUDA C++), the one loader is :mod:`sparse24.kernels.loader`,
the launch wrappers are :mod:`sparse24.kernels.ops`, and :mod:`sparse24.kernels.reference` holds the
pure-PyTorch references every kernel is tested against. :mod:`sparse24.kernels.emulate` runs the same
sources on the CPU with the hardware's semantics, for tests (``SPARSE24_KERNELS=emulate``).
``SPARSE24_DISABLE_KERNELS=1`` turns the custom kernels off. cuda-python is imported only
when a kernel is first needed.
"""

from __future__ import annotations

if __name__ == "kernels":
    # This folder installs as sparse24.kernels. Imported as a top-level ``kernels`` (a checkout's root on sys.path, as
    # ``python -m`` and ``python -c`` from there put it) it would shadow Hugging Face's ``kernels``, which transformers
    # (5.25 on) and a setuptools hook of that package import: load that package in its place. Without one, stand in as
    # an empty namespace package (no __file__, no __version__), which is what package checks such as transformers'
    # ``is_kernels_available`` (it imports the name once find_spec finds it) take for "not installed"; raising there
    # broke ``import transformers.models.bert`` on a machine without Hugging Face's kernels.
    import importlib.machinery
    import importlib.util
    import os
    import sys
    import types

    _checkout = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _path = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != _checkout]
    _spec = importlib.machinery.PathFinder.find_spec(__name__, _path)
    if _spec is None or _spec.loader is None:
        _module = types.ModuleType(__name__, f"Not installed: {_checkout}/kernels is sparse24.kernels, not a 'kernels' package.")
        _module.__spec__ = importlib.machinery.ModuleSpec(__name__, None, is_package=True)
        _module.__path__ = []  # kernels.<anything> is not found
        sys.modules[__name__] = _module  # the import statement returns what sys.modules holds once this file has run
    else:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[__name__] = _module
        _spec.loader.exec_module(_module)
else:
    from .loader import ENV_DISABLE, KernelUnavailable, kernels_unavailable

    __all__ = ["ENV_DISABLE", "KernelUnavailable", "kernels_unavailable"]
