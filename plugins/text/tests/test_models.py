"""Shipped weights (npz + json, no pickle), their recorded held-out accuracy, seeded training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import sciexplain_text as st
from sciexplain_text.models import WEIGHTS_DIR


@pytest.mark.parametrize("name", ["newsgroups_cnn", "newsgroups_lstm"])
def test_shipped_newsgroups_models_reproduce_their_held_out_accuracy(name):
    model, tok = st.load_model(name)
    rec = model.training_record
    c = st.load_mini_newsgroups()
    test = np.asarray(rec["test_indices"])
    assert len(test) == 40 and len(set(test)) == 40
    docs = st.Documents([c.texts[i] for i in test], tok, model.max_length, pad_to=model.max_length)
    acc = st.accuracy(model, docs.ids, c.labels[test])
    assert acc == pytest.approx(rec["test_accuracy"], abs=1e-4)
    assert acc >= 0.8  # chance is 0.5
    assert 0.8 <= rec["cv5_accuracy"] <= 1 and len(rec["cv5_fold_accuracy"]) == 5
    # the vocabulary was fitted on training posts only: some held-out words are unknown
    assert docs.is_oov.any()


def test_damaged_weights_are_refused(tmp_path):
    for f in WEIGHTS_DIR.glob("newsgroups_cnn*"):
        shutil.copy(f, tmp_path / f.name)
    raw = bytearray((tmp_path / "newsgroups_cnn.npz").read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / "newsgroups_cnn.npz").write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="sha256"):
        st.load_model("newsgroups_cnn", tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped models"):
        st.load_model("nothing", tmp_path)


def test_save_load_roundtrip_and_seeded_training(tmp_path, tok, texts):
    def train(seed):
        torch.manual_seed(seed)
        m = st.TextCNN(len(tok), 2, n_filters=4, window=2, max_length=12)
        ids = st.Documents(texts, tok, pad_to=12).ids
        r = st.train_classifier(m, ids, np.array([1, 0, 1, 0]), val=(ids, np.array([1, 0, 1, 0])), epochs=6,
                                lr=0.05, batch_size=2, patience=2, seed=seed)
        return m, r
    a, ra = train(3)
    b, _ = train(3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    losses = [h["val_loss"] for h in ra.history]
    assert ra.best_epoch == int(np.argmin(losses)) + 1  # the best epoch's weights are restored
    a.class_names = ["x", "y"]
    st.save_model(a, tok, "tiny", {"class_names": ["x", "y"]}, tmp_path)
    rec = json.loads((tmp_path / "tiny.json").read_text())
    assert rec["model"] == "TextCNN" and len(rec["sha256"]) == 64
    back, tok2 = st.load_model("tiny", tmp_path)
    assert tok2.vocabulary == tok.vocabulary
    ids = st.Documents(texts, tok, pad_to=12).ids
    np.testing.assert_allclose(st.predict(back, ids), st.predict(a, ids), rtol=1e-6)
    with np.load(tmp_path / "tiny.npz", allow_pickle=False) as z:  # plain arrays, no pickle needed
        assert "conv.weight" in z.files


def test_glove_embedding_rows():
    emb = st.glove_embedding(["<pad>", "<unk>", "space", "zzqxnotaword"], freeze=True)
    g = st.load_glove()
    np.testing.assert_allclose(emb.weight[2].detach().numpy(), g.vector("space"))
    assert not emb.weight[0].any() and emb.weight[3].abs().sum() > 0 and not emb.weight.requires_grad


def test_stratified_folds_partition():
    y = np.array([0] * 10 + [1] * 7)
    folds = st.stratified_folds(y, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(17))
    assert all(abs((y[f] == 0).sum() - 2) <= 1 for f in folds)
