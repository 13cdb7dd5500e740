"""Word deletion and the planted-keyword ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain_text as st


def test_delete_tokens_and_order(tok, cnn, texts):
    docs = st.Documents(texts, tok, pad_to=16)
    R = st.explain_documents(cnn, docs, 0)
    order = st.deletion_order(R, "most")
    pad = R.coords["is_padding"].values
    for d in range(len(docs)):
        kept = order[d][order[d] >= 0]
        assert len(kept) == (~pad[d]).sum() and not pad[d][kept].any()
        assert np.all(np.diff(R.values[d][kept]) <= 0)
    mask = np.zeros(docs.ids.shape, dtype=bool)
    mask[0, :2] = True
    out = st.delete_tokens(docs.ids, mask)
    assert (out[0, :2] == 0).all() and torch.equal(out[1:], docs.ids[1:]) and docs.ids[0, 0] != 0
    with pytest.raises(st.TextInputError, match="order"):
        st.deletion_order(R, "best")


def test_deletion_needs_a_zero_padding_row(tok, cnn, texts):
    docs = st.Documents(texts, tok, pad_to=16)
    R = st.explain_documents(cnn, docs, 0)
    with torch.no_grad():
        cnn.embedding.weight[0] = 1.0
    with pytest.raises(st.TextInputError, match="padding embedding"):
        st.word_deletion(cnn, docs.ids, np.zeros(4, int), {"lrp": R})


def test_lrp_deletion_hurts_the_shipped_cnn_faster_than_random():
    model, tok = st.load_model("newsgroups_cnn")
    c = st.load_mini_newsgroups()
    test = np.asarray(model.training_record["test_indices"])
    docs = st.Documents([c.texts[i] for i in test], tok, labels=c.labels[test])
    docs = st.prepare_documents(docs, model)
    pred = st.predict(model, docs.ids).argmax(1)
    ok = docs.subset(np.flatnonzero(pred == docs.labels))
    exp = {"lrp": st.explain_documents(model, ok, ok.labels.tolist())}
    exp["random"] = exp["lrp"]
    C = st.word_deletion(model, ok.ids, ok.labels, exp, k_max=5)
    assert C.sel({"method": "lrp", "k": 0}) == 1.0 and C.sel({"method": "random", "k": 0}) == 1.0
    # measured with benchmarks/bench_text_deletion.py: LRP deletion falls far below random
    assert float(C.sel({"method": "lrp", "k": 5})) < float(C.sel({"method": "random", "k": 5})) - 0.2


def test_planted_keywords_corpus_is_what_it_says():
    pc = st.planted_keyword_corpus(40, 20, 3, seed=2)
    assert len(pc.corpus) == 40 and np.bincount(pc.corpus.labels).tolist() == [20, 20]
    assert not set(pc.keywords[0]) & set(pc.keywords[1])
    for text, y, pos in zip(pc.corpus.texts, pc.corpus.labels, pc.planted):
        words = text.split()
        assert len(words) == 20 and all(words[p] in pc.keywords[y] for p in pos)
        others = [w for i, w in enumerate(words) if i not in set(pos)]
        assert not set(others) & set(pc.keywords[0] + pc.keywords[1])


def test_hit_rate_scores_exact_and_wrong_maps(tok):
    pc = st.planted_keyword_corpus(6, 12, 2, seed=0)
    t = st.WordTokenizer.fit(pc.corpus.texts)
    docs = st.Documents(pc.corpus.texts, t, pad_to=14)
    m = st.TextCNN(len(t), 2, n_filters=3, max_length=14).eval()
    R = st.explain_documents(m, docs, 0)
    truth = R.copy(data=np.zeros(R.shape))
    for d, pos in enumerate(pc.planted):
        truth.values[d, pos] = 1.0
    assert st.keyword_hit_rate(truth, pc.planted) == 1.0
    assert st.keyword_hit_rate(truth.copy(data=-truth.values), pc.planted) == 0.0


@pytest.mark.slow
def test_lrp_finds_planted_keywords():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "planted_keywords", Path(__file__).resolve().parents[1] / "scripts" / "planted_keywords.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.run(n_docs=240, length=30, n_planted=3, seed=1, arch="cnn", epochs=12)
    assert out["test_accuracy"] >= 0.9
    # measured: this setting gives LRP 0.667 (seed 1) and 0.679 (seed 2), sensitivity 0.48, random 0.11; the
    # full setting (plugins/text/scripts/planted_keywords.py, 600 documents) LRP 0.70, random 0.07. With this setting
    # LRP must still find well over half of the planted keywords and beat random and sensitivity
    assert out["lrp"] >= 0.55
    assert out["lrp"] > out["random"] + 0.3 and out["lrp"] >= out["sensitivity"]
