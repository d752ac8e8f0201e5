"""Shared fixtures for the sparse24 core tests: small models, their data, and state snapshots."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import sparse24
from sparse24_testing import same_bits


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same RNG state, so every run sees the same tensors."""
    torch.manual_seed(0)


def build_convnet(*, batchnorm: bool = False, out_features: int = 64, in_features: int = 512) -> nn.Sequential:
    """Conv2d(16, 32, 3) [+ BatchNorm2d] + Linear(512, out): both eligible under the TensorRT policy.

    Input ``[N, 16, 6, 6]``. A plain ``nn.Sequential`` with named children, so it pickles.
    """
    layers: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(16, 32, 3))]
    if batchnorm:
        layers.append(("bn", nn.BatchNorm2d(32)))
    layers += [("act", nn.ReLU()), ("flat", nn.Flatten()), ("fc", nn.Linear(in_features, out_features))]
    return nn.Sequential(OrderedDict(layers))


def convnet_batch(batch: int = 8, out_features: int = 64) -> tuple[Tensor, Tensor]:
    """One ``(input, target)`` batch for :func:`build_convnet`."""
    return torch.randn(batch, 16, 6, 6), torch.randn(batch, out_features)


def mse_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


@pytest.fixture
def convnet() -> Callable[..., nn.Sequential]:
    """Factory of fresh :func:`build_convnet` models (same seed gives same weights)."""
    return build_convnet


@pytest.fixture
def batches() -> Callable[..., list[tuple[Tensor, Tensor]]]:
    """Factory: ``batches(n, batch=8, out_features=64)`` -> list of ``(x, y)`` for the convnet."""

    def make(n: int, batch: int = 8, out_features: int = 64) -> list[tuple[Tensor, Tensor]]:
        return [convnet_batch(batch, out_features) for _ in range(n)]

    return make


@pytest.fixture
def loss_fn() -> Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor]:
    return mse_loss


@dataclass
class Snapshot:
    """Everything sparsify promises to leave alone when it fails."""

    state: dict[str, Tensor]
    training: list[tuple[nn.Module, bool]]
    params: list[tuple[nn.Parameter, bool, Tensor | None, Tensor | None]]

    @classmethod
    def of(cls, model: nn.Module) -> Snapshot:
        return cls(
            state={k: v.detach().clone() for k, v in model.state_dict().items()},
            training=[(m, m.training) for m in model.modules()],
            params=[
                (p, p.requires_grad, p.grad, None if p.grad is None else p.grad.detach().clone())
                for p in model.parameters()
            ],
        )

    def assert_unchanged(self, model: nn.Module) -> None:
        state = model.state_dict()
        assert not [k for k in state if k.endswith(sparse24.MASK_SUFFIX)], "mask buffers were added"
        assert list(state) == list(self.state)
        changed = [k for k in state if not same_bits(state[k], self.state[k])]
        assert not changed, f"state changed: {changed}"
        assert [(m, m.training) for m in model.modules()] == self.training
        assert not sparse24.masked_weights(model)
        for param, requires_grad, grad, grad_value in self.params:
            assert param.requires_grad == requires_grad
            assert param.grad is grad
            if grad is not None:
                assert same_bits(grad, grad_value)


@pytest.fixture
def snapshot() -> Callable[[nn.Module], Snapshot]:
    return Snapshot.of


def sgd_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, loss=mse_loss) -> None:
    """A few plain training steps on fresh random convnet batches."""
    out_features = model.fc.out_features
    for _ in range(steps):
        optimizer.zero_grad()
        loss(model, convnet_batch(out_features=out_features)).backward()
        optimizer.step()


@pytest.fixture
def train_steps() -> Callable[..., None]:
    """``train_steps(model, optimizer, steps)``: plain training on random convnet batches."""
    return sgd_steps
