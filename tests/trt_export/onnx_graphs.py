"""Small ONNX graphs and 2:4 arrays for the inspection tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from sparse24.mask import prune_


def two_four(shape: Sequence[int], axis: int, *, seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    """A random array that is 2:4 along ``axis`` (magnitude-pruned with sparse24's own prune_)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(tuple(shape), generator=generator)
    prune_(weight, axis)
    return weight.numpy().astype(dtype)


def dense(shape: Sequence[int], *, seed: int = 0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(tuple(shape), generator=generator) + 0.5).numpy()  # no zeros at all


def graph_model(nodes: list, inputs: list, outputs: list, initializers: dict[str, np.ndarray], opset: int = 20):
    """An ONNX ModelProto from helper nodes, value infos and numpy initializers."""
    graph = helper.make_graph(
        nodes,
        "test",
        inputs,
        outputs,
        initializer=[numpy_helper.from_array(v, name) for name, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def tensor(name: str, shape: Sequence[int | str], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))
