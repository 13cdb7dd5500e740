"""Tokenizers keep offsets; Documents records padding, truncation and unknown words; bad input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_h

import sciexplain_text as st


@given(st_h.text(alphabet=st_h.characters(min_codepoint=32, max_codepoint=126) | st_h.sampled_from(["\n", "é"]), max_size=80))
@settings(max_examples=60, deadline=None)
def test_word_tokens_point_into_the_text(text):
    tok = st.WordTokenizer(["<pad>", "<unk>", "the"])
    toks = tok.tokenize(text)
    for i, t in enumerate(toks):
        assert text[t.start:t.end] == t.text and t.word == i
    assert all(a.end <= b.start for a, b in zip(toks, toks[1:]))


def test_fit_vocabulary_and_lookup():
    tok = st.WordTokenizer.fit(["b a a", "A c"], min_count=2)
    assert tok.vocabulary == ["<pad>", "<unk>", "a"]
    assert tok.lookup("A") == 2 and tok.lookup("zzz") == tok.unk_id == 1


def test_vocabulary_json_roundtrip(tmp_path, tok):
    tok.to_json(tmp_path / "v.json")
    back = st.WordTokenizer.from_json(tmp_path / "v.json")
    assert back.vocabulary == tok.vocabulary and back.pattern == tok.pattern


def test_documents_ids_padding_and_coords(tok):
    docs = st.Documents(["the rocket", "the moon and zzunknown stars"], tok, pad_to=8)
    assert docs.ids.dtype == torch.long and docs.ids.shape == (2, 8)
    assert docs.is_padding[0].tolist() == [False, False] + [True] * 6
    assert docs.is_oov[1].tolist()[3] and docs.ids[1, 3] == tok.unk_id
    c = docs.coords()
    assert c["word"][1][1][1] == "moon" and c["start"][1][1][1] == 4
    assert "padded" in repr(docs)


def test_truncation_recorded_or_error(tok):
    text = "the rocket reached orbit the moon"
    docs = st.Documents([text, "the moon"], tok, max_length=3)
    assert docs.truncated.tolist() == [True, False] and docs.n_tokens.tolist() == [6, 2]
    assert docs.ids.shape == (2, 3)
    with pytest.raises(st.TextInputError, match="max_length"):
        st.Documents([text], tok, max_length=3, truncation="error")


@pytest.mark.parametrize("texts, match", [
    (["the moon", ""], "document 1 has no tokens"),
    (["   ...  "], "no tokens"),
    (["the moon", 3], "must be a str"),
    ([b"bytes"], "must be a str"),
    ([], "no documents"),
    (["zzz qqq"], "no token in the vocabulary"),
])
def test_bad_documents(tok, texts, match):
    with pytest.raises(st.TextInputError, match=match):
        st.Documents(texts, tok)


def test_all_unknown_allowed_when_asked(tok):
    docs = st.Documents(["zzz qqq"], tok, allow_all_unknown=True)
    assert docs.is_oov.all()


def test_callable_tokenizer_subwords_form_words():
    def pieces(text):  # a toy subword tokenizer: split words into chunks of 3 characters
        import re
        for m in re.finditer(r"\w+", text):
            for s in range(m.start(), m.end(), 3):
                yield text[s:min(s + 3, m.end())], s, min(s + 3, m.end())
    vocab = ["<pad>", "<unk>", "unb", "eli", "eva", "ble", "cat"]
    tok = st.CallableTokenizer(pieces, vocab)
    toks = tok.tokenize("unbelievable cat")
    assert [t.text for t in toks] == ["unb", "eli", "eva", "ble", "cat"]
    assert [t.word for t in toks] == [0, 0, 0, 0, 1]
    with pytest.raises(st.TextInputError, match="triples"):
        st.CallableTokenizer(lambda t: ["x"], vocab).tokenize("x")
    with pytest.raises(st.TextInputError, match="offsets"):
        st.CallableTokenizer(lambda t: [("x", 0, 99)], vocab).tokenize("x")


def test_vocabulary_must_fit_the_model(tok, cnn):
    other = st.WordTokenizer.fit(["a b c"])
    docs = st.Documents(["a b"], other)
    with pytest.raises(st.VocabularyError, match="embedding has"):
        st.explain_documents(cnn, docs)
    with pytest.raises(st.VocabularyError, match="PAD|<pad>"):
        st.WordTokenizer(["a", "b"])


def test_subset_keeps_padding_length(tok):
    docs = st.Documents(["the rocket", "the moon and stars", "god"], tok, labels=[0, 1, 0])
    sub = docs.subset([2, 0])
    assert sub.ids.shape[1] == docs.ids.shape[1] and sub.labels.tolist() == [0, 0]
    assert np.array_equal(sub.ids[1].numpy(), docs.ids[0].numpy())
