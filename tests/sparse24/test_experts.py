"""Stacked mixture-of-experts weights (transformers' ``@use_experts_implementation`` modules, Llama 4's and JetMoE's
experts): 2:4 per expert."""

from __future__ import annotations

import copy
import logging
from typing import Any
from pathlib import Path

import pytest
import torch
from torch import nn

import sparse24
from sparse24.axes import Axis, GemmWeight, from_gemm_groups, from_gemm_matrix, gemm_axes, gemm_groups, gemm_matrix, gemm_weights
from sparse24.calibrate import gather
from sparse24.mask import is_two_four

transformers = pytest.importorskip("transformers")

VOCAB = 64
METHODS = {"wanda": {}, "sparsegpt": {"sequential": True}}  # the FSDP worker's cases


def qwen3_moe(experts: int = 4) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=16, num_experts=experts, num_experts_per_tok=2, moe_intermediate_size=32, max_position_embeddings=64,
    )
    return transformers.Qwen3MoeForCausalLM(config).eval()


def _gpt_oss() -> nn.Module:  # [experts, in, out] weights, biases, gate and up interleaved and clamped
    torch.manual_seed(0)
    config = transformers.GptOssConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        head_dim=16, num_local_experts=4, num_experts_per_tok=2, layer_types=["full_attention"], max_position_embeddings=64,
    )
    model = transformers.GptOssForCausalLM(config).eval()
    with torch.no_grad():  # random biases, so that a bias left out of the recomputed inputs shows
        for module in model.modules():
            if type(module).__name__ == "GptOssExperts":
                module.gate_up_proj_bias.normal_()
                module.down_proj_bias.normal_()
    return model


def batches(count: int = 4, length: int = 12) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, VOCAB, (2, length), generator=generator)} for _ in range(count)]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding, relative to the statistic's largest entry (they span many magnitudes)."""
    assert expected.abs().max() > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def _experts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__.endswith("Experts")]


def test_the_axis_is_each_experts_input_features() -> None:
    qwen, oss = _experts(qwen3_moe())[0], _experts(_gpt_oss())[0]
    assert gemm_axes(qwen) == {"gate_up_proj": Axis(reduction=2, output=1), "down_proj": Axis(reduction=2, output=1)}  # [E, out, in]
    assert gemm_axes(oss) == {"gate_up_proj": Axis(reduction=1, output=2), "down_proj": Axis(reduction=1, output=2)}  # [E, in, out]
    assert "gate_up_proj_bias" not in gemm_axes(oss)
    for module in (qwen, oss):
        for name, axis in gemm_axes(module).items():
            weight = GemmWeight("", module, name, axis)
            param = weight.param.detach()
            matrix = gemm_matrix(weight, param)  # [experts, out, in]: expert e's slice as F.linear takes it
            for e in range(module.num_experts):
                as_linear = param[e] if axis.reduction == 2 else param[e].T
                assert torch.equal(matrix[e], as_linear)
            assert torch.equal(from_gemm_matrix(weight, matrix), param)
            groups = gemm_groups(weight, param)
            experts, outputs, inputs = matrix.shape
            runs = matrix.reshape(experts, outputs, inputs // 4, 4)  # runs of 4 inputs of one output, per expert
            assert torch.equal(groups, (runs if axis.reduction == 2 else runs.transpose(1, 2)).reshape(experts, -1, 4))  # in stored order
            assert torch.equal(from_gemm_groups(weight, groups, param.shape), param)
            assert torch.equal(from_gemm_groups(weight, groups[1:3], param[1:3].shape), param[1:3])  # a shard of experts


def test_up_only_experts_have_their_up_proj_on_the_axis_rule() -> None:
    config = transformers.NemotronHConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    (module,) = [m for m in transformers.NemotronHForCausalLM(config).modules() if type(m).__name__ == "NemotronHExperts"]
    assert not module.has_gate and set(gemm_axes(module)) == {"up_proj", "down_proj"}


def _linear_inputs(model: nn.Module, batches: list, stacked: dict[Any, torch.Tensor]) -> dict[Any, list[list[torch.Tensor]]]:
    """Each expert's inputs to its GEMM of each ``stacked`` [experts, out, in] weight (by key), as the model's forward
    passes them to F.linear with that expert's slice."""
    seen: dict[Any, list[list[torch.Tensor]]] = {key: [[] for _ in range(len(weight))] for key, weight in stacked.items()}
    linear = torch.nn.functional.linear

    def spy(x, weight, bias=None):
        for key, experts in stacked.items():
            for e, expert in enumerate(experts):
                if weight.data_ptr() == expert.data_ptr() and weight.shape == expert.shape:
                    seen[key][e].append(x.detach())
        return linear(x, weight, bias)

    torch.nn.functional.linear = spy
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        torch.nn.functional.linear = linear
    return seen


def test_each_expert_is_calibrated_on_the_tokens_routed_to_it() -> None:
    model = qwen3_moe()
    data = batches()
    module = _experts(model)[0]
    model.set_experts_implementation("eager")  # an F.linear per expert
    expected = _linear_inputs(model, data, {name: getattr(module, name) for name in ("gate_up_proj", "down_proj")})
    weights = [w for w in gemm_weights(model) if w.module is module]
    hessians, counts = gather(model, weights, "hessian", data, progress=False)
    norms, _ = gather(model, weights, "norms", data, progress=False)
    for weight in weights:
        for e in range(module.num_experts):
            x = torch.cat(expected[weight.param_name][e]).float()
            assert x.shape[0] > 0
            _close(hessians[id(weight.param)][e], x.T @ x)
            _close(norms[id(weight.param)][e], x.norm(dim=0))
        assert counts[id(weight.param)] == 2 * 12 * 4  # every token of every batch reached the experts


def test_transposed_experts_with_biases_and_their_own_gate_are_calibrated_on_their_inputs() -> None:
    model = _gpt_oss()
    data = batches(2)
    module = _experts(model)[0]
    gated: list[torch.Tensor] = []  # GptOssExperts' eager forward gates each expert's tokens in turn, experts in order
    apply_gate = module._apply_gate
    module._apply_gate = lambda gate_up: gated.append(apply_gate(gate_up)) or gated[-1]
    model.set_experts_implementation("eager")
    with torch.no_grad():
        for batch in data:
            model(**batch)
    del module._apply_gate
    down = next(w for w in gemm_weights(model) if w.module is module and w.param_name == "down_proj")
    hessians, _ = gather(model, [down], "hessian", data, progress=False)
    total = sum(x.T.float() @ x.float() for x in gated)
    _close(hessians[id(down.param)].sum(0), total)


_STACKED = {  # the stacked experts weights of each build, all [experts, out, in]
    "qwen3_moe": [f"model.layers.{layer}.mlp.experts.{name}" for layer in range(2) for name in ("gate_up_proj", "down_proj")],
    "jetmoe": [f"model.layers.{layer}.{block}.{name}.weight" for layer in range(2) for block in ("mlp", "self_attention.experts") for name in ("input_linear", "output_linear")],
}


@pytest.mark.parametrize("build", ["qwen3_moe", "jetmoe"])
@pytest.mark.parametrize("method", ["magnitude", "taylor", "wanda", "sparsegpt"])
def test_every_method_prunes_the_experts(method: str, build: str) -> None:
    model = _BUILDS[build]()
    data = batches()
    options = {}
    if method != "magnitude":
        options["data"] = data
    if method == "taylor":
        options["loss_fn"] = lambda m, b: m(**b, labels=b["input_ids"]).loss
    before = copy.deepcopy(model)
    report = sparse24.sparsify(model, method, policy="any", sequential=method == "sparsegpt", progress=False, **options)
    pruned = {layer.name for layer in report.sparse_layers}
    assert set(_STACKED[build]) <= pruned
    assert not any(".gate." in name or ".router." in name for name in pruned)  # the routers pick the experts
    for name in _STACKED[build]:
        assert is_two_four(model.get_parameter(name).detach(), 2)
    assert not any("mixture-of-experts" in note for note in report.notes)
    sparse24.verify(model)
    if method == "sparsegpt":  # it updates the kept weights, and the output moves less than magnitude's
        magnitude = copy.deepcopy(before)
        sparse24.sparsify(magnitude, "magnitude", policy="any", progress=False)
        ids = data[0]["input_ids"]
        with torch.no_grad():
            dense = before(ids).logits
            assert (model(ids).logits - dense).norm() < (magnitude(ids).logits - dense).norm()


def test_an_expert_no_token_reached_gets_magnitudes_mask(caplog) -> None:
    model = qwen3_moe(experts=8)
    one_token = [{"input_ids": torch.tensor([[3]])}]  # 2 of 8 experts per layer see it
    routed: list[set[int]] = []
    handles = [m.register_forward_pre_hook(lambda m, args: routed.append(set(args[1].flatten().tolist()))) for m in _experts(model)]
    with torch.no_grad():
        model(**one_token[0])
    for handle in handles:
        handle.remove()
    assert [len(r) for r in routed] == [2, 2]
    magnitude = copy.deepcopy(model)
    sparse24.sparsify(magnitude, "magnitude", policy="any", progress=False)
    for method in ("wanda", "sparsegpt"):
        pruned = copy.deepcopy(model)
        with caplog.at_level(logging.WARNING, logger="sparse24"):
            report = sparse24.sparsify(pruned, method, data=one_token, policy="any", progress=False)
        (note,) = [n for n in report.notes if "no calibration input" in n]
        assert "model.layers.0.mlp.experts.gate_up_proj 6 of 8" in note and "model.layers.1.mlp.experts.down_proj 6 of 8" in note
        for seen, module, reference in zip(routed, _experts(pruned), _experts(magnitude)):
            for name in ("gate_up_proj", "down_proj"):
                weight, expected = getattr(module, name).detach(), getattr(reference, name).detach()
                for e in range(8):
                    assert int(weight[e].count_nonzero()) == weight[e].numel() // 2, (method, name, e)  # never wiped
                    if e not in seen:
                        assert torch.equal(weight[e] != 0, expected[e] != 0), (method, name, e)


@pytest.mark.parametrize(("build", "stored"), [("qwen3_moe", "model.layers.0.mlp.experts.gate_up_proj"), ("jetmoe", "model.layers.0.mlp.output_linear.weight")])
def test_training_keeps_the_experts_2_4_and_they_save_and_load(tmp_path, build: str, stored: str) -> None:
    model = _BUILDS[build]()
    sparse24.sparsify(model, "magnitude", policy="any", progress=False)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = batches(1)[0]["input_ids"]
    for _ in range(2):
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    sparse24.verify(model)
    sparse24.save(model, tmp_path / "moe.safetensors")
    fresh = _BUILDS[build]()
    sparse24.load(fresh, tmp_path / "moe.safetensors")
    sparse24.verify(fresh)
    assert torch.equal(fresh.get_parameter(stored), model.get_parameter(stored))
    assert stored in {layer.name for layer in sparse24.verify_file(tmp_path / "moe.safetensors").sparse_layers}


def test_the_runtime_says_it_leaves_the_experts_alone() -> None:
    model = qwen3_moe()
    ids = batches(1)[0]["input_ids"]
    sparse24.sparsify(model, "magnitude", policy="any", progress=False)
    runtime = copy.deepcopy(model)
    result = sparse24.to_sparse_runtime(runtime, backend="reference")
    reasons = dict(result.skipped)
    assert reasons["model.layers.0.mlp.experts.gate_up_proj"] == "Qwen3MoeExperts computes this GEMM inside its own forward"
    with torch.no_grad():
        torch.testing.assert_close(runtime(ids).logits, model(ids).logits)


def _decorated(**flags) -> nn.Module:
    """A fused experts module as transformers declares one (its forward: transformers' batched_mm for these flags)."""
    from types import SimpleNamespace

    from transformers.integrations.moe import use_experts_implementation

    experts, hidden, width = 4, 16, 8

    @use_experts_implementation(**flags)
    class Experts(nn.Module):
        def __init__(self, config) -> None:
            super().__init__()
            self.num_experts = experts
            up = (2 if flags.get("has_gate", True) else 1) * width
            name = "gate_up_proj" if flags.get("has_gate", True) else "up_proj"
            shape = (experts, hidden, up) if flags.get("is_transposed") else (experts, up, hidden)
            setattr(self, name, nn.Parameter(torch.randn(shape) / 4))
            self.down_proj = nn.Parameter(torch.randn((experts, width, hidden) if flags.get("is_transposed") else (experts, hidden, width)) / 3)
            if flags.get("has_bias"):
                setattr(self, f"{name}_bias", nn.Parameter(torch.randn(experts, up)))
                self.down_proj_bias = nn.Parameter(torch.randn(experts, hidden))
            self.act_fn = nn.SiLU()

    torch.manual_seed(0)
    return Experts(SimpleNamespace(_experts_implementation="batched_mm"))


class _Routed(nn.Module):
    """A router choosing 2 of the experts per token, then the experts."""

    def __init__(self, experts: nn.Module) -> None:
        super().__init__()
        self.router = nn.Linear(16, experts.num_experts, bias=False)
        self.experts = experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, index = self.router(x).softmax(-1).topk(2, dim=-1)
        return self.experts(x, index, weights)


@pytest.mark.parametrize(
    "flags", [{}, {"is_transposed": True}, {"has_bias": True}, {"has_gate": False}, {"is_transposed": True, "has_bias": True}], ids=str
)
def test_each_experts_hidden_channels_get_their_own_permutation(flags) -> None:
    """Every layout transformers declares: the function is unchanged, each expert has its own order, the kept
    importance does not drop, and permute_like reproduces every permuted tensor from the dense one."""
    model = _Routed(_decorated(**flags)).eval()
    x = torch.randn(24, 16, generator=torch.Generator().manual_seed(2))
    dense = copy.deepcopy(model)
    with torch.no_grad():
        before = model(x)
    report = sparse24.permute(model, example_inputs=(x,))
    (group,) = [g for g in report.groups if g.producers == ("experts",)]
    assert (group.blocks, group.block_size, group.consumers) == (4, 8, ("experts",))
    assert group.kept_after >= group.kept_before and group.changed
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    ((dim, index),) = report.indices["experts.down_proj"]
    assert dim == (1 if flags.get("is_transposed") else 2) and index.shape == (4, 8)
    assert len({tuple(row.tolist()) for row in index}) > 1  # not one order for all experts
    up = "experts.gate_up_proj" if flags.get("has_gate", True) else "experts.up_proj"
    assert set(report.indices) == {up, "experts.down_proj"} | ({f"{up}_bias"} if flags.get("has_bias") else set())
    for name, tensor in dense.state_dict().items():
        assert torch.equal(report.permute_like(name, tensor), model.state_dict()[name]), name


def test_moe_models_permute_their_experts_inside_sparsify() -> None:
    """Qwen3-MoE (and Llama 4's own experts layout): permuted with the model's outputs checked, then pruned; the scores
    the search used are each expert's slice of the criterion's."""
    for build, experts in ((qwen3_moe, "model.layers.0.mlp.experts"), (_llama4, "model.layers.0.feed_forward.experts")):
        model = build()
        report = sparse24.sparsify(model, "wanda", data=batches(2), policy="any", permute=True, progress=False)
        assert any(note.startswith(f"permuted {experts}: kept importance") for note in report.notes), report.notes
        assert report.notes[-1].endswith("the model's outputs on the first calibration batch are unchanged")
        sparse24.verify(model)


def test_experts_with_interleaved_rows_stay_in_place() -> None:
    model = _gpt_oss()
    report = sparse24.permute(model, example_inputs=(batches(1)[0]["input_ids"],))
    (skipped,) = [s for s in report.skipped if s.layers == ("model.layers.0.mlp.experts",)]
    assert skipped.reason == "GptOssExperts: its gate and up rows are interleaved; only the concatenated [gate; up] layout has a rule"


def _clamped_gate(self: nn.Module, gate_up: torch.Tensor) -> torch.Tensor:  # DeepSeek-V4's: clamps, then SwiGLU, channel by channel
    gate, up = gate_up.chunk(2, dim=-1)
    return self.act_fn(gate.clamp(max=7.0)) * up.clamp(min=-7.0, max=7.0)


def _positional_gate(experts: nn.Module) -> None:  # a learned scale per channel position: an order of the channels changes it
    scale = torch.linspace(0.5, 2.0, experts.down_proj.shape[-1])
    type(experts)._apply_gate = lambda self, gate_up: _clamped_gate(self, gate_up) * scale


def _interleaved_gate(experts: nn.Module) -> None:  # GPT-OSS's reading of the rows, in a module that declares them concatenated
    type(experts)._apply_gate = lambda self, gate_up: self.act_fn(gate_up[..., ::2]) * gate_up[..., 1::2]


def _unprobed_gate(experts: nn.Module) -> None:  # a gate that needs more than the rows
    type(experts)._apply_gate = lambda self, gate_up, scores: self.act_fn(gate_up.chunk(2, dim=-1)[0]) * scores


def test_experts_with_their_own_channelwise_gate_are_permuted() -> None:
    """An experts class's own _apply_gate (DeepSeek-V4's clamped SwiGLU) that acts channel by channel: permuted, the
    same function."""
    model = _Routed(_decorated()).eval()
    type(model.experts)._apply_gate = _clamped_gate
    x = torch.randn(24, 16, generator=torch.Generator().manual_seed(2)) * 20  # past the clamps
    with torch.no_grad():
        before = model(x)
    report = sparse24.permute(model, example_inputs=(x,))
    (group,) = report.groups
    assert group.producers == ("experts",) and group.changed
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)


def _expert_parallel(experts: nn.Module) -> None:
    experts._is_expert_parallel = True


def _softmax(experts: nn.Module) -> None:
    experts.act_fn = nn.Softmax(dim=-1)


@pytest.mark.parametrize(
    "change, reason",
    [
        (_positional_gate, "Experts: Experts gates with its own _apply_gate, which does not act channel by channel on the [gate; up] halves (a probe in another order of the channels changed its output)"),
        (_interleaved_gate, "Experts: Experts gates with its own _apply_gate, which does not act channel by channel on the [gate; up] halves (a probe in another order of the channels changed its output)"),
        (_unprobed_gate, "Experts: Experts gates with its own _apply_gate, which fails on a probe of [gate; up] rows: TypeError: _unprobed_gate.<locals>.<lambda>() missing 1 required positional argument: 'scores'"),
        (_expert_parallel, "Experts: its experts are sharded across ranks (expert parallel)"),
        (_softmax, "Experts: act_fn Softmax is not a known elementwise activation"),
    ],
)
def test_experts_the_rule_cannot_vouch_for_stay_in_place(change, reason) -> None:
    model = _Routed(_decorated()).eval()
    change(model.experts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = sparse24.permute(model)
    assert [s.reason for s in report.skipped if s.layers == ("experts",)] == [reason] and not report.groups
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_module_is_fused_experts_only_with_the_decorators_flags() -> None:
    class Experts(nn.Module):  # stacked weights, but no use_experts_implementation contract
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 2
            self.gate_up_proj = nn.Parameter(torch.randn(2, 16, 8))
            self.down_proj = nn.Parameter(torch.randn(2, 8, 8))

    module = Experts()
    assert gemm_axes(module) == {}
    module.has_gate, module.has_bias, module.is_transposed = True, False, False
    assert set(gemm_axes(module)) == {"gate_up_proj", "down_proj"}
    module.down_proj = nn.Parameter(torch.randn(3, 8, 8))  # not one slice per expert
    assert set(gemm_axes(module)) == {"gate_up_proj"}


def _qwen2_moe() -> nn.Module:  # a shared expert and its gate beside the routed experts
    torch.manual_seed(0)
    config = transformers.Qwen2MoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32, max_position_embeddings=64,
    )
    return transformers.Qwen2MoeForCausalLM(config).eval()


@pytest.mark.parametrize("build", ["qwen3_moe", "qwen2_moe", "llama4", "jetmoe"])
def test_padding_is_left_out_of_the_experts_statistics(build: str) -> None:
    """An MoE block hands its experts the hidden states flattened to [batch * length, d] (Llama 4: one such
    block per expert; JetMoE: each routed token's row, grouped by expert, its router saying whose), and its
    router and shared expert (Qwen2-MoE's) the same flattened rows: the padded positions of a right-padded batch
    are left out there too, so every layer's Hessian is that of the same sequences unpadded."""
    model = _BUILDS[build]()
    generator = torch.Generator().manual_seed(2)
    long, short = torch.randint(0, VOCAB, (12,), generator=generator), torch.randint(0, VOCAB, (7,), generator=generator)
    padded = {"input_ids": torch.stack([long, torch.cat([short, torch.zeros(5, dtype=torch.long)])]),
              "attention_mask": torch.tensor([[1] * 12, [1] * 7 + [0] * 5])}
    alone = [{"input_ids": long[None]}, {"input_ids": short[None]}]
    weights = gemm_weights(model)
    assert {"qwen2_moe": "shared_expert.down_proj", "jetmoe": "mlp.router.layer"}.get(build, "experts") in " ".join(w.name for w in weights)
    with_pads, count = gather(model, weights, "hessian", [padded], progress=False)
    without, count_alone = gather(model, weights, "hessian", alone, progress=False)
    for weight in weights:
        _close(with_pads[id(weight.param)], without[id(weight.param)])
        assert count[id(weight.param)] == count_alone[id(weight.param)] == 19
    report = sparse24.sparsify(model, "wanda", data=[padded], policy="any", progress=False)
    assert "the input statistics leave out padding: 5 of 24 token positions (attention_mask == 0)" in report.notes


def test_an_fsdp_sharded_moe_gets_the_masks_and_weights_of_one_process(tmp_path) -> None:
    """FSDP2 shards the stacked experts along their expert dim: two gloo ranks, each on half of the batches,
    end with one process's masks bit for bit and its weights (SparseGPT's Hessians are summed in another
    order: within 5e-5)."""
    from safetensors.torch import load_file
    from sparse24_testing import torchrun

    worker = Path(__file__).parent / "fsdp_experts_worker.py"
    torchrun(worker, ["--out", str(tmp_path)], Path(__file__).parent, "fsdp experts")
    data = batches()
    for method, options in METHODS.items():
        reference = qwen3_moe()
        sparse24.sparsify(reference, method, data=data[0::2] + data[1::2], policy="any", progress=False, **options)
        expected = reference.state_dict()
        sharded = load_file(str(tmp_path / f"{method}.safetensors"))
        experts = [k for k in expected if ".experts." in k]
        assert len(experts) == 8 and set(experts) <= set(sharded)  # 2 layers x (gate_up_proj, down_proj, their masks)
        for key in experts:
            if key.endswith(sparse24.MASK_SUFFIX):
                assert torch.equal(sharded[key], expected[key]), (method, key)
            else:
                torch.testing.assert_close(sharded[key], expected[key], atol=5e-5, rtol=1e-4, msg=f"{method} {key}")


def _llama4() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.Llama4TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=32, intermediate_size_mlp=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, num_local_experts=4, num_experts_per_tok=1, max_position_embeddings=64, interleave_moe_layer_step=1,
    )
    return transformers.Llama4ForCausalLM(config).eval()


def test_llama4_experts_are_calibrated_on_their_rows_of_the_score_scaled_tokens() -> None:
    """Llama4TextExperts is no use_experts_implementation class: it runs every expert on its own block of
    [experts * tokens, d] (each token scaled by its router score) with torch.bmm, weights [experts, in, out]."""
    model = _llama4()
    module = _experts(model)[0]
    assert gemm_axes(module) == {"gate_up_proj": Axis(reduction=1, output=2), "down_proj": Axis(reduction=1, output=2)}
    data = batches(2)
    seen: dict[str, list[torch.Tensor]] = {"gate_up_proj": [], "down_proj": []}
    bmm = torch.bmm

    def spy(a, b, **kwargs):
        for name in seen:
            if b is getattr(module, name):
                seen[name].append(a.detach())
        return bmm(a, b, **kwargs)

    torch.bmm = spy
    try:
        with torch.no_grad():
            for batch in data:
                model(**batch)
    finally:
        torch.bmm = bmm
    weights = [w for w in gemm_weights(model) if w.module is module]
    hessians, counts = gather(model, weights, "hessian", data, progress=False)
    for weight in weights:
        inputs = torch.cat(seen[weight.param_name], dim=1).float()  # [experts, tokens, d]
        _close(hessians[id(weight.param)], inputs.transpose(1, 2) @ inputs)
        assert counts[id(weight.param)] == 2 * 2 * 12
    report = sparse24.sparsify(model, "sparsegpt", data=data, policy="any", sequential=True, progress=False)
    assert {"model.layers.0.feed_forward.experts.gate_up_proj", "model.layers.1.feed_forward.experts.down_proj"} <= {l.name for l in report.sparse_layers}
    assert is_two_four(module.gate_up_proj.detach(), 1) and is_two_four(module.down_proj.detach(), 1)
    sparse24.verify(model)


def test_an_moe_router_stays_dense_unless_include_names_it() -> None:
    """Llama4Router is an nn.Linear scoring the experts: pruning it changes which experts run."""
    report = sparse24.sparsify(_llama4(), progress=False)
    reasons = {layer.name: layer.reason for layer in report.layers}
    assert reasons["model.layers.0.feed_forward.router.weight"].startswith("an MoE router (scores 4 experts)")
    assert reasons["model.layers.0.feed_forward.experts.gate_up_proj"] is None
    included = sparse24.sparsify(_llama4(), progress=False, policy="any", include="*.router")
    assert [layer.name for layer in included.sparse_layers] == ["model.layers.0.feed_forward.router.weight", "model.layers.1.feed_forward.router.weight"]

    class Block(nn.Module):  # an MoE block whose gate is a plain Linear (transformers 4's Mixtral, remote code)
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 8
            self.gate = nn.Linear(16, 8)
            self.proj = nn.Linear(16, 16)

    report = sparse24.sparsify(nn.Sequential(Block()), progress=False, policy="any")
    assert [layer.name for layer in report.sparse_layers] == ["0.proj.weight"]


def _jetmoe(experts: int = 4) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.JetMoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_key_value_heads=2, kv_channels=8,
        num_local_experts=experts, num_experts_per_tok=2, max_position_embeddings=64,
    )
    return transformers.JetMoeForCausalLM(config).eval()


def _parallel_experts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__ == "JetMoeParallelExperts"]


def test_jetmoe_experts_are_calibrated_on_the_rows_each_expert_multiplies() -> None:
    """JetMoeParallelExperts (JetMoE's feed-forward and attention experts) is no use_experts_implementation class: one
    weight [experts, out, in], called with the routed tokens' rows grouped by expert and each expert's number of rows,
    an F.linear per expert. Each expert's statistics are those of the rows its F.linear gets."""
    model = _jetmoe()
    modules = _parallel_experts(model)
    assert len(modules) == 8  # 2 layers x (attention, feed-forward) x (input_linear, output_linear)
    for module in modules:
        assert gemm_axes(module) == {"weight": Axis(reduction=2, output=1)}
        weight = GemmWeight("", module, "weight", Axis(reduction=2, output=1))
        assert torch.equal(gemm_matrix(weight), module.weight)  # expert e's slice as F.linear takes it
    data = batches(2)
    seen = _linear_inputs(model, data, {id(m): m.weight for m in modules})
    weights = [w for w in gemm_weights(model) if w.module in modules]
    assert len(weights) == 8
    hessians, counts = gather(model, weights, "hessian", data, progress=False)
    norms, _ = gather(model, weights, "norms", data, progress=False)
    for weight in weights:
        for e in range(weight.module.num_experts):
            x = torch.cat(seen[id(weight.module)][e]).float()
            if x.shape[0] == 0:
                assert not hessians[id(weight.param)][e].any()
                continue
            _close(hessians[id(weight.param)][e], x.T @ x)
            _close(norms[id(weight.param)][e], x.norm(dim=0))
        assert counts[id(weight.param)] == 2 * 12 * 2  # every token of every batch


def test_a_jetmoe_expert_no_token_reached_gets_magnitudes_mask() -> None:
    model = _jetmoe(experts=8)
    one_token = [{"input_ids": torch.tensor([[3]])}]  # 2 of 8 experts per block see it
    modules = _parallel_experts(model)
    routed: dict[int, set[int]] = {}

    def note(module: nn.Module, args: tuple) -> None:  # args: (rows, expert_size)
        routed[id(module)] = {e for e, n in enumerate(args[1]) if n}

    handles = [m.register_forward_pre_hook(note) for m in modules]
    with torch.no_grad():
        model(**one_token[0])
    for handle in handles:
        handle.remove()
    assert [len(routed[id(m)]) for m in modules] == [2] * 8
    magnitude = copy.deepcopy(model)
    sparse24.sparsify(magnitude, "magnitude", policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=one_token, policy="any", progress=False)
    (note,) = [n for n in report.notes if "no calibration input" in n]
    assert "model.layers.0.mlp.input_linear.weight 6 of 8" in note and "model.layers.1.self_attention.experts.output_linear.weight 6 of 8" in note
    for module, reference in zip(modules, _parallel_experts(magnitude)):
        weight, expected = module.weight.detach(), reference.weight.detach()
        for e in range(8):
            assert int(weight[e].count_nonzero()) == weight[e].numel() // 2  # never wiped
            if e not in routed[id(module)]:
                assert torch.equal(weight[e] != 0, expected[e] != 0)


def _switch() -> nn.Module:  # experts as modules: an ``experts`` ModuleDict of expert_i MLPs (NLLB-MoE's too)
    config = transformers.SwitchTransformersConfig(
        vocab_size=96, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4, num_experts=8,
        num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.SwitchTransformersForConditionalGeneration(config).eval()


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_an_expert_module_no_token_reached_gets_magnitudes_mask(method: str, sequential: bool) -> None:
    """An expert that is a module of its own gets no forward call when no token is routed to it: the calibration
    once stopped at "never ran" (the bench's SwitchTransformers, block by block); now, as a stacked expert does,
    it gets magnitude's mask, listed in the notes, and the experts that saw tokens are calibrated."""
    import re

    model = _switch()
    data = [{"input_ids": torch.randint(3, 96, (1, 3)), "decoder_input_ids": torch.randint(3, 96, (1, 2))} for _ in range(2)]
    experts = sorted(name for name, _ in model.named_modules() if re.search(r"\.experts\.expert_\d+\.w[io]$", name))
    called: set[str] = set()
    handles = [model.get_submodule(name).register_forward_pre_hook(lambda m, args, n=name: called.add(n)) for name in experts]
    with torch.no_grad():
        for batch in data:
            model(**batch)
    for handle in handles:
        handle.remove()
    magnitude = copy.deepcopy(model)
    sparse24.sparsify(magnitude, "magnitude", policy="any", progress=False)
    report = sparse24.sparsify(model, method, data=data, sequential=sequential, policy="any", progress=False)
    (note,) = [n for n in report.notes if "no calibration input reached" in n]
    listed = re.findall(r"(\S+)\.weight 1 of 1", note)
    assert listed and len(listed) < len(experts) and set(listed) <= set(experts)
    if not sequential:  # block by block, the decoder's routing follows the pruned encoder
        assert sorted(listed) == [name for name in experts if name not in called]
    sparse24.verify(model)
    for name in listed:
        assert torch.equal(model.get_submodule(name).weight, magnitude.get_submodule(name).weight), name  # no update
    calibrated = [name for name in experts if name not in listed]
    assert any(not torch.equal(model.get_submodule(n).weight, magnitude.get_submodule(n).weight) for n in calibrated)


_BUILDS = {"qwen3_moe": qwen3_moe, "qwen2_moe": _qwen2_moe, "llama4": _llama4, "jetmoe": _jetmoe}
