"""A batch of documents as the model sees it: token ids plus everything needed to map back.

``Documents(texts, tokenizer, max_length=None)`` tokenizes, truncates and pads, and records what
it did (truncation per document, out-of-vocabulary tokens, padding), so ``sx.explain(model,
docs)`` dispatches to the text plugin and the relevance comes back labelled by word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import TextInputError, VocabularyError
from .tokenize import PAD, Token, Tokenizer

__all__ = ["Documents", "find_embedding"]


class Documents:
    """Tokenized, padded documents with their labels.

    Parameters
    ----------
    texts : str or sequence of str
        The documents as written (one string = one document).
    tokenizer : Tokenizer
        A :class:`~sciexplain_text.WordTokenizer` or :class:`~sciexplain_text.CallableTokenizer`.
    max_length : int, optional
        Keep at most this many tokens per document.
    truncation : {"truncate", "error"}
        What to do with longer documents: cut them (recorded in ``truncated`` and
        ``n_tokens``) or raise :class:`~sciexplain_text.errors.TextInputError`.
    pad_to : int, optional
        Pad every document to this length (models that read a fixed length, e.g. the
        plugin's :class:`~sciexplain_text.TextCNN`, set it from their ``max_length``); default:
        the longest document of the batch.
    labels : sequence of int, optional
        True classes, kept for evaluation and figures.
    class_names : sequence of str, optional
    allow_all_unknown : bool
        A document none of whose tokens is in the vocabulary is an error by default (the model
        would see only the unknown token); True explains it anyway.

    Attributes
    ----------
    ids : torch.LongTensor
        ``(document, token)``; padding is id 0 at the end.
    tokens : list of list of Token
        The kept tokens of each document.
    n_tokens : numpy.ndarray
        Tokens per document before truncation.
    truncated : numpy.ndarray of bool
    """

    def __init__(self, texts: str | Sequence[str], tokenizer: Tokenizer, max_length: int | None = None,
                 *, truncation: str = "truncate", pad_to: int | None = None,
                 labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                 allow_all_unknown: bool = False) -> None:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (Sequence, np.ndarray)) or isinstance(texts, (bytes, bytearray)):
            raise TextInputError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
        if len(texts) == 0:
            raise TextInputError("no documents given")
        bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TextInputError(f"every document must be a str; items {bad[:5]} are not (decode bytes "
                                 "first, e.g. text.decode('utf-8'))")
        if not isinstance(tokenizer, Tokenizer):
            raise TextInputError(f"tokenizer must be a WordTokenizer or CallableTokenizer, got "
                                 f"{type(tokenizer).__name__}; wrap a callable with CallableTokenizer")
        if truncation not in ("truncate", "error"):
            raise TextInputError(f"truncation must be 'truncate' or 'error', got {truncation!r}")
        for name, v in (("max_length", max_length), ("pad_to", pad_to)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise TextInputError(f"{name} must be a positive int, got {v!r}")
        self.texts = list(texts)
        self.tokenizer = tokenizer
        self.max_length = None if max_length is None else int(max_length)
        self.truncation = truncation
        # special tokens a subword tokenizer puts around each document ([CLS] ... [SEP])
        prefix = [tokenizer.special(s) for s in getattr(tokenizer, "prefix", ())]
        suffix = [tokenizer.special(s) for s in getattr(tokenizer, "suffix", ())]
        n_special = len(prefix) + len(suffix)
        if self.max_length is not None and self.max_length <= n_special:
            raise TextInputError(f"max_length={self.max_length} leaves no room for text beside the tokenizer's "
                                 f"{n_special} special tokens; pass a larger max_length")
        tokens, n_tokens = [], []
        for i, text in enumerate(self.texts):
            toks = tokenizer.tokenize(text)
            if not toks:
                raise TextInputError(f"document {i} has no tokens ({text[:40]!r}); remove empty documents "
                                     "before explaining (there is nothing to attribute relevance to)")
            n_tokens.append(len(toks) + n_special)
            if self.max_length is not None and len(toks) + n_special > self.max_length:
                if truncation == "error":
                    raise TextInputError(f"document {i} has {len(toks) + n_special} tokens, more than max_length="
                                         f"{self.max_length}; shorten it or pass truncation='truncate'")
                toks = toks[: self.max_length - n_special]
            tokens.append(prefix + toks + suffix if n_special else toks)
        self.tokens: list[list[Token]] = tokens
        self.n_tokens = np.asarray(n_tokens, dtype=np.int64)
        self.truncated = np.array([len(t) < n for t, n in zip(tokens, n_tokens)])
        longest = max(len(t) for t in tokens)
        if pad_to is not None and pad_to < longest:
            if self.max_length is None or self.max_length > pad_to:
                raise TextInputError(f"pad_to={pad_to} is shorter than the longest document ({longest} tokens); "
                                     f"pass max_length={pad_to} to truncate")
        length = max(longest, pad_to or 0)
        ids = np.zeros((len(tokens), length), dtype=np.int64)
        for i, toks in enumerate(tokens):
            ids[i, : len(toks)] = [t.id if t.id is not None else tokenizer.lookup(t.text) for t in toks]
        self.ids = torch.from_numpy(ids)
        self.is_padding = np.zeros_like(ids, dtype=bool)
        for i, toks in enumerate(tokens):
            self.is_padding[i, len(toks):] = True
        self.is_oov = (ids == tokenizer.unk_id) & ~self.is_padding
        self.is_special = np.zeros_like(self.is_padding)
        for i, toks in enumerate(tokens):
            self.is_special[i, : len(toks)] = [t.special for t in toks]
        self.has_specials = n_special > 0
        if not allow_all_unknown:
            none_known = [i for i, toks in enumerate(tokens) if (self.is_oov | self.is_special)[i, : len(toks)].all()]
            if none_known:
                raise TextInputError(f"documents {none_known[:10]} have no token in the vocabulary; the model "
                                     "would see only the unknown token. Pass allow_all_unknown=True to explain "
                                     "them anyway")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and self.labels.shape != (len(tokens),):
            raise TextInputError(f"labels has shape {self.labels.shape}, expected ({len(tokens)},)")
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    # -- sequence behaviour ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return (f"<Documents: {len(self)} documents, {self.ids.shape[1]} tokens each (padded), "
                f"{int(self.truncated.sum())} truncated, {int(self.is_oov.sum())} unknown tokens; "
                f"{self.tokenizer.describe()}>")

    def subset(self, index: Sequence[int] | np.ndarray | slice) -> Documents:
        """The documents at ``index``, tokenized the same way (same padding length)."""
        idx = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=int).reshape(-1)
        return Documents([self.texts[i] for i in idx], self.tokenizer, self.max_length,
                         truncation=self.truncation, pad_to=self.ids.shape[1],
                         labels=None if self.labels is None else self.labels[idx],
                         class_names=self.class_names, allow_all_unknown=True)

    __getitem__ = subset

    # -- labels for the relevance contract ---------------------------------------------------
    def coords(self) -> dict[str, Any]:
        """Coordinates of the ``("document", "token")`` result."""
        n, length = self.ids.shape
        word = np.full((n, length), PAD, dtype=object)
        start = np.full((n, length), -1, dtype=np.int64)
        end = np.full((n, length), -1, dtype=np.int64)
        word_index = np.full((n, length), -1, dtype=np.int64)
        for i, toks in enumerate(self.tokens):
            for j, t in enumerate(toks):
                word[i, j], start[i, j], end[i, j], word_index[i, j] = t.text, t.start, t.end, t.word
        vocab = np.asarray(self.tokenizer.vocabulary, dtype=object)[self.ids.numpy()]
        c: dict[str, Any] = {
            "document": np.arange(n),
            "token": np.arange(length),
            "word": (("document", "token"), word.astype(str)),
            "vocab_entry": (("document", "token"), vocab.astype(str)),
            "start": (("document", "token"), start),
            "end": (("document", "token"), end),
            "word_index": (("document", "token"), word_index),
            "is_padding": (("document", "token"), self.is_padding.copy()),
            "is_oov": (("document", "token"), self.is_oov.copy()),
            "text": ("document", np.asarray(self.texts, dtype=object).astype(str)),
            "n_tokens": ("document", self.n_tokens.copy()),
            "truncated": ("document", self.truncated.copy()),
        }
        if self.has_specials:
            c["is_special"] = (("document", "token"), self.is_special.copy())
        if self.labels is not None:
            c["label"] = ("document", self.labels.copy())
        return c

    def attrs(self) -> dict[str, Any]:
        """Settings recorded in the result's attrs (netCDF-serialisable)."""
        return {"tokenizer": self.tokenizer.describe(), "vocabulary_size": len(self.tokenizer),
                "max_length": -1 if self.max_length is None else self.max_length,
                "padded_length": int(self.ids.shape[1]), "truncation": self.truncation,
                "n_truncated": int(self.truncated.sum()), "n_unknown_tokens": int(self.is_oov.sum()),
                "padding": f"id 0 ({PAD}) appended; its relevance is kept in the result (is_padding)",
                "token_relevance": "sum over the embedding dimensions of the token's vector"}

    def check_model(self, model: nn.Module) -> nn.Embedding:
        """The model's embedding of the token ids; errors if the vocabulary does not fit it."""
        emb = find_embedding(model)
        if emb.num_embeddings != len(self.tokenizer):
            raise VocabularyError(f"the model's embedding has {emb.num_embeddings} rows but the tokenizer has "
                                  f"{len(self.tokenizer)} vocabulary entries; use the tokenizer the model was "
                                  "trained with (e.g. sciexplain_text.load_model returns both)")
        return emb


def find_embedding(model: nn.Module) -> nn.Embedding:
    """The (single) ``nn.Embedding`` of a text model, or the one it names as ``model.token_embedding``
    (a transformer also embeds positions)."""
    if not isinstance(model, nn.Module):
        raise TextInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = getattr(model, "token_embedding", None)
    if isinstance(named, nn.Embedding):
        return named
    embs = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if len(embs) != 1:
        raise VocabularyError(f"a text model needs exactly one nn.Embedding of the token ids, found {len(embs)}")
    return embs[0]
