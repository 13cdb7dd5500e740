"""The interpreter: :class:`InterpretedModule` runs a compiled TorchScript program node by node in Python."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ...errors import SciexplainError
from .allowlist import ScriptOperatorError
from .errors import _RAISED, ScriptConversionError, ScriptRaisedError, ScriptTypeError
from .operators import _PY_OPS, _call_torch, _convert_enum, _dtype_code
from .program import _Block, _Op

__all__ = ["InterpretedModule"]


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


def _h_refused(op, env):
    raise ScriptOperatorError(f"the TorchScript node {op.where} is not run: {op.data} is not on sciexplain's "
                              "operator allowlist (tensor mathematics only; see sciexplain.torchscript.allowlist)")


def _unary(fn):
    def h(op, env):
        _set(op, env, fn(*[env[k] for k in op.inputs]))
    return h


_HANDLERS = {
    "const": _h_const, "getattr": _h_getattr, "setattr": _h_setattr, "callmethod": _h_callmethod,
    "function": _h_function, "eagermethod": _h_eagermethod, "grad_mode": _h_grad_mode, "enter": _h_enter,
    "exit": _h_exit, "if": _h_if, "loop": _h_loop, "torch": _h_torch, "ops": _h_ops, "py": _h_py,
    "list": _h_list, "tuple": _h_tuple, "dict": _h_dict, "unpack": _h_unpack, "index": _h_index,
    "tupleslice": _h_tupleslice, "raise": _h_raise, "unsupported": _h_unsupported, "refused": _h_refused,
    "none": _unary(lambda: None), "same": _unary(lambda x: x),
    "numtotensor": _unary(lambda n: torch.tensor(n)),
    "dtype": _unary(lambda t: _dtype_code(t.dtype)), "device": _unary(lambda t: t.device),
    "layout": _unary(lambda t: 0), "requires_grad": _unary(lambda t: t.requires_grad),
    "is_cuda": _unary(lambda t: t.is_cuda), "shape": _unary(lambda t: list(t.shape)),
    "data": _unary(lambda t: t.detach()),
    "min": _unary(lambda *a: min(*a)), "max": _unary(lambda *a: max(*a)), "abs": _unary(abs),
    "tolist": _unary(lambda t, *a: t.tolist()), "str": _unary(str), "is_nested": _unary(lambda t: t.is_nested),
    "device_type": _unary(lambda d: d.type),
}
