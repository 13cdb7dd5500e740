"""Explanations with known closed forms (Montavon, Samek & Mueller 2017, Sec. 7.1 and Sec. 5).

The max network
---------------
On the positive quadrant ``x1, x2 >= 0``::

    max(x1, x2) = 0.5 (x1 + x2) + 0.5 |x1 - x2|,   |a| = relu(a) + relu(-a),   x_i = relu(x_i)

so a bias-free two-layer ReLU network computes it exactly: hidden units
``h = relu(W1 x)`` with ``W1 = [[1, -1], [-1, 1], [1, 0], [0, 1]]`` (``h1 = relu(x1 - x2)``,
``h2 = relu(x2 - x1)``, ``h3 = x1``, ``h4 = x2``) and output ``y = 0.5 (h1 + h2 + h3 + h4)``.

Closed forms, for ``x1 > x2`` (swap the indices for ``x1 < x2``):

* gradient ``(1, 0)``, so sensitivity analysis ``(df/dx)^2 = (1, 0)``: it jumps to ``(0, 1)``
  across the diagonal ``x1 = x2``;
* gradient x input (the simple Taylor decomposition at the root 0) ``(x1, 0)``: it sums to
  ``f(x)`` (``f`` is piecewise linear and positively homogeneous) but jumps from ``(0, a)`` to
  ``(a, 0)`` across the diagonal at ``(a, a)``;
* z+ at both layers: the output weights are all positive, so the hidden relevance is
  ``R_h = 0.5 h``. z+ on ``h1 = relu(x1 - x2)`` sends all of ``R_h1`` to ``x1`` (only
  ``x1 * 1`` is a positive contribution), ``R_h2 = 0`` (``h2 = 0``), ``h3`` goes to ``x1`` and
  ``h4`` to ``x2``. Hence ``R1 = 0.5 x1 + 0.5 (x1 - x2) = x1 - 0.5 x2`` and ``R2 = 0.5 x2``; in
  general ``R_i = 0.5 x_i + 0.5 relu(x_i - x_j)``. It sums to ``max(x1, x2)``, equals
  ``(a/2, a/2)`` on the diagonal, and is continuous (Lipschitz, constant 1.5) across it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.rules import Epsilon, ZPlus

from conftest import FAMILIES, per_sample


def max_net() -> nn.Module:
    first = nn.Linear(2, 4, bias=False)
    second = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        second.weight.copy_(torch.full((1, 4), 0.5))
    return nn.Sequential(first, nn.ReLU(), second).double().eval()


def quadrant_points() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(40, 2, generator=g, dtype=torch.float64) * 3
    keep = (pts[:, 0] - pts[:, 1]).abs() > 1e-3  # off the diagonal (the gradient is undefined on it)
    return pts[keep]


def zplus_closed_form(x: torch.Tensor) -> np.ndarray:
    x1, x2 = x[:, 0], x[:, 1]
    R1 = 0.5 * x1 + 0.5 * torch.relu(x1 - x2)
    R2 = 0.5 * x2 + 0.5 * torch.relu(x2 - x1)
    return torch.stack([R1, R2], 1).numpy()


def test_max_net_computes_max():
    x = quadrant_points()
    with torch.no_grad():
        y = max_net()(x)[:, 0]
    torch.testing.assert_close(y, x.max(1).values, rtol=0, atol=1e-14)


def test_sensitivity_and_gradient_closed_form():
    model, x = max_net(), quadrant_points()
    first_larger = (x[:, 0] > x[:, 1]).double()
    expected = torch.stack([first_larger, 1 - first_larger], 1).numpy()
    G = sx.explain(model, x, method="gradient")
    S = sx.explain(model, x, method="sensitivity")
    np.testing.assert_allclose(G.values, expected, atol=1e-12)
    np.testing.assert_allclose(S.values, expected, atol=1e-12)
    np.testing.assert_allclose(per_sample(S.values), 1.0, atol=1e-12)  # squared gradient norm


def test_gradient_x_input_closed_form():
    model, x = max_net(), quadrant_points()
    first_larger = x[:, 0] > x[:, 1]
    expected = torch.where(torch.stack([first_larger, ~first_larger], 1), x, torch.zeros_like(x)).numpy()
    R = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(R.values, expected, atol=1e-12)
    np.testing.assert_allclose(per_sample(R.values), x.max(1).values.numpy(), atol=1e-12)
    np.testing.assert_allclose(R["absorbed"].values, 0.0, atol=1e-12)


@pytest.mark.parametrize("preset", [ZPlus(), {"0": ZPlus(), "2": ZPlus()}], ids=["rule", "mapping"])
def test_zplus_closed_form(preset):
    model, x = max_net(), quadrant_points()
    R = sx.explain(model, x, preset=preset)
    np.testing.assert_allclose(R.values, zplus_closed_form(x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(per_sample(R.values), x.max(1).values.numpy(), rtol=1e-7)
    assert bool((R.values >= 0).all())
    # the hidden layer receives R_h = 0.5 h
    Rh = sx.explain(model, x, preset=preset, at="1")
    with torch.no_grad():
        h = torch.relu(model[0](x))
    np.testing.assert_allclose(Rh.values, 0.5 * h.numpy(), rtol=1e-7, atol=1e-9)


def test_continuity_across_the_diagonal():
    """z+ is continuous at x1 = x2; sensitivity and gradient x input jump (Sec. 7.1)."""
    model = max_net()
    a = 1.3
    for delta in (1e-1, 1e-3, 1e-6):
        x = torch.tensor([[a + delta, a], [a - delta, a]], dtype=torch.float64)
        Z = sx.explain(model, x, preset=ZPlus()).values
        GI = sx.explain(model, x, method="gradient_x_input").values
        S = sx.explain(model, x, method="sensitivity").values
        jump_z = np.abs(Z[0] - Z[1]).max()
        assert jump_z <= 1.5 * delta * (1 + 1e-6) + 1e-9, (delta, jump_z)
        np.testing.assert_allclose(Z, zplus_closed_form(x), rtol=1e-7, atol=1e-9)
        assert np.abs(GI[0] - GI[1]).max() > 0.9 * a  # (a + delta, 0) against (0, a)
        assert np.abs(S[0] - S[1]).max() == pytest.approx(1.0)
    on = sx.explain(model, torch.tensor([[a, a]], dtype=torch.float64), preset=ZPlus()).values
    np.testing.assert_allclose(on, [[a / 2, a / 2]], rtol=1e-7)


# -- LRP-0 equals gradient x input on ReLU networks --------------------------------------------

LRP0 = {nn.Linear: Epsilon(0.0), nn.Conv1d: Epsilon(0.0), nn.Conv2d: Epsilon(0.0), "op:add": Epsilon(0.0),
        "op:mean": Epsilon(0.0), nn.AvgPool1d: Epsilon(0.0), nn.AdaptiveAvgPool2d: Epsilon(0.0)}


@pytest.mark.parametrize("preset", [LRP0, Epsilon(0.0)], ids=["all-eps0", "eps0-rule"])
@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "eeg_conv1d", "residual", "cat_mean_flatten"])
def test_lrp0_equals_gradient_x_input(name, preset):
    """With biases, BatchNorm, max/average pooling, residual sums and concatenation."""
    model, x = FAMILIES[name]()
    model, x = copy.deepcopy(model).double().eval(), x.double()
    with torch.no_grad():  # give every bias a visible size
        for mod in model.modules():
            if getattr(mod, "bias", None) is not None and not isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.bias.normal_(0, 0.3)
    R = sx.explain(model, x, preset=preset)
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    t = torch.as_tensor(R["target"].values)
    (g,) = torch.autograd.grad(out[torch.arange(len(t)), t].sum(), xg)
    gi = (g * x).numpy()
    scale = np.abs(gi).max()
    np.testing.assert_allclose(R.values, gi, rtol=1e-6, atol=1e-7 * scale)
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(R.values, GI.values, rtol=1e-6, atol=1e-7 * scale)
    # biases absorb: sum R != f(x) in general, and the ledger still balances
    assert np.abs(R["absorbed"].values).max() > 1e-6
    np.testing.assert_allclose(per_sample(R.values) + R["absorbed"].values, R["prediction"].values,
                               rtol=1e-9, atol=1e-10)


# -- z+ on non-negative inputs of a bias-free ReLU network -------------------------------------

def bias_free_nets():
    torch.manual_seed(5)
    dense = nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 12, bias=False), nn.ReLU(),
                          nn.Linear(12, 4, bias=False))
    conv = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3, bias=False))
    g = torch.Generator().manual_seed(6)
    return [(dense.double().eval(), torch.rand(10, 8, generator=g, dtype=torch.float64)),
            (conv.double().eval(), torch.rand(6, 2, 8, 8, generator=g, dtype=torch.float64))]


@pytest.mark.parametrize("which", [0, 1], ids=["dense", "conv"])
def test_zplus_nonnegative_and_conservative(which):
    """For f(x) > 0 all relevance is >= 0 and sums to f(x) (nothing absorbed but the stabilizer).

    For f(x) < 0 relevance is <= 0; it need not sum to f(x), since an output with no positive
    contribution gives z+ nothing to distribute (that share is absorbed and counted).
    """
    model, x = bias_free_nets()[which]
    n_out = model(x).shape[1]
    positive = 0
    for target in range(n_out):
        R = sx.explain(model, x, target=target, preset=ZPlus())
        f = R["prediction"].values
        pos = f > 1e-6
        positive += int(pos.sum())
        signed = R.values * np.sign(f).reshape(-1, *[1] * (R.ndim - 1))
        assert (signed >= 0).all()  # relevance carries the sign of f(x)
        assert (R.values[pos] >= 0).all()
        np.testing.assert_allclose(per_sample(R.values)[pos], f[pos], rtol=1e-6)
        assert (np.abs(R["absorbed"].values[pos]) <= 1e-6 * f[pos]).all()
        np.testing.assert_allclose(per_sample(R.values) + R["absorbed"].values, f, rtol=1e-9, atol=1e-12)
    assert positive >= 5  # enough samples with f(x) > 0 were checked


class TwoBranch(nn.Module):
    """Sum of two ReLU branches: where both are inactive the sum is exactly 0."""

    def __init__(self):
        super().__init__()
        self.a, self.c, self.head = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.relu(self.a(x)) + torch.relu(self.c(x)))


def test_lrp0_on_sums_of_inactive_relus():
    torch.manual_seed(0)
    model = TwoBranch().double().eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    with torch.no_grad():
        both_dead = (model.a(x) <= 0) & (model.c(x) <= 0)
    assert bool(both_dead.any())  # the case is present
    R = sx.explain(model, x, preset=LRP0)
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(R.values, GI.values, rtol=1e-6, atol=1e-9)


def test_lrp_default_sum_rule_on_sums_of_inactive_relus():
    """The default proportional rule for sums (a tiny epsilon) has no such problem."""
    torch.manual_seed(0)
    model = TwoBranch().double().eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    R = sx.explain(model, x, preset=Epsilon(0.0))
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(R.values, GI.values, rtol=1e-6, atol=1e-9)
