"""Explain TorchScript models: turn a ``ScriptModule`` into an eager module the engine can record.

``torch.jit.load`` gives a :class:`torch.jit.ScriptModule` whose ``forward`` runs as a compiled
graph: neither a :class:`~torch.overrides.TorchFunctionMode` nor module hooks see what happens
inside, so the engine cannot record the operations that LRP needs (gradient methods work on any
differentiable module). :func:`to_eager` gives an ordinary :class:`torch.nn.Module` that computes
the same function by **interpreting the TorchScript graph in Python**:

* submodules whose class is a standard ``torch.nn`` layer (``__torch__.torch.nn.modules.*``:
  Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d, activations, pooling, Flatten, Dropout, Embedding,
  LSTM, GRU, RNN, Identity, Sequential, ModuleList...) are rebuilt as the real eager module with
  copies of the same parameters and buffers. Hyper-parameters (stride, padding, groups, eps,
  batch_first...) are read from the script module's attributes when it was made with
  ``torch.jit.script``, and from the constant arguments of the layer's one operation when it was
  made with ``torch.jit.trace`` (a traced module keeps no Python attributes). So module-level
  rules and BatchNorm folding apply, and the ledger names layers by their module paths exactly
  as in the original model;
* everything else (the top-level ``forward``, custom submodules, TorchScript functions) is
  interpreted node by node: ``prim::GetAttr``/``SetAttr``/``CallMethod``/``CallFunction``,
  constants, lists, tuples and dicts, ``prim::If`` and ``prim::Loop``, exceptions, and ``aten::``
  operations mapped to the equivalent public torch function (``torch.add``, ``torch.cat``,
  ``F.conv2d``, ``F.batch_norm``, tensor methods such as ``view``...), so the function mode sees
  ordinary torch calls with the names the engine's rules are registered under.

The module's ``.code`` is never evaluated: only the graph's nodes are read, and an operation runs
only if it is a torch operator that the graph names (a builtin of ``torch._C``, a C-implemented
tensor method, a registered ``torch.ops.aten`` operator for non-tensor values, or a method of a
rebuilt torch layer). Loading a file is ``torch.jit.load``'s business, before any of this: its
documentation warns that a malicious file can run code while it is loaded, so load trusted files.
The user's script module is not modified; the eager module holds copies of its tensors and no
reference to it, and it can be pickled and deep-copied (for Dask workers and canonizers).

Checked (``tests/test_torchscript.py``): an MLP, a CNN with BatchNorm, a residual add, ``cat``
and Flatten, an EEG-like Conv1d net, LSTM and GRU classifiers, scripted control flow, an
Embedding model and the image plugin's Fashion CNN, scripted and traced, and (traced only: their
Python code cannot be scripted) the image plugin's EfficientNet-Lite0 and the EEG plugin's
CompactEEGNet, also from files on disk: equal outputs, equal LRP relevance and rules on the same
module paths, balanced ledgers. And ~30 torch layers, their own scripted code (argument checks,
overloads, functional calls) interpreted instead of rebuilt, or traced and converted.

Limits (each is an error naming the node, raised when the node is reached, so a node in a branch
the model never takes, e.g. training-only code, does not stop a conversion):

* nodes without a Python equivalent here (:class:`ScriptConversionError`): ``prim::fork``/``wait``,
  ``prim::CreateObject`` of TorchScript classes (``with torch.no_grad():`` and
  ``torch.enable_grad()`` blocks are supported, nothing else), ``prim::isinstance``, calls through
  module interfaces,
  ``prim::ModuleContainerIndex`` (a ModuleList indexed by a run-time integer), operators outside
  ``aten::`` (``quantized::``, torchbind classes); graphs rewritten by
  ``torch.jit.optimize_for_inference`` were not tried.
* a traced standard layer whose graph is not the layer's plain single operation is interpreted
  node by node instead of rebuilt: a convolution with ``padding_mode`` other than zeros, a
  transposed convolution, an Embedding with ``max_norm``, a BatchNorm traced in training mode or
  without running statistics, an LSTM/GRU traced with an explicit initial state, on unbatched
  input or in training mode, an Upsample with ``recompute_scale_factor``, and layers without a
  reader here (InstanceNorm, EmbeddingBag, MultiheadAttention...). The function is the same, but
  the engine then sees functional calls (``conv2d@block``, ``pad@block``), so module-level rules
  and BatchNorm folding into a module
  do not apply to them, and a functional ``lstm`` has no LRP rule (gradient methods still work).
* a custom subclass of a torch layer (e.g. EfficientNet's ``Conv2dStaticSamePadding``) is not a
  ``torch.nn`` class in the file, so its ``forward`` is interpreted: its ``F.conv2d`` call is explained
  as a functional convolution named ``conv2d@<its path>`` (a following BatchNorm is still folded).
* a frozen module (``torch.jit.freeze``) has no submodules left (BatchNorm already folded, weights
  inlined as constants): it is interpreted as functional code, and the ledger names operations.
* TorchScript writes indexing as its own primitives, one per dim: ``x[:, i]`` is a full slice of
  dim 0 and a select of dim 1. Here the full slice of dim 0 is dropped and the select runs as
  ``x[:, i]``, so the engine sees one indexing as for the eager code; but ``x[1:, 2:]`` runs as two
  and ``x[:]`` as none, so the count of anonymous layout operations in a result's ``rules`` (and the
  ledger's rows for them) can differ from the eager model's.
* a traced model is the trace: control flow was fixed when it was traced (torch's ``TracerWarning``),
  and the conversion reproduces that, not the Python model.
* values are TorchScript's: dtypes are integer codes inside the graph (converted where an
  operation takes a dtype), ``int[]`` lists where eager code has tuples.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SciexplainError, UnsupportedModelError

__all__ = ["to_eager", "is_script_module", "TorchScriptToEager", "InterpretedModule", "ScriptConversionError", "ScriptRaisedError",
           "ScriptValueError", "ScriptTypeError", "ScriptIndexError", "ScriptAssertionError"]


class ScriptConversionError(UnsupportedModelError):
    """A TorchScript graph contains a node that :func:`to_eager` cannot interpret.

    The message names the node kind, its schema and its source location in the scripted code.
    """


class ScriptRaisedError(SciexplainError, RuntimeError):
    """The interpreted TorchScript code raised an exception (``prim::RaiseException``), where the
    script module itself raises ``torch.jit.Error``. The subclasses below also derive from the
    builtin exception the scripted code named (``raise ValueError(...)`` gives
    :class:`ScriptValueError`, a ``ValueError``)."""


class ScriptValueError(ScriptRaisedError, ValueError):
    """The scripted code raised ``ValueError``."""


class ScriptTypeError(ScriptRaisedError, TypeError):
    """The scripted code raised ``TypeError``."""


class ScriptIndexError(ScriptRaisedError, IndexError):
    """The scripted code raised ``IndexError``."""


class ScriptAssertionError(ScriptRaisedError, AssertionError):
    """The scripted code raised ``AssertionError`` (an ``assert`` statement)."""


_RAISED = {"ValueError": ScriptValueError, "TypeError": ScriptTypeError, "IndexError": ScriptIndexError,
           "AssertionError": ScriptAssertionError}


def is_script_module(model: Any) -> bool:
    """True for a TorchScript module (scripted, traced, or loaded with ``torch.jit.load``)."""
    return isinstance(model, torch.jit.ScriptModule)


# -- compiled program: plain picklable data, no torch._C objects ------------------------------------

@dataclass(frozen=True)
class _Op:
    """One graph node. ``kind`` is the interpreter's handler, ``data`` its static arguments."""

    kind: str
    inputs: tuple
    outputs: tuple
    data: Any = None
    where: str = ""


@dataclass(frozen=True)
class _Block:
    inputs: tuple
    ops: tuple
    outputs: tuple


@dataclass(frozen=True)
class _Call:
    """A torch operator call: how to find the callable and the schema's arguments."""

    op: str  # the aten name without namespace, e.g. "add"
    overload: str
    names: tuple  # schema argument names
    kwarg_only: tuple
    defaults: tuple  # (has_default, default) per argument
    tensor: bool  # the schema takes a tensor (else a scalar/list operation)
    n_out: int


_DTYPES = {0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64, 5: torch.float16,
           6: torch.float32, 7: torch.float64, 8: torch.complex32, 9: torch.complex64, 10: torch.complex128,
           11: torch.bool, 15: torch.bfloat16}
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}
_LAYOUTS = {0: torch.strided, 1: torch.sparse_coo}
_MEMORY_FORMATS = {0: torch.contiguous_format, 1: torch.preserve_format, 2: torch.channels_last,
                   3: torch.channels_last_3d}
_ENUM_ARGS = {"dtype": _DTYPES, "layout": _LAYOUTS, "memory_format": _MEMORY_FORMATS}


def _where(node: Any) -> str:
    """``aten::foo (file.py:12)``: the node's kind and where the scripted code wrote it."""
    kind = node.kind()
    try:
        src = node.sourceRange().strip().splitlines()[0]
    except Exception:  # noqa: BLE001 -- a node without a source range
        src = ""
    try:
        schema = node.schema()
    except Exception:  # noqa: BLE001
        schema = "(no schema)"
    text = kind if schema == "(no schema)" else schema
    return f"{text}{' at ' + src if src else ''}"


def _ivalue(value: Any) -> Any:
    try:
        v = value.toIValue()
    except Exception as err:  # noqa: BLE001 -- a constant of a type we cannot read
        raise ScriptConversionError(f"the TorchScript constant {_where(value.node())} of type {value.type()} cannot be "
                                    f"read ({err})") from err
    if isinstance(v, torch.Tensor):
        v = v.detach().clone()
    return v


class _GraphCompiler:
    """Compiles one method graph (of the module ``owner``) into a :class:`_Block`."""

    def __init__(self, converter: _Converter, script_module: Any, owner: nn.Module):
        self.converter = converter
        self.script_module = script_module
        self.owner = owner
        self.modules: dict[int, tuple[Any, nn.Module]] = {}  # value id -> (script module, converted)
        self.grad_modes: set[int] = set()  # values that are torch.no_grad() / enable_grad() objects

    def graph(self, graph: Any) -> _Block:
        inputs = list(graph.inputs())
        if inputs and inputs[0].type().kind() == "ClassType":
            self.modules[inputs[0].unique()] = (self.script_module, self.owner)
        return self.block_of(inputs, graph.nodes(), list(graph.outputs()))

    def block_of(self, inputs, nodes, outputs) -> _Block:
        ops = []
        for node in nodes:
            op = self.node(node)
            if op is not None:
                ops.append(op)
        return _Block(tuple(v.unique() for v in inputs), tuple(ops), tuple(v.unique() for v in outputs))

    def sub_block(self, block: Any) -> _Block:
        return self.block_of(list(block.inputs()), block.nodes(), list(block.outputs()))

    # -- one node ----------------------------------------------------------------------------
    def node(self, node: Any) -> _Op | None:
        kind = node.kind()
        ins = tuple(v.unique() for v in node.inputs())
        outs = tuple(v.unique() for v in node.outputs())
        where = _where(node)
        if kind == "prim::Constant":
            out = node.output()
            if out.type().kind() == "FunctionType":
                return None  # only used by prim::CallFunction, which inlines the function
            return _Op("const", (), outs, _ivalue(out) if node.hasAttribute("value") else None, where)
        if kind == "prim::GetAttr":
            name = node.s("name")
            src = self.modules.get(ins[0])
            if src is not None and node.output().type().kind() == "ClassType":
                sm, conv = src
                child_sm = getattr(sm, name)
                if not isinstance(child_sm, torch.jit.ScriptModule):
                    return _Op("unsupported", ins, outs, f"attribute {name!r} is a TorchScript object, not a module",
                               where)
                child = conv.get_submodule(name) if name in conv._modules else None
                if child is None:
                    return _Op("unsupported", ins, outs, f"submodule {name!r} was not converted", where)
                self.modules[outs[0]] = (child_sm, child)
            elif src is not None and isinstance(src[1], InterpretedModule):
                if not src[1]._remember_attribute(src[0], name):
                    return _Op("unsupported", ins, outs, f"attribute {name!r} is a {node.output().type()}, not a "
                               "tensor, a number, a string or a container of them", where)
            return _Op("getattr", ins, outs, name, where)
        if kind == "prim::SetAttr":
            return _Op("setattr", ins, outs, node.s("name"), where)
        if kind == "prim::CreateObject":
            qualified = str(node.output().type())
            if qualified in _GRAD_MODES:
                self.grad_modes.add(outs[0])
                return _Op("grad_mode", ins, outs, _GRAD_MODES[qualified], where)
            return _Op("unsupported", ins, outs, f"an object of the TorchScript class {qualified}", where)
        if kind == "prim::CallMethod" and ins and ins[0] in self.grad_modes:
            return None  # no_grad().__init__(): the object is made by the grad_mode op
        if kind in ("prim::Enter", "prim::Exit"):
            if not ins or ins[0] not in self.grad_modes:
                return _Op("unsupported", ins, outs, "a with block over an object that is not torch.no_grad() or "
                           "torch.enable_grad()", where)
            return _Op("enter" if kind == "prim::Enter" else "exit", ins, outs, None, where)
        if kind == "prim::CallMethod":
            return self.call_method(node, ins, outs, where)
        if kind == "prim::CallFunction":
            return self.call_function(node, ins, outs, where)
        if kind == "prim::If":
            blocks = tuple(self.sub_block(b) for b in node.blocks())
            return _Op("if", ins, outs, blocks, where)
        if kind == "prim::Loop":
            (body,) = tuple(self.sub_block(b) for b in node.blocks())
            return _Op("loop", ins, outs, body, where)
        simple = _PRIM_SIMPLE.get(kind)
        if simple is not None:
            return _Op(simple, ins, outs, None, where)
        if kind == "prim::TupleSlice":
            return _Op("tupleslice", ins, outs, (node.i("beg"), node.i("end")), where)
        if kind.startswith("aten::"):
            return self.aten(node, ins, outs, where)
        return _Op("unsupported", ins, outs, f"{kind} has no Python equivalent in sciexplain.torchscript", where)

    def aten(self, node, ins, outs, where) -> _Op:
        try:
            schema = torch._C.parse_schema(node.schema())
        except Exception:  # noqa: BLE001 -- e.g. varargs builtins without a parsable schema
            schema = None
        name = node.kind().split("::", 1)[1]
        if schema is None:
            if name in _PY_OPS:
                return _Op("py", ins, outs, name, where)
            return _Op("unsupported", ins, outs, f"aten::{name} has no schema", where)
        args = list(schema.arguments)
        call = _Call(name, schema.overload_name, tuple(a.name for a in args), tuple(a.kwarg_only for a in args),
                     tuple((a.has_default_value(), a.default_value if a.has_default_value() else None) for a in args),
                     any(_has_tensor(a.type) for a in list(args) + list(schema.returns)), len(outs))
        if not call.tensor and name in _PY_OPS:
            return _Op("py", ins, outs, name, where)
        if len(ins) != len(args):
            return _Op("unsupported", ins, outs, f"aten::{name} called with {len(ins)} arguments for {len(args)}", where)
        if call.tensor:
            if name in _TENSOR_SPECIAL or _resolve(name) is not None:
                return _Op("torch", ins, outs, call, where)
            return _Op("unsupported", ins, outs, f"aten::{name} has no torch function or tensor method of that name",
                       where)
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None and (schema.overload_name or "default") in packet.overloads():
            return _Op("ops", ins, outs, call, where)
        return _Op("unsupported", ins, outs, f"aten::{name} is not available as a torch operator", where)

    def call_method(self, node, ins, outs, where) -> _Op:
        name = node.s("name")
        src = self.modules.get(ins[0])
        if src is None:
            return _Op("unsupported", ins, outs, f"method {name!r} of a value that is not a submodule of the model "
                       "(an interface or a TorchScript class object)", where)
        sm, conv = src
        if isinstance(conv, InterpretedModule):
            self.converter.compile_method(sm, conv, name)
            return _Op("callmethod", ins, outs, (name, None), where)
        if name.startswith("forward"):
            return _Op("callmethod", ins, outs, (name, self.converter.selectors.get(id(conv))), where)
        if callable(getattr(type(conv), name, None)):  # e.g. MultiheadAttention.merge_masks: torch's own method
            return _Op("eagermethod", ins, outs, name, where)
        return _Op("unsupported", ins, outs, f"method {name!r} of the rebuilt torch module {type(conv).__name__} "
                   "does not exist in this torch version", where)

    def call_function(self, node, ins, outs, where) -> _Op:
        qualified = str(node.inputsAt(0).type())
        body = self.converter.function_body(node)
        if body is None:
            return _Op("unsupported", ins, outs, f"the function {qualified} could not be inlined", where)
        return _Op("function", ins[1:], outs, (qualified, body), where)


_PRIM_SIMPLE = {
    "prim::ListConstruct": "list", "prim::TupleConstruct": "tuple", "prim::DictConstruct": "dict",
    "prim::ListUnpack": "unpack", "prim::TupleUnpack": "unpack", "prim::TupleIndex": "index",
    "prim::RaiseException": "raise", "prim::Uninitialized": "none", "prim::unchecked_cast": "same",
    "prim::NumToTensor": "numtotensor", "prim::dtype": "dtype", "prim::device": "device",
    "prim::layout": "layout", "prim::requires_grad": "requires_grad", "prim::is_cuda": "is_cuda",
    "prim::shape": "shape", "prim::data": "data", "prim::Print": "print", "prim::min": "min",
    "prim::max": "max", "prim::abs": "abs", "prim::tolist": "tolist", "prim::str": "str",
    "prim::ListIndex": "index", "prim::is_nested": "is_nested", "prim::type": "device_type",
}


def _has_tensor(t: Any) -> bool:
    if t.kind() == "TensorType":
        return True
    return any(_has_tensor(c) for c in t.containedTypes())


# -- the operator table --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _resolve(name: str) -> Any:
    """The torch callable of an aten operator: a builtin of torch._C, or a C-implemented tensor method."""
    for ns in (torch._C._VariableFunctions, torch._C._nn, torch._C._special, torch._C._linalg, torch._C._fft):
        fn = getattr(ns, name, None)
        if fn is not None and type(fn).__name__ == "builtin_function_or_method":
            return fn
    fn = getattr(torch._C.TensorBase, name, None)
    if fn is not None and type(fn).__name__ in ("method_descriptor", "wrapper_descriptor", "getset_descriptor"):
        return ("method", name)
    return None


def _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, *_):
    n = weight.ndim - 2
    if transposed:
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
        return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return (F.conv1d, F.conv2d, F.conv3d)[n - 1](input, weight, bias, stride, padding, dilation, groups)


def _convolution_mode(input, weight, bias, stride, padding, dilation, groups):
    return (F.conv1d, F.conv2d, F.conv3d)[weight.ndim - 3](input, weight, bias, stride, padding, dilation, groups)


def _batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, *_):
    # F.batch_norm (the engine's recogniser reads its argument order), not torch.batch_norm
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return F.embedding(indices, weight, None if padding_idx < 0 else padding_idx, None, 2.0, scale_grad_by_freq,
                       sparse)


def _slice(self, dim=0, start=None, end=None, step=1):
    if dim == 0 and step == 1 and start in (None, 0) and (end is None or end >= 2 ** 63 - 1):
        # TorchScript writes ``x[:, i]`` as a full slice of dim 0, then a select of dim 1: one
        # indexing like the eager code's (``x[:, :]`` is one too: the full slice of dim 1 stays)
        return self
    if dim < 0:
        dim += self.dim()
    return self[(slice(None),) * dim + (slice(start, end, step),)]


def _select_index(self, dim, index):
    if dim < 0:
        dim += self.dim()
    return self[(slice(None),) * dim + (index,)]  # as eager code writes it: ``x[:, i]``


def _index(self, indices):
    return self[tuple(slice(None) if i is None else i for i in indices)]


def _size(self, dim=None):
    return list(self.size()) if dim is None else self.size(dim)


def _item(a):
    return a.item()


def _int(a):
    return int(a.item())


def _float(a):
    return float(a.item())


def _bool(a):
    return bool(a.item())


def _len_tensor(t):
    return len(t)


def _feature_dropout(input, p, train):
    return torch.dropout(input, p, False) if not train else torch.feature_dropout(input, p, train)


def _constant_pad_nd(self, pad, value=0):
    return F.pad(self, pad, "constant", value)


def _reflection_pad(self, padding):
    return F.pad(self, padding, "reflect")


def _replication_pad(self, padding):
    return F.pad(self, padding, "replicate")


def _upsample(mode: str):
    def up(input, output_size=None, *rest):
        align = rest[0] if mode != "nearest" and rest and isinstance(rest[0], bool) else None
        scales = rest[-1] if rest and isinstance(rest[-1], list) else None
        return F.interpolate(input, size=output_size, scale_factor=scales, mode=mode, align_corners=align)
    return up


#: aten operators that run through a Python function keeping the names and argument orders the
#: engine's recognisers expect (or TorchScript's semantics)
_TENSOR_SPECIAL: dict[str, Any] = {
    "_convolution": _convolution, "_convolution_mode": _convolution_mode, "batch_norm": _batch_norm,
    "embedding": _embedding, "slice": _slice, "select": _select_index, "index": _index, "size": _size,
    "Int": _int, "Float": _float, "Bool": _bool, "ScalarImplicit": _item, "item": _item, "len": _len_tensor, "feature_dropout": _feature_dropout,
    "constant_pad_nd": _constant_pad_nd, "reflection_pad1d": _reflection_pad, "reflection_pad2d": _reflection_pad,
    "reflection_pad3d": _reflection_pad, "replication_pad1d": _replication_pad, "replication_pad2d": _replication_pad,
    "replication_pad3d": _replication_pad, "upsample_nearest1d": _upsample("nearest"),
    "upsample_nearest2d": _upsample("nearest"), "upsample_nearest3d": _upsample("nearest"),
    "upsample_linear1d": _upsample("linear"), "upsample_bilinear2d": _upsample("bilinear"),
    "upsample_trilinear3d": _upsample("trilinear"), "upsample_bicubic2d": _upsample("bicubic"),
}


def _format(fmt, *args):
    out, i = [], 0
    parts = fmt.split("{}")
    for k, part in enumerate(parts):
        out.append(part)
        if k < len(parts) - 1:
            out.append(str(args[i]) if i < len(args) else "{}")
            i += 1
    return "".join(out)


def _getitem(c, i):
    return c[i]


def _setitem(c, i, v):
    c[i] = v


def _append(lst, el):
    lst.append(el)
    return lst


def _extend(lst, other):
    lst.extend(other)


def _insert(lst, i, el):
    lst.insert(i, el)


def _list_pop(lst, i=-1):
    return lst.pop(i)


def _range_length(lo, hi, step):
    if step == 0:
        raise ScriptRaisedError("range() arg 3 must not be zero")
    if step > 0 and lo < hi:
        return (hi - 1 - lo) // step + 1
    if step < 0 and lo > hi:
        return (lo - 1 - hi) // (-step) + 1
    return 0


def _div(a, b):
    return a / b


def _warn(msg, stacklevel=2):
    warnings.warn(str(msg), stacklevel=2)


#: operations on scalars, strings, lists and dicts (TorchScript's semantics are Python's here)
_PY_OPS: dict[str, Any] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": _div,
    "floordiv": lambda a, b: a // b, "remainder": lambda a, b: a % b, "pow": lambda a, b: a ** b,
    "neg": lambda a: -a, "abs": abs, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "__and__": lambda a, b: a & b, "__or__": lambda a, b: a | b, "__xor__": lambda a, b: a ^ b,
    "__not__": lambda a: not a, "__is__": lambda a, b: a is b, "__isnot__": lambda a, b: a is not b,
    "__contains__": lambda c, x: x in c, "len": len, "__getitem__": _getitem, "_set_item": _setitem,
    "append": _append, "extend": _extend, "insert": _insert, "pop": _list_pop, "list": list,
    "copy": lambda c: c.copy(), "format": _format, "str": str, "Int": int, "Float": float, "Bool": bool,
    "min": min, "max": max, "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt, "log": math.log,
    "exp": math.exp, "__range_length": _range_length, "__derive_index": lambda i, start, step: start + i * step,
    "keys": lambda d: list(d.keys()), "values": lambda d: list(d.values()), "items": lambda d: list(d.items()),
    "get": lambda d, k, default=None: d.get(k, default), "slice": lambda c, s=None, e=None, st=1: c[s:e:st],
    "sum": sum, "warn": _warn, "dict": dict, "clear": lambda c: c.clear(), "reverse": lambda c: c.reverse(),
    "round": round, "ScalarImplicit": lambda a: a,
}


# -- the interpreter -----------------------------------------------------------------------------------

def _dtype_code(dtype: torch.dtype) -> int:
    try:
        return _DTYPE_CODES[dtype]
    except KeyError:
        raise ScriptConversionError(f"tensors of dtype {dtype} are not supported by sciexplain.torchscript") from None


def _convert_enum(name: str, value: Any) -> Any:
    table = _ENUM_ARGS.get(name)
    if table is not None and isinstance(value, int) and not isinstance(value, bool):
        try:
            return table[value]
        except KeyError:
            raise ScriptConversionError(f"unknown {name} code {value} in the TorchScript graph") from None
    return value


def _same_default(value: Any, default: Any) -> bool:
    """True when an argument equals its schema default (bools never equal ints here)."""
    if value is default:
        return True  # None, and the dtype / layout / memory format objects
    if value is None or default is None:
        return False
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return value == default
    if isinstance(value, (str, list)) and type(value) is type(default):
        return value == default
    return False


def _call_torch(call: _Call, values: list) -> Any:
    special = _TENSOR_SPECIAL.get(call.op)
    if special is not None:
        return special(*values)
    names, kwonly, defaults = call.names, call.kwarg_only, call.defaults
    values = [_convert_enum(n, v) for n, v in zip(names, values)]
    positional: list = []
    kwargs: dict = {}
    # keyword-only arguments at their defaults are dropped, and trailing positional ones: the call
    # then reads as a user would write it (``torch.add(x, y)``, not ``torch.add(x, y, alpha=1)``)
    last = -1
    for i, (kw, (has, default), v) in enumerate(zip(kwonly, defaults, values)):
        if not kw and not (has and _same_default(v, _convert_enum(names[i], default))):
            last = i
    for i, (n, kw, (has, default), v) in enumerate(zip(names, kwonly, defaults, values)):
        if kw:
            if not (has and _same_default(v, _convert_enum(n, default))):
                kwargs[n] = v
        elif i <= last:
            positional.append(v)
    if call.op == "to":
        return positional[0].to(*positional[1:], **kwargs)
    fn = _resolve(call.op)
    if isinstance(fn, tuple):
        self, rest = positional[0], positional[1:]
        return getattr(self, fn[1])(*rest, **kwargs)
    return fn(*positional, **kwargs)


class InterpretedModule(nn.Module):
    """A module whose methods interpret a TorchScript graph (made by :func:`to_eager`).

    Its children, parameters and buffers have the names of the script module's; the original
    class name is in :attr:`original_name`.
    """

    def __init__(self, original_name: str, qualified_name: str):
        super().__init__()
        self.original_name = original_name
        self.qualified_name = qualified_name
        self._methods: dict[str, _Block] = {}
        self._signatures: dict[str, tuple] = {}
        self._plain: dict[str, Any] = {}
        self._forward = "forward"  # an overloaded forward compiles to forward__0, forward__1...

    def extra_repr(self) -> str:
        return f"interpreted TorchScript {self.qualified_name}"

    def _remember_attribute(self, sm: Any, name: str) -> bool:
        """Copy a plain attribute (number, string, tensor, containers of them) the graph reads;
        False for anything else (a TorchScript object, an interface-typed module)."""
        if name in self._modules or name in self._parameters or name in self._buffers or name in self._plain \
                or name == "training":
            return True
        value = getattr(sm, name)
        if not _is_plain(value):
            return False
        self._plain[name] = _copy_plain(value)
        return True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the interpreted ``forward`` of the script module."""
        return self._call_method(self._forward, args, kwargs)

    def _call_method(self, name: str, args: tuple, kwargs: Mapping | None = None) -> Any:
        block = self._methods.get(name)
        if block is None:
            raise ScriptConversionError(f"the TorchScript module {self.qualified_name} has no method {name!r} "
                                        "that was converted")
        sig = self._signatures[name]
        if len(args) > len(sig):
            raise ScriptTypeError(f"{self.original_name}.{name}() takes {len(sig)} arguments, got {len(args)}")
        values = list(args)
        for arg_name, has_default, default in sig[len(args):]:
            if kwargs and arg_name in kwargs:
                values.append(kwargs[arg_name])
            elif has_default:
                values.append(default)
            else:
                raise ScriptTypeError(f"{self.original_name}.{name}() is missing the argument {arg_name!r}")
        unknown = set(kwargs or ()) - {a for a, _, _ in sig}
        if unknown:
            raise ScriptTypeError(f"{self.original_name}.{name}() got unknown keyword arguments {sorted(unknown)}")
        out = _run(block, [self, *values])
        return out[0] if len(out) == 1 else tuple(out)


def _is_plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, torch.Tensor, torch.device, torch.dtype)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_is_plain(k) and _is_plain(x) for k, x in v.items())
    return False


def _copy_plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, list):
        return [_copy_plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_copy_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy_plain(x) for k, x in v.items()}
    return v


def _attr(obj: Any, name: str) -> Any:
    if isinstance(obj, InterpretedModule):
        if name in obj._plain:
            return obj._plain[name]
    return getattr(obj, name)


_GRAD_MODES = {"__torch__.torch.autograd.grad_mode.no_grad": "no_grad",
               "__torch__.torch.autograd.grad_mode.enable_grad": "enable_grad"}
_ENTERED = "entered with blocks"  # a key of the value environment that is not a value id


def _run(block: _Block, args: list, env: dict | None = None) -> list:
    env = {} if env is None else env
    for k, v in zip(block.inputs, args):
        env[k] = v
    for op in block.ops:
        try:
            _HANDLERS[op.kind](op, env)
        except Exception as err:
            entered = env.get(_ENTERED)
            while entered:  # leave the with blocks the error jumps out of (grad mode restored)
                entered.pop().__exit__(None, None, None)
            if not isinstance(err, SciexplainError) and not getattr(err, "_sciexplain_where", False):
                # say where in the scripted code a torch error happened, once (the innermost node)
                try:
                    err._sciexplain_where = True
                    err.add_note(f"(while interpreting the TorchScript node {op.where})")
                except (AttributeError, TypeError):  # an exception type that takes no attributes
                    pass
            raise
    return [env[k] for k in block.outputs]


def _set(op: _Op, env: dict, value: Any) -> None:
    if len(op.outputs) == 1:
        env[op.outputs[0]] = value
    elif op.outputs:
        values = tuple(value)
        if len(values) != len(op.outputs):
            raise ScriptConversionError(f"{op.where} gave {len(values)} values for {len(op.outputs)} outputs")
        for k, v in zip(op.outputs, values):
            env[k] = v


def _h_const(op, env):
    env[op.outputs[0]] = op.data


def _h_getattr(op, env):
    env[op.outputs[0]] = _attr(env[op.inputs[0]], op.data)


def _h_setattr(op, env):
    obj, value = env[op.inputs[0]], env[op.inputs[1]]
    name = op.data
    if isinstance(obj, InterpretedModule) and name in obj._plain:
        obj._plain[name] = value
    elif isinstance(obj, InterpretedModule) and name in obj._buffers:
        obj._buffers[name] = value
    else:
        setattr(obj, name, value)


def _select(value: Any, selector: Any) -> Any:
    if selector is None:
        return value
    flat = list(_flatten(value))
    def pick(s):
        return tuple(pick(x) for x in s) if isinstance(s, tuple) else flat[s]
    return pick(selector)


def _flatten(v):
    if isinstance(v, (tuple, list)):
        for x in v:
            yield from _flatten(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _flatten(x)
    else:
        yield v


def _h_callmethod(op, env):
    name, selector = op.data
    target = env[op.inputs[0]]
    args = [env[k] for k in op.inputs[1:]]
    if isinstance(target, InterpretedModule):
        # the forward through __call__, so module hooks (the recorder's scopes) see the call
        out = target(*args) if name == target._forward else target._call_method(name, tuple(args))
    else:
        out = _select(target(*args), selector)
    _set(op, env, out)


def _h_eagermethod(op, env):
    _set(op, env, getattr(env[op.inputs[0]], op.data)(*[env[k] for k in op.inputs[1:]]))


def _h_function(op, env):
    _, body = op.data
    out = _run(body, [env[k] for k in op.inputs])
    _set(op, env, out[0] if len(op.outputs) == 1 else out)


def _h_if(op, env):
    then, other = op.data
    out = _run(then if env[op.inputs[0]] else other, [], env)
    for k, v in zip(op.outputs, out):
        env[k] = v


def _h_loop(op, env):
    body = op.data
    trips, cond, *carried = [env[k] for k in op.inputs]
    i = 0
    while cond and i < trips:
        res = _run(body, [i, *carried], env)
        cond, carried = res[0], res[1:]
        i += 1
    for k, v in zip(op.outputs, carried):
        env[k] = v


def _h_torch(op, env):
    _set(op, env, _call_torch(op.data, [env[k] for k in op.inputs]))


def _h_ops(op, env):
    call = op.data
    fn = getattr(getattr(torch.ops.aten, call.op), call.overload or "default")
    values = [_convert_enum(n, env[k]) for n, k in zip(call.names, op.inputs)]
    positional = [v for v, kw in zip(values, call.kwarg_only) if not kw]
    kwargs = {n: v for n, v, kw in zip(call.names, values, call.kwarg_only) if kw}
    _set(op, env, fn(*positional, **kwargs))


def _h_py(op, env):
    _set(op, env, _PY_OPS[op.data](*[env[k] for k in op.inputs]))


def _h_list(op, env):
    env[op.outputs[0]] = [env[k] for k in op.inputs]


def _h_tuple(op, env):
    env[op.outputs[0]] = tuple(env[k] for k in op.inputs)


def _h_dict(op, env):
    vals = [env[k] for k in op.inputs]
    env[op.outputs[0]] = dict(zip(vals[0::2], vals[1::2]))


def _h_unpack(op, env):
    _set(op, env, tuple(env[op.inputs[0]]))


def _h_index(op, env):
    env[op.outputs[0]] = env[op.inputs[0]][env[op.inputs[1]]]


def _h_tupleslice(op, env):
    beg, end = op.data
    env[op.outputs[0]] = tuple(env[op.inputs[0]][beg:end])


def _h_raise(op, env):
    vals = [env[k] for k in op.inputs]
    msg = str(vals[0]) if vals else ""
    name = str(vals[1]).replace("builtins.", "") if len(vals) > 1 and vals[1] is not None else "Exception"
    if name == "Exception" and msg.split(":", 1)[0] in _RAISED:  # ``assert``: "AssertionError: message"
        name, msg = msg.split(":", 1)[0], msg.split(":", 1)[1].strip()
    raise _RAISED.get(name, ScriptRaisedError)(f"the TorchScript code raised {name}: {msg} "
                                               f"(at {op.where.split(' at ', 1)[-1]})")


def _h_grad_mode(op, env):
    env[op.outputs[0]] = torch.no_grad() if op.data == "no_grad" else torch.enable_grad()


def _h_enter(op, env):
    ctx = env[op.inputs[0]]
    ctx.__enter__()
    env.setdefault(_ENTERED, []).append(ctx)
    _set(op, env, None)


def _h_exit(op, env):
    entered = env.get(_ENTERED, [])
    ctx = env[op.inputs[0]]
    if entered and entered[-1] is ctx:
        entered.pop()
    ctx.__exit__(None, None, None)
    _set(op, env, None)


def _h_unsupported(op, env):
    raise ScriptConversionError(f"cannot interpret the TorchScript node {op.where}: {op.data}. The model cannot be "
                                "converted to an eager module; explain a model built from its Python class instead "
                                "(load the weights as a state dict), or use a gradient method on the script module")


def _unary(fn):
    def h(op, env):
        _set(op, env, fn(*[env[k] for k in op.inputs]))
    return h


_HANDLERS = {
    "const": _h_const, "getattr": _h_getattr, "setattr": _h_setattr, "callmethod": _h_callmethod,
    "function": _h_function, "eagermethod": _h_eagermethod, "grad_mode": _h_grad_mode, "enter": _h_enter,
    "exit": _h_exit, "if": _h_if, "loop": _h_loop, "torch": _h_torch, "ops": _h_ops, "py": _h_py,
    "list": _h_list, "tuple": _h_tuple, "dict": _h_dict, "unpack": _h_unpack, "index": _h_index,
    "tupleslice": _h_tupleslice, "raise": _h_raise, "unsupported": _h_unsupported,
    "none": _unary(lambda: None), "same": _unary(lambda x: x),
    "numtotensor": _unary(lambda n: torch.tensor(n)),
    "dtype": _unary(lambda t: _dtype_code(t.dtype)), "device": _unary(lambda t: t.device),
    "layout": _unary(lambda t: 0), "requires_grad": _unary(lambda t: t.requires_grad),
    "is_cuda": _unary(lambda t: t.is_cuda), "shape": _unary(lambda t: list(t.shape)),
    "data": _unary(lambda t: t.detach()), "print": _unary(lambda *a: print(*a)),
    "min": _unary(lambda *a: min(*a)), "max": _unary(lambda *a: max(*a)), "abs": _unary(abs),
    "tolist": _unary(lambda t, *a: t.tolist()), "str": _unary(str), "is_nested": _unary(lambda t: t.is_nested),
    "device_type": _unary(lambda d: d.type),
}


# -- rebuilding standard torch.nn layers -----------------------------------------------------------------

_NN_PREFIX = "__torch__.torch.nn.modules."
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: constructor parameters that only set initial values (the copied parameters replace them)
_INIT_ONLY = {"device", "dtype", "_weight", "_freeze", "init"}
_RNN_PARAMS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
               "proj_size")
_MISSING = object()


def _training(sm: Any) -> bool:
    # a frozen module (torch.jit.freeze) keeps no training flag: it is in eval mode
    try:
        return bool(sm.training)
    except AttributeError:
        return False


def _qualified_name(sm: Any) -> str:
    return sm._c._type().qualified_name()


def _standard_class(sm: Any) -> type | None:
    """The torch.nn class of a script module compiled from torch's own layer, else None.

    Decided by the class's qualified name in the file (``__torch__.torch.nn.modules.conv.Conv2d``), not
    by ``original_name`` alone: a user's own class called ``Linear`` lives elsewhere."""
    qualified = _qualified_name(sm)
    if not qualified.startswith(_NN_PREFIX):
        return None
    name = [p for p in qualified.split(".") if not p.startswith("___torch_mangle")][-1]
    cls = getattr(nn, name, None)
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__.startswith("torch.nn.modules"):
        return cls
    return None


def _init_params(cls: type) -> list[str]:
    import inspect
    if issubclass(cls, nn.RNNBase):
        # GRU and RNN refuse a proj_size argument (LSTM only), even 0
        params = [p for p in _RNN_PARAMS if p != "proj_size" or issubclass(cls, nn.LSTM)]
        return params + (["nonlinearity"] if cls is nn.RNN else [])
    sig = inspect.signature(cls.__init__)
    return [p.name for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _INIT_ONLY]


#: constructor arguments that a layer keeps under another name
_DERIVED: dict[type, dict[str, Any]] = {
    nn.MultiheadAttention: {"bias": lambda sm: getattr(sm, "in_proj_bias", None) is not None,
                            "add_bias_kv": lambda sm: getattr(sm, "bias_k", None) is not None},
}


def _kwargs_from_attributes(cls: type, sm: Any) -> dict | None:
    """Constructor arguments from a scripted layer's attributes (``torch.jit.script`` keeps them)."""
    kwargs = {}
    derived = _DERIVED.get(cls, {})
    for name in _init_params(cls):
        try:
            value = derived[name](sm) if name in derived else getattr(sm, name)
        except AttributeError:
            return None
        if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        elif isinstance(value, (torch.Tensor, torch.jit.ScriptModule)):
            return None
        kwargs[name] = value
    if issubclass(cls, nn.LSTM) and kwargs.get("proj_size") is None:
        kwargs["proj_size"] = 0
    return kwargs


class _Static:
    """What a traced layer's graph computes, read without running it: its one operation (``core``),
    the constant values of that operation's arguments and how the graph's outputs are made of the
    operation's outputs."""

    _SHAPE_NODES = {"aten::size", "prim::NumToTensor", "aten::Int", "aten::zeros"}

    def __init__(self, graph: Any):
        inputs = list(graph.inputs())
        self.self_id = inputs[0].unique()
        self.inputs = {v.unique(): ("input", i) for i, v in enumerate(inputs[1:])}
        self.known: dict[int, Any] = dict(self.inputs)
        self.core: list[Any] = []
        self.zeros: set[int] = set()
        for node in graph.nodes():
            kind, outs = node.kind(), [v.unique() for v in node.outputs()]
            ins = [v.unique() for v in node.inputs()]
            if kind == "prim::Constant":
                self.known[outs[0]] = node.output().toIValue() if node.hasAttribute("value") else None
            elif kind == "prim::GetAttr" and ins[0] == self.self_id:
                self.known[outs[0]] = ("attr", node.s("name"))
            elif kind == "prim::ListConstruct":
                self.known[outs[0]] = [self.known.get(i, _MISSING) for i in ins]
            elif kind == "prim::TupleConstruct":
                continue  # how outputs are grouped: read by returned()
            elif kind in self._SHAPE_NODES:
                if kind == "aten::zeros":
                    self.zeros.update(outs)
                self.known[outs[0]] = ("shape",)
            else:
                self.core.append(node)
        self.outputs = [v.unique() for v in graph.outputs()]
        self.graph = graph

    def single(self, kinds: set[str]) -> tuple[str, list] | None:
        if len(self.core) == 1 and self.core[0].kind() in kinds:
            node = self.core[0]
            return node.kind().split("::")[1], [self.known.get(v.unique(), _MISSING) for v in node.inputs()]
        return None

    def returned(self) -> Any:
        """The graph's output as indices into the core operation's outputs (tuples nest)."""
        if not self.core:
            return _MISSING
        core_outs = {v.unique(): k for k, v in enumerate(self.core[0].outputs())}
        producers = {v.unique(): n for n in self.graph.nodes() for v in n.outputs()}

        def resolve(vid):
            if vid in core_outs:
                return core_outs[vid]
            node = producers.get(vid)
            if node is not None and node.kind() == "prim::TupleConstruct":
                return tuple(resolve(v.unique()) for v in node.inputs())
            return _MISSING
        outs = [resolve(v) for v in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _is_input(v: Any) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and v[0] == "input" and v[1] == 0


def _consts(*values: Any) -> bool:
    def ok(v):
        if isinstance(v, list):
            return all(ok(x) for x in v)
        return v is not _MISSING and not isinstance(v, tuple)
    return all(ok(v) for v in values)


def _traced_kwargs(cls: type, sm: Any, st: _Static) -> tuple[dict, Any] | None:
    """Constructor arguments of a traced layer from the constants of its one operation, and the
    selection of the eager module's outputs that the traced graph returns (None: all of them)."""
    params = dict(sm.named_parameters(recurse=False))
    ret = st.returned()
    simple = _SIMPLE_TRACED.get(cls)
    if simple is not None:
        kinds, read = simple
        hit = st.single(kinds)
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        op, args = hit
        if not _consts(*args[1:]):
            return None
        kwargs = read(op, args)
        return (kwargs, None) if kwargs is not None else None
    if cls is nn.Linear:
        hit = st.single({"aten::linear"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        w = params["weight"]
        return {"in_features": w.shape[1], "out_features": w.shape[0], "bias": "bias" in params}, None
    if cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        hit = st.single({"aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                         "aten::_convolution_mode"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        op, a = hit
        if op == "_convolution":
            if a[6] is not False or not _consts(a[3], a[4], a[5], a[8]):
                return None
            stride, padding, dilation, groups = a[3], a[4], a[5], a[8]
        else:
            if not _consts(a[3], a[4], a[5], a[6]):
                return None
            stride, padding, dilation, groups = a[3], a[4], a[5], a[6]
        w = params["weight"]
        return {"in_channels": w.shape[1] * groups, "out_channels": w.shape[0], "kernel_size": tuple(w.shape[2:]),
                "stride": _tuple(stride), "padding": _tuple(padding), "dilation": _tuple(dilation), "groups": groups,
                "bias": "bias" in params}, None
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        hit = st.single({"aten::batch_norm"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        a = hit[1]
        if a[5] is not False or not _consts(a[6], a[7]):
            return None  # traced with batch statistics: interpreted as such
        buffers = dict(sm.named_buffers(recurse=False))
        ref = buffers.get("running_mean", params.get("weight"))
        if ref is None:
            return None
        return {"num_features": ref.shape[0], "eps": a[7], "momentum": a[6], "affine": "weight" in params,
                "track_running_stats": "running_mean" in buffers}, None
    if cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
               nn.AdaptiveMaxPool3d):
        n = cls.__name__[-2]
        adaptive = cls.__name__.startswith("Adaptive")
        base = f"aten::adaptive_max_pool{n}d" if adaptive else f"aten::max_pool{n}d"
        hit = st.single({base, base + "_with_indices"} if not adaptive else {base})
        if hit is None or not _is_input(hit[1][0]) or not _consts(*hit[1][1:]):
            return None
        op, a = hit
        indices = adaptive or op.endswith("_with_indices")
        if ret == 0:
            selector, return_indices = None, False
        elif indices and ret == (0, 1):
            selector, return_indices = None, True
        elif indices and ret == 1:
            selector, return_indices = 1, True
        else:
            return None
        if adaptive:
            return {"output_size": _tuple(a[1]), "return_indices": return_indices}, selector
        return {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]), "padding": _tuple(a[3]),
                "dilation": _tuple(a[4]), "ceil_mode": a[5], "return_indices": return_indices}, selector
    if cls is nn.Embedding:
        hit = st.single({"aten::embedding"})
        if hit is None or not _is_input(hit[1][1]) or ret != 0 or not _consts(*hit[1][2:]):
            return None
        a = hit[1]
        w = params["weight"]
        return {"num_embeddings": w.shape[0], "embedding_dim": w.shape[1],
                "padding_idx": None if a[2] < 0 else a[2], "scale_grad_by_freq": a[3], "sparse": a[4]}, None
    if cls in (nn.LSTM, nn.GRU, nn.RNN):
        return _traced_rnn(cls, sm, st, params, ret)
    if cls is nn.Upsample:
        hit = st.single({f"aten::upsample_{m}" for m in ("nearest1d", "nearest2d", "nearest3d", "linear1d",
                                                          "bilinear2d", "bicubic2d", "trilinear3d")})
        if hit is None or not _is_input(hit[1][0]) or ret != 0 or ".vec(" not in st.core[0].schema():
            return None
        op, a = hit
        mode = {"nearest": "nearest", "linear": "linear", "bilinear": "bilinear", "bicubic": "bicubic",
                "trilinear": "trilinear"}[op[len("upsample_"):-2]]
        size, scales = a[1], a[-1]
        align = None if mode == "nearest" else a[2]
        if not _consts(size, scales, align):
            return None  # e.g. recompute_scale_factor: a size computed from the traced input
        return {"size": _tuple(size), "scale_factor": _tuple(scales), "mode": mode, "align_corners": align}, None
    if cls in (nn.LayerNorm, nn.GroupNorm, nn.PReLU):
        op = {nn.LayerNorm: "aten::layer_norm", nn.GroupNorm: "aten::group_norm", nn.PReLU: "aten::prelu"}[cls]
        hit = st.single({op})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        a = hit[1]
        if cls is nn.PReLU:
            return {"num_parameters": params["weight"].numel()}, None
        if not _consts(a[1], a[4]) or "weight" not in params and cls is nn.GroupNorm:
            return None
        if cls is nn.LayerNorm:
            return {"normalized_shape": _tuple(a[1]), "eps": a[4], "elementwise_affine": "weight" in params,
                    "bias": "bias" in params}, None
        return {"num_groups": a[1], "num_channels": params["weight"].shape[0], "eps": a[4], "affine": True}, None
    return None


def _traced_rnn(cls, sm, st, params, ret):
    kinds = {nn.LSTM: {"aten::lstm"}, nn.GRU: {"aten::gru"}, nn.RNN: {"aten::rnn_tanh", "aten::rnn_relu"}}[cls]
    hit = st.single(kinds)
    if hit is None or not _is_input(hit[1][0]):
        return None
    op, a = hit
    node = st.core[0]
    hx_value = node.inputsAt(1)
    hx_parts = [v.unique() for v in hx_value.node().inputs()] if cls is nn.LSTM else [hx_value.unique()]
    if not all(h in st.zeros for h in hx_parts):
        return None  # an explicit initial state: interpreted instead
    if not _consts(a[3], a[4], a[5], a[6], a[7], a[8]) or a[6] is not False:
        return None
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[cls]
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    kwargs = {"input_size": w_ih.shape[1], "hidden_size": w_hh.shape[0] // gates, "num_layers": a[4],
              "bias": a[3], "batch_first": a[8], "dropout": a[5], "bidirectional": a[7]}
    if cls is nn.LSTM:
        kwargs["proj_size"] = params["weight_hr_l0"].shape[0] if "weight_hr_l0" in params else 0
    if cls is nn.RNN:
        kwargs["nonlinearity"] = "tanh" if op == "rnn_tanh" else "relu"
    full = (0, (1, 2)) if cls is nn.LSTM else (0, 1)
    if ret is _MISSING:
        return None
    return kwargs, (None if ret == full else ret)


def _act(**fixed):
    def read(op, args):
        return dict(fixed)
    return read


def _inplace(op, args):
    return {"inplace": op.endswith("_")}


_SIMPLE_TRACED: dict[type, tuple[set, Any]] = {
    nn.ReLU: ({"aten::relu", "aten::relu_"}, _inplace),
    nn.ReLU6: ({"aten::relu6", "aten::relu6_", "aten::hardtanh", "aten::hardtanh_"},
               lambda op, a: {"inplace": op.endswith("_")} if op.startswith("relu6") or (a[1] == 0 and a[2] == 6)
               else None),
    nn.Hardtanh: ({"aten::hardtanh", "aten::hardtanh_"},
                  lambda op, a: {"min_val": a[1], "max_val": a[2], "inplace": op.endswith("_")}),
    nn.LeakyReLU: ({"aten::leaky_relu", "aten::leaky_relu_"},
                   lambda op, a: {"negative_slope": a[1], "inplace": op.endswith("_")}),
    nn.ELU: ({"aten::elu", "aten::elu_"},
             lambda op, a: {"alpha": a[1], "inplace": op.endswith("_")} if a[2] == 1 and a[3] == 1 else None),
    nn.GELU: ({"aten::gelu"}, lambda op, a: {"approximate": a[1]}),
    nn.SiLU: ({"aten::silu", "aten::silu_"}, _inplace),
    nn.Softmax: ({"aten::softmax"}, lambda op, a: {"dim": a[1]} if a[2] is None else None),
    nn.LogSoftmax: ({"aten::log_softmax"}, lambda op, a: {"dim": a[1]} if a[2] is None else None),
    nn.Softplus: ({"aten::softplus"}, lambda op, a: {"beta": a[1], "threshold": a[2]}),
    nn.Dropout: ({"aten::dropout", "aten::dropout_"},
                 lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout1d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout2d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout3d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Flatten: ({"aten::flatten"}, lambda op, a: {"start_dim": a[1], "end_dim": a[2]}),
    nn.AvgPool1d: ({"aten::avg_pool1d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5]}),
    nn.AvgPool2d: ({"aten::avg_pool2d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5], "divisor_override": a[6]}),
    nn.AvgPool3d: ({"aten::avg_pool3d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5], "divisor_override": a[6]}),
    nn.AdaptiveAvgPool1d: ({"aten::adaptive_avg_pool1d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.AdaptiveAvgPool2d: ({"aten::adaptive_avg_pool2d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.AdaptiveAvgPool3d: ({"aten::adaptive_avg_pool3d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.ZeroPad1d: ({"aten::constant_pad_nd", "aten::pad"}, lambda op, a: {"padding": _tuple(a[1])}
                   if not a[2:] or (a[2] in (0, 0.0, "constant") and (len(a) < 4 or a[3] in (None, 0, 0.0))) else None),
}
_SIMPLE_TRACED[nn.Unflatten] = ({"aten::unflatten"}, lambda op, a: {"dim": a[1], "unflattened_size": _tuple(a[2])})
_SIMPLE_TRACED[nn.ZeroPad2d] = _SIMPLE_TRACED[nn.ZeroPad3d] = _SIMPLE_TRACED[nn.ZeroPad1d]


def _float_dtype(sm: Any) -> torch.dtype | None:
    dtypes = {t.dtype for t in list(sm.parameters()) + list(sm.buffers()) if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _build(cls: type, kwargs: dict, sm: Any) -> nn.Module | None:
    import inspect
    dtype = _float_dtype(sm)
    try:
        accepts_dtype = "dtype" in inspect.signature(cls.__init__).parameters or issubclass(cls, nn.RNNBase)
        extra = {"dtype": dtype} if dtype is not None and accepts_dtype else {}
        with torch.no_grad():
            module = cls(**kwargs, **extra)
            module.load_state_dict({k: v.detach() for k, v in sm.state_dict().items()}, strict=True)
    except Exception:  # noqa: BLE001 -- hyper-parameters that do not fit: interpret the layer instead
        return None
    return module


# -- the converter ---------------------------------------------------------------------------------------

class _Converter:
    def __init__(self) -> None:
        self.selectors: dict[int, Any] = {}
        self.functions: dict[tuple, _Block | None] = {}

    def convert(self, sm: Any, path: str, top: bool = False) -> nn.Module:
        cls = _standard_class(sm)
        if cls is not None:
            module = self.rebuild(cls, sm, path, top)
            if module is not None:
                module.train(_training(sm))
                return module
        return self.interpreted(sm, path)

    def rebuild(self, cls: type, sm: Any, path: str, top: bool) -> nn.Module | None:
        if issubclass(cls, _CONTAINERS):
            return self.container(cls, sm, path)
        kwargs = _kwargs_from_attributes(cls, sm)
        selector = None
        if kwargs is None:
            if "forward" not in sm._c._method_names():
                return None
            traced = _traced_kwargs(cls, sm, _Static(sm._c._get_method("forward").graph))
            if traced is None:
                return None
            kwargs, selector = traced
        if selector is not None and top:
            return None  # the traced model returns part of the layer's outputs: interpret it
        module = _build(cls, kwargs, sm)
        if module is not None and selector is not None:
            self.selectors[id(module)] = selector
        return module

    def container(self, cls: type, sm: Any, path: str) -> nn.Module | None:
        children = [(n, self.convert(c, f"{path}.{n}" if path else n)) for n, c in sm.named_children()]
        if cls is nn.Sequential:
            if any(id(c) in self.selectors for _, c in children) or not _is_chain(sm, [n for n, _ in children]):
                return None
            return nn.Sequential(OrderedDict(children))
        if cls is nn.ModuleList:
            return nn.ModuleList([c for _, c in children])
        return nn.ModuleDict(dict(children))

    def interpreted(self, sm: Any, path: str) -> InterpretedModule:
        module = InterpretedModule(sm.original_name, _qualified_name(sm))
        for name, child in sm.named_children():
            module.add_module(name, self.convert(child, f"{path}.{name}" if path else name))
        for name, p in sm.named_parameters(recurse=False):
            module.register_parameter(name, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for name, b in sm.named_buffers(recurse=False):
            module.register_buffer(name, b.detach().clone())
        module.train(_training(sm))
        names = sm._c._method_names()
        overloads = sorted(n for n in names if n.startswith("forward__"))
        if "forward" not in names and overloads:
            module._forward = overloads[0]
        for name in (["forward"] if "forward" in names else overloads):
            self.compile_method(sm, module, name)
        return module

    def compile_method(self, sm: Any, module: InterpretedModule, name: str) -> None:
        if name in module._methods:
            return
        if name not in sm._c._method_names():
            raise ScriptConversionError(f"the TorchScript module {_qualified_name(sm)} has no method {name!r}")
        method = sm._c._get_method(name)
        args = list(method.schema.arguments)[1:]
        module._signatures[name] = tuple((a.name, a.has_default_value(),
                                          a.default_value if a.has_default_value() else None) for a in args)
        module._methods[name] = _Block((), (), ())  # placeholder against (forbidden) recursion
        module._methods[name] = _GraphCompiler(self, sm, module).graph(method.graph)

    def function_body(self, node: Any) -> _Block | None:
        """The graph of a called TorchScript function: the call alone in a small graph, inlined.
        None when inlining leaves the call in place (then it cannot be interpreted)."""
        key = (str(node.inputsAt(0).type()), tuple(str(v.type()) for v in node.inputs()))
        if key in self.functions:
            return self.functions[key]
        self.functions[key] = None  # a call that survives inlining finds this and is refused
        small = torch._C.Graph()
        mapping = {}
        fn_node = node.inputsAt(0).node()
        clone = small.createClone(fn_node, lambda v: v)
        small.insertNode(clone)
        mapping[node.inputsAt(0).unique()] = clone.output()
        for v in list(node.inputs())[1:]:
            nv = small.addInput()
            nv.setType(v.type())
            mapping[v.unique()] = nv
        call = small.createClone(node, lambda v: mapping[v.unique()])
        small.insertNode(call)
        for o in call.outputs():
            small.registerOutput(o)
        torch._C._jit_pass_inline(small)
        body = _GraphCompiler(self, None, None).block_of(list(small.inputs()), small.nodes(), list(small.outputs()))
        self.functions[key] = body
        return body


def _is_chain(sm: Any, names: list[str]) -> bool:
    """True when a Sequential's forward calls each child's forward once, in order, on the previous output."""
    if "forward" not in sm._c._method_names():
        return False
    graph = sm._c._get_method("forward").graph
    inputs = list(graph.inputs())
    if len(inputs) != 2:
        return False
    child_of, current, called = {}, inputs[1].unique(), []
    for node in graph.nodes():
        kind = node.kind()
        if kind == "prim::GetAttr" and node.inputsAt(0).unique() == inputs[0].unique():
            child_of[node.output().unique()] = node.s("name")
        elif kind == "prim::CallMethod" and node.s("name") == "forward" and node.inputsSize() == 2 \
                and node.inputsAt(1).unique() == current and node.inputsAt(0).unique() in child_of:
            called.append(child_of[node.inputsAt(0).unique()])
            current = node.output().unique()
        elif kind != "prim::Constant":
            return False
    outs = list(graph.outputs())
    return called == names and len(outs) == 1 and outs[0].unique() == current


def to_eager(script_module: Any, example: Any = None, *, rtol: float = 1e-5, atol: float = 1e-6) -> nn.Module:
    """An eager module computing the same function as a TorchScript module, for LRP.

    Parameters
    ----------
    script_module : torch.jit.ScriptModule
        A scripted, traced or loaded (``torch.jit.load``) module. It is not modified.
    example : tensor or tuple of tensors, optional
        Inputs on which the eager module's output is compared with the script module's; a
        difference beyond ``rtol``/``atol`` raises :class:`ScriptConversionError`.
    rtol, atol : float
        Tolerances of that comparison.

    Returns
    -------
    torch.nn.Module
        Standard ``torch.nn`` layers rebuilt as such (with copies of the parameters and buffers),
        the rest as :class:`InterpretedModule` objects with the same child names, so module paths
        are those of the original model. Training flags are copied.

    Raises
    ------
    InputTypeError
        ``script_module`` is not a TorchScript module.
    ScriptConversionError
        A node cannot be interpreted (raised when it is reached), or the example outputs differ.
    """
    from ..errors import InputTypeError
    if not is_script_module(script_module):
        raise InputTypeError(f"to_eager expects a TorchScript module (torch.jit.script, torch.jit.trace or "
                             f"torch.jit.load), got {type(script_module).__name__}; an eager nn.Module can be "
                             "explained as it is")
    try:
        model = _Converter().convert(script_module, "", top=True)
    except SciexplainError:
        raise
    except Exception as err:  # noqa: BLE001 -- a graph this module did not foresee: say so, named
        raise ScriptConversionError(f"the TorchScript module {script_module.original_name} could not be converted: "
                                    f"{type(err).__name__}: {err}") from err
    if example is not None:
        _compare(script_module, model, example, rtol, atol)
    return model


def _compare(script_module: Any, model: nn.Module, example: Any, rtol: float, atol: float) -> None:
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        want, got = script_module(*args), model(*args)
    want_flat, got_flat = list(_flatten(want)), list(_flatten(got))
    if len(want_flat) != len(got_flat):
        raise ScriptConversionError(f"the eager module returns {len(got_flat)} values, the script module "
                                    f"{len(want_flat)}")
    for i, (w, g) in enumerate(zip(want_flat, got_flat)):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor) or w.shape != g.shape or not torch.allclose(w, g, rtol=rtol, atol=atol):
                diff = (w - g).abs().max().item() if isinstance(g, torch.Tensor) and w.shape == g.shape else "shape"
                raise ScriptConversionError(f"output {i} of the eager module differs from the script module's "
                                            f"(max |difference| {diff}); please report this model")
        elif w != g:
            raise ScriptConversionError(f"output {i} of the eager module ({g!r}) differs from the script module's "
                                        f"({w!r})")


from .base import ModelCanonizer  # noqa: E402  (canonizers does not import this module)


class TorchScriptToEager(ModelCanonizer):
    """Model canonizer: a TorchScript module (the model itself or a submodule) is explained as
    :func:`to_eager` of it, so that ``sx.explain(torch.jit.load(path), x)`` records ordinary torch
    calls. The script module is not modified; the conversion is listed in
    ``attrs["canonizers"]``. One of :func:`sciexplain.canonizers.default`.
    """

    name = "TorchScriptToEager"

    def describe(self) -> str:
        return "TorchScriptToEager (TorchScript graph interpreted as eager modules)"

    def replacement(self, module: nn.Module, path: str) -> nn.Module | None:
        """``to_eager(module)`` for a TorchScript module, None for every other module."""
        return to_eager(module) if is_script_module(module) else None

    def __eq__(self, other) -> bool:
        return isinstance(other, TorchScriptToEager)

    def __hash__(self) -> int:
        return hash(TorchScriptToEager)

    def __repr__(self) -> str:
        return "TorchScriptToEager()"
