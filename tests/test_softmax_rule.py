"""AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.1) against the linearisation written out
from the paper, and a softmax inside a network through the engine (exact ledger)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.kinds.attention import linearised_softmax
from sciexplain.rules import LinearisedSoftmax


def reference_softmax_relevance(x: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, float]:
    """Prop. 3.1 from its derivation: linearise s = softmax(x) at x, s_j = sum_i J_ji x_i + b_j with
    the Jacobian J_ji = s_j (delta_ji - s_i); each output's relevance R_j goes to the inputs in
    proportion to the contributions J_ji x_i / s_j. Returns the input relevance and the bias share
    sum_j b_j R_j / s_j (what is absorbed)."""
    s = np.exp(x - x.max())
    s = s / s.sum()
    n = len(x)
    J = np.array([[s[j] * ((1.0 if i == j else 0.0) - s[i]) for i in range(n)] for j in range(n)])
    R_in = np.zeros(n)
    for j in range(n):
        for i in range(n):
            R_in[i] += J[j, i] * x[i] / s[j] * R[j]
    b = s - J @ x
    return R_in, float(np.sum(b / s * R))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), scale=st.floats(0.1, 5.0))
def test_linearised_softmax_matches_the_linearisation(n, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * scale
    R = rng.normal(size=n)
    ref, absorbed = reference_softmax_relevance(x, R)
    xt = torch.from_numpy(x)
    got = linearised_softmax(xt, torch.softmax(xt, 0), torch.from_numpy(R), 0).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert got.sum() + absorbed == pytest.approx(R.sum(), rel=1e-10, abs=1e-12)  # exact split


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 10_000), data=st.data())
def test_linearised_softmax_acts_along_its_dim(shape, seed, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    R = torch.randn(*shape, generator=g, dtype=torch.float64)
    got = linearised_softmax(x, torch.softmax(x, dim), R, dim)
    xm, Rm, gm = (t.movedim(dim, -1).reshape(-1, shape[dim]) for t in (x, R, got))
    for row in range(xm.shape[0]):
        ref, _ = reference_softmax_relevance(xm[row].numpy(), Rm[row].numpy())
        np.testing.assert_allclose(gm[row].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_masked_entries_get_no_relevance_and_no_nan():
    x = torch.tensor([[0.3, float("-inf"), -1.2, 2.0]], dtype=torch.float64)
    s = torch.softmax(x, -1)
    R = torch.tensor([[0.5, 0.7, -0.2, 1.0]], dtype=torch.float64) * (s > 0)
    got = linearised_softmax(x, s, R, -1)
    assert torch.isfinite(got).all() and got[0, 1] == 0
    ref, _ = reference_softmax_relevance(np.array([0.3, -1.2, 2.0]), R[0, [0, 2, 3]].numpy())
    np.testing.assert_allclose(got[0, [0, 2, 3]].numpy(), ref, rtol=1e-10)


class MiddleSoftmax(nn.Module):
    """Linear -> softmax -> Linear (no bias): a softmax inside the network."""

    def __init__(self, functional: bool):
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.softmax = nn.Softmax(dim=-1)
        self.head = nn.Linear(5, 3, bias=False)
        self.functional = functional

    def forward(self, x):
        z = self.lin(x)
        return self.head(F.softmax(z, dim=-1) if self.functional else self.softmax(z))


@pytest.mark.parametrize("functional", [True, False], ids=["F.softmax", "nn.Softmax"])
def test_softmax_inside_the_network_through_the_engine(functional):
    torch.manual_seed(0)
    model = MiddleSoftmax(functional).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    target = 1
    preset = {"base": "epsilon", nn.Linear: sx.rules.Epsilon(1e-12)}
    R, led = sx.Explainer(model, preset=preset).explain_with_ledger(x, target)
    total = R.values.sum(axis=1) + R.absorbed.values
    np.testing.assert_allclose(total, R.prediction.values, rtol=1e-10)
    # the relevance at the softmax's input (the output of lin), from the paper's linearisation
    at_lin = sx.Explainer(model, preset=preset).explain(x, target, at="lin").values
    with torch.no_grad():
        z = model.lin(x)
        s = torch.softmax(z, -1)
        R_s = (s * model.head.weight[target]).numpy()  # epsilon -> 0 on the bias-free head
    for b in range(4):
        ref, absorbed = reference_softmax_relevance(z[b].numpy(), R_s[b])
        np.testing.assert_allclose(at_lin[b], ref, rtol=1e-8, atol=1e-12)
        row = [r for r in led.layer.values if "softmax" in r][0]
        assert float(led.absorbed.sel(layer=row)[b]) == pytest.approx(absorbed, rel=1e-8, abs=1e-12)
    assert "softmax: LinearisedSoftmax()" in R.attrs["rules"]


def test_final_softmax_is_still_stripped():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    R = sx.explain(model, torch.randn(2, 4))
    assert "before the final Softmax" in R.attrs["explained"]
    assert "LinearisedSoftmax" not in R.attrs["rules"]


def test_log_softmax_inside_is_still_refused_clearly():
    model = nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1), nn.Linear(3, 2)).eval()
    with pytest.raises(sx.UnsupportedModelError, match="only supported as the final operation"):
        sx.explain(model, torch.randn(2, 4))


def test_softmax_rule_is_a_picklable_rule_object():
    import pickle
    assert pickle.loads(pickle.dumps(LinearisedSoftmax())) == LinearisedSoftmax()
