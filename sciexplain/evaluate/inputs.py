"""Inputs and relevance as the evaluations take them: a batch tensor, and relevance aligned to its axes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..errors import InputError


def _as_tensor(x: Any, what: str = "x") -> torch.Tensor:
    if isinstance(x, xr.DataArray):
        x = x.values
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError(f"{what} is an object array; pass numbers")
        x = torch.from_numpy(np.array(x, copy=True))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor or numpy array with the batch dim first, got "
                         f"{type(x).__name__}")
    if x.ndim < 2:
        raise InputError(f"{what} has shape {tuple(x.shape)}: it needs a batch dim first, shape (batch, ...)")
    if x.shape[0] == 0:
        raise InputError(f"{what} is an empty batch")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise InputError(f"{what} contains NaN/Inf")
    return x.detach()


def _batch_dim_of(R: xr.DataArray) -> str:
    if "prediction" in R.coords and R.coords["prediction"].ndim == 1:
        return R.coords["prediction"].dims[0]
    return R.dims[0]


def _embeddings(x_shape: Sequence[int], r_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Every increasing choice of x axes whose sizes equal ``r_shape`` (axes counted without batch)."""
    out = []
    for axes in itertools.combinations(range(len(x_shape)), len(r_shape)):
        if all(x_shape[a] == n for a, n in zip(axes, r_shape)):
            out.append(axes)
    return out


def _align_relevance(R: Any, x: torch.Tensor, x_dims: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, tuple[int, ...], dict]:
    """Relevance as a float64 array ``(batch, ...)`` and the axes of ``x`` (without batch) it covers.

    Dims are matched by name when ``x_dims`` (names of x's dims, batch first) is given and ``R``
    is a DataArray; otherwise by shape: R's dims after the batch must equal x's dims after the
    batch, or a subsequence of them (R pooled over e.g. a colour dim: a position of R then stands
    for all entries of x along the pooled dims). An ambiguous shape match is an error.
    """
    info: dict[str, Any] = {"batch_dim": "sample", "batch_coords": {}, "target": None, "prediction": None,
                            "method": None}
    x_shape = tuple(x.shape[1:])
    if isinstance(R, xr.DataArray):
        bdim = _batch_dim_of(R)
        if R.dims[0] != bdim:
            R = R.transpose(bdim, ...)
        info["batch_dim"] = bdim
        for name, c in R.coords.items():
            if c.dims == (bdim,) and name not in ("prediction", "absorbed", "filtered_out"):
                info["batch_coords"][name] = c.values
        if "target" in R.coords and R.coords["target"].ndim == 1:
            info["target"] = np.asarray(R.coords["target"].values)
        if "prediction" in R.coords and R.coords["prediction"].ndim == 1:
            info["prediction"] = np.asarray(R.coords["prediction"].values, dtype=np.float64)
        info["method"] = R.attrs.get("method")
        names = list(R.dims[1:])
        values = np.asarray(R.values, dtype=np.float64)
    else:
        if isinstance(R, torch.Tensor):
            R = R.detach().cpu().numpy()
        try:
            values = np.asarray(R, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"R must be a DataArray, tensor or numeric array: {err}") from None
        names = None
    if values.ndim < 1 or values.shape[0] != x.shape[0]:
        raise InputError(f"R has shape {values.shape} but x has a batch of {x.shape[0]}: give one "
                         "explanation per sample of x, batch dim first")
    if np.isnan(values).any():
        raise InputError(f"R contains {int(np.isnan(values).sum())} NaN value(s); rank only finite relevance")
    r_shape = values.shape[1:]
    if x_dims is not None and names is not None:
        x_dims = list(x_dims)
        if len(x_dims) != x.ndim:
            raise InputError(f"x_dims has {len(x_dims)} names for x with {x.ndim} dims (batch first)")
        missing = [n for n in names if n not in x_dims[1:]]
        if missing:
            raise InputError(f"R's dims {missing} are not among x_dims {x_dims[1:]}")
        axes = tuple(x_dims[1:].index(n) for n in names)
        order = np.argsort(axes)
        axes = tuple(sorted(axes))
        values = values.transpose(0, *(int(i) + 1 for i in order))
        if tuple(x_shape[a] for a in axes) != values.shape[1:]:
            raise InputError(f"R's dims {names} have sizes {r_shape}, x's dims {[x_dims[a + 1] for a in axes]} "
                             f"have sizes {[x_shape[a] for a in axes]}")
        return values, axes, info
    found = _embeddings(x_shape, r_shape)
    if not found:
        raise InputError(f"R of shape {values.shape} does not match x of shape {tuple(x.shape)}: after the "
                         "batch dim, R's dims must equal x's, or be a subsequence of them (relevance pooled "
                         "over e.g. a colour dim)")
    if len(found) > 1:
        raise InputError(f"R of shape {values.shape} matches x of shape {tuple(x.shape)} in {len(found)} "
                         f"ways ({found}); pass x_dims= (names of x's dims, batch first) to match R's dims "
                         "by name")
    return values, found[0], info
