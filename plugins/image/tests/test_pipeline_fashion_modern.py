"""``examples/fashion_modern.toml`` on its small settings: the shipped Fashion ViT in a pipeline, against
the plugin's own explanation of the same Fashion-MNIST test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
import sciexplain_image as si

pytest.importorskip("dask")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fashion_modern.toml"


def _provenance(path: Path) -> dict:
    """The provenance record a pipeline output carries."""
    from sciexplain.pipeline import read_provenance
    return read_provenance(path)


@pytest.fixture(scope="module")
def run_small(tmp_path_factory):
    from sciexplain.pipeline import run
    out = tmp_path_factory.mktemp("fashion_modern")
    return run(EXAMPLE, small=True, out=out, progress=False), out


@pytest.fixture(scope="module")
def reference():
    """The first four test images explained by the plugin itself, with the model's default preset."""
    images, labels = si.load_fashion_mnist("test")
    vit = si.load_fashion_vit()
    return images[:4], labels[:4], vit


def test_the_fashion_loader_defers_to_a_models_own_preset():
    load = si.DOMAIN.pipeline_loaders()["fashion_mnist"]
    defaults = load(n=1)["explain"]
    vit, convnext, cnn = (si.DOMAIN.pipeline_models()[n](seed=0)
                          for n in ("fashion_vit", "fashion_convnext", "fashion_cnn"))
    assert defaults(vit) == {"preset": si.fashion_modern.DEFAULT_PRESETS["FashionViT"]}
    assert defaults(convnext) == {"preset": si.fashion_modern.DEFAULT_PRESETS["FashionConvNeXt"]}
    assert defaults(cnn) == {"preset": "epsilon-plus-box", "bounds": (0.0, 1.0)}  # as before


def test_fashion_modern_example_matches_the_plugin(run_small, reference):
    result, out = run_small
    images, labels, vit = reference
    lrp = si.explain_image(vit, list(images), pool_color=False)  # preset=None: vit.default_preset
    gxi = si.explain_image(vit, list(images), method="gradient_x_input", pool_color=False)
    for label, ref in (("lrp", lrp), ("gradient_x_input", gxi)):
        R = result.relevance[label].load()
        assert R.dims == ("image", "color", "y", "x") and R.shape == ref.shape == (4, 1, 28, 28)
        np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6 * np.abs(ref.values).max())
        assert R.coords["target"].values.tolist() == ref.coords["target"].values.tolist()
        np.testing.assert_allclose(R.coords["prediction"].values, ref.coords["prediction"].values, rtol=1e-5)
        assert R.coords["label"].values.tolist() == labels.tolist()
    # the ledger: pixel relevance + absorbed = logit, per image
    R = result.relevance["lrp"].load()
    R.relevance.check(rtol=1e-5)
    with torch.no_grad():
        logits = vit(si.fashion_to_tensor(images))
    f = logits[torch.arange(4), torch.as_tensor(R.coords["target"].values)].numpy()
    np.testing.assert_allclose(R.sum(("color", "y", "x")).values + R.coords["absorbed"].values, f,
                               rtol=1e-5, atol=1e-5)
    # patches: 7 x 7 of 4 x 4 pixels, each the sum of its pixels
    with xr.open_dataarray(out / "pooled_patches_lrp.nc") as P:
        blocks = lrp.sum("color").values.reshape(4, 7, 4, 7, 4).sum((2, 4))
        assert P.dims == ("image", "y", "x") and P.shape == (4, 7, 7)
        assert P.coords["y_start"].values.tolist() == list(range(0, 28, 4))
        np.testing.assert_allclose(P.values, blocks, rtol=1e-5, atol=1e-6 * np.abs(blocks).max())
    assert {("lrp", "morf"), ("lrp", "lerf"), ("gradient_x_input", "morf"), ("random", "random")} <= \
        {(r["method"], r["order"]) for r in result.evaluation}
    # the perturbation curves start at the unperturbed logit
    with xr.open_dataarray(out / "perturbation_lrp_morf.nc") as c:
        np.testing.assert_allclose(c.values[:, 0], f, rtol=1e-5)


def test_fashion_modern_outputs_carry_their_provenance(run_small):
    result, out = run_small
    sha = result.provenance["config_sha256"]
    for name in ("overlay_first", "overlay_first_gradient_x_input", "perturbation"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    expected = ["relevance_lrp.nc", "relevance_gradient_x_input.nc", "pooled_patches_lrp.nc",
                "perturbation_lrp_morf.nc", "perturbation_random.nc", "evaluation.csv", "provenance.json"]
    for path in [out / f for f in expected] + sorted((out / "figures").iterdir()):
        assert _provenance(path)["config_sha256"] == sha, path
    assert result.provenance["config"]["model"]["name"] == "fashion_vit"
    inputs = {Path(i["path"]).name for i in result.provenance["inputs"]}
    assert any("t10k" in name for name in inputs)  # the Fashion-MNIST test files, hashed


def test_pipeline_results_name_the_explained_class(run_small):
    """The shipped Fashion models carry class_names: the pipeline's relevance names each sample's
    explained class (saved with it), and the overlay figure's title shows the name."""
    result, out = run_small
    R = result.relevance["lrp"]
    expected = [si.FASHION_CLASSES[int(t)] for t in R.target.values]
    assert list(R.target_name.values) == expected
    with xr.open_dataarray(out / "relevance_lrp.nc") as saved:
        assert [str(v) for v in saved.target_name.values] == expected
    from sciexplain_image.plots import plot_overlay
    fig = plot_overlay(R.relevance.pool("color"), None, 0)
    titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
    assert any(expected[0] in t for t in titles), titles
