"""Tracking the batch dim along a recorded tape: which dim of every tensor indexes the samples.

:func:`track_batch_axes` walks the tape in recording order and asks each operation's rule
(:mod:`sciexplain.record.axis_rules`) where it puts the batch dim of its inputs, so that
relevance stays per sample through (time, batch, ...) tensors, stacked final states and the
like.
"""

from __future__ import annotations

from typing import Any

from .axis_rules import (_CAT_FUNCS, _ELEMENTWISE_FUNCS, _BatchLost, _broadcast, _dim, _function_rule,
                         _module_rule, _sequence_rule)
from .call_args import _arg
from .op_names import _MATMUL_FUNCS
from .tape import Node, OneSample, Ref, Tape, _Placeholder

__all__ = ["batch_axes", "track_batch_axes"]


def batch_axes(node: Node, axis_of, shape_of, B: int) -> tuple[list[int | OneSample | None], str]:
    """Where the batch dim of each (floating-point) output of ``node`` is.

    Parameters
    ----------
    node : Node
        A recorded operation (not the input).
    axis_of : callable
        ``axis_of(ref) -> (axis, reason)``: the batch dim of a recorded tensor (an int, a
        :class:`~sciexplain.record.tape.OneSample`, or None with the reason it was lost).
    shape_of : callable
        ``shape_of(ref) -> tuple``: the shape of a recorded tensor.
    B : int
        The batch size.

    Returns
    -------
    (axes, reason)
        One entry per output: the dim that indexes the samples; a
        :class:`~sciexplain.record.tape.OneSample` for a tensor of one sample (``x[j]``, ``x.unbind(0)``;
        stacking all samples in order makes a batch again); None where the operation loses the
        batch dim (a reduction over it, a reshape that merges it with other dims, indexing that
        reorders samples, an operation that combines different samples), and ``reason`` then
        names the operation and says what it did. In a batch of one sample nothing is lost.
    """
    n_out = len(node.outputs)
    parents = node.parents
    if node.kind == "function" and n_out == 1 and node.op in _ELEMENTWISE_FUNCS:
        # the common case, first: activations, sums and products of tensors of the output's shape
        # with their batch dims at the same place
        out_shape, first = node.outputs[0].shape, None
        for ref in parents:
            b, _ = axis_of(ref)
            if not isinstance(b, int) or (first is not None and b != first) or shape_of(ref) != out_shape:
                break
            first = b
        else:
            if first is not None:
                return [first], ""
    known: dict[Ref, Any] = {}
    lost = ""
    for ref in (parents if len(parents) == 1 else dict.fromkeys(parents)):
        b, why = axis_of(ref)
        if b is None:
            lost = lost or why
        else:
            known[ref] = b
    if not known:
        return [None] * n_out, lost
    axes, why = _axes(node, known, shape_of, B)
    if B == 1:  # one sample: nothing can mix samples, every tensor is that sample's
        axes = [OneSample(0, 1) if a is None else a for a in axes]
        why = ""
    return axes, why


def _what(node: Node) -> str:
    """The node's name, with its operation when the name does not say it (a module path)."""
    return node.name if node.name.split("@")[0].split("#")[0] == node.op else f"{node.name} ({node.op})"


def _samples(node: Node, known: dict[Ref, Any], shape_of, B: int) -> Any:
    """Tensors of one sample each: an operation on one sample's tensors alone gives that sample's;
    stacking all samples in order (or joining them along a dim of size one) gives a batch again."""
    if node.kind == "function" and node.op in _CAT_FUNCS | {"stack"} and all(
            isinstance(b, OneSample) for b in known.values()):
        pieces = list(node.args[0]) if isinstance(node.args[0], (list, tuple)) else []
        order = [known[p.ref].index if isinstance(p, _Placeholder) else None for p in pieces]
        dim = _arg(node, 1, "dim", "axis", default=0)
        out_ndim = node.outputs[0].ndim
        if order == list(range(B)):
            d = _dim(dim, out_ndim)
            if node.op == "stack" or all(tuple(shape_of(p.ref))[d] == 1 for p in pieces):
                return d
        raise _BatchLost(f"{node.op} joins tensors of single samples, but not each sample once, in order, "
                         "along a dim of its own")
    which = {b.index for b in known.values() if isinstance(b, OneSample)}
    if len(which) == 1 and all(isinstance(b, OneSample) for b in known.values()):
        return OneSample(which.pop(), B)
    raise _BatchLost("combines one sample's values with those of other samples")


def _axes(node: Node, known: dict[Ref, Any], shape_of, B: int) -> tuple[list, str]:
    n_out = len(node.outputs)
    ref, b = next(iter(known.items()))
    shape = tuple(shape_of(ref))
    try:
        axes: Any = None
        if any(isinstance(v, OneSample) for v in known.values()):
            axes = _samples(node, known, shape_of, B)
        elif node.kind == "module":
            if len(known) == 1:
                axes = _module_rule(node.target, node, b, shape, known, shape_of, B)
        else:
            axes = _sequence_rule(node, known, shape_of)
            if axes is None and node.op in _ELEMENTWISE_FUNCS:
                axes = _broadcast(node, known, shape_of)  # sums, products, where, activations
            elif axes is None and (len(known) == 1 or node.op in ("max", "min") or node.op in _MATMUL_FUNCS
                                   or node.op in ("einsum", "scaled_dot_product_attention")):
                axes = _function_rule(node, b, ref, shape, known, shape_of, B)
        if axes is None:  # a registered module, or an operation with no rule of its own
            out_shapes = [tuple(o.shape) for o in node.outputs]
            if len(set(known.values())) == 1 and all(s == shape for s in out_shapes):
                axes = b  # shape-preserving
            elif all(v == 0 for v in known.values()) and all(len(s) and s[0] == B for s in out_shapes):
                axes = 0  # batch first in, batch first out
            else:
                raise _BatchLost(f"cannot tell where the batch dim of its output is (its input has it at "
                                 f"dim {b} of shape {shape})")
    except _BatchLost as err:
        return [None] * n_out, f"{_what(node)} {err}"
    if not isinstance(axes, list):
        axes = [axes] * n_out
    why = ""
    for k, (a, o) in enumerate(zip(axes, node.outputs)):
        if isinstance(a, int) and not (0 <= a < o.ndim and o.shape[a] == B):
            axes[k] = None
            why = why or (f"{_what(node)} changes the size of the batch dim: its output of shape {tuple(o.shape)} "
                          f"has {o.shape[a] if 0 <= a < o.ndim else 'no'} entries at dim {a}, the batch has {B}")
    return axes, why


def track_batch_axes(tape: Tape, last: int, B: int, indices: set[int] | None = None) -> None:
    """Record on each node of the tape (those in ``indices``, default all up to node ``last``, the
    explained output's) which dim of each output indexes the ``B`` samples
    (:attr:`sciexplain.record.tape.Node.batch_axes`).

    The input's batch dim is dim 0; every operation moves it by its own rule
    (:func:`batch_axes`), so a tensor of shape (time, batch, ...) between a
    model's transposes, or the stacked final states ``h_n`` of shape (layers * directions,
    batch, hidden), keep their samples apart, also when the time steps are as many as the
    samples. Where an operation loses the batch dim (a reduction over it, a reshape merging it
    with other dims, indexing that picks or reorders samples) the axis is None and
    :attr:`~sciexplain.record.tape.Node.batch_lost` says why; the LRP walk raises that reason if
    relevance reaches such a tensor.
    """
    nodes = tape.nodes
    todo = range(last + 1) if indices is None else sorted(i for i in indices if i <= last)

    def axis_of(ref: Ref):
        n = nodes[ref.node]
        return n.batch_axis(ref.k), n.batch_lost.get(ref.k, "")

    def shape_of(ref: Ref):
        return tape.node_of(ref).value(ref.k).shape

    for i in todo:
        node = nodes[i]
        if node.kind == "input":
            # an input whose dim 0 holds several views of the one explained sample (a grouped
            # batch, explained one sample at a time) is that sample's as a whole
            node.batch_axes = [OneSample(0, 1) if B == 1 and o.ndim and o.shape[0] != 1 else 0
                               for o in node.outputs]
            node.batch_lost = {}
            continue
        axes, why = batch_axes(node, axis_of, shape_of, B)
        node.batch_axes = axes
        node.batch_lost = {k: why for k, a in enumerate(axes) if a is None}
