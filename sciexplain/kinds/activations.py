"""Activations and squashing: element-wise activations, dropout and identities pass relevance
unchanged (sigmoids are gates for the product rules); a final softmax / sigmoid is stripped, also
when only shape operations follow it."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..record.call_args import _live_positions
from ..record.op_names import _RELU_LIKE_FUNCS, _RELU_LIKE_MODULES, _SHAPE_ONLY_FUNCS, _SHAPE_ONLY_MODULES
from ..record.tape import Node, Ref, Tape, _map, _Placeholder, replay_args
from .context import Step, WalkView
from .registry import Kind, Registry, _mro_keys


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


def _shape_only(node: Node) -> bool:
    """Whether ``node`` only reshapes, indexes or copies one input-dependent tensor (no values change)."""
    if len(node.outputs) != 1 or len(set(node.parents)) != 1:
        return False
    if node.kind == "module":
        return isinstance(node.target, _SHAPE_ONLY_MODULES)
    return node.kind == "function" and node.op in _SHAPE_ONLY_FUNCS


def strip_squash_before_shape_ops(tape: Tape, ref: Ref, registry: Registry) -> str | None:
    """A final softmax / log-softmax / sigmoid followed only by shape operations (squeeze,
    reshape, flatten, indexing, transpose; braindecode's log-softmax then squeeze) is still the
    final squash: the shape operations are re-run on its input, so that the output node holds
    the logits in the output's shape, and the squash drops out of the tape's path to the output.
    Returns the squash's description, or None (the tape unchanged) when there is none."""
    chain = []
    node = tape.node_of(ref)
    while _shape_only(node) and node.index != 0:
        chain.append(node)
        node = tape.node_of(node.parents[0])
    if not chain or not registry.classify(node).final_squash or node.index == 0:
        return None
    squash_ref, logits_ref = Ref(node.index, 0), node.parents[0]
    values = {logits_ref: tape.node_of(logits_ref).value(logits_ref.k)}
    with torch.set_grad_enabled(values[logits_ref].requires_grad):
        _replay_on_logits(chain, squash_ref, logits_ref, values)
    return f"{registry.classify(node).detail} (followed by {', '.join(n.op for n in reversed(chain))})"


def _replay_on_logits(chain: list[Node], squash_ref: Ref, logits_ref: Ref, values: dict) -> None:
    for n in reversed(chain):  # first after the squash first
        parent = logits_ref if n.parents[0] == squash_ref else n.parents[0]
        n.args, n.kwargs = _map(n.args, lambda o: _Placeholder(parent) if isinstance(o, _Placeholder) else o), \
            _map(n.kwargs, lambda o: _Placeholder(parent) if isinstance(o, _Placeholder) else o)
        n.parents = [parent for _ in n.parents]
        args, kwargs = replay_args(n, values)
        out = n.target(*args, **kwargs)
        n.outputs, n.versions, n.snapshots = [out], [out._version], {}
        values[Ref(n.index, 0)] = out
