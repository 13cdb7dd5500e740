"""The sum kind: ``x + y``, ``x - y`` (residuals); each operand gets its share of the sum."""

from __future__ import annotations

import torch

from ..record.tape import Node, Ref, _Placeholder
from ..rules.affine import Epsilon
from ..rules.propagation import per_sample_dot, per_sample_sum, signed_eps
from .context import Step, WalkView
from .registry import Kind

__all__ = ["unbroadcast"]


def _sum_function(node: Node) -> Kind:
    return Kind("sum", node.op, ("op:add",))


def unbroadcast(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` down to ``shape`` (the inverse of broadcasting), conserving its total."""
    while t.ndim > len(shape):
        t = t.sum(dim=0)
    for i, n in enumerate(shape):
        if n == 1 and t.shape[i] != 1:
            t = t.sum(dim=i, keepdim=True)
    return t


def _sum_signs(node) -> list[float]:
    args = list(node.args)
    alpha = node.kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    name = node.op
    if name in ("rsub", "__rsub__"):
        return [-(alpha if name == "rsub" else 1), 1]
    if name.startswith("sub") or name in ("__sub__", "__isub__", "subtract"):
        return [1, -alpha]
    return [1, alpha]


def propagate_sum(walk: WalkView, step: Step, outs):
    """``a + b``, ``a - b``: each operand gets its share of the sum, stabilised by the step's
    Epsilon; the shares of constant operands and the stabiliser's are absorbed."""
    node, R = step.node, outs[0]
    args = list(node.args)
    a, b = args[0], args[1] if len(args) > 1 else node.kwargs.get("other")
    contribs = []
    for operand, sgn in zip((a, b), _sum_signs(node)):
        if isinstance(operand, _Placeholder):
            value = walk.value(operand.ref).detach()
            contribs.append((operand.ref, value if sgn == 1 else sgn * value))
        else:
            contribs.append((None, sgn * torch.as_tensor(operand, dtype=R.dtype, device=R.device)))
    shape = R.shape
    total = sum(torch.broadcast_to(c, shape) for _, c in contribs)
    eps = step.rule.epsilon if isinstance(step.rule, Epsilon) else 1e-9
    axis = walk.batch_axis(Ref(node.index, 0))
    if eps > 0:  # |total + stab| >= eps: no denominator is zero
        stab = signed_eps(total, eps)
        s = R / total.add_(stab)  # total is a fresh tensor (the builtin sum starts from 0)
        absorbed = per_sample_dot(s, stab, axis)
    else:
        dead = total == 0  # that relevance reaches no operand and is absorbed
        s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(total), total))
        absorbed = per_sample_sum(torch.where(dead, R, torch.zeros_like(R)), axis)
    result = []
    for ref, c in contribs:
        share = torch.broadcast_to(c, shape) * s  # shaped like R
        if ref is None:
            absorbed = absorbed + per_sample_sum(share, axis)
            continue
        result.append((ref, unbroadcast(share, walk.value(ref).shape)))
    return result, absorbed

