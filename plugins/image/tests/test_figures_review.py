"""Image figures a reviewer would accept: no overlapping or clipped text, labels, symmetric limits, no reprs."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from sciexplain_image import Box, Preprocess, box_shares, explain_image  # noqa: E402
from sciexplain_image.plots import plot_box_shares, plot_methods, plot_overlay, plot_pattern  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the repository's reviewer checks
from figure_checks import overlapping_texts, symmetric, texts, texts_outside  # noqa: E402
from sciexplain.result import RELEVANCE_CMAP  # noqa: E402

SPEC = Preprocess(size=None, crop=None, mean=127.5, scale=127.5)


def diverging_limits(fig) -> list[tuple[float, float]]:
    """(vmin, vmax) of every map drawn with the relevance colour map (photos drawn in RGB are not maps)."""
    return [im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == RELEVANCE_CMAP]


def review(fig) -> None:
    """What every figure must pass: nothing overlaps, nothing leaves the canvas, no code reprs, maps centred."""
    assert overlapping_texts(fig) == []
    assert texts_outside(fig) == []
    words = [t.get_text() for t in texts(fig)]
    assert not [w for w in words if "(" in w and "=" in w.split("(", 1)[1] and "'" in w], words  # Foo(kind='x')
    assert not [w for w in words if "<" in w and ">" in w], words
    assert symmetric(diverging_limits(fig))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(),
                      nn.Linear(4 * 8 * 8, 3)).eval()
    m.preprocess = SPEC
    return m


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]


@pytest.fixture(scope="module")
def R(model, photos):
    return explain_image(model, photos, names=["first photo", "second", "third"])


@pytest.fixture(autouse=True)
def close():
    yield
    plt.close("all")


def test_overlay_passes_review(R, photos):
    fig = plot_overlay(R, photos[0], 0)
    review(fig)
    assert "(" in fig._suptitle.get_text() and "f(x) =" in fig._suptitle.get_text()
    (cb,) = [ax for ax in fig.axes if ax.get_ylabel()]
    assert cb.get_ylabel() == "relevance (units of f(x))"
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "input, relevance on top\n(opaque where |R| is large)", "relevance"]
    review(plot_overlay(R, None, 1))  # the heatmap alone, as R.relevance.plot() draws it


def test_methods_panels_labelled_and_inside(model, photos):
    fig = plot_methods(model, photos[0], [("sensitivity", {"method": "sensitivity"}),
                                          ("gradient x input", {"method": "gradient_x_input"}),
                                          ("LRP mobilenet-\nconserving (default)", {"preset": "mobilenet-conserving"}),
                                          ("LRP epsilon-plus-box", {"preset": "epsilon-plus-box"})])
    review(fig)
    labels = [a.get_ylabel() for ax in fig.axes for a in ax.child_axes if a.get_ylabel()]
    assert labels == ["squared gradient", "relevance", "relevance", "relevance"]  # one colour bar per method
    # the colour bars write their limits out: no offset text such as "1e-5" above a bar
    assert all(not a.yaxis.get_offset_text().get_text() for ax in fig.axes for a in (ax, *ax.child_axes))
    assert len(diverging_limits(fig)) == 4 + 0 and "f(x) =" in fig._suptitle.get_text()


def test_pattern_is_not_the_input(R, photos):
    fig = plot_pattern(R, photos[0], 0)
    review(fig)
    shown = fig.axes[1].get_images()[0].get_array()
    # pixels with no positive relevance are black: the pattern is the input only where the evidence is
    r = R.isel(image=0).values
    assert np.all(np.asarray(shown)[r <= 0] == 0)
    assert np.asarray(shown)[r > 0].max() > 0


def test_box_shares_colours_and_sum(R):
    S = box_shares(R, [Box(4, 20, 4, 20)] * 3)
    fig = plot_box_shares(S)
    review(fig)
    ax = fig.axes[0]
    colours = {tuple(np.round(p.get_facecolor(), 3)) for p in ax.patches}
    assert len(colours) == 3  # object, context and absorbed each their own colour
    assert ax.get_ylabel() == "share of f(x)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["object", "context", "absorbed"]


def test_models_side_by_side_one_scale_per_row():
    import sciexplain.errors as sx_errors
    from sciexplain_image import load_fashion_cnn, load_fashion_vit, plot_models
    from sciexplain_image.fashion import load_fashion_mnist
    images = list(load_fashion_mnist("test")[0][:3])
    rows = {"FashionCNN": explain_image(load_fashion_cnn(), images),
            "FashionViT": explain_image(load_fashion_vit(), images)}
    fig = plot_models(rows, images, title="each network with its default preset")
    review(fig)
    limits = diverging_limits(fig)
    assert len(limits) == 6 and len({lim for lim in limits[:3]}) == 1 and len({lim for lim in limits[3:]}) == 1
    assert limits[0] != limits[3]  # a colour scale per model
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() and "units" not in ax.get_ylabel()]
    assert labels == ["input", "FashionCNN", "FashionViT"]
    titles = [ax.get_title() for ax in fig.axes[3:6]]
    assert all(t.split("\n")[1].startswith("f(x) = ") for t in titles)
    assert sum("units of f(x)" in t.get_text() for t in texts(fig)) == 2  # a colour bar per row
    with pytest.raises(sx_errors.InputError, match="same number"):
        plot_models({"a": rows["FashionCNN"], "b": rows["FashionViT"].isel(image=[0])})
    plt.close(fig)
