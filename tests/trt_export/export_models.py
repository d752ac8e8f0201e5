"""Small models for the export tests: convs (plain, grouped, depthwise), 2-D and 3-D Linears, token inputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNet(nn.Module):
    """Conv, grouped conv, depthwise conv, BatchNorm, and a Linear on a 2-D input (exports as Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=2, bias=False)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, 16)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.depthwise(self.grouped(x)))
        return self.fc(x.mean(dim=(2, 3)))


def conv_example(batch: int = 2) -> Tensor:
    return torch.randn(batch, 16, 8, 8)


class TokenModel(nn.Module):
    """Token ids -> embedding -> two Linears on 3-D activations (MatMul) -> a dict of two outputs."""

    def __init__(self, vocab: int = 100, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.up = nn.Linear(dim, 64)
        self.down = nn.Linear(64, dim)
        self.head = nn.Linear(dim, 8)

    def forward(self, ids: Tensor) -> dict[str, Tensor]:
        h = self.embed(ids)
        h = h + self.down(torch.nn.functional.gelu(self.up(h)))
        return {"logits": self.head(h), "pooled": h.mean(dim=1)}


def token_example() -> Tensor:
    """Token ids covering the vocabulary, so fresh inputs are drawn over all of it."""
    ids = torch.arange(24).reshape(2, 12) % 100
    ids[0, 0] = 99
    return ids


@torch.library.custom_op("sparse24_tests::mixed", mutates_args=())
def _mixed(x: Tensor) -> Tensor:
    return x.flip(-1)


@_mixed.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


class CustomOp(nn.Module):
    """A forward through a custom op with no ONNX function, as transformers' MoE grouped_mm_fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        return _mixed(self.fc(x))


class DataDependent(nn.Module):
    """A forward that branches on tensor values: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x)
        if y.sum() > 0:
            return y * 2
        return y


class CapitalNames(nn.Module):
    """Module attributes with capitals: torch.export lower-cases them in placeholder names (``p_up_weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.Up = nn.Linear(32, 64)
        self.Down = nn.Sequential(nn.Linear(64, 32))

    def forward(self, x: Tensor) -> Tensor:
        return self.Down(torch.relu(self.Up(x)))


class ComputedWeight(nn.Module):
    """``fc``'s GEMM weight is computed in forward (``fc.weight * g``), not the masked parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.g = nn.Parameter(torch.rand(32, 32) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.fc.weight * self.g, self.fc.bias)


class WeightWithActivations(nn.Module):
    """``fc.weight`` is read elementwise with activations, never as a GEMM weight."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)

    def forward(self, x: Tensor) -> Tensor:
        return (x.unsqueeze(1) * self.fc.weight).sum(-1)


class DeadLayer(nn.Module):
    """``spare`` is never called in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.spare = nn.Linear(32, 32)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class TiedLinears(nn.Module):
    """Two Linears share one weight: the exported program has one placeholder for both names."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.relu(self.a(x)))


class MaskedSum(nn.Module):
    """An integer input that indexes no embedding (a 0/1 mask): its range must come from the user."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.fc(x) * mask.unsqueeze(-1).to(x.dtype)
