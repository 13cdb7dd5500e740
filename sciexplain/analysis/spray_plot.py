"""The SpRAy figure: the Laplacian spectrum with the chosen eigengap, the 2-D embedding by cluster, the prototypes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from ..result.plotting import pyplot, symmetric_limit

__all__ = ["plot_spray", "draw_prototype_default"]


def draw_prototype_default(ax: Any, prototype: xr.DataArray, vmax: float) -> Any:
    """A 2-D prototype as a heatmap (first dim on the vertical axis), a 1-D one as a line.

    Diverging colormap centred at 0 with limits ``[-vmax, vmax]``; returns the artist for the colour bar.
    """
    values = np.asarray(prototype.values, dtype=np.float64)
    if values.ndim == 1:
        dim = prototype.dims[0]
        x = np.asarray(prototype[dim].values) if dim in prototype.coords else np.arange(values.size)
        if not np.issubdtype(np.asarray(x).dtype, np.number):
            x = np.arange(values.size)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.plot(x, values, color="k", lw=1.2)
        ax.set_ylim(-vmax * 1.05, vmax * 1.05)
        ax.set_xlabel(str(dim))
        return None
    if values.ndim > 2:  # sum the leading dims (e.g. colour) for display
        values = values.reshape(-1, *values.shape[-2:]).sum(0)
    image_like = {str(d) for d in prototype.dims[-2:]} <= _IMAGE_DIMS  # pixels: no axes
    image = ax.imshow(values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                      aspect="equal" if image_like else "auto")
    if image_like:
        ax.set_xticks([])
        ax.set_yticks([])
        return image
    for dim, set_ticks, set_label in ((prototype.dims[-2], ax.set_yticks, ax.set_ylabel),
                                      (prototype.dims[-1], ax.set_xticks, ax.set_xlabel)):
        positions, labels = _ticks(prototype, dim)
        set_ticks(positions, labels, fontsize=7)
        set_label(_axis_label(prototype, dim))
    return image


#: dim names of an image's pixel grid (drawn without axes, square pixels)
_IMAGE_DIMS = {"y", "x", "row", "col", "height", "width", "pixel_y", "pixel_x"}


def _ticks(prototype: xr.DataArray, dim: Any, most: int = 5) -> tuple[list[int], list[str]]:
    """At most ``most`` tick positions along ``dim`` with their coordinate values as labels."""
    n = prototype.sizes[dim]
    positions = sorted({int(round(p)) for p in np.linspace(0, n - 1, min(n, most))})
    if dim not in prototype.coords:
        return positions, [str(p) for p in positions]
    values = np.asarray(prototype[dim].values)
    if np.issubdtype(values.dtype, np.number):
        return positions, [f"{float(values[p]):.3g}" for p in positions]
    return positions, [str(values[p]) for p in positions]


def _axis_label(prototype: xr.DataArray, dim: Any) -> str:
    units = prototype[dim].attrs.get("units") if dim in prototype.coords else None
    return f"{dim} ({units})" if units else str(dim)


def plot_spray(result: xr.Dataset, draw_prototype: Callable[[Any, xr.DataArray, float], Any] | None = None, *,
               max_prototypes: int = 8, truth: Any = None):
    """Plot a :func:`sciexplain.spray` result.

    Parameters
    ----------
    result : xarray.Dataset
        The Dataset returned by ``sx.spray``.
    draw_prototype : callable ``(ax, prototype, vmax) -> artist or None``, optional
        Draws one cluster's prototype (a DataArray in the relevance's own dims and coords) on
        ``ax`` with symmetric limits ``vmax``; a domain's own view (a topomap, a token strip). If
        it returns a mappable, the figure gets a shared colour bar. Default: a heatmap for 2-D
        prototypes, a line for 1-D ones.
    max_prototypes : int
        At most this many clusters' prototypes are drawn (the largest ones).
    truth : array of bool, optional
        A known subset (e.g. planted shortcut samples): drawn as black rings in the embedding.

    Returns
    -------
    matplotlib.figure.Figure
    """
    for name in ("cluster", "eigenvalues", "embedding", "prototype"):
        if name not in result:
            raise InputError(f"plot_spray takes the Dataset returned by sx.spray; it has no {name!r} variable")
    plt = pyplot()
    k = int(result.attrs.get("n_clusters", result.sizes["cluster_id"]))
    shown = min(k, max_prototypes)
    fig = plt.figure(figsize=(4.2 * 2 + 2.2 * shown, 4.0), layout="constrained")
    grid = fig.add_gridspec(1, 2 + shown, width_ratios=[1.9, 1.9] + [1.0] * shown)
    ax_eig, ax_emb = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])

    lam = np.asarray(result["eigenvalues"].values)
    idx = np.arange(1, lam.size + 1)
    ax_eig.plot(idx, lam, "o-", color="k", ms=4, lw=1)
    ax_eig.axvspan(k + 0.05, k + 0.95, color="tab:orange", alpha=0.25,
                   label=f"chosen gap after k = {k} ({result.attrs.get('n_clusters_from', '')})")
    ax_eig.set_xlabel("eigenvalue index i")
    ax_eig.set_ylabel(r"$\lambda_i$ of the normalised Laplacian")
    ax_eig.set_title("spectrum")
    ax_eig.set_xticks(idx)
    ax_eig.legend(loc="upper left", fontsize=8, frameon=False)

    labels = np.asarray(result["cluster"].values)
    emb = np.asarray(result["embedding"].values)
    colors = plt.get_cmap("tab10")
    for c in range(k):
        sel = labels == c
        ax_emb.scatter(emb[sel, 0], emb[sel, 1], s=10, color=colors(c % 10), label=f"cluster {c} (n={sel.sum()})")
    if truth is not None:
        t = np.asarray(truth, dtype=bool)
        ax_emb.scatter(emb[t, 0], emb[t, 1], s=30, facecolors="none", edgecolors="k", linewidths=0.4, alpha=0.5,
                       label="known subset")
    ax_emb.set_title(f"embedding ({result.attrs.get('embedding', '')})")
    ax_emb.set_xlabel("component 1")
    ax_emb.set_ylabel("component 2")
    ax_emb.legend(fontsize=7, frameon=False, loc="best", markerscale=1.5)

    proto = result["prototype"]
    vmax = symmetric_limit(np.asarray(proto.values[:shown]))
    draw = draw_prototype or draw_prototype_default
    mappable = None
    axes = []
    for c in range(shown):
        ax = fig.add_subplot(grid[0, 2 + c])
        art = draw(ax, proto.isel(cluster_id=c), vmax)
        mappable = art if art is not None else mappable
        ax.set_title(f"cluster {c}\nn = {int(result['cluster_size'].values[c])}", fontsize=9, color=colors(c % 10))
        axes.append(ax)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.8, label="mean relevance (prototype)")
    return fig
