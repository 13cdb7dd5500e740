"""Relevance drawn onto the text as written: HTML (for Jupyter) and a LaTeX ``\\colorbox`` heatmap.

Both render the **original** text: the characters between tokens (spaces, punctuation, line
breaks) are kept, each token is highlighted (red: evidence for the explained class, blue:
against; the colour's strength is the relevance over the document's largest absolute value),
and every piece of text is escaped, so a document containing ``<script>`` or ``%`` shows as
written and cannot inject markup. Control and bidirectional-override characters (NUL, U+202E...,
see :func:`control_escape`) are shown as their code point, ``[U+202E]``, in both outputs: raw,
they stop pdflatex or reorder the text on screen. Tokens are cut from the original text by their
character offsets first and escaped afterwards, so the offsets keep their meaning.

In Jupyter, wrap a result with :func:`show` (or :class:`TextRelevance`): the wrapper has a
``_repr_html_``, so it renders as highlighted text. The DataArray class itself is not patched.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import TextInputError

__all__ = ["to_html", "to_latex", "show", "TextRelevance", "latex_escape", "html_escape", "control_escape",
           "document_segments"]

#: C0 controls but tab, line feed and carriage return; DEL and the C1 controls; the bidirectional
#: marks, embeddings, overrides and isolates (U+061C, U+200E-U+200F, U+202A-U+202E,
#: U+2066-U+2069); lone surrogates (undecodable bytes), which no UTF-8 file can hold
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                      "\ud800-\udfff]")


def control_escape(text: str) -> str:
    """Show control and bidirectional-override characters as their code point: ``"a\\x00b"`` gives
    ``"a[U+0000]b"``, U+202E gives ``"[U+202E]"``; all other characters are kept (tab, line feed and
    carriage return too)."""
    return _CONTROL.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def html_escape(text: str) -> str:
    """Text for HTML: control characters as :func:`control_escape` shows them, ``& < > " '`` escaped."""
    return html.escape(control_escape(text))

_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "&": r"\&", "#": r"\#", "_": r"\_",
          "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex_escape(text: str) -> str:
    """Escape the characters LaTeX treats specially (``\\ { } % & # _ $ ~ ^ < > |``), control
    characters shown as :func:`control_escape` shows them."""
    return "".join(_LATEX.get(ch, ch) for ch in control_escape(text))


def _check(R: xr.DataArray) -> None:
    if not isinstance(R, xr.DataArray) or tuple(R.dims) != ("document", "token") or "start" not in R.coords \
            or "text" not in R.coords:
        raise TextInputError("expected a text explanation (dims ('document', 'token') with start/end/text coords) "
                             "as returned by sciexplain_text.explain_documents or sx.explain(model, docs)")


def _documents(R: xr.DataArray, document: int | list[int] | None) -> list[int]:
    n = R.sizes["document"]
    docs = list(range(n)) if document is None else [document] if np.ndim(document) == 0 else list(document)
    for d in docs:
        if not (isinstance(d, (int, np.integer)) and -n <= d < n):
            raise TextInputError(f"document {d!r} is not a position in 0..{n - 1}")
    return [int(d) % n for d in docs]


def document_segments(R: xr.DataArray, d: int) -> list[tuple[str, float | None]]:
    """The text of document ``d`` cut into (piece, relevance) pairs; None for text between tokens."""
    _check(R)
    text = str(R.coords["text"].values[d])
    starts, ends = R.coords["start"].values[d], R.coords["end"].values[d]
    vals = R.values[d].astype(float)
    order = [j for j in np.argsort(starts, kind="stable") if starts[j] >= 0]
    out: list[tuple[str, float | None]] = []
    pos = 0
    for j in order:
        s, e = int(starts[j]), int(ends[j])
        if s < pos:  # overlapping tokens (some subword tokenizers): add to the previous piece
            if out and out[-1][1] is not None:
                out[-1] = (out[-1][0], out[-1][1] + vals[j])
            continue
        if s > pos:
            out.append((text[pos:s], None))
        out.append((text[s:e], float(vals[j])))
        pos = e
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def _scale(R: xr.DataArray, d: int, scale: float | None) -> float:
    if scale is not None:
        return float(scale)
    m = float(np.abs(R.values[d]).max())
    return m if m > 0 else 1.0


def _header(R: xr.DataArray, d: int) -> str:
    parts = [f"document {d}"]
    if "target_name" in R.coords:
        parts.append(f"explained class {R.coords['target_name'].values[d]}")
    elif "target" in R.coords:
        parts.append(f"explained class {int(R.coords['target'].values[d])}")
    if "prediction" in R.coords:
        parts.append(f"f(x) = {float(R.coords['prediction'].values[d]):.3f}")
    if "absorbed" in R.coords and np.isfinite(R.coords["absorbed"].values[d]):
        parts.append(f"absorbed {float(R.coords['absorbed'].values[d]):.3f}")
    if "padding_relevance" in R.coords:
        parts.append(f"padding {float(R.coords['padding_relevance'].values[d]):.3f}")
    if "special_relevance" in R.coords:  # [CLS] / [SEP]: not part of the text, kept in the ledger
        parts.append(f"[CLS], [SEP] {float(R.coords['special_relevance'].values[d]):.3f}")
    if "truncated" in R.coords and bool(R.coords["truncated"].values[d]):
        parts.append("truncated: the text after the last highlighted token was not read by the model")
    parts.append(f"method {R.attrs.get('method', '?')}")
    return " | ".join(parts)


def to_html(R: xr.DataArray, document: int | list[int] | None = None, *, scale: float | None = None) -> str:
    """HTML of the documents with each token's background coloured by its relevance.

    Parameters
    ----------
    R : xarray.DataArray
        A text explanation (``("document", "token")``).
    document : int or list of int, optional
        Which documents (default: all).
    scale : float, optional
        Relevance that gets full colour; default: each document's largest absolute value.

    Returns
    -------
    str
        Escaped HTML; each token's ``title`` shows its relevance.
    """
    _check(R)
    blocks = []
    for d in _documents(R, document):
        sc = _scale(R, d, scale)
        pieces = []
        for piece, r in document_segments(R, d):
            if r is None:
                pieces.append(html_escape(piece))
                continue
            a = min(abs(r) / sc, 1.0)
            rgb = "220,40,40" if r >= 0 else "40,90,220"
            pieces.append(f'<span style="background-color: rgba({rgb},{a:.3f})" title="{r:.4g}">'
                          f"{html_escape(piece)}</span>")
        blocks.append(f'<div class="sciexplain-text"><div style="font-family: sans-serif; font-size: 85%; '
                      f'color: #555">{html_escape(_header(R, d))}</div>'
                      f'<div style="white-space: pre-wrap; font-family: monospace; line-height: 1.5">'
                      f'{"".join(pieces)}</div></div>')
    return "\n".join(blocks)


def to_latex(R: xr.DataArray, path: str | Path | None = None, document: int = 0, *, scale: float | None = None,
             standalone: bool = False) -> str:
    """A LaTeX heatmap of one document: each token in a ``\\colorbox`` (needs ``xcolor``).

    Parameters
    ----------
    R : xarray.DataArray
        A text explanation.
    path : path-like, optional
        Where to write the LaTeX (UTF-8); the string is returned either way.
    document : int
    scale : float, optional
        Relevance that gets full colour (default: the document's largest absolute value).
    standalone : bool
        Write a complete document (``\\documentclass{article}`` with xcolor) instead of a fragment.

    Returns
    -------
    str
        The LaTeX; every piece of text is escaped (:func:`latex_escape`).
    """
    _check(R)
    (d,) = _documents(R, document)
    sc = _scale(R, d, scale)
    out = []
    for piece, r in document_segments(R, d):
        if r is None:
            out.append(latex_escape(piece).replace("\n\n", "\n\\par\n"))
            continue
        pct = int(round(100 * min(abs(r) / sc, 1.0)))
        colour = "red" if r >= 0 else "blue"
        out.append(f"\\colorbox{{{colour}!{pct}}}{{\\strut {latex_escape(piece)}}}")
    header = " ".join(latex_escape(_header(R, d)).splitlines())  # one comment line, whatever the class names hold
    body = (f"% {header}\n% red: evidence for the class, blue: against; "
            f"full colour = {sc:.4g}\n\\setlength{{\\fboxsep}}{{1pt}}\n" + "".join(out) + "\n")
    if standalone:
        body = ("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{xcolor}\n"
                "\\begin{document}\n\\sloppy\n" + body + "\\end{document}\n")
    if path is not None:
        Path(path).write_text(body, encoding="utf-8")
    return body


class TextRelevance:
    """Display wrapper of a text explanation: renders as highlighted text in Jupyter.

    ``TextRelevance(R)`` (or :func:`show`) keeps the DataArray in ``.data``; in a notebook the
    wrapper displays through ``_repr_html_`` (:func:`to_html`), in a terminal as a short text.
    """

    def __init__(self, R: xr.DataArray, document: int | list[int] | None = None, scale: float | None = None) -> None:
        _check(R)
        self.data = R
        self.document = document
        self.scale = scale

    def _repr_html_(self) -> str:
        return to_html(self.data, self.document, scale=self.scale)

    def __repr__(self) -> str:
        lines = []
        for d in _documents(self.data, self.document):
            toks = [(p, r) for p, r in document_segments(self.data, d) if r is not None]
            top = sorted(toks, key=lambda t: -t[1])[:5]
            lines.append(f"<{_header(self.data, d)}; top tokens {[(p, round(r, 3)) for p, r in top]}>")
        return "\n".join(lines)


def show(R: xr.DataArray, document: int | list[int] | None = None, scale: float | None = None) -> TextRelevance:
    """Wrap ``R`` so that Jupyter shows the documents as highlighted text (see :class:`TextRelevance`)."""
    return TextRelevance(R, document, scale)


