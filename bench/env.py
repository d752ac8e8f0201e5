"""The environment a result was measured in: GPU, driver, library versions, git commit, command.

Only reads: clocks, power limits and other GPU settings are queried, never changed.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

import sparse24

__all__ = ["cuda_problem", "device_slug", "environment", "git_commit"]

REPO = Path(__file__).resolve().parent.parent
_SMI_FIELDS = ("driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "power.limit", "persistence_mode")


def cuda_problem() -> str | None:
    """Why the GPU suites cannot run here (no CUDA GPU, or one older than sm_80), or None."""
    if not torch.cuda.is_available():
        return "no CUDA GPU here" + ("" if torch.version.cuda else f" (torch {torch.__version__} is a CPU build)")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 0):
        return f"{torch.cuda.get_device_name()} is sm_{major}{minor}: 2:4 sparse kernels need Ampere (sm_80) or newer"
    return None


def device_slug() -> str:
    """``nvidia-h100-80gb-hbm3`` for the current GPU, ``cpu`` without one: the results folder name."""
    if not torch.cuda.is_available():
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` with uncommitted changes), or None outside a git checkout."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    try:
        head = subprocess.run([git, "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 - a broken install is "not available" here; trt_export reports why
        return None
    return getattr(tensorrt, "__version__", None)


def _nvidia_smi(gpu: str) -> dict[str, str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run(
            [smi, f"--id={gpu}", f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values = [v.strip() for v in out.strip().split(",")]
    return dict(zip(_SMI_FIELDS, values)) if len(values) == len(_SMI_FIELDS) else {}


def _gpu() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    cusparselt = getattr(getattr(torch.backends, "cusparselt", None), "version", lambda: None)()
    return {
        "name": props.name,
        "capability": f"sm_{props.major}{props.minor}",
        "sm_count": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "l2_bytes": getattr(props, "L2_cache_size", None),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cusparselt": cusparselt,
        "nvidia_smi": _nvidia_smi(f"GPU-{props.uuid}" if getattr(props, "uuid", None) else str(index)),  # by UUID: CUDA and nvidia-smi may number GPUs differently  # driver, clocks at the time of reading, power limit: read only
    }


def environment(command: str) -> dict[str, Any]:
    """Everything a result depends on that is not in the result itself."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "sparse24": sparse24.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tensorrt": _tensorrt_version(),
        "onnxruntime": _version("onnxruntime"),
        "transformers": _version("transformers"),
        "cuda_python": _version("cuda-bindings") or _version("cuda-python"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": _gpu(),
    }


def describe(env: dict[str, Any]) -> str:
    """One line: the device and the versions that matter for speed."""
    gpu = env.get("gpu")
    if gpu:
        driver = gpu.get("nvidia_smi", {}).get("driver_version")
        where = f"{gpu['name']} ({gpu['capability']}, {gpu['sm_count']} SMs), driver {driver or '?'}, CUDA {gpu['cuda']}, cuSPARSELt {gpu['cusparselt']}"
    else:
        where = f"CPU {env['cpu']}, {env['cpu_threads']} threads"
    trt = f", TensorRT {env['tensorrt']}" if env.get("tensorrt") else ""
    commit = (env.get("git_commit") or "no git")[:12] + ("+dirty" if str(env.get("git_commit")).endswith("+dirty") else "")
    return f"{where}; torch {env['torch']}{trt}; sparse24 {env['sparse24']} ({commit}); {env['date']}"
