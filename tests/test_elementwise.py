"""Element-wise nonlinearities (AttnLRP's identity rule), exp/log/pow/sqrt/square, masked_fill and
where with constant branches, a final softmax followed by shape operations, and the braindecode
networks that use them (ShallowFBCSPNet's square -> mean pooling -> log; log-softmax -> squeeze).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.rules import Epsilon

from conftest import assert_balances, assert_no_hooks, assert_state_equal, hook_counts, state_copy


class Apply(nn.Module):
    """out = f(x) (the map's output is the explained output)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def _square(x):
    return x * x


def _pow(x):
    return x.pow(3)


def _dunder_pow(x):
    return x.abs() ** 0.5


def _two_to(x):
    return 2 ** x


ELEMENTWISE = {
    "GELU": nn.GELU(), "GELU-tanh": nn.GELU(approximate="tanh"), "SiLU": nn.SiLU(), "Mish": nn.Mish(),
    "ELU": nn.ELU(), "CELU": nn.CELU(0.5), "SELU": nn.SELU(), "Softplus": nn.Softplus(),
    "LeakyReLU": nn.LeakyReLU(0.1), "Hardswish": nn.Hardswish(), "RReLU": nn.RReLU(),
    "Hardshrink": nn.Hardshrink(0.2), "Softshrink": nn.Softshrink(0.2),
    "F.gelu": F.gelu, "F.silu": F.silu, "F.mish": F.mish, "F.elu": F.elu, "F.softplus": F.softplus,
    "F.hardswish": F.hardswish, "F.silu_inplace": lambda x: F.silu(x * 1, inplace=True),
    "exp": torch.exp, "log": lambda x: torch.log(x.abs()), "log1p": lambda x: torch.log1p(x.abs()),
    "sqrt": lambda x: torch.sqrt(x.abs()), "rsqrt": lambda x: torch.rsqrt(x.abs()),
    "square": torch.square, "x*x": _square, "pow": _pow, "**": _dunder_pow, "2**x": _two_to,
    "abs": torch.abs, "erf": torch.erf,
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_identity_rule_for_element_wise_maps(name):
    """R_i = R_j for y_j = f(x_j): the relevance at the output, the target's value, reaches its
    own input entry and nothing else (AttnLRP's identity rule), nothing absorbed."""
    model = Apply(ELEMENTWISE[name]).eval()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    y = model(x).detach()
    target = [1, 4, 0]
    R = sx.explain(model, x, target=target, preset="epsilon")
    expect = torch.zeros(3, 5)
    for i, t in enumerate(target):
        expect[i, t] = y[i, t]
    np.testing.assert_allclose(R.values, expect.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(R.absorbed.values, 0.0, atol=1e-7)


class Mlp(nn.Module):
    def __init__(self, act, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.act, self.b = nn.Linear(4, 6), act, nn.Linear(6, 3)

    def forward(self, x):
        return self.b(self.act(self.a(x)))


def _epsilon(W, b, x, R, eps):
    z = x @ W.T + b
    return x * ((R / (z + eps * np.where(z >= 0, 1, -1))) @ W)


@pytest.mark.parametrize("name", ["GELU", "SiLU", "Mish", "ELU", "Softplus", "exp", "x*x"])
def test_identity_rule_inside_a_network_against_the_epsilon_formula(name):
    model = Mlp(ELEMENTWISE[name]).eval().double()
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1)).double()
    R = sx.explain(model, x, target=[0, 2], preset=Epsilon(0.01))
    assert_balances(R, rtol=1e-9, atol=1e-9)
    Wa, ba = model.a.weight.detach().numpy(), model.a.bias.detach().numpy()
    Wb, bb = model.b.weight.detach().numpy(), model.b.bias.detach().numpy()
    xv = x.numpy()
    h = xv @ Wa.T + ba
    g = model.act(torch.from_numpy(h)).numpy()
    out = np.zeros((2, 3))
    logits = g @ Wb.T + bb
    out[0, 0], out[1, 2] = logits[0, 0], logits[1, 2]
    Rg = _epsilon(Wb, bb, g, out, 0.01)
    np.testing.assert_allclose(R.values, _epsilon(Wa, ba, xv, Rg, 0.01), rtol=1e-8, atol=1e-12)


def test_pow_with_an_input_dependent_exponent_is_refused():
    with pytest.raises(sx.errors.UnsupportedModelError, match="pow with an input-dependent"):
        sx.explain(Apply(lambda x: torch.pow(x, x)).eval(), torch.rand(2, 3) + 0.5)


class Masked(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.register_buffer("mask", torch.tensor([True, False, False, True, False]))

    def forward(self, x):
        if self.how == "masked_fill":
            h = x.masked_fill(self.mask, 2.0)
        elif self.how == "where":
            h = torch.where(self.mask, torch.full_like(x, 2.0), x)
        else:
            h = torch.where(self.mask, 2.0, x)
        return h.sum(1, keepdim=True)


@pytest.mark.parametrize("how", ["masked_fill", "where", "where-scalar"])
def test_masked_fill_and_where_send_the_masked_relevance_to_the_constant(how):
    """The sum redistributes proportionally, R_j = h_j S / (S + eps sign S); the filled entries'
    share is absorbed, the kept entries' share reaches the input."""
    model = Masked(how).eval().double()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(2)).double()
    R = sx.explain(model, x, preset="epsilon")
    assert_balances(R, rtol=1e-12, atol=1e-12)
    h = np.where(model.mask.numpy(), 2.0, x.numpy())
    S = h.sum(1, keepdims=True)
    Rh = h * S / (S + 1e-9 * np.sign(S))
    keep = ~model.mask.numpy()
    np.testing.assert_allclose(R.values, np.where(keep, Rh, 0.0), rtol=1e-12)
    np.testing.assert_allclose(R.absorbed.values, (Rh * ~keep).sum(1) + (S * 1e-9 / (S + 1e-9)).ravel(),
                               rtol=1e-6, atol=1e-12)


class Squashed(nn.Module):
    """A conv classifier ending in a softmax-like squash and then shape operations only."""

    def __init__(self, squash, tail, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(2, 3, (4, 1))
        self.squash, self.tail = squash, tail

    def forward(self, x):
        h = self.conv(x)  # (B, 3, 1, 1)
        return self.tail(self.squash(h) if self.squash is not None else h)


TAILS = {
    "squeeze": lambda h: h.squeeze(3).squeeze(2),
    "flatten": nn.Flatten(),
    "reshape": lambda h: h.reshape(h.shape[0], -1),
    "index": lambda h: h[:, :, 0, 0],
    "transpose": lambda h: h[:, :, 0].transpose(1, 2).transpose(1, 2)[..., 0],
}
SQUASHES = {"log_softmax": nn.LogSoftmax(dim=1), "softmax": lambda h: torch.softmax(h, 1),
            "sigmoid": torch.sigmoid}


@pytest.mark.parametrize("squash", sorted(SQUASHES))
@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("method", ["lrp", "gradient"])
def test_final_squash_followed_by_shape_operations_is_stripped(squash, tail, method):
    x = torch.randn(3, 2, 4, 1, generator=torch.Generator().manual_seed(3))
    with_squash = Squashed(SQUASHES[squash], TAILS[tail]).eval()
    plain = Squashed(None, TAILS[tail]).eval()
    R = sx.explain(with_squash, x, method=method, preset="epsilon")
    R0 = sx.explain(plain, x, method=method, preset="epsilon")
    np.testing.assert_array_equal(R.values, R0.values)
    np.testing.assert_array_equal(R.prediction.values, R0.prediction.values)
    if method == "lrp":
        assert_balances(R, rtol=1e-5, atol=1e-6)
        assert "before the final" in R.attrs["explained"]


def test_a_squash_followed_by_a_value_changing_operation_is_still_refused():
    model = Squashed(nn.LogSoftmax(dim=1), lambda h: h.flatten(1) * 2.0).eval()
    with pytest.raises(sx.errors.UnsupportedModelError, match="only supported as the final"):
        sx.explain(model, torch.randn(2, 2, 4, 1))


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["GELU", "SiLU", "Mish", "ELU", "CELU", "SELU", "Softplus", "Hardswish", "exp",
                             "x*x", "log", "sqrt"]),
       batch=st.integers(1, 4), width=st.integers(1, 7), seed=st.integers(0, 1000),
       preset=st.sampled_from(["epsilon", "epsilon-plus", "alpha2-beta1"]))
def test_conservation_through_element_wise_maps(name, batch, width, seed, preset):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, width), Apply(ELEMENTWISE[name]), nn.Linear(width, 2)).eval()
    x = torch.randn(batch, 3)
    R = sx.explain(model, x, preset=preset)
    assert_balances(R, rtol=1e-5, atol=1e-5)


braindecode = pytest.importorskip("braindecode")


@pytest.mark.parametrize("which", ["ShallowFBCSPNet", "Deep4Net"])
def test_braindecode_networks_are_explained_with_an_exact_ledger(which):
    from braindecode.models import Deep4Net, ShallowFBCSPNet
    torch.manual_seed(0)
    if which == "ShallowFBCSPNet":
        model = ShallowFBCSPNet(n_chans=4, n_outputs=2, n_times=200, final_conv_length="auto").eval()
        x = torch.randn(3, 4, 200)
    else:
        model = Deep4Net(n_chans=4, n_outputs=2, n_times=600, final_conv_length="auto").eval()
        x = torch.randn(2, 4, 600)
    before, hooks = state_copy(model), hook_counts(model)
    x_before = x.clone()
    R = sx.explain(model, x)
    assert R.shape == tuple(x.shape)
    assert_balances(R, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logp = model(x)
    # the explained output is the logit before the log-softmax: both classes' logits, squashed,
    # give the model's output
    other = sx.explain(model, x, target=1 - torch.as_tensor(R.target.values))
    logits = torch.zeros(len(x), 2, dtype=torch.float64)
    rows = torch.arange(len(x))
    logits[rows, torch.as_tensor(R.target.values)] = torch.as_tensor(R.prediction.values)
    logits[rows, torch.as_tensor(other.target.values)] = torch.as_tensor(other.prediction.values)
    np.testing.assert_allclose(torch.log_softmax(logits, 1).numpy(), logp.double().numpy(), rtol=1e-5, atol=1e-6)
    assert_balances(other, rtol=1e-5, atol=1e-6)
    assert "LogSoftmax" in R.attrs["explained"]
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    assert_no_hooks(model)
    assert torch.equal(x, x_before)
