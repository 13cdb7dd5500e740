"""Explanations of token ids: against an independent epsilon-LRP reference, ledger, pooling, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st_h

import sciexplain as sx
import sciexplain_text as st


def _reference_epsilon_lrp(model: st.TextCNN, ids: np.ndarray, target: int, eps: float = 0.01) -> np.ndarray:
    """Epsilon-LRP of a TextCNN written out in numpy from the formulas (Bach et al. 2015)."""
    E = model.embedding.weight.detach().double().numpy()
    W = model.conv.weight.detach().double().numpy()  # (F, D, K)
    b = model.conv.bias.detach().double().numpy()
    Wo = model.out.weight.detach().double().numpy()
    bo = model.out.bias.detach().double().numpy()
    F_, D, K = W.shape
    e = E[ids]  # (T, D)
    T = len(ids)
    z = np.array([[np.sum(e[t:t + K].T * W[f]) + b[f] for t in range(T - K + 1)] for f in range(F_)])
    a = np.maximum(z, 0)
    tstar = a.argmax(1)
    m = a.max(1)
    y = Wo @ m + bo
    stab = lambda v: v + eps * np.where(v >= 0, 1.0, -1.0)  # noqa: E731
    R_m = m * Wo[target] * y[target] / stab(y[target])
    R_e = np.zeros((T, D))
    for f in range(F_):
        t = tstar[f]
        contrib = e[t:t + K].T * W[f]  # (D, K)
        R_e[t:t + K] += (contrib * R_m[f] / stab(z[f, t])).T
    return R_e.sum(1)


def test_cnn_epsilon_lrp_matches_the_formula(tok, cnn, texts):
    docs = st.Documents(texts, tok, pad_to=16)
    R = st.explain_documents(cnn, docs, target=1)
    R.relevance.check()
    for d in range(len(docs)):
        ref = _reference_epsilon_lrp(cnn, docs.ids[d].numpy(), 1)
        np.testing.assert_allclose(R.values[d], ref, rtol=1e-4, atol=1e-6)


@given(st_h.lists(st_h.sampled_from(["the", "rocket", "moon", "god", "faith", "zzz", "launch", "bible"]),
                  min_size=1, max_size=14), st_h.integers(0, 1))
@settings(max_examples=25, deadline=None)
def test_ledger_balances_for_any_document(tok, words, target):
    torch.manual_seed(1)
    m = st.TextCNN(len(tok), 2, n_filters=5, window=2, max_length=16).eval()
    docs = st.Documents([" ".join(words)], tok, allow_all_unknown=True)
    R = st.explain_documents(m, docs, target)
    R.relevance.check()
    pad = R.coords["is_padding"].values
    assert R.padding_relevance.values[0] == pytest.approx(R.values[pad].sum(), abs=1e-6)
    G = st.group_words(R)
    G.relevance.check()
    assert G.sum().item() == pytest.approx(R.sum().item(), abs=1e-5)


def test_dispatch_target_names_and_model_untouched(tok, cnn, texts):
    cnn.class_names = ["atheism", "space"]
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    docs = st.Documents(texts, tok)
    R = sx.explain(cnn, docs, target="space")
    assert R.dims == ("document", "token") and R.shape == (4, 16)  # padded to the model's max_length
    assert (R.target.values == 1).all() and (R.target_name.values == "space").all()
    assert set(R.coords) >= {"word", "start", "end", "word_index", "is_padding", "is_oov", "text", "prediction",
                             "absorbed", "predicted", "padding_relevance"}
    R.relevance.check()
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    with pytest.raises(st.TextInputError, match="unknown class"):
        sx.explain(cnn, docs, target="politics")
    with pytest.raises(st.TextInputError, match="dims"):
        sx.explain(cnn, docs, dims=("a", "b"))


def test_netcdf_roundtrip(tmp_path, tok, cnn, texts):
    R = st.explain_documents(cnn, st.Documents(texts, tok))
    path = tmp_path / "r.nc"
    R.to_netcdf(path)
    back = xr.open_dataarray(path)
    np.testing.assert_allclose(back.values, R.values)
    assert back.word.values[0, 1] == "rocket" and back.text.values[1] == texts[1]


def test_sensitivity_and_gradient_x_input_on_token_ids(tok, cnn, texts):
    docs = st.Documents(texts, tok)
    docs16 = st.Documents(texts, tok, pad_to=16)
    S = st.explain_documents(cnn, docs, 0, method="sensitivity")
    G = st.explain_documents(cnn, docs, 0, method="gradient_x_input")
    e = cnn.embedding(docs16.ids).detach().requires_grad_(True)
    h = cnn.relu(cnn.conv(e.transpose(1, 2)))
    y = cnn.out(cnn.pool(h).flatten(1))[:, 0].sum()
    (g,) = torch.autograd.grad(y, e)
    np.testing.assert_allclose(S.values, (g ** 2).sum(-1).numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(G.values, (g * e).sum(-1).detach().numpy(), rtol=1e-5, atol=1e-7)
    assert (S.values >= 0).all() and S.attrs["decomposes"] == "squared gradient norm"


def test_word_type_relevance_conserves(tok, cnn, texts):
    docs = st.Documents(texts * 2, tok, labels=[0, 1, 0, 1] * 2, class_names=["a", "b"])
    R = st.explain_documents(cnn, docs)
    S = st.word_type_relevance(R, by="target", include_padding=True)
    total = (R.prediction - R.absorbed).values
    for k, cls in enumerate(S.coords["class"].values):
        sel = R.target.values == np.unique(R.target.values)[k]
        assert S.sel({"class": cls}).sum().item() == pytest.approx(total[sel].sum(), rel=1e-4, abs=1e-5)
    the = S.sel(word_type="the")
    assert the.coords["count"].sum().item() == sum(t.lower().split().count("the") for t in texts * 2)
    top = st.top_words(S, 0, 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


def test_bilstm_explained_through_recurrent_unrolling(tok, lstm, texts):
    docs = st.Documents(texts, tok)
    R = sx.explain(lstm, docs)
    R.relevance.check()
    assert R.shape == (4, 12)
    # padding is read by the LSTM: its relevance is reported, not dropped
    pad = R.coords["is_padding"].values
    np.testing.assert_allclose(R.padding_relevance.values, np.where(pad, R.values, 0).sum(1), atol=1e-6)


def test_frozen_embedding_gradient_methods_and_flag_restored(tok, cnn, texts):
    cnn.embedding.weight.requires_grad_(False)
    S = st.explain_documents(cnn, st.Documents(texts, tok), 0, method="sensitivity")
    assert (S.values >= 0).all() and S.values.sum() > 0
    assert not cnn.embedding.weight.requires_grad


def test_core_group_by_word_index_equals_group_words(tok, cnn):
    """``R.relevance.group("token", by="word_index")`` (the core's per-document grouping) gives the
    same word relevances as ``group_words`` and keeps each document's ledger."""
    docs = st.Documents(["The rocket's launch-window opened; faith in it didn't waver.",
                         "god and the bible", "moon"], tok, allow_all_unknown=True)
    R = st.explain_documents(cnn, docs)
    G = R.relevance.group("token", by="word_index", name="word")
    G.relevance.check()
    W = st.group_words(R)
    idx = R.coords["word_index"].values
    for d in range(R.sizes["document"]):
        for k in range(int(idx[d].max()) + 1):
            assert G.sel(word=k).values[d] == pytest.approx(W.isel(word=k).values[d], abs=1e-6)
    assert G.sum("word").values == pytest.approx(R.sum("token").values, abs=1e-6)
