"""``sparse24`` command line.

``prune`` a model to 2:4, ``finetune`` it from a recipe, ``verify`` sparse weights, ``export``
it to ONNX, ``inspect`` an ONNX file's 2:4 layers, ``build`` dense and sparse TensorRT
engines and ``bench`` dense against sparse. The export commands import ``trt_export``, and
``bench`` the harness in ``bench/``, only when they run.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import criteria
from .data import DEFAULT_SAMPLES, DEFAULT_SEQ_LEN, TEXT_PREFIX
from .errors import CheckFailed, Sparse24Error, SparsityError, first_line
from .report import SparsityReport

logger = logging.getLogger("sparse24")


def _report_text(report: SparsityReport, path: Path) -> str:
    if path.suffix == ".json":
        return report.to_json()
    if path.suffix == ".md":
        return report.to_markdown()
    return str(report) + "\n"


def _model_for_outputs(args: argparse.Namespace, out: Path) -> object:
    """Check that the output directories exist (``--out``, ``--report``), then build the model and load ``--weights``."""
    from . import io

    for path in filter(None, (out, args.report and Path(args.report))):
        if not path.parent.is_dir():
            raise Sparse24Error(f"output directory does not exist: {path.parent}")
    model = io.load_model(args.model, hf_class=args.hf_class)
    if args.weights:
        io.load(model, args.weights)
    return model


def _sequential_spec(value: str | None) -> bool | str | list[str] | None:
    """--sequential: alone, the layer stacks holding the weights pruned; NAME, a ModuleList; A,B,C, those modules."""
    if value is None or value == "auto":
        return True if value == "auto" else None
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names if len(names) > 1 else names[0]


def _tokenizer_dir(given: str | None, model_spec: str, what: str) -> str:
    """``--tokenizer DIR``, else the hf:DIR model's own directory."""
    from . import hub

    if given is not None:
        return given
    parts = hub.split_spec(model_spec)
    if parts is None or parts[0] != "hf":
        raise Sparse24Error(f"{what} needs a tokenizer: --tokenizer DIR (an hf:DIR model's own directory is the default)")
    return parts[1]


def _window(given: int | None, model: Any) -> int:
    """Tokens per window: ``--seq-len``, else :data:`DEFAULT_SEQ_LEN`, at most the model's positions."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    seq_len = given if given is not None else DEFAULT_SEQ_LEN
    if isinstance(positions, int) and seq_len > positions:
        if given is not None:
            raise Sparse24Error(f"--seq-len {seq_len} is longer than the model's {positions} positions")
        seq_len = positions
        logger.info("windows of %d tokens, the model's positions (--seq-len to choose)", seq_len)
    return seq_len


def _text_data(args: argparse.Namespace, model: Any) -> list:
    """``--data text:PATH``: :func:`sparse24.data.text_windows` with the hf: model's own tokenizer unless ``--tokenizer``,
    windows no longer than the model's positions."""
    from .data import text_windows

    tokenizer = _tokenizer_dir(args.tokenizer, args.model, "--data text:PATH")
    for flag, value in (("--seq-len", args.seq_len), ("--num-batches", args.num_batches)):
        if value is not None and value < 1:
            raise Sparse24Error(f"{flag} must be at least 1, got {value}")
    config = getattr(model, "config", None)
    seq_len = _window(args.seq_len, model)
    # labels: Taylor's loss; an encoder-decoder's decoder runs on them too (transformers shifts them into its inputs),
    # as it has no inputs of its own in a window of text
    labels = args.method == "taylor" or bool(getattr(config, "is_encoder_decoder", False))
    return text_windows(
        args.data[len(TEXT_PREFIX) :], tokenizer, seq_len=seq_len, num_samples=DEFAULT_SAMPLES if args.num_batches is None else args.num_batches,
        seed=0 if args.data_seed is None else args.data_seed, labels=labels,
    )


def _prune(args: argparse.Namespace) -> int:
    from . import hub, io
    from .sparsify import sparsify, verify

    if args.method != "magnitude" and not args.data:
        raise Sparse24Error(f"--method {args.method} needs calibration data: --data MODULE:NAME (an iterable of batches, or a callable returning one) or --data text:PATH")
    out = Path(args.out)
    to_dir = out.suffix != ".safetensors"  # a from_pretrained directory, for transformers models
    if to_dir and out.suffix in (".pt", ".pth", ".bin", ".ckpt", ".onnx"):
        raise Sparse24Error(f"--out must end in .safetensors (or name a directory, for a transformers model), got {out}")
    if to_dir:
        hub.check_output_dir(out)
    model = _model_for_outputs(args, out)
    if to_dir and not hub.is_transformers_model(model):
        raise Sparse24Error(f"--out must end in .safetensors, got {out} (a from_pretrained directory is written for transformers models only, e.g. hf:PATH)")
    num_batches = args.num_batches
    if args.data and args.data.startswith(TEXT_PREFIX):
        data, num_batches = _text_data(args, model), None
    else:
        for flag, value in (("--seq-len", args.seq_len), ("--tokenizer", args.tokenizer), ("--data-seed", args.data_seed)):
            if value is not None:
                raise Sparse24Error(f"{flag} applies to --data text:PATH only")
        data = io.build_object(args.data, "data") if args.data else None
    loss_fn = io.load_object(args.loss, "loss") if args.loss else None
    options = {"squared": True} if args.squared else {}
    if args.per_sample:
        options["per_sample"] = True
    if args.pairs:
        options["pairs"] = True
    options.update({name: getattr(args, name) for name in ("blocksize", "dampening", "labels", "samples") if getattr(args, name) is not None})
    if args.logits:
        options["logits_fn"] = io.load_object(args.logits, "logits")
    report = sparsify(
        model,
        args.method,
        data=data,
        loss_fn=loss_fn,
        num_batches=num_batches,
        include=args.include,
        exclude=args.exclude,
        policy=args.policy,
        min_params=args.min_params,
        include_frozen=args.include_frozen,
        sequential=_sequential_spec(args.sequential),
        offload=args.offload,
        permute=args.permute,
        recalibrate_bn=args.recalibrate_bn,
        **options,
    )
    if not report.sparse_layers:
        print(report)
        raise Sparse24Error(f"no GEMM weight of the model could be made 2:4 ({len(report.layers)} skipped, reasons above); nothing was written")
    verify(model)
    if to_dir:
        hub.save_pretrained(model, out)
    else:
        io.save(model, out)
    if args.report:
        io.write_text(args.report, _report_text(report, Path(args.report)))
    print(report)
    print(f"wrote {out}" + (f" and {args.report}" if args.report else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from . import io
    from .sparsify import verify_file

    if Path(args.file).is_dir():  # a from_pretrained directory: --hf-class picks its class
        if args.model:
            raise Sparse24Error(f"{args.file} is a directory: its config.json gives the model (--hf-class picks the class), not --model")
        report = verify_file(args.file, expect=args.expect, hf_class=args.hf_class)
    else:
        model = io.load_model(args.model, hf_class=args.hf_class) if args.model else None
        report = verify_file(args.file, model, expect=args.expect)
    print(report.to_json() if args.json else report)
    print(f"OK: {len(report.sparse_layers)} weights are 2:4 along their reduction axis, as stored in {args.file}")
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    """Each model's perplexity on the same token stream, one model in memory at a time."""
    import json

    from . import io
    from .data import text_tokens
    from .evaluate import perplexity
    from .recipe import resolve_device

    for flag, value, least in (("--seq-len", args.seq_len, 2), ("--max-windows", args.max_windows, 1)):
        if value is not None and value < least:
            raise Sparse24Error(f"{flag} must be at least {least}, got {value}")
    if args.json and not Path(args.json).parent.is_dir():
        raise Sparse24Error(f"output directory does not exist: {Path(args.json).parent}")
    path = args.data[len(TEXT_PREFIX) :] if args.data.startswith(TEXT_PREFIX) else args.data
    tokenizer = _tokenizer_dir(args.tokenizer, args.models[0], "perplexity")
    device = resolve_device(args.device)
    results: list[dict[str, Any]] = []
    tokens = seq_len = None
    for spec in args.models:
        model = io.load_model(spec, hf_class=args.hf_class)
        if seq_len is None:  # the first model's positions bound the windows of all
            seq_len = _window(args.seq_len, model)
            limit = None if args.max_windows is None else args.max_windows * seq_len
            tokens = text_tokens(path, tokenizer, max_tokens=limit)
        else:
            _window(seq_len, model)  # the same windows must fit every model
        result = perplexity(model.to(device), tokens, seq_len=seq_len, max_windows=args.max_windows)
        del model
        results.append({"model": spec, **result.to_dict()})
        logger.info("%s: perplexity %.4g over %d windows of %d tokens", spec, result.perplexity, result.windows, seq_len)
    width = max(len(row["model"]) for row in results)
    print(f"{'model':<{width}}  windows  tokens  perplexity  vs first")
    for row in results:
        ratio = row["perplexity"] / results[0]["perplexity"]
        print(f"{row['model']:<{width}}  {row['windows']:>7}  {row['tokens']:>6}  {row['perplexity']:>10.4f}  {ratio:>7.3f}x")
    print(f"non-overlapping windows of {seq_len} tokens from {args.data} (tokenizer {tokenizer}), on {device.type}")
    if args.json:
        document = {"data": args.data, "tokenizer": str(tokenizer), "seq_len": seq_len, "device": device.type, "results": results}
        io.write_text(args.json, json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
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
            # FSDP's sharded modules are reference cycles: freed now, while the interpreter is whole. Left to its
            # shutdown, a gloo rank can abort after its work is done ("terminate called without an active exception").
            gc.collect()
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


_TORCH_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "bool")
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # as --dtype and amp spell them


def _input_ranges(specs: Sequence[str] | None) -> dict[str | int, tuple[int, int]]:
    """``--input-range NAME=LOW:HIGH`` (NAME: a forward argument, or its 0-based position) -> ranges."""
    ranges: dict[str | int, tuple[int, int]] = {}
    for spec in specs or ():
        name, sep, bounds = spec.partition("=")
        low, colon, high = bounds.partition(":")
        try:
            if not sep or not name or not colon:
                raise ValueError
            values = int(low), int(high)
        except ValueError:
            raise Sparse24Error(f"--input-range {spec}: expected NAME=LOW:HIGH (HIGH exclusive), e.g. input_ids=0:30522") from None
        ranges[int(name) if name.isdigit() else name] = values
    return ranges


def _example_inputs(args: argparse.Namespace) -> tuple[tuple, dict[str | int, tuple[int, int]]]:
    """Example inputs and integer ranges from ``--example module:name`` or ``--input-shape [DTYPE:]SHAPE[:LOW:HIGH]`` (repeatable), and ``--input-range``."""
    import torch

    from . import io

    if bool(args.example) == bool(args.input_shape):
        raise Sparse24Error("give the example inputs with either --input-shape or --example")
    ranges = _input_ranges(args.input_range)
    if args.example:
        value = io.build_object(args.example, "example")
        inputs = (value,) if isinstance(value, torch.Tensor) else tuple(value)
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise Sparse24Error(f"--example {args.example} must give a tensor or a tuple of tensors")
        return inputs, ranges
    inputs = []
    for position, spec in enumerate(args.input_shape):
        parts, dtype = spec.split(":"), "float32"
        if len(parts) in (2, 4):
            dtype = parts.pop(0).lower()
            dtype = _DTYPE_ALIASES.get(dtype, dtype)
            if dtype not in _TORCH_DTYPES:
                raise Sparse24Error(f"--input-shape {spec}: dtype must be one of {', '.join(_TORCH_DTYPES)} (or fp32, fp16, bf16)")
        try:
            if len(parts) not in (1, 3):
                raise ValueError
            dims = [int(d) for d in parts[0].lower().split("x")]
            bounds = tuple(int(v) for v in parts[1:])
        except ValueError:
            raise Sparse24Error(f"--input-shape {spec}: expected [DTYPE:]D0xD1x...[:LOW:HIGH], e.g. 1x3x224x224 or int64:1x128:0:30522") from None
        if any(d < 1 for d in dims):
            raise Sparse24Error(f"--input-shape {spec}: dimensions must be positive")
        kind = getattr(torch, dtype)
        if bounds and (kind.is_floating_point or kind == torch.bool):
            raise Sparse24Error(f"--input-shape {spec}: a value range is for integer inputs")
        if bounds:
            if bounds[0] >= bounds[1]:
                raise Sparse24Error(f"--input-shape {spec}: empty range [{bounds[0]}, {bounds[1]}) (HIGH is exclusive)")
            ranges.setdefault(position, bounds)
            inputs.append(torch.randint(bounds[0], bounds[1], dims, dtype=kind))
        else:
            inputs.append(torch.randn(dims).to(kind) if kind.is_floating_point else torch.zeros(dims, dtype=kind))
    return tuple(inputs), ranges


def _write_report(path: str | None, report: object) -> None:
    """Write ``report`` as JSON (.json), Markdown (.md) or text."""
    if not path:
        return
    from .io import write_text

    suffix = Path(path).suffix
    text = report.to_json() if suffix == ".json" else report.to_markdown() if suffix == ".md" else str(report) + "\n"
    write_text(path, text)


def _export(args: argparse.Namespace) -> int:
    from sparse24.trt_export import export_onnx


    out = Path(args.out)
    inputs, ranges = _example_inputs(args)
    model = _model_for_outputs(args, out)
    report = export_onnx(model, inputs, out, dtype=args.dtype, dynamic_batch=not args.static_batch, opset=args.opset, input_ranges=ranges)
    _write_report(args.report, report)
    print(report)
    if args.report:
        print(f"wrote {args.report}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from sparse24.trt_export import inspect_onnx

    symbols = {}
    for spec in args.dim or ():
        name, sep, value = spec.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise Sparse24Error(f"--dim {spec}: expected NAME=N with N a positive integer, e.g. batch=8")
        symbols[name] = int(value)
    report = inspect_onnx(args.file, symbols=symbols)
    _write_report(args.report, report)
    print(report.to_json() if args.json else report, end="\n" if not args.json else "")
    return 0


def _build_shapes(args: argparse.Namespace) -> dict:
    """Profile shapes from trtexec-style --shapes or --min-shapes/--opt-shapes/--max-shapes."""
    from sparse24.trt_export.engine import parse_shape_spec

    ranges = [args.min_shapes, args.opt_shapes, args.max_shapes]
    if any(ranges) and not all(ranges):
        raise Sparse24Error("give --min-shapes, --opt-shapes and --max-shapes together")
    if args.shapes and any(ranges):
        raise Sparse24Error("give either --shapes or --min-shapes/--opt-shapes/--max-shapes")
    if args.shapes:
        return parse_shape_spec(args.shapes)
    if not any(ranges):
        return {}
    low, opt, high = (parse_shape_spec(spec) for spec in ranges)
    if not set(low) == set(opt) == set(high):
        raise Sparse24Error("--min-shapes, --opt-shapes and --max-shapes must name the same inputs")
    return {name: (low[name], opt[name], high[name]) for name in low}


def _build(args: argparse.Namespace) -> int:
    import json

    from sparse24.trt_export import ParityError, TrtRunner, build_engine, tensorrt_unavailable

    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise Sparse24Error(f"ONNX file not found: {onnx_path}")
    kinds = {"both": (False, True), "sparse": (True,), "dense": (False,)}[args.engines]
    shapes = _build_shapes(args)
    ranges = _input_ranges(args.input_range)
    reason = tensorrt_unavailable(sparse=True in kinds)
    if reason is not None and args.skip_unavailable:
        print(f"skipped the TensorRT build: {reason}")
        return 0
    out_dir = Path(args.out_dir) if args.out_dir else onnx_path.parent
    if not out_dir.is_dir():
        raise Sparse24Error(f"output directory does not exist: {out_dir}")
    reports, failed = {}, []
    for sparse in kinds:
        kind = "sparse" if sparse else "dense"
        engine = out_dir / f"{onnx_path.stem}.{kind}.engine"
        report = build_engine(
            onnx_path,
            engine,
            sparse=sparse,
            precision=args.precision,
            workspace_gb=args.workspace_gb,
            timing_cache=args.timing_cache,
            shapes=shapes,
            log_path=out_dir / f"{onnx_path.stem}.{kind}.log",
        )
        reports[kind] = report
        print(report)
        if args.check:
            parity = TrtRunner(engine).check(onnx_path, input_ranges=ranges)
            print(parity)
            if not parity.passed:
                failed.append(kind)
    if sparse_report := reports.get("sparse"):
        print(sparse_report.to_markdown())
    if args.report:
        from .io import write_text

        if args.report.endswith(".json"):
            write_text(args.report, json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2) + "\n")
        else:
            write_text(args.report, "\n".join(r.to_markdown() for r in reports.values()))
        print(f"wrote {args.report}")
    if failed:
        raise ParityError(f"the {' and '.join(failed)} engine's outputs differ from onnxruntime's beyond the tolerance")
    return 0


_MODEL_HELP = "module:callable (or file.py:callable) returning the torch.nn.Module; or hf:DIR (a local save_pretrained directory), torchvision:NAME, timm:NAME (random weights; --weights loads a local file)"
_HF_CLASS_HELP = "hf:DIR: the transformers class to load it with, e.g. AutoModelForCausalLM (default: config.json's architectures[0], else AutoModel)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparse24", description="2:4 semi-structured sparsity for PyTorch models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    prune = commands.add_parser("prune", help="make a model's GEMM weights 2:4 sparse and save them with their masks")
    prune.add_argument("model", help=_MODEL_HELP)
    prune.add_argument("--hf-class", help=_HF_CLASS_HELP)
    prune.add_argument("--weights", help="weights to load first (.safetensors, or a torch.save file read with weights_only=True)")
    prune.add_argument("--method", default="magnitude", choices=criteria.available(), help="importance criterion (default: magnitude)")
    prune.add_argument("--out", required=True, help="output .safetensors (weights + masks), or for a transformers model a from_pretrained directory (+ sparse24_masks.safetensors); written atomically")
    prune.add_argument("--report", help="also write the report (.md, .json or text)")
    prune.add_argument("--include", action="append", help="module-name glob to prune (repeatable)")
    prune.add_argument("--exclude", action="append", help="module-name glob to keep dense (repeatable)")
    prune.add_argument("--policy", default="tensorrt", choices=("tensorrt", "any"), help="layer eligibility policy (default: tensorrt)")
    prune.add_argument("--min-params", type=int, default=0, help="skip weights with fewer parameters")
    prune.add_argument("--include-frozen", action="store_true", help="also prune parameters with requires_grad=False")
    prune.add_argument(
        "--data",
        help="calibration batches for --method taylor, wanda, sparsegpt: module:name (an iterable, or a callable returning one), or text:PATH "
        "(a text file or a directory of .txt/.jsonl files, gzipped too, C4's .json.gz shards among them: random windows of --seq-len tokens, one per batch, as SparseGPT and Wanda draw theirs)",
    )
    prune.add_argument("--seq-len", type=int, help=f"--data text: tokens per window (default {DEFAULT_SEQ_LEN}, at most the model's positions)")
    prune.add_argument("--tokenizer", metavar="DIR", help="--data text: the tokenizer's directory (default: the hf:DIR model's own)")
    prune.add_argument("--data-seed", type=int, help="--data text: seed of the windows' random starts (default 0)")
    prune.add_argument("--loss", help="module:name of loss_fn(model, batch): taylor's loss; wanda and sparsegpt run each batch through it (else model(batch))")
    prune.add_argument("--num-batches", type=int, help=f"calibration batches to use (--data text: windows to draw, default {DEFAULT_SAMPLES})")
    prune.add_argument("--squared", action="store_true", help="taylor: (w*g)^2 instead of |w*g|")
    prune.add_argument("--per-sample", action="store_true", help="taylor: one gradient per sample (with --squared: the empirical Fisher, w^2 * sum g_i^2)")
    prune.add_argument("--pairs", action="store_true", help="taylor --squared: choose each group's pattern by the cost of pruning a pair, the Fisher's cross term included")
    prune.add_argument("--sequential", nargs="?", const="auto", metavar="BLOCKS", help="calibrate block by block on the pruned blocks' outputs: alone, the layer stacks (transformer layers) holding the weights pruned; or a ModuleList name; or comma-separated module names")
    prune.add_argument("--offload", action="store_true", help="--sequential: keep the current block's inputs on the CPU")
    prune.add_argument("--permute", action="store_true", help="first reorder hidden channels (where the function stays the same) so the 2:4 masks keep more importance")
    prune.add_argument("--recalibrate-bn", action="store_true", help="then re-estimate the BatchNorm statistics on --data, on the pruned model (CNNs: most of the one-shot loss)")
    prune.add_argument("--labels", choices=("data", "model"), help="taylor: gradients of the data's labels (default) or the true Fisher over labels drawn from the model's own predictions")
    prune.add_argument("--logits", metavar="MODULE:CALLABLE", help="taylor --labels model: logits_fn(model, batch) giving the logits (default: the model's output)")
    prune.add_argument("--samples", type=int, help="taylor --labels model: label draws per batch (default 1)")
    prune.add_argument("--blocksize", type=int, help="sparsegpt: columns per lazy-update block (default 128)")
    prune.add_argument("--dampening", type=float, help="sparsegpt: Hessian dampening, a fraction of its mean diagonal (default 0.01)")
    prune.set_defaults(func=_prune)

    verify = commands.add_parser("verify", help="check that a weights file's masked (and --expect) weights are 2:4 along their reduction axis, as stored")
    verify.add_argument("file", help="weights file or from_pretrained directory written by sparse24 (or any weights file, with --model)")
    verify.add_argument("--model", help="module:callable whose layers give the 2:4 axes (needed for files without sparse24 metadata)")
    verify.add_argument("--hf-class", help=_HF_CLASS_HELP)
    verify.add_argument("--expect", action="append", metavar="GLOB", help="weights (names or module-name globs) that must be 2:4 even without a mask (repeatable)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_verify)

    ppl = commands.add_parser("perplexity", help="perplexity of causal LMs on local text, in non-overlapping windows (as SparseGPT and Wanda report WikiText-2's)")
    ppl.add_argument("models", nargs="+", metavar="MODEL", help="hf:DIR (e.g. the dense model's and sparse24 prune --out DIR's), or module:callable; evaluated in turn on the same tokens")
    ppl.add_argument("--data", required=True, help="text:PATH or PATH: a text file or a directory of .txt/.jsonl files, gzipped too (e.g. WikiText-2's test split as one .txt), tokenized whole, in file order")
    ppl.add_argument("--hf-class", help=_HF_CLASS_HELP)
    ppl.add_argument("--tokenizer", metavar="DIR", help="the tokenizer's directory (default: the first hf:DIR model's own), one for every model")
    ppl.add_argument("--seq-len", type=int, help=f"tokens per window (default {DEFAULT_SEQ_LEN}, at most the first model's positions)")
    ppl.add_argument("--max-windows", type=int, help="only the first N windows (default: every whole window)")
    ppl.add_argument("--device", default="auto", help="where the models run: auto (cuda when available), cpu, cuda, cuda:1, ...")
    ppl.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ppl.set_defaults(func=_perplexity)

    tune = commands.add_parser("finetune", help="recovery-finetune a 2:4 model from a YAML/TOML recipe (torchrun-ready)")
    tune.add_argument("--config", required=True, help="recipe file (.yaml, .yml or .toml); see sparse24.recipe")
    tune.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe entry, e.g. finetune.lr=5e-4 (repeatable)")
    tune.set_defaults(func=_finetune)

    export = commands.add_parser("export", help="export a (2:4) model to ONNX; check parity with onnxruntime and the 2:4 layers by name")
    export.add_argument("model", help=_MODEL_HELP)
    export.add_argument("--hf-class", help=_HF_CLASS_HELP)
    export.add_argument("--weights", help="weights to load first (a sparse24 .safetensors or from_pretrained directory brings its masks)")
    export.add_argument("--out", required=True, help="output .onnx, written only after every check passed")
    export.add_argument("--input-shape", action="append", metavar="[DTYPE:]SHAPE[:LOW:HIGH]", help="example input, e.g. 1x3x224x224, bf16:1x3x224x224 or int64:1x128:0:30522 (token ids in [0, 30522)) (repeatable, in forward's order)")
    export.add_argument("--example", help="module:name of example inputs (a tensor, a tuple, or a callable returning one)")
    export.add_argument("--input-range", action="append", metavar="NAME=LOW:HIGH", help="values of an integer input for the parity check, HIGH exclusive, e.g. input_ids=0:30522 (NAME: forward argument or position; default: the embedding size it indexes)")
    export.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"), help="weights and types of the ONNX (fp16 for TensorRT 11 fp16 engines)")
    export.add_argument("--static-batch", action="store_true", help="fix the batch size instead of a dynamic 'batch' dimension")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's; TensorRT 8.6 needs <= 17)")
    export.add_argument("--report", help="also write the report (.json, .md or text)")
    export.set_defaults(func=_export)

    inspect = commands.add_parser("inspect", help="which Conv/Gemm/MatMul layers of an ONNX file are 2:4 along TensorRT's axis")
    inspect.add_argument("file", help="an .onnx file")
    inspect.add_argument("--dim", action="append", metavar="NAME=INT", help="value of a symbolic dimension for the FLOP count (default 1), e.g. batch=8")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--report", help="also write the report (.json, .md or text)")
    inspect.set_defaults(func=_inspect)

    build = commands.add_parser("build", help="build dense and sparse TensorRT engines from an ONNX file and report which layers ran sparse")
    build.add_argument("onnx", help="an .onnx file (fp16 for fp16 engines on TensorRT 11)")
    build.add_argument("--out-dir", help="where to write NAME.{dense,sparse}.engine and their build logs (default: next to the ONNX)")
    build.add_argument("--engines", default="both", choices=("both", "sparse", "dense"), help="which engines to build (default: both)")
    build.add_argument("--precision", choices=("fp16", "fp32"), help="TensorRT 8.6/10.x: build precision (default: the ONNX's types); TensorRT 11 takes only the ONNX's")
    build.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit in GiB (default: 4)")
    build.add_argument("--timing-cache", help="timing cache file to read and update")
    build.add_argument("--shapes", help="static input shapes, trtexec syntax: x:1x3x224x224[,y:...]")
    build.add_argument("--min-shapes", help="optimization profile minimum shapes, e.g. x:1x3x224x224")
    build.add_argument("--opt-shapes", help="optimization profile shapes to tune for")
    build.add_argument("--max-shapes", help="optimization profile maximum shapes")
    build.add_argument("--check", action="store_true", help="run each engine and compare its outputs with onnxruntime")
    build.add_argument("--input-range", action="append", metavar="NAME=LOW:HIGH", help="--check: values of an integer input, HIGH exclusive (default: the embedding size it indexes)")
    build.add_argument("--report", help="also write the reports (.json, or Markdown)")
    build.add_argument("--skip-unavailable", action="store_true", help="without TensorRT or a suitable GPU, say why in one line and exit 0")
    build.set_defaults(func=_build)

    # listed for --help; main() hands "sparse24 bench ..." to sparse24.bench.cli before parsing
    commands.add_parser("bench", add_help=False, help="benchmark dense vs 2:4 (GEMMs, models, accuracy); `sparse24 bench --help` for more")
    return parser


def _notes(error: BaseException) -> list[str]:
    """The notes sparse24 (or anyone) added to ``error``: what was running when it was raised."""
    return [f"  {note}" for note in getattr(error, "__notes__", ())]


def _raised_outside(error: BaseException) -> str | None:
    """Where ``error`` was raised, when that was outside sparse24 (the user's model, data or functions, or a
    library they call): ``"raised in FILE:LINE (FUNCTION), called from sparse24's FILE:LINE"``; None when the
    innermost frame is sparse24's own code."""
    import traceback

    ours = [Path(module.__file__).parent for name, module in list(sys.modules.items()) if (name == "sparse24" or name.startswith("sparse24.")) and getattr(module, "__file__", None)]
    frames = traceback.extract_tb(error.__traceback__)

    def is_ours(frame: traceback.FrameSummary) -> bool:
        return Path(frame.filename).parent in ours

    if not frames or is_ours(frames[-1]):
        return None
    where = f"raised in {frames[-1].filename}:{frames[-1].lineno} ({frames[-1].name})"
    caller = next((frame for frame in reversed(frames) if is_ours(frame)), None)
    return where if caller is None else f"{where}, called from sparse24's {Path(caller.filename).name}:{caller.lineno} ({caller.name})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparse24`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    position = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if position is not None and argv[position] == "bench":  # bench parses its own options (-v, --traceback too)
        from sparse24.bench.cli import main as bench_main

        return bench_main(argv[:position] + argv[position + 1 :], prog="sparse24 bench")
    args = _parser().parse_args(argv)
    chatty = args.verbose or args.command == "finetune"  # training logs its progress
    logging.basicConfig(level=logging.INFO if chatty else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except CheckFailed as error:
        if args.traceback:
            raise
        print(f"sparse24: {'not 2:4' if isinstance(error, SparsityError) else 'check failed'}: {error}", file=sys.stderr)
        return 1
    except (Sparse24Error, ValueError, OSError) as error:
        if args.traceback:
            raise
        print(f"sparse24: error: {error}", *_notes(error), sep="\n", file=sys.stderr)
        return 2
    except Exception as error:
        raised = _raised_outside(error)
        if args.traceback or raised is None:  # raised in sparse24's own code: a bug, the traceback is the report
            raise
        print(f"sparse24: error: {type(error).__name__}: {first_line(error)}", *_notes(error), f"  {raised}", "  (--traceback shows the full traceback)", sep="\n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse24: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
