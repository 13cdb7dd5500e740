"""Figures of word relevance; every ``plot_*`` returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from sciexplain.result import pyplot, RELEVANCE_CMAP, styled, symmetric_limit

from .errors import TextInputError
from .render import _check, _documents, document_segments

__all__ = ["plot_document", "plot_methods", "plot_top_words", "plot_deletion"]

_METHOD_TITLES = {"lrp": "LRP", "sensitivity": "sensitivity (squared gradient; never negative)",
                  "gradient_x_input": "gradient x input"}

#: points per character of the monospace words: the layout below assumes this font size
_FONT = 7.0



def _figure_header(R: xr.DataArray, d: int, method: str | None = None) -> str:
    """A title of at most two short lines: what was explained, f(x), what was absorbed; then the caveats."""
    first = [method or _METHOD_TITLES.get(str(R.attrs.get("method", "")), str(R.attrs.get("method", ""))),
             f"document {d}"]
    if "target_name" in R.coords:
        first.append(f"explained class {R.coords['target_name'].values[d]}")
    elif "target" in R.coords:
        first.append(f"explained class {int(R.coords['target'].values[d])}")
    if "prediction" in R.coords:
        first.append(f"f(x) = {float(R.coords['prediction'].values[d]):.3g}")
    if "absorbed" in R.coords and np.isfinite(R.coords["absorbed"].values[d]):
        first.append(f"absorbed {float(R.coords['absorbed'].values[d]):.3g}")
    second = []
    if "padding_relevance" in R.coords and float(R.coords["padding_relevance"].values[d]) != 0:
        second.append(f"padding (not drawn) {float(R.coords['padding_relevance'].values[d]):.3g}")
    if "truncated" in R.coords and bool(R.coords["truncated"].values[d]):
        second.append("the text after the last coloured word was not read by the model")
    head = ", ".join(first)
    if len(head) > 80:  # a long method name gets a line of its own
        head = first[0] + "\n" + ", ".join(first[1:])
    return head + ("\n" + "; ".join(second) if second else "")


def _draw_words(ax, R: xr.DataArray, d: int, limit: float, width: int, max_tokens: int, cmap) -> int:
    """Flow the document's words as coloured boxes on ``ax``; returns the number of lines."""
    col, row, seen = 0, 0, 0
    for piece, r in document_segments(R, d):
        if r is None:
            if "\n\n" in piece:
                col, row = 0, row + 1
            continue
        if seen >= max_tokens:
            ax.text(col, -row, "...", family="monospace", fontsize=_FONT, va="top")
            break
        word = piece.replace("\n", " ")
        if col + len(word) > width and col > 0:
            col, row = 0, row + 1
        colour = cmap(0.5 + 0.5 * float(np.clip(r / limit, -1, 1)))
        ax.text(col, -row, word, family="monospace", fontsize=_FONT, va="top",
                bbox=dict(boxstyle="square,pad=0.1", facecolor=colour, edgecolor="none"))
        col += len(word) + 1
        seen += 1
    ax.set_xlim(-0.5, width + 1)
    ax.set_ylim(-row - 1.2, 0.6)
    ax.axis("off")
    return row + 1


@styled
def plot_document(R: xr.DataArray, document: int = 0, *, max_tokens: int = 160, width: int = 100,
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
    cmap = plt.get_cmap(RELEVANCE_CMAP)
    vals = R.values[d][~R.coords["is_padding"].values[d]] if "is_padding" in R.coords else R.values[d]
    limit = symmetric_limit(vals)
    n_tok = min(int((~R.coords["is_padding"].values[d]).sum()) if "is_padding" in R.coords else R.sizes["token"],
                max_tokens)
    lines = max(2, int(np.ceil(n_tok * 7 / width)) + 1)
    if ax is None:  # the page width; one line of words is about 1/7 inch
        fig, ax = plt.subplots(figsize=(_FONT * 0.6 * (width + 2) / 72 + 0.4, 1.1 + 0.15 * lines))
    else:
        fig = ax.figure
    _draw_words(ax, R, d, limit, width, max_tokens, cmap)
    ax.set_title(title or _figure_header(R, d), loc="left")
    unit = "relevance (units of f(x))" if R.attrs.get("decomposes", "f(x)").startswith("f(x)") else \
        f"relevance ({R.attrs.get('decomposes')})"
    cb = fig.colorbar(ScalarMappable(Normalize(-limit, limit), cmap), ax=ax, orientation="horizontal",
                      location="bottom", shrink=0.35, aspect=30, pad=0.02)
    cb.set_ticks([-limit, 0.0, limit], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"])
    cb.set_label(unit)
    return fig


@styled
def plot_methods(results: Mapping[str, xr.DataArray], document: int = 0, *, max_tokens: int = 120, width: int = 100):
    """The same document explained by several methods, one row each with its own colour scale.

    Sensitivity analysis (squared gradients) is never negative, so it cannot show evidence
    against the class; gradient x input and LRP can (Samek et al. 2017, Fig. 2B).
    """
    if not results:
        raise TextInputError("results is empty: pass {method name: explanation}")
    plt = pyplot()
    n = len(results)
    lines = max(2, int(np.ceil(max_tokens * 7 / width)) + 1)
    fig, axes = plt.subplots(n, 1, figsize=(_FONT * 0.6 * (width + 2) / 72 + 0.4, n * (1.0 + 0.15 * lines)),
                             squeeze=False)
    for ax, (name, R) in zip(axes[:, 0], results.items()):
        plot_document(R, document, max_tokens=max_tokens, width=width, ax=ax,
                      title=_figure_header(R, _documents(R, document)[0], _METHOD_TITLES.get(name, name)))
    return fig


@styled
def plot_top_words(S: xr.DataArray, k: int = 12, min_count: int = 2):
    """Per class, the word types with the highest summed relevance (from :func:`word_type_relevance`)."""
    from .explain import top_words
    if tuple(S.dims) != ("class", "word_type"):
        raise TextInputError(f"plot_top_words needs the result of word_type_relevance, got dims {S.dims}")
    plt = pyplot()
    classes = list(S.coords["class"].values)
    fig, axes = plt.subplots(1, len(classes), figsize=(min(7.0, max(4.5, 3.4 * len(classes))), 0.2 * k + 1.3),
                             squeeze=False)
    for ax, cls in zip(axes[0], classes):
        rows = top_words(S, str(cls), k, min_count=min_count)
        words = [f"{w} ({c})" for w, _, c in rows][::-1]
        vals = [v for _, v, _ in rows][::-1]
        ax.barh(words, vals, color=["#d62728" if v >= 0 else "#1f77b4" for v in vals])
        ax.set_title(f"explained class {cls}")
        ax.set_xlabel("relevance summed over the explained texts")
        ax.axvline(0, color="k", lw=0.6)
    fig.suptitle(f"The {k} words with the most relevance per class\n(in brackets: occurrences, at least {min_count})")
    return fig


@styled
def plot_deletion(curves: xr.DataArray | Mapping[str, xr.DataArray], title: str = "word deletion"):
    """Accuracy against the number of deleted words, one line per method.

    ``curves`` has dims ``(set, method, k)`` (from :func:`~sciexplain_text.word_deletion` results
    stacked) or is a mapping of panel name -> ``(method, k)`` curves.
    """
    plt = pyplot()
    panels = dict(curves) if isinstance(curves, Mapping) else {str(s): curves.sel(set=s) for s in curves.coords["set"].values}
    fig, axes = plt.subplots(1, len(panels), figsize=(min(7.0, 3.5 * len(panels)), 3.0), squeeze=False)
    for ax, (name, C) in zip(axes[0], panels.items()):
        for j, m in enumerate(C.coords["method"].values):
            ax.plot(C.coords["k"].values, C.sel({"method": m}).values, marker="osD^vPX"[j % 7], ms=3.5,
                    ls=["-", "--", "-.", ":"][j % 4], label=str(m).replace("_", " "))
        ax.set_xlabel("words deleted (k)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: {name}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


