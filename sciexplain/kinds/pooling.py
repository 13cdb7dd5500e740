"""Pooling and resizing: average pooling, mean and sum over dims and linear upsampling are affine
(weight-free), nearest upsampling moves entries, and max pooling may pass relevance like sum
pooling (``max_pool="proportional"``)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..record.call_args import _live_positions
from ..record.tape import Node, Ref, _Placeholder
from ..rules.affine import Epsilon
from ..rules.propagation import AffineLayer, lrp_affine
from .context import Step, WalkView
from .registry import Kind, _mro_keys


def _pool_module(m: nn.Module, node: Node) -> Kind:
    return Kind("affine", type(m).__name__, _mro_keys(m))


def _upsample_module(m: nn.Module, node: Node) -> Kind:
    if m.mode == "nearest":
        return Kind("layout", "Upsample(nearest)", _mro_keys(m))
    return Kind("affine", f"Upsample({m.mode})", _mro_keys(m))


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


def _max_proportional(walk: WalkView, step: Step, outs):
    """Max pooling redistributed like sum pooling over each window (Montavon et al. 2017)."""
    node = step.node
    m = node.target
    xref = node.parents[0]
    x = walk.value(xref).detach()
    if node.kind == "module" and isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        nd = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(m)]
        pool = getattr(torch.nn.functional, f"avg_pool{nd}d")

        def apply(x_, w):
            return pool(x_, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode,
                        count_include_pad=True) * w
    elif node.kind == "module":
        nd = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(m)]
        pool = getattr(torch.nn.functional, f"adaptive_avg_pool{nd}d")

        def apply(x_, w):
            return pool(x_, m.output_size) * w
    else:
        raise UnsupportedModelError(f"{node.name}: max_pool='proportional' supports MaxPool and "
                                    "AdaptiveMaxPool modules; use the default winner-take-all")
    if getattr(m, "dilation", 1) not in (1, (1,), (1, 1), (1, 1, 1)):
        raise UnsupportedModelError(f"{node.name}: proportional max pooling with dilation")
    layer = AffineLayer(node.name, "max as sum pooling", x.new_ones(()), None, apply, False)
    axes = (walk.batch_axis(xref), walk.batch_axis(Ref(node.index, 0)))
    R_in, absorbed = lrp_affine(layer, x, outs[0], Epsilon(1e-9), batch_axes=axes)
    return [(xref, R_in)], absorbed

