"""The text domain's pipeline hooks (``sciexplain run FILE.toml``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain_text as st


def test_the_domain_offers_loaders_models_poolings_and_figures():
    assert set(st.DOMAIN.pipeline_loaders()) == {"newsgroups"}
    assert set(st.DOMAIN.pipeline_models()) == {"newsgroups_cnn", "newsgroups_lstm"}
    assert set(st.DOMAIN.pipeline_architectures()) == {"TextCNN", "BiLSTMClassifier"}
    assert set(st.DOMAIN.pipeline_poolings()) == {"words", "word_types"}
    assert set(st.DOMAIN.pipeline_figures()) == {"document", "top_words"}


def test_shipped_models_carry_their_tokenizer_and_texts_are_tokenized_with_it():
    model = st.DOMAIN.pipeline_models()["newsgroups_lstm"](seed=0)
    shipped, tok = st.load_model("newsgroups_lstm")
    assert model.tokenizer.vocabulary == tok.vocabulary
    corpus = st.load_mini_newsgroups().subset([3, 4])
    ids, labels = st.DOMAIN.to_tensor(corpus, model)
    docs = st.prepare_documents(st.Documents(corpus.texts, tok), shipped)
    assert torch.equal(ids, docs.ids) and ids.shape[1] == 200
    assert labels["labels"].tolist() == corpus.labels.tolist()
    assert labels["coords"]["label"][1].tolist() == corpus.labels.tolist()


def test_label_documents_adds_class_names_and_padding_relevance(cnn, tok, texts):
    R = st.explain_documents(cnn, st.Documents(texts, tok))
    plain = R.drop_vars(["padding_relevance", "target_name", "predicted_name"], errors="ignore")
    plain.attrs.pop("class_names", None)
    again = st.explain.label_documents(plain, ["a", "b"])
    np.testing.assert_allclose(again.padding_relevance.values,
                               np.where(R.is_padding.values, R.values, 0).sum(1))
    assert again.target_name.values.tolist() == [["a", "b"][t] for t in R.target.values]
    assert again.predicted_name.values.tolist() == [["a", "b"][t] for t in R.predicted.values]
    assert again.attrs["class_names"] == "a, b"
    with pytest.raises(ValueError, match="vocabulary"):
        st.DOMAIN.to_tensor(st.load_mini_newsgroups().subset([0]), cnn)
