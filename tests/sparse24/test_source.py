"""Reading a module's class code: whether two classes run the same code (the rule transformers' copied blocks share),
and whether it reads a child's weight without calling the child."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sparse24.source import calls_child, code_key, same_code, weight_reader

BLOCK = '''
import torch


def helper(x):
    return x * 2


class Block(torch.nn.Module):
    scale = 3

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        """{doc}"""
        return self.down(helper(self.up(x)) * self.scale + self.shift(x))

    def shift(self, x):
        return x + {shift}
'''


def _load(tmp_path: Path, name: str, source: str) -> ModuleType:
    """``source`` written to ``tmp_path/name.py`` and imported (inspect reads it back from there)."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module(tmp_path: Path, name: str, *, doc: str = "A block.", helper: str = "x * 2", shift: int = 1, scale: int = 3) -> ModuleType:
    source = BLOCK.format(doc=doc, shift=shift).replace("return x * 2", f"return {helper}").replace("scale = 3", f"scale = {scale}")
    return _load(tmp_path, name, textwrap.dedent(source))


def _same(a: ModuleType, b: ModuleType) -> bool:
    return same_code(a.Block.forward, b.Block.forward, (a.Block, b.Block))


def test_copies_with_other_docstrings_and_names_are_the_same_code(tmp_path: Path) -> None:
    a, b = _module(tmp_path, "family_a"), _module(tmp_path, "family_b", doc="Copied from family_a.Block.")
    assert a.Block is not b.Block and a.helper is not b.helper
    assert _same(a, b)


def test_a_different_helper_method_or_class_constant_is_not(tmp_path: Path) -> None:
    a = _module(tmp_path, "family_a")
    assert not _same(a, _module(tmp_path, "helper_differs", helper="x * 3"))  # a module-level function forward calls
    assert not _same(a, _module(tmp_path, "method_differs", shift=2))  # a method of self forward calls
    assert not _same(a, _module(tmp_path, "constant_differs", scale=4))  # a class attribute forward reads


def test_code_calling_super_has_no_key() -> None:
    class Base:
        def forward(self, x):
            return x

    class Child(Base):
        def forward(self, x):
            return super().forward(x)

    assert code_key(Base.forward) is not None
    assert code_key(Child.forward) is None  # its meaning depends on the class it is in


def test_a_global_one_module_lacks_is_not_the_same(tmp_path: Path) -> None:
    a, b = _module(tmp_path, "family_a"), _module(tmp_path, "no_helper")
    del b.helper  # forward reads a global its module does not define (any more)
    assert not _same(a, b)


def test_helpers_wrapped_for_hugging_face_kernels_compare_by_the_function_they_wrap(tmp_path: Path) -> None:
    """With Hugging Face's kernels installed (transformers 5.25 requires it), each modeling file's ``apply_rotary_pos_emb``
    is an nn.Module of its own wrapping the function (``use_kernel_func_from_hub``): copies still compare by that function."""
    layer = pytest.importorskip("kernels._internals.layer.layer")
    a, b, c = (_module(tmp_path, name, helper=helper) for name, helper in (("wa", "x * 2"), ("wb", "x * 2"), ("wc", "x * 3")))
    for module in (a, b, c):
        module.helper = layer._create_func_module(module.helper)()
    assert type(a.helper) is not type(b.helper) and not callable(getattr(a.helper, "__code__", None))
    assert _same(a, b) and not _same(a, c)


def test_each_modules_own_logger_is_the_same_but_another_global_object_is_not(tmp_path: Path) -> None:
    """transformers' copies read ``logger``, one ``logging.Logger`` per modeling file: it computes nothing, so two
    loggers compare equal; any other global object there still has to be the same object."""
    def logged(name: str, logger: str) -> ModuleType:
        return _load(tmp_path, name, f"import logging\nimport types\n\nlogger = {logger}\n\n\ndef forward(x):\n    logger.debug('forward')\n    return x * 2\n")

    a, b = logged("log_a", "logging.getLogger(__name__)"), logged("log_b", "logging.getLogger(__name__)")
    c = logged("log_c", "types.SimpleNamespace(debug=print)")
    assert a.logger is not b.logger
    assert same_code(a.forward, b.forward)
    assert not same_code(a.forward, c.forward)


class _Lookups(torch.nn.Module):
    """Hands its children to helpers of its own: one indexes the weight, one only casts to its dtype, one calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.table, self.typed, self.called, self.kept, self.either = (torch.nn.Linear(4, 4) for _ in range(5))

    @staticmethod
    def _index(rows: "torch.Tensor", layer: torch.nn.Linear) -> "torch.Tensor":
        return layer.weight[rows]

    def _cast(self, x: "torch.Tensor", layer: torch.nn.Linear) -> "torch.Tensor":
        return x.to(layer.weight.dtype)

    def _call(self, x: "torch.Tensor", layer: torch.nn.Linear) -> "torch.Tensor":
        return layer(x)

    def _fused(self, x: "torch.Tensor", layer: torch.nn.Linear, fused: bool) -> "torch.Tensor":
        return x @ layer.weight.t() if fused else layer(x)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        rows = torch.arange(x.shape[0]) % 4
        y = self._index(rows, layer=self.table) + self._cast(x, self.typed) + self._call(x, self.called) + self.kept(x)
        return y + self._fused(x, self.either, fused=False)


def test_a_child_handed_to_a_helper_that_reads_its_weight_is_read_directly() -> None:
    """``weight_reader`` follows ``self.<child>`` into the class's own methods it is passed to (positionally or by
    keyword, a static method too): an indexed weight is a read, a dtype alone only with ``metadata=True``, a call
    none; ``calls_child`` sees a call there too (a helper that may call the layer or use its weight: ambiguous, which
    the first calibration batch settles)."""
    model = torch.nn.Sequential(_Lookups())
    assert weight_reader(model, "0.table", metadata=False) == (model[0], "table")
    assert weight_reader(model, "0.typed", metadata=False) is None
    assert weight_reader(model, "0.typed") == (model[0], "typed")
    assert weight_reader(model, "0.called") is None
    assert weight_reader(model, "0.kept") is None
    assert weight_reader(model, "0.either", metadata=False) == (model[0], "either")
    # which of them the code may call: itself, or in the helper it is handed to
    assert [calls_child(model[0], child) for child in ("table", "typed", "called", "kept", "either")] == [False, False, True, True, True]
