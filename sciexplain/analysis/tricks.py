"""Practical tricks for better explanations (Montavon et al. 2017, Sec. 6).

``translation_trick``  average the explanations of slightly translated copies of the input,
                       each translated back, to reduce the checkerboard artefacts of strided
                       layers (Sec. 6.2)
``sliding_window``     explain an input longer than the model's receptive field as the sum of
                       the model applied to every window (Sec. 6.2, "sliding window")
``relevant_pattern``   ``x * R(x)`` with R rescaled to [0, 1], for display (Sec. 6.3)

The first two keep the relevance contract: the result sums (with ``absorbed``) to its
``prediction``, which is then the average prediction over the translations, or the sum of the
window predictions ``g(X) = sum_s f(X[s])``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import InputError
from ..evaluate.inputs import _align_relevance, _as_tensor, _batch_dim_of

__all__ = ["translation_trick", "sliding_window", "relevant_pattern"]


# -- translation trick ------------------------------------------------------------------------

def _translate(x: torch.Tensor, shift: tuple[int, ...], fill: str | float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` translated by ``shift`` along its last ``len(shift)`` dims, and the mask of filled entries.

    The content moves by ``+shift``: ``out[p] = x[p - shift]``; positions whose source lies
    outside the input are filled (``"edge"``: the nearest border value, or a constant).
    """
    out = x
    outside = torch.zeros(x.shape[-len(shift):], dtype=torch.bool)
    for j, s in enumerate(shift):
        dim = x.ndim - len(shift) + j
        n = x.shape[dim]
        src = torch.arange(n) - s
        bad = (src < 0) | (src >= n)
        out = out.index_select(dim, src.clamp(0, n - 1))
        shape = [1] * len(shift)
        shape[j] = n
        outside = outside | bad.reshape(shape)
    if fill != "edge":
        out = out.masked_fill(outside, float(fill))
    return out, outside


def _untranslate(R: np.ndarray, shift: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of the translated input mapped back to the original positions.

    ``back[p] = R[p + shift]`` where ``p + shift`` lies inside; relevance at positions of the
    translated input that show no original entry (the filled border) is returned per sample as
    ``dropped``.
    """
    back = np.zeros_like(R)
    keep = np.ones(R.shape[-len(shift):], dtype=bool)
    src_sl, dst_sl = [], []
    for j, s in enumerate(shift):
        n = R.shape[R.ndim - len(shift) + j]
        if abs(s) >= n:
            raise InputError(f"a shift of {s} along a dim of size {n} moves the whole input out of view")
        # back[p] = R[p + s] for p in [max(0, -s), min(n, n - s))
        lo, hi = max(0, -s), min(n, n - s)
        dst_sl.append(slice(lo, hi))
        src_sl.append(slice(lo + s, hi + s))
        inside = np.zeros(n, dtype=bool)
        inside[lo + s: hi + s] = True
        shape = [1] * len(shift)
        shape[j] = n
        keep = keep & inside.reshape(shape)
    lead = (slice(None),) * (R.ndim - len(shift))
    back[lead + tuple(dst_sl)] = R[lead + tuple(src_sl)]
    dropped = np.where(keep, 0.0, R).reshape(R.shape[0], -1).sum(axis=1)
    return back, dropped


def translation_trick(explain: Callable[[torch.Tensor], xr.DataArray], x: Any,
                      shifts: Sequence[Sequence[int]] | None = None, *, fill: str | float = "edge") -> xr.DataArray:
    """Average of inverse-translated explanations of slightly translated inputs.

    For every shift ``s`` the input is translated by ``s`` (its content moves by ``+s`` along
    the last ``len(s)`` dims), explained, and the explanation translated back by ``-s``; the
    result is the mean over shifts.

    **Borders.** The strip a translation uncovers is filled with the nearest border value
    (``fill="edge"``) or a constant (``fill=0.0``). Relevance that lands on that filled strip
    belongs to no original position: it is moved to ``absorbed``. Original entries pushed out
    of view by a shift receive nothing from that shift. So near the borders fewer shifts
    contribute, and the ledger still balances:
    ``sum(R) + absorbed = prediction = mean over shifts of f(translated x)``.

    Parameters
    ----------
    explain : callable
        ``explain(x_batch) -> DataArray``, e.g. ``lambda x: sx.explain(model, x, target=3)``.
        Its trailing dims must be those of x (a colour dim may be pooled away). The target
        must not change with the shift: fix it in the callable (a differing ``target`` coord
        is an error).
    x : tensor or array
        The batch.
    shifts : sequence of int tuples, optional
        Translations, each of the last ``len(shift)`` dims. Default: every shift in
        {-1, 0, 1} along the last 2 dims for inputs with at least 2 dims after batch and
        channel, else along the last dim.
    fill : "edge" or float
        How the uncovered border is filled.

    Returns
    -------
    xarray.DataArray
        Labelled like the unshifted explanation, ``prediction`` and ``absorbed`` the means
        over shifts; attrs ``trick``, ``shifts``.
    """
    xt = _as_tensor(x)
    if shifts is None:
        d = 2 if xt.ndim >= 4 else 1
        shifts = list(itertools.product((-1, 0, 1), repeat=d))
    shifts = [tuple(int(v) for v in (s if isinstance(s, (tuple, list)) else (s,))) for s in shifts]
    if not shifts or len({len(s) for s in shifts}) != 1:
        raise InputError(f"shifts must be a non-empty list of tuples of one length, got {shifts}")
    d = len(shifts[0])
    if d > xt.ndim - 1:
        raise InputError(f"shifts of {d} dims for x with {xt.ndim - 1} dims after the batch")
    if fill != "edge" and not isinstance(fill, (int, float)):
        raise InputError(f"fill must be 'edge' or a number, got {fill!r}")
    results: list[xr.DataArray] = []
    for s in shifts:
        xs, _ = _translate(xt, s, fill)
        R = explain(xs)
        if not isinstance(R, xr.DataArray) or "prediction" not in R.coords:
            raise InputError("explain must return a relevance DataArray (with a prediction coord), e.g. "
                             "lambda x: sx.explain(model, x, target=...)")
        results.append(R)
    first = results[0]
    bdim = _batch_dim_of(first)
    for R, s in zip(results, shifts):
        if R.dims != first.dims or R.shape != first.shape:
            raise InputError(f"explanations of different shifts have different dims/shapes: {first.dims} "
                             f"{first.shape} vs {R.dims} {R.shape} (shift {s})")
        if R.dims[0] != bdim or R.shape[-d:] != tuple(xt.shape[-d:]):
            raise InputError(f"the explanation's last {d} dims {R.shape[-d:]} are not x's {tuple(xt.shape[-d:])}; "
                             "the translated dims must be kept in the explanation")
        if "target" in R.coords and not np.array_equal(R.coords["target"].values, first.coords["target"].values):
            raise InputError(f"the explained target changes with the shift {s}; fix the target in explain, e.g. "
                             "lambda x: sx.explain(model, x, target=R0.target.values)")
    total = np.zeros(first.shape, dtype=np.float64)
    absorbed = np.zeros(first.shape[0], dtype=np.float64)
    prediction = np.zeros(first.shape[0], dtype=np.float64)
    for R, s in zip(results, shifts):
        back, dropped = _untranslate(R.values.astype(np.float64), s)
        total += back
        absorbed += np.asarray(R.coords["absorbed"].values, dtype=np.float64) + dropped
        prediction += np.asarray(R.coords["prediction"].values, dtype=np.float64)
    n = len(shifts)
    zero = next((r for r, s in zip(results, shifts) if not any(s)), first)
    out = zero.copy(data=(total / n).astype(first.dtype))
    out = out.assign_coords(prediction=(bdim, prediction / n), absorbed=(bdim, absorbed / n))
    out.attrs = dict(zero.attrs)
    out.attrs["trick"] = "translation"
    out.attrs["shifts"] = "; ".join(str(s) for s in shifts)
    out.attrs["translation_note"] = (f"mean over {n} translations of the last {d} dim(s); border fill {fill}; "
                                     "prediction = mean f(translated x); relevance on the filled border is absorbed")
    return out


# -- sliding window ---------------------------------------------------------------------------

def _pair(v: Any, d: int, what: str) -> tuple[int, ...]:
    t = tuple(int(a) for a in (v if isinstance(v, (tuple, list)) else (v,) * d))
    if len(t) != d or any(a < 1 for a in t):
        raise InputError(f"{what} must be {d} positive int(s), got {v!r}")
    return t


def sliding_window(model: nn.Module, X: Any, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
                   *, target: Any = None, dims: Sequence[str] | None = None, coords: Mapping[str, Any] | None = None,
                   batch_size: int | None = None, **explain_kwargs: Any) -> xr.DataArray:
    """Explain ``g(X) = sum over windows s of f(X[s])`` for inputs longer than the model's input.

    The model is applied to every window of the input (windows lie fully inside; positions no
    window covers take no part in g and get zero relevance). Each window is explained for the
    same target, and each position receives the relevance of every window that contains it,
    so the result decomposes g(X): ``sum(R) + absorbed = prediction = sum of the window
    predictions`` (absorbed adds up the windows' absorbed relevance).

    Parameters
    ----------
    model : torch.nn.Module
        Accepts inputs of the window's size.
    X : tensor or array
        ``(batch, ..., T)`` with ``window`` an int (1-D along the last dim, e.g. time), or
        ``(batch, ..., H, W)`` with ``window=(h, w)`` (2-D along the last two dims).
    window, stride : int or tuple
        Window size and step (default: the window size, no overlap).
    target : int or sequence, optional
        The class of g to explain; default the argmax of g(X).
    dims, coords
        Names and coords of the result (for the full X, batch first).
    batch_size : int, optional
        Windows explained per call (default all at once).
    **explain_kwargs
        Passed to :func:`sciexplain.explain` (``method``, ``preset``, ``bounds``, ...).

    Returns
    -------
    xarray.DataArray
        Relevance of X with the contract's coords; attrs ``window``, ``stride``, ``n_windows``.
    """
    from ..explain.engine import explain
    from ..explain.forward import eval_mode as _eval_mode
    from ..result.contract import build_result
    Xt = _as_tensor(X)
    d = len(window) if isinstance(window, (tuple, list)) else 1
    win = _pair(window, d, "window")
    st = _pair(stride if stride is not None else win, d, "stride")
    if d > Xt.ndim - 1:
        raise InputError(f"a {d}-D window for X with {Xt.ndim - 1} dims after the batch")
    sizes = tuple(Xt.shape[-d:])
    if any(w > n for w, n in zip(win, sizes)):
        raise InputError(f"window {win} is larger than the input's last dims {sizes}")
    starts = [list(range(0, n - w + 1, s)) for n, w, s in zip(sizes, win, st)]
    corners = list(itertools.product(*starts))
    B, nW = Xt.shape[0], len(corners)
    lead = (slice(None),) * (Xt.ndim - d)

    def cut(c):
        return Xt[lead + tuple(slice(a, a + w) for a, w in zip(c, win))]

    windows = torch.stack([cut(c) for c in corners], dim=1)  # (B, nW, ..., window)
    flat = windows.reshape((B * nW,) + tuple(windows.shape[2:]))
    if target is None:
        with _eval_mode(model), torch.no_grad():
            logits = torch.cat([model(flat[i:i + (batch_size or len(flat))])
                                for i in range(0, len(flat), batch_size or len(flat))])
        g = logits.reshape(B, nW, -1).sum(dim=1) if logits.ndim == 2 else logits.reshape(B, nW).sum(dim=1)
        t = g.argmax(dim=1) if g.ndim == 2 else torch.zeros(B, dtype=torch.long)
    else:
        t = torch.as_tensor(np.asarray(target)).long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(B)
        if t.numel() != B:
            raise InputError(f"target has {t.numel()} entries for a batch of {B}")
    tw = t.repeat_interleave(nW)
    step = batch_size or len(flat)
    parts = [explain(model, flat[i:i + step], target=tw[i:i + step], **explain_kwargs)
             for i in range(0, len(flat), step)]
    Rw = np.concatenate([p.values for p in parts]).astype(np.float64)
    first = parts[0]
    pred_w = np.concatenate([p.coords["prediction"].values for p in parts]).astype(np.float64)
    abs_w = np.concatenate([p.coords["absorbed"].values for p in parts]).astype(np.float64)
    if Rw.shape[1:] != tuple(flat.shape[1:]):
        raise InputError(f"the window explanations have shape {Rw.shape[1:]}, not the window's {tuple(flat.shape[1:])}")
    Rw = Rw.reshape((B, nW) + Rw.shape[1:])
    R = np.zeros(tuple(Xt.shape), dtype=np.float64)
    for i, c in enumerate(corners):
        R[lead + tuple(slice(a, a + w) for a, w in zip(c, win))] += Rw[:, i]
    prediction = pred_w.reshape(B, nW).sum(axis=1)
    absorbed = abs_w.reshape(B, nW).sum(axis=1)
    attrs = {k: v for k, v in first.attrs.items() if k not in ("method", "rules", "decomposes", "sciexplain_version")}
    attrs.update({"window": list(win), "stride": list(st), "n_windows": nW,
                  "sliding_window_note": "prediction = g(X) = sum over windows of f(X[window]); each position "
                                         "receives the relevance of every window containing it"})
    if dims is None:
        dims = ("sample",) + tuple(f"dim_{i}" for i in range(Xt.ndim - 1))
    return build_result(R.astype(first.dtype), dims=dims, coords=coords, prediction=prediction, target=t.numpy(),
                        absorbed=absorbed, method=first.attrs["method"], rules=first.attrs["rules"],
                        decomposes=first.attrs["decomposes"], attrs=attrs)


# -- relevant pattern -------------------------------------------------------------------------

def relevant_pattern(x: Any, R: Any, *, x_dims: Sequence[str] | None = None) -> xr.DataArray:
    """The relevant pattern ``P(x) = x * R(x)``, R rescaled to [0, 1] per sample, for display.

    R is rescaled per sample by ``(R - min) / (max - min)`` (an all-equal map becomes 0), so
    P keeps the input where it is most relevant and fades it where it is least relevant. If R
    was pooled over a dim of x (e.g. colour), the scaled map multiplies every entry along it
    (dims matched as in :func:`sciexplain.evaluate.perturbation_curve`).

    Returns
    -------
    xarray.DataArray
        Shape of x, labelled with R's dims and coords where they match (other dims named
        ``dim_<i>`` or by ``x_dims``); ``decomposes="none"``.
    """
    from ..result.contract import build_result
    xt = _as_tensor(x)
    values, axes, info = _align_relevance(R, xt, x_dims)
    B = values.shape[0]
    flat = values.reshape(B, -1)
    lo = flat.min(axis=1)
    span = flat.max(axis=1) - lo
    scaled = (values - lo.reshape((B,) + (1,) * (values.ndim - 1))) / np.where(span > 0, span, 1.0).reshape(
        (B,) + (1,) * (values.ndim - 1))
    expand = [B] + [1] * (xt.ndim - 1)
    for a, n in zip(axes, values.shape[1:]):
        expand[a + 1] = n
    P = xt.double().numpy() * scaled.reshape(expand)
    names: list[str] = list(x_dims) if x_dims is not None else [info["batch_dim"]] + [f"dim_{i}" for i in range(xt.ndim - 1)]
    coords: dict[str, Any] = {}
    if isinstance(R, xr.DataArray):
        bdim = info["batch_dim"]
        rdims = [dd for dd in R.dims if dd != bdim]
        if x_dims is None:
            names[0] = bdim
            for a, nm in zip(axes, rdims):
                names[a + 1] = nm
        for cname, c in R.coords.items():
            if cname in ("prediction", "target", "absorbed"):
                continue
            if all(dd in names for dd in c.dims):
                coords[cname] = c
    attrs = {"display": "x * (R - min) / (max - min) per sample; for display only",
             "explained_method": info["method"] or "unknown"}
    if info["prediction"] is None:  # a plain array: nothing to say about the prediction
        from .._version import __version__
        attrs.update(method="relevant_pattern", rules="none", decomposes="none", sciexplain_version=__version__)
        return xr.DataArray(P, dims=names, coords=coords, attrs=attrs, name="relevant pattern")
    target = info["target"] if info["target"] is not None else np.full(B, -1)
    return build_result(P, dims=names, coords=coords, prediction=info["prediction"], target=target,
                        absorbed=np.full(B, np.nan), method="relevant_pattern", rules="none", decomposes="none",
                        attrs=attrs, name="relevant pattern")
