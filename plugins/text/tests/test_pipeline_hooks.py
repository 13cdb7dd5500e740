"""The text domain's pipeline hooks (``sciexplain run FILE.toml``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain_text as st


def test_the_domain_offers_loaders_models_poolings_and_figures():
    assert set(st.DOMAIN.pipeline_loaders()) == {"newsgroups", "bbc"}
    assert set(st.DOMAIN.pipeline_models()) == {"newsgroups_cnn", "newsgroups_lstm", "newsgroups_bert", "bbc_cnn",
                                                "bbc_bert"}
    assert set(st.DOMAIN.pipeline_models()) <= set(st.SHIPPED)
    assert set(st.DOMAIN.pipeline_architectures()) == {"TextCNN", "BiLSTMClassifier", "TransformerClassifier"}
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


def test_bbc_loader_gives_the_held_out_articles_and_a_shipped_subword_vocabulary():
    import json

    from sciexplain_text.models import WEIGHTS_DIR
    loader = st.DOMAIN.pipeline_loaders()["bbc"]
    held_out = json.loads((WEIGHTS_DIR / "bbc_bert.json").read_text())["test_indices"]
    test = loader("test")
    assert test["coords"]["article"][1].tolist() == held_out and len(held_out) == 448
    train = loader("train", categories=["sports"], n=3)
    assert train["y"].tolist() == [3, 3, 3] and not set(train["extras"]["index"].tolist()) & set(held_out)
    corpus = st.load_bbc_news()
    assert train["native"].texts == [corpus.texts[i] for i in train["extras"]["index"]]
    docs = loader("test", n=2, vocabulary="bbc_bert")["native"]
    assert isinstance(docs.tokenizer, st.SubwordTokenizer)
    _, tok = st.load_model("bbc_bert")
    assert torch.equal(docs.ids, st.Documents(corpus.texts[held_out[0]:held_out[0] + 1] + [corpus.texts[held_out[1]]],
                                              tok).ids)
    with pytest.raises(ValueError, match="no vocabulary 'newsgroups_cnn' for the bbc loader"):
        loader("test", vocabulary="newsgroups_cnn")
    with pytest.raises(ValueError, match="448 articles"):
        loader("dev")
