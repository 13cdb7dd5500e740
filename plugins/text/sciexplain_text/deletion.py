"""Word deletion (Arras et al. 2017): delete words in order of relevance and watch the accuracy.

A word is deleted by setting its embedding to zero, as the seeds do: its id is replaced by the
padding id, whose embedding row is zero (checked). On correctly classified documents the
``k`` most relevant words (for the true class) are deleted: a good explanation makes the
accuracy fall fast. On falsely classified documents the ``k`` least relevant words (the
strongest evidence against the true class) are deleted: a good explanation makes it rise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr
from torch import nn

from .documents import find_embedding
from .errors import TextInputError
from .training import predict

__all__ = ["delete_tokens", "word_deletion", "deletion_order"]


def delete_tokens(ids: torch.Tensor, mask: torch.Tensor | np.ndarray, pad_id: int = 0) -> torch.Tensor:
    """A copy of ``ids`` with the tokens where ``mask`` is True replaced by ``pad_id``.

    This is the text domain's removal for :func:`sciexplain.evaluate.perturbation_curve`
    (``removal(x_batch, mask) -> x_batch``).
    """
    mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    if mask.shape != ids.shape:
        raise TextInputError(f"mask of shape {tuple(mask.shape)} does not match ids {tuple(ids.shape)}")
    out = ids.clone()
    out[mask] = pad_id
    return out


def _check_zero_padding(model: nn.Module) -> None:
    emb = find_embedding(model)
    if bool(emb.weight[0].abs().max() > 0):
        raise TextInputError("the model's padding embedding (row 0) is not zero, so replacing a word by padding "
                             "would not delete it; build the embedding with padding_idx=0")


def deletion_order(R: xr.DataArray, order: str, seed: int = 0) -> np.ndarray:
    """Per document, token positions in deletion order (padding never deleted).

    ``order``: ``"most"`` (highest relevance first), ``"least"`` (lowest first) or ``"random"``.
    Returns an int array ``(document, token)`` padded with -1.
    """
    if order not in ("most", "least", "random"):
        raise TextInputError(f"order must be 'most', 'least' or 'random', got {order!r}")
    vals = R.values
    pad = R.coords["is_padding"].values
    rng = np.random.default_rng(seed)
    out = np.full(vals.shape, -1, dtype=np.int64)
    for d in range(vals.shape[0]):
        pos = np.flatnonzero(~pad[d])
        if order == "random":
            pos = rng.permutation(pos)
        else:
            key = -vals[d, pos] if order == "most" else vals[d, pos]
            pos = pos[np.argsort(key, kind="stable")]
        out[d, : len(pos)] = pos
    return out


def word_deletion(model: nn.Module, ids: torch.Tensor, labels: np.ndarray,
                  explanations: Mapping[str, xr.DataArray], *, order: str = "most", k_max: int = 20,
                  seed: int = 0) -> xr.DataArray:
    """Accuracy after deleting ``k = 0..k_max`` words chosen by each explanation.

    Parameters
    ----------
    model : torch.nn.Module
    ids : torch.LongTensor
        ``(document, token)`` ids the explanations were computed on (same padding).
    labels : array of int
        True classes.
    explanations : mapping of name -> DataArray
        Text explanations of the same documents (for the true class). The name ``"random"``
        with any explanation as value uses a seeded random order instead.
    order : {"most", "least"}
        Delete the most relevant words first (correctly classified documents) or the least
        relevant (falsely classified documents).

    Returns
    -------
    xarray.DataArray
        Dims ``(method, k)``: accuracy over the documents.
    """
    _check_zero_padding(model)
    labels = np.asarray(labels)
    rows = []
    for name, R in explanations.items():
        if R.shape != tuple(ids.shape):
            raise TextInputError(f"explanation {name!r} has shape {R.shape}, ids {tuple(ids.shape)}")
        pos = deletion_order(R, "random" if name == "random" else order, seed)
        acc = []
        for k in range(k_max + 1):
            mask = np.zeros(ids.shape, dtype=bool)
            sel = pos[:, :k]
            d_idx = np.repeat(np.arange(ids.shape[0]), sel.shape[1])
            ok = sel.reshape(-1) >= 0
            mask[d_idx[ok], sel.reshape(-1)[ok]] = True
            pred = predict(model, delete_tokens(ids, mask)).argmax(1)
            acc.append(float((pred == labels).mean()))
        rows.append(acc)
    return xr.DataArray(np.asarray(rows), dims=("method", "k"),
                        coords={"method": list(explanations), "k": np.arange(k_max + 1)},
                        attrs={"order": order, "n_documents": int(ids.shape[0]), "seed": seed,
                               "deletion": "embedding set to zero (id replaced by the zero padding row)"},
                        name="accuracy")
