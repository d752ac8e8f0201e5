"""The model suite: end-to-end latency and throughput, dense against sparse, over a batch sweep.

Models: the demo CNN and transformer, a BERT-base-sized encoder built from transformers'
``BertConfig()`` (random weights, nothing downloaded) and torchvision's ResNet-50 (random
weights) when those packages are installed. Each is made 2:4 (magnitude; the speed does not
depend on which weights survive), then timed in fp16 as:

- ``eager dense`` / ``eager sparse``: PyTorch eager, the sparse one on sparse24's runtime
  (``to_sparse_runtime(backend="auto")``: per layer and batch size the fastest correct of
  cuSPARSELt, the custom kernels and dense);
- ``compile dense`` / ``compile sparse``: the same under ``torch.compile``;
- ``tensorrt dense`` / ``tensorrt sparse``: engines from sparse24's ONNX export, without and
  with sparse weights enabled (one engine per model, batch 1..max, tuned for the max).

Every variant's output is checked against eager dense on the same input before it is timed.
Without a CUDA GPU only eager dense runs, in fp32 on the CPU.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .env import cuda_problem
from .stats import Summary, verdict
from .timing import (
    CpuTimer,
    CudaTimer,
    capture_graphs,
    first_line,
    measure,
    relative_error,
    working_set_slots,
)

__all__ = ["MODELS", "VARIANTS", "ModelSpec", "run"]

logger = logging.getLogger(__name__)

VARIANTS = ("eager dense", "eager sparse", "compile dense", "compile sparse", "tensorrt dense", "tensorrt sparse")
MAX_INPUT_COPIES = 8
TOLERANCE = 2e-2  # max |y - y_eager_dense| / max |y_eager_dense| in fp16


@dataclass(frozen=True)
class ModelSpec:
    description: str
    build: Callable[[], nn.Module]
    example: Callable[[int, torch.Generator], tuple[Tensor, ...]]  # batch -> CPU inputs
    policy: str
    batches: tuple[int, ...]
    cpu_batches: tuple[int, ...]
    requires: str | None = None  # a package the model needs


def _digits(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from sparse24.demo import MODELS as DEMO

        return DEMO[kind]()

    return build


class BertEncoder(nn.Module):
    """transformers' BertModel (BERT-base config, random weights) returning the last hidden state."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        self.bert = BertModel(BertConfig(**config), add_pooling_layer=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.bert(input_ids=input_ids).last_hidden_state


def _resnet50() -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None)


SEQUENCE = 128
MODELS: dict[str, ModelSpec] = {
    "digits-resnet": ModelSpec(
        "demo CNN (residual + BatchNorm), 1x8x8", _digits("resnet"), lambda b, g: (torch.randn(b, 1, 8, 8, generator=g),), "tensorrt", (1, 64, 1024), (1, 64)
    ),
    "digits-transformer": ModelSpec(
        "demo transformer encoder, 5 tokens x 64", _digits("transformer"), lambda b, g: (torch.randn(b, 1, 8, 8, generator=g),), "any", (1, 64, 1024), (1, 64)
    ),
    "bert-base": ModelSpec(
        f"BERT-base encoder (transformers BertConfig(), random init), {SEQUENCE} tokens",
        BertEncoder,
        lambda b, g: (torch.randint(0, 30522, (b, SEQUENCE), generator=g),),
        "tensorrt",
        (1, 8, 32, 128),
        (1, 8),
        "transformers",
    ),
    "resnet50": ModelSpec(
        "ResNet-50 (torchvision, random init), 224x224", _resnet50, lambda b, g: (torch.randn(b, 3, 224, 224, generator=g),), "tensorrt", (1, 8, 32, 128), (1, 8), "torchvision"
    ),
}
CPU_MODELS = ("digits-resnet", "digits-transformer")


def _missing(spec: ModelSpec) -> str | None:
    import importlib.util

    if spec.requires and importlib.util.find_spec(spec.requires) is None:
        return f"needs {spec.requires} (pip install {spec.requires})"
    return None


def two_four_model(name: str, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """The named model, 2:4 by magnitude, masks stripped (zeros kept), in eval mode, on the CPU."""
    import sparse24

    torch.manual_seed(seed)
    spec = MODELS[name]
    model = spec.build().eval()
    report = sparse24.sparsify(model, "magnitude", policy=spec.policy, progress=False)
    sparse24.strip(model)
    return model, {"sparse_weights": len(report.sparse_layers), "weights": len(report.layers), "policy": spec.policy}


def _kernel_counts(model: nn.Module, inputs: Sequence[Tensor]) -> dict[str, int]:
    """Which backend each replaced Linear ran on for these inputs."""
    from sparse24.runtime import SparseLinear

    counts: dict[str, int] = {}

    def count(module: SparseLinear, args: tuple[Tensor, ...]) -> None:
        backend = module.backend_for(args[0].reshape(-1, module.in_features).shape[0])
        counts[backend] = counts.get(backend, 0) + 1

    handles = [module.register_forward_pre_hook(count) for module in model.modules() if isinstance(module, SparseLinear)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def run(
    *,
    models: Sequence[str] | None,
    batches: Sequence[int] | None,
    variants: Sequence[str],
    reps: int,
    runs: int,
    warmup: int,
    cuda_graphs: bool = False,
    quick: bool = False,
    seed: int = 0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the suite on this machine; return the results.

    ``on_progress(results)`` is called after every (model, batch) with the results so far
    (``progress`` says how many are done), so a caller can write them before the run ends.
    """
    problem = cuda_problem()
    device = torch.device("cpu" if problem else "cuda")
    dtype = torch.float32 if problem else torch.float16
    unknown = [m for m in models or () if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    if batches and min(batches) < 1:
        raise ValueError("batch sizes must be positive")
    notes, skipped = [], []
    names = list(models or (CPU_MODELS if problem or quick else MODELS))
    variants = ["eager dense", *[v for v in variants if v != "eager dense"]]
    if problem:
        notes.append(f"{problem}: eager dense CPU timings only (fp32)")
    for variant in variants[1:]:
        reason = _variant_problem(variant, problem)
        if reason:
            skipped.append({"variant": variant, "reason": reason})
    variants = [v for v in variants if not any(s["variant"] == v for s in skipped)]
    timer: CpuTimer | CudaTimer = CpuTimer() if problem else CudaTimer(device, flush_l2=False)
    l2_bytes = getattr(timer, "l2_bytes", None)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    sweeps: dict[str, list[int]] = {}
    for name in names:
        missing = _missing(MODELS[name])
        if missing:
            skipped.append({"model": name, "reason": missing})
        else:
            sweeps[name] = list(batches or (MODELS[name].cpu_batches if problem or quick else MODELS[name].batches))
    total, done = sum(map(len, sweeps.values())), 0

    def results(measured: list[dict[str, Any]]) -> dict[str, Any]:
        measured = copy.deepcopy(measured)
        _derive(measured)
        return {
            "suite": "model",
            "device": str(device),
            "dtype": str(dtype).split(".")[-1],
            "settings": {
                "reps": reps,
                "runs": runs,
                "warmup": warmup,
                "timer": timer.kind,
                "cuda_graphs": cuda_graphs,
                "tensorrt_profile": "one engine per model and variant: batch 1 to the largest, tuned for the largest",
                "working_set": f"inputs rotated over distinct batches (2 to {MAX_INPUT_COPIES}, up to 2x L2; per row: input_copies); the model's weights are not copied",
                "tolerance": TOLERANCE,
                "variants": variants,
                "quick": quick,
            },
            "progress": {"done": done, "total": total, "unit": "model batches"},
            "models": copy.deepcopy(info),
            "skipped": skipped,
            "notes": notes,
            "rows": measured,
        }

    for name, sweep in sweeps.items():
        spec = MODELS[name]
        model, info[name] = two_four_model(name, seed)
        info[name]["description"] = spec.description
        with tempfile.TemporaryDirectory(prefix="sparse24-bench-") as workdir:
            callables, build_failures = _variants(name, model, variants, device, dtype, sweep, Path(workdir), info[name])
            for batch in sweep:
                rows += _run_batch(name, batch, callables, build_failures, device, dtype, timer, l2_bytes, seed, reps=reps, runs=runs, warmup=warmup, cuda_graphs=cuda_graphs)
                done += 1
                logger.info("model %s batch %d done (%d of %d)", name, batch, done, total)
                if on_progress is not None:
                    on_progress(results(rows))
        del callables, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results(rows)


def _variant_problem(variant: str, gpu_problem: str | None) -> str | None:
    if gpu_problem:
        return "needs an sm_80+ CUDA GPU"
    if variant.startswith("tensorrt"):
        from sparse24.trt_export import tensorrt_unavailable

        return tensorrt_unavailable(sparse=variant.endswith("sparse"))
    return None


def _variants(
    name: str, model: nn.Module, variants: Sequence[str], device: torch.device, dtype: torch.dtype, sweep: Sequence[int], workdir: Path, info: dict[str, Any]
) -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """One callable per variant (failures to build one are results, not crashes)."""
    callables: dict[str, Callable[..., Any]] = {}
    failures: dict[str, str] = {}
    dense = copy.deepcopy(model).to(device=device, dtype=dtype)
    sparse: nn.Module | None = None
    for variant in variants:
        try:
            if variant in ("eager sparse", "compile sparse") and sparse is None:
                from sparse24.runtime import to_sparse_runtime

                candidate = copy.deepcopy(dense)
                info["runtime"] = to_sparse_runtime(candidate, "auto", cache=False).to_dict()
                sparse = candidate
            if variant == "eager dense":
                callables[variant] = dense
            elif variant == "eager sparse":
                callables[variant] = sparse
            elif variant == "compile dense":
                callables[variant] = torch.compile(dense, dynamic=False)  # one specialised graph per batch size
            elif variant == "compile sparse":
                callables[variant] = torch.compile(sparse, dynamic=False)
            else:
                callables[variant] = _tensorrt(model, name, variant.endswith("sparse"), sweep, workdir, info)
        except Exception as error:  # noqa: BLE001 - a variant that cannot be built is reported, the rest still run
            failures[variant] = first_line(error)
    return callables, failures


def _tensorrt(model: nn.Module, name: str, sparse: bool, sweep: Sequence[int], workdir: Path, info: dict[str, Any]) -> Callable[..., Any]:
    from .trt import export_for_tensorrt, tensorrt_callable

    onnx = workdir / f"{name}.onnx"
    if not onnx.exists():
        info["tensorrt_inputs"] = export_for_tensorrt(model, MODELS[name].example(1, torch.Generator().manual_seed(0)), onnx)
    examples = [MODELS[name].example(b, torch.Generator().manual_seed(0)) for b in (1, max(sweep))]
    shapes = {n: (tuple(low.shape), tuple(high.shape), tuple(high.shape)) for n, low, high in zip(info["tensorrt_inputs"], examples[0], examples[1])}
    runner, report = tensorrt_callable(onnx, shapes, sparse=sparse, timing_cache=workdir / "timing.cache")
    info[f"tensorrt_{'sparse' if sparse else 'dense'}_engine"] = {k: report[k] for k in ("precision", "tensorrt_version", "build_seconds", "size_bytes") if k in report} | {
        "sparse_kernel_layers": len(report.get("sparse_kernel_layers", ()) or ())
    }
    return runner


def _run_batch(
    name: str,
    batch: int,
    callables: dict[str, Callable[..., Any]],
    build_failures: dict[str, str],
    device: torch.device,
    dtype: torch.dtype,
    timer: CpuTimer | CudaTimer,
    l2_bytes: int | None,
    seed: int,
    **timing: Any,
) -> list[dict[str, Any]]:
    cuda_graphs = timing.pop("cuda_graphs")
    generator = torch.Generator().manual_seed(seed + batch)
    first = MODELS[name].example(batch, generator)
    size = sum(t.numel() * (dtype.itemsize if t.is_floating_point() else t.element_size()) for t in first)
    slots = [first] + [MODELS[name].example(batch, generator) for _ in range(working_set_slots(size, l2_bytes, cap=MAX_INPUT_COPIES) - 1)]
    slots = [tuple(t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in inputs) for inputs in slots]
    rows: dict[str, dict[str, Any]] = {}
    cases: dict[str, list[Callable[[], object]]] = {}
    expected = None
    for variant in [*callables, *build_failures]:
        row = rows[variant] = {"model": name, "batch": batch, "variant": variant, "mode": variant.split()[0], "sparse": variant.endswith("sparse"), "input_copies": len(slots), "status": "ok"}
        if variant in build_failures:
            row.update(status="failed", message=build_failures[variant])
            continue
        fn = callables[variant]
        calls = [lambda fn=fn, inputs=inputs: fn(*inputs) for inputs in slots]
        try:
            with torch.no_grad():
                output = calls[0]()
                output = output[0] if isinstance(output, (tuple, list)) else output
                if expected is None:
                    expected = output.detach().clone()  # eager dense comes first
                row["error"] = relative_error(output, expected)
                if variant == "eager sparse":
                    row["kernels"] = _kernel_counts(fn, slots[0])
                if cuda_graphs and device.type == "cuda" and variant.startswith("eager"):
                    calls = capture_graphs(calls)
        except Exception as error:  # noqa: BLE001 - reported in the row
            row.update(status="failed", message=first_line(error))
            continue
        if not row["error"] <= TOLERANCE:
            row.update(status="wrong", message=f"relative error {row['error']:.3g} vs eager dense > {TOLERANCE:g}: not timed")
            continue
        cases[variant] = calls
    with torch.no_grad():
        summaries, failures = measure(cases, timer, **timing)
    for variant, message in failures.items():
        rows[variant].update(status="failed", message=message)
    for variant, summary in summaries.items():
        rows[variant]["latency_ms"] = summary.to_dict()
    return list(rows.values())


def _derive(rows: list[dict[str, Any]]) -> None:
    """Throughput, and for sparse variants the speedup against the dense variant of the same mode."""
    ok = {(r["model"], r["batch"], r["variant"]): r for r in rows if r["status"] == "ok"}
    for row in ok.values():
        row["throughput"] = row["batch"] / (row["latency_ms"]["median"] * 1e-3)
        if row["sparse"]:
            baseline = ok.get((row["model"], row["batch"], row["variant"].replace("sparse", "dense")))
            if baseline is not None:
                result = verdict(Summary.from_dict(baseline["latency_ms"]), Summary.from_dict(row["latency_ms"]))
                row["speedup"], row["verdict"], row["noise"] = result.ratio, result.label, result.noise
