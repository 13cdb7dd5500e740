"""LRP of several inputs, and of a grouped batch whose views of each sample the model averages.

Several inputs (:mod:`sciexplain.explain.inputs`) are recorded as one input node each; one
backward walk gives the relevance of every explained input, and one ledger holds for all of
them: the inputs' relevance plus ``absorbed`` equals f(x), per sample. The result is an
``xarray.Dataset`` with one relevance variable per input (:func:`sciexplain.result.contract.build_dataset`).

A grouped batch (``views=k``): the model takes ``k`` views of each of ``n`` samples stacked along
the batch dim, view ``v`` of sample ``j`` at row ``v * n + j`` (test-time augmentation, e.g.
ICLabel's four flipped and negated topomaps), combines the views inside and returns ``n`` rows.
Each sample is explained in its own walk over its ``k`` views, which the engine treats as one
sample as a whole (nothing can mix samples there), so the ledger holds per sample exactly; the
relevance of every view is returned along a ``view`` dim after the batch dim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..kinds.affine_layers import forward_graph_needed
from ..kinds.registry import REGISTRY
from ..rules.presets import RuleMap
from .call import Call
from .forward import explained_text, prediction, targets
from .inputs import ModelInputs
from .ledger import ledger_dataset, rules_summary
from .walk import Walk, lrp_walk

__all__ = ["explain_several"]


def _lrp_once(call: Call, inputs: ModelInputs, target: Any, rule_map: RuleMap, leaf_names: set[str],
              batch: int, max_pool: str, full_ledger: bool):
    """One recorded forward pass and one backward walk over ``inputs``; the relevance per input."""
    grad = any(inputs.values[n].is_floating_point() for n in inputs.explained) and forward_graph_needed(call.model)
    fw = call._forward(inputs, grad=grad, leaf_names=leaf_names, batch=batch)
    call.plan(fw, rule_map)
    t = targets(target, fw.logits)
    fw.logits = fw.logits.detach()
    fw.tape.output = None
    with torch.no_grad():
        Rs, rows, filtered = lrp_walk(Walk(fw, max_pool, REGISTRY), t, full_ledger=full_ledger,
                                      inputs=len(inputs.explained))
    Rs = [torch.zeros(inputs.values[n].shape, dtype=fw.logits.dtype, device="cpu") if R is None else R.detach().cpu()
          for n, R in zip(inputs.explained, Rs)]
    absorbed = sum((r.absorbed for r in rows), fw.logits.new_zeros(batch)) + filtered
    return Rs, rows, absorbed.detach().cpu(), prediction(fw.logits, t), t.cpu(), fw


def _sample_targets(target: Any, n: int) -> list[Any]:
    """One target (or None) per original sample of a grouped batch."""
    if target is None:
        return [None] * n
    t = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target).reshape(-1)
    if t.size == 1:
        return [t[0]] * n
    if t.size != n:
        raise InputError(f"target has {t.size} entries for {n} samples (the batch of views divided by "
                         f"views=); give one int, one per sample, or None for the predicted class")
    return list(t)


def _dims_and_coords(name: str, ndim: int, dims: Any, coords: Any, views: int | None, single: bool):
    given = dims.get(name) if isinstance(dims, Mapping) else None
    if given is None:
        head = ("sample", "view") if views else ("sample",)
        given = head + tuple(f"{'' if single else name + '_'}dim_{i}" for i in range(ndim - len(head)))
    return tuple(given), (coords.get(name) if isinstance(coords, Mapping) else None)


def explain_several(call: Call, inputs: ModelInputs, target: Any, rule_map: RuleMap, leaf_names: set[str],
                    max_pool: str, dims: Any = None, coords: Any = None, views: int | None = None,
                    single: bool = False, full_ledger: bool = False):
    """LRP of several explained inputs (a Dataset), or of a grouped batch of views.

    Parameters
    ----------
    call, rule_map, leaf_names, max_pool
        As for the single-input explanation.
    inputs : ModelInputs
        The model's inputs and those explained.
    dims, coords : mapping, optional
        Per explained input, its dims (batch dim first, then ``"view"`` for a grouped batch) and
        coords; by default ``("sample", "<name>_dim_0", ...)``. With ``single`` a plain sequence
        and mapping, as for one input.
    views : int, optional
        The number of views of each sample in the batch (a grouped batch), or None.
    single : bool
        Return a DataArray (one explained input given as a tensor) instead of a Dataset.

    Returns
    -------
    (result, ledger)
        The relevance (DataArray or Dataset) and, with ``full_ledger``, the per-layer ledger.
    """
    from ..result.contract import build_dataset, build_result
    if single:
        dims, coords = {inputs.explained[0]: dims} if dims is not None else None, \
            {inputs.explained[0]: coords} if coords is not None else None
    for what, value in (("dims", dims), ("coords", coords)):
        if value is not None and not isinstance(value, Mapping):
            raise InputError(f"{what}= for several inputs is a mapping from each input's name to its {what} "
                             f"(inputs: {inputs.explained})")
        unknown = sorted(set(value or {}) - set(inputs.explained))
        if unknown:
            raise InputError(f"{what}= names {unknown}, which are not explained inputs {inputs.explained}")
    if views is None:
        Rs, rows, absorbed, pred, t, fw = _lrp_once(call, inputs, target, rule_map, leaf_names, inputs.batch,
                                                    max_pool, full_ledger)
        ledgers = [(rows, pred, sum(R.reshape(R.shape[0], -1).sum(dim=1) for R in Rs))]
    else:
        if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
            raise InputError(f"views= must be a positive int (views of each sample in the batch), got {views!r}")
        if inputs.batch % views:
            raise InputError(f"views={views}: the batch of {inputs.batch} rows is not a whole number of "
                             f"{views} views per sample")
        n = inputs.batch // views
        per_sample = []
        for j, tj in enumerate(_sample_targets(target, n)):
            rows_j = [v * n + j for v in range(views)]
            per_sample.append(_lrp_once(call, inputs.select(rows_j), tj, rule_map, leaf_names, 1, max_pool,
                                        full_ledger))
        Rs = [torch.stack([s[0][i] for s in per_sample]) for i in range(len(inputs.explained))]
        absorbed = torch.cat([s[2] for s in per_sample])
        pred = np.concatenate([s[3] for s in per_sample])
        t = torch.cat([s[4] for s in per_sample])
        fw = per_sample[0][5]
        ledgers = [(s[1], s[3], sum(R.sum().reshape(1) for R in s[0])) for s in per_sample]
    variables = {}
    for name, R in zip(inputs.explained, Rs):
        d, c = _dims_and_coords(name, R.ndim, dims, coords, views, single)
        variables[name] = (R, d, c)
    attrs = {"preset": rule_map.description, "explained": explained_text(fw, max_pool)}
    if views is not None:
        attrs["views"] = f"{views} views of each sample, stacked along the batch dim and combined by the model"
    common = dict(prediction=pred, target=t.numpy(), absorbed=absorbed.numpy(), method="lrp",
                  rules=rules_summary(fw), decomposes="f(x)", attrs=attrs)
    if single:
        ((R, d, c),) = variables.values()
        result = build_result(R, dims=d, coords=c, **common)
    else:
        result = build_dataset(variables, **common)
    led = None
    if full_ledger:
        import xarray as xr
        batch_dim = next(iter(variables.values()))[1][0]
        parts = [ledger_dataset(r, batch_dim, p, totals) for r, p, totals in ledgers]
        led = parts[0] if len(parts) == 1 else xr.concat(parts, dim=batch_dim)
    return result, led
