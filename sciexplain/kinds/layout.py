"""The layout kind: operations that only move or copy entries (view, permute, cat, slicing,
padding, max pooling as winner-take-all); relevance moves with the entries."""

from __future__ import annotations

import torch
from torch import nn

from ..record.call_args import _live_positions
from ..record.op_names import _MAX_FUNCS, _MAX_MODULES
from ..record.tape import Node, Ref, _Placeholder
from ..rules.propagation import per_sample_sum
from .context import Step, WalkView, batch_check, local_vjp
from .pooling import _max_proportional
from .registry import Kind, _mro_keys


def _layout_module(m: nn.Module, node: Node) -> Kind:
    return Kind("layout", type(m).__name__, _mro_keys(m), max_pool=isinstance(m, _MAX_MODULES))


def _layout_function(node: Node) -> Kind:
    name = node.op
    live = _live_positions(node)
    kw_live = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
    if name == "where" and 0 in live:
        return Kind("unsupported", "torch.where with an input-dependent condition")
    if name in ("max", "amax") and not (len(node.args) > 1 or "dim" in node.kwargs):
        return Kind("unsupported", f"{name} over all dims reduces the batch dim")
    if name in ("gather", "index_select", "take_along_dim") and (any(i != 0 for i in live) or kw_live):
        return Kind("unsupported", f"{name} with input-dependent float indices")
    if name in ("__setitem__", "index_put_", "index_put") and any(i != 0 for i in live) and not _per_sample_write(node):
        return Kind("unsupported", f"{name} writing an input-dependent value with an index that may cross samples "
                    "(write x[:, ...] = v, keeping the batch dim whole)")
    return Kind("layout", name, ("op:" + name,), max_pool=name in _MAX_FUNCS)


def _per_sample_write(node: Node) -> bool:
    """``x[:, ...] = v``: an indexed write that keeps the batch dim whole, so each sample's entries
    come from the same sample's value (the batch-axis check catches a value of another shape)."""
    index = node.args[1] if node.op == "__setitem__" and len(node.args) > 1 else None
    first = index[0] if isinstance(index, tuple) and index else index
    return isinstance(first, slice) and first == slice(None)


#: operations that give the same entries another shape: relevance takes the input's shape back
_RESHAPES = frozenset({"reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
                       "view_as", "reshape_as"})


def _dims(node: Node) -> tuple[int, ...] | None:
    """The ``dims`` of a recorded ``permute`` call (``x.permute(0, 2, 1)``, ``x.permute([0, 2, 1])``
    or ``torch.permute(x, dims=...)``)."""
    rest = list(node.args[1:]) or [node.kwargs.get("dims")]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        rest = list(rest[0])
    return tuple(rest) if rest and all(isinstance(d, int) for d in rest) else None


def _moved_back(walk: WalkView, node: Node, outs):
    """The vector-Jacobian product of a reshape, permute or transpose of one input, written
    directly (the entries go back to where they came from); None for anything else."""
    if (len(node.parents) != 1 or len(outs) != 1 or outs[0] is None or not node.args
            or not isinstance(node.args[0], _Placeholder)):
        return None
    ref, R = node.args[0].ref, outs[0]
    shape = walk.value(ref).shape
    if node.op in _RESHAPES:
        back = R.reshape(shape)
    elif node.op == "permute":
        dims = _dims(node)
        if dims is None or len(dims) != R.ndim:
            return None
        back = R.permute(tuple(sorted(range(R.ndim), key=lambda i: dims[i] % R.ndim)))
    elif node.op in ("transpose", "swapaxes", "swapdims") and len(node.args) == 3 and not node.kwargs \
            and all(isinstance(d, int) for d in node.args[1:]):
        back = R.transpose(node.args[1], node.args[2])
    else:
        return None
    return [(ref, back)] if back.shape == shape else None


def propagate_layout(walk: WalkView, step: Step, outs):
    """Relevance moves with the entries (the operation's vector-Jacobian product). Entries that
    come from constants (padding values, a constant operand of cat/where/max) take their
    relevance with them: for an operation that only moves entries that is exactly the part of
    the incoming relevance that reaches no input, and it is counted as absorbed."""
    if step.kind.max_pool and walk.max_pool == "proportional":
        return _max_proportional(walk, step, outs)
    node = step.node
    contributions = _moved_back(walk, node, outs)
    if contributions is None:
        contributions = local_vjp(walk.fw, node, outs)
    axes = [walk.batch_axis(ref) for ref, _ in contributions]
    for (_, g), a in zip(contributions, axes):  # before the per-sample sums could misread a shape
        batch_check(g, walk.batch, node, a)
    entering = sum(walk.per_sample_sum(Ref(node.index, k), r) for k, r in enumerate(outs) if r is not None)
    leaving = sum((per_sample_sum(g, a) for (_, g), a in zip(contributions, axes)), torch.zeros_like(entering))
    return contributions, entering - leaving

