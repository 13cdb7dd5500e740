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
