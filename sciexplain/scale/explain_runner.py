"""Explaining every sample of a data set, chunk by chunk on a scheduler, into a Zarr store.

``explain_dataset(model, data, chunk=256, scheduler="threads", store="out.zarr")`` splits the
samples into chunks of ``chunk``, explains every chunk as one batch on a Dask scheduler and
writes each chunk's relevance into a Zarr store as soon as it is computed (xarray region
writes into a store whose layout was written first with ``compute=False``). The result is an
``xarray.DataArray`` backed by that store (dask arrays), so memory is bounded by the chunks in
flight, not by the data set. The same chunks give the same numbers on every scheduler: an
explanation of a sample does not depend on which process computed it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..explain.engine import Explainer
from .jobs import SampleError, _chunks, _data_setup, _explain_spec, _Job, _target_slice, _targets
from .schedulers import MODEL_LOCK, _run_jobs
from .sources import _ArraySource, _Slice
from .atomic import PARTIAL_MARK, OutputError
from .locks import FolderLock
from .stores import (_STORE_FORMAT, STORE_MARKER, StoreError, _finish_store, _jsonable, _store_attrs, _store_key,
                     is_sciexplain_store, open_relevance)


def _explain_batch(model: Any, x: np.ndarray, target: Any, spec: dict):
    explainer = Explainer(model, spec["method"], spec["preset"], bounds=spec["bounds"], max_pool=spec["max_pool"],
                          **spec["options"])
    with MODEL_LOCK:
        return explainer.explain(x, target, dims=spec["dims"], coords=spec["coords"], at=spec["at"],
                                 through=spec["through"])


def _locate_failure(model: Any, x: np.ndarray, target: Any, spec: dict, start: int) -> tuple[int | None, str]:
    """Explain the samples of a failed chunk one by one; the first that fails and its error."""
    for k in range(len(x)):
        t = target[k:k + 1] if isinstance(target, np.ndarray) else target
        try:
            _explain_batch(model, x[k:k + 1], t, spec)
        except Exception as err:  # noqa: BLE001 -- reported with the sample index
            return start + k, f"{type(err).__name__}: {err}"
    return None, ""


def _explain_chunk(model: Any, job: _Job) -> dict:
    spec = job.extra["spec"]
    x = job.inputs()
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise SampleError(f"sample {job.start + k} (chunk {job.index}) contains NaN or Inf: fix or drop it; "
                              f"chunks finished before it are kept in {job.extra['store']}", job.start + k, job.index)
    try:
        R = _explain_batch(model, x, job.target, spec)
    except Exception as err:  # noqa: BLE001
        index, message = _locate_failure(model, x, job.target, spec, job.start)
        where = f"sample {index}" if index is not None else f"samples {job.start}..{job.stop - 1}"
        raise SampleError(f"explaining {where} (chunk {job.index}) failed: {message or f'{type(err).__name__}: {err}'}",
                          index, job.index) from err
    bdim = spec["dims"][0]
    part = {"relevance": (R.dims, R.values)}
    for name in spec["sample_vars"]:
        part[name] = ((bdim,), np.asarray(R.coords[name].values))
    region = {bdim: slice(job.start, job.stop)}
    xr.Dataset(part).to_zarr(job.extra["store"], region=region)
    xr.Dataset({"chunk_done": (("chunk",), np.ones(1, dtype="int8"))}).to_zarr(
        job.extra["store"], region={"chunk": slice(job.index, job.index + 1)})
    residual = None
    if R.attrs.get("decomposes") in ("f(x)", "f(x) - f(baseline)"):
        residual = float(np.abs(R.relevance.residual().values).max())
    return {"index": job.index, "residual": residual}


def explain_dataset(model: Any, data: Any, chunk: int = 256, scheduler: Any = "threads",
                    store: str | os.PathLike = "out.zarr", *, target: Any = None,
                    dims: Sequence[str] | None = None, coords: Mapping[str, Any] | None = None,
                    attrs: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
                    n_workers: int | None = None, overwrite: bool = False, progress: bool = True,
                    **explain_kwargs: Any) -> xr.DataArray:
    """Explain every sample of a data set, chunk by chunk, on a Dask scheduler, into a Zarr store.

    Parameters
    ----------
    model : torch.nn.Module
        Left unchanged. Shipped once per worker (see the module docstring).
    data : array of shape (n_samples, ...)
        numpy array, torch tensor, xarray.DataArray (its dims and coords are used when
        ``dims``/``coords`` are not given), zarr array, or the path of a ``.npy`` file (read
        memory-mapped by the workers).
    chunk : int
        Samples per chunk: one batch for the model, one Zarr chunk of the result.
    scheduler : str or dask.distributed.Client
        ``"serial"``, ``"threads"``, ``"processes"``, a ``Client`` or a scheduler address.
    store : path
        The Zarr store (a folder) the relevance is written to.
    target : None, int or sequence of int
        The class explained: predicted (None), one for all, or one per sample.
    dims, coords : optional
        Names of the dims (batch first) and coordinates, as for :func:`sciexplain.explain`.
        Coordinates along the batch dim (one value per sample) are written once into the store.
    attrs, provenance : mapping, optional
        Further attrs of the result; ``provenance`` is stored as JSON under ``attrs["provenance"]``.
    n_workers : int, optional
        Workers of the local schedulers (default: the CPU count).
    overwrite : bool
        Replace a store holding another computation instead of refusing it. Only a store that
        sciexplain wrote is ever replaced: a folder without the store marker is refused and left
        untouched (an empty folder is used).
    progress : bool
        A tqdm bar over the chunks.
    **explain_kwargs
        ``method``, ``preset``, ``bounds``, ``max_pool``, ``at``, ``through`` and the method's
        options, as for :func:`sciexplain.explain`.

    Returns
    -------
    xarray.DataArray
        The relevance contract (dims, per-sample ``prediction``/``target``/``absorbed``, attrs),
        backed by dask arrays reading the store. ``attrs["chunks_computed"]`` says how many chunks
        this call computed (the others were already in the store).

    Raises
    ------
    SampleError
        A sample could not be explained; the message names its index. Finished chunks stay
        in the store and a rerun resumes after them.
    StoreError
        ``store`` holds a different computation (and ``overwrite`` is False), or is a file or a
        folder sciexplain did not write (whatever ``overwrite`` says).
    LockError
        Another process is writing ``store`` (one writer per store: a lock file beside it,
        :mod:`sciexplain.scale.locks`).
    """
    source, n, dims, batch_coords, other_coords = _data_setup(data, chunk, dims, coords)
    chunk = int(chunk)
    target = _targets(target, n)
    spec = _explain_spec(model, explain_kwargs, dims, other_coords)
    store = Path(store)
    key = _store_key(model, source, spec, target, chunk)
    bounds = _chunks(n, chunk)

    # a probe on one sample gives the result's shape, dtype, per-sample coords and attrs
    probe = _explain_batch(model, source.read(0, 1), _target_slice(target, 0, 1), spec)
    bdim = dims[0]
    sample_vars = [name for name, c in probe.coords.items() if c.dims == (bdim,) and name not in batch_coords]
    spec["sample_vars"] = sample_vars

    with _locked(store):
        done = _open_or_create(store, key, overwrite, lambda: _layout(probe, bounds, n, chunk, bdim, sample_vars,
                                                                     batch_coords, attrs, provenance, key,
                                                                     scheduler), len(bounds))
        return _run_store(model, source, target, spec, store, bounds, done, scheduler, n, n_workers, progress,
                          provenance)


def _locked(store: Path) -> FolderLock:
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder of the store {store}: {type(err).__name__}: "
                          f"{err.strerror or err}") from err
    return FolderLock(store, inside=False, what="store")


def _layout(probe: xr.DataArray, bounds: list, n: int, chunk: int, bdim: str, sample_vars: list,
            batch_coords: Mapping, attrs: Mapping | None, provenance: Mapping | None, key: str,
            scheduler: Any) -> xr.Dataset:
    """The store's layout (lazy zeros), written with ``compute=False`` before any chunk."""
    import dask.array as da
    shape = (n,) + tuple(probe.shape[1:])
    variables = {"relevance": (probe.dims, da.zeros(shape, chunks=(chunk,) + shape[1:], dtype=probe.dtype))}
    for name in sample_vars:
        v = np.asarray(probe.coords[name].values)
        variables[name] = ((bdim,), da.zeros((n,), chunks=(chunk,), dtype=v.dtype))
    variables["chunk_done"] = (("chunk",), np.zeros(len(bounds), dtype="int8"))
    probe_coords = {name: (c.dims, c.values) for name, c in probe.coords.items() if bdim not in c.dims}
    ds = xr.Dataset(variables, coords={**probe_coords, **dict(batch_coords)})
    ds.attrs = _store_attrs(probe.attrs, attrs, provenance, key, chunk, scheduler)
    return ds


def _open_or_create(store: Path, key: str, overwrite: bool, layout: Callable[[], xr.Dataset], n_chunks: int
                    ) -> np.ndarray:
    """The chunks already done in ``store``; creates the store (atomically) when there is none.

    ``overwrite`` replaces a store holding another computation, but only a store sciexplain wrote:
    a foreign folder is refused and left untouched.
    """
    _remove_partial_stores(store)
    if store.exists() and not store.is_dir():
        raise StoreError(f"{store} is a file, not a store: it was left untouched; choose another store path")
    if store.exists() and not is_sciexplain_store(store):
        if any(store.iterdir()):
            raise StoreError(f"{store} is a folder that sciexplain did not write (it has no sciexplain store "
                             "marker): it was left untouched, also with overwrite=True, which replaces only "
                             "stores sciexplain wrote; choose another store path")
    elif store.exists():
        complete = False
        try:
            with xr.open_zarr(store) as old:
                old_key = old.attrs.get(STORE_MARKER)
                complete = "chunk_done" in old and "relevance" in old and old.sizes.get("chunk") == n_chunks
                done = old["chunk_done"].values.astype(bool) if complete else None
        except Exception as err:  # noqa: BLE001 -- an unreadable store is reported below
            old_key = f"unreadable ({type(err).__name__})"
        if old_key == key and complete:
            return done
        if old_key != key and not overwrite:  # (the same computation, left incomplete at creation, is redone)
            raise StoreError(f"{store} already holds a different computation (another model, data, chunking "
                             "or method) or an unreadable one; choose a new store, delete it, or replace it "
                             "with overwrite=True (sciexplain run --overwrite)")
        shutil.rmtree(store)
    tmp = store.with_name(f".{store.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        layout().to_zarr(tmp, mode="w", compute=False, zarr_format=_STORE_FORMAT, consolidated=True,
                         encoding={"chunk_done": {"chunks": (1,)}})
        if store.exists():  # an empty folder
            store.rmdir()
        os.replace(tmp, store)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return np.zeros(n_chunks, dtype=bool)


def _remove_partial_stores(store: Path) -> None:
    """Layouts a killed run left half-created beside ``store`` (only while holding its lock)."""
    if not store.parent.is_dir():
        return
    for p in store.parent.glob(f".{store.name}{PARTIAL_MARK}*"):
        if p.is_dir():  # the name is made only by _open_or_create, and the lock keeps other writers out
            shutil.rmtree(p, ignore_errors=True)


def _run_store(model: Any, source: Any, target: Any, spec: dict, store: Path, bounds: list, done: np.ndarray,
               scheduler: Any, n: int, n_workers: int | None, progress: bool, provenance: Mapping | None
               ) -> xr.DataArray:
    jobs = []
    in_memory = isinstance(source, _ArraySource)
    local = scheduler in ("serial", "sync", "synchronous", "threads")
    for i, (start, stop) in enumerate(bounds):
        if done[i]:
            continue
        # in this process a job reads its slice when it runs; worker processes get just their slice
        job_source = source if (local or not in_memory) else _Slice(source, start, stop)
        jobs.append(_Job(i, start, stop, source=job_source, target=_target_slice(target, start, stop),
                         extra={"spec": spec, "store": str(store)}))
    results = _run_jobs(_explain_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                        desc=f"explaining {n} samples")
    residuals = [r["residual"] for r in results if r and r.get("residual") is not None]
    finish: dict[str, Any] = {"chunks_computed_last_run": len(jobs)}
    if provenance is not None:  # the latest run's record (a resumed store was begun by an earlier one)
        finish["provenance"] = json.dumps(_jsonable(provenance), sort_keys=True)
    if residuals:
        finish["ledger_max_residual"] = max(residuals)
    _finish_store(store, finish)
    R = open_relevance(store)
    return R.assign_attrs(chunks_computed=len(jobs))
