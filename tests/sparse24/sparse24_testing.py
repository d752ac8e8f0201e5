"""Helpers the sparse24 tests import.

A module of its own: ``from conftest import`` picks up another folder's conftest when one pytest run
names test files from several folders.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from torch import Tensor, nn


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Bitwise equality (NaN == NaN, +0.0 != -0.0), dtype and shape included."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8))


TORCHRUN_TIMEOUT_S = 180  # one torchrun; a hung collective ends here instead of hanging the suite


def torchrun(worker: Path, args: list[str], cwd: Path, what: str, ranks: int = 2, timeout: float = TORCHRUN_TIMEOUT_S) -> str:
    """Run ``worker`` on ``ranks`` gloo CPU ranks (one thread each) from ``cwd``; its output, or a test failure showing it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(worker), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and the ranks it started
        log, _ = process.communicate()
        pytest.fail(f"torchrun ({what}) did not finish in {timeout} s (a rank hung in a collective?)\n{log[-8000:]}")
    assert process.returncode == 0, f"torchrun ({what}) exited with {process.returncode}\n{' '.join(command)}\n{log[-8000:]}"
    return log


def run_worker(main: Callable[[], int | None]) -> NoReturn:
    """Run a torchrun worker's ``main`` and exit with its status, its garbage freed first.

    FSDP's sharded modules are reference cycles, which only the collector frees. Left to the interpreter's
    shutdown, a rank can abort after ``main`` has returned, destroy_process_group included ("terminate called
    without an active exception", exit -6; a tensor released while the interpreter is torn down): 2 of 34
    torchrun runs of fsdp_units_worker alone, 4 of 122 of fsdp_experts_worker beside two busy loops (and
    one CI run). Collected first, while the interpreter is whole: 0 of 80 and 0 of 100.
    """
    status = main()
    gc.collect()
    sys.exit(status)


def import_problem(name: str) -> str | None:
    """Why the optional package ``name`` cannot be used here (None if it imports)."""
    try:
        importlib.import_module(name)
    except Exception as error:  # a broken wheel raises OSError, RuntimeError, ...
        return f"{name} does not import here: {type(error).__name__}: {error}"
    return None


def causal_lm(architecture: str) -> torch.nn.Module:
    """A seeded two-layer transformers Llama or GPT-2 (96 tokens, 64 wide), with its default ``use_cache``."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if architecture == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    return GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=32))


class LooksUpTable(nn.Module):
    """Hands its ``table`` layer to a helper of its own that indexes its weight (LayoutLMv3's relative position
    biases, looked up by ``_relative_position_lookup``); ``proj``, ``width`` wide, is called as usual."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.table, self.proj = nn.Linear(16, width), nn.Linear(width, width)

    def _lookup(self, positions: Tensor, bias: nn.Linear) -> Tensor:
        return bias.weight[:, positions].t()

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) + self._lookup(torch.arange(x.shape[-2]) % 16, self.table)
