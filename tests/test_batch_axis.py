"""The batch dim anywhere: LRP through (time, batch, ...) tensors and stacked final states.

The engine records, for every tensor on the tape, which dim indexes the samples
(``sciexplain.explain.plan.track_batch_axes``). The references here share no code with it:

* the dim that indexes the samples, found by perturbing one sample at a time and seeing which
  entries of every recorded tensor change;
* the numpy LSTM/GRU/Elman reference of ``test_recurrent.py`` (the paper's equations, loops over
  time steps);
* per-sample independence: a sample's relevance and ledger rows in a batch equal those of the
  sample explained on its own;
* a batch-first twin of a time-first model (same weights, the batch kept first).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError, SciexplainError
from sciexplain.explain.forward import record_forward
from sciexplain.explain.plan import track_batch_axes
from sciexplain.canonizers.recurrent import unroll
from sciexplain.record.tape import OneSample

from conftest import assert_ledger_balances
from test_recurrent import SeqModel, make_seq, preset, reference


# -- the tracking against perturbation -------------------------------------------------------------

class Layouts(nn.Module):
    """Layout operations on a (3, 3, 3) batch: as many samples as time steps as features, so
    shapes alone cannot tell where the batch is. The last line is the output; every tensor
    before it is recorded and tracked."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2).double()

    def forward(self, x):
        a = x.transpose(0, 1)                       # (T, B, F): batch at 1
        b = a.permute(2, 0, 1)                      # (F, T, B): 2
        c = torch.movedim(b, 2, 0)                  # (B, F, T): 0
        c.swapaxes(1, 2)                            # 0
        a[-1]                                       # (B, F): 0
        a[:, :, None, 1:]                           # 1
        a[..., [0, 2]]                              # 1
        a[[0, 2], :, 1]                             # advanced indices apart: (2, B), 1
        a[:, [0, 2], :]                             # reorders samples: lost
        a[1:]                                       # 1
        a[:, 1:]                                    # cuts the batch: lost
        torch.stack(a.unbind(0), 2)                 # (B, F, T): 0
        torch.stack(a.unbind(1), 0)                 # one tensor per sample, stacked again: 0
        torch.stack([a[:, 2], a[:, 1], a[:, 0]], 2)  # samples stacked out of order: lost
        torch.stack([s * 2 for s in x], 1)          # a loop over the samples: 1
        x[1] * x[1] + 1                             # one sample's values: sample 1
        x[0] + x[1]                                 # two samples' values: lost
        torch.cat([s[None] for s in x.unbind(0)], 0)  # 0
        torch.cat([a, a * 2], 2)                    # 1
        torch.cat([a, a], 1)                        # joins along the batch: lost
        a.reshape(3, -1)                            # (T, B*F): lost
        a.flatten(1)                                # lost
        x.reshape(3, 3, 3).view(3, 9)               # (B, T*F): 0
        a.contiguous().view(3, 3, 3)                # 1
        a.unsqueeze(0).squeeze(0)                   # 1
        a.sum(0)                                    # (B, F): 0
        a.mean(1)                                   # lost
        a.amax(dim=(0, 2))                          # (B,): 0
        a.flip(0)                                   # 1
        a.flip(1)                                   # lost
        a.roll(1, 0)                                # 1
        torch.tanh(a) + a                           # 1
        a + a.transpose(0, 1)                       # combines different samples: lost
        F.linear(a, self.lin.weight)                # (T, B, 2): 1
        self.lin(a.transpose(1, 2))                 # acts on the batch dim: lost
        a @ self.lin.weight.T                       # 1
        self.lin.weight @ a.transpose(1, 2)         # (T, 2, B): 2
        a.chunk(3, 2)[0]                            # 1
        a.split(1, 1)[0]                            # lost
        a.narrow(2, 0, 2)                           # 1
        a.select(0, 1)                              # 0
        a.select(1, 1)                              # lost
        torch.stack([a[0], a[1] * 2], 0)[-1]        # an h_n-like stack, then its last entry: 0
        a[0].unsqueeze(0).expand(4, -1, -1)         # (4, B, F): 1
        a.index_select(1, torch.tensor([2, 0, 1]))  # lost
        a.index_select(0, torch.tensor([2, 0, 1]))  # 1
        torch.where(a > 0, a, torch.zeros(()))      # 1
        a.gather(2, torch.zeros(3, 3, 1, dtype=torch.long))  # 1
        a.repeat(1, 1, 2)                           # 1
        a.repeat(1, 2, 1)                           # lost
        F.pad(a, (1, 1))                            # 1
        F.avg_pool1d(a.permute(1, 2, 0), 2)         # (B, F, 1): 0
        return c.reshape(3, -1)[:, :2]


def _perturbation_axes(model, x):
    """For every recorded tensor, the dims along which exactly the perturbed sample's entries
    change (over all samples), and the samples whose perturbation changes it at all, by
    re-running the model with one sample replaced at a time."""
    base = record_forward(model, x, grad=False)
    values = [[o.detach().clone() for o in n.outputs] for n in base.tape.nodes]
    g = torch.Generator().manual_seed(3)
    ok: list[list[set[int]]] = [[set(range(v.ndim)) for v in vs] for vs in values]
    moved: list[list[set[int]]] = [[set() for _ in vs] for vs in values]
    for j in range(x.shape[0]):
        xp = x.clone()
        xp[j] = torch.randn(xp[j].shape, generator=g, dtype=x.dtype)
        other = record_forward(model, xp, grad=False)
        assert len(other.tape.nodes) == len(base.tape.nodes)
        for i, node in enumerate(other.tape.nodes):
            for k, o in enumerate(node.outputs):
                diff = (o.detach() - values[i][k]).abs()
                if diff.max() > 0:
                    moved[i][k].add(j)
                for a in list(ok[i][k]):
                    if diff.shape[a] != x.shape[0]:
                        ok[i][k].discard(a)
                        continue
                    inside = diff.select(a, j)
                    outside = torch.cat([diff.narrow(a, 0, j), diff.narrow(a, j + 1, diff.shape[a] - j - 1)], a)
                    if not (inside.max() > 0 and (outside.numel() == 0 or outside.max() == 0)):
                        ok[i][k].discard(a)
    return base, ok, moved


def test_tracked_batch_dims_are_where_perturbing_a_sample_shows_them():
    model = Layouts()
    x = torch.randn(3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fw, truth, moved = _perturbation_axes(model, x)
    track_batch_axes(fw)
    seen_lost = seen_moved = seen_single = 0
    for node, axes, changed in zip(fw.tape.nodes, truth, moved):
        for k, (true, samples) in enumerate(zip(axes, changed)):
            got = node.batch_axis(k)
            assert len(true) <= 1, (node.name, true)
            expected = next(iter(true)) if true else None
            if expected is None and len(samples) == 1:  # the values of one sample only
                expected = OneSample(next(iter(samples)), 3)
                seen_single += 1
            assert got == expected, (node.name, node.op, tuple(node.outputs[k].shape), got, expected,
                                     node.batch_lost.get(k))
            if got is None:
                seen_lost += 1
                assert node.batch_lost[k]  # says why
            elif got != 0 and isinstance(got, int):
                seen_moved += 1
    assert seen_lost >= 12 and seen_moved >= 20 and seen_single >= 8  # the model exercises all


def test_a_lost_batch_dim_names_the_operation():
    model = Layouts()
    x = torch.randn(3, 3, 3, dtype=torch.float64)
    fw = record_forward(model, x, grad=False)
    track_batch_axes(fw)
    lost: dict[str, str] = {}
    for n in fw.tape.nodes:
        if n.outputs and n.batch_axis(0) is None and n.batch_lost[0].startswith(n.name):  # where it was lost
            lost[n.op] = lost.get(n.op, "") + n.batch_lost[0] + "\n"
    for op, text in [("mean", "reduces over the batch dim (dim 1)"), ("reshape", "merges the batch dim"),
                     ("flip", "flips the order of the samples"), ("add", "combines different samples"),
                     ("add", "combines one sample's values with those of other samples"),
                     ("Linear", "Linear acts on the last dim, which is the batch dim"),
                     ("stack", "not each sample once, in order"),
                     ("index_select", "along the batch dim picks or reorders samples"),
                     ("repeat", "changes the size of the batch dim")]:
        assert text in lost[op], (op, lost[op])
    # downstream tensors carry the reason of the operation that lost the batch dim
    after = [n for n in fw.tape.nodes if n.outputs and n.batch_axis(0) is None and not n.batch_lost[0].startswith(n.name)]
    assert all(any(n.batch_lost[0].startswith(m.name) for m in fw.tape.nodes) for n in after)


# -- time-first recurrent layers, with as many time steps as samples -----------------------------------

def _per_sample_independent(model, x, R, led, rtol=1e-9, atol=1e-12):
    """Sample j's relevance and ledger in the batch == those of x[j] explained alone."""
    target = R["target"].values
    for j in range(x.shape[0]):
        Rj, lj = sx.Explainer(model, preset=preset()).explain_with_ledger(x[j:j + 1], int(target[j]))
        np.testing.assert_allclose(R.values[j], Rj.values[0], rtol=rtol, atol=atol)
        assert list(lj["layer"].values) == list(led["layer"].values)
        for field in ("entering", "leaving", "absorbed"):
            np.testing.assert_allclose(led[field].values[j], lj[field].values[0], rtol=1e-7, atol=1e-10,
                                       err_msg=field)


@pytest.mark.parametrize("kind,layers,bidirectional,unrolled", [
    ("lstm", 2, True, False), ("lstm", 1, True, True), ("gru", 2, True, False), ("gru", 1, False, False),
    ("rnn", 1, True, False)])
def test_time_first_layers_with_as_many_steps_as_samples(kind, layers, bidirectional, unrolled):
    def make():
        return make_seq(seed=17 + layers, kind=kind, layers=layers, bidirectional=bidirectional,
                        batch_first=False, batch=4, steps=4, initial=kind != "rnn")
    (model, x), (same, _) = make(), make()
    if unrolled:  # the canonizer's unrolled module itself (sharing the parameters), whatever the default
        model.rnn = unroll(model.rnn)
        model.eval()  # (the unrolled module's own submodules are new)
    R, led = sx.Explainer(model, preset=preset()).explain_with_ledger(x)
    ref = reference(same, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R["prediction"].values, ref["logits"][np.arange(4), R["target"].values],
                               rtol=1e-10)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
    assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
    R.relevance.check()
    for key, absorbed in ref["initial"].items():  # the initial states, per sample
        np.testing.assert_allclose(led["absorbed"].sel(layer=f"rnn.initial.{key}").values, absorbed,
                                   rtol=1e-7, atol=1e-10)
    if kind != "lstm" or unrolled:  # (once per code path is enough for the suite)
        _per_sample_independent(model, x, R, led)


# -- the stacked final states h_n ---------------------------------------------------------------------

class FinalStates(nn.Module):
    """A classifier on both directions' final states of the last layer, read from h_n."""

    def __init__(self, seq: SeqModel):
        super().__init__()
        self.rnn, self.fc, self.batch_first = seq.rnn, seq.fc, seq.rnn.batch_first
        self.eval()

    def forward(self, x):
        _, state = self.rnn(x if self.batch_first else x.transpose(0, 1))
        h_n = state[0] if isinstance(state, tuple) else state  # (layers * 2, batch, hidden)
        return self.fc(torch.cat([h_n[-2], h_n[-1]], 1))


@pytest.mark.parametrize("kind,batch_first", [("lstm", True), ("lstm", False), ("gru", True), ("gru", False)])
def test_final_states_h_n_of_two_layer_bidirectional_layers(kind, batch_first):
    seq, x = make_seq(seed=23, kind=kind, layers=2, bidirectional=True, batch_first=batch_first,
                      batch=3, steps=3 if not batch_first else 5)
    model = FinalStates(seq)
    R, led = sx.Explainer(model, preset=preset()).explain_with_ledger(x)
    # the last layer's final states are its outputs at the last (forward) and first (backward)
    # step: the reference's readout of SeqModel
    ref = reference(seq, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
    assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
    R.relevance.check()
    if kind == "gru" and not batch_first:
        _per_sample_independent(model, x, R, led)


# -- hand-written time-first models -------------------------------------------------------------------

class TimeFirstGRU(nn.Module):
    """A GRU written by hand on the (time, batch, features) tensor: the input projections of all
    steps at once (an affine map whose batch dim is dim 1), then step by step."""

    def __init__(self, seq: SeqModel):
        super().__init__()
        rnn = seq.rnn
        self.H = rnn.hidden_size
        self.w_ih, self.w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
        self.b_ih, self.b_hh = rnn.bias_ih_l0, rnn.bias_hh_l0
        self.fc = seq.fc
        self.eval()

    def forward(self, x):
        H = self.H
        xs = x.transpose(0, 1)                                            # (T, B, F)
        x_rz = F.linear(xs, self.w_ih[:2 * H], self.b_ih[:2 * H] + self.b_hh[:2 * H])
        x_n = F.linear(xs, self.w_ih[2 * H:], self.b_ih[2 * H:])
        h = torch.zeros(x.shape[0], H, dtype=x.dtype)
        for t in range(xs.shape[0]):
            r, z = torch.sigmoid(x_rz[t] + F.linear(h, self.w_hh[:2 * H])).chunk(2, 1)
            n = torch.tanh(x_n[t] + r * F.linear(h, self.w_hh[2 * H:], self.b_hh[2 * H:]))
            h = (1 - z) * n + z * h
        return self.fc(h)


class TimeFirstLSTM(nn.Module):
    """An LSTM cell written by hand, stepping over x.permute(1, 0, 2)[t]."""

    def __init__(self, seq: SeqModel):
        super().__init__()
        rnn = seq.rnn
        self.H = rnn.hidden_size
        self.gates = nn.Linear(rnn.input_size + self.H, 4 * self.H, dtype=rnn.weight_ih_l0.dtype)
        with torch.no_grad():
            self.gates.weight.copy_(torch.cat([rnn.weight_ih_l0, rnn.weight_hh_l0], 1))
            self.gates.bias.copy_(rnn.bias_ih_l0 + rnn.bias_hh_l0)
        self.fc = seq.fc
        self.eval()

    def forward(self, x):
        xs = x.permute(1, 0, 2)
        h = torch.zeros(x.shape[0], self.H, dtype=x.dtype)
        c = torch.zeros_like(h)
        for t in range(xs.shape[0]):
            i, f, g, o = self.gates(torch.cat([xs[t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.fc(h)


@pytest.mark.parametrize("kind,cls", [("gru", TimeFirstGRU), ("lstm", TimeFirstLSTM)])
def test_hand_written_time_first_models_match_the_reference(kind, cls):
    seq, x = make_seq(seed=29, kind=kind, batch=4, steps=4)
    model = cls(seq)
    R, led = sx.Explainer(model, preset=preset()).explain_with_ledger(x)
    ref = reference(seq, x.numpy(), R["target"].values)
    np.testing.assert_allclose(R.values, ref["R"], rtol=1e-7, atol=1e-10)
    assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
    _per_sample_independent(model, x, R, led)
    for p in ("epsilon", "epsilon-plus"):  # other rules: the ledger still balances per sample
        assert_ledger_balances(sx.ledger(model, x, preset=p))


# -- through= and at= on a time-first tensor, against a batch-first twin ------------------------------

class Mixer(nn.Module):
    """x (B, T, F) -> Linear -> ReLU -> a readout over time; ``time_first`` runs the middle on
    (T, B, H) tensors, else on (B, H, T) ones, so that in both the channels (H) come right after
    the batch dim."""

    def __init__(self, time_first: bool):
        super().__init__()
        torch.manual_seed(5)
        self.time_first = time_first
        self.inp = nn.Linear(4, 5)
        self.mid = nn.Identity()
        self.out = nn.Linear(5 * 3, 2)
        self.double().eval()

    def forward(self, x):
        if self.time_first:
            h = self.mid(torch.relu(self.inp(x.transpose(0, 1))))   # (T, B, H)
            return self.out(h.permute(1, 2, 0).flatten(1))
        h = self.mid(torch.relu(self.inp(x)).transpose(1, 2))       # (B, H, T)
        return self.out(h.flatten(1))


def test_through_filters_the_dim_after_the_batch_dim_and_at_returns_batch_first():
    x = torch.randn(3, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tf, bf = Mixer(True), Mixer(False)
    for name, p in bf.named_parameters():
        assert torch.equal(p, dict(tf.named_parameters())[name])
    for chans in ([0, 2], [1, 3, 4], []):
        a = sx.explain(tf, x, preset="epsilon", through={"mid": chans})
        b = sx.explain(bf, x, preset="epsilon", through={"mid": chans})
        np.testing.assert_allclose(a.values, b.values, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a["filtered_out"].values, b["filtered_out"].values, rtol=1e-12, atol=1e-14)
        assert np.abs(a["filtered_out"].values).max() > 1e-6 or chans == [0, 2, 1, 3, 4]
    # relevance at the layer comes back with the batch dim first: (B, T, H) vs the twin's (B, H, T)
    at_tf = sx.explain(tf, x, preset="epsilon", at="mid")
    at_bf = sx.explain(bf, x, preset="epsilon", at="mid")
    assert at_tf.shape == (3, 3, 5) and at_bf.shape == (3, 5, 3)
    np.testing.assert_allclose(at_tf.values, at_bf.values.transpose(0, 2, 1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(at_tf.values.sum((1, 2)) + at_tf["absorbed"].values, at_tf["prediction"].values,
                               rtol=1e-9)
    for model in (tf, bf):
        assert_ledger_balances(sx.ledger(model, x, preset="epsilon"), rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="dim 2 of that layer's output"):
        sx.explain(tf, x, preset="epsilon", through={"mid": [7]})


# -- operations that mix samples are still refused clearly --------------------------------------------

class CentredOverBatch(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
        self.eval()

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h - h.mean(0))


class BatchIntoFeatures(nn.Module):
    def __init__(self, batch: int):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4 * batch, 2 * batch)
        self.batch = batch
        self.eval()

    def forward(self, x):
        return self.fc(x.reshape(-1)).reshape(self.batch, 2)


class TransposedSquare(nn.Module):
    """x (B, B): transposed, a Linear then acts on the batch dim; the shapes look batch-first."""

    def __init__(self, batch: int):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(batch, 2)
        self.eval()

    def forward(self, x):
        return self.fc(x.transpose(0, 1))


@pytest.mark.parametrize("model,x,names", [
    (CentredOverBatch(), torch.randn(3, 4), ["mean", "reduces over the batch dim"]),
    (BatchIntoFeatures(3), torch.randn(3, 4), ["reshape", "merges the batch dim", "(3, 4)"]),
    (TransposedSquare(4), torch.randn(4, 4), ["fc", "Linear acts on the last dim, which is the batch dim"]),
])
def test_operations_that_mix_samples_are_refused_clearly(model, x, names):
    with pytest.raises(sx.UnsupportedModelError) as err:
        sx.explain(model, x, preset="epsilon")
    assert isinstance(err.value, SciexplainError)
    message = str(err.value)
    for part in names + ["per sample", "Gradient methods work"]:
        assert part in message, (part, message)
    G = sx.explain(model, x, method="gradient")  # gradient methods are not affected
    assert G.shape == x.shape and np.isfinite(G.values).all()


# -- a loop over the samples: tensors of one sample each, stacked back into a batch -------------------

class PerSampleLoop(nn.Module):
    """``torch.stack([f(s) for s in x])``; with ``loop=False`` the same layers on the batch."""

    def __init__(self, loop: bool):
        super().__init__()
        torch.manual_seed(9)
        self.loop = loop
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)
        self.double().eval()

    def forward(self, x):
        if self.loop:
            h = torch.stack([torch.relu(self.a(s)) for s in x])  # iterating unbinds dim 0
        else:
            h = torch.relu(self.a(x))
        return self.b(h)


def test_a_loop_over_the_samples_equals_the_batched_model():
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    loop, batched = PerSampleLoop(True), PerSampleLoop(False)
    for p in ("epsilon", "epsilon-plus", "alpha2-beta1"):
        R, led = sx.Explainer(loop, preset=p).explain_with_ledger(x)
        ref = sx.explain(batched, x, preset=p)
        np.testing.assert_allclose(R.values, ref.values, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(R["absorbed"].values, ref["absorbed"].values, rtol=1e-10, atol=1e-14)
        assert_ledger_balances(led, rtol=1e-9, atol=1e-12)
        # each call of the first layer saw one sample: its ledger row has that sample's relevance only
        for j, row in enumerate(["a", "a#2", "a#3"]):
            entering = led["entering"].sel(layer=row).values
            assert entering[j] != 0 and np.all(np.delete(entering, j) == 0)
    with pytest.raises(InputError, match="holds one sample of the batch only"):
        sx.explain(loop, x, preset="epsilon", at="a")
    with pytest.raises(InputError, match="holds one sample of the batch only"):
        sx.explain(loop, x, preset="epsilon", through={"a#2": [0]})
