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
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import ExplainWarning, InputError, UnsupportedModelError
from .forward import Forward, _caller_stacklevel, start_vector
from .ledger import LedgerRow
from .propagation import per_sample_sum
from .registry import REGISTRY, Registry
from .tape import Node, Ref, replay_args

if TYPE_CHECKING:  # pragma: no cover
    from .plan import Step

__all__ = ["Walk", "reverse_walk", "local_vjp", "lrp_walk", "GROWTH_WARNING_FACTOR"]

#: a layer whose relevance mass (sum of |R|) exceeds this multiple of sum |f(x)| gets a warning:
#: the rule is numerically unstable there (e.g. a gamma or z+ denominator near zero)
GROWTH_WARNING_FACTOR = 1e4


@dataclass
class Walk:
    """What a propagator may read: the recorded forward pass and the walk's options."""

    fw: Forward
    max_pool: str = "winner-take-all"
    registry: Registry = REGISTRY

    @property
    def batch(self) -> int:
        return self.fw.logits.shape[0]

    def zero(self) -> torch.Tensor:
        return torch.zeros(self.batch, dtype=self.fw.logits.dtype)

    def value(self, ref: Ref) -> torch.Tensor:
        return self.fw.value(ref)


def reverse_walk(fw: Forward, store: dict[Ref, torch.Tensor]):
    """Visit the tape from the explained output back to the input.

    Yields ``(node, outs)``, where ``outs`` holds what arrived at each of the node's outputs
    (popped from ``store``); the caller adds what it sends to the node's inputs into ``store``.
    Nodes nothing arrived at are skipped. At the input node the walk ends, leaving its value
    in ``store[Ref(0, 0)]``.
    """
    for node in reversed(fw.tape.nodes[: fw.logits_ref.node + 1]):
        outs = [store.pop(Ref(node.index, k), None) for k in range(len(node.outputs))]
        if all(o is None for o in outs):
            continue
        if node.kind == "input":
            store[Ref(0, 0)] = outs[0]
            return
        yield node, outs
        # every consumer of this node came later in the tape and has been visited: its recorded
        # outputs (and the autograd graph above them) are no longer needed, so memory is freed
        # as the walk descends, like a backward pass
        node.outputs = [None] * len(node.outputs)
        node.snapshots.clear()


def _flatten_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten_tensors(o)


def local_vjp(fw: Forward, node: Node, outs: list[torch.Tensor | None]) -> list[tuple[Ref, torch.Tensor]]:
    """The node's own vector-Jacobian product with ``outs``, re-running the node on copies of its
    recorded inputs (copies, so that in-place operations do not act on the recorded values)."""
    leaves = {}
    for ref in dict.fromkeys(node.parents):
        v = fw.value(ref).detach()
        if v.is_floating_point():
            leaves[ref] = v.clone().requires_grad_(True)
    with torch.enable_grad():
        args, kwargs = replay_args(node, {r: l.clone() for r, l in leaves.items()})
        out = node.target(*args, **kwargs)
    flat = [o for o in _flatten_tensors(out) if o.is_floating_point()]
    pairs = [(o, g) for o, g in zip(flat, outs) if g is not None]
    grads = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()),
                                grad_outputs=[g for _, g in pairs], allow_unused=True)
    return [(ref, g) for ref, g in zip(leaves, grads) if g is not None]


def batch_check(t: torch.Tensor, B: int, node: Node) -> torch.Tensor:
    if t.ndim == 0 or t.shape[0] != B:
        raise UnsupportedModelError(f"{node.name}: the tensor of shape {tuple(t.shape)} does not keep "
                                    f"the batch ({B}) as its first dim, so relevance cannot be kept per "
                                    "sample; keep the batch dim first inside the model (for recurrent "
                                    "layers: batch_first=True). Gradient methods work on such models.")
    return t


def _filter_through(node: Node, out: torch.Tensor, channels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the relevance of the chosen channels (dim 1); return it and what was filtered out."""
    n_channels = out.shape[1]
    channels = list(channels)
    bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, (int, np.integer))
           or not -n_channels <= int(c) < n_channels]
    if bad:
        raise InputError(f"through={{{node.name!r}: {channels}}}: channels must be integer "
                         f"indices into dim 1 of that layer's output, which has {n_channels}; "
                         f"invalid: {bad}")
    mask = torch.zeros(n_channels, dtype=torch.bool)
    if channels:
        mask[[int(c) for c in channels]] = True
    keep = out * mask.reshape([1, -1] + [1] * (out.ndim - 2))
    return keep, per_sample_sum(out - keep)


def rule_text(step: Step, registry: Registry = REGISTRY) -> str:
    """The ledger's "rule" column for one step (the input node, which has no kind entry, is
    described by its category)."""
    if step.rule is not None:
        return repr(step.rule)
    kind = registry.kinds.get(step.kind.category)
    return step.kind.category if kind is None else kind.description


def lrp_walk(walk: Walk, target: torch.Tensor, *, stop_at: str | None = None,
             through: Mapping[str, Sequence[int]] | None = None, full_ledger: bool = True):
    """LRP from the explained output down to the input (or to the node ``stop_at``).

    Returns ``(relevance, rows, filtered_out)``: the relevance at the input (or at ``stop_at``),
    one :class:`~sciexplain.ledger.LedgerRow` per visited node, and per sample the relevance
    removed by ``through=`` filters.
    """
    fw, registry = walk.fw, walk.registry
    B = walk.batch
    logits = fw.logits.detach()
    R: dict[Ref, torch.Tensor] = {fw.logits_ref: start_vector(logits, target, "logit")}
    rows: list[LedgerRow] = []
    filtered_out = walk.zero()
    through = dict(through or {})
    at_value = None
    explained_mass = float(per_sample_sum(R[fw.logits_ref].abs()).sum())
    warned = False
    nan = torch.full((B,), float("nan"), dtype=logits.dtype)
    for node, outs in reverse_walk(fw, R):
        if stop_at is not None and node.name == stop_at:
            at_value = outs[0]
            break
        if node.name in through:
            outs[0], removed = _filter_through(node, outs[0], through.pop(node.name))
            filtered_out = filtered_out + removed
        step = fw.steps[node.index]
        for o in outs:  # a shape check, before any per-sample sum of a propagator could misread it
            if o is not None:
                batch_check(o, B, node)
        entering = leaving = nan
        if full_ledger:  # two reductions per layer: only when the ledger is asked for
            entering = sum(per_sample_sum(o) for o in outs if o is not None)
        contributions, absorbed = registry.kind(step.kind.category).propagate(walk, step, outs)
        if full_ledger:
            leaving = walk.zero()
        for ref, r in contributions:
            batch_check(r, B, node)
            if full_ledger:
                leaving = leaving + per_sample_sum(r)
            R[ref] = r if ref not in R else R[ref] + r
        if not warned and step.rule is not None and contributions:
            mass = sum(float(torch.linalg.vector_norm(r.detach().reshape(-1), ord=1)) for _, r in contributions)
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
    return (at_value if stop_at is not None else R.get(Ref(0, 0))), rows, filtered_out
