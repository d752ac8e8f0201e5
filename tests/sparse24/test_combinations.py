"""Every calibrating method with every option that changes how the model is run, together, on a model that takes
its inputs alone from ``(inputs, labels)`` batches: each pass (scores, the blocks' order, the permutation's check,
BatchNorm statistics) must call the model the way the method was told to."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

import sparse24
from sparse24.demo import DigitsResNet


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _logits(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return model(batch[0])


METHODS = {  # id -> (method, options); a method without labels="model" gets _loss
    "taylor": ("taylor", {}),
    "taylor-empirical-fisher": ("taylor", {"squared": True, "per_sample": True}),
    "taylor-model-fisher": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "logits_fn": _logits}),
    "taylor-model-fisher-pairs": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "logits_fn": _logits, "pairs": True}),
    "wanda": ("wanda", {}),
    "sparsegpt": ("sparsegpt", {}),
}


@pytest.fixture(scope="module")
def dense() -> DigitsResNet:
    torch.manual_seed(0)
    return DigitsResNet().eval()


@pytest.mark.parametrize("sequential", [None, ["block1", "block2"]], ids=["at-once", "block-by-block"])
@pytest.mark.parametrize("row", list(METHODS))
def test_every_method_runs_with_every_option(dense, row, sequential) -> None:
    method, options = METHODS[row]
    generator = torch.Generator().manual_seed(1)
    data = [(torch.rand(4, 1, 8, 8, generator=generator), torch.randint(0, 10, (4,), generator=generator)) for _ in range(3)]
    loss = None if options.get("labels") == "model" else _loss
    for permute, recalibrate_bn in itertools.product([False, True], [False, True]):
        model = copy.deepcopy(dense)
        report = sparse24.sparsify(
            model, method, data=data, loss_fn=loss, sequential=sequential, permute=permute, recalibrate_bn=recalibrate_bn, policy="tensorrt", progress=False, **options
        )
        assert len(report.sparse_layers) == 5, (permute, recalibrate_bn)
        sparse24.verify(model)
        assert torch.isfinite(model(data[0][0])).all()
        assert any("re-estimated on the pruned model" in note for note in report.notes) == recalibrate_bn
        assert any(note.startswith("channel permutation:") for note in report.notes) == permute
