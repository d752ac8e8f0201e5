"""The GPU code paths above the kernels, run on the CPU emulation: the sparse runtime, SparseLinear under torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
from kernel_testing import needs_emulation
from torch import nn

import sparse24
from sparse24.kernels import emulate, ops
from sparse24.runtime import SparseLinear

pytestmark = needs_emulation


def sparse_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 48, bias=False))
    sparse24.sparsify(model, "magnitude", policy="any")
    sparse24.strip(model)
    return model.half().eval()


def fp64_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return copy.deepcopy(model).double()(x.double())


def test_custom_backend_without_the_emulation_is_one_clear_error() -> None:
    model = sparse_mlp()
    with pytest.raises(sparse24.Sparse24Error, match="needs the model on a CUDA GPU"):
        sparse24.to_sparse_runtime(model, "custom")
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))


def test_runtime_custom_backend_end_to_end() -> None:
    model = sparse_mlp()
    with emulate.emulated(), emulate.launches() as launched:
        report = sparse24.to_sparse_runtime(model, "custom")
        assert [layer.name for layer in report.layers] == ["0", "2"] and report.device == "cpu"
        assert isinstance(model[0], SparseLinear) and "custom: all M" in repr(model[0])
        for rows in (3, 80):  # the CUDA-core kernel at M <= 64, mma.sp above
            with torch.no_grad():
                assert model(torch.randn(rows, 64).half()).shape == (rows, 48)
    names = [s.kernel for s in launched]
    assert names.count("sparse24_compress_16bit") == 2  # each weight compressed by the kernel
    assert {"sparse24_small_m_f16_4", "sparse24_mma_sp_f16"} <= set(names)
    assert all(s.races == 0 for s in launched)


def test_runtime_matches_float64() -> None:
    model = sparse_mlp()
    dense = copy.deepcopy(model)
    x = torch.randn(2, 40, 64).half()  # 3-D: flattened to M = 80 (mma.sp), then one row (small-M)
    with emulate.emulated():
        sparse24.to_sparse_runtime(model, "custom")
        with torch.no_grad():
            y, y1 = model(x), model(x[:1, :1])
    expected = fp64_reference(dense, x)
    for actual, wanted in ((y, expected), (y1, expected[:1, :1])):
        assert actual.shape == wanted.shape
        assert float((actual.double() - wanted).abs().max() / wanted.abs().max()) < 1e-2


def test_sparse_linear_under_torch_compile_runs_the_custom_op() -> None:
    model = sparse_mlp()
    x = torch.randn(5, 64).half()
    with emulate.emulated():
        sparse24.to_sparse_runtime(model, "custom")
        with torch.no_grad():
            eager = model(x)
            compiled = torch.compile(model, fullgraph=True)
            with emulate.launches() as launched:
                assert torch.equal(compiled(x), eager)
    assert [s.kernel for s in launched] == ["sparse24_small_m_f16_8", "sparse24_small_m_f16_8"]


def test_ops_refuse_cpu_tensors_unless_emulation_is_asked_for() -> None:
    weight = torch.zeros(16, 32, dtype=torch.float16)
    values, meta = ops.compress(weight)  # the reference: no kernel
    with pytest.raises(ValueError, match="SPARSE24_KERNELS=emulate"):
        ops.sparse_mm(torch.zeros(2, 32, dtype=torch.float16), values, meta)
    with emulate.emulated():
        assert torch.equal(ops.sparse_mm(torch.ones(2, 32, dtype=torch.float16), values, meta), torch.zeros(2, 16, dtype=torch.float16))


def test_environment_switch(monkeypatch) -> None:
    from sparse24.kernels.loader import kernels_unavailable

    cpu = torch.device("cpu")
    monkeypatch.delenv(emulate.ENV_MODE, raising=False)
    assert "SPARSE24_KERNELS=emulate" in kernels_unavailable(cpu)
    monkeypatch.setenv(emulate.ENV_MODE, "emulate")
    assert kernels_unavailable(cpu) is None
    monkeypatch.setenv(emulate.ENV_MODE, "nvrtc")
    assert kernels_unavailable(cpu) is not None
