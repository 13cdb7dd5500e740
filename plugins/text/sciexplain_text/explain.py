"""Explain document classifiers word by word, and summarise relevance over a corpus.

``explain_documents(model, docs)`` runs the core on the ``(document, token)`` id tensor: the
embedding lookup is explained by summing relevance over the embedding dimensions, so every
token gets one number and the ledger still balances (relevance + absorbed = f(x) per document).
Padding tokens carry the relevance the model gives them (``is_padding`` marks them; the per
document total is the ``padding_relevance`` coord): nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from sciexplain.rules import Epsilon

from .documents import Documents
from .errors import TextInputError
from .tokenize import PAD

__all__ = ["DIMS", "DEFAULT_PRESET", "prepare_documents", "explain_documents", "group_words",
           "word_type_relevance", "top_words", "class_names_of", "label_documents"]

DIMS = ("document", "token")
#: Epsilon(0.01) on every layer with weights (Arras et al. 2017 explain text CNNs with epsilon-LRP) and
#: Epsilon(0.1) on sums: an LSTM's cell state c = f * c_prev + i * g is a sum whose two terms can nearly
#: cancel, and the unstabilised proportional split then blows up (measured on the shipped BiLSTM: one
#: held-out post with summed |R| = 82734 for f(x) = 2.17, and a ledger residual of 1.5e-3 from float
#: cancellation; with Epsilon(0.1) on sums |R| sums to 3.5 and the ledger balances)
DEFAULT_PRESET = {"base": "epsilon", "op:add": Epsilon(0.1)}


def prepare_documents(docs: Documents, model: nn.Module) -> Documents:
    """Check ``docs`` against ``model`` and pad/truncate them to the model's ``max_length``.

    A model with a ``max_length`` attribute reads exactly that many tokens; longer documents
    are truncated (recorded in ``truncated``) unless the documents were built with
    ``truncation="error"``, which raises.
    """
    if not isinstance(docs, Documents):
        raise TextInputError(f"expected sciexplain_text.Documents, got {type(docs).__name__}; build them with "
                             "Documents(texts, tokenizer)")
    docs.check_model(model)
    length = getattr(model, "max_length", None)
    if length is None or docs.ids.shape[1] == length:
        return docs
    longest = max(len(t) for t in docs.tokens)
    if longest > length and docs.truncation == "error":
        raise TextInputError(f"a document has {longest} tokens but the model reads max_length={length}; "
                             "shorten it or build the Documents with truncation='truncate'")
    cap = length if docs.max_length is None else min(docs.max_length, length)
    out = Documents(docs.texts, docs.tokenizer, cap, truncation="truncate", pad_to=length, labels=docs.labels,
                    class_names=docs.class_names, allow_all_unknown=True)
    return out


def class_names_of(model: nn.Module, docs: Documents | None = None) -> list[str] | None:
    """Class names from the model (``model.class_names``) or the documents."""
    names = getattr(model, "class_names", None)
    if names is None and docs is not None:
        names = docs.class_names
    return None if names is None else [str(n) for n in names]


def explain_documents(model: nn.Module, docs: Documents, target: Any = None, *, method: str = "lrp",
                      preset: Any = None, **kwargs: Any) -> xr.DataArray:
    """Explain ``model`` on ``docs``: one relevance per token.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier of token ids ``(document, token)`` with one ``nn.Embedding``.
    docs : Documents
        Tokenized documents; re-padded to ``model.max_length`` when the model has one.
    target : int, str, sequence or None
        Class index or class name (per batch or per document); None explains the prediction.
    method : str
        Any method of :func:`sciexplain.explain` that works on token ids (``"lrp"``,
        ``"sensitivity"``, ``"gradient_x_input"``).
    preset
        LRP preset; default :data:`DEFAULT_PRESET`.
    **kwargs
        Passed on to :class:`sciexplain.Explainer` / ``explain`` (``at``, ``through``, options).

    Returns
    -------
    xarray.DataArray
        Dims ``("document", "token")``; coords ``word``, ``start``, ``end``, ``word_index``,
        ``is_padding``, ``is_oov``, ``vocab_entry`` per token; ``text``, ``prediction``,
        ``target``, ``target_name``, ``predicted``, ``absorbed``, ``padding_relevance``,
        ``truncated``, ``n_tokens`` (and ``label`` when known) per document.
    """
    import sciexplain as sx
    docs = prepare_documents(docs, model)
    names = class_names_of(model, docs)
    target = _resolve_target(target, names, len(docs))
    emb = docs.check_model(model)
    frozen = not emb.weight.requires_grad
    try:
        if frozen and method != "lrp":
            # the core's gradient methods differentiate at the embedding's output, which needs a
            # graph there; a frozen embedding gets one for the call and is frozen again after it
            emb.weight.requires_grad_(True)
        if getattr(model, "takes_attention_mask", False):
            R = _explain_masked(model, docs, target, method, preset, kwargs)
        else:
            R = sx.explain(model, docs.ids, target, method=method,
                           preset=DEFAULT_PRESET if preset is None else preset, dims=DIMS, coords=docs.coords(),
                           **kwargs)
    finally:
        if frozen:
            emb.weight.requires_grad_(False)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            predicted = model(docs.ids).argmax(1).numpy()
    finally:
        model.train(was)
    R = label_documents(R.assign_coords(predicted=("document", predicted)), names)
    R.attrs.update(docs.attrs())
    R.attrs["model"] = type(model).__name__
    R.attrs["domain"] = "text"
    return R


def _explain_masked(model: nn.Module, docs: Documents, target: Any, method: str, preset: Any,
                    kwargs: dict) -> xr.DataArray:
    """A transformer (``model.takes_attention_mask``): LRP of ``{"input_ids", "attention_mask"}`` with the
    token ids explained and the mask a constant; other methods on the ids (the model masks padding itself)."""
    import sciexplain as sx
    if preset is None:
        from .transformer import DEFAULT_TRANSFORMER_PRESET as preset
    if method != "lrp":
        return sx.explain(model, docs.ids, target, method=method, preset=preset, dims=DIMS, coords=docs.coords(),
                          **kwargs)
    mask = torch.from_numpy((~docs.is_padding).astype(np.int64))
    ds = sx.explain(model, {"input_ids": docs.ids, "attention_mask": mask}, target, method=method, preset=preset,
                    inputs="input_ids", dims={"input_ids": DIMS}, coords={"input_ids": docs.coords()}, **kwargs)
    R = ds["input_ids"]
    R.attrs = {**ds.attrs, **R.attrs, "attention_mask": "from the documents' padding (1 = token, 0 = padding); "
               "a constant of the model"}
    return R


def label_documents(R: xr.DataArray, names: Sequence[str] | None) -> xr.DataArray:
    """Add the per-document labels of a text result: ``padding_relevance`` (the relevance of the
    padding tokens, summed), and with class ``names`` ``target_name``, ``predicted_name`` (when
    ``predicted`` is a coord) and ``attrs["class_names"]``.

    Used by :func:`explain_documents` and by the pipeline's poolings and figures, whose relevance
    comes from :func:`sciexplain.explain_dataset` on the token ids.
    """
    pad = np.where(R.coords["is_padding"].values, R.values, 0.0).sum(axis=1)
    R = R.assign_coords(padding_relevance=("document", pad))
    if "is_special" in R.coords:  # [CLS] / [SEP] of a subword tokenizer
        special = np.where(R.coords["is_special"].values, R.values, 0.0).sum(axis=1)
        R = R.assign_coords(special_relevance=("document", special))
    if names is not None:
        names = [str(n) for n in names]
        t = R.coords["target"].values.astype(int)
        R = R.assign_coords(target_name=("document", np.asarray([names[i] for i in t], dtype=str)))
        if "predicted" in R.coords:
            predicted = R.coords["predicted"].values.astype(int)
            R = R.assign_coords(predicted_name=("document", np.asarray([names[i] for i in predicted], dtype=str)))
        R.attrs["class_names"] = ", ".join(names)
    return R


def _resolve_target(target: Any, names: list[str] | None, n: int) -> Any:
    def one(t: Any) -> Any:
        if isinstance(t, str):
            if names is None or t not in names:
                raise TextInputError(f"unknown class name {t!r}; classes are {names}")
            return names.index(t)
        return t
    if isinstance(target, str):
        return one(target)
    if isinstance(target, (list, tuple)):
        return [one(t) for t in target]
    return target


def _batch_coords(R: xr.DataArray) -> dict[str, Any]:
    return {k: v.variable for k, v in R.coords.items() if v.dims == ("document",)}


def group_words(R: xr.DataArray) -> xr.DataArray:
    """Sum token relevance into words (subwords -> words); the sums keep the ledger.

    Returns dims ``("document", "word")`` with one entry per word of the longest document plus
    a final entry ``"<pad>"`` holding each document's padding relevance, so that the total per
    document is unchanged. Special tokens of a subword tokenizer (``[CLS]``, ``[SEP]``) get one
    entry each, before ``"<pad>"`` (coord ``is_special``). Coords: ``word_text`` (the word as
    written, from the original text), ``word_start``, ``word_end``, ``is_empty`` (slots beyond a
    document's last word).
    """
    if tuple(R.dims) != DIMS or "word_index" not in R.coords:
        raise TextInputError(f"group_words needs a text result with dims {DIMS}, got {R.dims}")
    idx = R.coords["word_index"].values
    n_words = int(idx.max()) + 1 if idx.size else 0
    n = R.sizes["document"]
    special = R.coords["is_special"].values if "is_special" in R.coords else np.zeros(idx.shape, dtype=bool)
    token_text = R.coords["word"].values
    special_names = list(dict.fromkeys(token_text[special].tolist()))
    width = n_words + len(special_names) + 1
    out = np.zeros((n, width), dtype=np.float64)
    text = np.full((n, width), "", dtype=object)
    start = np.full((n, width), -1, dtype=np.int64)
    end = np.full((n, width), -1, dtype=np.int64)
    vals = R.values.astype(np.float64)
    starts, ends = R.coords["start"].values, R.coords["end"].values
    texts = R.coords["text"].values
    for d in range(n):
        ok = idx[d] >= 0
        np.add.at(out[d], idx[d][ok], vals[d][ok])
        for k, name in enumerate(special_names):
            out[d, n_words + k] = vals[d][special[d] & (token_text[d] == name)].sum()
        out[d, -1] = vals[d][~ok & ~special[d]].sum()
        for w in np.unique(idx[d][ok]):
            sel = idx[d] == w
            start[d, w], end[d, w] = starts[d][sel].min(), ends[d][sel].max()
            text[d, w] = str(texts[d])[start[d, w]: end[d, w]]
    text[:, -1] = PAD
    for k, name in enumerate(special_names):
        text[:, n_words + k] = name
    empty = start < 0
    empty[:, n_words:] = False
    coords = _batch_coords(R)
    coords.update(word=np.arange(width), word_text=(("document", "word"), text.astype(str)),
                  word_start=(("document", "word"), start), word_end=(("document", "word"), end),
                  is_empty=(("document", "word"), empty))
    if "is_special" in R.coords:
        is_special_word = np.zeros((n, width), dtype=bool)
        is_special_word[:, n_words: n_words + len(special_names)] = True
        coords["is_special"] = (("document", "word"), is_special_word)
    G = xr.DataArray(out.astype(R.dtype), dims=("document", "word"), coords=coords, name=R.name)
    G.attrs = dict(R.attrs)
    entry = "token -> word (sum; last entry <pad> = padding relevance)"
    G.attrs["pooling"] = f"{R.attrs['pooling']}; {entry}" if R.attrs.get("pooling") else entry
    return G


def word_type_relevance(R: xr.DataArray, by: str | None = "target", include_padding: bool = False,
                        normalize_case: bool = True) -> xr.DataArray:
    """Relevance per word type summed over a corpus (Arras et al.'s document summary, by word).

    Each entry is the sum of the relevance of all occurrences of a word type, over the
    documents of one class (``by="target"``: grouped by the explained class, which is what the
    model "uses for" that class; ``by="label"``: by true class; ``by=None``: one corpus row).
    The entries of one row add up to the summed f(x) - absorbed of its documents minus the
    padding relevance (kept as a ``<pad>`` entry with ``include_padding=True``).

    Returns dims ``("class", "word_type")`` with coord ``count`` (occurrences per class and
    type) and per class ``n_documents``, ``prediction`` and ``absorbed`` (summed).
    """
    if tuple(R.dims) != DIMS:
        raise TextInputError(f"word_type_relevance needs a text result with dims {DIMS}, got {R.dims}")
    words = R.coords["vocab_entry"].values if "vocab_entry" in R.coords else R.coords["word"].values
    raw = R.coords["word"].values
    pad = R.coords["is_padding"].values
    keys = np.where(pad, PAD, np.char.lower(raw.astype(str)) if normalize_case else raw.astype(str))
    if not include_padding:
        keep = ~pad
    else:
        keep = np.ones_like(pad)
    del words
    if by is None:
        groups = np.zeros(R.sizes["document"], dtype=int)
        labels = ["all"]
    else:
        if by not in R.coords:
            raise TextInputError(f"by={by!r} is not a per-document coord; use 'target', 'label' or None")
        g = R.coords[by].values
        labels_raw = list(np.unique(g))
        names = R.attrs.get("class_names", "")
        names = [s.strip() for s in names.split(",")] if names else None
        labels = [names[int(v)] if names and by in ("target", "label", "predicted") else str(v) for v in labels_raw]
        groups = np.searchsorted(labels_raw, g)
    types = sorted(set(keys[keep].tolist()))
    col = {w: i for i, w in enumerate(types)}
    out = np.zeros((len(labels), len(types)), dtype=np.float64)
    count = np.zeros((len(labels), len(types)), dtype=np.int64)
    vals = R.values.astype(np.float64)
    for d in range(R.sizes["document"]):
        cols = np.array([col[w] for w in keys[d][keep[d]]], dtype=int)
        np.add.at(out[groups[d]], cols, vals[d][keep[d]])
        np.add.at(count[groups[d]], cols, 1)
    coords: dict[str, Any] = {"class": labels, "word_type": types, "count": (("class", "word_type"), count),
                              "n_documents": ("class", np.bincount(groups, minlength=len(labels)))}
    for name in ("prediction", "absorbed", "padding_relevance"):
        if name in R.coords:
            coords[name] = ("class", np.bincount(groups, weights=R.coords[name].values.astype(float),
                                                 minlength=len(labels)))
    S = xr.DataArray(out, dims=("class", "word_type"), coords=coords, name="relevance")
    S.attrs = {k: v for k, v in R.attrs.items()}
    S.attrs["pooling"] = (f"sum over documents grouped by {by or 'corpus'} and over occurrences of each word type"
                          + ("" if include_padding else "; padding excluded (its total is padding_relevance)"))
    return S


def top_words(S: xr.DataArray, cls: str | int, k: int = 10, min_count: int = 1) -> list[tuple[str, float, int]]:
    """The ``k`` word types with the highest summed relevance for class ``cls`` in ``S``."""
    if isinstance(cls, int) and not isinstance(cls, bool):
        row = S.isel({"class": cls})
    else:
        if cls not in list(S.coords["class"].values):
            raise TextInputError(f"unknown class {cls!r}; classes are {list(S.coords['class'].values)}")
        row = S.sel({"class": cls})
    vals, cnt = row.values, row.coords["count"].values
    order = [i for i in np.argsort(-vals, kind="stable") if cnt[i] >= min_count][:k]
    types = row.coords["word_type"].values
    return [(str(types[i]), float(vals[i]), int(cnt[i])) for i in order]


def methods_for(model: nn.Module, docs: Documents, methods: Sequence[str] = ("sensitivity", "gradient_x_input", "lrp"),
                target: Any = None, presets: Mapping[str, Any] | None = None) -> dict[str, xr.DataArray]:
    """Explain the same documents with several methods (same target for all)."""
    out = {}
    base = explain_documents(model, docs, target)
    t = base.coords["target"].values.tolist()
    for m in methods:
        out[m] = base if m == "lrp" and not presets else explain_documents(
            model, docs, t, method=m, **({"preset": presets[m]} if presets and m in presets else {}))
    return out
