"""The export tests need the ONNX stack (in the dev extras): skip them, with the reason, without it."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx", reason="export tests need onnx (pip install 'sparse24[export]')")
pytest.importorskip("onnxruntime", reason="export tests need onnxruntime (pip install 'sparse24[export]')")
pytest.importorskip("onnxscript", reason="export tests need onnxscript (pip install 'sparse24[export]')")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
