"""The relevance result contract: one labelled ``xarray.DataArray`` per explanation.

Every explanation in sciexplain is returned by :func:`build_result`, which fixes the
contract described in the design document:

- dims named for the domain, the batch dim first;
- per-sample coords on the batch dim: ``prediction`` (the explained output f(x)),
  ``target`` (the explained class) and ``absorbed`` (relevance taken up by biases and
  stabilizers);
- attrs ``method``, ``rules``, ``decomposes`` and ``sciexplain_version``, all
  netCDF-serialisable so that ``R.to_netcdf(path)`` / ``xr.open_dataarray(path)``
  round-trip.

The ledger of an f(x) decomposition balances per sample::

    sum of relevance + absorbed == prediction

:func:`ledger_residual` computes the left side minus the right side and
:func:`check_ledger` raises :class:`LedgerError` when it is not zero to tolerance.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from ..errors import InputError, InputTypeError, LedgerError

try:
    from sciexplain._version import __version__ as _SCIEXPLAIN_VERSION
except ImportError:  # the package version module is optional during development
    _SCIEXPLAIN_VERSION = "0+unknown"

__all__ = [
    "BATCH_COORDS",
    "DECOMPOSES_VALUES",
    "DecompositionWarning",
    "LedgerError",
    "build_result",
    "check_ledger",
    "find_batch_dim",
    "ledger_residual",
]

BATCH_COORDS = ("prediction", "target", "absorbed")
DECOMPOSES_VALUES = ("f(x)", "f(x) - f(baseline)", "squared gradient norm", "none")

# Decompositions whose relevance plus absorbed relevance adds up to the prediction.
_LEDGER_DECOMPOSES = ("f(x)", "f(x) - f(baseline)")

_CORE_ATTRS = ("method", "rules", "decomposes", "sciexplain_version")

# Attribute names that xarray's CF decoding or the netCDF library interpret on reading:
# storing them would change the values or coords that come back from the file.
_RESERVED_ATTRS = frozenset(
    {
        "_FillValue",
        "missing_value",
        "scale_factor",
        "add_offset",
        "_Unsigned",
        "_Encoding",
        "calendar",
        "coordinates",
        "compress",
        "dtype",
    }
)

_NETCDF_INT_RANGE = (-(2**63), 2**63 - 1)


class DecompositionWarning(UserWarning):
    """Summing values that are not a decomposition of f(x) (e.g. ``decomposes == "none"``)."""


# --------------------------------------------------------------------------------------
# attrs
# --------------------------------------------------------------------------------------


def _check_attr_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise InputTypeError(f"attribute names must be non-empty strings, got {name!r}")
    if name.startswith("_") or name in _RESERVED_ATTRS:
        raise InputError(
            f"attribute {name!r} is reserved by netCDF/CF conventions: xarray would "
            "interpret it when reading the file back and change the result. Rename it."
        )


def _readable_value(attr: str, path: str, value: Any) -> str:
    """Render one value inside a nested mapping as text, refusing arbitrary objects."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.generic) and isinstance(value.item(), (int, float)):
        value = value.item()
    if isinstance(value, numbers.Real):
        return repr(value)
    if isinstance(value, Mapping):
        inner = "; ".join(
            f"{key}: {_readable_value(attr, f'{path}.{key}', item)}"
            for key, item in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_readable_value(attr, f"{path}[]", item) for item in value) + "]"
    raise InputTypeError(
        f"attribute {attr!r}: the value at {path!r} is a {type(value).__name__}, which cannot "
        "be written to netCDF. Use strings, numbers, booleans, None, lists or dicts of those."
    )


def _netcdf_attr(name: str, value: Any) -> Any:
    """Convert one attribute value to a netCDF-serialisable value or raise TypeError."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (int, np.integer)):
        if not _NETCDF_INT_RANGE[0] <= int(value) <= _NETCDF_INT_RANGE[1]:
            raise InputTypeError(
                f"attribute {name!r}: integer {value} does not fit in netCDF's 64-bit integers; "
                "store it as a string"
            )
        return value
    if isinstance(value, (float, np.floating)):
        if isinstance(value, np.floating) and value.dtype not in (np.float32, np.float64):
            return float(value)
        return value
    if isinstance(value, Mapping):
        return _readable_value(name, name, value)[1:-1]
    if isinstance(value, np.ndarray):
        if value.ndim == 0 or value.shape == (1,):
            # netCDF does not tell a one-element attribute from a scalar: store the scalar
            # so that the attrs read back are the attrs written.
            return _netcdf_attr(name, value.reshape(()).item())
        if value.ndim != 1:
            raise InputTypeError(
                f"attribute {name!r}: netCDF attributes are 1-d, got an array of shape "
                f"{value.shape}; store it as a coordinate or flatten it"
            )
        if value.dtype.kind == "b":
            return value.astype(np.int8)
        if value.dtype.kind in "iu":
            return value.copy()
        if value.dtype.kind == "f":
            return value.astype(np.float64) if value.dtype.itemsize < 4 else value.copy()
        if value.dtype.kind in "US":
            return ", ".join(str(item) for item in value)
        raise InputTypeError(
            f"attribute {name!r}: arrays of dtype {value.dtype} cannot be written to netCDF"
        )
    if isinstance(value, (list, tuple)):
        if all(isinstance(item, str) for item in value):
            return ", ".join(value)
        if all(
            isinstance(item, (int, float, np.integer, np.floating, np.bool_))
            for item in value
        ):
            return _netcdf_attr(name, np.asarray([_plain_number(item) for item in value]))
        kinds = sorted({type(item).__name__ for item in value})
        raise InputTypeError(
            f"attribute {name!r}: a list/tuple attribute must hold only numbers or only "
            f"strings, got items of types {kinds}"
        )
    raise InputTypeError(
        f"attribute {name!r}: a {type(value).__name__} cannot be written to netCDF. Use a "
        "string, number, boolean, None, list/tuple of numbers or strings, or a dict."
    )


def _plain_number(item: Any) -> int | float:
    if isinstance(item, (bool, np.bool_)):
        return int(bool(item))
    if isinstance(item, (int, np.integer)):
        return int(item)
    return float(item)


def _netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    converted = {}
    for name, value in attrs.items():
        _check_attr_name(name)
        if name == "units" and isinstance(value, str) and " since " in value:
            raise InputError(
                f"attribute 'units' = {value!r} would be decoded as a date by xarray when "
                "reading the file back; use another attribute name"
            )
        converted[name] = _netcdf_attr(name, value)
    return converted


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
    all_attrs = _netcdf_attrs(
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


# --------------------------------------------------------------------------------------
# the ledger
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


def _require_ledger(R: xr.DataArray) -> None:
    decomposes = R.attrs.get("decomposes")
    if decomposes in _LEDGER_DECOMPOSES:
        return
    if decomposes is None:
        raise InputError(
            "this DataArray has no 'decomposes' attr, so it is unknown whether its values "
            "decompose f(x); the ledger is defined for f(x) decompositions only"
        )
    raise InputError(
        f"the ledger is defined for f(x) decompositions only; this result has "
        f"decomposes={decomposes!r}, whose values do not add up to the prediction"
    )


def ledger_residual(R: xr.DataArray) -> xr.DataArray:
    """Per batch element: total relevance + absorbed - prediction (zero when it balances).

    Sums are taken in float64 so that summation error does not enter the residual.

    Parameters
    ----------
    R : xarray.DataArray
        A relevance result whose ``decomposes`` is ``"f(x)"`` or ``"f(x) - f(baseline)"``.

    Returns
    -------
    xarray.DataArray
        Dims ``(batch,)`` (0-d if the batch was pooled), keeping the per-sample coords.

    Raises
    ------
    ValueError
        For results that decompose the squared gradient norm or nothing.
    """
    batch_dim = find_batch_dim(R)
    _require_ledger(R)
    other = [d for d in R.dims if d != batch_dim]
    total = R.astype(np.float64).sum(dim=other, skipna=False)
    residual = (
        total
        + R.coords["absorbed"].astype(np.float64)
        - R.coords["prediction"].astype(np.float64)
    )
    residual.name = "ledger residual"
    residual.attrs = {}
    return residual


def check_ledger(R: xr.DataArray, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Raise :class:`LedgerError` unless relevance + absorbed == prediction per sample.

    A sample passes when ``|residual| <= atol + rtol * |prediction|``.

    Parameters
    ----------
    R : xarray.DataArray
        A relevance result whose ``decomposes`` is ``"f(x)"`` or ``"f(x) - f(baseline)"``.
    rtol, atol : float
        Relative (to ``|prediction|``) and absolute tolerance.

    Raises
    ------
    LedgerError
        Naming the worst sample and its numbers, when the ledger does not balance or
        ``absorbed`` is NaN.
    ValueError
        For results that decompose the squared gradient norm or nothing.
    """
    if rtol < 0 or atol < 0:
        raise InputError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    residual = ledger_residual(R)
    batch_dim = find_batch_dim(R)
    prediction = np.atleast_1d(R.coords["prediction"].values.astype(np.float64))
    absorbed = np.atleast_1d(R.coords["absorbed"].values.astype(np.float64))
    res = np.atleast_1d(residual.values)
    where = "the pooled batch" if batch_dim is None else f"{batch_dim!r}"

    missing = np.isnan(absorbed)
    if missing.any():
        raise LedgerError(
            f"absorbed is NaN for {int(missing.sum())} of {missing.size} samples of {where}: "
            "an f(x) decomposition must count the relevance absorbed by biases and "
            "stabilizers (0 if none)"
        )
    allowed = atol + rtol * np.abs(prediction)
    failing = np.abs(res) > allowed
    if not failing.any():
        return
    excess = np.where(failing, np.abs(res) / allowed, -np.inf)
    worst = int(np.argmax(excess))
    if batch_dim is None:
        label = "the pooled batch"
    else:
        label_value = R.coords[batch_dim].values[worst] if batch_dim in R.coords else worst
        label = f"{batch_dim}={label_value!r} (position {worst})"
    total = res[worst] - absorbed[worst] + prediction[worst]
    raise LedgerError(
        f"the ledger does not balance for {int(failing.sum())} of {failing.size} samples "
        f"(rtol={rtol:g}, atol={atol:g}). Worst: {label}: total relevance {total:.8g} + "
        f"absorbed {absorbed[worst]:.8g} = {total + absorbed[worst]:.8g}, but prediction "
        f"is {prediction[worst]:.8g} (residual {res[worst]:.3g}, allowed "
        f"{allowed[worst]:.3g}). Relevance was lost or created between the output and the "
        "input: check the rules and that every bias/stabilizer contribution is counted."
    )
