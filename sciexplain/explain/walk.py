"""The backward walk over a recorded tape, shared by LRP and the modified-backward methods.

:func:`reverse_walk` visits the nodes from the explained output back to the input, freeing the
recorded activations as it descends (like a backward pass). :func:`lrp_walk` is LRP on top of
it: at each node it looks the node's kind up in the registry and lets that entry propagate the
relevance; it keeps the per-layer ledger, the ``at=`` stop and the ``through=`` filters.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ExplainWarning, InputError, UnsupportedModelError
from .forward import Forward, _caller_stacklevel, start_vector
from .ledger import LedgerRow
from ..rules.propagation import per_sample_sum
from ..kinds.registry import REGISTRY, Registry
from ..kinds.context import Step, batch_check, lost_batch_error
from ..record.tape import Node, OneSample, Ref

__all__ = ["Walk", "reverse_walk", "lrp_walk", "GROWTH_WARNING_FACTOR", "LEDGER_WARNING_RTOL"]

#: relevance whose mass (sum of |R|) exceeds this multiple of sum |f(x)| gets a warning: a rule is
#: numerically unstable (e.g. a gamma or z+ denominator near zero). With the full ledger every layer
#: is checked and the first one named; otherwise the relevance at the input (one reduction)
GROWTH_WARNING_FACTOR = 1e4

#: a sample whose ledger (input relevance + absorbed = f(x)) misses by more than this fraction of
#: ``|f(x)| + sum |absorbed|`` gets a warning: relevance was lost or created on the way
LEDGER_WARNING_RTOL = 1e-3


@dataclass
class Walk:
    """What a propagator may read: the recorded forward pass and the walk's options (it fits
    :class:`sciexplain.kinds.context.WalkView`)."""

    fw: Forward
    max_pool: str = "winner-take-all"
    registry: Registry = REGISTRY

    @property
    def batch(self) -> int:
        return self.fw.logits.shape[0]

    def zero(self) -> torch.Tensor:
        return self.fw.logits.new_zeros(self.batch)

    def value(self, ref: Ref) -> torch.Tensor:
        return self.fw.value(ref)

    def batch_axis(self, ref: Ref) -> int | OneSample:
        """The dim of the recorded tensor ``ref`` that indexes the samples, or the
        :class:`~sciexplain.record.tape.OneSample` it holds (see :func:`sciexplain.record.batch_axes.track_batch_axes`);
        an error if the model lost the batch dim there."""
        node = self.fw.tape.node_of(ref)
        axis = node.batch_axis(ref.k)
        if axis is None:
            raise lost_batch_error(node, ref.k)
        return axis

    def per_sample_sum(self, ref: Ref, t: torch.Tensor) -> torch.Tensor:
        """Per sample, the sum of ``t``, a tensor shaped like the recorded tensor ``ref`` (e.g. the
        relevance arriving at it): summed over every dim but that tensor's batch dim."""
        return per_sample_sum(t, self.batch_axis(ref))


def reverse_walk(fw: Forward, store: dict[Ref, torch.Tensor]):
    """Visit the tape from the explained output back to the input.

    Yields ``(node, outs)``, where ``outs`` holds what arrived at each of the node's outputs
    (popped from ``store``); the caller adds what it sends to the node's inputs into ``store``.
    Nodes nothing arrived at are skipped. What arrives at an input node (the first nodes of the
    tape, one per explained input) is left in ``store[Ref(i, 0)]``.
    """
    for node in reversed(fw.tape.nodes[: fw.logits_ref.node + 1]):
        outs = [store.pop(Ref(node.index, k), None) for k in range(len(node.outputs))]
        if all(o is None for o in outs):
            continue
        if node.kind == "input":
            store[Ref(node.index, 0)] = outs[0]
            continue
        yield node, outs
        # every consumer of this node came later in the tape and has been visited: its recorded
        # outputs (and the autograd graph above them) are no longer needed, so memory is freed
        # as the walk descends, like a backward pass
        node.outputs = [None] * len(node.outputs)
        node.snapshots.clear()


def _filter_through(node: Node, out: torch.Tensor, channels: Sequence[int],
                    axis: int | OneSample = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the relevance of the chosen channels, the dim right after the batch dim ``axis``
    (dim 1 of a batch-first tensor; the features of a (time, batch, features) one); return it
    and, per sample, what was filtered out."""
    channels = list(channels)
    if isinstance(axis, OneSample):
        if axis.batch > 1:
            raise InputError(f"through={{{node.name!r}: {channels}}}: that layer's output holds one sample "
                             f"of the batch only (sample {axis.index}), so it has no channels per sample; "
                             "name a layer whose output keeps the batch")
        axis = 0  # a batch of one: channels are dim 1, as for any batch-first tensor
    dim = axis + 1
    if dim >= out.ndim:
        raise InputError(f"through={{{node.name!r}: {channels}}}: that layer's output of shape "
                         f"{tuple(out.shape)} has its batch dim last (dim {axis}), so it has no channel "
                         "dim (the dim after the batch dim) to filter; name another layer")
    n_channels = out.shape[dim]
    bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, (int, np.integer))
           or not -n_channels <= int(c) < n_channels]
    if bad:
        raise InputError(f"through={{{node.name!r}: {channels}}}: channels must be integer "
                         f"indices into dim {dim} of that layer's output (the dim after the batch dim), "
                         f"which has {n_channels}; invalid: {bad}")
    mask = torch.zeros(n_channels, dtype=torch.bool, device=out.device)
    if channels:
        mask[[int(c) for c in channels]] = True
    shape = [1] * out.ndim
    shape[dim] = -1
    keep = out * mask.reshape(shape)
    return keep, per_sample_sum(out - keep, axis)


def rule_text(step: Step, registry: Registry = REGISTRY) -> str:
    """The ledger's "rule" column for one step (the input node, which has no kind entry, is
    described by its category)."""
    if step.rule is not None:
        return repr(step.rule)
    kind = registry.kinds.get(step.kind.category)
    if kind is None:
        return step.kind.category
    return kind.describe(step, registry) if kind.describe is not None else kind.description


def lrp_walk(walk: Walk, target: torch.Tensor, *, stop_at: str | None = None,
             through: Mapping[str, Sequence[int]] | None = None, full_ledger: bool = True,
             inputs: int | None = None):
    """LRP from the explained output down to the input (or to the node ``stop_at``).

    Returns ``(relevance, rows, filtered_out)``: the relevance at the input (or at ``stop_at``,
    with its batch dim moved first), one :class:`~sciexplain.explain.ledger.LedgerRow` per visited node,
    and per sample the relevance removed by ``through=`` filters. With ``inputs=n`` (several
    explained inputs, tape nodes ``0..n-1``) the relevance is a list, one entry (or None where
    nothing arrived) per input.

    Every per-sample sum is taken over all dims but the batch dim of the tensor it is about
    (recorded by :func:`sciexplain.record.batch_axes.track_batch_axes`), so relevance stays per sample also
    through (time, batch, ...) tensors; ``through=`` filters the dim right after the batch dim.
    """
    fw, registry = walk.fw, walk.registry
    B = walk.batch
    logits = fw.logits.detach()
    R: dict[Ref, torch.Tensor] = {fw.logits_ref: start_vector(logits, target, "logit")}
    rows: list[LedgerRow] = []
    filtered_out = walk.zero()
    through = dict(through or {})
    at_value = None
    explained = per_sample_sum(R[fw.logits_ref].detach())
    explained_mass = float(per_sample_sum(R[fw.logits_ref].abs()).sum())
    warned = False
    nan = logits.new_full((B,), float("nan"))
    if fw.tape.node_of(fw.logits_ref).batch_axis(fw.logits_ref.k) not in (0, OneSample(0, 1)):
        node = fw.tape.node_of(fw.logits_ref)
        if not isinstance(node.batch_axis(fw.logits_ref.k), int):
            raise lost_batch_error(node, fw.logits_ref.k)
        raise UnsupportedModelError(f"{node.name}: the model output of shape {tuple(logits.shape)} has the "
                                    f"batch at dim {node.batch_axis(fw.logits_ref.k)}; explanations need "
                                    "(batch, n_outputs): move the batch dim first at the end of forward")
    for node, outs in reverse_walk(fw, R):
        # where the batch is in each output; an error if relevance reaches a tensor without one
        axes = [walk.batch_axis(Ref(node.index, k)) if o is not None else 0 for k, o in enumerate(outs)]
        for o, a in zip(outs, axes):  # a shape check, before any per-sample sum could misread it
            if o is not None:
                batch_check(o, B, node, a)
        if stop_at is not None and node.name == stop_at:
            at_value = outs[0]
            if isinstance(axes[0], OneSample) and B > 1:
                raise InputError(f"at={stop_at!r}: that layer's output holds one sample of the batch only "
                                 f"(sample {axes[0].index}); name a layer whose output keeps the batch")
            if at_value is not None and isinstance(axes[0], int) and axes[0] != 0:
                at_value = at_value.movedim(axes[0], 0)  # results have the batch dim first
            break
        if node.name in through:
            outs[0], removed = _filter_through(node, outs[0], through.pop(node.name), axes[0])
            filtered_out = filtered_out + removed
        step = fw.steps[node.index]
        entering = leaving = nan
        if full_ledger:  # two reductions per layer: only when the ledger is asked for
            entering = sum(per_sample_sum(o, a) for o, a in zip(outs, axes) if o is not None)
        contributions, absorbed = registry.kind(step.kind.category).propagate(walk, step, outs)
        if full_ledger:
            leaving = walk.zero()
        for ref, r in contributions:
            a = walk.batch_axis(ref)
            batch_check(r, B, node, a)
            if full_ledger:
                leaving = leaving + per_sample_sum(r, a)
            R[ref] = r if ref not in R else R[ref] + r
        if full_ledger and not warned and step.rule is not None and contributions:
            mass = sum(float(r.detach().abs().sum()) for _, r in contributions)
            if mass > GROWTH_WARNING_FACTOR * max(explained_mass, 1e-30):
                warned = True
                warnings.warn(
                    f"relevance grows without bound at {node.name} ({step.kind.detail}, rule {step.rule!r}): "
                    f"sum |R| there is {mass / max(explained_mass, 1e-30):.3g} times sum |f(x)|. The ledger may "
                    "still balance, but the heatmap is dominated by cancelling huge values: that rule is "
                    "unstable on this layer (e.g. a denominator near zero); use a larger stabiliser or "
                    "another rule there", ExplainWarning, stacklevel=_caller_stacklevel())
        rows.append(LedgerRow(node.name, step.kind.detail or node.op, rule_text(step, registry),
                              entering.detach(), leaving.detach(), absorbed.detach()))
    if through:
        raise InputError(f"through= names {sorted(through)} which were not reached; use module paths "
                         "that lie between the input and the output (see Explainer.layers())")
    if stop_at is not None and at_value is None:
        raise InputError(f"at={stop_at!r} is not a module on the path from input to output; "
                         "see Explainer.layers() for the names")
    if stop_at is not None:
        return at_value, rows, filtered_out
    found = [R.get(Ref(i, 0)) for i in range(inputs if inputs is not None else 1)]
    if not warned:  # without the full ledger, the growth is checked once, where the heatmap is
        mass = sum(float(r.detach().abs().sum()) for r in found if r is not None)
        if mass > GROWTH_WARNING_FACTOR * max(explained_mass, 1e-30):
            warnings.warn(
                f"relevance grows without bound: sum |R| at the input is {mass / max(explained_mass, 1e-30):.3g} "
                "times sum |f(x)|. The ledger may still balance, but the heatmap is dominated by cancelling "
                "huge values: a rule is unstable on some layer (e.g. a denominator near zero); "
                "explain_with_ledger() names the layer where it starts. Use a larger stabiliser or another "
                "rule there", ExplainWarning, stacklevel=_caller_stacklevel())
    _warn_if_unbalanced(walk, explained, found, rows, filtered_out)
    return (found if inputs is not None else found[0]), rows, filtered_out


def _warn_if_unbalanced(walk: Walk, explained: torch.Tensor, found: list[torch.Tensor | None],
                        rows: list[LedgerRow], filtered_out: torch.Tensor) -> None:
    """Warn when a sample's ledger misses: input relevance + absorbed != f(x) beyond rounding
    (:data:`LEDGER_WARNING_RTOL`). Names the worst sample and, with the full ledger, the layer
    where the most relevance went missing."""
    B = walk.batch
    reached = walk.zero()
    for i, r in enumerate(found):
        if r is not None:
            reached = reached + per_sample_sum(r.detach(), walk.batch_axis(Ref(i, 0)))
    absorbed = sum((row.absorbed for row in rows), walk.zero()) + filtered_out
    size = explained.abs() + sum((row.absorbed.abs() for row in rows), walk.zero()) + filtered_out.abs()
    gap = (explained - reached - absorbed).double()
    bad = gap.abs() > LEDGER_WARNING_RTOL * size.double() + 1e-6
    if not bool(bad.any()):
        return
    worst = int(torch.argmax(torch.where(bad, gap.abs() / size.double().clamp(min=1e-30), -1.0)))
    where = ""
    gaps = [(row.layer, float(row.entering[worst] - row.leaving[worst] - row.absorbed[worst])) for row in rows]
    gaps = [g for g in gaps if g[1] == g[1]]  # NaN unless the full ledger was kept
    if gaps:
        layer, g = max(gaps, key=lambda item: abs(item[1]))
        where = f"; most of it at {layer} ({g:.4g} entered and neither left nor was absorbed)"
    warnings.warn(
        f"the relevance ledger does not balance for {int(bad.sum())} of {B} samples: for sample "
        f"{worst}, input relevance {float(reached[worst]):.6g} + absorbed {float(absorbed[worst]):.6g} "
        f"!= f(x) = {float(explained[worst]):.6g} (missing {float(gap[worst]):.4g}){where}. A rule lost or "
        "created relevance (a custom rule that does not conserve, or rounding in a denominator); "
        "explain_with_ledger() shows every layer and R.relevance.check() raises on it", ExplainWarning, stacklevel=_caller_stacklevel())
