"""Output parity: an exported model or engine against PyTorch on fresh random inputs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sparse24.errors import Sparse24Error

from .errors import require

__all__ = ["OutputDiff", "ParityReport", "TOLERANCE", "compare", "flatten_outputs", "fresh_inputs", "integer_ranges", "output_names", "onnxruntime_session", "run_onnxruntime", "worst_of"]

# Relative error (max |actual - reference| / max |reference|) allowed per output dtype.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
_TINY = 1e-12


@dataclass(frozen=True)
class OutputDiff:
    """The worst disagreement of one output over every checked batch."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    reference_max: float
    tolerance: float

    @property
    def vanishing(self) -> bool:
        """The reference is (near) zero everywhere: no magnitude to judge a difference against."""
        return self.reference_max < _TINY

    @property
    def relative_error(self) -> float:
        """``max_abs_error`` relative to the largest reference magnitude (inf for a mismatch on a reference below 1e-12)."""
        if self.vanishing:  # nothing to be relative to: only an exact match passes
            return 0.0 if self.max_abs_error == 0 else float("inf")
        return self.max_abs_error / self.reference_max

    @property
    def passed(self) -> bool:
        return self.relative_error <= self.tolerance  # False for NaN and for any mismatch on a (near) zero reference

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "max_abs_error": self.max_abs_error,
            "reference_max": self.reference_max,
            "relative_error": self.relative_error,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class ParityReport:
    """``backend`` against ``reference`` on fresh random inputs of each batch size."""

    backend: str
    reference: str
    batch_sizes: tuple[int, ...]
    outputs: tuple[OutputDiff, ...]
    notes: tuple[str, ...] = ()  # how the inputs were drawn (integer ranges)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputDiff:
        return max(self.outputs, key=lambda o: (not o.passed, o.relative_error))

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        batches = ", ".join(map(str, self.batch_sizes))
        lines = [f"parity {verdict}: {self.backend} vs {self.reference}, fresh random inputs, batch {batches}"]
        for o in self.outputs:
            lines.append(
                f"  {o.name} {list(o.shape)}: max |diff| {o.max_abs_error:.3g} = {o.relative_error:.3g} of max |ref| {o.reference_max:.3g}"
                f" (tolerance {o.tolerance:g}) {'ok' if o.passed else 'FAILED'}"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reference": self.reference,
            "batch_sizes": list(self.batch_sizes),
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
            "notes": list(self.notes),
        }


def flatten_outputs(value: Any) -> list[Tensor]:
    """The tensors of a model's output in the order the ONNX exporter flattens them."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten_outputs(item)]
    if value is None or isinstance(value, (int, float, bool, str)):
        return []
    raise TypeError(f"cannot compare a model output of type {type(value).__name__}")


def output_names(value: Any, prefix: str = "") -> list[str] | None:
    """Names for the flattened outputs of a model that returns a dict (``"logits"``, ``"hidden.0"``).

    None when the output holds no mapping: the exporter's own names are kept then.
    """
    if isinstance(value, Tensor):
        return [prefix or "output"]
    if isinstance(value, Mapping):
        names = []
        for key, item in value.items():
            names += output_names(item, f"{prefix}.{key}" if prefix else str(key)) or []
        return names
    if isinstance(value, (list, tuple)) and prefix:
        return [n for i, item in enumerate(value) for n in output_names(item, f"{prefix}.{i}") or []]
    return None


IntRange = tuple[int, int]  # [low, high): high exclusive, like range() and torch.randint
InputRanges = Mapping[str | int, IntRange]  # by input name or position


def _check_range(value: Any, where: str) -> IntRange:
    try:
        low, high = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a range is (low, high) with high exclusive, got {value!r}") from None
    if low >= high:
        raise ValueError(f"{where}: empty range [{low}, {high}): high is exclusive and must be above low")
    return low, high


def integer_ranges(
    names: Sequence[str], examples: Sequence[Tensor], given: InputRanges | None = None, inferred: Mapping[str, tuple[int, str]] | None = None
) -> tuple[list[IntRange | None], list[str]]:
    """The value range to draw each integer input from, and a note on where each came from.

    In order: ``given`` (by input name or position), ``inferred`` (input -> size of the
    embedding table it indexes, and the table's name), else the example's own range if it
    is not constant. A constant integer example with no range (all-zero token ids) is
    refused: parity on it would check one token only. Non-integer inputs get None.
    """
    if len(names) != len(examples):
        raise ValueError(f"{len(names)} graph inputs for {len(examples)} example inputs ({', '.join(names)})")
    given = dict(given or {})
    inferred = inferred or {}
    for key in given:
        if not (key in names or (isinstance(key, int) and 0 <= key < len(names))):
            raise ValueError(f"input range for {key!r}: the graph's inputs are {', '.join(names)} (or their positions 0..{len(names) - 1})")
    ranges: list[IntRange | None] = []
    notes: list[str] = []
    for index, (name, example) in enumerate(zip(names, examples)):
        if example.dtype.is_floating_point or example.dtype.is_complex or example.dtype == torch.bool:
            ranges.append(None)
            continue
        if name in given or index in given:
            ranges.append(_check_range(given.get(name, given.get(index)), f"input {name}"))
            notes.append(f"integer input {name}: values drawn from [{ranges[-1][0]}, {ranges[-1][1]}) as given")
        elif name in inferred:
            size, table = inferred[name]
            ranges.append((0, size))
            notes.append(f"integer input {name}: values drawn from [0, {size}), the rows of the embedding table {table} it indexes")
        elif example.numel() and int(example.min()) < int(example.max()):
            ranges.append((int(example.min()), int(example.max()) + 1))
            notes.append(f"integer input {name}: values drawn from the example's own range [{ranges[-1][0]}, {ranges[-1][1]}); give a range to widen it")
        else:
            value = int(example.flatten()[0]) if example.numel() else "empty"
            raise Sparse24Error(
                f"integer input {name} is constant ({value}) in the example and no range is known for it (it indexes no embedding table): "
                f"give one, e.g. --input-range {name}=LOW:HIGH (input_ranges={{{name!r}: (low, high)}}, high exclusive)"
            )
    return ranges, notes


def fresh_inputs(examples: Sequence[Tensor], batch: int | None, generator: torch.Generator, ranges: Sequence[IntRange | None] | None = None) -> tuple[Tensor, ...]:
    """New random tensors shaped like ``examples`` (dim 0 set to ``batch`` unless None).

    Floats are standard normal, booleans fair coin flips, integers uniform over
    ``ranges[i]`` (see :func:`integer_ranges`; an integer input without one is an error).
    """
    fresh = []
    for index, example in enumerate(examples):
        shape = list(example.shape)
        if batch is not None and shape:
            shape[0] = batch
        if example.dtype.is_floating_point:
            tensor = torch.randn(shape, generator=generator).to(example.dtype)
        elif example.dtype == torch.bool:
            tensor = torch.rand(shape, generator=generator) < 0.5
        else:
            bounds = ranges[index] if ranges is not None and index < len(ranges) else None
            if bounds is None:
                raise ValueError(f"integer input {index} has no value range (see integer_ranges)")
            tensor = torch.randint(bounds[0], bounds[1], shape, generator=generator, dtype=example.dtype)
        fresh.append(tensor)
    return tuple(fresh)


def compare(names: Sequence[str], actual: Sequence[Tensor], reference: Sequence[Tensor], tolerance: float) -> list[OutputDiff]:
    """One :class:`OutputDiff` per output; shapes must match."""
    if len(actual) != len(reference):
        raise ValueError(f"{len(actual)} outputs to compare with {len(reference)} reference outputs")
    diffs = []
    for name, a, r in zip(names, actual, reference):
        if tuple(a.shape) != tuple(r.shape):
            raise ValueError(f"output {name} has shape {list(a.shape)}, PyTorch gives {list(r.shape)}")
        a64, r64 = a.detach().cpu().double(), r.detach().cpu().double()
        error = float((a64 - r64).abs().max()) if a64.numel() else 0.0
        if a64.numel() and not bool(torch.isfinite(a64).all()) and bool(torch.isfinite(r64).all()):
            error = float("nan")
        diffs.append(OutputDiff(name, tuple(r.shape), error, float(r64.abs().max()) if r64.numel() else 0.0, tolerance))
    return diffs


def worst_of(runs: Sequence[Sequence[OutputDiff]]) -> tuple[OutputDiff, ...]:
    """Per output, the run with the largest relative error (NaN first)."""
    def key(diff: OutputDiff) -> float:
        return float("inf") if diff.relative_error != diff.relative_error else diff.relative_error

    return tuple(max(per_output, key=key) for per_output in zip(*runs))


def onnxruntime_session(path: str | os.PathLike) -> Any:
    """An onnxruntime CPU session for checking semantics.

    Graph optimizations stay at BASIC (constant folding, redundant-node removal): the
    higher levels add fusions we are not checking, and onnxruntime 1.32's ENABLE_ALL
    crashed (SIGSEGV) on an fp16 transformer encoder here.
    """
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnxruntime(session: Any, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Run ``session`` on ``inputs`` (in the graph's input order); outputs as CPU tensors."""
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"the ONNX graph takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}")
    feeds = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(names, inputs)}
    return [torch.from_numpy(out) for out in session.run(None, feeds)]
