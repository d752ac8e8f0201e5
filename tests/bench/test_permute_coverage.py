"""bench/permute_coverage.py on three model types: the JSON, the table generated from it, bad input."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

pytest.importorskip("transformers")

from sparse24.bench import permute_coverage  # noqa: E402


def test_lists_the_classes_without_a_rule_and_the_types_that_do_not_build(tmp_path, unruled_mra) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2,mra,gpt_neo"]) == 0
    results = json.loads((tmp_path / "permute_coverage.json").read_text())
    assert results["command"] == f"python bench/permute_coverage.py --out {tmp_path} --types gpt2,mra,gpt_neo"
    rows = {r["type"]: r for r in results["types"]}
    assert rows["gpt2"]["status"] == "permuted" and rows["gpt2"]["model"] == "GPT2LMHeadModel" and rows["gpt2"]["unruled"] == {}
    assert rows["gpt2"]["groups"] == 2  # its attention's values and its MLP
    assert rows["mra"]["unruled"]["MraSelfAttention"] == 3  # query, key, value: MRA's rules taken away (unruled_mra)
    assert rows["gpt_neo"]["status"] == "not built" and "convolutional module is incorrect" in rows["gpt_neo"]["error"]  # its config refuses one layer
    markdown = (tmp_path / "permute_coverage.md").read_text()
    assert markdown == permute_coverage.markdown(results)
    assert "3 types: 2 built and permuted, 1 of them with no layer in a class without a rule, 1 with such classes" in markdown
    assert "| mra | MraModel | 0 | MraAttention (1), MraLayer (2), MraSelfAttention (3) |" in markdown
    assert "| gpt_neo | StrictDataclassClassValidationError" in markdown


def test_the_classification_models_of_a_type(tmp_path) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "roberta", "--task", "classify"]) == 0
    row = json.loads((tmp_path / "permute_coverage_classify.json").read_text())["types"][0]
    assert row["model"] == "RobertaForSequenceClassification" and row["unruled"] == {} and row["groups"] == 3  # and its classification head


def test_tiny_models_have_the_same_weights_in_every_run() -> None:
    first = permute_coverage.tiny_model("llama", "causal-lm").state_dict()
    torch.rand(1000)  # whatever the default generator did before
    second = permute_coverage.tiny_model("llama", "causal-lm").state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("types", ["gpt2,no-such-type", ","])
def test_an_unknown_model_type_is_one_clear_error(tmp_path, capsys, types: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_info:
        permute_coverage.main(["--out", str(tmp_path), "--types", types])
    assert exit_info.value.code == 2
    assert "not a model type of this transformers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_nothing_built_is_a_failure_not_an_empty_success(tmp_path, capsys) -> None:  # noqa: ANN001
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt_neo"]) == 1  # its config refuses one layer (24 attention types)
    assert "no model type built from the tiny config: nothing was checked" in capsys.readouterr().err


def test_a_permute_failure_is_reported_apart_and_fails_the_run(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import importlib

    permute_module = importlib.import_module("sparse24.permute")  # the module (the package exports the function as sparse24.permute)

    real = permute_module.permute

    def broken(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if type(model).__name__ == "GPT2LMHeadModel":
            raise RuntimeError("a bug in a rule")
        return real(model, **kwargs)

    monkeypatch.setattr(permute_module, "permute", broken)
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2"]) == 1
    row = json.loads((tmp_path / "permute_coverage.json").read_text())["types"][0]
    assert row["status"] == "permute failed" and row["error"] == "RuntimeError: a bug in a rule"
    assert "raised on 1 models that built" in (tmp_path / "permute_coverage.md").read_text()
    assert "sparse24.permute raised on 1 model types" in capsys.readouterr().err

    def dies(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if type(model).__name__ == "GPT2LMHeadModel":
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer, or a crash in C
        return real(model, **kwargs)

    monkeypatch.setattr(permute_module, "permute", dies)
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llama"]) == 1  # each type in a process of its own
    rows = json.loads((tmp_path / "permute_coverage.json").read_text())["types"]
    assert rows[0] == {"type": "gpt2", "status": "permute failed", "error": "building or permuting it: its process died of SIGKILL"}
    assert rows[1]["status"] == "permuted"


def test_a_permutation_over_the_timeout_is_listed_apart_not_as_not_built(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The model built: a permutation cut by the timeout is its own status (nemo_speechlm's and NLLB-MoE's nested
    configs keep their full sizes, and their permutation took 275 s and 95 s), with the model and its size."""
    import importlib
    import time

    permute_module = importlib.import_module("sparse24.permute")

    real = permute_module.permute

    def slow_on_gpt2(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if type(model).__name__ == "GPT2LMHeadModel":
            time.sleep(5)
        return real(model, **kwargs)

    monkeypatch.setattr(permute_module, "permute", slow_on_gpt2)
    assert permute_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llama", "--timeout", "2"]) == 0  # llama was checked
    rows = json.loads((tmp_path / "permute_coverage.json").read_text())["types"]
    assert rows[1]["status"] == "permuted"
    row = rows[0]
    assert row["status"] == "permute timed out" and row["error"] == "over 2 s" and row["model"] == "GPT2LMHeadModel" and row["parameters"] > 0
    markdown = (tmp_path / "permute_coverage.md").read_text()
    assert "2 types: 1 built and permuted, 1 of them with no layer in a class without a rule, 0 with such classes (below); 1 built but not permuted within the timeout; 0 not built" in markdown
    assert f"| gpt2 | GPT2LMHeadModel | {row['parameters']:,} |" in markdown


@pytest.mark.parametrize(
    "model_type, check",
    [
        # multi-head latent attention: the rotary part is head_dim, one key/value head per query head
        ("deepseek_v3", lambda c: (c.head_dim, c.qk_rope_head_dim, c.qk_nope_head_dim, c.qk_head_dim, c.num_key_value_heads, c.kv_lora_rank) == (16, 16, 16, 32, 4, 32)),
        ("mistral4", lambda c: (c.head_dim, c.qk_rope_head_dim) == (32, 16)),  # half of its head is rotary
        ("gptj", lambda c: (c.rotary_dim, c.n_embd // c.n_head) == (8, 16)),
        # its decoder's 6 heads did not divide 64 (its encoder's are num_key_value_heads, by its attribute map)
        ("whisper", lambda c: (c.encoder_attention_heads, c.decoder_attention_heads, c.d_model) == (2, 4, 64)),
        ("qwen2_vl", lambda c: sum(c.text_config.rope_parameters["mrope_section"]) == 8),  # half of its 16-wide head
        ("ernie4_5_vl_moe", lambda c: c.text_config.rope_parameters["mrope_section"] == [3, 3, 2]),  # it stacks the first two: equal
        ("hy_v4_vl", lambda c: c.text_config.rope_parameters["mrope_section"] == [4, 2, 2]),  # its default [12, 10, 10] scaled
        ("convnext", lambda c: (c.num_stages, list(c.hidden_sizes), list(c.depths)) == (4, [16, 32, 48, 64], [1, 1, 1, 1])),
        ("swin", lambda c: "head_dim" not in vars(c) and list(c.depths) == [1, 1, 1, 1]),  # no key it lacks: its check refuses a head_dim
        ("mamba2", lambda c: c.num_heads * c.head_dim == c.hidden_size * c.expand),
        ("pvt", lambda c: list(c.hidden_sizes) == [16 * n for n in c.num_attention_heads]),  # each stage's width holds its heads
        ("siglip", lambda c: c.text_config.projection_size == c.vision_config.hidden_size == 64),
        ("hunyuan_vl", lambda c: c.text_config.head_dim == 16),  # None in its default, and read by its attention
        ("deepseek_v2", lambda c: (c.num_experts_per_tok, c.moe_intermediate_size) == (2, 32)),  # None in its default: its router's topk failed
        ("longcat_flash", lambda c: c.moe_intermediate_size == 32),  # its 512 experts were 2048 wide: over the coverage runs' memory limit
        # NLLB-MoE's 128 experts are its MLPs' width (4096: permuting them took over 60 s); Muse Spark's experts work 4096 wide
        ("nllb-moe", lambda c: (c.encoder_ffn_dim, c.decoder_ffn_dim) == (96, 96)),
        ("muse_spark", lambda c: (c.text_config.moe_hidden_size, c.text_config.moe_intermediate_size) == (64, 32)),
        # SAM's image encoder gives its prompt encoder and mask decoder 256 channels, which they took as 64
        ("sam", lambda c: (c.vision_config.output_channels, c.vision_config.num_pos_feats, c.mask_decoder_config.hidden_size, c.vision_config.mlp_dim) == (64, 32, 64, 96)),
        ("sam3_tracker", lambda c: c.vision_config.fpn_hidden_size == c.mask_decoder_config.hidden_size == 64),
        # HGNetV2's stage widths are stage_out_channels; its hidden_sizes tell D-FINE what they are (for the stages it reads):
        # kept in step, as in its default. And 8 queries: RT-DETR's layout picks its 300 among 21 anchors of a 32-pixel image
        ("d_fine", lambda c: list(c.backbone_config.hidden_sizes)[1:] == list(c.backbone_config.stage_out_channels)[1:] and c.num_queries == 8),
        # EfficientNet-B7 at 600 pixels (ALIGN's vision tower too) took over 60 s to calibrate; its last conv's width is hidden_dim
        ("efficientnet", lambda c: (c.width_coefficient, c.depth_coefficient, c.image_size, c.hidden_dim) == (0.125, 0.25, 64, 160)),
        ("align", lambda c: (c.vision_config.image_size, c.vision_config.hidden_dim, c.projection_dim) == (64, 160, 40)),  # 40: its image embedding
        ("ergo", lambda c: (c.first_dense_intermediate_size, c.shared_intermediate_size) == (96, 96)),  # 32768: a 4 GiB Hessian
        ("granitemoe_swa", lambda c: c.shared_intermediate_size == 0),  # 0 is no shared expert: kept
        ("glm5_next", lambda c: c.text_config.qk_rope_head_dim == 0),
        ("blip-2", lambda c: c.qformer_config.encoder_hidden_size == c.vision_config.hidden_size == 64),  # the Q-Former reads the vision tower
        ("t5gemma", lambda c: c.decoder.cross_attention_hidden_size == c.encoder.hidden_size == 64),
        ("vibevoice_acoustic_tokenizer", lambda c: c.num_filters == 8),  # doubled at each of 6 strides: 2048 x 16 inputs to its last conv
        # MLP widths under other names: FastSpeech 2's 1536 gave SparseGPT 4608-wide Hessians (39 s), UDOP's d_ff 4096
        ("fastspeech2_conformer", lambda c: (c.encoder_linear_units, c.decoder_linear_units) == (96, 96)),
        ("udop", lambda c: c.d_ff == 96),
        ("opt", lambda c: c.ffn_dim == 96),
        ("patchtst", lambda c: c.ffn_dim == 96),
        # SAM 2's Hiera kept its 96-768 stage widths while hidden_size, its first, became 64; its neck reads them in reverse
        # LayoutLMv3's four corners' and two sides' embeddings, concatenated, were 768 wide beside its 64-wide text
        ("layoutlmv3", lambda c: 4 * c.coordinate_size + 2 * c.shape_size == c.hidden_size == 64),
        # FastSpeech 2 nested: its encoder's and decoder's settings are derived when its config is built (1536-wide MLPs:
        # over 60 s), so derived again after the tiny sizes are set
        ("fastspeech2_conformer_with_hifigan", lambda c: c.model_config.encoder_config["linear_units"] == c.model_config.decoder_config["linear_units"] == 96),
        ("sam2", lambda c: (c.vision_config.backbone_config.embed_dim_per_stage, c.vision_config.backbone_config.hidden_size, c.vision_config.backbone_channel_list) == ([16, 32, 64, 128], 16, [128, 64, 32, 16])),
    ],
)
def test_the_tiny_config_keeps_the_sizes_tied_to_the_tiny_ones(model_type: str, check) -> None:  # noqa: ANN001
    """Each of these types' tiny model did not build, or its forward failed, while only the shared sizes were set."""
    model = permute_coverage.tiny_model(model_type, "causal-lm")
    assert not isinstance(model, str), model
    assert check(model.config), vars(model.config)
