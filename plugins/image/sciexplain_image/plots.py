"""Figures for image explanations; each function returns a matplotlib Figure.

Heatmaps use a diverging colormap centred at zero with a colour bar (red: evidence for the
explained class, blue: against), drawn on the pixels the model saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from sciexplain.result import plot_heatmap, pyplot

__all__ = ["plot_heatmap", "plot_overlay", "plot_methods", "plot_pattern", "plot_box_shares"]


def _title(R: xr.DataArray, i: int) -> str:
    sub = R.isel({R.dims[0]: i})
    name = str(sub.coords["target_name"].values) if "target_name" in sub.coords else f"class {int(sub.target)}"
    return f"{name}: f(x) = {float(sub.prediction):.3g}"


def plot_overlay(R: xr.DataArray, image: np.ndarray | None = None, sample: int = 0, *, alpha: float = 0.65):
    """The image the model saw with the relevance on top, and the heatmap alone beside it."""
    plt = pyplot()
    if "color" in R.dims:
        R = R.relevance.pool("color")
    fig, axes = plt.subplots(1, 2 if image is not None else 1, figsize=(8 if image is not None else 4.2, 3.8),
                             squeeze=False)
    if image is not None:
        plot_heatmap(R, sample, ax=axes[0, 0], image=image, alpha=alpha, title="overlay")
        plot_heatmap(R, sample, ax=axes[0, 1], title=_title(R, sample))
    else:
        plot_heatmap(R, sample, ax=axes[0, 0], title=_title(R, sample))
    fig.tight_layout()
    return fig


def plot_methods(model: Any, image: Any, methods: Sequence[tuple[str, dict]] | None = None, *,
                 preprocess: Any = None, target: int | None = None):
    """The same image explained by several methods side by side (each panel its own colour scale).

    Parameters
    ----------
    methods : list of (title, keyword arguments for explain_image)
        Default: sensitivity, gradient x input and the LRP presets mobilenet-conserving (the
        domain's default), mobilenet (the faithfulness study's choice) and epsilon-plus-box.
    """
    from .explain import _spec_for, explain_image
    plt = pyplot()
    spec = _spec_for(model, preprocess)
    seen = spec.prepare(image).array
    if methods is None:
        methods = [("sensitivity", {"method": "sensitivity"}),
                   ("gradient x input", {"method": "gradient_x_input"}),
                   ("LRP mobilenet-conserving (default)", {"preset": "mobilenet-conserving"}),
                   ("LRP mobilenet", {"preset": "mobilenet"}),
                   ("LRP epsilon-plus-box", {"preset": "epsilon-plus-box"})]
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(2.6 * (len(methods) + 1), 2.9), squeeze=False)
    axes[0, 0].imshow(seen)
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    label = None
    for ax, (title, kw) in zip(axes[0, 1:], methods):
        R = explain_image(model, image, target, preprocess=spec, **kw)
        label = label or _title(R, 0)
        plot_heatmap(R, 0, ax=ax, title=title)
    axes[0, 0].set_title(label or "input", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pattern(R: xr.DataArray, image: np.ndarray, sample: int = 0):
    """The relevant pattern x * R (R rescaled to [0, 1] per image), for display only."""
    plt = pyplot()
    if "color" in R.dims:
        R = R.relevance.pool("color")
    r = R.isel({R.dims[0]: sample}).values.astype(float)
    lo, hi = r.min(), r.max()
    w = (r - lo) / (hi - lo) if hi > lo else np.zeros_like(r)
    pattern = (np.asarray(image, dtype=float) / 255.0) * w[..., None]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(np.clip(pattern / max(pattern.max(), 1e-12), 0, 1))
    axes[1].set_title("relevant pattern x * R (display)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_box_shares(shares: xr.Dataset):
    """Stacked bars: the share of f(x) drawn from the object box, its context, and absorbed."""
    plt = pyplot()
    S = shares["share"]
    batch = S.dims[0]
    labels = [str(v) for v in S.coords[batch].values]
    fig, ax = plt.subplots(figsize=(2.4 + 0.9 * len(labels), 3.4))
    bottom_pos = np.zeros(len(labels))
    bottom_neg = np.zeros(len(labels))
    colors = {"object": "tab:red", "context": "tab:blue", "absorbed": "tab:gray"}
    for region in S.coords["region"].values:
        v = S.sel(region=region).values
        base = np.where(v >= 0, bottom_pos, bottom_neg)
        ax.bar(labels, v, bottom=base, color=colors.get(str(region), None), label=str(region))
        bottom_pos += np.where(v >= 0, v, 0)
        bottom_neg += np.where(v < 0, v, 0)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_ylabel("share of f(x)")
    ax.set_title("object box, context and absorbed as parts of f(x)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    fig.tight_layout()
    return fig
