"""Figures of word relevance; every ``plot_*`` returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from sciexplain.result import pyplot, symmetric_limit

from .errors import TextInputError
from .render import _check, _documents, _header, document_segments

__all__ = ["plot_document", "plot_methods", "plot_top_words", "plot_deletion"]

_METHOD_TITLES = {"lrp": "LRP", "sensitivity": "sensitivity (squared gradient; never negative)",
                  "gradient_x_input": "gradient x input"}


def _draw_words(ax, R: xr.DataArray, d: int, limit: float, width: int, max_tokens: int, cmap) -> int:
    """Flow the document's words as coloured boxes on ``ax``; returns the number of lines."""
    col, row, seen = 0, 0, 0
    for piece, r in document_segments(R, d):
        if r is None:
            if "\n\n" in piece:
                col, row = 0, row + 1
            continue
        if seen >= max_tokens:
            ax.text(col, -row, "...", family="monospace", fontsize=8, va="top")
            break
        word = piece.replace("\n", " ")
        if col + len(word) > width and col > 0:
            col, row = 0, row + 1
        colour = cmap(0.5 + 0.5 * float(np.clip(r / limit, -1, 1)))
        ax.text(col, -row, word, family="monospace", fontsize=8, va="top",
                bbox=dict(boxstyle="square,pad=0.1", facecolor=colour, edgecolor="none"))
        col += len(word) + 1
        seen += 1
    ax.set_xlim(-0.5, width + 1)
    ax.set_ylim(-row - 1.2, 0.6)
    ax.axis("off")
    return row + 1


def plot_document(R: xr.DataArray, document: int = 0, *, max_tokens: int = 160, width: int = 125,
                  ax=None, title: str | None = None):
    """One document as a heatmap of its words (red: for the class, blue: against).

    Colours are centred at zero with a symmetric limit (a high percentile of |R| in the
    document); the colour bar is in units of the explained output f(x) (``decomposes`` says what
    the values add up to). Padding is not drawn (its total is in the title).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check(R)
    (d,) = _documents(R, document)
    plt = pyplot()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    cmap = plt.get_cmap("bwr")
    vals = R.values[d][~R.coords["is_padding"].values[d]] if "is_padding" in R.coords else R.values[d]
    limit = symmetric_limit(vals)
    n_tok = min(int((~R.coords["is_padding"].values[d]).sum()) if "is_padding" in R.coords else R.sizes["token"],
                max_tokens)
    lines = max(2, int(np.ceil(n_tok * 7 / width)) + 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 0.8 + 0.22 * lines), layout="constrained")
    else:
        fig = ax.figure
    _draw_words(ax, R, d, limit, width, max_tokens, cmap)
    ax.set_title(title or _header(R, d), fontsize=8, loc="left")
    unit = "relevance (units of f(x))" if R.attrs.get("decomposes", "f(x)").startswith("f(x)") else \
        f"relevance ({R.attrs.get('decomposes')})"
    fig.colorbar(ScalarMappable(Normalize(-limit, limit), cmap), ax=ax, label=unit, shrink=0.8, pad=0.01)
    return fig


def plot_methods(results: Mapping[str, xr.DataArray], document: int = 0, *, max_tokens: int = 120, width: int = 125):
    """The same document explained by several methods, one row each with its own colour scale.

    Sensitivity analysis (squared gradients) is never negative, so it cannot show evidence
    against the class; gradient x input and LRP can (Samek et al. 2017, Fig. 2B).
    """
    if not results:
        raise TextInputError("results is empty: pass {method name: explanation}")
    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n), layout="constrained", squeeze=False)
    for ax, (name, R) in zip(axes[:, 0], results.items()):
        plot_document(R, document, max_tokens=max_tokens, width=width, ax=ax,
                      title=_METHOD_TITLES.get(name, name) + " | " + _header(R, _documents(R, document)[0]))
    return fig


def plot_top_words(S: xr.DataArray, k: int = 12, min_count: int = 2):
    """Per class, the word types with the highest summed relevance (from :func:`word_type_relevance`)."""
    from .explain import top_words
    if tuple(S.dims) != ("class", "word_type"):
        raise TextInputError(f"plot_top_words needs the result of word_type_relevance, got dims {S.dims}")
    plt = pyplot()
    classes = list(S.coords["class"].values)
    fig, axes = plt.subplots(1, len(classes), figsize=(3.6 * len(classes), 0.3 * k + 1.2), layout="constrained",
                             squeeze=False)
    for ax, cls in zip(axes[0], classes):
        rows = top_words(S, str(cls), k, min_count=min_count)
        words = [f"{w} ({c})" for w, _, c in rows][::-1]
        vals = [v for _, v, _ in rows][::-1]
        ax.barh(words, vals, color=["#d62728" if v >= 0 else "#1f77b4" for v in vals])
        ax.set_title(f"explained class {cls}", fontsize=9)
        ax.set_xlabel("summed relevance over the corpus")
        ax.tick_params(axis="y", labelsize=8)
    return fig


def plot_deletion(curves: xr.DataArray | Mapping[str, xr.DataArray], title: str = "word deletion"):
    """Accuracy against the number of deleted words, one line per method.

    ``curves`` has dims ``(set, method, k)`` (from :func:`~sciexplain_text.word_deletion` results
    stacked) or is a mapping of panel name -> ``(method, k)`` curves.
    """
    plt = pyplot()
    panels = dict(curves) if isinstance(curves, Mapping) else {str(s): curves.sel(set=s) for s in curves.coords["set"].values}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), layout="constrained", squeeze=False)
    for ax, (name, C) in zip(axes[0], panels.items()):
        for m in C.coords["method"].values:
            ax.plot(C.coords["k"].values, C.sel({"method": m}).values, marker="o", ms=3, label=str(m))
        ax.set_xlabel("words deleted (k)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: {name}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


