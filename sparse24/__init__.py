"""sparse24: NVIDIA 2:4 semi-structured sparsity for PyTorch models.

>>> report = sparse24.sparsify(model, "magnitude")       # in place, enforced in training
>>> sparse24.verify(model)                                # raises SparsityError if not 2:4
>>> history = sparse24.finetune(model, train_batches, loss_fn=loss_fn, teacher=dense, epochs=3)
>>> sparse24.save(model, "sparse.safetensors")           # weights + masks, atomically
>>> sparse24.permute(dense_model)                          # before sparsify: 2:4 keeps more
"""

from __future__ import annotations

from pathlib import Path as _Path

# An install maps the top-level folders kernels/, trt_export/ and bench/ to sparse24.kernels, ... (the
# package-dir table in pyproject.toml). A source checkout run without installing (``python -m
# sparse24.bench`` from the repo root, as ``make gpu-check`` does) has them next to this folder: the
# same names resolve there.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if not _Path(__file__).with_name("kernels").is_dir() and (_CHECKOUT / "kernels" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 (a package's own __path__)

from .axes import Axis, GemmWeight, gemm_axes, gemm_weights
from .enforce import (
    MASK_SUFFIX,
    attach,
    attach_optimizer,
    load_masks,
    masked_weights,
    strip,
)
from .batchnorm import recalibrate_batchnorm
from .errors import CheckFailed, Sparse24Error, SparsityError
from .finetune import FinetuneHistory, distill_loss, finetune
from .io import load, save
from .mask import first_violation, is_two_four, prune_, two_four_mask
from .permute import PermutationReport, kept_importance, permute, permute_like, search_permutation
from .report import LayerReport, SparsityReport
from .runtime import RuntimeReport, SparseLinear, to_sparse_runtime
from .sparsify import POLICIES, sparsify, verify, verify_file

__version__ = "0.1.0"

__all__ = [
    "Axis",
    "CheckFailed",
    "FinetuneHistory",
    "GemmWeight",
    "LayerReport",
    "PermutationReport",
    "MASK_SUFFIX",
    "POLICIES",
    "RuntimeReport",
    "Sparse24Error",
    "SparsityError",
    "SparsityReport",
    "SparseLinear",
    "attach",
    "attach_optimizer",
    "distill_loss",
    "finetune",
    "first_violation",
    "gemm_axes",
    "gemm_weights",
    "is_two_four",
    "kept_importance",
    "load",
    "load_masks",
    "masked_weights",
    "permute",
    "permute_like",
    "prune_",
    "recalibrate_batchnorm",
    "save",
    "search_permutation",
    "sparsify",
    "strip",
    "to_sparse_runtime",
    "two_four_mask",
    "verify",
    "verify_file",
]
