"""The GEMM suite: ``Y[M, N] = X[M, K] W^T`` with a 2:4 ``W``, dense against every sparse backend.

Named shape sets (the GEMMs of BERT-base, Llama-7B's MLP, ResNet-50's convolutions lowered
by im2col, and Llama-7B decode steps with M = 1..64) x dtypes x backends:

- ``dense``: ``F.linear`` (cuBLAS) on the same 2:4 weight;
- ``cusparselt``: torch's semi-structured tensor (``to_sparse_semi_structured``, cuSPARSELt);
- ``custom``: sparse24's kernels (``sparse24.kernels.ops.sparse_mm``);
- ``tensorrt-dense`` / ``tensorrt``: a one-layer TensorRT engine built without / with sparse weights
  (the speedup of ``tensorrt`` is against ``tensorrt-dense``; every other one against ``dense``).

Timing: CUDA events around each call, L2 flushed before each, the host enqueueing ahead of the
GPU so Python launch overhead is not timed. Every backend's output (dense's too) is checked
against a float64 matmul of the 2:4 weight before it is timed: a wrong answer is reported as
``wrong``, never timed. Each case reports median latency, TFLOP/s
(2MNK / time, the dense FLOP count for every backend), effective GB/s (the bytes the backend
must move at least: dense weight, or 2:4 values + 4-bit metadata, plus X and Y), the speedup
against dense and the share of the physical limit: the roofline ratio of dense to 2:4 time,
``max(F/P, B_dense/BW) / max(F/2P, B_sparse/BW)``, with P the dense GEMM peak and BW the copy
bandwidth measured on this GPU in the same run (so 2x at large M, the bytes ratio at small M).
Without a CUDA GPU only the dense CPU timings run (fp32, M <= 256 unless ``--m`` is given).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

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

__all__ = ["BACKENDS", "DEFAULT_SETS", "DTYPES", "SHAPE_SETS", "GemmCase", "cases_for", "roofline_limit", "run"]

logger = logging.getLogger(__name__)

# set -> (unit, units, {layer: (N, K, rows of M per unit)})
SHAPE_SETS: dict[str, tuple[str, tuple[int, ...], dict[str, tuple[int, int, int]]]] = {
    "bert-base": ("batch x 128 tokens", (1, 4, 16, 64), {"q/k/v/out proj": (768, 768, 128), "fc1": (3072, 768, 128), "fc2": (768, 3072, 128)}),
    "llama-7b-mlp": ("tokens", (16, 128, 1024, 4096, 16384), {"gate/up proj": (11008, 4096, 1), "down proj": (4096, 11008, 1)}),
    "resnet50-im2col": (
        "batch (224x224 images)",
        (1, 8, 32),
        {
            "layer1 3x3 (56x56)": (64, 576, 3136),
            "layer2 3x3 (28x28)": (128, 1152, 784),
            "layer3 3x3 (14x14)": (256, 2304, 196),
            "layer3 1x1 expand": (1024, 256, 196),
            "layer4 3x3 (7x7)": (512, 4608, 49),
        },
    ),
    "decode": ("tokens in flight", (1, 2, 4, 8, 16, 32, 64), {"q/k/v/o proj": (4096, 4096, 1), "gate/up proj": (11008, 4096, 1), "down proj": (4096, 11008, 1)}),
    # one small layer at both kernels' M ranges: does a backend run and agree with float64 here
    # (a first look at a new GPU; the custom backend on the kernels' CPU emulation). Not timed by default.
    "tiny": ("rows", (1, 16, 80), {"136x160": (136, 160, 1)}),
}
DEFAULT_SETS = ("bert-base", "llama-7b-mlp", "resnet50-im2col", "decode")
BACKENDS = ("dense", "cusparselt", "custom", "tensorrt-dense", "tensorrt")
SPARSE_BACKENDS = ("cusparselt", "custom", "tensorrt")
BASELINE = {"tensorrt": "tensorrt-dense"}  # TensorRT sparse against TensorRT dense; the rest against cuBLAS
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
TOLERANCE = {"fp16": 1e-2, "bf16": 2e-2, "fp32": 1e-4}  # max |y - y_fp64| / max |y_fp64|
CPU_MAX_M = 256
MAX_COPIES = 128  # of the weight and of the inputs, to make the working set larger than L2


@dataclass(frozen=True)
class GemmCase:
    set: str
    layer: str
    m: int
    n: int
    k: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    def dense_bytes(self, element: int) -> int:
        return element * (self.n * self.k + self.m * self.k + self.m * self.n)

    def sparse_bytes(self, element: int) -> int:
        """2:4 values (half the weight) + 2-bit index per kept value + X + Y."""
        return element * self.n * self.k // 2 + self.n * self.k // 8 + element * (self.m * self.k + self.m * self.n)


def cases_for(sets: Sequence[str], *, m_values: Sequence[int] | None = None, quick: bool = False, max_m: int | None = None) -> list[GemmCase]:
    """The cases of the named shape sets (``m_values`` replaces every set's M values)."""
    unknown = [s for s in sets if s not in SHAPE_SETS]
    if unknown:
        raise ValueError(f"unknown shape set {', '.join(unknown)}; choose from {', '.join(SHAPE_SETS)}")
    cases = []
    for name in sets:
        _, units, layers = SHAPE_SETS[name]
        if quick:
            units = (units[0], units[-1])
        for layer, (n, k, per_unit) in layers.items():
            ms = list(m_values) if m_values else [u * per_unit for u in units]
            cases += [GemmCase(name, layer, m, n, k) for m in ms if max_m is None or m <= max_m]
    return cases


def roofline_limit(case: GemmCase, element: int, peak_tflops: float, bandwidth_gbps: float) -> dict[str, float]:
    """Attainable dense and 2:4 TFLOP/s under the roofline, and their ratio (the speedup limit)."""
    peak, bandwidth = peak_tflops * 1e12, bandwidth_gbps * 1e9
    dense = max(case.flops / peak, case.dense_bytes(element) / bandwidth)
    sparse = max(case.flops / (2 * peak), case.sparse_bytes(element) / bandwidth)
    return {"limit": dense / sparse, "dense_tflops": case.flops / dense / 1e12, "sparse_tflops": case.flops / sparse / 1e12}


def _random_two_four(n: int, k: int, dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> Tensor:
    from sparse24.mask import prune_

    weight = torch.randn(n, k, device=device, generator=generator)
    prune_(weight, 1)
    return weight.to(dtype)


def _emulated() -> bool:
    """Whether the custom kernels run on the CPU through their emulation (SPARSE24_KERNELS=emulate)."""
    from sparse24.kernels.emulate import emulation_requested

    return emulation_requested()


def backend_problem(backend: str, device: torch.device, dtype: str) -> str | None:
    """Why ``backend`` cannot run here for ``dtype``, or None."""
    if backend == "dense":
        return None
    if device.type != "cuda" and not (backend == "custom" and _emulated()):
        return "needs an sm_80+ CUDA GPU"
    if dtype not in ("fp16", "bf16"):
        return f"2:4 kernels take fp16/bf16, not {dtype}"
    if backend == "cusparselt":
        cusparselt = getattr(torch.backends, "cusparselt", None)
        if not hasattr(torch.sparse, "to_sparse_semi_structured") or cusparselt is None or not cusparselt.is_available():
            return "this torch build has no cuSPARSELt"
        return None
    if backend == "custom":
        from sparse24.kernels import kernels_unavailable

        return kernels_unavailable(device)
    if dtype != "fp16":
        return "TensorRT's sparse kernels are documented for fp16/int8; bf16 not measured"
    from sparse24.trt_export import tensorrt_unavailable

    return tensorrt_unavailable(sparse=backend == "tensorrt")


class _Prepared:
    """The weight forms of one (N, K, dtype) for every backend, one per working-set slot."""

    def __init__(self, weights: list[Tensor], backends: Sequence[str], workdir: Path | None) -> None:
        self.weights = weights
        self.forms: dict[str, list[Any]] = {}
        self.failures: dict[str, str] = {}
        self.workdir = workdir
        self.onnx: Path | None = None
        for backend in backends:
            try:
                self.forms[backend] = self._forms(backend)
            except Exception as error:  # noqa: BLE001 - one backend's failure is a result, not a crash
                self.failures[backend] = first_line(error)

    def _forms(self, backend: str) -> list[Any]:
        if backend == "dense":
            return self.weights
        if backend == "cusparselt":
            return [torch.sparse.to_sparse_semi_structured(w) for w in self.weights]
        if backend == "custom":
            from sparse24.kernels import ops

            return [ops.compress(w) for w in self.weights]
        if self.onnx is None:  # tensorrt: one ONNX per weight shape, an engine per M (built in calls)
            from .trt import export_for_tensorrt

            n, k = self.weights[0].shape
            linear = torch.nn.Linear(k, n, bias=False)
            linear.weight.data.copy_(self.weights[0].float().cpu())
            onnx = self.workdir / f"linear_{n}x{k}.onnx"
            self.input_name = export_for_tensorrt(linear, (torch.randn(8, k),), onnx)[0]
            self.onnx = onnx  # only once the export succeeded
        return [self.onnx]

    def calls(self, backend: str, xs: list[Tensor]) -> list[Callable[[], object]]:
        forms = self.forms[backend]
        count = max(len(xs), len(forms))
        if backend in ("dense", "cusparselt"):
            return [lambda x=xs[i % len(xs)], w=forms[i % len(forms)]: F.linear(x, w) for i in range(count)]
        if backend == "custom":
            from sparse24.kernels import ops

            return [lambda x=xs[i % len(xs)], f=forms[i % len(forms)]: ops.sparse_mm(x, *f) for i in range(count)]
        from .trt import tensorrt_callable

        shape = tuple(xs[0].shape)
        runner, _ = tensorrt_callable(forms[0], {self.input_name: (shape, shape, shape)}, sparse=backend == "tensorrt", timing_cache=self.workdir / "timing.cache")
        return [lambda x=x: runner(x) for x in xs]


def _median_ms(call: Callable[[], object], timer: CudaTimer) -> float:
    summary, failures = measure({"call": [call]}, timer, runs=1, reps=10, warmup=3)
    if failures:
        raise RuntimeError(f"calibration failed: {failures['call']}")
    return summary["call"].median


def calibrate(dtypes: Sequence[str], timer: CudaTimer) -> dict[str, Any]:
    """Dense GEMM peak (8192^3) per dtype and device-to-device copy bandwidth, measured here."""
    size = 8192
    peaks = {}
    for name in dtypes:
        a, b = (torch.randn(size, size, device=timer.device, dtype=DTYPES[name]) for _ in range(2))
        peaks[name] = 2 * size**3 / (_median_ms(partial(F.linear, a, b), timer) * 1e-3) / 1e12
    a = b = None
    source = torch.empty(2**30, dtype=torch.uint8, device=timer.device)
    target = torch.empty_like(source)
    bandwidth = 2 * source.numel() / (_median_ms(partial(target.copy_, source), timer) * 1e-3) / 1e9  # bytes read + written
    source = target = None
    torch.cuda.empty_cache()
    return {"dense_peak_tflops": peaks, "copy_gbps": bandwidth, "method": "F.linear 8192x8192x8192 and a 1 GiB device-to-device copy (read + written), median of 10 each"}


def run(
    *,
    sets: Sequence[str],
    dtypes: Sequence[str] | None,
    backends: Sequence[str],
    m_values: Sequence[int] | None = None,
    reps: int,
    runs: int,
    warmup: int,
    cuda_graphs: bool = False,
    quick: bool = False,
    seed: int = 0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the suite on this machine; return the results (rows, settings, skipped backends, notes).

    ``on_progress(results)`` is called after every case with the results so far (``progress``
    says how many cases are done), so a caller can write them before the run ends.
    """
    problem = cuda_problem()
    device = torch.device("cpu" if problem else "cuda")
    notes = []
    if problem:
        dtypes = list(dtypes or ["fp32"])
        if "custom" in backends and _emulated():
            notes.append(f"{problem}: the custom backend runs on the CPU emulation of its CUDA sources (a correctness check: its times measure the emulator, not the kernels)")
        else:
            notes.append(f"{problem}: dense CPU timings only" + ("" if m_values else f" (M <= {CPU_MAX_M})"))
    dtypes = list(dtypes or ["fp16", "bf16"])
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    backends = ["dense", *[b for b in backends if b != "dense"]]  # dense is the baseline of every speedup
    cases = cases_for(sets, m_values=m_values, quick=quick, max_m=CPU_MAX_M if problem and not m_values else None)
    timer: CpuTimer | CudaTimer = CpuTimer() if problem else CudaTimer(device, flush_l2=True, run_ahead=True)
    l2_bytes = getattr(timer, "l2_bytes", None)
    skipped: list[dict[str, str]] = []
    available: dict[str, list[str]] = {}
    for name in dtypes:
        available[name] = []
        for backend in backends:
            reason = backend_problem(backend, device, name)
            if reason is None:
                available[name].append(backend)
            else:
                skipped.append({"backend": backend, "dtype": name, "reason": reason})
    roofline = None if problem else calibrate(dtypes, timer)
    generator = torch.Generator(device=device).manual_seed(seed)
    rows: list[dict[str, Any]] = []
    order = {(c.set, c.layer, c.m): i for i, c in enumerate(cases)}
    total, done = len(cases) * len(dtypes), 0

    def results(measured: list[dict[str, Any]]) -> dict[str, Any]:
        measured = copy.deepcopy(measured)
        measured.sort(key=lambda r: (dtypes.index(r["dtype"]), order[r["set"], r["layer"], r["m"]], backends.index(r["backend"])))
        _derive(measured, roofline)
        return {
            "suite": "gemm",
            "device": str(device),
            "settings": {
                "reps": reps,
                "runs": runs,
                "warmup": warmup,
                "timer": timer.kind,
                "l2_flush": device.type == "cuda",
                "cuda_graphs": cuda_graphs,
                "working_set": (
                    f"weights and inputs rotated over copies totalling at least 2x L2 (up to {MAX_COPIES} of each; per row: working_set_mb)"
                    if l2_bytes
                    else "weights and inputs rotated over 2 copies"
                ),
                "tolerance": {d: TOLERANCE[d] for d in dtypes},
                "sets": list(sets),
                "dtypes": dtypes,
                "backends": backends,
                "quick": quick,
            },
            "progress": {"done": done, "total": total, "unit": "cases"},
            "roofline": roofline,
            "skipped": skipped,
            "notes": notes,
            "rows": measured,
        }

    with tempfile.TemporaryDirectory(prefix="sparse24-bench-") as workdir:
        for dtype_name in dtypes:
            dtype, element = DTYPES[dtype_name], DTYPES[dtype_name].itemsize
            by_shape: dict[tuple[int, int], list[GemmCase]] = {}
            for case in cases:
                by_shape.setdefault((case.n, case.k), []).append(case)
            for (n, k), group in by_shape.items():
                weight_slots = working_set_slots(n * k * element, l2_bytes, cap=MAX_COPIES)
                weights = [_random_two_four(n, k, dtype, device, generator) for _ in range(weight_slots)]
                prepared = _Prepared(weights, available[dtype_name], Path(workdir))
                for case in group:
                    rows += _run_case(case, dtype_name, prepared, timer, generator, l2_bytes, reps=reps, runs=runs, warmup=warmup, cuda_graphs=cuda_graphs)
                    done += 1
                    logger.info("gemm %s %s %s M=%d done (%d of %d)", dtype_name, case.set, case.layer, case.m, done, total)
                    if on_progress is not None:
                        on_progress(results(rows))
                del prepared, weights
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return results(rows)


def _run_case(
    case: GemmCase, dtype: str, prepared: _Prepared, timer: CpuTimer | CudaTimer, generator: torch.Generator, l2_bytes: int | None, **timing: Any
) -> list[dict[str, Any]]:
    device = prepared.weights[0].device
    cuda_graphs = timing.pop("cuda_graphs")
    element = DTYPES[dtype].itemsize
    slots = working_set_slots(element * (case.m * case.k + case.m * case.n), l2_bytes, cap=MAX_COPIES)
    xs = [torch.randn(case.m, case.k, device=device, dtype=DTYPES[dtype], generator=generator) for _ in range(slots)]
    expected = xs[0].double() @ prepared.weights[0].double().T  # float64 on the device: independent of every backend
    moved = len(prepared.weights) * case.n * case.k * element + slots * element * (case.m * case.k + case.m * case.n)
    base = {"set": case.set, "layer": case.layer, "m": case.m, "n": case.n, "k": case.k, "dtype": dtype, "working_set_mb": round(moved / 2**20, 1)}
    rows: dict[str, dict[str, Any]] = {}
    cases: dict[str, list[Callable[[], object]]] = {}
    for backend in [*prepared.forms, *prepared.failures]:
        row = rows[backend] = {**base, "backend": backend, "status": "ok"}
        if backend in prepared.failures:
            row.update(status="failed", message=prepared.failures[backend])
            continue
        try:
            calls = prepared.calls(backend, xs)
            row["error"] = relative_error(calls[0](), expected)
            if cuda_graphs and device.type == "cuda":
                calls = capture_graphs(calls)
        except Exception as error:  # noqa: BLE001 - reported in the row
            row.update(status="failed", message=first_line(error))
            continue
        if not row["error"] <= TOLERANCE[dtype]:
            row.update(status="wrong", message=f"relative error {row['error']:.3g} > {TOLERANCE[dtype]:g}: not timed")
            continue
        cases[backend] = calls
    summaries, failures = measure(cases, timer, **timing)
    for backend, message in failures.items():
        rows[backend].update(status="failed", message=message)
    for backend, summary in summaries.items():
        rows[backend]["latency_ms"] = summary.to_dict()
    del xs, expected
    return list(rows.values())


def _derive(rows: list[dict[str, Any]], roofline: dict[str, Any] | None) -> None:
    """Add TFLOP/s, GB/s, speedup vs dense (with its noise verdict) and the share of the limit."""
    baselines = {(_key(r), r["backend"]): r for r in rows if r["backend"] in ("dense", "tensorrt-dense") and r["status"] == "ok"}
    for row in rows:
        if row["status"] != "ok":
            continue
        case = GemmCase(row["set"], row["layer"], row["m"], row["n"], row["k"])
        element = DTYPES[row["dtype"]].itemsize
        seconds = row["latency_ms"]["median"] * 1e-3
        moved = case.dense_bytes(element) if row["backend"] in ("dense", "tensorrt-dense") else case.sparse_bytes(element)
        row["tflops"] = case.flops / seconds / 1e12 if seconds else math.inf
        row["gbps"] = moved / seconds / 1e9 if seconds else math.inf
        baseline = baselines.get((_key(row), BASELINE.get(row["backend"], "dense")))
        if roofline is not None:
            row.update(roofline_limit(case, element, roofline["dense_peak_tflops"][row["dtype"]], roofline["copy_gbps"]))
        if row["backend"] != "dense" and baseline is not None:
            result = verdict(Summary.from_dict(baseline["latency_ms"]), Summary.from_dict(row["latency_ms"]))
            row["speedup"], row["verdict"], row["noise"] = result.ratio, result.label, result.noise
            if "limit" in row and row["backend"] in SPARSE_BACKENDS:
                row["share_of_limit"] = result.ratio / row["limit"]


def _key(row: dict[str, Any]) -> tuple:
    return (row["set"], row["layer"], row["m"], row["n"], row["k"], row["dtype"])
