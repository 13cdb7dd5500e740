"""Views of a relevance result for display, which are not decompositions: its signed parts and scaling."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InputError
from .contract import find_batch_dim
from .summing import finish

__all__ = ["negative", "normalize", "positive"]


def _part(R: xr.DataArray, keep: np.ndarray, part: str) -> xr.DataArray:
    data = R.values
    result = R.copy(data=np.where(keep, data, np.zeros((), dtype=data.dtype)))
    result = finish(R, result, f"{part} part")
    result.attrs["part"] = part
    result.attrs["decomposes"] = "none"
    return result


def positive(R: xr.DataArray) -> xr.DataArray:
    """``R.relevance.positive()``: values > 0, zero elsewhere."""
    return _part(R, R.values > 0, "positive")


def negative(R: xr.DataArray) -> xr.DataArray:
    """``R.relevance.negative()``: values <= 0, zero elsewhere."""
    return _part(R, R.values <= 0, "negative")


def normalize(R: xr.DataArray, how: str = "max-abs") -> xr.DataArray:
    """``R.relevance.normalize(how)``: each batch element scaled into [-1, 1], for display only."""
    if how not in ("max-abs", "sum-abs"):
        raise InputError(f"how must be 'max-abs' or 'sum-abs', got {how!r}")
    batch_dim = find_batch_dim(R)
    data = R.values
    axes = tuple(i for i, d in enumerate(R.dims) if d != batch_dim)
    magnitude = np.abs(data)
    if how == "max-abs":
        scale = magnitude.max(axis=axes, keepdims=True) if data.size else magnitude
    else:
        scale = magnitude.sum(axis=axes, keepdims=True)
    scale = np.where(scale > 0, scale, np.ones((), dtype=scale.dtype))
    scaled = np.clip(data / scale, -1, 1).astype(data.dtype, copy=False)
    per = f"per {batch_dim}" if batch_dim is not None else "over the whole array"
    formula = "max |R|" if how == "max-abs" else "sum |R|"
    result = finish(R, R.copy(data=scaled), f"display scaling ({how} {per})")
    result.name = "relevance (display)"
    result.attrs["decomposes"] = "none"
    result.attrs["display"] = (
        f"divided by {formula} {per}; for display only, not a decomposition"
    )
    return result
