"""A synthetic ground truth beside the real data: documents whose class is decided by planted keywords.

Filler words are drawn from the same distribution for every class (frequent GloVe words), and
each document gets a few keywords of its class at random positions. The keywords are the only
evidence, so a faithful explanation puts them at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .data import Corpus
from .errors import TextInputError

__all__ = ["PlantedCorpus", "planted_keyword_corpus", "keyword_hit_rate"]


@dataclass(frozen=True)
class PlantedCorpus:
    """The corpus, the keywords per class and, per document, the token positions of its keywords."""

    corpus: Corpus
    keywords: list[list[str]]
    planted: list[np.ndarray]


def planted_keyword_corpus(n_docs: int = 400, length: int = 40, n_planted: int = 3, n_classes: int = 2,
                           keywords_per_class: int = 6, seed: int = 0) -> PlantedCorpus:
    """Documents of ``length`` words, ``n_planted`` of them keywords of the document's class.

    Filler words are GloVe's words ranked 200-2200 (alphabetic only); keywords come from ranks
    3000-6000, disjoint from the filler. Labels are balanced.
    """
    if not (0 < n_planted < length) or n_docs < n_classes:
        raise TextInputError("need 0 < n_planted < length and n_docs >= n_classes")
    from .data import load_glove
    words = load_glove().words
    filler = [w for w in words[200:2200] if w.isalpha()]
    pool = [w for w in words[3000:6000] if w.isalpha() and w not in set(filler)]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pool), n_classes * keywords_per_class, replace=False)
    keywords = [[pool[i] for i in chosen[c * keywords_per_class:(c + 1) * keywords_per_class]]
                for c in range(n_classes)]
    labels = np.arange(n_docs) % n_classes
    rng.shuffle(labels)
    texts, planted = [], []
    for c in labels:
        doc = list(rng.choice(filler, length))
        pos = np.sort(rng.choice(length, n_planted, replace=False))
        for p in pos:
            doc[p] = keywords[c][rng.integers(keywords_per_class)]
        texts.append(" ".join(doc))
        planted.append(pos)
    corpus = Corpus(texts, labels.astype(np.int64), [f"class_{c}" for c in range(n_classes)],
                    f"synthetic planted keywords (seed {seed})")
    return PlantedCorpus(corpus, keywords, planted)


def keyword_hit_rate(R: xr.DataArray, planted: list[np.ndarray], documents: np.ndarray | None = None) -> float:
    """Mean fraction of the planted keywords among each document's top-n tokens (n = keywords planted).

    Only the documents in ``documents`` (e.g. the correctly classified ones) count; default all.
    Ties are broken by position (stable sort), so a constant explanation does not score by luck.
    """
    if R.sizes["document"] != len(planted):
        raise TextInputError(f"{R.sizes['document']} explanations but {len(planted)} planted position sets")
    docs = range(len(planted)) if documents is None else np.asarray(documents, dtype=int)
    pad = R.coords["is_padding"].values
    rates = []
    for d in docs:
        pos = np.flatnonzero(~pad[d])
        n = len(planted[d])
        top = pos[np.argsort(-R.values[d, pos], kind="stable")[:n]]
        rates.append(len(set(top.tolist()) & set(np.asarray(planted[d]).tolist())) / n)
    return float(np.mean(rates)) if rates else float("nan")
