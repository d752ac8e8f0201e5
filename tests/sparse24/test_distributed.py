"""sparsify and finetune under a real ``torchrun`` with 2 CPU processes (gloo).

Each scenario is one ``python -m torch.distributed.run --standalone --nproc_per_node=2
ddp_worker.py ...`` (see that script for what every rank does); the ranks dump their models
with ``sparse24.save`` and a JSON record, and the tests here compare the dumps bitwise.
Three torchrun runs in all (about 10 s each): the main run (sparsify + 2 epochs of
finetune), a run interrupted at the same step on every rank, and its resumption.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sparse24_testing import torchrun as launch_torchrun
import torch
from safetensors.torch import load_file

import sparse24
from sparse24.demo import DigitsResNet
from sparse24.io import file_axes

WORKER = Path(__file__).with_name("ddp_worker.py")
WORLD = 2
MASKED_LAYERS = 5  # DigitsResNet(width=16) under the TensorRT policy: block1 x2, down, block2 x2
TRAIN_BATCHES, EPOCHS, CHECKPOINT_EVERY = 8, 2, 3  # as in ddp_worker.py
STEPS_PER_EPOCH = TRAIN_BATCHES // WORLD
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
STOP_AT_CALL = 8  # loss_fn call 8 = step 8: steps 1-7 done, newest checkpoint is step 6 (mid-epoch 2)


def _require_distributed() -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    if not torch.distributed.is_gloo_available():
        pytest.skip("the gloo backend of torch.distributed is not available")
    pytest.importorskip("sklearn", reason="the digits data of sparse24.demo needs scikit-learn")


@dataclass
class Run:
    """The dumps of one torchrun invocation."""

    out: Path
    cwd: Path
    log: str

    def record(self, rank: int) -> dict:
        return json.loads((self.out / f"rank{rank}.json").read_text(encoding="utf-8"))

    def state(self, kind: str, rank: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.out / f"{kind}_rank{rank}.safetensors"))

    def tail(self) -> str:
        return "\n--- torchrun output (tail) ---\n" + self.log[-4000:]


def torchrun(root: Path, name: str, checkpoint_dir: str, *extra: str) -> Run:
    """Run the worker on 2 ranks from an empty working directory; fail with its output if it fails."""
    out, cwd = root / f"{name}-out", root / f"{name}-cwd"
    out.mkdir()
    cwd.mkdir()
    log = launch_torchrun(WORKER, ["--out", str(out), "--checkpoint-dir", checkpoint_dir, *extra], cwd, name, WORLD)
    return Run(out, cwd, log)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """sparsify (Taylor, per-rank calibration data) + finetune; checkpoint_dir differs per rank."""
    _require_distributed()
    root = tmp_path_factory.mktemp("ddp")
    return torchrun(root, "main", str(root / "ckpt-rank{rank}"))


@dataclass
class Resumed:
    interrupted: Run
    resumed: Run
    after_interrupt: list[str]  # the shared checkpoint folder when the interrupted run ended


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    """The main run's settings, stopped on every rank at loss_fn call 8, then resume=True."""
    _require_distributed()
    root = tmp_path_factory.mktemp("ddp-resume")
    shared = root / "ckpt"
    interrupted = torchrun(root, "interrupted", str(shared), "--stop-at-call", str(STOP_AT_CALL))
    after = sorted(p.name for p in shared.iterdir())
    resumed = torchrun(root, "resumed", str(shared), "--resume")
    return Resumed(interrupted, resumed, after)


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys) -> list[str]:
    """Keys whose tensors differ in dtype, shape or any bit."""
    return [k for k in keys if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8))]


def masks(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if k.endswith(sparse24.MASK_SUFFIX)]


def bn_buffers(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


def test_worker_is_a_plain_script(tmp_path, monkeypatch):
    """Importing ddp_worker only defines things: no process group, no files, not a test module."""
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("sparse24_ddp_worker_probe", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__test__ is False
    assert callable(module.main)
    assert not [name for name in vars(module) if name.startswith("test")]
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    assert list(tmp_path.iterdir()) == []


def test_workers_use_the_installed_package(main_run):
    for rank in range(WORLD):
        record = main_run.record(rank)
        assert (record["rank"], record["world_size"]) == (rank, WORLD)
        assert Path(record["sparse24_file"]).resolve() == Path(sparse24.__file__).resolve()


def test_taylor_masks_are_identical_across_ranks(main_run):
    states = [main_run.state("sparsified", rank) for rank in range(WORLD)]
    assert len(masks(states[0])) == MASKED_LAYERS
    assert list(states[0]) == list(states[1])
    assert differing(*states, states[0]) == [], main_run.tail()


def test_taylor_masks_come_from_the_scores_summed_over_ranks(main_run):
    """Each rank's own scores would give other masks; the chosen masks are those of their sum.

    The calibration batches differ per rank, so this would fail without the all-reduce in
    ``sparse24.criteria.taylor.score``. The local scores were taken by the worker before
    ``init_process_group`` (no group: no all-reduce). With 2 ranks the reduced sum is one
    float addition, so ``two_four_mask(s0 + s1)`` must match bit for bit.
    """
    state = main_run.state("sparsified", 0)
    local = [load_file(str(main_run.out / f"local_scores_rank{rank}.safetensors")) for rank in range(WORLD)]
    axes = file_axes(main_run.out / "sparsified_rank0.safetensors")
    assert len(axes) == MASKED_LAYERS
    for name, dim in axes.items():
        mask = sparse24.enforce.stored_mask(state[name + sparse24.MASK_SUFFIX], state[name].shape, name)
        local_masks = [sparse24.two_four_mask(scores[name], dim) for scores in local]
        assert not torch.equal(local_masks[0], local_masks[1]), f"{name}: per-rank scores agree; the test data does not tell"
        assert not torch.equal(mask, local_masks[0]) and not torch.equal(mask, local_masks[1]), name
        assert torch.equal(mask, sparse24.two_four_mask(local[0][name] + local[1][name], dim)), name


def test_finetune_weights_and_masks_are_identical_across_ranks(main_run):
    states = [main_run.state("final", rank) for rank in range(WORLD)]
    assert list(states[0]) == list(states[1])
    keys = [k for k in states[0] if k not in bn_buffers(states[0])]
    assert len(masks(states[0])) == MASKED_LAYERS
    assert differing(*states, keys) == [], main_run.tail()
    sparsified = main_run.state("sparsified", 0)
    assert differing(states[0], sparsified, masks(sparsified)) == []  # finetune kept the masks
    weights = [k for k in states[0] if k.endswith(".weight")]
    assert differing(states[0], sparsified, weights), "finetune did not change the weights"


def test_finetune_batchnorm_buffers_are_identical_across_ranks(main_run):
    """Every rank must end with the model rank 0 checkpoints, BatchNorm statistics included.

    DDP broadcasts rank 0's buffers at the start of each forward, and the forward then
    updates the running statistics with the rank's own batch; unless finetune syncs the
    buffers after the last step, each rank keeps the statistics of its own last batch.
    """
    states = [main_run.state("final", rank) for rank in range(WORLD)]
    keys = bn_buffers(states[0])
    assert keys
    diff = differing(*states, keys)
    assert diff == [], f"BatchNorm buffers differ between rank 0 and rank 1 after finetune: {diff}" + main_run.tail()


def test_recalibrated_batchnorm_statistics_are_those_of_every_ranks_batches(main_run):
    """recalibrate_batchnorm under DDP: every rank ends with the statistics one process gets from all ranks'
    calibration batches (each rank saw only its own; equal counts, so the average of the ranks' averages)."""
    worker = _worker_module()
    from sparse24.demo import batches, load_digits, loss_fn

    states = [main_run.state("recalibrated", rank) for rank in range(WORLD)]
    keys = [k for k in bn_buffers(states[0]) if not k.endswith("num_batches_tracked")]
    assert keys and differing(*states, keys) == [], main_run.tail()
    model = DigitsResNet(width=worker.WIDTH)
    sparse24.load(model, main_run.out / "sparsified_rank0.safetensors")
    digits = load_digits()
    calibration = batches(digits.x_train, digits.y_train, worker.BATCH)[: WORLD * worker.CALIBRATION_PER_RANK]
    sparse24.recalibrate_batchnorm(model, calibration, loss_fn=loss_fn, progress=False)
    alone = model.state_dict()
    sparsified = main_run.state("sparsified", 0)
    for key in keys:
        torch.testing.assert_close(states[0][key], alone[key], rtol=1e-5, atol=1e-6, msg=key)
        assert not torch.equal(states[0][key], sparsified[key]), key


def _worker_module():
    spec = importlib.util.spec_from_file_location("sparse24_ddp_worker_constants", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verify_passes_on_every_rank(main_run):
    for rank in range(WORLD):
        assert main_run.record(rank)["verified_layers"] == MASKED_LAYERS
        model = DigitsResNet(width=16)
        assert len(sparse24.load(model, main_run.out / f"final_rank{rank}.safetensors")) == MASKED_LAYERS
        report = sparse24.verify(model)
        assert sum(layer.sparse for layer in report.layers) == MASKED_LAYERS


def test_only_rank_0_writes_checkpoints(main_run):
    """Rank r got checkpoint_dir ckpt-rank{r}: only rank 0's exists; nothing else was written."""
    root = main_run.out.parent
    assert not (root / "ckpt-rank1").exists()
    ckpt = root / "ckpt-rank0"
    steps = [3, 4, 6, 8]  # every 3 steps (not at an epoch end) and at each epoch end
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest"] + [f"step-{s:08d}" for s in steps]
    for step in steps:
        assert sorted(p.name for p in (ckpt / f"step-{step:08d}").iterdir()) == ["model.safetensors", "trainer.pt"]
    assert (ckpt / "latest").read_text(encoding="utf-8").strip() == f"step-{TOTAL_STEPS:08d}"
    final = main_run.state("final", 0)
    saved = load_file(str(ckpt / f"step-{TOTAL_STEPS:08d}" / "model.safetensors"))
    assert list(saved) == list(final)
    assert differing(saved, final, final) == []
    assert list(main_run.cwd.iterdir()) == []
    dumps = {f"{kind}_rank{r}.safetensors" for kind in ("local_scores", "sparsified", "recalibrated", "final") for r in range(WORLD)}
    assert {p.name for p in main_run.out.iterdir()} == dumps | {f"rank{r}.json" for r in range(WORLD)}
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-rank0", "main-cwd", "main-out"]


def test_training_data_is_split_by_rank(main_run):
    records = [main_run.record(rank) for rank in range(WORLD)]
    data = records[0]["train_hashes"]
    assert records[1]["train_hashes"] == data
    assert len(set(data)) == TRAIN_BATCHES
    for rank, record in enumerate(records):
        assert len(record["seen"]) == EPOCHS * STEPS_PER_EPOCH
        for epoch in range(EPOCHS):
            assert record["seen"][epoch * STEPS_PER_EPOCH : (epoch + 1) * STEPS_PER_EPOCH] == data[rank::WORLD]
    seen = [set(record["seen"]) for record in records]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(data)
    for record in records:
        assert record["total_steps"] == TOTAL_STEPS
        assert record["steps_recorded"] == list(range(1, TOTAL_STEPS + 1))


def test_resume_under_ddp_matches_the_uninterrupted_run(main_run, resumed_run):
    assert resumed_run.after_interrupt == ["latest", "step-00000003", "step-00000004", "step-00000006"]
    for rank in range(WORLD):
        stopped, resumed = resumed_run.interrupted.record(rank), resumed_run.resumed.record(rank)
        assert stopped["stopped"] and len(stopped["seen"]) == STOP_AT_CALL
        assert not resumed["stopped"]
        assert resumed["resumed_from"] == 6
        assert resumed["seen"] == stopped["train_hashes"][rank::WORLD][2:]  # the rest of epoch 2
        assert resumed["steps_recorded"] == list(range(1, TOTAL_STEPS + 1))
        expected, got = main_run.state("final", rank), resumed_run.resumed.state("final", rank)
        assert list(got) == list(expected)
        assert differing(got, expected, expected) == [], f"rank {rank}" + resumed_run.resumed.tail()
