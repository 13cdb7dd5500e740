"""Rule options that keep relevance on the inputs: a fallback where a denominator vanishes, and biases whose share goes to the inputs.

Both are wrappers around an ordinary rule, written in the term formalism of
:mod:`sciexplain.rules.terms` (they add terms and per-neuron factors ``Term.scale``), so they
go wherever a rule goes: a preset's type key, a module path, a pattern. Their ``repr`` names the
wrapped rule, so the result's ``rules`` attribute says which layer ran which option.

**Where relevance is lost.** A rule passes ``R_j`` on as ``s_j = R_j / (d_j + eps sign(d_j))``
times each input's contribution to its denominator ``d_j``. Two things keep a part of ``R_j``
from the inputs, and the ledger counts both as absorbed:

* a **bias** in ``d_j`` takes the share ``b_j s_j`` (Epsilon, Gamma, ScaledEpsilon, whose
  stabiliser rides in the bias). After BatchNorm folding every convolution has a bias, often the
  largest part of ``z_j`` (a unit switched on by its BatchNorm shift);
* a **vanishing denominator**: the sign-split rules (z+, alpha-beta) divide by the positive (or
  negative) contributions only; where a neuron has none (a 3x3 depthwise kernel whose positive
  weights see only zeros, a unit active through its bias alone), ``d_j = 0`` and all of ``R_j``
  is absorbed by the stabiliser.

:class:`Fallback` handles the second per output neuron, :class:`BiasToInputs` the first per
layer. Both conserve: ``sum_i R_i + absorbed = sum_j R_j`` with an absorbed part that is only
the stabilisers' (and, for Fallback, the primary rule's own bias share).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import RuleError
from .affine import DEFAULT_STABILIZER, Pass, WSquare
from .terms import AffineLayer, Rule, Term, _signed_parts

__all__ = ["Fallback", "BiasToInputs", "term_denominators", "CARRIERS"]

#: how :class:`BiasToInputs` divides a bias share among the inputs
CARRIERS = ("magnitude", "sign")


def _check(rule: object, where: str) -> None:
    if not isinstance(rule, Rule) or isinstance(rule, Pass) or type(rule).__name__ == "ByConvKind":
        raise RuleError(f"{where}: give a rule with terms such as sciexplain.rules.ZPlus() "
                        f"(not Pass() and not ByConvKind: wrap the rules inside ByConvKind instead), got {rule!r}")


def _selection(term: Term, plain_z: torch.Tensor | None) -> torch.Tensor | float:
    """The factor by which ``term`` multiplies each ``R_j``: its ``outputs`` mask times its ``scale``."""
    sel: torch.Tensor | float = 1.0
    if term.outputs != "all":
        sel = (plain_z >= 0 if term.outputs == "positive" else plain_z < 0).to(plain_z.dtype)
    if term.scale is not None:
        sel = term.scale * sel
    return sel


def term_denominators(layer: AffineLayer, term: Term, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d, q)`` of one term on input ``x``, without gradients.

    ``d_j = sum_parts sum_i input_i weight_ij + bias_j`` (the term's modified forward pass, before
    its stabiliser) and ``q_j = sum_parts sum_i |input_i| |weight_ij| + |bias_j|``, the size of the
    parts it adds up, against which ``d_j`` is called small.
    """
    with torch.no_grad():
        d = q = None
        for inp, w in term.parts:
            inp, w = inp.detach(), w.detach()
            zp, qp = layer.apply(inp, w), layer.apply(inp.abs(), w.abs())
            d = zp if d is None else d + zp
            q = qp if q is None else q + qp
        if term.bias is not None:
            d, q = d + term.bias.detach(), q + term.bias.detach().abs()
    return d, q


def _plain_output(layer: AffineLayer, x: torch.Tensor, terms: list[Term]) -> torch.Tensor | None:
    if all(t.outputs == "all" for t in terms):
        return None
    with torch.no_grad():
        return layer.forward(x.detach())


def _with_scale(term: Term, factor: torch.Tensor) -> Term:
    scale = factor if term.scale is None else term.scale * factor
    return dataclasses.replace(term, scale=scale)


@dataclass(frozen=True)
class Fallback(Rule):
    """``rule`` on every output neuron, except where its denominator vanishes: there ``to`` (w^2 or flat).

    For each sample and output neuron ``j``, ``j`` is *vanishing* when for some term ``t`` of
    ``rule`` that acts on ``j`` (``coef != 0``, its ``outputs`` selection includes ``j``)::

        |d_j^(t)| <= rtol * q_j^(t) + atol

    with ``d`` and ``q`` of :func:`term_denominators` (for z+ on ReLU inputs:
    ``d_j = sum_i x_i w_ij^+``, ``q_j = d_j``, so the test is ``d_j <= atol``). Then::

        R_i = sum_{j not vanishing} [rule's R_ij]  +  sum_{j vanishing} [to's R_ij]

    e.g. with ``to=WSquare()``: ``w_ij^2 / sum_i' w_i'j^2 R_j`` over the neuron's receptive field;
    with ``to=Flat()``: ``R_j / (number of inputs in the field)``. The relevance that ``rule``
    would have dropped (absorbed by its stabiliser for lack of contributions of its sign) reaches
    the inputs instead; every other neuron is explained by ``rule`` exactly as before, so
    ``Fallback(rule)`` equals ``rule`` on a layer where nothing vanishes.

    Parameters
    ----------
    rule : Rule
        The primary rule (e.g. ``ZPlus()``, ``AlphaBeta(2, 1)``, ``Gamma(0.25)``).
    to : Rule
        The rule for vanishing neurons; its denominator must not vanish itself: ``WSquare()``
        (default, zero only for an all-zero kernel) or ``Flat()``.
    rtol, atol : float
        The test above. ``atol`` is in the units of the layer's output.
    """

    rule: Rule
    to: Rule = WSquare()
    rtol: float = 1e-5
    atol: float = 1e-6

    def __post_init__(self) -> None:
        _check(self.rule, "Fallback(rule=...)")
        _check(self.to, "Fallback(to=...)")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if not (v >= 0) or v == float("inf"):
                raise RuleError(f"Fallback({name}={v!r}): must be a finite number >= 0")

    @property
    def needs_weights(self) -> bool:  # type: ignore[override]
        return self.rule.needs_weights or self.to.needs_weights

    def vanishing(self, layer: AffineLayer, x: torch.Tensor, terms: list[Term] | None = None) -> torch.Tensor:
        """Boolean, shaped like the layer output: the neurons where ``rule``'s denominator vanishes."""
        terms = self.rule.terms(layer, x) if terms is None else terms
        plain_z = _plain_output(layer, x, terms)
        out = None
        for t in terms:
            if t.coef == 0:
                continue
            d, q = term_denominators(layer, t, x)
            small = d.abs() <= self.rtol * q + self.atol
            sel = _selection(t, plain_z)
            if not isinstance(sel, float):
                small = small & (sel != 0)
            out = small if out is None else out | small
        if out is None:
            with torch.no_grad():
                return torch.zeros_like(layer.forward(x.detach()), dtype=torch.bool)
        return out

    def terms(self, layer, x):
        primary = self.rule.terms(layer, x)
        vanish = self.vanishing(layer, x, primary)
        if not bool(vanish.any()):
            return primary
        v = vanish.to(x.dtype)
        keep = 1.0 - v
        return [_with_scale(t, keep) for t in primary] + [_with_scale(t, v) for t in self.to.terms(layer, x)]


@dataclass(frozen=True)
class BiasToInputs(Rule):
    """``rule`` with the biases' share passed on to the inputs (bias-free propagation), in proportion to their contributions.

    ``rule`` leaves the share ``a_j = sum_t c_t m_j^(t) b_j^(t) R_j / (d_j^(t) + eps sign(d_j^(t)))``
    of each neuron's relevance with the bias ``b^(t)`` of its terms (``m^(t)``: the term's output
    selection). Here that share goes to the inputs instead. With ``carrier="magnitude"``::

        R_i = [rule's R_i]  +  sum_j |x_i| |w_ij| / (sum_i' |x_i'| |w_i'j| + stabilizer) a_j

    with ``carrier="sign"``, to the contributions that share the sign of the neuron's output
    ``z_j`` (the z+ rule for the bias share; ``(t)^+ = max(t, 0)``, ``(t)^- = min(t, 0)``)::

        R_i = [rule's R_i]  +  sum_{j: z_j >= 0} (x_i w_ij)^+ / (sum_i' (x_i' w_i'j)^+ + stabilizer) a_j
                            +  sum_{j: z_j < 0}  (x_i w_ij)^- / (sum_i' (x_i' w_i'j)^- - stabilizer) a_j

    so the layer absorbs only the stabilisers. (In the terms, a last bookkeeping term with zero
    input absorbs ``-a_j``, cancelling what the rule's own terms count as absorbed by the bias.) The proportion ``|x_i w_ij|`` (the size of each
    input's contribution, not its signed value) never has a vanishing or sign-changing denominator
    while any input contributes, which the bias-free denominator ``sum_i x_i w_ij`` of "the same
    rule without its bias" (:class:`~sciexplain.rules.presets.NoBias`) does: with folded
    BatchNorm the bias often cancels most of ``sum_i x_i w_ij``, and dividing by what is left
    blows relevance up. Where no input contributes (``sum_i |x_i w_ij| = 0``) the bias share is
    absorbed; ``Fallback(BiasToInputs(rule))`` spreads it with w^2 instead.

    This is the BatchNorm-aware option: after BatchNorm folding (Guillemot et al. 2020 fuse
    BatchNorm into the adjacent layer the same way) the folded shift ``beta - gamma mu / sigma``
    is the bias, and Hui & Binder (2019) show that letting it absorb its share, or passing relevance
    through BatchNorm with the epsilon rule, loses or distorts most of the relevance in MobileNets;
    weighing the linear part by magnitude keeps it on the inputs. With ``folded_only=True`` the
    option acts only on layers a BatchNorm was folded into (``"BatchNorm"`` in the layer's kind)
    and leaves an ordinary bias to absorb its share.

    Parameters
    ----------
    rule : Rule
        The rule whose bias share is redistributed (Epsilon, Gamma, ScaledEpsilon, AlphaBeta with
        ``include_bias=True``...). A rule without bias terms (z+, w^2) is unchanged.
    carrier : {"magnitude", "sign"}
        How the bias share is divided among the inputs (see above).
    stabilizer : float
        Added to ``sum_i |x_i w_ij|``; its share is absorbed (and counted).
    folded_only : bool
        Act only on layers with a folded BatchNorm.
    """

    rule: Rule
    carrier: str = "magnitude"
    stabilizer: float = DEFAULT_STABILIZER
    folded_only: bool = False

    def __post_init__(self) -> None:
        _check(self.rule, "BiasToInputs(rule=...)")
        if self.carrier not in CARRIERS:
            raise RuleError(f"BiasToInputs(carrier={self.carrier!r}): choose one of {CARRIERS}")
        if not (self.stabilizer > 0) or self.stabilizer == float("inf"):
            raise RuleError(f"BiasToInputs(stabilizer={self.stabilizer!r}): must be a finite number > 0")

    @property
    def needs_weights(self) -> bool:  # type: ignore[override]
        return self.rule.needs_weights

    def bias_share(self, layer: AffineLayer, x: torch.Tensor, terms: list[Term] | None = None) -> torch.Tensor | None:
        """Per output neuron, the fraction ``a_j / R_j`` of its relevance that ``rule`` leaves with the biases."""
        terms = self.rule.terms(layer, x) if terms is None else terms
        plain_z = _plain_output(layer, x, terms)
        share = None
        for t in terms:
            if t.bias is None or t.coef == 0:
                continue
            d, _ = term_denominators(layer, t, x)
            if t.eps > 0:
                d = d + torch.where(d >= 0, t.eps, -t.eps).to(d.dtype)
            # with eps == 0 a zero denominator passes nothing (the engine absorbs R_j there)
            frac = torch.where(d == 0, torch.zeros_like(d), t.bias.detach() / torch.where(d == 0, torch.ones_like(d), d))
            part = t.coef * frac * _selection(t, plain_z)
            share = part if share is None else share + part
        return share

    def terms(self, layer, x):
        primary = self.rule.terms(layer, x)
        if layer.bias is None or (self.folded_only and "BatchNorm" not in layer.kind):
            return primary
        share = self.bias_share(layer, x, primary)
        if share is None:
            return primary
        xd, w = x.detach(), layer.weight.detach()
        if self.carrier == "magnitude":
            carriers = [Term(1.0, [(xd.abs(), w.abs())], None, self.stabilizer, scale=share)]
        else:  # (x w)^+ on the neurons with z_j >= 0, (x w)^- on the others
            wp, wn = w.clamp(min=0), w.clamp(max=0)
            carriers = [Term(1.0, _signed_parts(xd, wp, wn), None, self.stabilizer, outputs="positive", scale=share),
                        Term(1.0, _signed_parts(xd, wn, wp), None, self.stabilizer, outputs="negative", scale=share)]
        # bookkeeping: the primary terms count a_j as absorbed by their biases; this term passes
        # nothing to the inputs (zero input, unit denominator) and absorbs -a_j, so the ledger
        # counts only what the carrier's stabiliser keeps
        refund = Term(-1.0, [(torch.zeros_like(xd), layer.weight.detach())], torch.ones((), dtype=xd.dtype),
                      0.0, scale=share)
        return primary + carriers + [refund]
