"""Making the attrs of a relevance result netCDF-serialisable, so that results round-trip through files."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["netcdf_attrs"]

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


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
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
