"""Element-wise maps beyond the activations (exp, log, pow with a constant exponent, square, sqrt...)
pass relevance by the identity rule; ``masked_fill`` moves relevance with the entries it keeps.

The rules, one per operation family:

``exp``, ``log`` (``log1p``, ``log2``, ``log10``), ``sqrt``, ``rsqrt``, ``square``, ``x * x``,
``pow(x, p)`` / ``x ** p`` with a constant exponent, ``2 ** x``, ``abs``, ``erf``, ``reciprocal``
    The identity rule, ``R_i = R_j`` for ``y_j = f(x_j)``: output ``j`` depends on input ``j``
    alone, so its relevance has nowhere else to go. This is AttnLRP's rule for element-wise
    nonlinearities (Achtibat et al. 2024, Sec. 3: a first-order Taylor expansion of a single-input
    function at a root point is not meaningful, so the relevance is passed on); it conserves
    exactly and adds nothing to the ledger. It is the rule already used for ReLU, GELU, SiLU,
    ELU, softplus and the like (:mod:`~sciexplain.kinds.activations`). Braindecode's
    ShallowFBCSPNet computes ``log(mean(square(x)))``: the square and the log pass relevance
    through, the pooling between them is an affine map with its own rule.
``pow`` with an input-dependent exponent, ``2 ** x`` via ``torch.pow(2, x)``
    An input-dependent exponent has no rule (an error that names the operation); ``x ** c`` and
    ``c ** x`` (a tensor method with the input as ``self``) are element-wise maps of one input.
``masked_fill(x, mask, value)`` with a constant mask and value
    A layout operation: kept entries move with their relevance, the filled entries carry
    constants, so the relevance reaching them is absorbed (a ledger row of the ``layout`` kind,
    exactly ``entering - leaving``; an input-dependent fill value gets the relevance of the filled
    entries). ``torch.where(cond, x, c)`` with a constant condition is the same. Both are
    recognised by :mod:`~sciexplain.kinds.layout`.
"""

from __future__ import annotations

from ..record.call_args import _live_positions
from ..record.tape import Node, _Placeholder
from .registry import Kind

__all__ = ["_elementwise_function"]


def _elementwise_function(node: Node) -> Kind:
    """An element-wise map of one input-dependent tensor: the identity rule (kind ``pass``)."""
    name = node.op
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if len(node.parents) != 1 or _live_positions(node) != [0] or kw_live:
        what = "exponent" if "pow" in name else "argument"
        return Kind("unsupported", f"{name} with an input-dependent second {what} (only element-wise maps "
                    "of one input-dependent tensor pass relevance by the identity rule)")
    return Kind("pass", name, ("op:" + name,))

