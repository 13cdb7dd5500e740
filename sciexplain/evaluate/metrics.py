"""Areas of perturbation curves: AOPC (Samek et al. 2017) and the area between LeRF and MoRF (ABPC)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import InputError


def _check_curve(curve: Any, what: str) -> xr.DataArray:
    if not isinstance(curve, xr.DataArray) or curve.ndim < 2 or "step" not in curve.dims:
        raise InputError(f"{what} must be a DataArray (sample, step) or (seed, sample, step) from "
                         "perturbation_curve")
    if curve.dims[-1] != "step":
        curve = curve.transpose(..., "step")
    if curve.sizes["step"] < 2:
        raise InputError(f"{what} has a single step; it needs step 0 and at least one perturbation")
    return curve


def _area_result(per: np.ndarray, curve: xr.DataArray, name: str, attrs: dict) -> xr.DataArray:
    dims = curve.dims[:-1]
    coords = {n: c for n, c in curve.coords.items() if set(c.dims) <= set(dims)}
    return xr.DataArray(per, dims=dims, coords=coords, name=name,
                        attrs={"mean": float(per.mean()), **attrs, "sciexplain_version": __version__})


def aopc(curve: xr.DataArray) -> xr.DataArray:
    """Area over the perturbation curve (Samek et al. 2017).

    ``AOPC = 1/(L+1) sum_{k=0}^{L} (f(x^(0)) - f(x^(k)))`` per sample, for a curve with steps
    0..L. On a MoRF curve, larger is better (the explanation found what the output depends
    on); on a LeRF curve, smaller is better.

    Returns
    -------
    xarray.DataArray
        Per sample (and per seed for a curve with a ``seed`` dim); ``attrs["mean"]`` is the
        average over all of them, the number the papers report (also ``.mean()``).
    """
    curve = _check_curve(curve, "curve")
    v = curve.values
    per = (v[..., :1] - v).mean(axis=-1)
    return _area_result(per, curve, "aopc",
                        {"order": curve.attrs.get("order", "unknown"), "steps": int(v.shape[-1] - 1),
                         "description": "area over the perturbation curve: mean over steps 0..L of "
                                        "f(x^(0)) - f(x^(k))"})


def abpc(morf: xr.DataArray, lerf: xr.DataArray) -> xr.DataArray:
    """Area between the LeRF and MoRF curves: mean over steps of ``f_LeRF(k) - f_MoRF(k)`` per sample.

    Larger is better: removing the least relevant regions should keep the output, the most
    relevant ones should destroy it. Both curves must have the same dims (e.g. the same seeds).
    """
    morf = _check_curve(morf, "morf")
    lerf = _check_curve(lerf, "lerf")
    for c, want in ((morf, "morf"), (lerf, "lerf")):
        if c.attrs.get("order", want) != want:
            raise InputError(f"the {want} argument is a curve of order {c.attrs['order']!r}")
    if morf.dims != lerf.dims or morf.shape != lerf.shape:
        raise InputError(f"morf {dict(morf.sizes)} and lerf {dict(lerf.sizes)} curves differ in samples, "
                         "seeds or steps")
    per = (lerf.values - morf.values).mean(axis=-1)
    return _area_result(per, morf, "abpc", {"steps": int(morf.shape[-1] - 1),
                                            "description": "area between the LeRF and MoRF perturbation curves"})
