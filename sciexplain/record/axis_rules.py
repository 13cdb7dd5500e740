"""Where each operation puts the batch dim of its inputs: one rule per operation (family).

Relevance is kept per sample, so the engine must know, for every recorded tensor, which dim
indexes the samples: the input's is dim 0, and each operation moves it (a transpose), removes
other dims around it (indexing, unbind, reductions), or loses it (a reduction over it, a
reshape that merges it with other dims, indexing that picks or reorders samples). The rules
below follow what each operation does, never the shapes alone: a (time, batch) tensor with
as many steps as samples is told apart from a (batch, time) one by the transposes it passed.
:mod:`sciexplain.record.batch_axes` applies them along the tape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .call_args import _arg, _constant_operand
from .op_names import (_ACT_FUNCS, _ACT_MODULES, _BN_MODULES, _CONV_FUNCS, _CONV_MODULES, _CONV_TRANSPOSE_FUNCS,
                       _CONV_TRANSPOSE_MODULES, _ELEMENTWISE_MAPS, _MASKED_FILL_FUNCS, _MATMUL_FUNCS, _MAX_FUNCS,
                       _MAX_MODULES, _POOL_MODULES, _SCALE_FUNCS, _SUM_FUNCS)
from .index_axes import _BatchLost, _indexed
from .tape import _PADS, Node, OneSample, Ref, _Placeholder, replay_args


def _dim(d: Any, ndim: int) -> int:
    d = int(d)
    return d + ndim if d < 0 else d


def _dims(ds: Any, ndim: int) -> list[int]:
    if isinstance(ds, (list, tuple, torch.Size)):
        return [_dim(d, ndim) for d in ds]
    return [_dim(ds, ndim)]


def _broadcast(node: Node, known: dict[Ref, int], shape_of) -> int:
    """Element-wise with broadcasting (aligned from the last dim): every operand's batch dim
    must land on the same output dim, else the operation combines different samples."""
    out_ndim = node.outputs[0].ndim
    at = {b + out_ndim - len(shape_of(ref)) for ref, b in known.items()}
    if len(at) > 1:
        raise _BatchLost(f"combines different samples: its operands' batch dims land on output dims "
                         f"{sorted(at)}")
    return at.pop()


def _reduced(node: Node, b: int, ndim: int, dim_pos: int, keep_pos: int, all_if_missing=True) -> int:
    dim = _arg(node, dim_pos, "dim", "axis")
    keepdim = bool(_arg(node, keep_pos, "keepdim", default=False))
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0 and all_if_missing):
        raise _BatchLost("reduces over all dims, the batch dim included")
    dims = _dims(dim, ndim)
    if b in dims:
        raise _BatchLost(f"reduces over the batch dim (dim {b})")
    return b if keepdim else b - sum(d < b for d in set(dims))


def _trailing(b: int, ndim: int, k: int, what: str) -> int:
    """An operation on the last ``k`` dims (pooling, padding, pixel shuffle): the batch dim
    must be one of the others."""
    if b >= ndim - k:
        raise _BatchLost(f"{what} acts on the last {k} dim(s) of the tensor, the batch dim (dim {b}) among them")
    return b


def _spatial_k(name: str) -> int:
    return 3 if "3d" in name else 2 if "2d" in name else 1


def _module_k(m: nn.Module) -> int:
    """1, 2 or 3: the spatial dims of a torch pooling or convolution module (or of the torch
    class a subclass derives from)."""
    base = next(c for c in type(m).__mro__ if c.__module__.startswith("torch.nn"))
    return _spatial_k(base.__name__.lower())


def _reshaped(shape: tuple, b: int, out: tuple, B: int) -> int:
    """A reshape in row-major order keeps the batch as an output dim ``a`` exactly when the dims
    before it hold as many entries as those before ``b`` and ``out[a] == B``."""
    pre = 1
    for s in shape[:b]:
        pre *= s
    found, acc = [], 1
    for a, s in enumerate(out):
        if acc == pre and s == B:
            found.append(a)
        acc *= s
    if not found:
        raise _BatchLost(f"merges the batch dim (dim {b} of shape {tuple(shape)}) with other dims "
                         f"(shape {tuple(out)})")
    return b if b in found else found[0]  # several only when B == 1


def _permuted(node: Node, ref: Ref, ndim: int, b: int) -> int:
    """Transposes and permutations: replay the call on a meta tensor whose dims all have
    different sizes, and see where the batch dim's size went."""
    sizes = tuple(range(2, ndim + 2))
    meta = torch.empty(sizes, device="meta")
    args, kwargs = replay_args(node, {ref: meta})
    try:
        out = node.target(*args, **kwargs)
    except Exception as err:  # pragma: no cover - the call succeeded on the real tensor
        raise _BatchLost(f"its dim order could not be followed ({type(err).__name__}: {err})") from err
    return list(out.shape).index(b + 2)


def _matmul(node: Node, known: dict[Ref, int], shape_of) -> int:
    if len(node.parents) != 1:
        return _two_operand_matmul(node, known, shape_of)
    (ref, b), = known.items()
    x_ndim = len(shape_of(ref))
    out_ndim = node.outputs[0].ndim
    left = isinstance(node.args[0], _Placeholder) and node.args[0].ref == ref and node.op != "__rmatmul__"
    other = _constant_operand(node.args, node.kwargs)
    w_ndim = other.ndim if isinstance(other, torch.Tensor) else np.ndim(other)
    if x_ndim == 1:
        raise _BatchLost("contracts the batch dim (a 1-d operand of a matrix product)")
    contracted = x_ndim - 1 if left else x_ndim - 2
    if b == contracted:
        raise _BatchLost(f"contracts the batch dim (dim {b}) with the weights, which mixes samples")
    if w_ndim == 1:  # the contracted dim is removed, the others keep their places
        return b if b < contracted else b - 1
    return b + out_ndim - x_ndim


def _batch_of_operands(node: Node, operands: list, known: dict[Ref, int], shape_of, what: str) -> int:
    """matmul/bmm or attention of input-dependent tensors: each one's batch dim must be one of the
    leading (batch) dims, not one of the two matrix dims, and all land on the same output dim
    (aligned from the last dim)."""
    out_ndim, at = node.outputs[0].ndim, set()
    for name, o in operands:
        if not isinstance(o, _Placeholder):
            continue
        if o.ref not in known:
            raise _BatchLost(f"combines its {name}, which lost the batch dim, with another operand that has it")
        b, nd = known[o.ref], len(shape_of(o.ref))
        if b >= nd - 2:
            raise _BatchLost(f"{what} over the batch dim (dim {b} of its {nd}-d {name}, one of the two matrix dims)")
        at.add(b + out_ndim - nd)
    if len(at) > 1:
        raise _BatchLost(f"combines different samples: its operands' batch dims land on output dims {sorted(at)}")
    return at.pop()


def _two_operand_matmul(node: Node, known: dict[Ref, int], shape_of) -> int:
    other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other", node.kwargs.get("mat2"))
    return _batch_of_operands(node, [("first operand", node.args[0]), ("second operand", other)], known,
                              shape_of, "multiplies matrices")


def _einsum_subscripts(eq: str, ndims: list[int]) -> tuple[list[str], str]:
    """One subscript per dim of each operand and of the output (an ellipsis expanded, the implicit
    output of an equation without ``->`` made explicit)."""
    lhs, arrow, rhs = eq.replace(" ", "").partition("->")
    ins = lhs.split(",")
    n_ell = max((nd - len(s) + 3 for s, nd in zip(ins, ndims) if "..." in s), default=0)
    ell = "".join(chr(0x100 + i) for i in range(n_ell))  # characters no equation uses
    ins = [s.replace("...", ell[n_ell - (nd - len(s) + 3):]) if "..." in s else s for s, nd in zip(ins, ndims)]
    if arrow:
        return ins, rhs.replace("...", ell)
    letters = "".join(ins)
    return ins, ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))


def _einsum(node: Node, known: dict[Ref, int], shape_of) -> int:
    """einsum: the operands' batch dims must carry one subscript, which the output keeps."""
    eq, ops = node.args[0] if node.args else node.kwargs.get("equation"), list(node.args[1:])
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    if not isinstance(eq, str):
        raise _BatchLost("is an einsum in the sublist format")
    ndims = [len(shape_of(o.ref)) if isinstance(o, _Placeholder) else np.ndim(o) for o in ops]
    ins, out = _einsum_subscripts(eq, ndims)
    labels = set()
    for o, s in zip(ops, ins):
        if isinstance(o, _Placeholder):
            if o.ref not in known:
                raise _BatchLost("combines an operand that lost the batch dim with one that has it")
            labels.add(s[known[o.ref]])
    if len(labels) > 1:
        raise _BatchLost(f"combines different samples: the operands' batch dims have the subscripts {sorted(labels)}")
    label = labels.pop()
    if label not in out:
        raise _BatchLost(f"sums over the batch dim (subscript {label!r} of {eq!r})")
    return out.index(label)


def _attention(node: Node, known: dict[Ref, int], shape_of) -> int:
    operands = [(name, _arg(node, i, name)) for i, name in enumerate(("query", "key", "value"))]
    return _batch_of_operands(node, operands, known, shape_of, "attends")


_ELEMENTWISE_FUNCS = (_ACT_FUNCS | _SUM_FUNCS | _SCALE_FUNCS | {"where", "batch_norm", "sigmoid", "sigmoid_",
                                                                  "hardsigmoid"})
_ELEMENTWISE_FUNCS |= _ELEMENTWISE_MAPS | _MASKED_FILL_FUNCS  # exp, log, pow..., masked_fill
_RESHAPE_FUNCS = {"flatten", "view", "reshape", "view_as", "reshape_as", "unflatten"}
_PERMUTE_FUNCS = {"permute", "transpose", "transpose_", "t", "movedim", "moveaxis", "swapaxes", "swapdims"}
_POOL_FUNCS = _MAX_FUNCS - {"amax", "max"} | {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                                                 "adaptive_avg_pool2d", "adaptive_avg_pool3d"}
_SPLIT_FUNCS = {"split", "chunk", "tensor_split", "split_with_sizes"}
_CAT_FUNCS = {"cat", "concat", "concatenate"}


def _ndims(shape: Any) -> int:
    return 1 if isinstance(shape, int) else len(tuple(shape))


def _normalised(what: str, b: int, ndim: int, trailing: int | None) -> int:
    """A normalisation: over the last ``trailing`` dims (LayerNorm, RMSNorm), or, with None, over
    every dim after the first for each index of dim 0 (GroupNorm, InstanceNorm)."""
    if trailing is None:
        if b != 0:
            raise _BatchLost(f"{what} normalises each entry of dim 0 over all other dims, the batch dim "
                             f"(dim {b}) among them")
        return b
    return _trailing(b, ndim, trailing, what)


def _module_rule(m: nn.Module, node: Node, b: int, shape: tuple, known, shape_of, B: int) -> int | None:
    ndim = len(shape)
    if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
        return _normalised(type(m).__name__, b, ndim, len(m.normalized_shape))
    if isinstance(m, (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
        return _normalised(type(m).__name__, b, ndim, None)
    if isinstance(m, _CONV_TRANSPOSE_MODULES):
        if b != 0 or ndim != len(m.kernel_size) + 2:
            raise _BatchLost(f"{type(m).__name__} takes the batch as dim 0 of a (batch, channels, ...) "
                             f"input; here it is dim {b} of shape {tuple(shape)}")
        return 0
    if isinstance(m, nn.Linear):
        if b == ndim - 1:
            raise _BatchLost("Linear acts on the last dim, which is the batch dim")
        return b
    if isinstance(m, _CONV_MODULES):
        k = _module_k(m)
        if b != 0 or ndim != k + 2:
            raise _BatchLost(f"{type(m).__name__} takes the batch as dim 0 of a (batch, channels, ...) "
                             f"input; here it is dim {b} of shape {tuple(shape)}")
        return 0
    if isinstance(m, (*_POOL_MODULES, *_MAX_MODULES)):
        return _trailing(b, ndim, _module_k(m), type(m).__name__)
    if isinstance(m, _PADS):
        return _trailing(b, ndim, len(m.padding) // 2, type(m).__name__)
    if isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)):
        return _trailing(b, ndim, 3, type(m).__name__)
    if isinstance(m, nn.ChannelShuffle):
        if b == 1:
            raise _BatchLost("ChannelShuffle shuffles dim 1, the batch dim")
        return b
    if isinstance(m, nn.Upsample):
        if b > 1:
            raise _BatchLost("Upsample resizes every dim after the first two, the batch dim among them")
        return b
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        if m.dim is None or _dim(m.dim, ndim) == b:
            raise _BatchLost(f"{type(m).__name__} normalises over the batch dim")
        return b
    if isinstance(m, (*_BN_MODULES, *_ACT_MODULES)):
        return _broadcast(node, known, shape_of)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return _reshaped(shape, b, tuple(node.outputs[0].shape), B)
    if isinstance(m, nn.Embedding):
        return b
    return None


def _function_rule(node: Node, b: int, ref: Ref, shape: tuple, known, shape_of, B: int) -> list[int] | int | None:
    name, ndim = node.op, len(shape)
    out = node.outputs[0] if node.outputs else None
    if name in ("max", "amax", "min", "amin"):
        second = _arg(node, 1, "dim", "other")
        if name in ("max", "min") and (isinstance(second, (_Placeholder, torch.Tensor)) or "other" in node.kwargs):
            return _broadcast(node, known, shape_of)
        if name in ("max", "min") and second is None:
            raise _BatchLost(f"{name} over all dims reduces the batch dim")
        return _reduced(node, b, ndim, 1, 2)
    if name in ("mean", "sum"):
        return _reduced(node, b, ndim, 1, 2)
    if name in ("softmax", "log_softmax"):
        dim = _arg(node, 1, "dim")
        if dim is None or _dim(dim, ndim) == b:
            raise _BatchLost(f"{name} normalises over the batch dim")
        return b
    if name in _ELEMENTWISE_FUNCS:
        return _broadcast(node, known, shape_of)
    if name in ("layer_norm", "rms_norm"):
        return _normalised(name, b, ndim, _ndims(_arg(node, 1, "normalized_shape")))
    if name in ("group_norm", "instance_norm"):
        return _normalised(name, b, ndim, None)
    if name in _CONV_TRANSPOSE_FUNCS:
        if b != 0 or ndim != _spatial_k(name) + 2:
            raise _BatchLost(f"F.{name} takes the batch as dim 0 of a (batch, channels, ...) input; here "
                             f"it is dim {b} of shape {tuple(shape)}")
        return 0
    if name in _MATMUL_FUNCS:
        return _matmul(node, known, shape_of)
    if name == "einsum":
        return _einsum(node, known, shape_of)
    if name == "scaled_dot_product_attention":
        return _attention(node, known, shape_of)
    if name == "linear":
        if b == ndim - 1:
            raise _BatchLost("F.linear acts on the last dim, which is the batch dim")
        return b
    if name in _CONV_FUNCS:
        k = _spatial_k(name)
        if b != 0 or ndim != k + 2:
            raise _BatchLost(f"F.{name} takes the batch as dim 0 of a (batch, channels, ...) input; here "
                             f"it is dim {b} of shape {tuple(shape)}")
        return 0
    if name in _POOL_FUNCS:
        return _trailing(b, ndim, _spatial_k(name), name)
    if name == "pad":
        return _trailing(b, ndim, len(_arg(node, 1, "pad")) // 2, "pad")
    if name in ("pixel_shuffle", "pixel_unshuffle"):
        return _trailing(b, ndim, 3, name)
    if name == "channel_shuffle":
        if b == 1:
            raise _BatchLost("channel_shuffle shuffles dim 1, the batch dim")
        return b
    if name == "interpolate":
        if b > 1:
            raise _BatchLost("interpolate resizes every dim after the first two, the batch dim among them")
        return b
    if name == "embedding":
        return b
    if name in _RESHAPE_FUNCS:
        return _reshaped(shape, b, tuple(out.shape), B)
    if name in _PERMUTE_FUNCS:
        return _permuted(node, ref, ndim, b)
    if name in ("squeeze", "squeeze_"):
        dim = _arg(node, 1, "dim")
        gone = [d for d in range(ndim) if shape[d] == 1] if dim is None else \
            [d for d in _dims(dim, ndim) if shape[d] == 1]
        if b in gone:
            raise _BatchLost("squeezes the batch dim (a batch of one sample) away")
        return b - sum(d < b for d in gone)
    if name in ("unsqueeze", "unsqueeze_"):
        d = _dim(_arg(node, 1, "dim"), ndim + 1)
        return b + (d <= b)
    if name in ("expand", "expand_as", "repeat", "tile"):
        return b + out.ndim - ndim  # the size check catches a batch dim that grew
    if name == "repeat_interleave":
        dim = _arg(node, 2, "dim")
        if dim is None or _dim(dim, ndim) == b:
            raise _BatchLost("repeats entries along the batch dim (or of the flattened tensor)")
        return b
    if name == "narrow":
        if _dim(_arg(node, 1, "dim"), ndim) == b and int(_arg(node, 3, "length")) == 1 and B > 1:
            return OneSample(int(_arg(node, 2, "start")) % B, B)
        return b  # narrowing the batch dim to more samples changes its size: the size check catches it
    if name == "select":
        d = _dim(_arg(node, 1, "dim"), ndim)
        if d == b:
            return OneSample(int(_arg(node, 2, "index")) % B, B)
        return b - (d < b)
    if name in ("index_select", "gather"):
        if _dim(_arg(node, 1, "dim"), ndim) == b:
            raise _BatchLost(f"{name} along the batch dim picks or reorders samples")
        return b
    if name == "take_along_dim":
        dim = _arg(node, 2, "dim")
        if dim is None or _dim(dim, ndim) == b:
            raise _BatchLost("take_along_dim along the batch dim (or the flattened tensor)")
        return b
    if name == "flip":
        dims = _arg(node, 1, "dims")
        dims = list(node.args[1:]) if len(node.args) > 2 else dims
        if b in _dims(dims, ndim):
            raise _BatchLost("flips the order of the samples")
        return b
    if name == "roll":
        dims = _arg(node, 2, "dims")
        if dims is None or b in _dims(dims, ndim):
            raise _BatchLost("rolls entries along the batch dim (or of the flattened tensor)")
        return b
    if name == "unfold":
        if node.target is F.unfold:
            if b != 0 or ndim != 4:
                raise _BatchLost("F.unfold takes the batch as dim 0 of a (batch, channels, h, w) input")
            return 0
        if _dim(_arg(node, 1, "dimension"), ndim) == b:
            raise _BatchLost("unfolds windows along the batch dim")
        return b
    if name == "__getitem__":
        return _indexed(node.args[1], ndim, b, B)
    if name in _SPLIT_FUNCS:
        d = _dim(_arg(node, 2, "dim", default=0), ndim)
        if d != b or B == 1:
            return [b] * len(node.outputs)
        # pieces of one sample each are that sample's; others have another size: the size check
        axes, start = [], 0
        for o in node.outputs:
            axes.append(OneSample(start, B) if o.shape[b] == 1 else b)
            start += o.shape[b]
        return axes
    if name == "unbind":
        d = _dim(_arg(node, 1, "dim", default=0), ndim)
        if d == b:  # one tensor per sample
            return [OneSample(j, B) for j in range(len(node.outputs))]
        return [b - (d < b)] * len(node.outputs)
    return None


def _sequence_rule(node: Node, known: dict[Ref, int], shape_of) -> int | None:
    """cat and stack: every live operand must have its batch dim at the same place."""
    name = node.op
    if name not in _CAT_FUNCS | {"stack", "hstack", "vstack", "dstack"}:
        return None
    axes = {(b, len(shape_of(ref))) for ref, b in known.items()}
    if len(axes) > 1:
        raise _BatchLost(f"joins tensors whose batch dims are at different places ({sorted(axes)})")
    (b, ndim), = axes
    out_ndim = node.outputs[0].ndim
    if name in ("hstack", "vstack", "dstack"):
        # atleast_1d/2d/3d, then cat along dim 1 (0 for 1-d), 0 and 2
        lift = {"hstack": 1, "vstack": 2, "dstack": 3}[name]
        if ndim < lift:
            b = b + (1 if ndim == 1 and lift >= 2 else 0)
            ndim = lift
        along = {"hstack": 0 if ndim == 1 else 1, "vstack": 0, "dstack": 2}[name]
        if along == b:
            raise _BatchLost("joins along the batch dim")
        return b
    dim = _arg(node, 1, "dim", "axis", default=0)
    if name == "stack":
        d = _dim(dim, out_ndim)
        return b + (d <= b)
    if _dim(dim, ndim) == b:
        raise _BatchLost("joins along the batch dim, which adds samples")
    return b
