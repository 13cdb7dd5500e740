"""One call that draws any explanation: ``R.relevance.plot()``, the domain's own view or a view by dims.

A result made by a domain plugin (``attrs["domain"]``: ``"image"``, ``"eeg"``, ``"text"``,
``"video"``) is drawn by that plugin's headline figure (an overlay, class topomaps, a word heatmap,
a frame curve). Any other result is drawn by its dims, one sample at a time: a 2-D map as an image
with its first dim down the rows and the origin at the top left (images the right way up), a 1-D
profile as a curve over its coordinate, a scalar as one bar; more dims are summed down to the last
two first (which keeps the ledger: the sum is still part of f(x)), and the title says so. Every
view uses the project's style (:mod:`sciexplain.result.style`), a diverging colour map centred at
zero with symmetric limits, and a labelled colour bar: relevance in units of f(x), or on request
the share of f(x).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError, InputTypeError
from .contract import find_batch_dim
from .plotting import RELEVANCE_CMAP, pyplot, symmetric_limit
from .style import figure_style

__all__ = ["plot_result"]


def _domain(R: xr.DataArray) -> Any:
    name = R.attrs.get("domain")
    if not name:
        return None
    from ..plugins import load_domains
    return load_domains().get(str(name))


def _units(R: xr.DataArray, share: bool) -> str:
    if share:
        return "share of f(x)"
    return "relevance (units of f(x))" if R.attrs.get("decomposes") == "f(x)" else "relevance"


def _title(M: xr.DataArray, pooled: tuple[str, ...], share: bool) -> str:
    parts = []
    if "target_name" in M.coords and M.coords["target_name"].ndim == 0:
        parts.append(str(M.coords["target_name"].values))
    elif "target" in M.coords and M.coords["target"].ndim == 0:
        parts.append(f"class {int(M.coords['target'])}")
    if "prediction" in M.coords and M.coords["prediction"].ndim == 0:
        parts.append(f"f(x) = {float(M.coords['prediction']):.3g}")
    if "absorbed" in M.coords and M.coords["absorbed"].ndim == 0:
        parts.append(f"absorbed {float(M.coords['absorbed']):.3g}")
    title = ", ".join(parts)
    if pooled:
        title += f"\nsummed over {', '.join(pooled)}"
    return title


def _tick_labels(ax, M: xr.DataArray, axis: str, dim: str, n: int) -> None:
    """Coordinate labels on an image axis where the dim has a coordinate, at most ~8 of them."""
    if dim not in M.coords or n == 0:
        (ax.set_xticks if axis == "x" else ax.set_yticks)([])
        return
    step = max(1, int(np.ceil(n / 8)))
    pos = np.arange(0, n, step)
    labels = [str(v) if not isinstance(v, (float, np.floating)) else f"{v:.3g}" for v in M.coords[dim].values[pos]]
    if axis == "x":
        ax.set_xticks(pos, labels, rotation=45 if max(len(s) for s in labels) > 4 else 0, ha="right"
                      if max(len(s) for s in labels) > 4 else "center")
    else:
        ax.set_yticks(pos, labels)


def plot_result(R: xr.DataArray, sample: int | None = 0, *, share: bool = False, domain: bool = True,
                ax: Any = None, vmax: float | None = None, title: str | None = None, **kwargs: Any):
    """Draw one explanation sensibly, whatever it explains (``R.relevance.plot``).

    Parameters
    ----------
    R : xarray.DataArray
        An explanation from :func:`sciexplain.explain` (or a plugin's ``explain_*``), pooled or not.
    sample : int or None
        Which sample of the batch to draw (position along the batch dim); None when the batch
        dim was pooled away.
    share : bool
        Draw relevance as a share of the sample's f(x) (``R / prediction``) instead of in units of
        f(x). Domain views draw relevance itself, so ``share=True`` draws the view by dims.
    domain : bool
        Use the domain plugin's own view when the result carries one (``attrs["domain"]``) and the
        plugin is installed; False draws the view by dims.
    ax : matplotlib Axes, optional
        Draw into this axes (the view by dims only).
    vmax : float, optional
        Colour (or y) limit; default: the 99.5th percentile of ``|relevance|`` of the drawn sample.
    title : str, optional
        Default: the explained class, f(x) and the absorbed part.
    **kwargs
        Passed to the domain's view (e.g. ``image=`` for an overlay, ``windows=`` for topomaps).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        ``sample`` out of range, or a domain view that does not accept the keyword arguments.
    """
    if not isinstance(R, xr.DataArray):
        raise InputTypeError(f"plot_result draws an xarray.DataArray explanation, got {type(R).__name__}; for "
                             "several inputs (a Dataset) draw each variable: R['input_ids'].relevance.plot()")
    batch = find_batch_dim(R)
    if batch is not None and sample is not None and not -R.sizes[batch] <= sample < R.sizes[batch]:
        raise InputError(f"sample={sample} is out of range for {R.sizes[batch]} samples along {batch!r}")
    dom = _domain(R) if domain and not share and ax is None else None
    if dom is not None:
        try:
            return dom.plot(R, sample=0 if sample is None else sample, **({"vmax": vmax} if vmax is not None else {}),
                            **kwargs)
        except TypeError as err:
            raise InputError(f"the {dom.name} view does not take these arguments ({err}); draw the view by dims "
                             f"with domain=False, or see the plugin's plot functions") from err
    if kwargs:
        raise InputError(f"unknown arguments {sorted(kwargs)} for the view by dims (they go to a domain's view; "
                         f"this result has {'no domain' if not R.attrs.get('domain') else 'domain=False'})")
    M = R.isel({batch: sample}) if batch is not None and sample is not None else R
    if share:
        if "prediction" not in M.coords or M.coords["prediction"].ndim != 0:
            raise InputError("share=True needs one sample's prediction: pass sample=")
        f = float(M.coords["prediction"])
        if f == 0:
            raise InputError("share=True: f(x) of this sample is 0, so relevance has no share of it")
        M = M / f
    else:
        f = 1.0
    pooled = tuple(str(d) for d in M.dims[:-2]) if M.ndim > 2 else ()
    if pooled:
        M = M.sum(list(pooled), keep_attrs=True)
    with figure_style():
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize={2: (4.2, 3.6), 1: (5.0, 3.0)}.get(M.ndim, (3.2, 3.0)))
        else:
            fig = ax.figure
        values = np.asarray(M.values, dtype=float)
        lim = vmax if vmax is not None else symmetric_limit(values)
        label = _units(R, share)
        if M.ndim == 2:
            im = ax.imshow(values, cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim, origin="upper", aspect="auto"
                           if max(values.shape) > 4 * min(values.shape) else "equal", interpolation="nearest")
            _tick_labels(ax, M, "y", str(M.dims[0]), values.shape[0])
            _tick_labels(ax, M, "x", str(M.dims[1]), values.shape[1])
            ax.set_ylabel(str(M.dims[0]))
            ax.set_xlabel(str(M.dims[1]))
            cb = fig.colorbar(im, ax=ax, shrink=0.9)
            cb.set_label(label)
            cb.formatter.set_powerlimits((-3, 4))
            cb.update_ticks()
        elif M.ndim == 1:
            dim = str(M.dims[0])
            numeric = dim in M.coords and np.issubdtype(M.coords[dim].dtype, np.number)
            x = M.coords[dim].values if numeric else np.arange(values.size)
            ax.axhline(0, color="0.5", lw=0.8)
            ax.fill_between(x, values, 0, where=values >= 0, color="#d62728", alpha=0.35, lw=0, interpolate=True)
            ax.fill_between(x, values, 0, where=values < 0, color="#1f77b4", alpha=0.35, lw=0, interpolate=True)
            ax.plot(x, values, color="k", lw=1)
            ax.set_ylim(-1.05 * lim, 1.05 * lim)
            if dim in M.coords and not numeric:  # labels (channels, words): named ticks
                _tick_labels(ax, M, "x", dim, values.size)
            ax.set_xlabel(dim + (f" ({M.coords[dim].attrs['units']})" if dim in M.coords
                                 and "units" in M.coords[dim].attrs else ""))
            ax.set_ylabel(label)
        else:  # a total: beside what was absorbed and f(x), which it adds up to with it
            names, bars = ["relevance"], [float(values)]
            for coord, name in (("absorbed", "absorbed"), ("prediction", "f(x)")):
                if coord in M.coords and M.coords[coord].ndim == 0:
                    names.append(name)
                    bars.append(float(M.coords[coord]) / (f if share else 1.0))
            colours = ["#d62728" if v >= 0 else "#1f77b4" for v in bars[:1]] + ["0.6", "0.3"][:len(bars) - 1]
            ax.bar(range(len(bars)), bars, color=colours, width=0.6)
            ax.axhline(0, color="0.5", lw=0.8)
            ax.set_xticks(range(len(bars)), names)
            ax.set_xlim(-0.7, len(bars) - 0.3)
            ax.set_ylabel(label)
        ax.set_title(_title(M, pooled, share) if title is None else title)
    return fig
