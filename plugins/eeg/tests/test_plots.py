"""Every figure returns a matplotlib Figure; scalp maps need positions and say how to get them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import mne
import numpy as np
import pytest
import torch

from sciexplain_eeg import explain_epochs
from sciexplain_eeg.domain import DOMAIN
from sciexplain_eeg.models import SturmDNN
from sciexplain_eeg.plots import (MontageMissingError, plot_class_topomaps, plot_joint, plot_left_right,
                                  plot_roi_timecourse, plot_topomap)


@pytest.fixture(scope="module")
def R(epochs, annotate):
    torch.manual_seed(0)
    return explain_epochs(annotate(SturmDNN(30, 31, hidden=(16,))), epochs)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _check(fig, tmp_path, name):
    assert isinstance(fig, plt.Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 1000


def test_single_trial_topomaps(R, tmp_path):
    fig = plot_topomap(R, 3, windows=0.2)
    _check(fig, tmp_path, "topo")
    maps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in maps] == ["0-200 ms", "200-400 ms", "400-600 ms", "600-800 ms",
                                               "whole epoch"]
    assert "f(x) =" in fig._suptitle.get_text()
    fig = plot_topomap(R, 0, windows=None)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["whole epoch"]
    fig = DOMAIN.plot(R, epoch=1, windows=[0.0, 0.3, 0.6], names=True)
    _check(fig, tmp_path, "domain")
    # R.relevance.plot(): the EEG view of the chosen epoch, as the domain draws it
    assert R.attrs["domain"] == "eeg"
    fig = R.relevance.plot(3, windows=0.2)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()][-1] == "whole epoch"
    assert fig._suptitle.get_text() == plot_topomap(R, 3, windows=0.2)._suptitle.get_text()


def test_class_topomaps_with_difference(R, tmp_path):
    fig = plot_class_topomaps(R, windows=0.3, difference=True)
    _check(fig, tmp_path, "class")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("right - left") or t.startswith("left - right") for t in texts)
    with pytest.raises(ValueError, match="exactly two groups"):
        plot_class_topomaps(R, by=None, difference=True)


def test_joint_roi_left_right(R, tmp_path):
    _check(plot_joint(R, windows=[(0.2, 0.4)]), tmp_path, "joint_mean")
    _check(plot_joint(R, epoch=2), tmp_path, "joint_single")
    with pytest.raises(ValueError, match="holds no sample"):
        plot_joint(R, windows=[(2.0, 3.0)])
    fig = plot_roi_timecourse(R, window=0.1)
    _check(fig, tmp_path, "roi")
    assert {ax.get_title().split(" (")[0] for ax in fig.axes if ax.get_title()} == \
        {"frontal", "central", "temporal", "parietal", "occipital"}
    _check(plot_roi_timecourse(R, {"left motor": ["C3"], "right motor": ["C4"]}, group=None), tmp_path, "roi2")
    fig = plot_left_right(R)
    _check(fig, tmp_path, "lr")
    bars = fig.axes[-1]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["left", "midline", "right"]


def test_missing_montage_is_an_error_that_says_what_to_do(epochs, annotate):
    bare = mne.EpochsArray(epochs.get_data(), mne.create_info(epochs.ch_names, 50.0, "eeg"),
                           events=epochs.events, event_id=epochs.event_id, verbose=False)
    torch.manual_seed(0)
    Rb = explain_epochs(annotate(SturmDNN(30, 31, hidden=(4,))), bare)
    assert np.isnan(Rb.x.values).all()  # still labelled
    for draw in (lambda: plot_topomap(Rb), lambda: plot_class_topomaps(Rb), lambda: plot_joint(Rb),
                 lambda: plot_left_right(Rb)):
        with pytest.raises(MontageMissingError, match=r"set_montage\('colin27_1020'\)"):
            draw()
    # a region time course needs no positions when names place the electrodes
    assert isinstance(plot_roi_timecourse(Rb), plt.Figure)
