"""The models users bring, end to end, with tiny random-init transformers models.

Every architecture goes through ``sparsify`` with every criterion and ``verify``; one criterion
per architecture (rotated, so each criterion reaches the export at least twice) goes on
through two ``finetune`` steps, ``verify``, ``export_onnx`` with its default arguments in fp32
and fp16 (parity against PyTorch on fresh inputs) and ``inspect_onnx``. The 2:4 layers found
in the ONNX must be exactly the ones sparse24 masked, and the report must name every dense
weight with its reason. Causal LMs stay in their default config (``use_cache=True``).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import sparse24
from sparse24.trt_export import ExportError, ParityError, export_onnx, inspect_onnx
from sparse24.trt_export.export import _within_own_fp16_error
from sparse24.trt_export.parity import TOLERANCE, compare

transformers = pytest.importorskip("transformers")

VOCAB = 96
TOKENS = 8
CRITERIA = ("magnitude", "taylor", "wanda", "sparsegpt")
RTS = "is not a multiple of 16 (TensorRT policy"  # reduction % 16, TensorRT/ASP policy
OUT3 = "output size 3 is not a multiple of 8 (TensorRT policy"  # a 3-class head
RGB = "reduction size 3 is not divisible by 4"  # a stem conv on RGB input
DEPTHWISE = "depthwise convolution"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (tests/conftest.py)


def _with_bn_statistics(model: nn.Module, size: int = 32) -> nn.Module:
    """BatchNorm running statistics from a few random batches, as a trained model has them: with
    transformers' std-0.02 init and unit running variances a 50-conv MobileNetV2's logits are ~1e-27,
    and parity on outputs that small checks nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    generator = torch.Generator().manual_seed(100)
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, size, size, generator=generator))
    for norm in norms:
        norm.momentum = 0.1
    return model


def _tokens(generator: torch.Generator | None, batch: int) -> Tensor:
    return torch.randint(0, VOCAB, (batch, TOKENS), generator=generator)


def _pixels(size: int) -> Callable[[torch.Generator | None, int], Tensor]:
    return lambda generator, batch: torch.randn(batch, 3, size, size, generator=generator)


@dataclass(frozen=True)
class Arch:
    """A tiny model of one architecture and what sparse24 must make of it."""

    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator | None, int], Tensor]  # its one positional input, for a batch size
    key: str  # the input's keyword in a batch
    sparse: int  # GEMM weights sparse24 masks (TensorRT policy)
    skipped: dict[str, str]  # weight name glob -> the reason every dense GEMM weight it matches gives
    export_with: str  # the criterion taken on through finetune and export
    embeddings: tuple[str, ...] = ()  # what the report's note on embedding tables must name
    outputs: tuple[str, ...] = ("logits",)  # the ONNX outputs (a causal LM: logits, not its KV cache)
    labels: Callable[[torch.Generator, Tensor], Tensor] | None = None  # labels for the model's own loss
    causal_lm: bool = False

    def batch(self, generator: torch.Generator) -> dict[str, Tensor]:
        x = self.inputs(generator, 4)
        batch = {self.key: x}
        if self.labels is not None:
            batch["labels"] = self.labels(generator, x)
        return batch

    def data(self, n: int, seed: int = 1) -> list[dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(seed)
        return [self.batch(generator) for _ in range(n)]

    def model(self) -> nn.Module:
        torch.manual_seed(0)
        return self.build()


def _lm_labels(generator: torch.Generator, ids: Tensor) -> Tensor:
    return ids  # causal LMs shift the labels themselves


def _classes(generator: torch.Generator, x: Tensor) -> Tensor:
    return torch.randint(0, 3, (x.shape[0],), generator=generator)


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The model's own loss; an encoder without a head (T5) is trained towards small hidden states."""
    out = model(**batch)
    return out.loss if out.get("loss") is not None else out.last_hidden_state.square().mean()


T = transformers
ARCHS: dict[str, Arch] = {
    "bert": Arch(
        lambda: T.BertForSequenceClassification(
            T.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32, num_labels=3)
        ),
        lambda g, b: _tokens(g, b), "input_ids", sparse=7,  # q, k, v, o, intermediate, output, pooler
        skipped={"classifier.weight": OUT3}, export_with="magnitude", labels=_classes,
        embeddings=("bert.embeddings.word_embeddings.weight 96x32", "bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight"),
    ),
    "gpt2": Arch(  # Conv1D ([in, out] weights), lm_head tied to wte
        lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)),
        lambda g, b: _tokens(g, b), "input_ids", sparse=4,  # c_attn, attn.c_proj, c_fc, mlp.c_proj
        skipped={"lm_head.weight": "shared with the embedding table transformer.wte.weight (tied"}, export_with="taylor",
        embeddings=("transformer.wte.weight 96x32 (tied to lm_head.weight)", "transformer.wpe.weight"), labels=_lm_labels, causal_lm=True,
    ),
    "llama": Arch(  # GQA (2 KV heads for 4), gated MLP, RMSNorm, untied lm_head
        lambda: T.LlamaForCausalLM(
            T.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=32, tie_word_embeddings=False)
        ),
        lambda g, b: _tokens(g, b), "input_ids", sparse=2 * 7 + 1,  # q, k, v, o, gate, up, down per layer + lm_head
        skipped={}, export_with="wanda", embeddings=("model.embed_tokens.weight 96x32",), labels=_lm_labels, causal_lm=True,
    ),
    "qwen2": Arch(  # GQA with q/k/v biases, gated MLP, RMSNorm, lm_head tied to embed_tokens
        lambda: T.Qwen2ForCausalLM(
            T.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=32, tie_word_embeddings=True)
        ),
        lambda g, b: _tokens(g, b), "input_ids", sparse=7,
        skipped={"lm_head.weight": "shared with the embedding table model.embed_tokens.weight (tied"}, export_with="sparsegpt",
        embeddings=("model.embed_tokens.weight 96x32 (tied to lm_head.weight)",), labels=_lm_labels, causal_lm=True,
    ),
    "t5": Arch(  # capitalised module names (SelfAttention, DenseReluDense)
        lambda: T.T5EncoderModel(T.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)),
        lambda g, b: _tokens(g, b), "input_ids", sparse=6,  # q, k, v, o, wi, wo
        skipped={}, export_with="sparsegpt", outputs=("last_hidden_state",),
        embeddings=("shared.weight 96x32 (tied to encoder.embed_tokens.weight)", "relative_attention_bias.weight"),
    ),
    "vit": Arch(
        lambda: T.ViTForImageClassification(
            T.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=4, num_labels=3)
        ),
        _pixels(16), "pixel_values", sparse=6,  # q, k, v, o, fc1, fc2
        skipped={"vit.embeddings.patch_embeddings.projection.weight": RGB, "classifier.weight": OUT3}, export_with="wanda", labels=_classes,
    ),
    "resnet": Arch(
        lambda: T.ResNetForImageClassification(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=3)),
        _pixels(32), "pixel_values", sparse=5,  # two 3x3 convs per stage + the 1x1 shortcut
        skipped={"resnet.embedder.embedder.convolution.weight": RGB, "classifier.1.weight": OUT3}, export_with="taylor", labels=_classes,
    ),
    "convnext": Arch(  # 7x7 depthwise + Linear MLP (pwconv1/2 on channels-last activations)
        lambda: T.ConvNextForImageClassification(T.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3)),
        _pixels(32), "pixel_values", sparse=5,  # pwconv1, pwconv2 per stage + the 2x2 downsampling conv
        skipped={"convnext.embeddings.patch_embeddings.weight": RGB, "*.dwconv.weight": DEPTHWISE, "classifier.weight": OUT3},
        export_with="sparsegpt", labels=_classes,
    ),
    "mobilenet_v2": Arch(  # depthwise 3x3 + 1x1 convs; channels 8..80 at depth_multiplier 0.25
        lambda: _with_bn_statistics(T.MobileNetV2ForImageClassification(T.MobileNetV2Config(depth_multiplier=0.25, image_size=32, finegrained_output=False, num_labels=3))),
        _pixels(32), "pixel_values", sparse=21,  # 16 projections + 4 expansions with 16 or 32 inputs + the final 1x1
        skipped={
            "*.first_conv.convolution.weight": RGB,
            "*.conv_3x3.convolution.weight": DEPTHWISE,
            "*.conv_stem.reduce_1x1.convolution.weight": f"reduction size 8 {RTS}",
            "*.expand_1x1.convolution.weight": RTS,  # 8, 24 and 40 input channels
            "classifier.weight": OUT3,
        },
        export_with="magnitude", labels=_classes,
    ),
}


def _check_report(arch: Arch, report: sparse24.SparsityReport) -> set[str]:
    """The report masks ``arch.sparse`` weights and names every dense one with its reason; the masked names."""
    dense = [layer for layer in report.layers if not layer.sparse]
    for layer in dense:
        patterns = [p for p in arch.skipped if fnmatch.fnmatchcase(layer.name, p)]
        assert patterns, f"{layer.name} is dense ({layer.reason}) but not expected to be"
        assert layer.reason and arch.skipped[patterns[0]] in layer.reason, (layer.name, layer.reason)
    for pattern in arch.skipped:
        assert any(fnmatch.fnmatchcase(layer.name, pattern) for layer in dense), f"no dense weight matches {pattern}"
    assert len(report.sparse_layers) == arch.sparse, str(report)
    note = next((n for n in report.notes if n.startswith("embedding tables stay dense")), "")
    assert all(name in note for name in arch.embeddings) and bool(note) == bool(arch.embeddings), report.notes
    return {layer.name for layer in report.sparse_layers}


def _masks(model: nn.Module) -> dict[str, Tensor]:
    return {weight.name: mask for weight, mask in sparse24.masked_weights(model)}


def _sparsify(name: str, method: str) -> tuple[nn.Module, sparse24.SparsityReport]:
    arch = ARCHS[name]
    model = arch.model()
    report = sparse24.sparsify(model, method, data=arch.data(3), loss_fn=loss_fn if method == "taylor" else None, progress=False)
    return model, report


@pytest.mark.parametrize("method", CRITERIA)
@pytest.mark.parametrize("name", ARCHS)
def test_every_criterion_sparsifies_and_verifies(name: str, method: str) -> None:
    arch = ARCHS[name]
    model, report = _sparsify(name, method)
    masked = _check_report(arch, report)
    assert {layer.name for layer in sparse24.verify(model).sparse_layers} == masked
    assert all(0.0 < layer.importance_kept <= 1.0 for layer in report.sparse_layers)
    if method != "magnitude":  # the calibration data reached every layer: no mask is the one magnitude picks
        magnitude = _masks(_sparsify(name, "magnitude")[0])
        same = [n for n, mask in _masks(model).items() if torch.equal(mask, magnitude[n])]
        assert not same, f"{method} chose magnitude's masks for {same}"


def _chain_cases() -> list[Any]:
    return [pytest.param(name, id=f"{name}-{arch.export_with}") for name, arch in ARCHS.items()]


def test_every_criterion_reaches_the_export_twice() -> None:
    chosen = [arch.export_with for arch in ARCHS.values()]
    assert all(chosen.count(method) >= 2 for method in CRITERIA), chosen


@pytest.mark.parametrize("name", _chain_cases())
def test_sparsify_finetune_export_inspect(name: str, tmp_path) -> None:
    arch = ARCHS[name]
    model, report = _sparsify(name, arch.export_with)
    masked = _check_report(arch, report)
    before = {w.name: w.param.detach().clone() for w, _ in sparse24.masked_weights(model)}
    modes = {n: m.training for n, m in model.named_modules()}
    history = sparse24.finetune(model, arch.data(2, seed=2), loss_fn=loss_fn, steps=2, lr=1e-3, progress=False)
    assert len(history.steps) == 2 and {n: m.training for n, m in model.named_modules()} == modes
    assert all(not torch.equal(w.param, before[w.name]) for w, _ in sparse24.masked_weights(model)), "finetune left a masked weight as it was"
    assert {layer.name for layer in sparse24.verify(model).sparse_layers} == masked

    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = copy.deepcopy(model.config.to_dict())
    example = arch.inputs(None, 2)
    for dtype in ("fp32", "fp16"):
        exported = export_onnx(model, example, tmp_path / f"{name}-{dtype}.onnx", dtype=dtype)
        assert exported.parity.passed, str(exported.parity)
        for output in exported.parity.outputs:  # fp16 may be judged against PyTorch's own fp16 error, and then says so
            widened = [note for note in exported.parity.notes if note.startswith(f"fp16 output {output.name}:")]
            assert output.tolerance == TOLERANCE[dtype] or (dtype == "fp16" and widened and output.tolerance <= 0.1), str(exported.parity)
        assert tuple(o.name for o in exported.parity.outputs) == arch.outputs
        assert all(o.reference_max > 1e-2 for o in exported.parity.outputs), "outputs this small make parity meaningless"
        assert sorted(exported.sparsified) == sorted(masked) and exported.unused == ()
        assert any("use_cache=False" in note for note in exported.notes) == arch.causal_lm, exported.notes

        onnx = inspect_onnx(exported.path)
        two_four = [layer for layer in onnx.layers if layer.two_four]
        assert len(two_four) == len(masked), str(onnx)
        assert {layer.name for layer in two_four} == masked, "every 2:4 ONNX layer is named after the weight sparse24 masked"
        assert {layer.name for layer in onnx.sparse_layers} == masked  # and meets TensorRT's preconditions
        weights = [layer for layer in onnx.layers if layer.weight is not None]
        assert all(layer.dtype == ("float32" if dtype == "fp32" else "float16") for layer in weights)
        for layer in weights:  # the dense GEMM weights are in the graph too, and reported dense
            assert layer.two_four == (layer.name in masked), (layer.name, layer.status)
        if "*.dwconv.weight" in arch.skipped or "*.conv_3x3.convolution.weight" in arch.skipped:
            depthwise = [layer for layer in weights if any(DEPTHWISE in issue for issue in layer.issues)]
            assert depthwise and not any(layer.two_four for layer in depthwise)

    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()), "the export changed the model"
    assert model.config.to_dict() == config and not model.training
    if arch.causal_lm:
        assert model.config.use_cache is True


def test_a_failed_causal_lm_export_leaves_the_models_config_alone(tmp_path) -> None:
    model, _ = _sparsify("qwen2", "magnitude")
    with pytest.raises(ParityError):  # fp16 cannot meet a 1e-9 tolerance
        export_onnx(model, _tokens(None, 2), tmp_path / "qwen2.onnx", dtype="fp16", tolerance=1e-9)
    assert model.config.use_cache is True and list(tmp_path.iterdir()) == []


class _CacheAlways(nn.Module):
    """A wrapper whose forward asks for the KV cache itself: no config switch can drop it."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: Tensor) -> Any:
        return self.lm(input_ids=ids, use_cache=True)


def test_a_forward_that_returns_a_kv_cache_regardless_is_one_error_naming_the_flag(tmp_path) -> None:
    model, _ = _sparsify("llama", "magnitude")
    with pytest.raises(ExportError, match=r"output (cache|past_key_values) is a DynamicCache, which an ONNX graph cannot return.*use_cache=False"):
        export_onnx(_CacheAlways(model), _tokens(None, 2), tmp_path / "cache.onnx")
    assert model.config.use_cache is True and list(tmp_path.iterdir()) == []


def test_fp16_parity_widens_only_to_pytorchs_own_fp16_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(8)]).eval()
    for layer in model.modules():  # gain 3: rounding errors grow layer by layer, as in a deep fp16 net
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=3 / 8)
    half = copy.deepcopy(model).half()
    x = torch.randn(16, 64)
    with torch.no_grad():
        expected, own = [model(x)], [half(x.half())]
    own_relative = float((own[0].double() - expected[0]).abs().max() / expected[0].abs().max())
    assert TOLERANCE["fp16"] < own_relative < 0.1 / 3  # PyTorch's own fp16 misses the fixed 1e-2

    as_fp16 = compare(["y"], own, expected, TOLERANCE["fp16"])  # an export as good as PyTorch's own fp16 fails the fixed tolerance
    widened: dict[str, tuple[float, str]] = {}
    (judged,) = _within_own_fp16_error(half, (x.half(),), expected, as_fp16, widened)
    assert not as_fp16[0].passed and judged.passed and judged.tolerance == pytest.approx(3 * own_relative)
    assert widened["y"][1].startswith("fp16 output y: PyTorch's own fp16 model is off its fp32 output by")

    broken = compare(["y"], [expected[0] + 0.2 * expected[0].abs().max()], expected, TOLERANCE["fp16"])  # an exporter bug
    (judged,) = _within_own_fp16_error(half, (x.half(),), expected, broken, {})
    assert not judged.passed and judged.tolerance <= 0.1


def test_a_moe_causal_lm_exports_with_batched_mm_experts(tmp_path) -> None:
    """transformers computes MoE experts with its grouped_mm custom op, which torch.onnx cannot translate: the
    export's copies switch to batched_mm (the same products); the user's model keeps grouped_mm."""
    torch.manual_seed(0)
    config = T.Qwen3MoeConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    model = T.Qwen3MoeForCausalLM(config).eval()
    assert model.get_experts_implementation() == {"": "grouped_mm"}
    report = sparse24.sparsify(model, "magnitude", policy="any", progress=False)
    exported = export_onnx(model, _tokens(None, 2), tmp_path / "moe.onnx")
    assert exported.parity.passed, str(exported.parity)
    assert any("batched_mm" in note for note in exported.notes), exported.notes
    assert sorted(exported.sparsified) == sorted(layer.name for layer in report.sparse_layers)
    experts = ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"]
    assert set(experts) <= set(exported.sparsified)  # the stacked weights, each found 2:4 in an initializer by value
    assert exported.by_value == tuple(experts) and exported.to_dict()["by_value"] == experts
    assert exported._names_line().endswith("found by name (2 stacked experts weights by value)")
    (dense,) = [note for note in exported.notes if note.startswith("TensorRT runs 2 fused mixture-of-experts weight(s) dense")]
    assert dense.endswith(", ".join(experts))
    assert model.get_experts_implementation() == {"": "grouped_mm"} and model.config.use_cache is True


def test_fused_experts_must_be_found_2_4_in_the_onnx_initializers(tmp_path) -> None:
    """The stacked experts weights are in no ONNX GEMM (read per token by Gather): the check finds their
    initializer by value and fails when it is missing or not 2:4 along the weight's dim."""
    from onnx import helper, numpy_helper

    from sparse24 import SparsityError
    from sparse24.mask import prune_
    from sparse24.trt_export.export import _check_experts, _stacked_experts

    torch.manual_seed(0)
    config = T.Qwen3MoeConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    model = T.Qwen3MoeForCausalLM(config).eval()
    names = ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj", "lm_head.weight"]
    fused = _stacked_experts(model, names)
    assert list(fused) == names[:2]
    weight = fused[names[0]]
    with torch.no_grad():
        prune_(weight.param, weight.axis.reduction)

    def graph_with(*arrays):
        initializers = [numpy_helper.from_array(a.detach().numpy(), f"val_{i}") for i, a in enumerate(arrays)]
        return helper.make_model(helper.make_graph([], "g", [], [], initializer=initializers))

    other = fused[names[1]].param.detach().clone()
    prune_(other, 2)
    with torch.no_grad():
        fused[names[1]].param.copy_(other)
    assert _check_experts(graph_with(weight.param, other), tmp_path, fused) == {names[0]: "stacked", names[1]: "stacked"}
    with pytest.raises(SparsityError, match=r"experts\.down_proj \(no ONNX initializer holds it as exported, nor each of its experts' slices: 0 of 4"):
        _check_experts(graph_with(weight.param), tmp_path, fused)
    # the exporter may fold each expert's slice into its own initializer (JetMoE's F.linear(x, weight[e])): every one found
    assert _check_experts(graph_with(weight.param, *other), tmp_path, fused) == {names[0]: "stacked", names[1]: "per expert"}
    with pytest.raises(SparsityError, match=r"experts\.down_proj \(no ONNX initializer .* slices: 3 of 4 found\)"):
        _check_experts(graph_with(weight.param, *other[:3]), tmp_path, fused)
    changed = other.clone()
    changed[0, 0, :4] = 1.0  # a group of 4 with 4 nonzeros: no longer the exported parameter
    with pytest.raises(SparsityError, match=r"no ONNX initializer holds it"):
        _check_experts(graph_with(weight.param, changed), tmp_path, fused)
    with torch.no_grad():
        fused[names[1]].param.copy_(changed)  # the parameter itself not 2:4: found, and refused
    with pytest.raises(SparsityError, match=r"experts\.down_proj \(its initializer is not 2:4 along dim 2\)"):
        _check_experts(graph_with(weight.param, changed), tmp_path, fused)
    with pytest.raises(SparsityError, match=r"experts\.down_proj \(its experts' initializers are not all 2:4 along their dim 1\)"):
        _check_experts(graph_with(weight.param, *changed), tmp_path, fused)


def test_jetmoes_experts_export_as_one_2_4_gemm_weight_per_expert(tmp_path) -> None:
    """JetMoE's experts (JetMoeParallelExperts) run F.linear(rows, weight[e]) per expert: the exporter folds each
    expert's slice into its own initializer, a 2-D Gemm weight; the check finds every slice by value, 2:4. The padding
    token's embedding row is zero (its router logits tie, which ONNX's TopK breaks otherwise than torch): the parity
    inputs are drawn from 1 on, as the README advises."""
    torch.manual_seed(0)
    config = T.JetMoeConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_key_value_heads=2, kv_channels=8,
                            num_local_experts=4, num_experts_per_tok=2, pad_token_id=0)
    model = T.JetMoeForCausalLM(config).eval()
    report = sparse24.sparsify(model, "magnitude", policy="any", progress=False)
    exported = export_onnx(model, _tokens(None, 2).clamp(min=1), tmp_path / "jetmoe.onnx", input_ranges={"input_ids": (1, VOCAB)})
    assert exported.parity.passed, str(exported.parity)
    assert sorted(exported.sparsified) == sorted(layer.name for layer in report.sparse_layers)
    experts = [f"model.layers.0.{block}.{name}.weight" for block in ("mlp", "self_attention.experts") for name in ("input_linear", "output_linear")]
    assert sorted(exported.by_value) == sorted(experts)
    (held,) = [note for note in exported.notes if "held as one 2-D initializer per expert" in note]
    assert all(name in held for name in experts) and not any("TensorRT runs" in note for note in exported.notes)
    slices = [layer for layer in exported.sparsity.layers if layer.name.startswith("select")]
    assert len(slices) == 16 and all(layer.status == "2:4" for layer in slices)  # 4 weights x 4 experts, each a Gemm weight


def test_an_encoder_decoder_without_decoder_inputs_says_how_to_export_it(tmp_path) -> None:
    from sparse24 import Sparse24Error

    torch.manual_seed(0)
    model = T.T5ForConditionalGeneration(T.T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=4, decoder_start_token_id=0)).eval()
    sparse24.sparsify(model, "magnitude", progress=False)
    with pytest.raises(Sparse24Error, match=r"T5Config is an encoder-decoder.*model\.get_encoder\(\); on the command line --hf-class T5EncoderModel"):
        export_onnx(model, _tokens(None, 2), tmp_path / "t5.onnx")
    assert list(tmp_path.iterdir()) == []
    encoder = export_onnx(model.get_encoder(), _tokens(None, 2), tmp_path / "t5-encoder.onnx")  # as the error says
    assert encoder.parity.passed and encoder.sparsified
