"""``sparse24 finetune --config``: recipe parsing, validation and the command end to end."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

import sparse24
from sparse24.cli import main
from sparse24.errors import Sparse24Error
from sparse24.recipe import read_recipe

MODEL_FILE = '''
import torch
from torch import nn
from torch.nn import functional as F


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def data(n=6):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 16, generator=g), torch.randint(0, 8, (8,), generator=g)) for _ in range(n)]


def loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def evaluate(model, batches):
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    return {"accuracy": 100.0 * correct / sum(len(y) for _, y in batches)}
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a model file, dense weights and 2:4 weights (from ``sparse24 prune``)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.py").write_text(MODEL_FILE)
    dense = sparse24.io.load_model("toy.py:build")
    sparse24.save(dense, tmp_path / "dense.safetensors")
    assert main(["prune", "toy.py:build", "--weights", "dense.safetensors", "--out", "sparse.safetensors"]) == 0
    return tmp_path


def write_recipe(directory: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
model: toy.py:build
weights: sparse.safetensors
teacher: dense.safetensors
loss: toy.py:loss
data:
  train: toy.py:data
  eval: toy.py:data
eval_fn: toy.py:evaluate
finetune:
  epochs: 2
  lr: 1.0e-3
  warmup_steps: 2
seed: 0
out: tuned.safetensors
history: history.json
"""


def test_finetune_command_trains_verifies_and_writes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(project, BASE)
    assert main(["finetune", "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "finetuned 12 steps" in out and "eval before: accuracy=" in out and "eval after:  accuracy=" in out
    tuned = sparse24.io.load_model("toy.py:build")
    masked = sparse24.load(tuned, project / "tuned.safetensors")
    assert masked == ["0.weight", "2.weight"]
    sparse24.verify(tuned)
    sparse = sparse24.io.read_state_dict(project / "sparse.safetensors")
    assert not torch.equal(tuned[0].weight, sparse["0.weight"]), "training changed nothing"
    assert torch.equal(tuned[0].weight_sparse24_mask, sparse["0.weight_sparse24_mask"]), "masks moved"
    history = json.loads((project / "history.json").read_text())
    assert len(history["steps"]) == 12 and len(history["epochs"]) == 2
    assert {"task", "distill"} <= set(history["steps"][0])  # distilled from the teacher
    assert main(["verify", "tuned.safetensors"]) == 0


def test_sparsify_section_prunes_dense_weights_first(project: Path) -> None:
    recipe = write_recipe(
        project,
        BASE.replace("weights: sparse.safetensors", "weights: dense.safetensors")
        + "sparsify:\n  method: taylor\n  data: toy.py:data\n  num_batches: 2\n",
    )
    assert main(["finetune", "--config", str(recipe)]) == 0
    tuned = sparse24.io.load_model("toy.py:build")
    assert sparse24.load(tuned, project / "tuned.safetensors") == ["0.weight", "2.weight"]
    sparse24.verify(tuned)


def test_sparsify_section_takes_recalibrate_bn(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    recipe = write_recipe(
        project,
        BASE.replace("weights: sparse.safetensors", "weights: dense.safetensors")
        + "sparsify:\n  method: magnitude\n  data: toy.py:data\n  recalibrate_bn: true\n",
    )
    with caplog.at_level("WARNING", logger="sparse24.batchnorm"):
        assert main(["finetune", "--config", str(recipe)]) == 0
    assert "no BatchNorm with running statistics" in caplog.text  # the toy model has none: said, not silently skipped


def test_toml_recipe_and_overrides(project: Path) -> None:
    recipe = write_recipe(
        project,
        """\
        model = "toy.py:build"
        weights = "sparse.safetensors"
        loss = "toy.py:loss"
        out = "tuned.safetensors"
        [data]
        train = {fn = "toy.py:data", args = {n = 4}}
        [finetune]
        epochs = 1
        """,
        name="recipe.toml",
    )
    parsed = read_recipe(recipe, ["finetune.lr=5e-4", "finetune.epochs=3", "resume=true"])
    assert parsed.finetune == {"epochs": 3, "lr": 5e-4}
    assert parsed.resume is True and parsed.train == {"fn": "toy.py:data", "args": {"n": 4}}
    assert main(["finetune", "--config", str(recipe), "--set", "history=h.json"]) == 0
    assert len(json.loads((project / "h.json").read_text())["steps"]) == 4  # 4 batches, 1 epoch


def test_resume_from_checkpoints_through_the_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(project, BASE + "checkpoint_dir: ckpt\nresume: true\n")
    assert main(["finetune", "--config", str(recipe), "--set", "out=first.safetensors"]) == 0
    assert (project / "ckpt" / "latest").read_text().strip() == "step-00000012"
    capsys.readouterr()
    assert main(["finetune", "--config", str(recipe), "--set", "out=second.safetensors"]) == 0
    assert "resumed at step 12" in capsys.readouterr().out
    first = sparse24.io.read_state_dict(project / "first.safetensors")
    second = sparse24.io.read_state_dict(project / "second.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "lrr: 1\n", "unknown key lrr"),
        (BASE.replace("  epochs: 2", "  epochs: 2\n  learning_rate: 1"), "finetune: unknown key learning_rate"),
        (BASE.replace("model: toy.py:build\n", ""), "missing required key 'model'"),
        (BASE.replace("  train: toy.py:data\n", ""), "missing required key 'data.train'"),
        (BASE.replace("out: tuned.safetensors", "out: tuned.pt"), "out must end in .safetensors"),
        (BASE + "resume: 3\n", "resume must be true, false or a checkpoint path"),
        (BASE + "seed: x\n", "seed must be an integer"),
        ("model: [unclosed\n", "invalid YAML"),
        ("- just\n- a list\n", "a recipe is a mapping"),
    ],
)
def test_bad_recipes_are_rejected_with_one_line(project: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    recipe = write_recipe(project, text)
    with pytest.raises(Sparse24Error, match=message):
        read_recipe(recipe)
    assert main(["finetune", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (project / "tuned.safetensors").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("weights: sparse.safetensors", "weights: dense.safetensors"), "has no 2:4 masks"),
        (("teacher: dense.safetensors", "teacher: sparse.safetensors"), "teacher weights sparse.safetensors are 2:4 masked"),
        (("weights: sparse.safetensors", "weights: missing.safetensors"), "weights file not found: missing.safetensors"),
        (("out: tuned.safetensors", "out: nodir/tuned.safetensors"), "output directory does not exist: nodir"),
        (("  lr: 1.0e-3", "  lr: -1"), "lr must be a positive number"),
        (("loss: toy.py:loss", "loss: toy.py:nope"), "has no attribute 'nope'"),
    ],
)
def test_user_mistakes_exit_2_and_write_nothing(project: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], message: str) -> None:
    recipe = write_recipe(project, BASE.replace(*change))
    assert main(["finetune", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparse24: error:") and message in err and err.count("\n") == 1
    assert not (project / "tuned.safetensors").exists() and not (project / "history.json").exists()


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("finetune.lr", "--set expects KEY=VALUE (dotted keys for sections), got 'finetune.lr'"),
        ("=1", "--set expects KEY=VALUE (dotted keys for sections), got '=1'"),
        ("finetune..lr=1", "--set expects KEY=VALUE (dotted keys for sections), got 'finetune..lr=1'"),
        ("finetune.lr.x=1", "--set finetune.lr.x: lr is not a section"),
        ("finetune.lr=[1,", "--set finetune.lr: '[1,' is not valid YAML (to set a string, quote it: --set finetune.lr='\"...\"')"),
    ],
)
def test_bad_overrides_are_one_line_errors(project: Path, capsys: pytest.CaptureFixture[str], assignment: str, message: str) -> None:
    recipe = write_recipe(project, BASE)
    with pytest.raises(Sparse24Error) as raised:
        read_recipe(recipe, [assignment])
    assert str(raised.value) == message
    assert main(["finetune", "--config", str(recipe), "--set", assignment]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"sparse24: error: {message}\n" and "Traceback" not in captured.out + captured.err
    assert not (project / "tuned.safetensors").exists() and not (project / "history.json").exists()


def test_a_quoted_override_is_a_string_as_the_error_suggests(project: Path) -> None:
    recipe = write_recipe(project, BASE)
    with pytest.raises(Sparse24Error, match="is not valid YAML"):
        read_recipe(recipe, ["history=[draft].json"])
    assert read_recipe(recipe, ['history="[draft].json"']).history == "[draft].json"


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe not found" in capsys.readouterr().err


def test_shipped_demo_recipe_parses() -> None:
    recipe = read_recipe(Path(sparse24.__file__).parent / "recipes" / "digits.yaml")
    assert recipe.model == "sparse24.demo:DigitsResNet" and recipe.teacher and recipe.finetune["epochs"] >= 1
    assert recipe.finetune["lr"] == 1e-3, "YAML's 1e-3 (no dot) must read as a number, not a string"


def test_finetune_command_under_torchrun_two_ranks(project: Path) -> None:
    import subprocess
    import sys

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    recipe = write_recipe(project, BASE.replace("seed: 0", "seed: 0\ncheckpoint_dir: ckpt\ndevice: cpu"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparse24.cli", "finetune", "--config", str(recipe)]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("finetuned 6 steps") == 1  # 6 batches split over 2 ranks, 2 epochs; rank 0 reports
    tuned = sparse24.io.load_model("toy.py:build")
    sparse24.load(tuned, project / "tuned.safetensors")
    sparse24.verify(tuned)
    assert sorted(p.name for p in (project / "ckpt").iterdir()) == ["latest", "step-00000003", "step-00000006"]
