"""Regions of interest (assignment, conserving pooling) and relevance as mne.EvokedArray."""

from __future__ import annotations

import matplotlib.pyplot as plt
import mne
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sciexplain_eeg import explain_epochs
from sciexplain_eeg.evoked import relevance_info, to_evoked
from sciexplain_eeg.rois import channel_regions, default_rois, pool_rois
from sciexplain_eeg.synthetic import DEFAULT_CH_NAMES


@pytest.fixture(scope="module")
def R(epochs, annotate):
    import torch

    from sciexplain_eeg.models import SturmDNN
    torch.manual_seed(0)
    return explain_epochs(annotate(SturmDNN(30, 31, hidden=(16,))), epochs)


# --------------------------------------------------------------------------- regions
def test_ten_twenty_names_go_to_their_lobe_and_hemisphere(epochs):
    regions = channel_regions(epochs.info)
    expected = {"Fp1": ("frontal", "left"), "Fz": ("frontal", "midline"), "F8": ("frontal", "right"),
                "FC5": ("frontal", "left"), "C3": ("central", "left"), "Cz": ("central", "midline"),
                "C4": ("central", "right"), "T7": ("temporal", "left"), "CP2": ("parietal", "right"),
                "P3": ("parietal", "left"), "PO4": ("occipital", "right"), "Oz": ("occipital", "midline"),
                "O1": ("occipital", "left")}
    for name, want in expected.items():
        assert regions[name] == want, name


def test_default_rois_partition_the_channels(epochs, R):
    for by in ("lobe", "hemisphere", "lobe-hemisphere"):
        rois = default_rois(epochs, by=by)
        members = [c for v in rois.values() for c in v]
        assert sorted(members) == sorted(DEFAULT_CH_NAMES) and len(members) == len(set(members))
        assert default_rois(R, by=by) == rois  # the same from the relevance's own coords
    assert list(default_rois(epochs, by="hemisphere")) == ["left", "midline", "right"]
    assert "central left" in default_rois(epochs, by="lobe-hemisphere")
    with pytest.raises(ValueError, match="by must be"):
        default_rois(epochs, by="lobes")


def test_positions_decide_for_names_outside_the_system(epochs):
    mapping = {c: f"E{i + 1}" for i, c in enumerate(epochs.ch_names)}
    renamed = epochs.copy().rename_channels(mapping)
    regions = channel_regions(renamed.info)
    assert regions[mapping["C3"]][1] == "left" and regions[mapping["C4"]][1] == "right"
    assert regions[mapping["Cz"]][1] == "midline"
    assert regions[mapping["Fz"]][0] == "frontal" and regions[mapping["Oz"]][0] == "occipital"
    bare = mne.create_info(["E1", "E2"], 100.0, "eeg")
    assert channel_regions(bare) == {"E1": (None, None), "E2": (None, None)}
    assert default_rois(bare) == {}


def test_pool_rois_conserves_and_labels(R):
    P = pool_rois(R)
    assert P.dims == ("epoch", "roi", "time")
    assert list(P.roi.values) == ["frontal", "central", "temporal", "parietal", "occipital"]
    assert P.n_channels.values.sum() == 30
    P.relevance.check()
    np.testing.assert_allclose(P.sum(("roi", "time")).values, R.sum(("channel", "time")).values, rtol=1e-4,
                               atol=1e-5)
    H = pool_rois(R.relevance.windows("time", 0.2), by="hemisphere", name="hemisphere")
    H.relevance.check()
    assert "C3" in H.attrs["rois"]


def test_user_rois_override_with_remainder(R):
    P = pool_rois(R, {"motor left": ["C3", "CP1"], "motor right": ["C4", "CP2"]})
    assert list(P.roi.values) == ["motor left", "motor right", "other"]
    assert P.n_channels.values.tolist() == [2, 2, 26]
    P.relevance.check()
    np.testing.assert_allclose(P.sel(roi="motor left").values,
                               R.sel(channel=["C3", "CP1"]).sum("channel").values, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="overlap"):
        pool_rois(R, {"a": ["C3"], "b": ["C3", "C4"]})
    with pytest.raises(ValueError, match="not in coord"):
        pool_rois(R, {"a": ["C99"]})
    partial = pool_rois(R, {"a": ["C3"]}, remainder=None)
    assert "partial" in partial.attrs["pooling"]


@settings(max_examples=15, deadline=None)
@given(assignment=st.lists(st.integers(0, 3), min_size=30, max_size=30))
def test_any_partition_of_the_electrodes_keeps_the_total(assignment, R):
    rois: dict[str, list[str]] = {}
    for name, k in zip(DEFAULT_CH_NAMES, assignment):
        rois.setdefault(f"g{k}", []).append(name)
    P = pool_rois(R.isel(epoch=slice(0, 5)), rois)
    np.testing.assert_allclose(P.relevance.total().values, R.isel(epoch=slice(0, 5)).relevance.total().values,
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- evoked
def test_to_evoked_default_is_one_evoked_over_all_epochs_like_mne(R, epochs):
    ev = to_evoked(R)
    assert isinstance(ev, mne.EvokedArray)  # as epochs.average(): one Evoked
    np.testing.assert_allclose(ev.data, R.values.mean(axis=0), rtol=1e-6, atol=1e-9)
    assert ev.nave == R.sizes["epoch"] and ev.comment == "all epochs"
    want = (R.prediction.values - R.absorbed.values).mean()
    assert f"{want:.4g}" in ev.info["description"]
    np.testing.assert_allclose(ev.data.sum(), want, rtol=1e-4)  # the mean of the epochs' decompositions
    # MNE's own average of the relevance as if it were epochs data gives the same evoked
    as_epochs = mne.EpochsArray(R.values.astype(np.float64), ev.info, tmin=float(R.time.values[0]), verbose=False)
    np.testing.assert_allclose(as_epochs.average().data, ev.data, rtol=1e-9, atol=1e-12)


def test_to_evoked_by_event_type_is_a_list_per_condition(R, epochs):
    evokeds = to_evoked(R, by_event_type=True)
    assert isinstance(evokeds, list) and all(isinstance(ev, mne.EvokedArray) for ev in evokeds)
    names = list(dict.fromkeys(R.condition.values.astype(str).tolist()))
    assert [ev.comment for ev in evokeds] == names and set(names) == {"left", "right"}
    for ev in evokeds:
        idx = np.flatnonzero(R.condition.values == ev.comment)
        np.testing.assert_allclose(ev.data, R.values[idx].mean(axis=0), rtol=1e-6, atol=1e-9)
        assert ev.nave == len(idx) and ev.ch_names == list(DEFAULT_CH_NAMES)
        np.testing.assert_allclose(ev.times, epochs.times, atol=1e-9)
        assert "mean" in ev.info["description"] and ev.comment in ev.info["description"]
        pos = np.array([ch["loc"][:3] for ch in ev.info["chs"]])
        np.testing.assert_allclose(pos, np.stack([R.x.values, R.y.values, R.z.values], 1), atol=1e-9)
    # the same grouping as MNE's epochs.average(by_event_type=True) on the explained epochs
    mne_names = [ev.comment for ev in epochs.average(by_event_type=True)]
    assert sorted(mne_names) == sorted(names)
    same = to_evoked(R, by="condition")
    assert [ev.comment for ev in same] == names
    # MNE tools accept the list as it is
    combined = mne.combine_evoked(evokeds, weights="nave")
    np.testing.assert_allclose(combined.data, R.values.mean(axis=0), rtol=1e-6, atol=1e-9)
    # the dict only when asked for by name
    named = to_evoked(R, by_event_type=True, as_dict=True)
    assert list(named) == names
    np.testing.assert_array_equal(named["left"].data, evokeds[names.index("left")].data)


def test_to_evoked_by_target_epochs_info_and_errors(R, epochs):
    by_target = to_evoked(R, by="target")
    assert [ev.comment for ev in by_target] == [f"target {t}" for t in dict.fromkeys(R.target.values.tolist())]
    assert sum(ev.nave for ev in by_target) == R.sizes["epoch"]
    every = to_evoked(R, epochs=[0, 1, 2])
    assert isinstance(every, mne.EvokedArray) and every.nave == 3
    np.testing.assert_allclose(every.data, R.values[:3].mean(0), rtol=1e-6, atol=1e-9)
    shuffled = epochs.copy().reorder_channels(list(reversed(epochs.ch_names)))
    ev = to_evoked(R, shuffled.info)
    assert ev.ch_names == list(DEFAULT_CH_NAMES)  # R's order, the info's positions
    with pytest.raises(ValueError, match="by must be"):
        to_evoked(R, by="label_name")
    with pytest.raises(ValueError, match="dims"):
        to_evoked(R.relevance.pool("time"))
    with pytest.raises(ValueError, match="as_dict"):
        to_evoked(R, as_dict=True)
    with pytest.raises(ValueError, match="contradicts"):
        to_evoked(R, by_event_type=True, by="target")
    with pytest.raises(ValueError, match="True or False"):
        to_evoked(R, by_event_type="yes")
    from sciexplain.errors import SciexplainError
    with pytest.raises(SciexplainError):
        to_evoked(R, by="label_name")


def test_mne_plots_the_evoked_relevance(R):
    ev = to_evoked(R)
    fig = ev.plot_topomap(times=[0.1, 0.3], scalings=1, units="relevance", show=False)
    assert isinstance(fig, plt.Figure)
    plt.close(fig)
    fig = ev.plot_joint(times=[0.3], ts_args=dict(scalings=dict(eeg=1), units=dict(eeg="relevance")),
                        topomap_args=dict(scalings=1), show=False)
    assert isinstance(fig, plt.Figure)
    plt.close("all")


def test_relevance_info_without_positions(dnn, epochs):
    bare = mne.EpochsArray(epochs.get_data(), mne.create_info(epochs.ch_names, 50.0, "eeg"),
                           events=epochs.events, event_id=epochs.event_id, verbose=False)
    Rb = explain_epochs(dnn, bare)
    info = relevance_info(Rb)
    assert info["ch_names"] == list(DEFAULT_CH_NAMES) and info.get_montage() is None
    assert info["sfreq"] == 50.0
    assert isinstance(to_evoked(Rb), mne.EvokedArray)
