"""sparse24.axes: the 2:4 axis of every supported layer is its GEMM reduction axis."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D  # GPT-2's layer: weight [in, out], y = x @ W + b

import sparse24
from sparse24 import Axis, gemm_axes, gemm_weights, is_two_four, two_four_mask

REPO = Path(__file__).resolve().parents[2]

LINEAR = Axis(reduction=1, output=0)
TRANSPOSED = Axis(reduction=0, output=1)


class Attention(nn.Module):
    """An ``nn.MultiheadAttention`` used as self-attention (or cross-attention with kdim/vdim)."""

    def __init__(self, kdim: int | None = None, vdim: int | None = None) -> None:
        super().__init__()
        self.kdim, self.vdim = kdim or 16, vdim or 16
        self.attn = nn.MultiheadAttention(16, 2, kdim=kdim, vdim=vdim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = x.new_ones(x.shape[0], x.shape[1], self.kdim) * x.mean(-1, keepdim=True)
        value = x.new_ones(x.shape[0], x.shape[1], self.vdim) * x.sum(-1, keepdim=True)
        return self.attn(x, key, value, need_weights=False)[0]


# name -> (model factory, input factory, {weight name: expected axis})
LAYERS = {
    "linear": (lambda: nn.Linear(8, 12), lambda: torch.randn(3, 8), {"weight": LINEAR}),
    "conv1d": (lambda: nn.Conv1d(8, 8, 3), lambda: torch.randn(2, 8, 7), {"weight": LINEAR}),
    "conv2d": (lambda: nn.Conv2d(8, 8, 3), lambda: torch.randn(2, 8, 5, 5), {"weight": LINEAR}),
    "conv3d": (lambda: nn.Conv3d(8, 8, 2), lambda: torch.randn(2, 8, 3, 3, 3), {"weight": LINEAR}),
    "grouped conv2d": (lambda: nn.Conv2d(8, 8, 3, groups=2), lambda: torch.randn(2, 8, 5, 5), {"weight": LINEAR}),
    "transformers Conv1D": (lambda: Conv1D(12, 8), lambda: torch.randn(3, 8), {"weight": TRANSPOSED}),
    "mha packed": (
        lambda: Attention(),
        lambda: torch.randn(2, 3, 16),
        {"attn.in_proj_weight": LINEAR, "attn.out_proj.weight": LINEAR},
    ),
    "mha kdim/vdim": (
        lambda: Attention(kdim=8, vdim=12),
        lambda: torch.randn(2, 3, 16),
        {
            "attn.q_proj_weight": LINEAR,
            "attn.k_proj_weight": LINEAR,
            "attn.v_proj_weight": LINEAR,
            "attn.out_proj.weight": LINEAR,
        },
    ),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_gemm_weights_find_the_reduction_axis(kind):
    build, _, expected = LAYERS[kind]
    model = build()
    found = {w.name: w.axis for w in gemm_weights(model)}
    assert found == expected
    for weight in gemm_weights(model):
        assert weight.param is model.get_parameter(weight.name)
        assert weight.reduction_size == weight.param.shape[weight.axis.reduction]
        assert weight.output_size == weight.param.shape[weight.axis.output]


def test_gemm_axes_per_module():
    assert gemm_axes(nn.Linear(4, 4)) == {"weight": LINEAR}
    assert gemm_axes(nn.Conv2d(4, 4, 1)) == {"weight": LINEAR}
    assert gemm_axes(Conv1D(4, 4)) == {"weight": TRANSPOSED}
    assert gemm_axes(nn.MultiheadAttention(8, 2)) == {"in_proj_weight": LINEAR}
    assert gemm_axes(nn.MultiheadAttention(8, 2, kdim=4, vdim=4)) == {
        "q_proj_weight": LINEAR,
        "k_proj_weight": LINEAR,
        "v_proj_weight": LINEAR,
    }
    assert gemm_axes(nn.Embedding(4, 4)) == {}
    assert gemm_axes(nn.BatchNorm2d(4)) == {}
    assert gemm_axes(nn.Sequential()) == {}


def test_module_named_conv1d_outside_transformers_is_not_transposed():
    class Conv1D(nn.Module):  # same name, another package: not GPT-2's layout
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(8, 8))

    assert gemm_axes(Conv1D()) == {}


def test_transposed_layer_computes_along_dim_0():
    """transformers' Conv1D really reduces over dim 0 of its weight: it equals a Linear holding W^T."""
    layer = Conv1D(12, 8)
    x = torch.randn(3, 8)
    linear = nn.Linear(8, 12)
    with torch.no_grad():
        linear.weight.copy_(layer.weight.T)
        linear.bias.copy_(layer.bias)
    torch.testing.assert_close(layer(x), linear(x))


@pytest.mark.parametrize("kind", LAYERS)
def test_sparsify_prunes_along_the_reduction_axis(kind):
    build, make_input, expected = LAYERS[kind]
    model = build()
    originals = {w.name: w.param.detach().clone() for w in gemm_weights(model)}
    report = sparse24.sparsify(model, policy="any")
    assert {layer.name for layer in report.sparse_layers} == set(expected)
    masks = {w.name: (w, mask) for w, mask in sparse24.masked_weights(model)}
    assert set(masks) == set(expected)
    for name, (weight, mask) in masks.items():
        dim = expected[name].reduction
        assert torch.equal(mask, two_four_mask(originals[name].abs(), dim)), name
        assert is_two_four(weight.param, dim)
        assert torch.equal(weight.param.detach(), originals[name] * mask)
    sparse24.verify(model)

    # still 2:4 along the same axis after training
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        model(make_input()).square().mean().backward()
        optimizer.step()
    report = sparse24.verify(model)
    assert {layer.name for layer in report.sparse_layers} == set(expected)
    for name, (weight, mask) in masks.items():
        assert not torch.equal(weight.param.detach(), originals[name] * mask), f"{name} did not train"


def test_conv_pruned_along_flattened_crs_fails_verify():
    model = nn.Sequential(OrderedDict(stem=nn.Conv2d(8, 8, 3)))
    conv = model.stem
    weight = conv.weight.detach()
    mask = two_four_mask(weight.flatten(1).abs(), dim=1).view_as(weight)
    assert is_two_four(mask.flatten(1), 1), "2:4 along C*R*S ..."
    assert not is_two_four(mask, 1), "... is not 2:4 along C"
    sparse24.attach(conv, "weight", mask, apply=True)
    assert bool((conv.weight[~mask] == 0).all())
    with pytest.raises(sparse24.SparsityError, match=r"stem\.weight.*dim 1"):
        sparse24.verify(model)


def test_transposed_conv1d_pruned_along_output_dim_fails_verify():
    model = nn.Sequential(OrderedDict(proj=Conv1D(16, 8)))
    layer = model.proj
    # keep the first 2 of every 4 outputs: 2:4 along dim 1, 4 nonzeros per group along dim 0
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(8, 4)
    mask = two_four_mask(scores, dim=1)
    assert is_two_four(mask, 1) and not is_two_four(mask, 0)
    sparse24.attach(layer, "weight", mask, apply=True)
    with pytest.raises(sparse24.SparsityError, match=r"proj\.weight.*dim 0"):
        sparse24.verify(model)


def test_mask_of_right_zeros_wrong_axis_fails_verify_even_if_weight_is_fine():
    """A weight that is 2:4 but carries a mask that is not: verify checks the mask too."""
    model = nn.Sequential(OrderedDict(fc=nn.Linear(8, 8)))
    mask = torch.ones(8, 8, dtype=torch.bool)
    sparse24.attach(model.fc, "weight", mask, apply=False)
    with torch.no_grad():
        model.fc.weight.zero_()
    with pytest.raises(sparse24.SparsityError, match=r"fc\.weight: mask"):
        sparse24.verify(model)


@pytest.mark.parametrize("out_channels", [8, 16])
def test_depthwise_conv_is_skipped(out_channels):
    model = nn.Sequential(OrderedDict(dw=nn.Conv2d(8, out_channels, 3, groups=8), pw=nn.Conv2d(out_channels, 8, 1)))
    report = sparse24.sparsify(model, policy="any")
    layers = {layer.name: layer for layer in report.layers}
    assert not layers["dw.weight"].sparse
    assert "depthwise" in layers["dw.weight"].reason
    assert layers["pw.weight"].sparse
    assert not hasattr(model.dw, "weight" + sparse24.MASK_SUFFIX)


STAND_IN = """
import sys

import torch
from torch import nn

import sparse24


class Conv1D(nn.Module):  # GPT-2's layout, under transformers' module name, without transformers
    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


Conv1D.__module__ = "transformers.pytorch_utils"
model = Conv1D(12, 8)
report = sparse24.sparsify(model, policy="any")
sparse24.verify(model)
assert [layer.name for layer in report.sparse_layers] == ["weight"], report
assert sparse24.is_two_four(model.weight, 0) and not sparse24.is_two_four(model.weight, 1)
assert "transformers" not in sys.modules, "sparse24 imported transformers"
print("ok")
"""


def test_transformers_is_not_imported():
    """In a fresh interpreter (this one has imported transformers): sparse24 recognises GPT-2's Conv1D by name."""
    done = subprocess.run([sys.executable, "-c", STAND_IN], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stdout + done.stderr
