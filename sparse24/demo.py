"""The embedded default: a small residual CNN on scikit-learn's bundled digits.

``python -m sparse24.demo`` trains it dense, makes it 2:4 with each criterion and prints the
reports and test accuracy before and after. ``DigitsResNet``, ``calibration_batches`` and
``loss_fn`` also serve the CLI (``sparse24 prune sparse24.demo:DigitsResNet ...``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

SEED = 0


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class DigitsResNet(nn.Module):
    """Residual CNN for 1x8x8 digit images: stem, block, strided conv, block, linear head."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = ResidualBlock(width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.block2 = ResidualBlock(2 * width)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


@dataclass(frozen=True)
class Digits:
    """scikit-learn's 8x8 digits as tensors, split once with a fixed seed (test is held out)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits(seed: int = SEED) -> Digits:
    """70/10/20 train/val/test split of the 1797 digits, pixels scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError("the demo needs scikit-learn: pip install 'sparse24[demo]'") from error
    bunch = sklearn_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test, n_val = len(y) // 5, len(y) // 10
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Digits(x[train], y[train], x[val], y[val], x[test], y[test])


def batches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
    """``(images, labels)`` batches, shuffled when a generator is given."""
    order = torch.randperm(len(y), generator=generator) if generator is not None else torch.arange(len(y))
    return [(x[order[i : i + batch_size]], y[order[i : i + batch_size]]) for i in range(0, len(y), batch_size)]


def calibration_batches(num_batches: int = 8, batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
    """Training batches for Taylor calibration (never the test split)."""
    digits = load_digits()
    return batches(digits.x_train, digits.y_train, batch_size)[:num_batches]


def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Cross-entropy of ``model`` on an ``(images, labels)`` batch."""
    images, labels = batch
    return F.cross_entropy(model(images), labels)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in percent, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches(x, y, 256))
    model.train(was_training)
    return 100.0 * correct / len(y)


def train_dense(digits: Digits, epochs: int = 20, lr: float = 3e-3, seed: int = SEED) -> DigitsResNet:
    """Train ``DigitsResNet`` from scratch with AdamW and a cosine schedule."""
    torch.manual_seed(seed)
    model = DigitsResNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * len(batches(digits.x_train, digits.y_train, 64))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(epochs):
        for batch in batches(digits.x_train, digits.y_train, 64, generator):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            optimizer.step()
            schedule.step()
    return model


def main(argv: list[str] | None = None) -> int:
    """Train dense, sparsify with each criterion, print reports and accuracies."""
    import sparse24

    parser = argparse.ArgumentParser(description="sparse24 demo: 2:4 sparsity on a digits CNN")
    parser.add_argument("--out", default="build/demo", help="directory for the dense weights and the summary")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    digits = load_digits()
    start = time.perf_counter()
    dense = train_dense(digits, epochs=args.epochs)
    print(f"trained dense DigitsResNet for {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    sparse24.save(dense, out / "dense.safetensors")

    rows = [("dense", "-", accuracy(dense, digits.x_val, digits.y_val), accuracy(dense, digits.x_test, digits.y_test))]
    for method in ("magnitude", "taylor"):
        model = copy.deepcopy(dense)
        calibration = batches(digits.x_train, digits.y_train, 64)[:8] if method == "taylor" else None
        start = time.perf_counter()
        report = sparse24.sparsify(model, method, data=calibration, loss_fn=loss_fn if calibration else None)
        seconds = time.perf_counter() - start
        sparse24.verify(model)
        print(f"\n== 2:4 {method} (one-shot, {seconds:.2f} s) ==\n{report}")
        rows.append((f"2:4 {method}, one-shot", f"{report.prunable_share:.0%}", accuracy(model, digits.x_val, digits.y_val), accuracy(model, digits.x_test, digits.y_test)))

    table = ["| model | GEMM weights 2:4 | val accuracy % | test accuracy % |", "|---|---|---|---|"]
    table += [f"| {name} | {share} | {val:.2f} | {test:.2f} |" for name, share, val, test in rows]
    text = "\n".join(table) + f"\n\nCommand: python -m sparse24.demo --epochs {args.epochs} (seed {SEED}; digits test split = 20%, held out)\n"
    sparse24.io.write_text(out / "summary.md", text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
