"""Figures for image explanations; each function returns a matplotlib Figure.

Heatmaps use a diverging colormap centred at zero with symmetric limits and a labelled colour
bar (red: evidence for the explained class, blue: against), drawn on the pixels the model saw.
Every figure is drawn in the project's style (:func:`sciexplain.result.figure_style`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from sciexplain.errors import InputError
from sciexplain.result import method_title, plot_heatmap, pyplot, styled, symmetric_limit

__all__ = ["plot_heatmap", "plot_overlay", "plot_methods", "plot_models", "plot_pattern", "plot_box_shares"]



def _class_label(R: xr.DataArray, i: int) -> str:
    sub = R.isel({R.dims[0]: i})
    name = str(sub.coords["target_name"].values) if "target_name" in sub.coords else f"class {int(sub.target)}"
    return f"{name}: f(x) = {float(sub.prediction):.3g}"


def _number(v: float) -> str:
    return "0" if v == 0 else f"{v:.2g}"


def _colorbar(fig, im, ax, lim: float, label: str = "relevance"):
    """A colour bar with ticks at -lim, 0, lim written out (no offset text above the bar)."""
    if isinstance(ax, list):
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02, aspect=25)
    else:  # beside this panel only, as tall as the image (an inset, which the layout makes room for)
        cb = fig.colorbar(im, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0]))
    cb.set_ticks([-lim, 0.0, lim], labels=[_number(-lim), "0", _number(lim)])
    cb.set_label(label)
    return cb


def _bare(ax) -> None:
    """An image panel: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _map(ax, M: xr.DataArray, sample: int | None, lim: float, title: str, image: np.ndarray | None = None,
         alpha: float = 0.65):
    """One heatmap without its own colour bar; returns the drawn image.

    Over ``image`` the heatmap's opacity grows with ``|R|`` (``alpha`` at the colour limit), so
    the photo shows through where the relevance is small.
    """
    if image is None:
        plot_heatmap(M, sample, ax=ax, vmax=lim, colorbar=False, title=title)
    else:
        from sciexplain.result import RELEVANCE_CMAP
        m = np.asarray(M.isel({M.dims[0]: sample}).values if sample is not None else M.values, dtype=float)
        img = np.asarray(image)
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
        ax.imshow(m, cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim, alpha=alpha * np.clip(np.abs(m) / lim, 0, 1),
                  extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
        ax.set_title(title)
    _bare(ax)
    return ax.get_images()[-1]



@styled
def plot_overlay(R: xr.DataArray, image: np.ndarray | None = None, sample: int = 0, *, alpha: float = 0.65,
                 vmax: float | None = None):
    """The image the model saw with the relevance on top, and the heatmap alone beside it.

    On the image, the heatmap's opacity grows with ``|R|`` up to ``alpha`` at the colour limit.

    Both panels share one colour scale (``vmax``; default the 99.5th percentile of ``|R|`` of the
    image), with one colour bar in units of f(x).
    """
    plt = pyplot()
    if "color" in R.dims:
        R = R.relevance.pool("color")
    lim = vmax if vmax is not None else symmetric_limit(R.isel({R.dims[0]: sample}).values)
    if image is not None:
        fig, axes = plt.subplots(1, 2, figsize=(6.0, 3.0))
        _map(axes[0], R, sample, lim, "input, relevance on top\n(opaque where |R| is large)", image=image,
             alpha=alpha)
        im = _map(axes[1], R, sample, lim, "relevance")
        fig.suptitle(f"{_class_label(R, sample)} ({method_title(R)})")
    else:
        fig, ax = plt.subplots(figsize=(3.6, 3.0))
        axes = [ax]
        im = _map(ax, R, sample, lim, f"{_class_label(R, sample)}\n({method_title(R)})")
    _colorbar(fig, im, list(axes), lim, "relevance (units of f(x))")
    return fig


@styled
def plot_models(results: Mapping[str, xr.DataArray], images: Sequence[np.ndarray] | np.ndarray | None = None, *,
                title: str | None = None):
    """Several models' explanations of the same images: one row per model, one column per image.

    Each row has its own colour scale and colour bar (the models' f(x) differ), symmetric about 0,
    in units of that model's f(x); each panel is titled with the explained class and f(x), each row
    with its label (say the model and its preset).

    Parameters
    ----------
    results : mapping of str to xarray.DataArray
        Row label -> relevance of the same images (batch dim first; a ``color`` dim is summed).
    images : sequence of arrays, optional
        The inputs as the models saw them, drawn as a first row.
    title : str, optional
        A title over the figure (say which presets ran).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not results:
        raise InputError("plot_models needs at least one result: a mapping of row label -> relevance")
    plt = pyplot()
    rows = [(label, R.relevance.pool("color") if "color" in R.dims else R) for label, R in results.items()]
    n = rows[0][1].sizes[rows[0][1].dims[0]]
    if any(R.sizes[R.dims[0]] != n for _, R in rows):
        raise InputError("plot_models: every result must explain the same number of images (one column each)")
    top = 0 if images is None else 1
    fig, axes = plt.subplots(len(rows) + top, n, figsize=(1.75 * n + 1.6, 1.95 * (len(rows) + top)),
                             squeeze=False)
    if images is not None:
        for j in range(n):
            img = np.asarray(images[j])
            axes[0, j].imshow(img, cmap="gray" if img.ndim == 2 else None)
            axes[0, j].set_title(f"input {j}")
            _bare(axes[0, j])
        axes[0, 0].set_ylabel("input")
    for i, (label, R) in enumerate(rows):
        lim = symmetric_limit(R.values)
        for j in range(n):
            im = _map(axes[i + top, j], R, j, lim, _class_label(R, j).replace(": ", "\n"))
        axes[i + top, 0].set_ylabel(label)
        _colorbar(fig, im, list(axes[i + top]), lim, "relevance\n(units of f(x))")
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_methods(model: Any, image: Any, methods: Sequence[tuple[str, dict]] | None = None, *,
                 preprocess: Any = None, target: int | None = None, ncols: int = 3):
    """The same image explained by several methods, the input first (each panel its own colour scale).

    The methods' values are in different units (a squared gradient, relevance in units of f(x)),
    so each panel is scaled to its own range; the colour bars give the numbers.

    Parameters
    ----------
    methods : list of (title, keyword arguments for explain_image)
        Default: sensitivity, gradient x input and the LRP presets mobilenet-conserving (the
        domain's default), mobilenet (the faithfulness study's choice) and epsilon-plus-box.
    ncols : int
        Panels per row (the input counts as one).
    """
    from .explain import _spec_for, explain_image
    plt = pyplot()
    spec = _spec_for(model, preprocess)
    seen = spec.prepare(image).array
    if methods is None:
        methods = [("sensitivity", {"method": "sensitivity"}),
                   ("gradient x input", {"method": "gradient_x_input"}),
                   ("LRP mobilenet-\nconserving (default)", {"preset": "mobilenet-conserving"}),
                   ("LRP mobilenet", {"preset": "mobilenet"}),
                   ("LRP epsilon-plus-box", {"preset": "epsilon-plus-box"})]
    n = len(methods) + 1
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.1 * nrows + 0.35), squeeze=False)
    flat = list(axes.flat)
    flat[0].imshow(seen)
    _bare(flat[0])
    flat[0].set_title("input")
    label = None
    for ax, (title, kw) in zip(flat[1:], methods):
        R = explain_image(model, image, target, preprocess=spec, **kw)
        label = label or _class_label(R, 0)
        lim = symmetric_limit(R.isel({R.dims[0]: 0}).values)
        im = _map(ax, R, 0, lim, title)
        _colorbar(fig, im, ax, lim, "relevance" if kw.get("method") != "sensitivity" else "squared gradient")
    for ax in flat[n:]:
        ax.axis("off")
    if label:
        fig.suptitle(f"{label}, explained by {len(methods)} methods (each panel its own colour scale)")
    return fig


@styled
def plot_pattern(R: xr.DataArray, image: np.ndarray, sample: int = 0):
    """Where the evidence is: the input, and the input weighted by its positive relevance (display only).

    The weight is ``max(R, 0)`` over the 99.5th percentile of the positive relevance, clipped to 1,
    so pixels without evidence for the class are black and pixels against it are black too.
    """
    plt = pyplot()
    if "color" in R.dims:
        R = R.relevance.pool("color")
    r = np.asarray(R.isel({R.dims[0]: sample}).values, dtype=float)
    pos = np.clip(r, 0, None)
    top = float(np.percentile(pos[pos > 0], 99.5)) if np.any(pos > 0) else 1.0
    w = np.clip(pos / top, 0, 1)
    pattern = (np.asarray(image, dtype=float) / 255.0) * w[..., None]
    fig, axes = plt.subplots(1, 2, figsize=(5.6, 3.0))
    axes[0].imshow(image)
    axes[0].set_title("input")
    axes[1].imshow(np.clip(pattern, 0, 1))
    axes[1].set_title("input x positive relevance\n(black: no evidence for the class)")
    for ax in axes:
        _bare(ax)
    fig.suptitle(f"{_class_label(R, sample)} ({method_title(R)})")
    return fig


@styled
def plot_box_shares(shares: xr.Dataset):
    """Stacked bars: the share of f(x) drawn from the object box, its context, and absorbed.

    Positive parts stack upwards from 0, negative ones downwards; per image the three parts add up
    to 1 (the dashed line).
    """
    plt = pyplot()
    S = shares["share"]
    batch = S.dims[0]
    labels = [str(v) for v in S.coords[batch].values]
    if "target_name" in S.coords and S.coords["target_name"].dims == (batch,):  # what each bar explains
        import textwrap
        labels = [f"{lab}\n" + "\n".join(textwrap.wrap(f"({name})", 11)[:2])
                  for lab, name in zip(labels, S.coords["target_name"].values)]
    fig, ax = plt.subplots(figsize=(1.6 + 0.85 * len(labels), 3.3))
    x = np.arange(len(labels))
    bottom_pos = np.zeros(len(labels))
    bottom_neg = np.zeros(len(labels))
    styles = {"object": dict(color="#d62728"), "context": dict(color="#1f77b4"),
              "absorbed": dict(color="0.75", hatch="///", edgecolor="0.4", lw=0)}
    for region in S.coords["region"].values:
        v = S.sel(region=region).values
        base = np.where(v >= 0, bottom_pos, bottom_neg)
        ax.bar(x, v, bottom=base, width=0.65, label=str(region), **styles.get(str(region), {}))
        bottom_pos += np.where(v >= 0, v, 0)
        bottom_neg += np.where(v < 0, v, 0)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(x, labels)
    if "target_name" in S.coords:
        ax.set_xlabel("image (explained class)")
    ax.set_ylabel("share of f(x)")
    ax.set_title("f(x) split into object box,\ncontext and absorbed (sum = 1, dashed)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    return fig
