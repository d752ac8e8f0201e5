"""Peak memory of sparsify + finetune against plain training of the same model, same optimizer, same batches.

Every measurement runs in a fresh process (one per case and variant, under ``torchrun`` for the
multi-rank cases), so no allocator state carries over:

- ``plain``: the dense model trained for ``--steps`` AdamW steps (lr, weight decay and batches as
  in the sparse run) by a plain loop (under DDP for ``ddp``; for ``fsdp`` sharded with FSDP2 the
  way finetune shards: each Linear, then the root);
- ``sparse``: ``sparse24.sparsify(model, "magnitude")`` then ``sparse24.finetune`` for the same
  steps, batches and optimizer, with the masks enforced (``strategy="ddp"`` / ``"fsdp"``).

Both variants first run everything once on a tiny model (lazy imports, first-use caches). Peaks are measured with :func:`sparse24.bench._common.peak_memory` above the process's level once
the model exists (CPU: the peak resident set, VmHWM; CUDA: ``max_memory_allocated``), so the
Python runtime and torch's libraries, identical in both variants, are left out; the ratio of
these increments is the stricter measure. Under torchrun the largest rank counts. ``sparsify``'s
own peak is reported against the model's parameter bytes and against its largest layer's.

Each variant runs ``--repeats`` times (3), plain and sparse interleaved; the table shows the
median run and lists every run (the CPU's resident peak moves by tens of MiB between runs).

Targets: sparse peak <= 1.10x plain; sparsify's peak <= one layer's weight bytes above the model.

    python bench/bench_memory.py --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMMAND = "python bench/bench_memory.py --out bench/results"
TARGET = 1.10
CASES = ("one process", "ddp", "fsdp")
_RANKS = {"one process": 1, "ddp": 2, "fsdp": 2}
WIDTH, DEPTH, BATCH, STEPS, LR, WEIGHT_DECAY = 2048, 8, 64, 10, 1e-4, 0.01
REPEATS = 3


def _median_run(runs: list[dict]) -> dict:
    """The run with the median training peak (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["train_peak_bytes"] or 0)
    return ordered[(len(ordered) - 1) // 2]


def build(width: int, depth: int):
    """A stack of ``depth`` Linear(width, width) + GELU layers and a 16-way head, seeded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(width, 16))


def batches(width: int, batch: int, count: int) -> list:
    """``count`` seeded batches, the same on every rank (finetune gives rank r batches r, r + W, ...; so does the plain loop)."""
    import torch

    generator = torch.Generator().manual_seed(1000)
    return [(torch.randn(batch, width, generator=generator), torch.randint(0, 16, (batch,), generator=generator)) for _ in range(count)]


def loss_fn(model, batch):
    import torch

    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def _warm_up(world: int) -> None:
    """Run everything both variants use once on a tiny model, so lazy imports and first-use caches are in place before measuring."""
    import gc

    import torch

    import sparse24

    tiny = build(32, 2)
    sparse24.sparsify(tiny, "magnitude", progress=False)
    sparse24.finetune(tiny, batches(32, 4, world), loss_fn=loss_fn, steps=1, warmup_steps=0, scheduler="constant", progress=False)
    sparse24.verify(tiny)
    plain = build(32, 2)
    optimizer = torch.optim.AdamW(plain.parameters())
    loss_fn(plain, batches(32, 4, 1)[0]).backward()
    optimizer.step()
    del tiny, plain, optimizer
    gc.collect()


def worker(variant: str, width: int, depth: int, batch: int, steps: int, out: Path, strategy: str | None = None) -> None:
    """One process (one rank): build, measure sparsify (sparse) and training, write ``out/rank{r}.json``."""
    import torch

    import sparse24
    from sparse24.bench._common import peak_memory

    distributed = "LOCAL_RANK" in os.environ
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    _warm_up(world)
    data = batches(width, batch, steps * world)
    model = build(width, depth)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    record = {"rank": rank, "variant": variant, "param_bytes": params, "largest_layer_bytes": largest}
    if variant == "sparse":  # the peak above the level once the model exists: sparsify's, then finetune's
        with peak_memory() as pruning:
            sparse24.sparsify(model, "magnitude", progress=False)
        record["sparsify_peak_bytes"] = pruning.bytes
        record["mask_bytes"] = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.endswith(sparse24.MASK_SUFFIX))
        with peak_memory() as found:
            sparse24.finetune(model, data, loss_fn=loss_fn, steps=steps, lr=LR, weight_decay=WEIGHT_DECAY, warmup_steps=0, scheduler="constant", progress=False, strategy=strategy)
        sparse24.verify(model)
        peaks = [pruning.bytes, None if found.bytes is None else found.start + found.bytes - pruning.start]
        record["train_peak_bytes"] = None if None in peaks else max(peaks)
    else:
        with peak_memory() as found:
            train = model
            if strategy == "fsdp":
                sparse24.dist.fsdp_shard(model)
            elif distributed:
                from torch.nn.parallel import DistributedDataParallel

                train = DistributedDataParallel(model)
            optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            for step in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(train, data[rank + step * world]).backward()
                optimizer.step()
        record["train_peak_bytes"] = found.bytes
    record["source"] = found.source
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if distributed:
        dist.destroy_process_group()


MALLOCS = {"glibc default": {}, "fixed mmap threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"}}
"""The allocator settings each case runs under. glibc raises its mmap threshold after large frees, so
layer-sized temporaries then come from the heap and freed ones stay resident: the peak resident set
counts that slack. A fixed threshold returns every large block when it is freed, so the peak is
close to the live tensors'."""


def measure(case: str, variant: str, width: int, depth: int, batch: int, steps: int, malloc: str = "glibc default") -> dict:
    """Run one case and variant in fresh processes; the per-rank records, the largest rank's peaks."""
    ranks = _RANKS[case]
    with tempfile.TemporaryDirectory() as tmp:
        args = [__file__, "--worker", variant, "--strategy", "fsdp" if case == "fsdp" else "ddp", "--width", str(width), "--depth", str(depth), "--batch", str(batch), "--steps", str(steps), "--worker-out", tmp]
        if ranks > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *args]
        else:
            command = [sys.executable, *args]
        env = {**os.environ, **MALLOCS[malloc], **({"OMP_NUM_THREADS": "1"} if ranks > 1 else {})}  # one thread per rank, as torchrun's default
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{case} / {variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        records = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(ranks)]
    worst = max(records, key=lambda r: r["train_peak_bytes"] or 0)  # the rank that needed the most
    row = {"case": case, "variant": variant, "malloc": malloc, "ranks": ranks, "records": records}
    row.update({key: worst[key] for key in ("train_peak_bytes", "param_bytes", "largest_layer_bytes", "source")})
    if variant == "sparse":
        row.update({key: max((r[key] for r in records if r[key] is not None), default=None) for key in ("sparsify_peak_bytes", "mask_bytes")})
    return row


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def _runs(row: dict) -> str:
    """Every run's peak, ``plain; sparse`` (empty for results written before repeats existed)."""
    if "plain_runs" not in row:
        return ""
    return ", ".join(_mib(v) for v in row["plain_runs"]) + "; " + ", ".join(_mib(v) for v in row["sparse_runs"])


def markdown(results: dict) -> str:
    from sparse24.bench._common import header

    settings = results["settings"]
    lines = [
        *header("Peak memory: sparsify + finetune vs plain training", results),
        "",
        f"Model: {settings['depth']} x Linear({settings['width']}, {settings['width']}) + GELU and a 16-way head "
        f"({results['rows'][0]['plain']['param_bytes'] / 2**20:.1f} MiB of fp32 parameters); {settings['steps']} AdamW steps "
        f"(lr {LR}, weight decay {WEIGHT_DECAY}) on batches of {settings['batch']} per rank, the same batches in both variants. "
        "Peaks are MiB above the process's level once the model exists (CPU: peak resident set, VmHWM; CUDA: "
        f"max_memory_allocated); the largest rank counts; each variant ran {settings.get('repeats', 1)} times in fresh processes, "
        f"plain and sparse interleaved, and the median run is shown (ratio of the medians). Targets: sparse / plain <= {TARGET}; sparsify's peak <= the largest layer's weight bytes.",
        "",
        "| case | ranks | allocator | plain training MiB | sparsify + finetune MiB | ratio | target | every run, plain; sparse (MiB) | sparsify peak MiB (largest layer) | target | masks MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        plain, sparse = row["plain"], row["sparse"]
        ratio = sparse["train_peak_bytes"] / plain["train_peak_bytes"] if plain["train_peak_bytes"] else float("nan")
        met = "met" if ratio <= TARGET else "NOT met"
        sparsify_met = "met" if sparse["sparsify_peak_bytes"] is not None and sparse["sparsify_peak_bytes"] <= sparse["largest_layer_bytes"] else "NOT met"
        lines.append(
            f"| {row['case']} | {row['ranks']} | {row.get('malloc', 'glibc default')} | {_mib(plain['train_peak_bytes'])} | {_mib(sparse['train_peak_bytes'])} | {ratio:.3f}x | {met} | "
            f"{_runs(row)} | {_mib(sparse['sparsify_peak_bytes'])} ({_mib(sparse['largest_layer_bytes'])}) | {sparsify_met} | {_mib(sparse['mask_bytes'])} |"
        )
    lines += [
        "",
        "Allocator: 'glibc default' is what a user gets. glibc raises its mmap threshold after large blocks are freed, so "
        "later layer-sized temporaries (autograd's and the optimizer's; enforcement expands masks a block of rows at a time) come from the heap, and freed "
        "heap stays in the resident set. 'fixed mmap threshold' (MALLOC_MMAP_THRESHOLD_=131072) returns every large block "
        "when it is freed, so its peak is close to the live tensors'. CUDA's caching allocator has neither effect; there, "
        "max_memory_allocated counts live tensors.",
        "",
        "Generated from memory.json.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--depth", type=int, default=DEPTH)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="fresh processes per variant; the table shows the median run (the CPU's resident peak varies by tens of MiB)")
    parser.add_argument("--worker", choices=("plain", "sparse"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.width, args.depth, args.batch, args.steps, args.worker_out, args.strategy if "LOCAL_RANK" in os.environ else None)
        return 0
    from sparse24.bench._common import environment, write_results

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        parser.error(f"--cases: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(CASES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    rows = []
    for case in cases:
        for malloc in MALLOCS:
            runs: dict[str, list[dict]] = {"plain": [], "sparse": []}
            for _ in range(args.repeats):  # interleaved: a slow drift of the machine hits both variants alike
                for variant in runs:
                    runs[variant].append(measure(case, variant, args.width, args.depth, args.batch, args.steps, malloc))
            plain, sparse = _median_run(runs["plain"]), _median_run(runs["sparse"])
            rows.append({
                "case": case, "ranks": plain["ranks"], "malloc": malloc, "plain": plain, "sparse": sparse,
                "plain_runs": [r["train_peak_bytes"] for r in runs["plain"]], "sparse_runs": [r["train_peak_bytes"] for r in runs["sparse"]],
            })
    default = argv is None and sys.argv[1:] in (["--out", "bench/results"],)
    settings = {"width": args.width, "depth": args.depth, "batch": args.batch, "steps": args.steps, "repeats": args.repeats}
    results = {"command": COMMAND if default else " ".join(["python", "bench/bench_memory.py", *(sys.argv[1:] if argv is None else argv)]), "environment": environment(), "settings": settings, "rows": rows}
    print(write_results(out, "memory", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
