"""The graph compiler: one TorchScript method graph read node by node into a program of :mod:`.program` data."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .allowlist import operator_allowed
from .errors import ScriptConversionError
from .interpreter import _GRAD_MODES, InterpretedModule
from .operators import _PY_OPS, _TENSOR_SPECIAL, _resolve
from .program import _Block, _Call, _Op


class _MethodSource(Protocol):
    """What the compiler asks of the converter (:class:`~.converter._Converter`): the methods and
    functions a graph calls, compiled, and the output selections of rebuilt traced layers."""

    selectors: dict[int, Any]

    def compile_method(self, sm: Any, module: InterpretedModule, name: str) -> None: ...

    def function_body(self, node: Any) -> _Block | None: ...


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

    def __init__(self, converter: _MethodSource, script_module: Any, owner: nn.Module):
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
        if not operator_allowed(kind):  # files, printing, anything not tensor mathematics: never run
            return _Op("refused", ins, outs, kind, where)
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
    "prim::shape": "shape", "prim::data": "data", "prim::min": "min",
    "prim::max": "max", "prim::abs": "abs", "prim::tolist": "tolist", "prim::str": "str",
    "prim::ListIndex": "index", "prim::is_nested": "is_nested", "prim::type": "device_type",
}


def _has_tensor(t: Any) -> bool:
    if t.kind() == "TensorType":
        return True
    return any(_has_tensor(c) for c in t.containedTypes())
