"""Data sources: where a chunk's inputs are read from (a .npy file, an in-memory array, a Zarr variable)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError


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
        _check_npy(self.path)
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:  # changed on disk since the check
            raise InputError(f"{self.path} cannot be read as a .npy file ({err}); write it again with np.save") from err

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._open()[start:stop])

    def __repr__(self) -> str:
        return f"NpySource({self.path!r}, shape={self.shape})"


def _check_npy(path: str) -> None:
    """Read a .npy file's header and size: an :class:`InputError` saying what is wrong with it (not a
    .npy file, a cut header, data shorter than the header promises, Python objects), or nothing."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError as err:  # fewer bytes than the magic string, or another one
            size = os.path.getsize(path)
            what = "is empty" if size == 0 else f"does not start like a .npy file ({err})"
            raise InputError(f"{path} {what}: it is not a .npy file, or it is truncated (cut short while it "
                             "was written or copied); write it again with np.save") from err
        try:
            shape, _, dtype = (fmt.read_array_header_1_0(f) if version == (1, 0) else
                               fmt.read_array_header_2_0(f) if version == (2, 0) else fmt._read_array_header(f, version))
        except (ValueError, EOFError, SyntaxError) as err:
            raise InputError(f"{path} has a corrupt or truncated .npy header ({err}); the file was cut short or "
                             "damaged: write it again with np.save") from err
        data_start = f.tell()
    if dtype.hasobject:
        raise InputError(f"{path} holds Python objects (dtype {dtype}), which are never unpickled; save plain "
                         "numbers (np.save with a numeric array)")
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < expected:
        raise InputError(f"{path} is truncated: its header promises an array of shape {tuple(shape)} and dtype "
                         f"{dtype} ({expected} bytes with the header), but the file has {size} bytes. It was cut "
                         "short while it was written or copied; write it again with np.save")


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


class _Slice:
    """A copy of one slice of an in-memory array; pickles as just that slice (for worker processes)."""

    def __init__(self, source: Any, start: int, stop: int):
        self.part = source.read(start, stop)
        self.start = start

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.part[start - self.start:stop - self.start])


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
