"""The term formalism of LRP rules: an affine layer, a rule's terms on it, and the rule base class.

A rule says how the relevance ``R_j`` at the output of a linear layer ``z_j = sum_i x_i w_ij + b_j``
is redistributed onto its inputs. Every rule here is written in one common form: a list of
*terms*, each with a coefficient ``c``, a few *parts* ``(input_i, weight_ij)`` and an optional
bias::

    z_j^(t)   = sum_parts sum_i input_i * weight_ij  +  bias_j          (a modified forward pass)
    s_j^(t)   = m_j^(t) R_j / (z_j^(t) + eps * sign(z_j^(t)))           (sign(0) = +1)
    R_i       = sum_t c_t * sum_parts input_i * sum_j weight_ij * s_j^(t)

so that ``sum_i R_i + absorbed = sum_j R_j`` with the absorbed part computed from the terms'
own bias and stabilizer: ``absorbed = sum_t c_t * sum_j s_j^(t) * (bias_j + eps * sign(z_j))``.
The mask ``m^(t)`` is 1 everywhere, or selects the output neurons by the sign of the layer's
plain output (``Term.outputs``): the sign-aware :class:`Gamma` has one term for the positive and
one for the negative outputs.
The engine evaluates ``weight^T s`` with one backward pass of the layer itself, so the same rule
runs on Linear, Conv1d/2d/3d (any stride, padding, dilation, groups) and on weight-free linear
operations (average pooling, mean, scaling), whose implicit weights are positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import RuleError

__all__ = ["AffineLayer", "Term", "SignedTerm", "Rule"]


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
    weighted : bool
        Whether the layer has weights (False for weight-free maps such as pooling).
    adjoint : callable, optional
        ``adjoint(u, x, weight) -> W^T u``, shaped like ``x`` (``x`` gives the shape only): the
        transpose of ``apply``, computed directly (one transposed convolution or matrix product),
        so that a rule can use the recorded output of the layer instead of running its forward
        pass again to differentiate it. None where only ``apply`` is known.
    """

    name: str
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weighted: bool = True
    adjoint: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.apply(x, self.weight)
        return z if self.bias is None else z + self.bias


#: values of :attr:`Term.outputs`
OUTPUT_SELECTIONS = ("all", "positive", "negative")


@dataclass
class Term:
    """One term of a rule: ``coef * sum_parts input * weight^T (mask * R / stabilized(z))``.

    ``outputs`` selects the output neurons the term redistributes: ``"all"``, or only those whose
    plain output ``z_j = sum_i x_i w_ij + b_j`` (the layer's own, unmodified forward pass, bias
    included) is ``"positive"`` (``z_j >= 0``, zero counted as positive like ``sign0``) or
    ``"negative"`` (``z_j < 0``). A pair of terms with ``"positive"`` and ``"negative"`` covers
    every neuron exactly once, so relevance stays conserved. The mask acts on ``R`` before the
    division, so the absorbed part ``sum_j s_j (bias_j + eps sign(z_j^(t)))`` of a masked term
    counts only the neurons it selects.
    """

    coef: float
    parts: list[tuple[torch.Tensor, torch.Tensor]]
    bias: torch.Tensor | None
    eps: float
    #: True when the single part is the layer's own input and weight: the forward pass may be reused.
    plain: bool = False
    #: which output neurons the term applies to, by the sign of the plain output (see above)
    outputs: str = "all"
    #: None, or a factor per output neuron (broadcastable to the layer output) by which ``R_j`` is
    #: multiplied before the division, on top of ``outputs``: 0/1 selects neurons per sample (see
    #: :class:`sciexplain.rules.conservation.Fallback`), other values pass on a part of ``R_j``
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.outputs not in OUTPUT_SELECTIONS:
            raise RuleError(f"Term(outputs={self.outputs!r}): choose one of {OUTPUT_SELECTIONS}")


@dataclass(frozen=True)
class SignedTerm:
    """A term of the sign-split family, written in the basis ``(x_i w_ij, |x_i| |w_ij|)``.

    Its contributions are ``z_ij = a x_i w_ij + b |x_i| |w_ij|`` (so ``(x_i w_ij)^+`` is
    ``a = b = 1/2`` and ``(x_i w_ij)^-`` is ``a = -b = 1/2``), with the bias ``a b_j + b |b_j|``
    in the denominator when ``bias`` is True, the stabilizer ``eps`` and the output selection
    ``outputs`` of :class:`Term`. It means exactly what the rule's :meth:`Rule.terms` say; it
    lets the evaluator share one modified forward pass and at most two backward passes between
    all the terms of a rule (see :func:`sciexplain.rules.propagation.lrp_affine`).
    """

    coef: float
    a: float
    b: float
    bias: bool
    eps: float
    outputs: str = "all"


def _pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def _neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


def _signed_parts(x: torch.Tensor, w_for_pos_x: torch.Tensor, w_for_neg_x: torch.Tensor):
    """Parts ``(x^+, w_for_pos_x), (x^-, w_for_neg_x)``, skipping the sign that is absent (the
    common case after a ReLU costs one forward pass, not two)."""
    lo, hi = torch.aminmax(x)
    if lo >= 0:
        return [(x, w_for_pos_x)]
    if hi <= 0:
        return [(x, w_for_neg_x)]
    return [(_pos(x), w_for_pos_x), (_neg(x), w_for_neg_x)]


class Rule:
    """Base class. Subclasses implement :meth:`terms` (weighted layers) in a few lines."""

    #: whether the rule needs the layer's weights (False: it may also act on weight-free layers)
    needs_weights: bool = False

    def terms(self, layer: AffineLayer, x: torch.Tensor) -> list[Term]:  # pragma: no cover
        raise NotImplementedError

    def signed_terms(self) -> tuple[SignedTerm, ...] | None:
        """The same rule in the ``(x w, |x| |w|)`` basis, or None when it is not of that family
        (then the evaluator runs :meth:`terms` one by one)."""
        return None

    def describe(self) -> str:
        """Readable one-line description, used in the ``rules`` attribute of results."""
        return repr(self)
