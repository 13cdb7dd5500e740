"""Synthetic EEG epochs with known ground truth.

No motor-imagery or ERP recording ships in any package reachable offline, so
tests that need a strong, known effect use this generator: every class adds a
slow negative deflection (in the spirit of the lateralized readiness
potential before a hand movement) at chosen electrodes inside a chosen time
window, smeared over the scalp by the montage geometry, on top of temporally
coloured, spatially correlated background noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sciexplain.errors import InputError, InputTypeError

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = ["DEFAULT_CH_NAMES", "GroundTruth", "make_synthetic_epochs"]

DEFAULT_CH_NAMES: tuple[str, ...] = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "FC5", "FC1", "FC2", "FC6",
    "T7", "C3", "Cz", "C4", "T8",
    "CP5", "CP1", "CP2", "CP6",
    "P7", "P3", "Pz", "P4", "P8",
    "PO3", "PO4", "O1", "Oz", "O2",
)  # fmt: skip
"""30 electrodes of the 10-20/10-10 system, all present in ``colin27_1020``."""

_DEFAULT_SOURCES = {"left": ("C4",), "right": ("C3",)}
_MONTAGE = "colin27_1020"
# Background noise: AR(1) with a 50 ms correlation time (most power below
# ~3 Hz, falling like 1/f^2 above), mixed over channels with an exponential
# spatial covariance of 5 cm length scale on the montage's 3-D positions.
_NOISE_TAU = 0.05
_NOISE_LENGTH = 0.05
# Each epoch's source amplitude varies uniformly by +-25 %.
_AMPLITUDE_JITTER = 0.25


@dataclass(frozen=True)
class GroundTruth:
    """What :func:`make_synthetic_epochs` put where.

    Attributes
    ----------
    classes : tuple of str
        Class names; class ``classes[i]`` has event code and label ``i``.
    ch_names : tuple of str
        Channel order of the epochs.
    times : numpy.ndarray
        Sample times in seconds (the epochs' ``times``).
    sources : dict of str to tuple of str
        Electrodes at which each class's activity originates.
    window : tuple of float
        (start, stop) in seconds of the class-specific activity.
    weights : dict of str to numpy.ndarray
        Per class, one weight per channel: the share of the source amplitude
        that reaches that electrode, ``sum_s exp(-d(c, s)^2 / (2 spread^2))``
        over the class's sources ``s`` (1 at a lone source, falling with 3-D
        distance ``d`` on the montage). All zeros for a class without sources.
    waveform : numpy.ndarray
        Time course of the activity, one value per sample: a Hann bump that is
        non-zero exactly on the samples inside ``window`` and peaks at 1.
    amplitude : float
        Mean peak amplitude in volts (each epoch varies by +-25 %). The
        deflection is negative.
    spread : float
        Length scale of the spatial smearing, in metres.
    """

    classes: tuple[str, ...]
    ch_names: tuple[str, ...]
    times: np.ndarray
    sources: dict[str, tuple[str, ...]]
    window: tuple[float, float]
    weights: dict[str, np.ndarray]
    waveform: np.ndarray
    amplitude: float
    spread: float

    @property
    def event_id(self) -> dict[str, int]:
        """Mapping of class name to event code (= integer label)."""
        return {name: i for i, name in enumerate(self.classes)}

    def template(self, label: str) -> np.ndarray:
        """Noise-free mean signal of a class, shape (channel, time), in volts."""
        self._check_label(label)
        return -self.amplitude * np.outer(self.weights[label], self.waveform)

    def mask(self, label: str, threshold: float = 0.5) -> np.ndarray:
        """Boolean (channel, time) mask of where the class's effect is.

        True where the channel's smearing weight is at least ``threshold``
        times its largest weight and the sample lies inside ``window``.
        """
        self._check_label(label)
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"threshold must be in (0, 1], got {threshold!r}.")
        w = self.weights[label]
        peak = w.max()
        channels = w >= threshold * peak if peak > 0 else np.zeros_like(w, dtype=bool)
        return np.outer(channels, self.waveform > 0)

    def _check_label(self, label: str) -> None:
        if label not in self.weights:
            raise InputError(f"Unknown class {label!r}; classes are {list(self.classes)}.")


def make_synthetic_epochs(
    *,
    n_epochs: int = 200,
    ch_names: Sequence[str] = DEFAULT_CH_NAMES,
    sfreq: float = 100.0,
    tmin: float = -0.2,
    tmax: float = 0.8,
    classes: Sequence[str] = ("left", "right"),
    class_sources: Mapping[str, Sequence[str]] | None = None,
    window: tuple[float, float] = (0.3, 0.5),
    amplitude: float = 5e-6,
    noise_level: float = 1e-6,
    spread: float = 0.04,
    seed: int = 0,
) -> tuple[mne.EpochsArray, GroundTruth]:
    """Generate labelled EEG epochs whose class information sits at known places.

    Each epoch is background noise plus, for its class, a negative Hann-shaped
    deflection inside ``window`` at the class's source electrodes, smeared to
    the other electrodes with weights ``exp(-d^2 / (2 spread^2))`` of their
    3-D distance ``d`` to the source on the ``colin27_1020`` montage (so the
    neighbours carry part of it). The peak amplitude varies by +-25 % between
    epochs.

    Background noise: an AR(1) process per channel with a 50 ms correlation
    time (temporally coloured, stationary from the first sample), mixed across
    channels with the spatial covariance ``exp(-d / 5 cm)``, scaled to a
    standard deviation of ``noise_level`` on every channel.

    Parameters
    ----------
    n_epochs : int
        Number of epochs, at least the number of classes. Classes are balanced
        (counts differ by at most one) and shuffled.
    ch_names : sequence of str
        Electrode names; all must exist in ``colin27_1020``. Default: 30 10-20
        electrodes, :data:`DEFAULT_CH_NAMES`.
    sfreq : float
        Sampling frequency in Hz.
    tmin, tmax : float
        Epoch start and end in seconds (both samples included).
    classes : sequence of str
        Class names; label ``i`` and event code ``i`` mean ``classes[i]``.
    class_sources : mapping of str to sequence of str, optional
        For every class, the electrodes where its activity originates (an
        empty list gives a class without activity). Defaults to
        ``{"left": ["C4"], "right": ["C3"]}`` (contralateral motor cortex),
        which requires the default classes.
    window : tuple of float
        (start, stop) in seconds of the activity; must lie inside the epoch
        and cover at least 3 samples.
    amplitude : float
        Mean peak amplitude of the deflection at a source electrode, in volts.
    noise_level : float
        Standard deviation of the background noise per channel, in volts.
    spread : float
        Length scale of the spatial smearing in metres (neighbouring 10-20
        electrodes are about 3.5-4 cm apart on this montage).
    seed : int
        Seed of the random generator; the same seed gives identical epochs.

    Returns
    -------
    epochs : mne.EpochsArray
        Data in volts with the montage set, ``event_id`` ``{class: i}`` and
        events whose codes are the labels.
    truth : GroundTruth
        Sources, window, smearing weights, waveform and labels.

    Raises
    ------
    ValueError, TypeError
        For any invalid parameter, with what was wrong.

    Notes
    -----
    At the defaults, a linear classifier can separate the classes almost
    perfectly, and small networks trained with :func:`sciexplain_eeg.fit`
    reach well above 0.9 accuracy (see the plugin README for measured values).
    """
    import mne

    n_epochs = _check_int("n_epochs", n_epochs, minimum=1)
    sfreq = _check_number("sfreq", sfreq, positive=True)
    tmin = _check_number("tmin", tmin)
    tmax = _check_number("tmax", tmax)
    amplitude = _check_number("amplitude", amplitude, nonnegative=True)
    noise_level = _check_number("noise_level", noise_level, nonnegative=True)
    spread = _check_number("spread", spread, positive=True)
    seed = _check_int("seed", seed, minimum=0)
    if tmax <= tmin:
        raise InputError(f"tmax ({tmax}) must be greater than tmin ({tmin}).")

    ch_names = _check_names("ch_names", ch_names, minimum=2)
    classes = _check_names("classes", classes, minimum=2)
    if n_epochs < len(classes):
        raise InputError(f"n_epochs ({n_epochs}) must be at least the number of classes ({len(classes)}).")
    sources = _check_sources(class_sources, classes, ch_names)

    montage = mne.channels.make_standard_montage(_MONTAGE)
    missing = [c for c in ch_names if c not in montage.ch_names]
    if missing:
        raise InputError(f"Channels {missing} have no position in the {_MONTAGE!r} montage.")
    ch_pos = montage.get_positions()["ch_pos"]
    positions = np.array([ch_pos[c] for c in ch_names])
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)

    first = int(round(tmin * sfreq))
    n_times = int(round(tmax * sfreq)) - first + 1
    if n_times < 2:
        raise InputError(f"The epoch from {tmin} to {tmax} s at {sfreq} Hz has fewer than 2 samples.")
    times = (first + np.arange(n_times)) / sfreq
    waveform = _window_waveform(window, times, sfreq)

    index = {c: i for i, c in enumerate(ch_names)}
    weights = {}
    for name in classes:
        w = np.zeros(len(ch_names))
        for src in sources[name]:
            w += np.exp(-(distances[index[src]] ** 2) / (2.0 * spread**2))
        weights[name] = w

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_epochs) % len(classes))
    noise = _background_noise(rng, n_epochs, distances, n_times, sfreq) * noise_level
    scale = amplitude * (1.0 + _AMPLITUDE_JITTER * rng.uniform(-1.0, 1.0, size=n_epochs))
    patterns = np.stack([np.outer(weights[name], waveform) for name in classes])
    data = noise - scale[:, None, None] * patterns[labels]

    info = mne.create_info(list(ch_names), sfreq, ch_types="eeg")
    info.set_montage(montage)
    events = np.column_stack(
        [(np.arange(n_epochs) + 1) * n_times, np.zeros(n_epochs, dtype=int), labels]
    ).astype(np.int64)
    event_id = {name: i for i, name in enumerate(classes)}
    epochs = mne.EpochsArray(
        data, info, events=events, tmin=times[0], event_id=event_id, baseline=None, verbose=False
    )
    truth = GroundTruth(
        classes=classes,
        ch_names=ch_names,
        times=times,
        sources={k: tuple(v) for k, v in sources.items()},
        window=(float(window[0]), float(window[1])),
        weights=weights,
        waveform=waveform,
        amplitude=amplitude,
        spread=spread,
    )
    return epochs, truth


def _background_noise(
    rng: np.random.Generator, n_epochs: int, distances: np.ndarray, n_times: int, sfreq: float
) -> np.ndarray:
    """Unit-variance noise, AR(1) in time and exp(-d/L)-correlated in space."""
    phi = math.exp(-1.0 / (_NOISE_TAU * sfreq))
    innovations = rng.standard_normal((n_epochs, distances.shape[0], n_times))
    series = np.empty_like(innovations)
    series[..., 0] = innovations[..., 0]  # stationary start: unit variance
    gain = math.sqrt(1.0 - phi**2)
    for t in range(1, n_times):
        series[..., t] = phi * series[..., t - 1] + gain * innovations[..., t]
    covariance = np.exp(-distances / _NOISE_LENGTH)
    mixing = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance)))
    return np.einsum("ij,ejt->eit", mixing, series)


def _window_waveform(window: tuple[float, float], times: np.ndarray, sfreq: float) -> np.ndarray:
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise InputTypeError(f"window must be a (start, stop) pair of seconds, got {window!r}.")
    start = _check_number("window[0]", window[0])
    stop = _check_number("window[1]", window[1])
    if stop <= start:
        raise InputError(f"window stop ({stop}) must be greater than its start ({start}).")
    tol = 0.5 / sfreq
    if start < times[0] - tol or stop > times[-1] + tol:
        raise InputError(
            f"window {window} s must lie inside the epoch [{times[0]:.4g}, {times[-1]:.4g}] s."
        )
    inside = np.flatnonzero((times >= start - 1e-9) & (times <= stop + 1e-9))
    if inside.size < 3:
        raise InputError(
            f"window {window} s covers {inside.size} samples at {sfreq} Hz; it needs at least 3."
        )
    waveform = np.zeros(times.size)
    waveform[inside] = np.hanning(inside.size + 2)[1:-1]
    waveform /= waveform.max()
    return waveform


def _check_number(name: str, value: object, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}.")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value}.")
    if nonnegative and value < 0:
        raise InputError(f"{name} must not be negative, got {value}.")
    return value


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer, got {type(value).__name__}.")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def _check_names(name: str, values: object, *, minimum: int) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InputTypeError(f"{name} must be a sequence of strings (e.g. a tuple), got {values!r}.")
    out = tuple(values)
    if not all(isinstance(v, str) and v for v in out):
        raise InputTypeError(f"{name} must contain non-empty strings only, got {out!r}.")
    if len(set(out)) != len(out):
        dupes = sorted({v for v in out if out.count(v) > 1})
        raise InputError(f"{name} contains duplicates: {dupes}.")
    if len(out) < minimum:
        raise InputError(f"{name} needs at least {minimum} entries, got {len(out)}.")
    return out


def _check_sources(
    class_sources: Mapping[str, Sequence[str]] | None,
    classes: tuple[str, ...],
    ch_names: tuple[str, ...],
) -> dict[str, tuple[str, ...]]:
    if class_sources is None:
        if set(classes) != set(_DEFAULT_SOURCES):
            raise InputError(
                f"classes {list(classes)} differ from the default ('left', 'right'); "
                "pass class_sources, e.g. {class_name: ['C3'], ...}."
            )
        class_sources = _DEFAULT_SOURCES
    if not isinstance(class_sources, Mapping):
        raise InputTypeError(f"class_sources must be a mapping of class name to electrodes, got {class_sources!r}.")
    if set(class_sources) != set(classes):
        raise InputError(
            f"class_sources keys {sorted(class_sources)} must be exactly the classes {sorted(classes)}."
        )
    out = {}
    for name in classes:
        chans = class_sources[name]
        if isinstance(chans, str) or not isinstance(chans, Sequence):
            raise InputTypeError(
                f"class_sources[{name!r}] must be a list of electrode names, got {chans!r} "
                f"(write [{chans!r}] for a single electrode)."
            )
        unknown = [c for c in chans if c not in ch_names]
        if unknown:
            raise InputError(f"class_sources[{name!r}] names electrodes {unknown} that are not in ch_names.")
        out[name] = tuple(chans)
    return out
