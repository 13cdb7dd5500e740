"""How relevance passes back through each built-in operation kind (the registry's entries).

Each propagator has the signature ``propagate(walk, step, outs) -> (contributions, absorbed)``
(see :class:`sciexplain.registry.OpKind`) and is registered once at the bottom of this module.
What each adds to the ledger:

``affine``    the rule's own bias and stabiliser terms (:func:`sciexplain.propagation.lrp_affine`)
``folded``    nothing: a BatchNorm folded into its neighbour is part of that layer's rule
``pass``      nothing: relevance passes unchanged
``layout``    the relevance that moves onto constant entries (padding values, constant operands)
``sum``       the stabiliser's share and the constant operands' shares
``product``   the share of a constant or the eps of a proportional split (signal-take-all and
              uniform lose nothing)
``embedding`` nothing: the looked-up vector's relevance is summed onto its index
``leaf``      what the registered propagator reports (or entering - leaving)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from . import ops as ops
from ..errors import InputError, RuleError, UnsupportedModelError
from ..rules.propagation import AffineLayer, lrp_affine, per_sample_sum, sign0
from .registry import REGISTRY, LeafCall, LeafRelevance, OpKind
from ..rules.affine import Epsilon, ProportionalProduct, SignalTakeAll, UniformProduct
from ..record.tape import Ref, _Placeholder
from ..explain.walk import Walk, batch_check, local_vjp

if TYPE_CHECKING:  # pragma: no cover
    from ..explain.plan import Step

__all__ = ["unbroadcast"]


def unbroadcast(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` down to ``shape`` (the inverse of broadcasting), conserving its total."""
    while t.ndim > len(shape):
        t = t.sum(dim=0)
    for i, n in enumerate(shape):
        if n == 1 and t.shape[i] != 1:
            t = t.sum(dim=i, keepdim=True)
    return t


def propagate_affine(walk: Walk, step: Step, outs):
    """The step's LRP rule on ``z = lin(x; W) + b`` (BatchNorm neighbours folded in)."""
    fw, node, R = walk.fw, step.node, outs[0]
    if step.fuse_before is not None:
        xref = step.fuse_before.parents[0]
    else:
        xref = next(a.ref for a in node.args if isinstance(a, _Placeholder))
    x = fw.value(xref)
    layer = ops.affine_layer(node, step.kind, x, node.outputs[0].ndim, step.fuse_after, step.fuse_before)
    cached = None
    xnode = fw.tape.node_of(xref)
    if (step.fuse_after is None and step.fuse_before is None and x.requires_grad
            and node.pristine(0) and xnode.pristine(xref.k) and node.outputs[0].grad_fn is not None):
        # the recorded forward already computed z = Wx + b with autograd: plain terms reuse it
        cached = (xnode.outputs[xref.k], node.outputs[0])
    axes = (walk.batch_axis(xref), walk.batch_axis(Ref(node.index, 0)))
    R_in, absorbed = lrp_affine(layer, x.detach(), R, step.rule, cached, axes)
    return [(xref, R_in)], absorbed


def propagate_folded(walk: Walk, step: Step, outs):
    """A BatchNorm folded into a neighbour: folded into the preceding layer, its relevance is
    that layer's output relevance; folded into the following layer, that layer sends relevance
    past it and none arrives here."""
    node = step.node
    if walk.fw.steps[step.folded_into.index].fuse_after is node:
        return [(node.parents[0], outs[0])], walk.zero()
    return [], walk.zero()


def propagate_pass(walk: Walk, step: Step, outs):
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


def propagate_layout(walk: Walk, step: Step, outs):
    """Relevance moves with the entries (the operation's vector-Jacobian product). Entries that
    come from constants (padding values, a constant operand of cat/where/max) take their
    relevance with them: for an operation that only moves entries that is exactly the part of
    the incoming relevance that reaches no input, and it is counted as absorbed."""
    if step.kind.max_pool and walk.max_pool == "proportional":
        return _max_proportional(walk, step, outs)
    node = step.node
    contributions = local_vjp(walk.fw, node, outs)
    axes = [walk.batch_axis(ref) for ref, _ in contributions]
    for (_, g), a in zip(contributions, axes):  # before the per-sample sums could misread a shape
        batch_check(g, walk.batch, node, a)
    entering = sum(walk.per_sample_sum(Ref(node.index, k), r) for k, r in enumerate(outs) if r is not None)
    leaving = sum((per_sample_sum(g, a) for (_, g), a in zip(contributions, axes)), torch.zeros_like(entering))
    return contributions, entering - leaving


def _max_proportional(walk: Walk, step: Step, outs):
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
    layer = AffineLayer(node.name, "max as sum pooling", torch.ones((), dtype=x.dtype), None, apply, False)
    axes = (walk.batch_axis(xref), walk.batch_axis(Ref(node.index, 0)))
    R_in, absorbed = lrp_affine(layer, x, outs[0], Epsilon(1e-9), batch_axes=axes)
    return [(xref, R_in)], absorbed


def _sum_signs(node) -> list[float]:
    args = list(node.args)
    alpha = node.kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    name = node.op
    if name in ("rsub", "__rsub__"):
        return [-(alpha if name == "rsub" else 1), 1]
    if name.startswith("sub") or name in ("__sub__", "__isub__", "subtract"):
        return [1, -alpha]
    return [1, alpha]


def propagate_sum(walk: Walk, step: Step, outs):
    """``a + b``, ``a - b``: each operand gets its share of the sum, stabilised by the step's
    Epsilon; the shares of constant operands and the stabiliser's are absorbed."""
    node, R = step.node, outs[0]
    args = list(node.args)
    a, b = args[0], args[1] if len(args) > 1 else node.kwargs.get("other")
    contribs = []
    for operand, sgn in zip((a, b), _sum_signs(node)):
        if isinstance(operand, _Placeholder):
            contribs.append((operand.ref, sgn * walk.value(operand.ref).detach()))
        else:
            contribs.append((None, sgn * torch.as_tensor(operand, dtype=R.dtype)))
    shape = R.shape
    total = sum(torch.broadcast_to(c, shape) for _, c in contribs)
    eps = step.rule.epsilon if isinstance(step.rule, Epsilon) else 1e-9
    stab = eps * sign0(total)
    den = total + stab
    dead = den == 0  # only with eps == 0: that relevance reaches no operand and is absorbed
    s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(den), den))
    axis = walk.batch_axis(Ref(node.index, 0))
    absorbed = per_sample_sum(s * stab, axis) + per_sample_sum(torch.where(dead, R, torch.zeros_like(R)), axis)
    result = []
    for ref, c in contribs:
        share = torch.broadcast_to(c, shape) * s  # shaped like R
        if ref is None:
            absorbed = absorbed + per_sample_sum(share, axis)
            continue
        result.append((ref, unbroadcast(share, walk.value(ref).shape)))
    return result, absorbed


def product_operands(node) -> list[tuple[object, torch.Tensor | float]]:
    """The two operands of a product node: ``(ref, None)`` for an input-dependent one,
    ``(None, value)`` for a constant."""
    args = list(node.args)
    pair = [args[0], args[1] if len(args) > 1 else node.kwargs.get("other")]
    return [(o.ref, None) if isinstance(o, _Placeholder) else (None, o) for o in pair]


def propagate_product(walk: Walk, step: Step, outs):
    """``a * b`` with a gate or of two input-dependent tensors, by the step's product rule.

    ``SignalTakeAll``: all of R to the operand that is not a gate (Arras et al. 2017).
    ``UniformProduct``: R / 2 to each operand. ``ProportionalProduct``: R |a| / (|a| + |b|) to
    ``a`` and the rest to ``b`` (the eps of the denominator absorbed). Broadcast operands get the
    relevance summed over the dims they were broadcast along; what goes to a constant operand
    (``gate * c`` with a constant signal c, e.g. a given initial cell state) is absorbed.
    """
    node, R, rule = step.node, outs[0], step.rule
    operands = product_operands(node)
    values = [walk.value(ref).detach() if ref is not None else torch.as_tensor(c, dtype=R.dtype)
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


def propagate_embedding(walk: Walk, step: Step, outs):
    """An embedding lookup: the looked-up vector's relevance, summed over its dims, is the index's."""
    return [(step.node.parents[0], outs[0].sum(dim=-1))], walk.zero()


def propagate_leaf(walk: Walk, step: Step, outs):
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
        absorbed = torch.as_tensor(got.absorbed, dtype=walk.fw.logits.dtype).detach().reshape(-1)
        if absorbed.shape[0] != walk.batch:
            raise InputError(f"{node.name}: absorbed must have one value per sample ({walk.batch}), got "
                             f"shape {tuple(absorbed.shape)}")
    else:
        absorbed = walk.per_sample_sum(Ref(node.index, 0), outs[0]).to(walk.fw.logits.dtype) - leaving
    return result, absorbed


def describe_leaf(step: Step, registry) -> str:
    """The ledger's "rule" column of a registered module without a rule: its own description."""
    return f"registered: {registry.leaf_entry(step.node.target).description}"


for _kind in (
    OpKind("affine", propagate_affine, "LRP rule", takes_rule="affine"),
    OpKind("folded", propagate_folded, "folded into its neighbour", transparent=True),
    OpKind("pass", propagate_pass, "pass-through", transparent=True),
    OpKind("layout", propagate_layout, "moves with entries", transparent=True),
    OpKind("sum", propagate_sum, "proportional", takes_rule="sum"),
    OpKind("product", propagate_product, "product rule", takes_rule="product"),
    OpKind("embedding", propagate_embedding, "sum over embedding"),
    OpKind("leaf", propagate_leaf, "registered module", takes_rule="leaf", describe=describe_leaf),
):
    REGISTRY.add_kind(_kind)
