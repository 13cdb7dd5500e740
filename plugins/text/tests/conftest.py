"""Shared fixtures of the text plugin's tests: a small vocabulary and untrained models on it."""

from __future__ import annotations

import pytest
import torch

import sciexplain_text as st

TEXTS = [
    "The rocket reached orbit; the moon & the stars.",
    "God is not dead, said the atheist.",
    "NASA's shuttle launch was delayed again.",
    "Faith, belief and the bible: a discussion.",
]


@pytest.fixture(scope="session")
def texts():
    return list(TEXTS)


@pytest.fixture(scope="session")
def tok():
    return st.WordTokenizer.fit(TEXTS)


@pytest.fixture()
def cnn(tok):
    torch.manual_seed(0)
    m = st.TextCNN(len(tok), 2, n_filters=6, window=3, max_length=16)
    m.eval()
    return m


@pytest.fixture()
def lstm(tok):
    torch.manual_seed(0)
    m = st.BiLSTMClassifier(len(tok), 2, hidden=4, max_length=12)
    m.eval()
    return m


@pytest.fixture(scope="session")
def bert_R():
    """The shipped ``newsgroups_bert`` (subword pieces, [CLS]/[SEP]) explained with its default on two
    held-out posts, the first of which it reads only in part (truncated)."""
    pytest.importorskip("transformers")
    import numpy as np
    model, tok = st.load_model("newsgroups_bert")
    corpus = st.load_mini_newsgroups()
    idx = np.asarray(model.training_record["test_indices"])[:2]
    docs = st.Documents([corpus.texts[i] for i in idx], tok, labels=corpus.labels[idx],
                        class_names=corpus.class_names)
    return st.explain_documents(model, docs)
