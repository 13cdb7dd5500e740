"""Activations and squashing: element-wise activations, dropout and identities pass relevance
unchanged (sigmoids are gates for the product rules); a final softmax / sigmoid is stripped."""

from __future__ import annotations

from torch import nn

from ..errors import UnsupportedModelError
from ..record.call_args import _live_positions
from ..record.op_names import _RELU_LIKE_FUNCS, _RELU_LIKE_MODULES
from ..record.tape import Node
from .context import Step, WalkView
from .registry import Kind, _mro_keys


def _softmax_module(m: nn.Module, node: Node) -> Kind:
    if isinstance(m, nn.Softmax):  # inside the network: AttnLRP's rule (sciexplain.kinds.attention)
        return Kind("softmax", type(m).__name__, _mro_keys(m) + ("op:softmax",), final_squash=True)
    return Kind("squash", type(m).__name__, _mro_keys(m), final_squash=True)


def _sigmoid_module(m: nn.Module, node: Node) -> Kind:
    # inside the network a sigmoid passes relevance (and is a gate for products); as the last
    # operation it is stripped and the logits are explained
    return Kind("pass", type(m).__name__, _mro_keys(m), gate=True, final_squash=isinstance(m, nn.Sigmoid))


def _activation_module(m: nn.Module, node: Node) -> Kind:
    return Kind("pass", type(m).__name__, _mro_keys(m), relu_like=isinstance(m, _RELU_LIKE_MODULES))


def _squash_function(node: Node) -> Kind:
    if len(node.parents) != 1:
        return Kind("unsupported", f"{node.op} with an input-dependent second argument")
    if node.op in ("sigmoid", "sigmoid_", "hardsigmoid"):
        return Kind("pass", node.op, ("op:" + node.op,), gate=True, final_squash=node.op != "hardsigmoid")
    if node.op == "softmax":  # inside the network: AttnLRP's rule (sciexplain.kinds.attention)
        return Kind("softmax", node.op, ("op:softmax",), final_squash=True)
    return Kind("squash", node.op, ("op:" + node.op,), final_squash=True)


def _activation_function(node: Node) -> Kind:
    name = node.op
    if len(node.parents) != 1 or _live_positions(node) != [0]:
        return Kind("unsupported", f"{name} with an input-dependent second argument")
    return Kind("pass", name, ("op:" + name,), relu_like=name in _RELU_LIKE_FUNCS)


def propagate_pass(walk: WalkView, step: Step, outs):
    """Element-wise activations and identities: relevance passes unchanged."""
    node, r = step.node, outs[0]
    parent = node.parents[0]
    pv = walk.value(parent)
    if pv.shape != r.shape:
        if pv.numel() != r.numel():
            raise UnsupportedModelError(f"{node.name}: Pass needs a shape-preserving layer, got "
                                        f"{tuple(pv.shape)} -> {tuple(r.shape)}")
        r = r.reshape(pv.shape)
    return [(parent, r.to(pv.dtype))], walk.zero()

