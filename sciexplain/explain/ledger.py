"""The relevance ledger: what entered, left and was absorbed at every layer, per sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from .._version import __version__
from ..rules.propagation import per_sample_sum
from ..kinds.registry import REGISTRY, Registry

if TYPE_CHECKING:  # pragma: no cover
    from .forward import Forward

__all__ = ["LedgerRow", "ledger_dataset", "rules_summary"]


@dataclass(frozen=True)
class LedgerRow:
    """One visited node of the LRP walk.

    ``entering = leaving + absorbed`` per sample (``entering`` and ``leaving`` are NaN unless
    the full ledger was asked for; ``absorbed`` is always computed). Each per-sample sum is
    taken over every dim but the batch dim of the tensor it is about, wherever that dim is
    (e.g. dim 1 of a (time, batch, features) tensor; see :func:`sciexplain.record.batch_axes.track_batch_axes`).
    """

    layer: str  # node name (module path, or op@scope)
    op: str  # readable type
    rule: str  # the rule that ran, or how relevance passed
    entering: torch.Tensor  # (batch,)
    leaving: torch.Tensor  # (batch,)
    absorbed: torch.Tensor  # (batch,)


def ledger_dataset(rows: list[LedgerRow], batch_dim: str, prediction: np.ndarray, Rx: torch.Tensor) -> xr.Dataset:
    """The per-layer ledger as an ``xarray.Dataset`` with dims ``(batch_dim, "layer")``."""
    def stack(field: str) -> np.ndarray:
        if not rows:
            return np.zeros((len(prediction), 0))
        return np.stack([getattr(r, field).numpy() for r in rows], axis=1)
    return xr.Dataset(
        {"entering": ((batch_dim, "layer"), stack("entering")),
         "leaving": ((batch_dim, "layer"), stack("leaving")),
         "absorbed": ((batch_dim, "layer"), stack("absorbed")),
         "input_relevance": ((batch_dim,), per_sample_sum(Rx.detach()).numpy()),
         "prediction": ((batch_dim,), prediction)},
        coords={"layer": [r.layer for r in rows], "op": ("layer", [r.op for r in rows]),
                "rule": ("layer", [r.rule for r in rows])},
        attrs={"description": "per-layer relevance ledger: entering = leaving + absorbed at each layer; "
                              "input_relevance + sum of absorbed = prediction",
               "sciexplain_version": __version__})


def rules_summary(fw: Forward, registry: Registry = REGISTRY) -> str:
    """Which rule ran on which layer: one line per affine layer (with weights, or pooling) and per
    registered leaf module, then one line per other kind with the number of its nodes."""
    lines = []
    other: dict[str, list[str]] = {}
    for _, st in sorted(fw.steps.items()):
        cat = st.kind.category
        if st.rule is not None and cat == "affine":
            flag = " [first layer]" if st.first else ""
            kind = st.kind.detail
            if st.fuse_after is not None:
                kind += f"+{type(st.fuse_after.target).__name__}"
            if st.fuse_before is not None:
                kind = f"{type(st.fuse_before.target).__name__}+" + kind
            lines.append(f"{_base(st.node.name)} ({kind}): {st.rule!r}{flag}")
        elif cat == "leaf":
            rule = repr(st.rule) if st.rule is not None else "its registered propagator"
            lines.append(f"{_base(st.node.name)} ({st.kind.detail}): {rule}")
        elif cat == "sum":
            other.setdefault(f"sums: {st.rule!r}", []).append(st.node.name)
        elif cat == "product":
            other.setdefault(f"products: {st.rule!r}", []).append(st.node.name)
        elif cat in ("pass", "layout", "embedding"):
            other.setdefault({"pass": "activations/identity: pass-through",
                              "layout": "reshapes/slicing/max pooling: relevance moves with entries",
                              "embedding": "embeddings: summed over the embedding dim"}[cat],
                             []).append(st.node.name)
        elif cat in registry.kinds and cat != "folded":  # folded BatchNorms are named on their layer
            # a kind registered beyond the built-in ones is listed by its own description
            rule = repr(st.rule) if st.rule is not None else registry.kinds[cat].description
            other.setdefault(f"{cat}: {rule}", []).append(st.node.name)
    # a module called many times (an unrolled recurrent cell, a reused layer) is one line
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    lines = [line if n == 1 else f"{line} [x{n} calls]" for line, n in counts.items()]
    for desc, names in other.items():
        lines.append(f"{desc} ({len(names)} ops)")
    return "\n".join(lines)


def _base(name: str) -> str:
    """A node name without the ``#k`` that numbers repeated calls of one module."""
    return name.split("#")[0]
