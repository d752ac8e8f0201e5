"""The one place that says along which axis a layer's 2:4 pattern runs.

Sparse tensor cores, cuSPARSELt and TensorRT need 2 zeros in every 4 consecutive elements
along the GEMM *reduction* axis:

- ``nn.Linear`` weight ``[out, in]``: along ``in`` (dim 1).
- ``nn.Conv1d/2d/3d`` weight ``[K, C/groups, *kernel]``: along ``C`` (dim 1), separately for
  every output channel and kernel position -- the im2col order is (kernel..., C) with C
  fastest, TensorRT's rule for KCRS weights. Grouped convolutions are masked within each
  group because dim 1 already holds one group's channels.
- transformers' GPT-2 ``Conv1D`` weight ``[in, out]``: along dim 0.
- ``nn.MultiheadAttention``: ``in_proj_weight`` (or ``q/k/v_proj_weight``) like Linear;
  ``out_proj`` is an ``nn.Linear`` submodule.
- transformers' fused mixture-of-experts modules (``@use_experts_implementation``, and Llama 4's
  experts: one stacked parameter per projection, ``gate_up_proj`` (or ``up_proj``) and
  ``down_proj``), expert by expert: ``[experts, out, in]`` along ``in`` (dim 2); with
  ``is_transposed`` (and Llama 4) ``[experts, in, out]`` along dim 1. JetMoE's parallel experts
  (``JetMoeParallelExperts``: one ``weight [experts, out, in]`` per module, an ``F.linear`` per
  expert) the same, along dim 2.

In an ONNX graph (TensorRT's view, as in Polygraphy's ``sparse`` tool) the same rule reads:

- ``Conv`` W ``[K, C/group, *kernel]``: axis 1.
- ``Gemm`` B: axis 1 with ``transB`` (``[N, K]``, a Linear weight as is), else axis 0;
  a constant A: axis 0 with ``transA``, else axis 1.
- ``MatMul`` constant B ``[..., K, N]``: axis -2; constant A ``[..., M, K]``: axis -1.

In a torch.export graph (the export's name check) a weight is one of the operands in
:data:`ATEN_WEIGHT_OPERANDS` of an aten GEMM op; its axis is then checked on the ONNX side.

Masks, Taylor scores, verification, export checks and kernels all ask :func:`gemm_axes`
(PyTorch modules) or :func:`onnx_weight_axis` (ONNX nodes).

The data-aware criteria (Wanda, SparseGPT) see a weight as the GEMM it computes:
:func:`gemm_matrix` gives ``[parts, rows, d]`` (conv groups and the q/k/v blocks of
``in_proj_weight`` are parts) with the 2:4 groups as runs of 4 consecutive columns, and
:func:`gemm_columns` gives the layer's inputs, per part ``[tokens, d]``, in the same column
order. For a conv the columns are (kernel position..., C) with C fastest: every group of 4
runs along C at one kernel position (TensorRT's rule), never along the flattened C*R*S.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ATEN_WEIGHT_OPERANDS", "Axis", "GemmWeight", "conv1d_output_length", "from_gemm_groups", "from_gemm_matrix", "gemm_axes", "gemm_columns", "gemm_groups", "gemm_matrix", "gemm_weights", "is_fused_experts", "is_llama4_experts", "is_parallel_experts", "is_stacked_experts", "is_transformers_conv1d", "onnx_weight_axis"]


@dataclass(frozen=True)
class Axis:
    """Where a weight's GEMM dimensions live: ``reduction`` carries the 2:4 groups."""

    reduction: int
    output: int


# aten GEMM op -> the argument positions that can hold a weight (linear/conv: the weight;
# mm/matmul/bmm: either operand; addmm/baddbmm: mat2, then mat1), most likely first.
ATEN_WEIGHT_OPERANDS: dict[str, tuple[int, ...]] = {
    "linear": (1,),
    "conv1d": (1,),
    "conv2d": (1,),
    "conv3d": (1,),
    "convolution": (1,),
    "mm": (1, 0),
    "matmul": (1, 0),
    "bmm": (1, 0),
    "addmm": (2, 1),
    "baddbmm": (2, 1),
}

_LINEAR = Axis(reduction=1, output=0)
_CONV = Axis(reduction=1, output=0)
_TRANSPOSED_LINEAR = Axis(reduction=0, output=1)
_EXPERTS = Axis(reduction=2, output=1)  # [experts, out, in], each expert's slice a Linear weight
_TRANSPOSED_EXPERTS = Axis(reduction=1, output=2)  # [experts, in, out]


def is_transformers_conv1d(module: nn.Module) -> bool:
    """GPT-2 style ``Conv1D`` (weight ``[in, out]``), recognised without importing transformers."""
    return any(
        cls.__name__ == "Conv1D" and cls.__module__.split(".")[0] == "transformers"
        for cls in type(module).__mro__
    )


def is_fused_experts(module: nn.Module) -> bool:
    """A transformers fused mixture-of-experts module: one stacked ``[experts, ...]`` weight per projection.

    - A class decorated by ``use_experts_implementation``, which sets ``has_gate``, ``has_bias`` and
      ``is_transposed``: every experts implementation of transformers (eager, ``batched_mm``,
      ``grouped_mm``) computes, per expert ``e`` and routed token ``x``,
      ``down_proj[e] @ _apply_gate(gate_up_proj[e] @ x)`` (``act_fn(up_proj[e] @ x)`` without a gate).
    - Llama 4's ``Llama4TextExperts`` (``[experts, in, out]``), which runs every expert on its own rows of
      ``[experts * tokens, d]`` (each token scaled by its router score, 0 where not routed).
    """
    if not isinstance(getattr(module, "num_experts", None), int):
        return False
    return all(isinstance(getattr(module, flag, None), bool) for flag in ("has_gate", "has_bias", "is_transposed")) or is_llama4_experts(module)


def is_llama4_experts(module: nn.Module) -> bool:
    """Llama 4's ``Llama4TextExperts``: called with ``[experts * tokens, d]`` alone, a block of rows per expert."""
    cls = type(module)
    return cls.__name__ == "Llama4TextExperts" and cls.__module__.startswith("transformers.")


def is_parallel_experts(module: nn.Module) -> bool:
    """JetMoE's ``JetMoeParallelExperts`` (its feed-forward's and its attention's experts): one ``weight [experts,
    out, in]``, called as ``(rows [n, in], expert_size)`` with the rows grouped by expert, ``expert_size[e]`` of
    them expert ``e``'s, and computing ``F.linear(rows_e, weight[e])`` for each."""
    cls = type(module)
    if cls.__name__ != "JetMoeParallelExperts" or not cls.__module__.startswith("transformers."):
        return False
    weight = getattr(module, "weight", None)
    return isinstance(weight, Tensor) and weight.dim() == 3 and weight.shape[0] == getattr(module, "num_experts", None)


def is_stacked_experts(module: nn.Module) -> bool:
    """A module whose GEMM weights are stacked per expert (``[experts, ...]``, a part per expert): fused experts
    (:func:`is_fused_experts`) or JetMoE's parallel experts (:func:`is_parallel_experts`)."""
    return is_fused_experts(module) or is_parallel_experts(module)


def _experts_axes(module: nn.Module) -> dict[str, Axis]:
    if is_llama4_experts(module):
        axis, names = _TRANSPOSED_EXPERTS, ("gate_up_proj", "down_proj")
    else:
        axis = _TRANSPOSED_EXPERTS if module.is_transposed else _EXPERTS
        names = ("gate_up_proj" if module.has_gate else "up_proj", "down_proj")
    found = {}
    for name in names:
        param = getattr(module, name, None)
        if isinstance(param, Tensor) and param.dim() == 3 and param.shape[0] == module.num_experts:
            found[name] = axis
    return found


def gemm_axes(module: nn.Module) -> dict[str, Axis]:
    """Map each GEMM weight of ``module`` (by attribute name) to its :class:`Axis`.

    Returns an empty dict for modules that hold no GEMM weight of their own.
    """
    if isinstance(module, nn.Linear):
        return {"weight": _LINEAR}
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return {"weight": _CONV}
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            return {"in_proj_weight": _LINEAR}
        return {name: _LINEAR for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight")}
    if is_transformers_conv1d(module):
        return {"weight": _TRANSPOSED_LINEAR}
    if is_fused_experts(module):
        return _experts_axes(module)
    if is_parallel_experts(module):
        return {"weight": _EXPERTS}
    return {}


@dataclass(frozen=True)
class GemmWeight:
    """One GEMM weight of a model: the module that owns it and its 2:4 axis."""

    module_name: str
    module: nn.Module
    param_name: str
    axis: Axis

    @property
    def name(self) -> str:
        """Qualified parameter name, as in ``model.state_dict()``."""
        return f"{self.module_name}.{self.param_name}" if self.module_name else self.param_name

    @property
    def param(self) -> nn.Parameter:
        return getattr(self.module, self.param_name)

    @property
    def reduction_size(self) -> int:
        return self.param.shape[self.axis.reduction]

    @property
    def output_size(self) -> int:
        return self.param.shape[self.axis.output]


def gemm_weights(model: nn.Module) -> list[GemmWeight]:
    """Every GEMM weight in ``model`` that is a real parameter, in module order."""
    found = []
    for module_name, module in model.named_modules():
        for param_name, axis in gemm_axes(module).items():
            if isinstance(getattr(module, param_name, None), nn.Parameter):
                found.append(GemmWeight(module_name, module, param_name, axis))
    return found


def onnx_weight_axis(op_type: str, input_index: int, rank: int, *, trans_a: bool = False, trans_b: bool = False) -> Axis | None:
    """The :class:`Axis` of input ``input_index`` (of ``rank`` dims) of an ONNX Conv, Gemm or MatMul.

    ``None`` when that input is not a GEMM operand that could be a weight (a Conv's data
    input, a bias, another op type).
    """
    if op_type == "Conv":
        return _CONV if input_index == 1 else None
    if op_type == "Gemm":
        if input_index == 0:  # A is [M, K], or [K, M] with transA
            return Axis(reduction=0, output=1) if trans_a else Axis(reduction=1, output=0)
        if input_index == 1:  # B is [K, N], or [N, K] with transB (a Linear weight as is)
            return _LINEAR if trans_b else _TRANSPOSED_LINEAR
        return None
    if op_type == "MatMul" and rank >= 2:
        if input_index == 0:  # A [..., M, K]
            return Axis(reduction=rank - 1, output=rank - 2)
        if input_index == 1:  # B [..., K, N]
            return Axis(reduction=rank - 2, output=rank - 1)
    return None


def _is_experts(weight: GemmWeight) -> bool:
    return weight.axis in (_EXPERTS, _TRANSPOSED_EXPERTS)  # only stacked experts' weights are 3-D ones with these axes


def _parts(weight: GemmWeight) -> int:
    module = weight.module
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.groups
    if isinstance(module, nn.MultiheadAttention) and weight.param_name == "in_proj_weight":
        return 3
    return 1


def _rows(weight: GemmWeight, tensor: Tensor) -> Tensor:
    """``tensor`` (the weight's shape, or some of its dim-0 slices) as ``[rows, d]`` in GEMM column order.

    For weights not reduced along dim 0. A conv's columns are (kernel position, C), so that every
    run of 4 columns is 4 input channels at one kernel position: the TensorRT axis, never the
    flattened C*R*S. Sizes are spelled out: a shard may have no rows.
    """
    rows, rest = tensor.shape[0], math.prod(tensor.shape[1:])
    if isinstance(weight.module, nn.modules.conv._ConvNd):
        channels = tensor.shape[1]
        return tensor.reshape(rows, channels, rest // channels).transpose(1, 2).reshape(rows, rest)
    return tensor.reshape(rows, rest)


def _from_rows(weight: GemmWeight, matrix: Tensor, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """The inverse of :func:`_rows`: ``[rows, d]`` back to ``shape``."""
    if isinstance(weight.module, nn.modules.conv._ConvNd):
        return matrix.reshape(shape[0], math.prod(shape[2:]), shape[1]).transpose(1, 2).reshape(shape)
    return matrix.reshape(shape)


def gemm_matrix(weight: GemmWeight, tensor: Tensor | None = None) -> Tensor:
    """``tensor`` (default: the weight) shaped like the weight, as the GEMM's ``[parts, rows, d]``.

    The 2:4 groups are runs of 4 consecutive columns. A view where possible, else a copy;
    :func:`from_gemm_matrix` maps back.
    """
    tensor = weight.param if tensor is None else tensor
    if weight.axis.reduction == 0:  # transformers Conv1D: [in, out]
        return tensor.t().unsqueeze(0)
    if _is_experts(weight):  # [experts, out, in], or [experts, in, out] transposed: an expert per part
        return tensor.transpose(1, 2) if weight.axis == _TRANSPOSED_EXPERTS else tensor
    matrix = _rows(weight, tensor)
    parts = _parts(weight)  # conv groups (each its own GEMM) or in_proj's q, k, v
    return matrix.reshape(parts, matrix.shape[0] // parts, matrix.shape[1])


def from_gemm_matrix(weight: GemmWeight, matrix: Tensor) -> Tensor:
    """The inverse of :func:`gemm_matrix`: ``[parts, rows, d]`` back to the weight's shape."""
    shape = weight.param.shape
    if weight.axis.reduction == 0:
        return matrix[0].t().reshape(shape)
    if _is_experts(weight):
        return matrix.transpose(1, 2) if weight.axis == _TRANSPOSED_EXPERTS else matrix
    return _from_rows(weight, matrix.reshape(shape[0], matrix.shape[-1]), shape)


def gemm_groups(weight: GemmWeight, tensor: Tensor) -> Tensor:
    """``tensor`` as the 2:4 groups of :func:`gemm_matrix`, ``[a, b, 4]``, its dim 0 following the weight's dim 0.

    ``tensor`` has the weight's shape, or only some of its dim-0 slices (a shard of it, as FSDP2
    keeps). For a weight reduced along another dim (Linear, conv, ``in_proj``) ``a`` is the
    weight's rows and ``b`` the groups of a row; for one reduced along dim 0 (transformers
    ``Conv1D`` ``[in, out]``) ``a`` is its input features 4 at a time (a slice must start and end
    on a multiple of 4) and ``b`` its outputs. Each ``[..., 4]`` is one group, as the runs of 4
    columns of :func:`gemm_matrix`. :func:`from_gemm_groups` maps back.
    """
    if weight.axis.reduction == 0:
        return tensor.reshape(tensor.shape[0] // 4, 4, math.prod(tensor.shape[1:])).transpose(1, 2)
    if weight.axis == _TRANSPOSED_EXPERTS:  # [experts, in, out]: groups of 4 along dim 1
        experts, inputs, outputs = tensor.shape
        return tensor.reshape(experts, inputs // 4, 4, outputs).transpose(2, 3).reshape(experts, inputs // 4 * outputs, 4)
    matrix = _rows(weight, tensor)
    return matrix.reshape(matrix.shape[0], matrix.shape[1] // 4, 4)


def from_gemm_groups(weight: GemmWeight, groups: Tensor, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """The inverse of :func:`gemm_groups`: ``[a, b, 4]`` back to ``shape`` (the weight's, or its slices')."""
    if weight.axis.reduction == 0:
        return groups.transpose(1, 2).reshape(shape)
    if weight.axis == _TRANSPOSED_EXPERTS:
        experts, inputs, outputs = shape
        return groups.reshape(experts, inputs // 4, outputs, 4).transpose(2, 3).reshape(shape)
    return _from_rows(weight, groups.reshape(shape[0], math.prod(shape[1:])), shape)


def _conv_padding(module: nn.modules.conv._ConvNd, spatial: Sequence[int]) -> list[int]:
    """F.pad's list (last dim first) for the module's padding, 'same' and 'valid' included."""
    n = len(module.kernel_size)
    if module.padding == "valid":
        return [0] * (2 * n)
    if module.padding == "same":
        pads = []
        for d in reversed(range(n)):
            total = module.dilation[d] * (module.kernel_size[d] - 1)
            pads += [total // 2, total - total // 2]
        return pads
    return [p for d in reversed(range(n)) for p in (module.padding[d], module.padding[d])]


def conv1d_output_length(module: nn.Conv1d, length: Tensor) -> Tensor:
    """How many output positions ``module`` gives for inputs of ``length`` samples (elementwise, 0 at the least)."""
    left, right = _conv_padding(module, ())
    span = module.dilation[0] * (module.kernel_size[0] - 1) + 1
    return (torch.div(length + left + right - span, module.stride[0], rounding_mode="floor") + 1).clamp(min=0)


def gemm_columns(weight: GemmWeight, inputs: Sequence[Tensor]) -> list[Tensor]:
    """The layer's GEMM input columns, one ``[tokens, d]`` per part of :func:`gemm_matrix`, in its column order.

    ``inputs`` are the module's forward inputs (MultiheadAttention: query, key, value; fused experts:
    the hidden states and the routing's expert indices; JetMoE's parallel experts: the rows grouped by
    expert and ``expert_size``). The parts of a call have the same number
    of tokens, except ``in_proj_weight``'s when the query's length differs from the key's and
    value's (cross-attention, an attention-pooling probe), and the experts' (each its own tokens).
    """
    module = weight.module
    if _is_experts(weight):
        return _expert_columns(weight, inputs)
    if isinstance(module, nn.MultiheadAttention):
        if weight.param_name == "in_proj_weight":
            return [x.reshape(-1, x.shape[-1]) for x in inputs[:3]]
        index = ("q_proj_weight", "k_proj_weight", "v_proj_weight").index(weight.param_name)
        x = inputs[index]
        return [x.reshape(-1, x.shape[-1])]
    x = inputs[0]
    if not isinstance(module, nn.modules.conv._ConvNd):
        return [x.reshape(-1, x.shape[-1])]
    n = len(module.kernel_size)
    if x.dim() == n + 1:  # unbatched
        x = x.unsqueeze(0)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = F.pad(x, _conv_padding(module, x.shape[2:]), mode=mode)
    for d in range(n):  # sliding windows: [N, C, out..., kernel...]
        x = x.unfold(2 + d, module.dilation[d] * (module.kernel_size[d] - 1) + 1, module.stride[d])
        if module.dilation[d] > 1:
            x = x[..., :: module.dilation[d]]
    batch, channels = x.shape[0], x.shape[1]
    out = x.shape[2 : 2 + n]
    windows = x.reshape(batch, module.groups, channels // module.groups, *out, -1)  # kernel positions flattened
    windows = windows.movedim(2, -1)  # [N, G, out..., positions, C/G]
    windows = windows.movedim(1, 0)  # [G, N, out..., positions, C/G]
    return list(windows.reshape(module.groups, -1, windows.shape[-2] * windows.shape[-1]).unbind(0))


def _expert_columns(weight: GemmWeight, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Each expert's GEMM inputs: the tokens routed to it (``gate_up_proj``/``up_proj``), or their gated
    hidden states (``down_proj``, recomputed from the module's weights as its forward does).

    ``inputs``: the hidden states ``[tokens, d]`` and the expert indices ``[tokens, k]``; for Llama 4's
    experts, ``[experts * tokens, d]`` alone (every expert's rows, 0 where not routed); for JetMoE's
    parallel experts, the rows ``[n, d]`` grouped by expert and each expert's number of rows.
    """
    module = weight.module
    if is_parallel_experts(module):
        sizes = inputs[1].tolist() if isinstance(inputs[1], Tensor) else list(inputs[1])
        return list(inputs[0].reshape(-1, inputs[0].shape[-1]).split(sizes))
    llama4 = is_llama4_experts(module)
    hidden = inputs[0].reshape(-1, inputs[0].shape[-1])
    if llama4:
        routed = list(hidden.reshape(module.num_experts, -1, hidden.shape[-1]).unbind(0))
    else:
        index = inputs[1].reshape(hidden.shape[0], -1)
        routed = [hidden[(index == expert).any(-1)] for expert in range(module.num_experts)]
    if weight.param_name != "down_proj":
        return routed
    first = "gate_up_proj" if llama4 or module.has_gate else "up_proj"
    up = gemm_matrix(GemmWeight(weight.module_name, module, first, weight.axis))  # [experts, out, in]
    biases = getattr(module, f"{first}_bias") if not llama4 and module.has_bias else None
    parts = []
    for expert, x in enumerate(routed):
        x = F.linear(x, up[expert], None if biases is None else biases[expert])
        if llama4:
            gate, x = x.chunk(2, dim=-1)
            x = x * module.act_fn(gate)
        else:
            x = module._apply_gate(x) if module.has_gate else module.act_fn(x)
        parts.append(x)
    return parts
