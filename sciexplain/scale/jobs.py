"""Chunks of work: the job one chunk is, how it fails, and the data and explanation setup the runners share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError, SciexplainError
from .sources import _ArraySource, _as_source, _Slice


class SampleError(SciexplainError, RuntimeError):
    """Explaining or evaluating one sample failed; ``index`` is its position in the data set.

    Chunks finished before the failure stay written and marked; rerunning resumes after them.
    """

    def __init__(self, message: str, index: int | None = None, chunk: int | None = None):
        super().__init__(message)
        self.index = index
        self.chunk = chunk

    def __reduce__(self):  # keep index and chunk when a worker process sends the error back
        return (type(self), (self.args[0], self.index, self.chunk))


@dataclass
class _Job:
    """One chunk of work. Carries either the input slice ``x`` or a source that the worker reads."""

    index: int
    start: int
    stop: int
    x: np.ndarray | None = None
    source: Any = None
    target: Any = None
    extra: dict = field(default_factory=dict)

    def inputs(self) -> np.ndarray:
        return self.x if self.x is not None else self.source.read(self.start, self.stop)


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _targets(target: Any, n: int) -> np.ndarray | int | None:
    if target is None or isinstance(target, (int, np.integer)):
        return target
    t = np.asarray(target)
    if t.ndim != 1 or len(t) != n:
        raise InputError(f"target must be None, one int, or one int per sample ({n}); got shape {t.shape}")
    return t.astype(np.int64)


def _target_slice(target: Any, start: int, stop: int) -> Any:
    if isinstance(target, np.ndarray):
        return target[start:stop]
    return target


def _split_coords(shape: tuple, dims: tuple, coords: Mapping | None) -> tuple[dict, dict]:
    """Split user coords into (coords along the batch dim, the rest), in the forms xarray takes."""
    if not coords:
        return {}, {}
    import dask.array as da
    template = xr.DataArray(da.zeros(shape, chunks=shape), dims=dims, coords=coords)
    batch, rest = {}, {}
    for name, c in template.coords.items():
        if dims[0] in c.dims:
            if c.dims[0] != dims[0]:
                raise InputError(f"coord {name!r} has dims {c.dims}; a coord along the batch dim must have it "
                                 f"first ({dims[0]!r}, ...)")
            # per-sample labels (1-d) or per-sample labels of positions (e.g. the words of each
            # document, (document, token)): written once into the store with the layout
            batch[name] = (c.dims, np.asarray(c.values))
        else:
            rest[name] = (c.dims, np.asarray(c.values))
    return batch, rest


def _explain_spec(model: Any, kwargs: dict, dims: Sequence[str], coords: Mapping) -> dict:
    known = {"method", "preset", "bounds", "max_pool", "at", "through"}
    spec = {"method": kwargs.get("method", "lrp"), "preset": kwargs.get("preset") or "epsilon-plus",
            "bounds": kwargs.get("bounds"), "max_pool": kwargs.get("max_pool", "winner-take-all"),
            "at": kwargs.get("at"), "through": kwargs.get("through"),
            "options": {k: v for k, v in kwargs.items() if k not in known}, "dims": tuple(dims),
            "coords": dict(coords)}
    for key in ("dims", "coords", "data", "x"):
        if key in spec["options"]:
            raise InputError(f"{key}= is set by explain_dataset itself; pass dims/coords as its own arguments")
    return spec


def _data_setup(data: Any, chunk: Any, dims: Sequence[str] | None, coords: Mapping | None) -> tuple:
    """Check ``chunk`` and the data; return ``(source, n, dims, batch_coords, other_coords)``."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"chunk must be a positive number of samples, got {chunk!r}")
    if isinstance(data, xr.DataArray):
        dims = tuple(dims or data.dims)
        if coords is None:
            coords = {n: (c.dims, c.values) for n, c in data.coords.items()}
    source = _as_source(data)
    n = source.shape[0] if source.shape else 0
    if len(source.shape) < 2 or n == 0:
        raise InputError(f"data has shape {source.shape}: it needs samples along the first dim, shape (n, ...)")
    dims = tuple(dims) if dims is not None else ("sample",) + tuple(f"dim_{i}" for i in range(len(source.shape) - 1))
    if len(dims) != len(source.shape):
        raise InputError(f"dims {dims} do not match the data's shape {source.shape}")
    batch_coords, other_coords = _split_coords(source.shape, dims, coords)
    return source, n, dims, batch_coords, other_coords


def _evaluation_setup(model: Any, data: Any, chunk: Any, dims: Sequence[str] | None, coords: Mapping | None,
                      target: Any, explain_kwargs: dict) -> tuple[Any, int, dict, Any]:
    source, n, dims, _, other_coords = _data_setup(data, chunk, dims, coords)
    spec = _explain_spec(model, explain_kwargs, dims, other_coords)
    return source, n, spec, _targets(target, n)


def _evaluation_jobs(source: Any, n: int, chunk: int, scheduler: Any, target: Any, extra: dict) -> list[_Job]:
    local = scheduler in ("serial", "sync", "synchronous", "threads")
    jobs = []
    for i, (start, stop) in enumerate(_chunks(n, chunk)):
        job_source = source if (local or not isinstance(source, _ArraySource)) else _Slice(source, start, stop)
        jobs.append(_Job(i, start, stop, source=job_source, target=_target_slice(target, start, stop), extra=extra))
    return jobs
