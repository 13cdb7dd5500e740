"""Layer-dependent rules of sciexplain.rules.presets: ByConvKind, ScaledEpsilon, NoBias, conv_kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import RuleError
from sciexplain.rules.presets import ByConvKind, NoBias, ScaledEpsilon, conv_kind
from sciexplain.rules.propagation import AffineLayer
from sciexplain.rules import Epsilon, Gamma, Pass, ZPlus


class Block(nn.Module):
    """A MobileNet-style inverted residual: expand 1x1, depthwise 3x3, project 1x1, skip."""

    def __init__(self, c: int = 4, e: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.expand = nn.Conv2d(c, e, 1)
        self.depthwise = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.project = nn.Conv2d(e, c, 1)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        y = torch.relu(self.depthwise(torch.relu(self.expand(h))))
        y = self.project(y) + h
        return self.fc(y.mean(dim=(2, 3)))


def block(seed: int = 0):
    torch.manual_seed(seed)
    return Block().eval(), torch.randn(3, 3, 6, 6)


def layer_of(m: nn.Module) -> AffineLayer:
    if isinstance(m, nn.Linear):
        return AffineLayer("l", "Linear", m.weight, m.bias, lambda x, w: nn.functional.linear(x, w))
    return AffineLayer("c", "Conv2d", m.weight, m.bias, lambda x, w: m._conv_forward(x, w, None))


def test_conv_kind_tells_depthwise_pointwise_full_and_dense_apart():
    m = Block()
    x8 = torch.zeros(1, 8, 5, 5)
    assert conv_kind(layer_of(m.depthwise), x8) == "depthwise"
    assert conv_kind(layer_of(m.expand), torch.zeros(1, 4, 5, 5)) == "pointwise"
    assert conv_kind(layer_of(m.project), x8) == "pointwise"
    assert conv_kind(layer_of(m.stem), torch.zeros(1, 3, 5, 5)) == "conv"
    assert conv_kind(layer_of(m.fc), torch.zeros(1, 4)) == "dense"
    grey = nn.Conv2d(1, 4, 3)  # one input channel: weight (4, 1, 3, 3) but not depthwise
    assert conv_kind(layer_of(grey), torch.zeros(1, 1, 5, 5)) == "conv"


def test_by_conv_kind_equals_the_mapping_by_path():
    model, x = block()
    by_kind = sx.explain(model, x, preset={nn.Conv2d: ByConvKind(depthwise=Gamma(0.5), pointwise=Epsilon(0.1),
                                                                 other=ZPlus()), nn.Linear: Epsilon(1e-6)})
    by_path = sx.explain(model, x, preset={"depthwise": Gamma(0.5), "expand": Epsilon(0.1),
                                           "project": Epsilon(0.1), "stem": ZPlus(), "fc": Epsilon(1e-6)})
    np.testing.assert_allclose(by_kind.values, by_path.values, rtol=1e-4, atol=1e-7)
    by_kind.relevance.check()
    swapped = sx.explain(model, x, preset={nn.Conv2d: ByConvKind(depthwise=Epsilon(0.1), pointwise=Gamma(0.5),
                                                                 other=ZPlus()), nn.Linear: Epsilon(1e-6)})
    assert not np.allclose(swapped.values, by_kind.values)  # the choice matters


def _one_layer(seed: int, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    m = nn.Linear(7, 4, bias=bias)
    with torch.no_grad():
        m.weight.copy_(torch.randn(4, 7, generator=g))
        if bias:
            m.bias.copy_(torch.randn(4, generator=g))
    x = torch.randn(5, 7, generator=g, dtype=torch.float32)
    return m.eval(), x


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 2.0), st.booleans())
def test_scaled_epsilon_is_its_formula(seed, factor, include_bias):
    m, x = _one_layer(seed)
    R = sx.explain(m, x, preset=ScaledEpsilon(factor, include_bias=include_bias), target=1)
    X, W, b = x.double().numpy(), m.weight.detach().double().numpy(), m.bias.detach().double().numpy()
    Z = X @ W.T + b  # (batch, out)
    eps = factor * Z.std(axis=1, ddof=1) + 1e-9  # per sample, over the layer's outputs (torch's std)
    den = (Z[:, 1] - (0 if include_bias else b[1]))
    stab = np.where(Z[:, 1] >= 0 if include_bias else den >= 0, 1.0, -1.0) * eps
    want = X * W[1] / (den + stab)[:, None] * Z[:, 1][:, None]
    np.testing.assert_allclose(R.values, want, rtol=2e-4, atol=2e-5)
    R.relevance.check()


def test_scaled_epsilon_is_per_sample_and_scale_free():
    m, x = _one_layer(3)
    rule = ScaledEpsilon(0.5)
    alone = sx.explain(m, x[:1], preset=rule, target=0).values
    batch = sx.explain(m, x, preset=rule, target=0).values[:1]
    np.testing.assert_allclose(alone, batch, rtol=1e-5, atol=1e-6)  # no dependence on the other samples
    with torch.no_grad():
        m.weight.mul_(100.0)
        m.bias.mul_(100.0)
    scaled = sx.explain(m, x, preset=rule, target=0).values
    ref = _one_layer(3)[0]
    base = sx.explain(ref, x, preset=rule, target=0).values
    np.testing.assert_allclose(scaled, 100.0 * base, rtol=1e-4, atol=1e-4)  # stabiliser scales with the layer


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_no_bias_is_the_rule_on_the_bias_free_layer(seed):
    m, x = _one_layer(seed)
    R = sx.explain(m, x, preset=NoBias(Epsilon(0.01)), target=2)
    X, W, b = x.double().numpy(), m.weight.detach().double().numpy(), m.bias.detach().double().numpy()
    z_full = X @ W[2] + b[2]
    z = X @ W[2]
    want = X * W[2] / (z + 0.01 * np.where(z >= 0, 1.0, -1.0))[:, None] * z_full[:, None]
    np.testing.assert_allclose(R.values, want, rtol=2e-4, atol=2e-5)
    R.relevance.check()
    # the bias absorbs nothing: only the stabiliser's share is absorbed
    stab_share = (0.01 * np.where(z >= 0, 1.0, -1.0)) / (z + 0.01 * np.where(z >= 0, 1.0, -1.0)) * z_full
    np.testing.assert_allclose(R.absorbed.values, stab_share, rtol=2e-3, atol=2e-4)


def test_layer_dependent_rules_reject_bad_arguments():
    with pytest.raises(RuleError, match="factor"):
        ScaledEpsilon(-1.0)
    with pytest.raises(RuleError, match="ByConvKind"):
        ByConvKind(depthwise=Pass(), pointwise=Epsilon(), other=Epsilon())
    with pytest.raises(RuleError, match="ByConvKind"):
        ByConvKind(depthwise="gamma", pointwise=Epsilon(), other=Epsilon())
    with pytest.raises(RuleError, match="NoBias"):
        NoBias(Pass())


def test_named_mobilenet_preset_is_its_documented_mapping():
    from sciexplain.rules.presets import PRESETS, uses_bounds
    from sciexplain.rules import Flat, ZBox
    assert "mobilenet" in PRESETS and uses_bounds("mobilenet")
    model, x = block(1)
    x = x.clamp(-1, 1)
    se = ScaledEpsilon(0.25)
    by_kind = ByConvKind(depthwise=Gamma(0.25), pointwise=se, other=se)
    named = sx.explain(model, x, preset="mobilenet", bounds=(-1.0, 1.0))
    mapping = sx.explain(model, x, preset={"stem": ZBox(-1.0, 1.0), nn.Conv2d: by_kind, nn.Linear: se})
    np.testing.assert_allclose(named.values, mapping.values, rtol=1e-5, atol=1e-7)
    named.relevance.check()
    assert "ZBox" in named.attrs["rules"] and "[first layer]" in named.attrs["rules"]
    # without bounds the first layer takes the flat rule
    flat = sx.explain(model, x, preset="mobilenet")
    want = sx.explain(model, x, preset={"stem": Flat(), nn.Conv2d: by_kind, nn.Linear: se})
    np.testing.assert_allclose(flat.values, want.values, rtol=1e-5, atol=1e-7)
