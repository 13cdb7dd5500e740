"""The model-parameter randomization test: explanations of a model with its layers re-initialised."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError
from ..explain.engine import explain
from .inputs import _as_tensor
from .models import _model_mode, _module_calls


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / den, np.nan)


def _parametrized_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Modules with parameters of their own, in the order the forward pass calls them."""
    has_own = lambda m: any(True for _ in m.parameters(recurse=False))  # noqa: E731
    calls = _module_calls(model, x, has_own, after=True)
    return list(dict.fromkeys(name for name, _, _ in calls))


def randomization(model: nn.Module, x: Any, method: str = "lrp", cascade: bool = True, *, seed: int = 0,
                  layers: Sequence[str] | None = None, **explain_kwargs: Any) -> xr.Dataset:
    """Model-parameter randomization test (Adebayo et al. 2018, "Sanity checks for saliency maps").

    Layers with parameters are re-initialised from the top (output) down, on deep copies: with
    ``cascade=True`` layer k's copy has every layer from the top to k randomized, with
    ``cascade=False`` only layer k. Each randomized explanation is compared with the trained
    model's by Spearman rank correlation per sample (on the values and on their absolute
    values). An explanation that stays highly correlated does not depend on what the model
    learned. Weights and biases are redrawn as ``N(0, std(parameter))`` (the scale of the
    trained parameter; 1e-2 where it is 0), reproducibly from ``seed``.

    Parameters
    ----------
    model, x
        The model (left unchanged) and a batch.
    method : str
        Explanation method; ``**explain_kwargs`` (``preset``, ``target``, ...) go to
        :func:`sciexplain.explain`. The target is the trained model's, fixed for all copies.
    cascade : bool
        Cumulative (cascading) or independent randomization.
    layers : sequence of str, optional
        Module paths to randomize, top first; default every module with parameters on the
        forward path.

    Returns
    -------
    xarray.Dataset
        ``spearman`` and ``spearman_abs`` with dims ``(layer, sample)``, layers in the order
        randomized (top first).
    """
    xt = _as_tensor(x)
    R0 = explain(model, xt, method=method, **explain_kwargs)
    bdim = R0.dims[0]
    kw = dict(explain_kwargs)
    kw["target"] = R0.coords["target"].values
    if layers is None:
        with _model_mode(model):
            layers = list(reversed(_parametrized_layers(model, xt)))
    else:
        layers = list(layers)
        known = dict(model.named_modules())
        bad = [n for n in layers if n not in known]
        if bad:
            raise InputError(f"unknown module path(s) {bad}; see model.named_modules()")
    if not layers:
        raise InputError("the model has no parameters to randomize")
    gen = torch.Generator().manual_seed(int(seed))
    base = R0.values.reshape(len(R0), -1).astype(np.float64)
    rho, rho_abs = [], []
    current = copy.deepcopy(model).eval()
    for name in layers:
        target_model = current if cascade else copy.deepcopy(model).eval()
        module = dict(target_model.named_modules())[name]
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                std = float(p.detach().double().std()) if p.numel() > 1 else float(p.detach().abs().mean())
                if not std > 0:
                    std = 1e-2
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std)
        Rk = explain(target_model, xt, method=method, **kw)
        vals = Rk.values.reshape(len(Rk), -1).astype(np.float64)
        rho.append(_spearman_rows(base, vals))
        rho_abs.append(_spearman_rows(np.abs(base), np.abs(vals)))
    coords = {"layer": layers}
    for n, c in R0.coords.items():
        if c.dims == (bdim,):
            coords[n] = c
    return xr.Dataset({"spearman": (("layer", bdim), np.array(rho)),
                       "spearman_abs": (("layer", bdim), np.array(rho_abs))}, coords=coords,
                      attrs={"method": method, "cascade": int(bool(cascade)), "seed": int(seed),
                             "description": "Spearman rank correlation of explanations of randomized models "
                                            "with the trained model's (Adebayo et al. 2018)",
                             "sciexplain_version": __version__})
