"""sparse24.io: safetensors round trips, atomic writes, weight files and model specs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import sparse24
from sparse24 import MASK_SUFFIX
from sparse24.mask import unpack_bits
from sparse24.io import build_object, file_axes, load_model, load_object, read_state_dict

MASK_KEYS = {"conv.weight" + MASK_SUFFIX, "fc.weight" + MASK_SUFFIX}


@pytest.fixture
def sparse_model(convnet):
    model = convnet()
    sparse24.sparsify(model)
    return model


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_then_load_round_trip(tmp_path, sparse_model, convnet, batches, train_steps):
    path = tmp_path / "sparse.safetensors"
    sparse24.save(sparse_model, path)
    fresh = convnet(out_features=64)
    with torch.no_grad():
        for param in fresh.parameters():
            param.add_(1.0)  # differs from the saved model everywhere
    assert sorted(sparse24.load(fresh, path)) == ["conv.weight", "fc.weight"]
    assert _state_equal(fresh.state_dict(), sparse_model.state_dict())
    x = batches(1)[0][0]
    with torch.no_grad():
        assert torch.equal(fresh(x), sparse_model(x))
    assert {w.name for w, _ in sparse24.masked_weights(fresh)} == {"conv.weight", "fc.weight"}
    train_steps(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9), 3)
    sparse24.verify(fresh)


def test_a_torch_compile_wrapper_is_the_model_itself(tmp_path, convnet, batches):
    """sparsify, save, load, load_masks and strip see through torch.compile: names and keys without "_orig_mod."."""
    model = convnet()
    compiled = torch.compile(model, backend="eager")
    report = sparse24.sparsify(compiled)
    assert sorted(layer.name for layer in report.sparse_layers) == ["conv.weight", "fc.weight"]
    path = tmp_path / "sparse.safetensors"
    sparse24.save(compiled, path)
    assert set(read_state_dict(path)) == set(model.state_dict())  # no "_orig_mod." keys
    fresh = torch.compile(convnet(), backend="eager")
    assert sorted(sparse24.load(fresh, path)) == ["conv.weight", "fc.weight"]
    x = batches(1)[0][0]
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    again = torch.compile(convnet(), backend="eager")
    assert sorted(sparse24.load_masks(again, read_state_dict(path))) == ["conv.weight", "fc.weight"]
    assert sorted(sparse24.strip(compiled)) == ["conv.weight", "fc.weight"]


def test_saved_file_holds_masks_and_axes(tmp_path, sparse_model):
    path = tmp_path / "sparse.safetensors"
    sparse24.save(sparse_model, path)
    state = read_state_dict(path)
    assert MASK_KEYS <= set(state)
    mask = state["fc.weight" + MASK_SUFFIX]
    assert mask.dtype == torch.uint8 and list(mask.shape) == [sparse_model.fc.weight.shape[0], sparse_model.fc.weight[0].numel() // 8], "1 bit per weight"
    assert torch.equal(unpack_bits(mask, sparse_model.fc.weight.shape), sparse24.enforce.mask_of(sparse_model.fc, "weight"))
    assert file_axes(path) == {"conv.weight": 1, "fc.weight": 1}


def test_file_axes_of_a_plain_safetensors_file(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    assert file_axes(path) is None


def test_save_tied_weights(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 16)
            self.b.weight = self.a.weight

    model = Tied()
    sparse24.sparsify(model, policy="any")
    path = tmp_path / "tied.safetensors"
    sparse24.save(model, path)
    fresh = Tied()
    sparse24.load(fresh, path)
    assert fresh.a.weight is fresh.b.weight
    assert torch.equal(fresh.a.weight, model.a.weight)
    sparse24.verify(fresh)


def _broken_save_file(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"half a file")
    raise OSError("disk full")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch, sparse_model):
    monkeypatch.setattr(safetensors.torch, "save_file", _broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        sparse24.save(sparse_model, tmp_path / "out.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_existing_file(tmp_path, monkeypatch, sparse_model, convnet):
    path = tmp_path / "out.safetensors"
    sparse24.save(convnet(), path)
    content = path.read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", _broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        sparse24.save(sparse_model, path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == content


def test_save_into_missing_directory(tmp_path, sparse_model):
    with pytest.raises(sparse24.Sparse24Error, match="does not exist"):
        sparse24.save(sparse_model, tmp_path / "missing" / "out.safetensors")


def test_read_torch_save_file(tmp_path, sparse_model):
    state = sparse_model.state_dict()
    plain = tmp_path / "weights.pt"
    torch.save(state, plain)
    assert _state_equal(read_state_dict(plain), state)

    for key in ("state_dict", "model"):
        wrapped = tmp_path / f"{key}.ckpt"
        torch.save({key: state, "epoch": 3, "lr": 0.1}, wrapped)
        assert _state_equal(read_state_dict(wrapped), state)


EXECUTED = []


class _Payload:
    """Pickles to a call of ``_record``: a weights_only reader must refuse it without calling it."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def _record(value):
    EXECUTED.append(value)
    return value


def test_read_state_dict_uses_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": _Payload()}, path)
    with pytest.raises(sparse24.Sparse24Error, match=r"evil.pt: it holds Python objects besides tensors .* save model.state_dict\(\) or a safetensors file"):
        read_state_dict(path)
    assert EXECUTED == []
    whole = tmp_path / "whole.pt"
    torch.save(nn.Linear(4, 4), whole)  # torch.save(model): the usual way to get a file of objects
    with pytest.raises(sparse24.Sparse24Error, match=r"whole.pt: it holds Python objects besides tensors \(a whole model saved with torch.save\(model\)\?\)"):
        read_state_dict(whole)


@pytest.mark.parametrize("name", ["garbage.pt", "garbage.safetensors", "garbage.bin"])
def test_read_garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 this is not a weights file \xff" * 10)
    with pytest.raises(sparse24.Sparse24Error, match=r"cannot read weights file .*: neither a safetensors file nor a torch.save file \(it starts with b'\\x00\\x01 this is not"):
        read_state_dict(path)
    path.write_bytes(b"")
    with pytest.raises(sparse24.Sparse24Error, match=r"neither a safetensors file nor a torch.save file \(it is empty\)"):
        read_state_dict(path)


def test_the_format_is_read_from_the_content_whatever_the_suffix(tmp_path, sparse_model):
    """A safetensors file named .bin or .pt is read as safetensors (torch.load refused it as a pickle); a torch.save
    file named .safetensors as a torch.save file; a truncated one of either says the reader's own reason."""
    state = sparse_model.state_dict()
    sparse24.save(sparse_model, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "model.pt")
    for source, name in (("model.safetensors", "renamed.bin"), ("model.pt", "renamed.safetensors")):
        (tmp_path / name).write_bytes((tmp_path / source).read_bytes())
        assert _state_equal(read_state_dict(tmp_path / name), state)
    assert file_axes(tmp_path / "renamed.bin") == file_axes(tmp_path / "model.safetensors")
    # a safetensors header whose length's first byte is 0x80, a pickle's first byte: still safetensors
    from safetensors.torch import save_file

    odd = tmp_path / "odd.safetensors"
    for pad in range(0, 512, 8):
        save_file({"w": torch.ones(2)}, str(odd), metadata={"pad": "x" * pad})
        if odd.read_bytes()[0] == 0x80:
            break
    assert odd.read_bytes()[0] == 0x80
    assert _state_equal(read_state_dict(odd), {"w": torch.ones(2)})
    for source in ("model.safetensors", "model.pt"):
        cut = tmp_path / f"cut-{source}"
        cut.write_bytes((tmp_path / source).read_bytes()[:100])
        with pytest.raises(sparse24.Sparse24Error, match=rf"cannot read weights file .*cut-{source}: (?!neither)"):
            read_state_dict(cut)


def test_read_missing_file(tmp_path):
    with pytest.raises(sparse24.Sparse24Error, match="not found"):
        read_state_dict(tmp_path / "nothere.safetensors")


def test_read_file_without_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(sparse24.Sparse24Error, match="state dict"):
        read_state_dict(path)


def test_load_into_model_of_wrong_shape(tmp_path, sparse_model, convnet, snapshot):
    path = tmp_path / "sparse.safetensors"
    sparse24.save(sparse_model, path)
    wrong = convnet(in_features=256)  # fc.weight [64, 256] instead of [64, 512]
    before = snapshot(wrong)
    with pytest.raises(sparse24.Sparse24Error, match=r"fc\.weight"):
        sparse24.load(wrong, path)
    before.assert_unchanged(wrong)


def test_load_file_with_bad_mask_changes_nothing(tmp_path, sparse_model, convnet, snapshot):
    state = {k: v.clone() for k, v in sparse_model.state_dict().items()}
    state["fc.weight" + MASK_SUFFIX] = torch.ones(64, 512, dtype=torch.bool)
    path = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(state, str(path))
    fresh = convnet()
    before = snapshot(fresh)
    with pytest.raises(sparse24.SparsityError, match=r"fc\.weight"):
        sparse24.load(fresh, path)
    before.assert_unchanged(fresh)


def test_load_model_errors():
    with pytest.raises(sparse24.Sparse24Error, match="nonexistent"):
        load_model("sparse24.io:nonexistent")
    with pytest.raises(sparse24.Sparse24Error, match="module:"):
        load_model("sparse24.io")
    with pytest.raises(sparse24.Sparse24Error, match="cannot import"):
        load_model("sparse24_no_such_module:build")
    with pytest.raises(sparse24.Sparse24Error, match="not a torch.nn.Module"):
        load_model("sparse24:__version__")


@pytest.fixture
def model_file(tmp_path):
    """``tmp_path/m.py`` defining ``build`` (a factory) and ``model`` (an instance); cleans sys.modules."""
    path = tmp_path / "m.py"
    path.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Linear(16, 8)\n"
        "model = nn.Linear(4, 4)\n"
        "def not_a_model():\n"
        "    return 42\n"
    )
    had = "m" in sys.modules
    yield path
    if not had:
        sys.modules.pop("m", None)


def test_load_model_from_file(model_file):
    built = load_model(f"{model_file}:build")
    assert isinstance(built, nn.Linear) and built.in_features == 16
    instance = load_model(f"{model_file}:model")
    assert isinstance(instance, nn.Linear) and instance.in_features == 4
    with pytest.raises(sparse24.Sparse24Error, match="gave a int, not a torch.nn.Module"):
        load_model(f"{model_file}:not_a_model")
    with pytest.raises(sparse24.Sparse24Error, match="not found"):
        load_model(f"{model_file.with_name('other.py')}:build")


def test_a_models_file_runs_once_per_process(tmp_path) -> None:
    # Running the file again would register its custom op again: torch frees the op handles the first
    # run's functions call (a use after free; in the suite it surfaced as a std::bad_alloc).
    namespace = f"sparse24_io_{tmp_path.name.replace('-', '_')}"
    path = tmp_path / "ops_models.py"
    path.write_text(
        "import torch\n"
        "from torch import nn\n"
        f"@torch.library.custom_op('{namespace}::flip', mutates_args=())\n"
        "def flip(x: torch.Tensor) -> torch.Tensor:\n"
        "    return x.flip(-1)\n"
        "class Model(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return flip(x)\n"
        "def example():\n"
        "    return torch.arange(4.0)\n"
    )
    try:
        model = load_model(f"{path}:Model")
        x = build_object(f"{path}:example")
        module = sys.modules["ops_models"]
        assert type(model) is module.Model and load_object(f"{path}:Model") is module.Model
        assert module.flip._opoverload is getattr(torch.ops, namespace).flip.default  # the live registration
        assert torch.equal(model(x), torch.tensor([3.0, 2.0, 1.0, 0.0]))
    finally:
        sys.modules.pop("ops_models", None)


def test_a_models_file_that_fails_leaves_no_module(tmp_path) -> None:
    path = tmp_path / "broken_models.py"
    path.write_text("from torch import nn\nmodel = nn.Linear(4, 4)\nraise RuntimeError('bad file')\n")
    for _ in range(2):  # not cached: the second load runs the file again and fails again
        with pytest.raises(RuntimeError, match="bad file"):
            load_object(f"{path}:model")
        assert "broken_models" not in sys.modules


def test_load_model_gives_each_call_its_own_copy_of_an_instance(model_file) -> None:
    # A recipe's teacher and its student are two load_model calls on one spec.
    first, second = load_model(f"{model_file}:model"), load_model(f"{model_file}:model")
    assert first is not second and torch.equal(first.weight, second.weight)
    original = load_object(f"{model_file}:model")
    with torch.no_grad():
        first.weight.zero_()
    assert torch.equal(second.weight, original.weight) and original.weight.abs().sum() > 0


def test_files_with_bool_masks_of_earlier_versions_load_and_verify(tmp_path, sparse_model, convnet):
    from safetensors.torch import save_file

    path = tmp_path / "new.safetensors"
    sparse24.save(sparse_model, path)
    old = tmp_path / "old.safetensors"
    state = read_state_dict(path)
    for key in [k for k in state if k.endswith(MASK_SUFFIX)]:
        state[key] = unpack_bits(state[key], state[key[: -len(MASK_SUFFIX)]].shape)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(state, str(old), metadata=metadata)
    assert read_state_dict(old)["fc.weight" + MASK_SUFFIX].dtype == torch.bool
    report = sparse24.verify_file(old)
    assert {layer.name for layer in report.layers} == {"conv.weight", "fc.weight"}
    fresh = convnet()
    assert sorted(sparse24.load(fresh, old)) == ["conv.weight", "fc.weight"]
    assert all(torch.equal(v, sparse_model.state_dict()[k]) for k, v in fresh.state_dict().items())
