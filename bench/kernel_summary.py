"""``python -m sparse24.bench kernels``: one line per sparse24 CUDA kernel: correct or not, and its speed against dense.

The kernels (``sparse24.kernels.ops``), each in fp16 and bf16, on one LLM-like 2:4 weight (N = K = 4096,
random, pruned by magnitude):

- ``small_m``: the CUDA-core GEMM (``sparse_mm(..., kernel="small_m")``, auto's choice for M <= 64);
- ``mma_sp``: the ``mma.sp`` tensor-core GEMM (``kernel="mma_sp"``, auto's choice above);
- ``compress``: dense 2:4 weight -> (values, metadata);
- ``mask_rows``: the training gradient hook's GPU step, a gradient of the weight's shape multiplied
  in place by its 1-bit packed mask (``ops.mask_rows_``), timed against the torch ops it replaces
  (``sparse24.mask.mask_rows_``, a table lookup and a multiply per block of rows).

A GEMM kernel is correct when its output at every M (1, 16, 4096) is within the gemm suite's
tolerance of a float64 matmul of the same 2:4 weight (max |y - y64| / max |y64|). At each M where
it is correct it is timed against dense ``F.linear`` on that weight, interleaved (CUDA events, L2
flushed before each call, GEMMs queued behind a GPU sleep so Python's launch overhead is not
timed) and the line gives dense median / kernel median, marked ``noise`` where the difference is
within the run-to-run spread. ``compress`` is correct when its values and metadata equal the
pure-PyTorch ``sparse24.kernels.reference.compress`` and ``decompress`` gives the weight back; its line
gives the time of one call (its error-flag read-back, a host sync, included). ``mask_rows`` is correct
when it equals the torch ops' result; both are timed, interleaved, and its line gives the ratio.

Fast by design (it is the first thing ``make gpu-check`` measures): 2 dtypes x 3 M x 3 GEMMs
(dense, small_m, mma_sp) x runs x (warmup + reps) calls, about 1,300 with the defaults, a few
seconds on an H100 after NVRTC compiles the three kernel sources (a few seconds each, cached).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .gemm import DTYPES as TORCH_DTYPES
from .gemm import TOLERANCE
from .stats import Summary, verdict
from .timing import CudaTimer, first_line, relative_error
from .timing import measure as time_calls

__all__ = ["DTYPES", "GEMM_KERNELS", "M_VALUES", "SHAPE", "measure", "problems", "summary_lines"]

logger = logging.getLogger(__name__)

GEMM_KERNELS = {"small_m": "CUDA cores", "mma_sp": "tensor cores"}
DTYPES = ("fp16", "bf16")
M_VALUES = (1, 16, 4096)  # a decode step, a small batch, a prefill
SHAPE = (4096, 4096)  # N, K: a Llama-7B attention projection


def measure(
    *,
    dtypes: Sequence[str] = DTYPES,
    m_values: Sequence[int] = M_VALUES,
    shape: tuple[int, int] = SHAPE,
    reps: int,
    runs: int,
    warmup: int,
    seed: int = 0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Check and time every kernel on this machine; rows of ``status`` ok / wrong / failed / not run.

    ``on_progress(results)`` is called after every measured step with the results so far.
    """
    from sparse24.kernels import kernels_unavailable
    from sparse24.mask import prune_

    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype {', '.join(unknown)}; the kernels take {', '.join(DTYPES)}")
    n, k = shape
    results: dict[str, Any] = {
        "suite": "kernels",
        "shape": {"n": n, "k": k},
        "m_values": list(m_values),
        "settings": {"reps": reps, "runs": runs, "warmup": warmup, "tolerance": {d: TOLERANCE[d] for d in dtypes}},
        "progress": {"done": 0, "total": len(dtypes) * len(m_values), "unit": "(dtype, M) steps"},
        "rows": [],
    }
    reason = kernels_unavailable()
    if reason is not None:
        results["rows"] = [{"kernel": kernel, "dtype": dtype, "status": "not run", "message": reason} for kernel in (*GEMM_KERNELS, "compress", "mask_rows") for dtype in dtypes]
        results["progress"]["total"] = 0  # nothing to run here
        return results
    device = torch.device("cuda")
    timer = CudaTimer(device, flush_l2=True, run_ahead=True)
    results["settings"]["timer"] = timer.kind + ", L2 flushed before each call"
    generator = torch.Generator(device=device).manual_seed(seed)
    for dtype in dtypes:
        weight = torch.randn(n, k, device=device, generator=generator)
        prune_(weight, 1)  # 2:4 along K by magnitude
        weight = weight.to(TORCH_DTYPES[dtype])
        row, compressed = _compress_row(weight, dtype, timer, reps=reps, runs=runs, warmup=warmup)
        results["rows"].append(row)
        results["rows"].append(_mask_row(weight, dtype, timer, reps=reps, runs=runs, warmup=warmup))
        for m in m_values:
            x = torch.randn(m, k, device=device, dtype=weight.dtype, generator=generator)
            results["rows"] += _gemm_rows(x, weight, compressed, dtype, TOLERANCE[dtype], timer, reps=reps, runs=runs, warmup=warmup)
            results["progress"]["done"] += 1
            logger.info("kernels %s M=%d done", dtype, m)
            if on_progress is not None:
                on_progress(results)
        del weight, compressed
    return results


def _compress_row(weight: Tensor, dtype: str, timer: CudaTimer, **timing: int) -> tuple[dict[str, Any], tuple[Tensor, Tensor]]:
    """Check ``ops.compress`` against the reference and time it; return the row and (values, meta) for the GEMMs."""
    from sparse24.kernels import ops, reference

    n, k = weight.shape
    row: dict[str, Any] = {"kernel": "compress", "dtype": dtype, "n": n, "k": k, "status": "ok"}
    expected = reference.compress(weight)  # pure PyTorch, on the same device
    try:
        values, meta = ops.compress(weight)
        if not (torch.equal(values, expected[0]) and torch.equal(meta, expected[1])):
            row.update(status="wrong", message="values or metadata differ from sparse24.kernels.reference.compress")
        elif not torch.equal(ops.decompress(values, meta), weight):
            row.update(status="wrong", message="decompress does not give the weight back")
    except Exception as error:  # noqa: BLE001 - a kernel that raises is a result
        row.update(status="failed", message=first_line(error))
    if row["status"] == "ok":
        summaries, failures = time_calls({"compress": [partial(ops.compress, weight)]}, timer, **timing)
        if failures:
            row.update(status="failed", message=failures["compress"])
        else:
            row["latency_ms"] = summaries["compress"].to_dict()
    return row, expected  # the GEMMs are checked with the reference's compressed weight either way


def _mask_row(weight: Tensor, dtype: str, timer: CudaTimer, **timing: int) -> dict[str, Any]:
    """Check ``ops.mask_rows_`` on a random gradient of ``weight``'s shape and mask against the torch ops, then time both."""
    from sparse24.kernels import ops
    from sparse24.mask import mask_rows_, pack_bits

    n, k = weight.shape
    row: dict[str, Any] = {"kernel": "mask_rows", "dtype": dtype, "n": n, "k": k, "status": "ok"}
    packed = pack_bits(weight != 0)
    grad = torch.randn_like(weight)
    try:
        if not torch.equal(ops.mask_rows_(grad.clone(), packed), mask_rows_(grad.clone(), packed)):
            row.update(status="wrong", message="differs from sparse24.mask.mask_rows_ (the torch ops)")
    except Exception as error:  # noqa: BLE001 - a kernel that raises is a result
        row.update(status="failed", message=first_line(error))
    if row["status"] == "ok":  # in place and idempotent: every call masks the same gradient again
        summaries, failures = time_calls({"torch": [partial(mask_rows_, grad, packed)], "kernel": [partial(ops.mask_rows_, grad, packed)]}, timer, **timing)
        if failures:
            row.update(status="failed", message="; ".join(f"{name}: {message}" for name, message in failures.items()))
        else:
            result = verdict(summaries["torch"], summaries["kernel"])
            row.update(latency_ms=summaries["kernel"].to_dict(), torch_latency_ms=summaries["torch"].to_dict(), speedup=result.ratio, verdict=result.label, noise=result.noise)
    return row


def _gemm_rows(x: Tensor, weight: Tensor, compressed: tuple[Tensor, Tensor], dtype: str, tolerance: float, timer: CudaTimer, **timing: int) -> list[dict[str, Any]]:
    """Dense and every GEMM kernel at one M: checked against float64, then the correct ones timed together."""
    from sparse24.kernels import ops

    m, (n, k) = x.shape[0], weight.shape
    expected = x.double() @ weight.double().T
    candidates = {"dense": partial(F.linear, x, weight)}
    candidates |= {kernel: partial(ops.sparse_mm, x, *compressed, kernel=kernel) for kernel in GEMM_KERNELS}
    rows, calls = {}, {}
    for name, call in candidates.items():
        row = rows[name] = {"kernel": name, "dtype": dtype, "m": m, "n": n, "k": k, "status": "ok"}
        try:
            row["error"] = relative_error(call(), expected)
        except Exception as error:  # noqa: BLE001 - a kernel that raises is a result
            row.update(status="failed", message=first_line(error))
            continue
        if not row["error"] <= tolerance:
            row.update(status="wrong", message=f"relative error {row['error']:.3g} > {tolerance:g} against float64: not timed")
            continue
        calls[name] = [call]
    summaries, failures = time_calls(calls, timer, **timing)
    for name, message in failures.items():
        rows[name].update(status="failed", message=message)
    for name, summary in summaries.items():
        rows[name]["latency_ms"] = summary.to_dict()
    _derive(list(rows.values()))
    return list(rows.values())


def _derive(rows: list[dict[str, Any]]) -> None:
    """Speedup (dense median / kernel median) and its noise verdict for every timed GEMM kernel row with a timed dense row."""
    dense = {(r["dtype"], r["m"]): r for r in rows if r["kernel"] == "dense" and "latency_ms" in r}
    for row in rows:
        baseline = dense.get((row["dtype"], row.get("m")))
        if row["kernel"] in GEMM_KERNELS and "latency_ms" in row and baseline is not None:
            result = verdict(Summary.from_dict(baseline["latency_ms"]), Summary.from_dict(row["latency_ms"]))
            row.update(speedup=result.ratio, verdict=result.label, noise=result.noise)


def problems(results: dict[str, Any], *, require: bool = False) -> list[dict[str, Any]]:
    """The rows (dense's included) that are wrong or failed, and with ``require`` those not run."""
    bad = ("wrong", "failed", "not run") if require else ("wrong", "failed")
    return [r for r in results["rows"] if r["status"] in bad]


def _speed(row: dict[str, Any], dense: dict[str, Any] | None) -> str:
    if row["status"] != "ok":
        return row["status"]
    if "speedup" not in row:
        return f"no speedup (dense {dense['status'] if dense else 'missing'})"
    return f"{row['speedup']:.2f}x" + (" (noise)" if row["verdict"] == "noise" else "")


def _gemm_line(kernel: str, dtype: str, rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    label = f"{kernel} {dtype} ({GEMM_KERNELS[kernel]})"
    if any(r["status"] == "not run" for r in rows):
        return f"{label}: not run: {rows[0]['message']}"
    tolerance = results["settings"]["tolerance"][dtype]
    wrong = [r for r in rows if r["status"] == "wrong"]
    failed = [r for r in rows if r["status"] == "failed"]
    states = []
    if wrong:
        worst = max(wrong, key=lambda r: r["error"])
        states.append(f"WRONG at M={','.join(str(r['m']) for r in wrong)} (error up to {worst['error']:.3g} > {tolerance:g} vs float64)")
    if failed:
        states.append(f"FAILED at M={','.join(str(r['m']) for r in failed)} ({failed[0].get('message', '')})")
    if not states:
        states.append(f"correct (max error {max(r['error'] for r in rows):.1e} vs float64, tolerance {tolerance:g})")
    state = "; ".join(states)
    shape = results["shape"]
    dense = {r["m"]: r for r in results["rows"] if r["kernel"] == "dense" and r["dtype"] == dtype}
    speeds = ", ".join(f"M={r['m']} {_speed(r, dense.get(r['m']))}" for r in rows)
    return f"{label}: {state}; vs dense F.linear at N={shape['n']} K={shape['k']}: {speeds}"


def _not_ok_line(label: str, row: dict[str, Any]) -> str | None:
    """The line of a one-row kernel that did not pass (not run, wrong, failed); None when it did."""
    if row["status"] == "not run":
        return f"{label}: not run: {row['message']}"
    if row["status"] != "ok":
        return f"{label}: {row['status'].upper()} ({row.get('message', '')})"
    return None


def _compress_line(row: dict[str, Any]) -> str:
    label = f"compress {row['dtype']}"
    not_ok = _not_ok_line(label, row)
    if not_ok is not None:
        return not_ok
    return f"{label}: correct (equals sparse24.kernels.reference.compress, decompress round-trips); {row['n']}x{row['k']} in {row['latency_ms']['median']:.4f} ms per call"


def _mask_line(row: dict[str, Any]) -> str:
    label = f"mask_rows {row['dtype']} (gradient hook)"
    not_ok = _not_ok_line(label, row)
    if not_ok is not None:
        return not_ok
    speed = f"{row['speedup']:.2f}x" + (" (noise)" if row["verdict"] == "noise" else "")
    return (
        f"{label}: correct (equals sparse24.mask.mask_rows_); a {row['n']}x{row['k']} gradient in {row['latency_ms']['median']:.4f} ms per call, "
        f"speedup {speed} over the torch ops ({row['torch_latency_ms']['median']:.4f} ms)"
    )


def summary_lines(results: dict[str, Any]) -> list[str]:
    """One line per (kernel, dtype) that has rows: small_m, mma_sp, compress, mask_rows, in the order the dtypes ran."""
    lines = []
    dtypes = list(dict.fromkeys(r["dtype"] for r in results["rows"]))
    for dtype in dtypes:
        for kernel in GEMM_KERNELS:
            rows = [r for r in results["rows"] if r["kernel"] == kernel and r["dtype"] == dtype]
            if rows:
                lines.append(_gemm_line(kernel, dtype, rows, results))
        lines += [_compress_line(r) for r in results["rows"] if r["kernel"] == "compress" and r["dtype"] == dtype]
        lines += [_mask_line(r) for r in results["rows"] if r["kernel"] == "mask_rows" and r["dtype"] == dtype]
    return lines
