"""Explanation continuity: the largest ratio ||R(x) - R(x')||_1 / ||x - x'||_2 along a path of inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from .._version import __version__
from ..errors import InputError
from .inputs import _as_tensor, _batch_dim_of


def _relevance_values(R: Any, n: int) -> np.ndarray:
    if isinstance(R, xr.DataArray):
        bdim = _batch_dim_of(R)
        R = R.transpose(bdim, ...).values
    elif isinstance(R, torch.Tensor):
        R = R.detach().cpu().numpy()
    values = np.asarray(R, dtype=np.float64)
    if values.ndim < 1 or values.shape[0] != n:
        raise InputError(f"explain returned shape {values.shape} for {n} inputs; it must return one "
                         "explanation per input, batch dim first")
    return values.reshape(n, -1)


def continuity(explain: Callable[[torch.Tensor], Any], inputs: Any) -> xr.DataArray:
    """Explanation continuity along a path of inputs (Montavon et al. 2017, Sec. 7.1).

    For consecutive inputs ``x, x'`` of the sequence the ratio ``||R(x) - R(x')||_1 /
    ||x - x'||_2`` is computed; the continuity of the explanation method on that path is the
    maximum (a Lipschitz-like constant: bounded for continuous explanations, growing without
    bound as the steps shrink across a discontinuity).

    Parameters
    ----------
    explain : callable
        ``explain(x_batch) -> relevance`` (DataArray, tensor or array, batch first), e.g.
        ``lambda x: sx.explain(model, x, target=0, preset=sx.rules.ZPlus())``. It receives the
        whole sequence as one batch.
    inputs : tensor or array, shape (n, ...)
        The path, n >= 2 inputs in order; consecutive inputs must differ.

    Returns
    -------
    xarray.DataArray
        The ratio per consecutive pair (dim ``pair``, coords ``distance``: ||x - x'||_2);
        ``attrs["continuity"]`` and ``.max()`` give the maximum.
    """
    xs = _as_tensor(inputs, "inputs")
    n = xs.shape[0]
    if n < 2:
        raise InputError("continuity needs a sequence of at least 2 inputs")
    flat = xs.reshape(n, -1).double()
    dist = (flat[1:] - flat[:-1]).norm(dim=1).numpy()
    if (dist == 0).any():
        raise InputError(f"inputs {np.flatnonzero(dist == 0).tolist()} equal their successors: consecutive "
                         "inputs must differ")
    R = _relevance_values(explain(xs.clone()), n)
    diff = np.abs(R[1:] - R[:-1]).sum(axis=1)
    ratio = diff / dist
    return xr.DataArray(ratio, dims=("pair",), coords={"pair": np.arange(n - 1), "distance": ("pair", dist),
                                                       "relevance_change": ("pair", diff)},
                        name="continuity_ratio",
                        attrs={"continuity": float(ratio.max()),
                               "description": "||R(x) - R(x')||_1 / ||x - x'||_2 per consecutive pair; "
                                              "continuity = the maximum", "sciexplain_version": __version__})
