"""TensorRT engines for the benchmarks: export with sparse24's exporter, build with ``build_engine``.

Only imported where ``trt_export.tensorrt_unavailable()`` said TensorRT and an sm_80+ GPU are here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["export_for_tensorrt", "tensorrt_callable"]


def export_for_tensorrt(model: nn.Module, example: Sequence[Tensor], onnx_path: Path) -> list[str]:
    """Export ``model`` (2:4 weights, fp16) to ``onnx_path`` with a dynamic batch; return the input names."""
    from sparse24.trt_export import export_onnx

    report = export_onnx(model, tuple(t.cpu() for t in example), onnx_path, dtype="fp16", dynamic_batch=True)
    return [name for name, _, _ in report.inputs]


def tensorrt_callable(
    onnx_path: Path, inputs: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], *, sparse: bool, timing_cache: Path
) -> tuple[Callable[..., tuple[Tensor, ...]], dict]:
    """Build a dense or sparse-enabled engine next to ``onnx_path``; return its runner and build report."""
    from sparse24.trt_export import TrtRunner, build_engine

    kind = "sparse" if sparse else "dense"
    tag = "_".join("x".join(map(str, shapes[2])) for shapes in inputs.values())
    engine = onnx_path.with_name(f"{onnx_path.stem}.{tag}.{kind}.engine")
    report = build_engine(onnx_path, engine, sparse=sparse, shapes=inputs, timing_cache=timing_cache)
    runner = TrtRunner(engine)
    torch.cuda.synchronize()
    dtypes = [runner.dtypes[name] for name in runner.inputs]

    def run(*tensors: Tensor) -> tuple[Tensor, ...]:  # e.g. int64 token ids into an INT32 engine input
        return runner(*(t if t.dtype == d else t.to(d) for t, d in zip(tensors, dtypes)))

    return run, report.to_dict()
