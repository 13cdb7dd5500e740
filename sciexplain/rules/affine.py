"""The rules of affine layers: Epsilon, Gamma, AlphaBeta, ZPlus, ZBox, WSquare, Flat and Pass, each
written as the terms of :mod:`sciexplain.rules.terms`.

Conventions
-----------
**alpha and beta.** :class:`AlphaBeta` follows Bach et al. (2015) and Montavon et al. (2017):
``R_i = sum_j (alpha * z_ij^+ / z_j^+  -  beta * z_ij^- / z_j^-) R_j`` with ``alpha - beta = 1``
and ``beta >= 0`` (``AlphaBeta(2, 1)``, ``AlphaBeta(1, 0)``). Some texts and codes write the
rule with ``+ beta`` and ``beta = 1 - alpha`` (so ``beta <= 0``, e.g. "alpha=2, beta=-1"). To
translate, negate beta: their ``(alpha, beta)`` is ours ``(alpha, -beta)``. The constructor
recognises the other convention and says so instead of silently flipping the sign.

**Inputs of either sign.** The deep Taylor rules (z+, gamma, alpha-beta) are stated for
non-negative inputs (ReLU activations). For inputs of either sign the positive contribution of
``x_i`` to ``z_j`` is ``(x_i w_ij)^+ = x_i^+ w_ij^+ + x_i^- w_ij^-``; the rules use that form,
which reduces to the published formula when ``x >= 0``.

**Biases.** Epsilon and Gamma include the bias in the denominator (it absorbs its share of the
relevance, which the ledger counts). z+, alpha-beta, zB, w^2 and flat leave the bias out, as in
the deep Taylor derivations; ``AlphaBeta(..., include_bias=True)`` adds ``b^+`` and ``b^-`` to
the positive and negative denominators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RuleError
from .terms import Rule, SignedTerm, Term, _neg, _pos, _signed_parts

__all__ = [
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "WSquare",
    "Flat",
    "Pass",
    "DEFAULT_STABILIZER",
]

#: Stabilizer of the rules that have no epsilon of their own. Its share is counted as absorbed.
DEFAULT_STABILIZER = 1e-9


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: ``R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j``, ``z_j = sum_i x_i w_ij + b_j``.

    ``Epsilon(0)`` is LRP-0, which equals gradient x input on ReLU networks. The stabilizer
    absorbs weak or contradictory relevance; the bias absorbs its own share.
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if not (self.epsilon >= 0) or self.epsilon == float("inf"):
            raise RuleError(f"Epsilon(epsilon={self.epsilon!r}): epsilon must be a finite number >= 0")

    def terms(self, layer, x):
        return [Term(1.0, [(x, layer.weight)], layer.bias, self.epsilon, plain=True)]

    def signed_terms(self):
        return (SignedTerm(1.0, 1.0, 0.0, True, self.epsilon),)


@dataclass(frozen=True)
class Gamma(Rule):
    """Generalised, sign-aware LRP-gamma (Montavon et al. 2019; zennit's ``Gamma``).

    Each output neuron favours the contributions that share its sign. With the plain output
    ``z_j = sum_i x_i w_ij + b_j`` and ``(t)^+ = max(t, 0)``, ``(t)^- = min(t, 0)``::

        z_j >= 0:  R_i = sum_j (x_i w_ij + gamma (x_i w_ij)^+) / d_j^+ R_j,
                   d_j^+ = z_j + gamma (sum_i' (x_i' w_i'j)^+ + b_j^+)
        z_j <  0:  R_i = sum_j (x_i w_ij + gamma (x_i w_ij)^-) / d_j^- R_j,
                   d_j^- = z_j + gamma (sum_i' (x_i' w_i'j)^- + b_j^-)

    each denominator stabilised by ``+ stabilizer * sign(d)``. For inputs of either sign
    ``(x_i w_ij)^+ = x_i^+ w_ij^+ + x_i^- w_ij^-`` and ``(x_i w_ij)^- = x_i^+ w_ij^- + x_i^- w_ij^+``,
    i.e. the positive outputs see the weights ``w + gamma w^+`` on ``x^+`` and ``w + gamma w^-``
    on ``x^-`` (and the bias ``b + gamma b^+``), the negative outputs the other way round (bias
    ``b + gamma b^-``). For ``x >= 0`` and positive outputs this is the published rule,
    ``x_i (w_ij + gamma w_ij^+) / sum_i' x_i' (w_i'j + gamma w_i'j^+)``.

    Because ``d_j`` has the sign of ``z_j`` and ``|d_j| >= |z_j|``, a neuron never passes on more
    relevance per unit of contribution than LRP-0 would; a rule that favoured positive
    contributions on a negative output (the non-generalised form) has a denominator that can
    cross zero there and blow relevance up. The biases' shares are counted as absorbed.
    ``Gamma(0)`` is LRP-epsilon with ``epsilon = stabilizer``; large gamma tends to z+ on the
    positive outputs (and its mirror image on the negative ones).
    """

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        if not (self.gamma >= 0) or self.gamma == float("inf"):
            raise RuleError(f"Gamma(gamma={self.gamma!r}): gamma must be a finite number >= 0")

    def terms(self, layer, x):
        w, b, g = layer.weight, layer.bias, self.gamma
        w_up, w_down = w + g * _pos(w), w + g * _neg(w)
        pos = _signed_parts(x, w_up, w_down)
        neg = _signed_parts(x, w_down, w_up)
        b_pos = None if b is None else b + g * _pos(b)
        b_neg = None if b is None else b + g * _neg(b)
        return [Term(1.0, pos, b_pos, self.stabilizer, outputs="positive"),
                Term(1.0, neg, b_neg, self.stabilizer, outputs="negative")]

    def signed_terms(self):
        # x w + gamma (x w)^{+/-} = (1 + gamma/2) x w +/- (gamma/2) |x w|, the bias likewise
        a, b = 1.0 + self.gamma / 2, self.gamma / 2
        return (SignedTerm(1.0, a, b, True, self.stabilizer, "positive"),
                SignedTerm(1.0, a, -b, True, self.stabilizer, "negative"))


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta with ``alpha - beta = 1`` (Bach et al. 2015; Montavon et al. 2017).

    ``R_i = sum_j (alpha z_ij^+ / sum_i' z_i'j^+  -  beta z_ij^- / sum_i' z_i'j^-) R_j``.
    See the module docstring for the other sign convention of beta and how to translate it.
    """

    alpha: float = 2.0
    beta: float = 1.0
    include_bias: bool = False
    stabilizer: float = DEFAULT_STABILIZER

    def __post_init__(self) -> None:
        a, b = float(self.alpha), float(self.beta)
        if abs(a - b - 1.0) > 1e-9:
            hint = ""
            if abs(a + b - 1.0) < 1e-9 and b < 0:
                hint = (f" This looks like the other convention (beta = 1 - alpha, negative beta): "
                        f"here that rule is AlphaBeta(alpha={a:g}, beta={-b:g}).")
            raise RuleError(f"AlphaBeta(alpha={a:g}, beta={b:g}): sciexplain uses alpha - beta = 1 "
                            f"with beta >= 0, so relevance is conserved.{hint}")
        if b < 0:
            raise RuleError(f"AlphaBeta(alpha={a:g}, beta={b:g}): beta must be >= 0")

    def terms(self, layer, x):
        w, bias = layer.weight, layer.bias
        pos = _signed_parts(x, _pos(w), _neg(w))
        out = [Term(float(self.alpha), pos,
                    _pos(bias) if (self.include_bias and bias is not None) else None, self.stabilizer)]
        if self.beta != 0:
            neg = _signed_parts(x, _neg(w), _pos(w))
            out.append(Term(-float(self.beta), neg,
                            _neg(bias) if (self.include_bias and bias is not None) else None,
                            self.stabilizer))
        return out

    def signed_terms(self):
        out = (SignedTerm(float(self.alpha), 0.5, 0.5, self.include_bias, self.stabilizer),)
        if self.beta != 0:
            out += (SignedTerm(-float(self.beta), 0.5, -0.5, self.include_bias, self.stabilizer),)
        return out


@dataclass(frozen=True)
class ZPlus(Rule):
    """The z+ rule of deep Taylor decomposition: ``R_i = sum_j x_i w_ij^+ / sum_i' x_i' w_i'j^+ R_j``.

    Equal to ``AlphaBeta(1, 0)``. On non-negative inputs it gives non-negative relevance.
    """

    stabilizer: float = DEFAULT_STABILIZER

    def terms(self, layer, x):
        w = layer.weight
        return [Term(1.0, _signed_parts(x, _pos(w), _neg(w)), None, self.stabilizer)]

    def signed_terms(self):
        return (SignedTerm(1.0, 0.5, 0.5, False, self.stabilizer),)


def _cpu(v: Any) -> torch.Tensor:
    """A bound as a tensor on the CPU (for checks, comparisons and display, whatever the default device)."""
    return torch.as_tensor(v, device="cpu") if not isinstance(v, torch.Tensor) else v.cpu()


@dataclass(frozen=True, eq=False)
class ZBox(Rule):
    """The zB rule for inputs bounded in a box ``low <= x <= high`` (pixels, first layer).

    ``R_i = sum_j (x_i w_ij - l_i w_ij^+ - h_i w_ij^-) / sum_i' (...) R_j``. ``low`` and ``high``
    are numbers or tensors broadcastable to the layer's input (e.g. per colour channel).
    """

    low: Any = 0.0
    high: Any = 1.0
    stabilizer: float = DEFAULT_STABILIZER

    def __post_init__(self) -> None:
        lo = torch.as_tensor(self.low, dtype=torch.float64, device="cpu")  # a check of the numbers only
        hi = torch.as_tensor(self.high, dtype=torch.float64, device="cpu")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise RuleError("ZBox: low and high must be finite")
        try:
            ok = bool((lo <= hi).all())
        except RuntimeError as err:
            raise RuleError(f"ZBox: low and high do not broadcast together: {err}") from None
        if not ok:
            raise RuleError("ZBox: low must be <= high everywhere")

    def _bound(self, value, x: torch.Tensor, which: str) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        try:
            return torch.broadcast_to(t, x.shape)
        except RuntimeError:
            raise RuleError(
                f"ZBox: {which} of shape {tuple(t.shape)} does not broadcast to the layer input of "
                f"shape {tuple(x.shape)}; give a number or a tensor of a broadcastable shape "
                f"(e.g. (1, C, 1, 1) per channel)") from None

    def terms(self, layer, x):
        w = layer.weight
        lo, hi = self._bound(self.low, x, "low"), self._bound(self.high, x, "high")
        # x w - l w+ - h w-, written as (x - l) w+ + (h - x) |w-|: inside the box every part and
        # product is >= 0, so a denominator is 0 only where every contribution is exactly 0 and
        # no relevance divided by the stabilizer comes back through a cancelling sum
        parts = [(x - lo, _pos(w)), (hi - x, -_neg(w))]
        return [Term(1.0, parts, None, self.stabilizer)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZBox):
            return NotImplemented
        return (torch.equal(_cpu(self.low), _cpu(other.low))
                and torch.equal(_cpu(self.high), _cpu(other.high))
                and self.stabilizer == other.stabilizer)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        def show(v):
            t = _cpu(v)
            return f"{float(t):g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"
        return f"ZBox(low={show(self.low)}, high={show(self.high)})"


@dataclass(frozen=True)
class WSquare(Rule):
    """The w^2 rule for unbounded inputs: ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (input-independent)."""

    stabilizer: float = DEFAULT_STABILIZER
    needs_weights = True

    def terms(self, layer, x):
        return [Term(1.0, [(torch.ones_like(x), layer.weight ** 2)], None, self.stabilizer)]


@dataclass(frozen=True)
class Flat(Rule):
    """The flat rule: every input in a neuron's receptive field gets an equal share."""

    stabilizer: float = DEFAULT_STABILIZER

    def terms(self, layer, x):
        return [Term(1.0, [(torch.ones_like(x), torch.ones_like(layer.weight))], None, self.stabilizer)]


@dataclass(frozen=True)
class Pass(Rule):
    """Pass relevance through unchanged (``R_in = R_out``); only for shape-preserving layers.

    Use it to declare explicitly how a layer without a rule of its own (e.g. a normalisation)
    should be treated: ``preset={"encoder.norm": Pass(), ...}``.
    """

    def terms(self, layer, x):  # pragma: no cover - handled by the engine
        raise RuleError("Pass() is applied by the engine directly")


#: rules that may be given as the single rule of a preset for every weighted layer
RULE_TYPES = (Epsilon, Gamma, AlphaBeta, ZPlus, ZBox, WSquare, Flat, Pass)
