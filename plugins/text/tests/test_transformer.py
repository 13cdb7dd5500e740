"""The transformer document classifier: WordPiece tokenizer, BERT from a config, AttnLRP through the text domain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
import sciexplain_text as st
from sciexplain.result.ledger import ledger_residual

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from sciexplain_text.subword import SubwordTokenizer, train_wordpiece  # noqa: E402
from sciexplain_text.transformer import TransformerClassifier  # noqa: E402

TEXTS = [
    "The rocket reached orbit; the moon & the stars. Unbelievably, NASA's launch worked.",
    "God is not dead, said the atheist to the believers.",
    "The shuttle launch was delayed again by the weather.",
    "Faith, belief and the bible: a discussion of morality.",
]


@pytest.fixture(scope="module")
def subtok():
    return train_wordpiece(TEXTS * 3, vocab_size=120, min_frequency=1)


@pytest.fixture()
def bert(subtok):
    torch.manual_seed(0)
    m = TransformerClassifier(len(subtok), 2, hidden=16, layers=2, heads=2, intermediate=32, max_length=40).eval()
    m.class_names = ["alt.atheism", "sci.space"]
    return m


def _check_ledger(R):
    pred = R.coords["prediction"].values
    res = ledger_residual(R).values
    assert (np.abs(res) <= 1e-5 * np.maximum(np.abs(pred), 1e-3)).all(), res


def test_subword_tokens_keep_offsets_words_and_specials(subtok):
    docs = st.Documents(TEXTS, subtok)
    for text, toks in zip(TEXTS, docs.tokens):
        assert toks[0].text == "[CLS]" and toks[-1].text == "[SEP]" and toks[0].special and toks[-1].special
        for t in toks[1:-1]:
            assert not t.special and t.start >= 0
            piece = t.text[2:] if t.text.startswith("##") else t.text
            if t.id != subtok.unk_id:  # a known piece is the lower-cased text at its offsets
                assert text[t.start:t.end].lower() == piece
    c = docs.coords()
    assert c["is_special"][1][:, 0].all() and not c["is_special"][1][:, 1].any()
    assert (docs.ids[:, 0] == subtok.index["[CLS]"]).all()
    # [SEP] closes every document, padding (id 0) follows it
    for d, toks in enumerate(docs.tokens):
        assert docs.ids[d, len(toks) - 1] == subtok.index["[SEP]"] and (docs.ids[d, len(toks):] == 0).all()
    # truncation keeps [CLS] and [SEP]
    short = st.Documents(TEXTS, subtok, max_length=6)
    assert short.ids.shape[1] == 6 and short.truncated.all()
    assert (short.ids[:, 0] == subtok.index["[CLS]"]).all() and (short.ids[:, -1] == subtok.index["[SEP]"]).all()
    with pytest.raises(st.TextInputError, match="special tokens"):
        st.Documents(TEXTS, subtok, max_length=2)
    with pytest.raises(st.TextInputError, match="more than max_length"):
        st.Documents(TEXTS, subtok, max_length=6, truncation="error")


def test_tokenizer_json_round_trip(tmp_path, subtok):
    path = tmp_path / "tok.json"
    subtok.to_json(path)
    assert json.loads(path.read_text())["model"]["type"] == "WordPiece"  # the tokenizers library's own format
    back = SubwordTokenizer.from_json(path)
    assert back.vocabulary == subtok.vocabulary
    assert st.Documents(TEXTS, back).ids.tolist() == st.Documents(TEXTS, subtok).ids.tolist()
    path.write_text("{not json")
    with pytest.raises(st.VocabularyError, match="tokenizers JSON"):
        SubwordTokenizer.from_json(path)


def test_explain_documents_attnlrp_ledger_labels_and_padding(subtok, bert):
    docs = st.Documents(TEXTS, subtok, labels=[1, 0, 1, 0])
    R = sx.explain(bert, docs, target="sci.space")
    assert R.dims == ("document", "token") and R.shape == (4, 40)
    assert R.attrs["preset"] == "cp-lrp"  # the transformer's default
    _check_ledger(R)
    R.relevance.check()
    with torch.no_grad():
        logits = bert(st.prepare_documents(docs, bert).ids)
    np.testing.assert_allclose(R.coords["prediction"].values, logits[:, 1].numpy(), rtol=1e-5)
    assert (R.coords["target_name"].values == "sci.space").all()
    pad = R.coords["is_padding"].values
    assert pad.any() and np.all(R.values[pad] == 0)  # masked tokens are never attended to
    spec = R.coords["is_special"].values
    np.testing.assert_allclose(R.coords["special_relevance"].values, np.where(spec, R.values, 0).sum(1))
    assert np.all(R.coords["special_relevance"].values != 0)  # [CLS]/[SEP] carry relevance, reported
    assert list(R.coords["word"].values[0, :2]) == ["[CLS]", R.coords["word"].values[0, 1]]
    assert R.coords["start"].values[0, 0] == -1 and R.coords["word_index"].values[0, 0] == -1


def test_word_pooling_conserves_and_reports_specials(subtok, bert):
    R = sx.explain(bert, st.Documents(TEXTS, subtok))
    W = st.group_words(R)
    np.testing.assert_allclose(W.sum("word").values, R.sum("token").values, rtol=1e-6, atol=1e-9)
    text = W.coords["word_text"].values
    assert list(text[0, -3:]) == ["[CLS]", "[SEP]", "<pad>"]
    assert W.coords["is_special"].values[0, -3:].tolist() == [True, True, False]
    np.testing.assert_allclose(W.values[:, -3] + W.values[:, -2], R.coords["special_relevance"].values, rtol=1e-6)
    # "Unbelievably" is cut into several pieces and pooled back into the word as written
    words = [w for w in text[0] if w]
    assert "Unbelievably" in words and "NASA" in words
    n_pieces = int((R.coords["word_index"].values[0] == list(text[0]).index("Unbelievably")).sum())
    assert n_pieces > 1


def test_attnlrp_selectable_and_methods(subtok, bert):
    docs = st.Documents(TEXTS, subtok)
    A = sx.explain(bert, docs, preset="attnlrp")
    C = sx.explain(bert, docs)  # the default, CP-LRP
    _check_ledger(A)
    assert A.attrs["preset"] == "attnlrp" and C.attrs["preset"] == "cp-lrp"
    assert not np.allclose(A.values, C.values)
    G = st.explain_documents(bert, docs, method="gradient_x_input")
    assert G.shape == A.shape and G.attrs["method"] == "gradient_x_input"
    assert np.all(G.values[G.coords["is_padding"].values] == 0)


def test_html_latex_plot_and_netcdf(tmp_path, subtok, bert):
    R = sx.explain(bert, st.Documents(TEXTS, subtok))
    html = st.to_html(R, 0)
    import re
    shown = re.sub(r"<[^>]+>", "", html.split("</div>", 1)[1])  # the document as shown, tags removed
    assert "[CLS]" not in shown and "moon &amp; the stars" in shown  # specials have no place in the text
    st.to_latex(R, tmp_path / "doc.tex", 0)
    assert r"\&" in (tmp_path / "doc.tex").read_text()
    import matplotlib
    matplotlib.use("Agg")
    fig = st.plot_document(R, 0)
    assert fig.axes
    path = tmp_path / "r.nc"
    R.to_netcdf(path)
    back = xr.open_dataarray(path)
    np.testing.assert_array_equal(back.values, R.values)
    np.testing.assert_array_equal(back.coords["is_special"].values, R.coords["is_special"].values)
    np.testing.assert_allclose(back.coords["absorbed"].values, R.coords["absorbed"].values)
    back.close()


def test_bad_input_errors(subtok, bert, tok, texts):
    with pytest.raises(st.VocabularyError, match="vocabulary entries"):
        sx.explain(bert, st.Documents(texts, tok))  # the word tokenizer's vocabulary does not fit
    with pytest.raises(st.TextInputError, match="unknown class"):
        sx.explain(bert, st.Documents(TEXTS, subtok), target="rec.autos")
    with pytest.raises(st.TextInputError, match="no tokens"):
        st.Documents(["   "], subtok)
    with pytest.raises(st.TextInputError, match="vocab_size"):
        train_wordpiece(TEXTS, vocab_size=3)


def test_save_and_load_round_trip(tmp_path, subtok, bert):
    st.save_model(bert, subtok, "tiny_bert", {"class_names": bert.class_names}, tmp_path)
    back, tok2 = st.load_model("tiny_bert", tmp_path)
    assert isinstance(back, TransformerClassifier) and isinstance(tok2, SubwordTokenizer)
    ids = st.prepare_documents(st.Documents(TEXTS, tok2), back).ids
    np.testing.assert_allclose(st.predict(back, ids), st.predict(bert, ids), rtol=1e-5, atol=1e-6)
    with np.load(tmp_path / "tiny_bert.npz", allow_pickle=False) as z:
        assert "bert.bert.embeddings.word_embeddings.weight" in z.files


def test_shipped_bert_reproduces_its_held_out_accuracy():
    model, tok = st.load_model("newsgroups_bert")
    rec = model.training_record
    assert rec["model"] == "TransformerClassifier"
    c = st.load_mini_newsgroups()
    test = np.asarray(rec["test_indices"])
    cnn_test = json.loads((st.models.WEIGHTS_DIR / "newsgroups_cnn.json").read_text())["test_indices"]
    assert test.tolist() == cnn_test  # the same held-out posts as the shipped CNN and BiLSTM
    docs = st.prepare_documents(st.Documents([c.texts[i] for i in test], tok), model)
    acc = st.accuracy(model, docs.ids, c.labels[test])
    assert acc == pytest.approx(rec["test_accuracy"], abs=1e-4) and acc >= 0.7  # chance is 0.5
    R = sx.explain(model, docs.subset(range(3)))
    _check_ledger(R)


def test_planted_keywords_are_found_by_attnlrp():
    pc = st.planted_keyword_corpus(240, 16, 2, seed=1)
    texts, y = pc.corpus.texts, pc.corpus.labels
    tk = train_wordpiece(texts[:160], vocab_size=600, min_frequency=1)
    torch.manual_seed(0)
    m = TransformerClassifier(len(tk), 2, hidden=32, layers=1, heads=2, intermediate=64, max_length=40, dropout=0.0)
    train = st.prepare_documents(st.Documents(texts[:160], tk), m)
    st.train_classifier(m, train.ids, y[:160], epochs=8, lr=3e-3, seed=0)
    test = st.prepare_documents(st.Documents(texts[160:], tk, labels=y[160:]), m)
    pred = st.predict(m, test.ids).argmax(1)
    assert (pred == y[160:]).mean() >= 0.9
    ok = np.flatnonzero(pred == y[160:])
    W = st.group_words(sx.explain(m, test.subset(ok), target=y[160:][ok].tolist()))
    hits = []
    for row, d in enumerate(ok):
        n_words = int((~W.coords["is_empty"].values[row] & ~W.coords["is_special"].values[row]).sum()) - 1
        top = np.argsort(-W.values[row, :n_words], kind="stable")[:2]
        hits.append(len(set(top.tolist()) & set(pc.planted[160 + d].tolist())) / 2)
    rng = np.random.default_rng(0)
    random_rate = np.mean([len(set(rng.choice(16, 2, replace=False)) & set(p.tolist())) / 2
                           for p in pc.planted[160:]])
    # measured: 0.667 (CP-LRP 0.707, gradient x input 0.453); random order about 0.12
    assert np.mean(hits) >= 0.55 > random_rate + 0.3, (np.mean(hits), random_rate)


def test_shipped_bbc_bert_accuracy_offsets_words_and_ledger():
    model, tok = st.load_model("bbc_bert")
    rec = model.training_record
    assert rec["model"] == "TransformerClassifier" and model.class_names == ["business", "entertainment",
                                                                             "politics", "sports", "tech"]
    c = st.load_bbc_news()
    test = np.asarray(rec["test_indices"])
    cnn_test = json.loads((st.models.WEIGHTS_DIR / "bbc_cnn.json").read_text())["test_indices"]
    assert test.tolist() == cnn_test  # the CNN's held-out articles
    texts = [c.texts[i] for i in test]
    docs = st.Documents(texts, tok, model.max_length, pad_to=model.max_length)  # tokenized once, as the model reads
    acc = st.accuracy(model, docs.ids, c.labels[test])
    assert acc == pytest.approx(rec["test_accuracy"], abs=1e-4) and acc >= 0.85  # chance is about 0.23
    few = st.Documents(texts[:3], tok, labels=c.labels[test[:3]])
    R = sx.explain(model, few, target=c.labels[test[:3]].tolist())
    _check_ledger(R)
    R.relevance.check()
    assert R.dims == ("document", "token") and R.shape == (3, 256) and R.attrs["preset"] == "cp-lrp"
    assert R.coords["truncated"].values.all()  # news articles are longer than 256 pieces: cut, [SEP] kept
    words, starts, ends = (R.coords[k].values for k in ("word", "start", "end"))
    for d, text in enumerate(texts[:3]):
        for w, s, e in zip(words[d], starts[d], ends[d]):
            if s >= 0 and w != "<unk>":  # every piece points at its characters in the article as written
                assert text[s:e].lower() == (w[2:] if w.startswith("##") else w)
    W = st.group_words(R)
    np.testing.assert_allclose(W.sum("word").values, R.sum("token").values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(W.values[:, -3] + W.values[:, -2], R.coords["special_relevance"].values, rtol=1e-6)
    assert np.all(R.coords["padding_relevance"].values == 0)
