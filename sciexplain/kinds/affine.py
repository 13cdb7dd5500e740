"""The affine kind: ``z = lin(x; W) + b`` (Linear, Conv, BatchNorm, matmul with a constant...),
recognised and propagated by the node's LRP rule (BatchNorm neighbours folded in)."""

from __future__ import annotations

from torch import nn

from ..record.call_args import _live_positions
from ..record.op_names import _CONV_FUNCS, _CONV_TRANSPOSE_FUNCS
from ..record.tape import Node, Ref, _Placeholder
from ..rules.propagation import lrp_affine
from .affine_layers import affine_layer
from .context import Step, WalkView
from .registry import Kind, _mro_keys


def _weighted_module(m: nn.Module, node: Node) -> Kind:
    return Kind("affine", type(m).__name__, _mro_keys(m), weighted=True)


#: the convolution whose preset rule a transposed convolution takes unless it is mapped itself
_CONV_OF_TRANSPOSE = {nn.ConvTranspose1d: nn.Conv1d, nn.ConvTranspose2d: nn.Conv2d, nn.ConvTranspose3d: nn.Conv3d}


def _conv_transpose_module(m: nn.Module, node: Node) -> Kind:
    # keys: the transposed type (and its bases) first, then the convolution of the same dimension,
    # so a preset's convolution rule covers decoders unless ConvTranspose*d is mapped itself
    base = next(c for c in type(m).__mro__ if c in _CONV_OF_TRANSPOSE)
    if len(node.parents) != 1 or not isinstance(node.args[0], _Placeholder):
        return Kind("unsupported", f"{type(m).__name__} with an input-dependent output_size")
    return Kind("affine", type(m).__name__, _mro_keys(m) + (_CONV_OF_TRANSPOSE[base],), weighted=True)


def _conv_transpose_function(node: Node) -> Kind:
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if _live_positions(node) != [0] or kw_live:
        return Kind("unsupported", f"F.{node.op} with an input-dependent weight or bias")
    t = _CONV_TRANSPOSE_FUNCS[node.op]
    return Kind("affine", node.op, (t, _CONV_OF_TRANSPOSE[t], "op:" + node.op), weighted=True)


def _batchnorm_module(m: nn.Module, node: Node) -> Kind:
    if m.running_mean is None or m.running_var is None:
        return Kind("unsupported", f"{type(m).__name__} without running statistics normalises "
                    "each batch by its own statistics, so it is not a fixed layer to explain")
    return Kind("affine", type(m).__name__, _mro_keys(m))


def _matmul_function(node: Node) -> Kind:
    if len(node.parents) != 1:  # two input-dependent operands (attention): sciexplain.kinds.attention
        keys = ("op:matmul",) if node.op in ("matmul", "__matmul__", "__rmatmul__") else ("op:" + node.op, "op:matmul")
        return Kind("bilinear", node.op, keys)
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


def propagate_affine(walk: WalkView, step: Step, outs):
    """The step's LRP rule on ``z = lin(x; W) + b`` (BatchNorm neighbours folded in)."""
    fw, node, R = walk.fw, step.node, outs[0]
    if step.fuse_before is not None:
        xref = step.fuse_before.parents[0]
    else:
        xref = next(a.ref for a in node.args if isinstance(a, _Placeholder))
    x = fw.value(xref)
    layer = affine_layer(node, step.kind, x, node.outputs[0].ndim, step.fuse_after, step.fuse_before)
    cached = None
    xnode = fw.tape.node_of(xref)
    if layer.adjoint is None and (step.fuse_after is None and step.fuse_before is None and x.requires_grad
                                  and node.pristine(0) and xnode.pristine(xref.k)
                                  and node.outputs[0].grad_fn is not None):
        # the recorded forward already computed z = Wx + b with autograd: plain terms reuse it
        cached = (xnode.outputs[xref.k], node.outputs[0])
    axes = (walk.batch_axis(xref), walk.batch_axis(Ref(node.index, 0)))
    recorded = {}
    if cached is None and layer.adjoint is not None:
        # the layer's output as the model computed it (for a folded layer the BatchNorm's output,
        # or this node's own where the BatchNorm feeds it) and W^T u by the adjoint: no second
        # forward pass, and no autograd call (its overhead exceeds the product on small layers)
        if step.fuse_after is not None:
            if step.recorded is not None:
                recorded = {"recorded": step.recorded}
        elif node.pristine(0):
            recorded = {"recorded": node.outputs[0]}
    step.recorded = None
    R_in, absorbed = lrp_affine(layer, x.detach(), R, step.rule, cached, axes, **recorded)
    return [(xref, R_in)], absorbed


def propagate_folded(walk: WalkView, step: Step, outs):
    """A BatchNorm folded into a neighbour: folded into the preceding layer, its relevance is
    that layer's output relevance; folded into the following layer, that layer sends relevance
    past it and none arrives here."""
    node = step.node
    layer = walk.fw.steps[step.folded_into.index]
    if layer.fuse_after is node:
        if node.pristine(0):  # the layer's output as the model computed it, for its rule
            layer.recorded = node.outputs[0]
        return [(node.parents[0], outs[0])], walk.zero()
    return [], walk.zero()

