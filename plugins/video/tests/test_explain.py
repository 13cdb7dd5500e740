"""Explanations of motion fields: contract, dispatch, pooling, I-frames, both models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
import sciexplain_video as sv


def test_cnn_lrp_contract(cnn, fields):
    R = sx.explain(cnn, fields[0])  # dispatched through the sciexplain.domains entry point
    assert R.dims == ("clip", "frame", "block_y", "block_x")
    assert R.attrs["method"] == "lrp" and R.attrs["decomposes"] == "f(x)"
    R.relevance.check()
    for name in ("prediction", "target", "absorbed", "predicted", "target_name", "path"):
        assert R.coords[name].dims == ("clip",)
    assert R.attrs["classes"] == "updown, sideways, wave"
    assert R.coords["time"].dims == ("frame",) and R.coords["frame_type"].values[0] == "I"
    assert R.coords["y_origin"].values.tolist() == [0, 16, 32, 48]
    with torch.no_grad():
        logits = cnn(torch.as_tensor(fields[0].to_array()[None]))
    assert float(R.prediction[0]) == pytest.approx(float(logits.max()), rel=1e-5)
    assert R.target_name.values[0] == cnn.classes[int(logits.argmax())]


def test_list_of_fields_and_targets(cnn, fields, clips):
    labels = [t.label for _, t in clips]
    R = sx.explain(cnn, fields, target=labels)
    assert R.sizes["clip"] == 3 and R.target.values.tolist() == labels
    R.relevance.check()
    assert R.target_name.values.tolist() == list(sv.ACTIONS)


def test_pooling_per_frame_and_windows_in_seconds(cnn, fields):
    R = sv.explain_motion(cnn, fields)
    per_frame = R.relevance.pool("block_y", "block_x")
    assert per_frame.dims == ("clip", "frame")
    per_frame.relevance.check()
    np.testing.assert_allclose(per_frame.sum("frame") + R.absorbed, R.prediction, rtol=1e-4, atol=1e-5)
    W = R.relevance.windows("frame", 0.5, coord="time")
    assert W.sizes["frame"] == 4  # 2 s at 12 fps in windows of 0.5 s
    np.testing.assert_allclose(W.frame_start.values, [0, 0.5, 1.0, 1.5])
    W.relevance.check()
    left = R.relevance.group("block_x", {"left": [0, 1], "right": [2, 3]})
    left.relevance.check()
    np.testing.assert_allclose(per_frame.values, sv.frame_relevance(R).values)


def test_components_kept_and_pooled(cnn, fields):
    Rc = sv.explain_motion(cnn, fields[0], pool_components=False)
    assert Rc.dims == ("clip", "frame", "block_y", "block_x", "component")
    assert Rc.component.values.tolist() == ["dx", "dy"]
    Rc.relevance.check()
    R = sv.explain_motion(cnn, fields[0])
    np.testing.assert_allclose(Rc.sum("component").values, R.values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["lrp", "gradient_x_input"])
def test_i_frames_get_no_relevance_and_are_flagged(cnn, fields, method):
    R = sv.explain_motion(cnn, fields[0], method=method)
    flags = R.coords["has_vectors"].values
    assert not flags[0] and not flags[12]
    assert (R.isel(frame=[0, 12]).values == 0).all()
    assert np.abs(R.isel(frame=slice(1, 12)).values).sum() > 0


def test_sensitivity_result(cnn, fields):
    R = sv.explain_motion(cnn, fields[0], method="sensitivity")
    assert R.attrs["decomposes"] == "squared gradient norm"
    assert (R.values >= 0).all()


def test_netcdf_round_trip(cnn, fields, tmp_path):
    R = sv.explain_motion(cnn, fields)
    R.to_netcdf(tmp_path / "R.nc")
    back = xr.open_dataarray(tmp_path / "R.nc")
    np.testing.assert_allclose(back.values, R.values)
    assert back.frame_type.values.tolist() == R.frame_type.values.tolist()
    back.relevance.check()
    back.close()


def test_frame_types_differing_between_clips(cnn, fields, tmp_path):
    frames, _ = sv.render_clip("updown", 7)
    p = sv.encode_clip(frames, tmp_path / "g8.mp4", options={"bf": "0", "g": "8", "refs": "1"})
    other = sv.read_motion_vectors(p)
    R = sv.explain_motion(cnn, [fields[0], other])
    assert R.coords["frame_type"].dims == ("clip", "frame")
    assert R.frame_type.values[1, 8] == "I" and R.frame_type.values[0, 8] == "P"
    R.relevance.check()
    sv.plot_frame_curve(R, clip=1)


def test_model_left_unchanged(small_cnn, fields):
    before = {k: v.clone() for k, v in small_cnn.state_dict().items()}
    sv.explain_motion(small_cnn, fields)
    assert all(torch.equal(v, before[k]) for k, v in small_cnn.state_dict().items())
    assert not small_cnn.training


# -- the Fisher-vector model --------------------------------------------------------------------

def test_fisher_lrp_balances_at_block_level(fisher_model, fields):
    R = sx.explain(fisher_model, fields)
    assert R.dims == ("clip", "frame", "block_y", "block_x")
    R.relevance.check()
    np.testing.assert_allclose(R.absorbed.values, R.absorbed_model.values + R.absorbed_unassigned.values)
    # I-frames carry no vectors, vote in no histogram and get exactly zero
    assert (R.isel(frame=[0, 12]).values == 0).all()
    # the descriptor-level explanation of the core, spread over blocks, conserves its total
    x, records = sv.descriptor_batch(fields, fisher_model.spec)
    # the plugin's default preset, as the block-level call above uses it
    Rd = sx.explain(fisher_model, x, dims=("clip", "descriptor", "feature"),
                    preset=sv.explain.DEFAULT_PRESET)
    Rd.relevance.check()
    np.testing.assert_allclose(R.relevance.total().values + R.absorbed_unassigned.values,
                               Rd.relevance.total().values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(R.prediction.values, Rd.prediction.values)
    blocks, _ = records[1].to_blocks(Rd.values[1])
    np.testing.assert_allclose(R.values[1], blocks, rtol=1e-6, atol=1e-9)


def test_fisher_prediction_is_the_svm_decision(fisher_model, fields):
    from skimage.feature import fisher_vector
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(fisher_model.fisher.n_components, covariance_type="diag")
    gmm.weights_ = fisher_model.fisher.weights.double().numpy()
    gmm.means_ = fisher_model.fisher.means.double().numpy()
    gmm.covariances_ = fisher_model.fisher.variances.double().numpy()
    gmm.precisions_cholesky_ = 1 / np.sqrt(gmm.covariances_)
    d = sv.compute_descriptors(fields[2].field.values, fisher_model.spec)
    fv = fisher_vector(d.values.astype(np.float64), gmm, improved=True, alpha=0.5)
    w = fisher_model.linear.weight.detach().double().numpy()
    b = fisher_model.linear.bias.detach().double().numpy()
    scores = w @ fv + b
    R = sv.explain_motion(fisher_model, fields[2])
    assert float(R.prediction[0]) == pytest.approx(scores.max(), rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("method", ["sensitivity", "gradient_x_input"])
def test_fisher_gradient_methods(fisher_model, fields, method):
    R = sv.explain_motion(fisher_model, fields[0], method=method)
    assert R.dims == ("clip", "frame", "block_y", "block_x")
    assert (R.isel(frame=[0, 12]).values == 0).all()
    assert np.isfinite(R.values).all() and np.abs(R.values).sum() > 0


def test_fisher_block_perturbation_recomputes_descriptors(fisher_model, fields):
    R = sv.explain_motion(fisher_model, fields[:2])
    curve = sv.block_perturbation(fisher_model, fields[:2], R, steps=6, regions_per_step=8)
    assert curve.sizes == {"clip": 2, "step": 7}
    np.testing.assert_allclose(curve.isel(step=0).values, R.prediction.values, rtol=1e-4, atol=1e-5)
    # zeroing the 48 most relevant block-frames lowers the explained score
    assert (curve.isel(step=-1).values < R.prediction.values).all()


def test_regions_of_the_frame(cnn, fields):
    R = sv.explain_motion(cnn, fields)
    P = sv.pool_regions(R, {"top-left": (0, 0, 32, 32), "bottom": (0, 32, 64, 64)})
    assert P.dims == ("clip", "frame", "region")
    assert P.region.values.tolist() == ["top-left", "bottom", "other"]
    P.relevance.check()
    np.testing.assert_allclose(P.sel(region="top-left").values, R.isel(block_y=[0, 1], block_x=[0, 1]).sum(
        ("block_y", "block_x")).values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(P.sum("region").values, R.sum(("block_y", "block_x")).values, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="overlaps"):
        sv.pool_regions(R, {"a": (0, 0, 40, 40), "b": (16, 16, 64, 64)})
    with pytest.raises(ValueError, match="pixel box"):
        sv.pool_regions(R, {"a": (10, 0, 5, 40)})


def test_the_default_passes_the_svm_bias_share_on_to_the_blocks(fisher_model, fields):
    """Issue 20: under the default the SVM's bias absorbs nothing (BiasToInputs on dense layers);
    under plain epsilon-plus it absorbs its share, b R / (z + eps), which the blocks then lack."""
    R = sv.explain_motion(fisher_model, fields)
    R.relevance.check()
    assert "BiasToInputs" in R.attrs["rules"]
    pred = R.prediction.values
    # what is left is the Fisher vector unit's own (its stabilisers), ~1e-4 of f(x)
    np.testing.assert_allclose(R.absorbed_model.values, 0.0, atol=1e-3 * float(np.abs(pred).max()))
    old = sv.explain_motion(fisher_model, fields, preset="epsilon-plus")
    b = fisher_model.linear.bias.detach().numpy()[R.target.values.astype(int)]
    # Epsilon(1e-6) on the SVM: its bias keeps b / f(x) of the relevance f(x) entering it
    np.testing.assert_allclose(old.absorbed_model.values, b, atol=1e-3 * float(np.abs(pred).max()))
    assert np.all(np.abs(b) > 1e-3)
