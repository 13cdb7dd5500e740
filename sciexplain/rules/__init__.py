"""LRP rules (``sx.rules``): small, named, picklable objects, and presets that map them to layers."""

from .affine import DEFAULT_STABILIZER, AlphaBeta, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus
from .conservation import BiasToInputs, Fallback
from .attention import BilinearUniform, ConstantAttention, LinearisedSoftmax, SoftmaxRule
from .products import ProductRule, ProportionalProduct, SignalTakeAll, UniformProduct
from .presets import PRESETS, uses_bounds
from .terms import Rule, SignedTerm, Term

__all__ = [
    "Rule",
    "Term",
    "SignedTerm",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "WSquare",
    "Flat",
    "Pass",
    "Fallback",
    "BiasToInputs",
    "ProductRule",
    "SignalTakeAll",
    "UniformProduct",
    "ProportionalProduct",
    "BilinearUniform",
    "ConstantAttention",
    "SoftmaxRule",
    "LinearisedSoftmax",
    "DEFAULT_STABILIZER",
    "PRESETS",
    "uses_bounds",
]
