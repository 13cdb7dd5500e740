"""The converter: :func:`to_eager` rebuilds a TorchScript module's torch layers and interprets the rest."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ...errors import InputTypeError, SciexplainError
from .allowlist import check_operators
from .compiler import _GraphCompiler
from .errors import ScriptConversionError
from .interpreter import InterpretedModule, _flatten
from .layers import (_CONTAINERS, _Static, _build, _kwargs_from_attributes, _qualified_name, _standard_class,
                     _traced_kwargs, _training)
from .program import _Block

__all__ = ["to_eager", "is_script_module"]


def is_script_module(model: Any) -> bool:
    """True for a TorchScript module (scripted, traced, or loaded with ``torch.jit.load``)."""
    return isinstance(model, torch.jit.ScriptModule)


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
    ScriptOperatorError
        A graph names an operator outside the allowlist (:mod:`.allowlist`: files, printing...).
    ScriptConversionError
        A node cannot be interpreted (raised when it is reached), or the example outputs differ.
    """
    if not is_script_module(script_module):
        raise InputTypeError(f"to_eager expects a TorchScript module (torch.jit.script, torch.jit.trace or "
                             f"torch.jit.load), got {type(script_module).__name__}; an eager nn.Module can be "
                             "explained as it is")
    check_operators(script_module)  # before anything is copied or compiled: tensor mathematics only
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
