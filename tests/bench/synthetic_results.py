"""Synthetic gemm and model results, shaped as the suites write them, from chosen timing samples.

They stand in for GPU runs on machines without a GPU: every number in them is made up here,
so the statistics, reports, plots and comparisons can be checked against known answers.
"""

from __future__ import annotations

import copy
from typing import Any

from sparse24.bench import gemm, kernel_summary, model
from sparse24.bench.report import SCHEMA
from sparse24.bench.stats import summarize, verdict

GPU = {"name": "NVIDIA Test GPU", "capability": "sm_90", "sm_count": 132, "memory_gib": 79.2, "l2_bytes": 52428800, "cuda": "13.0", "cudnn": 91000, "cusparselt": 700, "nvidia_smi": {"driver_version": "580.1"}}
ROOFLINE = {"dense_peak_tflops": {"fp16": 700.0}, "copy_gbps": 3000.0, "method": "synthetic"}


def environment(gpu: bool = True) -> dict[str, Any]:
    return {
        "date": "2026-11-23T00:00:00+00:00",
        "command": "sparse24 bench gemm model",
        "git_commit": "0123456789abcdef0123",
        "sparse24": "0.1.0",
        "python": "3.12.3",
        "torch": "2.11.0+cu130",
        "tensorrt": None,
        "onnxruntime": None,
        "transformers": None,
        "cuda_python": None,
        "cpu": "x86_64",
        "cpu_threads": 16,
        "gpu": copy.deepcopy(GPU) if gpu else None,
    }


def runs(median: float, spread: float = 0.02, n: int = 10) -> list[list[float]]:
    """Three runs around ``median`` whose medians differ by ``spread`` (relative)."""
    low, high = median * (1 - spread / 2), median * (1 + spread / 2)
    return [[low] * n, [median] * n, [high] * n]


def gemm_results(times: dict[tuple[int, str], float] | None = None, *, spread: float = 0.02) -> dict[str, Any]:
    """decode gate/up at M = 1 and 16 (fp16): dense, cusparselt, custom; custom is wrong at M=16 unless timed."""
    times = times or {(1, "dense"): 0.040, (1, "cusparselt"): 0.080, (1, "custom"): 0.025, (16, "dense"): 0.045, (16, "cusparselt"): 0.0445}
    rows = []
    for m in (1, 16):
        for backend in ("dense", "cusparselt", "custom"):
            row = {"set": "decode", "layer": "gate/up proj", "m": m, "n": 11008, "k": 4096, "dtype": "fp16", "backend": backend, "status": "ok", "error": 1e-3}
            if (m, backend) in times:
                row["latency_ms"] = summarize(runs(times[m, backend], spread)).to_dict()
            else:
                row.update(status="wrong", error=0.5, message="relative error 0.5 > 0.01: not timed")
            rows.append(row)
    gemm._derive(rows, ROOFLINE)
    return {
        "schema": SCHEMA,
        "suite": "gemm",
        "environment": environment(),
        "command": "sparse24 bench gemm",
        "device": "cuda",
        "settings": {"reps": 10, "runs": 3, "warmup": 2, "timer": "cuda events", "l2_flush": True, "cuda_graphs": False, "working_set": "synthetic", "tolerance": {"fp16": 1e-2}, "sets": ["decode"], "dtypes": ["fp16"], "backends": list(gemm.BACKENDS), "quick": False},
        "roofline": ROOFLINE,
        "skipped": [{"backend": "tensorrt", "dtype": "fp16", "reason": "tensorrt is not installed"}],
        "notes": [],
        "rows": rows,
    }


def model_results(times: dict[tuple[int, str], float] | None = None, *, spread: float = 0.02) -> dict[str, Any]:
    """bert-base at batch 1 and 8: eager dense/sparse; compile sparse failed at batch 8."""
    times = times or {(1, "eager dense"): 5.0, (1, "eager sparse"): 4.0, (8, "eager dense"): 12.0, (8, "eager sparse"): 12.1, (1, "compile dense"): 3.0, (1, "compile sparse"): 2.5, (8, "compile dense"): 9.0}
    rows = []
    for batch in (1, 8):
        for variant in ("eager dense", "eager sparse", "compile dense", "compile sparse"):
            row = {"model": "bert-base", "batch": batch, "variant": variant, "mode": variant.split()[0], "sparse": variant.endswith("sparse"), "status": "ok", "error": 1e-3}
            if (batch, variant) in times:
                row["latency_ms"] = summarize(runs(times[batch, variant], spread)).to_dict()
            else:
                row.update(status="failed", message="RuntimeError: compile failed")
            rows.append(row)
    model._derive(rows)
    return {
        "schema": SCHEMA,
        "suite": "model",
        "environment": environment(),
        "command": "sparse24 bench model",
        "device": "cuda",
        "dtype": "float16",
        "settings": {"reps": 10, "runs": 3, "warmup": 2, "timer": "cuda events", "cuda_graphs": False, "working_set": "synthetic", "tolerance": 0.02, "variants": list(model.VARIANTS[:4]), "quick": False},
        "models": {"bert-base": {"sparse_weights": 72, "weights": 72, "policy": "tensorrt", "description": "BERT-base (synthetic)"}},
        "skipped": [{"variant": "tensorrt dense", "reason": "tensorrt is not installed"}],
        "notes": [],
        "rows": rows,
    }


def kernel_results(times: dict[tuple[str, str, int], float] | None = None, *, spread: float = 0.02) -> dict[str, Any]:
    """The kernel summary's rows for fp16 and bf16 at M = 1, 16, 4096, timed as ``times`` says.

    By default: small_m beats dense at M = 1 and 16 and loses at 4096; mma_sp is within noise of
    dense at 16; in bf16, mma_sp is wrong at M = 16 and small_m's timing failed at M = 4096.
    """
    default = {"dense": (0.040, 0.045, 0.300), "small_m": (0.025, 0.030, 1.500), "mma_sp": (0.050, 0.0448, 0.200)}
    times = times or {(dtype, kernel, m): t[i] for dtype in ("fp16", "bf16") for kernel, t in default.items() for i, m in enumerate(kernel_summary.M_VALUES)}
    rows: list[dict[str, Any]] = []
    for dtype in ("fp16", "bf16"):
        rows.append({"kernel": "compress", "dtype": dtype, "n": 4096, "k": 4096, "status": "ok", "latency_ms": summarize(runs(0.012, spread)).to_dict()})
        mask = {"kernel": "mask_rows", "dtype": dtype, "n": 4096, "k": 4096, "status": "ok"}
        kernel_ms, torch_ms = summarize(runs(0.05, spread)), summarize(runs(0.80, spread))
        result = verdict(torch_ms, kernel_ms)
        rows.append({**mask, "latency_ms": kernel_ms.to_dict(), "torch_latency_ms": torch_ms.to_dict(), "speedup": result.ratio, "verdict": result.label, "noise": result.noise})
        for m in kernel_summary.M_VALUES:
            for kernel in ("dense", *kernel_summary.GEMM_KERNELS):
                row = {"kernel": kernel, "dtype": dtype, "m": m, "n": 4096, "k": 4096, "status": "ok", "error": 3e-4 if kernel == "dense" else 5e-4}
                if (dtype, kernel, m) == ("bf16", "mma_sp", 16):
                    row.update(status="wrong", error=0.31, message="relative error 0.31 > 0.02 against float64: not timed")
                elif (dtype, kernel, m) == ("bf16", "small_m", 4096):
                    row.update(status="failed", message="RuntimeError: timing failed")
                else:
                    row["latency_ms"] = summarize(runs(times[dtype, kernel, m], spread)).to_dict()
                rows.append(row)
    kernel_summary._derive(rows)
    return {
        "schema": SCHEMA,
        "suite": "kernels",
        "environment": environment(),
        "command": "python -m sparse24.bench kernels",
        "shape": {"n": 4096, "k": 4096},
        "m_values": list(kernel_summary.M_VALUES),
        "settings": {"reps": 10, "runs": 3, "warmup": 2, "tolerance": {"fp16": 1e-2, "bf16": 2e-2}, "timer": "synthetic"},
        "rows": rows,
    }
