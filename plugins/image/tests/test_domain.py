"""The image domain: dispatch, labelled relevance on EfficientNet-Lite0, regions, figures, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import sciexplain as sx
from sciexplain_image import (Box, Preprocess, box_shares, explain_image, load_efficientnet_lite0, load_photo,
                              photo_box, plot_box_shares, plot_methods, plot_overlay, plot_pattern,
                              pool_patches, pool_regions, pool_superpixels)
from sciexplain_image.domain import DOMAIN
from sciexplain_image.explain import input_bounds


@pytest.fixture(scope="module")
def effnet():
    return load_efficientnet_lite0()


@pytest.fixture(scope="module")
def chelsea_R(effnet):
    return explain_image(effnet, [load_photo("chelsea"), load_photo("coffee")], names=["chelsea", "coffee"])


def test_domain_registered_and_listed():
    assert "image" in sx.domains()
    assert "sciexplain-image" in sx.domains()["image"]
    from sciexplain.plugins import load_domains
    assert load_domains()["image"].claims(Image.new("RGB", (8, 8)))
    assert not DOMAIN.claims(np.zeros((8, 8, 3), np.uint8))  # arrays go to the core


def test_efficientnet_explained_with_balanced_ledger(chelsea_R, effnet):
    R = chelsea_R
    assert R.dims == ("image", "y", "x") and R.shape == (2, 224, 224)
    assert list(R.target.values) == [285, 967]
    assert list(R.target_name.values) == ["Egyptian cat", "espresso"]
    R.relevance.check()
    # the explained quantity is the model's own logit (canonization changes nothing)
    x = torch.cat([effnet.preprocess(load_photo(p))[0] for p in ("chelsea", "coffee")])
    with torch.no_grad():
        logits = effnet(x)
    np.testing.assert_allclose(R.prediction.values, logits[[0, 1], [285, 967]].numpy(), rtol=1e-5)
    assert "Conv2dStaticSamePadding+BatchNorm2d" in R.attrs["rules"]
    assert "ZBox" in R.attrs["rules"] and "[first layer]" in R.attrs["rules"]
    assert R.attrs["preprocess_mean"] is not None


def test_canonization_reproduces_every_folded_layer(effnet):
    x, _ = effnet.preprocess(load_photo("coffee"))
    errors = sx.Explainer(effnet).check_canonization(x)
    assert len(errors) == 49  # stem, head and every block's convolutions carry a BatchNorm
    assert max(errors.values()) < 1e-5


def test_model_untouched(effnet):
    before = {k: v.clone() for k, v in effnet.state_dict().items()}
    sx.explain(effnet, Image.fromarray(load_photo("rocket")))
    after = effnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in effnet.modules())


def test_dispatch_pil_and_unpooled_colour(effnet):
    img = Image.fromarray(load_photo("chelsea"))
    R = sx.explain(effnet, img, method="gradient_x_input")
    assert R.dims == ("image", "y", "x") and R.attrs["method"] == "gradient_x_input"
    Rc = explain_image(effnet, img, pool_color=False, method="sensitivity")
    assert Rc.dims == ("image", "color", "y", "x") and list(Rc.color.values) == ["R", "G", "B"]


def test_netcdf_round_trip(chelsea_R, tmp_path):
    chelsea_R.to_netcdf(tmp_path / "r.nc")
    back = xr.open_dataarray(tmp_path / "r.nc")
    np.testing.assert_array_equal(back.values, chelsea_R.values)
    assert list(back.image.values) == ["chelsea", "coffee"]
    assert back.attrs["rules"] == chelsea_R.attrs["rules"]


def test_box_shares_sum_to_prediction(chelsea_R, effnet):
    boxes = [photo_box("chelsea", effnet.preprocess), photo_box("coffee", effnet.preprocess)]
    S = box_shares(chelsea_R, boxes)
    np.testing.assert_allclose(S["relevance"].sum("region").values, chelsea_R.prediction.values, rtol=1e-4)
    np.testing.assert_allclose(S["share"].sum("region").values, 1.0, rtol=1e-4)
    assert list(S.region.values) == ["object", "context", "absorbed"]
    with pytest.raises(ValueError, match="outside"):
        box_shares(chelsea_R, Box(0, 300, 0, 10))


def test_region_pooling_conserves(chelsea_R, effnet):
    total = chelsea_R.relevance.total().values
    P = pool_patches(chelsea_R, 9)
    np.testing.assert_allclose(P.relevance.total().values, total, rtol=1e-5)
    assert P.sizes["y"] == 25 and P.sizes["x"] == 25  # 224 = 24*9 + 8
    seen = effnet.preprocess.prepare(load_photo("chelsea")).array
    S, labels = pool_superpixels(chelsea_R, seen, n_segments=32)
    np.testing.assert_allclose(S.relevance.total().values, total, rtol=1e-5)
    assert labels.shape == (224, 224)
    labels2 = np.zeros((224, 224), int)
    labels2[:, 112:] = 1
    LR = pool_regions(chelsea_R, labels2, names={0: "left", 1: "right"})
    np.testing.assert_allclose(LR.sum("region").values, total, rtol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        pool_regions(chelsea_R, np.zeros((10, 10), int))


def test_figures(chelsea_R, effnet):
    import matplotlib.figure
    seen = effnet.preprocess.prepare(load_photo("chelsea")).array
    boxes = [photo_box("chelsea", effnet.preprocess), photo_box("coffee", effnet.preprocess)]
    figs = [plot_overlay(chelsea_R, seen, 0), plot_pattern(chelsea_R, seen, 0),
            plot_box_shares(box_shares(chelsea_R, boxes)),
            plot_methods(effnet, load_photo("coffee"), [("gxi", {"method": "gradient_x_input"})])]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)


def test_the_accessor_draws_the_domains_view(chelsea_R):
    fig = chelsea_R.relevance.plot(0)  # the image domain's overlay, without the photo: the heatmap alone
    assert chelsea_R.attrs["domain"] == "image"
    (ax,) = [a for a in fig.axes if a.get_images()]
    (im,) = ax.get_images()
    lo, hi = im.get_clim()
    assert np.isclose(lo, -hi) and hi > 0
    M = chelsea_R.isel(image=0)
    np.testing.assert_allclose(np.asarray(im.get_array()), (M.sum("color") if "color" in M.dims else M).values,
                               rtol=1e-6)
    fig = chelsea_R.relevance.plot(0, domain=False, share=True)  # the view by dims, shares of f(x)
    assert any(t.get_text() == "share of f(x)" for t in fig.findobj(lambda a: hasattr(a, "get_text")))


def test_input_bounds_match_scaling():
    lo, hi = input_bounds(Preprocess(mean=127.0, scale=128.0))
    assert torch.allclose(lo, torch.full((1, 3, 1, 1), -127 / 128))
    assert torch.allclose(hi, torch.full((1, 3, 1, 1), 1.0))
    lo, hi = input_bounds(Preprocess(mean=(0.0, 10.0, 20.0), scale=255.0))
    assert torch.allclose(lo.flatten(), torch.tensor([0.0, -10 / 255, -20 / 255]))


def test_bad_input(effnet):
    grey = load_photo("chelsea").mean(axis=2).astype(np.uint8)
    R = explain_image(effnet, grey, method="gradient")  # greyscale is replicated to RGB, as documented
    assert R.shape == (1, 224, 224)
    with pytest.raises(ValueError):
        explain_image(effnet, np.zeros((5, 5, 7), np.uint8))  # not an image
    with pytest.raises(ValueError, match="preprocess"):
        explain_image(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval(),
                      np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="different sizes"):
        explain_image(effnet, [load_photo("chelsea"), load_photo("coffee")],
                      preprocess=Preprocess(size=None, crop=None))
    with pytest.raises(ValueError, match="names"):
        explain_image(effnet, load_photo("chelsea"), names=["a", "b"])


def test_dispatch_uses_the_domain_default_preset(effnet):
    R = sx.explain(effnet, Image.fromarray(load_photo("coffee")))
    assert R.attrs["preset"] == "mobilenet-conserving"  # the image domain's default
    assert "ZBox" in R.attrs["rules"] and "ByConvKind" in R.attrs["rules"]
