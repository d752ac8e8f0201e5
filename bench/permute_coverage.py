"""Which transformers model types ``sparse24.permute`` covers, and the classes it has no rule for.

Every model type of this transformers (``CONFIG_MAPPING_NAMES``, or ``--types``) is built from its default config
shrunk to 64-wide layers (one layer, 4 heads; nested configs too, and the settings they mirror in dicts; only the
keys it has, and the sizes tied to them: a rotary or latent-attention part of a head, experts 32 wide, an
encoder-decoder's MLPs 96 wide, a detector's 8 queries, SAM's image features 64 wide, LayoutLMv3's box embedding, a
CNN's stages one block deep), as its causal LM where it has one, else its base model (``--task classify``: its
sequence, image or audio classification model), and handed to ``sparse24.permute``, which reads the modules (no
forward pass). A type counts as covered when no layer is reported
"in no permutable group: <class> has no permutation rule"; the others list those classes with their number of
layers. Types that do not build
from such a config (its validation, an optional package missing, over ``--timeout`` seconds) are listed apart, with
the error; so are the models that built but whose permutation took over ``--timeout`` seconds of its own (types whose
nested configs keep their full sizes), and those on which ``sparse24.permute`` raised (a sparse24 bug: exit 1). Each
type is built and permuted in a process of its own: one whose process dies, or is still running at three times the
timeout, counts with those (exit 1), and the other types are still checked. Writes ``permute_coverage[_classify].json``
and the ``.md`` generated from it. Run it alone: a type whose nested configs keep sizes the shrinking does not reach
can build a model of several GiB before the timeout stops it (a run here beside another was killed by the kernel at
13 GiB resident).

    python bench/permute_coverage.py --out bench/results
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from sparse24.bench._common import ChildDied, environment, header, in_child, write_results

SIZES = dict(
    vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
TASKS = {
    "causal-lm": ("AutoModelForCausalLM", "AutoModel"),
    "classify": ("AutoModelForSequenceClassification", "AutoModelForImageClassification", "AutoModelForAudioClassification"),
}
# sizes tied to the tiny ones, set where the type's default config has the key (a number above it): an encoder-decoder's heads
# (Whisper's), XLNet's head, a rotary part of a head (GPT-J, CodeGen), multi-head latent attention's parts (DeepSeek-V2
# and V3, MiniCPM3...), outputs that must be the other tower's width (SigLIP's text projection, a pooler's), a
# mixture of experts' expert width (LongCat-Flash's 512 experts were 2048 wide: 201M parameters in its one layer) and the
# width its experts work in (Muse Spark's 256 projected to 4096), an encoder-decoder's MLPs (NLLB-MoE's 128 experts are
# encoder_ffn_dim wide: 4096), a detector's queries (RT-DETR picks its 300 among the anchors of a 32-pixel image: 21),
# SAM's: its image encoder's output and feature pyramid (the width its prompt encoder and mask decoder take), the
# positional features (half that width), SAM-HQ's ViT features, its MLPs; Ergo's first dense MLP (32768 wide) and
# shared experts; the other tower's width a Q-Former or a decoder's cross-attention takes (BLIP-2's 1408, T5Gemma's
# 2304); an audio codec's first conv's filters, doubled at each of its strides (VibeVoice's tokenizer's last conv took
# 2048 x 16: SparseGPT's Hessian alone was 1 GiB); MLPs' widths under their other names (T5's d_ff, UDOP's 4096;
# XLNet's d_inner; OPT's ffn_dim; Falcon's ffn_hidden_size; FastSpeech 2's linear units, 1536, whose 3-wide convs
# gave SparseGPT 4608-wide Hessians: 39 s on one thread)
TIED = dict(
    encoder_attention_heads=4, decoder_attention_heads=4, d_head=16, rotary_dim=8, projection_size=64, pooler_output_size=64,
    qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=16, kv_lora_rank=32, q_lora_rank=32, moe_intermediate_size=32, moe_hidden_size=64,
    encoder_ffn_dim=96, decoder_ffn_dim=96, num_queries=8, output_channels=64, fpn_hidden_size=64, num_pos_feats=32, vit_dim=64, mlp_dim=96,
    first_dense_intermediate_size=96, shared_intermediate_size=96, encoder_hidden_size=64, cross_attention_hidden_size=64, num_filters=8,
    d_ff=96, d_inner=96, ffn_dim=96, ffn_hidden_size=96, dim_feedforward=96, feed_forward_size=96, encoder_linear_units=96, decoder_linear_units=96,
)  # fmt: skip
WIDTH = 0.125  # EfficientNet's width coefficient at the tiny sizes
UNRULED = re.compile(r"in no permutable group: (\w+) has no permutation rule")


class _Timeout(BaseException):  # not an Exception: no "except Exception" on the way swallows it
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


_ABSENT = object()


def _held(config: Any, key: str) -> Any:
    """``config``'s value for ``key`` (through its attribute map), ``_ABSENT`` where it has none or derives it (a
    property: xLSTM's v_head_dim), and None where it holds one per layer (Gemma 4's head_dim: reading it raises)."""
    if isinstance(getattr(type(config), key, None), property):
        return _ABSENT
    try:
        return getattr(config, key)
    except AttributeError:
        return _ABSENT
    except Exception:  # noqa: BLE001 (transformers' AmbiguousGlobalPerLayerAttributeError)
        return None


def _sizes(default: Any) -> dict[str, Any]:
    """The tiny sizes for a config like ``default`` (a type's default config, or one nested in it): ``SIZES``, those
    tied to them (``TIED``), and the ones that must agree with both."""
    # only the keys it has (a head_dim added to Swin's config fails its check), and not a size it holds per stage (Swin's
    # heads, SegFormer's...): that keeps its own list
    held = {key: _held(default, key) for key in (*SIZES, *TIED)}
    sizes = {key: size for key, size in SIZES.items() if held[key] is not _ABSENT and not isinstance(held[key], (list, tuple))}
    # only where it lowers the default: a smaller one stays (the time-series transformers' 2 heads and 32-wide MLPs,
    # NeuCodec's 48-wide codec encoder), and so does a 0, which is none of it (granite-moe-SWA's shared experts)
    sizes.update({key: size for key, size in TIED.items() if isinstance(held[key], int) and held[key] > size})
    head = SIZES["hidden_size"] // SIZES["num_attention_heads"]
    rope = getattr(default, "rope_parameters", None)
    rope = rope if isinstance(rope, dict) else {}
    rotary = rope.get("partial_rotary_factor") or getattr(default, "partial_rotary_factor", None) or 1.0
    if "kv_lora_rank" in sizes:  # latent attention: head_dim's rotary part is qk_rope_head_dim; a key/value head per query head
        rope_part = sizes.get("qk_rope_head_dim", 0)  # none (GLM-5 Next's 0: no rotary part, head_dim 0)
        sizes.update(head_dim=int(rope_part / rotary), num_key_value_heads=SIZES["num_attention_heads"])
        sizes["qk_head_dim"] = sizes["qk_nope_head_dim"] + rope_part
    if "mrope_section" in getattr(type(default), "ignore_keys_at_rope_validation", ()) and rope:
        # multimodal rotary sections (Qwen2-VL, GLM-4V...) summing to half the rotary part: the default's scaled where
        # it has them, else two equal ones and a smaller third (ERNIE 4.5 VL stacks its first two)
        half = int(head * rotary) // 2
        if rope.get("mrope_section"):
            sections = [round(n * half / sum(rope["mrope_section"])) for n in rope["mrope_section"]]
            sections[0] += half - sum(sections)
        else:
            third = max(1, half // 4) + (half - max(1, half // 4)) % 2
            sections = [(half - third) // 2, (half - third) // 2, third]
        sizes["rope_parameters"] = {**rope, "mrope_section": sections}
    depths = getattr(default, "depths", None)
    if "num_hidden_layers" not in sizes and isinstance(_held(default, "num_layers"), int) and not isinstance(depths, (list, tuple)):
        sizes["num_layers"] = 1  # its number of layers under another name (LongCat-Flash's: num_hidden_layers derives from it)
    if isinstance(depths, (list, tuple)):  # a model in stages (ConvNeXt, Swin): every stage, one block deep
        sizes.pop("num_hidden_layers", None)  # its number of stages
        sizes["depths"] = [1] * len(depths)
        # its widths per stage, where they are the stages' (HGNetV2's are stage_out_channels: its hidden_sizes only tell a
        # detector built on it, D-FINE, what those are)
        if isinstance(getattr(default, "hidden_sizes", None), (list, tuple)) and len(default.hidden_sizes) == len(depths) and _held(default, "stage_out_channels") is _ABSENT:
            heads = held["num_attention_heads"]  # its heads per stage (PVT's), which each stage's width must hold
            per_stage = heads if isinstance(heads, (list, tuple)) and len(heads) == len(depths) else range(1, len(depths) + 1)
            sizes["hidden_sizes"] = [16 * n for n in per_stage]
    if isinstance(_held(default, "width_coefficient"), float):
        # EfficientNet's compound scaling (ALIGN's vision tower too): B7's default, 2.0 wide and 3.1 deep at 600 pixels,
        # is 64M parameters; an eighth as wide (8-40 channels), a quarter as deep, 64 pixels. hidden_dim is its last
        # conv's width (its 1280 channels, scaled), which its norm and head take
        sizes.update(width_coefficient=WIDTH, depth_coefficient=0.25, image_size=64, hidden_dim=_scaled_filters(default, 1280))
    vision = getattr(default, "vision_config", None)
    if isinstance(_held(vision, "width_coefficient"), float) and isinstance(_held(default, "projection_dim"), int):
        # ALIGN's text projection meets its image embedding: its last stage's channels, scaled
        sizes["projection_dim"] = _scaled_filters(vision, vision.out_channels[-1])
    staged = _hiera_widths(default)
    if staged:  # SAM 2's Hiera: 16 per head at each stage, one block each, all windowed (a global block first in a stage failed)
        sizes.update(embed_dim_per_stage=staged, hidden_size=staged[0], blocks_per_stage=[1] * len(staged), global_attention_blocks=[])
    backbone = _hiera_widths(getattr(default, "backbone_config", None))
    if backbone and isinstance(_held(default, "backbone_channel_list"), (list, tuple)):
        sizes["backbone_channel_list"] = backbone[::-1]  # the neck reads the stages' widths, the last first
    if isinstance(_held(default, "coordinate_size"), int) and isinstance(_held(default, "shape_size"), int):
        # LayoutLMv3's box embedding: its four corners' and two sides' embeddings, concatenated, are hidden_size wide
        sizes.update(coordinate_size=12, shape_size=(SIZES["hidden_size"] - 4 * 12) // 2)
    if _held(default, "num_experts_per_tok") is None and isinstance(_held(default, "n_routed_experts"), int):
        sizes["num_experts_per_tok"] = 2  # None in DeepSeek-V2's default, which its router's topk cannot take
    if isinstance(getattr(default, "expand", None), int) and isinstance(getattr(default, "num_heads", None), int):
        sizes["num_heads"] = SIZES["hidden_size"] * default.expand // SIZES["head_dim"]  # Mamba-2's heads span its inner width
    return sizes


def _scaled_filters(default: Any, channels: int) -> int:
    """``channels`` of an EfficientNet like ``default`` at the tiny width, rounded as the model rounds them."""
    from types import SimpleNamespace

    from transformers.models.efficientnet.modeling_efficientnet import round_filters

    return round_filters(SimpleNamespace(width_coefficient=WIDTH, depth_divisor=default.depth_divisor), channels)


def _hiera_widths(default: Any) -> list[int]:
    """Tiny widths for a vision backbone in stages whose widths are a list beside its heads per stage (SAM 2's Hiera:
    96 to 768, which ``hidden_size`` alone, the first, does not shrink): 16 per head; else none."""
    heads = _held(default, "num_attention_heads_per_stage")
    if isinstance(_held(default, "embed_dim_per_stage"), (list, tuple)) and isinstance(heads, (list, tuple)):
        return [16 * n for n in heads]
    return []


def _shrink(config: Any, default: Any, depth: int = 0) -> None:
    """Set the tiny sizes on ``config``'s nested configs too (a vision tower's, a text model's...), on the keys they
    have; ``default``: the type's default config, its nested ones at the same places."""
    import transformers

    for name, value in list(vars(config).items()):
        if isinstance(value, transformers.PretrainedConfig) and depth < 3:
            nested = getattr(default, name, value)
            for key, size in _sizes(nested).items():  # the keys it has, None ones too (HunYuan-VL's text head_dim)
                if _held(value, key) is not _ABSENT:
                    try:
                        setattr(value, key, size)
                    except Exception:  # noqa: BLE001 (a property without a setter, a validator): keep its own size
                        pass
            _shrink(value, nested, depth + 1)
            _mirror(value)


def _mirror(config: Any) -> None:
    """Set the tiny sizes in the settings a config derived from them when it was built, as dicts mirroring its keys
    (FastSpeech 2's ``encoder_config["linear_units"]``, from its ``encoder_linear_units``): a nested config is shrunk
    after it is built, so they kept its defaults."""
    for name, value in vars(config).items():
        if isinstance(value, dict) and name.endswith("_config"):
            prefix = name[: -len("config")]
            for key in value:
                if _held(config, prefix + key) is not _ABSENT:
                    value[key] = getattr(config, prefix + key)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def tiny_model(model_type: str, task: str) -> Any:
    """``model_type`` built from its default config at the tiny sizes: the first of ``task``'s auto classes that builds,
    else the last one's error (a string). The config's own refusal of the sizes raises. Its random weights are the
    same in every run (torch seeds its default generator at random in each process: an MoE's routing, and so which
    experts get a gradient, changed from run to run)."""
    import transformers

    default = transformers.AutoConfig.for_model(model_type)
    config = transformers.AutoConfig.for_model(model_type, **_sizes(default))
    _shrink(config, default)
    error = ""
    for name in TASKS[task]:
        try:
            torch.manual_seed(0)
            return getattr(transformers, name).from_config(config)
        except Exception as exc:  # noqa: BLE001 (no such model for this type, or it does not build: try the next)
            error = _error(exc)
    return error


def warm_up() -> None:
    """Do here, once, what the first type's build and permutation would do in every process :func:`isolated` forks:
    import transformers' auto classes and model modules (the permutation's rules look up every module they name:
    9 s), by building and permuting Llama's tiny model."""
    import transformers

    from sparse24.permute import permute

    for names in TASKS.values():
        for name in names:
            getattr(transformers, name)
    permute(tiny_model("llama", "causal-lm").eval())


def isolated(model_type: str, task: str, timeout: int) -> dict:
    """:func:`cover` in a process of its own: one type's allocations neither carry over to the next nor depend on the
    types before it. A process killed past both timeouts, or dead otherwise, is a permute failure (the run fails)."""
    try:
        return in_child(cover, model_type, task, timeout, wall=3 * timeout)
    except ChildDied as exc:
        return {"type": model_type, "status": "permute failed", "error": f"building or permuting it: {exc}"}


def cover(model_type: str, task: str, timeout: int) -> dict:
    """Build one model type's tiny model, permute it, and count its layers in classes without a rule."""
    from sparse24.permute import permute

    row: dict[str, Any] = {"type": model_type}
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        model = tiny_model(model_type, task)
        if isinstance(model, str):
            row.update(status="not built", error=model)
        else:
            row.update(model=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()))
            torch.manual_seed(0)
            signal.alarm(timeout)  # the permutation's own budget, whatever the build took
            try:
                report = permute(model.eval())
            except _Timeout:
                row.update(status="permute timed out", error=f"over {timeout} s")
            except Exception as exc:  # noqa: BLE001 (sparse24's own failure on a model that built: reported apart, exit 1)
                row.update(status="permute failed", error=_error(exc))
            else:
                unruled = collections.Counter(m.group(1) for s in report.skipped if (m := UNRULED.search(s.reason)))
                row.update(status="permuted", groups=len(report.groups), unruled=dict(sorted(unruled.items())))
    except _Timeout:
        row.update(status="not built", error=f"over {timeout} s")
    except Exception as exc:  # noqa: BLE001 (the config itself refuses the tiny sizes)
        row.update(status="not built", error=_error(exc))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def markdown(results: dict) -> str:
    rows = results["types"]
    permuted = [r for r in rows if r["status"] == "permuted"]
    gaps = [r for r in permuted if r["unruled"]]
    crashed = [r for r in rows if r["status"] == "permute failed"]
    slow = [r for r in rows if r["status"] == "permute timed out"]
    failed = [r for r in rows if r["status"] == "not built"]
    models = "its causal LM, else its base model" if results["task"] == "causal-lm" else "its sequence, image or audio classification model"
    lines = [
        *header("Channel-permutation coverage of transformers model types", results),
        "",
        f"Each model type built from its default config at 64-wide layers ({models}) and passed to `sparse24.permute`. "
        f"{len(rows)} types: {len(permuted)} built and permuted, {len(permuted) - len(gaps)} of them with no layer in a class "
        f"without a rule, {len(gaps)} with such classes (below); {len(slow)} built but not permuted within the timeout; "
        f"{len(failed)} not built from the tiny config.",
        "",
        "| model type | model | groups permuted | classes without a rule (layers) |",
        "|---|---|---|---|",
    ]
    for r in gaps:
        classes = ", ".join(f"{name} ({count})" for name, count in r["unruled"].items())
        lines.append(f"| {r['type']} | {r['model']} | {r['groups']} | {classes} |")
    if crashed:
        lines += ["", f"`sparse24.permute` raised on {len(crashed)} models that built (a sparse24 bug):", "", "| model type | error |", "|---|---|"]
        lines += [f"| {r['type']} | {r['error'].replace('|', '/')} |" for r in crashed]
    if slow:
        lines += ["", f"Built, but `sparse24.permute` did not finish within the timeout ({len(slow)}):", "", "| model type | model | parameters |", "|---|---|---|"]
        lines += [f"| {r['type']} | {r['model']} | {r['parameters']:,} |" for r in slow]
    lines += ["", "Not built from the tiny config:", "", "| model type | error |", "|---|---|"]
    lines += [f"| {r['type']} | {r['error'].replace('|', '/')} |" for r in failed]
    lines += ["", "Generated from the JSON beside it."]
    return "\n".join(lines) + "\n"


def model_types(parser: argparse.ArgumentParser, value: str | None) -> list[str]:
    """``--types``: the comma-separated model types (every one this transformers knows when None); an unknown one,
    or none, is the parser's error."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:
        parser.error("needs transformers: pip install transformers")
    types = sorted(CONFIG_MAPPING_NAMES) if value is None else [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in types if t not in CONFIG_MAPPING_NAMES]
    if unknown or not types:
        parser.error(f"--types: {', '.join(unknown) or 'none given'} not a model type of this transformers")
    return types


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results", help="directory for permute_coverage[_classify].json/.md")
    parser.add_argument("--types", default=None, help="comma-separated model types (default: every one this transformers knows)")
    parser.add_argument("--task", choices=tuple(TASKS), default="causal-lm")
    parser.add_argument("--timeout", type=int, default=60, help="seconds to build each model type, and again to permute it")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    types = model_types(parser, args.types)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    results = {
        "command": " ".join(["python", "bench/permute_coverage.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(),
        "transformers": transformers.__version__,
        "task": args.task,
        "types": [],
    }
    name = "permute_coverage" if args.task == "causal-lm" else "permute_coverage_classify"
    warm_up()
    logging.disable(logging.WARNING)  # transformers' notes on each tiny config
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for model_type in types:
                results["types"].append(isolated(model_type, args.task, args.timeout))
    finally:
        logging.disable(logging.NOTSET)
    print(write_results(out, name, results, markdown))
    statuses = collections.Counter(r["status"] for r in results["types"])
    if statuses["permute failed"]:
        print(f"error: sparse24.permute raised on {statuses['permute failed']} model types that built (listed above)", file=sys.stderr)
        return 1
    if not statuses["permuted"]:
        print("error: no model type built from the tiny config: nothing was checked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
