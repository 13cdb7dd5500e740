"""Grouping the entries of a dim: by lists of coordinate labels, or by per-entry group indices."""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from .contract import find_batch_dim
from .summing import (
    check_new_name,
    coord_values,
    finish,
    member_positions,
    require_dims,
    sum_members,
    warn_if_not_decomposition,
)

__all__ = ["group", "group_by"]

_MAX_LISTED = 40


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_LISTED])
    if len(values) > _MAX_LISTED:
        shown += f", ... ({len(values)} in all)"
    return shown


def _label_array(labels: Sequence[Any]) -> np.ndarray:
    """Group labels as one netCDF-storable array: all strings or all (non-bool) numbers."""
    is_str = [isinstance(label, str) for label in labels]
    is_num = [
        isinstance(label, (numbers.Real, np.integer, np.floating))
        and not isinstance(label, (bool, np.bool_))
        for label in labels
    ]
    if not (all(is_str) or all(is_num)):
        raise InputError(
            "group labels (including the remainder label) must be all strings or all "
            f"numbers, got {labels!r}; with numeric labels pass a numeric remainder or "
            "remainder=None"
        )
    return np.asarray(labels)


def group(
    R: xr.DataArray,
    dim: str,
    groups: Mapping[Hashable, Sequence[Any]] | None = None,
    *,
    by: str | None = None,
    coord: str | None = None,
    remainder: Any = "other",
    name: str | None = None,
) -> xr.DataArray:
    """``R.relevance.group(dim, groups)``: sum the entries of ``dim`` by lists of coordinate values."""
    if by is not None:
        if groups is not None or coord is not None:
            raise InputError("give either groups= (with coord=) or by=, not both")
        return group_by(R, dim, by, remainder, name)
    coord_name, values = coord_values(R, dim, coord)
    if not isinstance(groups, Mapping) or not groups:
        raise InputError(
            "groups must be a non-empty mapping of label -> list of coordinate values"
        )
    new_dim = dim if name is None else name
    check_new_name(R, dim, new_dim)

    available = list(dict.fromkeys(values.tolist()))
    available_set = set(available)
    group_of: dict[Any, Hashable] = {}
    unknown: list[Any] = []
    for label, listed in groups.items():
        if isinstance(listed, (str, bytes)) or not isinstance(
            listed, (Sequence, np.ndarray, set, frozenset)
        ):
            raise InputError(
                f"group {label!r} must be a list of {coord_name!r} values, got "
                f"{listed!r}; write [{listed!r}] for a single value"
            )
        listed_values = [v.item() if isinstance(v, np.generic) else v for v in listed]
        if not listed_values:
            raise InputError(
                f"group {label!r} is empty; give at least one {coord_name!r} value"
            )
        for value in listed_values:
            if value not in available_set:
                if value not in unknown:
                    unknown.append(value)
                continue
            other = group_of.setdefault(value, label)
            if other != label:
                raise InputError(
                    f"groups overlap: {coord_name!r} value {value!r} is in group "
                    f"{other!r} and in group {label!r}; overlapping groups would "
                    "double-count its relevance"
                )
    if unknown:
        raise InputError(
            f"values {unknown} of groups are not in coord {coord_name!r} along "
            f"{dim!r}; available: {_listing(available)}"
        )

    labels = list(groups)
    if remainder is not None and remainder in groups:
        raise InputError(
            f"remainder label {remainder!r} is also a group label; choose another "
            "remainder name"
        )
    position = {label: k for k, label in enumerate(labels)}
    assign = np.array(
        [position[group_of[v]] if v in group_of else -1 for v in values.tolist()],
        dtype=np.intp,
    )
    members = member_positions(assign, len(labels))
    left_over = np.flatnonzero(assign == -1)

    by = "" if coord is None else f" by {coord_name}"
    if left_over.size and remainder is not None:
        labels.append(remainder)
        members.append(left_over)
        detail = f"{len(groups)} groups + remainder {remainder!r}"
    elif left_over.size:
        detail = (
            f"{len(groups)} groups, partial: {left_over.size} entries in no group "
            "dropped"
        )
    else:
        detail = f"{len(groups)} groups"
    label_array = _label_array(labels)

    warn_if_not_decomposition(R, "group()")
    result, note = sum_members(R, dim, members, new_dim, {new_dim: label_array})
    if note:
        detail += f", {note}"
    target_dim = "" if new_dim == dim else f" into {new_dim}"
    return finish(R, result, f"groups on {dim}{by}{target_dim} ({detail})")


def group_by(R: xr.DataArray, dim: str, by: str, remainder: Any, name: str | None) -> xr.DataArray:
    """``group(dim, by=coord)``: integer group indices per entry, per sample if 2-d."""
    require_dims(R, [dim])
    batch = find_batch_dim(R)
    if dim == batch:
        raise InputError(f"by= groups entries of a non-batch dim; {dim!r} is the batch dim: use groups=")
    if by not in R.coords:
        raise InputError(f"unknown coord {by!r}; coords are {sorted(map(str, R.coords))}")
    index = R.coords[by]
    if index.dims == (dim,):
        idx = np.broadcast_to(np.asarray(index.values), (R.sizes[batch] if batch else 1, R.sizes[dim]))
    elif batch is not None and set(index.dims) == {batch, dim} and index.ndim == 2:
        idx = np.asarray(index.transpose(batch, dim).values)
    else:
        raise InputError(f"coord {by!r} has dims {index.dims}; by= needs integer group indices along "
                         f"{dim!r} or along ({batch!r}, {dim!r})")
    if idx.dtype.kind not in "iu":
        raise InputError(f"coord {by!r} must hold integer group indices (negative: no group), got dtype "
                         f"{idx.dtype}")
    new_dim = by if name is None else name
    if new_dim != dim and new_dim in R.dims:
        raise InputError(f"name {new_dim!r} is already a dim of this result ({list(R.dims)})")
    n_groups = int(idx.max()) + 1 if idx.size and idx.max() >= 0 else 0
    outside = bool((idx < 0).any())
    keep_rest = outside and remainder is not None
    width = n_groups + (1 if keep_rest else 0)
    if n_groups == 0:
        raise InputError(f"coord {by!r} assigns no entry to a group (all indices negative)")
    target = np.where(idx < 0, n_groups if keep_rest else -1, idx)
    batch_axis = R.get_axis_num(batch) if batch is not None else None
    data = np.asarray(R.values, dtype=np.float64)
    if batch_axis is None:
        data = data[None]
        moved = np.moveaxis(data, R.get_axis_num(dim) + 1, -1)
    else:
        moved = np.moveaxis(data, [batch_axis, R.get_axis_num(dim)], [0, -1])
    flat = moved.reshape(moved.shape[0], -1, moved.shape[-1])
    out = np.zeros((flat.shape[0], flat.shape[1], width))
    for b in range(flat.shape[0]):
        sel = target[b] >= 0
        np.add.at(out[b], (slice(None), target[b][sel]), flat[b][:, sel])
    out = out.reshape(moved.shape[:-1] + (width,))
    other_dims = [d for d in R.dims if d not in (batch, dim)]
    dims = ([batch] if batch is not None else []) + other_dims + [new_dim]
    if batch_axis is None:
        out = out[0]
    result = xr.DataArray(out.astype(R.dtype, copy=False), dims=dims)
    result = result.transpose(*[new_dim if d == dim else d for d in R.dims])
    kept = {c: v.variable for c, v in R.coords.items() if dim not in v.dims}
    labels = np.arange(n_groups).tolist() + ([-1] if keep_rest else [])
    result = result.assign_coords(kept).assign_coords({new_dim: np.asarray(labels)})
    detail = f"{n_groups} groups by {by}" + (" + entries in no group (-1)" if keep_rest else "")
    if outside and not keep_rest:
        detail += ", partial: entries in no group dropped"
    warn_if_not_decomposition(R, "group()", stacklevel=5)  # called through group()
    return finish(R, result, f"groups on {dim} {detail}")
