"""PyTorch -> ONNX with the 2:4 zeros baked in, checked against onnxruntime and by name."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparse24.axes import ATEN_WEIGHT_OPERANDS, gemm_weights, is_stacked_experts
from sparse24.dist import unwrap
from sparse24.enforce import masked_gemm_weights, masked_weights, strip
from sparse24.errors import Sparse24Error, SparsityError, first_line
from sparse24.mask import is_two_four

from .errors import ExportError, ParityError, require
from .inspection import OnnxSparsityReport, embedding_ranges, inspect_onnx
from .parity import (
    TOLERANCE,
    InputRanges,
    ParityReport,
    compare,
    flatten_outputs,
    fresh_inputs,
    integer_ranges,
    onnxruntime_session,
    output_names,
    run_onnxruntime,
    worst_of,
)

__all__ = ["ExportReport", "WeightUse", "export_onnx", "weight_uses"]

logger = logging.getLogger("trt_export")

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and checked."""

    path: str
    files: tuple[str, ...]  # the .onnx and, for models over 2 GB, its external-data file
    dtype: str
    opset: int
    dynamic_batch: bool
    inputs: tuple[tuple[str, tuple[int | str, ...], str], ...]  # (name, shape, type)
    outputs: tuple[tuple[str, tuple[int | str, ...], str], ...]
    parity: ParityReport
    sparsity: OnnxSparsityReport
    sparsified: tuple[str, ...]  # the weights sparse24 made 2:4, each found 2:4 in the ONNX
    unused: tuple[str, ...]  # 2:4 weights the exported program never reads (dead code in forward)
    seconds: float
    notes: tuple[str, ...] = ()  # what the export changed on its copy of the model (use_cache turned off)
    by_value: tuple[str, ...] = ()  # of ``sparsified``: stacked MoE experts weights, found by value (no GEMM holds them by name)

    def _names_line(self) -> str:
        if not self.sparsified and not self.unused:
            return "no 2:4 weights to check: the model has no masks and no 2:4 GEMM weight (a dense export)"
        line = f"{len(self.sparsified)} weights sparse24 made 2:4 are 2:4 in the ONNX, found by name"
        if self.by_value:
            line += f" ({len(self.by_value)} stacked experts weights by value)"
        if self.unused:
            line += f"; never read by the exported program (dead code in forward): {', '.join(self.unused)}"
        return line

    def to_dict(self) -> dict[str, Any]:
        def io(rows: Sequence[tuple[str, tuple, str]]) -> list[dict[str, Any]]:
            return [{"name": n, "shape": list(s), "dtype": t} for n, s, t in rows]

        return {
            "path": self.path,
            "files": list(self.files),
            "dtype": self.dtype,
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "inputs": io(self.inputs),
            "outputs": io(self.outputs),
            "parity": self.parity.to_dict(),
            "sparsified": list(self.sparsified),
            "by_value": list(self.by_value),
            "unused": list(self.unused),
            "sparsity": self.sparsity.to_dict(),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        def io(rows: Sequence[tuple[str, tuple, str]]) -> str:
            return ", ".join(f"`{n}` {'x'.join(map(str, s))} {t}" for n, s, t in rows)

        lines = [
            f"# ONNX export: {Path(self.path).name}",
            "",
            f"{self.dtype}, opset {self.opset}, {'dynamic' if self.dynamic_batch else 'static'} batch, exported in {self.seconds:.1f} s",
            f"inputs: {io(self.inputs)}; outputs: {io(self.outputs)}",
            *(f"- note: {note}" for note in self.notes),
            "",
            "## Parity",
            "",
            "```",
            str(self.parity),
            "```",
            "",
            self._names_line(),
            "",
        ]
        return "\n".join(lines) + "\n" + self.sparsity.to_markdown().replace("# 2:4 sparsity", "## 2:4 sparsity", 1)

    def __str__(self) -> str:
        def io(rows: Sequence[tuple[str, tuple, str]]) -> str:
            return ", ".join(f"{n} {'x'.join(map(str, s))} {t}" for n, s, t in rows)

        lines = [
            f"wrote {self.path} ({self.dtype}, opset {self.opset}, {'dynamic' if self.dynamic_batch else 'static'} batch) in {self.seconds:.1f} s",
            f"inputs: {io(self.inputs)}; outputs: {io(self.outputs)}",
            *(f"note: {note}" for note in self.notes),
            str(self.parity),
            self._names_line(),
            str(self.sparsity),
        ]
        return "\n".join(lines)


def _as_tuple(example_inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if not inputs:
        raise ValueError("example_inputs is empty: give one tensor or a tuple of tensors")
    for i, item in enumerate(inputs):
        if not isinstance(item, Tensor):
            raise ValueError(f"example_inputs[{i}] is a {type(item).__name__}; only tensors can be graph inputs")
    return inputs


def _sparse_names(model: nn.Module) -> list[str]:
    """The weights that must come out 2:4: the masked ones, else every 2:4 GEMM weight."""
    masked = [weight.name for weight in masked_gemm_weights(model)]  # no mask expanded on the model's GPU
    if masked:
        return masked
    return [w.name for w in gemm_weights(model) if w.reduction_size % 4 == 0 and bool(w.param.detach().abs().sum()) and is_two_four(w.param.detach(), w.axis.reduction)]


def _cpu_copy(model: nn.Module) -> tuple[nn.Module, str | None]:
    """A deep copy of ``model`` on the CPU, made tensor by tensor: a GPU model is never duplicated on its GPU.

    Every parameter and buffer is copied to the CPU first and handed to ``copy.deepcopy`` through
    its memo, so the rest of the module tree is copied around them (tied tensors stay tied). The
    note says so when the model was not on the CPU.
    """
    memo: dict[int, Any] = {}
    devices = set()
    with torch.no_grad():
        for param in model.parameters():
            devices.add(param.device)
            memo[id(param)] = nn.Parameter(param.detach().to("cpu", copy=True), requires_grad=param.requires_grad)
        for buffer in model.buffers():
            devices.add(buffer.device)
            memo[id(buffer)] = buffer.detach().to("cpu", copy=True)
    work = copy.deepcopy(model, memo)
    others = sorted(str(d) for d in devices if d.type != "cpu")
    note = f"the model stays on {', '.join(others)}: the export works on a CPU copy made one tensor at a time" if others else None
    return work, note


def _plain_copy(model: nn.Module) -> tuple[nn.Module, str | None]:
    """An eval-mode CPU copy with masks applied once more and enforcement removed (and :func:`_cpu_copy`'s note)."""
    work, note = _cpu_copy(unwrap(model))
    work = work.cpu().eval()  # tensors held outside parameters and buffers, if any
    with torch.no_grad():
        for weight, mask in masked_weights(work):
            weight.param.mul_(mask.to(weight.param.dtype))
    strip(work)
    for param in work.parameters():
        param.requires_grad_(False)
    return work, note


def _dynamic_shapes(inputs: tuple[Tensor, ...]) -> tuple[dict[int, Any] | None, ...]:
    batch = torch.export.Dim("batch", min=1)
    size = inputs[0].shape[0] if inputs[0].dim() else None
    return tuple({0: batch} if t.dim() and size is not None and t.shape[0] == size else None for t in inputs)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's log chatter ('torchvision is not installed') and torch-internal FutureWarnings for one export."""
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")]
    levels = [log.level for log in noisy]
    for log in noisy:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations, not the user's
            # constant folding evaluates masked-out values with onnx's reference ops (T5's log(0) position buckets)
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"onnx\.reference")
            yield
    finally:
        for log, level in zip(noisy, levels):
            log.setLevel(level)


def _non_tensor(value: Any, where: str = "output") -> tuple[str, str] | None:
    """(where, type) of the first value in a model's output that is neither a tensor nor a container of tensors."""
    if isinstance(value, Tensor) or value is None or isinstance(value, (int, float, bool, str)):
        return None
    if isinstance(value, Mapping):
        items = [(f"{where}[{key!r}]" if where != "output" else str(key), item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    else:
        return where, type(value).__name__
    return next(filter(None, (_non_tensor(item, name) for name, item in items)), None)


def _cache_configs(modules: Sequence[nn.Module]) -> list[Any]:
    """The distinct configs (transformers' ``model.config``) in ``modules`` and their submodules with ``use_cache=True``."""
    found: dict[int, Any] = {}
    for module in modules:
        for sub in module.modules():
            config = getattr(sub, "config", None)
            if getattr(config, "use_cache", None) is True:
                found.setdefault(id(config), config)
    return list(found.values())


def _exportable_experts(models: Sequence[nn.Module], changed: list[tuple[nn.Module, dict]]) -> str | None:
    """transformers MoE experts that run with ``grouped_mm`` (transformers' own custom op, which torch.onnx has no
    translation for) switch to its ``batched_mm`` implementation (gathers and batched matmuls: the same products)
    on ``models``, the export's copies; each switch is appended to ``changed`` for the caller to restore. A note
    when it switched."""
    for model in models:
        for module in model.modules():
            current = module.get_experts_implementation() if callable(getattr(module, "get_experts_implementation", None)) else {}
            if "grouped_mm" in current.values():  # a submodel already switched with its parent reads batched_mm here
                changed.append((module, current))
                module.set_experts_implementation({key: "batched_mm" if value == "grouped_mm" else value for key, value in current.items()})
    if not changed:
        return None
    return "the MoE experts are exported with transformers' batched_mm implementation (its grouped_mm is a custom op torch.onnx cannot translate); the model itself is unchanged"


def _seq2seq_hint(model: nn.Module) -> str:
    """For an encoder-decoder transformers model (T5 needs decoder inputs the positional example cannot give): how to export it."""
    config = next((c for m in model.modules() if getattr(c := getattr(m, "config", None), "is_encoder_decoder", False)), None)
    if config is None:
        return ""
    import transformers

    encoder = type(config).__name__.removesuffix("Config") + "EncoderModel"
    cli = f"; on the command line --hf-class {encoder}" if hasattr(transformers, encoder) else ""
    return (
        f" ({type(config).__name__} is an encoder-decoder, whose forward needs decoder inputs too: export its encoder alone "
        f"(model.get_encoder(){cli}), or wrap the model in a module whose forward takes every input positionally)"
    )


def _forward_outputs(models: Sequence[nn.Module], inputs: tuple[Tensor, ...], changed: list[Any]) -> tuple[list[str] | None, str | None]:
    """Output names of one forward of ``models[0]`` (the fp32 reference) on ``inputs``, and a note.

    A transformers model whose config has ``use_cache=True`` returns a KV cache next to its
    logits, which no ONNX graph can return: then ``use_cache`` is turned off on the configs
    of ``models`` (the export's own copies) and appended to ``changed``, for the caller to
    restore, and the logits are exported. Any other output that is not tensors is an
    :class:`ExportError` naming it.
    """
    reference = models[0]

    def run() -> Any:
        try:
            with torch.no_grad():
                return reference(*inputs)
        except Exception as error:  # the user's forward: any failure means these inputs do not fit
            raise Sparse24Error(f"the model does not run on the example inputs {[list(t.shape) for t in inputs]}: {first_line(error)}{_seq2seq_hint(reference)}") from error

    output, note = run(), None
    odd = _non_tensor(output)
    configs = _cache_configs(models) if odd is not None else []
    if configs:
        changed += configs
        for config in configs:
            config.use_cache = False
        where, kind = odd
        note = (
            f"exported with use_cache=False: with use_cache=True the forward also returns a KV cache ({where}: {kind}), "
            "which an ONNX graph cannot return; the model's own config is unchanged"
        )
        output = run()
        odd = _non_tensor(output)
    if odd is not None:
        where, kind = odd
        hint = " (a KV cache: have the forward called with use_cache=False, or wrap the model in a module that returns the logits)" if "cache" in kind.lower() else ""
        raise ExportError(f"the model's output {where} is a {kind}, which an ONNX graph cannot return: only tensors (in tuples, lists or dicts) can be outputs{hint}")
    return output_names(output), note


def _io_rows(values: Any, onnx: Any) -> tuple[tuple[str, tuple[int | str, ...], str], ...]:
    """(name, shape, type) of ONNX graph inputs or outputs; symbolic dims by name."""
    rows = []
    for value in values:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        rows.append((value.name, shape, {"float": "float32", "double": "float64"}.get(kind, kind)))
    return tuple(rows)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _exporter_reason(error: BaseException) -> str:
    """The line of a torch.onnx exporter error that names the cause, without terminal colours.

    The exporter's first line is often generic ("Failed to convert the exported program to an ONNX
    model. This is step 3/3 ..."); the cause (an op with no ONNX function, say) is the first entry
    of its "## Exception summary", after the exception's class."""
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return re.sub(r"^<class '[\w.]+'>: ", "", lines[lines.index("## Exception summary") + 1])
    return lines[0] if lines else type(error).__name__


def export_onnx(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    path: str | os.PathLike,
    *,
    dtype: str = "fp32",
    dynamic_batch: bool = True,
    opset: int | None = None,
    check_batches: Sequence[int] | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    input_ranges: InputRanges | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX with its 2:4 zeros baked in, and check the result.

    The model itself is not changed: a CPU copy is stripped of masks and hooks, put in eval
    mode and cast to ``dtype`` (``"fp16"`` stores fp16 weights and types, which TensorRT 11's
    strongly typed networks build in fp16). ``torch.onnx.export(dynamo=True)`` writes the
    file; onnxruntime (CPU) must then match the fp32 PyTorch copy on fresh random inputs
    within ``tolerance`` (relative to the output's magnitude; 1e-4 for fp32, 1e-2 for fp16, where
    the default widens to 3x the error of PyTorch's own fp16 copy on the same inputs, at most 0.1,
    since fp16 rounding grows with depth; the parity notes say so)
    at the example batch size and, with ``dynamic_batch``, another one (``check_batches``
    overrides), and every weight sparse24 made 2:4 must be 2:4 along TensorRT's axis in the
    graph, found by name. Only then is the file moved into place; on any failure nothing is
    left at ``path``.

    A transformers model whose config has ``use_cache=True`` returns a KV cache next to its
    logits, which an ONNX graph cannot return: the export turns ``use_cache`` off on its own
    copy and exports the logits (the report's notes say so; the model's config is unchanged).
    Any other output that is not tensors is an :class:`ExportError` naming it.

    Floating example inputs may be in the model's own dtype (a bf16 model's bf16 inputs): the
    reference copy runs them in fp32, the traced copy in ``dtype``.

    Integer inputs (token ids) are drawn from ``input_ranges`` (``{"ids": (0, vocab)}``, by
    input name or position, high exclusive), else from the size of the embedding table they
    index in the graph, else from the example's own range; a constant integer example with
    none of these is refused (parity on token 0 alone checks nothing).

    Raises :class:`ExportError` (exporter failure), :class:`ParityError`,
    :class:`sparse24.SparsityError` (a 2:4 weight lost its pattern) or ``ValueError``.
    """
    started = time.perf_counter()
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must end in .onnx, got {path}")
    if not path.parent.is_dir():
        raise Sparse24Error(f"output directory does not exist: {path.parent}")
    inputs = _as_tuple(example_inputs)
    if dynamic_batch and not inputs[0].dim():
        raise ValueError("dynamic_batch needs the first input to have a batch dimension")
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module)
    own_fp16 = dtype == "fp16" and tolerance is None  # a default fp16 tolerance may widen to PyTorch's own fp16 error
    tolerance = TOLERANCE[dtype] if tolerance is None else float(tolerance)

    expected = _sparse_names(model)
    reference, copied = _plain_copy(model)
    reference = reference.float()
    if copied:
        logger.info("export_onnx: %s", copied)
    exported = reference if dtype == "fp32" else copy.deepcopy(reference).to(_DTYPES[dtype])
    cpu_inputs = tuple(t.detach().cpu().float() if t.is_floating_point() else t.detach().cpu() for t in inputs)  # the fp32 reference's
    trace_inputs = tuple(t.to(_DTYPES[dtype]) if t.is_floating_point() else t for t in cpu_inputs)
    if dynamic_batch and trace_inputs[0].shape[0] == 1:  # torch.export specializes a size-1 dim
        trace_inputs = tuple(torch.cat([t, t]) if t.dim() and t.shape[0] == 1 else t for t in trace_inputs)
    dynamic_shapes = _dynamic_shapes(trace_inputs) if dynamic_batch else None
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    cache_off: list[Any] = []  # configs whose use_cache the export turned off: restored on the way out, also on failure
    experts: list[tuple[nn.Module, dict]] = []  # models whose experts implementation it switched: the same
    try:
        copies = [reference] if exported is reference else [reference, exported]
        experts_note = _exportable_experts(copies, experts)
        names, note = _forward_outputs(copies, cpu_inputs, cache_off)  # dict outputs keep their keys as ONNX names
        for line in (experts_note, note):
            if line:
                logger.info("export_onnx: %s", line)
        staged = workdir / path.name
        try:
            with _quiet_exporter():
                program = torch.onnx.export(
                    exported, trace_inputs, dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=opset, output_names=names, verbose=False
                )
                program.save(staged)
        except Exception as error:  # the exporter raises many types; all mean "cannot export"
            hint = ""
            if dynamic_batch and "batch" in str(error):
                hint = " (the model's forward seems to fix the batch size; try dynamic_batch=False)"
            raise ExportError(f"torch.onnx.export failed: {_exporter_reason(error)}{hint}") from error

        onnx = require("onnx")
        proto = onnx.load(str(staged), load_external_data=False)  # the graph; inspect_onnx reads the weights
        half = exported if own_fp16 else None
        parity = _check_parity(staged, embedding_ranges(proto), reference, cpu_inputs, dtype, dynamic_batch, check_batches, tolerance, seed, input_ranges, half)
        if not parity.passed:
            worst = parity.worst
            if worst.vanishing and not math.isnan(worst.max_abs_error):
                raise ParityError(
                    f"the ONNX export cannot be checked: PyTorch's output {worst.name} is (near) zero everywhere (max |ref| "
                    f"{worst.reference_max:.3g}; the ONNX differs by {worst.max_abs_error:.3g}), so there is no magnitude to compare "
                    "against; the model's activations vanish (random or untrained weights?); nothing was written"
                )
            raise ParityError(
                f"the ONNX export does not match PyTorch: output {worst.name} is off by {worst.max_abs_error:.3g} = "
                f"{worst.relative_error:.3g} of its magnitude (tolerance {worst.tolerance:.3g}) on fresh random inputs; nothing was written"
                + "".join(f"; {note}" for note in parity.notes if note.startswith("fp16 output"))
            )
        sparsity = dataclasses.replace(inspect_onnx(staged), path=str(path))
        if program.exported_program is None:
            raise ExportError("torch.onnx.export gave no exported program, so the 2:4 weights cannot be followed into the graph")
        stacked_weights = _stacked_experts(exported, expected)
        by_name = [n for n in expected if n not in stacked_weights]
        found, unused = _match_names(by_name, sparsity, weight_uses(program.exported_program, exported, by_name))
        held = _check_experts(proto, workdir, stacked_weights)
        found += list(held)
        stacked = [name for name, kind in held.items() if kind == "stacked"]
        per_expert = [name for name, kind in held.items() if kind == "per expert"]
        experts_dense = experts_split = None
        if stacked:
            experts_dense = (
                f"TensorRT runs {len(stacked)} fused mixture-of-experts weight(s) dense: the ONNX holds them 2:4 (found by value), "
                f"but as stacked [experts, ...] tensors (read per token by index, or by a batched MatMul), never as a 2-D GEMM "
                f"weight: {', '.join(stacked)}"
            )
            logger.warning("export_onnx: %s", experts_dense)
        if per_expert:
            experts_split = (
                f"{len(per_expert)} stacked mixture-of-experts weight(s) are held as one 2-D initializer per expert (the exporter "
                f"folded each expert's slice), each 2:4 (found by value): {', '.join(per_expert)}"
            )
            logger.info("export_onnx: %s", experts_split)

        opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        in_rows, out_rows = _io_rows(proto.graph.input, onnx), _io_rows(proto.graph.output, onnx)
        files = sorted(workdir.iterdir(), key=lambda f: f.suffix == ".onnx")  # external data first, the .onnx last
        for file in files:
            os.replace(file, path.parent / file.name)
    finally:
        for config in cache_off:
            config.use_cache = True
        for module, implementation in reversed(experts):
            module.set_experts_implementation(implementation)
        shutil.rmtree(workdir, ignore_errors=True)
    report = ExportReport(
        path=str(path),
        files=tuple(str(path.parent / f.name) for f in files),
        dtype=dtype,
        opset=opset_used,
        dynamic_batch=dynamic_batch,
        inputs=in_rows,
        outputs=out_rows,
        parity=parity,
        sparsity=sparsity,
        sparsified=tuple(found),
        unused=tuple(unused),
        seconds=time.perf_counter() - started,
        notes=tuple(n for n in (copied, experts_note, note, experts_dense, experts_split) if n),
        by_value=tuple(stacked_weights),
    )
    logger.info("exported %s: %s", path, parity)
    if not expected:
        logger.warning("export_onnx: %s", report._names_line())
    return report


def _check_parity(
    path: Path,
    embeddings: Mapping[str, tuple[int, str]],
    reference: nn.Module,
    examples: tuple[Tensor, ...],
    dtype: str,
    dynamic_batch: bool,
    check_batches: Sequence[int] | None,
    tolerance: float,
    seed: int,
    input_ranges: InputRanges | None,
    half: nn.Module | None = None,
) -> ParityReport:
    """onnxruntime against ``reference`` on fresh inputs per batch size; with ``half`` (the fp16
    PyTorch copy) an output that misses ``tolerance`` is judged against PyTorch's own fp16 error."""
    session = onnxruntime_session(path)
    names = [o.name for o in session.get_outputs()]
    ranges, notes = integer_ranges([i.name for i in session.get_inputs()], examples, input_ranges, embeddings)
    example_batch = examples[0].shape[0] if examples[0].dim() else None
    if check_batches is None:
        check_batches = [example_batch, example_batch + 2] if dynamic_batch else [example_batch]
    elif not dynamic_batch and any(b != example_batch for b in check_batches):
        raise ValueError(f"check_batches {list(check_batches)} need dynamic_batch=True (the graph's batch is {example_batch})")
    generator = torch.Generator().manual_seed(seed)
    runs = []
    widened: dict[str, tuple[float, str]] = {}  # output -> (widest tolerance, its note)
    for batch in check_batches:
        fresh = fresh_inputs(examples, batch if dynamic_batch else None, generator, ranges)
        with torch.no_grad():
            expected = flatten_outputs(reference(*fresh))
        feed = tuple(t.to(_DTYPES[dtype]) if t.is_floating_point() else t for t in fresh)
        actual = run_onnxruntime(session, feed)
        run = compare(names, actual, expected, tolerance)
        if half is not None and not all(diff.passed for diff in run):
            run = _within_own_fp16_error(half, feed, expected, run, widened)
        runs.append(run)
    outputs = worst_of(runs)
    if widened:  # tolerances differ between runs: a failing run is the one to report
        outputs = tuple(max(per_output, key=lambda d: (not d.passed, d.relative_error)) for per_output in zip(*runs))
    return ParityReport(
        backend=f"onnxruntime CPU ({dtype} ONNX)",
        reference="PyTorch fp32",
        batch_sizes=tuple(int(b) for b in check_batches if b is not None),
        outputs=outputs,
        notes=tuple(notes) + tuple(note for _, note in widened.values()),
    )


# fp16 rounding grows with depth: a 50-conv MobileNetV2 in PyTorch's own fp16 is off its fp32 logits by
# over 2% of their magnitude. An fp16 export is therefore also judged against that error of the same
# model cast to fp16, on the same inputs: within this factor of it (up to _FP16_MAX_TOLERANCE) it passes;
# an exporter bug is off by far more than fp16 rounding.
_FP16_OWN_ERROR_FACTOR = 3.0
_FP16_MAX_TOLERANCE = 0.1


def _within_own_fp16_error(
    half: nn.Module, feed: tuple[Tensor, ...], expected: list[Tensor], run: list[Any], widened: dict[str, tuple[float, str]]
) -> list[Any]:
    """``run`` with the tolerance of each failing output widened to PyTorch's own fp16 error, and a note in ``widened``."""
    try:
        with torch.no_grad():
            own = flatten_outputs(half(*feed))
    except Exception as error:  # not every op has a CPU fp16 kernel: keep the fixed tolerance
        logger.info("export_onnx: the fp16 PyTorch model does not run on the CPU (%s); fp16 parity keeps its fixed tolerance", first_line(error))
        return run
    if len(own) != len(expected):
        return run
    judged = []
    for diff, mine, reference in zip(run, own, expected):
        if diff.passed or tuple(mine.shape) != tuple(reference.shape) or not diff.reference_max > 0:
            judged.append(diff)
            continue
        own_error = float((mine.double() - reference.double()).abs().max())
        allowed = min(_FP16_OWN_ERROR_FACTOR * own_error / diff.reference_max, _FP16_MAX_TOLERANCE)
        if not math.isfinite(allowed) or allowed <= diff.tolerance:
            judged.append(diff)
            continue
        judged.append(dataclasses.replace(diff, tolerance=allowed))
        note = (
            f"fp16 output {diff.name}: PyTorch's own fp16 model is off its fp32 output by {own_error / diff.reference_max:.3g} of max |ref| "
            f"on the same inputs, so the ONNX is judged within {_FP16_OWN_ERROR_FACTOR:g}x that (tolerance {allowed:.3g}, at most {_FP16_MAX_TOLERANCE:g})"
        )
        widened[diff.name] = max(widened.get(diff.name, (0.0, "")), (allowed, note))
    return judged


# aten ops (and operator.getitem) that only move, view or cast values: a 2:4 weight stays 2:4 through them.
_KEEPS_VALUES = frozenset(
    """t transpose permute view reshape _unsafe_view _reshape_alias expand unsqueeze squeeze flatten unflatten
    slice select split split_with_sizes chunk unbind narrow movedim contiguous clone detach alias lift_fresh_copy
    _to_copy to type_as getitem t_copy transpose_copy permute_copy view_copy expand_copy squeeze_copy
    unsqueeze_copy slice_copy select_copy split_copy unbind_copy numpy_T""".split()
)


@dataclass(frozen=True)
class WeightUse:
    """How the exported program reads one parameter."""

    in_program: bool  # the exported program has the parameter as an input
    aliases: tuple[str, ...]  # every name of the parameter (tied weights)
    gemms: tuple[str, ...] = ()  # FX GEMM nodes that take it as a weight, through value-keeping ops only
    computed: tuple[tuple[str, str], ...] = ()  # (FX GEMM node, first op that computes a new weight from it)
    other: tuple[str, ...] = ()  # ops that read it with activations, not as a GEMM weight


def _op_name(node: Any) -> str:
    return getattr(node.target, "__name__", str(node.target)).split(".")[0]


def weight_uses(program: Any, module: nn.Module, names: Sequence[str]) -> dict[str, WeightUse]:
    """Follow each parameter in ``names`` through the exported program ``program`` to the GEMMs that use it.

    From its placeholder, uses are followed through the parameter-only part of the graph
    (values that do not depend on a user input): a GEMM operand (:data:`ATEN_WEIGHT_OPERANDS`)
    ends the walk, as a plain weight if every op on the way only moved, viewed or cast the
    values, and as a *computed* weight otherwise (``fc.weight * g``: its 2:4 mask does not
    carry over). A use that mixes the parameter with activations is an *other* use.
    """
    by_param: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(param), []).append(name)
    placeholders: dict[int, list[str]] = {}  # a tied parameter can have a placeholder per name
    for placeholder, fqn in program.graph_signature.inputs_to_parameters.items():
        placeholders.setdefault(id(module.get_parameter(fqn)), []).append(placeholder)
    user_inputs = set(program.graph_signature.user_inputs)
    dynamic: set[Any] = set()
    for node in program.graph.nodes:
        if (node.op == "placeholder" and node.name in user_inputs) or any(i in dynamic for i in node.all_input_nodes):
            dynamic.add(node)
    nodes = {node.name: node for node in program.graph.nodes}
    uses = {}
    for name in names:
        try:
            key = id(module.get_parameter(name))
        except AttributeError:
            key = None
        aliases = tuple(by_param.get(key, [name]))
        if key not in placeholders:
            uses[name] = WeightUse(False, aliases)
            continue
        gemms, computed, other = [], [], []
        stack, seen = [(nodes[placeholder], None) for placeholder in placeholders[key]], set()
        while stack:
            node, through = stack.pop()
            for user in node.users:
                op = _op_name(user)
                is_aten = str(user.target).startswith("aten.")
                if is_aten and op in ATEN_WEIGHT_OPERANDS and any(user.args[i] is node for i in ATEN_WEIGHT_OPERANDS[op] if i < len(user.args)):
                    if through is None:
                        gemms.append(user.name)
                    else:
                        computed.append((user.name, through))
                elif user in dynamic or user.op == "output":
                    other.append(op)
                elif (user, through) not in seen:
                    seen.add((user, through))
                    stack.append((user, through if op in _KEEPS_VALUES else through or f"aten.{op}"))
        uses[name] = WeightUse(True, aliases, tuple(dict.fromkeys(gemms)), tuple(dict.fromkeys(computed)), tuple(dict.fromkeys(other)))
    return uses


def _stacked_experts(model: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    """The :class:`sparse24.axes.GemmWeight` of each name in ``names`` that is a stacked mixture-of-experts weight
    (fused experts, JetMoE's parallel experts)."""
    wanted = set(names)
    return {w.name: w for w in gemm_weights(model) if w.name in wanted and is_stacked_experts(w.module)}


def _check_experts(proto: Any, base_dir: Path, experts: Mapping[str, Any]) -> dict[str, str]:
    """Check that the ONNX holds each stacked experts weight (a :class:`sparse24.axes.GemmWeight`) 2:4; return how each
    was found: ``"stacked"`` or ``"per expert"``.

    The exported graph reads a fused experts weight per token by index (``Gather``, transformers' ``batched_mm``) or
    as a batched constant, so it is in no 2-D ONNX GEMM, and its initializer may be renamed (``val_*``): it is found
    by value, an initializer equal to the exported parameter, then checked 2:4 along the weight's dim. Where the
    exporter folded each expert's slice into its own initializer (JetMoE's ``F.linear(x, weight[e])``), every slice
    is found by value instead, each 2:4 along its own reduction dim. Each initializer of a wanted shape is read once
    (an MoE's layers share their experts' shapes).
    """
    if not experts:
        return {}
    onnx = require("onnx")
    params = {name: weight.param.detach().cpu() for name, weight in experts.items()}
    shapes = {tuple(param.shape) for param in params.values()} | {tuple(param.shape[1:]) for param in params.values()}
    found: dict[str, bool] = {}  # name -> its initializer (or every expert's) is 2:4
    how: dict[str, str] = {}
    slices: dict[str, dict[int, bool]] = {name: {} for name in params}  # name -> expert -> its slice's initializer is 2:4
    for tensor in proto.graph.initializer:
        if all(name in found or len(slices[name]) == param.shape[0] for name, param in params.items()):
            break  # every weight found, whole or expert by expert
        if tuple(tensor.dims) not in shapes:
            continue
        array = torch.from_numpy(onnx.numpy_helper.to_array(tensor, base_dir=str(base_dir)).copy())
        if not array.is_floating_point():
            continue
        for name, param in params.items():
            if name not in found and array.shape == param.shape and torch.equal(array.to(param.dtype), param):
                found[name], how[name] = is_two_four(array != 0, experts[name].axis.reduction), "stacked"
                break
            if array.shape == param.shape[1:]:
                expert = next((e for e in range(param.shape[0]) if e not in slices[name] and torch.equal(array.to(param.dtype), param[e])), None)
                if expert is not None:
                    slices[name][expert] = is_two_four(array != 0, experts[name].axis.reduction - 1)
                    break
    for name, param in params.items():  # every expert's slice found: the weight is held per expert
        if name not in found and len(slices[name]) == param.shape[0]:
            found[name], how[name] = all(slices[name].values()), "per expert"
    problems = [
        f"{name} (no ONNX initializer holds it as exported, nor each of its experts' slices: {len(slices[name])} of {params[name].shape[0]} found)"
        for name in params if name not in found
    ]
    problems += [
        f"{name} (its initializer is not 2:4 along dim {experts[name].axis.reduction})" if how[name] == "stacked"
        else f"{name} (its experts' initializers are not all 2:4 along their dim {experts[name].axis.reduction - 1})"
        for name, ok in found.items() if not ok
    ]
    if problems:
        raise SparsityError("the ONNX graph does not keep these 2:4 weights 2:4: " + "; ".join(problems))
    return how


def _match_names(expected: Sequence[str], sparsity: OnnxSparsityReport, uses: Mapping[str, WeightUse]) -> tuple[list[str], list[str]]:
    """Check that each weight in ``expected`` is 2:4 in every ONNX GEMM that uses it; return (found, unused).

    A weight's ONNX layers are those made from the FX GEMM nodes that read it (exporter
    metadata) or whose constant kept its name. Raises :class:`sparse24.SparsityError` when
    one is not 2:4, when a weight reaches its GEMM computed by another op, and when a weight
    that the exported program reads is in no constant-weight ONNX GEMM; only a weight the
    program never reads is returned as unused.
    """
    found, unused, problems = [], [], []
    for name in expected:
        use = uses.get(name) or WeightUse(False, (name,))
        if not use.in_program:
            problems.append(f"{name} (not a parameter of the exported program)")
            continue
        if use.computed:
            gemm, op = use.computed[0]
            problems.append(f"{name} (its GEMM {gemm} uses a weight computed from it by {op}, which need not keep the 2:4 pattern; fold it into the parameter before export)")
            continue
        if not use.gemms:
            if use.other:
                problems.append(f"{name} (read only by {', '.join(use.other)} with activations, never as a GEMM weight)")
            else:
                unused.append(name)
            continue
        by_node = [layer for layer in sparsity.layers if layer.fx_node in use.gemms]
        by_name = [layer for layer in sparsity.layers if layer.weight in use.aliases]
        layers = list({id(layer): layer for layer in by_node + by_name}.values())
        if not by_name and {layer.fx_node for layer in by_node} != set(use.gemms):
            missing = sorted(set(use.gemms) - {layer.fx_node for layer in by_node})
            problems.append(f"{name} (its GEMM {missing[0]} has no Conv/Gemm/MatMul in the ONNX graph that holds it)")
            continue
        computed = [layer for layer in layers if layer.weight is None]
        if computed:
            problems.append(f"{name} (node {computed[0].node} takes it as a computed tensor, not a constant: TensorRT cannot run it 2:4)")
        elif all(layer.two_four for layer in layers):
            found.append(name)
        else:
            bad = next(layer for layer in layers if not layer.two_four)
            problems.append(f"{name} (node {bad.node}: {bad.violation or 'no 2:4 pattern'})")
    if problems:
        raise SparsityError("the ONNX graph does not keep these 2:4 weights 2:4 for TensorRT: " + "; ".join(problems))
    if unused:
        logger.warning("2:4 weights the exported program never reads (dead code in forward): %s", ", ".join(unused))
    return found, unused
