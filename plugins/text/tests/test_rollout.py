"""Attention rollout (Abnar & Zuidema 2020): a hand-computed example, and the attention recomputed from the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

import sciexplain_text as st

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from sciexplain_text.rollout import attention_rollout, rollout_matrix  # noqa: E402
from sciexplain_text.subword import train_wordpiece  # noqa: E402
from sciexplain_text.transformer import TransformerClassifier  # noqa: E402

TEXTS = ["The rocket reached orbit and the moon.", "God is not dead, said the atheist.", "Launch delayed."]


def test_rollout_matrix_by_hand():
    # layer 1: heads [[.5 .5 0] ...] and [[.5 0 .5] ...] average to [.5 .25 .25] in the [CLS] row;
    # + I and normalised: [.75 .125 .125]; other rows stay on themselves.
    # layer 2: both heads send [CLS] to token 1: + I, normalised: [.5 .5 0].
    # rollout = A2 @ A1: [CLS] row = .5 * [.75 .125 .125] + .5 * [0 1 0] = [.375 .5625 .0625]
    eye = np.eye(3)
    h1a, h1b = eye.copy(), eye.copy()
    h1a[0] = [0.5, 0.5, 0.0]
    h1b[0] = [0.5, 0.0, 0.5]
    h2 = eye.copy()
    h2[0] = [0.0, 1.0, 0.0]
    layers = [np.stack([h1a, h1b])[None], np.stack([h2, h2])[None]]
    R = rollout_matrix(layers)
    np.testing.assert_allclose(R[0, 0], [0.375, 0.5625, 0.0625], rtol=0, atol=1e-15)
    np.testing.assert_allclose(R[0, 1:], eye[1:], atol=1e-15)
    # the order of the product matters: A1 @ A2 would give [.375 .5 .125]
    assert not np.allclose(rollout_matrix(layers[::-1])[0, 0], R[0, 0])
    with pytest.raises(st.TextInputError, match="at least one layer"):
        rollout_matrix([])
    with pytest.raises(st.TextInputError, match="batch, heads, token, token"):
        rollout_matrix([np.ones((2, 3, 3))])


@settings(max_examples=25, deadline=None)
@given(hst.integers(1, 4), hst.integers(1, 3), hst.integers(2, 6), hst.integers(0, 2 ** 31 - 1))
def test_rollout_rows_are_distributions(layers, heads, tokens, seed):
    rng = np.random.default_rng(seed)
    att = [rng.dirichlet(np.ones(tokens), size=(2, heads, tokens)) for _ in range(layers)]
    R = rollout_matrix(att)
    assert R.shape == (2, tokens, tokens) and (R >= 0).all()
    np.testing.assert_allclose(R.sum(-1), 1.0, rtol=1e-12)
    # one layer by the formula written out entry by entry
    one = rollout_matrix(att[:1])
    for b in range(2):
        for i in range(tokens):
            row = [np.mean([att[0][b, h, i, j] for h in range(heads)]) + (i == j) for j in range(tokens)]
            np.testing.assert_allclose(one[b, i], np.asarray(row) / sum(row), rtol=1e-12)


def _attention_by_hand(model, ids):
    """Each layer's attention probabilities recomputed from its query/key weights and the layer inputs."""
    bert = model.bert.bert
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=(ids != 0).long(), output_hidden_states=True).hidden_states
    out = []
    for layer, h in zip(bert.encoder.layer, hidden[:-1]):
        att = layer.attention.self
        h = h.double().numpy()
        q = h @ att.query.weight.detach().double().numpy().T + att.query.bias.detach().double().numpy()
        k = h @ att.key.weight.detach().double().numpy().T + att.key.bias.detach().double().numpy()
        n_heads, d = att.num_attention_heads, att.attention_head_size
        probs = np.zeros((ids.shape[0], n_heads, ids.shape[1], ids.shape[1]))
        for b in range(ids.shape[0]):
            keep = ids[b].numpy() != 0
            for hd in range(n_heads):
                qs, ks = q[b, :, hd * d:(hd + 1) * d], k[b, :, hd * d:(hd + 1) * d]
                s = qs @ ks.T / np.sqrt(d)
                s[:, ~keep] = -np.inf
                e = np.exp(s - s.max(1, keepdims=True))
                probs[b, hd] = e / e.sum(1, keepdims=True)
        out.append(probs)
    return out


def test_attention_rollout_on_a_tiny_transformer():
    tok = train_wordpiece(TEXTS * 2, vocab_size=80, min_frequency=1)
    torch.manual_seed(3)
    model = TransformerClassifier(len(tok), 2, hidden=8, layers=2, heads=2, intermediate=16, max_length=16).eval()
    model.class_names = ["a", "b"]
    docs = st.Documents(TEXTS, tok)
    R = attention_rollout(model, docs, target="b")
    ids = st.prepare_documents(docs, model).ids
    # independent reference: attention from the weights, rollout written out as loops
    ref = np.zeros(ids.shape)
    att = _attention_by_hand(model, ids)
    for b in range(ids.shape[0]):
        acc = np.eye(ids.shape[1])
        for a in att:
            mixed = a[b].mean(0) + np.eye(ids.shape[1])
            mixed = mixed / mixed.sum(1, keepdims=True)
            acc = mixed @ acc
        ref[b] = acc[0]
    np.testing.assert_allclose(R.values, ref, rtol=1e-5, atol=1e-7)
    assert R.dims == ("document", "token") and R.attrs["decomposes"] == "none"
    assert R.attrs["method"] == "attention_rollout"
    np.testing.assert_allclose(R.sum("token").values, 1.0, rtol=1e-12)
    pad = R.coords["is_padding"].values
    assert pad.any() and (R.values[pad] == 0).all()
    assert np.isnan(R.coords["absorbed"].values).all()
    with torch.no_grad():
        logits = model(ids)
    np.testing.assert_allclose(R.coords["prediction"].values, logits[:, 1].numpy(), rtol=1e-5)
    assert (R.coords["target_name"].values == "b").all()
    np.testing.assert_allclose(attention_rollout(model, docs, target=0).values, R.values)  # class-independent
    W = st.group_words(R)  # words and [CLS]/[SEP] entries, same totals
    np.testing.assert_allclose(W.sum("word").values, 1.0, rtol=1e-12)
    with pytest.raises(st.TextInputError, match="TransformerClassifier"):
        attention_rollout(torch.nn.Linear(2, 2), docs)
    with pytest.raises(st.TextInputError, match="unknown class"):
        attention_rollout(model, docs, target="c")
