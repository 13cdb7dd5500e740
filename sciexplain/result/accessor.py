"""The ``relevance`` accessor on ``xarray.DataArray``: conservative pooling of relevance.

Importing this module registers ``R.relevance``. Every method returns a new DataArray,
keeps the attrs and the per-sample coords (``prediction``, ``target``, ``absorbed``) and
appends what it did to ``attrs["pooling"]``, a "; "-separated history such as
``"sum over time; groups on channel (2 groups + remainder 'other')"``.

Pooling here always means *summing*: sums of an f(x) decomposition are again an f(x)
decomposition, so the ledger (relevance + absorbed == prediction) still holds afterwards.
Means and maxima do not conserve anything and are deliberately not offered.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from sciexplain.result import (
    DecompositionWarning,
    check_ledger,
    find_batch_dim,
    ledger_residual,
)
from ..errors import InputError

__all__ = ["RelevanceAccessor"]

# Relative tolerance (of the sampling step) used to place floating-point coordinates
# that lie on a window edge: 0.1 computed as 10 * 0.01 must fall in [0.1, 0.2).
_EDGE_TOLERANCE = 1e-6
_MAX_WINDOWS = 1_000_000
_MAX_LISTED = 40


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_LISTED])
    if len(values) > _MAX_LISTED:
        shown += f", ... ({len(values)} in all)"
    return shown


def _fmt(value: float) -> str:
    return f"{value:.6g}"


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


def _members(assign: np.ndarray, count: int) -> list[np.ndarray]:
    """Positions of the entries assigned to each of ``count`` outputs (-1: none), in order."""
    valid = assign >= 0
    order = np.flatnonzero(valid)[np.argsort(assign[valid], kind="stable")]
    sizes = np.bincount(assign[valid], minlength=count)
    return np.split(order, np.cumsum(sizes)[:-1])


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


@xr.register_dataarray_accessor("relevance")
class RelevanceAccessor:
    """Conservative operations on a relevance result: ``R.relevance.<method>(...)``.

    The batch dim is the dim that carries the ``prediction`` coord. After pooling over the
    batch dim, ``prediction`` is a scalar coord and the result has no batch dim.
    """

    def __init__(self, R: xr.DataArray) -> None:
        self._R = R

    # ---------------------------------------------------------------- helpers

    @property
    def batch_dim(self) -> str | None:
        """Name of the dim carrying ``prediction`` (None if the batch was pooled away)."""
        return find_batch_dim(self._R)

    def _require_dims(self, dims: Sequence[Hashable]) -> None:
        unknown = [d for d in dims if d not in self._R.dims]
        if unknown:
            raise InputError(
                f"unknown dim(s) {unknown}; this result has dims {list(self._R.dims)}"
            )

    def _warn_if_not_decomposition(self, operation: str) -> None:
        if self._R.attrs.get("decomposes") == "none":
            method = self._R.attrs.get("method", "unknown method")
            warnings.warn(
                f"{operation}: this result ({method}) has decomposes='none', so its values "
                "do not add up to f(x) and summing them is not a decomposition; the sums "
                "conserve no prediction.",
                DecompositionWarning,
                stacklevel=3,
            )

    def _finish(self, result: xr.DataArray, entry: str) -> xr.DataArray:
        attrs = dict(self._R.attrs)
        history = attrs.get("pooling")
        attrs["pooling"] = f"{history}; {entry}" if history else entry
        result.attrs = attrs
        result.name = self._R.name
        return result

    def _coord_values(self, dim: str, coord: str | None) -> tuple[str, np.ndarray]:
        """Values of ``coord`` (default: the index coordinate of ``dim``) along ``dim``."""
        self._require_dims([dim])
        if coord is None:
            # A dim without an index coordinate falls back to positions 0..n-1 (xarray's
            # own convention for R[dim]).
            return dim, np.asarray(self._R[dim].values)
        if coord not in self._R.coords:
            raise InputError(
                f"unknown coord {coord!r}; coords along {dim!r} are "
                f"{[c for c in self._R.coords if self._R.coords[c].dims == (dim,)]}"
            )
        if self._R.coords[coord].dims != (dim,):
            raise InputError(
                f"coord {coord!r} has dims {self._R.coords[coord].dims}; working on "
                f"{dim!r} needs a 1-d coord along {dim!r}"
            )
        return coord, np.asarray(self._R.coords[coord].values)

    def _check_new_name(self, dim: str, new_dim: str, extra: Sequence[str] = ()) -> None:
        if new_dim != dim and new_dim in self._R.dims:
            raise InputError(
                f"name {new_dim!r} is already a dim of this result ({list(self._R.dims)})"
            )
        for name in (new_dim, *extra):
            if name in self._R.coords and dim not in self._R.coords[name].dims:
                raise InputError(
                    f"the result would need a coord {name!r}, but a coord of that name "
                    f"already exists on dims {self._R.coords[name].dims}"
                )

    def _sum_members(
        self,
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
        R = self._R
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
        if dim == self.batch_dim:
            note = self._batch_coords_per_member(members, new_dim, coords)
        result = xr.DataArray(out, dims=dims, coords=coords)
        return result, note

    def _batch_coords_per_member(
        self, members: Sequence[np.ndarray], new_dim: str, coords: dict[str, Any]
    ) -> str:
        R = self._R
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

    def _sum(self, dims: Sequence[Hashable]) -> xr.DataArray:
        """Sum over dims, accumulating in float64 and returning the original dtype."""
        R = self._R
        if not dims:
            return R.copy()
        return R.astype(np.float64).sum(dim=list(dims), skipna=False).astype(R.dtype)

    # ---------------------------------------------------------------- pooling

    def total(self) -> xr.DataArray:
        """Sum over every non-batch dim.

        Returns
        -------
        xarray.DataArray
            Dims ``(batch,)``: per sample, the total relevance, which for an f(x)
            decomposition equals ``prediction - absorbed``. For ``decomposes ==
            "squared gradient norm"`` it is the squared gradient norm.
        """
        batch_dim = self.batch_dim
        other = [d for d in self._R.dims if d != batch_dim]
        self._warn_if_not_decomposition("total()")
        result = self._sum(other)
        entry = "total: sum over " + ", ".join(map(str, other)) if other else "total (no-op)"
        return self._finish(result, entry)

    def pool(self, *dims: str) -> xr.DataArray:
        """Sum relevance over the named dims.

        Summing conserves: the per-sample total and the ledger are unchanged. For
        ``decomposes == "squared gradient norm"`` the sums conserve the squared gradient
        norm instead (the ``decomposes`` attr is kept and says so); for ``"none"`` a
        :class:`~sciexplain.result.DecompositionWarning` is emitted.

        Pooling over the batch dim happens only when it is named explicitly. The per-sample
        coords ``prediction`` and ``absorbed`` are then summed as well, so the ledger still
        holds for the pooled batch; ``target`` is kept only if it is the same for all
        samples; other per-sample coords are dropped.

        Parameters
        ----------
        *dims : str
            Dims to sum over.

        Raises
        ------
        ValueError
            If no dim is given, a dim is repeated or a dim does not exist.
        """
        if not dims:
            raise InputError(
                f"name the dims to pool over, e.g. R.relevance.pool({list(self._R.dims)[-1]!r}); "
                "use R.relevance.total() to sum all non-batch dims"
            )
        if len(set(dims)) != len(dims):
            raise InputError(f"dims given more than once: {list(dims)}")
        self._require_dims(dims)
        self._warn_if_not_decomposition("pool()")
        R = self._R
        batch_dim = self.batch_dim
        result = self._sum(list(dims))
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
        return self._finish(result, entry)

    def group(
        self,
        dim: str,
        groups: Mapping[Hashable, Sequence[Any]] | None = None,
        *,
        by: str | None = None,
        coord: str | None = None,
        remainder: Any = "other",
        name: str | None = None,
    ) -> xr.DataArray:
        """Sum the entries of ``dim`` by groups of coordinate values.

        Parameters
        ----------
        dim : str
            The dim to group, e.g. ``"channel"``.
        groups : mapping of label -> sequence of coordinate values
            Each group sums the entries of ``dim`` whose ``coord`` value is in its list.
            Groups must not overlap (an entry would be counted twice).
        by : str, optional
            Instead of ``groups``: the name of a coord of integer group indices, either along
            ``dim`` or 2-d along (batch dim, ``dim``) so that every sample has its own grouping
            (subword tokens -> words per document). Entry ``k`` of the result sums the entries
            whose index is ``k``; entries with a negative index (e.g. padding) belong to no
            group and are collected under the label ``-1`` (``remainder=None`` drops them:
            a partial sum).
        coord : str, optional
            A 1-d coord along ``dim`` to match against, e.g. a condition label or a brain
            region per channel. Default: the index coordinate of ``dim`` (positions
            0..n-1 if it has none).
        remainder : str or None, default "other"
            Label of the group that collects entries in no group, so the total is
            conserved; it is omitted when empty. ``remainder=None`` drops those entries
            instead: the result is then a *partial* sum that no longer balances the
            ledger, and ``"partial"`` is recorded in ``attrs["pooling"]``.
        name : str, optional
            Name of the resulting dim (default ``dim``); its index coordinate holds the
            group labels.

        Returns
        -------
        xarray.DataArray
            ``dim`` replaced by one entry per group. Grouping the batch dim sums
            ``prediction`` and ``absorbed`` per group (``target`` is kept only if it is the
            same within every group), so the ledger holds per group. For ``decomposes ==
            "squared gradient norm"`` the group sums conserve the squared gradient norm.

        Raises
        ------
        ValueError
            On unknown coordinate values, overlapping or empty groups, a remainder label
            that is also a group label, or group labels of mixed types.
        """
        if by is not None:
            if groups is not None or coord is not None:
                raise InputError("give either groups= (with coord=) or by=, not both")
            return self._group_by(dim, by, remainder, name)
        coord_name, values = self._coord_values(dim, coord)
        if not isinstance(groups, Mapping) or not groups:
            raise InputError(
                "groups must be a non-empty mapping of label -> list of coordinate values"
            )
        new_dim = dim if name is None else name
        self._check_new_name(dim, new_dim)

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
        members = _members(assign, len(labels))
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

        self._warn_if_not_decomposition("group()")
        result, note = self._sum_members(dim, members, new_dim, {new_dim: label_array})
        if note:
            detail += f", {note}"
        target_dim = "" if new_dim == dim else f" into {new_dim}"
        return self._finish(result, f"groups on {dim}{by}{target_dim} ({detail})")

    def _group_by(self, dim: str, by: str, remainder: Any, name: str | None) -> xr.DataArray:
        """``group(dim, by=coord)``: integer group indices per entry, per sample if 2-d."""
        R = self._R
        self._require_dims([dim])
        batch = self.batch_dim
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
        self._warn_if_not_decomposition("group()")
        return self._finish(result, f"groups on {dim} {detail}")

    def windows(
        self,
        dim: str,
        size_or_edges: float | Sequence[float],
        *,
        coord: str | None = None,
        outside: str = "error",
    ) -> xr.DataArray:
        """Sum relevance in windows of a numeric coordinate, e.g. time in seconds.

        Parameters
        ----------
        dim : str
            The dim to window, e.g. ``"time"``.
        size_or_edges : float or sequence of float
            A window size: consecutive half-open windows ``[start, start + size)``
            starting at the smallest coordinate value (the last may hold fewer entries).
            Or window edges ``e0 < e1 < ...``: windows ``[e0, e1), [e1, e2), ...``, the
            last one closed ``[e_{n-1}, e_n]``.
        coord : str, optional
            A numeric 1-d coord along ``dim`` (default: the index coordinate of ``dim``).
        outside : {"error", "drop"}
            What to do with entries outside all windows (edges only): raise, or drop them
            (the result is then partial, recorded in ``attrs["pooling"]``).

        Returns
        -------
        xarray.DataArray
            ``dim`` replaced by one entry per window; index coordinate the window centre,
            plus coords ``<dim>_start`` and ``<dim>_end``. Empty windows sum to 0.

        Notes
        -----
        Coordinate values within a millionth of the sampling step of an edge count as on
        the edge, so floating-point times such as ``np.arange(28) / 100`` fall into
        ``[0, 0.1), [0.1, 0.2), [0.2, 0.3)`` as 10, 10 and 8 samples. Summing conserves
        the total (the squared gradient norm for ``decomposes == "squared gradient
        norm"``).
        """
        if outside not in ("error", "drop"):
            raise InputError(f"outside must be 'error' or 'drop', got {outside!r}")
        coord_name, raw = self._coord_values(dim, coord)
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
        self._check_new_name(dim, dim, (start_name, end_name))

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

        self._warn_if_not_decomposition("windows()")
        members = _members(assign, count)
        result, note = self._sum_members(
            dim,
            members,
            dim,
            {dim: (starts + ends) / 2, start_name: starts, end_name: ends},
        )
        by = "" if coord is None else f" by {coord_name}"
        if note:
            description += f", {note}"
        return self._finish(result, f"windows on {dim}{by} ({description})")

    # ---------------------------------------------------------------- parts and display

    def _part(self, keep: np.ndarray, part: str) -> xr.DataArray:
        data = self._R.values
        result = self._R.copy(data=np.where(keep, data, np.zeros((), dtype=data.dtype)))
        result = self._finish(result, f"{part} part")
        result.attrs["part"] = part
        result.attrs["decomposes"] = "none"
        return result

    def positive(self) -> xr.DataArray:
        """The positive part: values > 0, zero elsewhere.

        ``positive() + negative()`` equals the result. A part alone does not add up to
        f(x), so ``decomposes`` is set to ``"none"`` and ``part`` to ``"positive"``.
        """
        return self._part(self._R.values > 0, "positive")

    def negative(self) -> xr.DataArray:
        """The negative part: values <= 0, zero elsewhere (see :meth:`positive`)."""
        return self._part(self._R.values <= 0, "negative")

    def normalize(self, how: str = "max-abs") -> xr.DataArray:
        """Scale each batch element into [-1, 1] for display. For display only.

        The scaled values are **not a decomposition**: they no longer add up to f(x), so
        the result is named ``"relevance (display)"`` and has ``decomposes = "none"``.
        Pool or group before normalizing, never after.

        Parameters
        ----------
        how : {"max-abs", "sum-abs"}
            Divide by the largest absolute value or by the sum of absolute values of each
            batch element. An all-zero element stays zero.
        """
        if how not in ("max-abs", "sum-abs"):
            raise InputError(f"how must be 'max-abs' or 'sum-abs', got {how!r}")
        R = self._R
        batch_dim = self.batch_dim
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
        result = self._finish(R.copy(data=scaled), f"display scaling ({how} {per})")
        result.name = "relevance (display)"
        result.attrs["decomposes"] = "none"
        result.attrs["display"] = (
            f"divided by {formula} {per}; for display only, not a decomposition"
        )
        return result

    # ---------------------------------------------------------------- ledger

    def residual(self) -> xr.DataArray:
        """Per batch element: total relevance + absorbed - prediction (see ``ledger_residual``)."""
        return ledger_residual(self._R)

    def check(self, rtol: float = 1e-4, atol: float = 1e-5) -> None:
        """Raise ``LedgerError`` unless relevance + absorbed == prediction per sample.

        See :func:`sciexplain.result.check_ledger`.
        """
        check_ledger(self._R, rtol=rtol, atol=atol)
