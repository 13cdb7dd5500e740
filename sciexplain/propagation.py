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


def _term_relevance(layer: AffineLayer, term: Term, R: torch.Tensor,
                    cached: tuple[torch.Tensor, torch.Tensor] | None):
    """One term. ``cached = (x, z)``: the layer's recorded input and full output (bias included),
    still connected by autograd, so a plain term needs no second forward pass."""
    bias = None if term.bias is None else term.bias.detach()
    if term.plain and cached is not None:
        leaves, z = [cached[0]], cached[1]
        values = [cached[0].detach()]
        zd = z.detach() if bias is None else z.detach() - bias
    else:
        values = [inp.detach() for inp, _ in term.parts]
        leaves = [(v if v.is_contiguous() else v.contiguous()).requires_grad_(True) for v in values]
        with torch.enable_grad():
            z = sum(layer.apply(leaf, w.detach()) for leaf, (_, w) in zip(leaves, term.parts))
        zd = z.detach()
    if bias is not None:
        bias = torch.broadcast_to(bias, zd.shape)
    den = zd if bias is None else zd + bias
    stab = term.eps * sign0(den) if term.eps > 0 else torch.zeros_like(den)
    den = den + stab
    dead = den == 0  # only possible with eps == 0: that relevance cannot be distributed
    s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(den), den))
    grads = torch.autograd.grad(z, leaves, grad_outputs=s, allow_unused=True)
    R_in = None
    for value, g in zip(values, grads):
        if g is None:
            continue
        contrib = value.detach() * g
        R_in = contrib if R_in is None else R_in + contrib
    if R_in is None:
        R_in = torch.zeros_like(values[0])
    absorbed_map = s * stab if bias is None else s * (bias + stab)
    absorbed_map = torch.where(dead, R, absorbed_map)
    return term.coef * R_in, term.coef * per_sample_sum(absorbed_map)


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
    R_in = torch.zeros_like(x)
    absorbed = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for term in rule.terms(layer, x):
        r, a = _term_relevance(layer, term, R, cached)
        R_in = R_in + r
        absorbed = absorbed + a
    return R_in, absorbed
