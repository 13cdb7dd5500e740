"""Tokenizers that keep character offsets, so relevance maps back onto the text as written.

* :class:`WordTokenizer` -- a regex word tokenizer with a vocabulary fitted on training texts.
* :class:`CallableTokenizer` -- wraps any callable returning ``(token, start, end)`` triples
  (a subword tokenizer, spaCy, ...) and a vocabulary.

Both map a text to :class:`Token` objects (string, character offsets, the index of the word it
belongs to) and tokens to integer ids; id 0 is padding and id 1 is the unknown token.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import TextInputError, VocabularyError

__all__ = ["Token", "Tokenizer", "WordTokenizer", "CallableTokenizer", "PAD", "UNK"]

PAD = "<pad>"
UNK = "<unk>"


@dataclass(frozen=True)
class Token:
    """One token: its string, ``text[start:end]`` in the original text, and its word's index.

    ``id`` is the vocabulary id when the tokenizer knows it (subword tokenizers; otherwise it is
    looked up from ``text``); ``special`` marks tokens such as ``[CLS]`` that stand for no text
    (offsets -1, word -1).
    """

    text: str
    start: int
    end: int
    word: int
    id: int | None = None
    special: bool = False


class Tokenizer:
    """Base: a vocabulary (``vocabulary[id]``) with padding id 0 and unknown id 1."""

    vocabulary: list[str]

    def __init__(self, vocabulary: Sequence[str]) -> None:
        vocabulary = list(vocabulary)
        if len(vocabulary) < 2 or vocabulary[0] != PAD or vocabulary[1] != UNK:
            raise VocabularyError(f"a vocabulary starts with {PAD!r} (id 0) and {UNK!r} (id 1), got "
                                  f"{vocabulary[:2]}; build it with WordTokenizer.fit or pass the special "
                                  "tokens first")
        if len(set(vocabulary)) != len(vocabulary):
            dup = [w for w, c in Counter(vocabulary).items() if c > 1][:5]
            raise VocabularyError(f"the vocabulary has duplicate entries, e.g. {dup}")
        self.vocabulary = vocabulary
        self.index = {w: i for i, w in enumerate(vocabulary)}

    pad_id = 0
    unk_id = 1

    def __len__(self) -> int:
        return len(self.vocabulary)

    def tokenize(self, text: str) -> list[Token]:  # pragma: no cover - abstract
        raise NotImplementedError

    def lookup(self, token: str) -> int:
        """The id of a token string (the unknown id if it is not in the vocabulary)."""
        return self.index.get(self.normalize(token), self.unk_id)

    def normalize(self, token: str) -> str:
        """How a token string is looked up in the vocabulary (identity here)."""
        return token

    def describe(self) -> str:
        return f"{type(self).__name__} with {len(self)} entries"


class WordTokenizer(Tokenizer):
    """Regex word tokenizer with a vocabulary, lower-casing by default.

    Parameters
    ----------
    vocabulary : sequence of str
        ``[PAD, UNK, word, ...]``; build one from training texts with :meth:`fit`.
    pattern : str
        Regular expression of one token (default: letters/digits with an inner apostrophe).
    lowercase : bool
        Look words up lower-cased (GloVe's vocabulary is lower-case).
    """

    DEFAULT_PATTERN = r"[A-Za-z0-9]+(?:'[A-Za-z]+)?"

    def __init__(self, vocabulary: Sequence[str], pattern: str = DEFAULT_PATTERN, lowercase: bool = True) -> None:
        super().__init__(vocabulary)
        self.pattern = pattern
        self.lowercase = bool(lowercase)
        self._regex = re.compile(pattern)

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None,
            pattern: str = DEFAULT_PATTERN, lowercase: bool = True) -> WordTokenizer:
        """Build the vocabulary from training texts.

        Parameters
        ----------
        texts : iterable of str
            Training texts only (fitting on test texts leaks what the test set contains).
        min_count : int
            Keep words seen at least this often.
        max_size : int, optional
            Keep at most this many words (the most frequent; ties broken alphabetically).
        """
        if min_count < 1:
            raise TextInputError(f"min_count must be >= 1, got {min_count}")
        regex = re.compile(pattern)
        counts: Counter[str] = Counter()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TextInputError(f"text {i} is {type(text).__name__}, not str")
            counts.update(m.group().lower() if lowercase else m.group() for m in regex.finditer(text))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        if not words:
            raise TextInputError("no word occurs min_count times in the training texts; lower min_count")
        return cls([PAD, UNK, *words], pattern=pattern, lowercase=lowercase)

    def normalize(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def tokenize(self, text: str) -> list[Token]:
        """Tokens of ``text`` with their character offsets; every token is its own word."""
        return [Token(m.group(), m.start(), m.end(), i) for i, m in enumerate(self._regex.finditer(text))]

    def to_json(self, path: str | Path) -> None:
        """Write the vocabulary and settings as JSON (read back with :meth:`from_json`)."""
        Path(path).write_text(json.dumps({"tokenizer": "WordTokenizer", "pattern": self.pattern,
                                          "lowercase": self.lowercase, "vocabulary": self.vocabulary},
                                         ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> WordTokenizer:
        """Read a vocabulary written by :meth:`to_json`."""
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        if spec.get("tokenizer") != "WordTokenizer":
            raise VocabularyError(f"{path} is not a WordTokenizer vocabulary")
        return cls(spec["vocabulary"], pattern=spec["pattern"], lowercase=spec["lowercase"])

    def describe(self) -> str:
        return (f"WordTokenizer(pattern={self.pattern!r}, lowercase={self.lowercase}), "
                f"{len(self)} vocabulary entries")


class CallableTokenizer(Tokenizer):
    """Wrap any callable ``text -> [(token, start, end), ...]`` (e.g. a subword tokenizer).

    Tokens whose characters touch (``end`` of one equals ``start`` of the next) belong to the
    same word, so ``un`` ``##believ`` ``##able`` are one word and pool back together.

    Parameters
    ----------
    func : callable
        Returns the tokens of a text with character offsets into it, in order.
    vocabulary : sequence of str or mapping str -> id
        ``[PAD, UNK, ...]`` or a mapping whose ids are 0..n-1 with PAD = 0 and UNK = 1.
    name : str
        Recorded in the results' attrs.
    """

    def __init__(self, func: Callable[[str], Iterable[tuple[str, int, int]]],
                 vocabulary: Sequence[str] | Mapping[str, int], name: str | None = None) -> None:
        if not callable(func):
            raise TextInputError(f"func must be callable, got {type(func).__name__}")
        if isinstance(vocabulary, Mapping):
            ids = sorted(vocabulary.values())
            if ids != list(range(len(ids))):
                raise VocabularyError("a vocabulary mapping must use the ids 0..n-1 exactly once")
            vocabulary = [w for w, _ in sorted(vocabulary.items(), key=lambda kv: kv[1])]
        super().__init__(vocabulary)
        self.func = func
        self.name = name or getattr(func, "__name__", type(func).__name__)

    def tokenize(self, text: str) -> list[Token]:
        out: list[Token] = []
        word, last_end = -1, None
        for k, item in enumerate(self.func(text)):
            try:
                tok, start, end = item
                start, end = int(start), int(end)
            except (TypeError, ValueError):
                raise TextInputError(f"tokenizer {self.name} returned {item!r} for token {k}; it must return "
                                     "(token, start, end) triples with character offsets") from None
            if not isinstance(tok, str) or not (0 <= start <= end <= len(text)) or \
                    (last_end is not None and start < out[-1].start):
                raise TextInputError(f"tokenizer {self.name} returned {item!r}: offsets must lie in the text "
                                     f"(length {len(text)}) and come in order")
            if last_end is None or start != last_end:
                word += 1
            out.append(Token(tok, start, end, word))
            last_end = end
        return out

    def describe(self) -> str:
        return f"CallableTokenizer({self.name}), {len(self)} vocabulary entries"


