"""The README's "Your own model" section, run as written on a tiny random-init Llama directory."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sparse24_testing import import_problem

transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]


def _blocks() -> list[tuple[str, str]]:
    """The fenced blocks (language, text) of the README's "Your own model" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Your own model\n(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README.md has no '## Your own model' section"
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", match.group(1), flags=re.S | re.M)
    assert [language for language, _ in blocks] == ["bash", "python", "bash"], "the section's blocks changed: update this test"
    return blocks


def _commands(block: str) -> list[list[str]]:
    return [shlex.split(line) for line in block.strip().splitlines()]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert argv[0] == "sparse24", argv
    return subprocess.run([sys.executable, "-m", "sparse24", *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_transformers_commands_and_python_as_written(tmp_path: Path) -> None:
    bash, python, _ = _blocks()
    from tokenizers import ByteLevelBPETokenizer

    config = transformers.LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-llama")
    text = "\n".join(f"= Section {i} =\nThe {i}th paragraph of a held-out article, with {i * 7} words in it.\n" for i in range(40))
    (tmp_path / "wiki.test.raw").write_text(text)  # the perplexity line's text: WikiText-2's test split in name
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=300, min_frequency=2, special_tokens=["<eos>"], show_progress=False)
    transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>").save_pretrained(tmp_path / "tiny-llama")
    for argv in _commands(bash[1]):
        done = _run(argv, tmp_path)
        assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    out = tmp_path / "tiny-llama-24"
    assert (out / "config.json").is_file() and (out / "sparse24_masks.safetensors").is_file()
    assert (tmp_path / "tiny-llama-24.onnx").is_file() and (tmp_path / "tiny-llama-24.md").is_file()
    results = json.loads((tmp_path / "ppl.json").read_text())["results"]
    assert [row["model"] for row in results] == ["hf:tiny-llama", "hf:tiny-llama-24"] and all(row["windows"] >= 1 for row in results)
    script = tmp_path / "own_model.py"
    script.write_text(python[1] + "\nassert masked, 'no masks came back'\nprint(len(masked))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) >= 14, "2 layers x 7 projections are 2:4"


@pytest.mark.skipif(import_problem("torchvision") is not None, reason=str(import_problem("torchvision")))
def test_torchvision_command_as_written(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    (argv, _) = _commands(_blocks()[2][1])
    weights = argv[argv.index("--weights") + 1]
    import torchvision

    save_file({k: v.contiguous() for k, v in torchvision.models.get_model("resnet18", weights=None).state_dict().items()}, str(tmp_path / weights))
    done = _run(argv, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / argv[argv.index("--out") + 1]).is_file()


@pytest.mark.skipif(import_problem("timm") is not None, reason=str(import_problem("timm")))
def test_timm_command_as_written(tmp_path: Path) -> None:
    (_, argv) = _commands(_blocks()[2][1])
    done = _run(argv, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / argv[argv.index("--out") + 1]).is_file()
