"""Reference EEG classifiers built for Layer-wise Relevance Propagation.

All models take input of shape (batch, channel, time), use only linear
layers, convolutions, ReLU, average pooling, reshapes and fixed linear
operations (as modules, so an LRP engine sees every step), and return logits:
no softmax, no BatchNorm, no dropout.

:class:`LinearEEG` removes each channel's epoch mean inside the model (a fixed
linear operation, :class:`EpochDemean`, that the engine explains like any
other linear step) and reads the class out linearly; its
:meth:`LinearEEG.fit_logistic` fits it as an L2-regularised logistic
regression to convergence, with the penalty chosen by cross-validation on the
training data. On the real FingerMovements data it is the only model here that
beats chance on the test split (see the plugin README).

All carry ``n_channels``, ``n_times`` and ``n_classes``, plus ``ch_names``,
``sfreq`` and ``scaling`` attributes that are ``None`` until a trainer (e.g.
:func:`sciexplain_eeg.fit` on ``mne.Epochs``) or the user sets them, so an
explanation can label channels and time and scale volts the way training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from sciexplain.errors import InputError, InputTypeError

__all__ = ["CompactEEGNet", "EpochDemean", "LinearEEG", "SturmDNN"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return value


class _EEGModel(nn.Module):
    """Shared shape bookkeeping and input validation."""

    def __init__(self, n_channels: int, n_times: int, n_classes: int) -> None:
        super().__init__()
        self.n_channels = _positive_int("n_channels", n_channels)
        self.n_times = _positive_int("n_times", n_times)
        self.n_classes = _positive_int("n_classes", n_classes)
        if n_classes < 2:
            raise InputError(f"n_classes must be at least 2, got {n_classes}.")
        self.ch_names: list[str] | None = None
        self.sfreq: float | None = None
        self.scaling: float | None = None

    def _check_input(self, x: torch.Tensor) -> None:
        # Symbolic tracers (torch.fx) pass proxies whose shape is unknown.
        if isinstance(x, torch.fx.Proxy):
            return
        if not isinstance(x, torch.Tensor):
            raise InputTypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}.")
        expected = (self.n_channels, self.n_times)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise InputError(
                f"{type(self).__name__} expects input of shape (batch, channel, time) = "
                f"(batch, {self.n_channels}, {self.n_times}), got {tuple(x.shape)}. "
                "Pass epochs as (n_epochs, n_channels, n_times), e.g. epochs.get_data()."
            )


class SturmDNN(_EEGModel):
    """Fully connected network on the flattened (channel x time) input.

    Flatten -> [Linear -> ReLU] per hidden layer -> Linear (logits).

    After Sturm, Lapuschkin, Samek & Mueller (2016), "Interpretable deep
    neural networks for single-trial EEG classification", J. Neurosci.
    Methods 274, which explained a fully connected DNN on raw
    (channel x time) motor-imagery epochs with LRP. The searchable sources
    available while writing this gave only the paper's abstract (a DNN with
    LRP, accuracy comparable to CSP-LDA), not its layer sizes; the default of
    two hidden layers of 500 units follows our recollection of the paper
    (500-500-2 units) and is unverified. Unlike the paper there is no softmax
    layer: the model returns logits, the quantity LRP decomposes.

    Parameters
    ----------
    n_channels, n_times : int
        Input shape per sample, (channel, time).
    n_classes : int
        Number of output logits (at least 2).
    hidden : sequence of int
        Widths of the hidden layers; empty gives a linear classifier.

    Attributes
    ----------
    n_channels, n_times, n_classes : int
    ch_names : list of str or None
    sfreq : float or None
    scaling : float or None
        Factor that turns epochs in volts into this model's input units
        (set by :func:`sciexplain_eeg.fit`).
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        n_classes: int = 2,
        hidden: Sequence[int] = (500, 500),
    ) -> None:
        super().__init__(n_channels, n_times, n_classes)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise InputTypeError(f"hidden must be a sequence of layer widths, got {hidden!r}.")
        self.hidden = tuple(_positive_int("hidden layer width", h) for h in hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_channels * n_times
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_classes) for input (batch, channel, time)."""
        self._check_input(x)
        return self.layers(x)


class CompactEEGNet(_EEGModel):
    """Small convolutional network: temporal filters, spatial filters, pooling.

    (batch, channel, time) -> Unflatten to (batch, 1, channel, time)
    -> Conv2d(1, F, (1, kernel), zero "same" padding, no bias): F temporal
    filters, the same on every channel
    -> Conv2d(F, F, (n_channels, 1)): one spatial filter across all channels
    per temporal filter (full, not depthwise, mixing of the F maps)
    -> ReLU -> AvgPool2d((1, pool)) over time -> Flatten -> Linear (logits).

    The temporal convolution has no bias because the spatial convolution that
    follows is linear and would absorb it. Time samples beyond the last full
    pooling window are dropped by the pooling.

    Parameters
    ----------
    n_channels, n_times : int
        Input shape per sample, (channel, time).
    n_classes : int
        Number of output logits (at least 2).
    n_filters : int
        Number of temporal (and spatial) filters F.
    kernel : int
        Length of the temporal filters in samples; odd, so "same" padding is
        symmetric (11 samples = 110 ms at 100 Hz).
    pool : int
        Width of the average pooling over time in samples, at most ``n_times``.

    Attributes
    ----------
    n_channels, n_times, n_classes : int
    ch_names : list of str or None
    sfreq : float or None
    scaling : float or None
        Factor that turns epochs in volts into this model's input units
        (set by :func:`sciexplain_eeg.fit`).
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        n_classes: int = 2,
        n_filters: int = 8,
        kernel: int = 11,
        pool: int = 4,
    ) -> None:
        super().__init__(n_channels, n_times, n_classes)
        self.n_filters = _positive_int("n_filters", n_filters)
        self.kernel = _positive_int("kernel", kernel)
        self.pool = _positive_int("pool", pool)
        if kernel % 2 == 0:
            raise InputError(f"kernel must be odd for symmetric 'same' padding, got {kernel}.")
        if pool > n_times:
            raise InputError(f"pool ({pool}) must not exceed n_times ({n_times}).")
        n_pooled = n_times // pool
        self.layers = nn.Sequential(
            nn.Unflatten(1, (1, n_channels)),
            nn.Conv2d(1, n_filters, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.Conv2d(n_filters, n_filters, (n_channels, 1)),
            nn.ReLU(),
            nn.AvgPool2d((1, pool)),
            nn.Flatten(),
            nn.Linear(n_filters * n_pooled, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_classes) for input (batch, channel, time)."""
        self._check_input(x)
        return self.layers(x)


class EpochDemean(nn.Module):
    """Subtract from every channel its mean over the epoch's time samples.

    ``x - x.mean(dim=-1, keepdim=True)``: a fixed linear operation without
    parameters (multiplication by the centring matrix ``I - 11^T / n_times``
    along time). A constant offset of a channel therefore never reaches the
    layers after it, and LRP gives such an offset zero total relevance: the
    relevance of sample ``t`` of a channel is ``x_t (c_t - mean_s c_s)`` for the
    backward signal ``c``, which sums to 0 for a constant ``x``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input minus its mean over the last (time) dim, same shape."""
        return x - x.mean(dim=-1, keepdim=True)


class LinearEEG(_EEGModel):
    """Linear classifier on the (channel x time) epoch, optionally demeaned per channel.

    (batch, channel, time) -> :class:`EpochDemean` (if ``demean``) -> Flatten
    -> Linear (logits). Train it with :meth:`fit_logistic` (an L2-regularised
    logistic regression solved to convergence, penalty chosen by
    cross-validation), or with :func:`sciexplain_eeg.fit` like the other
    models.

    With two classes the logits are ``-g(x)/2`` and ``+g(x)/2`` for the
    decision function ``g`` of the logistic regression, so explaining either
    class explains the same evidence with opposite sign (neither logit is
    pinned to zero, which would leave nothing to explain).

    Parameters
    ----------
    n_channels, n_times : int
        Input shape per sample, (channel, time).
    n_classes : int
        Number of output logits (at least 2).
    demean : bool
        Remove each channel's epoch mean first (default True). On the
        FingerMovements data the slow offsets differ between training and test
        trials; removing them is what lets the classifier transfer.

    Attributes
    ----------
    n_channels, n_times, n_classes : int
    ch_names : list of str or None
    sfreq : float or None
    scaling : float or None
        Factor that turns epochs in volts into this model's input units.
    C : float or None
        Inverse L2 penalty chosen by :meth:`fit_logistic` (None before).
    cv_scores : dict of float to float
        Mean cross-validated accuracy per candidate ``C`` (empty before).
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int = 2, demean: bool = True) -> None:
        super().__init__(n_channels, n_times, n_classes)
        self.demean = bool(demean)
        self.layers = nn.Sequential(
            EpochDemean() if self.demean else nn.Identity(),
            nn.Flatten(),
            nn.Linear(n_channels * n_times, n_classes),
        )
        self.C: float | None = None
        self.cv_scores: dict[float, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_classes) for input (batch, channel, time)."""
        self._check_input(x)
        return self.layers(x)

    def fit_logistic(
        self,
        X: Any,
        y: Any = None,
        *,
        C: float | Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
        cv: int = 5,
        scaling: float | None = None,
        intercept: bool = False,
        seed: int = 0,
    ) -> LinearEEG:
        """Fit the weights as an L2-regularised logistic regression, to convergence.

        The data are scaled exactly as :func:`sciexplain_eeg.fit` scales them
        (``scaling``, default 1e6 for epochs: microvolts), demeaned if the
        model demeans, flattened, and given to scikit-learn's
        ``LogisticRegression`` (Newton-Cholesky solver). With several candidate ``C`` the one
        with the best mean accuracy in stratified ``cv``-fold cross-validation
        on these data is used (ties go to the smaller ``C``, the stronger
        penalty); no held-out data are touched. Unlike early-stopped gradient
        training, the solution is the penalised optimum: on FingerMovements
        early stopping halts near the class-mean template, which does not
        transfer to the test trials, while the converged solution does.

        Parameters
        ----------
        X : mne.Epochs or numpy.ndarray
            Training epochs (volts) or an array (n, channel, time) taken as given.
        y : array, optional
            Integer labels; for epochs, the event codes ranked by value.
        C : float or sequence of float
            Inverse penalty (in the units after ``scaling``), or candidates.
        cv : int
            Folds for choosing ``C``.
        scaling : float, optional
            As in :func:`sciexplain_eeg.fit`.
        intercept : bool
            Fit the bias too. Default False: the bias is set to zero, so LRP decomposes the
            whole logit onto the input (nothing is absorbed). With an intercept, the fitted
            weights on FingerMovements carry a large component along the average epoch that
            the bias cancels (about 13 logits at C = 1e-3), and the relevance maps show that
            cancelling pair rather than what separates the classes; cross-validated accuracy
            is the same either way (0.60 vs 0.61 at C = 1e-3).
        seed : int
            Seeds the fold assignment.

        Returns
        -------
        LinearEEG
            ``self``, in eval mode, with ``C``, ``cv_scores``, and (for epochs)
            ``ch_names``, ``sfreq``, ``scaling`` set.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        from .training import _annotate, _prepare

        data, labels, used, meta = _prepare(self, X, y, scaling)
        if self.demean:
            data = data - data.mean(axis=-1, keepdims=True)
        flat = data.reshape(len(data), -1)
        present = np.unique(labels)
        if len(present) != self.n_classes:
            raise InputError(
                f"The labels hold {len(present)} classes {present.tolist()}, the model has "
                f"{self.n_classes} outputs; every class needs training samples."
            )
        candidates = [float(c) for c in (C if isinstance(C, Sequence) else [C])]
        if not candidates or any(not np.isfinite(c) or c <= 0 for c in candidates):
            raise InputError(f"C must be a positive number or a non-empty list of them, got {C!r}.")

        def model_for(c: float) -> Any:
            # Newton steps with a Cholesky solve: exact convergence in a few
            # iterations for up to a few thousand features (L-BFGS needs
            # thousands of iterations on these unstandardised microvolts).
            return LogisticRegression(C=c, solver="newton-cholesky", max_iter=200, fit_intercept=bool(intercept))

        scores: dict[float, float] = {}
        if len(candidates) > 1:
            if not isinstance(cv, int) or isinstance(cv, bool) or cv < 2:
                raise InputError(f"cv must be an integer >= 2, got {cv!r}.")
            folds = list(StratifiedKFold(cv, shuffle=True, random_state=seed).split(flat, labels))
            for c in sorted(candidates):
                accs = [model_for(c).fit(flat[tr], labels[tr]).score(flat[va], labels[va]) for tr, va in folds]
                scores[c] = float(np.mean(accs))
            best = max(scores.values())
            chosen = min(c for c, s in scores.items() if s >= best - 1e-12)
        else:
            chosen = candidates[0]
        clf = model_for(chosen).fit(flat, labels)
        coef = np.asarray(clf.coef_, dtype=np.float64)
        bias = np.broadcast_to(np.asarray(clf.intercept_, dtype=np.float64), (coef.shape[0],))
        if coef.shape[0] == 1:  # binary: split the decision function symmetrically
            coef = np.concatenate([-coef / 2, coef / 2])
            bias = np.concatenate([-bias / 2, bias / 2])
        linear = self.layers[-1]
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(coef, dtype=linear.weight.dtype))
            linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))
        self.C = chosen
        self.cv_scores = scores
        _annotate(self, meta, used, scaling is not None)
        self.eval()
        return self
