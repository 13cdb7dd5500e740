"""The text demo: real 20 Newsgroups posts explained word by word with the shipped CNN, BiLSTM and transformer.

``DOMAIN.demo(out)`` (run by ``python -m sciexplain demo`` with ``results/text/``) writes, for
each shipped 20 Newsgroups model: the explanation of its held-out posts as netCDF, an HTML page
of highlighted posts, a LaTeX heatmap of one post, the document figure, the method comparison
(sensitivity, gradient x input, LRP) and the top words per class; and ``summary.json``. The
transformer (``newsgroups_bert``, explained with its default, CP-LRP) reads subword pieces: its
figures draw words (each the sum of its pieces), and its pieces summed into words are written
as a second netCDF file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo"]



def _absorbed_share(R: Any, what: str, domain: str) -> dict[str, Any]:
    """The part of f(x) the default leaves absorbed (biases, stabilisers) over the explained inputs, in plain words."""
    share = np.asarray(R.absorbed.values, dtype=float) / np.asarray(R.prediction.values, dtype=float)
    med, worst = float(np.median(share)), float(np.max(np.abs(share)))
    return {"median": med, "worst": worst, "n": int(share.size),
            "statement": f"the default preset leaves {med:.1%} of f(x) absorbed (median over {share.size} {what}, "
                         f"worst {worst:.1%}); the rest reaches the input. Every network of the plugin: "
                         f"python benchmarks/bench_conservation.py --only {domain}"}

def _held_out(model, corpus, n: int | None):
    idx = np.asarray(model.training_record["test_indices"], dtype=int)
    return idx if n is None else idx[:n]


def _documents_summary(R: Any, index: np.ndarray, labels: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Per explained post: its index in the corpus, true and predicted class, f(x) and where it went
    (words + special tokens + padding + absorbed = f(x))."""
    vals = np.asarray(R.values, dtype=float)
    pad = R.coords["is_padding"].values
    special = R.coords["is_special"].values if "is_special" in R.coords else np.zeros(pad.shape, dtype=bool)
    rows = []
    for d in range(R.sizes["document"]):
        fx, absorbed = float(R.prediction.values[d]), float(R.absorbed.values[d])
        rows.append({"post": int(index[d]), "label": names[int(labels[d])],
                     "predicted": names[int(R.predicted.values[d])], "explained_class": str(R.target_name.values[d]),
                     "prediction": fx, "absorbed": absorbed, "absorbed_share_of_fx": absorbed / fx,
                     "words": float(vals[d][~pad[d] & ~special[d]].sum()),
                     "special_tokens": float(vals[d][special[d]].sum()),
                     "padding": float(vals[d][pad[d] & ~special[d]].sum()),
                     "truncated": bool(R.truncated.values[d])})
    return rows


def run_demo(out: str | Path, n_documents: int | None = 16,
             models: tuple[str, ...] = ("newsgroups_cnn", "newsgroups_lstm", "newsgroups_bert")) -> dict[str, Any]:
    """Explain held-out 20 Newsgroups posts with the shipped models; write figures, netCDF, HTML, LaTeX.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    n_documents : int or None
        Explain the first ``n`` held-out posts (default 16, to keep the demo short; None: all 40).
        The held-out accuracy is always computed on all 40.
    models : tuple of str
        Shipped model names (trained on 20 Newsgroups). Each is explained with its own default
        preset (:func:`~sciexplain_text.explain_documents`): CP-LRP for the transformer.

    Returns
    -------
    dict
        ``data`` (the corpus file) and per model: held-out accuracy, ledger residual, the absorbed share
        of f(x), class names, per explained post its prediction and where f(x) went (``documents``),
        files written, top words per class.
    """
    from .data import load_mini_newsgroups
    from .documents import Documents
    from .explain import explain_documents, word_type_relevance, top_words
    from .explain import prepare_documents
    from .models import load_model
    from .training import accuracy
    from .plots import plot_document, plot_methods, plot_top_words
    from .plots import _word_view, holds_subwords
    from .render import html_escape, to_html, to_latex
    from .explain import group_words
    from sciexplain.result import pyplot, save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_mini_newsgroups()
    summary: dict[str, Any] = {"data": corpus.source, "models": {}}
    plt = pyplot()
    for name in models:
        model, tok = load_model(name)
        every = _held_out(model, corpus, None)
        all_docs = prepare_documents(Documents([corpus.texts[i] for i in every], tok), model)
        held_out = accuracy(model, all_docs.ids, corpus.labels[every])
        idx = _held_out(model, corpus, n_documents)
        docs = Documents([corpus.texts[i] for i in idx], tok, labels=corpus.labels[idx],
                         class_names=corpus.class_names)
        R = explain_documents(model, docs)
        R.relevance.check()
        residual = float(np.abs(R.relevance.residual().values).max())
        files = {}
        nc = out / f"{name}_lrp.nc"
        R.to_netcdf(nc)
        files["netcdf"] = nc.name
        page = out / f"{name}.html"
        subwords = holds_subwords(R)
        if subwords:  # pieces summed into words (+ one entry per [CLS], [SEP] and <pad>): the same ledger
            W = group_words(R)
            words_nc = out / f"{name}_lrp_words.nc"
            W.to_netcdf(words_nc)
            files["netcdf_words"] = words_nc.name
        # the page and the LaTeX show words (the transformer's pieces summed), as the figure does
        shown = _word_view(R, W) if subwords else R
        page.write_text("<!DOCTYPE html><meta charset='utf-8'><title>sciexplain-text: " + html_escape(name)
                        + "</title>\n"
                        + to_html(shown), encoding="utf-8")
        files["html"] = page.name
        correct = np.flatnonzero(R.predicted.values == docs.labels)
        d = int(correct[0]) if len(correct) else 0
        tex = out / f"{name}_document{d}.tex"
        to_latex(shown, tex, d, standalone=True)
        files["latex"] = tex.name
        fig = plot_document(R, d)
        save_figure(fig, out / f"{name}_document.png")
        plt.close(fig)
        short = docs.subset([d])
        results = {m: explain_documents(model, short, int(R.target.values[d]), method=m)
                   for m in ("sensitivity", "gradient_x_input")}
        results["lrp"] = explain_documents(model, short, int(R.target.values[d]))
        fig = plot_methods(results, 0)
        save_figure(fig, out / f"{name}_methods.png")
        plt.close(fig)
        # a word type is a word as written, not a subword piece: the transformer's pieces are summed first
        S = word_type_relevance(_word_view(R, W) if subwords else R, by="target")
        fig = plot_top_words(S)
        save_figure(fig, out / f"{name}_top_words.png")
        plt.close(fig)
        files["figures"] = [f"{name}_document.png", f"{name}_methods.png", f"{name}_top_words.png"]
        summary["models"][name] = {
            "held_out_accuracy": held_out, "n_held_out": int(len(every)),
            "explained_accuracy": float((R.predicted.values == docs.labels).mean()),
            "n_explained": int(len(docs)), "ledger_max_residual": residual,
            "absorbed_share_of_fx": _absorbed_share(R, "documents", '"text: transformer"' if subwords else "text"),
            "preset": str(R.attrs.get("preset", "")), "tokens": "subword pieces" if subwords else "words",
            "class_names": list(corpus.class_names),
            "documents": _documents_summary(R, idx, docs.labels, list(corpus.class_names)),
            "recorded_test_accuracy": model.training_record.get("test_accuracy"),
            "cv5_accuracy": model.training_record.get("cv5_accuracy"),
            "top_words": {str(c): [w for w, _, _ in top_words(S, str(c), 8, min_count=2)]
                          for c in S.coords["class"].values},
            "files": files,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
