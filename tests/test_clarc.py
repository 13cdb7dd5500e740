"""ClArC (Anders et al. 2022): the artifact direction, P-ClArC and A-ClArC on a planted corner tag, explained exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.analysis import clarc, clarc_report
from sciexplain.errors import InputError
from shortcut_data import make_images, tag_mask, trained_model


@pytest.fixture(scope="module")
def setup():
    model, x, y, tagged = trained_model()
    direction = sx.artifact_direction(model, "features", x[tagged], x[(y == 0) & ~tagged])
    y_test = np.repeat(np.arange(3), 60)
    x_clean = make_images(y_test, np.zeros(len(y_test), bool), seed=1)
    other = y_test != 0
    x_tag = make_images(y_test[other], np.ones(other.sum(), bool), seed=2)
    return model, x, y, tagged, direction, (x_clean, y_test), (x_tag, y_test[other])


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_projection_is_the_papers_affine_map():
    torch.manual_seed(0)
    v = torch.randn(3, 2, 2)
    r = 0.7
    proj = clarc.ArtifactProjection(v, r)
    a = torch.randn(5, 3, 2, 2)
    u = (v / v.norm()).reshape(-1).double()
    flat = a.reshape(5, -1).double()
    z = r * u  # a point whose component along v is r
    expected = flat - ((flat - z) @ u)[:, None] * u[None, :]  # h(a) = a - v v^T (a - z)
    out = proj(a).reshape(5, -1).double()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out @ u, torch.full((5,), r, dtype=torch.float64), atol=1e-5, rtol=0)


def test_mean_difference_direction(setup):
    model, x, y, tagged, direction, *_ = setup
    a_art = clarc.layer_activations(model, "features", x[tagged]).reshape(int(tagged.sum()), -1).double()
    a_cln = clarc.layer_activations(model, "features", x[(y == 0) & ~tagged]).reshape(-1, 256).double()
    v = a_art.mean(0) - a_cln.mean(0)
    v = v / v.norm()
    torch.testing.assert_close(direction.vector.reshape(-1).double(), v, atol=1e-6, rtol=1e-5)
    assert direction.artifact_value == pytest.approx(float(a_art.mean(0) @ v), rel=1e-6)
    assert direction.clean_value == pytest.approx(float(a_cln.mean(0) @ v), rel=1e-6, abs=1e-9)
    assert direction.separation > 0


def test_p_clarc_removes_the_shortcut_and_is_explained_exactly(setup):
    model, x, y, tagged, direction, (x_clean, y_clean), (x_tag, y_tag) = setup
    before = _state(model)
    corrected = sx.PClArC(model, "features", direction)
    assert not corrected.training
    R = sx.explain(corrected, torch.from_numpy(x_tag[:20]), 0)
    np.testing.assert_allclose(R.relevance.residual().values, 0.0, atol=1e-4)  # the ledger balances
    report = sx.clarc_report({"original": model, "P-ClArC": corrected}, x_clean, y_clean, x_tag, y_tag, tag_mask())
    acc, share = report.accuracy_artifact.values, report.artifact_share.values
    # the original model reads the tag as class 0 on other classes' images; P-ClArC does not (paper Sec. 5)
    assert acc[0] < 0.5 and acc[1] > acc[0] + 0.3
    assert share[1] < 0.5 * share[0]
    assert report.accuracy_clean.values[1] >= report.accuracy_clean.values[0] - 0.05
    # the user's model is untouched
    assert set(before) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(not isinstance(m, clarc.ArtifactProjection) for m in model.modules())


def test_a_clarc_fine_tunes_a_copy_away_from_the_tag(setup):
    model, x, y, tagged, direction, (x_clean, y_clean), (x_tag, y_tag) = setup
    before = _state(model)
    corrected = sx.AClArC(model, "features", direction).fit(x, y, epochs=2, lr=1e-3)
    report = sx.clarc_report({"original": model, "A-ClArC": corrected}, x_clean, y_clean, x_tag, y_tag, tag_mask())
    assert report.accuracy_artifact.values[1] > report.accuracy_artifact.values[0] + 0.3
    assert report.artifact_share.values[1] < report.artifact_share.values[0]
    # only the layers after "features" were trained; the copy's features are the original ones
    for k, v in corrected.model.features.state_dict().items():
        assert torch.equal(v, before["features." + k])
    assert not torch.equal(corrected.model.classifier[1].weight, before["classifier.1.weight"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    R = sx.explain(corrected, torch.from_numpy(x_tag[:10]), 0)
    np.testing.assert_allclose(R.relevance.residual().values, 0.0, atol=1e-4)


def test_logistic_direction_points_to_the_artifact(setup):
    model, x, y, tagged, direction, *_ = setup
    logistic = sx.artifact_direction(model, "features", x[tagged], x[(y == 0) & ~tagged], method="logistic")
    assert logistic.separation > 0
    assert abs(torch.linalg.vector_norm(logistic.vector) - 1) < 1e-5


def test_relevance_share_formula():
    import xarray as xr
    R = xr.DataArray(np.array([[[1.0, -3.0], [0.0, 4.0]]]), dims=("s", "y", "x"))
    mask = np.array([[True, True], [False, False]])
    np.testing.assert_allclose(clarc_report.relevance_share(R, mask), [4.0 / 8.0])


def test_errors(setup):
    model, x, y, tagged, direction, *_ = setup
    with pytest.raises(InputError, match="no submodule"):
        sx.artifact_direction(model, "nope", x[:4], x[4:8])
    with pytest.raises(InputError, match="do not differ"):
        sx.artifact_direction(model, "features", x[:4], x[:4])
    with pytest.raises(InputError, match="method"):
        sx.artifact_direction(model, "features", x[:4], x[4:8], method="svm")
    with pytest.raises(InputError, match="found in layer"):
        sx.PClArC(model, "classifier", direction)
    with pytest.raises(InputError, match="ArtifactDirection"):
        sx.PClArC(model, "features", direction.vector)
    with pytest.raises(InputError, match="later"):
        clarc.ArtifactProjection(torch.ones(20000), 0.0)
    with pytest.raises(InputError, match="labels"):
        sx.AClArC(model, None, direction).fit(x[:10], y[:9])
    lin = nn.Sequential(nn.Linear(3, 3))
    d = clarc.ArtifactDirection("0", torch.tensor([1.0, 0, 0]), 1.0, 0.0, "mean-difference")
    with pytest.raises(InputError, match="no parameters after"):
        sx.AClArC(lin, None, d).fit(np.zeros((4, 3), np.float32), [0, 1, 2, 0])
