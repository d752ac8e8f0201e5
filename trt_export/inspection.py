"""Which GEMMs and convolutions of an ONNX graph can run on 2:4 sparse tensor cores.

For every ``Conv``, ``Gemm`` and ``MatMul`` whose weight is a constant -- an initializer or
``Constant``, possibly behind ``Transpose``, ``Cast``, ``DequantizeLinear`` and ``Identity``
(as Polygraphy's ``sparse`` tool walks them) -- :func:`inspect_onnx` checks the 2:4 pattern
along the axis TensorRT needs (:func:`sparse24.axes.onnx_weight_axis`), the preconditions of
TensorRT's sparse kernels, and the layer's share of the model's GEMM/conv FLOPs.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparse24.axes import ATEN_WEIGHT_OPERANDS, onnx_weight_axis
from sparse24.errors import Sparse24Error, first_line
from sparse24.mask import first_violation

from .errors import require

__all__ = ["OnnxLayer", "OnnxSparsityReport", "embedding_ranges", "inspect_onnx"]

_GEMM_OPS = ("Conv", "Gemm", "MatMul")
_PASS_THROUGH = ("Transpose", "Cast", "Identity", "DequantizeLinear")
# Ops that carry integer ids on unchanged, from a graph input to the Gather that looks them up.
_KEEPS_IDS = ("Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Slice", "Transpose")
# Weight types that can reach sparse tensor-core kernels (fp32 only once built in FP16 on 8.6/10.x).
_SPARSE_TYPES = ("float16", "bfloat16", "float32", "int8", "float8e4m3fn")
# Maintainers' rule of thumb (NVIDIA/TensorRT#3849, #4065): sparse tactics win from about 256
# output channels and 256 reduction elements (a 3x3 conv counts C*9); smaller layers often stay dense.
_SMALL = 256


@dataclass(frozen=True)
class OnnxLayer:
    """One Conv/Gemm/MatMul node and what TensorRT can do with its weight."""

    node: str
    op_type: str
    source: str | None  # the PyTorch parameter, from the exporter's node metadata
    weight: str | None  # the constant's name; None when both operands are activations
    fx_node: str | None = None  # the torch.export node it came from (exporter metadata)
    path: tuple[str, ...] = ()  # ops between the node and the constant, nearest first
    shape: tuple[int, ...] | None = None  # the constant's shape as stored
    axis: int | None = None  # the constant's axis that the 2:4 groups must run along
    dtype: str | None = None  # the type the GEMM runs in: after Cast, or the quantized type
    two_four: bool = False
    violation: str | None = None
    issues: tuple[str, ...] = ()  # preconditions not met: TensorRT cannot run it sparse
    warnings: tuple[str, ...] = ()  # may still stay dense
    flops: int | None = None

    @property
    def name(self) -> str:
        """The most useful name: the PyTorch parameter, else the constant, else the node."""
        return self.source or self.weight or self.node

    @property
    def eligible(self) -> bool:
        """2:4 along the right axis and every precondition of the sparse kernels met."""
        return self.two_four and not self.issues

    @property
    def status(self) -> str:
        if self.weight is None:
            return "no constant weight"
        if self.eligible:
            return "2:4"
        return "2:4, not eligible" if self.two_four else "not 2:4"

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op_type": self.op_type,
            "source": self.source,
            "weight": self.weight,
            "fx_node": self.fx_node,
            "path": list(self.path),
            "shape": list(self.shape) if self.shape is not None else None,
            "axis": self.axis,
            "dtype": self.dtype,
            "two_four": self.two_four,
            "eligible": self.eligible,
            "status": self.status,
            "violation": self.violation,
            "issues": list(self.issues),
            "warnings": list(self.warnings),
            "flops": self.flops,
        }


@dataclass(frozen=True)
class OnnxSparsityReport:
    """Per-layer 2:4 status of an ONNX graph and the share of its GEMM/conv FLOPs that is 2:4."""

    path: str
    layers: tuple[OnnxLayer, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def sparse_layers(self) -> tuple[OnnxLayer, ...]:
        """Layers TensorRT may run on sparse kernels (2:4, preconditions met)."""
        return tuple(layer for layer in self.layers if layer.eligible)

    @property
    def total_flops(self) -> int:
        return sum(layer.flops or 0 for layer in self.layers)

    @property
    def sparse_flops(self) -> int:
        return sum(layer.flops or 0 for layer in self.sparse_layers)

    @property
    def sparse_share(self) -> float:
        """Share of the known GEMM/conv FLOPs in eligible 2:4 layers (0 when none are known)."""
        return self.sparse_flops / self.total_flops if self.total_flops else 0.0

    def layer(self, name: str) -> OnnxLayer | None:
        """The first layer whose PyTorch name, constant name or node name is ``name``."""
        return next((layer for layer in self.layers if name in (layer.source, layer.weight, layer.node)), None)

    def summary(self) -> str:
        weighted = [layer for layer in self.layers if layer.weight is not None]
        return (
            f"{len(self.sparse_layers)} of {len(weighted)} constant-weight GEMM/conv layers are 2:4 and eligible; "
            f"{100 * self.sparse_share:.1f}% of the {self.total_flops / 1e6:.4g} MFLOP of GEMM/conv work"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "summary": self.summary(),
            "total_flops": self.total_flops,
            "sparse_flops": self.sparse_flops,
            "sparse_share": self.sparse_share,
            "layers": [layer.to_dict() for layer in self.layers],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = [
            f"# 2:4 sparsity of {Path(self.path).name}",
            "",
            self.summary(),
            "",
            "| layer | op | weight | shape | 2:4 axis | dtype | status | MFLOP | notes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for layer in self.layers:
            notes = "; ".join(filter(None, (layer.violation, *layer.issues, *layer.warnings)))
            shape = "x".join(map(str, layer.shape)) if layer.shape is not None else "-"
            via = f" (via {', '.join(layer.path)})" if layer.path else ""
            flops = f"{layer.flops / 1e6:.4g}" if layer.flops is not None else "?"
            lines.append(
                f"| {layer.name} | {layer.op_type} | {layer.weight or '-'}{via} | {shape} | "
                f"{'-' if layer.axis is None else layer.axis} | {layer.dtype or '-'} | {layer.status} | {flops} | {notes or '-'} |"
            )
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def __str__(self) -> str:
        rows = [("layer", "op", "status", "MFLOP", "notes")]
        for layer in self.layers:
            notes = "; ".join(filter(None, (layer.violation, *layer.issues, *layer.warnings)))
            rows.append((layer.name, layer.op_type, layer.status, f"{layer.flops / 1e6:.4g}" if layer.flops is not None else "?", notes))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + ("  " + row[4] if row[4] else "") for row in rows]
        return "\n".join([f"{self.path}: {self.summary()}", *text, *(f"note: {n}" for n in self.notes)])


@dataclass
class _Constant:
    name: str
    array: np.ndarray  # the values whose zeros count (quantized values minus zero point)
    stored_dtype: str
    path: list[str]
    reduction: int
    output: int
    dtype: str


class _Graph:
    """Lookups over one ONNX graph: constants, producers, value shapes."""

    def __init__(self, model: Any, base_dir: str) -> None:
        onnx = require("onnx")
        self.onnx = onnx
        self.graph = model.graph
        self.base_dir = base_dir
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producers = {out: node for node in self.graph.node for out in node.output}
        self.shapes: dict[str, list[int | str | None]] = {}
        for info in (*self.graph.input, *self.graph.output, *self.graph.value_info):
            tensor_type = info.type.tensor_type
            if tensor_type.HasField("shape"):
                self.shapes[info.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
                ]
        for name, tensor in self.initializers.items():
            self.shapes[name] = list(tensor.dims)

    def attribute(self, node: Any, name: str, default: Any = None) -> Any:
        for attr in node.attribute:
            if attr.name == name:
                return self.onnx.helper.get_attribute_value(attr)
        return default

    def array(self, tensor: Any) -> np.ndarray:
        return self.onnx.numpy_helper.to_array(tensor, base_dir=self.base_dir)

    def type_name(self, elem_type: int) -> str:
        """``float32``, ``float16``, ``bfloat16``, ``int8``, ``float8e4m3fn``, ... for a TensorProto type."""
        name = self.onnx.TensorProto.DataType.Name(elem_type).lower()
        return {"float": "float32", "double": "float64"}.get(name, name)

    def constant(self, value: str) -> Any | None:
        """The TensorProto behind ``value`` if it is an initializer or a Constant node's output."""
        if value in self.initializers:
            return self.initializers[value]
        node = self.producers.get(value)
        if node is not None and node.op_type == "Constant":
            return self.attribute(node, "value")
        return None

    def walk_back(self, value: str, ops: tuple[str, ...] = _PASS_THROUGH) -> tuple[Any | None, list[Any]]:
        """The constant behind ``value`` through ``ops`` (first inputs), and the nodes passed, nearest first."""
        nodes = []
        while (tensor := self.constant(value)) is None:
            node = self.producers.get(value)
            if node is None or node.op_type not in ops:
                return None, nodes
            nodes.append(node)
            value = node.input[0]
        return tensor, nodes

    def trace(self, value: str, reduction: int, output: int) -> _Constant | None:
        """Follow ``value`` back to a constant through pass-through ops, mapping the axes."""
        transposes: list[list[int] | None] = []
        path: list[str] = []
        cast_to: str | None = None
        dequantize = None
        tensor, nodes = self.walk_back(value)
        if tensor is None:
            return None
        for node in nodes:
            if node.op_type == "Transpose":
                perm = self.attribute(node, "perm")
                transposes.append(list(perm) if perm is not None else None)
                path.append(f"Transpose(perm={list(perm) if perm is not None else 'reverse'})")
            elif node.op_type == "Cast":
                to = self.type_name(self.attribute(node, "to"))
                cast_to = cast_to or to
                path.append(f"Cast(to={to})")
            elif node.op_type == "DequantizeLinear":
                dequantize = node
                path.append("DequantizeLinear")
            else:
                path.append(node.op_type)
        value = nodes[-1].input[0] if nodes else value
        array = self.array(tensor)
        stored = self.type_name(tensor.data_type)
        rank = array.ndim
        for perm in transposes:  # consumer axis i is the input's axis perm[i]
            perm = perm if perm is not None else list(reversed(range(rank)))
            reduction, output = perm[reduction], perm[output]
        if dequantize is not None:
            array = self._centered(array, dequantize)
        dtype = stored if dequantize is not None else (cast_to or stored)
        name = tensor.name or value
        return _Constant(name, array, stored, path, reduction % max(rank, 1), output % max(rank, 1), dtype)

    def _centered(self, quantized: np.ndarray, node: Any) -> np.ndarray:
        """Quantized values minus their zero point: zero exactly where the dequantized weight is."""
        zero_point = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is None:
            return quantized
        zp = self.array(zero_point).astype(np.int64)
        centered = quantized.astype(np.int64)
        if zp.ndim == 1 and quantized.ndim > 1 and zp.size > 1:
            axis = self.attribute(node, "axis", 1) % quantized.ndim
            shape = [1] * quantized.ndim
            shape[axis] = zp.size
            zp = zp.reshape(shape)
        try:
            return centered - zp
        except ValueError:  # blocked zero points: fall back to the raw quantized zeros
            return quantized

    def dims(self, value: str, symbols: Mapping[str, int]) -> list[int] | None:
        shape = self.shapes.get(value)
        if shape is None:
            return None
        resolved = []
        for d in shape:
            value = d if isinstance(d, int) else _evaluate(d, symbols) if isinstance(d, str) else None
            if value is None:
                return None
            resolved.append(value)
        return resolved


_FX_NODE = re.compile(r"^%(\w+) : .*?call_function\[target=(?:torch\.ops\.)?aten\.(\w+)\.\w+\]\(args = \((.*)\), kwargs", re.S)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses/brackets: fused names like ``PWN(a, b)`` hold commas."""
    items, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _mangled(name: str) -> str:
    """A parameter name as torch.export spells its placeholder, without the ``p_``.

    torch.export's ``placeholder_naming_pass`` replaces every character other than a
    letter or digit with ``_`` and lower-cases the result (``Up.weight`` -> ``up_weight``).
    """
    return re.sub(r"[^a-zA-Z0-9]", "_", name).lower()


def _evaluate(expression: str, symbols: Mapping[str, int]) -> int | None:
    """Value of a symbolic dimension such as ``batch`` or ``4*batch``; None if it names an unknown."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None

    def value(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return symbols.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
            left, right = value(node.left), value(node.right)
            if left is None or right is None or (isinstance(node.op, ast.FloorDiv) and right == 0):
                return None
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(type(node.op), left // right if right else 0)
        return None

    return value(tree)


def _fx_metadata(node: Any) -> tuple[str | None, str | None, list[str], list[str] | None]:
    """(FX node name, aten op, argument texts, module scopes) from the torch exporter's node metadata.

    ``pkg.torch.onnx.fx_node`` holds the FX node that produced the ONNX node
    (``%linear_1 : [...] = call_function[target=torch.ops.aten.linear.default](args = (%x,
    %p_up_weight, %p_up_bias), kwargs = {})``) and ``pkg.torch.onnx.name_scopes`` the modules
    around it (``['', 'Up', 'linear']``). Nones for nodes without it (other exporters).
    """
    meta = {p.key: p.value for p in node.metadata_props}
    fx_node, scopes = meta.get("pkg.torch.onnx.fx_node"), meta.get("pkg.torch.onnx.name_scopes")
    if not fx_node:
        return None, None, [], None
    name = re.match(r"%(\w+) :", fx_node)
    parsed = _FX_NODE.match(fx_node)
    try:
        modules = [s for s in ast.literal_eval(scopes) if isinstance(s, str)] if scopes else None
    except (ValueError, SyntaxError):
        modules = None
    if parsed is None:
        return name.group(1) if name else None, None, [], modules
    return parsed.group(1), parsed.group(2), _split_top_level(parsed.group(3)), modules


def _source_name(node: Any, constant_name: str) -> str | None:
    """The PyTorch parameter behind a node's weight, from the torch exporter's metadata.

    The weight is the GEMM's weight operand (:data:`ATEN_WEIGHT_OPERANDS`) when it is a parameter
    placeholder (``%p_encoder_layers_0_linear1_weight``), spelled as torch.export spells
    it (:func:`_mangled`). A constant that kept its PyTorch name (``head.weight``) is taken
    as is when it spells the placeholder; otherwise the deepest module scope whose spelling
    prefixes the placeholder gives ``encoder.layers.0.linear1.weight``. None when the
    operand is computed in forward (``fc.weight * g``: the op is not the parameter), and for
    nodes whose metadata comes from another op (a BatchNorm folded into a Conv).
    """
    _, op, args, modules = _fx_metadata(node)
    if op not in ATEN_WEIGHT_OPERANDS or modules is None:
        return None
    operands = [args[i] for i in ATEN_WEIGHT_OPERANDS[op] if i < len(args)]
    weight = next((a[3:] for a in operands if a.startswith("%p_")), None)
    if weight is None:
        return None
    if _mangled(constant_name) == weight:
        return constant_name
    for scope in sorted(modules[:-1], key=len, reverse=True):  # the last entry is the op itself
        prefix = _mangled(scope) + "_" if scope else ""
        if weight.startswith(prefix) and len(weight) > len(prefix):
            return f"{scope}.{weight[len(prefix):]}" if scope else weight
    return None


def _flops(graph: _Graph, node: Any, weight_shape: list[int] | None, symbols: Mapping[str, int]) -> int | None:
    out = graph.dims(node.output[0], symbols)
    if out is None:
        return None
    if node.op_type == "Conv":
        w = weight_shape or graph.dims(node.input[1], symbols)
        return 2 * math.prod(out) * math.prod(w[1:]) if w else None
    a = graph.dims(node.input[0], symbols)
    if node.op_type == "Gemm":
        if a is None or len(a) != 2:
            return None
        k = a[0] if graph.attribute(node, "transA", 0) else a[1]
        return 2 * math.prod(out) * k
    if a is None or not a:  # MatMul
        return None
    return 2 * math.prod(out) * a[-1]


def _check(node: Any, constant: _Constant) -> tuple[bool, str | None, list[str], list[str]]:
    """(2:4?, first violation, blocking issues, warnings) for one constant weight."""
    array = constant.array
    issues, warnings = [], []
    shape = array.shape
    reduction = shape[constant.reduction]
    outputs = shape[constant.output]
    if node.op_type in ("Gemm", "MatMul") and array.ndim != 2:
        issues.append(f"batched constant weight (rank {array.ndim})")
    if reduction % 4:
        issues.append(f"reduction size {reduction} is not a multiple of 4")
    groups = 1
    if node.op_type == "Conv":
        groups = int(next((a.i for a in node.attribute if a.name == "group"), 1))
        if groups > 1 and reduction == 1:
            issues.append("depthwise convolution")
    if constant.dtype not in _SPARSE_TYPES:
        issues.append(f"{constant.dtype} weights have no sparse kernels")
    elements = reduction * (math.prod(shape[2:]) if node.op_type == "Conv" else 1)
    if outputs < _SMALL or elements < _SMALL:
        warnings.append(f"small ({outputs} out x {elements} in): TensorRT often keeps layers under ~{_SMALL} dense")
    elif reduction % 16 or outputs % 8:
        warnings.append("reduction % 16 or outputs % 8 is not 0: sparse kernels may not apply")

    violation = None
    if reduction % 4 == 0 and array.size:
        tensor = torch.from_numpy(np.ascontiguousarray(array != 0))
        found = first_violation(tensor, constant.reduction)
        if found is not None:
            index, count = found
            violation = f"{count} nonzeros in the group of 4 at {list(index)} along axis {constant.reduction}"
    two_four = reduction % 4 == 0 and violation is None and array.size > 0
    return two_four, violation, issues, warnings


def _layer(graph: _Graph, node: Any, symbols: Mapping[str, int]) -> OnnxLayer:
    candidates = (1,) if node.op_type == "Conv" else (1, 0)
    trans = {"trans_a": bool(graph.attribute(node, "transA", 0)), "trans_b": bool(graph.attribute(node, "transB", 0))}
    name = node.name or node.output[0]
    fx_node = _fx_metadata(node)[0]
    for index in candidates:
        if index >= len(node.input) or not node.input[index]:
            continue
        direct = graph.constant(node.input[index])  # its own rank when shapes are unknown
        rank = len(direct.dims) if direct is not None else len(graph.shapes.get(node.input[index]) or [])
        axis = onnx_weight_axis(node.op_type, index, rank or 2, **trans)
        if axis is None:
            continue
        constant = graph.trace(node.input[index], axis.reduction, axis.output)
        if constant is None:
            continue
        two_four, violation, issues, warnings = _check(node, constant)
        return OnnxLayer(
            node=name,
            op_type=node.op_type,
            source=_source_name(node, constant.name),
            weight=constant.name,
            fx_node=fx_node,
            path=tuple(constant.path),
            shape=tuple(int(d) for d in constant.array.shape),
            axis=constant.reduction,
            dtype=constant.dtype,
            two_four=two_four,
            violation=violation,
            issues=tuple(issues),
            warnings=tuple(warnings),
            flops=_flops(graph, node, list(constant.array.shape) if node.op_type == "Conv" else None, symbols),
        )
    return OnnxLayer(node=name, op_type=node.op_type, source=None, weight=None, fx_node=fx_node, flops=_flops(graph, node, None, symbols))


def inspect_onnx(source: str | os.PathLike | Any, *, symbols: Mapping[str, int] | None = None) -> OnnxSparsityReport:
    """Report, per Conv/Gemm/MatMul of an ONNX model, whether TensorRT can run it 2:4 sparse.

    ``source`` is a path (external data is read from its directory) or an ``onnx.ModelProto``.
    FLOPs come from ONNX shape inference, per sample: symbolic dimensions are taken as 1
    unless ``symbols`` gives them (``{"batch": 8}``).
    """
    onnx = require("onnx")
    symbols = dict(symbols or {})
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise Sparse24Error(f"ONNX file not found: {path}")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf's DecodeError and friends
            raise Sparse24Error(f"{path} is not a readable ONNX model: {error}") from error
        base_dir, label = str(path.parent), str(path)
    else:
        model, base_dir, label = source, "", source.graph.name or "<ModelProto>"
    notes = []
    try:  # data propagation follows Shape -> Gather -> Concat -> Reshape, as the exporter writes reshapes
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:  # inference is best effort: keep the exporter's own value_info
        notes.append(f"ONNX shape inference failed ({first_line(error)}); FLOPs use the shapes stored in the file")
    graph = _Graph(model, base_dir)
    inputs = sorted({d for i in model.graph.input for d in graph.shapes.get(i.name, ()) if isinstance(d, str)})
    unknown = sorted(set(symbols) - set(inputs))
    if unknown:
        known = f"its inputs' symbolic dimensions are {', '.join(inputs)}" if inputs else "its inputs have no symbolic dimensions"
        raise ValueError(f"symbolic dimension {', '.join(map(repr, unknown))} is not in {label}: {known}")
    symbols = {name: int(symbols.get(name, 1)) for name in inputs} | symbols
    layers = tuple(_layer(graph, node, symbols) for node in model.graph.node if node.op_type in _GEMM_OPS)
    if inputs:
        notes.append("FLOPs with " + ", ".join(f"{d}={symbols[d]}" for d in inputs))
    unknown = [layer.name for layer in layers if layer.flops is None]
    if unknown:
        notes.append(f"FLOPs unknown (shapes not inferred), left out of the share: {', '.join(unknown)}")
    if any(layer.dtype == "float32" for layer in layers if layer.two_four):
        notes.append(
            "fp32 weights: TensorRT documents sparse kernels for FP16 and INT8 only; export with dtype='fp16' "
            "(TensorRT 11 takes the precision from the ONNX types) or build with precision='fp16' on 8.6/10.x"
        )
    if any(node.op_type in ("If", "Loop", "Scan") for node in model.graph.node):
        notes.append("subgraphs (If/Loop/Scan bodies) are not inspected")
    return OnnxSparsityReport(path=label, layers=layers, notes=tuple(notes))


def embedding_ranges(model: Any) -> dict[str, tuple[int, str]]:
    """Integer graph inputs that index an embedding table: input -> (rows of the table, its name).

    An input counts when it reaches, through ops that keep its values (reshapes, casts),
    the indices of a ``Gather`` on axis 0 whose data is a constant (an ``nn.Embedding``
    exports so); valid ids are then ``[0, rows)``. With several tables, the smallest wins.
    """
    graph = _Graph(model, "")
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for value in node.input:
            consumers.setdefault(value, []).append(node)
    found: dict[str, tuple[int, str]] = {}
    for graph_input in model.graph.input:
        if graph_input.name in graph.initializers:
            continue
        stack, seen = [graph_input.name], set()
        while stack:
            value = stack.pop()
            for node in consumers.get(value, ()):
                if node.op_type == "Gather" and node.input[1] == value and graph.attribute(node, "axis", 0) == 0:
                    table, _ = graph.walk_back(node.input[0], ("Cast", "Identity", "DequantizeLinear"))  # dims only: no Transpose
                    if table is not None and table.dims:
                        rows = int(table.dims[0])
                        if graph_input.name not in found or rows < found[graph_input.name][0]:
                            found[graph_input.name] = (rows, table.name or node.input[0])
                elif node.op_type in _KEEPS_IDS and node.input and node.input[0] == value and node.output[0] not in seen:
                    seen.add(node.output[0])
                    stack.append(node.output[0])
    return found
