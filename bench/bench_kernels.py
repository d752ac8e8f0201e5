"""2:4 GEMM kernels on one GPU: dense cuBLAS vs cuSPARSELt vs sparse24's custom kernels.

Y[M, N] = X[M, K] . W^T for the (N, K) of Llama-7B, BERT-base and ResNet-50 (im2col), fp16 and
bf16, M from 1 to 16384. Each sparse output is checked against the dense one before it is timed
(a wrong answer is reported as a failure, never timed). Times are medians over CUDA events with
the L2 cache flushed before every repetition. Writes ``kernels_<gpu>.json`` and ``.md``.

    python bench/bench_kernels.py --out bench/results
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from _common import environment, header, write_results
from torch.nn import functional as F

from sparse24.runtime import cuda_time_ms

SHAPES = {  # (N, K): output features x reduction
    "llama-7b q/k/v/o": (4096, 4096),
    "llama-7b gate/up": (11008, 4096),
    "llama-7b down": (4096, 11008),
    "bert-base attn": (768, 768),
    "bert-base fc1": (3072, 768),
    "bert-base fc2": (768, 3072),
    "resnet50 3x3 c256": (256, 2304),
    "resnet50 1x1 c1024": (256, 1024),
    "resnet50 3x3 c512": (512, 4608),
}
M_VALUES = (1, 2, 4, 8, 16, 32, 64, 128, 1024, 4096, 16384)
TOLERANCE = 1e-2


def _two_four(n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    from sparse24.mask import prune_

    weight = torch.randn(n, k, device="cuda")
    prune_(weight, 1)
    return weight.to(dtype)


def run(shapes: dict[str, tuple[int, int]], m_values: tuple[int, ...], dtypes: tuple[torch.dtype, ...], reps: int) -> list[dict]:
    from kernels import kernels_unavailable, ops

    custom_reason = kernels_unavailable()
    flush = torch.empty(int(torch.cuda.get_device_properties(0).L2_cache_size * 2 // 4) + 1, dtype=torch.float32, device="cuda")
    rows = []
    for dtype in dtypes:
        for label, (n, k) in shapes.items():
            weight = _two_four(n, k, dtype)
            semi = torch.sparse.to_sparse_semi_structured(weight)
            values, meta = ops.compress(weight) if custom_reason is None else (None, None)
            for m in m_values:
                x = torch.randn(m, k, device="cuda", dtype=dtype)
                expected = F.linear(x, weight)
                scale = float(expected.abs().max()) or 1.0
                backends = {"dense": lambda: F.linear(x, weight), "cusparselt": lambda: F.linear(x, semi)}
                if custom_reason is None:
                    backends["custom"] = lambda: ops.sparse_mm(x, values, meta)
                row = {"dtype": str(dtype).split(".")[-1], "shape": label, "N": n, "K": k, "M": m, "ms": {}, "errors": {}}
                for name, fn in backends.items():
                    try:
                        error = float((fn().float() - expected.float()).abs().max()) / scale
                    except RuntimeError as failure:
                        row["errors"][name] = f"failed: {str(failure).splitlines()[0]}"
                        continue
                    if not error <= TOLERANCE:
                        row["errors"][name] = f"wrong: relative error {error:.3g}"
                        continue
                    row["ms"][name] = cuda_time_ms(fn, reps=reps, warmup=3, before=flush.zero_)  # L2 flushed before each
                flops = 2 * m * n * k
                dense_bytes = (n * k + m * k + m * n) * 2
                sparse_bytes = n * k + n * k // 8 + (m * k + m * n) * 2  # values (K/2 halves) + 4-bit meta per 4 weights
                row["tflops"] = {b: flops / (t * 1e-3) / 1e12 for b, t in row["ms"].items()}
                row["gbps"] = {b: (dense_bytes if b == "dense" else sparse_bytes) / (t * 1e-3) / 1e9 for b, t in row["ms"].items()}
                if "dense" in row["ms"]:
                    row["speedup"] = {b: row["ms"]["dense"] / t for b, t in row["ms"].items() if b != "dense"}
                rows.append(row)
                print(f"{row['dtype']} {label} M={m}: " + ", ".join(f"{b} {t:.4f} ms" for b, t in row["ms"].items()), file=sys.stderr)
    return rows


def markdown(results: dict) -> str:
    gpu = results["gpu"]
    lines = header(f"2:4 GEMM kernels on {gpu['name']}", results, f"; CUDA {gpu['cuda']}, cuSPARSELt {gpu['cusparselt']}")
    lines += [
        "",
        "Y[M, N] = X[M, K] W^T. Median ms over CUDA events, L2 flushed before each repetition; speedup = dense ms / backend ms.",
        "Sparse outputs were checked against dense (relative error <= 1e-2) before timing; failures are listed, never timed.",
        "",
        "| dtype | shape | N x K | M | dense ms | cuSPARSELt ms (x) | custom ms (x) | custom GB/s | custom TFLOP/s | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        ms, speed = row["ms"], row.get("speedup", {})

        def cell(name: str) -> str:
            return f"{ms[name]:.4f} ({speed.get(name, float('nan')):.2f}x)" if name in ms else "-"

        lines.append(
            f"| {row['dtype']} | {row['shape']} | {row['N']}x{row['K']} | {row['M']} | {ms.get('dense', float('nan')):.4f} | {cell('cusparselt')} | {cell('custom')} | "
            f"{row['gbps'].get('custom', float('nan')):.0f} | {row['tflops'].get('custom', float('nan')):.1f} | {'; '.join(f'{k}: {v}' for k, v in row['errors'].items()) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer shapes and M values (a smoke run)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; nothing measured")
        return 0
    shapes = dict(list(SHAPES.items())[:2]) if args.quick else SHAPES
    m_values = (1, 16, 4096) if args.quick else M_VALUES
    rows = run(shapes, m_values, (torch.float16, torch.bfloat16), args.reps)
    cusparselt = getattr(getattr(torch.backends, "cusparselt", None), "version", lambda: None)()
    results = {
        "command": " ".join(["python", *sys.argv]),
        "environment": environment(),
        "gpu": {"name": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()), "cuda": torch.version.cuda, "cusparselt": cusparselt},
        "rows": rows,
    }
    name = "kernels_" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_results(args.out, name, results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
