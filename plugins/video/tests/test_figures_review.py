"""Video figures a reviewer would accept: no overlapping or clipped text, labels, symmetric limits, sizes."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import sciexplain_video as sv
from sciexplain.result import RELEVANCE_CMAP

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the repository's reviewer checks
from figure_checks import overlapping_texts, symmetric, texts, texts_outside  # noqa: E402


def diverging_limits(fig) -> list[tuple[float, float]]:
    return [im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == RELEVANCE_CMAP]


def review(fig) -> list[str]:
    assert overlapping_texts(fig) == []
    assert texts_outside(fig) == []
    words = [t.get_text() for t in texts(fig)]
    assert not [w for w in words if "(lrp)" in w or "=" in w and "(" in w.split("=")[0] and "'" in w], words
    assert symmetric(diverging_limits(fig))
    return words


@pytest.fixture(autouse=True)
def close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def R(cnn, fields):
    return sv.explain_motion(cnn, fields)


def test_frame_curve_is_labelled(R, clips):
    fig = sv.plot_frame_curve(R, clip=1, truth=clips[1][1])
    review(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel().startswith("relevance per frame")
    assert "f(x) =" in ax.get_title() and "LRP" in ax.get_title()
    assert fig.axes[1].get_ylabel() == "true motion (px)" and fig.axes[1].spines["right"].get_visible()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["relevance per frame", "true motion (px/frame)"]


def test_frames_fill_the_page(R):
    fig = sv.plot_frames(R, clip=0, n=4)
    review(fig)
    assert len(diverging_limits(fig)) == 4
    frames = [ax for ax in fig.axes if ax.get_images()]
    fig.canvas.draw()
    # the four thumbnails take most of the page width (no small pictures in an empty canvas)
    width = sum(ax.get_window_extent().width for ax in frames) / fig.bbox.width
    assert width > 0.6
    (cb,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert cb.get_ylabel() == "relevance per block"


def test_wide_frames_two_to_a_row(cnn, tmp_path):
    rng = np.random.default_rng(0)
    frames = np.zeros((12, 32, 128), np.uint8) + (rng.random((32, 128)) * 200).astype(np.uint8)
    for t in range(12):  # a textured block moving right
        frames[t, 8:24, 8 + 4 * t:24 + 4 * t] = 255
    path = sv.encode_clip(frames, tmp_path / "wide.mp4")
    Rw = sv.explain_motion(cnn, sv.read_motion_vectors(path))
    fig = sv.plot_frames(Rw, n=4)
    review(fig)
    frames_axes = [ax for ax in fig.axes if ax.get_images()]
    rows = {round(ax.get_position().y0, 3) for ax in frames_axes}
    assert len(frames_axes) == 4 and len(rows) == 2
    assert fig._suptitle.get_text().startswith("wide.mp4: class ")


def test_perturbation_curves_distinguishable(cnn, fields, R):
    curves = {"LRP": sv.block_perturbation(cnn, fields, R, steps=6),
              "LRP again": sv.block_perturbation(cnn, fields, R, steps=6)}
    fig = sv.plot_perturbation(curves)
    review(fig)
    ax = fig.axes[0]
    assert len({(line.get_marker(), line.get_linestyle()) for line in ax.lines}) == 2
