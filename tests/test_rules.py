"""Every LRP rule against its plain matrix formula.

The reference below is written independently of ``sciexplain.rules``: each layer (Linear or a
convolution with stride, padding, dilation and groups) is turned into a dense float64 matrix
``W`` (``z = W x + b``) by applying it to the basis vectors, and each rule is written as the
contribution matrix ``z_ij`` of its published formula, in the general-sign form of the
``rules.py`` docstring (``(x_i w_ij)^+`` for the positive part):

=============  ====================================================  =======================
rule           z_ij                                                  denominator bias
=============  ====================================================  =======================
Epsilon(e)     x_i w_ij                                              b_j (stabilizer e)
Gamma(g)       z_j >= 0: x_i w_ij + g (x_i w_ij)^+                   b_j + g b_j^+
               z_j <  0: x_i w_ij + g (x_i w_ij)^-                   b_j + g b_j^-
AlphaBeta      alpha (x_i w_ij)^+ / ...  -  beta (x_i w_ij)^- / ...  none (b^+, b^- if asked)
ZPlus          (x_i w_ij)^+                                          none
ZBox(l, h)     x_i w_ij - l_i w_ij^+ - h_i w_ij^-                    none
WSquare        w_ij^2                                                none
Flat           1 where i is connected to j                           none
=============  ====================================================  =======================

``R_i = sum_j z_ij / (sum_i' z_i'j + bias_j + eps sign(.)) R_j`` per term, with ``sign(0) = +1``;
the absorbed relevance is ``sum_j s_j (bias_j + eps sign(.))``. Gamma's two rows apply to the
output neurons by the sign of the plain output ``z_j = sum_i x_i w_ij + b_j`` (zero counts as
positive): each neuron uses exactly one of them.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from conftest import FAMILIES, FLOAT_FAMILIES, assert_balances, assert_ledger_balances
from hypothesis import given, settings
from hypothesis import strategies as st
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.errors import RuleError
from sciexplain.rules.propagation import AffineLayer, lrp_affine
from sciexplain.rules import AlphaBeta, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus

SEEDS = (0, 1, 2)

# -- layers ------------------------------------------------------------------------------------

#: name -> (module factory, input shape without batch)
LAYERS = {
    "linear": (lambda bias: nn.Linear(7, 5, bias=bias), (7,)),
    "conv1d_stride_pad": (lambda bias: nn.Conv1d(4, 6, 3, stride=2, padding=1, bias=bias), (4, 9)),
    "conv1d_dil_groups": (lambda bias: nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2, bias=bias), (4, 8)),
    "conv1d_depthwise": (lambda bias: nn.Conv1d(4, 8, 3, groups=4, bias=bias), (4, 7)),
    "conv2d_stride_pad": (lambda bias: nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias), (3, 6, 5)),
    "conv2d_dil_groups": (lambda bias: nn.Conv2d(4, 6, (2, 3), padding=(1, 0), dilation=(2, 1), groups=2,
                                                 bias=bias), (4, 5, 6)),
    "conv2d_depthwise": (lambda bias: nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=bias), (3, 5, 5)),
    "conv3d_stride_pad": (lambda bias: nn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1, bias=bias), (2, 3, 4, 3)),
    "conv3d_dil_groups": (lambda bias: nn.Conv3d(2, 4, (2, 2, 1), dilation=(2, 1, 1), groups=2, bias=bias),
                          (2, 4, 3, 3)),
}


def make_layer(name: str, bias: bool, seed: int) -> tuple[nn.Module, tuple]:
    factory, shape = LAYERS[name]
    torch.manual_seed(seed)
    m = factory(bias).double()
    with torch.no_grad():
        m.weight.normal_(0, 0.5)
        if bias:
            m.bias.normal_(0, 0.5)
    return m.eval(), shape


def linear_apply(m: nn.Module):
    """``x -> m(x) - bias`` written with torch.nn.functional (not the module's forward)."""
    if isinstance(m, nn.Linear):
        return lambda x, w: F.linear(x, w)
    conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[type(m)]
    return lambda x, w: conv(x, w, None, m.stride, m.padding, m.dilation, m.groups)


def dense(m: nn.Module, in_shape: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Dense matrix ``W`` (out x in) and bias vector ``b`` (out) of a layer, from basis vectors."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        out = linear_apply(m)(basis, m.weight)
    out_shape = tuple(out.shape[1:])
    W = out.reshape(n, -1).T.numpy().copy()
    if m.bias is None:
        b = np.zeros(W.shape[0])
    else:
        bias = m.bias.detach().numpy()
        per_pos = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        b = np.repeat(bias, per_pos)  # channel-major like the flattened output
    return W, b, out_shape


# -- the reference -----------------------------------------------------------------------------

def sign0(a: np.ndarray) -> np.ndarray:
    return np.where(a >= 0, 1.0, -1.0)


def reference(terms, R: np.ndarray) -> tuple[np.ndarray, float]:
    """One sample: ``terms`` = [(coef, Z (out x in), bias (out) or None, eps[, mask (out)])],
    ``R`` (out). A term with a boolean ``mask`` redistributes only the neurons it selects."""
    n_out, n_in = terms[0][1].shape
    R_in = np.zeros(n_in)
    absorbed = 0.0
    for coef, Z, bias, eps, *mask in terms:
        bias = np.zeros(n_out) if bias is None else bias
        R_t = np.where(mask[0], R, 0.0) if mask else R
        z = Z.sum(axis=1) + bias  # z_j = sum_i z_ij + b_j
        stab = eps * sign0(z) if eps > 0 else np.zeros(n_out)
        den = z + stab
        dead = den == 0  # only with eps = 0: R_j cannot be passed on and is absorbed
        s = np.where(dead, 0.0, R_t / np.where(dead, 1.0, den))
        R_in += coef * np.einsum("ji,j->i", Z, s)
        absorbed += coef * (np.sum(s * (bias + stab)) + np.sum(R_t[dead]))
    return R_in, absorbed


def rule_terms(rule, x: np.ndarray, W: np.ndarray, b: np.ndarray | None, low=None, high=None):
    """The plain formula of ``rule`` for one sample ``x`` (flat) and dense ``W`` (out x in)."""
    zx = W * x[None, :]  # z_ij = x_i w_ij, indexed [j, i]
    pos, neg = np.maximum(zx, 0), np.minimum(zx, 0)
    if isinstance(rule, Epsilon):
        return [(1.0, zx, b, rule.epsilon)]
    if isinstance(rule, Gamma):
        g = rule.gamma
        z = zx.sum(axis=1) + (0.0 if b is None else b)  # the plain output, bias included
        b_up = None if b is None else b + g * np.maximum(b, 0)
        b_down = None if b is None else b + g * np.minimum(b, 0)
        return [(1.0, zx + g * pos, b_up, rule.stabilizer, z >= 0),
                (1.0, zx + g * neg, b_down, rule.stabilizer, z < 0)]
    if isinstance(rule, AlphaBeta):
        bp = np.maximum(b, 0) if (rule.include_bias and b is not None) else None
        bn = np.minimum(b, 0) if (rule.include_bias and b is not None) else None
        out = [(rule.alpha, pos, bp, rule.stabilizer)]
        if rule.beta != 0:
            out.append((-rule.beta, neg, bn, rule.stabilizer))
        return out
    if isinstance(rule, ZPlus):
        return [(1.0, pos, None, rule.stabilizer)]
    if isinstance(rule, ZBox):
        Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
        return [(1.0, zx - low[None, :] * Wp - high[None, :] * Wn, None, rule.stabilizer)]
    if isinstance(rule, WSquare):
        return [(1.0, W ** 2, None, rule.stabilizer)]
    if isinstance(rule, Flat):
        return [(1.0, (W != 0).astype(float), None, rule.stabilizer)]
    raise AssertionError(rule)


def reference_batch(rule, x: torch.Tensor, R: torch.Tensor, W, b, low=None, high=None):
    B = x.shape[0]
    xs, Rs = x.reshape(B, -1).numpy(), R.reshape(B, -1).numpy()
    lo = None if low is None else np.broadcast_to(np.asarray(low, float), x.shape).reshape(B, -1)
    hi = None if high is None else np.broadcast_to(np.asarray(high, float), x.shape).reshape(B, -1)
    R_in, absorbed = [], []
    for k in range(B):
        terms = rule_terms(rule, xs[k], W, b, None if lo is None else lo[k], None if hi is None else hi[k])
        r, a = reference(terms, Rs[k])
        R_in.append(r)
        absorbed.append(a)
    return np.stack(R_in).reshape(x.shape), np.array(absorbed)


# -- the rules under test ----------------------------------------------------------------------

def channel_bounds(in_shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (per-feature for dense) bounds, shaped to broadcast against the input."""
    C = in_shape[0]
    shape = (1, C) + (1,) * (len(in_shape) - 1)
    low = -1.5 - torch.arange(C, dtype=torch.float64).reshape(shape) * 0.25
    high = 1.0 + torch.arange(C, dtype=torch.float64).reshape(shape) * 0.5
    return low, high


RULES = {
    "eps0": lambda shape: Epsilon(0.0),
    "eps1e-6": lambda shape: Epsilon(1e-6),
    "eps0.1": lambda shape: Epsilon(0.1),
    "eps2": lambda shape: Epsilon(2.0),
    "gamma0.25": lambda shape: Gamma(0.25),
    "gamma2": lambda shape: Gamma(2.0, stabilizer=1e-3),
    "alpha2beta1": lambda shape: AlphaBeta(2, 1),
    "alpha1beta0": lambda shape: AlphaBeta(1, 0),
    "alpha2beta1_bias": lambda shape: AlphaBeta(2, 1, include_bias=True),
    "zplus": lambda shape: ZPlus(),
    "zbox_scalar": lambda shape: ZBox(-2.0, 3.0),
    "zbox_channel": lambda shape: ZBox(*channel_bounds(shape)),
    "wsquare": lambda shape: WSquare(),
    "flat": lambda shape: Flat(),
}


def bounds_of(rule, x: torch.Tensor):
    if isinstance(rule, ZBox):
        return (torch.as_tensor(rule.low, dtype=torch.float64).expand_as(x),
                torch.as_tensor(rule.high, dtype=torch.float64).expand_as(x))
    return None, None


def make_input(shape: tuple, sign: str, seed: int, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + seed)
    if sign == "nonneg":
        x = torch.rand((batch,) + shape, generator=g, dtype=torch.float64)
        x[x < 0.2] = 0.0  # exact zeros, as after a ReLU
        return x
    return torch.randn((batch,) + shape, generator=g, dtype=torch.float64)


def affine_of(m: nn.Module, out_shape: tuple) -> AffineLayer:
    bias = None
    if m.bias is not None:
        bias = m.bias.detach()
        if len(out_shape) > 1:
            bias = bias.reshape((1, -1) + (1,) * (len(out_shape) - 1))
    return AffineLayer("layer", type(m).__name__, m.weight.detach(), bias, linear_apply(m))


def run_rule(layer: AffineLayer, x: torch.Tensor, R: torch.Tensor, rule):
    """lrp_affine, with its outputs detached (see test_lrp_affine_returns_plain_tensors)."""
    R_in, absorbed = lrp_affine(layer, x, R, rule)
    return R_in.detach(), absorbed.detach()


def close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-9 * scale, err_msg=what)


@pytest.mark.parametrize("sign", ["nonneg", "mixed"])
@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("layer_name", list(LAYERS))
def test_rule_matches_matrix_formula(layer_name, rule_name, sign):
    """lrp_affine == the plain matrix formula, for R of either sign, with and without bias."""
    for seed in SEEDS:
        for bias in (True, False):
            m, shape = make_layer(layer_name, bias, seed)
            rule = RULES[rule_name](shape)
            x = make_input(shape, sign, seed)
            W, b, out_shape = dense(m, shape)
            g = torch.Generator().manual_seed(200 + seed)
            R = torch.randn((x.shape[0],) + out_shape, generator=g, dtype=torch.float64)
            low, high = bounds_of(rule, x)
            R_ref, abs_ref = reference_batch(rule, x, R, W, b if bias else None, low, high)
            x_before = x.clone()
            R_in, absorbed = run_rule(affine_of(m, out_shape), x, R, rule)
            what = f"{layer_name} {rule!r} {sign} seed={seed} bias={bias}"
            assert R_in.shape == x.shape, what
            assert torch.equal(x, x_before), "lrp_affine modified its input"
            close(R_in.numpy(), R_ref, what + " (relevance)")
            close(absorbed.numpy(), abs_ref, what + " (absorbed)")
            # conservation: relevance in = relevance out - absorbed
            np.testing.assert_allclose(R_in.reshape(3, -1).sum(1) + absorbed, R.reshape(3, -1).sum(1),
                                       rtol=1e-8, atol=1e-8 * float(R.abs().sum()))


def test_reference_is_not_trivial():
    """The reference distinguishes the rules (a guard against a reference that ignores them)."""
    m, shape = make_layer("conv2d_stride_pad", True, 0)
    x = make_input(shape, "mixed", 0)
    W, b, out_shape = dense(m, shape)
    R = torch.randn((3,) + out_shape, dtype=torch.float64)
    outs = {}
    for name, make in RULES.items():
        rule = make(shape)
        low, high = bounds_of(rule, x)
        outs[name] = reference_batch(rule, x, R, W, b, low, high)[0]
    names = list(outs)
    for i, a in enumerate(names):
        for c in names[i + 1:]:
            if {a, c} <= {"eps0", "eps1e-6"} or {a, c} <= {"alpha1beta0", "zplus"}:
                continue  # these pairs are (nearly) equal by definition
            assert not np.allclose(outs[a], outs[c], rtol=1e-3, atol=1e-6), (a, c)


def test_dense_matrix_reproduces_the_layer():
    for name in LAYERS:
        m, shape = make_layer(name, True, 0)
        x = make_input(shape, "mixed", 0)
        W, b, out_shape = dense(m, shape)
        with torch.no_grad():
            z = m(x).reshape(3, -1).numpy()
        np.testing.assert_allclose(x.reshape(3, -1).numpy() @ W.T + b, z, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rule_name", ["eps0", "eps0.1", "gamma0.25", "alpha2beta1", "zplus",
                                       "zbox_scalar", "zbox_channel", "wsquare", "flat"])
@pytest.mark.parametrize("layer_name", ["linear", "conv1d_dil_groups", "conv2d_stride_pad",
                                        "conv2d_depthwise", "conv3d_stride_pad"])
def test_engine_single_layer_matches_formula(layer_name, rule_name):
    """Through sx.explain on a one-layer model: R = one-hot logit, the rule as the whole preset.

    This covers the engine's own path: the module's forward (bias reshaped per channel), the
    reuse of the recorded forward graph for plain epsilon, and the absorbed coordinate.
    """
    for seed in SEEDS[:2]:
        m, shape = make_layer(layer_name, True, seed)
        rule = RULES[rule_name](shape)
        model = nn.Sequential(m, nn.Flatten()).eval()
        x = make_input(shape, "mixed", seed, batch=2)
        W, b, out_shape = dense(m, shape)
        n_out = int(np.prod(out_shape))
        target = [seed % n_out, (5 * seed + 3) % n_out]
        R = sx.explain(model, x, target=target, preset=rule)
        with torch.no_grad():
            logits = model(x)
        R0 = torch.zeros_like(logits)
        R0[torch.arange(2), target] = logits[torch.arange(2), target]
        low, high = bounds_of(rule, x)
        R_ref, abs_ref = reference_batch(rule, x, R0.reshape((2,) + out_shape), W, b, low, high)
        what = f"{layer_name} {rule!r} seed={seed}"
        close(R.values, R_ref, what)
        close(R["absorbed"].values, abs_ref, what + " (absorbed)")
        np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(2), target].numpy(), rtol=1e-12)


def test_engine_circular_padding_conv():
    """A conv with padding_mode='circular' runs through its own forward; compare to the formula."""
    torch.manual_seed(3)
    m = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular").double().eval()
    model = nn.Sequential(m, nn.Flatten()).eval()
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    n = 2 * 5 * 6
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 2, 5, 6)
    with torch.no_grad():
        W = (m(basis) - m.bias.reshape(1, -1, 1, 1)).reshape(n, -1).T.numpy()
        logits = model(x)
    b = np.repeat(m.bias.detach().numpy(), 30)
    for rule in (Epsilon(0.01), ZPlus(), AlphaBeta(2, 1)):
        R = sx.explain(model, x, target=7, preset=rule)
        R0 = torch.zeros_like(logits)
        R0[:, 7] = logits[:, 7]
        R_ref, abs_ref = reference_batch(rule, x, R0, W, b)
        close(R.values, R_ref, repr(rule))
        close(R["absorbed"].values, abs_ref, repr(rule))


def test_float32_layer_close_to_float64_formula():
    m, shape = make_layer("conv2d_stride_pad", True, 1)
    x = make_input(shape, "nonneg", 1)
    W, b, out_shape = dense(m, shape)
    R = torch.randn((3,) + out_shape, dtype=torch.float64)
    m32 = copy.deepcopy(m).float()
    for rule in (Epsilon(0.1), ZPlus(), AlphaBeta(2, 1), Gamma(0.5)):
        R_ref, _ = reference_batch(rule, x, R, W, b)
        R_in, _ = run_rule(affine_of(m32, out_shape), x.float(), R.float(), rule)
        assert R_in.dtype == torch.float32
        np.testing.assert_allclose(R_in.double().numpy(), R_ref, rtol=1e-3, atol=1e-4 * np.abs(R_ref).max())


@pytest.mark.parametrize("rule", [ZPlus(), Epsilon(0.1)], ids=repr)
def test_lrp_affine_returns_plain_tensors(rule):
    """The public single-layer function returns relevance, not a node of an autograd graph."""
    m, shape = make_layer("linear", True, 0)
    x = make_input(shape, "mixed", 0)
    R = torch.randn(3, 5, dtype=torch.float64)
    R_in, absorbed = lrp_affine(affine_of(m, (5,)), x, R, rule)
    assert not R_in.requires_grad and R_in.grad_fn is None
    assert not absorbed.requires_grad
    assert not x.requires_grad


def test_epsilon0_dead_neuron_is_absorbed():
    """With eps = 0 a neuron with z_j = 0 cannot pass relevance on: all of R_j is absorbed."""
    lin = nn.Linear(3, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]))
        lin.bias.copy_(torch.tensor([0.25, 0.0]))
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    R = torch.tensor([[2.0, 5.0]], dtype=torch.float64)
    layer = AffineLayer("l", "Linear", lin.weight.detach(), lin.bias.detach(), lambda x_, w: F.linear(x_, w))
    R_in, absorbed = run_rule(layer, x, R, Epsilon(0.0))
    z0 = 1 - 4 + 1.5 + 0.25
    np.testing.assert_allclose(R_in.numpy(), [[1 / z0 * 2, -4 / z0 * 2, 1.5 / z0 * 2]])
    np.testing.assert_allclose(absorbed.numpy(), [0.25 / z0 * 2 + 5.0])
    assert torch.isfinite(R_in).all()


def test_zplus_on_nonnegative_input_is_nonnegative():
    m, shape = make_layer("conv2d_dil_groups", True, 0)
    x = make_input(shape, "nonneg", 0)
    W, b, out_shape = dense(m, shape)
    R = torch.rand((3,) + out_shape, dtype=torch.float64)
    R_in, absorbed = run_rule(affine_of(m, out_shape), x, R, ZPlus())
    assert bool((R_in >= 0).all())
    assert bool((R_in[x == 0] == 0).all())


def test_zplus_equals_alphabeta_1_0():
    m, shape = make_layer("conv1d_stride_pad", True, 2)
    x = make_input(shape, "mixed", 2)
    _, _, out_shape = dense(m, shape)
    R = torch.randn((3,) + out_shape, dtype=torch.float64)
    layer = affine_of(m, out_shape)
    a, _ = run_rule(layer, x, R, ZPlus())
    c, _ = run_rule(layer, x, R, AlphaBeta(1, 0))
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_gamma0_is_epsilon():
    m, shape = make_layer("linear", True, 1)
    x = make_input(shape, "mixed", 1)
    _, _, out_shape = dense(m, shape)
    R = torch.randn((3,) + out_shape, dtype=torch.float64)
    layer = affine_of(m, out_shape)
    a, aa = run_rule(layer, x, R, Gamma(0.0, stabilizer=1e-6))
    c, ca = run_rule(layer, x, R, Epsilon(1e-6))
    torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(aa, ca, rtol=1e-10, atol=1e-12)


# -- the sign-aware Gamma ------------------------------------------------------------------------

GAMMA_LAYERS = ["linear", "conv1d_stride_pad", "conv1d_depthwise", "conv2d_stride_pad", "conv2d_dil_groups"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(layer_name=st.sampled_from(GAMMA_LAYERS), seed=st.integers(0, 2**16), bias=st.booleans(),
       sign=st.sampled_from(["nonneg", "mixed"]), shift=st.sampled_from([-2.0, -0.5, 0.0, 0.5, 2.0]),
       gamma=st.sampled_from([0.1, 0.25, 1.0, 3.0]))
def test_gamma_matches_formula_on_outputs_of_either_sign(layer_name, seed, bias, sign, shift, gamma):
    """Gamma == its matrix formula where the plain outputs are mixed, mostly negative or mostly
    positive (``shift`` moves the bias; without a bias it moves the weights' mean)."""
    m, shape = make_layer(layer_name, bias, seed)
    with torch.no_grad():
        if bias:
            m.bias.add_(shift)
        else:
            m.weight.add_(0.2 * shift)
    rule = Gamma(gamma)
    x = make_input(shape, sign, seed)
    W, b, out_shape = dense(m, shape)
    g = torch.Generator().manual_seed(300 + seed)
    R = torch.randn((3,) + out_shape, generator=g, dtype=torch.float64)
    R_ref, abs_ref = reference_batch(rule, x, R, W, b if bias else None)
    R_in, absorbed = run_rule(affine_of(m, out_shape), x, R, rule)
    what = f"{layer_name} {rule!r} {sign} shift={shift} seed={seed} bias={bias}"
    close(R_in.numpy(), R_ref, what)
    close(absorbed.numpy(), abs_ref, what + " (absorbed)")
    np.testing.assert_allclose(R_in.reshape(3, -1).sum(1) + absorbed, R.reshape(3, -1).sum(1),
                               rtol=1e-8, atol=1e-8 * float(R.abs().sum()))


def test_gamma_covers_both_output_signs_in_the_formula_test():
    """The cases above do reach layers whose plain outputs have both signs (else the masks go
    untested)."""
    m, shape = make_layer("conv2d_stride_pad", True, 0)
    x = make_input(shape, "mixed", 0)
    with torch.no_grad():
        z = m(x)
    assert (z < 0).any() and (z > 0).any()


def test_gamma_negative_output_favours_negative_contributions():
    """By hand: ``x = (1, 1)``, ``w = (1, -3)``, ``z = -2``. Gamma(2) uses ``x w + 2 (x w)^-``
    = ``(1, -9)`` over ``d = -8``; the non-generalised rule (``x w + 2 (x w)^+`` = ``(3, -3)``)
    would divide by ``z + 2 z^+ = 0`` and blow up."""
    layer = AffineLayer("l", "Linear", torch.tensor([[1.0, -3.0]], dtype=torch.float64), None,
                        lambda x_, w: F.linear(x_, w))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    R = torch.tensor([[4.0]], dtype=torch.float64)
    R_in, absorbed = run_rule(layer, x, R, Gamma(2.0, stabilizer=1e-9))
    np.testing.assert_allclose(R_in.numpy(), [[4.0 * 1 / -8, 4.0 * -9 / -8]], rtol=1e-7)
    np.testing.assert_allclose(absorbed.numpy(), [4.0 * 1e-9 / 8], rtol=1e-6, atol=1e-15)
    # a positive output (same layer, input flipped in sign) uses the positive contributions
    R_in, _ = run_rule(layer, -x, R, Gamma(2.0, stabilizer=1e-9))  # x w = (-1, 3), z = 2
    np.testing.assert_allclose(R_in.numpy(), [[4.0 * -1 / 8, 4.0 * 9 / 8]], rtol=1e-7)


def test_gamma_with_zero_output_counts_it_as_positive():
    """``z_j = 0`` belongs to the positive outputs (like sign0): its relevance goes through the
    ``(x w)^+`` side, none is lost."""
    layer = AffineLayer("l", "Linear", torch.tensor([[1.0, -1.0]], dtype=torch.float64), None,
                        lambda x_, w: F.linear(x_, w))
    x = torch.tensor([[2.0, 2.0]], dtype=torch.float64)  # x w = (2, -2), z = 0
    R = torch.tensor([[1.0]], dtype=torch.float64)
    R_in, absorbed = run_rule(layer, x, R, Gamma(1.0, stabilizer=1e-9))
    np.testing.assert_allclose(R_in.numpy(), [[4.0 / 2.0, -2.0 / 2.0]], rtol=1e-7)  # (2 + 2, -2) / 2
    np.testing.assert_allclose(float(R_in.sum() + absorbed.sum()), 1.0, rtol=1e-12)


def test_term_output_selection_is_validated():
    from sciexplain.rules import Term
    with pytest.raises(RuleError, match="outputs='both'.*positive"):
        Term(1.0, [], None, 0.0, outputs="both")


@pytest.mark.parametrize("name", FLOAT_FAMILIES)
def test_gamma_ledger_balances_on_the_test_models(name):
    """Gamma on every weighted layer of every test model: the ledger balances per layer and in
    total, and no layer carries relevance far beyond |f(x)| (the old one-sided rule did)."""
    model, x = FAMILIES[name]()
    for rule in (Gamma(0.25), Gamma(2.0)):
        R, led = sx.Explainer(model, "lrp", rule).explain_with_ledger(x)
        assert_balances(R)
        R.relevance.check()
        assert_ledger_balances(led)
        entering = np.abs(led["entering"].values).max(axis=1)
        assert (entering <= 50 * np.abs(R["prediction"].values) + 1e-6).all(), (name, rule, entering)


# -- the shared evaluation of sign-split rules -------------------------------------------------

SIGNED_RULES = [ZPlus(), AlphaBeta(2, 1), AlphaBeta(1, 0), AlphaBeta(3, 2, include_bias=True), Gamma(0.25),
                Gamma(2.0, stabilizer=1e-3), Gamma(0.0)]


@pytest.mark.parametrize("rule", SIGNED_RULES, ids=repr)
def test_signed_terms_say_what_terms_say(rule):
    """``signed_terms`` (the fast path) and ``terms`` (the definition) give the same relevance,
    and the fast path is the one ``lrp_affine`` takes for these rules."""
    from sciexplain.rules import propagation
    ran = []
    for layer_name in ("linear", "conv1d_stride_pad", "conv2d_dil_groups"):
        for sign in ("nonneg", "mixed"):
            m, shape = make_layer(layer_name, True, 1)
            x = make_input(shape, sign, 1)
            _, _, out_shape = dense(m, shape)
            R = torch.randn((3,) + out_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
            layer = affine_of(m, out_shape)
            fast = propagation._signed_relevance(layer, rule.signed_terms(), x, R, None)
            ran.append(fast is not None)
            if fast is None:
                # a neuron whose z+ (or z-) is 0 or nearly so (e.g. all of a border neuron's few
                # contributions negative): left to the exact path, see the next test
                continue
            slow_R, slow_a = None, None
            for term in rule.terms(layer, x):
                R_t = R
                if term.outputs != "all":
                    z = layer.forward(x)
                    R_t = R.masked_fill(z < 0 if term.outputs == "positive" else z >= 0, 0)
                r, a = propagation._term_relevance(layer, term, R_t, None)
                slow_R = r if slow_R is None else slow_R + r
                slow_a = a if slow_a is None else slow_a + a
            what = f"{rule!r} {layer_name} {sign}"
            close(fast[0].detach().numpy(), slow_R.detach().numpy(), what)
            close(fast[1].detach().numpy(), slow_a.detach().numpy(), what + " (absorbed)")
    assert ran[0], ran  # the shared path did run (the dense layer: no near-zero z+ or z-)


def test_cancelling_denominator_falls_back_to_the_separate_terms():
    """alpha-beta on x >= 0 forms ``sum x w^-`` as ``z - sum x w^+``; a neuron whose active inputs
    all have positive weights has ``sum x w^- = 0`` exactly, which the difference gives only up to
    rounding. The shared evaluation must notice and leave it to the exact per-term path: the beta
    share of that neuron is then absorbed by the stabilizer, exactly as the formula says."""
    from sciexplain.rules import propagation
    w = torch.tensor([[0.5, 1.5, -2.0], [1.0, -1.0, 0.25]], dtype=torch.float64)
    b = torch.tensor([0.3, -0.2], dtype=torch.float64)
    layer = AffineLayer("l", "Linear", w, b, lambda x_, w_: F.linear(x_, w_))
    x = torch.tensor([[0.7, 1.3, 0.0]], dtype=torch.float64)  # neuron 0: only positive weights active
    R = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    assert propagation._signed_relevance(layer, AlphaBeta(2, 1).signed_terms(), x, R, None) is None
    R_in, absorbed = run_rule(layer, x, R, AlphaBeta(2, 1))
    R_ref, abs_ref = reference_batch(AlphaBeta(2, 1), x, R, w.numpy(), b.numpy())
    close(R_in.numpy(), R_ref, "relevance")
    close(absorbed.numpy(), abs_ref, "absorbed")
    np.testing.assert_allclose(float(R_in.sum() + absorbed.sum()), float(R.sum()), rtol=1e-12)


def test_shared_evaluation_leaves_inputs_and_weights_untouched():
    from sciexplain.rules import propagation
    m, shape = make_layer("conv2d_stride_pad", True, 2)
    x = make_input(shape, "mixed", 2)
    _, _, out_shape = dense(m, shape)
    layer = affine_of(m, out_shape)
    R = torch.randn((3,) + out_shape, dtype=torch.float64)
    before = (x.clone(), layer.weight.clone(), layer.bias.clone(), R.clone())
    for rule in SIGNED_RULES:
        R_in, absorbed = propagation._signed_relevance(layer, rule.signed_terms(), x, R, None)
        assert not R_in.requires_grad and not x.requires_grad
    for a, c in zip((x, layer.weight, layer.bias, R), before):
        assert torch.equal(a, c)


def test_wsquare_ignores_input_and_flat_spreads_evenly():
    lin = nn.Linear(4, 1, bias=True).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 0.5]]))
    layer = affine_of(lin, (1,))
    R = torch.tensor([[7.0], [7.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-5.0, 0.0, 1.0, 9.0]], dtype=torch.float64)
    w2, _ = run_rule(layer, x, R, WSquare())
    expected = 7.0 * np.array([1, 4, 9, 0.25]) / 14.25
    np.testing.assert_allclose(w2.numpy(), [expected, expected], rtol=1e-8)
    fl, _ = run_rule(layer, x, R, Flat())
    np.testing.assert_allclose(fl.numpy(), np.full((2, 4), 7.0 / 4), rtol=1e-8)


# -- construction, conventions, pickling, equality --------------------------------------------

def test_alphabeta_other_sign_convention_is_recognised():
    with pytest.raises(RuleError, match=r"other convention.*AlphaBeta\(alpha=2, beta=1\)"):
        AlphaBeta(2, -1)
    with pytest.raises(RuleError, match=r"alpha - beta = 1"):
        AlphaBeta(3, 1)
    with pytest.raises(RuleError, match=r"beta must be >= 0"):
        AlphaBeta(0.5, -0.5)
    assert AlphaBeta(2, 1).alpha - AlphaBeta(2, 1).beta == 1


@pytest.mark.parametrize("bad", [lambda: Epsilon(-0.1), lambda: Epsilon(float("inf")), lambda: Epsilon(float("nan")),
                                 lambda: Gamma(-1.0), lambda: ZBox(1.0, 0.0), lambda: ZBox(float("-inf"), 1.0),
                                 lambda: ZBox(torch.zeros(3), torch.ones(4))])
def test_invalid_rule_parameters(bad):
    with pytest.raises(RuleError):
        bad()


def test_zbox_bound_that_does_not_broadcast_names_shapes():
    lin = nn.Linear(4, 2).double()
    layer = affine_of(lin, (2,))
    x = torch.rand(2, 4, dtype=torch.float64)
    with pytest.raises(RuleError, match=r"does not broadcast.*\(2, 4\)"):
        lrp_affine(layer, x, torch.ones(2, 2, dtype=torch.float64), ZBox(torch.zeros(3), torch.ones(3)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), patches=st.lists(st.sampled_from(["black", "white", "random"]),
                                                    min_size=16, max_size=16),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_zbox_balances_in_float32_where_patches_touch_the_box(seed, patches, scale):
    """A 2x2/stride-2 stem on [0, 1] images (Fashion-MNIST's ConvNeXt): a channel whose weights are
    all >= 0 sees a black patch with a zB denominator of exactly 0 (all-<= 0: a white patch). Its
    relevance, of either sign as behind a linear head, cannot be passed on and is absorbed; the
    ledger balances in float32 to rounding, and the relevance agrees with the float64 formula."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(1, 4, 2, stride=2)
    with torch.no_grad():
        w = torch.randn(4, 1, 2, 2, generator=g)
        w[0], w[1] = w[0].abs(), -w[1].abs()
        conv.weight.copy_(w)
        conv.bias.copy_(torch.randn(4, generator=g))
    x = torch.rand(2, 1, 8, 8, generator=g)
    for k, kind in enumerate(patches):  # the 16 non-overlapping 2x2 patches of each image
        i, j = 2 * (k // 4), 2 * (k % 4)
        if kind != "random":
            x[:, :, i:i + 2, j:j + 2] = 0.0 if kind == "black" else 1.0
    R = torch.randn(2, 4, 4, 4, generator=g) * scale
    R_in, absorbed = run_rule(affine_of(conv, (4, 4, 4)), x, R, ZBox(0.0, 1.0))
    gap = R.sum(dim=(1, 2, 3)) - R_in.sum(dim=(1, 2, 3)) - absorbed
    assert (gap.abs() <= 1e-5 * R.abs().sum(dim=(1, 2, 3))).all(), gap
    W, b, _ = dense(conv.double(), (1, 8, 8))
    ref, ref_absorbed = reference_batch(ZBox(0.0, 1.0), x.double(), R.double(), W, b,
                                        np.zeros(x.shape), np.ones(x.shape))
    np.testing.assert_allclose(R_in.numpy(), ref, rtol=0, atol=1e-5 * np.abs(ref).max() + 1e-7)
    np.testing.assert_allclose(absorbed.numpy(), ref_absorbed, rtol=1e-5, atol=1e-6 * scale)


ALL_RULES = [Epsilon(0.0), Epsilon(0.25), Gamma(0.25), Gamma(1.0, stabilizer=1e-4), AlphaBeta(2, 1),
             AlphaBeta(1, 0), AlphaBeta(2, 1, include_bias=True), ZPlus(), ZBox(0.0, 1.0),
             ZBox(torch.tensor([0.0, -1.0]).reshape(1, 2, 1, 1), torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)),
             WSquare(), Flat(), Pass()]


@pytest.mark.parametrize("rule", ALL_RULES, ids=repr)
def test_rules_pickle_and_compare(rule):
    back = pickle.loads(pickle.dumps(rule))
    assert type(back) is type(rule)
    assert back == rule
    assert repr(back) == repr(rule)
    assert isinstance(rule.describe(), str) and rule.describe()
    assert copy.deepcopy(rule) == rule


def test_rule_equality_distinguishes_parameters_and_types():
    assert Epsilon(0.1) == Epsilon(0.1) and hash(Epsilon(0.1)) == hash(Epsilon(0.1))
    assert Epsilon(0.1) != Epsilon(0.2)
    assert Gamma(0.25) != Gamma(0.5)
    assert AlphaBeta(2, 1) != AlphaBeta(1, 0)
    assert AlphaBeta(2, 1) != AlphaBeta(2, 1, include_bias=True)
    assert ZPlus() != AlphaBeta(1, 0)  # same relevance, different rule objects
    assert ZBox(0, 1) == ZBox(0.0, 1.0)
    assert ZBox(0, 1) != ZBox(0, 2)
    assert ZBox(torch.zeros(2), torch.ones(2)) == ZBox(torch.zeros(2), torch.ones(2))
    assert ZBox(torch.zeros(2), torch.ones(2)) != ZBox(torch.zeros(2), torch.full((2,), 2.0))
    assert WSquare() != Flat()
    assert len({Epsilon(0.1), Epsilon(0.1), ZPlus(), ZPlus()}) == 2


def test_rules_are_immutable():
    r = Epsilon(0.1)
    with pytest.raises(Exception):
        r.epsilon = 0.5  # type: ignore[misc]
    assert r.epsilon == 0.1
