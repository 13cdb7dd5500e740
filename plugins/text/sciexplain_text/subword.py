"""A WordPiece subword tokenizer trained locally with the ``tokenizers`` library, for transformers.

:class:`SubwordTokenizer` wraps a ``tokenizers.Tokenizer`` so that
``Documents(texts, tokenizer)`` works as for the word tokenizer: every subword token keeps its
character offsets into the original text and the index of the word it belongs to (the
pre-tokenizer's words), and the special tokens ``[CLS]`` (before) and ``[SEP]`` (after) are
added by :class:`~sciexplain_text.Documents` and recorded as special (no offsets, ``is_special``).
The vocabulary starts with ``<pad>`` (id 0) and ``<unk>`` (id 1) like the word tokenizer's. It is
saved in the ``tokenizers`` library's own JSON format (no pickle).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from sciexplain.errors import MissingDependencyError

from .errors import TextInputError, VocabularyError
from .tokenize import PAD, UNK, Token, Tokenizer

__all__ = ["SubwordTokenizer", "train_wordpiece", "CLS", "SEP"]

CLS = "[CLS]"
SEP = "[SEP]"
_SPECIALS = [PAD, UNK, CLS, SEP]


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - installed with the plugin's [transformer] extra
        raise MissingDependencyError("the subword tokenizer needs the 'tokenizers' package: pip install "
                                     "'sciexplain-text[transformer]' (or tokenizers)") from None
    return tokenizers


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2,
                    lowercase: bool = True) -> SubwordTokenizer:
    """Train a BERT-style WordPiece tokenizer on ``texts`` (training texts only), reproducibly.

    Normalisation and pre-tokenization are the ``tokenizers`` library's BERT ones (lower-casing
    and accent stripping with ``lowercase=True``; words split at white space and punctuation).
    The vocabulary is learned as the library's WordPiece trainer learns it, by merging the most
    frequent adjacent pair of pieces (continuation pieces start with ``##``), starting from the
    characters, until ``vocab_size`` entries or no pair occurs ``min_frequency`` times; ties go
    to the alphabetically first pair. (The library's own trainer breaks ties differently from
    run to run, so the same texts gave different vocabularies.) Tokenization is the library's
    WordPiece model: greedy longest match within each word. Ids 0-3 are ``<pad>``, ``<unk>``,
    ``[CLS]``, ``[SEP]``; the others follow in the order learned.
    """
    tk = _require_tokenizers()
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad or not texts:
        raise TextInputError(f"train_wordpiece needs a non-empty list of str; items {bad[:5]} are not str")
    if vocab_size < len(_SPECIALS) + 1:
        raise TextInputError(f"vocab_size must be at least {len(_SPECIALS) + 1}, got {vocab_size}")
    normalizer = tk.normalizers.BertNormalizer(lowercase=lowercase)
    pre = tk.pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = list(_SPECIALS) + sorted({c if i == 0 else "##" + c for w in counts for i, c in enumerate(w)})
    vocab += _merges(counts, vocab_size - len(vocab), min_frequency, set(vocab))
    model = tk.Tokenizer(tk.models.WordPiece({w: i for i, w in enumerate(vocab[:max(vocab_size, len(_SPECIALS))])},
                                             unk_token=UNK, max_input_chars_per_word=100))
    model.normalizer = normalizer
    model.pre_tokenizer = pre
    model.decoder = tk.decoders.WordPiece()
    return SubwordTokenizer(model)


def _merges(counts: Counter[str], budget: int, min_frequency: int, known: set[str]) -> list[str]:
    """New pieces from merging the most frequent adjacent pairs (BPE on word counts, ties alphabetical)."""
    splits = {w: [c if i == 0 else "##" + c for i, c in enumerate(w)] for w in counts}
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    for w, s in splits.items():
        for pair in zip(s, s[1:]):
            pairs[pair] += counts[w]
            where[pair].add(w)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    new: list[str] = []
    while len(new) < budget and heap:
        n, pair = heapq.heappop(heap)
        if -n != pairs.get(pair, 0) or -n <= 0:
            continue  # stale entry: the count changed since it was pushed
        if -n < min_frequency:
            break
        a, b = pair
        merged = a + b[2:]
        if merged not in known:
            known.add(merged)
            new.append(merged)
        changed: set[tuple[str, str]] = set()
        for w in sorted(where.pop(pair, ())):
            s, cnt = splits[w], counts[w]
            for p in zip(s, s[1:]):
                pairs[p] -= cnt
                changed.add(p)
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
            for p in zip(out, out[1:]):
                pairs[p] += cnt
                where[p].add(w)
                changed.add(p)
        pairs.pop(pair, None)
        for p in changed:
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return new


class SubwordTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (WordPiece or BPE) as a plugin tokenizer with offsets.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        Its vocabulary must give ``<pad>`` id 0 and ``<unk>`` id 1, and contain ``[CLS]`` and
        ``[SEP]`` (as :func:`train_wordpiece` does).

    Attributes
    ----------
    prefix, suffix : tuple of str
        Special tokens :class:`~sciexplain_text.Documents` puts before and after each document.
    """

    prefix = (CLS,)
    suffix = (SEP,)

    def __init__(self, tokenizer) -> None:
        _require_tokenizers()
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise VocabularyError("the tokenizer's vocabulary must use the ids 0..n-1 exactly once")
        super().__init__([w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])])
        missing = [s for s in (CLS, SEP) if s not in self.index]
        if missing:
            raise VocabularyError(f"the tokenizer's vocabulary lacks the special tokens {missing}; train it with "
                                  "train_wordpiece (or add them as special tokens)")
        self.tokenizer = tokenizer

    def tokenize(self, text: str) -> list[Token]:
        """The subword tokens of ``text`` (without specials) with offsets into ``text`` and word indices."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        out = []
        for tok, tid, (start, end), word in zip(enc.tokens, enc.ids, enc.offsets, enc.word_ids):
            out.append(Token(tok, int(start), int(end), -1 if word is None else int(word), id=int(tid)))
        return out

    def special(self, name: str) -> Token:
        """The special token ``name`` as it stands in a document: no offsets, no word (index -1)."""
        return Token(name, -1, -1, -1, id=self.index[name], special=True)

    def to_json(self, path: str | Path) -> None:
        """Write the tokenizer in the ``tokenizers`` library's JSON format."""
        Path(path).write_text(self.tokenizer.to_str(pretty=False), encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> SubwordTokenizer:
        """Read a tokenizer written by :meth:`to_json` (or any ``tokenizers`` JSON file)."""
        tk = _require_tokenizers()
        try:
            return cls(tk.Tokenizer.from_str(Path(path).read_text(encoding="utf-8")))
        except Exception as exc:  # the library raises its own Exception type on a malformed file
            if isinstance(exc, VocabularyError):
                raise
            raise VocabularyError(f"{path} is not a tokenizers JSON file: {exc}") from None

    def describe(self) -> str:
        model = type(self.tokenizer.model).__name__
        return f"SubwordTokenizer({model}, tokenizers library), {len(self)} vocabulary entries"
