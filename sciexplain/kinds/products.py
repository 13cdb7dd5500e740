"""Products and scaling: multiplication or division by a constant is affine, ``a * b`` of two
input-dependent tensors (gates) is split by a product rule."""

from __future__ import annotations

import torch

from ..errors import RuleError
from ..record.call_args import _live_positions
from ..record.tape import Node, Ref, _Placeholder
from ..rules.products import ProportionalProduct, SignalTakeAll, UniformProduct
from ..rules.propagation import per_sample_sum
from .context import Step, WalkView
from .registry import Kind
from .sums import unbroadcast


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
    if len(node.parents) == 2 and len(live) == 2 and node.parents[0] == node.parents[1] and "mul" in name:
        # x * x: an element-wise square, the identity rule (sciexplain.kinds.elementwise)
        return Kind("pass", f"{name} (x * x)", ("op:square",))
    if len(node.parents) >= 2 and len(live) == 2:
        # a product of two input-dependent tensors (gating): a product rule decides the split
        return Kind("product", name, ("op:mul",))
    if len(node.parents) != 1:
        return Kind("unsupported", f"{name} of a tensor with itself has no product rule here")
    return Kind("affine", name, ("op:mul",))


def product_operands(node) -> list[tuple[object, torch.Tensor | float]]:
    """The two operands of a product node: ``(ref, None)`` for an input-dependent one,
    ``(None, value)`` for a constant."""
    args = list(node.args)
    pair = [args[0], args[1] if len(args) > 1 else node.kwargs.get("other")]
    return [(o.ref, None) if isinstance(o, _Placeholder) else (None, o) for o in pair]


def propagate_product(walk: WalkView, step: Step, outs):
    """``a * b`` with a gate or of two input-dependent tensors, by the step's product rule.

    ``SignalTakeAll``: all of R to the operand that is not a gate (Arras et al. 2017).
    ``UniformProduct``: R / 2 to each operand. ``ProportionalProduct``: R |a| / (|a| + |b|) to
    ``a`` and the rest to ``b`` (the eps of the denominator absorbed). Broadcast operands get the
    relevance summed over the dims they were broadcast along; what goes to a constant operand
    (``gate * c`` with a constant signal c, e.g. a given initial cell state) is absorbed.
    """
    node, R, rule = step.node, outs[0], step.rule
    operands = product_operands(node)
    values = [walk.value(ref).detach() if ref is not None else torch.as_tensor(c, dtype=R.dtype, device=R.device)
              for ref, c in operands]
    absorbed = walk.zero()
    axis = walk.batch_axis(Ref(node.index, 0))
    if isinstance(rule, SignalTakeAll):
        shares = [R if k == step.signal else None for k in range(2)]
    elif isinstance(rule, UniformProduct):
        shares = [R * 0.5, R * 0.5]
    elif isinstance(rule, ProportionalProduct):
        mags = [torch.broadcast_to(v.abs(), R.shape) for v in values]
        den = mags[0] + mags[1] + rule.epsilon
        shares = [R * (m / den) for m in mags]
        absorbed = per_sample_sum(R * (rule.epsilon / den), axis)
    else:  # pragma: no cover - the plan validates the rule
        raise RuleError(f"{node.name}: {rule!r} is not a product rule")
    result = []
    for (ref, _), v, share in zip(operands, values, shares):
        if share is None:
            continue
        if ref is None:
            absorbed = absorbed + per_sample_sum(share, axis)
        else:
            result.append((ref, unbroadcast(share, v.shape)))
    return result, absorbed

