"""Models that write their own parameters or buffers inside ``forward`` (max-norm renormalisation,
as braindecode's ATCNet and EEGNet layers do, counters in buffers): explained with the weights the
forward pass used, and given back to the user exactly as they were."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx

from conftest import assert_balances, assert_no_hooks, assert_state_equal, state_copy


class WritesItsWeights(nn.Module):
    """A linear layer whose forward first rescales its own weights in place (by ``how``; ``"buffer"``
    leaves them), and counts its calls in a buffer."""

    def __init__(self, how: str, n: int = 5, k: int = 3, seed: int = 0, fail: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(n, k)
        self.register_buffer("calls", torch.zeros(()))
        self.how, self.fail = how, fail

    def forward(self, x):
        w = self.lin.weight
        with torch.no_grad():
            if self.how == "imul":  # MaxNormLinear's `self.weight *= desired / (eps + norm)`
                norm = w.norm(2, dim=0, keepdim=True).clamp(min=0.5)
                w *= torch.clamp(norm, max=1.0) / (1e-5 + norm)
            elif self.how == "data":
                w.data.mul_(0.5)
            elif self.how == "out":
                torch.mul(w, 0.5, out=w)
            elif self.how == "setitem":
                w[0] = 0.0
            elif self.how == "copy_":
                w.copy_(w.flip(0))
            self.calls += 1  # a buffer written on every call
        if self.fail:
            raise RuntimeError("the model failed after writing its weights")
        return self.lin(x)


HOWS = ["imul", "data", "out", "setitem", "copy_"]


@pytest.mark.parametrize("how", HOWS)
def test_explained_with_the_written_weights_and_given_back_unchanged(how):
    """One linear layer, LRP-epsilon with a negligible epsilon: R_i = x_i w'_ti (the bias b_t
    absorbed), with w' the weights as the forward pass wrote them."""
    model = WritesItsWeights(how).eval()
    before = state_copy(model)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    written = copy.deepcopy(model)
    with torch.no_grad():
        y = written(x)  # the deep copy writes its own weights: w'
    target = y.argmax(1)
    R = sx.explain(model, x, preset=sx.rules.Epsilon(1e-9))
    expect = x * written.lin.weight.detach()[target]
    np.testing.assert_allclose(R.values, expect.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(R.prediction.values, y[torch.arange(4), target].numpy(), rtol=1e-6)
    np.testing.assert_allclose(R.absorbed.values, written.lin.bias.detach()[target].numpy(), rtol=1e-5, atol=1e-6)
    assert_state_equal(model, before)
    assert_no_hooks(model)


@pytest.mark.parametrize("method", ["lrp", "gradient", "gradient_x_input", "integrated_gradients"])
def test_every_method_gives_the_model_back(method):
    model = WritesItsWeights("imul").eval()
    before = state_copy(model)
    sx.explain(model, torch.randn(3, 5), method=method)
    assert_state_equal(model, before)


def test_weights_are_put_back_when_the_forward_pass_fails():
    model = WritesItsWeights("imul", fail=True).eval()
    before = state_copy(model)
    with pytest.raises(Exception, match="the model failed after writing its weights"):
        sx.explain(model, torch.randn(3, 5))
    assert_state_equal(model, before)
    assert_no_hooks(model)


def test_a_model_that_writes_nothing_is_not_copied():
    from sciexplain.record import state_guard
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with state_guard.parameters_kept(model):
        assert state_guard.write_watch() is not None
        sx.explain(model, torch.randn(3, 5))
        entry = state_guard._USERS[id(model)]
        assert entry[0] == 1 and entry[2] == {}  # the explanation has left; nothing was saved
    assert id(model) not in state_guard._USERS
    assert state_guard.write_watch() is None


def test_concurrent_explanations_of_one_model_give_it_back_after_the_last():
    """Several threads explain one model that counts its calls in a buffer: the buffer is put back
    when the last explanation leaves. (A model that rewrites a weight in place cannot run forward
    and backward in two threads at once even in plain torch: one thread's write invalidates the
    other's autograd graph.)"""
    model = WritesItsWeights("buffer").eval()
    before = state_copy(model)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    alone = sx.explain(model, x)
    results, errors = [], []

    def run():
        try:
            results.append(sx.explain(model, x))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_state_equal(model, before)
    for R in results:
        assert_balances(R, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(R.prediction.values, alone.prediction.values, rtol=1e-4)


@settings(max_examples=10, deadline=None)
@given(how=st.sampled_from(HOWS), batch=st.integers(1, 5), n=st.integers(1, 6), k=st.integers(1, 4),
       seed=st.integers(0, 1000), preset=st.sampled_from(["epsilon", "epsilon-plus", "alpha2-beta1"]))
def test_ledger_balances_and_model_kept_for_varied_shapes(how, batch, n, k, seed, preset):
    model = nn.Sequential(WritesItsWeights(how, n=n, k=k, seed=seed), nn.ReLU(), nn.Linear(k, 2)).eval()
    before = state_copy(model)
    R = sx.explain(model, torch.randn(batch, n), preset=preset)
    assert_balances(R, rtol=1e-5, atol=1e-5)
    assert_state_equal(model, before)
