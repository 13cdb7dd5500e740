"""Intermediate relevance (``at=``) and filtering (``through=``) of the engine.

Filtering keeps the relevance that flows through chosen channels of a layer; LRP is linear in
the relevance entering a layer, so over a partition of a layer's channels the filtered
explanations add up to the unfiltered one (for layers that every path from input to output
passes, i.e. cuts of the graph). Intermediate relevance at a layer plus what the layers above
absorbed is f(x).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError

try:
    from conftest import FAMILIES, assert_balances, per_sample
except ImportError:  # pytest --import-mode=importlib does not put tests/ on sys.path
    import sys as _sys
    from pathlib import Path as _Path
    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from conftest import FAMILIES, assert_balances, per_sample

#: per family: layers that every path crosses (cuts), whose dim 1 is filtered
CUTS = {
    "mlp": ["1", "2", "3"],
    "cnn_bn": ["features.0", "features.3", "features.6", "head.2"],
    "eeg_conv1d": ["act", "conv2"],
    "residual": ["relu", "relu#3", "add#2"],
    "depthwise_relu6": ["act", "add"],
    "cat_mean_flatten": ["cat", "relu#3"],
    "embedding": ["proj", "relu"],
}
CASES = [(f, layer) for f, layers in CUTS.items() for layer in layers]
PRESETS = ["epsilon", "alpha2-beta1"]


def partition(n: int, k: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    labels[:k] = np.arange(k)[: min(k, n)]  # no empty part when n >= k
    return [np.flatnonzero(labels == i).tolist() for i in range(k) if (labels == i).any()]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("family,layer", CASES, ids=[f"{f}:{layer}" for f, layer in CASES])
def test_filtered_explanations_add_up(family, layer, preset):
    model, x = FAMILIES[family]()
    full = sx.explain(model, x, preset=preset)
    n = sx.explain(model, x, preset=preset, at=layer).shape[1]
    parts = partition(n, 3, seed=len(layer))
    assert len(parts) >= 2
    total = np.zeros(full.shape)
    filtered_out = np.zeros(full.shape[0])
    for keep in parts:
        R = sx.explain(model, x, preset=preset, through={layer: keep})
        assert R.shape == full.shape and "filtered_out" in R.coords
        assert_balances(R)  # the relevance filtered out is counted in absorbed
        np.testing.assert_allclose(R["prediction"].values, full["prediction"].values)
        total += R.values
        filtered_out += R["filtered_out"].values
    scale = np.abs(full.values).max() + 1e-12
    np.testing.assert_allclose(total, full.values, rtol=0, atol=1e-4 * scale)
    # each channel is filtered out by all parts but its own: (k - 1) times the layer's relevance
    at = sx.explain(model, x, preset=preset, at=layer)
    np.testing.assert_allclose(filtered_out, (len(parts) - 1) * per_sample(at.values),
                               rtol=1e-4, atol=1e-5 * np.abs(at.values).sum())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_filter_all_channels_is_no_filter(family):
    model, x = FAMILIES[family]()
    layer = CUTS[family][0]
    n = sx.explain(model, x, at=layer).shape[1]
    full = sx.explain(model, x)
    R = sx.explain(model, x, through={layer: list(range(n))})
    np.testing.assert_allclose(R.values, full.values, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(R["filtered_out"].values, 0.0, atol=1e-8)
    empty = sx.explain(model, x, through={layer: []})
    assert np.abs(empty.values).max() == 0.0
    assert_balances(empty)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("family,layer", CASES, ids=[f"{f}:{layer}" for f, layer in CASES])
def test_intermediate_relevance_plus_absorbed_above_is_fx(family, layer, preset):
    model, x = FAMILIES[family]()
    R = sx.explain(model, x, preset=preset, at=layer)
    assert R.attrs["layer"] == layer
    assert_balances(R)
    # absorbed above the layer is part of the full absorbed; the rest is absorbed below it
    full, led = sx.Explainer(model, "lrp", preset).explain_with_ledger(x)
    names = list(led["layer"].values)
    above = led["absorbed"].values[:, : names.index(layer)].sum(axis=1)
    np.testing.assert_allclose(R["absorbed"].values, above, rtol=1e-4, atol=1e-6)
    # relevance entering the layer's node from above equals the relevance returned at it
    np.testing.assert_allclose(per_sample(R.values), led["entering"].values[:, names.index(layer)],
                               rtol=1e-4, atol=1e-6)


def test_two_filters_partition_both_layers():
    model, x = FAMILIES["mlp"]()
    full = sx.explain(model, x)
    total = np.zeros(full.shape)
    for a in partition(12, 2, 0):
        for b in partition(8, 2, 1):
            R = sx.explain(model, x, through={"1": a, "3": b})
            assert_balances(R)
            total += R.values
    np.testing.assert_allclose(total, full.values, atol=1e-5 * np.abs(full.values).max())


def test_filtering_with_intermediate_relevance():
    model, x = FAMILIES["cnn_bn"]()
    full = sx.explain(model, x, at="features.3")
    total = sum(sx.explain(model, x, at="features.3", through={"head.2": keep}).values
                for keep in partition(16, 4, 2))
    np.testing.assert_allclose(total, full.values, atol=1e-5 * np.abs(full.values).max())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(2, 6))
def test_random_partitions_of_conv_channels(seed, k):
    model, x = FAMILIES["cnn_bn"](seed=seed % 5)
    full = sx.explain(model, x, preset="alpha2-beta1")
    total = sum(sx.explain(model, x, preset="alpha2-beta1", through={"features.6": keep}).values
                for keep in partition(8, k, seed))
    np.testing.assert_allclose(total, full.values, atol=1e-4 * np.abs(full.values).max())


def test_unknown_layers_are_errors():
    model, x = FAMILIES["mlp"]()
    with pytest.raises(InputError, match="not reached"):
        sx.explain(model, x, through={"nope": [0]})
    with pytest.raises(InputError, match="not a module on the path"):
        sx.explain(model, x, at="nope")


def bn_before_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 3))
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.5, 0.5)
        model[2].running_var.uniform_(0.5, 2.0)
    return model.eval(), torch.randn(4, 5)


def test_at_and_through_a_batchnorm_folded_into_the_next_layer():
    """A BatchNorm that precedes a linear layer is folded into it; relevance at its output is the
    relevance at the linear layer's input, so at=/through= on it should work like on any layer."""
    model, x = bn_before_linear()
    at_bn = sx.explain(model, x, at="2")
    assert_balances(at_bn)
    full = sx.explain(model, x)
    total = sum(sx.explain(model, x, through={"2": keep}).values for keep in ([0, 1, 2], [3, 4, 5]))
    np.testing.assert_allclose(total, full.values, atol=1e-5 * np.abs(full.values).max())


def test_out_of_range_channel_is_a_clear_error():
    model, x = FAMILIES["mlp"]()
    with pytest.raises(InputError, match="12"):
        sx.explain(model, x, through={"1": [99]})


def test_non_integer_channel_is_rejected():
    model, x = FAMILIES["mlp"]()
    with pytest.raises(InputError):
        sx.explain(model, x, through={"1": [0.5]})
