"""FSDP2-sharded ``sparsify`` of a tiny Qwen3-MoE (fused experts sharded along their expert dim), for test_experts.

Run by ``python -m torch.distributed.run --standalone --nproc_per_node=2 fsdp_experts_worker.py --out DIR``:
every rank shards a fresh model (each decoder layer, then the root), sparsifies it on its own half of the
batches with each method, and rank 0 writes the gathered state dict to ``DIR/<method>.safetensors``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

from sparse24_testing import run_worker  # noqa: E402
from test_experts import METHODS, batches, qwen3_moe  # noqa: E402


def main() -> int:
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import sparse24

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = Path(parser.parse_args().out)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        for method, options in METHODS.items():
            model = qwen3_moe()
            mesh = init_device_mesh("cpu", (dist.get_world_size(),))
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            sparse24.sparsify(model, method, data=batches()[rank::2], policy="any", progress=False, **options)
            sparse24.verify(model)
            full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
            if rank == 0:
                save_file({k: v.contiguous() for k, v in full.items()}, str(out / f"{method}.safetensors"))
            dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_worker(main)
