"""What a module's own code does, read from its class's source: read a child's ``.weight`` directly
(``self.wo.weight.dtype``, ``self.dt_proj.weight @ x``, or in a helper it hands the child to), call a child, or
run the same code as another class (transformers copies a block's code into every family that shares it)."""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import logging
import re
import textwrap
import types
from collections.abc import Callable

from torch import nn

__all__ = ["calls_child", "calls_function", "code_key", "multiplies_by_weight", "same_code", "weight_reader"]


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


_METADATA = re.compile(r"\s*\.\s*(?:dtype|device|shape|ndim|requires_grad|is_\w+)\b")  # after self.<child>.weight


def weight_reader(model: nn.Module, module_name: str, *, metadata: bool = True) -> tuple[nn.Module, str] | None:
    """``(parent, child)`` when the class code of the parent of ``model``'s submodule ``module_name`` reads
    ``self.<child>.weight`` (MultiheadAttention's ``out_proj``, TransformerEncoderLayer's fast path, T5's
    ``wo.weight.dtype``, Mamba's ``dt_proj.weight @ x``), or hands ``self.<child>`` to a method of its own that reads
    the argument's ``.weight`` (LayoutLMv3's relative position biases); None otherwise, and for the model itself. With
    ``metadata=False`` only a read that may compute with the weight counts, not one of its ``dtype``, ``device``,
    ``shape`` or type (T5's cast of its hidden states to ``wo.weight.dtype``, SwitchTransformers' experts')."""
    parent_name, _, child = module_name.rpartition(".")
    if not child:
        return None
    parent = model.get_submodule(parent_name)
    source = _class_sources(type(parent))
    for match in re.finditer(rf"self\.{re.escape(child)}\.weight\b", source):
        if metadata or not (_METADATA.match(source, match.end()) or re.search(r"isinstance\(\s*$", source[: match.start()])):
            return parent, child
    return (parent, child) if _passes_to_weight_read(type(parent), child, metadata) else None


@functools.lru_cache(maxsize=None)
def _handed(cls: type, child: str) -> tuple[tuple[ast.FunctionDef, str], ...]:
    """The methods of ``cls`` to which its code hands ``self.<child>`` (positionally or by keyword), each with
    the name of the parameter that receives it (LayoutLMv3's encoder passes ``self.rel_pos_bias`` to
    ``_relative_position_lookup`` as ``bias``)."""
    found = []
    for function in _methods(cls):
        if child not in _attribute_names(function.__code__):  # not parsed: most methods never name the child
            continue
        definition = _function_ast(function)
        for call in ast.walk(definition) if definition is not None else ():
            if not (isinstance(call, ast.Call) and _is_self_attribute(call.func)):
                continue
            member = inspect.getattr_static(cls, call.func.attr, None)
            callee = _unwrap_member(member)
            helper = _function_ast(callee) if inspect.isfunction(callee) else None
            if helper is None:
                continue
            try:
                names = list(inspect.signature(callee).parameters)
            except (TypeError, ValueError):  # no signature to map the arguments by
                continue
            names = names if isinstance(member, staticmethod) else names[1:]
            passed = [name for name, arg in zip(names, call.args) if _is_self_attribute(arg, child)]
            passed += [k.arg for k in call.keywords if k.arg is not None and _is_self_attribute(k.value, child)]
            found += [(helper, name) for name in passed]
    return tuple(found)


def _passes_to_weight_read(cls: type, child: str, metadata: bool) -> bool:
    """True when ``cls``'s code hands ``self.<child>`` to a method of its own whose code reads that argument's
    ``.weight``; with ``metadata=False``, a read of its ``dtype``, ``device``, ``shape`` or type does not count."""
    return any(_reads_weight(helper, name, metadata) for helper, name in _handed(cls, child))


def _methods(cls: type) -> list[Callable]:
    """The functions defined in ``cls`` and its bases up to ``nn.Module`` (methods, static and class methods)."""
    found = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        found += [f for f in map(_unwrap_member, vars(klass).values()) if inspect.isfunction(f)]
    return found


def _attribute_names(code: types.CodeType) -> set[str]:
    """The global and attribute names ``code`` and the functions nested in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _attribute_names(const)
    return names


def _is_self_attribute(node: ast.AST, name: str | None = None) -> bool:
    """True when ``node`` is ``self.<name>`` (any name when None)."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" and name in (None, node.attr)


def _reads_weight(definition: ast.FunctionDef | None, name: str, metadata: bool) -> bool:
    """True when ``definition`` reads ``<name>.weight`` (with ``metadata=False``: other than its ``dtype``, ``device``,
    ``shape`` or type)."""
    if definition is None:
        return False
    parents = {id(child): node for node in ast.walk(definition) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(definition):
        if isinstance(node, ast.Attribute) and node.attr == "weight" and isinstance(node.value, ast.Name) and node.value.id == name:
            above = parents.get(id(node))
            described = isinstance(above, ast.Attribute) and _METADATA.match(f".{above.attr}") is not None
            checked = isinstance(above, ast.Call) and isinstance(above.func, ast.Name) and above.func.id == "isinstance"
            if metadata or not (described or checked):
                return True
    return False


def calls_child(parent: nn.Module, child: str) -> bool:
    """True when ``parent``'s class code calls ``self.<child>(...)``, or a method of its own it hands the child to
    calls it, or when its source is not available (unknown)."""
    source = _class_sources(type(parent))
    if not source or re.search(rf"self\.{re.escape(child)}\s*\(", source) is not None:
        return True
    return any(_calls(helper, name) for helper, name in _handed(type(parent), child))


def _calls(definition: ast.FunctionDef, name: str) -> bool:
    """True when ``definition`` calls ``<name>(...)``."""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(definition))


def multiplies_by_weight(parent: nn.Module, child: str) -> bool:
    """True when ``parent``'s class code multiplies by ``self.<child>.weight`` on the left, as the child's own
    forward would: ``self.<child>.weight @ x`` or ``torch.matmul(self.<child>.weight, x)`` (Mamba's ``dt_proj``)."""
    weight = rf"self\.{re.escape(child)}\.weight\b"
    return re.search(rf"{weight}\s*@|matmul\(\s*{weight}\s*,", _class_sources(type(parent))) is not None


def calls_function(module: nn.Module, name: str) -> bool:
    """True when ``module``'s class code calls a function or method ``name`` (``F.multi_head_attention_forward``)."""
    return re.search(rf"\b{re.escape(name)}\s*\(", _class_sources(type(module))) is not None


@functools.lru_cache(maxsize=None)
def _function_ast(function: Callable) -> ast.FunctionDef | None:
    """``function``'s definition without docstrings, annotations, decorators or its name; None without source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(function))))
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0] if tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    if definition is None:
        return None
    for node in ast.walk(definition):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    definition.name = "_"
    return definition


@functools.lru_cache(maxsize=None)
def code_key(function: Callable) -> str | None:
    """A string equal for two functions with the same code up to docstrings, annotations, decorators and
    their names; None when the source is not available or the code calls ``super()`` (its meaning then
    depends on the class)."""
    definition = _function_ast(function)
    if definition is None or any(isinstance(node, ast.Name) and node.id == "super" for node in ast.walk(definition)):
        return None
    return ast.dump(definition)


_MISSING = object()  # a global name a function reads but its module does not define


def _names(definition: ast.FunctionDef) -> tuple[set[str], set[str]]:
    """(global names read, ``self`` attributes read) in ``definition``."""
    local = {a.arg for a in ast.walk(definition.args) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(definition) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    read = {n.id for n in ast.walk(definition) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    attributes = {
        n.attr for n in ast.walk(definition) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    return {name for name in read - local if not hasattr(builtins, name)}, attributes


def same_code(a: Callable, b: Callable, owners: tuple[type, type] | None = None, _seen: set | None = None) -> bool:
    """True when functions ``a`` and ``b`` run the same code: equal :func:`code_key`, every global name
    they read the same object, a function with the same code or a logger (each module has its own; it computes
    nothing), and (with ``owners``, the classes they are methods of) every method or property of ``self`` they
    use the same code too."""
    seen = set() if _seen is None else _seen
    a, b = inspect.unwrap(a), inspect.unwrap(b)
    if a is b or (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    key = code_key(a)
    if key is None or key != code_key(b):
        return False
    names, attributes = _names(_function_ast(a))
    for name in names:
        x, y = (_function_behind(f.__globals__.get(name, _MISSING)) for f in (a, b))
        if x is y or isinstance(x, logging.Logger) and isinstance(y, logging.Logger):  # each module's own logger: it computes nothing
            continue
        if not (inspect.isfunction(x) and inspect.isfunction(y) and same_code(x, y, None, seen)):
            return False
    for name in attributes if owners is not None else ():
        x, y = (_unwrap_member(inspect.getattr_static(owner, name, None)) for owner in owners)
        if x is y or not (callable(x) or callable(y)) and _equal(x, y):  # instance attributes (None here: a child module, a size), equal class constants
            continue
        if not (inspect.isfunction(x) and inspect.isfunction(y) and same_code(x, y, owners, seen)):
            return False
    return True


def _function_behind(value: object) -> object:
    """The function behind a helper transformers wraps for Hugging Face's ``kernels`` (``use_kernel_func_from_hub``: with
    that package installed, each modeling file holds its own nn.Module whose forward calls the function, e.g.
    ``apply_rotary_pos_emb``); anything else as it is."""
    cls = type(value)
    forward = getattr(cls, "forward", None)
    if cls.__qualname__.endswith("_create_func_module.<locals>.Func") and getattr(forward, "__closure__", None):
        cells = dict(zip(forward.__code__.co_freevars, forward.__closure__))
        if "func" in cells and inspect.isfunction(cells["func"].cell_contents):
            return cells["func"].cell_contents
    return value


def _unwrap_member(member: object) -> object:
    """The function behind a property, staticmethod or classmethod; anything else as it is."""
    if isinstance(member, property):
        return member.fget
    return member.__func__ if isinstance(member, (staticmethod, classmethod)) else member


def _equal(x: object, y: object) -> bool:
    try:
        return bool(x == y)
    except Exception:  # an object whose == is not a bool (a tensor)
        return False
