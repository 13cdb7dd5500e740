"""How well a ClArC correction worked: accuracy on clean and on artifact data, and the artifact's
share of the relevance, per model (:func:`clarc_report`), with the artifact given as a mask per sample
(:func:`artifact_mask`, :func:`relevance_share`). The corrections themselves are in
:mod:`sciexplain.analysis.clarc`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError
from .clarc import _as_tensor

__all__ = ["clarc_report", "relevance_share", "artifact_mask"]


def _batch(x: Any, model: nn.Module) -> torch.Tensor:
    """A batch tensor of ``x``: tensors and arrays as they are, a plugin's native data through its domain."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return _as_tensor(x, model)
    from ..plugins import load_domains
    for domain in load_domains().values():
        if domain.claims(x):
            return _as_tensor(domain.to_tensor(x, model)[0], model)
    raise InputError(f"cannot read a batch from data of type {type(x).__name__}: pass a tensor or array, or data "
                     "that an installed plugin claims (e.g. sciexplain_text.Documents)")


@torch.no_grad()
def _accuracy(model: nn.Module, x: Any, y: Any, batch_size: int = 512) -> float:
    x = _batch(x, model)
    y = np.asarray(y)
    if len(x) != len(y):
        raise InputError(f"{len(x)} samples but {len(y)} labels")
    was = model.training
    model.eval()
    try:
        pred = torch.cat([model(x[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(x), batch_size)])
    finally:
        model.train(was)
    return float((pred.numpy() == y).mean())


def artifact_mask(R: xr.DataArray, mask: Any) -> np.ndarray:
    """``mask`` as a boolean array shaped like ``R`` (batch dim first), one mask per sample.

    Parameters
    ----------
    R : xarray.DataArray
        A relevance result.
    mask : array, xarray.DataArray or callable
        * an array shaped like one sample's map (or broadcastable to it): the same region in every sample;
        * an array shaped like ``R`` (batch dim first; broadcastable to it): one region per sample;
        * a DataArray whose dims are dims of ``R`` (e.g. ``("document", "token")``): aligned by dim
          name and broadcast over the others, one region per sample where it has the batch dim;
          index coords it shares with ``R`` must be equal;
        * a callable ``mask(R)`` returning one of the above, for regions that a result's labels
          locate (e.g. ``sciexplain_text.header_mask``, the header tokens of each post).

    Returns
    -------
    numpy.ndarray of bool
        Shape ``R.shape``.
    """
    if callable(mask) and not isinstance(mask, (np.ndarray, xr.DataArray)):
        mask = mask(R)
    if isinstance(mask, xr.DataArray):
        extra = [d for d in mask.dims if d not in R.dims]
        if extra:
            raise InputError(f"the mask has dims {extra} that the relevance {tuple(R.dims)} lacks")
        try:
            xr.align(R, mask, join="exact", copy=False)
        except ValueError as err:
            raise InputError(f"the mask's coords do not match the relevance's: {err}") from err
        for d in mask.dims:
            if mask.sizes[d] != R.sizes[d]:
                raise InputError(f"the mask has {mask.sizes[d]} entries along {d!r}, the relevance {R.sizes[d]}")
        return np.asarray(mask.variable.set_dims(dict(R.sizes)).transpose(*R.dims).values, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.number) or m.dtype == bool):
            raise InputError(f"the mask must be boolean, got dtype {m.dtype}")
        m = m != 0
    try:
        if m.ndim >= R.ndim:  # one mask per sample
            return np.broadcast_to(m, R.shape)
        return np.broadcast_to(m, R.shape[1:])[None].repeat(len(R), 0)
    except ValueError as err:
        raise InputError(f"a mask of shape {m.shape} fits neither one sample's map {R.shape[1:]} nor the relevance "
                         f"{R.shape} (dims {tuple(R.dims)})") from err


def relevance_share(R: xr.DataArray, mask: Any) -> np.ndarray:
    """Per sample: the share of absolute relevance inside ``mask``, ``sum_mask |R| / sum |R|``.

    ``mask`` is one region for all samples (boolean, shaped like one sample's map or broadcastable
    to it) or one region per sample (an array shaped like ``R``, a DataArray aligned by dim name,
    or a callable of ``R``): see :func:`artifact_mask`. 0 for a sample without relevance.
    """
    values = np.abs(np.asarray(R.values, dtype=np.float64))
    m = artifact_mask(R, mask)
    flat = values.reshape(len(values), -1)
    inside = (flat * m.reshape(len(values), -1)).sum(1)
    total = flat.sum(1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def clarc_report(models: Mapping[str, nn.Module], x_clean: Any, y_clean: Any, x_artifact: Any, y_artifact: Any,
                 mask: Any, *, explain_target: Any = None,
                 explain: Callable[[nn.Module, Any], xr.DataArray] | None = None,
                 **explain_kwargs: Any) -> xr.Dataset:
    """Accuracy on clean and on artifact data, and the artifact region's share of relevance, per model.

    Parameters
    ----------
    models : mapping of name -> torch.nn.Module
        E.g. ``{"original": model, "P-ClArC": PClArC(...), "A-ClArC": AClArC(...).fit(...)}``.
    x_clean, y_clean : the clean test inputs and labels.
    x_artifact, y_artifact : the same kind of inputs with the artifact planted, and their true labels.
        Inputs are tensors, arrays, or a plugin's native data (e.g. ``sciexplain_text.Documents``):
        the accuracy reads the domain's batch tensor, and the default explanation dispatches the
        native data, so the relevance keeps the domain's dims and labels.
    mask : array, xarray.DataArray or callable
        Where the artifact lies: one region for every sample (shaped like one sample's map, as
        before), one region per sample (an array shaped like the relevance, batch dim first, or a
        DataArray aligned on the relevance's dims), or a callable ``mask(R)`` that finds it in each
        explanation (e.g. ``sciexplain_text.header_mask``). See :func:`artifact_mask`.
    explain_target : optional
        The class explained on the artifact data (default: each model's prediction).
    explain : callable, optional
        ``explain(model, x_artifact) -> DataArray``: how each model is explained (e.g. a domain's
        own function). Default: :func:`sciexplain.explain` with ``explain_target`` and
        ``**explain_kwargs``; give those to your callable instead when you pass one.
    **explain_kwargs
        Passed to :func:`sciexplain.explain` (``preset=...``).

    Returns
    -------
    xarray.Dataset
        Dim ``model``: ``accuracy_clean``, ``accuracy_artifact``, ``artifact_share`` (mean over the
        artifact samples of :func:`relevance_share` of the explanation); ``artifact_share_per_sample``
        with dims ``(model, <the relevance's batch dim>)``.
    """
    from ..explain.engine import explain as _explain

    if explain is not None and (explain_target is not None or explain_kwargs):
        raise InputError("with explain= the callable decides the target and options: pass explain_target and "
                         f"{sorted(explain_kwargs) or 'the options'} inside it, not to clarc_report")

    def default(model: nn.Module, data: Any) -> xr.DataArray:
        native = not isinstance(data, (torch.Tensor, np.ndarray))
        return _explain(model, data if native else _as_tensor(data, model), explain_target, **explain_kwargs)

    run = default if explain is None else explain
    names = list(models)
    acc_c, acc_a, shares = [], [], []
    batch_dim = None
    for name in names:
        m = models[name]
        acc_c.append(_accuracy(m, x_clean, y_clean))
        acc_a.append(_accuracy(m, x_artifact, y_artifact))
        R = run(m, x_artifact)
        if not isinstance(R, xr.DataArray):
            raise InputError(f"explaining {name!r} returned {type(R).__name__}, not a relevance DataArray")
        batch_dim = R.dims[0] if batch_dim is None else batch_dim
        shares.append(relevance_share(R, mask))
    lengths = {len(s) for s in shares}
    if len(lengths) > 1:
        raise InputError(f"the models' explanations hold different numbers of samples {sorted(lengths)}")
    return xr.Dataset(
        {"accuracy_clean": ("model", acc_c), "accuracy_artifact": ("model", acc_a),
         "artifact_share": ("model", [float(s.mean()) for s in shares]),
         "artifact_share_per_sample": (("model", batch_dim), np.stack(shares))},
        coords={"model": names},
        attrs={"analysis": "ClArC report (Anders et al. 2022)", "sciexplain_version": __version__,
               "artifact_share": "mean over artifact samples of sum_mask |R| / sum |R|"},
    )
