"""Which transformers model types Wanda and SparseGPT (``--taylor``: Taylor) calibrate and prune, in one pass and block by block.

Every model type of this transformers (or ``--types``) is built as ``bench/permute_coverage.py`` builds it (its default
config at 64-wide layers, one layer; its causal LM where it has one, else its base model) and given two batches made
up here from its main input: token ids (the second sequence right-padded, where the forward takes an
``attention_mask``), pixels (clips of frames for a video model; a VLM vision tower's patches with their
``grid_thw``), audio (a mono channel for a codec; whole tokens where the model counts samples per token; with text
for a text-audio model), audio features (with the mask of frames a forward requires), or a time series, or SigLIP 2's
sequences of patches, with an encoder-decoder's decoder ids. Where its dense forward
runs on them, the model is pruned from the same weights by magnitude (the layers any method prunes), Wanda,
SparseGPT, and SparseGPT with ``sequential=True``. Layers in a part of the model these inputs do not run (a vision
tower given text; not an expert no token was routed to) are excluded from all four, and counted.

A row gives how many of magnitude's layers each method pruned, the reasons it gave for the others, whether the
padding was left out of the statistics, the blocks ``sequential=True`` chose, and whether the outputs finite on the dense model (and after magnitude's pruning) stayed finite.
Types whose forward the made-up inputs do not drive are listed apart with the error (a limit of this bench, not of
sparse24), so are sparse24's own clear refusals (a ``Sparse24Error``: its message) and the types over the time or
memory limits. Anything else sparse24 raised, and an output that pruning made non-finite, fail the run (exit 1).
Each type runs in a process of its own, forked under the memory limit (``--memory-limit``): what one type allocates
never counts against the next, and a type whose process dies (a crash in C, the kernel's out-of-memory killer) fails
the run with the signal named, the other types still checked.

``--taylor`` prunes with Taylor instead, as ``bench_oneshot.py``'s best rows do: the model Fisher (squared, per
sample, ``labels="model"``) at once, by pairs (``pairs=True``), and block by block (``sequential=True``), and writes
``oneshot_coverage_taylor.{json,md}``. Its logits are the model's ``logits`` where its output has them (sparse24's
default, no ``logits_fn``); a base model has no prediction, so there a stand-in ``logits_fn`` takes the first
floating-point field of the output with 2 or more in its last dimension on one sample (``last_hidden_state``, say; a
feature map's channels moved last), and the row names it. A cell counts the layers to which the calibration gave no
importance (no gradient reached them, or no input): magnitude's mask, as sparse24's report notes; the JSON names them.

    python bench/oneshot_coverage.py --out bench/results
    python bench/oneshot_coverage.py --taylor --out bench/results
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import inspect
import logging
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from sparse24.bench._common import ChildDied, environment, header, in_child, write_results
from sparse24.bench.permute_coverage import _alarm, _error, _Timeout, model_types, tiny_model, warm_up

METHODS = {
    "wanda": dict(method="wanda"),
    "sparsegpt": dict(method="sparsegpt"),
    "sequential": dict(method="sparsegpt", sequential=True),
}
FISHER = dict(method="taylor", squared=True, per_sample=True, labels="model")  # the model Fisher, bench_oneshot.py's
TAYLOR_METHODS = {
    "fisher": FISHER,
    "pairs": dict(FISHER, pairs=True),
    "sequential": dict(FISHER, sequential=True),
}


@dataclasses.dataclass(frozen=True)
class Family:
    """One results file's methods: their columns (label -> ``sparsify`` options) and how its table names them."""

    stem: str
    title: str
    methods: dict[str, dict[str, Any]]
    headers: tuple[str, ...]
    pruned_by: str  # what pruned the models, in the table's first sentence
    padding: str  # what leaves the padding out, and after how many types of each column: "... on N of them {each[0]}, ..."
    each: tuple[str, ...]
    logits: bool = False  # the model Fisher: the model's logits, else a stand-in (``logits_for``), named in each row


FAMILIES = {
    "data": Family(
        "oneshot_coverage", "Wanda and SparseGPT coverage of transformers model types", METHODS, ("Wanda", "SparseGPT", "block by block"),
        "pruned by magnitude, Wanda, SparseGPT and SparseGPT with `sequential=True`", "the statistics", ("with Wanda", "with SparseGPT", "block by block"),
    ),
    "taylor": Family(
        "oneshot_coverage_taylor", "Taylor coverage of transformers model types", TAYLOR_METHODS, ("model Fisher", "by pairs", "block by block"),
        "pruned by magnitude and by Taylor's model Fisher (squared, per sample, `labels=\"model\"`) at once, by pairs "
        "(`pairs=True`) and block by block (`sequential=True`)", "the model Fisher's draws", ("at once", "by pairs", "block by block"),
        logits=True,
    ),
}  # fmt: skip
NOTHING = "calibrated with nothing to prune"  # the markdown's status for a row with no layer to prune
MAGNITUDE_THERE = "magnitude's mask there: "  # the report's notes on layers (or parts) the calibration left without importance
LENGTH, PADDED = 16, 4  # tokens per sequence; the second sequence's last PADDED are padding
SAMPLES = 4000  # audio samples per clip; the second clip's last quarter is padding


def _configs(config: Any) -> list[Any]:
    """The config and its nested ones (text, vision, audio...), the top level first."""
    import transformers

    return [config, *(v for v in vars(config).values() if isinstance(v, transformers.PretrainedConfig))]


def _first(config: Any, *keys: str, default: Any = None) -> Any:
    for nested in _configs(config):
        for key in keys:
            value = getattr(nested, key, None)
            if value is not None:
                return value
    return default


def _padding_mask(length: int, padded: int) -> torch.Tensor:
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, length - padded :] = 0
    return mask


def _ids(model: nn.Module, length: int, generator: torch.Generator) -> torch.Tensor:
    """Two sequences of token ids past the special ones (0-2), within the model's vocabulary and 64."""
    high = max(4, min(int(_first(model.config, "vocab_size", default=64)), 64))
    return torch.randint(3, high, (2, length), generator=generator)


def _tokens(model: nn.Module, params: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
    batch = {"input_ids": _ids(model, LENGTH, generator)}
    if "attention_mask" in params:
        batch["attention_mask"] = _padding_mask(LENGTH, PADDED)
    return batch


def _decoder(model: nn.Module, params: Any, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``batch`` with an encoder-decoder's ``decoder_input_ids`` (T5's, Whisper-style speech models')."""
    if getattr(model.config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        batch["decoder_input_ids"] = _ids(model, LENGTH // 2, generator)
    return batch


def _companions(model: nn.Module, params: Any, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``batch`` with the inputs a forward needs beside its text or image, where it takes them: the text's language
    (X-MOD's ``lang_ids``; FastSpeech 2's, which it may take), its words' boxes (``bbox``: x0 <= x1, y0 <= y1;
    LayoutLM's in 0-1000, as its position tables index them, else Bros's and UDOP's fractions of the page), a region
    detector's features and boxes (LXMERT's ``visual_feats``, ``visual_pos``), SegGPT's prompt image and mask (its
    image_size is the two stacked: each half as high)."""
    config = model.config
    if "input_ids" in batch:
        ids = batch["input_ids"]
        if "lang_ids" in params:
            batch["lang_ids"] = torch.zeros(len(ids), dtype=torch.long)
        if "bbox" in params:
            corners = torch.rand(*ids.shape, 2, 2, generator=generator).sort(dim=-2).values  # [.., (min, max), (x, y)]
            boxes = corners.flatten(-2)  # x0, y0, x1, y1
            batch["bbox"] = (boxes * 1000).long() if hasattr(config, "max_2d_position_embeddings") else boxes
        if "visual_feats" in params and hasattr(config, "visual_feat_dim"):
            batch["visual_feats"] = torch.randn(len(ids), 8, int(config.visual_feat_dim), generator=generator)
            batch["visual_pos"] = torch.rand(len(ids), 8, int(_first(config, "visual_pos_dim", default=4)), generator=generator)
    if "prompt_pixel_values" in params and "pixel_values" in batch:
        image = batch["pixel_values"]
        image = image[..., : image.shape[-2] // 2, :].contiguous()
        batch.update(pixel_values=image, prompt_pixel_values=image.flip(0), prompt_masks=torch.ones_like(image))
    return batch


def _pixels(model: nn.Module, generator: torch.Generator, frames: int | None = None, key: str = "pixel_values") -> dict[str, torch.Tensor]:
    """Two images, or (``frames``) two clips of that many ``[channels, h, w]`` frames (VideoMAE's, ViViT's input), of
    the config's image size (a number, height and width: MGP-STR's 32 x 128, or a dict of them)."""
    size = _first(model.config, "image_size", default=32)
    size = (size.get("height", 32), size.get("width", 32)) if isinstance(size, dict) else size
    height, width = (size[0], size[-1]) if isinstance(size, (list, tuple)) else (size, size)
    channels = _first(model.config, "num_channels", default=3)
    shape = (2, channels, int(height), int(width)) if frames is None else (2, frames, channels, int(height), int(width))
    return {key: torch.randn(*shape, generator=generator)}


def _features(model: nn.Module, params: Any, key: str, generator: torch.Generator, channels_first: bool) -> dict[str, torch.Tensor]:
    """Two clips' features under ``key`` (``input_features``; Gemma 3n's ``audio_mel``), with the mask of frames their
    forward takes where it takes one (every frame valid)."""
    config = model.config
    # W2v-BERT's features come two frames stacked (feature_projection_input_dim: 2 x its feature_size), FunASR-Nano's
    # num_stacked_frames (7 x 80)
    keys = ("feature_projection_input_dim", "num_mel_bins", "feature_size", "input_feat_per_channel", "input_feat_size")
    mel = int(_first(config, *keys, default=80)) * int(_first(config, "num_stacked_frames", default=1))
    positions, window = _first(config, "max_source_positions"), _first(config, "n_window")
    # Whisper-style encoders take exactly 2 x their positions; Qwen3-ASR's chunks are 2 x its window
    frames = 2 * int(positions) if channels_first and positions else 2 * int(window) if window else 64
    shape = (2, mel, frames) if channels_first else (2, frames, mel)
    batch = {key: torch.randn(*shape, generator=generator)}
    if f"{key}_mask" in params:  # required (Qwen3-ASR's), or optional yet read (AudioFlamingo 3's encoder: None fails)
        # 1 marks a valid frame (Qwen3-ASR's input_features_mask); Gemma 3n's audio_mel_mask marks padding
        batch[f"{key}_mask"] = torch.zeros(2, frames, dtype=torch.bool) if key == "audio_mel" else torch.ones(2, frames, dtype=torch.long)
    return batch


def _series(model: nn.Module, params: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Two time series of the config's context length (at most 64 steps, whole 32-step patches past that: TimesFM's
    16384), per input channel where it has them (PatchTST's, PatchTSMixer's), with TimesFM's padding and frequency."""
    length = min(int(_first(model.config, "context_length", default=64)), 64)
    channels = _first(model.config, "num_input_channels")
    batch = {"past_values": torch.randn(2, length, *([int(channels)] if channels else []), generator=generator)}
    if "past_values_padding" in params:
        batch["past_values_padding"] = torch.zeros(2, length)
    if "freq" in params:
        batch["freq"] = torch.zeros(2, 1, dtype=torch.long)
    return batch


def _audio(model: nn.Module, params: Any, generator: torch.Generator, mono: bool = False) -> dict[str, torch.Tensor]:
    """Two clips, the second's last quarter padding: ``[2, samples]``, or (``mono``) a codec's ``[2, 1, samples]``;
    ``SAMPLES``, or a whole number of the model's tokens where it says how many samples make one (Muse Spark's 1920)."""
    per_token = _first(model.config, "samples_per_token")
    samples = -(-SAMPLES // per_token) * per_token if isinstance(per_token, int) else SAMPLES
    batch = {"input_values": torch.randn(2, samples, generator=generator)}
    if "attention_mask" in params:
        batch["attention_mask"] = _padding_mask(samples, samples // 4)
        batch["input_values"][1, -samples // 4 :] = 0
    if mono:
        batch["input_values"] = batch["input_values"][:, None]
    return batch


def _patches(model: nn.Module, params: Any, grid: str, generator: torch.Generator, frames: int | None) -> dict[str, torch.Tensor]:
    """Two images as a VLM's vision tower takes them (Qwen2.5-VL's, GLM-4V's): their patches, each flattened to
    ``channels x frames x patch x patch`` (``frames`` None: ``[channels, patch, patch]``, Kimi K2.5's), under its
    first parameter (hidden_states or pixel_values), and ``grid`` (its grid_thw) of 1 x 4 x 4 patches each: whole 2 x 2
    windows of its patch merger (``merge_sizes`` too, where it takes them: VideoLLaMA 3's)."""
    config = model.config
    patch, channels = int(_first(config, "patch_size", default=14)), int(_first(config, "in_channels", "num_channels", default=3))
    merge = int(_first(config, "spatial_merge_size", "merge_size", default=2))
    side = 2 * merge
    shape = (channels, patch, patch) if frames is None else (channels * frames * patch * patch,)
    batch = {next(iter(params)): torch.randn(2 * side * side, *shape, generator=generator), grid: torch.tensor([[1, side, side]] * 2)}
    if "merge_sizes" in params:
        batch["merge_sizes"] = torch.tensor([merge] * 2)
    return batch


def _patch_sequence(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Two images as SigLIP 2's NaFlex towers take them: a sequence of 4 x 4 flattened patches each, their
    ``pixel_attention_mask`` (every patch an image's) and ``spatial_shapes`` (the grid, in patches)."""
    patch, channels = int(_first(model.config, "patch_size", default=16)), int(_first(model.config, "num_channels", default=3))
    return {
        "pixel_values": torch.randn(2, 16, channels * patch * patch, generator=generator),
        "pixel_attention_mask": torch.ones(2, 16, dtype=torch.long),
        "spatial_shapes": torch.tensor([[4, 4]] * 2),
    }


def _positioned_patches(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Two images as Gemma 4's vision tower takes them: flattened patches, and each patch's (x, y) in the grid
    (``pixel_position_ids``), a square grid of whole pooling windows (two windows a side)."""
    patch, pool = int(_first(model.config, "patch_size", default=16)), int(_first(model.config, "pooling_kernel_size", default=1))
    side = 2 * pool
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    positions = torch.stack([xs.flatten(), ys.flatten()], dim=-1)
    return {"pixel_values": torch.randn(2, side * side, 3 * patch * patch, generator=generator), "pixel_position_ids": positions.expand(2, -1, -1).clone()}


def example_batches(model: nn.Module) -> list[list[dict[str, torch.Tensor]]]:
    """Candidate calibration sets (two batches each) for ``model``'s forward, most specific first."""
    params = inspect.signature(model.forward).parameters
    main = getattr(model, "main_input_name", "input_ids")
    if not isinstance(main, str) or main not in params:
        # its base class's default (SmolVLM's vision tower's input_ids), or a list (OneFormer's pixel_values and
        # task_inputs): the forward's first parameter
        main = next(iter(params), "input_ids")

    def two(make: Any) -> list[dict[str, torch.Tensor]]:
        return [
            _companions(model, params, _decoder(model, params, make(g), g), g)
            for g in (torch.Generator().manual_seed(seed) for seed in (0, 1))
        ]

    frames = _first(model.config, "num_frames")  # a video model's clips come before its frames alone
    frames = [int(frames), None] if isinstance(frames, int) else [None]
    candidates = []
    grid = next((key for key in ("grid_thw", "image_grid_thw") if key in params), None)
    if grid is not None:  # a vision tower of patches: flattened, temporal_patch_size, one or two frames deep; or not flattened
        depths = dict.fromkeys((int(_first(model.config, "temporal_patch_size", default=1)), 1, 2, None))
        candidates += [two(lambda g, d=d: _patches(model, params, grid, g, d)) for d in depths]
    videos = "pixel_values_videos" if main == "pixel_values_videos" or "pixel_values" not in params else "pixel_values"
    clips = [f or 2 for f in frames] if videos == "pixel_values_videos" else frames  # a video tower's clips (V-JEPA 2's: two frames)
    if "spatial_shapes" in params:  # images as patch sequences (SigLIP 2), alone or with text
        candidates.append(two(lambda g: _patch_sequence(model, g)))
        if "input_ids" in params:
            candidates.append(two(lambda g: {**_tokens(model, params, g), **_patch_sequence(model, g)}))
    if "pixel_position_ids" in params and main == "pixel_values":  # patches with their places (Gemma 4's tower)
        candidates.append(two(lambda g: _positioned_patches(model, g)))
    if main in ("pixel_values", "pixel_values_videos"):
        candidates += [two(lambda g, f=f: _pixels(model, g, f, videos)) for f in clips]
    elif main in ("input_features", "audio_mel"):
        candidates += [two(lambda g: _features(model, params, main, g, True)), two(lambda g: _features(model, params, main, g, False))]
    elif main == "input_values":
        length, bins = _first(model.config, "max_length"), _first(model.config, "num_mel_bins")
        if isinstance(length, int) and isinstance(bins, int):  # a spectrogram of its length (AST's 1024 frames x 128 bins)
            candidates.append(two(lambda g: {"input_values": torch.randn(2, length, bins, generator=g)}))
        candidates += [two(lambda g: _audio(model, params, g)), two(lambda g: _audio(model, params, g, mono=True))]
    elif main == "past_values":
        candidates.append(two(lambda g: _series(model, params, g)))
    if "input_ids" in params:
        candidates.append(two(lambda g: _tokens(model, params, g)))
        if videos in params:  # a text-image (or text-video: X-CLIP, VideoPrism) model takes both
            candidates += [two(lambda g, f=f: {**_tokens(model, params, g), **_pixels(model, g, f, videos)}) for f in clips]
        if main == "input_ids" and "input_values" in params:  # a text-audio model (PE Audio's): the text's mask only
            candidates += [two(lambda g, m=m: {**_audio(model, (), g, m), **_tokens(model, params, g)}) for m in (False, True)]
    return candidates


def calibration_data(model: nn.Module) -> tuple[list[dict[str, torch.Tensor]] | str, list[bool]]:
    """The first of ``example_batches`` the dense forward runs on with some output finite, and which outputs are; else
    why none (the last candidate's error)."""
    error = "no input this bench makes is one its forward takes"
    for candidate in example_batches(model):
        try:
            finite = _forward(model, candidate[0])
        except (MemoryError, _Timeout):
            raise
        except Exception as exc:  # noqa: BLE001 (these inputs are not the model's: try the next)
            _raise_if_memory(exc)
            error = _error(exc)
            continue
        if any(finite):
            return candidate, finite
        error = "the dense model's outputs are not finite on these inputs"
    return error, []


def _outputs(output: Any, depth: int = 0) -> list[torch.Tensor]:
    """Every floating-point tensor of a forward's output (a model output's fields, tuples, nested outputs)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return [t for v in values for t in _outputs(v, depth + 1)] if depth < 3 else []


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[bool]:
    """Which of one forward's floating-point outputs are finite, without a KV cache (as sparse24's calibration runs it)."""
    from sparse24.calibrate import no_kv_cache

    with torch.no_grad(), no_kv_cache(model):
        return [bool(torch.isfinite(t).all()) for t in _outputs(model(**batch))]


def logits_for(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[str, Callable[[nn.Module, Any], torch.Tensor] | None]:
    """What Taylor's model Fisher takes as ``model``'s logits: its output's own ``logits`` (sparse24's default: no
    ``logits_fn``), else a stand-in ``logits_fn`` giving the first floating-point field of the output with 2 or more
    "classes" on one sample of ``batch``: its last dimension, a feature map's ``[batch, channels, h, w]`` read with
    the channels last (a base model has no prediction); with none, sparse24's default, which refuses the output. The
    field's name (or "logits", or "none") comes first."""
    from sparse24.batch import call
    from sparse24.calibrate import no_kv_cache

    with torch.no_grad(), no_kv_cache(model):
        try:
            output = model(**{key: value[:1] for key, value in batch.items()})
        except Exception as exc:  # noqa: BLE001 (a model that takes no batch of one: choose on the batch as it is)
            _raise_if_memory(exc)
            output = model(**batch)
    if isinstance(output, torch.Tensor) or isinstance(output.get("logits") if isinstance(output, dict) else None, torch.Tensor):
        return "logits", None
    fields = output.items() if isinstance(output, dict) else enumerate(output) if isinstance(output, (tuple, list)) else ()

    def read(value: Any, first: bool, moved: bool) -> torch.Tensor:
        value = value[0] if first else value
        return value.movedim(1, -1) if moved else value

    for key, value in fields:
        # a tuple's first tensor (MGP-STR's logits: one per decoder); a 4-D field's channels moved last (a feature map),
        # else its last dimension as it is (PatchTST's [batch, channels, patches, width])
        first = isinstance(value, (tuple, list)) and bool(value) and isinstance(value[0], torch.Tensor)
        tensor = value[0] if first else value
        if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dim() >= 1):
            continue
        for moved in (True, False) if tensor.dim() == 4 else (False,):
            if read(value, first, moved).shape[-1] >= 2:
                name = f"{key}[0]" if first else str(key)
                return name, lambda model, batch, first=first, moved=moved: read(call(model, batch)[key], first, moved)
    return "none", None


def _not_run(model: nn.Module, batch: dict[str, torch.Tensor], names: list[str]) -> list[str]:
    """The GEMM layers in ``names`` whose module and parent module both did not run in ``model``'s forward: a part of
    the model these inputs do not reach. A layer whose parent ran but that did not run itself (Mamba's ``dt_proj``,
    read as a weight) stays: that is sparse24's to report; so does an expert's (in an ``experts`` container): whether
    a token reaches it is the router's choice, which sparse24 meets with magnitude's mask and a note."""
    from sparse24.calibrate import in_expert_module

    ran: set[str] = set()
    modules = dict(model.named_modules())
    handles = [module.register_forward_pre_hook(lambda m, a, n=name: ran.add(n)) for name, module in modules.items()]
    try:
        _forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    module_names = [name.rpartition(".")[0] for name in names]
    return [
        name for name, module in zip(names, module_names)
        if module not in ran and module.rpartition(".")[0] not in ran and not in_expert_module(module)
    ]


def _raise_if_memory(exc: Exception) -> None:
    """torch's failed allocation under the address-space limit (a RuntimeError) as the MemoryError it is."""
    if "can't allocate memory" in str(exc) or "bad_alloc" in str(exc):
        raise MemoryError(" ".join(str(exc).split())[:160]) from exc


def _calibrate(model: nn.Module, data: list[dict], exclude: list[str], layers: set[str], finite: list[bool], options: dict) -> dict[str, Any]:
    """Prune a copy of ``model`` with one method; what it pruned of ``layers``, why not the others, and whether the
    outputs that were ``finite`` on the dense model still are."""
    from sparse24.axes import gemm_weights
    from sparse24.calibrate import find_blocks
    from sparse24.errors import Sparse24Error
    from sparse24.sparsify import sparsify

    pruned = copy.deepcopy(model)
    start = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        report = sparsify(pruned, data=data, exclude=exclude or None, policy="any", progress=False, **options)
        output = _forward(pruned, data[0])
    except Sparse24Error as exc:
        return {"refused": _error(exc), "seconds": round(time.perf_counter() - start, 2)}
    except (MemoryError, _Timeout):
        raise
    except Exception as exc:  # noqa: BLE001 (anything else sparse24 raised: a bug, reported and failing the run)
        _raise_if_memory(exc)
        return {"error": _error(exc), "seconds": round(time.perf_counter() - start, 2)}
    dense = collections.Counter(
        layer.reason.split(":")[0] for layer in report.layers if layer.name in layers and not layer.sparse
    )
    result.update(
        pruned=sum(layer.sparse for layer in report.layers if layer.name in layers),
        dense=dict(sorted(dense.items())),
        padding=any(" leave out padding: " in note for note in report.notes),
        finite=all(after for after, before in zip(output, finite) if before),
        seconds=round(time.perf_counter() - start, 2),
    )
    filled = [name for note in report.notes if MAGNITUDE_THERE in note for name in note.partition(MAGNITUDE_THERE)[2].split("; ")]
    if filled:  # layers (or parts) the calibration gave no importance (no gradient, zero inputs): magnitude's mask, as the report says
        result["magnitude_mask"] = filled
    if options.get("sequential") and layers:  # (nothing to prune: no blocks to name; EnCodec's weight-normed convs)
        blocks = find_blocks(pruned, True, [w for w in gemm_weights(pruned) if w.name in layers])
        result["blocks"] = list(dict.fromkeys(name.rpartition(".")[0] for name, _ in blocks))
    return result


def cover(model_type: str, timeout: int, family: Family = FAMILIES["data"]) -> dict[str, Any]:
    """Build one model type's tiny model, find inputs its forward runs on, and prune it with each of ``family``'s methods."""
    from sparse24.sparsify import sparsify

    row: dict[str, Any] = {"type": model_type}
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        model = tiny_model(model_type, "causal-lm")
        if isinstance(model, str):
            row.update(status="not built", error=model)
            return row
        model.eval()
        row.update(model=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()))
        data, finite = calibration_data(model)
        if isinstance(data, str):
            row.update(status="no forward", error=data)
            return row
        row["inputs"] = sorted(data[0])
        torch.manual_seed(0)
        pruned = copy.deepcopy(model)
        magnitude = sparsify(pruned, "magnitude", policy="any", progress=False)
        eligible = [layer.name for layer in magnitude.layers if layer.sparse]
        # the outputs a method must keep finite: those that are on the dense model and after magnitude's pruning
        # (a random-init ALIGN's vision tower ends near 1e-23, and any pruning can take its embeddings to 0 / 0)
        finite = [dense and after for dense, after in zip(finite, _forward(pruned, data[0]))]
        del pruned
        excluded = _not_run(model, data[0], eligible)
        layers = set(eligible) - set(excluded)
        row.update(layers=len(layers), not_reached=len(excluded))
        chosen: dict[str, Any] = {}
        if family.logits:
            row["logits"], logits_fn = logits_for(model, data[0])
            chosen = {"logits_fn": logits_fn} if logits_fn is not None else {}
        for label, options in family.methods.items():
            signal.alarm(timeout)  # each method's own budget
            row[label] = _calibrate(model, data, excluded, layers, finite, {**options, **chosen})
        row["status"] = "calibrated"
    except _Timeout:
        row.update(status="timed out", error=f"over {timeout} s")
    except MemoryError as exc:
        row.update(status="over the memory limit", error=_error(exc))
    except Exception as exc:  # noqa: BLE001 (the config refuses the tiny sizes, or magnitude itself failed)
        try:
            _raise_if_memory(exc)
            row.update(status="not built" if "model" not in row else "failed", error=_error(exc))
        except MemoryError as memory:
            row.update(status="over the memory limit", error=_error(memory))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def isolated(model_type: str, timeout: int, family: Family, memory_limit: int) -> dict[str, Any]:
    """:func:`cover` in a process of its own, under ``memory_limit`` bytes of address space: one type's allocations
    neither carry over to the next nor depend on the types before it. A process killed past every phase's timeout is
    timed out; one that died otherwise failed (a crash no Python handler saw, listed with the bugs)."""
    try:
        return in_child(cover, model_type, timeout, family, memory_limit=memory_limit, wall=timeout * (2 + len(family.methods)))
    except ChildDied as exc:
        return {"type": model_type, "status": "timed out" if exc.timed_out else "failed", "error": str(exc)}


def _checked(row: dict[str, Any]) -> bool:
    """Whether a row's model was calibrated with layers to prune: one with none (magnitude prunes none of the layers
    the inputs reach) checked nothing, and is listed apart."""
    return row["status"] == "calibrated" and row["layers"] > 0


def _problems(row: dict[str, Any], methods: dict[str, dict[str, Any]]) -> list[str]:
    """What in a calibrated row is sparse24's bug: a method that raised other than a clear refusal, a non-finite output."""
    if row["status"] == "failed":
        return [row["error"]]
    found = []
    for label in methods:
        result = row.get(label) or {}
        if "error" in result:
            found.append(f"{label}: {result['error']}")
        elif result.get("finite") is False:
            found.append(f"{label}: the pruned model's output is not finite")
    return found


def _cell(result: dict[str, Any], layers: int) -> str:
    if "refused" in result:
        return f"refused: {result['refused']}"
    if "error" in result:
        return f"**raised** {result['error']}"
    text = f"{result['pruned']}/{layers}"
    if result["dense"]:
        text += " (dense: " + "; ".join(f"{reason} ({count})" for reason, count in result["dense"].items()) + ")"
    if result.get("magnitude_mask"):
        text += f" (magnitude's mask, no importance: {len(result['magnitude_mask'])})"
    if not result["finite"]:
        text += " **output not finite**"
    return text


def markdown(results: dict) -> str:
    family = FAMILIES[results.get("family", "data")]  # a file from before --taylor names none: Wanda's and SparseGPT's
    methods, last = family.methods, list(family.methods)[-1]
    rows = results["types"]
    done = [r for r in rows if _checked(r)]
    whole = [r for r in done if all(r[m].get("pruned") == r["layers"] for m in methods)]
    refused = [r for r in done if any("refused" in r[m] for m in methods)]
    bugs = [r for r in rows if _problems(r, methods)]
    padded = [r for r in done if "attention_mask" in r["inputs"]]
    filled = [r for r in done if any(r[m].get("magnitude_mask") for m in methods)]
    logits = collections.Counter(r["logits"] for r in done if family.logits)
    apart = collections.defaultdict(list)
    for r in rows:
        if r["status"] == "calibrated" and not _checked(r):
            apart[NOTHING].append({**r, "error": "magnitude prunes no layer these inputs reach: nothing was checked"})
        elif r["status"] not in ("calibrated", "failed"):
            apart[r["status"]].append(r)
    counts = [sum(r[m].get("padding", False) for r in padded) for m in methods]
    lines = [
        *header(family.title, results),
        "",
        f"Each model type built from its default config at 64-wide layers (its causal LM, else its base model), its forward "
        f"run on two batches made up here, then {family.pruned_by} "
        f"(policy `any`). {len(rows)} types: {len(done)} calibrated, {len(whole)} of them with every layer magnitude prunes "
        f"pruned by all three methods; {len(refused)} where a method refused with its own error; {len(bugs)} where sparse24 "
        f"raised otherwise or pruning made the output non-finite (a bug)"
        + "".join(f"; {len(v)} {k}" for k, v in sorted(apart.items()))
        + ".",
        "",
        f"Padding: {len(padded)} calibrated types took a padded `attention_mask`; {family.padding} left the padding out on "
        f"{counts[0]} of them {family.each[0]}, {counts[1]} {family.each[1]} and {counts[2]} {family.each[2]} "
        "(where the rows are ambiguous every row counts).",
    ]
    if family.logits:
        stand_in = {key: count for key, count in sorted(logits.items()) if key not in ("logits", "none")}
        lines += [
            "",
            f"Logits: the model's own `logits` on {logits['logits']} calibrated types (sparse24's default); a stand-in "
            f"(the first floating-point field of the output with 2 or more in its last dimension, a feature map's channels "
            f"moved last: a base model has no prediction) on {sum(stand_in.values())} ({', '.join(f'`{key}` {count}' for key, count in stand_in.items()) or 'none'}); "
            f"no such field on {logits['none']} (sparse24's default, which refuses the output).",
        ]
    lines += [
        "",
        f"Padding left out: for {' / '.join(family.headers)}, where the inputs have an `attention_mask`. "
        "Layers: magnitude's 2:4 layers that the inputs reach (not reached: in a part of the model these inputs do not run, "
        "excluded from every method). Each method's cell: layers pruned / layers, and the reasons it gave for the others"
        + (
            f"; magnitude's mask, no importance: the layers (or parts) to which the calibration gave none, and so magnitude's "
            f"mask, as the report's notes say ({len(filled)} types)"
            if filled else ""
        )
        + ".",
        "",
        f"| model type | model | inputs{' | logits' if family.logits else ''} | layers (not reached) | "
        + " | ".join(family.headers)
        + " | blocks `sequential=True` chose | padding left out |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if family.logits else ""),
    ]
    for r in done:
        blocks = ", ".join(f"`{b}`" for b in r[last].get("blocks", [])) or "-"
        padding = "/".join("yes" if r[m].get("padding") else "no" for m in methods) if "attention_mask" in r["inputs"] else "-"
        lines.append(
            f"| {r['type']} | {r['model']} | {', '.join(r['inputs'])} | "
            + (f"`{r['logits']}` | " if family.logits else "")
            + f"{r['layers']} ({r['not_reached']}) | "
            + " | ".join(_cell(r[m], r["layers"]).replace("|", "/") for m in methods)
            + f" | {blocks} | {padding} |"
        )
    if bugs:
        lines += ["", f"sparse24 raised, or made the output non-finite, on {len(bugs)} types (a bug):", "", "| model type | problem |", "|---|---|"]
        lines += [f"| {r['type']} | {'; '.join(_problems(r, methods)).replace('|', '/')} |" for r in bugs]
    for status, listed in sorted(apart.items()):
        lines += ["", f"{status[0].upper()}{status[1:]} ({len(listed)}):", "", "| model type | error |", "|---|---|"]
        lines += [f"| {r['type']} | {r['error'].replace('|', '/')} |" for r in listed]
    lines += ["", "Generated from the JSON beside it."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="directory for oneshot_coverage[_taylor].json/.md")
    parser.add_argument("--taylor", action="store_true", help="prune with Taylor's model Fisher (at once, by pairs, block by block) instead of Wanda and SparseGPT")
    parser.add_argument("--types", default=None, help="comma-separated model types (default: every one this transformers knows)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds to build each model type and find its inputs, and again for each method")
    parser.add_argument("--memory-limit", type=float, default=8.0, help="GiB of address space for each type's process (a type over it is listed apart)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    types = model_types(parser, args.types)
    family = FAMILIES["taylor" if args.taylor else "data"]
    if args.memory_limit <= 0:
        parser.error("--memory-limit must be positive")
    threads = torch.get_num_threads()  # put back: tests call main in their process
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    results = {
        "command": " ".join(["python", "bench/oneshot_coverage.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(),
        "transformers": transformers.__version__,
        **({"family": "taylor"} if args.taylor else {}),
        "types": [],
    }
    limit = int(args.memory_limit * (1 << 30))
    warm_up()
    logging.disable(logging.WARNING)  # transformers' notes on each tiny config, sparse24's on each dense layer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for model_type in types:
                results["types"].append(isolated(model_type, args.timeout, family, limit))
    finally:
        logging.disable(logging.NOTSET)
        torch.set_num_threads(threads)
    print(write_results(out, family.stem, results, markdown))
    bugs = [r["type"] for r in results["types"] if _problems(r, family.methods)]
    if bugs:
        print(f"error: sparse24 raised, or made the output non-finite, on {len(bugs)} model types: {', '.join(bugs)}", file=sys.stderr)
        return 1
    if not any(_checked(r) for r in results["types"]):
        print("error: no model type built and ran on this bench's inputs: nothing was checked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
