"""The text domain: entry point, dispatch, removal; BBC model (the demo: test_demo.py)."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest

import sciexplain as sx
import sciexplain_text as st
from sciexplain.plugins import Domain, load_domains


def test_entry_point_and_domain_object(tok, texts):
    eps = [ep for ep in entry_points(group="sciexplain.domains") if ep.name == "text"]
    assert len(eps) == 1 and eps[0].value == "sciexplain_text.domain:DOMAIN"
    dom = load_domains()["text"]
    assert isinstance(dom, Domain) and dom.dims == ("document", "token") and dom.distribution == "sciexplain-text"
    docs = st.Documents(texts, tok)
    assert dom.claims(docs) and not dom.claims(texts) and not dom.claims("a text")
    x, labels = dom.to_tensor(docs)
    assert x.dtype.is_floating_point is False and labels["dims"] == ("document", "token")
    mask = np.zeros(x.shape, dtype=bool)
    mask[:, 0] = True
    assert (dom.removal()(x, mask)[:, 0] == 0).all()
    assert "sciexplain-text" in sx.domains()["text"]


def test_list_of_strings_is_not_claimed(cnn, texts):
    with pytest.raises(sx.InputError):
        sx.explain(cnn, texts)


def test_the_accessor_draws_the_document_view(cnn, tok, texts):
    R = sx.explain(cnn, st.Documents(texts, tok))
    assert R.attrs["domain"] == "text"
    fig = R.relevance.plot(1)  # the text domain's word heatmap of document 1
    shown = " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    words = [w for w in texts[1].split() if w.isalpha()][:3]
    assert all(w.lower() in shown.lower() for w in words), (words, shown[:300])


def test_bbc_model_held_out():
    model, tok = st.load_model("bbc_cnn")
    rec = model.training_record
    assert model.class_names == ["business", "entertainment", "politics", "sports", "tech"]
    b = st.load_bbc_news()
    test = np.asarray(rec["test_indices"])[:120]
    docs = st.Documents([b.texts[i] for i in test], tok, labels=b.labels[test])
    R = sx.explain(model, docs)
    R.relevance.check()
    acc = float((R.predicted.values == docs.labels).mean())
    assert acc >= 0.85  # 5 classes: chance is about 0.23
    assert rec["n_test"] == 448 and rec["test_accuracy"] >= 0.9
