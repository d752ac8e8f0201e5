"""What a module's own code does with a child module, read from its class's source: read the child's
``.weight`` directly (``self.wo.weight.dtype``, ``self.dt_proj.weight @ x``), or call the child."""

from __future__ import annotations

import functools
import inspect
import re

from torch import nn

__all__ = ["calls_child", "weight_reader"]


@functools.lru_cache(maxsize=None)
def _class_sources(cls: type) -> str:
    """The source of ``cls`` and of its bases up to ``nn.Module`` (empty where it is not available)."""
    parts = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):
            pass
    return "\n".join(parts)


def weight_reader(model: nn.Module, module_name: str) -> tuple[nn.Module, str] | None:
    """``(parent, child)`` when the class code of the parent of ``model``'s submodule ``module_name`` reads
    ``self.<child>.weight`` (MultiheadAttention's ``out_proj``, TransformerEncoderLayer's fast path, T5's
    ``wo.weight.dtype``, Mamba's ``dt_proj.weight @ x``); None otherwise, and for the model itself."""
    parent_name, _, child = module_name.rpartition(".")
    if not child:
        return None
    parent = model.get_submodule(parent_name)
    return (parent, child) if re.search(rf"self\.{re.escape(child)}\.weight\b", _class_sources(type(parent))) else None


def calls_child(parent: nn.Module, child: str) -> bool:
    """True when ``parent``'s class code calls ``self.<child>(...)``, or when its source is not available (unknown)."""
    source = _class_sources(type(parent))
    return not source or re.search(rf"self\.{re.escape(child)}\s*\(", source) is not None
