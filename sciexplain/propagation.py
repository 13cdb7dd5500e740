"""The one place where a rule's terms become relevance: LRP through an affine layer.

An :class:`AffineLayer` is anything of the form ``z = lin(x; W) + b`` with ``lin`` linear in
``x`` for fixed ``W``: Linear and convolution layers (with BatchNorm folded in), functional
``F.linear``/``F.conv*d`` with constant weights, standalone BatchNorm (an element-wise scale),
multiplication by a constant, and weight-free linear maps (average pooling, mean, sum) whose
implicit weights are positive and are represented by the scalar 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .rules import Rule, Term

__all__ = ["AffineLayer", "lrp_affine", "sign0", "per_sample_sum"]


@dataclass
class AffineLayer:
    """``z = apply(x, weight) + bias`` where ``apply`` is linear in ``x``.

    Parameters
    ----------
    name : str
        Module path or operation name, for messages and the ledger.
    kind : str
        Readable type (``"Conv2d"``, ``"Linear+BatchNorm2d"``, ``"mean"``...).
    weight : torch.Tensor
        The weight a rule may modify; the scalar ``1`` for weight-free linear maps.
    bias : torch.Tensor or None
        Broadcastable to the output.
    apply : callable
        ``apply(x, weight) -> z`` without bias; must be linear in ``x``.
    """

    name: str
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weighted: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.apply(x, self.weight)
        return z if self.bias is None else z + self.bias


def sign0(t: torch.Tensor) -> torch.Tensor:
    """Sign with ``sign(0) = +1``, so that a stabilized denominator is never zero."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


def per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dim but the first (the batch)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``per_sample_sum(a * b)`` in one pass, without the full-size product."""
    b = torch.broadcast_to(b, a.shape)
    return torch.linalg.vecdot(a.reshape(a.shape[0], -1), b.reshape(a.shape[0], -1))


def _term_relevance(layer: AffineLayer, term: Term, R: torch.Tensor,
                    cached: tuple[torch.Tensor, torch.Tensor] | None,
                    plain_z: torch.Tensor | None = None):
    """One term. ``cached = (x, z)``: the layer's recorded input and full output (bias included),
    still connected by autograd, so a plain term needs no second forward pass. ``plain_z``: the
    layer's plain output (detached), needed by terms that select outputs by its sign.

    Written with few full-size passes: on large activations each element-wise pass costs about
    as much as a tenth of a convolution.
    """
    if term.outputs != "all":
        # a term for one sign of the plain output: the other neurons pass nothing through it
        other = plain_z < 0 if term.outputs == "positive" else plain_z >= 0
        R = R.masked_fill(other, 0)
    bias = None if term.bias is None else term.bias.detach()
    if term.plain and cached is not None:
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
    if bias is not None:
        bias = torch.broadcast_to(bias, den.shape)
    if term.eps > 0:
        # eps * sign(den) with sign(0) = +1: |den + stab| >= eps, never zero
        stab = torch.copysign(torch.tensor(term.eps, dtype=den.dtype), den)
        den = den.add_(stab) if private else den + stab
        s = torch.div(R, den, out=den)  # den is a fresh tensor here in both cases
        absorbed = per_sample_dot(s, stab if bias is None else bias + stab)
    else:
        dead = den == 0  # with eps == 0 that relevance cannot be distributed: it is absorbed
        s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(den), den))
        absorbed = per_sample_sum(torch.where(dead, R, torch.zeros_like(R) if bias is None else s * bias))
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


def lrp_affine(layer: AffineLayer, x: torch.Tensor, R: torch.Tensor, rule: Rule,
               cached: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Redistribute ``R`` (shaped like the layer output) onto ``x`` with ``rule``.

    Returns
    -------
    R_in : torch.Tensor
        Relevance shaped like ``x``.
    absorbed : torch.Tensor
        Per sample, relevance taken up by the bias and stabilizer terms of the rule; by
        construction ``R_in.sum() + absorbed.sum() == R.sum()`` up to rounding.
    """
    R_in, absorbed = None, None
    terms = rule.terms(layer, x)
    plain_z = None
    if any(t.outputs != "all" for t in terms):
        if cached is not None:
            plain_z = cached[1].detach()
        else:
            with torch.no_grad():
                plain_z = layer.forward(x.detach())
    for term in terms:
        r, a = _term_relevance(layer, term, R, cached, plain_z)
        R_in = r if R_in is None else R_in.add_(r)
        absorbed = a if absorbed is None else absorbed + a
    return R_in, absorbed
