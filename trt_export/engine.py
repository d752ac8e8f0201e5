"""TensorRT engines with sparse weights enabled, and what TensorRT did with them.

A thin layer over the TensorRT Python API (8.6, 10.x, 11.x):

- 11.x removed ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` and the FP16/INT8 builder
  flags: networks are strongly typed and the precision comes from the ONNX types.
- 10.x deprecated EXPLICIT_BATCH (ignored); 8.6 needs it for ONNX. Both need
  ``BuilderFlag.FP16`` to build fp16 kernels.
- ``BuilderFlag.SPARSE_WEIGHTS`` (``trtexec --sparsity=enable``) exists in all three.

Everything around the API -- log parsing, inspector-JSON parsing, shape profiles, the
precision plan, the trtexec line, the per-layer report -- is plain Python in this module and
tested without TensorRT.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparse24.errors import Sparse24Error
from sparse24.io import atomic_path, write_text

from .errors import BuildError, ExportError, UnsupportedGpu, require
from .inspection import OnnxSparsityReport, _split_top_level, embedding_ranges, inspect_onnx
from .parity import (
    InputRanges,
    ParityReport,
    compare,
    flatten_outputs,
    fresh_inputs,
    integer_ranges,
    onnxruntime_session,
    run_onnxruntime,
)

__all__ = [
    "EngineLayer",
    "EngineReport",
    "LayerOutcome",
    "SparsityLog",
    "TrtRunner",
    "build_engine",
    "check_gpu",
    "gpu_problem",
    "layer_outcomes",
    "parse_engine_information",
    "parse_shape_spec",
    "parse_sparsity_log",
    "precision_plan",
    "profile_shapes",
    "tensorrt_unavailable",
    "trtexec_command",
]

logger = logging.getLogger("trt_export")

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

_ELIGIBLE = "(Sparsity) Layers eligible for sparse math:"
_PICKED = "(Sparsity) TRT inference plan picked sparse implementation for layers:"
# TensorRT engines checked against onnxruntime: fp16 kernels, and TF32 (on by default) for fp32.
ENGINE_TOLERANCE = 1e-2


# ---------------------------------------------------------------- plain parts, tested without TensorRT


@dataclass(frozen=True)
class SparsityLog:
    """The builder's two ``(Sparsity)`` lines; ``None`` where the log did not have the line."""

    eligible: tuple[str, ...] | None
    picked: tuple[str, ...] | None


def parse_sparsity_log(log: str | Iterable[str]) -> SparsityLog:
    """Read ``(Sparsity) Layers eligible for sparse math: ...`` and ``... picked sparse implementation for layers: ...``.

    Accepts the raw messages or printed lines with any prefix (trtexec's ``[I] [TRT]``,
    Python's ``[TRT] [I]``). An empty list ends right after the colon. The last occurrence
    wins (a log that holds several builds).
    """
    lines = log.splitlines() if isinstance(log, str) else log
    eligible = picked = None
    for line in lines:
        for marker in (_ELIGIBLE, _PICKED):
            at = line.find(marker)
            if at >= 0:
                names = tuple(_split_top_level(line[at + len(marker):]))
                if marker == _ELIGIBLE:
                    eligible = names
                else:
                    picked = names
    return SparsityLog(eligible, picked)


_SPARSE_WEIGHT_KEYS = ("HasSparseWeights", "AllowSparse", "ConvHasSparseWeights")


@dataclass(frozen=True)
class EngineLayer:
    """One layer of a built engine, from IEngineInspector's JSON."""

    name: str
    layer_type: str | None = None
    tactic: str | None = None
    has_sparse_weights: bool | None = None  # weights match 2:4 (not: a sparse kernel ran)
    onnx_nodes: tuple[str, ...] = ()  # from 10.x's "Metadata": "[ONNX Layer: ...]"

    @property
    def sparse_kernel(self) -> bool:
        """The tactic TensorRT picked is a sparse tensor-core kernel (its name says so)."""
        tactic = (self.tactic or "").lower()
        return "sparse" in tactic or "sptensor" in tactic

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer_type": self.layer_type,
            "tactic": self.tactic,
            "has_sparse_weights": self.has_sparse_weights,
            "sparse_kernel": self.sparse_kernel,
            "onnx_nodes": list(self.onnx_nodes),
        }


def parse_engine_information(text: str) -> tuple[EngineLayer, ...]:
    """Layers from ``get_engine_information(LayerInformationFormat.JSON)`` (``trtexec --exportLayerInfo``).

    Handles 8.x/10.x (``{"Layers": [...], "Bindings": [...]}``) and 11.x (``"I/O Tensors"``
    instead of ``"Bindings"``); layers are objects with DETAILED profiling verbosity and bare
    names otherwise. The sparse-weights flag is ``HasSparseWeights`` (8.4+), ``AllowSparse``
    (early 8.x) or ``ConvHasSparseWeights`` (fused conv layers).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"engine information is not JSON: {error}") from error
    entries = data.get("Layers", []) if isinstance(data, Mapping) else data
    if not isinstance(entries, list):
        raise ValueError("engine information has no list of layers")
    layers = []
    for entry in entries:
        if isinstance(entry, str):
            layers.append(EngineLayer(name=entry))
            continue
        if not isinstance(entry, Mapping):
            continue
        flag = next((entry[k] for k in _SPARSE_WEIGHT_KEYS if k in entry), None)
        metadata = str(entry.get("Metadata") or "")
        layers.append(
            EngineLayer(
                name=str(entry.get("Name", "")),
                layer_type=entry.get("LayerType"),
                tactic=entry.get("TacticName"),
                has_sparse_weights=None if flag is None else bool(int(flag)),
                onnx_nodes=tuple(re.findall(r"\[ONNX Layer: ([^\]]*)\]", metadata)),
            )
        )
    return tuple(layers)


def _tokens(layer_name: str) -> set[str]:
    """The ONNX node names inside a (possibly fused) TensorRT layer name, e.g. ``a + PWN(b, c)``."""
    return {t for t in re.split(r"[\s,()\[\]+]+", layer_name) if t} | {layer_name}


@dataclass(frozen=True)
class LayerOutcome:
    """One ONNX GEMM/conv layer with a constant weight and what TensorRT did with it."""

    name: str  # PyTorch parameter (or constant, or node) name
    node: str  # ONNX node
    onnx_status: str  # inspect_onnx's status: "2:4", "not 2:4", ...
    trt_layers: tuple[str, ...]  # the engine layers the node ended up in
    eligible: bool | None  # in the "(Sparsity) Layers eligible" line (None: no such line)
    picked: bool | None  # in the "... picked sparse implementation" line
    sparse_kernel: bool | None  # an engine layer with a sparse tactic (None: no inspector tactic)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, trt_layers=list(self.trt_layers))


def layer_outcomes(onnx_report: OnnxSparsityReport, log: SparsityLog, layers: Sequence[EngineLayer]) -> tuple[LayerOutcome, ...]:
    """Join the ONNX inspection, the build log and the inspector, per ONNX layer with a weight.

    An ONNX node is found in an engine layer by the 10.x metadata or by name (TensorRT
    names fused layers ``nodeA + nodeB``).
    """
    def holds(names: Iterable[str], node: str) -> bool:
        return any(node in _tokens(name) for name in names)

    outcomes = []
    for layer in onnx_report.layers:
        if layer.weight is None:
            continue
        engine = [e for e in layers if layer.node in e.onnx_nodes or layer.node in _tokens(e.name)]
        tactics_known = [e for e in engine if e.tactic is not None]
        outcomes.append(
            LayerOutcome(
                name=layer.name,
                node=layer.node,
                onnx_status=layer.status,
                trt_layers=tuple(e.name for e in engine),
                eligible=None if log.eligible is None else holds(log.eligible, layer.node),
                picked=None if log.picked is None else holds(log.picked, layer.node),
                sparse_kernel=any(e.sparse_kernel for e in tactics_known) if tactics_known else None,
            )
        )
    return tuple(outcomes)


def _disagreements(log: SparsityLog, layers: Sequence[EngineLayer]) -> list[str]:
    """Where the build log and the inspector's tactics tell different stories."""
    if log.picked is None or not any(e.tactic for e in layers):
        return []
    by_name = {e.name: e for e in layers}
    problems = []
    for name in log.picked:
        engine = by_name.get(name)
        if engine is not None and engine.tactic is not None and not engine.sparse_kernel:
            problems.append(f"log says {name} picked a sparse implementation, but its tactic is {engine.tactic}")
    for engine in layers:
        if engine.sparse_kernel and engine.name not in log.picked:
            problems.append(f"{engine.name} runs sparse tactic {engine.tactic}, but the log does not list it as picked")
    return problems


def parse_shape_spec(spec: str) -> dict[str, tuple[int, ...]]:
    """trtexec's shape syntax: ``x:1x3x224x224,mask:1x128`` -> ``{"x": (1, 3, 224, 224), ...}``."""
    shapes = {}
    for item in _split_top_level(spec):
        name, sep, dims = item.rpartition(":")
        name = name.strip().strip("'")
        if not sep or not name:
            raise ValueError(f"shape {item!r}: expected NAME:D0xD1x..., e.g. x:1x3x224x224")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if dims != "scalar" else ()
        except ValueError:
            raise ValueError(f"shape {item!r}: dimensions must be integers separated by 'x'") from None
        if any(d < 0 for d in shape):
            raise ValueError(f"shape {item!r}: dimensions must not be negative")
        shapes[name] = shape
    return shapes


def profile_shapes(
    inputs: Sequence[tuple[str, Sequence[int]]],
    shapes: Mapping[str, Sequence[int] | Sequence[Sequence[int]]] | None,
) -> tuple[dict[str, ShapeRange], list[str]]:
    """(min, opt, max) per input with dynamic dims (-1), and notes on the defaults used.

    ``shapes`` maps an input to one shape (min = opt = max) or to ``(min, opt, max)``.
    Dynamic dims not given are set to 1, as trtexec does, with a note.
    """
    shapes = dict(shapes or {})
    names = [name for name, _ in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ValueError(f"shapes given for {', '.join(unknown)}, but the network's inputs are {', '.join(names)}")
    profiles: dict[str, ShapeRange] = {}
    notes = []
    for name, dims in inputs:
        dims = tuple(int(d) for d in dims)
        given = shapes.get(name)
        if given is None:
            if any(d < 0 for d in dims):
                fixed = tuple(1 if d < 0 else d for d in dims)
                profiles[name] = (fixed, fixed, fixed)
                notes.append(f"input {name} has dynamic dims but no shapes were given: using {'x'.join(map(str, fixed))} (as trtexec does)")
            continue
        triple = given if given and isinstance(given[0], Sequence) else (given, given, given)
        if len(triple) != 3:
            raise ValueError(f"shapes[{name!r}] must be one shape or (min, opt, max)")
        triple = tuple(tuple(int(d) for d in shape) for shape in triple)
        for shape in triple:
            if len(shape) != len(dims):
                raise ValueError(f"shape {list(shape)} for input {name} has rank {len(shape)}; the network's input has rank {len(dims)} ({list(dims)})")
            for d, s in zip(dims, shape):
                if d >= 0 and s != d:
                    raise ValueError(f"shape {list(shape)} for input {name} changes a fixed dimension of {list(dims)}")
        low, opt, high = triple
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            raise ValueError(f"shapes for input {name} must satisfy min <= opt <= max in every dimension, got {[list(s) for s in triple]}")
        if any(d < 0 for d in dims) or low != high:
            profiles[name] = triple
    return profiles, notes


def precision_plan(trt_major: int, onnx_type: str, precision: str | None) -> tuple[str, bool]:
    """(engine precision, whether to set ``BuilderFlag.FP16``) for a TensorRT major version.

    TensorRT 11 networks are strongly typed: the ONNX types decide, and asking for another
    precision is an error. 8.6/10.x build fp16 kernels only with the FP16 flag.
    """
    if precision not in (None, "fp32", "fp16"):
        raise ValueError(f"precision must be None, 'fp32' or 'fp16', got {precision!r}")
    if trt_major >= 11:
        if precision is not None and precision != onnx_type:
            raise BuildError(
                f"TensorRT {trt_major} builds in the ONNX file's own types ({onnx_type}) and has no precision flags; "
                f"export the ONNX with dtype={precision!r} instead"
            )
        return onnx_type, False
    effective = precision or onnx_type
    return effective, effective == "fp16"


def trtexec_command(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    sparse: bool,
    fp16_flag: bool,
    workspace_bytes: int,
    profiles: Mapping[str, ShapeRange] | None = None,
    timing_cache: str | os.PathLike | None = None,
) -> str:
    """The trtexec line that builds the same engine (``--fp16`` only where the version has it)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if sparse:
        args.append("--sparsity=enable")
    if fp16_flag:
        args.append("--fp16")
    args.append(f"--memPoolSize=workspace:{max(workspace_bytes >> 20, 1)}")
    if profiles:
        for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            args.append(flag + "=" + ",".join(f"{name}:{'x'.join(map(str, shapes[index]))}" for name, shapes in profiles.items()))
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={Path(engine_path).with_suffix('.layers.json')}", "--verbose", "--skipInference"]
    return shlex.join(args)


# ---------------------------------------------------------------- preconditions


def gpu_problem(name: str | None, capability: tuple[int, int] | None, *, sparse: bool) -> str | None:
    """Why this GPU (``None``: no GPU) cannot build the engine, or None."""
    if name is None or capability is None:
        return "no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT builds engines on the GPU that runs them"
    if sparse and tuple(capability) < (8, 0):
        return f"{name} is sm_{capability[0]}{capability[1]}: 2:4 sparse tensor cores need Ampere (sm_80) or newer"
    return None


def check_gpu(*, sparse: bool = True) -> str:
    """Describe the current CUDA GPU, or raise :class:`UnsupportedGpu` (none, or older than sm_80 for sparse)."""
    available = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if available else None
    capability = torch.cuda.get_device_capability() if available else None
    problem = gpu_problem(name, capability, sparse=sparse)
    if problem is not None:
        raise UnsupportedGpu(problem)
    return f"{name} (sm_{capability[0]}{capability[1]})"


def _import_tensorrt() -> tuple[Any, int]:
    trt = require("tensorrt")
    try:
        major = int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        raise Sparse24Error(f"cannot read the TensorRT version ({getattr(trt, '__version__', None)!r})") from None
    if major < 8:
        raise Sparse24Error(f"TensorRT {trt.__version__} is too old: sparse24 supports 8.6, 10.x and 11.x")
    return trt, major


def tensorrt_unavailable(*, sparse: bool = True) -> str | None:
    """Why :func:`build_engine` cannot run here (tensorrt missing, no GPU, GPU too old), or None."""
    try:
        _import_tensorrt()
        check_gpu(sparse=sparse)
    except Sparse24Error as error:
        return str(error)
    return None


# ---------------------------------------------------------------- the TensorRT layer


@dataclass(frozen=True)
class EngineReport:
    """A built engine and which of its layers TensorRT found eligible for, and ran on, sparse kernels."""

    engine_path: str
    onnx_path: str
    sparse: bool
    precision: str
    tensorrt_version: str
    device: str
    build_seconds: float
    size_bytes: int
    profiles: dict[str, ShapeRange]
    log: SparsityLog
    layers: tuple[EngineLayer, ...]
    outcomes: tuple[LayerOutcome, ...]
    disagreements: tuple[str, ...]
    trtexec: str
    log_path: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def sparse_kernel_layers(self) -> tuple[str, ...]:
        """Engine layers whose tactic is a sparse kernel (inspector)."""
        return tuple(e.name for e in self.layers if e.sparse_kernel)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine_path": self.engine_path,
            "onnx_path": self.onnx_path,
            "sparse": self.sparse,
            "precision": self.precision,
            "tensorrt_version": self.tensorrt_version,
            "device": self.device,
            "build_seconds": self.build_seconds,
            "size_bytes": self.size_bytes,
            "profiles": {k: [list(s) for s in v] for k, v in self.profiles.items()},
            "log_eligible": list(self.log.eligible) if self.log.eligible is not None else None,
            "log_picked": list(self.log.picked) if self.log.picked is not None else None,
            "sparse_kernel_layers": list(self.sparse_kernel_layers),
            "layers": [e.to_dict() for e in self.layers],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "disagreements": list(self.disagreements),
            "trtexec": self.trtexec,
            "log_path": self.log_path,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        def mark(value: bool | None) -> str:
            return "?" if value is None else "yes" if value else "no"

        lines = [
            f"# TensorRT {'sparse' if self.sparse else 'dense'} engine: {Path(self.engine_path).name}",
            "",
            f"TensorRT {self.tensorrt_version} on {self.device}, {self.precision}, built in {self.build_seconds:.1f} s, {self.size_bytes / 2**20:.2f} MiB",
            "",
            "| layer | ONNX node | 2:4 in ONNX | TensorRT layer | eligible (log) | sparse picked (log) | sparse tactic (inspector) |",
            "|---|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            lines.append(
                f"| {o.name} | {o.node} | {o.onnx_status} | {' / '.join(o.trt_layers) or '-'} | {mark(o.eligible)} | {mark(o.picked)} | {mark(o.sparse_kernel)} |"
            )
        lines += ["", f"Equivalent command: `{self.trtexec}`", ""]
        lines += [f"- {item}" for item in (*self.disagreements, *self.notes)]
        return "\n".join(lines).rstrip() + "\n"

    def __str__(self) -> str:
        def names(items: tuple[str, ...] | None) -> str:
            return "(not in the log)" if items is None else ", ".join(items) or "none"

        lines = [
            f"built {self.engine_path} ({'sparse' if self.sparse else 'dense'}, {self.precision}) with TensorRT {self.tensorrt_version} on {self.device} in {self.build_seconds:.1f} s",
            f"eligible for sparse math (log): {names(self.log.eligible)}",
            f"picked sparse implementation (log): {names(self.log.picked)}",
            f"sparse tactics (inspector): {', '.join(self.sparse_kernel_layers) or 'none'}",
        ]
        lines += [f"disagreement: {d}" for d in self.disagreements]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"trtexec equivalent: {self.trtexec}")
        return "\n".join(lines)


def _capture_logger(trt: Any, lines: list[str] | collections.deque, *, verbose: bool = False) -> Any:
    """A TensorRT ILogger that keeps the messages and forwards warnings and errors to ``logging``.

    TensorRT sends custom loggers everything; VERBOSE messages are kept only with ``verbose``.
    """
    severity = trt.ILogger.Severity
    tags = {severity.INTERNAL_ERROR: "F", severity.ERROR: "E", severity.WARNING: "W", severity.INFO: "I", severity.VERBOSE: "V"}

    class _Capture(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, level: Any, msg: str) -> None:
            tag = tags.get(level, "?")
            if tag == "V" and not verbose:
                return
            lines.append(f"[{tag}] {msg}")
            if tag in ("F", "E"):
                logger.error("TensorRT: %s", msg)
            elif tag == "W":
                logger.warning("TensorRT: %s", msg)
            else:
                logger.debug("TensorRT: %s", msg)

    return _Capture()


def _parser_error(parser: Any, onnx_path: Path) -> ExportError:
    """One message naming the node TensorRT's ONNX parser rejected."""
    problems = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node_name() if hasattr(error, "node_name") else ""
        operator = error.node_operator() if hasattr(error, "node_operator") else ""
        where = f"node {node or '#' + str(error.node())}" + (f" ({operator})" if operator else "")
        problems.append(f"{where}: {error.desc()}")
    detail = "; ".join(problems) or "no details"
    return ExportError(f"TensorRT's ONNX parser rejected {onnx_path}: {detail}")


def _onnx_type(report: OnnxSparsityReport) -> str:
    """fp16 when most GEMM/conv work has fp16 weights, else fp32."""
    half = sum(layer.flops or 1 for layer in report.layers if layer.dtype == "float16")
    full = sum(layer.flops or 1 for layer in report.layers if layer.dtype == "float32")
    return "fp16" if half > full else "fp32"


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    sparse: bool = True,
    precision: str | None = None,
    workspace_gb: float = 4.0,
    timing_cache: str | os.PathLike | None = None,
    shapes: Mapping[str, Sequence[int] | Sequence[Sequence[int]]] | None = None,
    log_path: str | os.PathLike | None = None,
) -> EngineReport:
    """Build a TensorRT engine from ``onnx_path`` and report which layers ran sparse.

    ``sparse=True`` sets ``BuilderFlag.SPARSE_WEIGHTS`` (``trtexec --sparsity=enable``);
    ``sparse=False`` builds the dense engine to compare with. ``precision`` (None: from the
    ONNX types) is ``"fp16"`` or ``"fp32"``; TensorRT 11 only accepts the ONNX's own.
    ``shapes`` gives optimization-profile shapes per input: one shape or ``(min, opt, max)``.
    The engine (and the timing cache and log, when asked for) are written atomically.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise Sparse24Error(f"ONNX file not found: {onnx_path}")
    for path in filter(None, (engine_path, log_path and Path(log_path), timing_cache and Path(timing_cache))):
        if not path.parent.is_dir():
            raise Sparse24Error(f"output directory does not exist: {path.parent}")
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be positive, got {workspace_gb}")
    trt, major = _import_tensorrt()
    device = check_gpu(sparse=sparse)
    onnx_report = inspect_onnx(onnx_path)
    effective, fp16_flag = precision_plan(major, _onnx_type(onnx_report), precision)

    lines: list[str] = []
    trt_logger = _capture_logger(trt, lines, verbose=log_path is not None)
    builder = trt.Builder(trt_logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise _parser_error(parser, onnx_path)

    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if sparse:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    inputs = [(network.get_input(i).name, tuple(network.get_input(i).shape)) for i in range(network.num_inputs)]
    profiles, notes = profile_shapes(inputs, shapes)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profiles.items():
            try:
                profile.set_shape(name, low, opt, high)
            except RuntimeError as error:  # TensorRT's own check of the ranges
                raise ValueError(f"TensorRT refused the shapes for input {name} ({list(low)}, {list(opt)}, {list(high)}): {error}") from error
        if config.add_optimization_profile(profile) < 0:
            raise ValueError(f"TensorRT refused the optimization profile {profiles}")
    if timing_cache is not None:
        cached = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(cached)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            notes.append(f"timing cache {timing_cache} is unreadable or from another GPU/TensorRT: starting a new one")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
    if sparse and effective == "fp32":
        notes.append("fp32 engine: TensorRT's sparse tactics run in FP16/INT8, so expect none to be picked; export with dtype='fp16'")

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if not serialized:
        errors = [line for line in lines if line.startswith(("[E]", "[F]"))]
        raise BuildError(f"TensorRT could not build an engine from {onnx_path}: {errors[-1][4:] if errors else 'see the log'}")
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(serialized)
    updated = config.get_timing_cache() if timing_cache is not None else None
    if updated is not None:
        with atomic_path(timing_cache) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(updated.serialize())

    engine = trt.Runtime(trt_logger).deserialize_cuda_engine(serialized)
    if engine is None:
        raise BuildError(f"TensorRT built {engine_path} but cannot load it back to inspect it: {lines[-1] if lines else 'see the log'}")
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    layers = parse_engine_information(info)
    log = parse_sparsity_log(lines)
    if sparse and log.eligible is None:
        notes.append("the build log has no '(Sparsity)' lines")
    if log_path is not None:
        write_text(log_path, "\n".join(lines) + "\n")
    report = EngineReport(
        engine_path=str(engine_path),
        onnx_path=str(onnx_path),
        sparse=sparse,
        precision=effective,
        tensorrt_version=str(trt.__version__),
        device=device,
        build_seconds=seconds,
        size_bytes=engine_path.stat().st_size,
        profiles=profiles,
        log=log,
        layers=layers,
        outcomes=layer_outcomes(onnx_report, log, layers),
        disagreements=tuple(_disagreements(log, layers)),
        trtexec=trtexec_command(onnx_path, engine_path, sparse=sparse, fp16_flag=fp16_flag, workspace_bytes=workspace, profiles=profiles, timing_cache=timing_cache),
        log_path=str(log_path) if log_path is not None else None,
        notes=tuple(notes),
    )
    logger.info("%s", report)
    return report


def _torch_dtypes(trt: Any) -> dict[Any, torch.dtype]:
    pairs = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}
    return {getattr(trt.DataType, name): dtype for name, dtype in pairs.items() if hasattr(trt.DataType, name)}


class TrtRunner:
    """Run a serialized engine on torch CUDA tensors, on the current torch stream.

    Uses the tensor-address API (``set_tensor_address`` + ``execute_async_v3``, TensorRT
    8.5+), so no pycuda. ``runner(*inputs)`` returns the outputs in the engine's order, ordered
    on the current stream (on the legacy default stream, the engine runs on a side stream
    that waits for it and that it then waits for, since TensorRT would synchronize the device).
    """

    def __init__(self, engine_path: str | os.PathLike) -> None:
        path = Path(engine_path)
        if not path.is_file():
            raise Sparse24Error(f"engine file not found: {path}")
        trt, _ = _import_tensorrt()
        check_gpu(sparse=False)
        self._log: collections.deque[str] = collections.deque(maxlen=50)
        self._logger = _capture_logger(trt, self._log)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BuildError(f"TensorRT cannot load {path}: it was built by another TensorRT version or for another GPU ({'; '.join(list(self._log)[-2:])})")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BuildError(f"TensorRT cannot create an execution context for {path} (out of GPU memory?): {'; '.join(list(self._log)[-2:])}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        dtypes = _torch_dtypes(trt)
        unsupported = [f"{n} ({self.engine.get_tensor_dtype(n)})" for n in names if self.engine.get_tensor_dtype(n) not in dtypes]
        if unsupported:
            raise Sparse24Error(f"TrtRunner has no torch type for the engine's I/O tensors {', '.join(unsupported)}")
        self.dtypes = {n: dtypes[self.engine.get_tensor_dtype(n)] for n in names}
        self._side_stream: torch.cuda.Stream | None = None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"the engine takes {len(self.inputs)} inputs ({', '.join(self.inputs)}), got {len(inputs)}")
        current = torch.cuda.current_stream()
        keep = []
        for name, tensor in zip(self.inputs, inputs):
            if not tensor.is_cuda:
                raise ValueError(f"input {name} must be a CUDA tensor")
            if tensor.dtype != self.dtypes[name]:
                raise ValueError(f"input {name} must be {self.dtypes[name]}, got {tensor.dtype}")
            tensor = tensor.contiguous()
            keep.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(f"input {name} of shape {list(tensor.shape)} is outside the engine's optimization profile")
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ValueError(f"output {name} has a data-dependent shape {list(shape)}; TrtRunner does not support those")
            out = torch.empty(shape, dtype=self.dtypes[name], device=keep[0].device if keep else "cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = current
        if current.cuda_stream == 0:  # on the legacy default stream TensorRT synchronizes the device: use a side stream ordered with it
            self._side_stream = self._side_stream or torch.cuda.Stream(device=current.device)
            stream = self._side_stream
            stream.wait_stream(current)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BuildError(f"TensorRT failed to run the engine: {'; '.join(list(self._log)[-2:])}")
        if stream is not current:
            current.wait_stream(stream)
            for tensor in (*keep, *outputs):
                tensor.record_stream(stream)
        return tuple(outputs)

    def profile_shape(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) of an input in optimization profile 0."""
        low, opt, high = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(low), tuple(opt), tuple(high)

    def check(
        self,
        reference: str | os.PathLike | torch.nn.Module,
        inputs: Sequence[Tensor] | None = None,
        *,
        tolerance: float = ENGINE_TOLERANCE,
        seed: int = 0,
        input_ranges: InputRanges | None = None,
    ) -> ParityReport:
        """Compare the engine's outputs with a reference on ``inputs`` (default: random at the opt shapes).

        ``reference`` is the ONNX file (run with onnxruntime on CPU) or the PyTorch model (run
        in fp32 on a CPU copy). Random integer inputs are drawn from ``input_ranges`` (by
        input name or position, high exclusive) or, with an ONNX reference, from the size of
        the embedding table they index; an integer input with neither is refused.
        """
        notes: list[str] = []
        if inputs is None:
            generator = torch.Generator().manual_seed(seed)
            examples = [torch.zeros(self.profile_shape(n)[1], dtype=self.dtypes[n]) for n in self.inputs]
            inferred = {} if isinstance(reference, torch.nn.Module) else embedding_ranges(require("onnx").load(str(reference), load_external_data=False))
            ranges, notes = integer_ranges(self.inputs, examples, input_ranges, inferred)
            inputs = fresh_inputs(examples, None, generator, ranges)
        cpu_inputs = [t.detach().cpu() for t in inputs]
        if isinstance(reference, torch.nn.Module):
            model = copy.deepcopy(reference).cpu().float().eval()
            with torch.no_grad():
                expected = flatten_outputs(model(*[t.float() if t.is_floating_point() else t for t in cpu_inputs]))
            label = "PyTorch fp32"
        else:
            expected = run_onnxruntime(onnxruntime_session(reference), cpu_inputs)
            label = "onnxruntime CPU"
        actual = self(*[t.cuda() for t in inputs])
        torch.cuda.current_stream().synchronize()
        batch = int(inputs[0].shape[0]) if inputs[0].dim() else 1
        diffs = compare(self.outputs, [a.float().cpu() for a in actual], [e.float() for e in expected], tolerance)
        return ParityReport(backend="TensorRT", reference=label, batch_sizes=(batch,), outputs=tuple(diffs), notes=tuple(notes))
