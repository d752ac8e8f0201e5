"""Files: sparse weights (safetensors, masks included), weight files, model specs, atomic writes."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .dist import unwrap
from .enforce import MASK_SUFFIX, load_masks, masked_gemm_weights
from .errors import Sparse24Error, first_line

__all__ = ["save", "load", "read_state_dict", "load_model", "load_object", "build_object", "atomic_path", "write_text", "file_axes", "file_format", "check_fits"]

_METADATA_KEY = "sparse24"
_file_modules: dict[Path, ModuleType] = {}  # resolved path -> the module load_object ran it as


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    if not path.parent.is_dir():
        raise Sparse24Error(f"output directory does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Save ``model.state_dict()`` (masks included) to a safetensors file, atomically.

    The file's metadata records each masked weight's 2:4 dim, so ``sparse24 verify FILE``
    can check it without the model.
    """
    from safetensors.torch import save_file

    model = unwrap(model)  # the model's own keys, not DDP's "module." or torch.compile's "_orig_mod."
    axes = {weight.name: weight.axis.reduction for weight in masked_gemm_weights(model)}
    seen: set[int] = set()
    tensors = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if storage in seen else tensor  # safetensors refuses shared memory
        seen.add(storage)
    with atomic_path(path) as tmp:
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt", _METADATA_KEY: json.dumps({"axes": axes})})


def file_axes(path: str | os.PathLike) -> dict[str, int] | None:
    """The masked weights and their 2:4 dims recorded by :func:`save`, or None for other files."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    if _METADATA_KEY not in metadata:
        return None
    return {name: int(dim) for name, dim in json.loads(metadata[_METADATA_KEY])["axes"].items()}


def file_format(path: str | os.PathLike) -> str:
    """``"safetensors"``, ``"torch"`` (a zip archive or a pickle, as ``torch.save`` writes) or ``"unknown"``, by content."""
    with Path(path).open("rb") as file:
        head = file.read(9)
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30:  # an 8-byte header length, then the JSON header
        return "safetensors"  # (a zip archive's byte 8 is its compression method, 0 or 8; a pickle's never "{" there)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip archive, or its legacy pickle
        return "torch"
    return "unknown"


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a safetensors file or a ``torch.save`` file (read with ``weights_only=True``).

    The format is read from the file's first bytes, whatever its suffix. A checkpoint that wraps its
    weights under ``"state_dict"`` or ``"model"`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise Sparse24Error(f"weights file not found: {path}")
    kind = file_format(path)
    if kind == "unknown":
        with path.open("rb") as file:
            start = file.read(16)
        what = f"it starts with {start!r}" if start else "it is empty"
        raise Sparse24Error(f"cannot read weights file {path}: neither a safetensors file nor a torch.save file ({what})")
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with path.open("rb") as file:  # a file object: torch.load reads a path named .safetensors as safetensors
                state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # any reader failure means an unreadable file
        reason = first_line(error)
        if kind == "torch" and reason.startswith("Weights only load failed"):
            reason = (
                "it holds Python objects besides tensors (a whole model saved with torch.save(model)?), and sparse24 "
                "loads tensors only (weights_only=True: no code in the file runs); save model.state_dict() or a safetensors file"
            )
        raise Sparse24Error(f"cannot read weights file {path}: {reason}") from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise Sparse24Error(f"{path} does not hold a state dict of tensors")
    return dict(state)


def check_fits(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Raise :class:`Sparse24Error` naming missing, unexpected and mis-shaped keys unless ``state`` fits ``model`` (masks aside)."""
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith(MASK_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(MASK_SUFFIX)}
    problems = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})")
    for key in (k for k in expected if k in given):  # first mismatch in model order
        if tuple(expected[key].shape) != tuple(given[key].shape):
            problems.append(f"{key} is {list(given[key].shape)} in the file, {list(expected[key].shape)} in the model")
            break
    if problems:
        raise Sparse24Error(f"{source} does not fit the model: " + "; ".join(problems))


def load(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load weights (and masks, if the file has them) from ``path`` into ``model``, in place.

    Everything is checked before anything is loaded, so a file that does not fit leaves
    the model untouched. Returns the names of the masked weights. A directory written by
    ``sparse24 prune hf:... --out DIR`` (a from_pretrained directory) is read by
    :func:`sparse24.hub.load_dir`.
    """
    model = unwrap(model)
    if Path(path).is_dir():
        from . import hub

        return hub.load_dir(model, path)
    state = read_state_dict(path)
    check_fits(model, state, str(path))
    masked = load_masks(model, state)
    # Keys and shapes were checked above; masks the model has but the file lacks stay in force.
    model.load_state_dict(state, strict=False)
    return masked


def _file_module(file: Path) -> ModuleType:
    """The module of a ``.py`` file, run once per process, as ``import`` runs a module once.

    A second run would define its classes and functions again and register its
    ``torch.library`` ops again, which frees the first run's op handles while its functions still
    call them. The module is ``sys.modules[file.stem]`` when that name is free or already this
    file (a test that imported it); on an error in the file nothing is left registered.
    """
    path = file.resolve()
    if path in _file_modules:
        return _file_modules[path]
    imported = sys.modules.get(file.stem)
    if getattr(imported, "__file__", None) and Path(imported.__file__).resolve() == path:
        return imported
    module_spec = importlib.util.spec_from_file_location(file.stem, path)  # an absolute __file__
    module = importlib.util.module_from_spec(module_spec)
    registered = sys.modules.setdefault(file.stem, module) is module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        if registered:
            del sys.modules[file.stem]
        raise
    _file_modules[path] = module
    return module


def load_object(spec: str, what: str = "object") -> Any:
    """The attribute named by ``"package.module:name"`` or ``"path/to/file.py:name"``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise Sparse24Error(f"{what} must be given as module:name, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise Sparse24Error(f"{what} file not found: {file}")
            module = _file_module(file)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as error:
        raise Sparse24Error(f"cannot import {module_name!r}: {error}") from error
    target = getattr(module, attr, None)
    if target is None:
        raise Sparse24Error(f"{module_name!r} has no attribute {attr!r}")
    return target


def build_object(spec: str | Mapping[str, Any], what: str = "object") -> Any:
    """Resolve an object spec from the command line or a recipe.

    ``"module:name"`` gives the attribute, called without arguments if it is a callable
    other than an ``nn.Module`` (a class, a factory); ``{"fn": "module:name", "args": {...}}``
    calls it with those keyword arguments.
    """
    if isinstance(spec, Mapping):
        target = load_object(spec["fn"], what)
        if not callable(target):
            raise Sparse24Error(f"{what}: {spec['fn']} is not callable, but args were given")
        return target(**spec.get("args", {}))
    target = load_object(spec, what)
    if isinstance(target, nn.Module) or not callable(target):
        return target
    return target()


def load_model(spec: str | Mapping[str, Any], *, hf_class: str | None = None) -> nn.Module:
    """Build a model from ``"package.module:callable"`` or ``"path/to/file.py:callable"`` (see :func:`build_object`).

    ``"hf:PATH"`` (a local save_pretrained directory; ``hf_class`` picks the transformers class),
    ``"torchvision:NAME"`` and ``"timm:NAME"`` (random weights) are built by :mod:`sparse24.hub`;
    in the ``{"fn": ..., "args": {...}}`` form their args go to the builder.
    """
    from . import hub

    fn = spec.get("fn") if isinstance(spec, Mapping) else spec
    if hf_class is not None or hub.split_spec(fn) is not None:
        args = dict(spec.get("args", {})) if isinstance(spec, Mapping) else {}
        return hub.load_model(fn, hf_class=args.pop("hf_class", hf_class), **args)
    model = build_object(spec, "model")
    if not isinstance(model, nn.Module):
        raise Sparse24Error(f"model {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    if isinstance(spec, str) and model is load_object(spec, "model"):
        model = copy.deepcopy(model)  # an instance, not a factory: each call still gets a model of its own (a teacher, a reference)
    return model
