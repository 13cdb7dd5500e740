"""Figures of word relevance; every ``plot_*`` returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from sciexplain.result import method_title, pyplot, RELEVANCE_CMAP, styled, symmetric_limit

from .errors import TextInputError
from .render import _check, _documents, document_segments

__all__ = ["plot_document", "plot_methods", "plot_top_words", "plot_deletion", "holds_subwords"]

_METHOD_TITLES = {"lrp": "LRP", "sensitivity": "sensitivity (squared gradient; never negative)",
                  "gradient_x_input": "gradient x input"}

#: points per character of the monospace words: the layout below assumes this font size
_FONT = 7.0



def _lrp_name(R: xr.DataArray) -> str:
    """The method for a title: "LRP" with the preset's name when it has one (``"LRP cp-lrp"``), else the
    method in words."""
    method = str(R.attrs.get("method", ""))
    preset = str(R.attrs.get("preset") or "")
    if method in ("", "lrp") and preset and not preset.startswith("custom mapping"):
        return method_title(R)
    return _METHOD_TITLES.get(method, method.replace("_", " "))


def _specials(R: xr.DataArray, d: int) -> tuple[str, float] | None:
    """The special tokens of document ``d`` (``"[CLS], [SEP]"``) and their summed relevance; None without."""
    if "is_special" not in R.coords or not R.coords["is_special"].values[d].any():
        return None
    special = R.coords["is_special"].values[d]
    names = ", ".join(dict.fromkeys(str(w) for w in R.coords["word"].values[d][special]))
    return names, float(R.values[d][special].astype(float).sum())


def _first_line(R: xr.DataArray, d: int, method: str | None, with_fx: bool = True) -> list[str]:
    first = [method or _lrp_name(R), f"document {d}"]
    if "target_name" in R.coords:
        first.append(f"explained class {R.coords['target_name'].values[d]}")
    elif "target" in R.coords:
        first.append(f"explained class {int(R.coords['target'].values[d])}")
    if with_fx and "prediction" in R.coords:
        first.append(f"f(x) = {float(R.coords['prediction'].values[d]):.3g}")
    return first


def _join_first(first: list[str]) -> str:
    head = ", ".join(first)
    if len(head) > 80:  # a long method name gets a line of its own
        head = first[0] + "\n" + ", ".join(first[1:])
    return head


def _figure_header(R: xr.DataArray, d: int, method: str | None = None) -> str:
    """A title of at most two short lines: what was explained, f(x), what was absorbed; then the caveats."""
    first = _first_line(R, d, method)
    if "absorbed" in R.coords and np.isfinite(R.coords["absorbed"].values[d]):
        first.append(f"absorbed {float(R.coords['absorbed'].values[d]):.3g}")
    second = []
    if "padding_relevance" in R.coords and float(R.coords["padding_relevance"].values[d]) != 0:
        second.append(f"padding (not drawn) {float(R.coords['padding_relevance'].values[d]):.3g}")
    specials = _specials(R, d)
    if specials is not None:
        second.append(f"{specials[0]} (not drawn) {specials[1]:.3g}")
    if "truncated" in R.coords and bool(R.coords["truncated"].values[d]):
        second.append("the text after the last coloured word was not read by the model")
    return _join_first(first) + ("\n" + "; ".join(second) if second else "")


def _flush_left_box(x0: float, y0: float, width: float, height: float, mutation_size: float):
    """The word box ("square,pad=0.1") without its left pad: a word that follows the previous one with nothing
    between them ("servants?") would otherwise cover the previous word's last letter."""
    from matplotlib.path import Path as MplPath

    pad = 0.1 * mutation_size
    x1, y0, y1 = x0 + width + pad, y0 - pad, y0 + height + pad
    return MplPath([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], closed=True)


def _draw_words(ax, R: xr.DataArray, d: int, limit: float, width: int, max_tokens: int, cmap) -> int:
    """Flow the document's words as coloured boxes on ``ax``; returns the number of lines."""
    col, row, seen = 0, 0, 0
    segments = document_segments(R, d)
    glued = False  # this word follows the previous one with nothing between them
    for i, (piece, r) in enumerate(segments):
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
        dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.5  # black text would not read
        ax.text(col, -row, word, family="monospace", fontsize=_FONT, va="top", color="white" if dark else "black",
                bbox=dict(boxstyle=_flush_left_box if glued else "square,pad=0.1", facecolor=colour, edgecolor="none"))
        # a space only where the text has something between this word and the next ("I've" stays one piece)
        glued = i + 1 < len(segments) and segments[i + 1][1] is not None
        col += len(word) + (0 if glued else 1)
        seen += 1
    ax.set_xlim(-0.5, width + 1)
    ax.set_ylim(-row - 1.2, 0.6)
    ax.axis("off")
    return row + 1


def holds_subwords(R: xr.DataArray) -> bool:
    """Whether a text result holds subword tokens: special tokens (``[CLS]``, ``[SEP]``) or several
    tokens of one word (a shared ``word_index``). :func:`plot_document` draws words for these."""
    if "is_special" in R.coords and bool(R.coords["is_special"].values.any()):
        return True
    if "word_index" not in R.coords:
        return False
    for row in R.coords["word_index"].values:
        known = row[row >= 0]
        if np.unique(known).size < known.size:
            return True
    return False


def _word_view(R: xr.DataArray, W: xr.DataArray | None = None) -> xr.DataArray:
    """Relevance per word laid out as a token-level text result (one "token" per word), for drawing.

    Each word's value is the sum of its pieces (:func:`~sciexplain_text.group_words`, ``W`` when
    already computed); the ``<pad>`` entry, the special tokens and the empty slots are marked
    ``is_padding`` (not drawn; their totals go into the title).
    """
    from .explain import group_words
    if "word_index" not in R.coords:
        raise TextInputError("drawing words needs the word_index coord of a text result (which tokens form a "
                             "word), as sciexplain_text.explain_documents or sx.explain(model, docs) return it")
    W = group_words(R) if W is None else W
    hidden = W.coords["is_empty"].values.copy()
    hidden[:, -1] = True  # <pad>
    if "is_special" in W.coords:
        hidden |= W.coords["is_special"].values
    coords = {k: v.variable for k, v in W.coords.items() if v.dims == ("document",)}
    pair = ("document", "token")
    coords.update(start=(pair, W.coords["word_start"].values), end=(pair, W.coords["word_end"].values),
                  word=(pair, W.coords["word_text"].values), is_padding=(pair, hidden),
                  word_index=(pair, np.where(hidden, -1, np.arange(W.sizes["word"])[None, :])))
    view = xr.DataArray(W.values, dims=pair, coords=coords, name=W.name)
    view.attrs = dict(W.attrs)
    return view


def _words_header(R: xr.DataArray, W: xr.DataArray, d: int, max_tokens: int, method: str | None) -> str:
    """The title of the word view: what was explained, then the ledger of the document as drawn:
    f(x) = drawn words + words left out + special tokens + padding + absorbed."""
    vals = W.values[d].astype(float)
    special = W.coords["is_special"].values[d] if "is_special" in W.coords else np.zeros(vals.shape, bool)
    is_word = ~special & ~W.coords["is_empty"].values[d]
    is_word[-1] = False  # <pad>
    word_vals = vals[is_word]  # in reading order (word_index follows the text)
    drawn, left = word_vals[:max_tokens].sum(), word_vals[max_tokens:].sum()
    terms = [f"{'drawn words' if word_vals.size > max_tokens else 'words'} {drawn:.3g}"]
    if word_vals.size > max_tokens:
        terms.append(f"{word_vals.size - max_tokens} words after '...' {left:.3g}")
    specials = _specials(R, d)
    if specials is not None:
        terms.append(f"{specials[0]} (not drawn) {specials[1]:.3g}")
    if vals[-1] != 0:
        terms.append(f"padding (not drawn) {vals[-1]:.3g}")
    absorbed = float(R.coords["absorbed"].values[d]) if "absorbed" in R.coords else float("nan")
    ledger = R.attrs.get("decomposes", "f(x)").startswith("f(x)") and "prediction" in R.coords \
        and np.isfinite(absorbed)
    first = _first_line(R, d, method, with_fx=not ledger)
    if ledger:
        terms.append(f"absorbed {absorbed:.3g}")
        second = f"f(x) = {float(R.coords['prediction'].values[d]):.3g} = " + " + ".join(terms)
    else:
        second = "sums: " + "; ".join(terms)
    lines = [_join_first(first)] + _wrap_terms(second.replace("+ -", "- "))
    if "truncated" in R.coords and bool(R.coords["truncated"].values[d]):
        lines.append("the text after the last coloured word was not read by the model")
    return "\n".join(lines)


def _wrap_terms(line: str, limit: int = 90) -> list[str]:
    """Break a long ledger line before a "+" or "-" term, so that each line fits the page."""
    out = [""]
    for part in line.replace(" + ", "\0+ ").replace(" - ", "\0- ").split("\0"):
        if out[-1] and len(out[-1]) + 1 + len(part) > limit:
            out.append("    " + part)
        else:
            out[-1] = f"{out[-1]} {part}" if out[-1] else part
    return out


@styled
def plot_document(R: xr.DataArray, document: int = 0, *, max_tokens: int = 160, width: int = 100,
                  ax=None, title: str | None = None, words: bool | None = None):
    """One document as a heatmap of its words (red: for the class, blue: against).

    Colours are centred at zero with a symmetric limit (a high percentile of |R| in the
    document); the colour bar is in units of the explained output f(x) (``decomposes`` says what
    the values add up to). Padding is not drawn (its total is in the title).

    Parameters
    ----------
    R : xarray.DataArray
        A text explanation, dims ``("document", "token")``.
    document : int
        Which document (its position in ``R``).
    max_tokens : int
        Draw at most this many tokens (words with ``words``); "..." marks the rest.
    width : int
        Characters per line.
    ax : matplotlib Axes, optional
        Draw into this Axes (the colour bar is added beside it).
    title : str, optional
        Replaces the title (by default what was explained, f(x) and where the rest of f(x) went).
    words : bool or None
        Draw words, each the sum of its pieces (:func:`~sciexplain_text.group_words`), instead of
        tokens. Special tokens (``[CLS]``, ``[SEP]``) and padding are not drawn; the title states
        their totals with the drawn words' and the absorbed relevance, which add up to f(x). Default
        (None): words when ``R`` holds subword tokens (:func:`holds_subwords`), tokens otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    TextInputError
        ``R`` is not a text explanation, ``document`` is not one of its positions, or ``words`` is
        asked for a result without the ``word_index`` coord.
    """
    _check(R)
    (d,) = _documents(R, document)
    return _draw_document(R, d, max_tokens=max_tokens, width=width, ax=ax, title=title, words=words)


def _draw_document(R: xr.DataArray, d: int, *, max_tokens: int, width: int, ax, title: str | None,
                   words: bool | None, method: str | None = None):
    plt = pyplot()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    if words is None:
        words = holds_subwords(R)
    if words:
        from .explain import group_words
        if "word_index" not in R.coords:
            _word_view(R)  # raises the error that says what is missing
        W = group_words(R)
        shown = _word_view(R, W)
        title = title or _words_header(R, W, d, max_tokens, method)
    else:
        shown = R
        title = title or _figure_header(R, d, method)
    cmap = plt.get_cmap(RELEVANCE_CMAP)
    drawn = ~shown.coords["is_padding"].values[d] if "is_padding" in shown.coords else \
        np.ones(shown.sizes["token"], bool)
    limit = symmetric_limit(shown.values[d][drawn])
    n_tok = min(int(drawn.sum()), max_tokens)
    lines = max(2, int(np.ceil(n_tok * 7 / width)) + 1)
    if ax is None:  # the page width; one line of words is about 1/7 inch
        fig, ax = plt.subplots(figsize=(_FONT * 0.6 * (width + 2) / 72 + 0.4, 1.1 + 0.15 * lines
                                        + 0.15 * max(0, title.count("\n") - 1)))
    else:
        fig = ax.figure
    _draw_words(ax, shown, d, limit, width, max_tokens, cmap)
    ax.set_title(title, loc="left")
    decomposes = str(R.attrs.get("decomposes", "f(x)"))
    unit = "units of f(x)" if decomposes.startswith("f(x)") else decomposes
    label = f"relevance per word (sum of its tokens; {unit})" if words else f"relevance ({unit})"
    cb = fig.colorbar(ScalarMappable(Normalize(-limit, limit), cmap), ax=ax, orientation="horizontal",
                      location="bottom", shrink=0.35, aspect=30, pad=0.02)
    cb.set_ticks([-limit, 0.0, limit], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"])
    cb.set_label(label)
    return fig


@styled
def plot_methods(results: Mapping[str, xr.DataArray], document: int = 0, *, max_tokens: int = 120, width: int = 100,
                 words: bool | None = None):
    """The same document explained by several methods, one row each with its own colour scale.

    Sensitivity analysis (squared gradients) is never negative, so it cannot show evidence
    against the class; gradient x input and LRP can (Samek et al. 2017, Fig. 2B). ``words`` as in
    :func:`plot_document` (default: words for subword tokens).
    """
    if not results:
        raise TextInputError("results is empty: pass {method name: explanation}")
    plt = pyplot()
    n = len(results)
    lines = max(2, int(np.ceil(max_tokens * 7 / width)) + 1)
    extra = 0.3 if any(holds_subwords(R) if words is None else words for R in results.values()) else 0.0
    fig, axes = plt.subplots(n, 1, figsize=(_FONT * 0.6 * (width + 2) / 72 + 0.4, n * (1.0 + 0.15 * lines + extra)),
                             squeeze=False)
    for ax, (name, R) in zip(axes[:, 0], results.items()):
        _check(R)
        (d,) = _documents(R, document)
        _draw_document(R, d, max_tokens=max_tokens, width=width, ax=ax, title=None, words=words,
                       method=_lrp_name(R) if name == "lrp" else _METHOD_TITLES.get(name, name))
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


