"""Perplexity of a causal language model on held-out text, as SparseGPT and Wanda report it.

The token stream (a test split tokenized whole, e.g. WikiText-2's) is cut into non-overlapping windows of
``seq_len`` tokens; each window is one forward pass, its loss the mean cross-entropy of the next-token
predictions inside it; the perplexity is ``exp`` of the mean of those losses (the papers' ``exp(sum(nll *
seq_len) / (windows * seq_len))``). The tokens after the last whole window are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .batch import logits as output_logits
from .errors import Sparse24Error

__all__ = ["Perplexity", "perplexity", "perplexity_fn", "require_causal_lm"]


@dataclass(frozen=True)
class Perplexity:
    """One model's perplexity: ``exp(nll)``, ``nll`` the mean next-token loss in nats over ``windows`` windows."""

    perplexity: float
    nll: float
    windows: int
    seq_len: int

    @property
    def tokens(self) -> int:
        """Tokens fed to the model (``windows * seq_len``)."""
        return self.windows * self.seq_len

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens}


def require_causal_lm(model: nn.Module) -> None:
    """Raise unless a transformers ``model`` is one of AutoModelForCausalLM's classes (other models pass)."""
    from .hub import is_transformers_model

    if not is_transformers_model(model):
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {name for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for name in ((value,) if isinstance(value, str) else value)}
    if not any(cls.__name__ in names for cls in type(model).__mro__):  # a subclass of one counts
        raise Sparse24Error(
            f"{type(model).__name__} is not a causal language model (one of AutoModelForCausalLM's classes): perplexity "
            "scores each next token's prediction (a base model gives no logits; --hf-class picks the class)"
        )


def _window_losses(model: nn.Module, windows: Iterable[Tensor], device: torch.device | str | None) -> list[float]:
    """The mean next-token loss of each window (a row of an ``[B, L]`` batch of ids), in eval mode, put back after."""
    require_causal_lm(model)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    from .hub import is_transformers_model

    keywords = is_transformers_model(model)
    losses: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for ids in windows:
                ids = ids.to(device)
                output = model(input_ids=ids, use_cache=False) if keywords else model(ids)
                logits = output_logits(output)
                if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(ids.shape):
                    raise Sparse24Error(f"perplexity needs next-token logits [{ids.shape[0]}, {ids.shape[1]}, vocab]; {type(model).__name__} gave {list(logits.shape)}")
                per_token = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
                losses += per_token.mean(dim=1).tolist()
    finally:
        model.train(was_training)
    return losses


def _result(losses: list[float], seq_len: int) -> Perplexity:
    nll = math.fsum(losses) / len(losses)
    try:
        value = math.exp(nll)
    except OverflowError:  # nll over ~709.8 nats: past float's range
        value = math.inf
    return Perplexity(perplexity=value, nll=nll, windows=len(losses), seq_len=seq_len)


def perplexity(model: nn.Module, tokens: Tensor, *, seq_len: int, max_windows: int | None = None, device: torch.device | str | None = None) -> Perplexity:
    """Perplexity of ``model`` on the 1-D ``tokens``, in non-overlapping windows of ``seq_len`` (the first ``max_windows``).

    ``model`` takes ``input_ids=`` (a transformers model, run with ``use_cache=False``) or the ids as its one
    argument, and returns logits ``[1, seq_len, vocab]`` (or an output holding them). It runs on ``device``
    (default: where its parameters are) in eval mode, which is put back after.
    """
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2, got {seq_len!r}")
    if max_windows is not None and (not isinstance(max_windows, int) or isinstance(max_windows, bool) or max_windows < 1):
        raise ValueError(f"max_windows must be a positive int or None, got {max_windows!r}")
    if tokens.dim() != 1 or tokens.dtype != torch.long:
        raise ValueError(f"tokens must be a 1-D int64 tensor, got {tokens.dtype} {list(tokens.shape)}")
    windows = tokens.numel() // seq_len if max_windows is None else min(tokens.numel() // seq_len, max_windows)
    if windows == 0:
        raise Sparse24Error(f"the text gives {tokens.numel()} tokens, fewer than one window of seq_len={seq_len}; give more text or a smaller seq_len")
    rows = (tokens[index * seq_len : (index + 1) * seq_len].unsqueeze(0) for index in range(windows))
    return _result(_window_losses(model, rows, device), seq_len)


def perplexity_fn(model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
    """``eval_fn`` for a finetune (a recipe's ``eval_fn: sparse24.evaluate:perplexity_fn``): ``{"perplexity", "nll"}``
    of ``model`` on batches of equal-length windows, ``{"input_ids": [B, L]}`` or the ids themselves, as
    :func:`sparse24.data.eval_windows` gives them."""
    rows = [batch["input_ids"] if isinstance(batch, Mapping) else batch for batch in batches]
    if not rows:
        raise Sparse24Error("perplexity_fn got no batches (eval_data is empty)")
    lengths = {row.shape[-1] for row in rows}
    if any(row.dim() != 2 for row in rows) or len(lengths) != 1:
        raise Sparse24Error(f"perplexity_fn needs [batch, length] windows of one length, got {sorted({tuple(row.shape) for row in rows})}")
    result = _result(_window_losses(model, rows, None), lengths.pop())
    return {"perplexity": result.perplexity, "nll": result.nll}
