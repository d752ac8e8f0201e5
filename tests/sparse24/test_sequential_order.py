"""Block-by-block calibration in the order the forward runs the blocks (not the order of their lists in the model),
and blocks whose output is not a tensor."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sparse24
from sparse24.calibrate import find_blocks, inside, qualified, within


class _Interleaved(nn.Module):
    """Two lists run in turns, as PoolFormer's patch embeddings and stages are (and VITS's dilated and pointwise
    convolutions): the lists' module order is not the order the forward runs their blocks; the second list's blocks
    return a tuple that does not start with a tensor (Grounding DINO's encoder layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.ModuleList(nn.Linear(32, 32) for _ in range(2))
        self.stages = nn.ModuleList(nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.down, self.stages):
            x = torch.tanh(down(x))
            x = x + stage(x)
        return x


class _TupleStage(nn.Module):
    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> tuple:
        return ((self.stage(x), x.mean()),)


class _TupleStages(_Interleaved):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(_TupleStage(stage) for stage in self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.down, self.stages):
            x = torch.tanh(down(x))
            x = x + stage(x)[0][0]
        return x


@pytest.mark.parametrize("tuple_out", [False, True], ids=["tensor", "tuple"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "taylor"])
def test_sequential_calibrates_the_blocks_in_the_order_the_forward_runs_them(method: str, tuple_out: bool) -> None:
    """Blocks go in the order the forward runs them, not the order their lists are in the model (once: all of
    ``down``, then the stages, each ``down`` block calibrated on the dense stage's output); a block whose output is a
    tuple not starting with a tensor has its next block's inputs re-captured from the model (once: an error)."""
    torch.manual_seed(0)
    model = _TupleStages() if tuple_out else _Interleaved()
    data = [torch.randn(8, 32) * torch.linspace(0.1, 3, 32) for _ in range(3)]
    loss = (lambda m, x: m(x).square().mean()) if method == "taylor" else None
    listed = ["down.0", "down.1", "stages.0", "stages.1"]
    assert [name for name, _ in find_blocks(model, True)] == listed
    expected = copy.deepcopy(model)
    for block in ["down.0", "stages.0", "down.1", "stages.1"]:
        sparse24.sparsify(expected, method, data=data, loss_fn=loss, include=f"{block}.*", policy="any", progress=False)
    sparse24.sparsify(model, method, data=data, loss_fn=loss, sequential=True, policy="any", progress=False)
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


def test_sequential_goes_through_poolformer_stage_by_stage() -> None:
    """PoolFormer (transformers) runs each stage's patch embedding, then the stage's blocks: pruned block by block in
    that order, as one after the other (without layer scale, whose 1e-5 start leaves a random-init stage's output
    its input)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.PoolFormerConfig(num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_encoder_blocks=2, patch_sizes=[3, 3], strides=[2, 2], padding=[1, 1], pool_size=3, use_layer_scale=False)
    model = transformers.PoolFormerModel(config).eval()
    data = [{"pixel_values": torch.randn(2, 3, 16, 16)} for _ in range(2)]
    run = ["encoder.patch_embeddings.0", "encoder.block.0.0", "encoder.patch_embeddings.1", "encoder.block.1.0"]
    assert sorted(name for name, _ in find_blocks(model, True)) == sorted(run)
    expected = copy.deepcopy(model)
    for block in run:
        sparse24.sparsify(expected, "sparsegpt", data=data, include=f"{block}.*", policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, policy="any", progress=False)
    assert len(report.sparse_layers) == 5  # the second patch embedding and both stages' two MLP convolutions
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(x)))


class _SequentialBlocks(nn.Module):
    """timm's ViT layout (torchvision's ResNet stages too): the blocks in an ``nn.Sequential``, not a ``ModuleList``;
    before them a ``Sequential`` of bare layers of one type, a chain of layers rather than of blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
        self.blocks = nn.Sequential(*(_Residual() for _ in range(3)))
        self.head = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.tanh(self.stem(x))))


def test_sequential_finds_blocks_held_in_an_nn_sequential() -> None:
    """``sequential=True`` found no blocks in such a model (it looked for ``ModuleList``s only) and refused it. Now
    its blocks go one after the other, each on the pruned blocks' output, and the layers outside them last, from the
    whole pruned model; a model that is itself a ``Sequential`` of blocks names them by their index."""
    torch.manual_seed(0)
    model = _SequentialBlocks()
    data = [torch.randn(8, 32) * torch.linspace(0.1, 3, 32) for _ in range(3)]
    assert [name for name, _ in find_blocks(model, True)] == ["blocks.0", "blocks.1", "blocks.2"]
    expected = copy.deepcopy(model)
    for block in ["blocks.0.*", "blocks.1.*", "blocks.2.*", ["stem.*", "head"]]:
        sparse24.sparsify(expected, "sparsegpt", data=data, include=block, policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, policy="any", progress=False)
    assert len(report.sparse_layers) == 9
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name
    assert [name for name, _ in find_blocks(nn.Sequential(_Residual(), _Residual()), True)] == ["0", "1"]


class _Levels(nn.Module):
    """A block per feature level, the last of which this forward never runs (SAM 3's pixel decoder, on fewer levels)."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleList(_Residual() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for level in self.levels[:2]:
            x = level(x)
        return x


def test_sequential_leaves_out_the_blocks_with_nothing_to_prune() -> None:
    """The blocks are those holding a weight to prune: the block the forward never runs, excluded from pruning, no
    longer stops the run ("the forward pass never ran block levels.2"), and an excluded block is not calibrated."""
    torch.manual_seed(0)
    model = _Levels()
    data = [torch.randn(8, 32) * torch.linspace(0.1, 3, 32) for _ in range(3)]
    expected = copy.deepcopy(model)
    sparse24.sparsify(expected, "sparsegpt", data=data, include="levels.0.*", policy="any", progress=False)
    sparse24.sparsify(expected, "sparsegpt", data=data, include="levels.1.*", policy="any", progress=False)
    report = sparse24.sparsify(model, "sparsegpt", data=data, sequential=True, exclude="levels.2.*", policy="any", progress=False)
    assert sorted(layer.name for layer in report.sparse_layers) == ["levels.0.down.weight", "levels.0.up.weight", "levels.1.down.weight", "levels.1.up.weight"]
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-5), name
    weights = [w for w in sparse24.axes.gemm_weights(model) if w.name.startswith("levels.1.")]
    assert [name for name, _ in find_blocks(model, True, weights)] == ["levels.1"]


def test_module_names_nest_by_their_dots() -> None:
    """The naming helpers the blocks, FSDP's units and the permutation rules share: the model itself is ``""``, a
    name is nested in another only past a dot (``h.10`` is not in ``h.1``), and ``within`` counts the module itself."""
    assert qualified("", "h") == "h" and qualified("h", 0) == "h.0"
    assert inside("h.0", "h") and inside("h.0.mlp", "h.0") and inside("h", "")
    assert not inside("h.10", "h.1") and not inside("h", "h") and not inside("", "")
    assert within("h", "h") and within("h.1.mlp", "h.1") and within("", "") and within("h", "")
    assert not within("h.10", "h.1") and not within("h", "h.0")
