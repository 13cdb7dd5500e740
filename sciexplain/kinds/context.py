"""What a propagator works with: the plan's step of a node, the walk it may read, and the helpers
it shares with the walk (the node's own vector-Jacobian product, the batch-dim checks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..errors import UnsupportedModelError
from ..record.tape import Node, OneSample, Ref, replay_args
from ..rules.terms import Rule
from .registry import Kind, Registry

__all__ = ["Step", "WalkView", "local_vjp", "batch_check", "lost_batch_error"]


@dataclass
class Step:
    """One node of the plan."""

    node: Node
    kind: Kind
    rule: Rule | None = None
    fuse_after: Node | None = None  # BatchNorm folded into this layer (follows it)
    fuse_before: Node | None = None  # BatchNorm folded into this layer (precedes it)
    folded_into: Node | None = None  # this BatchNorm is folded into that layer
    first: bool = False  # a weighted layer fed by the input through transparent operations only
    signal: int | None = None  # products: the operand that is not a gate
    #: a layer with a BatchNorm folded after it: that BatchNorm's recorded output, handed on by
    #: the BatchNorm's step when the walk passes it (the walk frees it once the layer is done)
    recorded: torch.Tensor | None = None


class WalkView(Protocol):
    """What a propagator may read of the LRP walk (:class:`sciexplain.explain.walk.Walk`): the
    recorded forward pass ``fw`` (its ``tape``, ``steps``, ``logits`` and ``value(ref)``) and the
    walk's options."""

    fw: Any
    max_pool: str
    registry: Registry

    @property
    def batch(self) -> int: ...

    def zero(self) -> torch.Tensor: ...

    def value(self, ref: Ref) -> torch.Tensor: ...

    def batch_axis(self, ref: Ref) -> int | OneSample: ...

    def per_sample_sum(self, ref: Ref, t: torch.Tensor) -> torch.Tensor: ...


def _flatten_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten_tensors(o)


def local_vjp(fw: Any, node: Node, outs: list[torch.Tensor | None]) -> list[tuple[Ref, torch.Tensor]]:
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


def lost_batch_error(node: Node, k: int = 0) -> UnsupportedModelError:
    """The error for relevance reaching output ``k`` of ``node``, which has no batch dim."""
    shape = tuple(node.value(k).shape) if node.outputs[k] is not None or k in node.snapshots else "?"
    axis = node.batch_axis(k)
    why = (f"it holds the values of sample {axis.index} only" if isinstance(axis, OneSample) else
           node.batch_lost.get(k) or "the batch dim was lost before it")
    return UnsupportedModelError(
        f"{node.name}: relevance reaches its output of shape {shape}, which does not keep the samples "
        f"of the batch apart: {why}. LRP keeps relevance per sample, so every tensor it passes through "
        "needs the batch dim (moving it with transpose/permute is fine; reducing, merging, reordering "
        "or indexing across it is not). Gradient methods work on such models.")


def batch_check(t: torch.Tensor, B: int, node: Node, axis: int | OneSample = 0) -> torch.Tensor:
    """That ``t`` (relevance at or from ``node``) has the batch, ``B`` entries, at dim ``axis``."""
    if isinstance(axis, OneSample):
        return t
    if t.ndim <= axis or t.shape[axis] != B:
        raise UnsupportedModelError(f"{node.name}: the tensor of shape {tuple(t.shape)} does not keep "
                                    f"the batch ({B}) at dim {axis}, so relevance cannot be kept per "
                                    "sample; keep the samples apart inside the model. Gradient methods "
                                    "work on such models.")
    return t

