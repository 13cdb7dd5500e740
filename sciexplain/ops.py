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

Anything else is ``unsupported`` and becomes an error naming the node. The second half of this
module builds the :class:`~sciexplain.propagation.AffineLayer` of an affine node.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .propagation import AffineLayer
from .registry import REGISTRY, Kind, _mro_keys
from .tape import Node, Ref, _Placeholder

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
