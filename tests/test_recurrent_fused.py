"""Fused LSTM layers (sciexplain.canonizers.recurrent_fused): same function, same relevance as the
operation-by-operation unrolling, chosen only where the preset gives the paper's rules.

The relevance of the default (fused) path is also checked against the independent numpy
reference of Arras et al. (2017) in tests/test_recurrent.py, whose LSTM models go through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.rules.presets import ScaledEpsilon
from sciexplain.canonizers.recurrent import RecurrentUnrolling, UnrolledLSTM
from sciexplain.canonizers.recurrent_fused import FusedLSTM, LSTMLayer
from sciexplain.rules import Epsilon, ProportionalProduct, SignalTakeAll, UniformProduct

OP_BY_OP = [RecurrentUnrolling(fused=False)]


class Classifier(nn.Module):
    """An LSTM over a sequence, read out at its last step (both directions' final states)."""

    def __init__(self, lstm: nn.LSTM, classes: int = 3, readout: str = "output"):
        super().__init__()
        self.rnn = lstm
        D = 2 if lstm.bidirectional else 1
        self.fc = nn.Linear(lstm.hidden_size * D, classes)
        self.readout = readout

    def forward(self, x, hx=None):
        if not self.rnn.batch_first:  # the model takes (batch, time, features) and runs time first
            x = x.transpose(0, 1)
        out, (h_n, c_n) = self.rnn(x) if hx is None else self.rnn(x, hx)
        if self.readout == "cell":  # the last layer's final cell state (batch 1: (1, 1, hidden))
            return self.fc(c_n[-1])
        H = self.rnn.hidden_size
        if not self.rnn.batch_first:
            out = out.transpose(0, 1)
        if self.rnn.bidirectional:
            return self.fc(torch.cat([out[:, -1, :H], out[:, 0, H:]], -1))
        return self.fc(out[:, -1])


class WithInitialState(nn.Module):
    def __init__(self, clf: Classifier, hx):
        super().__init__()
        self.clf, self.hx = clf, hx

    def forward(self, x):
        return self.clf(x, self.hx)


def make(seed=0, *, layers=1, bidirectional=False, bias=True, batch=3, steps=5, features=4, hidden=3,
         dtype=torch.float64, readout="output"):
    torch.manual_seed(seed)
    lstm = nn.LSTM(features, hidden, num_layers=layers, bidirectional=bidirectional, bias=bias,
                   batch_first=True)
    model = Classifier(lstm, readout=readout).to(dtype).eval()
    x = torch.randn(batch, steps, features, dtype=dtype)
    return model, x


def both(model, x, preset, **kw):
    fused = sx.Explainer(model, preset=preset).explain_with_ledger(x, **kw)
    ops = sx.Explainer(model, preset=preset, canonizers=OP_BY_OP).explain_with_ledger(x, **kw)
    return fused, ops


def ledger_names(led) -> list[str]:
    return [str(v) for v in led["layer"].values]


def used_fused(led) -> bool:
    names = ledger_names(led)
    return any(n.startswith("rnn.layers.") for n in names) and not any("#" in n and n.startswith("rnn")
                                                                      for n in names)


PAPER = {nn.Linear: Epsilon(1e-3), "op:add": Epsilon(1e-2)}


# -- the same function ------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_module_computes_what_nn_lstm_does(layers, bidirectional, batch_first, bias):
    torch.manual_seed(layers * 8 + bidirectional * 4 + batch_first * 2 + bias)
    lstm = nn.LSTM(4, 3, num_layers=layers, bidirectional=bidirectional, bias=bias,
                   batch_first=batch_first).double().eval()
    fused = FusedLSTM(lstm, epsilon=1e-3, cell_epsilon=1e-3)
    assert fused.layers["l0"].weight_ih is lstm.weight_ih_l0  # the very same parameters
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    D = 2 if bidirectional else 1
    hx = (torch.randn(layers * D, 2, 3, dtype=torch.float64), torch.randn(layers * D, 2, 3, dtype=torch.float64))
    for args in ((x,), (x, hx), (x[:, 0] if batch_first else x[:, 0], None)):
        if args[-1] is None:  # unbatched (time, features)
            args = (args[0],)
        (a, (ha, ca)), (b, (hb, cb)) = lstm(*args), fused(*args)
        for u, v in ((a, b), (ha, hb), (ca, cb)):
            assert u.shape == v.shape
            np.testing.assert_allclose(v.detach().numpy(), u.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_fused_layer_output_layout():
    """(batch, time + 1, directions * hidden): the layer output, then the final cell states."""
    torch.manual_seed(3)
    lstm = nn.LSTM(2, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    out, (h_n, c_n) = lstm(x)
    f = FusedLSTM(lstm, epsilon=0.0, cell_epsilon=0.0)
    z = torch.zeros(2, 3, dtype=torch.float64)
    y = f.layers["l0"](x, z, z, z, z)
    assert y.shape == (2, 5, 6)
    np.testing.assert_allclose(y[:, :4].detach(), out.detach(), rtol=1e-12)
    for d in range(2):
        np.testing.assert_allclose(y[:, 4, 3 * d:3 * (d + 1)].detach(), c_n[d].detach(), rtol=1e-12)
    with pytest.raises(sx.UnsupportedModelError, match="4 initial states"):
        f.layers["l0"](x, z, z)


# -- the same relevance ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers,bidirectional,bias", [(1, False, True), (1, True, True), (2, False, False),
                                                       (2, True, True), (3, True, False)])
def test_fused_relevance_equals_the_unrolled_operations(layers, bidirectional, bias):
    model, x = make(seed=layers + 2 * bidirectional, layers=layers, bidirectional=bidirectional, bias=bias)
    (Rf, lf), (Ro, lo) = both(model, x, PAPER)
    assert used_fused(lf) and not used_fused(lo)
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(Rf.absorbed.values, Ro.absorbed.values, rtol=1e-9, atol=1e-13)
    Rf.relevance.check()
    entering, leaving, absorbed = (lf[k].values for k in ("entering", "leaving", "absorbed"))
    np.testing.assert_allclose(entering, leaving + absorbed, rtol=1e-9, atol=1e-13)


def test_relevance_on_initial_states_is_the_same_ledger_row():
    model, x = make(seed=5, layers=2, bidirectional=True)
    hx = (torch.randn(4, 3, 3, dtype=torch.float64), torch.randn(4, 3, 3, dtype=torch.float64))
    wrapped = WithInitialState(model, hx).eval()
    (Rf, lf), (Ro, lo) = both(wrapped, x, PAPER)
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-9, atol=1e-13)
    rows = [n for n in ledger_names(lo) if ".initial." in n]
    assert len(rows) == 8 and set(rows) <= set(ledger_names(lf))
    for row in rows:
        a, b = lf["absorbed"].sel(layer=row).values, lo["absorbed"].sel(layer=row).values
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)
    assert max(abs(lf["absorbed"].sel(layer=r).values).max() for r in rows) > 1e-6


@pytest.mark.parametrize("batch", [1, 3])
def test_relevance_from_the_final_cell_state(batch):
    """A classifier on c_n[-1]: relevance enters the unit at its final cell state (c_n is
    (layers, batch, hidden): the batch is its second dim)."""
    model, x = make(seed=6, layers=2, bidirectional=False, batch=batch, readout="cell")
    (Rf, lf), (Ro, _) = both(model, x, PAPER)
    assert used_fused(lf)
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-9, atol=1e-13)
    assert abs(Rf.values).max() > 1e-6
    Rf.relevance.check()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_time_first_layers_fused_equal_unrolled(bidirectional):
    """batch_first=False: the model's tensors are (time, batch, ...) around the layer."""
    torch.manual_seed(11)
    lstm = nn.LSTM(4, 3, num_layers=2, bidirectional=bidirectional, batch_first=False)
    model = Classifier(lstm).double().eval()
    x = torch.randn(3, 5, 4, dtype=torch.float64)  # (batch, time, features), transposed inside
    (Rf, lf), (Ro, _) = both(model, x, PAPER)
    assert used_fused(lf)
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-9, atol=1e-13)
    Rf.relevance.check()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 7), hidden=st.integers(1, 4),
       layers=st.integers(1, 2), bidirectional=st.booleans(), bias=st.booleans(),
       eps=st.sampled_from([0.0, 1e-6, 1e-2, 0.5]), cell_eps=st.sampled_from([1e-9, 1e-2, 0.3]))
def test_fused_equals_unrolled_on_random_models(seed, steps, hidden, layers, bidirectional, bias, eps, cell_eps):
    model, x = make(seed=seed, steps=steps, hidden=hidden, layers=layers, bidirectional=bidirectional,
                    bias=bias, batch=2)
    preset = {nn.Linear: Epsilon(eps), "op:add": Epsilon(cell_eps)}
    (Rf, lf), (Ro, _) = both(model, x, preset)
    assert used_fused(lf)
    scale = max(1.0, float(abs(Ro.values).max()))
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-7, atol=1e-10 * scale)
    Rf.relevance.check()


def test_float32_fused_matches_float64():
    model, x = make(seed=9, layers=2, bidirectional=True, steps=20, hidden=8)
    R64 = sx.explain(model, x, preset=PAPER)
    R32 = sx.explain(model.float(), x.float(), preset=PAPER)
    np.testing.assert_allclose(R32.values, R64.values, rtol=1e-3, atol=1e-5)


# -- which path, and with which epsilons ----------------------------------------------------------

def _fused_units(model, x, preset, canonizers=None) -> list:
    """The LSTMLayer units the explanation ran (their ledger descriptions) or []."""
    _, led = sx.Explainer(model, preset=preset, canonizers=canonizers).explain_with_ledger(x)
    return [str(r) for n, r in zip(led["layer"].values, led["op"].values) if str(n).startswith("rnn.layers.")]


@pytest.mark.parametrize("preset,expected", [
    (PAPER, "Epsilon(0.001) on the linear maps, Epsilon(0.01) on the cell sum"),
    ({"base": "epsilon", "op:add": Epsilon(0.1)}, "Epsilon(0.01) on the linear maps, Epsilon(0.1) on the cell sum"),
    ({nn.Linear: Epsilon(1e-3), "op:add": Epsilon(1e-2), "op:mul": SignalTakeAll()},
     "Epsilon(0.001) on the linear maps"),
])
def test_the_epsilons_are_those_the_unrolled_operations_would_get(preset, expected):
    model, x = make(seed=1)
    units = _fused_units(model, x, preset)
    assert units and all(expected in u for u in units), units
    (Rf, _), (Ro, _) = both(model, x, preset)
    np.testing.assert_allclose(Rf.values, Ro.values, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("preset", [
    "alpha2-beta1",                                            # AlphaBeta on the linear maps
    {nn.Linear: ScaledEpsilon(0.25), "op:add": Epsilon(1e-3)},  # not plain Epsilon
    {nn.Linear: Epsilon(1e-3), "op:mul": UniformProduct()},     # another product rule at the gates
    {nn.Linear: Epsilon(1e-3), "rnn": ProportionalProduct()},
])
def test_other_rules_inside_the_cell_keep_the_operation_by_operation_unrolling(preset):
    model, x = make(seed=2)
    assert _fused_units(model, x, preset) == []
    R = sx.explain(model, x, preset=preset)
    R.relevance.check()


def test_fused_false_and_projected_lstms_unroll_operation_by_operation():
    model, x = make(seed=3)
    assert _fused_units(model, x, PAPER, canonizers=OP_BY_OP) == []
    torch.manual_seed(0)
    proj = Classifier(nn.LSTM(4, 5, proj_size=3, batch_first=True)).double().eval()
    proj.fc = nn.Linear(3, 3).double().eval()
    assert _fused_units(proj, x, PAPER) == []
    assert isinstance(RecurrentUnrolling().replacement_for_rules(proj.rnn, "rnn", None), UnrolledLSTM)
    with pytest.raises(sx.UnsupportedModelError, match="proj_size"):
        FusedLSTM(proj.rnn, epsilon=0.0, cell_epsilon=0.0)


def test_canonizer_equality_and_repr():
    assert RecurrentUnrolling() == RecurrentUnrolling(fused=True) != RecurrentUnrolling(fused=False)
    assert repr(RecurrentUnrolling(fused=False)) == "RecurrentUnrolling(fused=False)"
    assert len({RecurrentUnrolling(), RecurrentUnrolling()}) == 1


# -- gradient methods, the user's model, the recorded unit --------------------------------------

@pytest.mark.parametrize("method", ["gradient", "gradient_x_input"])
def test_gradient_methods_differentiate_through_the_fused_kernel(method):
    model, x = make(seed=4, layers=2, bidirectional=True)
    R = sx.explain(model, x, method=method)
    xx = x.clone().requires_grad_(True)
    out = model(xx)
    target = torch.as_tensor(R["target"].values)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), xx)
    expected = g if method == "gradient" else g * x
    np.testing.assert_allclose(R.values, expected.numpy(), rtol=1e-10, atol=1e-13)


def test_the_users_model_is_untouched():
    model, x = make(seed=7, layers=2, bidirectional=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rnn = model.rnn
    sx.explain(model, x, preset=PAPER)
    assert model.rnn is rnn and type(model.rnn) is nn.LSTM
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_lstm_layer_is_one_unit_whose_propagator_conserves():
    """The unit's relevance leaving to x, h0, c0 plus what its biases and stabilisers absorb is
    what entered; with zero biases and epsilons nothing is absorbed but the gates' nothing."""
    model, x = make(seed=8, bias=True)
    _, led = sx.Explainer(model, preset={nn.Linear: Epsilon(0.0), "op:add": Epsilon(0.0)}).explain_with_ledger(x)
    row = led.sel(layer="rnn.layers.l0")
    assert str(row["rule"].values) == "registered: LSTM layer, one unit (Arras et al. 2017)"
    assert str(led.sel(layer="rnn.initial.h_l0")["rule"].values).startswith("registered: initial state")
    np.testing.assert_allclose(row["entering"].values, row["leaving"].values + row["absorbed"].values,
                               rtol=1e-12, atol=1e-14)
    assert isinstance(LSTMLayer, type)


@pytest.mark.parametrize("training", [False, True])
def test_replacements_keep_the_training_flag_of_the_layer_everywhere(training):
    from sciexplain.canonizers.recurrent import unroll
    lstm = nn.LSTM(3, 2, num_layers=2, bidirectional=True).train(training)
    for new in (unroll(lstm), FusedLSTM(lstm, epsilon=0.0, cell_epsilon=0.0)):
        assert {m.training for m in new.modules()} == {training}, type(new).__name__
