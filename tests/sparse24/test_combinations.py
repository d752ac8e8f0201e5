"""Every calibrating method with every option that changes how the model is run, together: on a model that takes
its inputs alone from ``(inputs, labels)`` batches, each pass (scores, the blocks' order, the permutation's check,
BatchNorm statistics) must call the model the way the method was told to; on transformers causal LMs given keyword
batches with padding and labels (as a user's tokenizer and collator make them), with their default ``use_cache``,
each must prune every layer, leave the padding out where it reads activations, and keep the model's output finite."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

import sparse24
from sparse24.demo import DigitsResNet
from sparse24_testing import causal_lm


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


LM_METHODS = {  # id -> (method, options, what the report says of the padding: None where the loss is the model's own)
    "taylor": ("taylor", {}, None),
    "taylor-empirical-fisher": ("taylor", {"squared": True, "per_sample": True}, None),
    "taylor-model-fisher": ("taylor", {"squared": True, "per_sample": True, "labels": "model"}, "the model Fisher's draws leave out padding"),
    "taylor-model-fisher-pairs": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "pairs": True}, "the model Fisher's draws leave out padding"),
    "wanda": ("wanda", {}, "the input statistics leave out padding"),
    "sparsegpt": ("sparsegpt", {}, "the input statistics leave out padding"),
}


@pytest.mark.parametrize("sequential", [False, True], ids=["at-once", "block-by-block"])
@pytest.mark.parametrize("row", list(LM_METHODS))
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_every_method_on_a_causal_lm_with_keyword_batches(architecture: str, row: str, sequential: bool) -> None:
    pytest.importorskip("transformers")
    method, options, padding = LM_METHODS[row]
    dense = causal_lm(architecture)
    generator = torch.Generator().manual_seed(1)
    data = []
    for _ in range(2):
        ids = torch.randint(3, 96, (2, 16), generator=generator)
        mask = torch.ones_like(ids)
        mask[1, 12:] = 0  # the second sequence right-padded, its labels -100 there: the model's loss skips them
        data.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    for permute in (False, True):
        model = copy.deepcopy(dense)
        report = sparse24.sparsify(
            model, method, data=data, sequential=sequential, offload=sequential, permute=permute, exclude="lm_head", progress=False, **options
        )
        assert len(report.sparse_layers) == (14 if architecture == "llama" else 8), permute
        sparse24.verify(model)
        with torch.no_grad():
            assert torch.isfinite(model(**data[0]).logits).all()
        assert any(note.startswith("channel permutation:") for note in report.notes) == permute
        if padding is not None:
            assert any(note.startswith(padding) for note in report.notes), (permute, report.notes)
