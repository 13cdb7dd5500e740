"""R.relevance.plot(): one call that draws any result, checked as a reviewer would."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError, InputTypeError
from sciexplain.result import STYLE, plot_result, save_figure
from figure_checks import diverging_limits, overlapping_texts, symmetric, texts, texts_outside


@pytest.fixture(scope="module")
def image_like():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 16, 3)).eval()
    return sx.explain(m, torch.randn(3, 2, 12, 16), dims=("image", "channel", "y", "x"),
                      coords={"y": np.arange(12), "x": np.arange(16)})


@pytest.fixture(scope="module")
def profile():
    torch.manual_seed(1)
    R = sx.explain(nn.Sequential(nn.Linear(40, 3)).eval(), torch.randn(2, 40), dims=("sample", "time"),
                   coords={"time": np.arange(40) * 4.0})
    R.time.attrs["units"] = "ms"
    return R


def _reviewed(fig):
    assert not overlapping_texts(fig), overlapping_texts(fig)
    assert not texts_outside(fig), texts_outside(fig)
    assert symmetric(diverging_limits(fig))
    return [t.get_text() for t in texts(fig)]


def test_a_map_is_drawn_the_right_way_up_with_the_channel_summed(image_like):
    fig = image_like.relevance.plot(1)
    words = _reviewed(fig)
    ax = fig.axes[0]
    (im,) = ax.get_images()
    expected = image_like.isel(image=1).sum("channel").values
    np.testing.assert_array_equal(np.asarray(im.get_array()), expected)  # the values themselves, first dim = rows
    assert im.origin == "upper"
    assert ax.get_ylabel() == "y" and ax.get_xlabel() == "x"
    assert "summed over channel" in ax.get_title() and "f(x) = " in ax.get_title()
    assert "relevance (units of f(x))" in words  # the colour bar says what the colours are
    lo, hi = im.get_clim()
    assert hi > 0 and np.isclose(lo, -hi)


def test_share_of_fx_divides_by_the_samples_prediction(image_like):
    fig = image_like.relevance.plot(2, share=True)
    _reviewed(fig)
    (im,) = fig.axes[0].get_images()
    f = float(image_like.prediction[2])
    np.testing.assert_allclose(np.asarray(im.get_array()), image_like.isel(image=2).sum("channel").values / f,
                               rtol=1e-6)
    assert any(t.get_text() == "share of f(x)" for t in texts(fig))


def test_a_profile_is_a_curve_over_its_coordinate_with_units(profile):
    fig = profile.relevance.plot(0)
    _reviewed(fig)
    ax = fig.axes[0]
    line = ax.get_lines()[-1]
    np.testing.assert_array_equal(line.get_xdata(), profile.time.values)
    np.testing.assert_allclose(line.get_ydata(), profile.isel(sample=0).values)
    assert ax.get_xlabel() == "time (ms)"
    lo, hi = ax.get_ylim()
    assert np.isclose(lo, -hi)


def test_a_total_stands_beside_absorbed_and_fx(profile):
    T = profile.relevance.pool("time")
    fig = T.relevance.plot(1)
    _reviewed(fig)
    heights = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [float(T[1]), float(T.absorbed[1]), float(T.prediction[1])], rtol=1e-6)
    np.testing.assert_allclose(heights[0] + heights[1], heights[2], rtol=1e-4)  # the ledger, drawn


def test_pooled_over_the_batch_draws_without_a_sample(profile):
    P = profile.relevance.pool("sample")
    fig = P.relevance.plot(None)
    _reviewed(fig)


def test_bad_calls_say_what_to_do(image_like, profile):
    with pytest.raises(InputError, match="out of range"):
        image_like.relevance.plot(3)
    with pytest.raises(InputError, match="unknown arguments"):
        image_like.relevance.plot(0, image=np.zeros((12, 16)))
    with pytest.raises(InputTypeError, match="Dataset"):
        plot_result(xr.Dataset({"a": image_like}))
    zero = profile.copy()
    zero["prediction"] = ("sample", np.zeros(2))
    with pytest.raises(InputError, match="f\\(x\\) of this sample is 0"):
        zero.relevance.plot(0, share=True)


def test_save_figure_writes_300_dpi_png_and_vector_pdf(image_like, tmp_path):
    from PIL import Image
    fig = image_like.relevance.plot(0)
    png = save_figure(fig, tmp_path / "r.png")
    pdf = save_figure(fig, tmp_path / "r.pdf")
    dpi = Image.open(png).info["dpi"]
    assert round(dpi[0]) == 300 and STYLE["savefig.dpi"] == 300
    assert pdf.read_bytes().startswith(b"%PDF")


def test_plot_heatmaps_needs_no_titles_and_keeps_offsets_clear(image_like):
    from sciexplain.result import plot_heatmaps
    maps = [image_like.isel(image=i).sum("channel") * 1e-5 for i in range(3)]
    fig = plot_heatmaps(maps)
    assert not overlapping_texts(fig), overlapping_texts(fig)
    assert symmetric(diverging_limits(fig))


def test_the_reviewer_checks_catch_what_they_look_for():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("a long title that runs on")
    ax.text(0.5, 1.02, "collides", transform=ax.transAxes, ha="center")
    ax.text(1.5, 0.5, "beyond the edge", transform=ax.transAxes)
    ax.imshow(np.arange(4.0).reshape(2, 2), vmin=-1, vmax=3)
    assert overlapping_texts(fig)
    assert "beyond the edge" in texts_outside(fig)
    assert not symmetric(diverging_limits(fig))
    plt.close(fig)


def test_method_title_and_styled():
    from sciexplain.result import method_title, styled
    R = xr.DataArray([1.0], dims=("sample",), attrs={"method": "lrp", "preset": "custom mapping (base='epsilon-plus')"})
    assert method_title(R) == "LRP, epsilon-plus with custom rules"
    assert method_title(R.assign_attrs(preset="epsilon")) == "LRP epsilon"
    assert method_title(R.assign_attrs(method="gradient_x_input")) == "gradient x input"
    import matplotlib

    @styled
    def constrained():
        return matplotlib.rcParams["figure.constrained_layout.use"], matplotlib.rcParams["savefig.dpi"]

    assert constrained() == (True, 300)
