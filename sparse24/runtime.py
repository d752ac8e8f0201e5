"""Run 2:4 Linear layers on sparse kernels in PyTorch: cuSPARSELt, sparse24's custom kernels, or dense.

:func:`to_sparse_runtime` replaces every eligible ``nn.Linear`` (and transformers ``Conv1D``, GPT-2's,
whose ``[in, out]`` weight it transposes) whose weight is 2:4 with a :class:`SparseLinear` holding the
compressed weight. Backends:

- ``"cusparselt"``: ``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt, or CUTLASS where torch
  has no cuSPARSELt); fast at large batches, slower than dense at small ones (it pads).
- ``"custom"``: sparse24's kernels (``kernels/``): a CUDA-core kernel for M <= 64 (reads the 2:4
  weight once: up to 1.78x less traffic than dense) and an mma.sp tensor-core kernel above.
  On the CPU only through the kernels' emulation (``SPARSE24_KERNELS=emulate``; for tests).
- ``"dense"``: ``F.linear`` on the dense weight (the baseline; never slower than itself).
- ``"auto"``: times each backend once per distinct (weight shape, dtype, batch bucket) on this
  GPU after checking its numerics against dense on a probe input, keeps the fastest per bucket
  (so no layer runs slower than dense), and caches the decisions on disk keyed by GPU and
  library versions (``$SPARSE24_RUNTIME_CACHE``, default ``~/.cache/sparse24/runtime_plans.json``).
- ``"reference"``: the pure-PyTorch reference on the compressed weight (any device; slow; for checks).

Conv layers stay on dense cuDNN (the im2col sparse path is not implemented), and so does a
Linear whose parent's code reads its ``.weight`` (``nn.MultiheadAttention``'s ``out_proj``,
``nn.TransformerEncoderLayer``'s fast path, T5's ``wo``); the report lists them, and every other
GEMM weight it leaves. Works in eager mode and under CUDA graph capture; under ``torch.compile`` the custom
kernel is one opaque custom op (``sparse24::sparse_mm``) and cuSPARSELt is what torch's own
semi-structured tensors support. This module imports ``kernels`` only for the backends that use its compressed
layout (``"custom"``, ``"reference"``, and ``"auto"``, which may pick ``"custom"``).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .axes import GemmWeight, gemm_axes, gemm_matrix, gemm_weights, is_transformers_conv1d
from .errors import Sparse24Error, first_line
from .io import write_text
from .mask import is_two_four
from .source import weight_reader

__all__ = ["BACKENDS", "BUCKETS", "RuntimeLayer", "RuntimeReport", "SparseLinear", "bucket_of", "cuda_time_ms", "describe_plan", "to_sparse_runtime"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cusparselt", "custom", "dense", "reference")
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
ENV_PLAN_CACHE = "SPARSE24_RUNTIME_CACHE"
PROBE_TOLERANCE = 1e-2  # relative error vs fp32 dense allowed before a backend is trusted


def bucket_of(m: int, buckets: Sequence[int] = BUCKETS) -> int:
    """The smallest bucket >= ``m`` (the largest bucket for anything bigger)."""
    return next((b for b in buckets if b >= m), buckets[-1])


class SparseLinear(nn.Module):
    """A Linear layer with a 2:4 weight, run by the backend its ``plan`` picks for the batch size.

    ``plan`` maps each bucket of M (rows of the flattened input) to a backend name. Only the
    weight forms the plan uses are kept (compressed values + metadata, cuSPARSELt's packed
    tensor, or the dense weight).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, plan: dict[int, str], buckets: Sequence[int] = BUCKETS) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.buckets = tuple(buckets)
        self.plan = dict(plan)
        used = set(self.plan.values())
        weight = weight.detach()
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        if used & {"custom", "reference"}:
            values, meta = _compress(weight)
            self.register_buffer("values", values)
            self.register_buffer("meta", meta)
        if "cusparselt" in used:
            self.semi = nn.Parameter(torch.sparse.to_sparse_semi_structured(weight.contiguous()), requires_grad=False)
        if "dense" in used:
            self.register_buffer("weight", weight.clone())

    def backend_for(self, m: int) -> str:
        return self.plan[bucket_of(m, self.buckets)]

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        backend = self.backend_for(x2.shape[0])
        if backend == "custom":
            y = torch.ops.sparse24.sparse_mm(x2, self.values, self.meta, self.bias, "auto")
        elif backend == "cusparselt":
            y = F.linear(x2, self.semi, self.bias)
        elif backend == "dense":
            y = F.linear(x2, self.weight, self.bias)
        else:
            from sparse24.kernels.reference import sparse_mm

            y = sparse_mm(x2, self.values, self.meta, self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, plan=({describe_plan(self.plan)})"


def describe_plan(plan: dict[int, str]) -> str:
    """``custom: M<=64, cusparselt: M>64`` from a bucket -> backend map."""
    parts, low = [], 0
    buckets = sorted(plan)
    for i, bucket in enumerate(buckets):
        last = i == len(buckets) - 1
        if last or plan[buckets[i + 1]] != plan[bucket]:
            span = f"M>{low}" if last and low else "all M" if last else f"M<={bucket}" if not low else f"{low}<M<={bucket}"
            parts.append(f"{plan[bucket]}: {span}")
            low = bucket
    return ", ".join(parts)


def _compress(weight: Tensor) -> tuple[Tensor, Tensor]:
    from sparse24.kernels.ops import compress  # the kernel on CUDA (and under the emulation), else the reference

    return compress(weight)


@dataclass(frozen=True)
class RuntimeLayer:
    """One replaced layer and the backend it runs per batch bucket."""

    name: str
    shape: tuple[int, int]
    dtype: str
    plan: dict[int, str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "plan": {str(k): v for k, v in self.plan.items()}}


@dataclass(frozen=True)
class RuntimeReport:
    """What :func:`to_sparse_runtime` replaced, what it left and why, and the timings behind "auto"."""

    backend: str
    device: str
    layers: tuple[RuntimeLayer, ...]
    skipped: tuple[tuple[str, str], ...]
    timings: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # shape key -> bucket -> backend -> ms
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "layers": [layer.to_dict() for layer in self.layers],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "timings_ms": {k: {str(b): t for b, t in v.items()} for k, v in self.timings.items()},
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        lines = [f"sparse runtime ({self.backend}) on {self.device}: {len(self.layers)} Linear layers replaced, {len(self.skipped)} left as they were"]
        for layer in self.layers:
            lines.append(f"  {layer.name} {layer.shape[0]}x{layer.shape[1]} {layer.dtype}: {describe_plan(layer.plan)}")
        lines += [f"  kept: {name} ({reason})" for name, reason in self.skipped]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _device_problem(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` (``"auto"`` included) cannot run on ``device``, or None."""
    if backend == "reference":
        return None
    if backend == "custom" and device.type == "cpu":
        from sparse24.kernels.emulate import emulation_requested
        from sparse24.kernels.loader import kernels_unavailable

        if emulation_requested():  # the kernels' CUDA sources on the CPU, for tests (slow)
            return kernels_unavailable(device)
    if device.type != "cuda":
        return f"backend {backend!r} needs the model on a CUDA GPU (it is on {device})"
    major, minor = torch.cuda.get_device_capability(device)
    if backend != "dense" and (major, minor) < (8, 0):
        return f"{torch.cuda.get_device_name(device)} is sm_{major}{minor}: 2:4 sparse kernels need Ampere (sm_80) or newer"
    if backend == "custom":
        from sparse24.kernels.loader import kernels_unavailable

        return kernels_unavailable(device)
    if backend == "cusparselt" and not _semi_structured_available():
        return "this torch build has no semi-structured sparse support (torch.sparse.to_sparse_semi_structured)"
    return None


def _semi_structured_available() -> bool:
    return hasattr(torch.sparse, "to_sparse_semi_structured")


def _linear_weight(module: nn.Module) -> Tensor:
    """The ``[out, in]`` GEMM matrix of a Linear's weight, or of a transformers ``Conv1D``'s (stored ``[in, out]``):
    :func:`sparse24.axes.gemm_matrix`, the layer-axis rule's own view, contiguous."""
    weight = GemmWeight("", module, "weight", gemm_axes(module)["weight"])
    return gemm_matrix(weight, module.weight.detach())[0].contiguous()


def _layer_problem(module: nn.Module, backend: str) -> str | None:
    weight = _linear_weight(module)
    if weight.shape[1] % 4 or not is_two_four(weight, 1):
        return "weight is not 2:4 along in_features"
    if backend != "reference" and weight.dtype not in (torch.float16, torch.bfloat16):
        return f"{weight.dtype} weight: sparse kernels take float16/bfloat16 (cast the model first)"
    if backend in ("custom", "auto", "reference"):  # sparse24's compressed layout (reference: the kernel's, on any device)
        from sparse24.kernels.reference import check_compressible

        try:
            check_compressible(weight)
        except ValueError as exc:
            return str(exc)
    minimum = _semi_structured_minimum(weight.dtype) if backend == "cusparselt" else None
    if minimum is not None and (weight.shape[0] % minimum[0] or weight.shape[1] % minimum[1]):
        return f"weight {weight.shape[0]}x{weight.shape[1]}: torch's semi-structured sparsity takes multiples of {minimum[0]}x{minimum[1]}"
    return None


def _semi_structured_minimum(dtype: torch.dtype) -> tuple[int, int] | None:
    """The (rows, columns) a weight of ``dtype`` must be whole multiples of for ``torch.sparse.to_sparse_semi_structured``
    (cuSPARSELt's 16x16 for float16 and bfloat16; CUTLASS's 32x64 where torch is forced to it), from torch's own
    table; None where torch has none (auto's probe still catches a refusal)."""
    semi = getattr(torch.sparse, "SparseSemiStructuredTensor", None)
    name = "SparseSemiStructuredTensorCUTLASS" if getattr(semi, "_FORCE_CUTLASS", False) else "SparseSemiStructuredTensorCUSPARSELT"
    config = getattr(getattr(torch.sparse, name, None), "_DTYPE_SHAPE_CONSTRAINTS", {}).get(dtype)
    return (int(config.sparse_min_rows), int(config.sparse_min_cols)) if config is not None else None


def _environment_key(device: torch.device) -> str:
    import sparse24

    cusparselt = getattr(getattr(torch.backends, "cusparselt", None), "version", lambda: None)()
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)}|sm_{major}{minor}|torch {torch.__version__}|cuda {torch.version.cuda}|cusparselt {cusparselt}|sparse24 {sparse24.__version__}"


def _plan_file() -> Path:
    return Path(os.environ.get(ENV_PLAN_CACHE) or Path.home() / ".cache" / "sparse24" / "runtime_plans.json")


def _read_plans() -> dict[str, Any]:
    try:
        return json.loads(_plan_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_plans(plans: dict[str, Any]) -> None:
    path = _plan_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(plans, indent=1))
    except (OSError, Sparse24Error) as error:  # a cache, not a result
        logger.warning("could not write the runtime plan cache %s: %s", path, error)


def cuda_time_ms(fn: Callable[[], object], *, reps: int = 20, warmup: int = 5, before: Callable[[], object] | None = None) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream, by CUDA events; ``before()`` runs untimed ahead of each repetition."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _auto_plan(
    weight: Tensor,
    bias: Tensor | None,
    candidates: Sequence[str],
    buckets: Sequence[int],
    tolerance: float,
    timer: Callable[[Callable[[], object]], float] = cuda_time_ms,
) -> tuple[dict[int, str], dict[int, dict[str, float]], list[str]]:
    """Time each candidate per bucket after a numerics probe; the fastest correct one wins (dense always runs).

    ``timer(fn)`` measures ``fn()`` in milliseconds: CUDA events by default (the CPU tests pass a wall clock).
    """
    modules, notes = {}, []
    for name in candidates:
        try:
            modules[name] = SparseLinear(weight, bias, dict.fromkeys(buckets, name), buckets)
        except (RuntimeError, ValueError, Sparse24Error) as failure:  # e.g. cuSPARSELt's minimum shapes, a kernel that cannot load
            notes.append(f"{name} cannot hold {list(weight.shape)} {weight.dtype}: {first_line(failure)}")
    plan, timings = {}, {}
    generator = torch.Generator(device=weight.device).manual_seed(0)
    for bucket in buckets:
        x = torch.randn(bucket, weight.shape[1], device=weight.device, dtype=weight.dtype, generator=generator)
        expected = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        scale = float(expected.abs().max()) or 1.0
        timings[bucket] = {}
        for name, module in modules.items():
            with torch.no_grad():
                try:
                    error = float((module(x).float() - expected).abs().max()) / scale
                except (RuntimeError, Sparse24Error) as failure:  # e.g. cuSPARSELt's shape limits
                    notes.append(f"{name} failed at M={bucket} for {list(weight.shape)}: {first_line(failure)}")
                    continue
                if not error <= tolerance:
                    notes.append(f"{name} rejected at M={bucket} for {list(weight.shape)}: relative error {error:.3g} > {tolerance:g}")
                    continue
                timings[bucket][name] = timer(lambda module=module: module(x))
        plan[bucket] = min(timings[bucket], key=timings[bucket].get) if timings[bucket] else "dense"
    return plan, timings, notes


def to_sparse_runtime(
    model: nn.Module,
    backend: str = "auto",
    *,
    buckets: Sequence[int] = BUCKETS,
    cache: bool = True,
    tolerance: float = PROBE_TOLERANCE,
) -> RuntimeReport:
    """Replace, in place, every eligible 2:4 ``nn.Linear`` (or transformers ``Conv1D``) of ``model`` with a :class:`SparseLinear`.

    Eligible: the weight is 2:4 along ``in_features``, float16/bfloat16 (any dtype for
    ``"reference"``), ``in_features % 16 == 0`` for the compressed layout (``"custom"``, ``"reference"``, ``"auto"``),
    both dimensions whole multiples of torch's minimum for ``"cusparselt"``. Without a CUDA GPU, with
    one older than sm_80, or (for ``"custom"``) without cuda-python, raises
    :class:`sparse24.Sparse24Error` with the reason and leaves the model unchanged; so does any
    failure while building the replacements. ``"auto"`` skips backends that are unavailable
    here and says so in the report's notes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    from .dist import unwrap

    model = unwrap(model)  # layer names as the model's own (torch.compile recompiles at the next call)
    buckets = tuple(sorted(set(int(b) for b in buckets)))
    if not buckets or buckets[0] < 1:
        raise ValueError("buckets must be positive batch sizes")
    parameters = list(model.parameters())
    device = parameters[0].device if parameters else torch.device("cpu")
    notes: list[str] = []
    problem = _device_problem(backend, device)
    if problem is not None:
        raise Sparse24Error(problem)
    candidates = [backend]
    if backend == "auto":
        candidates = ["dense"]
        for name in ("cusparselt", "custom"):
            problem = _device_problem(name, device)
            if problem is None:
                candidates.append(name)
            else:
                notes.append(f"{name} not considered: {problem}")

    targets: list[tuple[str, nn.Module]] = []
    skipped: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Linear) or is_transformers_conv1d(module)):
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                skipped.append((name, "convolutions stay on dense cuDNN (no sparse im2col path)"))
            continue
        reader = weight_reader(model, name)
        if reader is not None:  # T5's wo.weight.dtype: it must stay a module with a weight
            skipped.append((name, f"{type(reader[0]).__name__} reads {reader[1]}.weight directly"))
        else:
            problem = _layer_problem(module, backend)
            if problem is None:
                targets.append((name, module))
            else:
                skipped.append((name, problem))
    listed = {name for name, _ in [*targets, *skipped]}
    for weight in gemm_weights(model):  # the other GEMM weights (MultiheadAttention's in_proj): said, not passed over
        if weight.module_name not in listed:
            skipped.append((weight.name, f"{type(weight.module).__name__} computes this GEMM inside its own forward"))

    plans_on_disk = _read_plans() if backend == "auto" and cache else {}
    env_key = _environment_key(device) if backend == "auto" else ""
    known = plans_on_disk.get(env_key, {})
    timings: dict[str, dict[int, dict[str, float]]] = {}
    replacements: list[tuple[str, SparseLinear, RuntimeLayer]] = []
    for name, module in targets:
        weight = _linear_weight(module)
        bias = module.bias.detach() if module.bias is not None else None
        if backend == "auto":
            key = f"{weight.shape[0]}x{weight.shape[1]}:{str(weight.dtype).split('.')[-1]}:{'+'.join(candidates)}:{','.join(map(str, buckets))}"
            if key in known:
                plan = {int(b): v for b, v in known[key].items()}
            else:
                plan, timings[key], found = _auto_plan(weight, bias, candidates, buckets, tolerance)
                notes.extend(found)
                known[key] = {str(b): v for b, v in plan.items()}
        else:
            plan = dict.fromkeys(buckets, backend)
        replacement = SparseLinear(weight, bias, plan, buckets)
        replacements.append((name, replacement, RuntimeLayer(name, tuple(weight.shape), str(weight.dtype).split(".")[-1], plan)))
    if backend == "auto" and cache and timings:
        plans_on_disk[env_key] = known
        _write_plans(plans_on_disk)

    for name, replacement, _ in replacements:  # everything was built: now swap, in place
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
    report = RuntimeReport(
        backend=backend,
        device=str(device) if device.type != "cuda" else f"{torch.cuda.get_device_name(device)} ({device})",
        layers=tuple(layer for _, _, layer in replacements),
        skipped=tuple(skipped),
        timings=timings,
        notes=tuple(notes),
    )
    logger.info("%s", report)
    return report
