"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny models: extra threads only wait on each other (and on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def unruled_mra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MRA's classes without their permutation rules: a real transformers model whose layers sit in classes no rule
    covers (every type the coverage bench builds has its rules now)."""
    import importlib

    module = importlib.import_module("sparse24.permute")
    for cls in ("MraLayer", "MraAttention"):
        monkeypatch.delitem(module._RULES, ("transformers.models.mra.modeling_mra", cls))
    module._ruled_transformers_classes.cache_clear()  # the copy matcher's caches, built from the rules
    module._copied_rule.cache_clear()
    yield
    module._ruled_transformers_classes.cache_clear()  # before monkeypatch puts the rules back: rebuilt with them
    module._copied_rule.cache_clear()
