"""Calibration statistics of GEMM inputs for the data-aware criteria, all at once or block by block.

- ``"norms"`` (Wanda): the L2 norm of every input column, ``[parts, d]``.
- ``"hessian"`` (SparseGPT): ``X^T X`` of the input columns, ``[parts, d, d]``, in fp32; where float32 cannot hold
  it well (its largest diagonal entry outside ``[2^-64, 2^64]``: inputs below ~1e-10, as in deep random
  initialisations), ``X^T X`` times the power of 4 that brings its largest input near ``2**32``, which SparseGPT's
  solution does not depend on.

Both are summed over any scale of inputs without underflow or overflow (:class:`ScaledSums`).

Columns are :func:`sparse24.axes.gemm_columns`'s: per input feature for Linear and ``Conv1D``,
per (kernel position, channel) for convs. Forward hooks add each batch's columns to the
sums as the model runs (activations are not kept), without gradients. Under
``torch.distributed`` the sums are all-reduced, so every rank computes the same masks. On an
FSDP2-sharded model every rank runs as many passes as the rank with the most batches (the
others repeat theirs with the hooks off: the passes' collectives must pair up); see
:mod:`sparse24.sharded`.

:class:`Sequential` runs a model block by block (the transformer layers, or any list of
submodules): it keeps only the current block's inputs (optionally on the CPU), gathers that
block's statistics, lets the caller prune it, and feeds the pruned block's outputs to the next
block, as in SparseGPT's sequential mode. Memory is bounded by one block's activations.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from . import dist
from .axes import GemmWeight, conv1d_output_length, gemm_columns, gemm_matrix, gemm_weights, is_fused_experts, is_llama4_experts, is_parallel_experts, is_stacked_experts
from .batch import call, to_device
from .enforce import is_sharded
from .errors import Sparse24Error, running
from .progress import Progress
from .source import calls_function, multiplies_by_weight, weight_reader

__all__ = ["KINDS", "Record", "Sequential", "find_blocks", "gather", "in_expert_module", "new_padding", "record", "run_batches", "run_order", "unscored_parts", "unseen_parts"]

logger = logging.getLogger(__name__)

KINDS = ("norms", "hessian")


# A batch's inputs that are the token sequence, its padding mask and what each token has beside it (bbox: a
# document's word boxes, which add no positions): a transformers text batch. Any other input that can hold rows
# (pixels, audio; not a flag such as use_cache=False, nor one value per sequence such as X-MOD's lang_ids: a language's
# adapter gets its sequences' rows, the whole batch's in order only where every sequence is in that language) means
# the layers' [batch, length] rows need not be the mask's tokens. An encoder-decoder's batch may also hold the
# decoder's sequence and mask.
_TEXT_KEYS = frozenset({"input_ids", "inputs_embeds", "attention_mask", "token_type_ids", "position_ids", "labels", "bbox"})
_DECODER_KEYS = frozenset({"decoder_input_ids", "decoder_inputs_embeds", "decoder_attention_mask"})
# A wav2vec 2.0-style speech batch: raw samples, their padding mask, CTC labels.
_AUDIO_KEYS = frozenset({"input_values", "attention_mask", "labels"})


def _may_hold_rows(value: Any) -> bool:
    """Whether a batch's value can be some input's rows: not a flag or a number (``use_cache=False``), nor a
    tensor of one value per sequence (X-MOD's ``lang_ids``) or a scalar."""
    if isinstance(value, Tensor):
        return value.dim() >= 2
    return value is not None and not isinstance(value, (bool, int, float, str))


def _padding_mask(batch: Mapping, mask_key: str, shape: tuple[int, ...]) -> Tensor | None:
    """``batch[mask_key]`` as a bool mask when it is a 0/1 ``[batch, length]`` mask of ``shape`` with some padding."""
    mask = batch.get(mask_key)
    if not isinstance(mask, Tensor) or tuple(mask.shape) != shape or shape[0] == shape[1]:
        return None
    if not bool(((mask == 0) | (mask == 1)).all()) or bool(mask.all()):
        return None
    return mask.bool()


def _feature_encoder(model: nn.Module) -> list[tuple[int, int]] | None:
    """The (kernel, stride) of each convolution of a wav2vec 2.0-style feature encoder (wav2vec2, HuBERT,
    WavLM, data2vec-audio...: the model computes its frames' mask from the samples' by these), or None."""
    config = getattr(model, "config", None)
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not callable(getattr(model, "_get_feat_extract_output_lengths", None)) or not kernels or not strides or len(kernels) != len(strides):
        return None
    return list(zip(kernels, strides))


_FORWARD_PARAMETERS: dict[type, frozenset[str]] = {}


def _names(module: nn.Module) -> frozenset[str]:
    """The parameters ``module``'s forward names (per class)."""
    cls = type(module)
    if cls not in _FORWARD_PARAMETERS:
        try:
            _FORWARD_PARAMETERS[cls] = frozenset(inspect.signature(cls.forward).parameters)
        except (TypeError, ValueError):
            _FORWARD_PARAMETERS[cls] = frozenset()
    return _FORWARD_PARAMETERS[cls]


def text_tower(model: nn.Module, others: frozenset[str]) -> frozenset[int | None] | None:
    """The ids of the modules whose ``[batch, length]`` rows are the text's positions in a batch that also has
    ``others`` (pixels, audio...): every module inside the largest submodules whose forward takes ``input_ids`` and
    in which no module's forward names one of ``others`` (a dual encoder's text model, a VLM's language model; where
    the layers take the pixels too, only the embeddings), and the output embeddings (an LM head reads the language
    model's positions, a VLM's image tokens among them). None where there are none. (Not ``inputs_embeds``: a
    vision tower's encoder, SigLIP's, takes its patches by that name.)"""
    children = {id(module): list(module.children()) for module in model.modules()}
    mixed: dict[int, bool] = {}
    for module in reversed(list(model.modules())):  # every module after those inside it
        mixed[id(module)] = bool(_names(module) & others) or any(mixed[id(child)] for child in children[id(module)])
    found: set[int | None] = set()
    pending = list(children[id(model)])
    while pending:
        module = pending.pop()
        if "input_ids" in _names(module) and not mixed[id(module)]:
            found |= {id(inner) for inner in module.modules()}
        else:
            pending += children[id(module)]
    if not found:
        return None
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        head = None
    if isinstance(head, nn.Module):
        found |= {id(head), None}  # None: the logits
    return frozenset(found)


class Padding:
    """Which token rows of the current batch are padding (a transformers text batch's ``attention_mask == 0``,
    and an encoder-decoder's ``decoder_attention_mask == 0``), so that Wanda's norms and SparseGPT's Hessians
    leave them out (as SparseML's SparseGPT did): a layer's input ``[batch, length, d]`` keeps its rows where
    the mask of its sequence is 1 (a time-first ``[length, batch, d]`` likewise). Applied only where the rows are unambiguous: 0/1 masks of the token
    inputs' ``[batch, length]`` with ``batch != length``, and a sequence
    told apart by its shape (an encoder-decoder's two sequences of one length only if their masks are
    equal; a decoder without ``decoder_input_ids`` or ``labels`` runs on the shifted ``input_ids``). A batch with
    other inputs too (pixels, audio; a document's word boxes are the text's, and flags or one value per sequence,
    such as ``use_cache=False`` or X-MOD's ``lang_ids``, hold no rows) has its mask applied
    only in the text tower (:func:`text_tower`: a dual encoder's text model, a VLM's language model and its head),
    where no module takes those inputs; elsewhere every row counts.

    A wav2vec 2.0-style speech model's batch (``input_values`` right-padded, ``attention_mask`` 0 on the pads)
    gets the frames' mask the model derives (the feature encoder's output lengths): rows ``[batch, frames, d]``
    keep the frames of real samples, and a ``Conv1d``'s input ``[batch, channels, length]`` at a length the
    encoder's convolutions produce keeps the output positions the unpadded input would have.
    Counts what it left out (token positions, or frames)."""

    def __init__(self, model: nn.Module) -> None:
        config = getattr(model, "config", None)
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self.stages = _feature_encoder(model)
        self.masks: dict[tuple[int, ...], tuple[Tensor, str]] = {}  # by [batch, length]: the mask, its key
        self.lengths: dict[tuple[int, int], Tensor] = {}  # by [batch, length]: each sequence's unpadded length (a Conv1d's input)
        self.counted: set[tuple[int, ...]] = set()
        self.keys: set[str] = set()  # the masks applied
        self.model = model
        self.towers: dict[frozenset[str], frozenset[int | None] | None] = {}  # by a batch's other inputs: text_tower's modules
        self.scope: frozenset[int | None] | None = None  # the current batch's: None where every module's rows are the text's
        self.unit = "token positions" if self.stages is None else "frames"  # what left_out and seen count
        self.left_out = 0  # token positions (frames), over the batches whose mask some layer applied
        self.seen = 0
        self.windows = False  # some Conv1d left out windows over padding

    def batch(self, batch: Any) -> None:
        """Set the current batch."""
        self.masks, self.lengths, self.counted, self.scope = {}, {}, set(), None
        if not isinstance(batch, Mapping):
            return
        inputs = frozenset(key for key, value in batch.items() if _may_hold_rows(value))
        if self.stages is not None and "input_values" in inputs and inputs <= _AUDIO_KEYS:
            self._audio(batch)
            return
        others = inputs - (_TEXT_KEYS | _DECODER_KEYS if self.encoder_decoder else _TEXT_KEYS)
        if others:
            if others not in self.towers:
                self.towers[others] = text_tower(self.model, others)
            self.scope = self.towers[others]
            if self.scope is None:
                return
        tokens = batch.get("input_ids", batch.get("inputs_embeds"))
        if not isinstance(tokens, Tensor) or tokens.dim() < 2:
            return
        sequences = [(tuple(tokens.shape[:2]), "attention_mask")]
        if self.encoder_decoder:
            decoder = next((batch[k] for k in ("decoder_input_ids", "decoder_inputs_embeds", "labels") if isinstance(batch.get(k), Tensor)), tokens)
            if decoder.dim() < 2:
                return
            sequences.append((tuple(decoder.shape[:2]), "decoder_attention_mask"))
        masks = [(shape, _padding_mask(batch, key, shape), key) for shape, key in sequences]
        for shape, mask, key in masks:
            others = [other for other_shape, other, _ in masks if other_shape == shape and other is not mask]
            if mask is not None and shape not in self.masks and all(other is not None and torch.equal(other, mask) for other in others):
                self.masks[shape] = (mask, key)

    def _audio(self, batch: Mapping) -> None:
        """The frames' mask and every convolution's input lengths of a right-padded speech batch (as the model
        reads the mask: its sum is each sequence's length)."""
        samples = batch["input_values"]
        if not isinstance(samples, Tensor) or samples.dim() != 2:
            return
        mask = _padding_mask(batch, "attention_mask", tuple(samples.shape))
        if mask is None:
            return
        batch_size, length = samples.shape
        lengths = mask.sum(-1)
        if not torch.equal(mask, torch.arange(length, device=mask.device) < lengths.unsqueeze(1)):
            return  # not right padding: the model's own frames' mask would not be these rows
        self.lengths[(batch_size, length)] = lengths
        sizes = torch.cat([lengths, lengths.new_tensor([length])])  # each sequence's length, then the padded one
        for kernel, stride in self.stages:  # each convolution's output: the next one's input; the last one's, the frames
            sizes = (torch.div(sizes - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
            self.lengths[(batch_size, int(sizes[-1]))] = sizes[:-1]  # (a Conformer's convolution reads the frames)
        frames = torch.arange(int(sizes[-1]), device=mask.device) < sizes[:-1].unsqueeze(1)
        if batch_size != frames.shape[1] and not bool(frames.all()):
            self.masks[tuple(frames.shape)] = (frames, "attention_mask")

    def covers(self, module: nn.Module | None) -> bool:
        """Whether the current masks apply to ``module``'s rows (``None``: the model's logits, an LM head's output)."""
        return self.scope is None or id(module) in self.scope

    def windows_kept(self, module: nn.Module, x: Tensor) -> Tensor | None:
        """``[batch * positions]`` bool: which of a ``Conv1d``'s output positions (its im2col rows) the unpadded
        inputs would have, when ``x`` ``[batch, channels, length]`` is at a length the current speech batch's
        convolutions produce; else None."""
        if not isinstance(module, nn.Conv1d) or x.dim() != 3:
            return None
        lengths = self.lengths.get((x.shape[0], x.shape[2]))
        if lengths is None:
            return None
        lengths = lengths.to(x.device)
        positions = int(conv1d_output_length(module, torch.tensor(x.shape[2])))
        keep = torch.arange(positions, device=x.device) < conv1d_output_length(module, lengths).unsqueeze(1)
        self.windows = self.windows or not bool(keep.all())
        return keep.flatten()

    def flat_rows(self, tokens: int, device: torch.device) -> Tensor | None:
        """The rows to keep of ``tokens`` flattened ``[batch * length]`` rows (an MoE block's experts see its
        hidden states so), when exactly one current mask has that many positions; else None."""
        shapes = [shape for shape in self.masks if shape[0] * shape[1] == tokens]
        if len(shapes) != 1:
            return None
        return self._mask(shapes[0], device).flatten()

    def rows(self, x: Tensor) -> Tensor:
        """``x`` without the padded rows when it is ``[batch, length, ...]`` of one of the current masks' shapes, or
        time-first ``[length, batch, ...]`` (XLNet's and FSMT's layers), or ``[batch * length, d]`` of exactly one
        (the hidden states an MoE block flattens for its shared expert and router: Qwen2-MoE's), else ``x``."""
        shape = tuple(x.shape[:2])
        if x.dim() >= 3 and shape in self.masks:
            return x[self._mask(shape, x.device)]
        if x.dim() >= 3 and shape[::-1] in self.masks:  # (batch != length: never both orders of one mask)
            return x[self._mask(shape[::-1], x.device).T]
        keep = self.flat_rows(x.shape[0], x.device) if x.dim() == 2 else None
        return x if keep is None else x[keep]

    def kept(self, shape: tuple[int, ...], device: torch.device) -> Tensor | None:
        """The current ``[batch, length]`` bool mask of the positions to keep when ``shape`` is one of the current
        masks' and the logits are the text's (counted as :meth:`rows` counts), else None."""
        return self._mask(shape, device) if shape in self.masks and self.covers(None) else None

    def _mask(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """The current mask of ``shape`` on ``device`` (kept there), counted in the totals once per batch."""
        mask, key = self.masks[shape]
        if mask.device != device:
            mask = mask.to(device)
            self.masks[shape] = (mask, key)
        if shape not in self.counted:
            self.counted.add(shape)
            self.keys.add(key)
            self.seen += mask.numel()
            self.left_out += int((~mask).sum())
        return mask


@dataclass
class Record:
    """What the statistics passes run inside :func:`record` saw, for the report's notes: every pass's
    :class:`Padding`, and per weight the parts whose inputs were all zero, as ``name -> (unseen parts,
    parts)``: in ``unseen`` a fused experts weight's experts that no calibration token was routed to, in
    ``zero`` any other weight (a layer whose inputs are all zero on every batch: dead activations); in ``unscored``
    the parts whose importance scores were all zero (:func:`unscored_parts`)."""

    passes: list[Padding] = field(default_factory=list)
    unseen: dict[str, tuple[int, int]] = field(default_factory=dict)
    zero: dict[str, tuple[int, int]] = field(default_factory=dict)
    unscored: dict[str, tuple[int, int]] = field(default_factory=dict)


_record: contextvars.ContextVar[Record | None] = contextvars.ContextVar("sparse24_calibration_record", default=None)


@contextlib.contextmanager
def record() -> Iterator[Record]:
    """Collect a :class:`Record` of the statistics passes and criteria run inside."""
    current = Record()
    token = _record.set(current)
    try:
        yield current
    finally:
        _record.reset(token)


def new_padding(model: nn.Module) -> Padding:
    """A :class:`Padding` for ``model`` whose counts the current :class:`Record` reports."""
    padding = Padding(model)
    current = _record.get()
    if current is not None:
        current.passes.append(padding)
    return padding


def unseen_parts(weight: GemmWeight, stat: Tensor) -> Tensor:
    """``[parts]`` bool: the parts of ``weight`` whose input columns were all zero in ``stat`` (norms or Hessian).

    A fused experts weight's expert that no calibration token was routed to has no statistics, nor has
    a layer whose inputs are zero on every batch (dead activations, as in some random initializations);
    the data-aware criteria give them magnitude's mask (counted in :class:`Record` for the report) rather
    than prune them blind (Wanda: all scores 0) or zero them (SparseGPT: every column dead).
    """
    diagonal = stat if stat.dim() == 2 else stat.diagonal(dim1=1, dim2=2)
    unseen = diagonal.sum(1) == 0
    if not bool(unseen.any()):
        return unseen
    experts = is_stacked_experts(weight.module) or in_expert_module(weight.module_name)
    current = _record.get()
    if current is not None:
        (current.unseen if experts else current.zero)[weight.name] = (int(unseen.sum()), unseen.numel())
    if experts:
        logger.warning("%s: %d of %d experts saw no calibration token (none was routed to them): magnitude's mask", weight.name, int(unseen.sum()), unseen.numel())
    else:
        logger.warning("%s: its inputs were zero on every calibration batch (%d of %d parts): magnitude's mask", weight.name, int(unseen.sum()), unseen.numel())
    return unseen


def unscored_parts(weight: GemmWeight, scores: Tensor, weights: Tensor) -> Tensor:
    """``[parts]`` bool: the parts of ``weight`` whose ``scores`` are all 0 while its ``weights`` are not (both as
    :func:`~sparse24.axes.gemm_matrix` gives them); counted in :class:`Record` and logged. Taylor's scores are 0 where
    no gradient reached a layer on any calibration batch: the caller gives those parts magnitude's mask."""
    unscored = scores.flatten(1).eq(0).all(1) & weights.flatten(1).ne(0).any(1)
    if bool(unscored.any()):
        current = _record.get()
        if current is not None:
            current.unscored[weight.name] = (int(unscored.sum()), unscored.numel())
        logger.warning("%s: its importance scores were 0 (%d of %d parts; taylor: no gradient reached it on any calibration batch): magnitude's mask", weight.name, int(unscored.sum()), unscored.numel())
    return unscored


def in_expert_module(module_name: str) -> bool:
    """A layer of one expert module among a router's (inside an ``experts`` ModuleDict or ModuleList:
    SwitchTransformers', NLLB-MoE's): a calibration may route no token to it, so it may never run."""
    return ".experts." in f".{module_name}"


# The largest |v| seen is scaled into [2**31, 2**32): its square is below 2**64 (2**63 of them sum to a finite float32),
# and a square underflows only where |v| is below 2**-95 of the largest. The power of two at or below it is kept in
# [2**-95, 2**125], where the scale factor 2**31 / it and the unit it / 2**31 are float32 normals.
_SCALED, _LOWEST, _HIGHEST = 2.0**31, 2.0**-95, 2.0**125
_EXPONENT_BITS = 0x7F800000  # a float32's exponent field: masking the rest off leaves the power of two at or below it


class ScaledSums:
    """Sums of ``|v|`` (``power=1``) or of squares and products (``power=2``) of values of any scale, exactly.

    The true sums are ``tensors * unit() ** power``. Each addition's values are multiplied by :meth:`scale` first,
    the power of two that brings the largest ``|v|`` seen so far to ``[2**31, 2**32)``; the sums are rescaled when it
    grows. In plain float32, squares of values below ~1e-19 are subnormal or 0 (a deep random-init network's last
    layers' inputs and gradients) and of values above ~1e19 infinite. Scaling by powers of two is exact, and
    :attr:`top` (that power of two, a float32 tensor) stays on the tensors' device: no host sync per addition, and
    about 10 small tensor ops, no dtype conversion (each is a kernel launch on a GPU).
    """

    def __init__(self, tensors: Sequence[Tensor], power: int) -> None:
        self.tensors, self.power = list(tensors), power
        like = {"dtype": torch.float32, "device": self.tensors[0].device}  # float32 whatever torch's default dtype
        self.top = torch.tensor(_LOWEST, **like)  # the power of two at or below the largest |v| seen
        self._highest, self._scaled = torch.tensor(_HIGHEST, **like), torch.tensor(_SCALED, **like)

    def rescale(self, top: Tensor) -> None:
        """Express the sums in the unit of ``top``, not below the current one (sums that become subnormal or 0 are
        below float32's precision beside what the new unit is for)."""
        factor = self.top / top
        if self.power == 2:
            factor = factor * factor
        for tensor in self.tensors:
            tensor.mul_(factor)
        self.top = top

    def scale(self, values: Sequence[Tensor]) -> Tensor:
        """The factor to multiply ``values`` by before their powers are added (the sums rescaled first where ``values``
        hold a larger ``|v|`` than any before)."""
        present = [v.detach() for v in values if v.numel()]
        if present:
            if len(present) == 1:  # one pass, no copy (torch's CPU inf-norm is slow)
                low, high = torch.aminmax(present[0])
            else:
                low, high = torch.aminmax(torch.cat([torch.stack(torch.aminmax(v)).float() for v in present]))
            largest = torch.maximum(high.float(), low.float().neg())  # max |v| (NaN where a value is NaN)
            power = (largest.view(torch.int32) & _EXPONENT_BITS).view(torch.float32)  # 0 for 0 and subnormals; Inf for NaN
            self.rescale(torch.minimum(torch.maximum(self.top, power), self._highest))
        return self._scaled / self.top

    def unit(self) -> Tensor:
        """``top / 2**31``: the sums times ``unit() ** power`` are their true values."""
        return self.top / self._scaled

    def to_true_values(self) -> None:
        """Multiply the sums by ``unit() ** power`` in place (one factor at a time: each is a float32 normal)."""
        unit = self.unit()
        for tensor in self.tensors:
            for _ in range(self.power):
                tensor.mul_(unit)


def all_finite(tensor: Tensor) -> bool:
    """Whether every value of ``tensor`` is finite, in one pass with no temporary: its least and greatest values
    (NaN propagates to both). ``isfinite().all()`` writes a bool tensor as large and reads it again, several times
    slower on a Hessian of a wide conv's columns."""
    if not tensor.numel():
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def in_float32_range(largest: float) -> bool:
    """Whether sums whose largest true value is ``largest`` are well held by float32 in their true scale (from
    ``2**-64`` to ``2**64``: the smaller values in them keep 62 powers of two before they underflow)."""
    return 2.0**-64 <= largest <= 2.0**64


class _Sums(ScaledSums):
    """One weight's sums of its input columns' squares (``"norms"``) or products (``"hessian"``) (:class:`ScaledSums`)."""

    def __init__(self, weight: GemmWeight, kind: str) -> None:
        parts, _, d = gemm_matrix(weight, torch.empty(weight.param.shape, device="meta")).shape  # the shape only: a sharded weight stays put
        self.kind, self.name = kind, weight.name
        super().__init__([torch.zeros((parts, d) if kind == "norms" else (parts, d, d), dtype=torch.float32, device=weight.param.device)], power=2)

    @property
    def sums(self) -> Tensor:
        """``[parts, d]`` or ``[parts, d, d]``, in the current unit."""
        return self.tensors[0]

    def add(self, parts: Sequence[Tensor]) -> None:
        """Add one call's input columns, one ``[rows, d]`` matrix per part."""
        parts = [columns.detach().float() for columns in parts]
        scale = self.scale(parts)
        for stat, columns in zip(self.sums, parts):  # a conv group, or in_proj's q, k or v
            columns = columns * scale
            if self.kind == "norms":
                stat.add_(columns.square_().sum(0))  # (a scaled copy)
            else:
                stat.addmm_(columns.T, columns)

    def result(self) -> Tensor:
        """The norms, or the Hessian (scaled only where float32 cannot hold it well, as the module says); a clear
        error where the inputs held NaN or Inf (no criterion can rank by them)."""
        if not all_finite(self.sums):
            raise Sparse24Error(
                f"{self.kind} calibration: {self.name}: the layer's inputs hold NaN or Inf; check the calibration data "
                "and the model's outputs before this layer; nothing was changed"
            )
        unit = self.unit()
        if self.kind == "norms":
            return self.sums.sqrt_().mul_(unit)
        largest = float(self.sums.diagonal(dim1=1, dim2=2).max()) if self.sums.numel() else 0.0
        true = largest * float(unit) ** 2
        if largest == 0 or in_float32_range(true):
            self.to_true_values()
            return self.sums
        logger.info("%s: its inputs' X^T X is outside float32's good range (largest diagonal entry %.3g): kept times %.3g", self.name, true, largest / true)
        return self.sums


@contextlib.contextmanager
def _hooks(model: nn.Module, weights: Sequence[GemmWeight], stats: dict[int, _Sums], counts: dict[int, int], keys: Sequence[int], padding: Padding | None = None) -> Iterator[None]:
    """Forward pre-hooks adding each call's input columns to ``stats`` under ``keys`` (one per weight, ``id(param)``
    taken outside any pass: inside a sharded one a module holds its unsharded parameter); a Linear's or
    ``Conv1D``'s input without ``padding``'s padded rows."""
    by_module: dict[int, list[tuple[GemmWeight, int]]] = {}
    for weight, key in zip(weights, keys):
        by_module.setdefault(id(weight.module), []).append((weight, key))
    routers = _parallel_experts_routers(model, weights)  # JetMoE's experts module -> its block's router
    routing: dict[int, tuple[int, Tensor]] = {}  # a router's last call: its number of tokens, each routed row's token

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs, tokens, keep = list(args), None, None
        scoped = padding if padding is not None and padding.covers(module) else None  # a text batch's mask, where its rows are the text's
        if isinstance(module, nn.MultiheadAttention):
            for name in ("query", "key", "value")[len(inputs) :]:
                inputs.append(kwargs[name])
        elif is_fused_experts(module):
            inputs, tokens = _routed(module, args, kwargs, scoped)
        elif is_parallel_experts(module):
            router = routers.get(id(module))
            inputs, tokens = _grouped_rows(module, args, kwargs, scoped, None if router is None else routing.get(id(router)))
        elif scoped is not None and inputs and isinstance(inputs[0], Tensor) and not isinstance(module, nn.modules.conv._ConvNd):
            inputs[0] = scoped.rows(inputs[0])
        elif scoped is not None and inputs and isinstance(inputs[0], Tensor):
            keep = scoped.windows_kept(module, inputs[0])
        for weight, key in by_module[id(module)]:
            parts = gemm_columns(weight, inputs)
            if keep is not None:
                parts = [columns[keep] for columns in parts]
            stats[key].add(parts)
            counts[key] += parts[0].shape[0] if tokens is None else tokens  # the query's tokens where in_proj's parts differ

    handles = [
        _ConvInputs(w.module, hook) if _own_conv_forward(w.module) else w.module.register_forward_pre_hook(hook, with_kwargs=True)
        for w in {id(w.module): w for w in weights}.values()
    ]
    for router in {id(r): r for r in routers.values()}.values():  # its outputs: (sorted slots, batch_index, gates, expert_size, logits)
        handles.append(router.register_forward_hook(lambda m, args, out: routing.__setitem__(id(m), (args[0].shape[0], out[1]))))
    # nn.MultiheadAttention applies out_proj.weight itself (its forward never calls out_proj):
    # recompute the attention output before the projection from the MHA's own inputs.
    for attention in _attention_owners(model, weights):
        handles.append(attention.register_forward_hook(lambda m, args, kwargs, out: hook(m.out_proj, (_attention_values(m, args, kwargs),), {}), with_kwargs=True))
    functional = _linears_whose_parent(model, weights, lambda parent, _: functional_attention(parent))
    if functional:
        handles.append(_FunctionalAttentionInputs(functional, hook))
    multiplied = _linears_whose_parent(model, weights, multiplies_by_weight)
    if multiplied:
        handles.append(_MatmulInputs(multiplied, hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _own_conv_forward(module: nn.Module) -> bool:
    """A convolution whose class has a forward of its own: what that forward receives need not be the convolution's
    input (Parakeet's CTC head, a ``Conv1d``, transposes ``[batch, length, channels]`` before calling torch's)."""
    base = next((cls for cls in _CONVS if isinstance(module, cls)), None)
    return base is not None and type(module).forward is not base.forward


class _ConvInputs:
    """Calls ``hook(module, (input,), {})`` with the input of ``module``'s convolution itself (torch's
    ``_conv_forward``, which its forward calls), for a convolution class with a forward of its own; ``remove()``
    undoes it, as a hook's handle does."""

    def __init__(self, module: nn.Module, hook: Callable[[nn.Module, tuple, dict], None]) -> None:
        self.module = module

        def conv_forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
            hook(module, (x,), {})
            return type(module)._conv_forward(module, x, weight, bias)

        module._conv_forward = conv_forward  # an instance attribute over the class's method

    def remove(self) -> None:
        self.module.__dict__.pop("_conv_forward", None)


def _routed(module: nn.Module, args: tuple, kwargs: dict, padding: Padding | None) -> tuple[list[Tensor], int]:
    """A fused experts module's call as :func:`sparse24.axes.gemm_columns` takes it, without ``padding``'s padded
    token rows, and its number of tokens: ``[hidden states [tokens, d], expert indices [tokens, k]]`` (its
    forward's first two parameters, whatever their names: ``top_k_index``, ``router_indices``, ...), or for
    Llama 4's experts ``[hidden states [experts * tokens, d]]``."""
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    values = list(bound.arguments.values())
    hidden = values[0].reshape(-1, values[0].shape[-1])
    if is_llama4_experts(module):  # every expert's rows, a block per expert
        rows = hidden.reshape(module.num_experts, -1, hidden.shape[-1])
        keep = padding.flat_rows(rows.shape[1], rows.device) if padding is not None else None
        rows = rows if keep is None else rows[:, keep]
        return [rows.reshape(-1, rows.shape[-1])], rows.shape[1]
    inputs = [hidden, values[1].reshape(hidden.shape[0], -1)]
    keep = padding.flat_rows(hidden.shape[0], hidden.device) if padding is not None else None
    if keep is not None:
        inputs = [x[keep] for x in inputs]
    return inputs, inputs[0].shape[0]


def _parallel_experts_routers(model: nn.Module, weights: Sequence[GemmWeight]) -> dict[int, nn.Module]:
    """For each JetMoE parallel experts module among ``weights``: the router of the block in ``model`` that holds it
    (its ``router``, a ``JetMoeTopKGating``), whose ``batch_index`` says which token each of the experts' rows is."""
    wanted = {id(w.module) for w in weights if is_parallel_experts(w.module)}
    found = {}
    for block in model.modules() if wanted else ():
        router = getattr(block, "router", None)
        if type(router).__name__ == "JetMoeTopKGating":
            found |= {id(child): router for child in block.children() if id(child) in wanted}
    return found


def _grouped_rows(module: nn.Module, args: tuple, kwargs: dict, padding: Padding | None, routing: tuple[int, Tensor] | None) -> tuple[list[Tensor], int]:
    """A JetMoE parallel experts call as :func:`sparse24.axes.gemm_columns` takes it, ``[rows [n, d], each expert's
    number of rows]``, without ``padding``'s padded tokens' rows, and its number of tokens. ``routing``: its router's
    last call (the number of tokens, and ``batch_index``: each row's token); without it the rows stay and count as
    tokens."""
    rows, sizes = inspect.signature(module.forward).bind(*args, **kwargs).arguments.values()
    sizes = sizes.tolist() if isinstance(sizes, Tensor) else list(sizes)
    if routing is None or routing[1].shape[0] != rows.shape[0]:
        return [rows, sizes], rows.shape[0]
    tokens, batch_index = routing
    keep = padding.flat_rows(tokens, rows.device) if padding is not None else None
    if keep is None:
        return [rows, sizes], tokens
    kept = keep[batch_index.to(rows.device)]
    sizes = [int(part.sum()) for part in kept.split(sizes)]
    return [rows[kept], sizes], int(keep.sum())


def _attention_owners(model: nn.Module, weights: Sequence[GemmWeight]) -> list[nn.MultiheadAttention]:
    """The MultiheadAttention modules of ``model`` whose ``out_proj`` is among ``weights``."""
    modules = {id(w.module) for w in weights}
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) and id(m.out_proj) in modules]


def _attention_values(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> Tensor:
    """The attention output of ``module`` before ``out_proj``: its forward, with an identity projection."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    query, key, value = bound["query"], bound["key"], bound["value"]
    if module.batch_first and query.dim() == 3:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    identity = torch.eye(module.embed_dim, dtype=query.dtype, device=query.device)
    output, _ = F.multi_head_attention_forward(
        query, key, value, module.embed_dim, module.num_heads,
        module.in_proj_weight, module.in_proj_bias, module.bias_k, module.bias_v, module.add_zero_attn,
        0.0, identity, None, training=False,
        key_padding_mask=bound.get("key_padding_mask"), need_weights=False, attn_mask=bound.get("attn_mask"),
        use_separate_proj_weight=not module._qkv_same_embed_dim,
        q_proj_weight=module.q_proj_weight, k_proj_weight=module.k_proj_weight, v_proj_weight=module.v_proj_weight,
        is_causal=bool(bound.get("is_causal", False)),
    )
    return output.transpose(0, 1) if module.batch_first and output.dim() == 3 else output


def functional_attention(module: nn.Module) -> bool:
    """Whether ``module`` is an attention whose code hands its projections' weights to
    ``F.multi_head_attention_forward`` rather than calling them (WavLM's): not ``nn.MultiheadAttention``, whose
    ``out_proj`` the calibration recomputes from the module's own inputs."""
    return not isinstance(module, nn.MultiheadAttention) and calls_function(module, "multi_head_attention_forward")


def _linears_whose_parent(model: nn.Module, weights: Sequence[GemmWeight], uses: Callable[[nn.Module, str], bool]) -> list[nn.Linear]:
    """The Linear layers among ``weights`` whose parent in ``model`` uses their weight itself: ``uses(parent, name)``
    (:func:`functional_attention`, :func:`sparse24.source.multiplies_by_weight`)."""
    parents = {id(child): (parent, name) for parent in model.modules() for name, child in parent.named_children()}
    return list({
        id(w.module): w.module for w in weights
        if isinstance(w.module, nn.Linear) and w.param_name == "weight" and id(w.module) in parents and uses(*parents[id(w.module)])
    }.values())


class _FunctionalAttentionInputs:
    """While set, ``F.multi_head_attention_forward`` calls ``hook(layer, (input,), {})`` for each of ``layers`` whose
    weight it is given as ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` (the query, key or value) or
    ``out_proj_weight`` (the attention output before the projection: the same call with an identity projection),
    each ``[batch, length, d]`` as a Linear's input is; ``remove()`` puts torch's function back."""

    _INPUTS = {"q_proj_weight": "query", "k_proj_weight": "key", "v_proj_weight": "value"}

    def __init__(self, layers: Sequence[nn.Linear], hook: Callable[[nn.Module, tuple, dict], None]) -> None:
        original = F.multi_head_attention_forward
        signature = inspect.signature(original)

        def rows(x: Tensor) -> Tensor:  # [length, batch, d] -> [batch, length, d]; unbatched [length, d] stays
            return x.transpose(0, 1) if x.dim() == 3 else x

        def multi_head_attention_forward(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
            given = signature.bind(*args, **kwargs).arguments
            for layer in layers:
                weight = layer.weight  # read now: inside an FSDP pass, the unsharded parameter the forward passes
                for key, name in self._INPUTS.items():
                    if given.get(key) is weight:
                        hook(layer, (rows(given[name]),), {})
                if given.get("out_proj_weight") is weight:
                    identity = signature.bind(*args, **kwargs)
                    identity.arguments.update(out_proj_weight=torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device), out_proj_bias=None, need_weights=False)
                    values, _ = original(*identity.args, **identity.kwargs)
                    hook(layer, (rows(values),), {})
            return original(*args, **kwargs)

        self.original = original
        F.multi_head_attention_forward = multi_head_attention_forward

    def remove(self) -> None:
        F.multi_head_attention_forward = self.original


class _MatmulInputs(TorchFunctionMode):
    """While set, a matmul whose left operand is one of ``layers``' weights (``W @ y``: Mamba's
    ``dt_proj.weight @ time_step.transpose(1, 2)``) calls ``hook(layer, (x,), {})`` with ``x = y^T``, the
    ``[..., in_features]`` input that ``layer(x)`` would have been given; ``remove()`` ends it."""

    _MATMULS = frozenset({torch.matmul, Tensor.matmul, Tensor.__matmul__})

    def __init__(self, layers: Sequence[nn.Linear], hook: Callable[[nn.Module, tuple, dict], None]) -> None:
        super().__init__()
        self.layers, self.hook = layers, hook
        self.__enter__()

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._MATMULS and len(args) == 2 and isinstance(args[1], Tensor) and args[1].dim() >= 1:
            for layer in self.layers:
                if args[0] is layer.weight:  # read now: inside an FSDP pass, the unsharded parameter the forward uses
                    right = args[1]
                    self.hook(layer, (right.unsqueeze(0) if right.dim() == 1 else right.transpose(-1, -2),), {})
        return func(*args, **kwargs)

    def remove(self) -> None:
        self.__exit__(None, None, None)


def _all_reduce(stats: dict[int, _Sums], counts: dict[int, int]) -> None:
    """Every rank's sums added up, in the unit of the largest power of two any rank has."""
    if dist.world_size() <= 1:
        return
    import torch.distributed as torch_dist

    for key, stat in stats.items():
        top = stat.top.clone()
        torch_dist.all_reduce(top, op=torch_dist.ReduceOp.MAX)
        stat.rescale(top)
        torch_dist.all_reduce(stat.sums, op=torch_dist.ReduceOp.SUM)
        count = torch.tensor([counts[key]], dtype=torch.float64, device=stat.sums.device)
        torch_dist.all_reduce(count, op=torch_dist.ReduceOp.SUM)
        counts[key] = int(count.item())


def run_batches(
    model: nn.Module,
    data: Iterable[Any],
    *,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None,
    num_batches: int | None,
    what: str,
    progress: bool,
    padding: Padding | None = None,
) -> int:
    """Forward every calibration batch through ``model`` without gradients; return how many ran.

    ``loss_fn(model, batch)`` runs a batch when given (its value is ignored), else ``model(batch)``;
    ``padding`` is told each batch first.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total = num_batches
    if hasattr(data, "__len__"):
        total = len(data) if num_batches is None else min(num_batches, len(data))
    seen = 0
    with torch.no_grad(), Progress(logger, what, total, enabled=progress and dist.is_main()) as bar:
        for batch in data:
            if num_batches is not None and seen >= num_batches:
                break
            batch = to_device(batch, device)
            if padding is not None:
                padding.batch(batch)
            with running(f"running calibration batch {seen} ({what})"):
                if loss_fn is not None:
                    loss_fn(model, batch)
                else:
                    call(model, batch)
            seen += 1
            bar.update()
    if seen == 0:
        raise Sparse24Error("calibration data yielded no batches")
    return seen


def called_on_first_batch(model: nn.Module, modules: Sequence[nn.Module], data: Iterable[Any], loss_fn: Callable[[nn.Module, Any], Tensor] | None) -> list[int]:
    """The ``id`` of each of ``modules`` that the calibration forward of ``data``'s first batch calls, in the order
    it first calls them."""
    ran: dict[int, None] = {}
    handles = [module.register_forward_pre_hook(lambda m, args: ran.setdefault(id(m))) for module in modules]
    try:
        with _eval(model):
            run_batches(model, data, loss_fn=loss_fn, num_batches=1, what="which layers run", progress=False)
    finally:
        for handle in handles:
            handle.remove()
    return list(ran)


def run_order(model: nn.Module, blocks: Sequence[tuple[str, nn.Module]], data: Sequence[Any], loss_fn: Callable[[nn.Module, Any], Tensor] | None) -> list[tuple[str, nn.Module]]:
    """``blocks`` in the order one calibration forward of ``data``'s first batch first calls them (any it does not
    call last, as listed); on an FSDP-sharded model, rank 0's first batch on every rank, so that every rank gets the
    same order."""
    modules = [block for _, block in blocks]
    if is_sharded(model):
        from .sharded import agreed_batches, broadcast_batch, in_pass

        mine, _ = agreed_batches(data, 1, "sequential: the order of the blocks")
        with in_pass("sequential: the order of the blocks", model):
            first = broadcast_batch(mine[0] if dist.rank() == 0 else None, 0)
            ran = called_on_first_batch(model, modules, [first], loss_fn)
    else:
        ran = called_on_first_batch(model, modules, data, loss_fn)
    position = {key: place for place, key in enumerate(ran)}
    ordered = sorted(blocks, key=lambda item: position.get(id(item[1]), len(ran)))
    if [name for name, _ in ordered] != [name for name, _ in blocks]:
        logger.info("sequential: the forward runs the blocks in another order than listed; calibrating them as it runs them: %s", ", ".join(name for name, _ in ordered))
    return ordered


def gather(
    model: nn.Module,
    weights: Sequence[GemmWeight],
    kind: str,
    data: Iterable[Any],
    *,
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    num_batches: int | None = None,
    progress: bool = True,
) -> tuple[dict[int, Tensor], dict[int, int]]:
    """``kind`` statistics of every weight's inputs over the calibration data, in one pass.

    Returns ``(stats, token counts)``, both keyed by ``id(weight.param)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if data is None:
        raise ValueError("this method needs calibration data: sparsify(model, method, data=...)")
    keys = [id(w.param) for w in weights]
    stats = {id(w.param): _Sums(w, kind) for w in weights}
    counts = dict.fromkeys(stats, 0)
    tokens = new_padding(model)
    if is_sharded(model):
        from .sharded import agreed_batches, in_pass, padding

        batches, per_rank = agreed_batches(data, num_batches, f"{kind} calibration")
        with _eval(model), in_pass(f"{kind} calibration", model):
            with _hooks(model, weights, stats, counts, keys, tokens):
                run_batches(model, batches, loss_fn=loss_fn, num_batches=None, what=f"{kind} calibration", progress=progress, padding=tokens)
            extra = padding(batches, max(per_rank))
            if extra:
                run_batches(model, extra, loss_fn=loss_fn, num_batches=None, what="padding passes", progress=False)
    else:
        with _eval(model), _hooks(model, weights, stats, counts, keys, tokens):
            run_batches(model, data, loss_fn=loss_fn, num_batches=num_batches, what=f"{kind} calibration", progress=progress, padding=tokens)
    _all_reduce(stats, counts)
    _check_seen(weights, counts, model)  # after the sums: a layer one rank never ran is fine if another did
    return {key: stat.result() for key, stat in stats.items()}, counts


def _check_seen(weights: Sequence[GemmWeight], counts: dict[int, int], model: nn.Module) -> None:
    """An error naming the layers no calibration pass ran, but for an expert module no token was routed to
    (:func:`unseen_parts` gives it magnitude's mask)."""
    unseen = [w for w in weights if counts[id(w.param)] == 0 and not in_expert_module(w.module_name)]
    if not unseen:
        return
    names = f"{', '.join(w.name for w in unseen[:5])}{' ...' if len(unseen) > 5 else ''}"
    first = unseen[0]
    child = first.module_name.rpartition(".")[2]
    reader = weight_reader(model, first.module_name, metadata=False)  # a Mamba mixer's fused path reads dt_proj.weight itself
    why = f" ({type(reader[0]).__name__} uses {child}.weight without calling {child} here)" if reader is not None else ""
    # every layer the forward never ran, by its name with any index in a list of blocks as * (a layer of the same name
    # elsewhere, which did run, stays calibrated)
    globs = list(dict.fromkeys(".".join("*" if part.isdigit() else part for part in w.module_name.split(".")) for w in unseen))
    glob = globs[0] if len(globs) == 1 else globs
    raise Sparse24Error(f"the calibration forward never ran {names}{why}: no input statistics for it (exclude it: exclude={glob!r}, or check loss_fn)")


@contextlib.contextmanager
def no_kv_cache(model: nn.Module) -> Iterator[None]:
    """transformers models (any module's ``config.use_cache``) without a KV cache for the block, restored after:
    calibration never reads one; building it costs memory, and some models' (RWKV's) cached state is
    updated in place, which breaks the backward of an eval-mode forward. A batch that passes
    ``use_cache`` itself still decides."""
    configs = {id(c): c for m in model.modules() if isinstance(getattr(c := getattr(m, "config", None), "use_cache", None), bool)}
    saved = [(config, config.use_cache) for config in configs.values()]
    for config, _ in saved:
        config.use_cache = False
    try:
        yield
    finally:
        for config, value in saved:
            config.use_cache = value


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Calibrate in eval mode (no dropout, BatchNorm statistics untouched) without a KV cache; restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_kv_cache(model):
            yield
    finally:
        for module, training in modes:
            module.training = training


def repeated_blocks(model: nn.Module) -> list[tuple[str, nn.ModuleList | nn.Sequential]]:
    """Every ``nn.ModuleList`` of same-typed modules holding GEMM weights (a model's transformer layers; one layer
    is a list too), and every ``nn.Sequential`` of same-typed blocks holding them (timm's and MGP-STR's ViT blocks,
    torchvision's ResNet stages; not a chain of bare layers), in module order, nested ones included; not a list of
    lists (PoolFormer's stages), whose elements have no forward to run: the inner lists are its blocks."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) >= 1 and len({type(m) for m in module}) == 1
        and (isinstance(module, nn.ModuleList) or any(True for _ in module[0].children()))  # a Sequential of blocks
        and not isinstance(module[0], (nn.ModuleList, nn.ModuleDict)) and gemm_weights(module[0])
    ]


def qualified(prefix: str, name: str | int) -> str:
    """The full name of submodule ``name`` (an attribute, or a list's index) of the module named ``prefix`` (the model
    itself: ``""``)."""
    return f"{prefix}.{name}" if prefix else str(name)


def inside(name: str, outer: str) -> bool:
    """Whether the module named ``name`` is nested in the one named ``outer`` (the model itself: ``""``)."""
    return name.startswith(f"{outer}.") if outer else name != ""


def within(name: str, outer: str) -> bool:
    """Whether the module named ``name`` is the one named ``outer`` or nested in it."""
    return name == outer or inside(name, outer)


def find_blocks(model: nn.Module, spec: bool | str | Sequence[str], weights: Sequence[GemmWeight] | None = None) -> list[tuple[str, nn.Module]]:
    """The blocks of a sequential run: ``True`` finds the layer stacks that hold ``weights`` (every GEMM weight when
    None): the blocks holding one of them in each outermost :func:`repeated_blocks` list (a decoder's layers; an
    encoder's and a decoder's; a vision or audio tower's and a language model's), in module order, else, for a hybrid
    model such as Jamba whose layers are of two kinds, each outermost ``ModuleList`` of two or more modules that all
    hold GEMM weights. (The calibration puts them in the order the forward runs them.) A string names a ``ModuleList``/``Sequential``, a sequence names the blocks themselves."""
    modules = dict(model.named_modules())
    if spec is True:
        held = None if weights is None else {id(w.param) for w in weights}

        def holds(block: nn.Module) -> bool:
            return bool(gemm_weights(block)) if held is None else any(id(p) in held for p in block.parameters())

        def mixed() -> list[tuple[str, nn.Module]]:  # a hybrid model's lists of layers of several kinds
            return [
                (name, module) for name, module in model.named_modules()
                if isinstance(module, nn.ModuleList) and len(module) >= 2 and all(gemm_weights(m) for m in module)
            ]

        # each list with its blocks that hold a weight to prune: only those are blocks, the others run within the
        # forward as any module does (SAM 3's pixel decoder has a conv layer per feature level, one of which its
        # forward never runs)
        stacks: list[tuple[str, list[tuple[int, nn.Module]]]] = []
        for found in (lambda: repeated_blocks(model), mixed):  # the hybrid lists only where no repeated list holds one
            lists = [(name, [(i, block) for i, block in enumerate(module) if holds(block)]) for name, module in found()]
            lists = [(name, blocks) for name, blocks in lists if blocks]
            stacks = [(name, blocks) for name, blocks in lists if not any(inside(name, outer) for outer, _ in lists)]
            if stacks:
                break
        if not stacks:
            raise Sparse24Error(f"sequential=True found no list of repeated blocks in {type(model).__name__} holding the weights to prune; name them: sequential=['block1', 'block2', ...]")
        return [(qualified(name, i), block) for name, blocks in stacks for i, block in blocks]
    if isinstance(spec, str):
        container = modules.get(spec)
        if not isinstance(container, (nn.ModuleList, nn.Sequential)):
            raise Sparse24Error(f"sequential={spec!r} is not a ModuleList or Sequential of {type(model).__name__}")
        return [(f"{spec}.{name}", m) for name, m in container.named_children()]
    names = list(spec)
    missing = [n for n in names if n not in modules]
    if missing or not names:
        raise Sparse24Error(f"sequential: no module named {missing[0] if missing else '(empty list)'} in {type(model).__name__}")
    return [(n, modules[n]) for n in names]


_CACHE_KEYS = ("past_key_value", "past_key_values", "layer_past")  # the names; any Cache object goes too (_is_cache)


def _is_cache(value: Any) -> bool:
    """A transformers KV cache (``DynamicCache`` and friends), recognised without importing transformers."""
    return type(value).__name__.endswith("Cache") and hasattr(value, "update")


class _Stop(Exception):
    """Raised by a pre-hook to end a forward pass once the wanted block's inputs are captured."""


def _output_tensor(output: Any) -> Tensor | None:
    """A block's output as the next block's first input: the tensor itself, or a tuple's first item when it is one
    (a transformers layer's ``(hidden_states, attentions)``); None for anything else (Grounding DINO's
    ``((vision, attentions), (text, attentions))``), whose next block is re-captured from the model instead."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    return None


def _same(a: Any, b: Any) -> bool:
    """Whether two block inputs are the same value: tensors equal in shape, dtype and elements, containers item by item."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an object whose == is not a truth value: not known to be the same
        return False


class Sequential:
    """Block-by-block calibration: inputs of one block at a time, from the already pruned blocks before it, the blocks
    in the order the forward runs them (:func:`run_order`: :attr:`blocks` is that order).

    For each block, :meth:`gather` returns its weights' statistics from its own stored inputs,
    the caller prunes it, then :meth:`advance` computes its outputs as the next block's inputs.
    A block's stored input is re-captured from the model (previous blocks pruned) unless its
    first input is the previous block's output and its other inputs are the previous block's,
    in every batch (checked once, on the dense model: T5's later blocks take the position bias
    block 0 computes, Swin's stages their own sizes, a full-attention layer after a
    sliding-window one another mask where a batch is longer than the window).

    On an FSDP2-sharded model every rank runs the same number of passes and replays (the
    most batches any rank holds; the extra ones count for nothing), a block that is not an
    FSDP unit itself is replayed with its unit unsharded, and any failure inside a pass aborts
    the process group (:func:`sparse24.sharded.in_pass`) rather than leave a rank waiting.
    """

    def __init__(
        self,
        model: nn.Module,
        blocks: Sequence[tuple[str, nn.Module]],
        data: Iterable[Any],
        *,
        loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
        num_batches: int | None = None,
        offload: bool = False,
        progress: bool = True,
    ) -> None:
        if data is None:
            raise ValueError("sequential calibration needs data: sparsify(model, method, data=..., sequential=...)")
        self.model = model
        self.blocks = list(blocks)
        self.sharded = is_sharded(model)
        if self.sharded:
            from .sharded import agreed_batches

            self.batches, per_rank = agreed_batches(data, num_batches, "sequential calibration")
            self.steps = max(per_rank)
        else:
            self.batches = []
            for batch in data:
                if num_batches is not None and len(self.batches) >= num_batches:
                    break
                self.batches.append(batch)
            if not self.batches:
                raise Sparse24Error("calibration data yielded no batches")
            self.steps = len(self.batches)
        self.loss_fn = loss_fn
        self.offload = offload
        self.progress = progress
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.inputs: list[tuple[tuple, dict]] | None = None
        self.blocks = run_order(model, self.blocks, self.batches, loss_fn)
        self.chained = self._chained()

    def _forward(self, batch: Any) -> None:
        batch = to_device(batch, self.device)
        if self.loss_fn is not None:
            self.loss_fn(self.model, batch)
        else:
            call(self.model, batch)

    def _pass(self, what: str) -> contextlib.AbstractContextManager:
        """Around code that runs sharded passes: a failure aborts the process group (nothing when unsharded)."""
        if not self.sharded:
            return contextlib.nullcontext()
        from .sharded import in_pass

        return in_pass(f"sequential calibration: {what}", self.model)

    def _extra(self, items: Sequence[Any]) -> list[Any]:
        """What this rank runs, for nothing, after ``items`` so that it makes as many passes as every other rank."""
        if not self.sharded:
            return []
        from .sharded import padding

        return padding(items, self.steps)

    @contextlib.contextmanager
    def _unsharded(self, index: int) -> Iterator[None]:
        """Block ``index`` callable on its own: its FSDP unit unsharded when it is not a unit itself."""
        unit = None
        if self.sharded:
            from .sharded import owner_unit

            unit = owner_unit(self.model, *self.blocks[index])
        if unit is None:
            yield
            return
        unit.unshard()
        try:
            yield
        finally:
            unit.reshard()

    def _store(self, value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach().to("cpu") if self.offload else value.detach()
        if isinstance(value, (tuple, list)):
            return type(value)(self._store(v) for v in value)
        if isinstance(value, dict):
            return {k: self._store(v) for k, v in value.items()}
        return value

    def _load(self, value: Any) -> Any:
        return to_device(value, self.device) if self.offload else value

    @staticmethod
    def _replayable(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """A block's inputs without a KV cache (positional or keyword): a replay must not append to, or read, one."""
        args = tuple(None if _is_cache(value) else value for value in args)
        kwargs = {key: None if key in _CACHE_KEYS or _is_cache(value) else value for key, value in kwargs.items()}
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        return args, kwargs

    def _chained(self) -> list[bool]:
        """Per block: are its inputs, in every batch, the previous block's output and the previous block's other
        inputs (an attention mask, position embeddings; not Swin's per-stage sizes, nor a sliding-window layer's
        mask where a batch is longer than the window, nor what follows a block whose output is not a tensor or a
        tuple starting with one)? One forward of every batch on the dense model, comparing as it goes: only the last
        block's inputs and output are held."""
        count = len(self.blocks)
        chained = [index > 0 for index in range(count)]
        ran: set[int] = set()
        seen: set[int] = set()  # the blocks run in this batch: a second call is not a replay's input
        last: dict[int, list] = {}  # this batch: the last block run -> [args, kwargs, output]

        def before(index: int, args: tuple, kwargs: dict) -> None:
            if index in seen:
                return
            seen.add(index)
            ran.add(index)
            args, kwargs = self._replayable(args, kwargs)
            previous = last.get(index - 1)
            if chained[index]:
                chained[index] = (
                    previous is not None and len(previous) == 3 and previous[2] is not None and len(args) == len(previous[0]) >= 1
                    and _same(args[0], previous[2]) and _same(args[1:], previous[0][1:]) and _same(kwargs, previous[1])
                )
            last.clear()
            last[index] = [args, kwargs]

        def after(index: int, output: Any) -> None:
            if index in last and len(last[index]) == 2:
                last[index].append(_output_tensor(output))

        handles = []
        for index, (_, block) in enumerate(self.blocks):
            handles.append(block.register_forward_pre_hook(lambda m, args, kwargs, i=index: before(i, args, kwargs), with_kwargs=True))
            handles.append(block.register_forward_hook(lambda m, args, out, i=index: after(i, out)))
        try:
            with torch.no_grad(), _eval(self.model), self._pass("block inputs"):
                for number, batch in enumerate(self.batches + self._extra(self.batches)):
                    seen.clear()
                    last.clear()
                    with running(f"running calibration batch {number} (sequential: the dense model, to find each block's inputs)"):
                        self._forward(batch)
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for i, (name, _) in enumerate(self.blocks) if i not in ran]
        if self.sharded and dist.world_size() > 1:  # every rank the same plan: missing on any, chained on all
            import torch.distributed as torch_dist

            flags = torch.tensor([int(bool(missing))] + [int(not c) for c in chained], dtype=torch.int32)
            torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX)
            if flags[0] and not missing:
                missing = ["(on another rank)"]
            chained = [not bool(flag) for flag in flags[1:]]
        if missing:
            raise Sparse24Error(f"sequential: the forward pass never ran block {missing[0]}")
        return chained

    def capture(self, index: int) -> None:
        """Store block ``index``'s inputs for every batch, from a forward of the model as it is now."""
        name, block = self.blocks[index]
        captured: list[tuple[tuple, dict]] = []

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            args, kwargs = self._replayable(args, kwargs)
            captured.append((self._store(args), self._store(kwargs)))
            raise _Stop

        handle = block.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad(), _eval(self.model), self._pass(f"inputs of {name}"):
                for number, batch in enumerate(self.batches + self._extra(self.batches)):
                    with running(f"running calibration batch {number} (sequential: the inputs of {name})"):
                        try:
                            self._forward(batch)
                        except _Stop:
                            pass
                    if self.sharded:  # the pass stopped inside FSDP's forward: its units back to sharded
                        from .sharded import reshard_all

                        reshard_all(self.model)
        finally:
            handle.remove()
        del captured[len(self.batches) :]  # the extra passes' inputs
        if len(captured) != len(self.batches):
            raise Sparse24Error(f"sequential: block {name} ran {len(captured)} times for {len(self.batches)} batches")
        self.inputs = captured

    def gather(self, index: int, weights: Sequence[GemmWeight], kind: str) -> tuple[dict[int, Tensor], dict[int, int]]:
        """Statistics of ``weights`` (inside block ``index``) from the block's stored inputs."""
        if self.inputs is None or not self.chained[index]:
            self.capture(index)
        keys = [id(w.param) for w in weights]
        stats = {id(w.param): _Sums(w, kind) for w in weights}
        counts = dict.fromkeys(stats, 0)
        name, block = self.blocks[index]
        bar = Progress(logger, f"{kind} calibration of {name}", len(self.inputs), enabled=self.progress and dist.is_main())
        tokens = new_padding(self.model)
        with torch.no_grad(), _eval(self.model), self._pass(f"block {name}"), self._unsharded(index):
            with _hooks(block, weights, stats, counts, keys, tokens), bar:
                for number, (args, kwargs) in enumerate(self.inputs):
                    tokens.batch(self.batches[number])
                    with running(f"running {name} on its inputs from calibration batch {number} (sequential)"):
                        block(*self._load(args), **self._load(kwargs))
                    bar.update()
            for args, kwargs in self._extra(self.inputs):
                block(*self._load(args), **self._load(kwargs))
        _all_reduce(stats, counts)
        _check_seen(weights, counts, self.model)
        return {key: stat.result() for key, stat in stats.items()}, counts

    def advance(self, index: int) -> None:
        """Replace the stored inputs by block ``index``'s outputs (it is pruned by now) for the next block."""
        if index + 1 >= len(self.blocks) or not self.chained[index + 1]:
            self.inputs = None
            return
        if self.inputs is None:
            self.capture(index)
        name, block = self.blocks[index]
        outputs = []
        with torch.no_grad(), _eval(self.model), self._pass(f"outputs of {name}"), self._unsharded(index):
            for number, (args, kwargs) in enumerate(self.inputs):
                with running(f"running the pruned {name} on its inputs from calibration batch {number} (sequential)"):
                    output = block(*self._load(args), **self._load(kwargs))
                out = _output_tensor(output)
                if out is None:  # chained: its dense forward returned a tensor
                    raise Sparse24Error(f"sequential: the pruned block {name} returned {type(output).__name__}, not the tensor its dense forward returned")
                outputs.append(((self._store(out), *args[1:]), kwargs))
            for args, kwargs in self._extra(self.inputs):
                block(*self._load(args), **self._load(kwargs))
        self.inputs = outputs
