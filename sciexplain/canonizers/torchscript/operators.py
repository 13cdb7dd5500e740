"""The operator table: each ``aten::`` operator as the public torch call (or Python operation) it stands for.

TorchScript's encodings (dtypes as integer codes, ``int[]`` lists) are converted here, and a
call is written as a user would write it, so the engine's recorder sees the names its rules are
registered under.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ScriptConversionError, ScriptRaisedError
from .program import _Call


_DTYPES = {0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64, 5: torch.float16,
           6: torch.float32, 7: torch.float64, 8: torch.complex32, 9: torch.complex64, 10: torch.complex128,
           11: torch.bool, 15: torch.bfloat16}
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}
_LAYOUTS = {0: torch.strided, 1: torch.sparse_coo}
_MEMORY_FORMATS = {0: torch.contiguous_format, 1: torch.preserve_format, 2: torch.channels_last,
                   3: torch.channels_last_3d}
_ENUM_ARGS = {"dtype": _DTYPES, "layout": _LAYOUTS, "memory_format": _MEMORY_FORMATS}


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
