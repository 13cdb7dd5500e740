"""The built-in operation kinds: how recorded torch modules and functions are recognised.

Each family of modules and functions has a small recogniser, registered by type or by name in
:data:`sciexplain.registry.REGISTRY`; the recogniser returns a :class:`~sciexplain.registry.Kind`
naming the entry that propagates it (see :mod:`sciexplain.propagators`):

``affine``     z = lin(x; W) + b: the node's LRP rule (Linear, Conv, BatchNorm, average
               pooling, mean/sum, multiplication by a constant, matmul with a constant...)
``pass``       element-wise activations (ReLU, tanh, sigmoid inside the network), dropout,
               identity: relevance passes unchanged
``layout``     operations that only move or copy entries (view, permute, cat, slicing,
               padding, max pooling as winner-take-all, nearest upsampling): relevance moves
               with the entries, through the operation's own vector-Jacobian product
``sum``        ``x + y``, ``x - y`` (residuals): proportional to each operand's contribution
``product``    ``a * b`` of two input-dependent tensors (gates): a product rule
               (signal-take-all by default)
``embedding``  an embedding lookup of integer inputs: relevance of the looked-up vectors is
               summed over the embedding dimension onto each index
``squash``     softmax / log-softmax: stripped when final (a final sigmoid too), an error elsewhere

Anything else is ``unsupported`` and becomes an error naming the node. The second part of this
module builds the :class:`~sciexplain.propagation.AffineLayer` of an affine node; the last part
(:func:`batch_axes`) says where each operation puts the batch dim of its inputs, so that
relevance stays per sample through (time, batch, ...) tensors, stacked final states and the
like.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..rules.propagation import AffineLayer
from .registry import REGISTRY, Kind, _mro_keys
from ..record.tape import _PADS, Node, OneSample, Ref, _Placeholder, replay_args

_ACT_FUNCS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "tanh", "tanh_", "sigmoid",
    "sigmoid_", "softplus", "hardswish", "hardsigmoid", "softsign", "prelu", "rrelu", "clamp",
    "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "threshold",
    "threshold_", "logsigmoid", "tanhshrink",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "clone", "contiguous", "detach", "float", "double", "half", "to", "type", "type_as",
}
#: pass-through operations that do not change values (a gate stays a gate through them;
#: deconvnet and guided backprop pass through them)
IDENTITY_LIKE = frozenset({"Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "dropout", "clone",
                           "contiguous", "detach", "float", "double", "half", "to", "type", "type_as"})
_RELU_LIKE_FUNCS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_"}
_LAYOUT_FUNCS = {
    "flatten", "view", "reshape", "view_as", "reshape_as", "permute", "transpose", "transpose_", "t",
    "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "repeat", "tile",
    "repeat_interleave", "__getitem__", "narrow", "select", "index_select", "gather", "take_along_dim",
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "movedim", "moveaxis",
    "swapaxes", "swapdims", "flip", "roll", "unflatten", "pad", "max_pool1d", "max_pool2d",
    "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "amax", "max", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "split", "chunk", "unbind", "tensor_split", "split_with_sizes", "unfold",
    "where",
}
_WEIGHT_FREE_FUNCS = {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                      "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean", "sum"}
_SUM_FUNCS = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
              "__isub__", "subtract", "rsub", "__rsub__"}
_SCALE_FUNCS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "div", "div_",
                "__truediv__", "__itruediv__", "true_divide", "divide", "neg", "negative", "neg_"}
_MATMUL_FUNCS = {"matmul", "mm", "bmm", "__matmul__", "__rmatmul__"}
_CONV_FUNCS = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}
_SQUASH_FUNCS = {"softmax", "log_softmax", "sigmoid"}
_SQUASH_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid)

_ACT_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU, nn.Softsign,
    nn.Threshold, nn.LogSigmoid, nn.Tanhshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
)
_RELU_LIKE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)
_LAYOUT_MODULES = (
    nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ChannelShuffle,
)
_POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAX_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                nn.AdaptiveMaxPool3d)
_MAX_FUNCS = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
              "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d",
              "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
              "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices", "amax", "max"}


def _live_positions(node: Node) -> list[int]:
    return [i for i, a in enumerate(node.args) if isinstance(a, _Placeholder)]


# -- recognisers of modules, one per family, registered by type ---------------------------------

def _weighted_module(m: nn.Module, node: Node) -> Kind:
    return Kind("affine", type(m).__name__, _mro_keys(m), weighted=True)


def _batchnorm_module(m: nn.Module, node: Node) -> Kind:
    if m.running_mean is None or m.running_var is None:
        return Kind("unsupported", f"{type(m).__name__} without running statistics normalises "
                    "each batch by its own statistics, so it is not a fixed layer to explain")
    return Kind("affine", type(m).__name__, _mro_keys(m))


def _pool_module(m: nn.Module, node: Node) -> Kind:
    return Kind("affine", type(m).__name__, _mro_keys(m))


def _upsample_module(m: nn.Module, node: Node) -> Kind:
    if m.mode == "nearest":
        return Kind("layout", "Upsample(nearest)", _mro_keys(m))
    return Kind("affine", f"Upsample({m.mode})", _mro_keys(m))


def _softmax_module(m: nn.Module, node: Node) -> Kind:
    return Kind("squash", type(m).__name__, _mro_keys(m), final_squash=True)


def _sigmoid_module(m: nn.Module, node: Node) -> Kind:
    # inside the network a sigmoid passes relevance (and is a gate for products); as the last
    # operation it is stripped and the logits are explained
    return Kind("pass", type(m).__name__, _mro_keys(m), gate=True, final_squash=isinstance(m, nn.Sigmoid))


def _activation_module(m: nn.Module, node: Node) -> Kind:
    return Kind("pass", type(m).__name__, _mro_keys(m), relu_like=isinstance(m, _RELU_LIKE_MODULES))


def _layout_module(m: nn.Module, node: Node) -> Kind:
    return Kind("layout", type(m).__name__, _mro_keys(m), max_pool=isinstance(m, _MAX_MODULES))


def _embedding_module(m: nn.Module, node: Node) -> Kind:
    return Kind("embedding", "Embedding", _mro_keys(m))


REGISTRY.recognise_modules((nn.Linear, *_CONV_MODULES), _weighted_module)
REGISTRY.recognise_modules(_BN_MODULES, _batchnorm_module)
REGISTRY.recognise_modules(_POOL_MODULES, _pool_module)
REGISTRY.recognise_modules((nn.Upsample,), _upsample_module)
REGISTRY.recognise_modules((nn.Softmax, nn.LogSoftmax), _softmax_module)
REGISTRY.recognise_modules((nn.Sigmoid, nn.Hardsigmoid), _sigmoid_module)
REGISTRY.recognise_modules(tuple(t for t in _ACT_MODULES if t not in (nn.Sigmoid, nn.Hardsigmoid)),
                           _activation_module)
REGISTRY.recognise_modules(_LAYOUT_MODULES, _layout_module)
REGISTRY.recognise_modules((nn.Embedding,), _embedding_module)


# -- recognisers of functions, registered by name ----------------------------------------------

def _squash_function(node: Node) -> Kind:
    if len(node.parents) != 1:
        return Kind("unsupported", f"{node.op} with an input-dependent second argument")
    if node.op in ("sigmoid", "sigmoid_", "hardsigmoid"):
        return Kind("pass", node.op, ("op:" + node.op,), gate=True, final_squash=node.op != "hardsigmoid")
    return Kind("squash", node.op, ("op:" + node.op,), final_squash=True)


def _activation_function(node: Node) -> Kind:
    name = node.op
    if len(node.parents) != 1 or _live_positions(node) != [0]:
        return Kind("unsupported", f"{name} with an input-dependent second argument")
    return Kind("pass", name, ("op:" + name,), relu_like=name in _RELU_LIKE_FUNCS)


def _layout_function(node: Node) -> Kind:
    name = node.op
    live = _live_positions(node)
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if name == "where" and 0 in live:
        return Kind("unsupported", "torch.where with an input-dependent condition")
    if name in ("max", "amax") and not (len(node.args) > 1 or "dim" in node.kwargs):
        return Kind("unsupported", f"{name} over all dims reduces the batch dim")
    if name in ("gather", "index_select", "take_along_dim") and (any(i != 0 for i in live) or kw_live):
        return Kind("unsupported", f"{name} with input-dependent float indices")
    return Kind("layout", name, ("op:" + name,), max_pool=name in _MAX_FUNCS)


def _sum_function(node: Node) -> Kind:
    return Kind("sum", node.op, ("op:add",))


_POOL_KEYS = {"avg_pool1d": nn.AvgPool1d, "avg_pool2d": nn.AvgPool2d, "avg_pool3d": nn.AvgPool3d,
              "adaptive_avg_pool1d": nn.AdaptiveAvgPool1d, "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d,
              "adaptive_avg_pool3d": nn.AdaptiveAvgPool3d}


def _weight_free_function(node: Node) -> Kind:
    name = node.op
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if _live_positions(node) != [0] or kw_live:
        return Kind("unsupported", f"{name} with input-dependent arguments")
    key = _POOL_KEYS.get(name)
    return Kind("affine", name, ((key,) if key else ()) + ("op:" + name,))


def _interpolate_function(node: Node) -> Kind:
    mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
    if _live_positions(node) != [0]:
        return Kind("unsupported", "interpolate with input-dependent arguments")
    if mode in ("nearest", "nearest-exact"):
        return Kind("layout", f"interpolate({mode})", ("op:interpolate",))
    return Kind("affine", f"interpolate({mode})", ("op:interpolate",))


def _scale_function(node: Node) -> Kind:
    name = node.op
    live = _live_positions(node)
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if name.startswith("neg"):
        return Kind("affine", name, ("op:mul",))
    if "div" in name and (live != [0] or kw_live):
        return Kind("unsupported", f"{name} by an input-dependent tensor")
    if kw_live:
        return Kind("unsupported", f"{name} with an input-dependent keyword argument")
    if len(node.parents) >= 2 and len(live) == 2:
        # a product of two input-dependent tensors (gating): a product rule decides the split
        return Kind("product", name, ("op:mul",))
    if len(node.parents) != 1:
        return Kind("unsupported", f"{name} of a tensor with itself has no product rule here")
    return Kind("affine", name, ("op:mul",))


def _matmul_function(node: Node) -> Kind:
    if len(node.parents) != 1:
        return Kind("unsupported", f"{node.op} of two input-dependent tensors (e.g. attention): only "
                    "element-wise products have product rules")
    return Kind("affine", node.op, (nn.Linear, "op:matmul"), weighted=True)


def _linear_function(node: Node) -> Kind:
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if _live_positions(node) != [0] or kw_live:
        return Kind("unsupported", "F.linear with an input-dependent weight or bias")
    return Kind("affine", "linear", (nn.Linear, "op:linear"), weighted=True)


def _conv_function(node: Node) -> Kind:
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if _live_positions(node) != [0] or kw_live:
        return Kind("unsupported", f"F.{node.op} with an input-dependent weight or bias")
    return Kind("affine", node.op, (_CONV_FUNCS[node.op], "op:" + node.op), weighted=True)


def _batch_norm_function(node: Node) -> Kind:
    training = node.kwargs.get("training", node.args[5] if len(node.args) > 5 else False)
    if _live_positions(node) != [0] or training:
        return Kind("unsupported", "F.batch_norm with batch statistics")
    return Kind("affine", "batch_norm", (nn.BatchNorm1d, "op:batch_norm"))


def _embedding_function(node: Node) -> Kind:
    return Kind("embedding", "embedding", ("op:embedding",))


REGISTRY.recognise_functions(sorted(_SQUASH_FUNCS | {"sigmoid_", "hardsigmoid"}), _squash_function)
REGISTRY.recognise_functions(sorted(_ACT_FUNCS - _SQUASH_FUNCS - {"sigmoid_", "hardsigmoid"}), _activation_function)
REGISTRY.recognise_functions(sorted(_LAYOUT_FUNCS), _layout_function)
REGISTRY.recognise_functions(sorted(_SUM_FUNCS), _sum_function)
REGISTRY.recognise_functions(sorted(_WEIGHT_FREE_FUNCS), _weight_free_function)
REGISTRY.recognise_functions(["interpolate"], _interpolate_function)
REGISTRY.recognise_functions(sorted(_SCALE_FUNCS), _scale_function)
REGISTRY.recognise_functions(sorted(_MATMUL_FUNCS), _matmul_function)
REGISTRY.recognise_functions(["linear"], _linear_function)
REGISTRY.recognise_functions(sorted(_CONV_FUNCS), _conv_function)
REGISTRY.recognise_functions(["batch_norm"], _batch_norm_function)
REGISTRY.recognise_functions(["embedding"], _embedding_function)


# -- affine layers from nodes ------------------------------------------------------------------

def _channel_shape(ndim: int, channel_dim: int = 1) -> list[int]:
    shape = [1] * ndim
    shape[channel_dim] = -1
    return shape


def _bn_scale_shift(m_or_args) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(m_or_args, nn.Module):
        m = m_or_args
        mean, var, weight, bias, eps = m.running_mean, m.running_var, m.weight, m.bias, m.eps
    else:
        mean, var, weight, bias, eps = m_or_args
    scale = torch.rsqrt(var.detach() + eps)
    if weight is not None:
        scale = scale * weight.detach()
    shift = -mean.detach() * scale
    if bias is not None:
        shift = shift + bias.detach()
    return scale, shift


def _module_conv_apply(m: nn.Module):
    base = next(c for c in type(m).__mro__ if c in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    custom_forward = type(m).forward is not base.forward
    if custom_forward:
        # a subclass with its own forward (e.g. "same" padding): run that forward with swapped
        # weights; zero bias so the result is the linear part
        out_ch = m.weight.shape[0]

        def apply(x, w):
            zero = torch.zeros(out_ch, dtype=w.dtype, device=w.device)
            return functional_call(m, {"weight": w, "bias": zero}, (x,))
        return apply, base
    if base is nn.Linear:
        return (lambda x, w: F.linear(x, w)), base
    return (lambda x, w: m._conv_forward(x, w, None)), base


def affine_layer(node: Node, kind: Kind, x: torch.Tensor, out_ndim: int,
                 fuse_bn_after: Node | None = None, fuse_bn_before: Node | None = None) -> AffineLayer:
    """Build the :class:`AffineLayer` of an affine node (optionally with BatchNorm folded in)."""
    name, detail = node.name, kind.detail
    if node.kind == "module":
        m = node.target
        if isinstance(m, (nn.Linear, *_CONV_MODULES)):
            apply, base = _module_conv_apply(m)
            w = m.weight.detach()
            b = None if m.bias is None else m.bias.detach()
            layer = AffineLayer(name, detail, w, b, apply, True)
        elif isinstance(m, _BN_MODULES):
            scale, shift = _bn_scale_shift(m)
            shape = _channel_shape(x.ndim)
            layer = AffineLayer(name, detail, scale.reshape(shape), shift.reshape(shape),
                                lambda x_, w: x_ * w, True)
        else:  # weight-free modules: pooling, upsampling
            layer = AffineLayer(name, detail, torch.ones((), dtype=x.dtype), None,
                                lambda x_, w, m=m: m(x_) * w, False)
    else:
        layer = _function_affine(node, kind, x)
    if fuse_bn_after is not None:
        layer = _fuse_after(layer, fuse_bn_after, out_ndim)
    if fuse_bn_before is not None:
        layer = _fuse_before(layer, fuse_bn_before, x)
    # bias: reshape a per-channel vector so it broadcasts over the output
    if layer.bias is not None and layer.bias.ndim == 1 and out_ndim > 2 and node.kind == "module" \
            and isinstance(node.target, _CONV_MODULES):
        layer.bias = layer.bias.reshape(_channel_shape(out_ndim))
    return layer


def _function_affine(node: Node, kind: Kind, x: torch.Tensor) -> AffineLayer:
    name, op, func = node.name, node.op, node.target
    args, kwargs = node.args, node.kwargs
    if op == "linear":
        w = args[1] if len(args) > 1 else kwargs["weight"]
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        return AffineLayer(name, "linear", w.detach(), None if b is None else b.detach(),
                           lambda x_, w_: F.linear(x_, w_), True)
    if op in _CONV_FUNCS:
        w = args[1] if len(args) > 1 else kwargs["weight"]
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        rest = tuple(args[3:])
        kw = {k: v for k, v in kwargs.items() if k not in ("weight", "bias", "input")}
        bias = None if b is None else b.detach().reshape(_channel_shape(x.ndim))
        return AffineLayer(name, op, w.detach(), bias,
                           lambda x_, w_: func(x_, w_, None, *rest, **kw), True)
    if op in _WEIGHT_FREE_FUNCS or op == "interpolate":
        rest, kw = tuple(args[1:]), dict(kwargs)
        return AffineLayer(name, kind.detail, torch.ones((), dtype=x.dtype), None,
                           lambda x_, w_: func(x_, *rest, **kw) * w_, False)
    if op in _SCALE_FUNCS:
        if op.startswith("neg"):
            return AffineLayer(name, op, -torch.ones((), dtype=x.dtype), None, lambda x_, w_: x_ * w_, True)
        other = _constant_operand(args, kwargs)
        other = torch.as_tensor(other, dtype=x.dtype).detach()
        if "div" in op:
            other = 1.0 / other
        return AffineLayer(name, op, other, None, lambda x_, w_: x_ * w_, True)
    if op in _MATMUL_FUNCS:
        w = _constant_operand(args, kwargs).detach()
        if isinstance(args[0], _Placeholder):
            return AffineLayer(name, op, w, None, lambda x_, w_: torch.matmul(x_, w_), True)
        return AffineLayer(name, op, w, None, lambda x_, w_: torch.matmul(w_, x_), True)
    if op == "batch_norm":
        def arg(i, key):
            return args[i] if len(args) > i else kwargs.get(key)
        scale, shift = _bn_scale_shift((arg(1, "running_mean"), arg(2, "running_var"), arg(3, "weight"),
                                        arg(4, "bias"), arg(7, "eps") if arg(7, "eps") is not None else 1e-5))
        shape = _channel_shape(x.ndim)
        return AffineLayer(name, "batch_norm", scale.reshape(shape), shift.reshape(shape),
                           lambda x_, w_: x_ * w_, True)
    raise AssertionError(f"not an affine op: {op}")  # pragma: no cover


def _constant_operand(args: tuple, kwargs: dict):
    """The constant operand of a binary op with one live operand: positional, or ``other=``."""
    if "other" in kwargs:
        return kwargs["other"]
    return args[1] if isinstance(args[0], _Placeholder) else args[0]


def _fuse_after(layer: AffineLayer, bn: Node, out_ndim: int) -> AffineLayer:
    """Fold a BatchNorm that follows a Linear/Conv into it: W' = a W, b' = a b + c."""
    scale, shift = _bn_scale_shift(bn.target)
    w = layer.weight
    w_scaled = w * scale.reshape([-1] + [1] * (w.ndim - 1))
    b = layer.bias.reshape(-1) if layer.bias is not None else torch.zeros_like(scale)
    bias = b * scale + shift
    if out_ndim > 2:
        bias = bias.reshape(_channel_shape(out_ndim))
    return AffineLayer(layer.name, f"{layer.kind}+{type(bn.target).__name__}", w_scaled, bias,
                       layer.apply, True)


def _fuse_before(layer: AffineLayer, bn: Node, x: torch.Tensor) -> AffineLayer:
    """Fold a BatchNorm1d that feeds a Linear into it: W' = W diag(a), b' = b + W c."""
    scale, shift = _bn_scale_shift(bn.target)
    w = layer.weight
    w_scaled = w * scale.reshape(1, -1)
    b = layer.bias if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    return AffineLayer(layer.name, f"{type(bn.target).__name__}+{layer.kind}", w_scaled,
                       b + w @ shift, layer.apply, True)


def parent_positions(node: Node) -> list[tuple[Any, Ref]]:
    """(position, ref) of the node's live inputs, positional args first."""
    out = []
    for i, a in enumerate(node.args):
        if isinstance(a, _Placeholder):
            out.append((i, a.ref))
    for k, a in node.kwargs.items():
        if isinstance(a, _Placeholder):
            out.append((k, a.ref))
    return out


# -- where the batch dim goes ------------------------------------------------------------------
#
# Relevance is kept per sample, so the engine must know, for every recorded tensor, which dim
# indexes the samples: the input's is dim 0, and each operation moves it (a transpose), removes
# other dims around it (indexing, unbind, reductions), or loses it (a reduction over it, a
# reshape that merges it with other dims, indexing that picks or reorders samples). The rules
# below follow what each operation does, never the shapes alone: a (time, batch) tensor with
# as many steps as samples is told apart from a (batch, time) one by the transposes it passed.


class _BatchLost(Exception):
    """Raised inside the rules: the operation loses (or mixes) the batch dim; the message says how."""


def _dim(d: Any, ndim: int) -> int:
    d = int(d)
    return d + ndim if d < 0 else d


def _dims(ds: Any, ndim: int) -> list[int]:
    if isinstance(ds, (list, tuple, torch.Size)):
        return [_dim(d, ndim) for d in ds]
    return [_dim(ds, ndim)]


def _arg(node: Node, i: int, *names: str, default: Any = None) -> Any:
    """Positional argument ``i`` of the call, or the first of the keyword ``names`` given."""
    if len(node.args) > i:
        return node.args[i]
    for n in names:
        if n in node.kwargs:
            return node.kwargs[n]
    return default


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


def _is_int(i: Any) -> bool:
    return (isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))) or \
        (isinstance(i, torch.Tensor) and i.ndim == 0 and not i.is_floating_point() and i.dtype != torch.bool)


def _is_advanced(i: Any) -> bool:
    return isinstance(i, (list, np.ndarray)) or (isinstance(i, torch.Tensor) and not _is_int(i))


def _index_ndim(i: Any) -> tuple[int, int]:
    """(input dims consumed, dims of the broadcast index) of an advanced index."""
    a = np.asarray(i.cpu() if isinstance(i, torch.Tensor) else i)
    if a.dtype == bool:
        return a.ndim, 1
    return 1, a.ndim


def _indexed(index: Any, ndim: int, b: int, B: int) -> int | OneSample:
    """Where ``x[index]`` puts the batch dim of ``x`` (numpy/torch indexing rules); an integer
    at the batch dim picks one sample."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, _Placeholder) for i in items):
        raise _BatchLost("indexes with input-dependent indices")
    advanced = any(_is_advanced(i) for i in items)

    def consumed(i):
        if i is None or i is Ellipsis or isinstance(i, (bool, np.bool_)):
            return 0
        return _index_ndim(i)[0] if _is_advanced(i) else 1
    n = sum(consumed(i) for i in items)
    if any(i is Ellipsis for i in items):
        k = next(j for j, i in enumerate(items) if i is Ellipsis)
        items = items[:k] + [slice(None)] * (ndim - n) + items[k + 1:]
    else:
        items = items + [slice(None)] * (ndim - n)
    # with an advanced index, integers are advanced too; the broadcast index dims go where the
    # advanced indices are if they are adjacent, else first
    adv = [j for j, i in enumerate(items) if _is_advanced(i) or (advanced and _is_int(i))]
    adv_ndim = max((_index_ndim(items[j])[1] for j in adv if _is_advanced(items[j])), default=0)
    front = bool(adv) and adv != list(range(adv[0], adv[-1] + 1))
    out = adv_ndim if front else 0
    d = 0
    for j, i in enumerate(items):
        if adv and not front and j == adv[0]:
            out += adv_ndim
        c = consumed(i)
        if d <= b < d + c or (c == 1 and d == b):
            if isinstance(i, slice):
                picked = range(*i.indices(B))
                # one sample (x[j:j + 1]); a slice of the batch that is not all of it fails the size check
                return OneSample(picked[0], B) if len(picked) == 1 and B > 1 else out
            if _is_int(i) and not advanced and -B <= int(i) < B:
                return OneSample(int(i) % B, B)
            raise _BatchLost(f"indexes the batch dim (dim {b}) with {_describe_index(i)}, which picks "
                             "or reorders samples")
        if isinstance(i, slice) or i is None or isinstance(i, (bool, np.bool_)):
            out += 1
        d += c
    raise _BatchLost("indexing beyond the batch dim")  # pragma: no cover


def _describe_index(i: Any) -> str:
    if _is_int(i):
        return f"the integer {int(i)}"
    return f"an index of type {type(i).__name__}"


def _matmul(node: Node, known: dict[Ref, int], shape_of) -> int:
    if len(known) != 1:
        raise _BatchLost("is a product of two input-dependent matrices")
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


_ELEMENTWISE_FUNCS = (_ACT_FUNCS | _SUM_FUNCS | _SCALE_FUNCS | {"where", "batch_norm", "sigmoid", "sigmoid_",
                                                                  "hardsigmoid"})
_RESHAPE_FUNCS = {"flatten", "view", "reshape", "view_as", "reshape_as", "unflatten"}
_PERMUTE_FUNCS = {"permute", "transpose", "transpose_", "t", "movedim", "moveaxis", "swapaxes", "swapdims"}
_POOL_FUNCS = _MAX_FUNCS - {"amax", "max"} | {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                                                 "adaptive_avg_pool2d", "adaptive_avg_pool3d"}
_SPLIT_FUNCS = {"split", "chunk", "tensor_split", "split_with_sizes"}
_CAT_FUNCS = {"cat", "concat", "concatenate"}


def _module_rule(m: nn.Module, node: Node, b: int, shape: tuple, known, shape_of, B: int) -> int | None:
    ndim = len(shape)
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
    if name in _MATMUL_FUNCS:
        return _matmul(node, known, shape_of)
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


def batch_axes(node: Node, axis_of, shape_of, B: int) -> tuple[list[int | OneSample | None], str]:
    """Where the batch dim of each (floating-point) output of ``node`` is.

    Parameters
    ----------
    node : Node
        A recorded operation (not the input).
    axis_of : callable
        ``axis_of(ref) -> (axis, reason)``: the batch dim of a recorded tensor (an int, a
        :class:`~sciexplain.tape.OneSample`, or None with the reason it was lost).
    shape_of : callable
        ``shape_of(ref) -> tuple``: the shape of a recorded tensor.
    B : int
        The batch size.

    Returns
    -------
    (axes, reason)
        One entry per output: the dim that indexes the samples; a
        :class:`~sciexplain.tape.OneSample` for a tensor of one sample (``x[j]``, ``x.unbind(0)``;
        stacking all samples in order makes a batch again); None where the operation loses the
        batch dim (a reduction over it, a reshape that merges it with other dims, indexing that
        reorders samples, an operation that combines different samples), and ``reason`` then
        names the operation and says what it did. In a batch of one sample nothing is lost.
    """
    n_out = len(node.outputs)
    parents = node.parents
    if node.kind == "function" and n_out == 1 and node.op in _ELEMENTWISE_FUNCS:
        # the common case, first: activations, sums and products of tensors of the output's shape
        # with their batch dims at the same place
        out_shape, first = node.outputs[0].shape, None
        for ref in parents:
            b, _ = axis_of(ref)
            if not isinstance(b, int) or (first is not None and b != first) or shape_of(ref) != out_shape:
                break
            first = b
        else:
            if first is not None:
                return [first], ""
    known: dict[Ref, Any] = {}
    lost = ""
    for ref in (parents if len(parents) == 1 else dict.fromkeys(parents)):
        b, why = axis_of(ref)
        if b is None:
            lost = lost or why
        else:
            known[ref] = b
    if not known:
        return [None] * n_out, lost
    axes, why = _axes(node, known, shape_of, B)
    if B == 1:  # one sample: nothing can mix samples, every tensor is that sample's
        axes = [OneSample(0, 1) if a is None else a for a in axes]
        why = ""
    return axes, why


def _what(node: Node) -> str:
    """The node's name, with its operation when the name does not say it (a module path)."""
    return node.name if node.name.split("@")[0].split("#")[0] == node.op else f"{node.name} ({node.op})"


def _samples(node: Node, known: dict[Ref, Any], shape_of, B: int) -> Any:
    """Tensors of one sample each: an operation on one sample's tensors alone gives that sample's;
    stacking all samples in order (or joining them along a dim of size one) gives a batch again."""
    if node.kind == "function" and node.op in _CAT_FUNCS | {"stack"} and all(
            isinstance(b, OneSample) for b in known.values()):
        pieces = list(node.args[0]) if isinstance(node.args[0], (list, tuple)) else []
        order = [known[p.ref].index if isinstance(p, _Placeholder) else None for p in pieces]
        dim = _arg(node, 1, "dim", "axis", default=0)
        out_ndim = node.outputs[0].ndim
        if order == list(range(B)):
            d = _dim(dim, out_ndim)
            if node.op == "stack" or all(tuple(shape_of(p.ref))[d] == 1 for p in pieces):
                return d
        raise _BatchLost(f"{node.op} joins tensors of single samples, but not each sample once, in order, "
                         "along a dim of its own")
    which = {b.index for b in known.values() if isinstance(b, OneSample)}
    if len(which) == 1 and all(isinstance(b, OneSample) for b in known.values()):
        return OneSample(which.pop(), B)
    raise _BatchLost("combines one sample's values with those of other samples")


def _axes(node: Node, known: dict[Ref, Any], shape_of, B: int) -> tuple[list, str]:
    n_out = len(node.outputs)
    ref, b = next(iter(known.items()))
    shape = tuple(shape_of(ref))
    try:
        axes: Any = None
        if any(isinstance(v, OneSample) for v in known.values()):
            axes = _samples(node, known, shape_of, B)
        elif node.kind == "module":
            if len(known) == 1:
                axes = _module_rule(node.target, node, b, shape, known, shape_of, B)
        else:
            axes = _sequence_rule(node, known, shape_of)
            if axes is None and node.op in _ELEMENTWISE_FUNCS:
                axes = _broadcast(node, known, shape_of)  # sums, products, where, activations
            elif axes is None and (len(known) == 1 or node.op in ("max", "min") or node.op in _MATMUL_FUNCS):
                axes = _function_rule(node, b, ref, shape, known, shape_of, B)
        if axes is None:  # a registered module, or an operation with no rule of its own
            out_shapes = [tuple(o.shape) for o in node.outputs]
            if len(set(known.values())) == 1 and all(s == shape for s in out_shapes):
                axes = b  # shape-preserving
            elif all(v == 0 for v in known.values()) and all(len(s) and s[0] == B for s in out_shapes):
                axes = 0  # batch first in, batch first out
            else:
                raise _BatchLost(f"cannot tell where the batch dim of its output is (its input has it at "
                                 f"dim {b} of shape {shape})")
    except _BatchLost as err:
        return [None] * n_out, f"{_what(node)} {err}"
    if not isinstance(axes, list):
        axes = [axes] * n_out
    why = ""
    for k, (a, o) in enumerate(zip(axes, node.outputs)):
        if isinstance(a, int) and not (0 <= a < o.ndim and o.shape[a] == B):
            axes[k] = None
            why = why or (f"{_what(node)} changes the size of the batch dim: its output of shape {tuple(o.shape)} "
                          f"has {o.shape[a] if 0 <= a < o.ndim else 'no'} entries at dim {a}, the batch has {B}")
    return axes, why
