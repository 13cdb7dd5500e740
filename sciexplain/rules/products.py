"""The rules of products of two input-dependent tensors (gates): signal-take-all, uniform, proportional."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RuleError
from .terms import Rule

__all__ = ["ProductRule", "SignalTakeAll", "UniformProduct", "ProportionalProduct"]


# -- products of two input-dependent tensors (gates) ---------------------------------------------
# These rules act on ``a * b`` where both operands depend on the input (LSTM/GRU gates, gating
# units). They are not rules of weighted layers; map them with the preset key "op:mul" (every
# product) or a module path (the products inside that module).

class ProductRule(Rule):
    """Base class of the rules for products of two input-dependent tensors."""


@dataclass(frozen=True)
class SignalTakeAll(ProductRule):
    """All relevance of ``gate * signal`` goes to the signal, none to the gate (Arras et al. 2017).

    The gate is the operand computed by a sigmoid (or hard sigmoid), or derived from one by
    reshaping, slicing or ``1 - g`` (GRU's update gate); the engine finds it on the tape. Nothing
    is created or lost at the product.
    """


@dataclass(frozen=True)
class UniformProduct(ProductRule):
    """Half of the relevance of ``a * b`` to each operand (the uniform rule AttnLRP uses)."""


@dataclass(frozen=True)
class ProportionalProduct(ProductRule):
    """Relevance of ``a * b`` split in proportion to the operands' magnitudes.

    ``R_a = R |a| / (|a| + |b| + eps)``, ``R_b = R |b| / (|a| + |b| + eps)``; the share of ``eps``
    is absorbed (counted in the ledger). A heuristic for products whose operands are of comparable
    scale; it does not know which operand is a gate.
    """

    epsilon: float = 1e-9

    def __post_init__(self) -> None:
        if not (self.epsilon > 0) or self.epsilon == float("inf"):
            raise RuleError(f"ProportionalProduct(epsilon={self.epsilon!r}): epsilon must be a finite number > 0")
