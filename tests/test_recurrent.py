"""LSTM/GRU relevance (Arras et al. 2017) against an independent numpy reference.

The reference below is written from the paper's equations, with loops over time steps, and
shares no code with sciexplain: its own forward pass (checked against torch), the epsilon rule
on each gate pre-activation taken jointly over input and recurrent weights (denominator = the
pre-activation itself, bias and stabilizer absorbed), signal-take-all at the gates, and the
cell state split between the previous cell and the new input in proportion to their values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import sciexplain as sx
from sciexplain.errors import SciexplainError
from sciexplain.canonizers.recurrent import (InitialState, PackedSequenceError, RecurrentUnrolling, UnrolledGRU,
                                  UnrolledLSTM, UnrolledRNN, unroll)
from sciexplain.rules import Epsilon

from conftest import (assert_ledger_balances, assert_no_hooks, assert_state_equal, hook_counts,
                      state_copy, training_flags)

EPS = 1e-3


def preset(eps: float = EPS) -> dict:
    """Epsilon with one epsilon on every linear map and every sum (the paper's setting)."""
    return {nn.Linear: Epsilon(eps), "op:add": Epsilon(eps)}


# -- the independent numpy reference -------------------------------------------------------------

def _sign(z):
    return np.where(z >= 0, 1.0, -1.0)


def _eps_rule(a, W, z, R, eps):
    """Epsilon rule for z = a @ W.T + b (z given, bias included): R_a = a * (R / (z + eps sign z)) @ W."""
    return a * ((R / (z + eps * _sign(z))) @ W)


def _split(num_a, num_b, total, R, eps):
    """Proportional split of R over total = num_a + num_b (a sum, Arras' cell-state rule)."""
    s = R / (total + eps * _sign(total))
    return num_a * s, num_b * s


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np(t):
    return t.detach().double().numpy()


def _direction_params(rnn, layer, d):
    sfx = f"l{layer}{'_reverse' if d else ''}"
    W_ih, W_hh = _np(getattr(rnn, f"weight_ih_{sfx}")), _np(getattr(rnn, f"weight_hh_{sfx}"))
    if rnn.bias:
        b_ih, b_hh = _np(getattr(rnn, f"bias_ih_{sfx}")), _np(getattr(rnn, f"bias_hh_{sfx}"))
    else:
        b_ih, b_hh = np.zeros(W_ih.shape[0]), np.zeros(W_hh.shape[0])
    return W_ih, W_hh, b_ih, b_hh


def _lstm_direction(x, W_ih, W_hh, b_ih, b_hh, h0, c0, reverse, eps, R_out):
    """Forward and LRP of one LSTM direction. x: (B, T, F); R_out: (B, T, H) at the outputs.
    Torch's gate order is i, f, g, o. Returns outputs, R_x, R_h0, R_c0."""
    B, T, _ = x.shape
    H = W_hh.shape[1]
    W = np.concatenate([W_ih, W_hh], 1)
    b = b_ih + b_hh
    order = list(range(T))[::-1] if reverse else list(range(T))
    h, c = h0, c0
    store = {}
    out = np.zeros((B, T, H))
    for t in order:
        a = np.concatenate([x[:, t], h], 1)
        z = a @ W.T + b
        i, f, g, o = _sig(z[:, :H]), _sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sig(z[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        store[t] = (a, z, i, f, g, c, c_new)
        h, c = h_new, c_new
        out[:, t] = h
    R_x = np.zeros_like(x)
    R_h = np.zeros((B, H))  # relevance carried to h_{t-1}
    R_c = np.zeros((B, H))  # relevance carried to c_{t-1}
    for t in order[::-1]:
        a, z, i, f, g, c_prev, c_t = store[t]
        R_cell = R_out[:, t] + R_h + R_c       # h_t = o * tanh(c_t): all to c_t (signal-take-all)
        R_c, R_g = _split(f * c_prev, i * g, c_t, R_cell, eps)  # c_t = f c_{t-1} + i g
        zg, Wg = z[:, 2 * H:3 * H], W[2 * H:3 * H]
        R_a = _eps_rule(a, Wg, zg, R_g, eps)   # joint epsilon over [x_t, h_{t-1}]
        R_x[:, t] = R_a[:, :x.shape[2]]
        R_h = R_a[:, x.shape[2]:]
    return out, R_x, R_h, R_c


def _gru_direction(x, W_ih, W_hh, b_ih, b_hh, h0, reverse, eps, R_out):
    """Forward and LRP of one GRU direction in torch's equations (gate order r, z, n)."""
    B, T, F = x.shape
    H = W_hh.shape[1]
    order = list(range(T))[::-1] if reverse else list(range(T))
    h = h0
    store = {}
    out = np.zeros((B, T, H))
    for t in order:
        xt = x[:, t]
        r = _sig(xt @ W_ih[:H].T + b_ih[:H] + h @ W_hh[:H].T + b_hh[:H])
        zg = _sig(xt @ W_ih[H:2 * H].T + b_ih[H:2 * H] + h @ W_hh[H:2 * H].T + b_hh[H:2 * H])
        ax = xt @ W_ih[2 * H:].T + b_ih[2 * H:]
        ah = h @ W_hh[2 * H:].T + b_hh[2 * H:]
        npre = ax + r * ah
        n = np.tanh(npre)
        h_new = (1 - zg) * n + zg * h
        store[t] = (xt, h, r, zg, ax, ah, npre, n, h_new)
        h = h_new
        out[:, t] = h
    R_x = np.zeros_like(x)
    R_h = np.zeros((B, H))
    for t in order[::-1]:
        xt, h_prev, r, zg, ax, ah, npre, n, h_t = store[t]
        R = R_out[:, t] + R_h
        R_n, R_h = _split((1 - zg) * n, zg * h_prev, h_t, R, eps)    # h' = (1-z) n + z h
        R_ax, R_rah = _split(ax, r * ah, npre, R_n, eps)             # tanh passes; npre = ax + r ah
        R_x[:, t] = _eps_rule(xt, W_ih[2 * H:], ax, R_ax, eps)
        R_h = R_h + _eps_rule(h_prev, W_hh[2 * H:], ah, R_rah, eps)  # r is a gate: all to ah
    return out, R_x, R_h


def _rnn_direction(x, W_ih, W_hh, b_ih, b_hh, h0, reverse, eps, R_out, relu):
    """Forward and LRP of one Elman direction: h = act(W [x; h] + b), the activation passes."""
    B, T, F = x.shape
    W, b = np.concatenate([W_ih, W_hh], 1), b_ih + b_hh
    order = list(range(T))[::-1] if reverse else list(range(T))
    h, store, out = h0, {}, np.zeros((B, T, W_hh.shape[1]))
    for t in order:
        a = np.concatenate([x[:, t], h], 1)
        z = a @ W.T + b
        h = np.maximum(z, 0) if relu else np.tanh(z)
        store[t] = (a, z)
        out[:, t] = h
    R_x, R_h = np.zeros_like(x), np.zeros_like(h0)
    for t in order[::-1]:
        a, z = store[t]
        R_a = _eps_rule(a, W, z, R_out[:, t] + R_h, eps)
        R_x[:, t], R_h = R_a[:, :F], R_a[:, F:]
    return out, R_x, R_h


def _direction(rnn, seq, p, h0, c0, reverse, eps, R_out):
    """(outputs, R_x, {state: R}) of one direction of any of the three layer types."""
    if isinstance(rnn, nn.LSTM):
        o, R_x, R_h, R_c = _lstm_direction(seq, *p, h0, c0, reverse, eps, R_out)
        return o, R_x, {"h": R_h, "c": R_c}
    if isinstance(rnn, nn.GRU):
        o, R_x, R_h = _gru_direction(seq, *p, h0, reverse, eps, R_out)
    else:
        o, R_x, R_h = _rnn_direction(seq, *p, h0, reverse, eps, R_out, rnn.nonlinearity == "relu")
    return o, R_x, {"h": R_h}


def reference(model: "SeqModel", x: np.ndarray, target: np.ndarray, eps: float = EPS,
              keep: np.ndarray | None = None):
    """LRP of ``model`` on ``x`` (B, T, F) with numpy. ``keep`` masks the relevance entering the
    readout features (to follow one direction's flow). Returns dict with logits, R (like x),
    initial (state name -> (B,) absorbed) and feat."""
    rnn = model.rnn
    L, D, H = rnn.num_layers, 2 if rnn.bidirectional else 1, rnn.hidden_size
    B, T, _ = x.shape
    h0 = _np(model.h0) if model.h0 is not None else np.zeros((L * D, 1, H))
    c0 = _np(model.c0) if getattr(model, "c0", None) is not None else np.zeros((L * D, 1, H))
    h0, c0 = np.broadcast_to(h0, (L * D, B, H)), np.broadcast_to(c0, (L * D, B, H))
    # forward, layer by layer (outputs only), to get the readout and every layer's input
    inputs, seq = [], x
    for layer in range(L):
        inputs.append(seq)
        outs = []
        for d in range(D):
            p = _direction_params(rnn, layer, d)
            zero = np.zeros((B, T, H))
            k = layer * D + d
            o, _, _ = _direction(rnn, seq, p, h0[k], c0[k], d == 1, eps, zero)
            outs.append(o)
        seq = np.concatenate(outs, -1)
    feat = seq[:, -1] if D == 1 else np.concatenate([seq[:, -1, :H], seq[:, 0, H:]], 1)
    Wf, bf = _np(model.fc.weight), (_np(model.fc.bias) if model.fc.bias is not None else 0.0)
    logits = feat @ Wf.T + bf
    rows = np.arange(B)
    R_logits = np.zeros_like(logits)
    R_logits[rows, target] = logits[rows, target]
    R_feat = _eps_rule(feat, Wf, logits, R_logits, eps)
    if keep is not None:
        R_feat = R_feat * keep
    R_seq = np.zeros_like(seq)
    if D == 1:
        R_seq[:, -1] = R_feat
    else:
        R_seq[:, -1, :H] = R_feat[:, :H]
        R_seq[:, 0, H:] = R_feat[:, H:]
    initial = {}
    for layer in reversed(range(L)):
        R_in = np.zeros_like(inputs[layer])
        for d in range(D):
            p = _direction_params(rnn, layer, d)
            k = layer * D + d
            R_out = R_seq[:, :, d * H:(d + 1) * H]
            sfx = f"l{layer}{'_reverse' if d else ''}"
            _, R_x, R_states = _direction(rnn, inputs[layer], p, h0[k], c0[k], d == 1, eps, R_out)
            for role, R_state in R_states.items():
                initial[f"{role}_{sfx}"] = R_state.sum(1)
            R_in += R_x
        R_seq = R_in
    return {"logits": logits, "R": R_seq, "initial": initial, "feat": feat}


# -- models --------------------------------------------------------------------------------------

class SeqModel(nn.Module):
    """A sequence classifier: recurrent layer, readout of the last step (forward direction) and
    the first step (backward direction), a Linear head. Input (batch, time, features)."""

    def __init__(self, kind: str = "lstm", n_in: int = 4, hidden: int = 3, layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = True, bias: bool = True,
                 classes: int = 2, initial: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        cls, extra = {"lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}), "rnn": (nn.RNN, {}),
                      "rnn-relu": (nn.RNN, {"nonlinearity": "relu"})}[kind]
        self.rnn = cls(n_in, hidden, layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional, **extra)
        D = 2 if bidirectional else 1
        with torch.no_grad():  # weights large enough that gates are not all ~0.5
            for p in self.rnn.parameters():
                p.normal_(0, 0.7)
        self.readout = nn.Identity()
        self.fc = nn.Linear(hidden * D, classes, bias=bias)
        g = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("h0", torch.randn(layers * D, 1, hidden, generator=g) if initial else None)
        self.register_buffer("c0", torch.randn(layers * D, 1, hidden, generator=g)
                             if initial and kind == "lstm" else None)
        self.hidden, self.D = hidden, D
        self.eval()

    def forward(self, x):
        seq = x if self.rnn.batch_first else x.transpose(0, 1)
        if self.h0 is None:
            out, _ = self.rnn(seq)
        else:
            h0 = self.h0.expand(-1, x.shape[0], -1).contiguous()
            hx = (h0, self.c0.expand(-1, x.shape[0], -1).contiguous()) if self.c0 is not None else h0
            out, _ = self.rnn(seq, hx)
        if not self.rnn.batch_first:
            out = out.transpose(0, 1)
        H = self.hidden
        feat = out[:, -1] if self.D == 1 else torch.cat([out[:, -1, :H], out[:, 0, H:]], -1)
        return self.fc(self.readout(feat))


def make_seq(seed=0, batch=3, steps=5, dtype=torch.float64, **kw):
    model = SeqModel(seed=seed, **kw).to(dtype)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, steps, model.rnn.input_size, generator=g, dtype=dtype)
    return model, x


def check_against_reference(model, x, keep=None, rtol=1e-7, atol=1e-9, **explain_kw):
    R = sx.explain(model, x, preset=preset(), **explain_kw)
    target = R["target"].values
    ref = reference(model, x.numpy(), target, keep=keep)
    tol = {"rtol": 1e-10, "atol": 1e-12} if x.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), ref["logits"], **tol)
    if keep is None:
        np.testing.assert_allclose(R["prediction"].values, ref["logits"][np.arange(len(target)), target],
                                   **tol)
    np.testing.assert_allclose(R.values, ref["R"], rtol=rtol, atol=atol)
    return R, ref


STRUCTURES = list(itertools.product(["lstm", "gru"], [1, 2], [False, True], [True, False], [True, False]))
ELMAN = [("rnn", 2, True, True, True), ("rnn-relu", 1, True, True, False), ("rnn", 1, False, True, False)]


# -- forward equivalence and parameter sharing ------------------------------------------------------

@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,bias", STRUCTURES + [
    ("rnn", 2, True, b, bias) for b in (True, False) for bias in (True, False)])
def test_unrolled_module_computes_the_same_function(kind, layers, bidirectional, batch_first, bias):
    torch.manual_seed(layers + 2 * bidirectional)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    rnn = cls(4, 3, layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional).double()
    u = unroll(rnn)
    assert isinstance(u, {"lstm": UnrolledLSTM, "gru": UnrolledGRU, "rnn": UnrolledRNN}[kind])
    # the very same parameter objects, under the same names
    assert [n for n, _ in u.named_parameters()] == [n for n, _ in rnn.named_parameters()]
    for (_, p), (_, q) in zip(u.named_parameters(), rnn.named_parameters()):
        assert p is q
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    D = 2 if bidirectional else 1
    for hx in (None, "given"):
        if hx == "given":
            h0 = torch.randn(layers * D, 3, 3, dtype=torch.float64)
            hx = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
        out_a, st_a = rnn(x, hx)
        out_b, st_b = u(x, hx)
        torch.testing.assert_close(out_b, out_a, rtol=1e-12, atol=1e-12)
        for a, b in zip(st_a if kind == "lstm" else (st_a,), st_b if kind == "lstm" else (st_b,)):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_unrolled_cells_compute_the_same_function(cls):
    torch.manual_seed(3)
    cell = cls(4, 5).double()
    u = unroll(cell)
    assert all(p is q for p, q in zip(u.parameters(), cell.parameters()))
    x = torch.randn(3, 4, dtype=torch.float64)
    h = torch.randn(3, 5, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if cls is nn.LSTMCell else h
    for args in ((x,), (x, hx), (x[0],)):
        if len(args) == 1 and args[0].ndim == 1:
            a, b = cell(*args), u(*args)
        else:
            a, b = cell(*args), u(*args)
        for p, q in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-12)


def test_projected_lstm_computes_the_same_function():
    torch.manual_seed(5)
    rnn = nn.LSTM(4, 5, 2, batch_first=True, bidirectional=True, proj_size=2).double()
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    (a, (ha, ca)), (b, (hb, cb)) = rnn(x), unroll(rnn)(x)
    for p, q in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-12)


def test_unroll_leaves_other_modules_and_custom_subclasses_alone():
    class MyLSTM(nn.LSTM):
        def forward(self, x, hx=None):  # computes something else
            return super().forward(x.flip(1), hx)
    assert unroll(nn.Linear(2, 2)) is None
    assert unroll(MyLSTM(2, 2)) is None

    class PlainSubclass(nn.GRU):
        pass
    assert isinstance(unroll(PlainSubclass(2, 2)), UnrolledGRU)


def test_reference_forward_matches_torch():
    """The numpy reference's own forward pass reproduces torch (so it is a reference of this model)."""
    for kind, layers, bi in itertools.product(["lstm", "gru"], [1, 2], [False, True]):
        model, x = make_seq(kind=kind, layers=layers, bidirectional=bi, initial=True, seed=layers)
        ref = reference(model, x.numpy(), np.zeros(len(x), dtype=int))
        with torch.no_grad():
            np.testing.assert_allclose(model(x).numpy(), ref["logits"], rtol=1e-10, atol=1e-12)


# -- LRP against the reference ------------------------------------------------------------------------

@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,bias", [s for s in STRUCTURES if s[3]] + ELMAN)
def test_lrp_matches_the_numpy_reference(kind, layers, bidirectional, batch_first, bias):
    seed = 11 * layers + 3 * bidirectional + 5 * batch_first + bias
    model, x = make_seq(seed=seed, kind=kind, layers=layers, bidirectional=bidirectional,
                        batch_first=batch_first, bias=bias)
    R, _ = check_against_reference(model, x)
    R.relevance.check()
    assert "RecurrentUnrolling" in R.attrs["canonizers"] and "rnn" in R.attrs["canonizers"]


# A batch_first=False layer sits between two transposes of the user's model, whose tensors are
# (time, batch, ...), and the stacked final states h_n are (layers*dirs, batch, hidden): the engine
# tracks where the batch dim of every tensor is (sciexplain.explain.plan.track_batch_axes), so relevance
# stays per sample through both (more in test_batch_axis.py).
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lrp_on_time_first_layers(kind):
    model, x = make_seq(seed=13, kind=kind, batch_first=False, bidirectional=True)
    check_against_reference(model, x)


class FinalStateModel(nn.Module):
    """The usual classifier on the last layer's final hidden state: fc(h_n[-1])."""

    def __init__(self, seq_model: SeqModel):
        super().__init__()
        self.rnn, self.fc = seq_model.rnn, seq_model.fc
        self.eval()

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.fc(h_n[-1])


def test_lrp_on_the_final_state_h_n():
    seq, x = make_seq(seed=14, kind="lstm")
    R = sx.explain(FinalStateModel(seq), x, preset=preset())
    ref = reference(seq, x.numpy(), R["target"].values)  # unidirectional: h_n[-1] = out[:, -1]
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["lstm", "gru"]), steps=st.integers(1, 6),
       hidden=st.integers(1, 4), bidirectional=st.booleans(), initial=st.booleans())
def test_lrp_matches_the_reference_on_random_models(seed, kind, steps, hidden, bidirectional, initial):
    model, x = make_seq(seed=seed, kind=kind, steps=steps, hidden=hidden, bidirectional=bidirectional,
                        initial=initial, batch=2)
    R, _ = check_against_reference(model, x)
    R.relevance.check()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_models_match_the_reference(kind):
    model, x = make_seq(seed=4, kind=kind, layers=2, bidirectional=True, dtype=torch.float32)
    R, _ = check_against_reference(model, x, rtol=2e-4, atol=2e-5)
    R.relevance.check()


# -- the ledger and the initial states ------------------------------------------------------------------

@pytest.mark.parametrize("kind,initial", [("lstm", False), ("lstm", True), ("gru", False), ("gru", True)])
def test_initial_states_are_ledger_rows_of_their_own(kind, initial):
    model, x = make_seq(seed=8, kind=kind, layers=2, bidirectional=True, initial=initial)
    R, led = sx.Explainer(model, preset=preset()).explain_with_ledger(x)
    assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
    R.relevance.check()
    ref = reference(model, x.numpy(), R["target"].values)
    names = list(led["layer"].values)
    roles = ("h", "c") if kind == "lstm" else ("h",)
    for key in (f"{r}_l{l}{s}" for r in roles for l in range(2) for s in ("", "_reverse")):
        row = f"rnn.initial.{key}"
        assert row in names, (row, names)
        absorbed = led["absorbed"].sel(layer=row).values
        entering = led["entering"].sel(layer=row).values
        np.testing.assert_allclose(absorbed, entering, rtol=0, atol=1e-15)  # everything is absorbed
        np.testing.assert_allclose(absorbed, ref["initial"][key], rtol=1e-7, atol=1e-10)
        if not initial:  # zero states take no relevance under the epsilon rule
            assert np.abs(absorbed).max() < 1e-12
        else:
            assert np.abs(absorbed).max() > 1e-6


# -- bidirectional: the sum of both directions' flows -------------------------------------------------

@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_relevance_is_the_sum_of_both_directions(kind):
    model, x = make_seq(seed=21, kind=kind, layers=2, bidirectional=True, steps=4)
    H = model.hidden
    full = sx.explain(model, x, preset=preset())
    fwd = sx.explain(model, x, preset=preset(), through={"readout": list(range(H))})
    bwd = sx.explain(model, x, preset=preset(), through={"readout": list(range(H, 2 * H))})
    np.testing.assert_allclose(fwd.values + bwd.values, full.values, rtol=1e-9, atol=1e-12)
    for R in (fwd, bwd):
        R.relevance.check()
    target = full["target"].values
    for R, half in ((fwd, slice(0, H)), (bwd, slice(H, 2 * H))):
        keep = np.zeros(2 * H)
        keep[half] = 1
        ref = reference(model, x.numpy(), target, keep=keep)
        np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
    # each direction's flow is really different (the test would notice a swapped direction)
    assert np.abs(fwd.values - bwd.values).max() > 1e-3


# -- cells, hand-written cells, tokens ------------------------------------------------------------------

class CellLoop(nn.Module):
    """An LSTMCell/GRUCell stepped over time in forward; same weights as ``SeqModel.rnn``."""

    def __init__(self, seq_model: SeqModel):
        super().__init__()
        rnn = seq_model.rnn
        lstm = isinstance(rnn, nn.LSTM)
        self.h0, self.c0 = seq_model.h0, seq_model.c0  # constant initial states (or None)
        self.cell = (nn.LSTMCell if lstm else nn.GRUCell)(rnn.input_size, rnn.hidden_size, bias=rnn.bias,
                                                           dtype=rnn.weight_ih_l0.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
                getattr(self.cell, name).copy_(getattr(rnn, f"{name}_l0"))
        self.fc = seq_model.fc
        self.lstm = lstm
        self.to(rnn.weight_ih_l0.dtype).eval()

    def forward(self, x):
        state = None
        if self.h0 is not None:
            h0 = self.h0[0].expand(x.shape[0], -1)
            state = (h0, self.c0[0].expand(x.shape[0], -1)) if self.lstm else h0
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        h = state[0] if self.lstm else state
        return self.fc(h)


def make_cell_loop(kind="lstm", seed=31):
    seq, x = make_seq(seed=seed, kind=kind)
    return CellLoop(seq), x


@pytest.mark.parametrize("kind,initial", [("lstm", False), ("lstm", True), ("gru", False), ("gru", True)])
def test_cells_stepped_in_forward_match_the_reference(kind, initial):
    seq, x = make_seq(seed=31, kind=kind, initial=initial)
    loop = CellLoop(seq)
    R, led = sx.Explainer(loop, preset=preset()).explain_with_ledger(x)
    R.relevance.check()
    assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
    ref = reference(seq, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
    # the constant initial states (given to the first step) are ledger rows of their own
    for role in ("h", "c") if kind == "lstm" else ("h",):
        row = f"cell.initial.{role}"
        assert row in list(led["layer"].values)
        np.testing.assert_allclose(led["absorbed"].sel(layer=row).values, ref["initial"][f"{role}_l0"],
                                   rtol=1e-7, atol=1e-12)
        assert (np.abs(ref["initial"][f"{role}_l0"]).max() > 1e-6) == initial


class HandWrittenLSTM(nn.Module):
    """An LSTM cell written by hand with functional operations (no recurrent module at all)."""

    def __init__(self, seq_model: SeqModel):
        super().__init__()
        rnn = seq_model.rnn
        self.H = rnn.hidden_size
        self.gates = nn.Linear(rnn.input_size + self.H, 4 * self.H, bias=rnn.bias,
                               dtype=rnn.weight_ih_l0.dtype)
        with torch.no_grad():
            self.gates.weight.copy_(torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], 1))
            if rnn.bias:
                self.gates.bias.copy_(rnn.bias_ih_l0 + rnn.bias_hh_l0)
        self.fc = seq_model.fc
        self.to(rnn.weight_ih_l0.dtype).eval()

    def forward(self, x):
        h = torch.zeros(x.shape[0], self.H, dtype=x.dtype)
        c = torch.zeros_like(h)
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.fc(h)


def make_hand_written(seed=41):
    seq, x = make_seq(seed=seed, kind="lstm")
    return HandWrittenLSTM(seq), x


def test_hand_written_cell_matches_the_reference():
    seq, x = make_seq(seed=41, kind="lstm")
    model = HandWrittenLSTM(seq)
    R = sx.explain(model, x, preset=preset())
    R.relevance.check()
    ref = reference(seq, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)


class TokenLSTM(nn.Module):
    """Embedding + bidirectional LSTM text classifier on integer token ids (batch, time)."""

    def __init__(self, vocab=30, dim=5, hidden=4, seed=51):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, dim)
        self.seq = SeqModel("lstm", n_in=dim, hidden=hidden, bidirectional=True, seed=seed)
        self.double().eval()

    def forward(self, tokens):
        return self.seq(self.embed(tokens))


def make_token_model():
    model = TokenLSTM()
    tokens = torch.randint(0, 30, (3, 7), generator=torch.Generator().manual_seed(5))
    return model, tokens


def test_embedding_lstm_on_integer_tokens():
    model, tokens = make_token_model()
    R = sx.explain(model, tokens, preset=preset(), dims=("document", "token"))
    assert R.dims == ("document", "token") and R.shape == tokens.shape
    R.relevance.check()
    emb = model.embed(tokens).detach().numpy()
    ref = reference(model.seq, emb, R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"].sum(-1), rtol=1e-7, atol=1e-10)


# -- the user's model stays untouched; errors --------------------------------------------------------------

def _snapshot(model):
    return (state_copy(model), training_flags(model), {n: type(m) for n, m in model.named_modules()},
            {n: m for n, m in model.named_modules()}, hook_counts(model)["global"])


def _assert_untouched(model, snap):
    state, flags, types, objects, glob = snap
    assert_state_equal(model, state)
    assert training_flags(model) == flags
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert all(dict(model.named_modules())[n] is m for n, m in objects.items())
    assert_no_hooks(model, glob)


def test_the_users_model_is_untouched():
    model, x = make_seq(seed=61, kind="lstm", layers=2, bidirectional=True)
    model.train()  # explained in eval mode, flags restored
    marker = []
    model.rnn.register_forward_hook(lambda *a: marker.append(1))
    snap_state = state_copy(model)
    flags = training_flags(model)
    types = {n: type(m) for n, m in model.named_modules()}
    rnn = model.rnn
    params = {n: p for n, p in model.named_parameters()}
    with pytest.warns(sx.ExplainWarning):
        R = sx.explain(model, x, preset=preset())
    R.relevance.check()
    assert model.rnn is rnn and type(model.rnn) is nn.LSTM
    assert_state_equal(model, snap_state)
    assert training_flags(model) == flags
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert all(p is params[n] for n, p in model.named_parameters())
    assert len(model.rnn._forward_hooks) == 1  # the user's own hook, still there
    marker.clear()
    model.eval()
    with torch.no_grad():
        model(x)
    assert marker == [1]


class PackedModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(4, 3, batch_first=True)
        self.fc = nn.Linear(3, 2)
        self.eval()

    def forward(self, x):
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        _, (h, _) = self.rnn(pack_padded_sequence(x, lengths, batch_first=True))
        return self.fc(h[-1])


def test_packed_sequences_are_refused_clearly_and_the_model_is_untouched():
    model = PackedModel()
    x = torch.randn(2, 5, 4)
    snap = _snapshot(model)
    with pytest.raises(PackedSequenceError) as err:
        sx.explain(model, x)
    assert isinstance(err.value, SciexplainError) and isinstance(err.value, TypeError)
    message = str(err.value)
    assert "PackedSequence" in message and "padded" in message
    _assert_untouched(model, snap)
    assert type(model.rnn) is nn.LSTM


# -- gradient methods on the swapped model --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_gradient_methods_still_work(kind, batch_first):
    model, x = make_seq(seed=71, kind=kind, layers=2, bidirectional=True, batch_first=batch_first)
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    target = out.argmax(1)
    grad, = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), xg)
    G = sx.explain(model, x, method="gradient")
    np.testing.assert_allclose(G.values, grad.numpy(), rtol=1e-10, atol=1e-12)
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(GI.values, (grad * x).numpy(), rtol=1e-10, atol=1e-12)
    IG = sx.explain(model, x, method="integrated_gradients", steps=8)
    assert np.isfinite(IG.values).all()


# -- the canonizer ------------------------------------------------------------------------------------------

def test_canonizer_replaces_only_recurrent_modules():
    canon = RecurrentUnrolling()
    assert canon.name and "LSTM" in canon.describe()
    rnn = nn.GRU(3, 2)
    u = canon.replacement(rnn, "rnn")
    assert isinstance(u, UnrolledGRU) and u.weight_hh_l0 is rnn.weight_hh_l0
    assert canon.replacement(nn.Linear(2, 2), "fc") is None
    assert isinstance(u.initial["h_l0"], InitialState)


def test_initial_state_checks_its_shape():
    s = InitialState(3, "h")
    x = torch.zeros(2, 5)
    assert s(x).shape == (2, 3) and not s(x).any()
    with pytest.raises(SciexplainError, match="initial h state"):
        s(x, torch.zeros(3, 3))


# -- the ledger on every recurrent family ------------------------------------------------------------

def _families():
    yield "lstm", make_seq(seed=1, kind="lstm")
    yield "gru-bidirectional-2-layers", make_seq(seed=2, kind="gru", layers=2, bidirectional=True)
    yield "lstm-initial-state", make_seq(seed=3, kind="lstm", initial=True, bidirectional=True)
    yield "lstm-cell-loop", make_cell_loop("lstm")
    yield "gru-cell-loop", make_cell_loop("gru")
    yield "hand-written-cell", make_hand_written()
    yield "tokens", make_token_model()
    yield "elman-relu-bidirectional", make_seq(seed=4, kind="rnn-relu", bidirectional=True, initial=True)


@pytest.mark.parametrize("name,case", list(_families()), ids=[n for n, _ in _families()])
def test_ledger_balances_on_every_recurrent_family(name, case):
    model, x = case
    for p in (preset(), "epsilon", "epsilon-plus"):
        R = sx.explain(model, x, preset=p)
        R.relevance.check()
        led = sx.ledger(model, x, preset=p)
        assert_ledger_balances(led)


class HandWrittenWithInitialState(HandWrittenLSTM):
    """The hand-written cell started from constant, non-zero initial states h0, c0."""

    def __init__(self, seq_model: SeqModel):
        super().__init__(seq_model)
        self.register_buffer("h_init", seq_model.h0[0].clone())
        self.register_buffer("c_init", seq_model.c0[0].clone())

    def forward(self, x):
        h = self.h_init.expand(x.shape[0], -1)
        c = self.c_init.expand(x.shape[0], -1)
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.fc(h)


def test_hand_written_cell_with_a_constant_initial_cell_state():
    seq, x = make_seq(seed=41, kind="lstm", initial=True)
    model = HandWrittenWithInitialState(seq)
    R = sx.explain(model, x, preset=preset())
    R.relevance.check()
    ref = reference(seq, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
