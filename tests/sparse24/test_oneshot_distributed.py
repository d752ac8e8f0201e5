"""Wanda, SparseGPT and Taylor by pairs under a real torchrun (2 gloo CPU ranks, each with half the calibration data).

The statistics (input norms, Hessians, Taylor scores and pair cross sums) are all-reduced, so
both ranks must end with bitwise identical masks and weights, equal (up to fp32 summation order)
to one process calibrating on all the data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from oneshot_worker import method_options, model_and_data
from safetensors.torch import load_file

import sparse24

WORKER = Path(__file__).with_name("oneshot_worker.py")


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize(("method", "mode"), [("wanda", "one-pass"), ("sparsegpt", "sequential"), ("taylor-pairs", "one-pass"), ("taylor-pairs", "sequential")])
def test_ranks_agree_with_each_other_and_with_one_process(tmp_path: Path, method: str, mode: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), method, mode, str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=WORKER.parent)
    files = [tmp_path / f"rank{r}.safetensors" for r in range(2)]
    # Once in ~15 CI runs a rank aborted in C++ ("terminate called without an active exception", SIGABRT) with no
    # Python traceback; it did not reproduce in 100+ runs here. Only where both ranks had written their results
    # (after sparsify: the abort came in the teardown) are those results judged; any other failure fails.
    teardown_abort = result.returncode != 0 and all(f.is_file() for f in files) and "terminate called without an active exception" in result.stderr
    assert result.returncode == 0 or teardown_abort, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [load_file(str(f)) for f in files]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), "ranks disagree"
    model, data = model_and_data()
    name, options = method_options(method)
    sparse24.sparsify(model, name, data=data, sequential=["0", "1"] if mode == "sequential" else None, policy="any", progress=False, **options)
    masks = [k for k in ranks[0] if k.endswith("_sparse24_mask")]
    assert len(masks) == 5
    for key, value in model.state_dict().items():
        assert torch.allclose(ranks[0][key].float(), value.float(), atol=1e-4), key
