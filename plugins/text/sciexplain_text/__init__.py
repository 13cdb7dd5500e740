"""sciexplain-text: word-level relevance for document classifiers.

Importing this package is cheap: torch and the data are loaded only when a function needs them.
Names are resolved lazily from the submodules:

* :mod:`~sciexplain_text.tokenize` -- :class:`WordTokenizer`, :class:`CallableTokenizer`, :class:`Token`
* :mod:`~sciexplain_text.documents` -- :class:`Documents`
* :mod:`~sciexplain_text.data` -- :func:`load_mini_newsgroups`, :func:`load_bbc_news`,
  :func:`load_glove`, :func:`strip_headers`, :class:`RestrictedUnpickler`
* :mod:`~sciexplain_text.models` -- :class:`TextCNN`, :class:`BiLSTMClassifier`,
  :func:`glove_embedding`, :func:`load_model`
* :mod:`~sciexplain_text.transformer` -- :class:`TransformerClassifier` (a small BERT from a config)
* :mod:`~sciexplain_text.subword` -- :class:`SubwordTokenizer`, :func:`train_wordpiece` (``tokenizers``)
* :mod:`~sciexplain_text.rollout` -- :func:`attention_rollout`, :func:`rollout_matrix` (a baseline, not a decomposition)
* :mod:`~sciexplain_text.training` -- :func:`train_classifier`, :func:`cross_validate`, :func:`accuracy`
* :mod:`~sciexplain_text.explain` -- :func:`explain_documents`, :func:`group_words`,
  :func:`word_type_relevance`, :func:`top_words`
* :mod:`~sciexplain_text.render` -- :func:`to_html`, :func:`to_latex`, :func:`show`, :class:`TextRelevance`
* :mod:`~sciexplain_text.plots` -- :func:`plot_document`, :func:`plot_methods`, :func:`plot_top_words`,
  :func:`plot_deletion` (each returns a Figure), :func:`holds_subwords`
* :mod:`~sciexplain_text.deletion` -- :func:`word_deletion`, :func:`delete_tokens`
* :mod:`~sciexplain_text.synthetic` -- :func:`planted_keyword_corpus`, :func:`keyword_hit_rate`
* :mod:`~sciexplain_text.shortcut` -- the header shortcut: :func:`headers_kept_corpus`, :func:`header_spans`,
  :func:`header_mask`, :func:`header_share`, :func:`relevance_by_word_type`, :func:`header_clusters`
* :mod:`~sciexplain_text.domain` -- the domain object ``DOMAIN`` registered under ``sciexplain.domains``
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Token": "tokenize", "WordTokenizer": "tokenize", "CallableTokenizer": "tokenize",
    "Documents": "documents", "find_embedding": "documents",
    "Corpus": "data", "load_mini_newsgroups": "data", "load_bbc_news": "data", "load_glove": "data",
    "strip_headers": "data", "RestrictedUnpickler": "data", "restricted_loads": "data",
    "TextCNN": "models", "BiLSTMClassifier": "models", "glove_embedding": "models", "load_model": "models",
    "save_model": "models", "model_info": "models", "ShippedModel": "models", "SHIPPED": "models",
    "TransformerClassifier": "transformer", "SubwordTokenizer": "subword", "train_wordpiece": "subword",
    "attention_rollout": "rollout", "rollout_matrix": "rollout",
    "train_classifier": "training", "cross_validate": "training", "accuracy": "training",
    "predict": "training", "stratified_folds": "training",
    "explain_documents": "explain", "group_words": "explain", "word_type_relevance": "explain",
    "top_words": "explain", "prepare_documents": "explain", "methods_for": "explain",
    "to_html": "render", "to_latex": "render", "show": "render", "TextRelevance": "render", "latex_escape": "render",
    "plot_document": "plots", "plot_methods": "plots", "plot_top_words": "plots", "plot_deletion": "plots",
    "holds_subwords": "plots",
    "word_deletion": "deletion", "delete_tokens": "deletion", "deletion_order": "deletion",
    "planted_keyword_corpus": "synthetic", "keyword_hit_rate": "synthetic", "PlantedCorpus": "synthetic",
    "TextDomain": "domain", "DOMAIN": "domain",
    "HEADER_MODEL": "shortcut", "header_spans": "shortcut", "header_block": "shortcut", "with_header": "shortcut",
    "headers_kept_corpus": "shortcut", "header_mask": "shortcut", "header_share": "shortcut",
    "relevance_by_word_type": "shortcut", "header_vocabulary": "shortcut", "header_clusters": "shortcut",
    "train_header_cnn": "shortcut", "draw_word_prototype": "shortcut",
    "run_demo": "demo",
    "TextInputError": "errors", "VocabularyError": "errors", "UnsafePickleError": "errors",
    "MissingDataError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sciexplain_text' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
