"""Tests of the synthetic ground-truth generator."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sciexplain_eeg.synthetic import DEFAULT_CH_NAMES, GroundTruth, make_synthetic_epochs


@pytest.fixture(scope="module")
def default_set():
    return make_synthetic_epochs(n_epochs=300, seed=3)


def test_defaults_shapes_labels_and_montage(default_set):
    epochs, truth = default_set
    assert isinstance(epochs, mne.EpochsArray) and isinstance(truth, GroundTruth)
    assert epochs.get_data().shape == (300, len(DEFAULT_CH_NAMES), 101)
    assert 28 <= len(DEFAULT_CH_NAMES) <= 32 and {"C3", "C4", "Cz"} <= set(DEFAULT_CH_NAMES)
    assert epochs.ch_names == list(DEFAULT_CH_NAMES) == list(truth.ch_names)
    np.testing.assert_allclose(epochs.times, truth.times)
    assert epochs.times[0] == pytest.approx(-0.2) and epochs.times[-1] == pytest.approx(0.8)
    assert epochs.event_id == truth.event_id == {"left": 0, "right": 1}
    labels = epochs.events[:, 2]
    assert np.bincount(labels).tolist() == [150, 150]
    assert len(np.unique(epochs.events[:, 0])) == 300
    assert epochs.get_montage() is not None
    assert set(epochs.get_montage().ch_names) == set(DEFAULT_CH_NAMES)
    assert truth.sources == {"left": ("C4",), "right": ("C3",)}
    assert truth.window == (0.3, 0.5)


def test_deterministic_for_a_seed():
    a, ta = make_synthetic_epochs(n_epochs=20, seed=7)
    b, tb = make_synthetic_epochs(n_epochs=20, seed=7)
    c, _ = make_synthetic_epochs(n_epochs=20, seed=8)
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    np.testing.assert_array_equal(a.events, b.events)
    np.testing.assert_array_equal(ta.weights["left"], tb.weights["left"])
    assert not np.allclose(a.get_data(), c.get_data())


def test_effect_is_at_the_source_inside_the_window(default_set):
    epochs, truth = default_set
    X = epochs.get_data()
    y = epochs.events[:, 2]
    diff = X[y == 1].mean(0) - X[y == 0].mean(0)  # right - left
    names = list(truth.ch_names)
    c3, c4 = names.index("C3"), names.index("C4")
    inside = truth.waveform > 0
    ch, t = np.unravel_index(np.abs(diff).argmax(), diff.shape)
    assert ch in (c3, c4) and inside[t]
    # Right adds negativity at C3, left at C4.
    assert diff[c3, inside].mean() < 0 < diff[c4, inside].mean()
    source_effect = min(abs(diff[c3, inside].mean()), abs(diff[c4, inside].mean()))
    # Far from both sources, and anywhere outside the window, the difference is noise.
    far = (truth.weights["left"] < 0.05) & (truth.weights["right"] < 0.05)
    assert far.sum() >= 4  # frontal poles and occipital electrodes
    # Everywhere, the window's class difference follows the smearing weights.
    expected = -truth.amplitude * truth.waveform[inside].mean() * (truth.weights["right"] - truth.weights["left"])
    np.testing.assert_allclose(diff[:, inside].mean(axis=1), expected, atol=0.15 * truth.amplitude)
    assert np.abs(diff[far][:, inside].mean(axis=1)).max() < 0.2 * source_effect
    assert np.abs(diff[:, ~inside]).max() < 0.5 * np.abs(diff[[c3, c4]][:, inside]).max()


def test_smearing_follows_montage_distance():
    _, truth = make_synthetic_epochs(n_epochs=2, seed=0)
    montage = mne.channels.make_standard_montage("colin27_1020")
    pos = montage.get_positions()["ch_pos"]
    names = list(truth.ch_names)
    d = np.array([np.linalg.norm(pos[c] - pos["C3"]) for c in names])
    w = truth.weights["right"]
    np.testing.assert_allclose(w, np.exp(-(d**2) / (2 * truth.spread**2)))
    assert w[names.index("C3")] == pytest.approx(1.0)
    order = np.argsort(d)
    assert np.all(np.diff(w[order]) <= 1e-12)  # falls with distance
    # Neighbours carry part of the source, the far side almost none.
    assert 0.2 < w[names.index("FC1")] < 0.9
    assert 0.2 < w[names.index("CP5")] < 0.9
    assert w[names.index("C4")] < 0.01 and w[names.index("O2")] < 0.01


def test_noise_is_coloured_and_spatially_correlated():
    epochs, _ = make_synthetic_epochs(n_epochs=200, amplitude=0.0, noise_level=2e-6, seed=1)
    X = epochs.get_data()
    names = epochs.ch_names
    np.testing.assert_allclose(X.std(axis=(0, 2)), 2e-6, rtol=0.1)
    lag1 = (X[..., 1:] * X[..., :-1]).mean() / (X * X).mean()
    assert lag1 > 0.6  # AR(1), 50 ms at 100 Hz: phi = exp(-0.2) = 0.82

    def corr(a: str, b: str) -> float:
        return float(np.corrcoef(X[:, names.index(a)].ravel(), X[:, names.index(b)].ravel())[0, 1])

    assert corr("C3", "CP1") > 0.3 > abs(corr("C3", "O2"))
    # Without activity, classes do not differ beyond noise.
    y = epochs.events[:, 2]
    assert np.abs(X[y == 1].mean(0) - X[y == 0].mean(0)).max() < 2e-6


def test_noise_free_epochs_are_scaled_templates():
    epochs, truth = make_synthetic_epochs(n_epochs=12, noise_level=0.0, seed=2)
    X = epochs.get_data()
    for x, code in zip(X, epochs.events[:, 2]):
        template = truth.template(truth.classes[code])
        ratio = x[template != 0] / template[template != 0]
        np.testing.assert_allclose(ratio, ratio[0])
        assert 0.75 <= ratio[0] <= 1.25  # +-25 % amplitude jitter
        assert np.all(x[template == 0] == 0)
    assert truth.template("left").min() == pytest.approx(-truth.amplitude)


def test_mask():
    _, truth = make_synthetic_epochs(n_epochs=2, seed=0)
    mask = truth.mask("right")
    names = list(truth.ch_names)
    assert mask.shape == (len(names), truth.times.size)
    assert mask[names.index("C3")].sum() == (truth.waveform > 0).sum()
    assert not mask[names.index("C4")].any()
    assert not mask[:, truth.times < 0.3 - 1e-9].any()
    with pytest.raises(ValueError, match="Unknown class"):
        truth.mask("up")
    with pytest.raises(ValueError, match="threshold"):
        truth.mask("left", threshold=0.0)


def test_custom_classes_and_a_silent_class():
    epochs, truth = make_synthetic_epochs(
        n_epochs=31,
        classes=("left", "right", "rest"),
        class_sources={"left": ["C4"], "right": ["C3", "CP1"], "rest": []},
        seed=0,
    )
    assert np.bincount(epochs.events[:, 2]).tolist() == [11, 10, 10]
    assert epochs.event_id == {"left": 0, "right": 1, "rest": 2}
    assert not truth.weights["rest"].any()
    assert truth.weights["right"][list(truth.ch_names).index("CP1")] > 1.0  # two sources add


@settings(max_examples=15, deadline=None)
@given(
    sfreq=st.sampled_from([50.0, 100.0, 128.0, 250.0]),
    tmin=st.floats(-0.5, 0.0),
    length=st.floats(0.3, 1.0),
    start_frac=st.floats(0.0, 0.6),
)
def test_window_lands_on_the_right_samples(sfreq, tmin, length, start_frac):
    tmax = tmin + length
    start = tmin + start_frac * length
    window = (start, start + 0.3 * length)
    epochs, truth = make_synthetic_epochs(
        n_epochs=2, sfreq=sfreq, tmin=tmin, tmax=tmax, window=window, noise_level=0.0, seed=0
    )
    times = epochs.times
    inside = (times >= window[0] - 1e-9) & (times <= window[1] + 1e-9)
    np.testing.assert_array_equal(truth.waveform > 0, inside)
    assert truth.waveform.max() == pytest.approx(1.0)
    X = epochs.get_data()
    assert np.all(X[:, :, ~inside] == 0) and np.all(X[:, :, inside].min(axis=(0, 1)) < 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_epochs": 1}, ValueError, "at least the number of classes"),
        ({"n_epochs": 2.5}, TypeError, "n_epochs must be an integer"),
        ({"n_epochs": True}, TypeError, "n_epochs must be an integer"),
        ({"sfreq": 0.0}, ValueError, "sfreq must be positive"),
        ({"sfreq": float("nan")}, ValueError, "sfreq must be finite"),
        ({"tmin": 0.5, "tmax": 0.5}, ValueError, "tmax"),
        ({"amplitude": -1e-6}, ValueError, "amplitude must not be negative"),
        ({"noise_level": "big"}, TypeError, "noise_level must be a real number"),
        ({"spread": 0}, ValueError, "spread must be positive"),
        ({"seed": -1}, ValueError, "seed must be at least 0"),
        ({"seed": None}, TypeError, "seed must be an integer"),
        ({"ch_names": "C3"}, TypeError, "sequence of strings"),
        ({"ch_names": ("C3", "C3", "C4")}, ValueError, "duplicates"),
        ({"ch_names": ("C3", "C4", "XX9")}, ValueError, r"\['XX9'\] have no position"),
        ({"ch_names": ("C3",)}, ValueError, "at least 2"),
        ({"classes": ("a", "b")}, ValueError, "pass class_sources"),
        ({"classes": ("left",)}, ValueError, "at least 2"),
        ({"class_sources": {"left": ["C4"]}}, ValueError, "exactly the classes"),
        ({"class_sources": {"left": "C4", "right": ["C3"]}}, TypeError, r"write \['C4'\]"),
        ({"class_sources": {"left": ["C4"], "right": ["Fpz"]}}, ValueError, "not in ch_names"),
        ({"class_sources": [("left", "C4")]}, TypeError, "must be a mapping"),
        ({"window": (0.5, 0.3)}, ValueError, "greater than its start"),
        ({"window": (0.5, 1.2)}, ValueError, "inside the epoch"),
        ({"window": (0.3, 0.31)}, ValueError, "at least 3"),
        ({"window": 0.3}, TypeError, "window must be"),
    ],
)
def test_validation_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_synthetic_epochs(**kwargs)
