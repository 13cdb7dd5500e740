"""The relevance result contract: one labelled ``xarray.DataArray`` per explanation.

Every explanation in sciexplain is returned by :func:`build_result`, which fixes the
contract described in the design document:

- dims named for the domain, the batch dim first;
- per-sample coords on the batch dim: ``prediction`` (the explained output f(x)),
  ``target`` (the explained class) and ``absorbed`` (relevance taken up by biases and
  stabilizers);
- attrs ``method``, ``rules``, ``decomposes`` and ``sciexplain_version``, all
  netCDF-serialisable so that ``R.to_netcdf(path)`` / ``xr.open_dataarray(path)``
  round-trip (:mod:`sciexplain.result.netcdf`).

The ledger that an f(x) decomposition balances is checked in :mod:`sciexplain.result.ledger`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError, InputTypeError
from .netcdf import netcdf_attrs

try:
    from sciexplain._version import __version__ as _SCIEXPLAIN_VERSION
except ImportError:  # the package version module is optional during development
    _SCIEXPLAIN_VERSION = "0+unknown"

__all__ = [
    "BATCH_COORDS",
    "DECOMPOSES_VALUES",
    "DecompositionWarning",
    "build_result",
    "build_dataset",
    "find_batch_dim",
]

BATCH_COORDS = ("prediction", "target", "absorbed")
DECOMPOSES_VALUES = ("f(x)", "f(x) - f(baseline)", "squared gradient norm", "none")

_CORE_ATTRS = ("method", "rules", "decomposes", "sciexplain_version")


class DecompositionWarning(UserWarning):
    """Summing values that are not a decomposition of f(x) (e.g. ``decomposes == "none"``)."""


# --------------------------------------------------------------------------------------
# build_result
# --------------------------------------------------------------------------------------


def _to_numpy(array: Any, what: str) -> np.ndarray:
    """numpy array from a numpy array, a sequence or a torch tensor (detached, on cpu)."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except Exception as error:  # e.g. ragged nested sequences
        raise InputTypeError(f"{what} could not be converted to a numpy array: {error}") from error


def _per_sample(array: Any, what: str, batch: int, batch_dim: str) -> np.ndarray:
    values = _to_numpy(array, what)
    if values.ndim != 1:
        raise InputError(
            f"{what} must be 1-d with one entry per {batch_dim!r} element (length {batch}), "
            f"got shape {values.shape}"
        )
    if values.shape[0] != batch:
        raise InputError(
            f"{what} has length {values.shape[0]} but the batch dim {batch_dim!r} has "
            f"{batch} elements"
        )
    if values.dtype.kind == "O":
        if all(isinstance(item, str) for item in values):
            values = values.astype(str)
        else:
            raise InputTypeError(f"{what} must hold numbers or strings, got objects")
    return values


def build_result(
    values: Any,
    *,
    dims: Sequence[str],
    coords: Mapping[str, Any] | None = None,
    prediction: Any,
    target: Any,
    absorbed: Any,
    method: str,
    rules: str,
    decomposes: str,
    attrs: Mapping[str, Any] | None = None,
    name: str = "relevance",
) -> xr.DataArray:
    """Wrap relevance scores in the labelled DataArray of the relevance contract.

    Parameters
    ----------
    values : numpy.ndarray or torch.Tensor
        Relevance of shape ``(batch, ...)``. Tensors are detached and moved to the cpu.
        Integer values are converted to float64; NaN or Inf is an error.
    dims : sequence of str
        One name per axis of ``values``, the batch dim first.
    coords : mapping, optional
        Extra coordinates in any form xarray accepts: dim coords (``{"channel": names}``)
        and non-dim coords (``{"channel_x": ("channel", xs)}``). The names ``prediction``,
        ``target`` and ``absorbed`` are reserved for the per-sample coords.
    prediction, target, absorbed : array-like of shape (batch,)
        Per-sample coords on the batch dim: the explained output f(x), the explained class
        and the relevance absorbed by biases and stabilizers (NaN for methods that decompose
        nothing).
    method : str
        Name of the explanation method, e.g. ``"lrp"``.
    rules : str or mapping
        Readable summary of which rule ran on which layer; a mapping is rendered as text.
    decomposes : str
        What the relevance adds up to, one of :data:`DECOMPOSES_VALUES`.
    attrs : mapping, optional
        Further attrs. Values are made netCDF-serialisable: bool -> 0/1, None -> "none",
        numbers and strings unchanged, lists/tuples of numbers -> numpy arrays (a single
        number -> that number, as netCDF cannot tell them apart), lists of strings ->
        joined by ", ", dicts -> a readable string. Anything else is a TypeError.
    name : str, default "relevance"
        Name of the DataArray.

    Returns
    -------
    xarray.DataArray
        The result, with the ``relevance`` accessor available (``import sciexplain.accessor``).

    Raises
    ------
    ValueError
        On a dims/ndim mismatch, an empty batch, per-sample coords of the wrong length,
        NaN/Inf in ``values``, an unknown ``decomposes`` or a reserved coord/attr name.
    TypeError
        On an attribute value that cannot be written to netCDF.
    """
    if decomposes not in DECOMPOSES_VALUES:
        raise InputError(
            f"decomposes={decomposes!r} is not one of {list(DECOMPOSES_VALUES)}"
        )
    if not isinstance(method, str) or not method:
        raise InputTypeError(f"method must be a non-empty string, got {method!r}")
    if not isinstance(name, str) or not name:
        raise InputTypeError(f"name must be a non-empty string, got {name!r}")

    array = _to_numpy(values, "values")
    if array.dtype.kind in "iu":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        raise InputTypeError(f"values must be real numbers, got dtype {array.dtype}")
    if isinstance(dims, str):
        raise InputTypeError(f"dims must be a sequence of names, one per axis, got the string {dims!r}")
    dims = tuple(dims)
    if array.ndim == 0:
        raise InputError("values must have a batch dim first, got a 0-d array")
    if len(dims) != array.ndim:
        raise InputError(
            f"got {len(dims)} dims {dims} for values with {array.ndim} axes (shape "
            f"{array.shape}); give one name per axis, the batch dim first"
        )
    if len(set(dims)) != len(dims) or not all(isinstance(d, str) and d for d in dims):
        raise InputError(f"dims must be distinct non-empty strings, got {dims}")
    batch_dim = dims[0]
    batch = array.shape[0]
    if batch == 0:
        raise InputError(f"empty batch: the batch dim {batch_dim!r} has length 0")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = dict(zip(dims, (int(i) for i in bad[0])))
        raise InputError(
            f"values contain {len(bad)} NaN/Inf entries (first at {first}); relevance must "
            "be finite. Check the model output and the rules' stabilizers."
        )

    per_sample = {
        "prediction": _per_sample(prediction, "prediction", batch, batch_dim),
        "target": _per_sample(target, "target", batch, batch_dim),
        "absorbed": _per_sample(absorbed, "absorbed", batch, batch_dim),
    }
    for coord_name in ("prediction", "absorbed"):
        if per_sample[coord_name].dtype.kind not in "iuf":
            raise InputTypeError(
                f"{coord_name} must be numeric, got dtype {per_sample[coord_name].dtype}"
            )
    if not np.isfinite(per_sample["prediction"]).all():
        raise InputError("prediction contains NaN/Inf; the explained output must be finite")
    if np.isinf(per_sample["absorbed"]).any():
        raise InputError("absorbed contains Inf; use NaN for methods that decompose nothing")

    extra_coords = dict(coords) if coords is not None else {}
    clash = sorted(set(extra_coords) & set(BATCH_COORDS))
    if clash:
        raise InputError(
            f"coords {clash} are reserved for the per-sample coords; pass them as the "
            "prediction/target/absorbed arguments"
        )

    extra_attrs = dict(attrs) if attrs is not None else {}
    clash = sorted(set(extra_attrs) & set(_CORE_ATTRS))
    if clash:
        raise InputError(
            f"attrs {clash} are set by build_result from its own arguments; do not pass "
            "them in attrs"
        )
    all_attrs = netcdf_attrs(
        {
            "method": method,
            "rules": rules,
            "decomposes": decomposes,
            "sciexplain_version": _SCIEXPLAIN_VERSION,
            **extra_attrs,
        }
    )
    if not isinstance(all_attrs["rules"], str):
        raise InputTypeError(f"rules must be a string or a mapping, got {type(rules).__name__}")

    try:
        result = xr.DataArray(array, dims=dims, coords=extra_coords, name=name)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"coords do not fit values with dims {dims} and shape {array.shape}: {error}"
        ) from error
    result = result.assign_coords(
        {key: (batch_dim, value) for key, value in per_sample.items()}
    )
    result.attrs.update(all_attrs)
    return result


def build_dataset(
    variables: Mapping[str, tuple[Any, Sequence[str], Mapping[str, Any] | None]],
    *,
    prediction: Any,
    target: Any,
    absorbed: Any,
    method: str,
    rules: str,
    decomposes: str,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The relevance contract for several explained inputs: one ``xarray.Dataset``.

    Each explained input is one relevance variable, built by :func:`build_result` from
    ``variables[name] = (values, dims, coords)``: its own dims and coords, the batch dim first
    and shared by all. ``prediction``, ``target`` and ``absorbed`` are shared per-sample coords,
    and there is one ledger: the relevance of all variables plus ``absorbed`` equals
    ``prediction`` per sample (:func:`sciexplain.result.ledger.check_ledger` takes the Dataset).
    A single variable ``R[name]`` keeps the coords and attrs, so its ``relevance`` accessor pools
    it; alone it does not balance the ledger (the other inputs hold the rest).
    """
    if not variables:
        raise InputError("build_dataset needs at least one variable")
    arrays = {}
    for name, (values, dims, coords) in variables.items():
        arrays[name] = build_result(values, dims=dims, coords=coords, prediction=prediction, target=target,
                                    absorbed=absorbed, method=method, rules=rules, decomposes=decomposes,
                                    attrs={**(attrs or {}), "input": name}, name=name)
    batch_dims = {a.dims[0] for a in arrays.values()}
    if len(batch_dims) > 1:
        raise InputError(f"the variables have different batch dims {sorted(batch_dims)}; all share one")
    try:
        dataset = xr.Dataset(arrays)
    except (ValueError, TypeError) as error:
        raise InputError(f"the variables' dims or coords disagree: {error}; give each input dims of its "
                         "own names (only the batch dim is shared)") from error
    first = next(iter(arrays.values()))
    dataset.attrs.update({k: v for k, v in first.attrs.items() if k != "input"})
    dataset.attrs["inputs"] = ", ".join(arrays)
    dataset.attrs["ledger"] = ("the relevance of all variables plus absorbed equals prediction, per "
                               "sample")
    return dataset


# --------------------------------------------------------------------------------------
# the batch dim
# --------------------------------------------------------------------------------------


def find_batch_dim(R: xr.DataArray) -> str | None:
    """The dim that carries the ``prediction`` coord.

    Returns None when ``prediction`` is a scalar coord (the batch was pooled away).

    Raises
    ------
    ValueError
        If ``R`` has no ``prediction`` coord or it is not 0-d or 1-d.
    """
    if not isinstance(R, xr.DataArray):
        raise InputTypeError(f"expected an xarray.DataArray, got {type(R).__name__}")
    if "prediction" not in R.coords:
        raise InputError(
            "this DataArray has no 'prediction' coord, so its batch dim is unknown; "
            "relevance results are made by sciexplain.result.build_result"
        )
    pred_dims = R.coords["prediction"].dims
    if len(pred_dims) > 1:
        raise InputError(f"the 'prediction' coord must be 0-d or 1-d, it has dims {pred_dims}")
    return pred_dims[0] if pred_dims else None
