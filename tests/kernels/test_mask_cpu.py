"""The CPU mask kernel (csrc/mask_cpu.cpp) against its pure-PyTorch reference, and the host build."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import assert_same, special

from sparse24.kernels import ENV_DISABLE, KernelUnavailable, loader, ops
from sparse24.mask import mask_rows_, pack_bits

pytestmark = pytest.mark.skipif(loader.host_compiler() is None, reason="no host C++ compiler (c++, g++ or clang++) to build the CPU kernel")

SHAPES = [(16, 24), (7, 9), (3, 4, 3, 3), (5, 2), (33,), (1, 1), (0, 8), (64, 1000)]
@pytest.mark.parametrize("dtype", list(ops.HOST_DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_kernel_matches_the_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(hash((shape, str(dtype))) % 2**31)
    tensor = special(torch.randn(shape, generator=generator).to(dtype))
    packed = pack_bits(torch.rand(shape, generator=generator) > 0.5)
    if shape[0]:
        packed.view(-1)[0] = 0b00001000  # the special values' row: only -0.0 kept (inf, -inf, NaN, 0.0 and -1.5 pruned)
    expected = mask_rows_(tensor.clone(), packed)
    actual = tensor.clone()
    assert ops.mask_rows_cpu_(actual, packed) is actual
    assert_same(actual, expected)
    if tensor.numel() >= 6 and shape[-1] >= 6 and len(shape) == 2:
        assert actual.view(-1)[:6].isnan().tolist() == [True, True, True, False, False, False]
        assert torch.signbit(actual.view(-1)[3:6]).tolist() == [True, False, True]


def test_padding_bits_are_never_read() -> None:
    tensor = torch.randn(6, 13)
    packed = pack_bits(torch.rand(6, 13) > 0.5)
    expected = mask_rows_(tensor.clone(), packed)
    packed[:, -1] |= 0b11100000  # bits 13..15 of every row: padding
    assert_same(ops.mask_rows_cpu_(tensor.clone(), packed), expected)


def test_bad_input_is_one_clear_error() -> None:
    tensor, packed = torch.randn(8, 16), torch.zeros(8, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="must be contiguous"):
        ops.mask_rows_cpu_(torch.randn(16, 8).t(), packed)
    with pytest.raises(ValueError, match="tensor must be one of float32, float64, float16, bfloat16, got torch.int32"):
        ops.mask_rows_cpu_(tensor.int(), packed)
    with pytest.raises(ValueError, match=r"packed must be a contiguous uint8 \[8, 2\] tensor for a tensor of shape \[8, 16\], got torch.uint8 \[8, 1\]"):
        ops.mask_rows_cpu_(tensor, packed[:, :1])
    with pytest.raises(ValueError, match="packed must be"):
        ops.mask_rows_cpu_(tensor, packed.bool())
    with pytest.raises(ValueError, match="packed must be"):
        ops.mask_rows_cpu_(tensor, torch.zeros(2, 8, dtype=torch.uint8).t())
    assert torch.equal(tensor, tensor.clone())


def test_disabled_kernels_are_unavailable_with_the_reason(monkeypatch) -> None:
    monkeypatch.setenv(ENV_DISABLE, "1")
    with pytest.raises(KernelUnavailable, match=f"custom kernels are disabled \\({ENV_DISABLE}=1\\)"):
        ops.host_mask_rows()
    with pytest.raises(KernelUnavailable, match="disabled"):
        ops.mask_rows_cpu_(torch.randn(8, 16), torch.zeros(8, 2, dtype=torch.uint8))


def test_the_build_is_cached_on_disk_and_in_the_process(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(loader.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv(loader.ENV_CXX, loader.host_compiler())  # a new (source, $CXX, $PATH): built again, into tmp_path
    library = loader.host_library("mask_cpu.cpp")
    built = list((tmp_path / "host").iterdir())
    assert [p.suffix for p in built] == [".so"] and built[0].name.startswith("mask_cpu-")
    assert loader.host_library("mask_cpu.cpp") is library
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "a temporary file was left behind"


def test_a_missing_or_failing_compiler_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(loader.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv(loader.ENV_CXX, "no-such-compiler-sparse24")
    with pytest.raises(KernelUnavailable, match=r"no C\+\+ compiler found for the CPU kernels"):
        loader.host_library("mask_cpu.cpp")
    failing = tmp_path / "failing-cxx"
    failing.write_text("#!/bin/sh\necho 'fake compiler 1.0'\n[ \"$1\" = --version ] && exit 0\necho 'error: cannot compile' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv(loader.ENV_CXX, str(failing))
    with pytest.raises(KernelUnavailable, match=r"could not build mask_cpu.cpp:\nerror: cannot compile"):
        loader.host_library("mask_cpu.cpp")
    assert not (tmp_path / "host").exists() or not list((tmp_path / "host").iterdir()), "a failed build left a file in the cache"


def test_an_unwritable_cache_still_gives_the_kernel(monkeypatch, tmp_path, caplog) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(loader.ENV_CACHE, str(blocked))
    monkeypatch.setattr(loader, "_host_libraries", {})  # build again, as a fresh process would
    with caplog.at_level("WARNING", logger="sparse24.kernels"):
        library = loader.host_library("mask_cpu.cpp")
    assert "could not cache" in caplog.text
    tensor, packed = torch.randn(4, 8), pack_bits(torch.rand(4, 8) > 0.5)
    expected = mask_rows_(tensor.clone(), packed)
    function = library.sparse24_mask_rows
    function.argtypes = ops.host_mask_rows().argtypes
    assert function(tensor.data_ptr(), 0, packed.data_ptr(), 4, 8, 1) == 0
    assert_same(tensor, expected)
