"""A small, deterministic training helper for the reference EEG models.

Input scaling is a decision recorded with the model, not hidden in it: the
data are multiplied by one fixed factor (``scaling``) before they reach the
network, and nothing else is done to them (no per-sample or per-channel
standardisation). An explanation of the model then explains its input in
those units, and the plugin can apply the same factor to new epochs from
``model.scaling``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from sciexplain.errors import InputError, InputTypeError

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = ["FitResult", "evaluate", "fit"]

_VOLTS_TO_MICROVOLTS = 1e6


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the same object that was passed in), holding the
        weights of the best epoch, in eval mode.
    history : dict of str to list of float
        Per epoch: ``train_loss``, ``val_loss``, ``train_accuracy``,
        ``val_accuracy``. Training values are averages over the epoch's
        mini-batches.
    best_epoch : int
        Index (0-based) into ``history`` of the epoch with the lowest
        validation loss; its weights were restored.
    val_accuracy : float
        Validation accuracy of the restored weights.
    val_loss : float
        Validation loss (mean cross-entropy) of the restored weights.
    scaling : float
        Factor the input was multiplied by before entering the model.
    stopped_early : bool
        Whether training stopped before ``max_epochs`` because the validation
        loss had not improved for ``patience`` epochs.
    classes : list of str or None
        Class names in label order when fitted on ``mne.Epochs``, else None.
    train_index, val_index : numpy.ndarray
        Indices (into the input) of the training and validation samples.
    """

    model: nn.Module
    history: dict[str, list[float]]
    best_epoch: int
    val_accuracy: float
    val_loss: float
    scaling: float
    stopped_early: bool
    classes: list[str] | None = None
    train_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    val_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def fit(
    model: nn.Module,
    X: np.ndarray | mne.BaseEpochs,
    y: np.ndarray | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    max_epochs: int = 200,
    patience: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 32,
    scaling: float | None = None,
    reset_parameters: bool = True,
    verbose: bool = False,
) -> FitResult:
    """Train a classifier with a stratified validation split and early stopping.

    Mini-batch AdamW on the cross-entropy of the model's logits. After every
    epoch the validation loss is computed; training stops once it has not
    improved for ``patience`` epochs, and the weights of the best epoch are
    restored.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, channel, time) to logits (batch, n_classes); if it has
        ``n_channels``/``n_times``/``n_classes`` attributes (as
        :class:`SturmDNN` and :class:`CompactEEGNet` do), the data are checked
        against them.
    X : numpy.ndarray or mne.Epochs
        Array of shape (n_samples, n_channels, n_times), or epochs (whose data
        are in volts).
    y : numpy.ndarray, optional
        Integer labels in ``0 .. n_classes - 1``. Required for arrays; for
        epochs it defaults to the event codes ranked by value, so with
        ``event_id={"left": 0, "right": 1}`` left is 0 and right is 1.
    seed : int
        Seeds the parameter initialisation, the split and the batch order:
        the same seed and data give bit-identical weights (on the same
        machine and torch build). The global torch RNG state is left as it
        was.
    val_fraction : float
        Fraction of samples held out (stratified by label) for early stopping.
    max_epochs : int
        Upper bound on passes through the training samples.
    patience : int
        Epochs without a lower validation loss before stopping.
    lr, weight_decay : float
        AdamW learning rate and decoupled weight decay.
    batch_size : int
        Mini-batch size.
    scaling : float, optional
        Fixed factor the data are multiplied by before entering the model.
        Default: 1e6 for epochs (volts to microvolts, values of order 1-100)
        and 1.0 for arrays (taken as given). Recorded in the result and, for
        epochs or an explicit value, set as ``model.scaling``.
    reset_parameters : bool
        Re-initialise every submodule's parameters from ``seed`` first (so
        the result depends on ``seed`` only). Set False to continue training
        from the current weights.
    verbose : bool
        Show a tqdm progress bar over epochs with the current losses.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError, TypeError
        Invalid data (NaN/inf, wrong shape, labels outside the model's
        classes, a class too small to split) or parameters.
    """
    seed = _check_int("seed", seed, 0)
    max_epochs = _check_int("max_epochs", max_epochs, 1)
    patience = _check_int("patience", patience, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    lr = _check_positive("lr", lr)
    weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)
    val_fraction = _check_positive("val_fraction", val_fraction)
    if not val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}.")

    data, labels, used_scaling, meta = _prepare(model, X, y, scaling)
    train_idx, val_idx = _stratified_split(labels, val_fraction, seed)

    if reset_parameters:
        _reset_parameters(model, seed)
    device, dtype = _device_dtype(model)
    x_all = torch.as_tensor(data, dtype=dtype, device=device)
    y_all = torch.as_tensor(labels, dtype=torch.long, device=device)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    x_val, y_val = x_all[val_idx], y_all[val_idx]

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {
        "train_loss": [],
        "val_loss": [],
        "train_accuracy": [],
        "val_accuracy": [],
    }
    best_loss = math.inf
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    stopped_early = False

    progress = tqdm(range(max_epochs), desc="fit", unit="epoch", disable=not verbose, leave=False)
    # dropout draws from torch's global RNG: seed it for the loop (on a fork, so the caller's state is
    # untouched), else networks with dropout (braindecode's) would train differently on every call
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            for epoch in progress:
                model.train()
                order = torch.as_tensor(rng.permutation(len(train_idx)), device=device)
                total_loss = 0.0
                correct = 0
                for start in range(0, len(order), batch_size):
                    batch = order[start : start + batch_size]
                    logits = model(x_train[batch])
                    loss = loss_fn(logits, y_train[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total_loss += float(loss.detach()) * len(batch)
                    correct += int((logits.detach().argmax(1) == y_train[batch]).sum())
                val_loss, val_acc = _loss_accuracy(model, x_val, y_val, loss_fn)
                history["train_loss"].append(total_loss / len(order))
                history["train_accuracy"].append(correct / len(order))
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_acc)
                progress.set_postfix(train_loss=f"{total_loss / len(order):.3f}", val_loss=f"{val_loss:.3f}")
                if not math.isfinite(val_loss):
                    raise FloatingPointError(
                        f"Validation loss became {val_loss} at epoch {epoch}; lower lr or check the "
                        "input scaling (epochs in volts need scaling=1e6)."
                    )
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
                elif epoch - best_epoch >= patience:
                    stopped_early = True
                    break
        finally:
            progress.close()

    model.load_state_dict(best_state)
    model.eval()
    val_loss, val_acc = _loss_accuracy(model, x_val, y_val, loss_fn)
    _annotate(model, meta, used_scaling, scaling is not None)
    return FitResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        val_accuracy=val_acc,
        val_loss=val_loss,
        scaling=used_scaling,
        stopped_early=stopped_early,
        classes=meta.get("classes"),
        train_index=train_idx,
        val_index=val_idx,
    )


def evaluate(
    model: nn.Module,
    X: np.ndarray | mne.BaseEpochs,
    y: np.ndarray | None = None,
    *,
    scaling: float | None = None,
    batch_size: int = 256,
) -> float:
    """Accuracy of a classifier on held-out data.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, channel, time) to logits; evaluated in eval mode (its
        training flag is restored afterwards).
    X : numpy.ndarray or mne.Epochs
        Same kind of input as for :func:`fit`.
    y : numpy.ndarray, optional
        Integer labels; for epochs defaults to the ranked event codes.
    scaling : float, optional
        Factor applied to the data. Default: for epochs ``model.scaling`` if
        set, else 1e6; for arrays 1.0. Use the factor used in training.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    float
        Fraction of samples whose largest logit is the true label.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if scaling is None and _is_epochs(X) and getattr(model, "scaling", None) is not None:
        scaling = model.scaling
    data, labels, _, _ = _prepare(model, X, y, scaling)
    device, dtype = _device_dtype(model)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                xb = torch.as_tensor(data[start : start + batch_size], dtype=dtype, device=device)
                yb = torch.as_tensor(labels[start : start + batch_size], device=device)
                correct += int((model(xb).argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(data)


# --------------------------------------------------------------------------- #
def _is_epochs(X: Any) -> bool:
    if isinstance(X, (np.ndarray, torch.Tensor, list, tuple)):
        return False
    try:
        import mne
    except ImportError:  # pragma: no cover - mne is a dependency
        return False
    return isinstance(X, mne.BaseEpochs)


def _prepare(
    model: nn.Module, X: Any, y: Any, scaling: float | None
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """Validate and convert data; returns (data, labels, scaling, metadata)."""
    meta: dict[str, Any] = {}
    if _is_epochs(X):
        data = X.get_data()
        meta["ch_names"] = list(X.ch_names)
        meta["sfreq"] = float(X.info["sfreq"])
        codes = np.asarray(X.events[:, 2])
        ranked = sorted(X.event_id.items(), key=lambda item: item[1])
        meta["classes"] = [name for name, _ in ranked]
        if y is None:
            lookup = {code: i for i, (_, code) in enumerate(ranked)}
            unknown = sorted(set(codes.tolist()) - set(lookup))
            if unknown:
                raise InputError(f"Epochs have event codes {unknown} that are not in event_id.")
            y = np.array([lookup[c] for c in codes.tolist()], dtype=np.int64)
        default_scaling = _VOLTS_TO_MICROVOLTS
    else:
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        try:
            data = np.asarray(X)
        except Exception as err:  # noqa: BLE001 - report what could not be converted
            raise InputTypeError(f"X must be a numpy array or mne.Epochs, got {type(X).__name__}: {err}") from None
        if y is None:
            raise InputError("y (integer labels) is required when X is an array.")
        default_scaling = 1.0
    if data.dtype == object or not (
        np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)
    ):
        raise InputTypeError(f"X must hold real numbers, got dtype {data.dtype}.")
    if data.ndim != 3:
        raise InputError(
            f"X must have shape (n_samples, n_channels, n_times), got {data.shape} ({data.ndim} dims)."
        )
    if len(data) == 0:
        raise InputError("X holds no samples.")
    expected = (getattr(model, "n_channels", None), getattr(model, "n_times", None))
    for axis, (name, want) in enumerate(zip(("channels", "time samples"), expected), start=1):
        if want is not None and data.shape[axis] != want:
            raise InputError(
                f"X has {data.shape[axis]} {name} (shape {data.shape}) but the model expects {want}."
            )
    if not np.all(np.isfinite(data)):
        bad = int(np.sum(~np.isfinite(data)))
        raise InputError(f"X contains {bad} NaN or infinite values; clean or drop those samples first.")

    labels = _check_labels(y, len(data), getattr(model, "n_classes", None))
    used = default_scaling if scaling is None else _check_positive("scaling", scaling)
    data = np.ascontiguousarray(data, dtype=np.float64) * used
    return data, labels, float(used), meta


def _check_labels(y: Any, n: int, n_classes: int | None) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n:
        raise InputError(f"y must have shape ({n},) to match X, got {labels.shape}.")
    if labels.dtype == bool or not (
        np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    ):
        raise InputTypeError(f"y must hold integer class labels, got dtype {labels.dtype}.")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError("y must hold integer class labels; found non-integer values.")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise InputError(f"y must hold labels 0 .. n_classes - 1; found {labels.min()}.")
    if n_classes is not None and labels.max() >= n_classes:
        raise InputError(
            f"y holds label {labels.max()} but the model has {n_classes} outputs "
            f"(labels must be 0 .. {n_classes - 1})."
        )
    return labels


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    present, counts = np.unique(labels, return_counts=True)
    if len(present) < 2:
        raise InputError(f"y holds a single class ({present.tolist()}); training needs at least two.")
    if counts.min() < 2:
        raise InputError(
            f"Class {present[counts.argmin()]} has {counts.min()} sample; a stratified "
            "train/validation split needs at least 2 per class."
        )
    index = np.arange(len(labels))
    try:
        train_idx, val_idx = train_test_split(
            index, test_size=val_fraction, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError as err:
        raise InputError(
            f"Cannot split {len(labels)} samples of {len(present)} classes with "
            f"val_fraction={val_fraction}: {err} Use more samples or a larger val_fraction."
        ) from None
    return np.sort(train_idx), np.sort(val_idx)


def _reset_parameters(model: nn.Module, seed: int) -> None:
    # fork_rng keeps the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not model and callable(reset):
                reset()


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        raise InputError("The model has no parameters to train or evaluate.")
    return param.device, param.dtype


def _loss_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module
) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float(loss_fn(logits, y)), float((logits.argmax(1) == y).float().mean())


def _annotate(model: nn.Module, meta: dict[str, Any], scaling: float, explicit: bool) -> None:
    if "ch_names" in meta:
        model.ch_names = meta["ch_names"]
        model.sfreq = meta["sfreq"]
    if "ch_names" in meta or explicit:
        model.scaling = scaling


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}.")
    return value
