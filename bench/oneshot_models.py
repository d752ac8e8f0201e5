"""Evaluation models for the one-shot pruning benchmark: the models, their data and their metrics.

Five models, each trained here once and cached on disk:

- ``gpt2-stdlib``: a byte-level causal LM of the GPT-2 architecture
  (``transformers.GPT2LMHeadModel``, whose attention and MLP are ``Conv1D`` with weights
  ``[in, out]``) trained on the ``.py`` sources of Python's standard library; split by file
  into train / val / test (held out). Quality: perplexity per byte on held-out files, lower
  is better.
- ``vit-digits``: a small ViT (``transformers.ViTForImageClassification``: separate query,
  key, value ``nn.Linear``) on scikit-learn's 8x8 digits in 2x2 patches. Quality: accuracy.
- ``digits-resnet``, ``digits-transformer``: the demo's models (:mod:`sparse24.demo`),
  trained by ``sparse24.demo.train_dense`` with the settings of ``bench_recovery.py``.
- ``moe-stdlib``: a byte-level mixture-of-experts LM (``transformers.Qwen3MoeForCausalLM``: 8
  experts, 2 per token, stored as transformers' fused ``[experts, out, in]`` weights) trained
  like ``gpt2-stdlib`` on the same files, with the router's load-balancing loss. Quality:
  perplexity per byte on held-out files.

For every name::

    model = load(name)                               # trained (cached), eval mode, fp32
    batches = calibration_batches(name, 32, seed=0)  # from the training split only
    loss = loss_fn(name)(model, batches[0])          # what Taylor (and a finetune) needs
    logits = logits_fn(name)(model, batches[0])      # what loss_fn scores (Taylor's labels="model")
    evaluate(name, model)                            # {"metric", "value", "higher_is_better", ...}
    finetune_batches(name, 200, seed=0)              # training batches for a recovery finetune

Everything is deterministic given the recipe and the seed on one machine: training always runs
on :data:`TRAIN_THREADS` threads, whatever the caller's setting (another thread count sums in
another order, and trains a measurably different model). Weights are cached in
``$SPARSE24_BENCH_CACHE`` (default ``~/.cache/sparse24/bench``) under a key of the recipe
(architecture, training settings, seed), the training data's fingerprint and
:data:`CODE_VERSION`; a changed recipe or corpus is a cache miss. The table of the trained
models (parameters, training time, dense quality) is written by::

    python -m sparse24.bench.oneshot_models --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import sparse24
from sparse24.bench._common import environment, header, write_results
from sparse24 import demo
from sparse24.finetune import WarmupSchedule
from sparse24.io import atomic_path, check_fits, read_state_dict

__all__ = [
    "CODE_VERSION",
    "NAMES",
    "RECIPES",
    "TINY",
    "Corpus",
    "DigitsRecipe",
    "GPT2Recipe",
    "MoERecipe",
    "ViTRecipe",
    "baseline",
    "build",
    "cache_dir",
    "cache_path",
    "calibration_batches",
    "collect",
    "corpus_files",
    "evaluate",
    "finetune_batches",
    "info",
    "load",
    "seeded",
    "logits_fn",
    "loss_fn",
    "markdown",
    "split_of",
    "stdlib_corpus",
    "train",
]

logger = logging.getLogger(__name__)

CODE_VERSION = 2  # bump when training or data code changes what a recipe produces (2: TRAIN_THREADS)
TRAIN_THREADS = 1  # torch threads while training: the float sums' order, so the model, must not follow the caller's setting
COMMAND = "python -m sparse24.bench.oneshot_models --out bench/results"
VOCAB = 256  # bytes
SEPARATOR = 0  # the byte between two files (no standard-library source contains NUL)
SPLITS = ("train", "val", "test")
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "pydoc_data"})
_METADATA_KEY = "sparse24_oneshot_models"


@dataclass(frozen=True)
class GPT2Recipe:
    """A byte-level GPT-2 and how it is trained (AdamW, warm-up + cosine, random windows of the train split)."""

    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    context: int = 128
    steps: int = 800
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 30
    eval_windows: int = 256  # evenly spaced windows of `context` bytes per evaluation split
    max_train_bytes: int | None = None  # train on the first bytes of the train split only (tests)
    seed: int = 0


@dataclass(frozen=True)
class MoERecipe(GPT2Recipe):
    """A byte-level Qwen3-MoE (fused experts, top-k routing) trained as :class:`GPT2Recipe`, with the router's
    load-balancing loss (``aux_loss_coef``) added while training only."""

    n_experts: int = 8
    top_k: int = 2
    expert_size: int = 256  # each expert's intermediate width
    aux_loss_coef: float = 0.01


@dataclass(frozen=True)
class ViTRecipe:
    """A ViT on the 8x8 digits in ``patch`` x ``patch`` patches, trained for ``epochs`` over the train split."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    mlp: int = 256
    patch: int = 2
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 50
    seed: int = 0


@dataclass(frozen=True)
class DigitsRecipe:
    """One of :mod:`sparse24.demo`'s models (``kind``), trained by ``demo.train_dense``."""

    kind: str
    epochs: int
    lr: float = 3e-3
    seed: int = 0


Recipe = GPT2Recipe | MoERecipe | ViTRecipe | DigitsRecipe

RECIPES: dict[str, Recipe] = {
    # 8000 steps (41 min on one thread here, sharing the machine). At 800 it was undertrained (test perplexity 5.35) and
    # its input norms alike where the residual stream is read (max / median <= 2.1); at 8000: 2.62, and up to 4.4
    "gpt2-stdlib": GPT2Recipe(steps=8000),
    "vit-digits": ViTRecipe(),
    "digits-resnet": DigitsRecipe("resnet", epochs=20),  # bench_recovery.py's settings
    "digits-transformer": DigitsRecipe("transformer", epochs=30),
    "moe-stdlib": MoERecipe(),
}
# The same families, a few seconds to train: for tests.
TINY: dict[str, Recipe] = {
    "gpt2-stdlib": GPT2Recipe(n_embd=32, n_layer=2, n_head=2, context=64, steps=20, batch_size=8, lr=5e-3, warmup_steps=5, eval_windows=8, max_train_bytes=200_000),
    "vit-digits": ViTRecipe(hidden=32, layers=1, heads=2, mlp=64, epochs=1, warmup_steps=5),
    "digits-resnet": DigitsRecipe("resnet", epochs=1),
    "digits-transformer": DigitsRecipe("transformer", epochs=1),
    "moe-stdlib": MoERecipe(n_embd=32, n_layer=2, n_head=2, context=64, steps=20, batch_size=8, lr=5e-3, warmup_steps=5, eval_windows=8, max_train_bytes=200_000, n_experts=4, expert_size=32),
}
NAMES = tuple(RECIPES)
_RECIPE_TYPES = {"gpt2-stdlib": GPT2Recipe, "vit-digits": ViTRecipe, "digits-resnet": DigitsRecipe, "digits-transformer": DigitsRecipe, "moe-stdlib": MoERecipe}


def seeded(name: str, seed: int) -> Recipe:
    """``name``'s recipe (:data:`RECIPES`) trained from ``seed``: another model of the same family."""
    return dataclasses.replace(_recipe(name, None), seed=_nonnegative(seed, "seed"))


def _nonnegative(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return value


def _recipe(name: str, recipe: Recipe | None) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; one of {NAMES}")
    if recipe is None:
        return RECIPES[name]
    if type(recipe) is not _RECIPE_TYPES[name]:
        raise ValueError(f"{name} takes a {_RECIPE_TYPES[name].__name__}, got {type(recipe).__name__}")
    if isinstance(recipe, DigitsRecipe) and recipe.kind != RECIPES[name].kind:
        raise ValueError(f"{name} is the demo's {RECIPES[name].kind!r} model, got a recipe for {recipe.kind!r}")
    return recipe


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


# --- the standard-library corpus ---------------------------------------------------------------


def corpus_files(root: str | os.PathLike | None = None) -> list[str]:
    """The ``.py`` files under the standard library ``root`` (posix paths relative to it, sorted).

    Third-party packages (``site-packages``), the test suites and ``pydoc_data`` (English
    text in a string) are left out.
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        found += [(relative / f).as_posix() for f in files if f.endswith(".py")]
    return sorted(found)


def split_of(path: str) -> str:
    """``"test"`` (~10% of files), ``"val"`` (~5%) or ``"train"``, from a hash of the relative path alone."""
    bucket = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % 20
    return "test" if bucket < 2 else "val" if bucket == 2 else "train"


@dataclass(frozen=True)
class Corpus:
    """The standard library's sources, split by file; each split's files joined by :data:`SEPARATOR`."""

    root: str
    files: dict[str, tuple[str, ...]]
    data: dict[str, Tensor]  # uint8, one byte per token
    fingerprint: str  # sha256 over every file's path and bytes


@functools.lru_cache(maxsize=2)
def stdlib_corpus(root: str | None = None) -> Corpus:
    """Read the corpus (once per process and root; ~11 MB for CPython 3.11)."""
    root_path = Path(root or sysconfig.get_paths()["stdlib"])
    files: dict[str, list[str]] = {split: [] for split in SPLITS}
    chunks: dict[str, list[bytes]] = {split: [] for split in SPLITS}
    digest = hashlib.sha256()
    for path in corpus_files(root_path):
        content = (root_path / path).read_bytes().replace(bytes([SEPARATOR]), b"")
        digest.update(path.encode() + b"\0" + hashlib.sha256(content).digest())
        split = split_of(path)
        files[split].append(path)
        chunks[split].append(content)
    if not all(files.values()):
        raise FileNotFoundError(f"too few .py files under {root_path} for a train/val/test split: {', '.join(f'{s} {len(f)}' for s, f in files.items())}")
    data = {split: torch.frombuffer(bytearray(bytes([SEPARATOR]).join(parts)), dtype=torch.uint8) for split, parts in chunks.items()}
    return Corpus(str(root_path), {s: tuple(f) for s, f in files.items()}, data, digest.hexdigest())


def _train_bytes(recipe: GPT2Recipe) -> Tensor:
    data = stdlib_corpus().data["train"]
    return data if recipe.max_train_bytes is None else data[: recipe.max_train_bytes]


def _windows(data: Tensor, starts: Tensor, context: int) -> Tensor:
    return data[starts[:, None] + torch.arange(context)].long()


def _random_windows(data: Tensor, count: int, context: int, generator: torch.Generator) -> Tensor:
    return _windows(data, torch.randint(0, len(data) - context + 1, (count,), generator=generator), context)


def _eval_windows(data: Tensor, count: int, context: int) -> Tensor:
    """``count`` windows evenly spaced over ``data`` (the same ones every time)."""
    return _windows(data, torch.arange(count) * (len(data) - context) // max(1, count - 1), context)


# --- building and training ---------------------------------------------------------------------


def _gpt2(recipe: GPT2Recipe) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=recipe.context,
        n_embd=recipe.n_embd,
        n_layer=recipe.n_layer,
        n_head=recipe.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=SEPARATOR,
        eos_token_id=SEPARATOR,
    )
    return GPT2LMHeadModel(config)


def _moe(recipe: MoERecipe) -> nn.Module:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        vocab_size=VOCAB,
        hidden_size=recipe.n_embd,
        intermediate_size=4 * recipe.n_embd,
        num_hidden_layers=recipe.n_layer,
        num_attention_heads=recipe.n_head,
        num_key_value_heads=recipe.n_head,
        head_dim=recipe.n_embd // recipe.n_head,
        num_experts=recipe.n_experts,
        num_experts_per_tok=recipe.top_k,
        moe_intermediate_size=recipe.expert_size,
        max_position_embeddings=recipe.context,
        router_aux_loss_coef=recipe.aux_loss_coef,
        tie_word_embeddings=False,
        bos_token_id=SEPARATOR,
        eos_token_id=SEPARATOR,
    )
    return Qwen3MoeForCausalLM(config)


def _vit(recipe: ViTRecipe) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8,
        patch_size=recipe.patch,
        num_channels=1,
        hidden_size=recipe.hidden,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        intermediate_size=recipe.mlp,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=10,
    )
    return ViTForImageClassification(config)


def build(name: str, *, recipe: Recipe | None = None) -> nn.Module:
    """The untrained model, initialised from the recipe's seed (the global RNG is left as it was)."""
    recipe = _recipe(name, recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        if isinstance(recipe, MoERecipe):
            return _moe(recipe)
        if isinstance(recipe, GPT2Recipe):
            return _gpt2(recipe)
        if isinstance(recipe, ViTRecipe):
            return _vit(recipe)
        return demo.MODELS[recipe.kind]()


def _fit(model: nn.Module, batches: Iterator[Any], loss: Callable[[nn.Module, Any], Tensor], steps: int, lr: float, warmup: int) -> list[float]:
    """AdamW (weight decay 0.01 on matrices only), warm-up + cosine, grad clip 1; the losses per step."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule("cosine", warmup, steps, final=0.1))
    losses = []
    model.train()
    for _, batch in zip(range(steps), batches):
        optimizer.zero_grad(set_to_none=True)
        value = loss(model, batch)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(value.item())
    return losses


def _lm_stream(recipe: GPT2Recipe, seed: int, batch_size: int) -> Iterator[Tensor]:
    data = _train_bytes(recipe)
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield _random_windows(data, batch_size, recipe.context, generator)


def _digits_stream(seed: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Epoch after epoch of shuffled training batches (the last, smaller batch of each epoch included)."""
    digits = demo.load_digits()
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from demo.batches(digits.x_train, digits.y_train, batch_size, generator)


def train(name: str, *, recipe: Recipe | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train from scratch (minutes for the full recipes); the model in eval mode and what training did.

    The returned record has ``train_seconds``, ``steps``, ``final_loss`` (mean of the last
    10% of steps), ``threads`` (:data:`TRAIN_THREADS`, whatever the caller's setting, which is
    restored) and the machine's ``load_average`` at the start (others' work on the machine slows
    training down).
    """
    recipe = _recipe(name, recipe)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        model, losses, steps, seconds = _train(name, recipe)
    finally:
        torch.set_num_threads(threads)
    tail = losses[-max(1, len(losses) // 10) :]
    record = {
        "train_seconds": seconds,
        "steps": steps,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "threads": TRAIN_THREADS,
        "load_average": load_average,
    }
    return model.eval(), record


def _train(name: str, recipe: Recipe) -> tuple[nn.Module, list[float], int, float]:
    """The model, its training losses, steps and seconds."""
    start = time.perf_counter()
    if isinstance(recipe, DigitsRecipe):
        with torch.random.fork_rng(devices=[]):
            model = demo.train_dense(demo.load_digits(), epochs=recipe.epochs, lr=recipe.lr, seed=recipe.seed, model=recipe.kind)
        steps = recipe.epochs * len(demo.batches(*_digits_xy("train"), 64))
        losses = []
    else:
        model = build(name, recipe=recipe)
        if isinstance(recipe, GPT2Recipe):
            steps, stream = recipe.steps, _lm_stream(recipe, recipe.seed, recipe.batch_size)
        else:
            steps = recipe.epochs * math.ceil(len(_digits_xy("train")[1]) / recipe.batch_size)
            stream = _digits_stream(recipe.seed, recipe.batch_size)
        loss = _moe_training_loss(recipe.aux_loss_coef) if isinstance(recipe, MoERecipe) else loss_fn(name)
        losses = _fit(model, stream, loss, steps, recipe.lr, recipe.warmup_steps)
    return model, losses, steps, time.perf_counter() - start


# --- the cache ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$SPARSE24_BENCH_CACHE``, else ``~/.cache/sparse24/bench``."""
    return Path(os.environ.get("SPARSE24_BENCH_CACHE") or "~/.cache/sparse24/bench").expanduser()


def _data_fingerprint(recipe: Recipe) -> str:
    if isinstance(recipe, GPT2Recipe):
        return stdlib_corpus().fingerprint
    digits = demo.load_digits()
    digest = hashlib.sha256()
    for tensor in (digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test, digits.y_test):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _key(name: str, recipe: Recipe) -> dict[str, Any]:
    return {"name": name, "recipe": dataclasses.asdict(recipe), "data": _data_fingerprint(recipe), "code_version": CODE_VERSION}


def cache_path(name: str, *, recipe: Recipe | None = None, directory: str | os.PathLike | None = None) -> Path:
    """Where ``load`` keeps this model: ``<dir>/<name>-<16 hex of the key>.safetensors``."""
    recipe = _recipe(name, recipe)
    key = hashlib.sha256(json.dumps(_key(name, recipe), sort_keys=True).encode()).hexdigest()[:16]
    return Path(directory or cache_dir()) / f"{name}-{key}.safetensors"


def _save(model: nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share memory (GPT-2's tied embedding and head)
    state = {key: value.detach().clone().contiguous().cpu() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", _METADATA_KEY: json.dumps(metadata)})


def info(name: str, *, recipe: Recipe | None = None, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """What was recorded when the cached weights were trained: the key, the recipe, :func:`train`'s record."""
    from safetensors import safe_open

    path = cache_path(name, recipe=recipe, directory=directory)
    if not path.is_file():
        raise FileNotFoundError(f"no cached {name} weights at {path}")
    with safe_open(str(path), "pt") as handle:
        return json.loads((handle.metadata() or {})[_METADATA_KEY])


def load(name: str, *, train_if_missing: bool = True, recipe: Recipe | None = None, directory: str | os.PathLike | None = None) -> nn.Module:
    """The trained model (eval mode, fp32, on the CPU), from the cache or trained now and cached.

    Raises ``FileNotFoundError`` when the weights are not cached and ``train_if_missing`` is
    False. ``recipe`` (default :data:`RECIPES` ``[name]``) and ``directory`` (default
    :func:`cache_dir`) choose the entry.
    """
    recipe = _recipe(name, recipe)
    path = cache_path(name, recipe=recipe, directory=directory)
    if path.is_file():
        model = build(name, recipe=recipe)
        state = read_state_dict(path)
        check_fits(model, state, str(path))
        model.load_state_dict(state)
        return model.eval()
    if not train_if_missing:
        raise FileNotFoundError(f"no cached {name} weights at {path} (train_if_missing=True, or `{COMMAND}`, trains them)")
    return _train_and_cache(name, recipe, path)


def _train_and_cache(name: str, recipe: Recipe, path: Path) -> nn.Module:
    logger.info("training %s (cache: %s)", name, path)
    model, record = train(name, recipe=recipe)
    _save(model, path, {**_key(name, recipe), **record, "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    logger.info("trained %s in %.0f s; cached at %s", name, record["train_seconds"], path)
    return model


# --- batches, loss, quality --------------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _next_byte(model: nn.Module, batch: Tensor, **forward: Any) -> tuple[Tensor, Any]:
    """Next-byte cross-entropy of a byte-level LM on a ``[batch, context]`` tensor of byte ids, and the model's output
    (``forward``: more keyword arguments for the model)."""
    batch = batch.to(_device(model))
    out = model(input_ids=batch, use_cache=False, **forward)
    logits = out.logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1)), out


def _lm_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Next-byte cross-entropy of a GPT-2 (or the MoE) on a ``[batch, context]`` tensor of byte ids."""
    return _next_byte(model, batch)[0]


def _moe_training_loss(coef: float) -> Callable[[nn.Module, Tensor], Tensor]:
    """Next-byte cross-entropy plus ``coef`` times the router's load-balancing loss (training the MoE only)."""

    def loss(model: nn.Module, batch: Tensor) -> Tensor:
        cross_entropy, out = _next_byte(model, batch, output_router_logits=True)
        return cross_entropy + coef * out.aux_loss

    return loss


def _vit_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Cross-entropy of a ViT classifier on an ``(images, labels)`` batch."""
    device = _device(model)
    images, labels = batch
    return F.cross_entropy(model(pixel_values=images.to(device)).logits, labels.to(device))


def _demo_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """``sparse24.demo.loss_fn`` with the batch moved to the model's device."""
    device = _device(model)
    return demo.loss_fn(model, (batch[0].to(device), batch[1].to(device)))


def loss_fn(name: str) -> Callable[[nn.Module, Any], Tensor]:
    """``loss(model, batch)`` for the batches of :func:`calibration_batches` and :func:`finetune_batches`."""
    recipe = _recipe(name, None)
    if isinstance(recipe, GPT2Recipe):
        return _lm_loss
    return _vit_loss if isinstance(recipe, ViTRecipe) else _demo_loss


def _lm_logits(model: nn.Module, batch: Tensor) -> Tensor:
    """The next-byte logits ``[batch, context - 1, 256]`` that :func:`_lm_loss` scores."""
    return model(input_ids=batch.to(_device(model)), use_cache=False).logits[:, :-1]


def _vit_logits(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The class logits of a ViT on an ``(images, labels)`` batch (labels unused)."""
    return model(pixel_values=batch[0].to(_device(model))).logits


def _demo_logits(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The class logits of a demo model on an ``(images, labels)`` batch (labels unused)."""
    return model(batch[0].to(_device(model)))


def logits_fn(name: str) -> Callable[[nn.Module, Any], Tensor]:
    """``logits(model, batch)``: the predictions :func:`loss_fn` scores, ``[..., classes]`` (Taylor's ``labels="model"``)."""
    recipe = _recipe(name, None)
    if isinstance(recipe, GPT2Recipe):
        return _lm_logits
    return _vit_logits if isinstance(recipe, ViTRecipe) else _demo_logits


def _batches(name: str, count: int, seed: int, batch_size: int, recipe: Recipe) -> list[Any]:
    if isinstance(recipe, GPT2Recipe):
        stream: Iterator[Any] = _lm_stream(recipe, seed, batch_size)
    else:
        stream = _digits_stream(seed, batch_size)
    return [batch for _, batch in zip(range(count), stream)]


def calibration_batches(name: str, n: int, seed: int, *, batch_size: int = 4, recipe: Recipe | None = None) -> list[Any]:
    """``n`` batches of ``batch_size`` from the training split, chosen by ``seed``.

    LM: ``[batch_size, context]`` int64 byte ids (random windows of the train files).
    Classifiers: ``(images [batch_size, 1, 8, 8], labels)`` from shuffled training data.
    """
    recipe = _recipe(name, recipe)
    return _batches(name, _positive(n, "n"), seed, _positive(batch_size, "batch_size"), recipe)


def finetune_batches(name: str, steps: int, seed: int, *, batch_size: int | None = None, recipe: Recipe | None = None) -> list[Any]:
    """``steps`` training batches (same forms as :func:`calibration_batches`) for a short recovery finetune.

    ``batch_size`` defaults to the dense training's (LM: the recipe's; classifiers: 64).
    """
    recipe = _recipe(name, recipe)
    if batch_size is None:
        batch_size = recipe.batch_size if isinstance(recipe, (GPT2Recipe, ViTRecipe)) else 64
    return _batches(name, _positive(steps, "steps"), seed, _positive(batch_size, "batch_size"), recipe)


def _digits_xy(split: str) -> tuple[Tensor, Tensor]:
    digits = demo.load_digits()
    return {"train": (digits.x_train, digits.y_train), "val": (digits.x_val, digits.y_val), "test": (digits.x_test, digits.y_test)}[split]


def _check_split(split: str) -> None:
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test' (the held-out ones), got {split!r}")


@torch.no_grad()
def evaluate(name: str, model: nn.Module, *, split: str = "test", recipe: Recipe | None = None) -> dict[str, Any]:
    """The model's quality on a held-out split (``"test"``, or ``"val"`` for choices); the model's mode is restored.

    LM: ``{"metric": "perplexity", "value", "higher_is_better": False, "bits_per_byte",
    "tokens"}`` over the recipe's ``eval_windows`` windows of held-out files (every
    position predicted from the ones before it in its window). Classifiers:
    ``{"metric": "accuracy", "value": top-1 %, "higher_is_better": True, "examples",
    "cross_entropy"}`` (the mean loss of the true labels, finer than the accuracy of a few
    hundred examples).
    """
    recipe = _recipe(name, recipe)
    _check_split(split)
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        if isinstance(recipe, GPT2Recipe):
            windows = _eval_windows(stdlib_corpus().data[split], recipe.eval_windows, recipe.context)
            total, tokens = 0.0, 0
            for chunk in windows.split(16):
                chunk = chunk.to(device)
                logits = model(input_ids=chunk, use_cache=False).logits[:, :-1].float()
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"))
                tokens += chunk[:, 1:].numel()
            nll = total / tokens
            return {"metric": "perplexity", "value": math.exp(nll), "higher_is_better": False, "split": split, "bits_per_byte": nll / math.log(2), "tokens": tokens}
        x, y = _digits_xy(split)
        correct, total = 0, 0.0
        for images, labels in demo.batches(x, y, 256):
            output = model(pixel_values=images.to(device)).logits if isinstance(recipe, ViTRecipe) else model(images.to(device))
            correct += int((output.argmax(1).cpu() == labels).sum())
            total += float(F.cross_entropy(output.float().cpu(), labels, reduction="sum"))
        return {"metric": "accuracy", "value": 100.0 * correct / len(y), "higher_is_better": True, "split": split, "examples": len(y), "cross_entropy": total / len(y)}
    finally:
        model.train(was_training)


def baseline(name: str, *, split: str = "test", recipe: Recipe | None = None) -> dict[str, Any]:
    """A model-free reference in :func:`evaluate`'s form: the unigram byte model (train counts, add-one) on the same
    targets for the LM; always answering the most frequent training class for the classifiers."""
    recipe = _recipe(name, recipe)
    _check_split(split)
    if isinstance(recipe, GPT2Recipe):
        counts = torch.bincount(_train_bytes(recipe).long(), minlength=VOCAB).double() + 1.0
        log_p = (counts / counts.sum()).log()
        targets = _eval_windows(stdlib_corpus().data[split], recipe.eval_windows, recipe.context)[:, 1:].reshape(-1)
        nll = float(-log_p[targets].mean())
        return {"metric": "perplexity", "value": math.exp(nll), "higher_is_better": False, "split": split, "bits_per_byte": nll / math.log(2), "tokens": len(targets), "model": "unigram"}
    majority = int(torch.bincount(_digits_xy("train")[1]).argmax())
    labels = _digits_xy(split)[1]
    return {"metric": "accuracy", "value": 100.0 * float((labels == majority).double().mean()), "higher_is_better": True, "split": split, "examples": len(labels), "model": "majority class"}


# --- the results table -------------------------------------------------------------------------


def _layers(model: nn.Module, report: sparse24.SparsityReport) -> dict[str, Any]:
    """Parameters and the GEMM weights that took 2:4 (by module type) and those skipped, with why."""
    types: dict[str, int] = {}
    for layer in report.sparse_layers:
        types[layer.module_type] = types.get(layer.module_type, 0) + 1
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gemm_parameters": report.prunable_params,
        "sparse_layers": len(report.sparse_layers),
        "gemm_layers": len(report.layers),
        "sparse_layer_types": types,
        "skipped": {layer.name: layer.reason for layer in report.layers if not layer.sparse},
    }


def collect(
    names: tuple[str, ...] = NAMES, *, recipes: dict[str, Recipe] | None = None, directory: str | os.PathLike | None = None, retrain: bool = False
) -> dict[str, Any]:
    """Load (training what is not cached) and measure each model: size, training record, dense quality, baselines.

    ``recipes`` (default :data:`RECIPES`) and ``directory`` (default :func:`cache_dir`) as in
    :func:`load`; ``retrain`` trains even cached models again (and replaces their files), to
    measure the training time on a quiet machine.
    """
    models = {}
    for name in names:
        recipe = _recipe(name, (recipes or RECIPES)[name])
        path = cache_path(name, recipe=recipe, directory=directory)
        model = _train_and_cache(name, recipe, path) if retrain else load(name, recipe=recipe, directory=directory)
        start = time.perf_counter()
        test = evaluate(name, model, split="test", recipe=recipe)
        eval_seconds = time.perf_counter() - start
        pruned = copy.deepcopy(model)
        report = sparse24.sparsify(pruned, "magnitude", progress=False)  # TensorRT policy
        models[name] = {
            "recipe": dataclasses.asdict(recipe),
            "trained": info(name, recipe=recipe, directory=directory),
            **_layers(model, report),
            "test": test,
            "val": evaluate(name, model, split="val", recipe=recipe),
            "baseline": baseline(name, split="test", recipe=recipe),
            "magnitude_oneshot_test": evaluate(name, pruned, split="test", recipe=recipe),
            "eval_seconds": eval_seconds,
        }
        if isinstance(recipe, GPT2Recipe):
            corpus = stdlib_corpus()
            models[name]["corpus"] = {
                "root": corpus.root,
                "fingerprint": corpus.fingerprint,
                **{f"{split}_files": len(corpus.files[split]) for split in SPLITS},
                **{f"{split}_bytes": len(corpus.data[split]) for split in SPLITS},
            }
    return {"code_version": CODE_VERSION, "models": models}


def _quality(result: dict[str, Any]) -> str:
    return f"{result['value']:.2f}" if result["metric"] == "perplexity" else f"{result['value']:.2f} %"


def markdown(results: dict[str, Any]) -> str:
    """The table of ``oneshot_models.json``."""
    lines = [
        *header("Evaluation models for the one-shot pruning benchmark", results),
        "",
        "Dense models trained once by `bench/oneshot_models.py` and cached. Training time as recorded when each was trained, "
        "with the machine's 1-minute load average at the start (the training's own threads count once it runs; other work "
        "on the machine slows training down, several times over on this 2-core CPU). Quality on the held-out "
        "test split: perplexity per byte (lower is better) for the LM, top-1 accuracy for the classifiers; the baseline is a "
        "unigram byte model (LM) or the majority class. The magnitude column is a sanity check that pruning costs "
        "something: 2:4 by magnitude, one-shot, no calibration.",
        "",
        "| model | parameters | 2:4-eligible GEMM layers (TensorRT policy) | training | dense val | dense test | baseline test | 2:4 magnitude one-shot test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, model in results["models"].items():
        trained = model["trained"]
        load_average = f", load {trained['load_average']:.1f}" if trained.get("load_average") is not None else ""
        types = ", ".join(f"{count} {kind}" for kind, count in model["sparse_layer_types"].items())
        lines.append(
            f"| {name} | {model['parameters']:,} | {model['sparse_layers']}/{model['gemm_layers']} ({types}) | "
            f"{trained['train_seconds']:.0f} s, {trained['steps']} steps{load_average} | {_quality(model['val'])} | "
            f"{_quality(model['test'])} | {_quality(model['baseline'])} ({model['baseline']['model']}) | {_quality(model['magnitude_oneshot_test'])} |"
        )
    lines.append("")
    for name, model in results["models"].items():
        recipe = ", ".join(f"{key}={value}" for key, value in model["recipe"].items())
        lines.append(f"- **{name}**: {recipe}; skipped: " + ("; ".join(f"{layer} ({reason})" for layer, reason in model["skipped"].items()) or "none") + ".")
        if "corpus" in model:
            corpus = model["corpus"]
            test = model["test"]
            lines.append(
                f"  Corpus: {corpus['root']} (.py files; site-packages, test suites, pydoc_data left out), split by a hash of the path: "
                f"train {corpus['train_files']} files / {corpus['train_bytes']:,} bytes, val {corpus['val_files']} / {corpus['val_bytes']:,}, "
                f"test {corpus['test_files']} / {corpus['test_bytes']:,}; fingerprint {corpus['fingerprint'][:16]}. Test perplexity over "
                f"{test['tokens']:,} predicted bytes = {test['bits_per_byte']:.2f} bits/byte (unigram {model['baseline']['bits_per_byte']:.2f}); "
                f"one evaluation takes {model['eval_seconds']:.1f} s here."
            )
    lines += ["", "Per-model records (recipe, cache key, training loss) are in oneshot_models.json; this table is generated from it."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="directory for oneshot_models.json/.md")
    parser.add_argument("--models", nargs="+", choices=NAMES, default=list(NAMES))
    parser.add_argument("--retrain", action="store_true", help="train cached models again (replacing their files) to re-measure training")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is faster on a machine others keep busy)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(_positive(args.threads, "--threads"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m sparse24.bench.oneshot_models", *given]) if given else COMMAND
    results = {"command": command, "environment": environment(command), **collect(tuple(args.models), retrain=args.retrain)}
    print(write_results(out, "oneshot_models", results, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
