"""One rank of the distributed one-shot test (run by torchrun from test_oneshot_distributed.py).

Every rank builds the same model, takes every other calibration batch (its share), runs
``sparsify(model, METHOD, data=share, sequential=...)`` inside a gloo group, and saves its
state dict: the statistics are all-reduced, so every rank must end with the same weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

import sparse24
from sparse24_testing import run_worker


def model_and_data() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)),
        nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)),
        nn.Linear(32, 16),
    )
    scale = torch.logspace(-1, 1, 32)
    # the ranks' batches (every other one) 64x apart, growing: each rank's sums are rescaled as it goes, and to the
    # larger exponent of the two before they are added up
    data = [torch.randn(16, 32) * scale * 2.0 ** (6 * (i % 2) + 2 * (i // 4) - 4) for i in range(8)]
    return model, data


def output_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Taylor's loss for the label-free data: the mean square of the output."""
    return model(batch).square().mean()


def method_options(method: str) -> tuple[str, dict]:
    """``(sparsify method, its options)`` of a worker method name (``taylor-pairs``: Taylor by pairs, per sample)."""
    if method == "taylor-pairs":
        return "taylor", {"loss_fn": output_loss, "squared": True, "per_sample": True, "pairs": True}
    return method, {}


def main() -> int:
    method, sequential, out = sys.argv[1], sys.argv[2] == "sequential", Path(sys.argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, data = model_and_data()
    share = data[rank::world]
    method, options = method_options(method)
    sparse24.sparsify(model, method, data=share, sequential=["0", "1"] if sequential else None, policy="any", progress=False, **options)
    partial = out / f"rank{rank}.safetensors.partial"  # the file appears whole or not at all
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(partial))
    partial.replace(out / f"rank{rank}.safetensors")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_worker(main)
