"""Transposed convolutions (ConvTranspose1d/2d/3d, F.conv_transpose*) as affine layers: every rule
checked against its plain matrix formula on the dense matrix of the layer, built here by loops
from the definition ``out[o, s*t - p + d*k] += x[i, t] * w[i, o, k]``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus

from conftest import assert_balances, assert_state_equal, state_copy

STAB = 1e-9


def dense(w: np.ndarray, in_shape: tuple, out_shape: tuple, stride, padding, dilation, groups: int = 1):
    """The matrix M (out entries x in entries) of a transposed convolution without bias."""
    C_in, C_out = in_shape[0], out_shape[0]
    in_per, out_per = C_in // groups, C_out // groups
    M = np.zeros((int(np.prod(out_shape)), int(np.prod(in_shape))))
    k_shape = w.shape[2:]
    for i in range(C_in):
        g = i // in_per
        for o_local in range(out_per):
            o = g * out_per + o_local
            for t in itertools.product(*(range(n) for n in in_shape[1:])):
                for k in itertools.product(*(range(n) for n in k_shape)):
                    pos = tuple(s * tt - p + d * kk for s, tt, p, d, kk in zip(stride, t, padding, dilation, k))
                    if all(0 <= q < n for q, n in zip(pos, out_shape[1:])):
                        M[np.ravel_multi_index((o, *pos), out_shape), np.ravel_multi_index((i, *t), in_shape)] \
                            += w[(i, o_local, *k)]
    return M


def _sgn(t):
    return np.where(t >= 0, 1.0, -1.0)


def rule_reference(rule, M, b, x, R):
    """The rule's formula on the dense matrix: relevance of one sample's input ``x`` (flat)."""
    Mp, Mn = np.clip(M, 0, None), np.clip(M, None, 0)
    if isinstance(rule, Epsilon):
        z = M @ x + b
        return x * (M.T @ (R / (z + rule.epsilon * _sgn(z))))
    if isinstance(rule, ZPlus):  # x >= 0 here
        zp = Mp @ x
        return x * (Mp.T @ (R / (zp + STAB)))
    if isinstance(rule, AlphaBeta):  # x >= 0, bias left out
        zp, zn = Mp @ x, Mn @ x
        return x * (rule.alpha * (Mp.T @ (R / (zp + STAB))) - rule.beta * (Mn.T @ (R / (zn - STAB))))
    if isinstance(rule, Gamma):  # x >= 0: positive outputs see w + g w+, negative ones w + g w-
        z = M @ x + b
        g = rule.gamma
        up, down = M + g * Mp, M + g * Mn
        d_up = up @ x + b + g * np.clip(b, 0, None)
        d_down = down @ x + b + g * np.clip(b, None, 0)
        pos = np.where(z >= 0, R / (d_up + rule.stabilizer * _sgn(d_up)), 0.0)
        neg = np.where(z < 0, R / (d_down + rule.stabilizer * _sgn(d_down)), 0.0)
        return x * (up.T @ pos + down.T @ neg)
    if isinstance(rule, WSquare):
        W2 = M ** 2
        return W2.T @ (R / (W2.sum(1) + STAB))
    if isinstance(rule, Flat):
        A = (M != 0).astype(float)
        return A.T @ (R / (A.sum(1) + STAB))
    if isinstance(rule, ZBox):
        lo, hi = rule.low, rule.high
        z = M @ x - lo * Mp.sum(1) - hi * Mn.sum(1)
        return x * (M.T @ (R / (z + STAB))) - lo * (Mp.T @ (R / (z + STAB))) - hi * (Mn.T @ (R / (z + STAB)))
    raise AssertionError(rule)


class Decoder(nn.Module):
    """out = sum of the transposed convolution's outputs: the relevance reaching each output entry
    is its own value, R_j = z_j S / (S + 1e-9 sign S), by the proportional rule of the sum."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x).flatten(1).sum(1, keepdim=True)


RULES = [Epsilon(1e-6), Epsilon(0.1), ZPlus(), AlphaBeta(2, 1), Gamma(0.25), WSquare(), Flat(), ZBox(0.0, 1.0)]


@pytest.mark.parametrize("rule", RULES, ids=repr)
@pytest.mark.parametrize("dims, stride, padding, dilation, groups, output_padding", [
    (1, (2,), (0,), (1,), 1, (0,)),
    (1, (3,), (1,), (2,), 2, (1,)),
    (2, (2, 1), (1, 0), (1, 1), 1, (1, 0)),
])
def test_every_affine_rule_against_the_dense_matrix(rule, dims, stride, padding, dilation, groups, output_padding):
    g = torch.Generator().manual_seed(0)
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}[dims]
    layer = cls(4, 6, (3,) * dims, stride=stride, padding=padding, dilation=dilation, groups=groups,
                output_padding=output_padding).double().eval()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64) * 0.3)
    model = Decoder(layer).eval()
    spatial = (4,) * dims
    x = torch.rand(2, 4, *spatial, generator=g, dtype=torch.float64)  # in [0, 1]: the deep Taylor domain
    R = sx.explain(model, x, preset={cls: rule})
    assert_balances(R, rtol=1e-9, atol=1e-9)
    z = layer(x).detach()
    out_shape = tuple(z.shape[1:])
    M = dense(layer.weight.detach().numpy(), (4, *spatial), out_shape, stride, padding, dilation, groups)
    b = np.repeat(layer.bias.detach().numpy(), int(np.prod(out_shape[1:])))
    for i in range(2):
        zi = z[i].numpy().reshape(-1)
        S = zi.sum()
        Rout = zi * S / (S + 1e-9 * np.sign(S))
        ref = rule_reference(rule, M, b, x[i].numpy().reshape(-1), Rout)
        np.testing.assert_allclose(R.values[i].reshape(-1), ref, rtol=1e-7, atol=1e-10)


def test_dense_matrix_is_the_layer():
    """The test's matrix is the transposed convolution (so the references above are about it)."""
    layer = nn.ConvTranspose2d(2, 4, (2, 3), stride=(2, 1), padding=(0, 1), groups=2, bias=False).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    z = layer(x).detach()
    M = dense(layer.weight.detach().numpy(), (2, 3, 3), tuple(z.shape[1:]), (2, 1), (0, 1), (1, 1), 2)
    np.testing.assert_allclose(M @ x.numpy().reshape(-1), z.numpy().reshape(-1), rtol=1e-12)


class Functional(nn.Module):
    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        self.w, self.b = layer.weight, layer.bias

    def forward(self, x):
        return F.conv_transpose2d(F.relu(x), self.w, self.b, stride=2, padding=1, output_padding=1).mean((2, 3))


class AsModule(nn.Module):
    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(F.relu(x)).mean((2, 3))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_functional_conv_transpose_equals_the_module_and_takes_the_conv_rule(preset):
    torch.manual_seed(1)
    layer = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1).eval()
    x = torch.randn(2, 3, 5, 5)
    Rm = sx.explain(AsModule(layer).eval(), x, preset=preset)
    Rf = sx.explain(Functional(layer).eval(), x, preset=preset)
    np.testing.assert_allclose(Rm.values, Rf.values, rtol=1e-5, atol=1e-7)
    assert_balances(Rm, rtol=1e-5, atol=1e-6)
    if preset == "epsilon-plus":  # the preset's convolution rule, ZPlus, covers the transposed one
        assert "ConvTranspose2d): ZPlus" in Rm.attrs["rules"]


def test_output_size_argument_is_honoured():
    class WithSize(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose1d(2, 3, 3, stride=2)

        def forward(self, x):
            return self.up(x, output_size=[2 * x.shape[-1] + 2]).sum(2)

    torch.manual_seed(2)
    model = WithSize().eval()
    x = torch.randn(2, 2, 4)
    R = sx.explain(model, x, preset="epsilon")
    assert_balances(R, rtol=1e-5, atol=1e-6)


class UNetish(nn.Module):
    def __init__(self, dims: int, stride: int, kernel: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        up = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
        self.down = conv(2, 4, kernel, stride=stride)
        self.up = up(4, 3, kernel, stride=stride)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        h = self.up(F.relu(self.down(x)))
        return self.head(F.relu(h).flatten(2).mean(2))


@settings(max_examples=12, deadline=None)
@given(dims=st.sampled_from([1, 2, 3]), stride=st.integers(1, 3), kernel=st.integers(1, 3),
       size=st.integers(3, 6), batch=st.integers(1, 3), seed=st.integers(0, 1000),
       preset=st.sampled_from(["epsilon", "epsilon-plus", "alpha2-beta1", "deep-taylor"]))
def test_conservation_through_encoder_decoders(dims, stride, kernel, size, batch, seed, preset):
    model = UNetish(dims, stride, kernel, seed).eval()
    x = torch.randn(batch, 2, *(size,) * dims, generator=torch.Generator().manual_seed(seed))
    before = state_copy(model)
    R = sx.explain(model, x, preset=preset)
    assert R.shape == tuple(x.shape)
    total = R.values.reshape(batch, -1).sum(1) + R.absorbed.values
    np.testing.assert_allclose(total, R.prediction.values, rtol=1e-5, atol=1e-5)
    assert_state_equal(model, before)
