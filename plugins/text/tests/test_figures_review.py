"""Text figures a reviewer would accept: no overlapping or clipped text, labelled colour bars, no code reprs."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import sciexplain_text as st  # noqa: E402
from sciexplain_text.plots import plot_deletion, plot_document, plot_methods, plot_top_words  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the repository's reviewer checks
from figure_checks import overlapping_texts, texts, texts_outside  # noqa: E402

LONG = ("The rocket reached orbit; the moon & the stars. " * 6 + "\n\n" + "God is not dead, said the atheist. " * 5)


def review(fig) -> list[str]:
    assert overlapping_texts(fig) == []
    assert texts_outside(fig) == []
    words = [t.get_text() for t in texts(fig)]
    assert not [w for w in words if " | " in w or "method lrp" in w], words  # no dumps of the record
    return words


def colour_bars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.fixture(autouse=True)
def close():
    yield
    plt.close("all")


@pytest.fixture()
def R(tok, texts):
    import torch
    torch.manual_seed(0)
    model = st.TextCNN(len(tok), 2, n_filters=6, window=3, max_length=120).eval()
    docs = st.Documents([LONG] + texts, tok, labels=np.array([0, 0, 1, 1, 0]), class_names=["space", "atheism"])
    return model, docs, st.explain_documents(model, docs)


def test_document_words_do_not_collide_and_the_bar_is_labelled(R):
    _, _, Rel = R
    fig = plot_document(Rel, 0)
    review(fig)
    (cb,) = colour_bars(fig)
    assert cb.get_xlabel() == "relevance (units of f(x))"
    lo, hi = cb.get_xlim()
    assert np.isclose(lo, -hi)  # diverging, centred at zero
    title = fig.axes[0].get_title(loc="left")
    assert title.startswith("LRP, document 0, explained class") and "f(x) =" in title
    assert fig.get_size_inches()[0] <= 7.5  # fits a page


def test_methods_rows_each_labelled(R):
    model, docs, Rel = R
    results = {m: st.explain_documents(model, docs.subset([0]), int(Rel.target.values[0]), method=m)
               for m in ("sensitivity", "gradient_x_input")}
    results["lrp"] = st.explain_documents(model, docs.subset([0]), int(Rel.target.values[0]))
    fig = plot_methods(results, 0, max_tokens=60)
    review(fig)
    assert [cb.get_xlabel() for cb in colour_bars(fig)] == ["relevance (squared gradient norm)",
                                                            "relevance (units of f(x))", "relevance (units of f(x))"]
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert [t.split("\n")[0].split(",")[0] for t in titles] == ["sensitivity (squared gradient; never negative)",
                                                 "gradient x input", "LRP"]


def test_top_words_and_deletion(R):
    _, _, Rel = R
    fig = plot_top_words(st.word_type_relevance(Rel, by="target"), k=5, min_count=1)
    review(fig)
    assert all(ax.get_xlabel() == "relevance summed over the explained texts" for ax in fig.axes)
    k = np.arange(5)
    curves = xr.DataArray(np.stack([1 - 0.1 * k, 1 - 0.1 * k, 1 - 0.05 * k]), dims=("method", "k"),
                          coords={"method": ["lrp", "gradient_x_input", "random"], "k": k})
    fig = plot_deletion({"held out": curves})
    review(fig)
    ax = fig.axes[0]
    # two methods with the same curve stay distinguishable: other markers and dashes
    styles = {(line.get_marker(), line.get_linestyle()) for line in ax.lines}
    assert len(styles) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lrp", "gradient x input", "random"]


def test_word_view_of_a_transformer(bert_R):
    """The shipped transformer's pieces drawn as words: readable, labelled, and the title's ledger adds up."""
    fig = plot_document(bert_R, 0, max_tokens=60)
    words = review(fig)
    (cb,) = colour_bars(fig)
    assert cb.get_xlabel() == "relevance per word (sum of its tokens; units of f(x))"
    lo, hi = cb.get_xlim()
    assert np.isclose(lo, -hi)
    title = fig.axes[0].get_title(loc="left")
    lines = title.split("\n")
    assert lines[0] == f"LRP cp-lrp, document 0, explained class {bert_R.target_name.values[0]}"
    assert lines[1].startswith(f"f(x) = {float(bert_R.prediction.values[0]):.3g} = drawn words ")
    ledger = " ".join(lines[1:-1])  # broken before a term where it would not fit the page
    assert "[CLS], [SEP] (not drawn)" in ledger and "absorbed" in ledger and "words after '...'" in ledger
    assert all(len(line) <= 94 for line in lines)
    assert lines[-1] == "the text after the last coloured word was not read by the model"  # 256 pieces read
    boxes = [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]  # the coloured words
    drawn = [t.get_text() for t in boxes]
    assert len(drawn) == 60 and all(w in words for w in drawn)  # max_tokens words, then "..."
    assert not [w for w in drawn if w.startswith("##") or w in ("[CLS]", "[SEP]")]
    text = str(bert_R.text.values[0])
    assert all(w in text for w in drawn)  # words as written, cut from the original text
    # dark boxes get white text, light ones black
    for t in boxes:
        r, g, b, _ = t.get_bbox_patch().get_facecolor()
        assert (t.get_color() == "white") == (0.299 * r + 0.587 * g + 0.114 * b < 0.5)
    assert fig.get_size_inches()[0] <= 7.5
