"""Zarr stores of relevance: which computation a store holds, its attrs, and reading it back.

Resuming: every chunk, once written, is marked in the store's ``chunk_done`` variable. Running
the same call again on the same store skips the marked chunks; a store made by a different
model, data set, chunking or method is refused (pass ``overwrite=True`` to replace it).
``overwrite=True`` replaces only what sciexplain wrote: a folder is recognised as a store by the
``sciexplain_store_key`` attribute every store carries from its creation on
(:func:`is_sciexplain_store`); any other folder is refused and left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import SciexplainError

_STORE_FORMAT = 2  # Zarr v2 metadata: stable for strings and readable by every Zarr library


class StoreError(SciexplainError, ValueError):
    """The output store exists but holds another computation, or cannot be used."""


STORE_MARKER = "sciexplain_store_key"  # the attr every store written by explain_dataset carries


def is_sciexplain_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a store written by :func:`sciexplain.explain_dataset` (its group attrs carry
    :data:`STORE_MARKER`). Only such stores are ever removed by ``overwrite=True``."""
    path = Path(path)
    for meta, key in ((".zattrs", None), ("zarr.json", "attributes")):
        f = path / meta
        if f.is_file():
            try:
                attrs = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            attrs = attrs.get(key, {}) if key and isinstance(attrs, dict) else attrs
            return isinstance(attrs, dict) and STORE_MARKER in attrs
    return False


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


def _store_key(model: Any, source: Any, spec: dict, target: Any, chunk: int) -> str:
    h = hashlib.sha256()
    h.update(_sha256_model(model).encode())
    h.update(_data_fingerprint(source, chunk).encode())
    h.update(json.dumps(_jsonable({k: v for k, v in spec.items() if k != "coords"}), sort_keys=True).encode())
    h.update(json.dumps(_jsonable(target)).encode())
    h.update(str(chunk).encode())
    return h.hexdigest()


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
