"""Windows of a numeric coordinate (e.g. time in seconds): relevance summed per window."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from .summing import check_new_name, coord_values, finish, member_positions, sum_members, warn_if_not_decomposition

__all__ = ["windows"]

# Relative tolerance (of the sampling step) used to place floating-point coordinates
# that lie on a window edge: 0.1 computed as 10 * 0.01 must fall in [0.1, 0.2).
_EDGE_TOLERANCE = 1e-6
_MAX_WINDOWS = 1_000_000


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _size_windows(
    x: np.ndarray, size: float, step: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window index per entry, window starts and ends for consecutive windows of ``size``."""
    if not np.isfinite(size) or size <= 0:
        raise InputError(f"window size must be a positive finite number, got {size!r}")
    tol = _EDGE_TOLERANCE * min(step if step is not None else size, size)
    origin = float(x.min())
    assign = np.floor((x - origin + tol) / size).astype(np.int64)
    count = int(assign.max()) + 1
    if count > _MAX_WINDOWS:
        raise InputError(f"window size {size!r} gives {count} windows; choose a larger size")
    k = np.arange(count)
    return assign, origin + k * size, origin + (k + 1) * size


def _as_edges(size_or_edges: Any) -> np.ndarray:
    problem = f"size_or_edges must be a number or a sequence of numbers, got {size_or_edges!r}"
    if isinstance(size_or_edges, (str, bytes)):
        raise InputError(problem)
    try:
        edges = np.asarray(size_or_edges, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(problem) from error
    if edges.ndim != 1 or edges.size < 2:
        raise InputError(
            f"window edges must be a 1-d sequence of at least 2 numbers, got {size_or_edges!r}"
        )
    if not np.isfinite(edges).all():
        raise InputError(f"window edges must be finite, got {edges.tolist()}")
    if not (np.diff(edges) > 0).all():
        raise InputError(f"window edges must be strictly increasing, got {edges.tolist()}")
    return edges


def _edge_windows(
    x: np.ndarray, edges: np.ndarray, step: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window index per entry (-1 outside), starts and ends for [e0, e1), ..., [e_n-1, e_n]."""
    narrowest = float(np.min(np.diff(edges)))
    tol = _EDGE_TOLERANCE * min(step if step is not None else narrowest, narrowest)
    count = edges.size - 1
    assign = np.searchsorted(edges - tol, x, side="right") - 1
    assign[(assign == count) & (x <= edges[-1] + tol)] = count - 1  # the last edge is inclusive
    assign[assign >= count] = -1
    return assign, edges[:-1], edges[1:]


def windows(
    R: xr.DataArray,
    dim: str,
    size_or_edges: float | Sequence[float],
    *,
    coord: str | None = None,
    outside: str = "error",
) -> xr.DataArray:
    """``R.relevance.windows(dim, size_or_edges)``: sums over windows of sizes or between edges."""
    if outside not in ("error", "drop"):
        raise InputError(f"outside must be 'error' or 'drop', got {outside!r}")
    coord_name, raw = coord_values(R, dim, coord)
    if raw.dtype.kind not in "iuf":
        raise InputError(
            f"windows need a numeric coordinate, but {coord_name!r} has dtype "
            f"{raw.dtype}; use group() for labels"
        )
    x = raw.astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError(f"coord {coord_name!r} contains NaN/Inf; windows need finite values")
    unique = np.unique(x)
    step = float(np.min(np.diff(unique))) if unique.size > 1 else None
    start_name, end_name = f"{dim}_start", f"{dim}_end"
    check_new_name(R, dim, dim, (start_name, end_name))

    if isinstance(size_or_edges, numbers.Real) and not isinstance(
        size_or_edges, (bool, np.bool_)
    ):
        assign, starts, ends = _size_windows(x, float(size_or_edges), step)
        description = f"{starts.size} windows of {_fmt(float(size_or_edges))}"
    else:
        edges = _as_edges(size_or_edges)
        assign, starts, ends = _edge_windows(x, edges, step)
        description = f"edges {', '.join(_fmt(e) for e in edges)}"
    count = starts.size
    out = assign < 0
    if out.any():
        if outside == "error":
            raise InputError(
                f"{int(out.sum())} entries of {coord_name!r} (range "
                f"[{_fmt(x.min())}, {_fmt(x.max())}]) lie outside the windows "
                f"[{_fmt(starts[0])}, {_fmt(ends[-1])}]; widen the edges or pass "
                "outside='drop'"
            )
        description += (
            f", partial: {int(out.sum())} entries outside "
            f"[{_fmt(starts[0])}, {_fmt(ends[-1])}] dropped"
        )

    warn_if_not_decomposition(R, "windows()")
    members = member_positions(assign, count)
    result, note = sum_members(
        R,
        dim,
        members,
        dim,
        {dim: (starts + ends) / 2, start_name: starts, end_name: ends},
    )
    by = "" if coord is None else f" by {coord_name}"
    if note:
        description += f", {note}"
    return finish(R, result, f"windows on {dim}{by} ({description})")
