"""Finetune recipes: one YAML or TOML file naming the model, weights, data and hyperparameters.

``sparse24 finetune --config recipe.yaml`` reads it with :func:`read_recipe` and runs it with
:func:`run_recipe`. Objects are named as ``"package.module:name"`` (or ``"file.py:name"``);
relative paths are relative to the working directory. Example::

    model: sparse24.demo:DigitsResNet          # an nn.Module, or a callable returning one
    weights: build/demo/sparse.safetensors     # 2:4 weights with masks (sparse24 prune --out)
    teacher: build/demo/dense.safetensors      # dense weights: distil from them (optional)
    loss: sparse24.demo:loss_fn                # loss_fn(model, batch) (optional)
    data:
      train: sparse24.demo:train_loader        # an iterable of batches, or a callable returning one
      eval: sparse24.demo:val_split            # optional, passed to eval_fn
    eval_fn: sparse24.demo:evaluate            # eval_fn(model, eval_data) -> number or {name: number}
    finetune: {epochs: 5, lr: 1.0e-3, distill: kl, temperature: 2.0, alpha: 0.5}
    checkpoint_dir: build/demo/checkpoints
    resume: true
    seed: 0
    out: build/demo/finetuned.safetensors
    history: build/demo/history.json

A ``sparsify:`` section (``method``, ``data``, ``num_batches``, ``policy``, ``include``,
``exclude``, ``squared``, ``per_sample``, ``min_params``, ``sequential``, ``offload``,
``blocksize``, ``dampening``, ``permute``, ``recalibrate_bn``, ``labels``, ``logits_fn`` (a ``module:callable``), ``samples``, ``pairs``) prunes dense ``weights`` first. Data and model entries may also be
``{fn: "module:name", args: {...}}`` to call with keyword arguments, e.g. calibration windows of local
text: ``data: {fn: sparse24.data:text_windows, args: {path: corpus/, tokenizer: my-llama, seq_len: 2048}}``.

Under ``torchrun``, ``finetune: {strategy: fsdp}`` shards the model (and teacher) with FSDP2
(``fsdp_blocks: [names]`` picks the blocks); the outputs are gathered and written by rank 0.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Sparse24Error

__all__ = ["Recipe", "read_recipe", "run_recipe", "RecipeResult", "resolve_device"]

logger = logging.getLogger(__name__)

_TOP = {
    "model", "weights", "teacher", "sparsify", "data", "loss", "eval_fn", "finetune",
    "checkpoint_dir", "resume", "seed", "out", "history", "device",
}  # fmt: skip
_DATA = {"train", "eval"}
_SPARSIFY = {"method", "data", "num_batches", "policy", "include", "exclude", "squared", "min_params", "sequential", "offload", "blocksize", "dampening", "per_sample", "permute", "recalibrate_bn", "labels", "logits_fn", "samples", "pairs"}
_FINETUNE = {
    "epochs", "steps", "lr", "weight_decay", "warmup_steps", "scheduler", "amp", "grad_clip", "grad_accum",
    "distill", "temperature", "alpha", "checkpoint_every", "keep_checkpoints", "log_every", "strategy", "fsdp_blocks",
}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe (see the module docstring for the keys)."""

    source: str
    model: Any
    train: Any
    weights: str | None = None
    teacher: str | None = None
    sparsify: dict[str, Any] | None = None
    eval: Any = None
    loss: str | None = None
    eval_fn: str | None = None
    finetune: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    resume: bool | str = False
    seed: int | None = None
    out: str | None = None
    history: str | None = None
    device: str = "auto"


@dataclass
class RecipeResult:
    """What :func:`run_recipe` produced (only rank 0 writes the files)."""

    history: Any
    written: list[str]


@functools.cache
def _yaml_loader() -> type:
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    exponent = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+0123456789"))
    return Loader


def _parse_file(path: Path) -> Any:
    if not path.is_file():
        raise Sparse24Error(f"recipe not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError as error:  # Python 3.10
            raise Sparse24Error("TOML recipes need Python 3.11+ (tomllib); use YAML") from error
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise Sparse24Error(f"{path}: invalid TOML: {error}") from error
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.load(text, _yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as error:
            raise Sparse24Error(f"{path}: invalid YAML: {' '.join(str(error).split())}") from error
    raise Sparse24Error(f"recipe must be .yaml, .yml or .toml, got {path.name}")


def _override(config: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b=value`` (value parsed as YAML) to the nested ``config``."""
    import yaml

    key, sep, raw = assignment.partition("=")
    if not sep or not all(key.split(".")):
        raise Sparse24Error(f"--set expects KEY=VALUE (dotted keys for sections), got {assignment!r}")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise Sparse24Error(f"--set {key}: {part} is not a section")
    try:
        node[leaf] = yaml.load(raw, _yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise Sparse24Error(f"--set {key}: {raw!r} is not valid YAML (to set a string, quote it: --set {key}='\"...\"')") from error


def _check_keys(section: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise Sparse24Error(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _section(config: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = config.get(key) or {}
    if not isinstance(value, Mapping):
        raise Sparse24Error(f"{source}: {key} must be a section (a mapping), got {type(value).__name__}")
    return dict(value)


def _string(config: Mapping[str, Any], key: str, source: str, required: bool = False) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            raise Sparse24Error(f"{source}: missing required key {key!r}")
        return None
    if not isinstance(value, str):
        raise Sparse24Error(f"{source}: {key} must be a string, got {value!r}")
    return value


def _spec(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("fn"), str) and set(value) <= {"fn", "args"}:
        if not isinstance(value.get("args", {}), Mapping):
            raise Sparse24Error(f"{where}: args must be a mapping")
        return dict(value)
    raise Sparse24Error(f"{where} must be 'module:name' or {{fn: 'module:name', args: {{...}}}}, got {value!r}")


def read_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Parse and validate a recipe file; ``overrides`` are ``key.sub=value`` strings applied first."""
    path = Path(path)
    config = _parse_file(path)
    if not isinstance(config, dict):
        raise Sparse24Error(f"{path}: a recipe is a mapping of keys, got {type(config).__name__}")
    for assignment in overrides:
        _override(config, assignment)
    source = str(path)
    _check_keys(config, _TOP, source)
    data = _section(config, "data", source)
    _check_keys(data, _DATA, f"{source}: data")
    if "train" not in data:
        raise Sparse24Error(f"{source}: missing required key 'data.train'")
    finetune = _section(config, "finetune", source)
    _check_keys(finetune, _FINETUNE, f"{source}: finetune")
    sparsify = _section(config, "sparsify", source) if config.get("sparsify") is not None else None
    if sparsify is not None:
        _check_keys(sparsify, _SPARSIFY, f"{source}: sparsify")
        if "data" in sparsify:
            sparsify["data"] = _spec(sparsify["data"], f"{source}: sparsify.data")
    if "model" not in config:
        raise Sparse24Error(f"{source}: missing required key 'model'")
    resume = config.get("resume", False)
    if not isinstance(resume, (bool, str)):
        raise Sparse24Error(f"{source}: resume must be true, false or a checkpoint path, got {resume!r}")
    seed = config.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise Sparse24Error(f"{source}: seed must be an integer, got {seed!r}")
    device = config.get("device", "auto")
    if not isinstance(device, str):
        raise Sparse24Error(f"{source}: device must be a string such as auto, cpu or cuda, got {device!r}")
    out = _string(config, "out", source)
    if out is not None and not _is_directory_out(out) and not out.endswith(".safetensors"):
        raise Sparse24Error(f"{source}: out must end in .safetensors (a weights file), or name a directory without a suffix (a from_pretrained directory, for a transformers model); got {out}")
    return Recipe(
        source=source,
        model=_spec(config["model"], f"{source}: model"),
        train=_spec(data["train"], f"{source}: data.train"),
        eval=_spec(data["eval"], f"{source}: data.eval") if data.get("eval") is not None else None,
        weights=_string(config, "weights", source),
        teacher=_string(config, "teacher", source),
        sparsify=sparsify,
        loss=_string(config, "loss", source),
        eval_fn=_string(config, "eval_fn", source),
        finetune=finetune,
        checkpoint_dir=_string(config, "checkpoint_dir", source),
        resume=resume,
        seed=seed,
        out=out,
        history=_string(config, "history", source),
        device=device,
    )


def resolve_device(choice: str) -> Any:
    """A device name: ``auto`` (this rank's GPU when CUDA is available, else the CPU) or one torch knows and has here."""
    import torch

    from . import dist

    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if dist.world_size() > 1 else torch.cuda.current_device())
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise Sparse24Error(f"unknown device {choice!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Sparse24Error(f"device {choice!r} requested, but CUDA is not available")
    return device


def _is_directory_out(out: str) -> bool:
    """``out`` names a from_pretrained directory (no suffix, or an existing directory) rather than a file."""
    return Path(out).is_dir() or not Path(out).suffix


def _check_outputs(recipe: Recipe) -> None:
    from . import hub

    for path in filter(None, (recipe.out, recipe.history)):
        if not Path(path).parent.is_dir():
            raise Sparse24Error(f"output directory does not exist: {Path(path).parent}")
    if recipe.out and _is_directory_out(recipe.out):
        hub.check_output_dir(recipe.out)


def run_recipe(recipe: Recipe) -> RecipeResult:
    """Build the model (and teacher), prune it if needed, finetune it, write the outputs (rank 0)."""
    from . import dist, hub, io
    from .enforce import masked_gemm_weights
    from .finetune import finetune
    from .sparsify import sparsify

    _check_outputs(recipe)
    if recipe.seed is not None:
        import torch

        torch.manual_seed(recipe.seed)
    model = io.load_model(recipe.model)
    if recipe.out and _is_directory_out(recipe.out) and not hub.is_transformers_model(model):
        raise Sparse24Error(f"out: {recipe.out} is a directory, which is for transformers models; {type(model).__name__} is saved as a file: out: NAME.safetensors")
    if recipe.weights:
        io.load(model, recipe.weights)
    teacher = None
    if recipe.teacher:
        teacher = io.load_model(recipe.model)
        io.load(teacher, recipe.teacher)
        if masked_gemm_weights(teacher):
            raise Sparse24Error(f"teacher weights {recipe.teacher} are 2:4 masked; distil from the dense weights")
    loss_fn = io.load_object(recipe.loss, "loss") if recipe.loss else None
    if recipe.sparsify is not None:
        if masked_gemm_weights(model):
            raise Sparse24Error(f"{recipe.weights} already has 2:4 masks; remove the sparsify section, or start from dense weights")
        options = dict(recipe.sparsify)
        method = options.pop("method", "magnitude")
        data = io.build_object(options.pop("data"), "sparsify.data") if "data" in options else None
        squared = options.pop("squared", None)
        extra = {"squared": squared} if squared is not None else {}
        if "logits_fn" in options:
            options["logits_fn"] = io.load_object(options["logits_fn"], "sparsify.logits_fn")
        report = sparsify(model, method, data=data, loss_fn=loss_fn, **options, **extra)
        logger.info("recipe: %s", report._summary())
    elif not masked_gemm_weights(model):
        raise Sparse24Error("the model has no 2:4 masks: point weights at a file from `sparse24 prune`, or add a sparsify section")
    device = resolve_device(recipe.device)
    model.to(device)
    train = io.build_object(recipe.train, "data.train")
    eval_data = io.build_object(recipe.eval, "data.eval") if recipe.eval is not None else None
    eval_fn = io.load_object(recipe.eval_fn, "eval_fn") if recipe.eval_fn else None
    history = finetune(
        model,
        train,
        loss_fn=loss_fn,
        teacher=teacher,
        eval_fn=eval_fn,
        eval_data=eval_data,
        checkpoint_dir=recipe.checkpoint_dir,
        resume=recipe.resume,
        seed=recipe.seed,
        **copy.deepcopy(recipe.finetune),
    )
    written = []
    from .enforce import is_sharded

    if is_sharded(model) and recipe.out:
        model = _unsharded_copy(recipe, model)  # collective; None on ranks > 0
    if dist.is_main():
        if recipe.out and _is_directory_out(recipe.out):
            hub.save_pretrained(model, recipe.out)
            written.append(recipe.out)
        elif recipe.out:
            io.save(model, recipe.out)
            written.append(recipe.out)
        if recipe.history:
            io.write_text(recipe.history, history.to_json() + "\n")
            written.append(recipe.history)
    return RecipeResult(history, written)


def _unsharded_copy(recipe: Recipe, model: Any) -> Any:
    """A plain copy of a sharded (FSDP2) model on rank 0 (None elsewhere), for writing the outputs.

    Every rank takes part in gathering the full state dict; rank 0 builds the model afresh
    from the recipe and loads it, masks included.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from . import dist, io
    from .enforce import load_masks

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not dist.is_main():
        return None
    plain = io.load_model(recipe.model)
    load_masks(plain, state)
    plain.load_state_dict(state)
    return plain
