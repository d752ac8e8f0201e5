"""The ``sparse24`` command: happy paths and one clear line for every user mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import sparse24
from sparse24.cli import main
from sparse24.demo import DigitsResNet, calibration_batches, logits_fn

MODEL = "sparse24.demo:DigitsResNet"


@pytest.fixture
def dense_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "dense.safetensors"
    sparse24.save(DigitsResNet(), path)
    return path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_prune_magnitude_then_verify(capsys, tmp_path, dense_file):
    out, report = tmp_path / "sparse.safetensors", tmp_path / "report.json"
    code, stdout, _ = run(capsys, "prune", MODEL, "--weights", str(dense_file), "--out", str(out), "--report", str(report))
    assert code == 0
    assert "block1.conv1.weight" in stdout
    data = json.loads(report.read_text())
    assert data["totals"]["sparse_layers"] == 5
    with safe_open(str(out), "pt") as handle:
        assert "block1.conv1.weight_sparse24_mask" in handle.keys()
    code, stdout, _ = run(capsys, "verify", str(out))
    assert code == 0 and "OK: 5 weights are 2:4" in stdout
    code, stdout, _ = run(capsys, "verify", str(out), "--model", MODEL)
    assert code == 0 and "OK: 5 weights are 2:4" in stdout
    model = DigitsResNet()
    assert len(sparse24.load(model, out)) == 5
    assert len(sparse24.verify(model).sparse_layers) == 5


def test_prune_taylor_with_demo_calibration(capsys, tmp_path, dense_file):
    out = tmp_path / "taylor.safetensors"
    code, stdout, _ = run(
        capsys, "prune", MODEL, "--weights", str(dense_file), "--method", "taylor",
        "--data", "sparse24.demo:calibration_batches", "--loss", "sparse24.demo:loss_fn",
        "--num-batches", "2", "--policy", "any", "--exclude", "head", "--out", str(out),
    )
    assert code == 0, stdout
    assert "criterion: taylor" in stdout
    assert "excluded by 'head'" in stdout


def assert_cli_matches_api(out: Path, dense_file: Path, **options) -> None:
    """The file ``prune`` wrote equals ``sparsify(..., "taylor", **options)`` on 2 demo calibration batches, key for key and bit for bit."""
    model = DigitsResNet()
    sparse24.io.load(model, dense_file)
    sparse24.sparsify(model, "taylor", data=calibration_batches(), num_batches=2, progress=False, **options)
    written = sparse24.io.read_state_dict(out)
    assert written.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in written.items()), "the CLI and the API chose differently"


def test_prune_taylor_with_the_model_fisher(capsys, tmp_path, dense_file):
    out = tmp_path / "fisher.safetensors"
    args = ["--weights", str(dense_file), "--method", "taylor", "--squared", "--labels", "model", "--samples", "2", "--data", "sparse24.demo:calibration_batches", "--num-batches", "2"]
    code, stdout, err = run(capsys, "prune", MODEL, *args, "--logits", "sparse24.demo:logits_fn", "--out", str(out))
    assert code == 0, err
    assert_cli_matches_api(out, dense_file, squared=True, labels="model", samples=2, logits_fn=logits_fn)

    code, _, err = run(capsys, "prune", MODEL, *args, "--out", str(tmp_path / "no.safetensors"))
    assert code == 2 and not (tmp_path / "no.safetensors").exists()
    assert_one_line_error(err, "the model cannot be called on the batch", "--logits MODULE:CALLABLE")
    code, _, err = run(capsys, "prune", MODEL, "--weights", str(dense_file), "--method", "taylor", "--samples", "2", "--data", "sparse24.demo:calibration_batches", "--loss", "sparse24.demo:loss_fn", "--out", str(tmp_path / "no.safetensors"))
    assert code == 2
    assert_one_line_error(err, "apply to labels='model' only")


def test_prune_taylor_pairs_matches_the_api_and_needs_squared(capsys, tmp_path, dense_file):
    out = tmp_path / "pairs.safetensors"
    args = ["--weights", str(dense_file), "--method", "taylor", "--per-sample", "--labels", "model", "--logits", "sparse24.demo:logits_fn", "--data", "sparse24.demo:calibration_batches", "--num-batches", "2"]
    code, stdout, err = run(capsys, "prune", MODEL, *args, "--squared", "--pairs", "--out", str(out))
    assert code == 0, err
    assert_cli_matches_api(out, dense_file, squared=True, per_sample=True, labels="model", logits_fn=logits_fn, pairs=True)
    code, _, err = run(capsys, "prune", MODEL, *args, "--pairs", "--out", str(tmp_path / "no.safetensors"))
    assert code == 2 and not (tmp_path / "no.safetensors").exists()
    assert_one_line_error(err, "pairs=True", "needs squared=True")


def test_console_script_runs(tmp_path, dense_file):
    out = tmp_path / "sparse.safetensors"
    prune = subprocess.run(
        [sys.executable, "-m", "sparse24", "prune", MODEL, "--weights", str(dense_file), "--out", str(out)],
        capture_output=True, text=True,
    )
    assert prune.returncode == 0, prune.stderr
    missing = subprocess.run([sys.executable, "-m", "sparse24", "verify", str(tmp_path / "nope.safetensors")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert_one_line_error(missing.stderr, "not found")


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("sparse24.demo", ["module:name"]),
        ("no_such_package_xyz:build", ["cannot import"]),
        ("sparse24.demo:NoSuchThing", ["no attribute"]),
        ("sparse24.demo:SEED", ["not a torch.nn.Module"]),
        ("missing_file.py:build", ["file not found"]),
    ],
)
def test_bad_model_spec(capsys, tmp_path, model, words):
    out = tmp_path / "sparse.safetensors"
    code, _, err = run(capsys, "prune", model, "--out", str(out))
    assert code == 2
    assert_one_line_error(err, *words)
    assert not out.exists()


def test_missing_weights_file(capsys, tmp_path):
    out = tmp_path / "sparse.safetensors"
    code, _, err = run(capsys, "prune", MODEL, "--weights", str(tmp_path / "missing.pt"), "--out", str(out))
    assert code == 2
    assert_one_line_error(err, "weights file not found")
    assert not out.exists()


def test_garbage_weights_file(capsys, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "prune", MODEL, "--weights", str(garbage), "--out", str(tmp_path / "s.safetensors"))
    assert code == 2
    assert_one_line_error(err, "cannot read weights file")


def test_weights_of_wrong_shape(capsys, tmp_path):
    other = tmp_path / "narrow.safetensors"
    sparse24.save(DigitsResNet(width=16), other)
    code, _, err = run(capsys, "prune", MODEL, "--weights", str(other), "--out", str(tmp_path / "s.safetensors"))
    assert code == 2
    assert_one_line_error(err, "does not fit the model", "stem.0.weight")


def test_unknown_method_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", MODEL, "--method", "random", "--out", str(tmp_path / "s.safetensors")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'random'" in capsys.readouterr().err


@pytest.mark.parametrize("out_name", ["missing_dir/sparse.safetensors", "sparse.pt"])
def test_bad_output_path(capsys, tmp_path, out_name):
    code, _, err = run(capsys, "prune", MODEL, "--out", str(tmp_path / out_name))
    assert code == 2
    assert_one_line_error(err, "error:")


def test_failed_prune_writes_nothing(capsys, tmp_path, dense_file):
    existing = tmp_path / "sparse.safetensors"
    existing.write_bytes(b"previous result")
    code, _, err = run(capsys, "prune", MODEL, "--weights", str(dense_file), "--method", "taylor", "--out", str(existing))
    assert code == 2
    assert_one_line_error(err, "--method taylor needs calibration data: --data MODULE:NAME")
    assert existing.read_bytes() == b"previous result"
    assert leftovers(tmp_path) == []


def test_verify_names_the_bad_layer(capsys, tmp_path, dense_file):
    out = tmp_path / "sparse.safetensors"
    assert run(capsys, "prune", MODEL, "--weights", str(dense_file), "--out", str(out))[0] == 0
    with safe_open(str(out), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    weight = tensors["block2.conv1.weight"]
    weight[3, :4, 1, 2] = 1.0  # a full group of 4 nonzeros along C
    save_file(tensors, str(out), metadata=metadata)
    code, _, err = run(capsys, "verify", str(out))
    assert code == 1
    assert_one_line_error(err, "block2.conv1.weight", "not 2:4 along dim 1", "[3, 0:4, 1, 2]")


def _tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


@pytest.fixture
def pruned_file(capsys, tmp_path, dense_file) -> Path:
    out = tmp_path / "sparse.safetensors"
    assert run(capsys, "prune", MODEL, "--weights", str(dense_file), "--out", str(out))[0] == 0
    return out


@pytest.mark.parametrize("with_model", [False, True])
def test_verify_checks_the_file_as_stored_not_after_loading(capsys, pruned_file, with_model):
    """A fully dense weight next to its mask: loading would re-apply the mask and hide it."""
    tensors, metadata = _tensors(pruned_file)
    tensors["block2.conv1.weight"] = torch.randn_like(tensors["block2.conv1.weight"])
    save_file(tensors, str(pruned_file), metadata=metadata)
    code, _, err = run(capsys, "verify", str(pruned_file), *(["--model", MODEL] if with_model else []))
    assert code == 1
    assert_one_line_error(err, "block2.conv1.weight", "not 2:4 along dim 1")


def test_verify_file_checks_masks_its_metadata_does_not_list(capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
    sparse24.sparsify(model, "magnitude", policy="any", include="0")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["2.weight_sparse24_mask"] = torch.ones(16, 16, dtype=torch.bool)  # dense 2.weight, all-ones mask
    path = tmp_path / "unlisted.safetensors"
    save_file(state, str(path), metadata={"format": "pt", "sparse24": json.dumps({"axes": {"0.weight": 1}})})
    code, _, err = run(capsys, "verify", str(path))
    assert code == 1
    assert_one_line_error(err, "2.weight_sparse24_mask", "metadata does not list it")


def test_verify_with_a_model_names_a_mask_on_a_non_gemm_weight(capsys, tmp_path, pruned_file):
    tensors, metadata = _tensors(pruned_file)
    tensors["stem.1.weight_sparse24_mask"] = torch.ones(32, dtype=torch.bool)  # on a BatchNorm weight
    save_file(tensors, str(pruned_file), metadata=metadata)
    code, _, err = run(capsys, "verify", str(pruned_file), "--model", MODEL)
    assert code == 1
    assert_one_line_error(err, "stem.1.weight_sparse24_mask", "no GEMM weight")


def test_verify_metadata_axis_must_agree_with_the_model(capsys, pruned_file):
    tensors, metadata = _tensors(pruned_file)
    axes = json.loads(metadata["sparse24"])["axes"]
    axes["block1.conv1.weight"] = 0
    save_file(tensors, str(pruned_file), metadata=dict(metadata, sparse24=json.dumps({"axes": axes})))
    code, _, err = run(capsys, "verify", str(pruned_file), "--model", MODEL)
    assert code == 1
    assert_one_line_error(err, "block1.conv1.weight", "dim 0", "dim 1")


def test_verify_plain_file_needs_a_model_and_something_to_check(capsys, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in DigitsResNet().state_dict().items()}, str(plain))
    code, _, err = run(capsys, "verify", str(plain))
    assert code == 2
    assert_one_line_error(err, "no sparse24 metadata", "--model")
    code, _, err = run(capsys, "verify", str(plain), "--model", MODEL)
    assert code == 1
    assert_one_line_error(err, "nothing was checked", "--expect")
    code, _, err = run(capsys, "verify", str(plain), "--model", MODEL, "--expect", "block1.*")
    assert code == 1  # dense weights, expected 2:4
    assert_one_line_error(err, "block1.conv1.weight", "not 2:4")


def test_verify_stripped_file_with_expect(capsys, tmp_path):
    model = DigitsResNet()
    report = sparse24.sparsify(model, "magnitude")
    sparse24.strip(model)
    stripped = tmp_path / "stripped.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(stripped))
    code, stdout, _ = run(capsys, "verify", str(stripped), "--model", MODEL, "--expect", "block*", "--expect", "down.0")
    assert code == 0 and f"OK: {len(report.sparse_layers)} weights are 2:4" in stdout
    code, _, err = run(capsys, "verify", str(stripped), "--model", MODEL, "--expect", "Block*")
    assert code == 1
    assert_one_line_error(err, "'Block*'", "match no GEMM weight")


def test_verify_dense_sparse24_file_fails(capsys, dense_file):
    code, _, err = run(capsys, "verify", str(dense_file))
    assert code == 1
    assert_one_line_error(err, "nothing was checked")


def test_prune_with_nothing_eligible_writes_nothing(capsys, tmp_path):
    out = tmp_path / "sparse.safetensors"
    code, stdout, err = run(capsys, "prune", MODEL, "--exclude", "*", "--out", str(out))
    assert code == 2
    assert "excluded by '*'" in stdout
    assert_one_line_error(err, "no GEMM weight of the model could be made 2:4")
    assert not out.exists()


USER_CODE = '''
import torch
from torch import nn


class Picky(nn.Module):
    """Two GEMMs; its forward rejects a batch whose first value is negative (a mistake in the user's data)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 8)

    def forward(self, x):
        if x[0, 0] < 0:
            raise RuntimeError("negative input, the data is not normalised")
        return self.b(torch.relu(self.a(x)))


def batches():
    return [torch.rand(2, 16), torch.rand(2, 16) - 2]


def loss(model, batch):
    return model(batch).square().mean()
'''


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    path = tmp_path / "usercode.py"
    path.write_text(USER_CODE)
    return path


@pytest.mark.parametrize("method, extra", [("wanda", []), ("sparsegpt", ["--sequential", "a,b"]), ("taylor", ["--loss", "LOSS"])])
def test_an_error_in_the_users_model_is_one_error_naming_the_batch_and_where(capsys, tmp_path, user_code, method, extra):
    out = tmp_path / "sparse.safetensors"
    extra = [f"{user_code}:loss" if value == "LOSS" else value for value in extra]
    code, _, err = run(capsys, "prune", f"{user_code}:Picky", "--method", method, "--data", f"{user_code}:batches", "--policy", "any", *extra, "--out", str(out))
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "sparse24: error: RuntimeError: negative input, the data is not normalised"
    assert "while running calibration batch 1" in err  # the second batch
    assert f"raised in {user_code}:" in err and "(forward)" in err
    assert lines[-1] == "  (--traceback shows the full traceback)"
    assert not out.exists()


def test_traceback_flag_shows_the_users_error_with_its_note(tmp_path, user_code):
    with pytest.raises(RuntimeError, match="negative input") as raised:
        main(["--traceback", "prune", f"{user_code}:Picky", "--method", "wanda", "--data", f"{user_code}:batches", "--policy", "any", "--out", str(tmp_path / "s.safetensors")])
    assert any("calibration batch 1" in note for note in raised.value.__notes__)


def test_an_error_in_sparse24s_own_code_keeps_its_traceback(tmp_path, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("sparse24.sparsify"), "_choose", None)  # sparsify() itself raises TypeError: a bug
    with pytest.raises(TypeError, match="not callable"):  # not turned into one line: the traceback is the bug report
        main(["prune", MODEL, "--out", str(tmp_path / "s.safetensors")])
