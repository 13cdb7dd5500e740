"""Attention rollout (Abnar & Zuidema 2020) for the plugin's transformer: a baseline, not a decomposition.

Rollout follows attention back from the ``[CLS]`` token to the input tokens: in every layer the
heads' attention matrices are averaged, the identity is added for the residual connection and
the rows are normalised to sum to 1, ``A_l = norm(mean_h(attention_l) + I)``; the layers are
chained by the matrix product ``A_L ... A_2 A_1``, and the row of ``[CLS]`` (the token the
classifier reads) gives one weight per input token. The weights are non-negative, sum to 1 per
document and do not depend on the class explained: rollout says where the model looked, not
what spoke for a class. Its results say ``decomposes="none"`` (``absorbed`` is NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .documents import Documents
from .errors import TextInputError

__all__ = ["rollout_matrix", "attention_rollout"]

_NOTE = ("attention rollout (Abnar & Zuidema 2020): per layer the heads' attention averaged, the identity added "
         "(residual) and rows normalised to 1; product over layers (last layer on the left); the row of [CLS]. "
         "Non-negative, sums to 1 per document, the same for every class: not a decomposition of f(x)")


def rollout_matrix(attentions: Sequence[torch.Tensor] | Sequence[np.ndarray]) -> np.ndarray:
    """The rolled-out attention ``A_L ... A_1`` from per-layer attention weights.

    Parameters
    ----------
    attentions : sequence of arrays of shape (batch, heads, token, token)
        The attention probabilities of each layer, first layer first (row = query, column = key),
        as ``transformers`` returns them with ``output_attentions=True``.

    Returns
    -------
    numpy.ndarray of shape (batch, token, token), float64
        Row ``i`` holds how much of token ``i``'s final state comes from each input token; every
        row sums to 1.
    """
    if len(attentions) == 0:
        raise TextInputError("attention rollout needs the attention weights of at least one layer")
    out = None
    for layer, a in enumerate(attentions):
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise TextInputError(f"layer {layer}: attention weights must be (batch, heads, token, token), "
                                 f"got shape {a.shape}")
        mixed = a.astype(np.float64).mean(axis=1) + np.eye(a.shape[-1])
        mixed /= mixed.sum(axis=-1, keepdims=True)
        out = mixed if out is None else mixed @ out
    return out


def _encoder(model: nn.Module) -> nn.Module:
    bert = getattr(model, "bert", None)
    if bert is None or not hasattr(bert, "bert"):
        raise TextInputError(f"attention rollout needs the plugin's TransformerClassifier (a model with a "
                             f"transformers BERT as .bert), got {type(model).__name__}")
    return bert


def attention_rollout(model: nn.Module, docs: Documents, target: Any = None) -> xr.DataArray:
    """Attention rollout of the ``[CLS]`` token over the tokens of ``docs``, labelled as the text results are.

    Parameters
    ----------
    model : TransformerClassifier
        The plugin's transformer (``transformers`` BERT inside; eager or sdpa attention).
    docs : Documents
        Tokenized with the model's subword tokenizer (``[CLS]`` first); padded to ``max_length``.
    target : int, str, sequence or None
        The class recorded as ``target`` (with its logit as ``prediction``); rollout itself is the
        same for every class. None: the predicted class.

    Returns
    -------
    xarray.DataArray
        Dims ``("document", "token")``, the coords of :func:`~sciexplain_text.explain_documents`;
        ``method="attention_rollout"``, ``decomposes="none"``, ``absorbed`` NaN. Values are >= 0 and
        sum to 1 per document; padding gets exactly 0 (it is never attended to).
    """
    from sciexplain.result import build_result

    from .explain import DIMS, _resolve_target, class_names_of, label_documents, prepare_documents
    bert = _encoder(model)
    docs = prepare_documents(docs, model)
    cls_id = docs.tokenizer.index.get("[CLS]") if hasattr(docs.tokenizer, "index") else None
    if cls_id is None or not bool((docs.ids[:, 0] == cls_id).all()):
        raise TextInputError("attention rollout reads the row of [CLS]: tokenize the documents with the model's "
                             "subword tokenizer, which puts [CLS] first")
    names = class_names_of(model, docs)
    target = _resolve_target(target, names, len(docs))
    mask = torch.from_numpy((~docs.is_padding).astype(np.int64))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = bert(input_ids=docs.ids, attention_mask=mask, output_attentions=True)
    finally:
        model.train(was)
    if not out.attentions:
        raise TextInputError("the model returned no attention weights (output_attentions=True gave none)")
    logits = out.logits.double().numpy()
    predicted = logits.argmax(1)
    if target is None:
        t = predicted
    else:
        t = np.broadcast_to(np.asarray(target, dtype=np.int64), (len(docs),)).copy()
        if ((t < 0) | (t >= logits.shape[1])).any():
            raise TextInputError(f"target {target!r} is not a class index of a {logits.shape[1]}-class model")
    values = rollout_matrix(out.attentions)[:, 0, :]
    R = build_result(values, dims=DIMS, coords=docs.coords(), prediction=logits[np.arange(len(t)), t], target=t,
                     absorbed=np.full(len(t), np.nan), method="attention_rollout", rules="none", decomposes="none",
                     attrs={"rollout": _NOTE, "layers": len(out.attentions)})
    R = label_documents(R.assign_coords(predicted=("document", predicted)), names)
    R.attrs.update(docs.attrs())
    R.attrs["model"] = type(model).__name__
    R.attrs["domain"] = "text"
    return R
