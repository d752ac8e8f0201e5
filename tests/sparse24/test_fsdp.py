"""finetune with FSDP2 (``torch.distributed.fsdp.fully_shard``) under a real ``torchrun``: 2 CPU ranks, gloo.

One ``python -m torch.distributed.run --standalone --nproc_per_node=2 fsdp_worker.py`` (about
20 s here; see that script for every step) runs: the unsharded references in one process (rank 0,
before the group exists), ``finetune(strategy="fsdp")`` with and without gradient accumulation,
a run on a model the worker sharded
itself that stops at step 7 and resumes from its step-6 checkpoint, checks on sharded
verification, a recipe with ``finetune: {strategy: fsdp}``, and ``sparsify`` on a sharded model
(every method, all at once and sequential; failures on one rank). The tests here compare the
dumps.

``sparsify`` on the sharded model against one process on both ranks' batches (rank 0's first):
masks bit for bit in every case; weights bit for bit for magnitude, Taylor (every rank runs
every batch in that order, the owner's gradient reduced with zeros, halved and doubled: exact)
and Wanda; SparseGPT's solved weights differ because its Hessians are summed per rank, then
all-reduced (another order): at most about 5e-6 observed, ``atol=5e-5, rtol=1e-4`` allowed,
while the solve moves kept weights by far more than that.

Tolerance against the reference: the gradients agree bit for bit (each rank's mean-loss
gradient, averaged over 2 ranks, equals one process accumulating ``loss / 2`` of the same two
batches: halving is exact in binary floating point), but the clipping norm is a sum of squares
over each rank's shard, all-reduced, whose rounding differs from one process's sum (the worker
clips at 0.25, below most steps' norm, so it matters): the norms differ by about 1 ulp and the
weights after 8 AdamW steps by at most about 1.2e-7 (observed). The tests allow ``atol=1e-6,
rtol=1e-5``, while training moves the weights by about 1e-2. With ``grad_accum=2`` the four
micro-batch gradients of a step are also summed in another order ((g0 + g2) + (g1 + g3) against
one process's ((g0 + g1) + g2) + g3), and Adam's g / sqrt(v) magnifies that rounding where a
gradient is near zero: at most about 1.7e-6 observed, ``atol=1e-5, rtol=1e-4`` allowed (a lost
micro-batch would move weights by about 1e-3). Masks, the across-rank comparison and the resumed
run are compared bit for bit.

amp under FSDP (4 steps each, autocast on CPU, against the same amp in one process): the forward
and backward of each batch are the same ops on the same values on either side, so the only
difference is again the clipping norm's rounding (its norms differ by about 1 ulp): weights within
1.5e-8 for bf16 (distilled) and fp16 (observed), the fp32 tolerances ``atol=1e-6, rtol=1e-5``
allowed. fp16 puts an inf into rank 1's reduced gradient shard only: rank 0 must skip that step too
(GradScaler's found_inf is all-reduced by DTensor), its loss scale halves on both ranks as in one
process. The fp16 resume (from a checkpoint written after the skipped step) is bitwise.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import fsdp_worker
from sparse24_testing import torchrun
import torch
from safetensors.torch import load_file

import sparse24
from sparse24.enforce import stored_mask
from sparse24.errors import Sparse24Error
from sparse24.mask import prune_

WORKER = Path(__file__).with_name("fsdp_worker.py")
WORLD = 2
TIMEOUT_S = 240  # one torchrun; a hung collective ends here instead of hanging the suite
MASKED = ["embed.weight", "block1.up.weight", "block1.down.weight", "block2.up.weight", "block2.down.weight", "odd.weight"]
TOTAL_STEPS = 8
ATOL, RTOL = 1e-6, 1e-5
ACCUM_ATOL, ACCUM_RTOL = 1e-5, 1e-4
SPARSEGPT_ATOL, SPARSEGPT_RTOL = 5e-5, 1e-4
AMP_ATOL, AMP_RTOL = 1e-6, 1e-5  # 1.5e-8 observed (bf16 and fp16)
AMP_STEPS = 4
INIT_SCALE = 2.0**16  # GradScaler's default


def _require_distributed() -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    if not torch.distributed.is_gloo_available():
        pytest.skip("the gloo backend of torch.distributed is not available")


@dataclass
class Run:
    out: Path
    log: str

    def record(self, rank: int) -> dict:
        return json.loads((self.out / f"rank{rank}.json").read_text(encoding="utf-8"))

    def state(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.out / f"{name}.safetensors"))

    def tail(self) -> str:
        return "\n--- torchrun output (tail) ---\n" + self.log[-4000:]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    _require_distributed()
    root = tmp_path_factory.mktemp("fsdp")
    out, cwd = root / "out", root / "cwd"
    out.mkdir()
    cwd.mkdir()
    log = torchrun(WORKER, ["--out", str(out)], cwd, "fsdp", WORLD, TIMEOUT_S)
    assert list(cwd.iterdir()) == []
    return Run(out, log)


def bitwise_differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> list[str]:
    return [k for k in keys if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8))]


def masks(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if k.endswith(sparse24.MASK_SUFFIX)]


def test_worker_is_a_plain_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("sparse24_fsdp_worker_probe", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__test__ is False and callable(module.main)
    assert not [name for name in vars(module) if name.startswith("test")]
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    assert list(tmp_path.iterdir()) == []


def test_the_ranks_import_this_checkout(run):
    for rank in range(WORLD):
        assert Path(run.record(rank)["sparse24_file"]).resolve() == Path(sparse24.__file__).resolve()


def test_fsdp_without_a_process_group_is_one_clear_error(run):
    for rank in range(WORLD):
        message = run.record(rank)["no_group_error"]
        assert message == "strategy='fsdp' needs torch.distributed: launch with torchrun (no process group is initialised)"


def test_masks_and_weights_match_the_unsharded_reference(run):
    reference, sparsified = run.state("reference"), run.state("sparsified_rank0")
    finals = [run.state(f"main_rank{rank}") for rank in range(WORLD)]
    assert sorted(masks(reference)) == sorted(k + sparse24.MASK_SUFFIX for k in MASKED)
    for final in finals:
        assert list(final) == list(reference)
        assert bitwise_differing(final, reference, masks(reference)) == []
        assert bitwise_differing(final, sparsified, masks(reference)) == []  # finetune kept the masks
    assert bitwise_differing(finals[0], finals[1], finals[0]) == [], run.tail()  # every rank gathers the same model
    weights = [k for k in reference if not k.endswith(sparse24.MASK_SUFFIX)]
    worst = 0.0
    for key in weights:
        torch.testing.assert_close(finals[0][key], reference[key], atol=ATOL, rtol=RTOL, msg=lambda m, key=key: f"{key}: {m}")
        worst = max(worst, float((finals[0][key] - reference[key]).abs().max()))
        assert float((reference[key] - sparsified[key]).abs().max()) > 100 * ATOL, f"{key}: training did not move it"
    assert worst < ATOL
    records = [run.record(rank) for rank in range(WORLD)]
    main = [(a + b) / 2 for a, b in zip(records[0]["main_losses"], records[1]["main_losses"])]
    torch.testing.assert_close(torch.tensor(main), torch.tensor(records[0]["reference_losses"]), atol=1e-6, rtol=1e-6)
    assert records[0]["main_grad_norms"] == records[1]["main_grad_norms"]
    torch.testing.assert_close(torch.tensor(records[0]["main_grad_norms"]), torch.tensor(records[0]["reference_grad_norms"]), atol=0, rtol=1e-6)
    assert max(records[0]["reference_grad_norms"]) > 0.25  # the worker's grad_clip: clipping was active


def test_eval_runs_on_every_rank_and_matches_the_reference(run):
    records = [run.record(rank) for rank in range(WORLD)]
    assert records[0]["main_eval"] == records[1]["main_eval"]  # rank 0's metrics, broadcast
    assert len(records[0]["main_eval"]) == 1 + 2  # before training and after each of the 2 epochs
    torch.testing.assert_close(torch.tensor(records[0]["main_eval"]), torch.tensor(records[0]["reference_eval"]), atol=0, rtol=1e-6)


def test_gradient_accumulation_matches_the_reference(run):
    reference, sparsified = run.state("reference_accum"), run.state("sparsified_rank0")
    finals = [run.state(f"accum_rank{rank}") for rank in range(WORLD)]
    assert run.record(0)["accum_steps"] == [1, 2, 3, 4]  # 8 batches / (2 ranks x 2 micro-batches) x 2 epochs
    assert bitwise_differing(finals[0], finals[1], finals[0]) == []
    assert bitwise_differing(finals[0], reference, masks(reference)) == []
    for key in (k for k in reference if not k.endswith(sparse24.MASK_SUFFIX)):
        torch.testing.assert_close(finals[0][key], reference[key], atol=ACCUM_ATOL, rtol=ACCUM_RTOL, msg=lambda m, key=key: f"{key}: {m}")
        assert float((reference[key] - sparsified[key]).abs().max()) > 100 * ACCUM_ATOL, f"{key}: training did not move it"


def test_pruned_weights_are_exactly_zero_on_every_rank(run):
    for rank in range(WORLD):
        assert run.record(rank)["pruned_nonzero"] == 0
        shards = run.state(f"shards_rank{rank}")
        for name in MASKED:
            keep = sparse24.mask.unpack_bits(shards[name + sparse24.MASK_SUFFIX], shards[name].shape)
            assert shards[name].shape[0] > 0
            assert torch.equal(shards[name][~keep], torch.zeros(int((~keep).sum())))
        final = run.state(f"main_rank{rank}")
        for name in MASKED:
            keep = stored_mask(final[name + sparse24.MASK_SUFFIX], final[name].shape, name)
            assert int(final[name][~keep].ne(0).sum()) == 0
            assert int(keep.sum()) * 2 == keep.numel()


def test_masks_are_sharded_by_rows_with_their_weights(run):
    """The packed mask keeps the weight's rows: torch.chunk of both along dim 0 agree, also for 27 rows."""
    full = run.state("main_rank0")
    for rank in range(WORLD):
        chunks = run.record(rank)["chunks"]
        assert sorted(chunks) == sorted(MASKED)
        shards = run.state(f"shards_rank{rank}")
        for name, check in chunks.items():
            assert check["weight_is_chunk"] and check["mask_is_chunk"] and check["same_mesh"], (rank, name, check)
            assert check["mask_placements"] == check["weight_placements"] == ["S(0)"]
            assert torch.equal(shards[name + sparse24.MASK_SUFFIX], full[name + sparse24.MASK_SUFFIX].chunk(WORLD)[rank])
            assert torch.equal(shards[name], full[name].chunk(WORLD)[rank])
    assert [run.record(rank)["chunks"]["odd.weight"]["local_rows"] for rank in range(WORLD)] == [14, 13]
    assert [run.record(rank)["unsharded_mask_rows"] for rank in range(WORLD)] == [True, True]  # before shard_masks


def test_the_teacher_is_sharded_and_distillation_runs(run):
    for rank in range(WORLD):
        record = run.record(rank)
        assert record["teacher_sharded"] is True
        assert record["verified_layers"] == len(MASKED)


def test_resume_matches_the_uninterrupted_fsdp_run_bitwise(run):
    """A model sharded by the caller, stopped at step 7, resumed from step 6 on fresh sharded copies."""
    expected = run.state("main_rank0")
    for rank in range(WORLD):
        record = run.record(rank)
        assert record["stopped"] is True
        assert record["after_interrupt"] == ["latest", "step-00000003", "step-00000004", "step-00000006"]
        assert record["resumed_from"] == 6
        assert record["resumed_steps"] == list(range(1, TOTAL_STEPS + 1))
        assert record["checkpoints"] == ["latest", "step-00000003", "step-00000004", "step-00000006", "step-00000008"]
        assert record["step_dir"] == ["sharded", "sharded/.metadata", "sharded/__0_0.distcp", "sharded/__1_0.distcp", "trainer.pt"]
        resumed = run.state(f"resumed_rank{rank}")
        assert list(resumed) == list(expected)
        assert bitwise_differing(resumed, expected, expected) == [], f"rank {rank}" + run.tail()
    ckpt = run.out / "ckpt-main"
    assert (ckpt / "latest").read_text(encoding="utf-8").strip() == "step-00000008"
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_sparse24_verify_on_a_sharded_model(run):
    """sparse24.verify gathers one layer at a time (enforce.full_weight_and_mask) and checks it on every rank:
    a violation in rank 1's rows only fails on both ranks."""
    clean = [run.record(rank)["verify_clean"] for rank in range(WORLD)]
    assert clean == [len(MASKED)] * WORLD
    for rank in range(WORLD):
        assert run.record(rank)["verify_error"] == "SparsityError: odd.weight: weight is not 2:4 along dim 1; group [14, 0:4] has 3 nonzeros"


@pytest.fixture(scope="module")
def one_process() -> dict[str, dict[str, torch.Tensor]]:
    """Each sparsify case on the unsharded calibration model, in this process, on the union of the ranks' batches."""
    references = {}
    for name in fsdp_worker.CASES:
        method, options = fsdp_worker.case_options(name)
        model = fsdp_worker.build_calibration()
        sparse24.sparsify(model, method, data=fsdp_worker.calibration_data(), **options)
        references[name] = {k: v.contiguous() for k, v in model.state_dict().items()}
    return references


@pytest.mark.parametrize("case", list(fsdp_worker.CASES))
def test_sparsify_on_a_sharded_model_matches_one_process(run, one_process, case):
    """Masks bitwise equal to one process's on the same batches; weights too, except SparseGPT's (see SPARSEGPT_ATOL)."""
    reference, result = one_process[case], run.state(f"sparsify_{case}")
    assert sorted(result) == sorted(reference)
    masked = fsdp_worker.masked_in(case)
    assert sorted(masks(reference)) == sorted(k + sparse24.MASK_SUFFIX for k in masked)
    assert bitwise_differing(result, reference, masks(reference)) == [], run.tail()
    weights = [k for k in reference if not k.endswith(sparse24.MASK_SUFFIX)]
    if fsdp_worker.CASES[case][0] == "sparsegpt":
        for key in weights:
            torch.testing.assert_close(result[key], reference[key], atol=SPARSEGPT_ATOL, rtol=SPARSEGPT_RTOL, msg=lambda m, key=key: f"{key}: {m}")
        dense = fsdp_worker.build_calibration().state_dict()
        assert float((result["mid.weight"] - dense["mid.weight"]).abs().max()) > 100 * SPARSEGPT_ATOL  # the solve moved the kept weights
    else:
        assert bitwise_differing(result, reference, weights) == [], run.tail()
    if fsdp_worker.CASES[case][0] == "taylor":  # no gradient reaches the side branch: magnitude's mask, sharded too
        side = fsdp_worker.build_calibration().side[0].weight.detach()
        expected = torch.empty(side.shape, dtype=torch.bool)
        prune_(side.clone(), 1, None, out=expected)
        assert torch.equal(result["side.0.weight"] != 0, expected)
    for rank in range(WORLD):
        record = run.record(rank)["sparsify"][case]
        assert record["sparse"] == sorted(masked)
        assert record["verified"] == len(masked)  # sparse24.verify on the sharded result
        assert record["pruned_nonzero"] == 0
        for name, check in record["chunks"].items():  # masks sharded by rows with their weights, as finetune's shard_masks
            assert check["weight_is_chunk"] and check["mask_is_chunk"] and check["same_mesh"], (rank, name, check)
            assert check["mask_placements"] == check["weight_placements"] == ["S(0)"]
    chunks = [run.record(rank)["sparsify"][case]["chunks"] for rank in range(WORLD)]
    assert [c["conv.weight"]["local_rows"] for c in chunks] == [5, 4]  # uneven shards
    assert [c["wide.weight"]["local_rows"] for c in chunks] == [36, 36]  # Conv1D [72, 72]: whole groups of 4 per shard
    if "proj.weight" in masked:
        assert [c["proj.weight"]["local_rows"] for c in chunks] == [38, 38]  # Conv1D [76, 27]: rows 36-39, one group of 4, split


def test_a_sharded_sparsify_result_finetunes(run):
    for rank in range(WORLD):
        record = run.record(rank)["sparsify"]["sparsegpt"]
        assert record["finetune_steps"] == [1, 2]
        assert record["finetune_masks_kept"] and record["finetune_moved"]
        assert record["finetune_pruned_nonzero"] == 0
        assert record["finetune_verified"] == len(fsdp_worker.CAL_MASKED)


def test_sparsify_failures_between_passes_raise_on_every_rank(run):
    """A NaN batch or failing data on rank 1 only: every rank raises, its shards unchanged, no masks, the group usable."""
    expected = {
        "taylor_nan": ["Sparse24Error: calibration batch 4: the loss is nan"] * WORLD,  # rank 1's batch runs on every rank
        "wanda_nan": [
            "Sparse24Error: norms calibration: embed.weight: the layer's inputs hold NaN or Inf; check the calibration data "
            "and the model's outputs before this layer; nothing was changed"
        ] * WORLD,
        "sparsegpt_sequential_nan": [
            "Sparse24Error: hessian calibration: blocks.0.up.weight: the layer's inputs hold NaN or Inf; check the calibration "
            "data and the model's outputs before this layer; nothing was changed"
        ] * WORLD,
        "data_fails_on_rank_1": [
            "Sparse24Error: norms calibration: rank 1 failed (rank 1's data loader failed); every rank stopped, nothing was changed",
            "OSError: rank 1's data loader failed",
        ],
        "taylor_pairs_cut_groups": [
            "Sparse24Error: taylor pairs=True: proj.weight is reduced along dim 0, which FSDP2 shards, and its shards of 38 input features "
            "cut groups of 4; shard it over a number of ranks that gives shards of a multiple of 4, or drop pairs"
        ] * WORLD,
    }
    for name, errors in expected.items():
        for rank in range(WORLD):
            failure = run.record(rank)["sparsify_failures"][name]
            assert failure == {"error": errors[rank], "unchanged": True, "masks": False}, (name, rank)
    assert all(run.record(rank)["sparsify_failures"]["group_intact"] for rank in range(WORLD))
    for rank in range(WORLD):
        assert run.record(rank)["sparsify_failures"]["permute"] == "Sparse24Error: permute=True needs the unsharded model: permute (sparse24.permute) before sharding it with fully_shard"


def test_sparsify_failure_inside_a_pass_on_one_rank_aborts_instead_of_hanging(run):
    """loss_fn raising on rank 1 only, while rank 0 waits in FSDP's all-gather: rank 1 aborts the group, both raise."""
    results = [json.loads((run.out / f"abort_rank{rank}.json").read_text(encoding="utf-8")) for rank in range(WORLD)]
    assert results[1] == {"error": "RuntimeError: loss_fn failed on rank 1", "unchanged": True, "masks": False}
    assert results[0] == {
        "error": "Sparse24Error: taylor calibration: a collective failed, most likely because another rank failed (its log names the error); the process group is aborted",
        "unchanged": True,
        "masks": False,
    }
    assert "aborting the process group so that no rank waits forever" in run.log


def test_recipe_with_strategy_fsdp_writes_the_gathered_model(run):
    written = run.out / "recipe.safetensors"
    assert run.record(0)["recipe_written"] == [str(written)]
    assert run.record(1)["recipe_written"] == []
    assert [run.record(rank)["recipe_steps"] for rank in range(WORLD)] == [[1, 2], [1, 2]]
    report = sparse24.verify_file(written)
    assert sorted(layer.name for layer in report.layers if layer.sparse) == sorted(MASKED)
    state = load_file(str(written))
    assert not [k for k, v in state.items() if hasattr(v, "device_mesh")]
    assert state["odd.weight"].shape == (27, 64)


def assert_weights_close(final: dict, reference: dict, sparsified: dict, atol: float, rtol: float) -> float:
    """Masks bitwise equal (and finetune kept them), weights within the tolerance and moved by training; the worst difference."""
    assert list(final) == list(reference)
    assert bitwise_differing(final, reference, masks(reference)) == []
    assert bitwise_differing(final, sparsified, masks(reference)) == []
    worst = 0.0
    for key in (k for k in reference if not k.endswith(sparse24.MASK_SUFFIX)):
        torch.testing.assert_close(final[key], reference[key], atol=atol, rtol=rtol, msg=lambda m, key=key: f"{key}: {m}")
        worst = max(worst, float((final[key] - reference[key]).abs().max()))
        assert float((final[key] - sparsified[key]).abs().max()) > 100 * atol, f"{key}: training did not move it"
    return worst


def assert_pruned_zero(state: dict) -> None:
    for name in MASKED:
        keep = stored_mask(state[name + sparse24.MASK_SUFFIX], state[name].shape, name)
        assert int(state[name][~keep].ne(0).sum()) == 0
        assert int(keep.sum()) * 2 == keep.numel()


def rank_mean(records: list[dict], amp: str, key: str) -> torch.Tensor:
    """A per-rank quantity (each rank's mean over its batch) averaged over the ranks: one process's value."""
    return torch.tensor([record["amp"][amp][key] for record in records]).mean(0)


def test_amp_bf16_with_a_sharded_teacher_matches_one_process(run):
    reference, sparsified = run.state("reference_bf16"), run.state("sparsified_rank0")
    records = [run.record(rank) for rank in range(WORLD)]
    expected = records[WORLD - 1]["amp_reference"]["bf16"]
    for rank in range(WORLD):
        final = run.state(f"bf16_rank{rank}")
        assert assert_weights_close(final, reference, sparsified, AMP_ATOL, AMP_RTOL) < AMP_ATOL
        assert_pruned_zero(final)
        amp = records[rank]["amp"]
        assert amp["bf16_pruned_nonzero"] == 0  # this rank's shards
        assert amp["bf16_verified"] == len(MASKED)  # sparse24.verify on the sharded result
        assert amp["bf16_teacher_sharded"] is True
        assert amp["bf16"]["lr"] == expected["lr"]
        torch.testing.assert_close(torch.tensor(amp["bf16"]["grad_norm"]), torch.tensor(expected["grad_norm"]), atol=0, rtol=1e-6)
    assert len(expected["loss"]) == AMP_STEPS
    torch.testing.assert_close(rank_mean(records, "bf16", "loss"), torch.tensor(expected["loss"]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rank_mean(records, "bf16", "task"), torch.tensor(expected["task"]), atol=1e-6, rtol=1e-6)
    # autocast ran: step 1 (same weights, same batches) differs from the fp32 reference by bf16 rounding
    fp32_task = records[0]["reference_tasks"][0]
    assert 1e-5 < abs(expected["task"][0] - fp32_task) < 5e-2


def test_amp_fp16_scales_and_skips_a_step_with_inf_in_one_rank_shard_like_one_process(run):
    """The inf is in rank 1's reduced gradient only: rank 0's shard is finite, yet it skips the step and halves its scale."""
    reference, sparsified = run.state("reference_fp16"), run.state("sparsified_rank0")
    records = [run.record(rank) for rank in range(WORLD)]
    expected = records[WORLD - 1]["amp_reference"]
    scales = [INIT_SCALE] * fsdp_worker.AMP_INF_STEP + [INIT_SCALE / 2] * (AMP_STEPS - fsdp_worker.AMP_INF_STEP)
    assert expected["fp16"]["loss_scale"] == scales  # one process: the GradScaler scales, skips the inf step, backs off
    skipped = fsdp_worker.AMP_INF_STEP - 1
    assert not torch.isfinite(torch.tensor(expected["fp16"]["grad_norm"][skipped]))
    for rank in range(WORLD):
        final = run.state(f"fp16_rank{rank}")
        assert assert_weights_close(final, reference, sparsified, AMP_ATOL, AMP_RTOL) < AMP_ATOL, f"rank {rank}"
        assert_pruned_zero(final)
        amp = records[rank]["amp"]
        assert amp["fp16"]["loss_scale"] == scales, f"rank {rank}"
        assert amp["fp16_scaler"] == expected["fp16_scaler"]  # the state checkpoints hold
        assert not torch.isfinite(torch.tensor(amp["fp16"]["grad_norm"][skipped]))
        finite = [n for i, n in enumerate(amp["fp16"]["grad_norm"]) if i != skipped]
        torch.testing.assert_close(torch.tensor(finite), torch.tensor([n for i, n in enumerate(expected["fp16"]["grad_norm"]) if i != skipped]), atol=0, rtol=1e-6)
        assert amp["fp16_pruned_nonzero"] == 0
        assert amp["fp16_verified"] == len(MASKED)
    torch.testing.assert_close(rank_mean(records, "fp16", "loss"), torch.tensor(expected["fp16"]["loss"]), atol=1e-6, rtol=1e-6)
    assert 1e-5 < abs(expected["fp16"]["loss"][0] - records[0]["reference_tasks"][0]) < 5e-2  # fp16 autocast ran


def test_amp_fp16_resume_restores_the_scaler_and_is_bitwise(run):
    """Stopped at step 4, resumed from the step-2 checkpoint (written after the skipped step, scale halved)."""
    for rank in range(WORLD):
        amp = run.record(rank)["amp"]
        assert amp["fp16_stopped"] is True
        assert amp["fp16_after_interrupt"] == ["latest", "step-00000002"]
        assert amp["fp16_resumed_from"] == 2
        assert amp["fp16_resumed"]["loss_scale"] == amp["fp16"]["loss_scale"]  # steps 3-4 ran at the restored scale
        assert amp["fp16_resumed_scaler"] == amp["fp16_scaler"]
        expected, resumed = run.state(f"fp16_rank{rank}"), run.state(f"fp16_resumed_rank{rank}")
        assert list(resumed) == list(expected)
        assert bitwise_differing(resumed, expected, expected) == [], f"rank {rank}" + run.tail()


def test_fsdp_mixed_precision_policy_keeps_the_masks(run):
    """A model sharded with FSDP2's MixedPrecisionPolicy (bf16 params and all-gathers, fp32 reduce) trains with amp=None:
    fp32 shards, masks kept, pruned weights zero. No one-process reference computes the same (it would need bf16 weights)."""
    sparsified = run.state("sparsified_rank0")
    records = [run.record(rank) for rank in range(WORLD)]
    for rank in range(WORLD):
        final, amp = run.state(f"mp_rank{rank}"), records[rank]["amp"]
        assert amp["mp_param_dtypes"] == ["torch.float32"]
        assert bitwise_differing(final, sparsified, masks(sparsified)) == []
        assert_pruned_zero(final)
        assert amp["mp_pruned_nonzero"] == 0
        assert amp["mp_verified"] == len(MASKED)
        assert all(float((final[k] - sparsified[k]).abs().max()) > 1e-4 for k in MASKED)
        assert len(amp["mp"]["loss"]) == AMP_STEPS and "loss_scale" not in amp["mp"]
    first = float(rank_mean(records, "mp", "loss")[0])
    assert 1e-5 < abs(first - records[0]["reference_tasks"][0]) < 5e-2  # step 1 in bf16


# -- without torchrun --------------------------------------------------------------------


def _toy() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    sparse24.sparsify(model, "magnitude", progress=False)
    return model


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(4, 16), torch.randint(0, 8, (4,))) for _ in range(2)]


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def test_strategy_fsdp_without_a_process_group_raises_before_training():
    model = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(Sparse24Error, match=r"^strategy='fsdp' needs torch.distributed: launch with torchrun") as info:
        sparse24.finetune(model, _batches(), loss_fn=_loss, strategy="fsdp", progress=False)
    assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "zero3"}, "strategy must be one of"),
        ({"fsdp_blocks": ["0"]}, "fsdp_blocks is for strategy='fsdp'"),
        ({"strategy": "fsdp", "fsdp_blocks": "0"}, "fsdp_blocks must be a list of module names"),
    ],
)
def test_bad_strategy_options_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sparse24.finetune(_toy(), _batches(), loss_fn=_loss, progress=False, **kwargs)


def test_cli_recipe_with_strategy_fsdp_outside_torchrun_is_one_error_line(tmp_path, monkeypatch, capsys):
    from sparse24.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "toy.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                torch.manual_seed(0)
                return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))

            def data():
                return [(torch.randn(4, 16), torch.randint(0, 8, (4,))) for _ in range(2)]

            def loss(model, batch):
                return nn.functional.cross_entropy(model(batch[0]), batch[1])
            """
        )
    )
    (tmp_path / "recipe.yaml").write_text(
        "model: toy.py:build\nloss: toy.py:loss\ndata: {train: toy.py:data}\nsparsify: {method: magnitude}\n"
        "finetune: {strategy: fsdp, steps: 1}\nout: tuned.safetensors\n"
    )
    assert main(["finetune", "--config", "recipe.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == "sparse24: error: strategy='fsdp' needs torch.distributed: launch with torchrun (no process group is initialised)\n"
    assert not (tmp_path / "tuned.safetensors").exists()


# ---- FSDP units: the transformer layers by default, tied parameters in one unit -----------------


def test_default_units_are_the_outermost_repeated_layers():
    import transformers
    from torch import nn

    from sparse24.dist import default_blocks

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32))
    assert default_blocks(gpt2) == ["transformer.h.0", "transformer.h.1"]  # was ["transformer", "lm_head"]: one unit for the whole body
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(vocab_size=96, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4))
    assert default_blocks(t5) == ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"]
    swin = transformers.SwinModel(transformers.SwinConfig(image_size=16, patch_size=2, embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4))
    assert default_blocks(swin) == ["encoder.layers.0", "encoder.layers.1"]  # the stages, not their blocks inside
    assert default_blocks(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))) == ["0", "2"]  # no repeated layers: the children
    mgp_str = transformers.MgpstrForSceneTextRecognition(transformers.MgpstrConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2.0))
    assert default_blocks(mgp_str) == ["mgp_str.encoder.blocks.0", "mgp_str.encoder.blocks.1"]  # its layers in an nn.Sequential (timm's layout)
    assert default_blocks(nn.Sequential(mgp_str.mgp_str.encoder.blocks[0], mgp_str.mgp_str.encoder.blocks[1])) == ["0", "1"]  # the model is the list


@pytest.mark.parametrize(
    ("names", "units"),
    [
        (["transformer.h.0", "transformer.h.1"], [[0], [1]]),
        (["transformer", "lm_head"], [[0, 1]]),  # lm_head.weight is transformer.wte.weight
        (["lm_head"], []),  # tied to wte, which stays in the root: so does lm_head
        (["transformer.h", "transformer.h.0"], [[1], [0]]),  # nested, not tied (once merged into one unit); the inner one first
        (["transformer", "transformer.h.0", "lm_head"], [[1], [0, 2]]),
    ],
)
def test_units_of_blocks(names, units):
    import transformers

    from sparse24.dist import _tied_units

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32))
    assert _tied_units(gpt2, names, [gpt2.get_submodule(name) for name in names]) == units


def test_tied_parameters_share_an_fsdp_unit(tmp_path):
    _require_distributed()
    pytest.importorskip("transformers")
    worker = Path(__file__).with_name("fsdp_units_worker.py")
    torchrun(worker, ["--out", str(tmp_path)], Path(__file__).parent, "fsdp units", WORLD, TIMEOUT_S)
    for rank in range(WORLD):
        record = json.loads((tmp_path / f"units_rank{rank}.json").read_text())
        assert record["gpt2_units"] == ["transformer.h.0", "transformer.h.1"] and record["gpt2_tied"]
        assert record["pair_units"] == ["0", "1", "2"] and record["pair_one_state"]  # 0 and 1 share a Linear: one unit
        assert record["head_units"] == [] and record["head_tied"]  # lm_head shares wte's weight, in the root: left there
        assert record["finetune_steps"] == [1, 2] and record["finetune_tied"]  # raised FSDP's "shared with a parameter already managed" before
