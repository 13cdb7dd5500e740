"""The rules of attention (AttnLRP, Achtibat et al. 2024; CP-LRP, Ali et al. 2022): a softmax inside
the network, and products of two input-dependent tensors that sum over terms (matmul, bmm, einsum,
the two products of ``scaled_dot_product_attention``).

The preset keys that map them are ``"op:softmax"`` (a softmax inside the network), ``"op:matmul"``
(matmul, bmm and einsum of two input-dependent tensors, and the products inside
``F.scaled_dot_product_attention``; ``"op:einsum"``, ``"op:bmm"`` and
``"op:scaled_dot_product_attention"`` are more specific keys), and module paths (the operations
recorded inside that module), exactly like the element-wise product rules (``"op:mul"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RuleError
from .products import ProductRule, ProportionalProduct, SignalTakeAll, UniformProduct
from .terms import Rule

__all__ = ["BilinearUniform", "ConstantAttention", "SoftmaxRule", "LinearisedSoftmax", "rule_family"]


def _check_epsilon(rule: Rule, epsilon: float) -> None:
    if not (epsilon >= 0) or epsilon == float("inf"):
        raise RuleError(f"{type(rule).__name__}(epsilon={epsilon!r}): epsilon must be a finite number >= 0")


@dataclass(frozen=True)
class BilinearUniform(ProductRule):
    """AttnLRP's rule for a product of two input-dependent tensors that sums over terms.

    For ``O_jp = sum_i A_ji B_ip`` (matmul; any bilinear map such as bmm, einsum or ``q k^T``
    likewise, each output a sum of products ``a * b`` of one entry of each operand), epsilon-LRP
    over the sum, then the uniform rule on each product term (Achtibat et al. 2024, Prop. 3.2 and
    the equation for matrix multiplication that follows it)::

        R_ji(A) = sum_p A_ji B_ip R_jp / (2 (O_jp + eps sign(O_jp)))
        R_ip(B) = sum_j A_ji B_ip R_jp / (2 (O_jp + eps sign(O_jp)))

    (``sign(0) = +1``). Both operands together receive ``sum_jp R_jp O_jp / (O_jp + eps sign(O_jp))``;
    the rest, the stabiliser's share (and that of a constant additive mask inside attention), is
    absorbed and counted in the ledger.
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        _check_epsilon(self, self.epsilon)


@dataclass(frozen=True)
class ConstantAttention(ProductRule):
    """CP-LRP (Ali et al. 2022): the attention weights are held constant.

    Of the two operands of ``A @ V``, the one computed by a softmax (through reshapes, dropout,
    masking or scaling by constants) is a constant: epsilon-LRP treats the product as the linear
    map ``V -> A V`` and all relevance goes to the values::

        R_ip(V) = sum_j A_ji V_ip R_jp / (O_jp + eps sign(O_jp))

    none to the attention weights, so none flows through the softmax, the queries or the keys.
    The stabiliser's share is absorbed. A product where neither operand (or both) comes from a
    softmax is an error: map :class:`BilinearUniform` to it by its module path.
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        _check_epsilon(self, self.epsilon)


class SoftmaxRule(Rule):
    """Base class of the rules for a softmax inside the network."""


@dataclass(frozen=True)
class LinearisedSoftmax(SoftmaxRule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.1).

    ``s = softmax(x)`` along one dim is linearised at ``x`` (a first-order Taylor expansion whose
    bias term absorbs relevance): ``s_j = sum_i J_ji x_i + b_j`` with ``J_ji = s_j (delta_ji - s_i)``,
    and each output's relevance is distributed over its contributions ``J_ji x_i / s_j``::

        R_i = sum_j x_i J_ji R_j / s_j = x_i (R_i - s_i sum_j R_j)

    (``s_j > 0``, so no stabiliser is needed). The bias terms ``b_j R_j / s_j =
    R_j (1 - x_j + sum_i s_i x_i)`` are absorbed and counted in the ledger. An entry masked with
    ``-inf`` (``s_i = 0``) gets no relevance (``x e^x -> 0``).
    """


#: the element-wise product rules (``a * b`` of two input-dependent tensors, gates)
_ELEMENTWISE = (SignalTakeAll, UniformProduct, ProportionalProduct)


def rule_family(keys: tuple) -> tuple[tuple[type, ...], Rule]:
    """The rule types an operation with these preset ``keys`` accepts, and its default rule.

    ``"op:softmax"``: a :class:`SoftmaxRule`, by default :class:`LinearisedSoftmax`.
    ``"op:matmul"`` (matmul, bmm, einsum, scaled-dot-product attention of input-dependent
    tensors): :class:`BilinearUniform` or :class:`ConstantAttention`, by default
    ``BilinearUniform()``. Anything else (``"op:mul"``, element-wise products): the element-wise
    product rules, by default signal-take-all.
    """
    if "op:softmax" in keys:
        return (SoftmaxRule,), LinearisedSoftmax()
    if "op:matmul" in keys:
        return (BilinearUniform, ConstantAttention), BilinearUniform()
    return _ELEMENTWISE, SignalTakeAll()
