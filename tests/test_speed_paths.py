"""The engine's fast paths (issue 22) give the results of the plain paths they replace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.kinds.affine_layers import _conv_adjoint, _linear_adjoint, _module_adjoint
from sciexplain.rules import AlphaBeta, Epsilon, Gamma, ZPlus
from sciexplain.rules.propagation import AffineLayer, lrp_affine


def _assert_same_explanation(R, reference, rtol: float, atol: float) -> None:
    """Relevance and absorbed part of ``R`` equal those of ``reference``."""
    np.testing.assert_allclose(R.values, reference.values, rtol=rtol, atol=atol)
    np.testing.assert_allclose(R.absorbed.values, reference.absorbed.values, rtol=rtol, atol=atol)


def _vjp(apply, x, w, u):
    """W^T u by differentiating the forward pass (the reference the adjoint replaces)."""
    leaf = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(apply(leaf, w), leaf, grad_outputs=u)[0]


@pytest.mark.parametrize("conv, shape", [
    (nn.Conv1d(3, 4, 5, stride=2, padding=1), (2, 3, 17)),
    (nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2), (2, 4, 9, 11)),
    (nn.Conv2d(6, 6, (5, 1), groups=6, padding="valid"), (3, 6, 8, 4)),
    (nn.Conv3d(2, 3, 2, stride=2), (1, 2, 5, 6, 7)),
])
def test_conv_adjoint_is_the_transpose_of_the_convolution(conv, shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    conv = conv.double()
    w = torch.randn_like(conv.weight)
    u = torch.randn_like(conv._conv_forward(x, w, None))
    adjoint = _module_adjoint(conv, type(conv))
    assert adjoint is not None
    expected = _vjp(lambda a, b: conv._conv_forward(a, b, None), x, w, u)
    torch.testing.assert_close(adjoint(u, x, w), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       groups=st.sampled_from([1, 2]), size=st.integers(6, 11), batch=st.integers(1, 2))
def test_conv_adjoint_matches_autograd_for_any_geometry(k, stride, padding, dilation, groups, size, batch):
    """The transposed convolution with output padding gives back the input's size and the input
    gradient for every stride / padding / dilation / groups and input size (sizes a stride does
    not divide included)."""
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[k - 1](2 * groups, 2, 3, stride=stride, padding=padding,
                                                     dilation=dilation, groups=groups).double()
    g = torch.Generator().manual_seed(size * 7 + stride)
    x = torch.randn((batch, 2 * groups) + (size,) * k, dtype=torch.float64, generator=g)
    w = torch.randn(conv.weight.shape, dtype=torch.float64, generator=g)
    u = torch.randn(conv._conv_forward(x, w, None).shape, dtype=torch.float64, generator=g)
    expected = _vjp(lambda a, b: conv._conv_forward(a, b, None), x, w, u)
    got = _module_adjoint(conv, type(conv))(u, x, w)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_linear_adjoint_and_where_there_is_none():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    u = torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(_linear_adjoint(u, x, w), _vjp(lambda a, b: a @ b.T, x, w, u))
    # "same" padding, other padding modes and custom forward passes keep differentiating the forward
    assert _conv_adjoint(1, "same", 1, 1) is None
    assert _module_adjoint(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), nn.Conv1d) is None

    class Custom(nn.Conv1d):
        def forward(self, x):
            return super().forward(x) * 1.0
    assert _module_adjoint(Custom(2, 2, 3), nn.Conv1d) is None


class _Functional(nn.Module):
    """Functional affine operations with constants: conv with settings, matmul from either side,
    a broadcasting scale, a division, a negation and a functional batch norm."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(4, 2, 3, generator=g, dtype=torch.float64))
        self.m = nn.Parameter(torch.randn(5, 6, generator=g, dtype=torch.float64))
        self.left = nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64))
        self.scale = nn.Parameter(torch.rand(1, 3, 6, generator=g, dtype=torch.float64) + 0.5)
        self.register_buffer("mean", torch.randn(3, generator=g, dtype=torch.float64))
        self.register_buffer("var", torch.rand(3, generator=g, dtype=torch.float64) + 0.5)
        self.head = nn.Linear(18, 2).double()

    def forward(self, x):                                    # (B, 2, 12)
        h = torch.relu(F.conv1d(x, self.w, None, 2, 1, 1, 1))  # (B, 4, 6)
        h = torch.relu(torch.matmul(self.left, h))             # (B, 3, 6)
        h = torch.relu(h * self.scale) / 1.5
        h = -F.batch_norm(h, self.mean, self.var, training=False)
        return self.head(h.flatten(1))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_functional_affine_adjoints_match_differentiating_the_forward(preset, monkeypatch):
    """Functional convolutions, constant matmuls, scales and batch norms send relevance back by
    their adjoint; the result equals the one obtained by differentiating their forward pass."""
    from sciexplain.kinds import affine_layers
    x = torch.randn(3, 2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    model = _Functional().eval()
    fast = sx.explain(model, x, preset=preset)
    built = []
    original = affine_layers.affine_layer

    def without_adjoint(*args, **kwargs):
        layer = original(*args, **kwargs)
        built.append(layer.adjoint is not None)
        layer.adjoint = None
        return layer
    monkeypatch.setattr(affine_layers, "affine_layer", without_adjoint)
    from sciexplain.kinds import affine as affine_kind
    monkeypatch.setattr(affine_kind, "affine_layer", without_adjoint)
    slow = sx.explain(model, x, preset=preset)
    assert sum(built) >= 6, built  # conv, both matmuls' kinds, scale, division, negation, batch norm
    _assert_same_explanation(fast, slow, rtol=1e-9, atol=1e-12)
    fast.relevance.check()


def test_scale_adjoint_sums_over_broadcast_dims():
    from sciexplain.kinds.affine_layers import _scale_adjoint
    g = torch.Generator().manual_seed(5)
    x, w = torch.randn(2, 1, 4, dtype=torch.float64, generator=g), torch.randn(3, 1, dtype=torch.float64, generator=g)
    u = torch.randn(2, 3, 4, dtype=torch.float64, generator=g)
    torch.testing.assert_close(_scale_adjoint(u, x, w), _vjp(lambda a, b: a * b, x, w, u))


@pytest.mark.parametrize("rule", [Epsilon(1e-6), ZPlus(), AlphaBeta(2, 1), Gamma(0.25)])
def test_rule_on_the_recorded_output_with_the_adjoint_matches_the_forward_pass(rule):
    """lrp_affine with the layer's recorded output (no second forward pass) gives the relevance of
    the plain evaluation, on mixed-sign and non-negative inputs."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    w, b = conv.weight.detach(), conv.bias.detach().reshape(1, -1, 1, 1)
    plain = AffineLayer("c", "Conv2d", w, b, lambda x_, w_: conv._conv_forward(x_, w_, None), True)
    fast = AffineLayer("c", "Conv2d", w, b, plain.apply, True, _module_adjoint(conv, nn.Conv2d))
    for x in (torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.rand(2, 3, 6, 6, dtype=torch.float64)):
        z = plain.forward(x)
        R = torch.randn_like(z)
        R_ref, a_ref = lrp_affine(plain, x, R, rule)
        R_fast, a_fast = lrp_affine(fast, x, R, rule, recorded=z)
        torch.testing.assert_close(R_fast, R_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a_fast, a_ref, rtol=1e-9, atol=1e-12)


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 5, padding=2)
        self.bn = nn.BatchNorm1d(6)
        self.conv2 = nn.Conv1d(6, 4, 3)
        self.bn2 = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 14, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.relu(self.bn2(self.conv2(h))).flatten(1))


def _conv_bn():
    torch.manual_seed(2)
    m = _ConvBN()
    for bn in (m.bn, m.bn2):
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_(0, 0.2)
    return m.eval()


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_layers_with_a_folded_batchnorm_run_no_second_plain_forward(preset, monkeypatch):
    """A convolution with a BatchNorm folded into it takes z from the BatchNorm's recorded output:
    its plain forward runs once (the model's own), plus one modified forward where the rule needs
    one (z+ on the mixed-sign first layer), and the ledger balances."""
    m = _conv_bn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(4, 3, 16)
    calls = []
    original = m.conv._conv_forward

    def counting(inp, weight, bias):
        calls.append(inp.shape)
        return original(inp, weight, bias)
    monkeypatch.setattr(m.conv, "_conv_forward", counting)
    R = sx.explain(m, x, preset=preset)
    n_first = len(calls)
    # epsilon: the recorded forward only; z+ on the mixed-sign input: plus the one |x| |W| pass
    # (alpha-beta falls back to its terms here, near-zero denominators, and is checked by its ledger)
    if preset != "alpha2-beta1":
        assert n_first == (1 if preset == "epsilon" else 2)
    total = R.sum([d for d in R.dims if d != "sample"]).values + R.absorbed.values
    torch.testing.assert_close(torch.as_tensor(total, dtype=torch.float64),
                               torch.as_tensor(R.prediction.values, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    monkeypatch.undo()
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_forward_graph_is_recorded_only_where_a_layer_has_no_adjoint():
    from sciexplain.kinds.affine_layers import forward_graph_needed

    class Renorm(nn.Conv1d):  # a convolution with its own forward (as braindecode's constrained ones)
        def forward(self, x):
            return self._conv_forward(x, torch.renorm(self.weight, 2, 0, 1.0), self.bias)

    plain = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(9, 2))
    assert not forward_graph_needed(plain)
    assert forward_graph_needed(nn.Sequential(Renorm(2, 3, 3)))
    assert forward_graph_needed(nn.Sequential(nn.ConvTranspose1d(2, 3, 3)))
    assert forward_graph_needed(nn.Sequential(nn.Conv1d(2, 3, 3, padding="same")))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_results_are_the_same_with_and_without_the_recorded_graph(preset, monkeypatch):
    """Recording without autograd (every layer by its adjoint, pooling run again) gives the
    relevance obtained with the graph."""
    from sciexplain.explain import engine as engine_module
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AvgPool1d(2), nn.Conv1d(4, 3, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(9, 2)).double().eval()
    x = torch.randn(3, 2, 10, dtype=torch.float64)
    without = sx.explain(model, x, preset=preset)
    monkeypatch.setattr(engine_module, "forward_graph_needed", lambda m: True)
    with_graph = sx.explain(model, x, preset=preset)
    _assert_same_explanation(without, with_graph, rtol=1e-10, atol=1e-13)


class _Conv2dSettings(nn.Module):
    """A Conv2d module and an F.conv2d whose stride / padding / dilation are given as one-element
    sequences (torch repeats them over both dims) or as ints."""

    def __init__(self, one_element: bool):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        s = (lambda v: (v,)) if one_element else (lambda v: v)
        self.conv = nn.Conv2d(2, 3, 3, stride=s(2), padding=[1] if one_element else 1, dilation=s(1)).double()
        self.w = nn.Parameter(torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=g))
        self.one_element = one_element
        self.head = nn.Linear(4 * 3 * 3, 2).double()

    def forward(self, x):  # (B, 2, 9, 7)
        h = torch.relu(self.conv(x))  # (B, 3, 5, 4)
        h = F.conv2d(h, self.w, None, (2,), (1,)) if self.one_element else F.conv2d(h, self.w, None, 2, 1)
        return self.head(torch.relu(h).flatten(1))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus"])
def test_conv_settings_given_as_one_element_sequences(preset):
    """Issue 22: the conv adjoint read stride=(2,) of a Conv2d as a setting for one dim only
    (IndexError); the relevance equals that of the same convolutions with int settings."""
    x = torch.randn(2, 2, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ints = _Conv2dSettings(False).eval()
    seqs = _Conv2dSettings(True).eval()
    seqs.load_state_dict(ints.state_dict())
    R_seq, R_int = sx.explain(seqs, x, preset=preset), sx.explain(ints, x, preset=preset)
    _assert_same_explanation(R_seq, R_int, rtol=1e-10, atol=1e-14)
    R_seq.relevance.check()


class _PerSampleConv(nn.Module):
    """Convolutions (bias included) applied to each sample unbatched, ``conv(x[i])``, or to the
    batch; the two forward passes compute the same function."""

    def __init__(self, unbatched: bool):
        super().__init__()
        g = torch.Generator().manual_seed(9)
        self.unbatched = unbatched
        self.c1 = nn.Conv1d(3, 5, 3).double()  # 5 channels, length 8: the bias must not follow the length
        self.w = nn.Parameter(torch.randn(4, 5, 3, dtype=torch.float64, generator=g))
        self.b = nn.Parameter(torch.randn(4, dtype=torch.float64, generator=g))
        self.c2 = nn.Conv2d(1, 2, 2).double()
        self.head = nn.Linear(2 * 3 * 2, 2).double()

    def block(self, x):  # (3, 10) unbatched or (B, 3, 10)
        h = torch.relu(self.c1(x))
        h = torch.relu(F.conv1d(h, self.w, self.b, 2))   # (4, 3) or (B, 4, 3)
        return torch.relu(self.c2(h.unsqueeze(-3) * 1.0))  # Conv2d on (1, 4, 3) or (B, 1, 4, 3)

    def forward(self, x):
        if self.unbatched:
            return self.head(torch.stack([self.block(x[i]).flatten() for i in range(x.shape[0])]))
        return self.head(self.block(x).flatten(1))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_unbatched_convolutions_add_their_bias_per_channel(preset):
    """Issue 22: the bias of a convolution on an unbatched (channels, *spatial) input was shaped
    for a batch, (1, C) for a Conv1d / F.conv1d and (1, C, 1) for a Conv2d, so it broadcast along
    the length (a crash, or with as many channels as steps a wrong absorbed part and an
    unbalanced ledger). Per-sample convolutions give the relevance of the batched ones."""
    x = torch.randn(3, 3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    batched = _PerSampleConv(False).eval()
    per_sample = _PerSampleConv(True).eval()
    per_sample.load_state_dict(batched.state_dict())
    R_one, R_all = sx.explain(per_sample, x, preset=preset), sx.explain(batched, x, preset=preset)
    _assert_same_explanation(R_one, R_all, rtol=1e-9, atol=1e-13)
    R_one.relevance.check()
