"""EEG figures a reviewer would accept: no overlapping or clipped text, labels, symmetric limits, one set of windows."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import xarray as xr

from sciexplain.result import RELEVANCE_CMAP
from sciexplain_eeg import explain_epochs
from sciexplain_eeg.models import SturmDNN
from sciexplain_eeg.perturbation import PerturbationResult
from sciexplain_eeg.plots import (plot_class_topomaps, plot_joint, plot_left_right, plot_perturbation,
                                  plot_roi_timecourse, plot_topomap)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the repository's reviewer checks
from figure_checks import overlapping_texts, symmetric, texts, texts_outside  # noqa: E402


def diverging_limits(fig) -> list[tuple[float, float]]:
    """(vmin, vmax) of every map drawn with the relevance colour map (scalp maps and images)."""
    return [im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == RELEVANCE_CMAP]


def review(fig, maps: bool = True) -> list[str]:
    """What every figure must pass; returns its texts."""
    assert overlapping_texts(fig) == []
    assert texts_outside(fig) == []
    words = [t.get_text() for t in texts(fig)]
    assert not [w for w in words if "=" in w and "'" in w and "(" in w.split("=")[0]], words  # Foo(kind='x')
    if maps:
        assert diverging_limits(fig) and symmetric(diverging_limits(fig))
    return words


@pytest.fixture(scope="module")
def R(epochs, annotate):
    torch.manual_seed(0)
    return explain_epochs(annotate(SturmDNN(30, 31, hidden=(8,))), epochs)


@pytest.fixture(autouse=True)
def close():
    yield
    plt.close("all")


def _window_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title().endswith(" ms")]


WINDOWS = ["0-200 ms", "200-400 ms", "400-600 ms", "600-800 ms"]


def test_single_trial_maps_pass_review(R):
    fig = plot_topomap(R, 0, windows=0.2)
    review(fig)
    assert _window_titles(fig) == WINDOWS
    assert "LRP" in fig._suptitle.get_text() and "f(x) =" in fig._suptitle.get_text()


def test_class_maps_pass_review_with_the_same_windows(R):
    fig = plot_class_topomaps(R, windows=0.2, difference=True)
    review(fig)
    assert _window_titles(fig) == WINDOWS
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]  # the colour bars are labelled
    assert labels == ["mean relevance per epoch", "difference\n(own scale)"]


def test_joint_maps_pass_review_with_the_same_windows(R):
    fig = plot_joint(R, windows=0.2)
    review(fig)
    assert _window_titles(fig) == WINDOWS


def test_joint_windows_as_pairs_still_labelled_by_their_samples(R):
    fig = plot_joint(R, windows=[(0.2, 0.38)])
    review(fig)
    assert _window_titles(fig) == ["200-380 ms"]
    assert fig.axes[-2].get_xlabel() == "time (s)" and fig.axes[-2].get_ylabel() == "channel"


def test_roi_and_left_right_are_labelled(R):
    fig = plot_roi_timecourse(R, window=0.1)
    review(fig, maps=False)
    assert all(ax.get_ylabel() == "relevance (sum)" for ax in fig.axes if ax.get_visible() and ax.lines
               and ax.get_subplotspec().is_first_col())
    fig = plot_left_right(R)
    words = review(fig)
    title = fig.axes[-1].get_title()
    assert title.startswith("right minus left hemisphere: ") and "in left epochs" in title
    assert "left epochs" in words and "right epochs" in words  # the legend says these are groups of epochs


def _curve(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(np.tile(values, (3, 1)), dims=("epoch", "step"), coords={"step": np.arange(values.size)})


def test_perturbation_shows_coinciding_methods_and_no_reprs():
    steps = np.arange(20, dtype=float)
    down, up = 1 - 0.05 * steps, 1 + 0.02 * steps
    curves = {("LRP", "morf"): _curve(down), ("LRP", "lerf"): _curve(up),
              ("gradient x input", "morf"): _curve(down + 1e-4), ("gradient x input", "lerf"): _curve(up - 1e-4),
              ("sensitivity", "morf"): _curve(1 - 0.01 * steps), ("sensitivity", "lerf"): _curve(1 + 0.01 * steps),
              ("random", "random"): _curve(1 - 0.02 * steps)}
    settings = {"block": 4, "steps": 20, "removal": "BlockRemoval(kind='mean')"}
    result = PerturbationResult(curves=curves, settings=settings)
    fig = plot_perturbation(result)
    words = review(fig, maps=False)
    ax = fig.axes[0]
    assert "BlockRemoval" not in ax.get_title() and "epoch mean" in ax.get_title()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "gradient x input, MoRF (= LRP: the curves coincide)" in legend
    assert "sensitivity, MoRF" in legend and "random order" in legend  # different curves: a line each
    # the coinciding curves are drawn as markers on top, not as a line hidden under LRP's
    (hidden,) = [line for line in ax.lines if line.get_label().startswith("gradient x input, MoRF")]
    assert hidden.get_linestyle() == "None" and hidden.get_marker() not in (None, "None", "")
    assert len({line.get_marker() for line in ax.lines}) == 4
    assert ax.get_xlabel() and ax.get_ylabel() and words


def test_the_demos_mne_topomap_uses_the_same_windows_and_numbers(R):
    from sciexplain_eeg.demo import _mne_topomaps
    from sciexplain_eeg.evoked import to_evoked
    evoked = to_evoked(R, by_event_type=True, as_dict=True)["right"]
    fig = _mne_topomaps(evoked, R, 0.2, "MNE's maps")
    review(fig)
    assert _window_titles(fig) == ["0-200 ms", "200-400 ms", "400-600 ms", "600-800 ms"]
    # the colour scale is that of the window sums of the 'right' epochs' mean (what plot_class_topomaps draws)
    idx = np.flatnonzero(R.condition.values == "right")
    sums = R.relevance.windows("time", 0.2).isel(epoch=idx).values.mean(axis=0)
    (lo, hi), *_ = diverging_limits(fig)
    np.testing.assert_allclose(hi, np.abs(sums).max(), rtol=1e-5)
