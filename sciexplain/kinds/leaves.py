"""The leaf kind: a module registered with :func:`sciexplain.register` propagates by its own function."""

from __future__ import annotations

import torch

from ..errors import InputError, UnsupportedModelError
from ..record.tape import Ref, _Placeholder
from .context import Step, WalkView
from .registry import LeafCall, LeafRelevance


def propagate_leaf(walk: WalkView, step: Step, outs):
    """A module registered with :func:`sciexplain.register`: its own propagator decides."""
    node = step.node
    entry = walk.registry.leaf_entry(node.target)
    live: dict[int, object] = {}
    inputs = []
    for i, a in enumerate(node.args):
        if isinstance(a, _Placeholder):
            live[i] = a.ref
            inputs.append(walk.value(a.ref).detach())
        else:
            inputs.append(a)
    if outs[0] is None or any(o is not None for o in outs[1:]):
        raise UnsupportedModelError(f"{node.name}: a registered module must return one tensor that the "
                                    "rest of the model uses; relevance reached its other outputs")
    output = node.value(0).detach() if node.outputs[0] is not None else outs[0]
    call = LeafCall(node.name, node.target, tuple(inputs), output, outs[0], step.rule)
    got = entry.propagate(call)
    if not isinstance(got, LeafRelevance):
        raise InputError(f"{node.name}: the propagator registered for {type(node.target).__name__} returned "
                         f"{type(got).__name__}; it must return sciexplain.LeafRelevance(inputs=[...])")
    if len(got.inputs) != len(inputs):
        raise InputError(f"{node.name}: the propagator returned relevance for {len(got.inputs)} inputs; the "
                         f"module was called with {len(inputs)} positional arguments (use None for those "
                         "that get none)")
    result, leaving = [], walk.zero()
    for i, r in enumerate(got.inputs):
        if r is None:
            continue
        if i not in live:
            raise InputError(f"{node.name}: relevance returned for argument {i}, which does not depend on "
                             "the input; return None there")
        if tuple(r.shape) != tuple(inputs[i].shape):
            raise InputError(f"{node.name}: relevance for argument {i} has shape {tuple(r.shape)}, the "
                             f"argument has shape {tuple(inputs[i].shape)}")
        r = r.detach().to(inputs[i].dtype)
        result.append((live[i], r))
        leaving = leaving + walk.per_sample_sum(live[i], r)
    if got.absorbed is not None:
        absorbed = torch.as_tensor(got.absorbed, dtype=walk.fw.logits.dtype, device=walk.fw.logits.device).detach().reshape(-1)
        if absorbed.shape[0] != walk.batch:
            raise InputError(f"{node.name}: absorbed must have one value per sample ({walk.batch}), got "
                             f"shape {tuple(absorbed.shape)}")
    else:
        absorbed = walk.per_sample_sum(Ref(node.index, 0), outs[0]).to(walk.fw.logits.dtype) - leaving
    return result, absorbed


def describe_leaf(step: Step, registry) -> str:
    """The ledger's "rule" column of a registered module without a rule: its own description."""
    return f"registered: {registry.leaf_entry(step.node.target).description}"

