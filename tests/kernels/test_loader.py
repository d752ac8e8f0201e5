"""The loader's switches and errors, and the CPU paths of the ops (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from sparse24.kernels import ENV_DISABLE, kernels_unavailable, loader, ops, reference
from sparse24.mask import prune_


def test_environment_switch_disables_the_kernels(monkeypatch) -> None:
    monkeypatch.setenv(ENV_DISABLE, "1")
    assert kernels_unavailable() == f"custom kernels are disabled ({ENV_DISABLE}=1)"
    monkeypatch.setenv(ENV_DISABLE, "0")
    assert kernels_unavailable() is None or "disabled" not in kernels_unavailable()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_the_reason_is_given(monkeypatch) -> None:
    monkeypatch.delenv(ENV_DISABLE, raising=False)
    assert kernels_unavailable() == "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    with pytest.raises(loader.KernelUnavailable, match="no CUDA GPU"):
        loader.function("small_m.cu", "sparse24_small_m_f16_1", torch.device("cuda", 0))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(loader.ENV_CACHE, str(tmp_path))
    assert loader.cache_dir() == tmp_path


def test_cpu_tensors_use_the_reference_or_are_refused() -> None:
    weight = torch.randn(32, 64)
    prune_(weight, 1)
    weight = weight.half()
    values, meta = ops.compress(weight)  # CPU: the reference
    assert torch.equal(ops.decompress(values, meta), weight)
    with pytest.raises(ValueError, match="run on CUDA tensors"):
        ops.sparse_mm(torch.randn(2, 64).half(), values, meta)
    with pytest.raises(ValueError, match="values must be"):
        ops.sparse_mm(torch.randn(2, 64).half(), values[:, :16], meta)
    with pytest.raises(ValueError, match="kernel must be"):
        ops.sparse_mm(torch.randn(2, 64).half(), values, meta, kernel="fast")
    assert torch.equal(reference.decompress(values, meta), weight)


def test_missing_source_is_a_clear_error() -> None:
    with pytest.raises(loader.KernelUnavailable, match="kernel source not found"):
        loader.source_text("nope.cu")
