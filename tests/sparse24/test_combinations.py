"""Every calibrating method with every option that changes how the model is run, together: on a model that takes
its inputs alone from ``(inputs, labels)`` batches, each pass (scores, the blocks' order, the permutation's check,
BatchNorm statistics) must call the model the way the method was told to; on the transformers models users bring
(a Llama and a GPT-2 causal LM, a BERT and a ViT classifier) given keyword batches with labels, and padding for text,
each must prune every layer, leave the padding out where it reads it, and keep the model's output finite."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

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


USER_METHODS = {  # id -> (method, options, what of the batch the method reads: "activations", "positions" (the model Fisher's draws), or only the model's own loss)
    "taylor": ("taylor", {}, "loss"),
    "taylor-empirical-fisher": ("taylor", {"squared": True, "per_sample": True}, "loss"),
    "taylor-model-fisher": ("taylor", {"squared": True, "per_sample": True, "labels": "model"}, "positions"),
    "taylor-model-fisher-pairs": ("taylor", {"squared": True, "per_sample": True, "labels": "model", "pairs": True}, "positions"),
    "wanda": ("wanda", {}, "activations"),
    "sparsegpt": ("sparsegpt", {}, "activations"),
}
PADDING_NOTES = {"activations": "the input statistics leave out padding", "positions": "the model Fisher's draws leave out padding"}


def _text(generator: torch.Generator, vocab: int, labels: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, vocab, (2, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # the second sequence right-padded
    return {"input_ids": ids, "attention_mask": mask, "labels": labels(ids, mask)}


def _user_model(name: str) -> tuple[torch.nn.Module, Callable[[torch.Generator], dict[str, torch.Tensor]], str, int, bool]:
    """A seeded tiny transformers model, its batches (as a tokenizer and collator, or an image processor, make them),
    its head (left dense), the layers sparsify prunes, and whether its logits are one per position (a causal LM's)."""
    import transformers

    if name in ("llama", "gpt2"):  # labels -100 at the pads: the model's loss skips them
        return causal_lm(name), lambda g: _text(g, 96, lambda ids, mask: ids.masked_fill(mask == 0, -100)), "lm_head", 14 if name == "llama" else 8, True
    torch.manual_seed(0)
    if name == "bert-classify":
        config = transformers.BertConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_labels=3)
        return transformers.BertForSequenceClassification(config), lambda g: _text(g, 96, lambda ids, mask: torch.randint(0, 3, (2,), generator=g)), "classifier", 13, False
    config = transformers.ViTConfig(image_size=16, patch_size=4, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_labels=3)
    pixels = lambda g: {"pixel_values": torch.randn(2, 3, 16, 16, generator=g), "labels": torch.randint(0, 3, (2,), generator=g)}  # noqa: E731
    return transformers.ViTForImageClassification(config), pixels, "classifier", 12, False


@pytest.mark.parametrize("sequential", [False, True], ids=["at-once", "block-by-block"])
@pytest.mark.parametrize("row", list(USER_METHODS))
@pytest.mark.parametrize("name", ["llama", "gpt2", "bert-classify", "vit-classify"])
def test_every_method_on_the_models_users_bring(name: str, row: str, sequential: bool) -> None:
    """Keyword batches with labels (and padding, for text), the models' default ``use_cache``: every layer pruned, the
    padding left out exactly where the method reads activations or draws a label per position, the logits finite."""
    pytest.importorskip("transformers")
    method, options, reads = USER_METHODS[row]
    dense, batch, head, layers, per_position = _user_model(name)
    generator = torch.Generator().manual_seed(1)
    data = [batch(generator) for _ in range(2)]
    padded = "attention_mask" in data[0] and (reads == "activations" or (reads == "positions" and per_position))
    for permute in (False, True):
        model = copy.deepcopy(dense)
        report = sparse24.sparsify(
            model, method, data=data, sequential=sequential, offload=sequential, permute=permute, exclude=head, progress=False, **options
        )
        assert len(report.sparse_layers) == layers, permute
        sparse24.verify(model)
        with torch.no_grad():
            assert torch.isfinite(model(**data[0]).logits).all()
        assert any(note.startswith("channel permutation:") for note in report.notes) == permute
        assert [note.split(":")[0] for note in report.notes if " leave out padding: " in note] == ([PADDING_NOTES[reads]] if padded else []), (permute, report.notes)
