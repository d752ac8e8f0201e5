"""Models by name: ``hf:PATH``, ``torchvision:NAME``, ``timm:NAME``; 2:4 models saved as from_pretrained directories.

Model specs (the CLI's ``MODEL`` argument, :func:`sparse24.io.load_model`, a recipe's ``model:``):

- ``hf:PATH`` -- a transformers model from a local ``save_pretrained`` directory, loaded offline
  (``local_files_only=True``, no remote code). The class is ``hf_class`` (the CLI's
  ``--hf-class``: any transformers class name, e.g. ``AutoModelForCausalLM`` or
  ``BertForSequenceClassification``), else the directory's ``config.json``
  ``architectures[0]``, else ``AutoModel``.
- ``torchvision:NAME`` -- ``torchvision.models.get_model(NAME, weights=None)``.
- ``timm:NAME`` -- ``timm.create_model(NAME, pretrained=False)``.

Nothing is downloaded: torchvision and timm models start from random weights; load local
weights on top with the CLI's ``--weights FILE`` (:func:`sparse24.io.load`).

A 2:4 transformers model is saved by :func:`save_pretrained` as a directory that plain
transformers reloads with ``AutoModel...from_pretrained(DIR)`` -- the pruned weights are
stored with their zeros, so the reloaded model is the 2:4 model -- plus
``DIR/sparse24_masks.safetensors``: the masks (keys ``<weight>_sparse24_mask``, the model's
own parameter names; 1 bit per weight as in ``state_dict``, and bool masks of earlier
versions are read too) and, in its metadata, each masked weight's 2:4 dim, as
:func:`sparse24.save` records them. :func:`load_dir` (what ``sparse24.load(model, DIR)``
calls) loads the weights and re-attaches the masks, so training keeps the model 2:4;
:func:`verify_dir` (``sparse24 verify DIR``) checks the weights as transformers loads them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .enforce import MASK_SUFFIX, load_masks, masked_gemm_weights, stored_mask
from .errors import CheckFailed, Sparse24Error, first_line

__all__ = [
    "PREFIXES",
    "MASKS_FILE",
    "split_spec",
    "load_model",
    "load_hf",
    "is_transformers_model",
    "check_output_dir",
    "save_pretrained",
    "load_dir",
    "verify_dir",
]

logger = logging.getLogger(__name__)

PREFIXES = ("hf", "torchvision", "timm")
"""Model-spec prefixes this module builds (``PREFIX:REST``); any other ``a:b`` is a ``module:callable``."""

MASKS_FILE = "sparse24_masks.safetensors"
"""The masks' sidecar file inside a from_pretrained directory written by :func:`save_pretrained`."""

_METADATA_KEY = "sparse24"  # the same metadata entry sparse24.io.save writes
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
_WRITTEN_BY_TRANSFORMERS = {"config.json", "generation_config.json"}


def _import(package: str, spec: str) -> ModuleType:
    """Import an optional package, or raise one line saying it is missing or why it does not import."""
    import importlib

    try:
        return importlib.import_module(package)
    except Exception as error:  # a broken wheel fails with OSError, RuntimeError, ... as well as ImportError
        missing = isinstance(error, ModuleNotFoundError) and error.name == package
        state = "is not installed" if missing else f"does not import: {first_line(error)}"
        raise Sparse24Error(f"{spec} needs {package}, which {state} (pip install {package})") from error


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' per-file progress bars ("Loading weights", "Writing model shards") off, as before afterwards:
    on the command line they ran into sparse24's own one-line output and errors."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def split_spec(spec: object) -> tuple[str, str] | None:
    """``(prefix, rest)`` for ``"hf:PATH"``, ``"torchvision:NAME"`` or ``"timm:NAME"``; None for other specs."""
    if not isinstance(spec, str):
        return None
    prefix, sep, rest = spec.partition(":")
    return (prefix, rest) if sep and prefix in PREFIXES else None


def load_model(spec: str, *, hf_class: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the model named by ``spec`` (``hf:PATH``, ``torchvision:NAME`` or ``timm:NAME``).

    ``kwargs`` go to the builder (``from_pretrained``, ``get_model`` or ``create_model``), e.g.
    ``num_classes=10`` for timm. ``hf_class`` applies to ``hf:`` only.
    """
    parts = split_spec(spec)
    if hf_class is not None and (parts is None or parts[0] != "hf"):
        raise Sparse24Error(f"--hf-class applies to hf:PATH models only, not {spec!r}")
    if parts is None:
        raise Sparse24Error(f"model {spec!r} is not hf:PATH, torchvision:NAME or timm:NAME")
    prefix, rest = parts
    if not rest:
        raise Sparse24Error(f"model {spec!r}: give the {'directory' if prefix == 'hf' else 'model name'} after '{prefix}:'")
    if prefix == "hf":
        return load_hf(rest, hf_class=hf_class, **kwargs)
    if prefix == "torchvision":
        torchvision = _import("torchvision", spec)
        if rest not in torchvision.models.list_models():
            raise Sparse24Error(f"{spec}: torchvision has no model {rest!r} (torchvision.models.list_models() lists them)")
        build = functools.partial(torchvision.models.get_model, rest, weights=None)
    else:
        timm = _import("timm", spec)
        if not timm.is_model(rest):
            raise Sparse24Error(f"{spec}: timm has no model {rest!r} (timm.list_models() lists them)")
        build = functools.partial(timm.create_model, rest, pretrained=False)
    try:
        model = build(**kwargs)
    except Exception as error:  # e.g. an argument the model does not take
        raise Sparse24Error(f"cannot build {spec}: {first_line(error)}") from error
    logger.info("built %s with random weights (no download)", spec)
    return model


def _hf_class(transformers: ModuleType, directory: Path, hf_class: str | None) -> tuple[Any, str]:
    """The class to load ``directory`` with: ``hf_class``, else ``config.json``'s ``architectures[0]``, else AutoModel."""
    if hf_class is not None:
        try:
            cls = getattr(transformers, hf_class, None)
        except Exception as error:  # a lazily imported class whose own dependencies fail
            raise Sparse24Error(f"--hf-class {hf_class}: transformers.{hf_class} does not import: {first_line(error)}") from error
        if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
            raise Sparse24Error(f"--hf-class {hf_class}: transformers has no model class {hf_class!r} (e.g. AutoModelForCausalLM, BertForSequenceClassification)")
        return cls, hf_class
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Sparse24Error(f"hf:{directory}: cannot read config.json: {first_line(error)}") from error
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if architectures and isinstance(architectures[0], str):
        with contextlib.suppress(Exception):
            cls = getattr(transformers, architectures[0], None)
            if isinstance(cls, type) and hasattr(cls, "from_pretrained"):
                return cls, architectures[0]
        logger.info("hf:%s: transformers has no class %s (config.json architectures); using AutoModel", directory, architectures[0])
    return transformers.AutoModel, "AutoModel"


def load_hf(path: str | os.PathLike, *, hf_class: str | None = None, **kwargs: Any) -> nn.Module:
    """A transformers model from the ``save_pretrained`` directory ``path``, offline.

    The class is ``hf_class`` (a transformers class name), else ``config.json``'s
    ``architectures[0]``, else ``AutoModel``. ``kwargs`` go to ``from_pretrained``. Raises
    :class:`Sparse24Error` (one line) for a missing directory, a directory without
    ``config.json``, an unknown class, transformers missing, or any failure to load.
    """
    directory = Path(path).expanduser()
    spec = f"hf:{path}"
    if not directory.is_dir():
        raise Sparse24Error(f"{spec}: directory not found: {directory}")
    if not (directory / "config.json").is_file():
        raise Sparse24Error(f"{spec}: {directory} has no config.json (not a save_pretrained directory)")
    transformers = _import("transformers", spec)
    cls, name = _hf_class(transformers, directory, hf_class)
    kwargs = {"trust_remote_code": False, **kwargs, "local_files_only": True}  # never downloads
    try:
        with _no_progress_bars():
            model = cls.from_pretrained(str(directory), **kwargs)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, ... for unloadable directories
        raise Sparse24Error(f"{spec}: cannot load it as {name}: {first_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise Sparse24Error(f"{spec}: {name} gave a {type(model).__name__}, not a torch.nn.Module (--hf-class must name a model class)")
    logger.info("loaded %s as %s", spec, type(model).__name__)
    return model


def is_transformers_model(model: object) -> bool:
    """Whether ``model`` is a ``transformers.PreTrainedModel`` (checked without importing transformers)."""
    return any(
        cls.__name__ == "PreTrainedModel" and cls.__module__.split(".")[0] == "transformers" for cls in type(model).__mro__
    )


def check_output_dir(path: str | os.PathLike) -> Path:
    """Raise :class:`Sparse24Error` unless ``path`` can become (or be replaced by) a from_pretrained directory.

    Its parent must exist; an existing ``path`` must be an empty directory or one holding a
    ``config.json`` (an earlier model directory) -- anything else is never replaced.
    """
    out = Path(os.path.abspath(path))  # "." and ".." resolved, so the renames below have a real name
    if not out.parent.is_dir():
        raise Sparse24Error(f"output directory does not exist: {out.parent}")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise Sparse24Error(f"{out} exists and is not a directory; not replacing it")
        if any(out.iterdir()) and not (out / "config.json").is_file():
            raise Sparse24Error(f"{out} exists and is not a model directory (no config.json); not replacing it")
    return out


def _copy_companions(source: Path, target: Path) -> list[str]:
    """Copy the source directory's non-weight files (tokenizer, processor, README, ...) that ``target`` lacks."""
    copied = []
    for file in sorted(source.iterdir()):
        name = file.name
        if (
            not file.is_file()
            or name.startswith(".")
            or name in _WRITTEN_BY_TRANSFORMERS
            or name == MASKS_FILE
            or name.endswith(_WEIGHT_SUFFIXES)
            or name.endswith(".index.json")
            or (target / name).exists()
        ):
            continue
        shutil.copy2(file, target / name)
        copied.append(name)
    return copied


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out``; an existing ``out`` is removed only once ``tmp`` is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_pretrained(model: nn.Module, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a (2:4) transformers model as a from_pretrained directory, atomically.

    ``path`` gets the model's ``save_pretrained`` output (config, weights with the pruned
    zeros, tied weights left tied) without the mask buffers, so ``AutoModel...from_pretrained(path)``
    gives the 2:4 model in plain transformers; and :data:`MASKS_FILE`, the masks with their
    2:4 dims, which :func:`load_dir` re-attaches. Non-weight files of the directory the
    model was loaded from (tokenizer, preprocessor config, ...) are copied along. Everything
    is written into a temporary directory next to ``path`` and renamed onto it: an existing
    ``path`` (empty, or holding a ``config.json``) is replaced only on success, and a failure
    leaves nothing behind. ``kwargs`` go to ``save_pretrained`` (e.g. ``max_shard_size``).
    Returns ``path``.
    """
    from safetensors.torch import save_file

    from .dist import unwrap

    model = unwrap(model)
    if not is_transformers_model(model):
        raise Sparse24Error(f"a from_pretrained directory needs a transformers model, got {type(model).__name__}; save it with sparse24.save(model, 'FILE.safetensors')")
    out = check_output_dir(path)
    state = model.state_dict()
    weights = {key: value for key, value in state.items() if not key.endswith(MASK_SUFFIX)}
    masks = {key: value.detach().to("cpu").contiguous() for key, value in state.items() if key.endswith(MASK_SUFFIX)}  # packed, 1 bit per weight
    axes = {weight.name: weight.axis.reduction for weight in masked_gemm_weights(model)}
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with _no_progress_bars():
            model.save_pretrained(str(tmp), state_dict=weights, **kwargs)
        save_file(masks, str(tmp / MASKS_FILE), metadata={"format": "pt", _METADATA_KEY: json.dumps({"axes": axes})})
        if str(source) and source.is_dir():
            copied = _copy_companions(source, tmp)
            if copied:
                logger.info("copied %s from %s", ", ".join(copied), source)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s (%d masked weights in %s)", out, len(masks), MASKS_FILE)
    return out


def _read_masks(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The masks and 2:4 dims of ``directory/MASKS_FILE``."""
    from safetensors import safe_open

    file = directory / MASKS_FILE
    try:
        with safe_open(str(file), "pt") as handle:
            masks = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = handle.metadata() or {}
        axes = {name: int(dim) for name, dim in json.loads(metadata[_METADATA_KEY])["axes"].items()}
    except Exception as error:  # unreadable file or metadata
        raise Sparse24Error(f"cannot read {file}: {first_line(error)}") from error
    stray = sorted(key for key in masks if not key.endswith(MASK_SUFFIX))
    if stray:
        raise Sparse24Error(f"{file} holds tensors that are not masks: {', '.join(stray[:3])}")
    return masks, axes


def _loaded_from(directory: Path, cls: Any, dtype: torch.dtype | None = None, hf_class: str | None = None) -> tuple[nn.Module, set[str]]:
    """The model transformers loads from ``directory`` (as ``cls`` or the directory's own class) and its missing keys."""
    transformers = _import("transformers", f"hf:{directory}")
    if cls is None:
        cls, name = _hf_class(transformers, directory, hf_class)
    else:
        name = cls.__name__
    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False, "output_loading_info": True}
    if dtype is not None:
        options["dtype"] = dtype
    try:
        with _no_progress_bars():
            model, info = cls.from_pretrained(str(directory), **options)
    except Exception as error:
        raise Sparse24Error(f"cannot load {directory} as {name}: {first_line(error)}") from error
    return model, set(info.get("missing_keys", ()))


def _rebase(masks: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Mask (or weight) keys renamed for ``model`` when it is the base model of the head model they were saved from, or the reverse.

    transformers' ``from_pretrained`` moves weights between ``BertModel`` and
    ``BertForSequenceClassification`` (``bert.`` prefix, ``base_model_prefix``); the masks follow
    when every one of them fits that way. Otherwise the keys are returned unchanged.
    """
    modules = {name for name, _ in model.named_modules()}

    def fits(keys: dict[str, Any]) -> bool:
        return all(key.rpartition(".")[0] in modules for key in keys)

    prefix = getattr(model, "base_model_prefix", "")
    if not masks or not prefix or fits(masks):
        return masks
    stripped = {key[len(prefix) + 1 :]: mask for key, mask in masks.items() if key.startswith(prefix + ".")}
    added = {f"{prefix}.{key}": mask for key, mask in masks.items()}
    for candidate in (stripped, added):
        if len(candidate) == len(masks) and fits(candidate):
            return candidate
    return masks


def _check_dir(path: str | os.PathLike) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise Sparse24Error(f"directory not found: {directory}")
    if not (directory / "config.json").is_file():
        raise Sparse24Error(f"{directory} has no config.json (not a save_pretrained directory)")
    return directory


def load_dir(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a from_pretrained directory's weights into the transformers ``model`` and re-attach its masks, in place.

    What ``sparse24.load(model, DIR)`` does for a directory. The weights are read the way
    transformers reads them (``type(model).from_pretrained(DIR)``, so renamed checkpoint
    keys and tied weights are handled; this holds a second copy of the weights while it
    runs); the masks come from :data:`MASKS_FILE`, if the directory has one. Everything is
    checked before anything is loaded, so a directory that does not fit leaves ``model``
    untouched. Returns the names of the masked weights.
    """
    from .io import check_fits

    directory = _check_dir(path)
    if not is_transformers_model(model):
        raise Sparse24Error(f"{directory} is a from_pretrained directory; load it into a transformers model (hf:{directory}), not a {type(model).__name__}")
    masks, _ = _read_masks(directory) if (directory / MASKS_FILE).is_file() else ({}, {})
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    loaded, missing = _loaded_from(directory, type(model), dtype)
    state = {key: value for key, value in loaded.state_dict().items() if not key.endswith(MASK_SUFFIX)}
    absent = sorted(missing & set(state))
    if absent:
        raise Sparse24Error(f"{directory} does not fit {type(model).__name__}: {len(absent)} weights missing from its files ({', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''})")
    check_fits(model, state, str(directory))
    state.update(_rebase(masks, model))
    masked = load_masks(model, state)
    model.load_state_dict(state, strict=False)  # keys and shapes checked above; masks the model has but the directory lacks stay in force
    logger.info("loaded %s: %d masked weights", directory, len(masked))
    return masked


def verify_dir(path: str | os.PathLike, *, hf_class: str | None = None, expect: Any = None) -> Any:
    """Check a from_pretrained directory: the weights transformers loads from it are 2:4 where its masks say.

    The model is loaded from the directory (class: ``hf_class``, else ``config.json``'s
    ``architectures[0]``); each mask of :data:`MASKS_FILE` is checked against the weight as
    loaded -- both 2:4 along the layer's reduction axis (which must match the dim the file
    records) and the weight zero outside the mask -- before the masks are attached.
    ``expect`` (names or globs) adds weights that must be 2:4 without a mask. Returns the
    :class:`~sparse24.SparsityReport` of :func:`sparse24.verify`; raises
    :class:`~sparse24.SparsityError` for a weight that is not 2:4 and
    :class:`~sparse24.CheckFailed` for any other failed check, including nothing to check.
    """
    from .axes import gemm_axes
    from .sparsify import check_masked, verify

    directory = _check_dir(path)
    has_masks = (directory / MASKS_FILE).is_file()
    masks, axes = _read_masks(directory) if has_masks else ({}, {})
    model, missing = _loaded_from(directory, None, None, hf_class)
    masks, axes = _rebase(masks, model), _rebase(axes, model)
    for key, mask in masks.items():
        name = key[: -len(MASK_SUFFIX)]
        module_path, _, param_name = name.rpartition(".")
        try:
            module = model.get_submodule(module_path)
        except AttributeError:
            raise CheckFailed(f"{directory}: mask {key}: {type(model).__name__} has no module {module_path!r}") from None
        axis = gemm_axes(module).get(param_name)
        if axis is None:
            raise CheckFailed(f"{directory}: mask {key}: {module_path} ({type(module).__name__}) has no GEMM weight {param_name!r}")
        if name in missing:
            raise CheckFailed(f"{directory}: {name} is masked, but the directory's weight files do not hold it")
        if name in axes and axes[name] != axis.reduction:
            raise CheckFailed(f"{directory}: {MASKS_FILE} gives {name} the 2:4 dim {axes[name]}, the layer reduces along dim {axis.reduction}")
        weight = getattr(module, param_name).detach()
        check_masked(name, weight, stored_mask(mask, weight.shape, f"{directory}: mask {key}"), axis.reduction)
    unlisted = sorted(set(axes) - {key[: -len(MASK_SUFFIX)] for key in masks})
    if unlisted:
        raise CheckFailed(f"{directory}: {MASKS_FILE} lists {unlisted[0]} as 2:4, but holds no mask for it")
    if masks:
        load_masks(model, masks)
    if not masks and expect is None:
        where = f"{directory} has no {MASKS_FILE}" if not has_masks else f"{directory}/{MASKS_FILE} holds no masks"
        raise CheckFailed(f"nothing was checked: {where}; pass --expect (expect=) to name the weights that must be 2:4")
    return verify(model, expect=expect)
