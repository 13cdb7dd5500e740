"""Reference EEG classifiers built for Layer-wise Relevance Propagation.

Both models take input of shape (batch, channel, time), use only linear
layers, convolutions, ReLU, average pooling and reshapes (as modules, so an
LRP engine sees every step), and return logits: no softmax, no BatchNorm, no
dropout.

Both carry ``n_channels``, ``n_times`` and ``n_classes``, plus ``ch_names``,
``sfreq`` and ``scaling`` attributes that are ``None`` until a trainer (e.g.
:func:`sciexplain_eeg.fit` on ``mne.Epochs``) or the user sets them, so an
explanation can label channels and time and scale volts the way training did.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CompactEEGNet", "SturmDNN"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


class _EEGModel(nn.Module):
    """Shared shape bookkeeping and input validation."""

    def __init__(self, n_channels: int, n_times: int, n_classes: int) -> None:
        super().__init__()
        self.n_channels = _positive_int("n_channels", n_channels)
        self.n_times = _positive_int("n_times", n_times)
        self.n_classes = _positive_int("n_classes", n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}.")
        self.ch_names: list[str] | None = None
        self.sfreq: float | None = None
        self.scaling: float | None = None

    def _check_input(self, x: torch.Tensor) -> None:
        # Symbolic tracers (torch.fx) pass proxies whose shape is unknown.
        if isinstance(x, torch.fx.Proxy):
            return
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}.")
        expected = (self.n_channels, self.n_times)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
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
            raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}.")
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
            raise ValueError(f"kernel must be odd for symmetric 'same' padding, got {kernel}.")
        if pool > n_times:
            raise ValueError(f"pool ({pool}) must not exceed n_times ({n_times}).")
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
