"""Document classifiers over GloVe word embeddings, and loading of the shipped weights.

* :class:`TextCNN` -- the seeds' CNN (Arras et al. 2017; Samek et al. 2017 Sec. 5.2): one
  convolution over windows of word vectors, ReLU, max-pooling over time, a linear read-out.
* :class:`BiLSTMClassifier` -- a bidirectional LSTM (Arras et al. 2017, WASSA) over the word
  vectors, max-pooling of its states over time, a linear read-out.

Both read a fixed number of tokens (``max_length``; :class:`~sciexplain_text.Documents` pads
with id 0, whose embedding row is zero), so a document's prediction does not depend on the
other documents of its batch. Weights ship as ``.npz`` (no pickle) with a ``.json`` record.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import VocabularyError
from .tokenize import WordTokenizer
from sciexplain.errors import ComputationError, DataNotFoundError

__all__ = ["TextCNN", "BiLSTMClassifier", "glove_embedding", "load_model", "save_model", "WEIGHTS_DIR",
           "write_npz", "SHIPPED", "ShippedModel", "model_info"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """One entry of the registry of shipped models (:data:`SHIPPED`).

    Attributes
    ----------
    name : str
        The name :func:`load_model` takes.
    architecture : str
        The model class (``TextCNN``, ``BiLSTMClassifier``, ``TransformerClassifier``).
    data : str
        The data set it was trained on.
    tokenizer : str
        ``"word"`` (:class:`~sciexplain_text.WordTokenizer`, GloVe vectors) or ``"subword"``
        (:class:`~sciexplain_text.SubwordTokenizer`, WordPiece trained here).
    description : str
        What the network is, in one sentence.
    held_out_accuracy : float
        Accuracy of the shipped weights on their held-out documents (``test_indices`` of the record;
        ``plugins/text/scripts/train_models.py``).
    n_held_out : int
        How many documents that is (the same held-out documents for the models of one data set).
    cv_accuracy : float or None
        5-fold cross-validated accuracy of the whole recipe on the 200 posts, where measured
        (``train_models.py`` for the CNN and BiLSTM, ``benchmarks/bench_text_transformer.py`` for the
        transformer); None for BBC News, where the held-out split has 448 articles.
    default_preset : str
        What :func:`sciexplain.explain` runs for it by default.
    """

    name: str
    architecture: str
    data: str
    tokenizer: str
    description: str
    held_out_accuracy: float
    n_held_out: int
    cv_accuracy: float | None
    default_preset: str


_WORD_PRESET = "epsilon (Epsilon(0.1) on sums)"

#: the shipped models, by name (accuracies as measured by the scripts named in :class:`ShippedModel`)
SHIPPED: dict[str, ShippedModel] = {m.name: m for m in (
    ShippedModel("newsgroups_cnn", "TextCNN", "20 Newsgroups (200 posts, alt.atheism vs sci.space)", "word",
                 "Conv1d over 3-word windows of frozen GloVe 50d vectors, ReLU, max over time, linear (400 tokens)",
                 0.975, 40, 0.96, _WORD_PRESET),
    ShippedModel("newsgroups_lstm", "BiLSTMClassifier", "20 Newsgroups (200 posts, alt.atheism vs sci.space)", "word",
                 "bidirectional LSTM (2 x 32) over frozen GloVe 50d vectors, max over time, linear (200 tokens)",
                 0.875, 40, 0.92, _WORD_PRESET),
    ShippedModel("bbc_cnn", "TextCNN", "BBC News (2225 articles, 5 classes)", "word",
                 "the newsgroups CNN's architecture for 5 classes (400 tokens)", 0.9531, 448, None, _WORD_PRESET),
    ShippedModel("newsgroups_bert", "TransformerClassifier", "20 Newsgroups (200 posts, alt.atheism vs sci.space)",
                 "subword", "BERT-style encoder from a BertConfig trained from scratch: hidden 64, 2 layers, 2 heads, "
                 "1000 WordPiece entries, 256 tokens", 0.85, 40, 0.80, "cp-lrp"),
    ShippedModel("bbc_bert", "TransformerClassifier", "BBC News (2225 articles, 5 classes)", "subword",
                 "the same BERT-style encoder (hidden 64, 2 layers, 2 heads) with 2000 WordPiece entries, 256 tokens",
                 0.9263, 448, None, "cp-lrp"),
    ShippedModel("newsgroups_cnn_headers", "TextCNN", "20 Newsgroups (200 posts), headers kept on a seeded half",
                 "word", "the newsgroups CNN trained with a header shortcut in its data (for SpRAy and ClArC; see "
                 "sciexplain_text.shortcut); accuracy on its held-out posts with headers stripped",
                 0.975, 40, None, _WORD_PRESET),
)}


def model_info(name: str) -> ShippedModel:
    """The registry entry of a shipped model (architecture, data, measured accuracy, default preset)."""
    if name not in SHIPPED:
        raise DataNotFoundError(f"no shipped text model {name!r}; shipped models are {sorted(SHIPPED)}")
    return SHIPPED[name]


def glove_embedding(vocabulary: Sequence[str], freeze: bool = True, seed: int = 0) -> nn.Embedding:
    """An ``nn.Embedding`` initialised from GloVe 6B 50d for ``vocabulary``.

    Row 0 (padding) is zero and stays zero (``padding_idx=0``); words GloVe does not know get
    small seeded random vectors. ``freeze=True`` keeps the vectors fixed during training.
    """
    from .data import load_glove
    glove = load_glove()
    mat, known = glove.matrix(vocabulary, missing="zero")
    rng = np.random.default_rng(seed)
    unknown = ~known
    unknown[0] = False
    mat[unknown] = rng.normal(0.0, 0.1, (int(unknown.sum()), mat.shape[1])).astype(np.float32)
    mat[0] = 0.0
    emb = nn.Embedding(len(vocabulary), mat.shape[1], padding_idx=0)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(mat))
    emb.weight.requires_grad_(not freeze)
    return emb


class TextCNN(nn.Module):
    """Convolution over word windows, ReLU, max over time, linear read-out.

    Parameters
    ----------
    vocab_size : int
    n_classes : int
    embed_dim : int
        50 for GloVe 6B 50d.
    n_filters : int
    window : int
        Words per convolution window.
    max_length : int
        Tokens the model reads (documents are padded or truncated to it).
    """

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int = 50, n_filters: int = 64,
                 window: int = 3, max_length: int = 600) -> None:
        super().__init__()
        self.max_length = int(max_length)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.conv = nn.Conv1d(embed_dim, n_filters, kernel_size=window)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(n_filters, n_classes)

    def config(self) -> dict[str, int]:
        return {"vocab_size": self.embedding.num_embeddings, "n_classes": self.out.out_features,
                "embed_dim": self.embedding.embedding_dim, "n_filters": self.conv.out_channels,
                "window": self.conv.kernel_size[0], "max_length": self.max_length}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(document, class)`` of token ids ``(document, token)``."""
        e = self.embedding(ids).transpose(1, 2)  # (document, embed_dim, token)
        h = self.relu(self.conv(e))
        return self.out(self.dropout(self.flatten(self.pool(h))))


class BiLSTMClassifier(nn.Module):
    """Bidirectional LSTM over word vectors, max over time of its states, linear read-out.

    (Reading only the final states trained to 0.65 on one fold of the 200 posts: too few
    documents for a 200-step memory; max-pooling the states over time trains well.)

    Parameters
    ----------
    vocab_size, n_classes, embed_dim, max_length
        As for :class:`TextCNN`.
    hidden : int
        Hidden units per direction.
    """

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int = 50, hidden: int = 32,
                 max_length: int = 300) -> None:
        super().__init__()
        self.max_length = int(max_length)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_classes)

    def config(self) -> dict[str, int]:
        return {"vocab_size": self.embedding.num_embeddings, "n_classes": self.out.out_features,
                "embed_dim": self.embedding.embedding_dim, "hidden": self.lstm.hidden_size,
                "max_length": self.max_length}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(document, class)`` of token ids ``(document, token)``."""
        h, _ = self.lstm(self.embedding(ids))  # (document, token, 2 * hidden)
        return self.out(h.amax(dim=1))


_CLASSES = {"TextCNN": TextCNN, "BiLSTMClassifier": BiLSTMClassifier}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as a deflated ``.npz`` whose bytes depend only on the arrays (no pickle, fixed timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model: nn.Module, tokenizer: WordTokenizer, name: str, record: dict[str, Any],
               folder: Path = WEIGHTS_DIR) -> Path:
    """Write ``name.npz`` (weights), ``name.vocab.json`` (tokenizer) and ``name.json`` (record)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    write_npz(path, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    tokenizer.to_json(folder / f"{name}.vocab.json")
    record = {"model": type(model).__name__, "config": model.config(), **record, "sha256": _sha256(path)}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def load_model(name: str = "newsgroups_cnn", folder: str | Path | None = None) -> tuple[nn.Module, WordTokenizer]:
    """Load a shipped (or saved) model and the tokenizer it was trained with.

    Parameters
    ----------
    name : str
        ``"newsgroups_cnn"``, ``"newsgroups_lstm"``, ``"bbc_cnn"``, ``"newsgroups_bert"`` or ``"bbc_bert"``
        (the last two: a :class:`~sciexplain_text.TransformerClassifier` with its subword tokenizer; see
        :data:`SHIPPED` and :func:`model_info`), or the stem of files written by :func:`save_model`.
    folder : path-like, optional
        Default: the package's ``weights/``.

    Returns
    -------
    (model, tokenizer)
        The model in eval mode with ``class_names`` and ``training_record`` attached.
    """
    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    path, rec_path, vocab_path = folder / f"{name}.npz", folder / f"{name}.json", folder / f"{name}.vocab.json"
    for needed in (path, rec_path, vocab_path):
        if not needed.is_file():
            raise DataNotFoundError(f"{needed} not found; shipped models are {sorted(SHIPPED)} (train them with "
                                    "plugins/text/scripts/train_models.py)")
    record = json.loads(rec_path.read_text(encoding="utf-8"))
    digest = _sha256(path)
    if digest != record.get("sha256"):
        raise ComputationError(f"{path} has sha256 {digest}, the record says {record.get('sha256')}: the weights "
                           "were changed or damaged; retrain with plugins/text/scripts/train_models.py")
    if record["model"] == "TransformerClassifier":  # subword tokenizer, transformers imported only here
        from .subword import SubwordTokenizer
        from .transformer import TransformerClassifier
        tokenizer: Any = SubwordTokenizer.from_json(vocab_path)
        model = TransformerClassifier(**record["config"])
    else:
        tokenizer = WordTokenizer.from_json(vocab_path)
        model = _CLASSES[record["model"]](**record["config"])
    with np.load(path, allow_pickle=False) as arrays:
        state = {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
    model.load_state_dict(state, strict=True)
    from .documents import find_embedding
    if find_embedding(model).num_embeddings != len(tokenizer):
        raise VocabularyError(f"{vocab_path} has {len(tokenizer)} entries, the model "
                              f"{find_embedding(model).num_embeddings}")
    model.eval()
    model.class_names = list(record["class_names"])
    model.training_record = record
    return model, tokenizer
