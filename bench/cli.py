"""``sparse24 bench`` (or ``python -m sparse24.bench`` from a checkout): run suites, compare, plot, update the README.

    sparse24 bench [gemm] [model] [accuracy] [--out DIR] [--quick] ...   run suites (default: all three)
    sparse24 bench compare OLD.json NEW.json [--threshold 0.02]          regressions beyond noise (exit 1)
    sparse24 bench plot RESULTS.json [--out DIR]                         redraw the plots of a result
    sparse24 bench readme [--check]                                      regenerate README's performance block
    sparse24 bench env [--require-gpu] [--results-dir]                   the environment a run would record
    sparse24 bench kernels [--out DIR] [--require]                       one line per custom kernel: correct? speedup?

Exit status: 0 done (also on a machine without a GPU, after running what can run), 1 a
regression or a failed check, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparse24.errors import CheckFailed, Sparse24Error

__all__ = ["main"]

SUITES = ("gemm", "model", "accuracy")
DEFAULTS = {  # (reps, runs, warmup)
    ("gpu", False): (50, 3, 5),
    ("gpu", True): (20, 2, 3),
    ("cpu", False): (20, 2, 3),
    ("cpu", True): (5, 2, 1),
}


def default_results_dir() -> Path:
    """``bench/results/<gpu name>`` (``bench/results/cpu`` without a GPU), relative to the working directory."""
    from .env import device_slug

    return Path("bench") / "results" / device_slug()


def _stamped(results: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """A suite's results with the schema, the environment and the command, in the order the JSON shows them."""
    from .report import SCHEMA

    rest = {k: v for k, v in results.items() if k != "suite"}
    return {"schema": SCHEMA, "suite": results["suite"], "environment": env, "command": env["command"], **rest}


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run_parser(prog: str) -> argparse.ArgumentParser:
    from . import gemm, model

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure dense vs 2:4 sparse: GEMMs, whole models, accuracy recovery.",
        epilog=f"other commands: {prog} compare OLD.json NEW.json | plot RESULTS.json | readme [--check] | env [--require-gpu] | kernels (each with --help)",
    )
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--out", help="results folder (default: bench/results/<gpu name>, or bench/results/cpu without a GPU)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: fewer cases, repetitions and models")
    parser.add_argument("--reps", type=_positive, help="timed repetitions per run (default: 50 on a GPU)")
    parser.add_argument("--runs", type=_positive, help="repeated runs, interleaved, for the spread (default: 3 on a GPU)")
    parser.add_argument("--warmup", type=int, help="untimed calls before each run (default: 5 on a GPU)")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay CUDA graphs instead of eager launches (GEMMs and eager models)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--seed", type=int, default=0, help="random inputs and weights (default: 0)")
    group = parser.add_argument_group("gemm suite")
    group.add_argument("--sets", type=_list, default=list(gemm.DEFAULT_SETS), help=f"shape sets: {', '.join(gemm.SHAPE_SETS)} (default: {','.join(gemm.DEFAULT_SETS)})")
    group.add_argument("--dtypes", type=_list, help="fp16,bf16 on a GPU (default); fp32 on the CPU")
    group.add_argument("--backends", type=_list, default=list(gemm.BACKENDS), help=f"(default: {','.join(gemm.BACKENDS)}, each where it can run)")
    group.add_argument("--m", type=_ints, help="M values for every shape (default: each set's own)")
    group = parser.add_argument_group("model suite")
    group.add_argument("--models", type=_list, help=f"models (default: all of {','.join(model.MODELS)} on a GPU, the demo models on the CPU)")
    group.add_argument("--batches", type=_ints, help="batch sizes (default: each model's sweep)")
    group.add_argument("--variants", type=_list, default=list(model.VARIANTS), help=f"(default: {','.join(model.VARIANTS)}, each where it can run)")
    group.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants")
    group = parser.add_argument_group("accuracy suite")
    group.add_argument("--seeds", type=_ints, help="seeds (default: 0,1,2; --quick: 0)")
    group.add_argument("--epochs", type=_positive, help="finetune epochs (default: 10; --quick: 1)")
    return parser


def _run(argv: Sequence[str], prog: str) -> int:
    from . import accuracy, gemm, model
    from .env import cuda_problem, describe, environment
    from .report import markdown, write_suite

    args = _run_parser(prog).parse_args(argv)
    suites = args.suites or list(SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    problem = cuda_problem()
    reps, runs, warmup = DEFAULTS[("cpu" if problem else "gpu", args.quick)]
    timing = {"reps": args.reps or reps, "runs": args.runs or runs, "warmup": warmup if args.warmup is None else args.warmup}
    if timing["warmup"] < 0:
        raise ValueError("--warmup must be >= 0")
    out = Path(args.out or default_results_dir())
    out.mkdir(parents=True, exist_ok=True)
    env = environment(" ".join([prog, *map(shlex.quote, argv)]))
    print(f"sparse24 bench: {describe(env)}")

    def record(partial: dict[str, Any]) -> None:  # after every case, so a run cut off part-way leaves what it measured
        write_suite(out, _stamped(partial, env), plots=False)

    for suite in suites:
        if suite == "gemm":
            if problem:
                print(f"gemm: {problem}: the sparse backends did not run; dense CPU timings only")
            results = gemm.run(
                sets=args.sets, dtypes=args.dtypes, backends=args.backends, m_values=args.m, cuda_graphs=args.cuda_graphs, quick=args.quick, seed=args.seed, on_progress=record, **timing
            )
        elif suite == "model":
            if problem:
                print(f"model: {problem}: the sparse variants did not run; eager dense CPU timings only")
            variants = [v for v in args.variants if not (args.no_compile and v.startswith("compile"))]
            results = model.run(
                models=args.models, batches=args.batches, variants=variants, cuda_graphs=args.cuda_graphs, quick=args.quick, seed=args.seed, on_progress=record, **timing
            )
        else:
            results = accuracy.run(seeds=args.seeds, epochs=args.epochs, quick=args.quick)
        results = _stamped(results, env)
        written, notes = write_suite(out, results, plots=not args.no_plots)
        print(markdown(results))
        for note in notes:
            print(f"{suite}: {note}")
        print(f"{suite}: wrote {', '.join(str(p) for p in written)}")
    return 0


def _compare(argv: Sequence[str], prog: str) -> int:
    from sparse24.io import write_text

    from .compare import compare
    from .report import load_results

    parser = argparse.ArgumentParser(prog=f"{prog} compare", description="Compare two results of one suite; exit 1 on regressions beyond noise.")
    parser.add_argument("old", help="the baseline result JSON (gemm.json or model.json)")
    parser.add_argument("new", help="the result JSON to check")
    parser.add_argument("--threshold", type=float, default=0.0, help="smallest relative change to flag, on top of the measured spread (default: 0)")
    parser.add_argument("--all", action="store_true", help="list the cases within noise too")
    parser.add_argument("--report", help="also write the comparison as Markdown")
    args = parser.parse_args(argv)
    comparison = compare(load_results(args.old), load_results(args.new), threshold=args.threshold)
    text = comparison.to_markdown(show_all=args.all)
    if args.report:
        write_text(args.report, text)
    print(text, end="")
    if comparison.regressions:
        raise CheckFailed(f"{len(comparison.regressions)} case(s) slower beyond noise or now failing: " + "; ".join(c.case for c in comparison.regressions[:5]))
    return 0


def _plot(argv: Sequence[str], prog: str) -> int:
    from .plots import plot_results
    from .report import load_results

    parser = argparse.ArgumentParser(prog=f"{prog} plot", description="Draw the plots of a gemm or model result.")
    parser.add_argument("results", help="gemm.json or model.json")
    parser.add_argument("--out", help="folder for the PNGs (default: next to the JSON)")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    if results["suite"] not in ("gemm", "model"):
        raise ValueError(f"{args.results}: only gemm and model results have plots")
    out = Path(args.out) if args.out else Path(args.results).parent
    if not out.is_dir():
        raise Sparse24Error(f"output directory does not exist: {out}")
    written = plot_results(results, out)
    print("wrote " + (", ".join(map(str, written)) if written else "nothing: no case ran"))
    return 0


def _readme(argv: Sequence[str], prog: str) -> int:
    from .readme import update_readme

    parser = argparse.ArgumentParser(prog=f"{prog} readme", description="Regenerate README.md's performance block from the committed GPU results.")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results", default=str(Path("bench") / "results"), help="folder of <gpu>/ result folders")
    parser.add_argument("--check", action="store_true", help="only check that the block is up to date (exit 1 if not)")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    if not readme.is_file():
        raise FileNotFoundError(f"README not found: {readme}")
    current = update_readme(readme, Path(args.results), check=args.check)
    if args.check and not current:
        raise CheckFailed(f"{readme}'s performance block is out of date: run `python -m sparse24.bench readme`")
    print(f"{readme}: performance block {'up to date' if current else 'rewritten'}")
    return 0


def _env(argv: Sequence[str], prog: str) -> int:
    from .env import cuda_problem, describe, environment

    parser = argparse.ArgumentParser(prog=f"{prog} env", description="Print the environment a run would record.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--require-gpu", action="store_true", help="exit 2 unless an sm_80+ CUDA GPU is here")
    parser.add_argument("--results-dir", action="store_true", help="only print the default results folder (bench/results/<gpu name>)")
    args = parser.parse_args(argv)
    if args.results_dir:
        print(default_results_dir())
        return 0
    env = environment(" ".join([prog, "env", *argv]))
    print(json.dumps(env, indent=1) if args.json else describe(env))
    problem = cuda_problem()
    if args.require_gpu and problem:
        raise Sparse24Error(f"{problem}: this command is for a GPU machine")
    return 0


def _kernels(argv: Sequence[str], prog: str) -> int:
    from sparse24.io import write_text

    from . import kernel_summary
    from .env import environment

    parser = argparse.ArgumentParser(
        prog=f"{prog} kernels",
        description="Check sparse24's CUDA kernels against float64 and time them against dense F.linear: one line per kernel and dtype.",
        epilog="Exit status: 0 every kernel that ran is correct, 1 one is wrong or failed (with --require: or did not run), 2 bad input.",
    )
    parser.add_argument("--out", help="folder for kernels.json (default: bench/results/<gpu name>)")
    parser.add_argument("--dtypes", type=_list, default=list(kernel_summary.DTYPES), help=f"(default: {','.join(kernel_summary.DTYPES)})")
    parser.add_argument("--reps", type=_positive, default=20, help="timed repetitions per run (default: 20)")
    parser.add_argument("--runs", type=_positive, default=3, help="repeated runs, interleaved with dense (default: 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each run (default: 3)")
    parser.add_argument("--require", action="store_true", help="also exit 1 when the kernels cannot run here (no sm_80+ GPU, no cuda-python)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")
    out = Path(args.out or default_results_dir())
    out.mkdir(parents=True, exist_ok=True)
    env = environment(" ".join([prog, "kernels", *map(shlex.quote, argv)]))

    def record(results: dict[str, Any]) -> None:  # rewritten after every step: a run cut off keeps what it checked
        write_text(out / "kernels.json", json.dumps({**_stamped(results, env), "summary": kernel_summary.summary_lines(results)}, indent=1) + "\n")

    results = kernel_summary.measure(dtypes=args.dtypes, reps=args.reps, runs=args.runs, warmup=args.warmup, seed=args.seed, on_progress=record)
    record(results)
    for line in kernel_summary.summary_lines(results):
        print(f"kernel {line}")
    print(f"kernels: wrote {out / 'kernels.json'}")
    bad = kernel_summary.problems(results, require=args.require)
    if bad:
        cases = "; ".join(f"{r['kernel']} {r['dtype']}{' M=' + str(r['m']) if 'm' in r else ''} {r['status']}" for r in bad[:6])
        raise CheckFailed(f"{len(bad)} kernel check(s) did not pass{' or did not run' if args.require else ''}: {cases}")
    return 0


COMMANDS = {"compare": _compare, "plot": _plot, "readme": _readme, "env": _env, "kernels": _kernels}


def main(argv: Sequence[str] | None = None, prog: str = "python -m sparse24.bench") -> int:
    """Entry point of ``sparse24 bench`` and ``python -m sparse24.bench``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    verbose = bool({"-v", "--verbose"} & set(argv))
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:], prog) if command else _run(argv, prog)
    except CheckFailed as error:
        if debug:
            raise
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    except (Sparse24Error, ValueError, OSError) as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; what was measured is on disk (a suite cut off part-way says so in its results)", file=sys.stderr)
        return 130
