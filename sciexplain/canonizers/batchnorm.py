"""BatchNorm folding: a plan canonizer that merges each BatchNorm into the adjacent Linear or convolution."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..kinds.registry import Kind
from ..record.op_names import _BN_MODULES
from ..record.tape import Ref
from .base import PlanCanonizer, PlanStep, RecordedForward

__all__ = ["BatchNormFolding"]


@dataclass(frozen=True)
class BatchNormFolding(PlanCanonizer):
    """Fold each BatchNorm (with running statistics) into the adjacent Linear or convolution.

    A BatchNorm that follows a Linear/Conv whose output nothing else reads becomes part of it
    (W' = a W, b' = a b + c); a BatchNorm1d that feeds a Linear on ``(batch, features)`` is folded
    into that Linear (W' = W diag(a), b' = b + W c). Others stay standalone element-wise affine
    layers. ``Explainer.check_canonization`` measures the folding error.
    """

    name: str = "BatchNormFolding"

    def rewrite(self, fw: RecordedForward, steps: dict[int, PlanStep], keep: frozenset | set) -> list[str]:
        tape = fw.tape
        consumers = tape.consumers()
        folded = []
        for step in steps.values():
            node = step.node
            if not (node.kind == "module" and isinstance(node.target, _BN_MODULES)):
                continue
            if node.name in keep or len(node.parents) != 1 or step.kind.category != "affine":
                continue
            pref = node.parents[0]
            prev = steps.get(pref.node)
            if (prev is not None and prev.kind.category == "affine" and prev.kind.weighted
                    and prev.fuse_after is None and prev.fuse_before is None
                    and consumers.get(pref, []) == [node.index] and tape.node_of(pref).pristine(pref.k)
                    and pref != fw.logits_ref and _weight_rows_are_channels(prev.node, fw.value(pref).ndim)):
                prev.fuse_after = node
                step.folded_into = prev.node
            else:
                # BatchNorm1d feeding a Linear on (batch, features)
                users = consumers.get(Ref(node.index, 0), [])
                if not (len(users) == 1 and fw.value(Ref(node.index, 0)).ndim == 2):
                    continue
                nxt = steps.get(users[0])
                if not (nxt is not None and nxt.node.kind == "module" and type(nxt.node.target) is nn.Linear
                        and nxt.fuse_before is None and nxt.fuse_after is None):
                    continue
                nxt.fuse_before = node
                step.folded_into = nxt.node
            step.kind = Kind("folded", f"{step.kind.detail} folded into {step.folded_into.name}",
                             step.kind.rule_keys)
            folded.append(node.name)
        return folded


def _weight_rows_are_channels(layer, out_ndim: int) -> bool:
    """Whether a BatchNorm on ``layer``'s output scales the rows of its weight.

    That needs a weight laid out ``(out_channels, ...)`` (Linear, convolutions, ``F.linear``,
    ``F.conv*``; not a matmul with a constant weight, which is ``(in, out)``), and for a linear
    map an output ``(batch, features)``, so that the BatchNorm's channel dim (dim 1) is the
    layer's output dim.
    """
    if out_ndim < 2:
        return False
    if layer.kind == "module":
        linear = isinstance(layer.target, nn.Linear)
    elif layer.op in ("linear", "conv1d", "conv2d", "conv3d"):
        linear = layer.op == "linear"
    else:
        return False
    return out_ndim == 2 or not linear
