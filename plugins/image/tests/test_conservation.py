"""The image default carries f(x) to the pixels (issue 20): the stored table, the named preset, box shares of f(x)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sciexplain as sx
from sciexplain_image import box_shares, load_efficientnet_lite0, load_photo, photo_box
from sciexplain_image.explain import DEFAULT_PRESET, explain_image, input_bounds, prepare_images

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "benchmarks" / "results" / "conservation.json"
DOMAIN_NAME = "image: EfficientNet-Lite0"
#: the benchmark's label of the default's composite on EfficientNet-Lite0
DEFAULT_LABEL = "epsilon-plus-box, WSquare on depthwise convs (issue's probe)"


def _rows() -> dict:
    if not TABLE.exists():
        pytest.skip("benchmarks/results/conservation.json is not there (plugin installed on its own)")
    return json.loads(TABLE.read_text())[DOMAIN_NAME]["rows"]


@pytest.fixture(scope="module")
def effnet():
    torch.set_num_threads(2)
    return load_efficientnet_lite0()


def test_the_stored_table_backs_the_default():
    """The default is the table's row labelled as the image default; it leaves at most 20% of f(x)
    absorbed (median over the 24 inputs), none above 50%, and beats the random order."""
    rows = _rows()
    row = rows[DEFAULT_LABEL]
    assert row["absorbed_median"] <= 0.20 and row["absorbed_worst"] <= 0.50, row
    assert row["abpc_ci"][0] > rows["random order"]["abpc_ci"][1]
    today = next(k for k in rows if k.startswith("default today"))
    assert rows[today]["absorbed_median"] > 0.9  # what the issue measured, kept in the table


def test_the_default_carries_f_of_x_on_photos(effnet):
    names = ["chelsea", "rocket"]
    R = explain_image(effnet, [load_photo(n) for n in names], names=names)
    R.relevance.check()
    assert R.attrs["preset"] == DEFAULT_PRESET
    share = R.absorbed.values / R.prediction.values
    assert np.all(np.abs(share) <= 0.2), share
    # the box shares are parts of f(x): object + context + absorbed = 1, and the pixels carry most
    S = box_shares(R, [photo_box(n, effnet.preprocess) for n in names])
    np.testing.assert_allclose(S["share"].sum("region").values, 1.0, rtol=1e-4)
    assert np.all(S["share"].sel(region=["object", "context"]).sum("region").values >= 0.8)


def test_the_ledger_of_the_default_shows_where_the_rest_goes(effnet):
    from sciexplain.result import ledger_segments
    x, _ = prepare_images([load_photo("coffee")], effnet.preprocess)
    ledger = sx.ledger(effnet, x, preset=DEFAULT_PRESET, bounds=input_bounds(effnet.preprocess))
    seg = ledger_segments(ledger)
    np.testing.assert_allclose(seg["start"] - sum(seg["values"]) - seg["hidden_total"], seg["end"], atol=1e-4)
    assert seg["end"] >= 0.8


def test_the_named_default_is_the_measured_composite(effnet):
    """On EfficientNet-Lite0, "mobilenet-conserving" is epsilon-plus-box with w^2 on the depthwise convolutions."""
    from torch import nn
    from sciexplain.rules import WSquare, ZPlus
    from sciexplain.rules.presets import ByConvKind
    assert DEFAULT_PRESET == "mobilenet-conserving"
    x, _ = prepare_images([load_photo("chelsea")], effnet.preprocess)
    bounds = input_bounds(effnet.preprocess)
    named = sx.explain(effnet, x, preset=DEFAULT_PRESET, bounds=bounds)
    probe = sx.explain(effnet, x, preset={"base": "epsilon-plus-box",
                                          nn.Conv2d: ByConvKind(depthwise=WSquare(), pointwise=ZPlus(), other=ZPlus())},
                       bounds=bounds)
    np.testing.assert_array_equal(named.values, probe.values)
    assert "WSquare" in named.attrs["rules"] and "ZBox" in named.attrs["rules"]
