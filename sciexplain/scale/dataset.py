"""Explanations and evaluations of whole data sets, chunk by chunk, on Dask.

``explain_dataset(model, data, chunk=256, scheduler="threads", store="out.zarr")`` splits the
samples into chunks of ``chunk``, explains every chunk as one batch on a Dask scheduler and
writes each chunk's relevance into a Zarr store as soon as it is computed (xarray region
writes into a store whose layout was written first with ``compute=False``). The result is an
``xarray.DataArray`` backed by that store (dask arrays), so memory is bounded by the chunks in
flight, not by the data set. The same chunks give the same numbers on every scheduler: an
explanation of a sample does not depend on which process computed it.

Schedulers
    ``"serial"``     a plain loop in this process (no Dask), the reference path
    ``"threads"``    Dask's threaded scheduler in this process
    ``"processes"``  Dask's multiprocessing scheduler on a pool of spawned processes; the model
                     is pickled once and installed once per process by the pool's initializer
    a ``dask.distributed.Client`` (e.g. on a ``LocalCluster``) or a scheduler address string
                     (``"tcp://host:8786"``): the model is scattered to every worker once
                     (``client.scatter(model, broadcast=True)``); workers write into the store
                     themselves, so on a real cluster the store must be on a shared file system

Resuming: every chunk, once written, is marked in the store's ``chunk_done`` variable. Running
the same call again on the same store skips the marked chunks; a store made by a different
model, data set, chunking or method is refused (pass ``overwrite=True`` to replace it).

Thread safety: the core's recording is thread-safe, but a model's own forward need not be (and
without a lock one image pipeline run gave a perturbation curve whose f(x) differed from the
explained prediction; not yet diagnosed). Inside one process every model call of this module
therefore holds one lock; reading inputs and writing the store run in parallel, and torch's own
intra-op threads still use every core. Worker processes
(``"processes"``, a distributed cluster) run fully in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import InputError, SciexplainError

__all__ = ["explain_dataset", "perturbation_dataset", "continuity_dataset", "randomization_dataset",
           "continuity_path", "open_relevance", "NpySource", "SampleError", "StoreError", "SchedulerError",
           "LOCAL_SCHEDULERS"]

LOCAL_SCHEDULERS = ("serial", "threads", "processes")

#: held around every model call in one process (see the module docstring)
MODEL_LOCK = threading.RLock()

_WORKER_MODELS: dict[str, Any] = {}
_STORE_FORMAT = 2  # Zarr v2 metadata: stable for strings and readable by every Zarr library


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


class StoreError(SciexplainError, ValueError):
    """The output store exists but holds another computation, or cannot be used."""


class SchedulerError(SciexplainError, ValueError):
    """The scheduler argument names no scheduler sciexplain knows how to use."""


# -- data sources -------------------------------------------------------------------------------

class NpySource:
    """A ``.npy`` file read chunk by chunk (memory-mapped, ``allow_pickle=False``), in the worker.

    Only the path travels to workers, so a data set larger than memory can be explained.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(Path(path).resolve())
        arr = self._open()
        self.shape = tuple(arr.shape)
        self.dtype = arr.dtype

    def _open(self) -> np.ndarray:
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise InputError(f"{self.path} holds Python objects, which are never unpickled; save plain "
                             f"numbers (np.save with a numeric array): {err}") from err

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._open()[start:stop])

    def __repr__(self) -> str:
        return f"NpySource({self.path!r}, shape={self.shape})"


class _ArraySource:
    """An in-memory array (numpy, torch, xarray): slices are views until a task copies them."""

    def __init__(self, array: Any):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        part = self.array[start:stop]
        if hasattr(part, "detach"):
            part = part.detach().cpu().numpy()
        return np.array(part)


class _ZarrArraySource:
    """A variable of a Zarr store, opened in the worker (only the path travels)."""

    def __init__(self, path: str, variable: str):
        self.path, self.variable = str(path), variable
        with xr.open_zarr(self.path) as ds:
            v = ds[variable]
            self.shape, self.dtype = tuple(v.shape), v.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        with xr.open_zarr(self.path) as ds:
            v = ds[self.variable]
            return np.asarray(v.isel({v.dims[0]: slice(start, stop)}).values)


def _as_source(data: Any):
    if isinstance(data, (NpySource, _ArraySource, _ZarrArraySource)) or (
            hasattr(data, "read") and hasattr(data, "shape") and hasattr(data, "dtype")):
        return data  # a source: read(start, stop) -> numpy array
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.suffix == ".npy":
            return NpySource(path)
        raise InputError(f"{path}: explain_dataset reads .npy files by path; open netCDF/Zarr with xarray "
                         "and pass the DataArray")
    if isinstance(data, xr.DataArray):
        return _ArraySource(data.data)  # numpy or dask: slices of a dask array load lazily
    if hasattr(data, "shape") and hasattr(data, "__getitem__") and hasattr(data, "dtype"):
        if getattr(data, "dtype", None) == object:
            raise InputError("data is an object array; pass numbers")
        return _ArraySource(data)
    raise InputError(f"explain_dataset needs an array of shape (n_samples, ...): a numpy array, torch tensor, "
                     f"xarray.DataArray, zarr array or a .npy path; got {type(data).__name__}")


# -- helpers ------------------------------------------------------------------------------------

def _sha256_model(model: Any) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _data_fingerprint(source: Any, chunk: int) -> str:
    h = hashlib.sha256(repr((source.shape, str(source.dtype))).encode())
    for start in range(0, source.shape[0], chunk):
        h.update(np.ascontiguousarray(source.read(start, min(start + chunk, source.shape[0]))).tobytes())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


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


# -- running chunks on a scheduler ---------------------------------------------------------------

def _install_model(token: str, payload: bytes) -> None:  # pool initializer in worker processes
    _WORKER_MODELS[token] = pickle.loads(payload)


def _run_in_process(fn: Callable, model_ref: Any, job: _Job) -> Any:
    model = _WORKER_MODELS[model_ref] if isinstance(model_ref, str) else model_ref
    return fn(model, job)


def _distributed_client(scheduler: Any):
    """(client, close_after) for a Client or an address string; (None, False) otherwise."""
    if isinstance(scheduler, str) and scheduler not in LOCAL_SCHEDULERS and scheduler not in ("sync", "synchronous"):
        if "://" not in scheduler and ":" not in scheduler:
            raise SchedulerError(f"scheduler={scheduler!r}: use 'serial', 'threads', 'processes', a "
                                 "dask.distributed.Client, or a scheduler address such as 'tcp://host:8786'")
        from dask.distributed import Client
        try:
            return Client(scheduler, timeout="10s"), True
        except OSError as err:
            raise SchedulerError(f"no Dask scheduler answered at {scheduler!r} ({err}); start one with "
                                 "`dask scheduler` and `dask worker ADDRESS`, or use scheduler='threads'") from err
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "scatter"):
        return scheduler, False
    if not isinstance(scheduler, str):
        raise SchedulerError(f"scheduler must be a name, an address or a dask.distributed.Client, got "
                             f"{type(scheduler).__name__}")
    return None, False


def scheduler_name(scheduler: Any) -> str:
    """A readable name of ``scheduler`` for provenance (the address of a distributed scheduler)."""
    if isinstance(scheduler, str):
        return scheduler
    if hasattr(scheduler, "scheduler") and hasattr(scheduler, "scatter"):
        try:
            return f"distributed {scheduler.scheduler.address}"
        except AttributeError:
            return "distributed"
    return type(scheduler).__name__


def _run_jobs(fn: Callable, model: Any, jobs: list[_Job], scheduler: Any, *, n_workers: int | None,
              progress: bool, desc: str, on_result: Callable[[Any], None] | None = None) -> list[Any]:
    """Run ``fn(model, job)`` for every job on ``scheduler``; results in job order.

    The first failure stops the run: jobs not yet started are cancelled, finished ones keep
    what they wrote, and the error is raised.
    """
    from tqdm.auto import tqdm

    results: list[Any] = [None] * len(jobs)
    if not jobs:
        return results
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="chunk")

    def done(i: int, value: Any) -> None:
        results[i] = value
        if on_result is not None:
            on_result(value)
        bar.update(1)

    try:
        if scheduler in ("serial", "sync", "synchronous"):
            for i, job in enumerate(jobs):
                done(i, fn(model, job))
            return results
        client, close = _distributed_client(scheduler)
        if client is not None:
            try:
                return _run_distributed(client, fn, model, jobs, done, results)
            finally:
                if close:
                    client.close()
        if scheduler not in ("threads", "processes"):
            raise SchedulerError(f"unknown scheduler {scheduler!r}: use one of {LOCAL_SCHEDULERS}, a "
                                 "dask.distributed.Client or a scheduler address")
        return _run_local(fn, model, jobs, scheduler, n_workers, done, results)
    finally:
        bar.close()


def _run_local(fn, model, jobs, scheduler, n_workers, done, results):
    import dask
    from dask.callbacks import Callback

    keys = {}

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, id):
            i = keys.get(key)
            if i is not None:
                done(i, result)

    workers = n_workers or os.cpu_count() or 1
    if scheduler == "threads":
        model_ref = model  # one object in this process, shared by reference
        pool_cm = contextlib.nullcontext(None)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        model_ref = hashlib.sha256(pickle.dumps(id(model)) + os.urandom(8)).hexdigest()[:16]
        payload = pickle.dumps(model)
        pool_cm = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_install_model, initargs=(model_ref, payload))
    tasks = []
    for i, job in enumerate(jobs):
        task = dask.delayed(_run_in_process, pure=False)(fn, model_ref, job,
                                                         dask_key_name=f"sciexplain-chunk-{i}-{id(jobs)}")
        keys[task.key] = i
        tasks.append(task)
    with pool_cm as pool, _Progress():
        kwargs = {"num_workers": workers} if pool is None else {"pool": pool}
        dask.compute(*tasks, scheduler=scheduler, **kwargs)
    return results


def _run_distributed(client, fn, model, jobs, done, results):
    from dask.distributed import as_completed

    model_future = client.scatter(model, broadcast=True, hash=False)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = 2 * n_workers  # chunks in flight: bounds the memory of in-memory inputs sent to workers
    pending = iter(enumerate(jobs))
    index_of: dict[str, int] = {}
    inflight: dict[str, Any] = {}
    ac = as_completed()

    def submit_next() -> bool:
        try:
            i, job = next(pending)
        except StopIteration:
            return False
        fut = client.submit(_run_in_process, fn, model_future, job, pure=False)
        index_of[fut.key], inflight[fut.key] = i, fut
        ac.add(fut)
        return True

    for _ in range(limit):
        if not submit_next():
            break
    for fut in ac:
        inflight.pop(fut.key, None)
        if fut.status == "error":
            client.cancel(list(inflight.values()))  # stop cleanly: nothing new starts
            fut.result()  # raises the worker's exception (a SampleError naming the sample)
        done(index_of[fut.key], fut.result())
        submit_next()
    return results


# -- explaining ---------------------------------------------------------------------------------

def _explain_batch(model: Any, x: np.ndarray, target: Any, spec: dict):
    from ..explain.engine import Explainer
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


def _store_key(model: Any, source: Any, spec: dict, target: Any, chunk: int) -> str:
    h = hashlib.sha256()
    h.update(_sha256_model(model).encode())
    h.update(_data_fingerprint(source, chunk).encode())
    h.update(json.dumps(_jsonable({k: v for k, v in spec.items() if k != "coords"}), sort_keys=True).encode())
    h.update(json.dumps(_jsonable(target)).encode())
    h.update(str(chunk).encode())
    return h.hexdigest()


def open_relevance(store: str | os.PathLike, *, complete: bool = True) -> xr.DataArray:
    """The relevance in a store written by :func:`explain_dataset`, dask-backed, with its coords.

    Parameters
    ----------
    store : path
        The Zarr store.
    complete : bool
        Require every chunk to be written (default); with False an interrupted store opens too
        and unwritten samples read as NaN (``R.chunk_done`` says which chunks are written).
    """
    path = Path(store)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    ds = xr.open_zarr(path)
    if "relevance" not in ds:
        raise StoreError(f"{path} is not a relevance store written by sciexplain.explain_dataset")
    done = ds["chunk_done"].values.astype(bool)
    if complete and not done.all():
        missing = np.flatnonzero(~done).tolist()
        raise StoreError(f"{path}: chunks {missing[:10]}{'...' if len(missing) > 10 else ''} are not written yet; "
                         "rerun explain_dataset on this store to finish it, or pass complete=False")
    R = ds["relevance"]
    bdim = R.dims[0]
    sample_vars = [n for n in ds.data_vars if n not in ("relevance", "chunk_done") and ds[n].dims == (bdim,)]
    R = R.assign_coords({n: ds[n] for n in sample_vars})
    attrs = {k: v for k, v in ds.attrs.items() if not k == "sciexplain_store_key"}
    attrs["store"] = str(path.resolve())
    R.attrs = attrs
    if not complete:
        R = R.assign_attrs(chunks_written=f"{int(done.sum())} of {len(done)}")
    return R


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
        Replace a store holding another computation instead of refusing it.
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
        ``store`` holds a different computation (and ``overwrite`` is False).
    """
    import dask.array as da

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

    done = np.zeros(len(bounds), dtype=bool)
    if store.exists():
        try:
            with xr.open_zarr(store) as old:
                old_key = old.attrs.get("sciexplain_store_key")
                if old_key == key and "chunk_done" in old:
                    done = old["chunk_done"].values.astype(bool)
        except Exception as err:  # noqa: BLE001 -- an unreadable folder is reported below
            old_key = f"unreadable ({type(err).__name__})"
        if old_key != key:
            if not overwrite:
                raise StoreError(f"{store} already holds a different computation (another model, data, chunking "
                                 "or method); choose a new store, delete it, or pass overwrite=True")
            import shutil
            shutil.rmtree(store)
    if not store.exists():
        shape = (n,) + tuple(probe.shape[1:])
        variables = {"relevance": (probe.dims, da.zeros(shape, chunks=(chunk,) + shape[1:], dtype=probe.dtype))}
        for name in sample_vars:
            v = np.asarray(probe.coords[name].values)
            variables[name] = ((bdim,), da.zeros((n,), chunks=(chunk,), dtype=v.dtype))
        variables["chunk_done"] = (("chunk",), np.zeros(len(bounds), dtype="int8"))
        probe_coords = {name: (c.dims, c.values) for name, c in probe.coords.items()
                        if bdim not in c.dims}
        ds = xr.Dataset(variables, coords={**probe_coords, **batch_coords})
        ds.attrs = _store_attrs(probe.attrs, attrs, provenance, key, chunk, scheduler)
        encoding = {"chunk_done": {"chunks": (1,)}}
        ds.to_zarr(store, mode="w", compute=False, zarr_format=_STORE_FORMAT, consolidated=True, encoding=encoding)

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


class _Slice:
    """A copy of one slice of an in-memory array; pickles as just that slice (for worker processes)."""

    def __init__(self, source: Any, start: int, stop: int):
        self.part = source.read(start, stop)
        self.start = start

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.part[start - self.start:stop - self.start])


def _store_attrs(result_attrs: Mapping, attrs: Mapping | None, provenance: Mapping | None, key: str,
                 chunk: int, scheduler: Any) -> dict:
    out = {k: v for k, v in result_attrs.items()}
    out.update(dict(attrs or {}))
    out["chunk"] = chunk
    out["written_by"] = f"sciexplain.explain_dataset {__version__}"
    if provenance is not None:
        out["provenance"] = json.dumps(_jsonable(provenance), sort_keys=True)
    out["sciexplain_store_key"] = key
    return {k: (json.dumps(_jsonable(v)) if isinstance(v, (dict, list, tuple)) else v) for k, v in out.items()}


def _finish_store(store: Path, attrs: Mapping[str, Any]) -> None:
    import zarr
    group = zarr.open_group(str(store), mode="r+", zarr_format=_STORE_FORMAT)
    group.attrs.update({k: _jsonable(v) for k, v in attrs.items()})
    zarr.consolidate_metadata(str(store), zarr_format=_STORE_FORMAT)


# -- evaluating ---------------------------------------------------------------------------------

class _RelevanceSlices:
    """Reads chunks of a relevance DataArray in the worker: from its store when it has one."""

    def __init__(self, R: xr.DataArray, store: str | None):
        self.store = store
        self.R = None if store is not None else R

    def read(self, start: int, stop: int) -> xr.DataArray:
        R = open_relevance(self.store) if self.store is not None else self.R
        return R.isel({R.dims[0]: slice(start, stop)}).load()


def _own_store(relevance: xr.DataArray | None) -> str | None:
    """The store ``relevance`` can be read back from in the workers: only when it is the store's own
    relevance. A DataArray derived from it (pooled over a dim, a selection) keeps the ``store`` attr
    but not its values, and travels as it is (a lazy dask graph for processes and clusters)."""
    store = relevance.attrs.get("store") if relevance is not None else None
    if store is None:
        return None
    try:
        own = open_relevance(store)
    except (StoreError, OSError, ValueError):
        return None
    if own.dims != relevance.dims or own.shape != relevance.shape:
        return None
    return store


def _perturb_chunk(model: Any, job: _Job) -> xr.DataArray:
    import torch

    from ..evaluate.perturbation import perturbation_curve
    x = torch.from_numpy(job.inputs())
    R = job.extra["relevance"].read(job.start, job.stop) if job.extra["relevance"] is not None else None
    kwargs = dict(job.extra["kwargs"])
    seed = int(kwargs.pop("seed")) + job.index  # one stream per chunk: the same on every scheduler
    try:
        with MODEL_LOCK:
            curve = perturbation_curve(model, x, R, seed=seed, target=job.target, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"perturbation curve of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    bdim = curve.dims[0]
    return curve.assign_coords({bdim: np.arange(job.start, job.stop)})


def _dataset_statistics(source: Any, chunk: int) -> tuple[float, float, np.ndarray]:
    """min, max and per-feature mean of the data, one chunk at a time (float64 sums)."""
    low, high, total = math.inf, -math.inf, None
    n = source.shape[0]
    for start, stop in _chunks(n, chunk):
        part = source.read(start, stop).astype(np.float64)
        low, high = min(low, float(part.min())), max(high, float(part.max()))
        s = part.sum(axis=0)
        total = s if total is None else total + s
    return low, high, total / n


def perturbation_dataset(model: Any, data: Any, relevance: xr.DataArray | None, *, chunk: int = 256,
                         scheduler: Any = "threads", order: str = "morf", steps: int | None = None,
                         removal: Any = "uniform", patch: Sequence[int] | None = None, target: Any = None,
                         seed: int = 0, value_range: tuple[float, float] | None = None, regions_per_step: int = 1,
                         batch_size: int = 256, ties: str = "stable", x_dims: Sequence[str] | None = None,
                         n_workers: int | None = None, progress: bool = True) -> xr.DataArray:
    """Perturbation curves of a whole data set, chunk by chunk, on a Dask scheduler.

    Each chunk runs :func:`sciexplain.evaluate.perturbation_curve` on its samples and their
    relevance (read from the relevance's store in the worker when it came from
    :func:`explain_dataset`). Removals that depend on the batch are fixed for the whole data set
    first, so that a chunk sees the same removal as the full set would: ``"uniform"`` noise over
    the data set's min..max (unless ``value_range`` is given) and ``"mean"`` the data set's
    per-feature mean. The noise and random orders are seeded per chunk (``seed + chunk index``),
    so the curves depend on ``seed`` and ``chunk``, never on the scheduler.

    Parameters
    ----------
    model, data
        As for :func:`explain_dataset`.
    relevance : xarray.DataArray or None
        One explanation per sample, batch dim first (None for ``order="random"``).
    chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset`.
    order, steps, removal, patch, target, seed, value_range, regions_per_step, batch_size, ties, x_dims
        As for :func:`sciexplain.evaluate.perturbation_curve`.

    Returns
    -------
    xarray.DataArray
        ``(sample, step)`` curves of all samples in order; pass it to
        :func:`sciexplain.evaluate.aopc`. attrs say the removal used on the data set.
    """
    import torch

    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"chunk must be a positive number of samples, got {chunk!r}")
    source = _as_source(data.values if isinstance(data, xr.DataArray) and data.chunks is None else data)
    n = source.shape[0]
    if relevance is not None:
        if not isinstance(relevance, xr.DataArray) or relevance.shape[0] != n:
            raise InputError(f"relevance must be a DataArray with {n} samples along its first dim")
    removal_note = None
    if isinstance(removal, str) and removal in ("uniform", "mean"):
        low, high, mean = _dataset_statistics(source, chunk)
        if removal == "uniform" and value_range is None:
            value_range = (low, high)
            removal_note = f"uniform noise over the data set's range [{low:.6g}, {high:.6g}]"
        elif removal == "mean":
            removal = torch.from_numpy(mean.astype(source.dtype))[None]
            removal_note = "the data set's per-feature mean"
    store = _own_store(relevance)
    rel = None if relevance is None else _RelevanceSlices(relevance, store)
    if target is not None and not isinstance(target, (int, np.integer)):
        target = _targets(target, n)
    kwargs = {"steps": steps, "order": order, "removal": removal, "patch": patch, "seed": seed,
              "value_range": value_range, "regions_per_step": regions_per_step, "batch_size": batch_size,
              "ties": ties, "x_dims": x_dims}
    local = scheduler in ("serial", "sync", "synchronous", "threads")
    jobs = []
    for i, (start, stop) in enumerate(_chunks(n, chunk)):
        job_source = source if (local or not isinstance(source, _ArraySource)) else _Slice(source, start, stop)
        jobs.append(_Job(i, start, stop, source=job_source, target=_target_slice(target, start, stop),
                         extra={"relevance": rel, "kwargs": kwargs}))
    curves = _run_jobs(_perturb_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                       desc=f"perturbation ({order})")
    out = xr.concat(curves, dim=curves[0].dims[0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs["chunk"] = chunk
    out.attrs["seed"] = f"{seed} + chunk index"
    if removal_note:
        out.attrs["removal"] = removal_note
    return out


# -- continuity and randomization, chunk-wise -----------------------------------------------------

def continuity_path(x: np.ndarray, index: int, *, points: int = 8, radius: float = 0.1, seed: int = 0) -> np.ndarray:
    """The path of inputs along which :func:`continuity_dataset` explains sample ``index``.

    A straight line from the sample ``x`` (one sample, no batch dim) in a random direction
    ``u`` (standard normal, drawn from ``numpy.random.default_rng([seed, index])``, so it depends
    on the seed and the sample's position in the data set, never on the chunking), of length
    ``radius * ||x||_2`` (``radius * sqrt(x.size)`` for an all-zero sample), in ``points``
    equal steps: ``x_k = x + k / (points - 1) * length * u / ||u||_2``, ``k = 0..points-1``.

    Returns
    -------
    numpy.ndarray
        ``(points,) + x.shape``, in ``x``'s dtype.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"continuity needs float inputs (a path of inputs between them); got dtype {x.dtype}. "
                         "Integer inputs such as token ids have no path between them")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise InputError(f"points must be an integer >= 2 (inputs along each path), got {points!r}")
    if not (isinstance(radius, (int, float, np.floating)) and not isinstance(radius, bool) and radius > 0):
        raise InputError(f"radius must be a positive number (the path's length relative to ||x||), got {radius!r}")
    u = np.random.default_rng([int(seed), int(index)]).standard_normal(x.shape)
    norm = float(np.linalg.norm(x.astype(np.float64)))
    length = float(radius) * (norm if norm > 0 else math.sqrt(x.size))
    steps = np.arange(points, dtype=np.float64) / (points - 1)
    u = u * (length / float(np.linalg.norm(u)))
    return (x.astype(np.float64)[None] + steps.reshape((-1,) + (1,) * x.ndim) * u[None]).astype(x.dtype)


def _predicted_targets(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    from ..explain.engine import _eval_mode
    with MODEL_LOCK, _eval_mode(model), torch.no_grad():
        out = model(torch.from_numpy(x))
    return out.argmax(dim=1).numpy().astype(np.int64)


def _continuity_chunk(model: Any, job: _Job) -> xr.Dataset:
    import torch

    from ..evaluate.explanation_continuity import continuity
    spec, opts = job.extra["spec"], job.extra["options"]
    x = job.inputs()
    n = len(x)
    try:
        targets = _predicted_targets(model, x) if job.target is None else np.broadcast_to(
            np.asarray(job.target, dtype=np.int64), (n,))
        ratios, dists, changes = [], [], []
        for k in range(n):
            path = continuity_path(x[k], job.start + k, points=opts["points"], radius=opts["radius"], seed=opts["seed"])
            t = int(targets[k])
            c = continuity(lambda z, t=t: _explain_batch(model, z.numpy() if isinstance(z, torch.Tensor) else z,
                                                        t, spec), torch.from_numpy(path))
            ratios.append(c.values)
            dists.append(c.coords["distance"].values)
            changes.append(c.coords["relevance_change"].values)
    except SciexplainError:
        raise
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"continuity of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    ratio = np.stack(ratios)
    bdim = spec["dims"][0]
    return xr.Dataset({"ratio": ((bdim, "pair"), ratio), "distance": ((bdim, "pair"), np.stack(dists)),
                       "relevance_change": ((bdim, "pair"), np.stack(changes)),
                       "continuity": ((bdim,), ratio.max(axis=1))},
                      coords={bdim: np.arange(job.start, job.stop), "pair": np.arange(ratio.shape[1]),
                              "target": ((bdim,), np.asarray(targets, dtype=np.int64))})


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


def continuity_dataset(model: Any, data: Any, *, chunk: int = 256, scheduler: Any = "threads", points: int = 8,
                       radius: float = 0.1, seed: int = 0, target: Any = None, dims: Sequence[str] | None = None,
                       coords: Mapping[str, Any] | None = None, n_workers: int | None = None, progress: bool = True,
                       **explain_kwargs: Any) -> xr.Dataset:
    """Explanation continuity of every sample of a data set, chunk by chunk, on a Dask scheduler.

    Each sample is explained along a short straight path of ``points`` inputs leaving it in a
    seeded random direction (:func:`continuity_path`), for one fixed class (``target``, default
    the class predicted at the sample), and :func:`sciexplain.evaluate.continuity` gives the
    ratio ``||R(x) - R(x')||_1 / ||x - x'||_2`` of every consecutive pair; a sample's continuity
    is the maximum. The path of a sample depends only on ``seed`` and its position, so the result
    is the same for every chunking and every scheduler.

    Parameters
    ----------
    model, data, chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset` (float inputs only: token ids have no path between them).
    points : int
        Inputs per path (>= 2).
    radius : float
        The path's length relative to ``||x||_2``.
    seed : int
        Seeds the directions.
    target : None, int or sequence of int
        The class explained along each path; None: the class predicted at the sample.
    dims, coords
        Names of the dims and non-batch coordinates of the explanations, as for :func:`explain_dataset`.
    **explain_kwargs
        ``method``, ``preset``, ``bounds``, ``max_pool`` and method options, as for :func:`sciexplain.explain`.

    Returns
    -------
    xarray.Dataset
        ``ratio``, ``distance`` and ``relevance_change`` per sample and pair, ``continuity`` per
        sample (the maximum ratio), coord ``target``; attrs say how the paths were made.
    """
    source, n, spec, target = _evaluation_setup(model, data, chunk, dims, coords, target, explain_kwargs)
    opts = {"points": points, "radius": radius, "seed": int(seed)}
    continuity_path(source.read(0, 1)[0], 0, **opts)  # checks the dtype and the options before any work
    jobs = _evaluation_jobs(source, n, int(chunk), scheduler, target, {"spec": spec, "options": opts})
    parts = _run_jobs(_continuity_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                      desc=f"continuity of {n} samples")
    out = xr.concat(parts, dim=spec["dims"][0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs = {"method": spec["method"], "points": int(points), "radius": float(radius), "seed": int(seed),
                 "chunk": int(chunk),
                 "path": ("straight line from each sample in a random direction drawn from "
                          "numpy.random.default_rng([seed, sample index]), length radius * ||x||_2, points equal steps"),
                 "description": "||R(x) - R(x')||_1 / ||x - x'||_2 per consecutive pair of each path; continuity = "
                                "the maximum per sample (Montavon et al. 2017, Sec. 7.1)",
                 "sciexplain_version": __version__}
    return out


def _randomization_chunk(model: Any, job: _Job) -> xr.Dataset:
    from ..evaluate.parameter_randomization import randomization
    spec, opts = job.extra["spec"], job.extra["options"]
    x = job.inputs()
    kwargs = {"preset": spec["preset"], "bounds": spec["bounds"], "max_pool": spec["max_pool"],
              "dims": spec["dims"], "coords": spec["coords"], **spec["options"]}
    if job.target is not None:
        kwargs["target"] = job.target
    try:
        with MODEL_LOCK:
            out = randomization(model, x, spec["method"], opts["cascade"], seed=opts["seed"], layers=opts["layers"],
                                **kwargs)
    except SciexplainError:
        raise
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"randomization of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    bdim = spec["dims"][0]
    keep = [c for c in out.coords if c in ("layer", "target", "prediction")]
    out = out.reset_coords([c for c in out.coords if c not in keep and c != bdim], drop=True)
    return out.assign_coords({bdim: np.arange(job.start, job.stop)})


def randomization_dataset(model: Any, data: Any, *, chunk: int = 256, scheduler: Any = "threads",
                          cascade: bool = True, seed: int = 0, layers: Sequence[str] | None = None,
                          target: Any = None, dims: Sequence[str] | None = None,
                          coords: Mapping[str, Any] | None = None, n_workers: int | None = None,
                          progress: bool = True, **explain_kwargs: Any) -> xr.Dataset:
    """The model-parameter randomization test of every sample, chunk by chunk, on a Dask scheduler.

    Each chunk runs :func:`sciexplain.evaluate.randomization` on its samples. The randomized
    copies of the model are drawn from ``seed`` alone, and the layers are fixed once for the
    data set (by default every module with parameters on the forward path of the first sample,
    top first), so every chunk compares against the same randomized models: the result is that
    of one call on the whole data set, on every scheduler.

    Parameters
    ----------
    model, data, chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset`.
    cascade, seed, layers
        As for :func:`sciexplain.evaluate.randomization`.
    target : None, int or sequence of int
        The class explained (the trained model's prediction by default), the same for every copy.
    dims, coords
        Names of the dims and non-batch coordinates, as for :func:`explain_dataset`.
    **explain_kwargs
        ``method`` (default ``"lrp"``), ``preset``, ``bounds``, ``max_pool`` and method options.

    Returns
    -------
    xarray.Dataset
        ``spearman`` and ``spearman_abs`` with dims ``(layer, sample)``.
    """
    import torch

    from ..explain.engine import _eval_mode
    from ..evaluate.parameter_randomization import _parametrized_layers
    source, n, spec, target = _evaluation_setup(model, data, chunk, dims, coords, target, explain_kwargs)
    if layers is None:
        with MODEL_LOCK, _eval_mode(model):
            layers = list(reversed(_parametrized_layers(model, torch.from_numpy(source.read(0, 1)))))
    opts = {"cascade": bool(cascade), "seed": int(seed), "layers": list(layers)}
    jobs = _evaluation_jobs(source, n, int(chunk), scheduler, target, {"spec": spec, "options": opts})
    parts = _run_jobs(_randomization_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                      desc=f"randomization of {n} samples")
    out = xr.concat(parts, dim=spec["dims"][0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs = {**parts[0].attrs, "chunk": int(chunk), "layers": ", ".join(opts["layers"])}
    return out
