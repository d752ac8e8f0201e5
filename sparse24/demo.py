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
import torch.utils.data
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


class DigitsTransformer(nn.Module):
    """Pre-norm transformer-encoder classifier over the 4x4 patches of a 1x8x8 digit.

    Every GEMM is an ``nn.Linear`` (patch embedding, attention in/out projections, MLP,
    head), so with ``policy="any"`` all of them take 2:4 masks.
    """

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, mlp: int = 128, num_classes: int = 10, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        tokens = (8 // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p).reshape(x.shape[0], -1, p * p)  # [N, tokens, p*p]
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(patches)], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


MODELS = {"resnet": DigitsResNet, "transformer": DigitsTransformer}


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


def calibration_batches(num_batches: int = 64, batch_size: int = 4) -> list[tuple[Tensor, Tensor]]:
    """Training batches for Taylor calibration (never the test split).

    Small batches: on a converged model the per-batch gradients of large batches nearly
    cancel, and Taylor scores get noisy (chosen on the validation split).
    """
    digits = load_digits()
    return batches(digits.x_train, digits.y_train, batch_size)[:num_batches]


def train_loader(batch_size: int = 64) -> torch.utils.data.DataLoader:
    """Shuffled training batches for finetuning (the order follows the global torch RNG)."""
    digits = load_digits()
    dataset = torch.utils.data.TensorDataset(digits.x_train, digits.y_train)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


def val_split() -> tuple[Tensor, Tensor]:
    """The validation split ``(images, labels)``: what finetune evaluates on (never the test split)."""
    digits = load_digits()
    return digits.x_val, digits.y_val


def evaluate(model: nn.Module, data: tuple[Tensor, Tensor]) -> dict[str, float]:
    """``eval_fn`` for finetune: ``{"accuracy": top-1 %}`` on ``(images, labels)``."""
    return {"accuracy": accuracy(model, *data)}


def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Cross-entropy of ``model`` on an ``(images, labels)`` batch."""
    images, labels = batch
    return F.cross_entropy(model(images), labels)


def logits_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The logits of ``model`` on an ``(images, labels)`` batch (Taylor's ``labels="model"``)."""
    return model(batch[0])


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in percent, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model(xb.to(device)).argmax(1).cpu() == yb).sum()) for xb, yb in batches(x, y, 256))
    model.train(was_training)
    return 100.0 * correct / len(y)


def train_dense(digits: Digits, epochs: int = 20, lr: float = 3e-3, seed: int = SEED, model: str = "resnet") -> nn.Module:
    """Train a demo model (``"resnet"`` or ``"transformer"``) from scratch with AdamW and a cosine schedule."""
    torch.manual_seed(seed)
    model = MODELS[model]()
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


def _table(rows: list[tuple[str, str, float, float]]) -> str:
    lines = ["| model | GEMM weights 2:4 | val accuracy % | test accuracy % |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {name} | {share} | {val:.2f} | {test:.2f} |" for name, share, val, test in rows])


def _train(args: argparse.Namespace) -> int:
    """Train dense, sparsify one-shot with each criterion, print reports and accuracies."""
    import sparse24

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    start = time.perf_counter()
    dense = train_dense(digits, epochs=args.epochs)
    print(f"trained dense DigitsResNet for {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    sparse24.save(dense, out / "dense.safetensors")

    rows = [("dense", "-", accuracy(dense, digits.x_val, digits.y_val), accuracy(dense, digits.x_test, digits.y_test))]
    fisher_pairs = {"squared": True, "per_sample": True, "labels": "model", "logits_fn": logits_fn, "pairs": True}
    criteria = (
        ("magnitude", "magnitude", {}),
        ("magnitude + channel permutation", "magnitude", {"permute": True}),
        ("taylor", "taylor", {"squared": True}),
        ("taylor, model Fisher by pairs", "taylor", fisher_pairs),
        ("magnitude, BatchNorm re-estimated", "magnitude", {"recalibrate_bn": True}),
        ("wanda", "wanda", {}),
        ("wanda, BatchNorm re-estimated", "wanda", {"recalibrate_bn": True}),
        ("sparsegpt", "sparsegpt", {}),
        ("sparsegpt, block by block", "sparsegpt", {"sequential": ["block1", "down", "block2"]}),
    )
    for label, method, options in criteria:
        model = copy.deepcopy(dense)
        calibration = calibration_batches() if method != "magnitude" or options.get("recalibrate_bn") else None
        loss = loss_fn if calibration and "labels" not in options else None
        start = time.perf_counter()
        report = sparse24.sparsify(model, method, data=calibration, loss_fn=loss, **options)
        seconds = time.perf_counter() - start
        sparse24.verify(model)
        print(f"\n== 2:4 {label} (one-shot, {seconds:.2f} s) ==\n{report}")
        rows.append((f"2:4 {label}, one-shot", f"{report.prunable_share:.0%}", accuracy(model, digits.x_val, digits.y_val), accuracy(model, digits.x_test, digits.y_test)))

    text = _table(rows) + f"\n\nCommand: python -m sparse24.demo train --epochs {args.epochs} (seed {SEED}; digits test split = 20%, held out)\n"
    sparse24.io.write_text(out / "summary.md", text)
    print("\n" + text)
    return 0


def _before_after(args: argparse.Namespace) -> int:
    """Accuracy of the dense, one-shot 2:4 and finetuned 2:4 weights that ``make demo`` wrote."""
    import sparse24

    out = Path(args.out)
    digits = load_digits()
    rows = []
    stages = (("dense", "dense.safetensors"), ("2:4 one-shot (sparse24 prune)", "sparse.safetensors"), ("2:4 + recovery finetune (sparse24 finetune)", "finetuned.safetensors"))
    for name, file in stages:
        model = DigitsResNet()
        masked = sparse24.load(model, out / file)
        share = f"{len(masked)}/{len(sparse24.gemm_weights(model))} layers" if masked else "-"
        rows.append((name, share, accuracy(model, digits.x_val, digits.y_val), accuracy(model, digits.x_test, digits.y_test)))
    text = _table(rows) + f"\n\nCommand: make demo (files in {out}; the test split is held out: never used for choices)\n"
    sparse24.io.write_text(out / "before_after.md", text)
    print(text)
    return 0


def _runtime(args: argparse.Namespace) -> int:
    """A Llama-7B-shaped 2:4 MLP on the sparse runtime: "auto" on an sm_80+ GPU, the reference check elsewhere."""
    from .runtime import cuda_time_ms, to_sparse_runtime
    from .sparsify import sparsify

    torch.manual_seed(SEED)
    gpu = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
    dim, hidden = (4096, 11008) if gpu else (256, 688)
    model = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
    sparsify(model, "magnitude", progress=False)
    if not gpu:
        reason = "no CUDA GPU" if not torch.cuda.is_available() else f"{torch.cuda.get_device_name()} is older than sm_80"
        dense = copy.deepcopy(model)
        report = to_sparse_runtime(model, "reference")
        x = torch.randn(4, dim)
        with torch.no_grad():
            error = float((model(x) - dense(x)).abs().max())
        print(f"skipped the GPU runtime ({reason}); the reference backend on the compressed weights matches dense to {error:.1e}")
        print(report)
        return 0
    model = model.cuda().half().eval()
    dense = copy.deepcopy(model)
    report = to_sparse_runtime(model, "auto")
    print(report)
    with torch.no_grad():
        for m in (1, 16, 4096):
            x = torch.randn(m, dim, device="cuda", dtype=torch.half)
            times = {name: cuda_time_ms(lambda net=net: net(x)) for name, net in (("dense", dense), ("sparse runtime", model))}
            print(f"M={m}: dense {times['dense']:.3f} ms, sparse runtime {times['sparse runtime']:.3f} ms ({times['dense'] / times['sparse runtime']:.2f}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sparse24.demo train|table|runtime --out DIR``."""
    parser = argparse.ArgumentParser(description="sparse24 demo: 2:4 sparsity on a digits CNN")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train dense, compare one-shot 2:4 criteria")
    train.add_argument("--out", default="build/demo", help="directory for the dense weights and the summary")
    train.add_argument("--epochs", type=int, default=20)
    train.set_defaults(func=_train)
    table = commands.add_parser("table", help="before/after table of the files make demo wrote")
    table.add_argument("--out", default="build/demo")
    table.set_defaults(func=_before_after)
    runtime = commands.add_parser("runtime", help="a 2:4 MLP on the sparse runtime (GPU), or its reference check (CPU)")
    runtime.set_defaults(func=_runtime)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
