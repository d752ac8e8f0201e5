"""Every kernel source compiles with nvcc for sm_80, sm_86, sm_89 and sm_90, and names what ops.py launches."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sparse24.kernels import loader, ops

SOURCES = sorted(p.name for p in loader.SOURCES.glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_the_sources_are_there() -> None:
    assert SOURCES == ["compress.cu", "mask_rows.cu", "mma_sp.cu", "small_m.cu"]


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here")
@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
def test_nvcc_builds_every_kernel(arch: str, tmp_path: Path) -> None:
    # the kernels, and the tests' probe kernels (so what the emulation checks them on is valid CUDA)
    for path in [loader.SOURCES / s for s in SOURCES] + [Path(__file__).with_name("probes.cu")]:
        source = path.name
        out = tmp_path / f"{source}.{arch}.cubin"
        result = subprocess.run(
            [NVCC, "-cubin", f"-arch={arch}", "-std=c++17", "--use_fast_math", "-Werror", "all-warnings", "-I", str(loader.SOURCES), "-o", str(out), str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{source} for {arch}:\n{result.stderr}"
        assert out.stat().st_size > 0


def test_every_kernel_name_ops_launches_is_defined() -> None:
    text = "\n".join(loader.source_text(s) for s in SOURCES)
    defined = set(re.findall(r"__global__ void(?: __launch_bounds__\(\w+(?: \* \d+)?\))?\s+(\w+)\(", text))
    defined |= {m for m in re.findall(r"SPARSE24_SMALL_M\((\w+),", text)}
    wanted = {"sparse24_compress_16bit", "sparse24_decompress_16bit", "sparse24_mma_sp_f16", "sparse24_mma_sp_bf16"}
    wanted |= {f"sparse24_small_m_{d}_{t}" for d in ("f16", "bf16") for t in ops._SMALL_TILES}
    assert wanted <= defined, sorted(wanted - defined)
