"""sparse24.hub: models by name (hf:, torchvision:, timm:) and 2:4 models saved as from_pretrained directories.

Tiny random-init transformers models (hidden 32, one layer) are saved with save_pretrained into
tmp directories; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sparse24_testing import import_problem
import torch
from safetensors import safe_open
from torch import nn

import sparse24
from sparse24 import MASK_SUFFIX, Sparse24Error
from sparse24.cli import main
from sparse24.hub import MASKS_FILE, save_pretrained
from sparse24.io import load_model

transformers = pytest.importorskip("transformers")


TORCHVISION_PROBLEM = import_problem("torchvision")
TIMM_PROBLEM = import_problem("timm")


def _bert() -> nn.Module:
    config = transformers.BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(config)


def _gpt2() -> nn.Module:
    config = transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def _llama() -> nn.Module:
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64, max_position_embeddings=32, bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(config)


def _vit() -> nn.Module:
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3)
    return transformers.ViTForImageClassification(config)


def _tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 128, (2, 8))}


def _text_lm() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 128, (2, 8)), "use_cache": False}


def _pixels() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(2, 3, 32, 32)}


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], dict]]] = {
    "bert": (_bert, _tokens),
    "gpt2": (_gpt2, _text_lm),
    "llama": (_llama, _text_lm),
    "vit": (_vit, _pixels),
}


def _saved(tmp_path: Path, kind: str) -> tuple[Path, type]:
    """A tiny random ``kind`` model saved with save_pretrained into ``tmp_path/kind``; its class."""
    model = MODELS[kind][0]()
    directory = tmp_path / kind
    model.save_pretrained(directory)
    return directory, type(model)


@pytest.fixture
def bert_dir(tmp_path: Path) -> Path:
    return _saved(tmp_path, "bert")[0]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``sparse24 ARGV`` in process: exit status, stdout, stderr (of this command only)."""
    capsys.readouterr()  # drop what the test printed before (save_pretrained's progress bars)
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *words: str, loaded: bool = False) -> None:
    """Stderr is one ``sparse24:`` line naming ``words``; with ``loaded``, after what transformers printed loading the model."""
    lines = err.strip().splitlines()
    if loaded:  # transformers' load reports (not its progress bars, which sparse24 turns off) come first
        lines = [line for line in lines if line.startswith("sparse24:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("sparse24:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _masks(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    with safe_open(str(directory / MASKS_FILE), "pt") as handle:
        masks = {key: handle.get_tensor(key) for key in handle.keys()}
        axes = json.loads(handle.metadata()["sparse24"])["axes"]
    return masks, axes


def _outputs(model: nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


@pytest.mark.parametrize("kind", list(MODELS))
def test_prune_hf_dir_round_trip(capsys, tmp_path, kind):
    source, cls = _saved(tmp_path, kind)
    out = tmp_path / "sparse"
    code, stdout, err = run(capsys, "prune", f"hf:{source}", "--method", "magnitude", "--out", str(out))
    assert code == 0, err
    assert f"wrote {out}" in stdout
    assert {"config.json", "model.safetensors", MASKS_FILE} <= {p.name for p in out.iterdir()}
    assert leftovers(tmp_path) == []
    masks, axes = _masks(out)
    assert masks and set(axes) == {key[: -len(MASK_SUFFIX)] for key in masks}
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert not [key for key in handle.keys() if key.endswith(MASK_SUFFIX)]  # masks only in the sidecar

    # plain transformers gets the 2:4 model: masked weights are 2:4 and zero outside their masks
    reloaded = cls.from_pretrained(out)
    assert not sparse24.masked_weights(reloaded)
    for key, mask in masks.items():
        name = key[: -len(MASK_SUFFIX)]
        weight = reloaded.get_parameter(name).detach()
        assert mask.dtype == torch.uint8, f"{name}: the sidecar holds the packed mask (1 bit per weight)"
        mask = sparse24.enforce.stored_mask(mask, weight.shape, key)
        assert sparse24.is_two_four(weight, axes[name]), name
        assert not bool(weight[~mask].any()), name

    # ... the same model as pruning in memory
    reference = cls.from_pretrained(source)
    report = sparse24.sparsify(reference, "magnitude")
    assert {layer.name for layer in report.sparse_layers} == set(axes)
    stored = {k: v for k, v in reference.state_dict().items() if not k.endswith(MASK_SUFFIX)}
    assert all(torch.equal(stored[k], v) for k, v in reloaded.state_dict().items())
    inputs = MODELS[kind][1]()
    assert torch.equal(_outputs(reloaded, inputs), _outputs(reference, inputs))

    # sparse24.load re-attaches the masks (and loads the weights) into a fresh random model
    fresh = MODELS[kind][0]()
    assert sorted(sparse24.load(fresh, out)) == sorted(axes)
    assert torch.equal(_outputs(fresh, inputs), _outputs(reference, inputs))
    fresh.train()
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        fresh(**inputs).logits.float().pow(2).mean().backward()
        optimizer.step()
    assert len(sparse24.verify(fresh).sparse_layers) == len(axes)  # training kept 2:4

    code, stdout, err = run(capsys, "verify", str(out))
    assert code == 0, err
    assert f"OK: {len(axes)} weights are 2:4" in stdout


def test_tied_gpt2_head_stays_tied_and_unmasked(capsys, tmp_path):
    source, cls = _saved(tmp_path, "gpt2")
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{source}", "--out", str(out))[0] == 0
    masks, _ = _masks(out)
    assert not [key for key in masks if key.startswith(("lm_head", "transformer.wte"))]
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert "lm_head.weight" not in handle.keys()  # saved once, as transformers does for tied weights
    reloaded = cls.from_pretrained(out)
    assert reloaded.lm_head.weight is reloaded.transformer.wte.weight
    fresh = _gpt2()
    sparse24.load(fresh, out)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight


def test_load_model_python_api(bert_dir):
    assert type(load_model(f"hf:{bert_dir}")).__name__ == "BertForSequenceClassification"  # config.json architectures
    assert type(load_model(f"hf:{bert_dir}", hf_class="AutoModel")).__name__ == "BertModel"
    assert type(load_model({"fn": f"hf:{bert_dir}", "args": {"hf_class": "BertModel"}})).__name__ == "BertModel"
    model = load_model({"fn": f"hf:{bert_dir}", "args": {"num_labels": 3}})
    assert model.classifier.out_features == 3


def test_without_architectures_falls_back_to_automodel(tmp_path, bert_dir):
    config = json.loads((bert_dir / "config.json").read_text())
    del config["architectures"]
    (bert_dir / "config.json").write_text(json.dumps(config))
    assert type(load_model(f"hf:{bert_dir}")).__name__ == "BertModel"


def test_companion_files_are_copied(capsys, tmp_path, bert_dir):
    (bert_dir / "vocab.txt").write_text("[PAD]\n")
    (bert_dir / "tokenizer_config.json").write_text("{}")
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    assert (out / "vocab.txt").read_text() == "[PAD]\n"
    assert (out / "tokenizer_config.json").is_file()


@pytest.mark.parametrize(
    ("setup", "extra", "words"),
    [
        ("missing", [], ["directory not found"]),
        ("no_config", [], ["no config.json"]),
        ("bert", ["--hf-class", "NoSuchModelClass"], ["--hf-class NoSuchModelClass", "no model class"]),
        ("bert", ["--hf-class", "AutoModelForImageClassification"], ["cannot load it as AutoModelForImageClassification"]),
        ("bert", ["--hf-class", "AutoTokenizer"], ["not a torch.nn.Module"]),
    ],
)
def test_bad_hf_spec(capsys, tmp_path, setup, extra, words):
    directory = tmp_path / "model"
    if setup == "no_config":
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"")
    elif setup == "bert":
        directory = _saved(tmp_path, "bert")[0]
    out = tmp_path / "sparse"
    code, _, err = run(capsys, "prune", f"hf:{directory}", *extra, "--out", str(out))
    assert code == 2
    assert_one_line_error(err, *words)
    assert not out.exists() and leftovers(tmp_path) == []


def test_hf_class_needs_an_hf_model(capsys, tmp_path):
    code, _, err = run(capsys, "prune", "sparse24.demo:DigitsResNet", "--hf-class", "AutoModel", "--out", str(tmp_path / "s.safetensors"))
    assert code == 2
    assert_one_line_error(err, "--hf-class applies to hf:PATH models only")


def test_directory_out_needs_a_transformers_model(capsys, tmp_path):
    out = tmp_path / "sparse"
    code, _, err = run(capsys, "prune", "sparse24.demo:DigitsResNet", "--out", str(out))
    assert code == 2
    assert_one_line_error(err, "--out must end in .safetensors")
    assert not out.exists()


def test_transformers_not_installed(capsys, monkeypatch, tmp_path, bert_dir):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` meets without it
    code, _, err = run(capsys, "prune", f"hf:{bert_dir}", "--out", str(tmp_path / "sparse"))
    assert code == 2
    assert_one_line_error(err, f"hf:{bert_dir} needs transformers", "pip install transformers")


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_vision_package_missing_is_one_line(capsys, tmp_path, package):
    problem = {"torchvision": TORCHVISION_PROBLEM, "timm": TIMM_PROBLEM}[package]
    if problem is None:
        pytest.skip(f"{package} imports here; the error path needs it missing or broken")
    code, _, err = run(capsys, "prune", f"{package}:resnet18", "--out", str(tmp_path / "s.safetensors"))
    assert code == 2
    assert_one_line_error(err, f"{package}:resnet18 needs {package}", f"pip install {package}")


@pytest.mark.skipif(TORCHVISION_PROBLEM is not None, reason=TORCHVISION_PROBLEM or "")
def test_torchvision_model_by_name(capsys, tmp_path):
    model = load_model("torchvision:resnet18")
    assert type(model).__name__ == "ResNet"
    weights = tmp_path / "dense.safetensors"
    sparse24.save(model, weights)
    out = tmp_path / "sparse.safetensors"
    code, _, err = run(capsys, "prune", "torchvision:resnet18", "--weights", str(weights), "--out", str(out))
    assert code == 0, err
    fresh = load_model("torchvision:resnet18")
    assert sparse24.load(fresh, out)
    code, _, err = run(capsys, "prune", "torchvision:no_such_net", "--out", str(tmp_path / "x.safetensors"))
    assert code == 2
    assert_one_line_error(err, "torchvision has no model 'no_such_net'")


@pytest.mark.skipif(TIMM_PROBLEM is not None, reason=TIMM_PROBLEM or "")
def test_timm_model_by_name(capsys, tmp_path):
    model = load_model("timm:resnet18")
    assert type(model).__name__ == "ResNet"
    assert load_model({"fn": "timm:resnet18", "args": {"num_classes": 10}}).fc.out_features == 10
    out = tmp_path / "sparse.safetensors"
    code, _, err = run(capsys, "prune", "timm:resnet18", "--out", str(out))
    assert code == 0, err
    code, _, err = run(capsys, "prune", "timm:no_such_net", "--out", str(tmp_path / "x.safetensors"))
    assert code == 2
    assert_one_line_error(err, "timm has no model 'no_such_net'")


def test_existing_out_is_replaced_only_on_success(capsys, tmp_path, bert_dir):
    out = tmp_path / "sparse"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "marker").write_text("old")
    code, _, err = run(capsys, "prune", f"hf:{bert_dir}", "--min-params", "1000000000", "--out", str(out))  # no layer qualifies
    assert code == 2
    assert_one_line_error(err, "nothing was written", loaded=True)
    assert (out / "marker").read_text() == "old" and leftovers(tmp_path) == []

    model = load_model(f"hf:{bert_dir}")
    sparse24.sparsify(model)
    with pytest.raises(ValueError):  # fails inside save_pretrained, after it wrote the config
        save_pretrained(model, out, max_shard_size="not a size")
    assert (out / "marker").read_text() == "old" and leftovers(tmp_path) == []

    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    assert not (out / "marker").exists() and (out / MASKS_FILE).is_file()
    assert leftovers(tmp_path) == []


def test_existing_non_model_dir_is_never_replaced(capsys, tmp_path, bert_dir):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("keep me")
    code, _, err = run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))
    assert code == 2
    assert_one_line_error(err, "not a model directory")
    assert [p.name for p in out.iterdir()] == ["todo.txt"]


def test_verify_fails_on_a_tampered_dir(capsys, tmp_path, bert_dir):
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    masks, _ = _masks(out)
    key = sorted(masks)[0]
    name = key[: -len(MASK_SUFFIX)]
    model = transformers.BertForSequenceClassification.from_pretrained(out)
    with torch.no_grad():
        weight = model.get_parameter(name)
        weight[~sparse24.enforce.stored_mask(masks[key], weight.shape, key)] = 1.0  # a dense user edit, saved with plain transformers over the 2:4 weights
    model.save_pretrained(out)
    code, _, err = run(capsys, "verify", str(out))
    assert code == 1
    assert_one_line_error(err, "not 2:4", name, loaded=True)


def test_verify_file_takes_a_directory_in_python(capsys, tmp_path, bert_dir):
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    report = sparse24.verify_file(out)
    assert report.sparse_layers and {layer.name for layer in report.sparse_layers} == set(_masks(out)[1])
    with pytest.raises(Sparse24Error, match="is a directory: its config.json gives the model"):
        sparse24.verify_file(out, _bert())


def test_no_progress_bars_from_transformers_on_the_command_line(capsys, tmp_path, bert_dir):
    out = tmp_path / "pruned"
    code, _, err = run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))
    assert code == 0 and "Loading weights" not in err and "Writing model shards" not in err, err
    code, _, err = run(capsys, "verify", str(out))
    assert code == 0 and "Loading weights" not in err, err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # turned off only while sparse24 loads and saves


def test_verify_dir_without_masks(capsys, bert_dir):
    code, _, err = run(capsys, "verify", str(bert_dir))
    assert code == 1
    assert_one_line_error(err, "nothing was checked", MASKS_FILE, loaded=True)


def test_load_dir_checks_before_loading(tmp_path, bert_dir):
    out = tmp_path / "sparse"
    model = load_model(f"hf:{bert_dir}")
    sparse24.sparsify(model)
    save_pretrained(model, out)
    with pytest.raises(Sparse24Error, match="load it into a transformers model"):
        sparse24.load(nn.Linear(4, 4), out)
    config = transformers.BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=32, num_labels=3)
    other = transformers.BertForSequenceClassification(config)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(Sparse24Error, match="does not fit"):
        sparse24.load(other, out)
    assert not sparse24.masked_weights(other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_masks_follow_between_head_and_base_model(capsys, tmp_path, bert_dir):
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    masks, _ = _masks(out)
    assert all(key.startswith("bert.") for key in masks)  # saved from BertForSequenceClassification
    base = load_model(f"hf:{bert_dir}", hf_class="BertModel")
    names = sparse24.load(base, out)
    assert sorted(names) == sorted(key[len("bert.") : -len(MASK_SUFFIX)] for key in masks)
    assert len(sparse24.verify(base).sparse_layers) == len(masks)
    code, stdout, err = run(capsys, "verify", str(out), "--hf-class", "BertModel")
    assert code == 0, err
    assert f"OK: {len(masks)} weights are 2:4" in stdout


LM_FILE = """
import torch


def data():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 128, (2, 8), generator=g) for _ in range(3)]


def loss(model, batch):
    return model(input_ids=batch, labels=batch, use_cache=False).loss
"""


def test_finetune_recipe_with_hf_model_and_dir_weights(capsys, tmp_path, monkeypatch):
    source, _ = _saved(tmp_path, "llama")
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{source}", "--out", str(out))[0] == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lm.py").write_text(LM_FILE)
    (tmp_path / "recipe.yaml").write_text(
        f"model: hf:{source}\nweights: {out}\ndata: {{train: lm.py:data}}\nloss: lm.py:loss\n"
        "finetune: {steps: 2, lr: 1.0e-2}\nseed: 0\ndevice: cpu\nout: tuned.safetensors\n"
    )
    code, stdout, err = run(capsys, "finetune", "--config", "recipe.yaml")
    assert code == 0, err
    assert "finetuned 2 steps" in stdout
    tuned = load_model(f"hf:{source}")
    assert sorted(sparse24.load(tuned, tmp_path / "tuned.safetensors")) == sorted(_masks(out)[1])
    sparse24.verify(tuned)
    pruned = load_model(f"hf:{out}")
    changed = [name for name, value in tuned.state_dict().items() if not name.endswith(MASK_SUFFIX) and not torch.equal(value, pruned.state_dict()[name])]
    assert changed  # the steps trained the model loaded from the directory


def test_finetune_recipe_writes_a_from_pretrained_directory(capsys, tmp_path, monkeypatch):
    source, _ = _saved(tmp_path, "llama")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lm.py").write_text(LM_FILE)
    recipe = f"model: hf:{source}\nsparsify: {{method: magnitude}}\ndata: {{train: lm.py:data}}\nloss: lm.py:loss\nfinetune: {{steps: 2, lr: 1.0e-2}}\nseed: 0\ndevice: cpu\n"
    (tmp_path / "recipe.yaml").write_text(recipe + "out: tuned\n")
    code, _, err = run(capsys, "finetune", "--config", "recipe.yaml")
    assert code == 0, err
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "tuned")
    masks = sparse24.hub._read_masks(tmp_path / "tuned")[0]
    assert masks and not sparse24.masked_weights(plain)
    assert sorted(sparse24.load(plain, tmp_path / "tuned")) == sorted(key[: -len(MASK_SUFFIX)] for key in masks)
    sparse24.verify(plain)
    assert main(["verify", str(tmp_path / "tuned")]) == 0

    (tmp_path / "cnn.yaml").write_text("model: sparse24.demo:DigitsResNet\nsparsify: {method: magnitude}\ndata: {train: sparse24.demo:calibration_batches}\nloss: sparse24.demo:loss_fn\nout: tuned_cnn\n")
    code, _, err = run(capsys, "finetune", "--config", "cnn.yaml")
    assert code == 2 and "out: tuned_cnn is a directory, which is for transformers models" in err and not (tmp_path / "tuned_cnn").exists()
    (tmp_path / "bad.yaml").write_text(recipe + "out: tuned.pt\n")
    code, _, err = run(capsys, "finetune", "--config", "bad.yaml")
    assert code == 2 and "out must end in .safetensors" in err


def test_export_hf_dir_with_its_masks(capsys, tmp_path, bert_dir):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "sparse"
    assert run(capsys, "prune", f"hf:{bert_dir}", "--out", str(out))[0] == 0
    onnx_file = tmp_path / "bert.onnx"
    code, stdout, err = run(capsys, "export", f"hf:{out}", "--weights", str(out), "--input-shape", "int64:1x8:0:128", "--out", str(onnx_file))
    assert code == 0, err
    assert "parity PASS" in stdout
    assert f"{len(_masks(out)[0])} weights sparse24 made 2:4 are 2:4 in the ONNX" in stdout
    assert onnx_file.is_file()
