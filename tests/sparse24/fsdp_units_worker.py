"""One rank of the 2-process check of FSDP2 units that ``test_fsdp.py`` launches with torchrun.

Not a test module. Every rank shards, with :func:`sparse24.dist.fsdp_shard`: a tiny GPT-2 with its
output head tied to the token embedding (default units: the transformer layers); a plain model whose
two children share one Linear (one unit for both); GPT-2 again with the head named as a block (it
shares its weight with the root's embedding, so it stays in the root unit); then finetunes a tied
GPT-2 with ``strategy="fsdp"`` for 2 steps. It writes what it saw to ``--out``/units_rank{r}.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from sparse24_testing import run_worker

__test__ = False


def gpt2():
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32))


def main() -> None:
    import torch
    import torch.distributed as torch_dist
    from torch import nn

    import sparse24
    from sparse24 import dist

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = Path(parser.parse_args().out)
    torch_dist.init_process_group("gloo")
    rank = torch_dist.get_rank()
    record: dict = {}

    model = gpt2()
    record["gpt2_units"] = dist.fsdp_shard(model)
    record["gpt2_tied"] = model.lm_head.weight is model.transformer.wte.weight

    shared = nn.Linear(8, 8)
    pair = nn.Sequential(nn.Sequential(shared, nn.ReLU()), nn.Sequential(shared), nn.Linear(8, 4))
    record["pair_units"] = dist.fsdp_shard(pair)
    record["pair_one_state"] = pair[0]._get_fsdp_state() is pair[1]._get_fsdp_state() and pair[0]._get_fsdp_state() is not pair[2]._get_fsdp_state()

    head = gpt2()
    record["head_units"] = dist.fsdp_shard(head, ["lm_head"])
    record["head_tied"] = head.lm_head.weight is head.transformer.wte.weight

    student, teacher = gpt2(), gpt2()
    sparse24.sparsify(student, progress=False)
    ids = [torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(2 * i + rank)) for i in range(2)]
    history = sparse24.finetune(student, [{"input_ids": x, "labels": x} for x in ids], teacher=teacher, steps=2, strategy="fsdp", progress=False, log_every=1)
    sparse24.verify(student)
    record["finetune_steps"] = [step["step"] for step in history.steps]
    record["finetune_tied"] = student.lm_head.weight is student.transformer.wte.weight
    (out / f"units_rank{rank}.json").write_text(json.dumps(record))
    torch_dist.barrier()
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    run_worker(main)
