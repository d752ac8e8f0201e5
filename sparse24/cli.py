"""``sparse24`` command line: ``prune`` a model to 2:4, ``finetune`` it from a recipe, ``verify`` sparse weights."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import criteria
from .enforce import MASK_SUFFIX
from .errors import Sparse24Error, SparsityError
from .report import LayerReport, SparsityReport

logger = logging.getLogger("sparse24")


def _report_text(report: SparsityReport, path: Path) -> str:
    if path.suffix == ".json":
        return report.to_json()
    if path.suffix == ".md":
        return report.to_markdown()
    return str(report) + "\n"


def _prune(args: argparse.Namespace) -> int:
    from . import io
    from .sparsify import sparsify, verify

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise Sparse24Error(f"--out must end in .safetensors, got {out}")
    for path in filter(None, (out, args.report and Path(args.report))):
        if not path.parent.is_dir():
            raise Sparse24Error(f"output directory does not exist: {path.parent}")
    model = io.load_model(args.model)
    if args.weights:
        io.load(model, args.weights)
    data = io.build_object(args.data, "data") if args.data else None
    loss_fn = io.load_object(args.loss, "loss") if args.loss else None
    options = {"squared": True} if args.squared else {}
    report = sparsify(
        model,
        args.method,
        data=data,
        loss_fn=loss_fn,
        num_batches=args.num_batches,
        include=args.include,
        exclude=args.exclude,
        policy=args.policy,
        min_params=args.min_params,
        include_frozen=args.include_frozen,
        **options,
    )
    verify(model)
    io.save(model, out)
    if args.report:
        io.write_text(args.report, _report_text(report, Path(args.report)))
    print(report)
    print(f"wrote {out}" + (f" and {args.report}" if args.report else ""))
    return 0


def _verify_file(path: str) -> SparsityReport:
    from .io import file_axes, read_state_dict
    from .sparsify import check_masked

    state = read_state_dict(path)
    axes = file_axes(path) if path.endswith(".safetensors") else None
    if axes is None:
        raise Sparse24Error(f"{path} has no sparse24 metadata; pass --model module:callable to check it against a model")
    layers = []
    for name, dim in axes.items():
        weight, mask = state.get(name), state.get(name + MASK_SUFFIX)
        if weight is None or mask is None:
            raise Sparse24Error(f"{path}: metadata names {name}, but its weight or mask is missing")
        check_masked(name, weight, mask, dim)
        layers.append(LayerReport(name, "(from file)", tuple(weight.shape), dim, weight.numel(), True))
    total = sum(t.numel() for key, t in state.items() if not key.endswith(MASK_SUFFIX))
    return SparsityReport(layers=tuple(layers), total_params=total, notes=("read from the file alone: totals count every tensor in it, buffers included",))


def _verify(args: argparse.Namespace) -> int:
    from . import io
    from .sparsify import verify

    if args.model:
        model = io.load_model(args.model)
        io.load(model, args.file)
        report = verify(model)
    else:
        report = _verify_file(args.file)
    if not report.sparse_layers:
        raise SparsityError(f"{args.file}: no 2:4 masked weights found")
    print(report.to_json() if args.json else report)
    print(f"OK: {len(report.sparse_layers)} masked weights are 2:4 along their reduction axis")
    return 0


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()) or "-"


def _init_distributed() -> bool:
    """Under torchrun (WORLD_SIZE > 1), join the process group: NCCL with CUDA, gloo otherwise."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def _finetune(args: argparse.Namespace) -> int:
    from . import dist
    from .recipe import read_recipe, run_recipe

    recipe = read_recipe(args.config, args.set or ())
    started = _init_distributed()
    try:
        result = run_recipe(recipe)
        main = dist.is_main()  # asked before the process group is gone
        if started:  # every rank is done (rank 0 has written) before the group is torn down
            import torch.distributed

            torch.distributed.barrier()
    finally:
        if started:
            import torch.distributed

            torch.distributed.destroy_process_group()
    if main:
        history = result.history
        resumed = f" (resumed at step {history.resumed_from})" if history.resumed_from is not None else ""
        print(f"finetuned {history.total_steps} steps in {history.seconds:.1f} s{resumed}")
        if history.initial or history.final:
            print(f"eval before: {_metrics_text(history.initial)}")
            print(f"eval after:  {_metrics_text(history.final)}")
        if result.written:
            print("wrote " + " and ".join(result.written))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparse24", description="2:4 semi-structured sparsity for PyTorch models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    prune = commands.add_parser("prune", help="make a model's GEMM weights 2:4 sparse and save them with their masks")
    prune.add_argument("model", help="module:callable (or file.py:callable) returning the torch.nn.Module")
    prune.add_argument("--weights", help="weights to load first (.safetensors, or a torch.save file read with weights_only=True)")
    prune.add_argument("--method", default="magnitude", choices=criteria.available(), help="importance criterion (default: magnitude)")
    prune.add_argument("--out", required=True, help="output .safetensors (weights + masks), written atomically")
    prune.add_argument("--report", help="also write the report (.md, .json or text)")
    prune.add_argument("--include", action="append", help="module-name glob to prune (repeatable)")
    prune.add_argument("--exclude", action="append", help="module-name glob to keep dense (repeatable)")
    prune.add_argument("--policy", default="tensorrt", choices=("tensorrt", "any"), help="layer eligibility policy (default: tensorrt)")
    prune.add_argument("--min-params", type=int, default=0, help="skip weights with fewer parameters")
    prune.add_argument("--include-frozen", action="store_true", help="also prune parameters with requires_grad=False")
    prune.add_argument("--data", help="module:name of calibration batches (an iterable, or a callable returning one) for --method taylor")
    prune.add_argument("--loss", help="module:name of loss_fn(model, batch) for --method taylor")
    prune.add_argument("--num-batches", type=int, help="calibration batches to use")
    prune.add_argument("--squared", action="store_true", help="taylor: (w*g)^2 instead of |w*g|")
    prune.set_defaults(func=_prune)

    verify = commands.add_parser("verify", help="check that masked weights are 2:4 along their reduction axis")
    verify.add_argument("file", help="weights file written by sparse24 (or any weights file, with --model)")
    verify.add_argument("--model", help="module:callable to load the file into and check")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_verify)

    tune = commands.add_parser("finetune", help="recovery-finetune a 2:4 model from a YAML/TOML recipe (torchrun-ready)")
    tune.add_argument("--config", required=True, help="recipe file (.yaml, .yml or .toml); see sparse24.recipe")
    tune.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe entry, e.g. finetune.lr=5e-4 (repeatable)")
    tune.set_defaults(func=_finetune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparse24`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    chatty = args.verbose or args.command == "finetune"  # training logs its progress
    logging.basicConfig(level=logging.INFO if chatty else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except SparsityError as error:
        if args.traceback:
            raise
        print(f"sparse24: not 2:4: {error}", file=sys.stderr)
        return 1
    except (Sparse24Error, ValueError, OSError) as error:
        if args.traceback:
            raise
        print(f"sparse24: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse24: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
