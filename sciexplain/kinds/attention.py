"""Attention: a softmax inside the network, products of two input-dependent tensors that sum over
terms (matmul, bmm, einsum) and ``F.scaled_dot_product_attention``, by the AttnLRP rules (CP-LRP as
an option; :mod:`sciexplain.rules.attention`).

Kinds and what they add to the ledger:

``softmax``    a softmax inside the network (a final one is stripped as before):
               :class:`~sciexplain.rules.attention.LinearisedSoftmax`; the bias terms of the
               linearisation are absorbed
``bilinear``   matmul / bmm / two-operand einsum of two input-dependent tensors:
               :class:`~sciexplain.rules.attention.BilinearUniform` (default) or
               :class:`~sciexplain.rules.attention.ConstantAttention`; the stabiliser's share is absorbed
``attention``  ``F.scaled_dot_product_attention``, decomposed into ``x = q k^T scale + mask``,
               ``A = softmax(x)``, ``O = A v`` (the causal flag and boolean masks as ``-inf`` in the
               mask, grouped-query attention by repeating the key/value heads): the step's product
               rule on both products, the linearised softmax between them; absorbed: both
               stabilisers' shares, the softmax's bias terms and the additive mask's share
``einsum``     an einsum of an input-dependent tensor with a constant one: a linear map, the
               preset's rule for dense layers
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import RuleError, UnsupportedModelError
from ..record.call_args import _arg
from ..record.op_names import _SCALE_FUNCS
from ..record.tape import Node, Ref, _Placeholder
from ..rules.attention import BilinearUniform, ConstantAttention
from ..rules.propagation import AffineLayer, lrp_affine, signed_eps
from .context import Step, WalkView, local_vjp
from .registry import Kind

__all__ = ["propagate_softmax", "propagate_bilinear", "propagate_attention", "propagate_einsum",
           "einsum_operands", "bilinear_keys", "linearised_softmax"]

#: operations an attention matrix may pass between its softmax and its product with the values,
#: staying "the attention weights" for CP-LRP (besides reshapes, dropout and identities)
_KEEPS_ATTENTION = _SCALE_FUNCS | {"masked_fill", "masked_fill_", "where", "to", "type_as", "float", "half"}


# -- recognisers -------------------------------------------------------------------------------------

def bilinear_keys(op: str) -> tuple:
    """The preset keys of a product of two input-dependent tensors (most specific first)."""
    return ("op:matmul",) if op in ("matmul", "__matmul__", "__rmatmul__") else ("op:" + op, "op:matmul")


def einsum_operands(node: Node) -> tuple[str, list]:
    """The equation and the (recorded) operands of an einsum call, given as
    ``einsum(eq, a, b)`` or ``einsum(eq, [a, b])``."""
    eq = _arg(node, 0, "equation")
    ops = list(node.args[1:])
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    return eq, ops


def _einsum_function(node: Node) -> Kind:
    eq, ops = einsum_operands(node)
    if not isinstance(eq, str):
        return Kind("unsupported", "einsum in the sublist format (give the equation as a string)")
    live = [isinstance(o, _Placeholder) for o in ops]
    if len(ops) != 2:
        return Kind("unsupported", f"einsum {eq!r} of {len(ops)} operands: only two-operand einsum has a "
                    "rule; write it as a chain of two-operand einsums")
    if all(live):
        return Kind("bilinear", f"einsum {eq}", ("op:einsum", "op:matmul"))
    return Kind("einsum", f"einsum {eq}", (nn.Linear, "op:einsum"), weighted=True)


def _sdpa_function(node: Node) -> Kind:
    mask = _arg(node, 3, "attn_mask")
    dropout_p = _arg(node, 4, "dropout_p", default=0.0)
    if isinstance(mask, _Placeholder):
        return Kind("unsupported", "scaled_dot_product_attention with an attn_mask computed from the input "
                    "(a float mask that depends on it): pass a boolean mask, or a float mask of constants")
    if dropout_p:
        return Kind("unsupported", f"scaled_dot_product_attention with dropout_p={dropout_p} drops random "
                    "attention weights even in eval mode: pass dropout_p=0.0 when not training (as "
                    "transformers does with dropout_p=self.dropout if self.training else 0.0)")
    return Kind("attention", "scaled_dot_product_attention",
                ("op:scaled_dot_product_attention", "op:matmul"))


# -- softmax ---------------------------------------------------------------------------------------

def _softmax_dim(node: Node) -> int:
    dim = node.target.dim if node.kind == "module" else _arg(node, 1, "dim")
    if dim is None:
        raise UnsupportedModelError(f"{node.name}: a softmax without dim= (the implicit dim is deprecated "
                                    "in torch); give the dim explicitly")
    return int(dim)


def linearised_softmax(x: torch.Tensor, s: torch.Tensor, R: torch.Tensor, dim: int) -> torch.Tensor:
    """AttnLRP's softmax rule: ``R_i = x_i (R_i - s_i sum_j R_j)`` along ``dim`` (entries masked
    with ``-inf``, where ``s_i = 0``, get none)."""
    x = torch.where(torch.isneginf(x), torch.zeros_like(x), x)
    return x * (R - s * R.sum(dim=dim, keepdim=True))


def propagate_softmax(walk: WalkView, step: Step, outs):
    """A softmax inside the network, by :class:`~sciexplain.rules.attention.LinearisedSoftmax`;
    what is not passed on (the linearisation's bias terms) is absorbed."""
    node, R = step.node, outs[0]
    xref = node.parents[0]
    x = walk.value(xref).detach()
    s = node.value(0).detach().to(R.dtype)
    R_in = linearised_softmax(x.to(R.dtype), s, R, _softmax_dim(node))
    entering = walk.per_sample_sum(Ref(node.index, 0), R)
    return [(xref, R_in)], entering - walk.per_sample_sum(xref, R_in)


# -- products of two input-dependent tensors ------------------------------------------------------

def _stabilised(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + signed_eps(z, eps)


def _attention_operand(walk: WalkView, node: Node) -> Ref:
    """The operand of a product computed by a softmax (through reshapes, dropout, masking or
    constant scaling): CP-LRP holds it constant."""
    steps = walk.fw.steps

    def from_softmax(ref: Ref) -> bool:
        while True:
            st = steps.get(ref.node)
            if st is None:
                return False
            if st.kind.category == "softmax":
                return True
            live = list(dict.fromkeys(st.node.parents))
            if len(live) != 1 or not (st.kind.category in ("layout", "pass") or st.node.op in _KEEPS_ATTENTION):
                return False
            ref = live[0]
    refs = list(dict.fromkeys(node.parents))
    hits = [r for r in refs if from_softmax(r)]
    if len(hits) != 1 or len(refs) != 2:
        raise RuleError(f"{node.name}: ConstantAttention (CP-LRP) holds the attention weights (the operand "
                        f"computed by a softmax) constant, but {'both operands come' if len(hits) > 1 else 'no operand comes'}"
                        " from a softmax here. Map BilinearUniform() to this operation by its module path "
                        f"(scope {node.scope!r}) or use the preset 'attnlrp'.")
    return hits[0]


_MATMULS = ("matmul", "__matmul__", "bmm")


def _matmul_vjp(walk: WalkView, node: Node, S: torch.Tensor, keep: Ref | None):
    """``S B^T`` and ``A^T S`` for ``O = A @ B`` with two distinct input-dependent operands of at
    least two dims and the same batch dims (attention's products), without running the product
    again; None for anything else (then the node's own vector-Jacobian product is used). The
    operand ``keep`` (held constant) gets none."""
    if node.op not in _MATMULS or node.kwargs or len(node.args) != 2:
        return None
    a, b = node.args
    if not (isinstance(a, _Placeholder) and isinstance(b, _Placeholder)) or a.ref == b.ref:
        return None
    A, B = walk.value(a.ref).detach(), walk.value(b.ref).detach()
    if A.ndim < 2 or B.ndim < 2 or A.shape[:-2] != B.shape[:-2] or S.shape != A.shape[:-1] + B.shape[-1:]:
        return None
    out = []
    if a.ref != keep:
        out.append((a.ref, S @ B.to(S.dtype).transpose(-2, -1)))
    if b.ref != keep:
        out.append((b.ref, A.to(S.dtype).transpose(-2, -1) @ S))
    return out


def _einsum_vjp(walk: WalkView, node: Node, S: torch.Tensor, keep: Ref | None):
    """For ``O = einsum("X,Y->Z", A, B)`` with two distinct input-dependent operands: ``dA =
    einsum("Z,Y->X", S, B)`` and ``dB = einsum("X,Z->Y", A, S)``, without running the product
    again. Only for an explicit equation without ``...`` or repeated indices within an operand,
    where every index of an operand also appears in the other operand or the output, and the
    shapes come back exactly; None for anything else (the node's own vector-Jacobian product)."""
    if node.op != "einsum" or node.kwargs or not node.args or not isinstance(node.args[0], str):
        return None
    operands = node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if len(operands) != 2 or not all(isinstance(o, _Placeholder) for o in operands) \
            or operands[0].ref == operands[1].ref:
        return None
    eq = node.args[0].replace(" ", "")
    if "->" not in eq or "." in eq:
        return None
    lhs, Z = eq.split("->")
    parts = lhs.split(",")
    if len(parts) != 2:
        return None
    X, Y = parts
    if any(len(set(t)) != len(t) for t in (X, Y, Z)) or not set(X) <= set(Y) | set(Z) \
            or not set(Y) <= set(X) | set(Z):
        return None
    a, b = operands
    A, B = walk.value(a.ref).detach().to(S.dtype), walk.value(b.ref).detach().to(S.dtype)
    if A.ndim != len(X) or B.ndim != len(Y) or S.ndim != len(Z):
        return None
    out = []
    if a.ref != keep:
        gA = torch.einsum(f"{Z},{Y}->{X}", S, B)
        if gA.shape != A.shape:
            return None
        out.append((a.ref, gA))
    if b.ref != keep:
        gB = torch.einsum(f"{X},{Z}->{Y}", A, S)
        if gB.shape != B.shape:
            return None
        out.append((b.ref, gB))
    return out


def propagate_bilinear(walk: WalkView, step: Step, outs):
    """A product of two input-dependent tensors that sums over terms (matmul, bmm, einsum).

    ``BilinearUniform``: with ``S = R / (2 (O + eps sign(O)))``, each operand gets
    ``operand * d<f(a, b), S>/d operand`` (for ``O = A B`` that is ``A (S B^T)`` and
    ``(A^T S) B``, the half of every term ``A_ji B_ip R_jp / (O_jp + ...)``; by Euler's theorem
    for a map linear in each operand this is the explicit sum over terms). ``ConstantAttention``:
    ``S = R / (O + eps sign(O))`` to the operand that is not the attention weights, none to them.
    The stabiliser's share is absorbed (entering minus leaving).
    """
    node, R, rule = step.node, outs[0], step.rule
    O = node.value(0).detach().to(R.dtype)
    if isinstance(rule, BilinearUniform):
        S, keep = R / _stabilised(O, rule.epsilon).mul_(2), None
    elif isinstance(rule, ConstantAttention):
        S, keep = R / _stabilised(O, rule.epsilon), _attention_operand(walk, node)
    else:  # pragma: no cover - the plan resolves a rule of the family
        raise RuleError(f"{node.name}: {rule!r} is not a rule for a product of two input-dependent tensors")
    grads = _matmul_vjp(walk, node, S, keep)
    if grads is None:
        grads = _einsum_vjp(walk, node, S, keep)
    if grads is None:
        grads = local_vjp(walk.fw, node, [S])
    result, leaving = [], walk.zero()
    for ref, g in grads:
        if ref == keep:
            continue
        r = walk.value(ref).detach().to(R.dtype) * g
        result.append((ref, r))
        leaving = leaving + walk.per_sample_sum(ref, r)
    return result, walk.per_sample_sum(Ref(node.index, 0), R) - leaving


# -- F.scaled_dot_product_attention -----------------------------------------------------------------

def _sdpa_parts(node: Node):
    q, k, v = (_arg(node, i, name) for i, name in enumerate(("query", "key", "value")))
    mask = _arg(node, 3, "attn_mask")
    is_causal = bool(_arg(node, 5, "is_causal", default=False))
    scale = _arg(node, 6, "scale")
    gqa = bool(_arg(node, 7, "enable_gqa", default=False))
    return (q, k, v), mask, is_causal, scale, gqa


def _additive_mask(mask, is_causal: bool, L: int, S: int, like: torch.Tensor) -> torch.Tensor:
    """The mask as an addend of the scores: ``-inf`` where a boolean mask is False or the causal
    flag hides a key, a float mask as given."""
    bias = torch.zeros(L, S, dtype=like.dtype, device=like.device)
    if is_causal:
        hidden = torch.ones(L, S, dtype=torch.bool, device=like.device).tril().logical_not()
        bias = bias.masked_fill(hidden, float("-inf"))
    if mask is not None:
        mask = torch.as_tensor(mask, device=like.device)
        if mask.dtype == torch.bool:
            bias = bias.masked_fill(mask.logical_not(), float("-inf"))
        else:
            bias = bias + mask.to(like.dtype)
    return bias


def propagate_attention(walk: WalkView, step: Step, outs):
    """``F.scaled_dot_product_attention``, decomposed as the reference implementation in torch's
    documentation (``x = q k^T scale + mask``, ``A = softmax(x)``, ``O = A v``), each step by its
    rule, back to front:

    1. ``O = A v`` by the step's product rule (``BilinearUniform``: half of each term to ``A``
       and ``v``; ``ConstantAttention``: all to ``v``, and the walk stops there);
    2. ``A = softmax(x)``: ``R_x = x (R_A - A sum_keys R_A)`` (:class:`~sciexplain.rules.attention.LinearisedSoftmax`);
    3. ``x = z + mask`` with ``z = q k^T scale``: epsilon-LRP with the mask as the bias, each term
       ``q_li k_si scale`` split half/half between ``q`` and ``k`` (``BilinearUniform``'s epsilon).

    Masked keys (``-inf``) get no relevance at all. Constant operands (a learned query) absorb
    their share; everything not passed on is absorbed (entering minus leaving).
    """
    node, R, rule = step.node, outs[0], step.rule
    (q, k, v), mask, is_causal, scale, gqa = _sdpa_parts(node)
    refs = [o.ref if isinstance(o, _Placeholder) else None for o in (q, k, v)]
    vals = [walk.value(r).detach().to(R.dtype) if r is not None else torch.as_tensor(o).to(R.dtype)
            for r, o in zip(refs, (q, k, v))]
    leaves = [t.clone().requires_grad_(r is not None) for t, r in zip(vals, refs)]
    ql, kl, vl = leaves
    L, S, E = ql.shape[-2], kl.shape[-2], ql.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    with torch.enable_grad():
        kk, vv = kl, vl
        if gqa and kl.ndim >= 3 and ql.shape[-3] != kl.shape[-3]:
            kk = kl.repeat_interleave(ql.shape[-3] // kl.shape[-3], dim=-3)
            vv = vl.repeat_interleave(ql.shape[-3] // vl.shape[-3], dim=-3)
        z = (ql @ kk.transpose(-2, -1)) * scale
        x = z + _additive_mask(mask, is_causal, L, S, z)
        A = torch.softmax(x, dim=-1).nan_to_num(0.0)  # a fully masked row: no weights
        O = A @ vv
    eps = rule.epsilon
    constant = isinstance(rule, ConstantAttention)
    S_O = R / _stabilised(O.detach(), eps)
    wanted = [t for t, r in zip(leaves, refs) if r is not None]
    if constant:
        g_v = torch.autograd.grad(O, vl, S_O)[0] if refs[2] is not None else None
        grads = {2: g_v}
    else:
        g_A, *g = torch.autograd.grad(O, [A] + wanted, S_O / 2, allow_unused=True, retain_graph=True)
        got = dict(zip([i for i, r in enumerate(refs) if r is not None], g))
        grads = {2: got.get(2)}
        A_, x_ = A.detach(), x.detach()
        R_x = linearised_softmax(x_, A_, A_ * g_A, -1)
        finite = torch.isfinite(x_)
        S_z = torch.where(finite, R_x / torch.where(finite, _stabilised(x_, eps), torch.ones_like(x_)),
                          torch.zeros_like(x_))
        qk = [t for t, r in zip((ql, kl), refs[:2]) if r is not None]
        if qk:
            g_qk = torch.autograd.grad(z, qk, S_z / 2, allow_unused=True)
            grads.update(zip([i for i in (0, 1) if refs[i] is not None], g_qk))
    result, leaving = [], walk.zero()
    for i, ref in enumerate(refs):
        g = grads.get(i)
        if ref is None or g is None:
            continue
        r = vals[i] * g
        result.append((ref, r))
        leaving = leaving + walk.per_sample_sum(ref, r)
    return result, walk.per_sample_sum(Ref(node.index, 0), R) - leaving


# -- einsum with a constant operand: a linear map -----------------------------------------------------

def _einsum_apply(eq: str, live_first: bool):
    if live_first:
        return lambda x_, w_: torch.einsum(eq, x_, w_)
    return lambda x_, w_: torch.einsum(eq, w_, x_)


def propagate_einsum(walk: WalkView, step: Step, outs):
    """An einsum of an input-dependent tensor ``x`` with a constant ``W``: the linear map
    ``x -> einsum(eq, x, W)`` (no bias) by the step's LRP rule, as a dense layer."""
    node, R = step.node, outs[0]
    eq, ops = einsum_operands(node)
    live_first = isinstance(ops[0], _Placeholder)
    xref = (ops[0] if live_first else ops[1]).ref
    w = torch.as_tensor(ops[1] if live_first else ops[0]).detach()
    x = walk.value(xref).detach()
    layer = AffineLayer(node.name, f"einsum {eq}", w, None, _einsum_apply(eq, live_first), True)
    axes = (walk.batch_axis(xref), walk.batch_axis(Ref(node.index, 0)))
    R_in, absorbed = lrp_affine(layer, x, R, step.rule, None, axes)
    return [(xref, R_in)], absorbed



def _multihead_module(m: nn.Module, node: Node) -> Kind:
    return Kind("unsupported", "no relevance rule for module type MultiheadAttention: it runs "
                "F.multi_head_attention_forward as one fused call whose steps are not recorded; write the block with nn.Linear projections for q, k, v and "
                "the output and F.scaled_dot_product_attention (or matmul + softmax), which are explained "
                "with AttnLRP's rules (its weights load with in_proj_weight.chunk(3))")
