"""``plot_document(..., words=...)``: subword pieces drawn as words, each the sum of its pieces.

The references here do not use ``word_index``: a word's relevance is recomputed from the character
offsets (the pieces inside the word's span of the text), and the drawn values are read back from the
colours of the figure's boxes.
"""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

import sciexplain_text as st  # noqa: E402
from sciexplain.result import RELEVANCE_CMAP, symmetric_limit  # noqa: E402
from sciexplain_text.plots import _word_view  # noqa: E402


@pytest.fixture(autouse=True)
def close():
    yield
    plt.close("all")


def _boxes(fig) -> list:
    """The coloured words of a document figure, in drawing order."""
    return [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]


def _words_by_offsets(R, d: int) -> list[tuple[str, float]]:
    """Reference: each word of document ``d`` (a maximal run of pieces with the same word span, found from
    the character offsets alone) with the summed relevance of the pieces inside it, in reading order."""
    view = _word_view(R)
    text = str(R.text.values[d])
    starts, ends = R.coords["start"].values[d], R.coords["end"].values[d]
    vals = R.values[d].astype(float)
    special = R.coords["is_special"].values[d]
    pad = R.coords["is_padding"].values[d]
    spans = [(int(s), int(e)) for s, e, hide in zip(view.coords["start"].values[d], view.coords["end"].values[d],
                                                    view.coords["is_padding"].values[d]) if not hide]
    out, used = [], np.zeros(vals.shape, bool)
    for s, e in spans:
        inside = (starts >= s) & (ends <= e) & ~special & ~pad
        used |= inside
        out.append((text[s:e], float(vals[inside].sum())))
    # every piece of the text is in exactly one word
    assert used[~special & ~pad].all()
    assert sum(len(range(s, e)) for s, e in spans) == len(set().union(*(range(s, e) for s, e in spans)))
    return out


def test_words_of_a_transformer_sum_their_pieces_and_keep_the_ledger(bert_R):
    R = bert_R
    for d in range(R.sizes["document"]):
        ref = _words_by_offsets(R, d)
        view = _word_view(R)
        shown = ~view.coords["is_padding"].values[d]
        assert [str(w) for w in view.coords["word"].values[d][shown]] == [w for w, _ in ref]
        np.testing.assert_allclose(view.values[d][shown], [v for _, v in ref], rtol=1e-5, atol=1e-7)
        assert len(ref) < int((~R.is_padding.values[d]).sum()) - 2  # pieces were joined
        # the ledger of the drawing: words + [CLS]/[SEP] + padding + absorbed = f(x)
        words = sum(v for _, v in ref)
        total = words + R.special_relevance.values[d] + R.padding_relevance.values[d] + R.absorbed.values[d]
        assert total == pytest.approx(float(R.prediction.values[d]), rel=1e-4, abs=1e-5)
        fig = st.plot_document(R, d, max_tokens=10_000)
        # the figure draws these sums: each box's colour is the word's value on the symmetric scale
        limit = symmetric_limit(np.array([v for _, v in ref]))
        cmap = plt.get_cmap(RELEVANCE_CMAP)
        boxes = _boxes(fig)
        assert [t.get_text() for t in boxes] == [w.replace("\n", " ") for w, _ in ref]
        for t, (_, v) in zip(boxes, ref):
            np.testing.assert_allclose(t.get_bbox_patch().get_facecolor(),
                                       cmap(0.5 + 0.5 * float(np.clip(v / limit, -1, 1))), atol=1e-6)
        title = fig.axes[0].get_title(loc="left")
        assert f"words {words:.3g} " in title and f"absorbed {float(R.absorbed.values[d]):.3g}" in title
        assert f"[CLS], [SEP] (not drawn) {float(R.special_relevance.values[d]):.3g}" in title


@settings(max_examples=20, deadline=None)
@given(seed=hst.integers(0, 2**32 - 1), scale=hst.floats(1e-3, 1e3))
def test_any_relevance_is_summed_into_words_without_loss(bert_R, seed, scale):
    values = np.random.default_rng(seed).normal(size=bert_R.shape) * scale
    R = bert_R.copy(data=values.astype(bert_R.dtype))
    view = _word_view(R)
    for d in range(R.sizes["document"]):
        ref = _words_by_offsets(R, d)
        shown = ~view.coords["is_padding"].values[d]
        np.testing.assert_allclose(view.values[d][shown], [v for _, v in ref], rtol=1e-5, atol=1e-6 * scale)
        special = R.values[d][R.coords["is_special"].values[d]].astype(float).sum()
        pad = R.values[d][R.coords["is_padding"].values[d]].astype(float).sum()
        assert view.values[d][shown].astype(float).sum() + special + pad == pytest.approx(
            R.values[d].astype(float).sum(), rel=1e-5, abs=1e-6 * scale)


def test_the_default_draws_words_for_subwords_and_tokens_otherwise(bert_R, cnn, tok, texts):
    assert st.holds_subwords(bert_R)
    assert st.holds_subwords(bert_R.drop_vars(["is_special", "special_relevance"]))  # pieces sharing a word
    pieces = [str(w) for w, hide in zip(bert_R.coords["word"].values[1], bert_R.is_padding.values[1])
              if not hide and w not in ("[CLS]", "[SEP]")]
    words = [w for w, _ in _words_by_offsets(bert_R, 1)]
    drawn = [t.get_text() for t in _boxes(st.plot_document(bert_R, 1, max_tokens=10_000))]
    assert drawn == words != pieces
    as_tokens = [t.get_text() for t in _boxes(st.plot_document(bert_R, 1, max_tokens=10_000, words=False))]
    assert len(as_tokens) == len(pieces) > len(words)

    R = st.explain_documents(cnn, st.Documents(texts, tok))
    assert not st.holds_subwords(R)
    fig = st.plot_document(R, 0)
    tokens = [str(w) for w, hide in zip(R.coords["word"].values[0], R.is_padding.values[0]) if not hide]
    shown = [t.get_text() for t in _boxes(fig)]
    assert [w.lower() for w in shown] == [w.lower() for w in tokens]
    assert fig.axes[1].get_xlabel() == "relevance (units of f(x))"
    # one token per word: words=True draws the same words with the same colours
    as_words = st.plot_document(R, 0, words=True)
    assert [t.get_text() for t in _boxes(as_words)] == shown
    np.testing.assert_allclose([t.get_bbox_patch().get_facecolor() for t in _boxes(as_words)],
                               [t.get_bbox_patch().get_facecolor() for t in _boxes(fig)])


def test_words_with_nothing_between_them_are_drawn_without_a_space(bert_R):
    """Punctuation and contractions ("space,", "I've") are drawn as the text writes them: the next box starts one
    column after the previous word where the text has something between them, right after it where not."""
    view = _word_view(bert_R)
    glued = 0
    for d in range(bert_R.sizes["document"]):
        shown = ~view.coords["is_padding"].values[d]
        starts, ends = view.coords["start"].values[d][shown], view.coords["end"].values[d][shown]
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
        boxes = _boxes(st.plot_document(bert_R, d, max_tokens=10_000))
        assert len(boxes) == len(starts)
        for i in range(len(boxes) - 1):
            (x0, y0), (x1, y1) = boxes[i].get_position(), boxes[i + 1].get_position()
            if y1 != y0:  # the next line
                continue
            touching = ends[i] == starts[i + 1]
            glued += touching
            assert x1 == x0 + len(boxes[i].get_text()) + (0 if touching else 1)
        plt.close("all")
    assert glued > 0  # the posts have punctuation next to words


def test_words_need_the_word_index(bert_R):
    with pytest.raises(st.TextInputError, match="word_index"):
        st.plot_document(bert_R.drop_vars("word_index"), 0, words=True)


def test_the_pipeline_figure_is_plot_document(bert_R):
    from sciexplain_text.domain import _figure_document
    model = SimpleNamespace(class_names=["alt.atheism", "sci.space"])
    bare = bert_R.drop_vars(["special_relevance", "padding_relevance", "target_name", "predicted_name"])
    fig = _figure_document(bare, SimpleNamespace(extras={}), model, document=1)
    ref = st.plot_document(bert_R, 1)
    assert [t.get_text() for t in _boxes(fig)] == [t.get_text() for t in _boxes(ref)]
    assert fig.axes[0].get_title(loc="left") == ref.axes[0].get_title(loc="left")
    words = [t.get_text() for t in _boxes(_figure_document(bare, SimpleNamespace(extras={}), model, document=1,
                                                             words=False))]
    assert len(words) > len(_boxes(ref))  # words = false: the pieces
