"""One rank of the 2-process FSDP2 scenario that ``test_fsdp.py`` launches with torchrun.

Not a test module (pytest collects ``test_*.py`` only, and ``__test__ = False`` says so
again); importing it does nothing but define things. Run as a script by
``python -m torch.distributed.run --nproc_per_node=2 fsdp_worker.py --out DIR``; every rank:

1. builds the same seeded :class:`Net` (LayerNorm, no BatchNorm, so one process can replay the
   global batches exactly) and 2:4-prunes it by magnitude; keeps a dense copy as the teacher;
2. *before* the process group exists: records the error of ``finetune(strategy="fsdp")``
   without one, and (rank 0) runs the unsharded reference: the same global batches in one
   process (``grad_accum=2`` over the batches the two ranks take in one step); meanwhile rank 1
   runs the unsharded references of the amp runs (:func:`amp_references`);
3. initialises gloo, runs ``finetune(strategy="fsdp")`` (the model and the dense teacher
   sharded by finetune; distillation, grad clipping, eval on every rank, checkpoints every 3
   steps) and dumps the gathered state (``main_rank{r}.safetensors``) and this rank's shards
   and their masks;
4. checks the sharding of weights and masks against ``torch.chunk`` (``chunks`` in the JSON),
   and trains once more with ``grad_accum=2`` (``accum_rank{r}.safetensors``; rank 0's reference
   for it accumulates 4 micro-batches in one process); then the amp runs (:func:`amp_cases`):
   ``amp="bf16"`` with ``strategy="fsdp"`` and a teacher sharded by finetune, ``amp="fp16"`` on a
   model the worker sharded, with an inf put into rank 1's reduce-scatter output only at step
   ``AMP_INF_STEP`` (every rank must skip that step), stopped and resumed from a checkpoint;
   and FSDP2's own ``MixedPrecisionPolicy`` (bf16 params, fp32 reduce) on a model the worker sharded;
5. runs the same training on a model and teacher sharded by the worker itself with
   ``fully_shard``, stopped at a fixed step (``StopRun`` from ``loss_fn``), then resumes it
   from its newest checkpoint on fresh sharded copies (``resumed_rank{r}.safetensors``);
6. checks that a violation on rank 1's shard only fails ``sparse24.verify`` on every rank;
7. runs a recipe with ``finetune: {strategy: fsdp}`` (``run_recipe``, 2 steps; rank 0 writes
   ``recipe.safetensors`` from the gathered model);
8. runs ``sparsify`` on a sharded :func:`build_calibration` model for every case of
   :data:`CASES`, rank 0 with calibration batches 0-2 and rank 1 with 3-4 (rank 0 writes
   ``sparsify_{case}.safetensors`` from the gathered model), verifies and finetunes one result,
   and checks failures that every rank sees between passes (a NaN batch on rank 1, rank 1's data
   failing): every rank raises, its shards unchanged, the process group still usable;
9. last, as it aborts the process group: a ``loss_fn`` raising on rank 1 only
   (``abort_rank{r}.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
from pathlib import Path

from sparse24_testing import run_worker

__test__ = False

BATCH = 8
TRAIN_BATCHES = 8  # 4 per rank and epoch with 2 ranks: 4 optimizer steps per epoch
EPOCHS = 2
CHECKPOINT_EVERY = 3
STOP_AT_CALL = 7  # training loss_fn call 7 on each rank = step 7: steps 1-6 done, newest checkpoint step 6
SEED = 1234
LR = 3e-3
GRAD_CLIP = 0.25  # below most steps' norm (about 0.3): clipping is active
AMP_EPOCHS = 1  # 4 optimizer steps per amp run
AMP_CHECKPOINT_EVERY = 2
AMP_INF_STEP = 2  # fp16: rank 1's reduced gradient of ``odd`` gets an inf at this step; every rank skips it
AMP_INF_ROW = 14  # odd.weight has 27 rows: rank 1's shard starts at row 14 (its reduce-scatter output's element 0)
AMP_STOP_AT_CALL = 4  # fp16: steps 1-3 done, newest checkpoint step 2 (after the skipped step: the scaler state matters)


class StopRun(Exception):
    """Raised by the loss_fn at ``STOP_AT_CALL`` (on every rank at once)."""


def _block_type():
    """The pre-norm residual MLP block of both test models (defined here: torch is imported lazily)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, width: int, hidden: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(width)
            self.up = nn.Linear(width, hidden)
            self.down = nn.Linear(hidden, width)

        def forward(self, x):
            return x + self.down(torch.relu(self.up(self.norm(x))))

    return Block


def build():
    """The test model: Linear layers with even and odd row counts, LayerNorm, no BatchNorm."""
    import torch
    from torch import nn

    Block = _block_type()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(32, 64)
            self.block1 = Block(64, 48)
            self.block2 = Block(64, 64)
            self.odd = nn.Linear(64, 27)  # 27 rows: shards of 14 and 13 rows
            self.head = nn.Linear(27, 10)  # reduction 27: not 2:4, stays dense (still sharded)

        def forward(self, x):
            return self.head(torch.relu(self.odd(self.block2(self.block1(self.embed(x))))))

    torch.manual_seed(0)
    return Net()


CAL_BATCHES = 5
CAL_SPLIT = 3  # rank 0 takes calibration batches [0, 3), rank 1 [3, 5): uneven counts
CASES = {  # name: (method, sparsify keyword arguments besides data and loss_fn)
    "magnitude": ("magnitude", {}),
    "taylor_squared_per_sample": ("taylor", {"squared": True, "per_sample": True}),
    "taylor_model_labels": ("taylor", {"labels": "model", "samples": 2, "squared": True}),
    "wanda": ("wanda", {}),
    "sparsegpt": ("sparsegpt", {"blocksize": 8}),
    "wanda_sequential": ("wanda", {"sequential": "blocks"}),
    "sparsegpt_sequential": ("sparsegpt", {"sequential": "blocks", "blocksize": 8}),
    # by pairs, a Conv1D's shards must hold whole groups: wide's do (36 input features each), proj's (38) do not
    "taylor_pairs": ("taylor", {"squared": True, "per_sample": True, "pairs": True, "exclude": "proj"}),
    "taylor_pairs_sequential": ("taylor", {"squared": True, "pairs": True, "exclude": "proj", "sequential": "blocks"}),
    # the loss times 2**-64 (tiny_loss_fn): squared scores below float32, kept in one unit agreed by the ranks
    "taylor_pairs_tiny_gradients": ("taylor", {"squared": True, "per_sample": True, "pairs": True, "exclude": "proj"}),
    # blocks listed against the order the forward runs them: every rank calibrates them as they run, as one process does
    "sparsegpt_sequential_listed_backwards": ("sparsegpt", {"sequential": ["blocks.1", "blocks.0"], "blocksize": 8}),
    "taylor_sequential_listed_backwards": ("taylor", {"squared": True, "per_sample": True, "sequential": ["blocks.1", "blocks.0"]}),
    # the side branch as a block of its own: no gradient reaches it, so every rank skips its backward passes together
    "taylor_sequential_side_branch": ("taylor", {"squared": True, "per_sample": True, "sequential": ["blocks.0", "blocks.1", "side"]}),
}
CAL_MASKED = ["embed.weight", "blocks.0.up.weight", "blocks.0.down.weight", "blocks.1.up.weight", "blocks.1.down.weight", "side.0.weight", "conv.weight", "wide.weight", "mid.weight", "proj.weight"]


def masked_in(name: str) -> list[str]:
    """The weights case ``name`` masks: :data:`CAL_MASKED` but those of the modules it excludes."""
    excluded = CASES[name][1].get("exclude")
    return [w for w in CAL_MASKED if excluded is None or w.rpartition(".")[0] != excluded]


def build_calibration():
    """The sparsify test model: Linear, a Conv1d (9 output rows: shards of 5 and 4), GPT-2's
    transposed ``Conv1D`` (weight [76, 27], reduction along dim 0: its 38-row shards split a
    group of 4), a Linear whose weight the forward multiplies by itself, two blocks in a
    ``ModuleList`` for ``sequential``, a side branch the forward runs but the output never reads
    (Taylor: no gradient, magnitude's mask); 32 inputs, 10 classes."""
    import torch
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    Block = _block_type()

    class CalNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(32, 64)
            self.blocks = nn.ModuleList([Block(64, 48), Block(64, 64)])
            self.side = nn.Sequential(nn.Linear(64, 64))  # run, never read (a base model's pooler)
            self.conv = nn.Conv1d(8, 9, 3, padding=1)
            self.wide = Conv1D(72, 72)  # weight [72, 72] along dim 0: shards of 36 rows, whole groups of 4
            self.mid = nn.Linear(72, 76)
            self.proj = Conv1D(27, 76)
            self.head = nn.Linear(27, 10)  # reduction 27: stays dense

        def forward(self, x):
            h = self.embed(x)
            for block in self.blocks:
                h = block(h)
            self.side(h)
            h = torch.relu(self.conv(h.view(-1, 8, 8))).flatten(1)
            h = torch.relu(self.wide(h))
            h = (self.mid.weight @ h.T).T + self.mid.bias  # mid multiplied by, not called (Mamba's dt_proj): its input is still seen
            return self.head(torch.relu(self.proj(torch.relu(h))))

    torch.manual_seed(3)
    return CalNet()


def calibration_data():
    """``CAL_BATCHES`` batches of 6 (inputs, labels); the union of the two ranks' shares, in order."""
    import torch

    generator = torch.Generator().manual_seed(11)
    return [(torch.randn(6, 32, generator=generator), torch.randint(0, 10, (6,), generator=generator)) for _ in range(CAL_BATCHES)]


def share(rank: int) -> list:
    batches = calibration_data()
    return batches[:CAL_SPLIT] if rank == 0 else batches[CAL_SPLIT:]


def logits_fn(model, batch):
    return model(batch[0])


def case_options(name: str) -> tuple[str, dict]:
    """``(method, keyword arguments)`` of a case as one process and every rank call sparsify."""
    method, extra = CASES[name]
    options = dict(policy="any", progress=False, **extra)
    if method != "magnitude":
        options["loss_fn"] = tiny_loss_fn if name.endswith("_tiny_gradients") else loss_fn
    if extra.get("labels") == "model":
        options["logits_fn"] = logits_fn
        del options["loss_fn"]
    return method, options


def data():
    import torch

    generator = torch.Generator().manual_seed(7)
    return [(torch.randn(BATCH, 32, generator=generator), torch.randint(0, 10, (BATCH,), generator=generator)) for _ in range(TRAIN_BATCHES)]


def loss_fn(model, batch):
    from torch.nn import functional as F

    x, y = batch
    return F.cross_entropy(model(x), y)


def tiny_loss_fn(model, batch):
    """:func:`loss_fn` times 2**-64: every gradient 2**-64 times as large, exactly."""
    return loss_fn(model, batch) * 2.0**-64


def fresh():
    """A magnitude-pruned :func:`build` and its dense copy (the teacher)."""
    import sparse24

    model = build()
    dense = copy.deepcopy(model)
    sparse24.sparsify(model, "magnitude", policy="any", progress=False)
    return model, dense


def amp_options(amp: str | None, **extra):
    return options(amp=amp, epochs=AMP_EPOCHS, **extra)


def steps_record(history) -> dict:
    """The per-step fields of a history, as lists (``loss_scale`` only with fp16)."""
    keys = [k for k in ("loss", "task", "grad_norm", "loss_scale", "lr") if k in history.steps[0]]
    return {k: [s[k] for s in history.steps] for k in keys}


def amp_references(out: Path, world: int, train: list) -> dict:
    """The amp runs in one process (no process group): the same global batches, ``grad_accum=world``."""
    import torch
    from safetensors.torch import save_file

    import sparse24

    result = {}
    reference, teacher = fresh()
    history = sparse24.finetune(reference, train, teacher=teacher, grad_accum=world, **amp_options("bf16"))
    save_file(reference.state_dict(), str(out / "reference_bf16.safetensors"))
    result["bf16"] = steps_record(history)

    reference, _ = fresh()
    backwards = []

    def put_inf(param):  # after the last micro-batch of step AMP_INF_STEP was accumulated into .grad
        backwards.append(1)
        if len(backwards) == AMP_INF_STEP * world:
            param.grad[AMP_INF_ROW, 0] = float("inf")

    reference.odd.weight.register_post_accumulate_grad_hook(put_inf)
    ckpt = out / "ckpt-reference-fp16"
    history = sparse24.finetune(reference, train, grad_accum=world, checkpoint_dir=str(ckpt), **amp_options("fp16"))
    save_file(reference.state_dict(), str(out / "reference_fp16.safetensors"))
    result["fp16"] = steps_record(history)
    result["fp16_scaler"] = torch.load(ckpt / "step-00000004" / "trainer.pt", weights_only=True)["scaler"]
    return result


def amp_cases(out: Path, rank: int, world: int, train: list) -> dict:
    """bf16 (strategy="fsdp", distilled from a teacher finetune shards) and fp16 (a model the worker
    sharded; an inf in rank 1's shard at ``AMP_INF_STEP``; stopped at ``AMP_STOP_AT_CALL`` and resumed)."""
    import torch
    from safetensors.torch import save_file

    import sparse24

    result = {}
    model, dense = fresh()
    history = sparse24.finetune(model, train, teacher=dense, strategy="fsdp", **amp_options("bf16"))
    result["bf16"] = steps_record(history)
    save_file(gathered(model), str(out / f"bf16_rank{rank}.safetensors"))
    _, result["bf16_pruned_nonzero"] = local_shards(model)
    result["bf16_verified"] = len(sparse24.verify(model).sparse_layers)
    result["bf16_teacher_sharded"] = sparse24.enforce.is_sharded(dense)

    def fp16_model(inject: bool):
        model, _ = fresh()
        shard_like_finetune(model)
        calls = []

        def hook(reduce_output):  # odd's reduce-scatter output on this rank, before it becomes the grad shards
            calls.append(1)
            if inject and rank == 1 and len(calls) == AMP_INF_STEP:
                reduce_output[0] = float("inf")  # odd.weight[AMP_INF_ROW, 0], in rank 1's shard only

        model.odd.set_all_reduce_hook(hook)
        return model

    ckpt = out / "ckpt-fp16"
    model = fp16_model(inject=True)
    history = sparse24.finetune(model, train, checkpoint_dir=str(ckpt), checkpoint_every=AMP_CHECKPOINT_EVERY, **amp_options("fp16"))
    result["fp16"] = steps_record(history)
    save_file(gathered(model), str(out / f"fp16_rank{rank}.safetensors"))
    _, result["fp16_pruned_nonzero"] = local_shards(model)
    result["fp16_verified"] = len(sparse24.verify(model).sparse_layers)
    result["fp16_scaler"] = torch.load(ckpt / "step-00000004" / "trainer.pt", weights_only=True)["scaler"]

    calls = []

    def stopping_loss(module, batch):
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == AMP_STOP_AT_CALL:
                raise StopRun(f"stopped at loss_fn call {len(calls)}")
        return loss_fn(module, batch)

    ckpt = out / "ckpt-fp16-resume"
    model = fp16_model(inject=True)
    try:
        sparse24.finetune(model, train, checkpoint_dir=str(ckpt), checkpoint_every=AMP_CHECKPOINT_EVERY, **{**amp_options("fp16"), "loss_fn": stopping_loss})
        result["fp16_stopped"] = False
    except StopRun:
        result["fp16_stopped"] = True
    import torch.distributed as tdist

    tdist.barrier()
    result["fp16_after_interrupt"] = sorted(p.name for p in ckpt.iterdir())
    model = fp16_model(inject=False)  # the inf step is behind the checkpoint
    history = sparse24.finetune(model, train, checkpoint_dir=str(ckpt), checkpoint_every=AMP_CHECKPOINT_EVERY, resume=True, **amp_options("fp16"))
    result["fp16_resumed_from"] = history.resumed_from
    result["fp16_resumed"] = steps_record(history)
    result["fp16_resumed_scaler"] = torch.load(ckpt / "step-00000004" / "trainer.pt", weights_only=True)["scaler"]
    save_file(gathered(model), str(out / f"fp16_resumed_rank{rank}.safetensors"))

    # FSDP2's own mixed precision instead of autocast: bf16 compute and all-gathers, fp32 shards and reduce.
    from torch.distributed.fsdp import MixedPrecisionPolicy

    model, _ = fresh()
    shard_like_finetune(model, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))
    history = sparse24.finetune(model, train, **amp_options(None))
    result["mp"] = steps_record(history)
    result["mp_param_dtypes"] = sorted({str(p.dtype) for p in model.parameters()})
    save_file(gathered(model), str(out / f"mp_rank{rank}.safetensors"))
    _, result["mp_pruned_nonzero"] = local_shards(model)
    result["mp_verified"] = len(sparse24.verify(model).sparse_layers)
    return result


def options(**extra):
    settings = dict(loss_fn=loss_fn, epochs=EPOCHS, lr=LR, grad_clip=GRAD_CLIP, seed=SEED, progress=False, keep_checkpoints=None, alpha=0.5, eval_data=data()[:2])
    return {**settings, **extra}


def shard_like_finetune(model, **fully_shard_options) -> None:
    """What a user does: ``fully_shard`` each block, then the root (the default blocks of finetune)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import sparse24.dist

    mesh = init_device_mesh("cpu", (sparse24.dist.world_size(),))
    for name in sparse24.dist.default_blocks(model):
        fully_shard(model.get_submodule(name), mesh=mesh, **fully_shard_options)
    fully_shard(model, mesh=mesh, **fully_shard_options)


def gathered(model):
    """The full state dict (every DTensor gathered), on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def local_shards(model):
    """This rank's weight shards and their (packed) mask shards, and the pruned nonzeros found there."""
    import sparse24
    from sparse24.mask import expand_bits

    tensors, pruned_nonzero = {}, 0
    for weight in sparse24.gemm_weights(model):
        packed = weight.module._buffers.get(sparse24.enforce.mask_name(weight.param_name))
        if packed is None:
            continue
        local_w, local_m = weight.param.detach().to_local(), packed.to_local()
        tensors[weight.name] = local_w.contiguous().clone()
        tensors[weight.name + sparse24.MASK_SUFFIX] = local_m.contiguous().clone()
        keep = expand_bits(local_m, local_w.shape, local_w.dtype).bool()
        pruned_nonzero += int(local_w[~keep].ne(0).sum())
    return tensors, pruned_nonzero


def chunk_checks(model, full, rank: int, world: int) -> dict:
    """Each masked weight's and mask's local shard vs ``torch.chunk`` of the gathered tensor."""
    import torch

    import sparse24

    result = {}
    for weight in sparse24.gemm_weights(model):
        packed = weight.module._buffers.get(sparse24.enforce.mask_name(weight.param_name))
        if packed is None:
            continue
        local_w, local_m = weight.param.detach().to_local(), packed.to_local()
        full_w, full_m = full[weight.name], full[weight.name + sparse24.MASK_SUFFIX]
        result[weight.name] = {
            "rows": int(full_w.shape[0]),
            "local_rows": int(local_w.shape[0]),
            "weight_is_chunk": torch.equal(local_w, full_w.chunk(world)[rank]),
            "mask_is_chunk": torch.equal(local_m, full_m.chunk(world)[rank]),
            "mask_placements": [str(p) for p in packed.placements],
            "weight_placements": [str(p) for p in weight.param.placements],
            "same_mesh": packed.device_mesh == weight.param.device_mesh,
        }
    return result


def first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as tdist
    from safetensors.torch import save_file

    import sparse24

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    logging.basicConfig(level=logging.WARNING, format=f"[rank {rank}] %(name)s %(levelname)s: %(message)s")
    train = data()
    record: dict = {"rank": rank, "world_size": world, "sparse24_file": sparse24.__file__}

    # No process group yet.
    assert not tdist.is_initialized()
    model, dense = fresh()
    sparse24.save(model, args.out / f"sparsified_rank{rank}.safetensors")
    try:
        sparse24.finetune(model, train, strategy="fsdp", **options())
        record["no_group_error"] = None
    except sparse24.Sparse24Error as error:
        record["no_group_error"] = str(error)
    if rank == 0:  # the reference: one process, the same global batches (rank r takes r, r+2, ...)
        reference, teacher = fresh()
        history = sparse24.finetune(reference, train, teacher=teacher, grad_accum=world, **options())
        save_file(reference.state_dict(), str(args.out / "reference.safetensors"))
        record["reference_losses"] = [s["loss"] for s in history.steps]
        record["reference_tasks"] = [s["task"] for s in history.steps]
        record["reference_grad_norms"] = [s["grad_norm"] for s in history.steps]
        record["reference_eval"] = [history.initial["eval_loss"]] + [e["eval_loss"] for e in history.epochs]
        reference, teacher = fresh()  # gradient accumulation: 2 micro-batches per rank and step
        sparse24.finetune(reference, train, teacher=teacher, **options(grad_accum=2 * world))
        save_file(reference.state_dict(), str(args.out / "reference_accum.safetensors"))
    if rank == world - 1:  # in parallel with rank 0's references
        record["amp_reference"] = amp_references(args.out, world, train)

    tdist.init_process_group("gloo")
    try:
        # 3. finetune shards the model and the teacher.
        model, dense = fresh()
        history = sparse24.finetune(
            model, train, teacher=dense, strategy="fsdp", checkpoint_dir=str(args.out / "ckpt-main"), checkpoint_every=CHECKPOINT_EVERY, **options()
        )
        record["main_losses"] = [s["loss"] for s in history.steps]
        record["main_grad_norms"] = [s["grad_norm"] for s in history.steps]
        record["main_eval"] = [history.initial["eval_loss"]] + [e["eval_loss"] for e in history.epochs]
        record["teacher_sharded"] = sparse24.enforce.is_sharded(dense)
        full = gathered(model)
        save_file(full, str(args.out / f"main_rank{rank}.safetensors"))
        shards, record["pruned_nonzero"] = local_shards(model)
        save_file(shards, str(args.out / f"shards_rank{rank}.safetensors"))
        record["chunks"] = chunk_checks(model, full, rank, world)
        record["verified_layers"] = len(sparse24.verify(model).sparse_layers)

        # 4b. Gradient accumulation under FSDP (no reduce-scatter on the first micro-batch of a step).
        model, dense = fresh()
        history = sparse24.finetune(model, train, teacher=dense, strategy="fsdp", **options(grad_accum=2))
        record["accum_steps"] = [s["step"] for s in history.steps]
        save_file(gathered(model), str(args.out / f"accum_rank{rank}.safetensors"))

        # 4c. amp: bf16 and fp16 (inf on one rank's shard, stop and resume).
        record["amp"] = amp_cases(args.out, rank, world, train)

        # 5. A model and teacher the user sharded: interrupted, then resumed on fresh copies.
        calls = []

        def stopping_loss(module, batch):
            if not torch.is_grad_enabled():  # an eval batch
                return loss_fn(module, batch)
            calls.append(1)
            if len(calls) == STOP_AT_CALL:
                raise StopRun(f"stopped at loss_fn call {len(calls)}")
            return loss_fn(module, batch)

        ckpt = args.out / "ckpt-resume"
        model, dense = fresh()
        full_mask = sparse24.enforce.mask_of(model.odd, "weight")
        shard_like_finetune(model)
        shard_like_finetune(dense)
        # Sharded weight, mask not sharded yet (finetune shards it): the mask of this rank's rows.
        rows = sparse24.enforce._GradMask(model.odd, "weight").mask(torch.bool)
        record["unsharded_mask_rows"] = torch.equal(rows, full_mask.chunk(world)[rank])
        try:
            sparse24.finetune(model, train, teacher=dense, checkpoint_dir=str(ckpt), checkpoint_every=CHECKPOINT_EVERY, **{**options(), "loss_fn": stopping_loss})
            record["stopped"] = False
        except StopRun:
            record["stopped"] = True
        tdist.barrier()
        record["after_interrupt"] = sorted(p.name for p in ckpt.iterdir())
        model, dense = fresh()
        shard_like_finetune(model)
        shard_like_finetune(dense)
        history = sparse24.finetune(model, train, teacher=dense, checkpoint_dir=str(ckpt), checkpoint_every=CHECKPOINT_EVERY, resume=True, **options())
        record["resumed_from"] = history.resumed_from
        record["resumed_steps"] = [s["step"] for s in history.steps]
        save_file(gathered(model), str(args.out / f"resumed_rank{rank}.safetensors"))
        record["checkpoints"] = sorted(p.name for p in ckpt.iterdir())
        record["step_dir"] = sorted(str(p.relative_to(ckpt / "step-00000008")) for p in (ckpt / "step-00000008").rglob("*"))

        try:
            record["verify_clean"] = sum(layer.sparse for layer in sparse24.verify(model).layers)
        except Exception as error:  # noqa: BLE001 -- recorded for the test to show
            record["verify_clean"] = first_line(error)

        # 6. A violation on rank 1's shard only: every rank must fail.
        odd = model.odd
        with torch.no_grad():
            local = odd.weight.to_local()
            if rank == 1:
                keep = sparse24.enforce._GradMask(odd, "weight").mask(torch.bool)
                row, col = (~keep).nonzero()[0].tolist()
                local[row, col] = 1.0
        try:
            sparse24.verify(model)
            record["verify_error"] = None
        except Exception as error:  # noqa: BLE001 -- recorded for the test to show
            record["verify_error"] = first_line(error)

        # 7. A recipe with finetune: {strategy: fsdp}.
        from sparse24.recipe import read_recipe, run_recipe

        spec = Path(__file__).resolve()
        recipe_file = args.out / f"recipe_rank{rank}.yaml"  # JSON is YAML
        recipe_file.write_text(
            json.dumps(
                {
                    "model": f"{spec}:build",
                    "loss": f"{spec}:loss_fn",
                    "data": {"train": f"{spec}:data"},
                    "sparsify": {"method": "magnitude", "policy": "any"},
                    "finetune": {"strategy": "fsdp", "fsdp_blocks": ["block1", "block2"], "steps": 2, "lr": LR, "log_every": 1},
                    "seed": SEED,
                    "out": str(args.out / "recipe.safetensors"),
                }
            ),
            encoding="utf-8",
        )
        result = run_recipe(read_recipe(recipe_file))
        record["recipe_written"] = [str(p) for p in result.written]
        record["recipe_steps"] = [s["step"] for s in result.history.steps]

        # 8. sparsify on the sharded model.
        record["sparsify"] = sparsify_cases(args.out, rank, world, train)
        record["sparsify_failures"] = sparsify_failures(rank)
        (args.out / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
        tdist.barrier()

        # 9. Last: a failure inside a pass on rank 1 only aborts the process group.
        (args.out / f"abort_rank{rank}.json").write_text(json.dumps(abort_case(rank)), encoding="utf-8")
    finally:
        if tdist.is_initialized():
            try:
                tdist.destroy_process_group()
            except Exception:  # noqa: BLE001 -- an aborted group
                pass
    return 0


CAL_UNITS = ["embed", "blocks.0", "proj"]  # then the root, which holds blocks.1, side, conv, wide, mid and head


def sharded_calibration_model():
    """A fresh calibration model sharded over the ranks: ``blocks.1`` is no unit of its own (replayed with the root unsharded)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import sparse24.dist

    model = build_calibration()
    mesh = init_device_mesh("cpu", (sparse24.dist.world_size(),))
    for name in CAL_UNITS:
        fully_shard(model.get_submodule(name), mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def local_weights(model) -> dict:
    """This rank's shards of every parameter (copies)."""
    return {name: param.detach().to_local().clone() for name, param in model.named_parameters()}


def unchanged(model, before: dict) -> bool:
    after = local_weights(model)
    return list(after) == list(before) and all(torch_equal(after[k], before[k]) for k in before)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8))


def sparsify_cases(out: Path, rank: int, world: int, train: list) -> dict:
    """Every case of CASES on a freshly sharded calibration model; rank 0 writes the gathered result."""
    import time

    import torch
    from safetensors.torch import save_file

    import sparse24

    results = {}
    for name in CASES:
        method, options = case_options(name)
        model = sharded_calibration_model()
        start = time.perf_counter()
        report = sparse24.sparsify(model, method, data=share(rank), **options)
        result = {"seconds": round(time.perf_counter() - start, 2), "sparse": sorted(layer.name for layer in report.sparse_layers)}
        full = gathered(model)
        if rank == 0:
            save_file(full, str(out / f"sparsify_{name}.safetensors"))
        _, result["pruned_nonzero"] = local_shards(model)
        result["chunks"] = chunk_checks(model, full, rank, world)
        result["verified"] = len(sparse24.verify(model).sparse_layers)
        if name == "sparsegpt":  # the result trains as it is: masks kept, pruned weights stay zero
            masks = {k: v for k, v in full.items() if k.endswith(sparse24.MASK_SUFFIX)}
            history = sparse24.finetune(model, train, loss_fn=loss_fn, steps=2, lr=LR, seed=SEED, progress=False)
            after = gathered(model)
            result["finetune_steps"] = [s["step"] for s in history.steps]
            result["finetune_masks_kept"] = all(torch.equal(after[k], v) for k, v in masks.items())
            result["finetune_moved"] = not torch.equal(after["mid.weight"], full["mid.weight"])
            _, result["finetune_pruned_nonzero"] = local_shards(model)
            result["finetune_verified"] = len(sparse24.verify(model).sparse_layers)
        results[name] = result
    return results


class FlakyData:
    """Rank 1's data: fails on the second batch."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        yield self.batches[0]
        raise OSError("rank 1's data loader failed")


def sparsify_failures(rank: int) -> dict:
    """Failures found between passes: every rank raises, its shards unchanged, the group intact."""
    import torch

    import sparse24

    nan_share = share(rank)
    if rank == 1:
        nan_share[1] = (torch.full_like(nan_share[1][0], float("nan")), nan_share[1][1])
    cases = {
        "taylor_nan": ("taylor", {"data": nan_share, "loss_fn": loss_fn}),
        "wanda_nan": ("wanda", {"data": nan_share, "loss_fn": loss_fn}),
        "sparsegpt_sequential_nan": ("sparsegpt", {"data": nan_share, "loss_fn": loss_fn, "sequential": "blocks"}),
        "data_fails_on_rank_1": ("wanda", {"data": FlakyData(share(rank)) if rank == 1 else share(rank), "loss_fn": loss_fn}),
        "taylor_pairs_cut_groups": ("taylor", {"data": share(rank), "loss_fn": loss_fn, "squared": True, "pairs": True}),
    }
    results = {}
    for name, (method, options) in cases.items():
        model = sharded_calibration_model()
        before = local_weights(model)
        try:
            sparse24.sparsify(model, method, policy="any", progress=False, **options)
            error = None
        except Exception as caught:  # noqa: BLE001 -- recorded for the test to show
            error = first_line(caught)
        results[name] = {"error": error, "unchanged": unchanged(model, before), "masks": sparse24.enforce.has_masks(model)}
    model = sharded_calibration_model()
    try:
        sparse24.sparsify(model, "magnitude", permute=True, policy="any", progress=False)
        results["permute"] = None
    except Exception as caught:  # noqa: BLE001 -- recorded for the test to show
        results["permute"] = first_line(caught)
    import torch.distributed as tdist

    tdist.barrier()  # the process group still works
    results["group_intact"] = True
    return results


def abort_case(rank: int) -> dict:
    """Taylor whose loss_fn raises on rank 1 only, at its second call, before the forward."""
    import sparse24

    calls = []

    def failing_loss(model, batch):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            raise RuntimeError("loss_fn failed on rank 1")
        return loss_fn(model, batch)

    model = sharded_calibration_model()
    before = local_weights(model)
    try:
        sparse24.sparsify(model, "taylor", data=share(rank), loss_fn=failing_loss, policy="any", progress=False)
        error = None
    except Exception as caught:  # noqa: BLE001 -- recorded for the test to show
        error = first_line(caught)
    return {"error": error, "unchanged": unchanged(model, before), "masks": sparse24.enforce.has_masks(model)}


if __name__ == "__main__":
    run_worker(main)
