"""Plotting helpers shared by the core and the plugins. Every ``plot_*`` returns a Figure.

Heatmaps use a diverging colormap centred at zero (red: evidence for the explained output,
blue: against) with symmetric limits, so that colour means the same thing in every panel.
The colour scale is a display choice; the values plotted are the relevance itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from ..errors import InputError
from .style import figure_style

__all__ = ["plot_heatmap", "plot_heatmaps", "symmetric_limit", "pyplot", "method_title", "RELEVANCE_CMAP"]

#: diverging colormap centred at zero
RELEVANCE_CMAP = "bwr"


def pyplot():
    """matplotlib.pyplot, imported on first use (the core does not import matplotlib at import time;
    without a display matplotlib falls back to a non-interactive backend by itself)."""
    import matplotlib.pyplot as plt
    return plt


def method_title(R: xr.DataArray) -> str:
    """The method of an explanation in words for a figure title (the LRP preset, never a code repr).

    ``"LRP epsilon"``, ``"LRP, epsilon-plus with custom rules"`` for a rule mapping,
    ``"gradient x input"`` for other methods.
    """
    import re
    preset, method = str(R.attrs.get("preset") or ""), str(R.attrs.get("method", ""))
    if method in ("", "lrp"):
        if preset.startswith("custom mapping"):  # a rule mapping, recorded as "custom mapping (base='...')"
            base = re.search(r"base='([^']+)'", preset)
            return f"LRP, {base.group(1)} with custom rules" if base else "LRP, custom rules"
        return f"LRP {preset}" if preset else "LRP"
    return method.replace("_", " ")


def symmetric_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    """A symmetric colour limit: a high percentile of |values| (robust to single outliers)."""
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    lim = float(np.percentile(a, percentile))
    return lim if lim > 0 else (float(a.max()) or 1.0)


def _as_map(R: xr.DataArray, sample: int | None) -> xr.DataArray:
    batch = next((d for d in R.dims if "prediction" in R.coords and R.coords["prediction"].dims == (d,)), None)
    if batch is not None and sample is not None:
        R = R.isel({batch: sample})
    if R.ndim != 2:
        raise InputError(f"plot_heatmap needs a 2-D map per sample; got dims {R.dims}. Pool the other "
                         "dims first, e.g. R.relevance.pool('color').")
    return R


def plot_heatmap(R: xr.DataArray, sample: int | None = 0, *, ax=None, image: np.ndarray | None = None,
                 alpha: float = 0.6, vmax: float | None = None, colorbar: bool = True,
                 title: str | None = None):
    """Draw one relevance map (dims e.g. ``("y", "x")``) with a zero-centred colour bar.

    Parameters
    ----------
    R : xarray.DataArray
        An explanation; with a batch dim, ``sample`` selects the map.
    image : array, optional
        Drawn in grey underneath, with the heatmap at ``alpha`` on top (an overlay).
    vmax : float, optional
        Colour limit; default: the 99.5th percentile of ``|R|`` of this map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    M = _as_map(R, sample)
    if ax is None:
        with figure_style():
            fig, ax = plt.subplots(figsize=(4, 3.6))
    else:
        fig = ax.figure
    lim = vmax if vmax is not None else symmetric_limit(M.values)
    if image is not None:
        img = np.asarray(image)
        ax.imshow(img if img.ndim == 3 else img, cmap=None if img.ndim == 3 else "gray")
        im = ax.imshow(M.values, cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim, alpha=alpha,
                       extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
    else:
        im = ax.imshow(M.values, cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is None and "prediction" in M.coords:
        title = f"f(x) = {float(M.coords['prediction']):.3g}"
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("relevance", fontsize=8)
        cb.formatter.set_powerlimits((-3, 4))  # 1e-5 scales as an offset above the bar, not clipped ticks
        cb.update_ticks()
    return fig


def plot_heatmaps(maps: Sequence[xr.DataArray], titles: Sequence[str] | None = None, *, images: Sequence | None = None,
                  ncols: int | None = None, shared_scale: bool = False, figsize_per: float = 2.2):
    """A grid of relevance maps (one per entry of ``maps``, each 2-D), each with its own colour bar.

    With ``shared_scale`` all panels use one colour limit (for comparing magnitudes); otherwise
    each panel is scaled to its own range (for comparing patterns across methods whose units differ).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    n = len(maps)
    if n == 0:
        raise InputError("plot_heatmaps needs at least one map")
    if titles is not None and len(titles) != n:
        raise InputError(f"{n} maps but {len(titles)} titles")
    ncols = ncols or min(n, 6)
    nrows = int(np.ceil(n / ncols))
    with figure_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(figsize_per * ncols * 1.3, figsize_per * nrows + 0.3),
                                 squeeze=False)
    lim = symmetric_limit(np.concatenate([np.ravel(m.values) for m in maps])) if shared_scale else None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        img = None if images is None else images[i]
        plot_heatmap(maps[i], None, ax=ax, image=img, vmax=lim, title=None if titles is None else titles[i])
    return fig
