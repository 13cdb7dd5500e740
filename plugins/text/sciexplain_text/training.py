"""Seeded training with early stopping and honest held-out scores."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import TextInputError

__all__ = ["TrainResult", "train_classifier", "predict", "accuracy", "stratified_folds", "cross_validate"]


@dataclass
class TrainResult:
    """What training did: epochs run, the chosen epoch and the loss/accuracy history."""

    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def predict(model: nn.Module, ids: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Logits of ``model`` on ``ids`` in eval mode (the model's training flag is restored)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(ids[i: i + batch_size]) for i in range(0, len(ids), batch_size)]).numpy()
    finally:
        model.train(was)


def accuracy(model: nn.Module, ids: torch.Tensor, labels: np.ndarray) -> float:
    """Fraction of documents classified correctly."""
    return float((predict(model, ids).argmax(1) == np.asarray(labels)).mean())


def train_classifier(model: nn.Module, ids: torch.Tensor, labels: np.ndarray, *,
                     val: tuple[torch.Tensor, np.ndarray] | None = None, epochs: int = 40, lr: float = 3e-3,
                     batch_size: int = 16, weight_decay: float = 1e-4, patience: int = 6, seed: int = 0,
                     progress: bool = False) -> TrainResult:
    """Train with Adam on cross-entropy; early stopping on the validation loss.

    With ``val`` the weights of the epoch with the lowest validation loss are restored
    (stopping after ``patience`` epochs without improvement); without it all ``epochs`` run.
    Seeded: the same seed, data and thread count give the same weights.
    """
    labels = np.asarray(labels)
    if len(ids) != len(labels) or len(ids) == 0:
        raise TextInputError(f"{len(ids)} documents but {len(labels)} labels")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    y = torch.as_tensor(labels, dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()
    best, best_loss, best_epoch, waited, history = None, float("inf"), epochs, 0, []
    bar = tqdm(range(epochs), desc="training", disable=not progress)
    epoch = 0
    for epoch in bar:
        model.train()
        order = torch.randperm(len(ids), generator=gen)
        total = 0.0
        for s in range(0, len(ids), batch_size):
            b = order[s: s + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(ids[b]), y[b])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        row = {"epoch": epoch + 1, "train_loss": total / len(ids)}
        if val is not None:
            logits = torch.from_numpy(predict(model, val[0]))
            vl = float(loss_fn(logits, torch.as_tensor(val[1], dtype=torch.long)))
            row.update(val_loss=vl, val_accuracy=float((logits.argmax(1).numpy() == val[1]).mean()))
            if vl < best_loss - 1e-4:
                best_loss, best_epoch, waited = vl, epoch + 1, 0
                best = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        history.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k != "epoch"})
        if val is not None and waited >= patience:
            break
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return TrainResult(best_epoch if val is not None else epochs, epoch + 1, history)


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint test index sets with the classes spread evenly (seeded)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        for j, i in enumerate(idx):
            folds[j % k].append(int(i))
    return [np.sort(np.asarray(f)) for f in folds]


def cross_validate(fit: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
                   labels: np.ndarray, k: int = 5, seed: int = 0, progress: bool = False) -> dict:
    """k-fold cross-validation: ``fit(train_idx, test_idx)`` returns predictions for ``test_idx``.

    Returns the per-fold accuracies, their mean and the out-of-fold predictions.
    """
    labels = np.asarray(labels)
    oof = np.full(len(labels), -1)
    scores = []
    for test in tqdm(stratified_folds(labels, k, seed), desc="folds", disable=not progress):
        train = np.setdiff1d(np.arange(len(labels)), test)
        pred = np.asarray(fit(train, test))
        oof[test] = pred
        scores.append(float((pred == labels[test]).mean()))
    return {"fold_accuracy": scores, "accuracy": float(np.mean(scores)), "oof_prediction": oof}
