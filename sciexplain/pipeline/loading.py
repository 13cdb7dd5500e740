"""Data and models of a pipeline: plugin loaders and models, data files, safe model files.

Nothing here unpickles arbitrary objects: ``.npy`` files are read with ``allow_pickle=False``,
state dicts with ``torch.load(..., weights_only=True)`` (tensors and plain containers only),
TorchScript files with ``torch.jit.load``. A TorchScript file is a program: loading it runs
code the file defines (``torch.jit.load``'s own documentation warns about malicious files), so
load only files you would run as a script; sciexplain then interprets its graph with torch's own
operations only (:mod:`sciexplain.torchscript`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SciexplainError

__all__ = ["PipelineData", "ModelLoadError", "DataLoadError", "load_data", "load_labels", "load_model",
           "prepare_inputs"]


class ModelLoadError(SciexplainError, ValueError):
    """A model file could not be loaded safely, or does not fit the named architecture."""


class DataLoadError(SciexplainError, ValueError):
    """A data file or a plugin loader gave unusable data."""


@dataclass
class PipelineData:
    """The data of a pipeline run, as a plugin loader or a data file gives it.

    Attributes
    ----------
    x : array or None
        Inputs, samples first (numpy array, tensor, or a lazily read source); None until
        :func:`prepare_inputs` converted ``native`` data with the domain's ``to_tensor``.
    dims, coords, attrs
        Labels of ``x`` (dims samples first; coords in any form xarray accepts).
    y : numpy.ndarray or None
        Integer labels, one per sample (for ``target = "true"``).
    native : any
        The domain's native data (``mne.Epochs``, images) when the loader returns it.
    domain : Domain or None
        The domain plugin the data came from.
    extras : dict
        Anything the plugin's poolings and figures need (object boxes, display images...).
    explain : dict or callable
        Default keyword arguments of the explanation (``preset``, ``bounds``) or a callable
        ``explain(model) -> dict`` giving them.
    files : list of Path
        Input files read (their sha256 goes into the provenance).
    """

    x: Any = None
    dims: tuple[str, ...] | None = None
    coords: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    y: np.ndarray | None = None
    native: Any = None
    domain: Any = None
    extras: dict = field(default_factory=dict)
    explain: dict | Callable = field(default_factory=dict)
    files: list = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])


_DATA_KEYS = {"x", "dims", "coords", "attrs", "y", "native", "extras", "explain", "files"}


def _from_loader(result: Any, plugin: str, loader: str, domain: Any) -> PipelineData:
    if not isinstance(result, Mapping):
        raise DataLoadError(f"the {plugin} loader {loader!r} returned {type(result).__name__}; a pipeline loader "
                            f"returns a dict with 'x' or 'native' (see docs/plugins.md, Pipelines)")
    unknown = set(result) - _DATA_KEYS
    if unknown:
        raise DataLoadError(f"the {plugin} loader {loader!r} returned unknown keys {sorted(unknown)}; "
                            f"allowed: {sorted(_DATA_KEYS)}")
    if result.get("x") is None and result.get("native") is None:
        raise DataLoadError(f"the {plugin} loader {loader!r} returned neither 'x' nor 'native' data")
    y = result.get("y")
    return PipelineData(x=result.get("x"), dims=tuple(result["dims"]) if result.get("dims") else None,
                        coords=dict(result.get("coords") or {}), attrs=dict(result.get("attrs") or {}),
                        y=None if y is None else np.asarray(y, dtype=np.int64), native=result.get("native"),
                        domain=domain, extras=dict(result.get("extras") or {}), explain=result.get("explain") or {},
                        files=[Path(f) for f in result.get("files") or ()])


def _read_file(path: Path, variable: str | None, dims: list[str] | None) -> PipelineData:
    from ..scale.sources import NpySource
    if path.suffix == ".npy":
        source = NpySource(path)  # memory-mapped, allow_pickle=False
        return PipelineData(x=source, dims=tuple(dims) if dims else None, files=[path])
    opener = xr.open_dataset if path.suffix == ".nc" else xr.open_zarr
    try:
        ds = opener(path)
    except Exception as err:  # noqa: BLE001 -- named with the file
        raise DataLoadError(f"{path} could not be read as {'netCDF' if path.suffix == '.nc' else 'Zarr'}: {err}") from err
    names = list(ds.data_vars)
    if variable is None:
        if len(names) != 1:
            raise DataLoadError(f"{path} holds the variables {names}; say which with data.variable")
        variable = names[0]
    if variable not in ds:
        raise DataLoadError(f"{path} has no variable {variable!r}; it has {names}")
    da = ds[variable]
    if dims and tuple(dims) != da.dims:
        raise DataLoadError(f"data.dims {dims} differ from the dims {da.dims} stored in {path}; drop data.dims")
    coords = {n: (c.dims, c.values) for n, c in da.coords.items()}
    return PipelineData(x=da.data, dims=da.dims, coords=coords, attrs=dict(da.attrs), files=[path])


def load_data(cfg: Mapping, domains: Mapping[str, Any]) -> PipelineData:
    """The data named by the ``[data]`` section (already validated and resolved)."""
    if "loader" in cfg:
        domain = domains[cfg["plugin"]]
        loader = domain.pipeline_loaders()[cfg["loader"]]
        data = _from_loader(loader(**cfg.get("params", {})), cfg["plugin"], cfg["loader"], domain)
    else:
        data = _read_file(Path(cfg["file"]), cfg.get("variable"), cfg.get("dims"))
    if "target_file" in cfg:
        data.y = load_labels(cfg["target_file"])
        data.files.append(Path(cfg["target_file"]))
    if data.dims is not None and data.x is not None and len(data.dims) != len(data.x.shape):
        raise DataLoadError(f"data.dims names {len(data.dims)} dims {list(data.dims)}, but the data have "
                            f"{len(data.x.shape)} (shape {tuple(data.x.shape)}): give one name per axis, samples first")
    return data


def load_labels(path: str | Path) -> np.ndarray:
    """Integer class labels, one per sample, from a ``.npy`` file (read with ``allow_pickle=False``).

    Labels must be integers: an integer array, or a float array whose values are all whole
    numbers (``2.0``). Anything else (``2.9``, NaN, booleans, strings, more than one label per
    sample) is an error naming the first bad row; nothing is rounded or truncated.

    Raises
    ------
    DataLoadError
        The file cannot be read or holds non-integer labels.
    """
    path = Path(path)
    try:
        y = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 -- a truncated or pickled file, named
        raise DataLoadError(f"target_file {path} could not be read as a .npy array of integer labels: "
                            f"{type(err).__name__}: {err}") from err
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataLoadError(f"target_file {path} holds an array of shape {y.shape}; expected one integer label per "
                            "sample (shape (n,))")
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.floating):
        raise DataLoadError(f"target_file {path} holds {y.dtype} values; expected integer class labels")
    whole = np.isfinite(y) & (y == np.round(y)) & (np.abs(y) < 2 ** 53)
    if not whole.all():
        row = int(np.flatnonzero(~whole)[0])
        raise DataLoadError(f"target_file {path}: row {row} holds {y[row].item()!r}, not an integer class label (labels "
                            "are never rounded or truncated; save integer labels, e.g. np.save(path, "
                            "y.astype(int)) once they are right)")
    return y.astype(np.int64)


def prepare_inputs(data: PipelineData, model: Any, samples: int | None) -> PipelineData:
    """Convert native data with the domain's ``to_tensor`` (it may need the model) and keep the
    first ``samples`` samples."""
    if data.x is None:
        x, labels = data.domain.to_tensor(data.native, model)
        data.x = x
        data.dims = tuple(labels.get("dims") or data.dims or ())
        data.coords = {**dict(labels.get("coords") or {}), **data.coords}
        data.attrs = {**dict(labels.get("attrs") or {}), **data.attrs}
        if data.y is None and labels.get("labels") is not None:
            data.y = np.asarray(labels["labels"], dtype=np.int64)
    if samples is not None and samples < data.x.shape[0]:
        data.x = _head(data.x, samples)
        if data.y is not None:
            data.y = data.y[:samples]
        bdim = data.dims[0] if data.dims else None
        coords = {}
        for name, c in data.coords.items():
            cdims = c[0] if isinstance(c, tuple) else ((name,) if name == bdim else ())
            if bdim in (cdims if isinstance(cdims, tuple) else (cdims,)):
                values = c[1] if isinstance(c, tuple) else c
                coords[name] = (cdims, np.asarray(values)[:samples])
            else:
                coords[name] = c
        data.coords = coords
    if data.y is not None and len(data.y) != data.x.shape[0]:
        raise DataLoadError(f"{len(data.y)} labels for {data.x.shape[0]} samples")
    return data


class _Head:
    """The first ``n`` samples of a lazily read source."""

    def __init__(self, source: Any, n: int):
        self.source, self.n = source, n
        self.shape = (n,) + tuple(source.shape[1:])
        self.dtype = source.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.source.read(start, min(stop, self.n))


def _head(x: Any, n: int) -> Any:
    return _Head(x, n) if hasattr(x, "read") else x[:n]


def _torch_load_state_dict(path: Path) -> dict:
    import pickle

    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelLoadError(f"{path} is not a plain state dict: torch.load(weights_only=True) refused it ({err}). "
                             "sciexplain never unpickles arbitrary objects; save the weights with "
                             "torch.save(model.state_dict(), path), or export the model with torch.jit.save") from err
    except Exception as err:  # noqa: BLE001 -- a corrupt file, named
        raise ModelLoadError(f"{path} could not be read as a state dict: {type(err).__name__}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict of tensors "
                             "(torch.save(model.state_dict(), path))")
    return dict(state)


def load_model(cfg: Mapping, domains: Mapping[str, Any], *, seed: int) -> Any:
    """The model named by the ``[model]`` section, in eval mode. Seeds torch first."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    if "torchscript" in cfg:
        path = Path(cfg["torchscript"])
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001
            raise ModelLoadError(f"{path} is not a TorchScript file (torch.jit.save): {type(err).__name__}: {err}") from err
        # the compiled graph cannot be recorded by the engine: interpret it as an eager module
        # (standard layers rebuilt, the rest run node by node; see sciexplain.torchscript), so LRP works
        from ..canonizers.torchscript import to_eager
        try:
            eager = to_eager(model)
        except SciexplainError as err:
            raise ModelLoadError(f"{path}: the TorchScript model cannot be converted for explanation: {err}") from err
        eager.torchscript_file = str(path)
        return eager.eval()
    if "state_dict" in cfg:
        plugin, name = cfg["architecture"].split(":")
        build = domains[plugin].pipeline_architectures()[name]
        model = build(**cfg.get("params", {}))
        state = _torch_load_state_dict(Path(cfg["state_dict"]))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelLoadError(f"{cfg['state_dict']} does not fit the architecture {cfg['architecture']}: {err}") from err
        return model.eval()
    factory = domains[cfg["plugin"]].pipeline_models()[cfg["name"]]
    model = factory(seed=seed, **cfg.get("params", {}))
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"the {cfg['plugin']} model {cfg['name']!r} returned {type(model).__name__}, not a "
                             "torch.nn.Module")
    return model.eval()
