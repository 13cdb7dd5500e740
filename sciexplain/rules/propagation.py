"""The one place where a rule's terms become relevance: LRP through an affine layer.

An :class:`AffineLayer` is anything of the form ``z = lin(x; W) + b`` with ``lin`` linear in
``x`` for fixed ``W``: Linear and convolution layers (with BatchNorm folded in), functional
``F.linear``/``F.conv*d`` with constant weights, standalone BatchNorm (an element-wise scale),
multiplication by a constant, and weight-free linear maps (average pooling, mean, sum) whose
implicit weights are positive and are represented by the scalar 1.
"""

from __future__ import annotations

import torch

from .terms import AffineLayer, Rule, SignedTerm, Term
from ..record.tape import OneSample

__all__ = ["AffineLayer", "lrp_affine", "sign0", "signed_eps", "per_sample_sum"]


def sign0(t: torch.Tensor) -> torch.Tensor:
    """Sign with ``sign(0) = +1`` (also at ``-0.0``), so that a stabilized denominator is never zero."""
    return torch.where(t >= 0, t.new_ones(()), t.new_full((), -1.0))


def signed_eps(t: torch.Tensor, eps: float) -> torch.Tensor:
    """``eps * sign(t)`` in one pass, the stabiliser of a denominator ``t``: ``+eps`` at ``+0.0``
    and ``-eps`` at ``-0.0`` (a sum is ``-0.0`` only when all its terms are zeros, so either sign
    passes the same relevance, and the absorbed part uses the same value)."""
    return torch.copysign(t.new_full((), eps), t)


def per_sample_sum(t: torch.Tensor, axis: int | OneSample = 0) -> torch.Tensor:
    """Sum over every dim but the batch dim ``axis`` (the first by default): one value per sample.

    ``axis`` may be a :class:`~sciexplain.record.tape.OneSample`: ``t`` holds one sample, whose entry
    is the sum of ``t``; the other samples' are zero.
    """
    if axis == 0:
        return t.reshape(t.shape[0], -1).sum(dim=1)
    if isinstance(axis, OneSample):
        total = t.reshape(1, -1).sum(dim=1)
        if axis.batch == 1:
            return total
        out = total.new_zeros(axis.batch)
        out[axis.index] = total[0]
        return out
    if t.shape[axis] == 1:  # a batch of one: the same sum as for a batch-first tensor
        return t.reshape(1, -1).sum(dim=1)
    return t.sum(dim=[d for d in range(t.ndim) if d != axis])


def per_sample_dot(a: torch.Tensor, b: torch.Tensor, axis: int | OneSample = 0) -> torch.Tensor:
    """``per_sample_sum(a * b, axis)`` in one pass, without the full-size product."""
    b = torch.broadcast_to(b, a.shape)
    if isinstance(axis, OneSample):
        return per_sample_sum(a * b, axis)
    if axis != 0:
        a, b = a.movedim(axis, 0), b.movedim(axis, 0)
    a, b = a.reshape(a.shape[0], -1), b.reshape(a.shape[0], -1)
    blas = a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64)
    if blas and a.shape[0] <= 64 and a.shape[1] >= 32768:
        # one BLAS dot per sample: several times faster than vecdot's reduction on the cpu for
        # large samples (1.8 ms against 4.5 ms on 8 x 880k); below about 30k values per sample
        # the per-call overhead of eight dots and a stack is the larger cost (29 us against 6 us
        # on 8 x 2440)
        return torch.stack([torch.dot(a[i], b[i]) for i in range(a.shape[0])]) if a.shape[0] else a.sum(1)
    return torch.linalg.vecdot(a, b)


def _batch_size(t: torch.Tensor, axis: int | OneSample) -> int:
    return axis.batch if isinstance(axis, OneSample) else t.shape[axis]


def _dot_bias(s: torch.Tensor, t: torch.Tensor, axis: int | OneSample = 0) -> torch.Tensor:
    """``per_sample_sum(s * t, axis)`` for ``t`` broadcastable to ``s``; a per-channel ``t`` (a
    bias) is applied after summing ``s`` over the dims it is constant along (no full-size product)."""
    if isinstance(axis, OneSample):
        return per_sample_dot(s, t, axis)
    if t.ndim <= s.ndim:
        t = t.reshape((1,) * (s.ndim - t.ndim) + tuple(t.shape))
        if t.shape[axis] == 1:
            dims = [d for d in range(s.ndim) if d != axis and t.shape[d] == 1 and s.shape[d] != 1]
            if dims:
                s = s.sum(dim=dims, keepdim=True)
    return per_sample_dot(s, t, axis)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    """A fresh autograd leaf with the values of ``t`` (``t`` itself stays untouched)."""
    return (t if t.is_contiguous() else t.contiguous()).detach().requires_grad_(True)


def _may_cancel(p: float, q: float, corr: torch.Tensor | None, sign: float | None) -> bool:
    """Whether ``p z + q zq + corr`` (``zq >= 0``; ``z`` of sign ``sign`` where the term acts,
    or unknown) can add up parts of opposite signs."""
    signs = set()
    if p != 0:
        if sign is None:
            return q != 0 or corr is not None
        signs.add(p * sign > 0)
    if q != 0:
        signs.add(q > 0)
    if corr is not None:
        if bool((corr > 0).any()):
            signs.add(True)
        if bool((corr < 0).any()):
            signs.add(False)
    return len(signs) > 1


def _signed_relevance(layer: AffineLayer, sterms: tuple[SignedTerm, ...], x: torch.Tensor, R: torch.Tensor,
                      cached: tuple[torch.Tensor, torch.Tensor] | None, axis: int = 0,
                      recorded: torch.Tensor | None = None):
    """All terms of a sign-split rule at once (``Rule.signed_terms``), or None when a
    denominator is too close to zero for the shared form to be accurate (the caller then
    evaluates the rule's own terms one by one).

    Every term's contributions are ``a x w + b |x||w|``. So its modified forward pass is
    ``a z0 + b zq + bias_t`` with ``z0 = lin(x; W)`` (the recorded forward pass minus its bias)
    and one pass ``zq = lin(|x|; |W|)`` shared by all terms, and the relevance of all terms
    together is ``x * W^T u + |x| * |W|^T v`` with ``u = sum_t c_t a_t s_t`` and
    ``v = sum_t c_t b_t s_t``: one modified forward and at most two backward passes, for any
    number of terms. On inputs ``x >= 0`` the second basis is ``zq = lin(x; W^+)`` instead
    (``|x||w| = 2 x w^+ - x w``), so that z+ needs one backward pass and no ``W^T`` at all.

    A denominator obtained by cancellation (both coefficients non-zero, e.g. the ``x w^-`` of
    alpha-beta as ``z0 - lin(x; W^+)``) loses the digits of the parts it cancels. Where it is
    smaller than ``sqrt(machine eps)`` times those parts for any selected neuron, this returns
    None, so the result always agrees with the rule's terms to floating-point tolerance.

    Without ``cached`` but with the layer's ``recorded`` output and an adjoint
    (:attr:`AffineLayer.adjoint`), ``z`` is the recorded output and ``W^T u`` the adjoint: no
    forward pass of the plain layer is run again (a layer with a BatchNorm folded into it).
    """
    W = layer.weight.detach()
    bias = None if layer.bias is None else layer.bias.detach()
    xd = x.detach()
    nonneg = bool(xd.min() >= 0) if xd.numel() else True
    # each term's coefficients (p, q) on the basis actually used, (z0, zq)
    coefs = [(t.a - t.b, 2.0 * t.b) if nonneg else (t.a, t.b) for t in sterms]
    masked = any(t.outputs != "all" for t in sterms)
    need0 = masked or any(p != 0 for p, _ in coefs)
    needq = any(q != 0 for _, q in coefs)

    z = graph0 = leaf0 = None
    if need0:
        if cached is not None:
            leaf0, graph0 = cached  # the recorded forward pass: z = lin(x; W) + bias
            z = graph0.detach()
        elif recorded is not None and layer.adjoint is not None:
            z = recorded.detach()  # the recorded output, bias included; W^T u by the adjoint below
        else:
            leaf0 = _leaf(xd)
            with torch.enable_grad():
                graph0 = layer.apply(leaf0, W)
            z = graph0.detach() if bias is None else graph0.detach() + bias
    zq = graphq = leafq = xq = Wq = None
    if needq:
        xq = xd if nonneg else xd.abs()
        Wq = W.clamp(min=0) if nonneg else W.abs()
        if layer.adjoint is not None:  # the second basis's backward by the adjoint: no graph
            with torch.no_grad():
                zq = layer.apply(xq, Wq)
        else:
            leafq = _leaf(xq)
            with torch.enable_grad():
                graphq = layer.apply(leafq, Wq)
            zq = graphq.detach()
    bias_abs = None if bias is None else bias.abs()
    tol = float(torch.finfo(R.dtype).eps) ** 0.5

    absorbed = torch.zeros(_batch_size(R, axis), dtype=R.dtype, device=R.device)
    done = []  # per term: (s_t, c_t p, c_t q, c_t * stabilizer share or None)
    for t, (p, q) in zip(sterms, coefs):
        b_t = None
        if t.bias and bias is not None:
            b_t = bias if (t.a == 1 and t.b == 0) else t.a * bias + t.b * bias_abs
        # den = p z0 + q zq + b_t, written as p z + q zq + corr with the plain output z and a
        # bias-sized corr = b_t - p bias, so that z0 = z - bias is never formed
        corr = None
        if bias is not None and p != 0:
            corr = -p * bias if b_t is None else (None if (b_t is bias and p == 1) else b_t - p * bias)
        elif b_t is not None:
            corr = b_t
        keep = None  # the neurons this term redistributes
        if t.outputs != "all":
            keep = z >= 0 if t.outputs == "positive" else z < 0
        # The sign of den where the term acts, when it follows from the rule: contributions
        # a t + b |t| are all >= 0 if b >= |a| (z+), all <= 0 if b <= -|a| (z-), and a
        # sign-selected term (gamma) has the sign of its outputs. Then the stabilizer is a
        # constant and goes in with the bias.
        sign = None
        if t.b >= abs(t.a) or t.outputs == "positive":
            sign = 1.0
        elif t.b <= -abs(t.a) or t.outputs == "negative":
            sign = -1.0
        stab = t.eps * sign if (sign is not None and t.eps > 0) else 0.0
        shift = corr if stab == 0 else (stab if corr is None else corr + stab)
        if p != 0 and q != 0:
            # one fresh buffer of the output's size (no separate p * z temporary)
            if p == 1:
                den = torch.add(z, zq, alpha=q)
            else:
                den = torch.add(zq, z, alpha=p) if q == 1 else (zq * q).add_(z, alpha=p)
        elif p != 0:
            den = z.clone() if p == 1 else z * p
        elif q != 0:
            den = zq * q if shift is None else torch.add(zq if q == 1 else zq * q, shift)
            shift = None
        else:  # a == b == 0: the term passes nothing on
            den = torch.zeros_like(R)
        if shift is not None:
            den.add_(shift)
        if _may_cancel(p, q, corr, sign if keep is not None else None):
            # the parts added up have opposite signs: |den| must stand clear of their rounding
            small = tol * (0.0 if corr is None else corr.abs()) + (0.0 if p == 0 or bias is None
                                                                   else tol * abs(p) * bias_abs)
            if sign is not None:  # sign * (den - stab) < tol * (|q| zq + small)
                lhs = torch.add(den, zq, alpha=-sign * tol * abs(q)) if q != 0 else den.clone()
                bad = lhs < small + t.eps if sign > 0 else lhs > -(small + t.eps)
            else:
                bad = den.abs() < torch.add(small + 0.0 * den, zq, alpha=tol * abs(q))
            if keep is not None:
                bad &= keep
            if bool(bad.any()):
                return None
        if t.eps > 0 and sign is None:
            st = torch.copysign(torch.tensor(t.eps, dtype=den.dtype, device=den.device), den)
            den.add_(st)
            s_t = torch.div(R, den, out=den)
            if keep is not None:
                s_t.masked_fill_(~keep, 0)
            absorbed = absorbed + t.coef * per_sample_dot(s_t, st, axis)
            share = None
        elif t.eps > 0:
            s_t = torch.div(R, den, out=den)
            if keep is not None:
                s_t.masked_fill_(~keep, 0)
            share = t.coef * stab
        else:
            dead = den == 0  # with eps == 0 that relevance cannot be passed on: it is absorbed
            if keep is not None:
                dead &= keep
            R_t = R if keep is None else R.masked_fill(~keep, 0)
            s_t = torch.where(dead, torch.zeros_like(R_t), R_t / torch.where(den == 0, torch.ones_like(den), den))
            if keep is not None:
                s_t.masked_fill_(~keep, 0)
            absorbed = absorbed + t.coef * per_sample_sum(torch.where(dead, R_t, torch.zeros_like(R_t)), axis)
            share = None
        if b_t is not None:
            absorbed = absorbed + t.coef * _dot_bias(s_t, b_t, axis)
        done.append((s_t, t.coef * p, t.coef * q, share))

    # u = sum c p s (sent back through W), v = sum c q s (through the second basis), each kept
    # as (tensor, factor); the s_t are ours to overwrite unless both sums need them
    in_u = [cp != 0 for _, cp, _, _ in done]
    in_v = [cq != 0 for _, _, cq, _ in done]

    def combine(which: int, others: list[bool]):
        members = [(d[0], d[which], other) for d, other in zip(done, others) if d[which] != 0]
        if not members:
            return None, 0.0
        members.sort(key=lambda m: m[2])  # a tensor the other sum does not need first
        base, f, shared = members[0]
        if len(members) == 1:
            return base, f
        acc = torch.add(base, members[1][0], alpha=members[1][1] / f) if shared else \
            base.add_(members[1][0], alpha=members[1][1] / f)
        for s_m, c_m, _ in members[2:]:
            acc.add_(s_m, alpha=c_m / f)
        return acc, f

    # stabilizer shares: one reduction of a sum when they are proportional to its coefficients
    # (sum_t share_t s_t = r sum_t c_t s_t when share_t = r c_t), else one per term, first
    with_share = [d for d in done if d[3] is not None]
    fold = None
    for which in (2, 1):
        members = [d for d in done if d[which] != 0]
        if with_share and members and all(d[3] is not None for d in members) \
                and all(d[which] != 0 for d in with_share) and len({d[3] / d[which] for d in members}) == 1:
            fold = (which, members[0][3] / members[0][which])
            break
    if fold is None:
        for d in with_share:
            absorbed = absorbed + per_sample_sum(d[0], axis) * d[3]
    v, f_v = combine(2, in_u)
    u, f_u = combine(1, [d[0] is v for d in done])
    if fold is not None:
        acc, f = (v, f_v) if fold[0] == 2 else (u, f_u)
        absorbed = absorbed + per_sample_sum(acc, axis) * (fold[1] * f)

    if u is None and v is None:
        return torch.zeros_like(xd), absorbed
    outs, leaves, grads = [], [], []
    if u is not None and graph0 is not None:
        outs.append(graph0), leaves.append(leaf0), grads.append(u)
    if v is not None and graphq is not None:
        outs.append(graphq), leaves.append(leafq), grads.append(v)
    got = torch.autograd.grad(outs, leaves, grad_outputs=grads, allow_unused=True) if outs else ()
    g0 = None if u is None else (got[0] if graph0 is not None else layer.adjoint(u, xd, W))
    gq = None if v is None else (got[-1] if graphq is not None else layer.adjoint(v, xq, Wq))
    if nonneg and g0 is not None and gq is not None:  # x (f_u W^T u + f_v W+^T v)
        h = gq if f_v == 1 else gq.mul_(f_v)
        return h.add_(g0, alpha=f_u).mul_(xd), absorbed
    R_in = None
    for g, value, f in ((g0, xd, f_u), (gq, xq, f_v)):
        if g is None:
            continue
        if R_in is None:
            R_in = g.mul_(value) if f == 1 else g.mul_(value).mul_(f)
        else:
            R_in.addcmul_(value, g, value=f)
    return R_in, absorbed


def _term_relevance(layer: AffineLayer, term: Term, R: torch.Tensor,
                    cached: tuple[torch.Tensor, torch.Tensor] | None, axis: int = 0,
                    recorded: torch.Tensor | None = None):
    """One term. ``cached = (x, z)``: the layer's recorded input and full output (bias included),
    still connected by autograd, so a plain term needs no second forward pass. ``R`` is already
    masked to the neurons the term selects (``Term.outputs``).

    Written with few full-size passes: on large activations each element-wise pass costs about
    as much as a tenth of a convolution.
    """
    bias = None if term.bias is None else term.bias.detach()
    adjoint = None  # W^T s computed directly: a plain term on the recorded output (see _signed_relevance)
    if term.plain and cached is None and recorded is not None and layer.adjoint is not None:
        values = [term.parts[0][0].detach()]
        adjoint = (layer.adjoint, term.parts[0][1].detach())
        z = None
        den, private = recorded.detach(), False
    elif term.plain and cached is not None:
        # the recorded output already is z = lin(x) + bias: the denominator, read-only
        leaves, z = [cached[0]], cached[1]
        values = [cached[0].detach()]
        den, private = z.detach(), False
    else:
        values = [inp.detach() for inp, _ in term.parts]
        leaves = [(v if v.is_contiguous() else v.contiguous()).requires_grad_(True) for v in values]
        with torch.enable_grad():
            z = None
            for leaf, (_, w) in zip(leaves, term.parts):
                zp = layer.apply(leaf, w.detach())
                z = zp if z is None else z + zp
        den, private = z.detach(), True  # a fresh tensor, free to overwrite
        if bias is not None:
            den = den.add_(bias) if den.shape == torch.broadcast_shapes(den.shape, bias.shape) else den + bias
    if term.eps > 0:
        # eps * sign(den) with sign(0) = +1: |den + stab| >= eps, never zero
        stab = torch.copysign(torch.tensor(term.eps, dtype=den.dtype, device=den.device), den)
        den = den.add_(stab) if private else torch.add(den, stab)
        s = torch.div(R, den, out=den)  # den is a fresh tensor here in both cases
        # the bias's share per channel after summing s over the dims it is constant along (no
        # full-size bias + stab): on large layers each fresh full-size buffer costs page faults
        absorbed = per_sample_dot(s, stab, axis)
        if bias is not None:
            absorbed = absorbed + _dot_bias(s, bias, axis)
    else:
        if bias is not None:
            bias = torch.broadcast_to(bias, den.shape)
        dead = den == 0  # with eps == 0 that relevance cannot be distributed: it is absorbed
        s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(den), den))
        absorbed = per_sample_sum(torch.where(dead, R, torch.zeros_like(R) if bias is None else s * bias), axis)
    if adjoint is not None:
        # W^T s is a fresh tensor (a matrix product or a convolution's input gradient): x times it in place
        R_in = adjoint[0](s, values[0], adjoint[1]).mul_(values[0])
        if term.coef != 1.0:
            R_in.mul_(term.coef)
            absorbed = absorbed * term.coef
        return R_in, absorbed
    grads = torch.autograd.grad(z, leaves, grad_outputs=s, allow_unused=True)
    R_in = None
    for value, g in zip(values, grads):
        if g is None:
            continue
        contrib = value.detach() * g
        R_in = contrib if R_in is None else R_in.add_(contrib)
    if R_in is None:
        R_in = torch.zeros_like(values[0])
    if term.coef != 1.0:
        R_in.mul_(term.coef)
        absorbed = absorbed * term.coef
    return R_in, absorbed


def _conserves(R: torch.Tensor, R_in: torch.Tensor, absorbed: torch.Tensor, axes: tuple[int, int] = (0, 0)) -> bool:
    """Whether the shared (sign-split) evaluation kept this layer's ledger: per sample,
    ``sum R_in + absorbed == sum R`` to 1e-5 of ``sum |R|``. Where rounding in a denominator made
    by cancellation escaped the guard in :func:`_signed_relevance`, the caller falls back to the
    rule's own terms, which are exact by construction."""
    entering = per_sample_sum(R, axes[1])
    scale = per_sample_sum(R.abs(), axes[1])
    gap = (entering - per_sample_sum(R_in, axes[0]) - absorbed).abs()
    return bool((gap <= 1e-5 * scale + 1e-30).all())


def lrp_affine(layer: AffineLayer, x: torch.Tensor, R: torch.Tensor, rule: Rule,
               cached: tuple[torch.Tensor, torch.Tensor] | None = None, batch_axes: tuple[int, int] = (0, 0),
               recorded: torch.Tensor | None = None):
    """Redistribute ``R`` (shaped like the layer output) onto ``x`` with ``rule``.

    ``cached = (x, z)`` is the layer's recorded input and output still joined by autograd;
    ``recorded`` is the layer's recorded output alone (``z = lin(x; W) + b`` as the model computed
    it, e.g. the output of a BatchNorm folded into the layer), used with the layer's adjoint in
    place of a second forward pass.

    ``batch_axes`` are the dims of ``x`` and of the output that index the samples (the per-sample
    ``absorbed`` is summed over all other dims), e.g. ``(1, 1)`` for a Linear on a (time, batch,
    features) tensor.

    Returns
    -------
    R_in : torch.Tensor
        Relevance shaped like ``x``.
    absorbed : torch.Tensor
        Per sample, relevance taken up by the bias and stabilizer terms of the rule; by
        construction ``R_in.sum() + absorbed.sum() == R.sum()`` up to rounding.
    """
    sterms = rule.signed_terms() if layer.weighted else None
    if sterms is not None and not (len(sterms) == 1 and sterms[0].b == 0 and sterms[0].outputs == "all"):
        # (a single x w term, i.e. epsilon, already is one backward pass of the recorded graph)
        out = _signed_relevance(layer, sterms, x, R, cached, batch_axes[1], recorded)
        if out is not None and _conserves(R, *out, batch_axes):
            return out
    R_in, absorbed = None, None
    terms = rule.terms(layer, x)
    plain_z = None
    if any(t.outputs != "all" for t in terms):
        if cached is not None:
            plain_z = cached[1].detach()
        elif recorded is not None:
            plain_z = recorded.detach()
        else:
            with torch.no_grad():
                plain_z = layer.forward(x.detach())
    # the batch dim is passed only where it is not the first (batch-first calls keep the
    # four-argument form that tests spy on)
    at = {} if batch_axes[1] == 0 else {"axis": batch_axes[1]}
    if recorded is not None:
        at["recorded"] = recorded
    for term in terms:
        R_t = R
        if term.outputs != "all":
            # a term for one sign of the plain output: the other neurons pass nothing through it
            R_t = R.masked_fill(plain_z < 0 if term.outputs == "positive" else plain_z >= 0, 0)
        if term.scale is not None:
            R_t = R_t * term.scale
        r, a = _term_relevance(layer, term, R_t, cached, **at)
        R_in = r if R_in is None else R_in.add_(r)
        absorbed = a if absorbed is None else absorbed + a
    return R_in, absorbed
