"""Conservative sums of a relevance result: float64 sums over dims or over groups of entries of a dim.

Every operation of the ``relevance`` accessor sums with these helpers, so that the batch coords
(``prediction``, ``absorbed``, ``target``) are summed alike and ``attrs["pooling"]`` records
what was done.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from .contract import DecompositionWarning, find_batch_dim

__all__ = [
    "check_new_name",
    "coord_values",
    "finish",
    "member_positions",
    "pool",
    "require_dims",
    "sum_dims",
    "sum_members",
    "total",
    "warn_if_not_decomposition",
]

# The frames between warnings.warn and the caller of an accessor method: this helper, the
# operation's function and the accessor method.
_CALLER = 4


def member_positions(assign: np.ndarray, count: int) -> list[np.ndarray]:
    """Positions of the entries assigned to each of ``count`` outputs (-1: none), in order."""
    valid = assign >= 0
    order = np.flatnonzero(valid)[np.argsort(assign[valid], kind="stable")]
    sizes = np.bincount(assign[valid], minlength=count)
    return np.split(order, np.cumsum(sizes)[:-1])


def require_dims(R: xr.DataArray, dims: Sequence[Hashable]) -> None:
    unknown = [d for d in dims if d not in R.dims]
    if unknown:
        raise InputError(
            f"unknown dim(s) {unknown}; this result has dims {list(R.dims)}"
        )


def warn_if_not_decomposition(R: xr.DataArray, operation: str, stacklevel: int = _CALLER) -> None:
    if R.attrs.get("decomposes") == "none":
        method = R.attrs.get("method", "unknown method")
        warnings.warn(
            f"{operation}: this result ({method}) has decomposes='none', so its values "
            "do not add up to f(x) and summing them is not a decomposition; the sums "
            "conserve no prediction.",
            DecompositionWarning,
            stacklevel=stacklevel,
        )


def finish(R: xr.DataArray, result: xr.DataArray, entry: str) -> xr.DataArray:
    """``result`` with the attrs and name of ``R`` and ``entry`` appended to its pooling history."""
    attrs = dict(R.attrs)
    history = attrs.get("pooling")
    attrs["pooling"] = f"{history}; {entry}" if history else entry
    result.attrs = attrs
    result.name = R.name
    return result


def coord_values(R: xr.DataArray, dim: str, coord: str | None) -> tuple[str, np.ndarray]:
    """Values of ``coord`` (default: the index coordinate of ``dim``) along ``dim``."""
    require_dims(R, [dim])
    if coord is None:
        # A dim without an index coordinate falls back to positions 0..n-1 (xarray's
        # own convention for R[dim]).
        return dim, np.asarray(R[dim].values)
    if coord not in R.coords:
        raise InputError(
            f"unknown coord {coord!r}; coords along {dim!r} are "
            f"{[c for c in R.coords if R.coords[c].dims == (dim,)]}"
        )
    if R.coords[coord].dims != (dim,):
        raise InputError(
            f"coord {coord!r} has dims {R.coords[coord].dims}; working on "
            f"{dim!r} needs a 1-d coord along {dim!r}"
        )
    return coord, np.asarray(R.coords[coord].values)


def check_new_name(R: xr.DataArray, dim: str, new_dim: str, extra: Sequence[str] = ()) -> None:
    if new_dim != dim and new_dim in R.dims:
        raise InputError(
            f"name {new_dim!r} is already a dim of this result ({list(R.dims)})"
        )
    for name in (new_dim, *extra):
        if name in R.coords and dim not in R.coords[name].dims:
            raise InputError(
                f"the result would need a coord {name!r}, but a coord of that name "
                f"already exists on dims {R.coords[name].dims}"
            )


def sum_members(
    R: xr.DataArray,
    dim: str,
    members: Sequence[np.ndarray],
    new_dim: str,
    new_coords: Mapping[str, np.ndarray],
) -> tuple[xr.DataArray, str]:
    """Sum the entries ``members[k]`` of ``dim`` into entry k of ``new_dim``.

    When ``dim`` is the batch dim, ``prediction`` and ``absorbed`` are summed per
    output entry the same way, and ``target`` is kept only if it is the same for all
    members of every output entry. Returns the result and a note on the batch coords.
    """
    axis = R.get_axis_num(dim)
    data = R.values
    # Accumulate in float64 so that float32 results lose nothing beyond one rounding.
    parts = [
        np.take(data, idx, axis=axis).sum(axis=axis, dtype=np.float64) for idx in members
    ]
    out = np.stack(parts, axis=axis).astype(data.dtype, copy=False)
    dims = list(R.dims)
    dims[axis] = new_dim
    kept = {name: c.variable for name, c in R.coords.items() if dim not in c.dims}
    coords: dict[str, Any] = dict(kept)
    coords.update({name: (new_dim, np.asarray(v)) for name, v in new_coords.items()})
    note = ""
    if dim == find_batch_dim(R):
        note = _batch_coords_per_member(R, members, new_dim, coords)
    result = xr.DataArray(out, dims=dims, coords=coords)
    return result, note


def _batch_coords_per_member(
    R: xr.DataArray, members: Sequence[np.ndarray], new_dim: str, coords: dict[str, Any]
) -> str:
    for name in ("prediction", "absorbed"):
        if name in R.coords:
            values = R.coords[name].values
            coords[name] = (new_dim, np.array([values[idx].sum() for idx in members]))
    if "target" not in R.coords:
        return "prediction and absorbed summed"
    targets = R.coords["target"].values
    per_member = []
    for idx in members:
        unique = np.unique(targets[idx])
        if unique.size != 1:
            return "prediction and absorbed summed, target dropped (it differs)"
        per_member.append(unique[0])
    coords["target"] = (new_dim, np.asarray(per_member))
    return "prediction and absorbed summed"


def sum_dims(R: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """Sum over dims, accumulating in float64 and returning the original dtype."""
    if not dims:
        return R.copy()
    return R.astype(np.float64).sum(dim=list(dims), skipna=False).astype(R.dtype)


def total(R: xr.DataArray) -> xr.DataArray:
    """``R.relevance.total()``: the sum over every non-batch dim."""
    batch_dim = find_batch_dim(R)
    other = [d for d in R.dims if d != batch_dim]
    warn_if_not_decomposition(R, "total()")
    result = sum_dims(R, other)
    entry = "total: sum over " + ", ".join(map(str, other)) if other else "total (no-op)"
    return finish(R, result, entry)


def pool(R: xr.DataArray, *dims: str) -> xr.DataArray:
    """``R.relevance.pool(*dims)``: the sum over the named dims, the batch dim only when named."""
    if not dims:
        raise InputError(
            f"name the dims to pool over, e.g. R.relevance.pool({list(R.dims)[-1]!r}); "
            "use R.relevance.total() to sum all non-batch dims"
        )
    if len(set(dims)) != len(dims):
        raise InputError(f"dims given more than once: {list(dims)}")
    require_dims(R, dims)
    warn_if_not_decomposition(R, "pool()")
    batch_dim = find_batch_dim(R)
    result = sum_dims(R, list(dims))
    entry = f"sum over {', '.join(map(str, dims))}"
    if batch_dim is not None and batch_dim in dims:
        scalars: dict[str, Any] = {}
        for name in ("prediction", "absorbed"):
            if name in R.coords:
                scalars[name] = R.coords[name].values.sum()
        note = "prediction and absorbed summed"
        if "target" in R.coords:
            unique = np.unique(R.coords["target"].values)
            if unique.size == 1:
                scalars["target"] = unique[0]
            else:
                note += ", target dropped (it differs)"
        result = result.assign_coords(scalars)
        entry += f" ({note})"
    return finish(R, result, entry)
