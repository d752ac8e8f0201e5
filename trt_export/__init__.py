"""trt_export: from a 2:4 PyTorch model to a verified ONNX file and sparse TensorRT engines.

>>> report = trt_export.export_onnx(model, example, "model.onnx", dtype="fp16")  # parity + 2:4 checked
>>> print(trt_export.inspect_onnx("model.onnx"))           # which layers TensorRT can run 2:4
>>> engine = trt_export.build_engine("model.onnx", "model.engine", sparse=True)  # needs TensorRT + sm_80

onnx, onnxruntime and tensorrt are imported only by the functions that need them.
"""

from __future__ import annotations

from .engine import (
    EngineLayer,
    EngineReport,
    LayerOutcome,
    SparsityLog,
    TrtRunner,
    build_engine,
    tensorrt_unavailable,
)
from .errors import (
    BuildError,
    ExportError,
    MissingDependency,
    ParityError,
    UnsupportedGpu,
)
from .export import ExportReport, export_onnx
from .inspection import OnnxLayer, OnnxSparsityReport, inspect_onnx
from .parity import OutputDiff, ParityReport

__all__ = [
    "BuildError",
    "EngineLayer",
    "EngineReport",
    "ExportError",
    "ExportReport",
    "LayerOutcome",
    "MissingDependency",
    "OnnxLayer",
    "OnnxSparsityReport",
    "OutputDiff",
    "ParityError",
    "ParityReport",
    "SparsityLog",
    "TrtRunner",
    "UnsupportedGpu",
    "build_engine",
    "export_onnx",
    "inspect_onnx",
    "tensorrt_unavailable",
]
