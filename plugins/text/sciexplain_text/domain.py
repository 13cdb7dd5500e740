"""The text domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain`` and ``demo`` never
import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .deletion import delete_tokens
from .documents import Documents
from .errors import TextInputError
from .explain import DEFAULT_PRESET, DIMS, explain_documents, prepare_documents

__all__ = ["TextDomain", "DOMAIN"]


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
        20 Newsgroups posts (:func:`~sciexplain_text.load_mini_newsgroups`, headers stripped)."""
        return {"newsgroups": _load_newsgroups}

    def pipeline_models(self) -> dict:
        """The shipped ``newsgroups_cnn`` (TextCNN) and ``newsgroups_lstm`` (BiLSTM), with their
        tokenizer attached as ``model.tokenizer`` (:func:`~sciexplain_text.load_model`)."""
        return {name: _shipped(name) for name in ("newsgroups_cnn", "newsgroups_lstm")}

    def pipeline_architectures(self) -> dict:
        """``TextCNN(vocab_size, n_classes, ...)`` and ``BiLSTMClassifier(vocab_size, n_classes, ...)``
        for state dicts (give the loader ``vocabulary`` then: a state dict carries no tokenizer)."""
        from .models import BiLSTMClassifier, TextCNN
        return {"TextCNN": TextCNN, "BiLSTMClassifier": BiLSTMClassifier}

    def pipeline_poolings(self) -> dict:
        """``words``: tokens summed into words per document (:func:`~sciexplain_text.group_words`);
        ``word_types(by="target", include_padding=False)``: relevance per word type over the corpus
        (:func:`~sciexplain_text.word_type_relevance`)."""
        return {"words": _pool_words, "word_types": _pool_word_types}

    def pipeline_figures(self) -> dict:
        """``document(document=0, max_tokens=160)``: a document as a heatmap of its words
        (:func:`~sciexplain_text.plot_document`); ``top_words(by="target", k=12, min_count=2)``
        (:func:`~sciexplain_text.plot_top_words`)."""
        return {"document": _figure_document, "top_words": _figure_top_words}


#: the 40 posts the shipped newsgroups models never saw in training (both share them)
def _held_out() -> list[int]:
    import json

    from .models import WEIGHTS_DIR
    record = json.loads((WEIGHTS_DIR / "newsgroups_cnn.json").read_text(encoding="utf-8"))
    return [int(i) for i in record["test_indices"]]


def _load_newsgroups(split: str = "test", categories: list | None = None, n: int | None = None,
                     vocabulary: str | None = None) -> dict:
    import numpy as np

    from .data import _package_dir, load_mini_newsgroups
    corpus = load_mini_newsgroups()
    held_out = _held_out()
    if split == "test":
        index = np.asarray(held_out)
    elif split == "train":
        index = np.setdiff1d(np.arange(len(corpus)), held_out)
    elif split == "all":
        index = np.arange(len(corpus))
    else:
        raise TextInputError(f"split must be 'test' (the 40 posts the shipped models held out), 'train' (the other "
                             f"160) or 'all', got {split!r}")
    if categories is not None:
        unknown = [c for c in categories if c not in corpus.class_names]
        if unknown:
            raise TextInputError(f"unknown categories {unknown}; the posts are of {corpus.class_names}")
        keep = {corpus.class_names.index(c) for c in categories}
        index = index[np.isin(corpus.labels[index], sorted(keep))]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TextInputError(f"n must be a positive number of posts, got {n!r}")
        index = index[:n]
    if index.size == 0:
        raise TextInputError(f"no post is left with split={split!r} and categories={categories!r}")
    texts = corpus.subset(index)
    if vocabulary is not None:
        from .models import WEIGHTS_DIR
        from .tokenize import WordTokenizer
        path = WEIGHTS_DIR / f"{vocabulary}.vocab.json"
        if not path.is_file():
            raise TextInputError(f"no vocabulary {vocabulary!r}; shipped ones: newsgroups_cnn, newsgroups_lstm")
        native: Any = Documents(texts.texts, WordTokenizer.from_json(path), labels=texts.labels,
                                class_names=texts.class_names)
    else:
        native = texts  # tokenized by to_tensor with the model's own tokenizer
    source = _package_dir("gensim", "gensim==4.4.0") / "test" / "test_data" / "mini_newsgroup"
    return {"native": native, "y": texts.labels, "files": [source],
            "coords": {"post": ("document", index)},
            "extras": {"class_names": list(corpus.class_names), "index": index}}


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


def _figure_document(R: Any, data: Any, model: Any, document: int = 0, max_tokens: int = 160):
    from .plots import plot_document
    return plot_document(_labelled(R, data, model), document, max_tokens=max_tokens)


def _figure_top_words(R: Any, data: Any, model: Any, by: str | None = "target", k: int = 12, min_count: int = 2):
    from .plots import plot_top_words
    return plot_top_words(_pool_word_types(R, data, model, by=by), k=k, min_count=min_count)


DOMAIN = TextDomain()
