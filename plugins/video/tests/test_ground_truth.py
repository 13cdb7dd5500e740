"""Ground truth on generated clips: relevance sits on the moving figure and follows its motion."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import sciexplain as sx
import sciexplain_video as sv


@pytest.fixture(scope="module")
def gt_clips(tmp_path_factory):
    items = sv.make_dataset(tmp_path_factory.mktemp("gt"), 2, seed=555)
    return [sv.read_motion_vectors(p) for p, _ in items], [t for _, t in items]


def test_scores_against_a_hand_made_map(gt_clips):
    F, T = gt_clips
    truth = T[0]
    mask = truth.block_mask(16)
    values = np.where(mask, 1.0, -0.5)[None]
    R = xr.DataArray(values, dims=("clip", "frame", "block_y", "block_x"), attrs={"block": 16})
    s = sv.ground_truth_scores(R, [truth])
    assert float(s.inside_share[0]) == 1.0
    assert float(s.area_share[0]) == pytest.approx(mask.mean())
    curve = values[0].sum(axis=(1, 2))
    assert float(s.frame_correlation[0]) == pytest.approx(np.corrcoef(curve, truth.motion)[0, 1])


@pytest.mark.parametrize("kind", ["cnn", "fisher"])
def test_lrp_finds_the_figure(kind, gt_clips):
    F, T = gt_clips
    model = sv.load_pretrained(kind)
    R = sv.explain_motion(model, F, target=[t.label for t in T])
    R.relevance.check()
    s = sv.ground_truth_scores(R, T)
    # measured on 6 clips: inside share 0.72 (CNN) / 0.50 (Fisher) against an area share of 0.30
    assert float(s.inside_share.mean()) > float(s.area_share.mean()) + 0.1
    assert float(s.frame_correlation.mean()) > 0.1


def test_truth_records_still_frames_and_motion():
    frames, truth = sv.render_clip("sideways", 4)
    assert frames.shape == (24, 64, 64) and frames.dtype == np.uint8
    assert truth.motion[0] == 0 and all(truth.motion[t] == 0 for t in truth.still_frames)
    moving = [t for t in range(1, 24) if t not in truth.still_frames]
    assert np.all(truth.motion[moving] == 2) and np.all(truth.moving[:, 1] == 0)
    # the box moved by exactly the recorded displacement
    np.testing.assert_array_equal(np.diff(truth.boxes[:, 0, 0]), truth.moving[1:, 0])
    _, wave = sv.render_clip("wave", 4)
    assert wave.moving_part == 1 and wave.boxes.shape[1] == 2
    assert np.all(np.diff(wave.boxes[:, 0, :], axis=0) == 0)  # the body stands still
