"""sparse24.verify on models: every broken input it claims to catch fails, and an OK means weights were checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparse24
from sparse24 import CheckFailed, SparsityError


def stripped(convnet) -> tuple[nn.Module, sparse24.SparsityReport]:
    model = convnet()
    report = sparse24.sparsify(model)
    sparse24.strip(model)
    return model, report


def test_masked_model_is_checked_and_counted(convnet) -> None:
    model = convnet()
    sparse24.sparsify(model)
    report = sparse24.verify(model)
    assert [layer.name for layer in report.sparse_layers] == ["conv.weight", "fc.weight"]


def test_a_model_without_masks_is_never_ok(convnet) -> None:
    model, _ = stripped(convnet)
    with pytest.raises(CheckFailed, match=r"nothing was checked: Sequential has no 2:4 masks; pass expect="):
        sparse24.verify(model)
    with pytest.raises(CheckFailed, match="nothing was checked"):
        sparse24.verify(convnet())  # never sparsified


def test_stripped_model_checked_against_the_sparsify_report(convnet) -> None:
    model, report = stripped(convnet)
    checked = sparse24.verify(model, expect=report)
    assert [layer.name for layer in checked.sparse_layers] == ["conv.weight", "fc.weight"]
    with torch.no_grad():  # a stripped model is no longer enforced: training can fill a group
        model.fc.weight[5, 8:12] = 1.0
    with pytest.raises(SparsityError, match=r"fc\.weight: weight is not 2:4 along dim 1; group \[5, 8:12\] has 4 nonzeros"):
        sparse24.verify(model, expect=report)
    with pytest.raises(SparsityError, match=r"fc\.weight"):
        sparse24.verify(model, expect="fc")  # a module-name glob
    assert [layer.name for layer in sparse24.verify(model, expect="conv*").sparse_layers] == ["conv.weight"]


def test_expected_weight_must_exist(convnet) -> None:
    model, _ = stripped(convnet)
    with pytest.raises(CheckFailed, match=r"expected 2:4 weights 'Conv' match no GEMM weight of Sequential"):
        sparse24.verify(model, expect=["conv", "Conv"])  # matching is case-sensitive, like the names
    other = sparse24.sparsify(nn.Sequential(nn.Linear(64, 64)))
    with pytest.raises(CheckFailed, match=r"expected 2:4 weight 0\.weight is not a GEMM weight"):
        sparse24.verify(model, expect=other)
    with pytest.raises(ValueError, match="expect is empty"):
        sparse24.verify(model, expect=[])


def test_expected_weight_that_cannot_be_2_4() -> None:
    model = nn.Sequential(nn.Linear(6, 8))
    with pytest.raises(SparsityError, match=r"0\.weight: reduction size 6 \(dim 1\) is not divisible by 4"):
        sparse24.verify(model, expect="0")


def test_masked_and_expected_together(convnet) -> None:
    model = convnet()
    sparse24.sparsify(model, include="conv")
    with pytest.raises(SparsityError, match=r"fc\.weight: weight is not 2:4"):
        sparse24.verify(model, expect="fc")  # fc is dense and has no mask
    report = sparse24.verify(model)
    assert [layer.name for layer in report.sparse_layers] == ["conv.weight"]
    assert {layer.name: layer.reason for layer in report.layers}["fc.weight"] == "no 2:4 mask"


def test_weight_outside_its_mask_and_a_non_2_4_mask(convnet) -> None:
    model = convnet()
    sparse24.sparsify(model)
    with torch.no_grad():
        mask = sparse24.enforce.mask_of(model.fc, "weight")
        row, col = (~mask).nonzero()[0].tolist()
        model.fc.weight[row, col] = 0.5  # 3 nonzeros in that group: not 2:4
    with pytest.raises(SparsityError, match=r"fc\.weight: weight is not 2:4"):
        sparse24.verify(model)
    model = convnet()
    sparse24.sparsify(model)
    with torch.no_grad():
        mask = sparse24.enforce.mask_of(model.fc, "weight")
        group = mask[0, :4]
        kept = group.nonzero().flatten().tolist()
        dropped = (~group).nonzero().flatten().tolist()
        model.fc.weight[0, kept[0]] = 0.0
        model.fc.weight[0, dropped[0]] = 0.5  # still 2 nonzeros, one where the mask is 0
    with pytest.raises(SparsityError, match=r"fc\.weight: nonzero weight where the mask is 0, first at \[0, "):
        sparse24.verify(model)
