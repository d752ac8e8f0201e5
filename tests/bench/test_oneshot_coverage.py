"""bench/oneshot_coverage.py on a few model types: the JSON, the table generated from it, what fails the run."""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import time

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from sparse24.bench import oneshot_coverage  # noqa: E402

sparsify_module = importlib.import_module("sparse24.sparsify")


def _rows(path) -> dict:  # noqa: ANN001
    return {r["type"]: r for r in json.loads((path / "oneshot_coverage.json").read_text())["types"]}


def test_every_method_on_a_decoder_a_vision_language_model_and_a_mamba(tmp_path) -> None:  # noqa: ANN001
    threads, limit = torch.get_num_threads(), resource.getrlimit(resource.RLIMIT_AS)
    torch.set_num_threads(3)  # not the bench's 1, so that a main that leaves its own setting behind fails
    try:
        assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llava,mamba,gpt_neo"]) == 0
        assert torch.get_num_threads() == 3 and resource.getrlimit(resource.RLIMIT_AS) == limit  # the process is as it was
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / "oneshot_coverage.json").read_text())
    assert results["command"] == f"python bench/oneshot_coverage.py --out {tmp_path} --types gpt2,llava,mamba,gpt_neo"
    rows = _rows(tmp_path)
    gpt2 = rows["gpt2"]
    assert gpt2["status"] == "calibrated" and gpt2["inputs"] == ["attention_mask", "input_ids"] and gpt2["layers"] == 4
    for method in ("wanda", "sparsegpt", "sequential"):
        assert gpt2[method]["pruned"] == 4 and gpt2[method]["dense"] == {} and gpt2[method]["finite"], method
        assert gpt2[method]["padding"], method  # the padded positions were left out of the statistics
    assert gpt2["sequential"]["blocks"] == ["transformer.h"]
    llava = rows["llava"]  # text only: the vision tower and its projector are not reached, and excluded
    assert llava["not_reached"] > 0 and llava["layers"] > 0 and all(llava[m]["pruned"] == llava["layers"] for m in oneshot_coverage.METHODS)
    assert llava["sequential"]["blocks"] == ["language_model.layers"]
    mamba = rows["mamba"]  # its mixer multiplies by dt_proj.weight instead of calling dt_proj: calibrated all the same
    assert mamba["not_reached"] == 0 and all(mamba[m]["pruned"] == mamba["layers"] and mamba[m]["dense"] == {} for m in oneshot_coverage.METHODS)
    assert rows["gpt_neo"]["status"] == "not built"
    markdown = (tmp_path / "oneshot_coverage.md").read_text()
    assert markdown == oneshot_coverage.markdown(results)
    assert "4 types: 3 calibrated, 3 of them with every layer magnitude prunes pruned by all three methods" in markdown
    assert "| gpt2 | GPT2LMHeadModel | attention_mask, input_ids | 4 (0) | 4/4 | 4/4 | 4/4 | `transformer.h` | yes/yes/yes |" in markdown


@pytest.mark.parametrize(
    "model_type, shapes",
    [
        ("videomae", {"pixel_values": (2, 16, 3, 224, 224)}),  # clips of its num_frames, not images
        ("encodec", {"input_values": (2, 1, 4000)}),  # a codec's mono channel
        ("moonshine", {"input_values": (2, 4000), "attention_mask": (2, 4000), "decoder_input_ids": (2, 8)}),  # speech to text
        ("deepseek_v3", {"input_ids": (2, 16), "attention_mask": (2, 16)}),  # latent attention at the tiny sizes (permute_coverage)
        ("deepseek_v2", {"input_ids": (2, 16), "attention_mask": (2, 16)}),  # two experts per token (None in its default)
        ("d_fine", {"pixel_values": (2, 3, 32, 32)}),  # its HGNetV2 backbone's widths as it reports them; 8 queries among 21 anchors
        # a VLM's vision tower: two images' patches, flattened (2 frames deep for Qwen2.5-VL), and their grid of 4 x 4 patches
        ("qwen2_5_vl_vision", {"hidden_states": (32, 3 * 2 * 14 * 14), "grid_thw": (2, 3)}),
        ("kimi_k25_vision", {"pixel_values": (32, 3, 14, 14), "grid_thw": (2, 3)}),  # its patches not flattened
        ("video_llama_3_vision", {"pixel_values": (32, 3 * 16 * 16), "grid_thw": (2, 3), "merge_sizes": (2,)}),
        ("smolvlm_vision", {"pixel_values": (2, 3, 224, 224)}),  # its main_input_name is its base class's input_ids
        ("mgp-str", {"pixel_values": (2, 3, 32, 128)}),  # an image 32 high, 128 wide
        ("vjepa2", {"pixel_values_videos": (2, 2, 3, 32, 32)}),  # a video tower's clips, two frames
        ("qwen3_asr_encoder", {"input_features": (2, 128, 100), "input_features_mask": (2, 100)}),  # 2 x its window; the mask it requires
        ("gemma3n_audio", {"audio_mel": (2, 64, 128), "audio_mel_mask": (2, 64)}),  # its features under their own name
        ("patchtst", {"past_values": (2, 32, 1)}),  # a time series: its context, per channel
        ("timesfm", {"past_values": (2, 64), "past_values_padding": (2, 64), "freq": (2, 1)}),
        ("sam", {"pixel_values": (2, 3, 1024, 1024)}),  # its image encoder's output as wide as its mask decoder (permute_coverage)
        ("siglip2", {"input_ids": (2, 16), "attention_mask": (2, 16), "pixel_values": (2, 16, 3 * 16 * 16), "pixel_attention_mask": (2, 16), "spatial_shapes": (2, 2)}),  # patch sequences
        ("xmod", {"input_ids": (2, 16), "attention_mask": (2, 16), "lang_ids": (2,)}),  # the text's language
        ("bros", {"input_ids": (2, 16), "attention_mask": (2, 16), "bbox": (2, 16, 4)}),  # its words' boxes
        ("lxmert", {"input_ids": (2, 16), "attention_mask": (2, 16), "visual_feats": (2, 8, 2048), "visual_pos": (2, 8, 4)}),  # regions
        ("seggpt", {"pixel_values": (2, 3, 448, 448), "prompt_pixel_values": (2, 3, 448, 448), "prompt_masks": (2, 3, 448, 448)}),
        ("wav2vec2-bert", {"input_features": (2, 64, 160)}),  # two 80-bin frames stacked
        ("efficientnet", {"pixel_values": (2, 3, 64, 64)}),  # B7 at 600 pixels took over 60 s (permute_coverage)
        ("sam2_vision_model", {"pixel_values": (2, 3, 1024, 1024)}),  # its Hiera's stage widths
        ("gemma4_vision", {"pixel_values": (2, 36, 3 * 16 * 16), "pixel_position_ids": (2, 36, 2)}),  # patches and their places
        ("audio-spectrogram-transformer", {"input_values": (2, 1024, 128)}),  # a spectrogram, not samples
        ("audioflamingo3_encoder", {"input_features": (2, 128, 3000), "input_features_mask": (2, 3000)}),  # its optional mask, read
        ("fun_asr_nano_encoder", {"input_features": (2, 64, 560), "input_features_mask": (2, 64)}),  # 7 frames of 80 bins stacked
        ("t5gemma", {"input_ids": (2, 16), "attention_mask": (2, 16), "decoder_input_ids": (2, 8)}),  # cross-attention's width
        ("pe_audio", {"input_ids": (2, 16), "attention_mask": (2, 16), "input_values": (2, 1, 4000)}),  # text with a clip
        ("layoutlmv3", {"input_ids": (2, 16), "attention_mask": (2, 16), "bbox": (2, 16, 4)}),  # its box embedding's widths
        ("muse_spark_audio", {"input_values": (2, 3 * 1920)}),  # whole tokens of 1920 samples
    ],
)
def test_the_inputs_found_for_models_the_made_up_batches_missed_before(model_type: str, shapes: dict) -> None:
    """None of these types had a forward on the inputs the bench made before (a 4-D video, a 2-D codec input, no
    decoder ids, latent attention's sizes left at its defaults, an expert count of None, a detector's backbone widths
    out of step, a vision tower's flattened patches, a vision tower naming no main input, a non-square image, videos
    under their own name, a required mask of features, features under another name, a time series, SigLIP 2's
    sequences of patches, a language, boxes, region features, a prompt, stacked features, B7's size, Hiera's stage
    widths, patches with their places, a spectrogram, an optional mask the forward reads, seven stacked frames, a
    decoder reading a 2304-wide encoder, text with audio, LayoutLMv3's box embedding, audio
    of whole tokens)."""
    model = oneshot_coverage.tiny_model(model_type, "causal-lm").eval()
    data, finite = oneshot_coverage.calibration_data(model)
    assert not isinstance(data, str), data
    assert len(data) == 2 and all({key: tuple(value.shape) for key, value in batch.items()} == shapes for batch in data)
    assert any(finite)


def test_boxes_are_corners_in_order_in_the_units_the_model_reads() -> None:
    """LayoutLM indexes its position tables with 0-1000 integers; Bros takes fractions of the page: x0 <= x1, y0 <= y1."""
    for model_type, dtype, top in (("layoutlm", torch.long, 1000), ("bros", torch.float32, 1)):
        model = oneshot_coverage.tiny_model(model_type, "causal-lm").eval()
        data, _ = oneshot_coverage.calibration_data(model)
        boxes = data[0]["bbox"]
        assert boxes.dtype == dtype and 0 <= boxes.min() and boxes.max() <= top
        assert (boxes[..., 0] <= boxes[..., 2]).all() and (boxes[..., 1] <= boxes[..., 3]).all()
        assert not torch.equal(data[0]["bbox"], data[1]["bbox"])


def test_a_main_input_given_as_a_list_is_not_taken_for_a_name() -> None:
    """OneFormer's ``main_input_name`` is a list (``["pixel_values", "task_inputs"]``): its first parameter, pixels, are
    tried (it raised ``unhashable type: 'list'`` in the bench, which failed the run as a bug)."""
    model = oneshot_coverage.tiny_model("oneformer", "causal-lm").eval()
    assert isinstance(model.main_input_name, list)
    assert [sorted(batches[0]) for batches in oneshot_coverage.example_batches(model)] == [["pixel_values"]]


@pytest.mark.parametrize("types", ["gpt2,no-such-type", ","])
def test_an_unknown_model_type_is_one_clear_error(tmp_path, capsys, types: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_info:
        oneshot_coverage.main(["--out", str(tmp_path), "--types", types])
    assert exit_info.value.code == 2
    assert "not a model type of this transformers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_nothing_calibrated_is_a_failure_not_an_empty_success(tmp_path, capsys) -> None:  # noqa: ANN001
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt_neo"]) == 1
    assert "nothing was checked" in capsys.readouterr().err


def test_a_model_with_nothing_to_prune_is_listed_apart_not_counted(tmp_path, capsys) -> None:  # noqa: ANN001
    """EnCodec's convolutions are all weight-normed (parametrized weights sparse24 leaves dense, with a note): its
    forward runs, but no method has a layer to prune, so it checks nothing and a run of it alone fails."""
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "encodec"]) == 1
    assert "nothing was checked" in capsys.readouterr().err
    row = _rows(tmp_path)["encodec"]
    assert row["status"] == "calibrated" and row["layers"] == 0 and row["inputs"] == ["input_values"]  # its mono clips
    markdown = (tmp_path / "oneshot_coverage.md").read_text()
    assert "1 types: 0 calibrated, 0 of them" in markdown and "; 1 calibrated with nothing to prune" in markdown
    assert "| encodec | magnitude prunes no layer these inputs reach: nothing was checked |" in markdown


def _patched(monkeypatch, method: str, effect) -> None:  # noqa: ANN001
    """sparsify as it is, but ``effect(model)`` runs instead of (or, returning a report, after) it for ``method``."""
    monkeypatch.undo()  # one patch at a time
    real = sparsify_module.sparsify

    def patched(model, method_="magnitude", **kwargs):  # noqa: ANN001, ANN003, ANN202
        chosen = kwargs.pop("method", method_)
        if chosen != method:
            return real(model, chosen, **kwargs)
        return effect(model, lambda: real(model, chosen, **kwargs))

    monkeypatch.setattr(sparsify_module, "sparsify", patched)


def test_sparse24_raising_or_a_non_finite_output_fails_the_run(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    def wanda(model, run):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug in the calibration")

    _patched(monkeypatch, "wanda", wanda)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2"]) == 1
    row = _rows(tmp_path)["gpt2"]
    assert row["wanda"]["error"] == "RuntimeError: a bug in the calibration" and row["sparsegpt"]["pruned"] == 4
    assert "| gpt2 | wanda: RuntimeError: a bug in the calibration |" in (tmp_path / "oneshot_coverage.md").read_text()
    assert "sparse24 raised, or made the output non-finite, on 1 model types: gpt2" in capsys.readouterr().err

    def sparsegpt(model, run):  # noqa: ANN001, ANN202
        report = run()
        model.lm_head.weight.data.fill_(float("nan"))
        return report

    _patched(monkeypatch, "sparsegpt", sparsegpt)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2"]) == 1
    row = _rows(tmp_path)["gpt2"]
    assert row["sparsegpt"]["finite"] is False and row["wanda"]["finite"]


def test_a_refusal_the_memory_and_the_time_limits_are_listed_not_failed(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from sparse24.errors import Sparse24Error

    def refuse(model, run):  # noqa: ANN001, ANN202
        raise Sparse24Error("the calibration forward never ran some layer")

    _patched(monkeypatch, "wanda", refuse)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2"]) == 0
    row = _rows(tmp_path)["gpt2"]
    assert row["status"] == "calibrated" and row["wanda"]["refused"] == "Sparse24Error: the calibration forward never ran some layer"
    assert "1 where a method refused with its own error" in (tmp_path / "oneshot_coverage.md").read_text()

    def out_of_memory(model, run):  # noqa: ANN001, ANN202
        if type(model).__name__ != "GPT2LMHeadModel":
            return run()
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes")

    _patched(monkeypatch, "wanda", out_of_memory)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llama"]) == 0  # llama was checked
    rows = _rows(tmp_path)
    assert rows["gpt2"]["status"] == "over the memory limit" and "can't allocate memory" in rows["gpt2"]["error"]
    assert rows["llama"]["status"] == "calibrated"

    def slow(model, run):  # noqa: ANN001, ANN202
        time.sleep(5)
        return run()

    _patched(monkeypatch, "sparsegpt", slow)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2", "--timeout", "2"]) == 1  # nothing else was checked
    row = _rows(tmp_path)["gpt2"]
    assert row["status"] == "timed out" and row["error"] == "over 2 s"


def test_a_type_whose_process_dies_or_hangs_is_listed_and_the_next_type_runs(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Each type runs in a process of its own: one killed (the kernel's out-of-memory killer, a crash in C) is a failure
    the run reports, one stuck where no Python handler can cut it is killed past its time, and the next type runs."""

    def die(model, run):  # noqa: ANN001, ANN202
        if type(model).__name__ != "GPT2LMHeadModel":
            return run()
        os.kill(os.getpid(), signal.SIGKILL)

    _patched(monkeypatch, "wanda", die)
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2,llama"]) == 1
    rows = _rows(tmp_path)
    assert rows["gpt2"] == {"type": "gpt2", "status": "failed", "error": "its process died of SIGKILL"}
    assert rows["llama"]["status"] == "calibrated" and rows["llama"]["wanda"]["pruned"] == rows["llama"]["layers"]
    assert "| gpt2 | its process died of SIGKILL |" in (tmp_path / "oneshot_coverage.md").read_text()
    assert "on 1 model types: gpt2" in capsys.readouterr().err

    def hang(model, run):  # noqa: ANN001, ANN202
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as a long call into C: the alarm's handler never runs
        time.sleep(60)

    _patched(monkeypatch, "sparsegpt", hang)
    start = time.monotonic()
    assert oneshot_coverage.main(["--out", str(tmp_path), "--types", "gpt2", "--timeout", "2"]) == 1  # nothing else was checked
    assert time.monotonic() - start < 30
    assert _rows(tmp_path)["gpt2"] == {"type": "gpt2", "status": "timed out", "error": "killed past 10 s"}  # 2 s for each of 5 phases


def test_taylor_on_a_decoder_a_base_vision_model_and_a_cnn(tmp_path) -> None:  # noqa: ANN001
    assert oneshot_coverage.main(["--taylor", "--out", str(tmp_path), "--types", "gpt2,vit,resnet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oneshot_coverage_taylor.json", "oneshot_coverage_taylor.md"]
    results = json.loads((tmp_path / "oneshot_coverage_taylor.json").read_text())
    assert results["family"] == "taylor" and results["command"].startswith("python bench/oneshot_coverage.py --taylor")
    rows = {r["type"]: r for r in results["types"]}
    gpt2 = rows["gpt2"]  # the model's own logits: sparse24's default, no logits_fn
    assert gpt2["logits"] == "logits" and gpt2["layers"] == 4
    for method in ("fisher", "pairs", "sequential"):
        assert gpt2[method]["pruned"] == 4 and gpt2[method]["finite"] and "magnitude_mask" not in gpt2[method], method
        assert gpt2[method]["padding"], method  # the model Fisher drew nothing at the padded positions
    assert gpt2["sequential"]["blocks"] == ["transformer.h"]
    vit = rows["vit"]  # a base model: a stand-in; its pooler is not on the path to last_hidden_state
    assert vit["logits"] == "last_hidden_state"
    assert all(vit[m]["pruned"] == vit["layers"] and vit[m]["magnitude_mask"] == ["pooler.dense.weight"] for m in oneshot_coverage.TAYLOR_METHODS)
    resnet = rows["resnet"]  # its [batch, channels, 1, 1] map: the channels are the classes
    assert resnet["logits"] == "last_hidden_state" and resnet["layers"] == 16  # four stages, one bottleneck each: three convs and a shortcut
    assert all(resnet[m]["pruned"] == resnet["layers"] for m in oneshot_coverage.TAYLOR_METHODS)
    markdown = (tmp_path / "oneshot_coverage_taylor.md").read_text()
    assert markdown == oneshot_coverage.markdown(results) and markdown.startswith("# Taylor coverage of transformers model types")
    assert "3 types: 3 calibrated, 3 of them with every layer magnitude prunes pruned by all three methods" in markdown
    assert "a stand-in (the first floating-point field" in markdown and "on 2 (`last_hidden_state` 2)" in markdown
    assert "| gpt2 | GPT2LMHeadModel | attention_mask, input_ids | `logits` | 4 (0) | 4/4 | 4/4 | 4/4 | `transformer.h` | yes/yes/yes |" in markdown
    assert "| 7/7 (magnitude's mask, no importance: 1) |" in markdown


def test_the_stand_in_logits_of_a_base_model() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    class Base(torch.nn.Module):
        def __init__(self, *fields: torch.Tensor) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(()))
            self.fields = fields

        def forward(self, input_ids: torch.Tensor) -> BaseModelOutputWithPooling:
            return BaseModelOutputWithPooling(*(f[: len(input_ids)] * self.weight for f in self.fields))

    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    name, logits_fn = oneshot_coverage.logits_for(Base(torch.randn(2, 5, 1), torch.randn(2, 6)), batch)
    assert name == "pooler_output" and logits_fn(Base(torch.randn(2, 5, 1), torch.randn(2, 6)), batch).shape == (2, 6)
    name, logits_fn = oneshot_coverage.logits_for(Base(torch.randn(2, 8, 1, 1)), batch)
    assert name == "last_hidden_state" and logits_fn(Base(torch.randn(2, 8, 1, 1)), batch).shape == (2, 1, 1, 8)  # channels last
    assert oneshot_coverage.logits_for(Base(torch.randn(2, 1), torch.randn(2, 1, 1, 1)), batch) == ("none", None)
    # a 4-D field with one channel, read as it is: PatchTST's [batch, channels, patches, width] (it found none)
    name, logits_fn = oneshot_coverage.logits_for(Base(torch.randn(2, 1, 3, 6)), batch)
    assert name == "last_hidden_state" and logits_fn(Base(torch.randn(2, 1, 3, 6)), batch).shape == (2, 1, 3, 6)

    class Tupled(Base):  # MGP-STR's logits: a tuple, one per decoder (it found none)
        def forward(self, input_ids: torch.Tensor) -> BaseModelOutputWithPooling:
            return BaseModelOutputWithPooling(hidden_states=tuple(f[: len(input_ids)] * self.weight for f in self.fields))

    name, logits_fn = oneshot_coverage.logits_for(Tupled(torch.randn(2, 7), torch.randn(2, 3)), batch)
    assert name == "hidden_states[0]" and logits_fn(Tupled(torch.randn(2, 7), torch.randn(2, 3)), batch).shape == (2, 7)


def test_taylor_raising_fails_the_run(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    def taylor(model, run):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug in the backward")

    _patched(monkeypatch, "taylor", taylor)
    assert oneshot_coverage.main(["--taylor", "--out", str(tmp_path), "--types", "gpt2"]) == 1
    row = json.loads((tmp_path / "oneshot_coverage_taylor.json").read_text())["types"][0]
    assert all(row[m]["error"] == "RuntimeError: a bug in the backward" for m in oneshot_coverage.TAYLOR_METHODS)
    assert "| gpt2 | fisher: RuntimeError: a bug in the backward; pairs: " in (tmp_path / "oneshot_coverage_taylor.md").read_text()
    assert "sparse24 raised, or made the output non-finite, on 1 model types: gpt2" in capsys.readouterr().err


def test_the_committed_tables_are_generated_from_their_json() -> None:
    from pathlib import Path

    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    found = sorted(results.glob("oneshot_coverage*.json")) + sorted(results.glob("oneshot_coverage*/*.json"))
    assert len(found) == 5, found  # Wanda/SparseGPT, its MoE rerun, its slow types alone, Taylor, Taylor's slow types
    for path in found:
        assert oneshot_coverage.markdown(json.loads(path.read_text())) == path.with_suffix(".md").read_text(), path
