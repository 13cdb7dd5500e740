"""The input-invariance test: explanations of a model and of its twin that absorbs an input shift in a bias."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError
from ..explain.engine import explain
from ..rules import ZBox
from .inputs import _as_tensor
from .models import _model_mode, _module_calls


_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _first_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module, torch.Tensor]:
    """The first Linear/Conv module called in the forward pass and its input (must hold x's data)."""
    calls = [c for c in _module_calls(model, x, lambda m: isinstance(m, _WEIGHTED)) if c[2] is not None]
    if not calls:
        raise InputError("input_invariance: the model has no Linear/Conv layer to absorb the shift into")
    name, m, inp = calls[0]
    if inp.data_ptr() != x.data_ptr() or inp.numel() != x.numel():
        raise InputError(f"input_invariance: the first weighted layer {name!r} does not receive the input "
                         "itself (or a reshaped view of it), so the shift cannot be absorbed into its bias")
    return name, m, inp


def _absorb_shift(model: nn.Module, x: torch.Tensor, shift: torch.Tensor) -> tuple[nn.Module, str]:
    """A deep copy of ``model`` with ``-W shift`` added to the first layer's bias."""
    twin = copy.deepcopy(model).eval()  # the copy is explained in eval mode anyway
    xc = x.contiguous().clone()
    name, layer, inp = _first_layer(twin, xc)
    s = torch.broadcast_to(shift.to(x.dtype), x.shape[1:]).contiguous().reshape((1,) + tuple(inp.shape[1:]))
    with torch.no_grad():
        w64 = copy.deepcopy(layer).double()
        if w64.bias is not None:
            w64.bias.zero_()
        delta = w64(s.double())  # W shift, one entry per output position
        channel_axis = 1 if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else delta.ndim - 1
        per_channel = delta.movedim(channel_axis, -1).reshape(-1, delta.shape[channel_axis])
        if not torch.allclose(per_channel, per_channel[:1].expand_as(per_channel), rtol=1e-9, atol=1e-9):
            raise InputError(f"input_invariance: the shift through {name!r} differs between output positions "
                             "(zero padding at borders, or a shift that varies across positions a convolution "
                             "slides over), so no bias can absorb it; use a per-channel shift and a first "
                             "layer without padding, or a dense first layer")
        b = -per_channel[0].to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(b.clone())
        else:
            layer.bias.add_(b)
    return twin, name


def _shift_rule(rule: Any, shift: torch.Tensor):
    if isinstance(rule, ZBox):
        return ZBox(torch.as_tensor(rule.low) + shift, torch.as_tensor(rule.high) + shift, rule.stabilizer)
    return rule


def input_invariance(model: nn.Module, x: Any, method: str = "lrp", shift: float | Any = 1.0, *,
                     shift_bounds: bool = True, shifted_kwargs: dict | None = None,
                     **explain_kwargs: Any) -> xr.Dataset:
    """The input-invariance test of Kindermans et al. (2017, "The (un)reliability of saliency methods").

    A twin of the model receives ``x + shift`` and absorbs the shift into its first layer's
    bias (``b - W shift``), so both compute the same function of the data; an input-invariant
    explanation method explains both alike. The model is never modified: the twin is a deep
    copy.

    Parameters
    ----------
    model : torch.nn.Module
        Its first weighted layer (Linear or convolution) must receive the input directly or
        through a reshape. With convolutions, a shift constant per channel and no padding.
    x : tensor or array
    method : str
        Explanation method (see :func:`sciexplain.explain`).
    shift : float or tensor
        Added to every input; a tensor broadcastable to one sample's shape.
    shift_bounds : bool
        Move ``bounds=(low, high)`` and ZBox rules in ``preset`` along with the data for the
        twin (the box of the shifted data); False keeps them fixed.
    shifted_kwargs : dict, optional
        Explanation arguments for the twin that override ``explain_kwargs``.
    **explain_kwargs
        Passed to :func:`sciexplain.explain` (``preset``, ``bounds``, ``target``, ...).

    Returns
    -------
    xarray.Dataset
        ``original`` and ``shifted`` relevance (the explanations of x and of x + shift on the
        twin), per sample ``max_abs_difference`` and ``relative_difference`` (max ``|difference|``
        / max ``|original|``), ``prediction``; attrs ``max_relative_difference``, ``first_layer``.
    """
    xt = _as_tensor(x)
    if not xt.is_floating_point():
        raise InputError("input_invariance needs a float input")
    shift_t = torch.as_tensor(shift, dtype=xt.dtype)
    if not bool(torch.isfinite(shift_t).all()):
        raise InputError("shift contains NaN/Inf")
    try:
        torch.broadcast_to(shift_t, xt.shape[1:])
    except RuntimeError:
        raise InputError(f"shift of shape {tuple(shift_t.shape)} does not broadcast to one sample of shape "
                         f"{tuple(xt.shape[1:])}") from None
    twin, first = _absorb_shift(model, xt, shift_t)
    xs = xt + shift_t
    with _model_mode(model), torch.no_grad():
        out = model(xt)
    with _model_mode(twin), torch.no_grad():
        out_twin = twin(xs)
    if not torch.allclose(out_twin, out, rtol=1e-4, atol=1e-5 * float(out.abs().max()) + 1e-6):
        raise InputError(f"input_invariance: the twin with the shift absorbed in {first!r} does not compute the "
                         f"same outputs (max difference {float((out_twin - out).abs().max()):.3g}); the input "
                         "probably reaches the output also by another path than the first layer")
    R1 = explain(model, xt, method=method, **explain_kwargs)
    kw2 = dict(explain_kwargs)
    if "target" not in kw2:
        kw2["target"] = R1.coords["target"].values
    if shift_bounds:
        if kw2.get("bounds") is not None:
            lo, hi = kw2["bounds"]
            kw2["bounds"] = (torch.as_tensor(lo) + shift_t, torch.as_tensor(hi) + shift_t)
        preset = kw2.get("preset")
        if preset is not None and not isinstance(preset, str):
            if isinstance(preset, dict):
                kw2["preset"] = {k: _shift_rule(v, shift_t) for k, v in preset.items()}
            else:
                kw2["preset"] = _shift_rule(preset, shift_t)
    kw2.update(shifted_kwargs or {})
    R2 = explain(twin, xs, method=method, **kw2)
    bdim = R1.dims[0]
    a = R1.values.astype(np.float64)
    b = R2.transpose(*R1.dims).values.astype(np.float64)
    diff = np.abs(a - b).reshape(len(a), -1).max(axis=1)
    scale = np.abs(a).reshape(len(a), -1).max(axis=1)
    rel = diff / np.where(scale > 0, scale, 1.0)
    keep = [d for d in R1.dims]
    plain1 = R1.drop_vars([c for c in R1.coords if c not in keep])
    plain2 = R2.drop_vars([c for c in R2.coords if c not in keep])
    ds = xr.Dataset({"original": plain1, "shifted": plain2,
                     "max_abs_difference": ((bdim,), diff), "relative_difference": ((bdim,), rel),
                     "prediction": ((bdim,), R1.coords["prediction"].values),
                     "target": ((bdim,), R1.coords["target"].values)})
    shift_desc = float(shift_t) if shift_t.numel() == 1 else f"tensor{tuple(shift_t.shape)}"
    ds.attrs = {"method": method, "shift": shift_desc, "first_layer": first,
                "max_relative_difference": float(rel.max()), "shift_bounds": int(bool(shift_bounds)),
                "description": "explanations of x on the model and of x + shift on its twin that absorbs the "
                               "shift in the first layer's bias (Kindermans et al. 2017)",
                "sciexplain_version": __version__}
    return ds
