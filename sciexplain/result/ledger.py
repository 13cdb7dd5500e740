"""The ledger of an f(x) decomposition: relevance + absorbed == prediction, per sample.

:func:`ledger_residual` computes the left side minus the right side and
:func:`check_ledger` raises :class:`LedgerError` when it is not zero to tolerance.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InputError, LedgerError
from .contract import find_batch_dim

__all__ = ["LedgerError", "check_ledger", "ledger_residual"]

# Decompositions whose relevance plus absorbed relevance adds up to the prediction.
_LEDGER_DECOMPOSES = ("f(x)", "f(x) - f(baseline)")


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


def ledger_residual(R: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Per batch element: total relevance + absorbed - prediction (zero when it balances).

    Sums are taken in float64 so that summation error does not enter the residual.

    Parameters
    ----------
    R : xarray.DataArray or xarray.Dataset
        A relevance result whose ``decomposes`` is ``"f(x)"`` or ``"f(x) - f(baseline)"``; a
        Dataset (several explained inputs) balances with the relevance of all its variables.

    Returns
    -------
    xarray.DataArray
        Dims ``(batch,)`` (0-d if the batch was pooled), keeping the per-sample coords.

    Raises
    ------
    ValueError
        For results that decompose the squared gradient norm or nothing.
    """
    if isinstance(R, xr.Dataset):  # several explained inputs: one ledger over all variables
        _require_ledger(R)
        parts = [ledger_residual(R[name]) - R[name].coords["absorbed"].astype(np.float64)
                 + R[name].coords["prediction"].astype(np.float64) for name in R.data_vars]
        residual = sum(parts[1:], parts[0]) + R.coords["absorbed"].astype(np.float64) \
            - R.coords["prediction"].astype(np.float64)
        residual.name = "ledger residual"
        residual.attrs = {}
        return residual
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


def check_ledger(R: xr.DataArray | xr.Dataset, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Raise :class:`LedgerError` unless relevance + absorbed == prediction per sample.

    A sample passes when ``|residual| <= atol + rtol * (|prediction| + |absorbed|)``: the
    residual is a sum whose rounding grows with the largest of its parts, and on a network whose
    biases absorb much more than a small output it is the absorbed part.

    Parameters
    ----------
    R : xarray.DataArray or xarray.Dataset
        A relevance result whose ``decomposes`` is ``"f(x)"`` or ``"f(x) - f(baseline)"``; a
        Dataset (several explained inputs) balances with the relevance of all its variables.
    rtol, atol : float
        Relative (to ``|prediction| + |absorbed|``) and absolute tolerance.

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
    batch_dim = find_batch_dim(R if isinstance(R, xr.DataArray) else R[next(iter(R.data_vars))])
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
    allowed = atol + rtol * (np.abs(prediction) + np.abs(absorbed))
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
