"""Errors of the export stage; all are :class:`sparse24.Sparse24Error`, so the CLI prints one line."""

from __future__ import annotations

import importlib
from types import ModuleType

from sparse24.errors import CheckFailed, Sparse24Error

__all__ = ["BuildError", "ExportError", "MissingDependency", "ParityError", "UnsupportedGpu", "require"]


class MissingDependency(Sparse24Error):
    """An optional package this step needs is not installed."""


class UnsupportedGpu(Sparse24Error):
    """No CUDA GPU, or one without 2:4 sparse tensor cores."""


class ExportError(Sparse24Error):
    """The model could not be exported, or TensorRT's ONNX parser rejected the file."""


class BuildError(Sparse24Error):
    """TensorRT could not build an engine."""


class ParityError(CheckFailed):
    """An exported model or engine does not reproduce PyTorch's outputs."""


_EXPORT_EXTRA = "pip install 'sparse24[export]' (onnx, onnxscript, onnxruntime)"
_INSTALL = {
    "onnx": _EXPORT_EXTRA,
    "onnxscript": _EXPORT_EXTRA,
    "onnxruntime": _EXPORT_EXTRA,
    "tensorrt": "pip install tensorrt (NVIDIA's wheels, for a machine with a CUDA GPU and driver)",
}


def require(module: str) -> ModuleType:
    """Import an optional package, or raise :class:`MissingDependency` saying what to install."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as error:  # OSError: a wheel without its shared libraries
        hint = _INSTALL.get(module, f"pip install {module}")
        raise MissingDependency(f"{module} is not installed ({error}); install it with: {hint}") from error
