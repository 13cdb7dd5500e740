"""In-place writes inside ``forward``: recorded as the writes they are, or refused, never explained with stale values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import UnsupportedModelError


class Writes(nn.Module):
    """A linear model whose forward first writes into its input (or a copy of it)."""

    def __init__(self, how: str, col: int = 0, n: int = 5):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(n, 3)
        self.how, self.col = how, col

    def forward(self, x):
        c = self.col
        if self.how == "setitem":
            x[:, c] = 0
        elif self.how == "setitem_copy":
            x = x * 1.0
            x[:, c] = 0.5
        elif self.how == "setitem_value":  # the overwritten entries take the value's relevance
            x[:, c] = x[:, (c + 1) % x.shape[1]]
        elif self.how == "index_put_":
            x.index_put_((torch.arange(x.shape[0]), torch.full((x.shape[0],), c)), torch.tensor(0.0))
        elif self.how == "masked_fill_":
            mask = torch.zeros(x.shape[1], dtype=torch.bool)
            mask[c] = True
            x.masked_fill_(mask, 0.0)
        elif self.how == "mul_":
            x.mul_(2)
        return self.lin(x)


def _ledger_balances(R):
    np.testing.assert_allclose(R.sum("dim_0").values + R.absorbed.values, R.prediction.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("how", ["setitem", "setitem_copy", "setitem_value", "index_put_", "masked_fill_", "mul_"])
def test_overwritten_entries_get_what_gradient_x_input_gives(how):
    model = Writes(how).eval()
    x = torch.randn(4, 5)
    R = sx.explain(model, x, preset=sx.rules.Epsilon(1e-7), method="lrp")
    G = sx.explain(model, x, method="gradient_x_input")
    _ledger_balances(R)
    if how != "mul_":
        assert np.all(R.values[:, 0] == 0), R.values[:, 0]  # exactly: the entries were overwritten
    # a linear model: LRP-epsilon is gradient x input, bias absorbed (epsilon negligible)
    np.testing.assert_allclose(R.values, G.values, rtol=2e-3, atol=1e-4)


def test_the_callers_batch_is_untouched():
    x = torch.randn(3, 5)
    before = x.clone()
    sx.explain(Writes("setitem").eval(), x, preset="epsilon")
    assert torch.equal(x, before)


def test_a_constant_written_in_is_absorbed():
    model = Writes("setitem_copy").eval()
    x = torch.randn(2, 5)
    R = sx.explain(model, x, preset=sx.rules.Epsilon(1e-7))
    # the written 0.5 carries relevance 0.5 * w[target, 0] (epsilon negligible), counted as absorbed with the bias
    w, b = model.lin.weight.detach(), model.lin.bias.detach()
    t = R.target.values
    expected = (0.5 * w[t, 0] + b[t]).numpy()
    np.testing.assert_allclose(R.absorbed.values, expected, rtol=2e-3, atol=1e-4)


@given(col=st.integers(0, 4), batch=st.integers(1, 4), seed=st.integers(0, 100))
@settings(max_examples=15, deadline=None)
def test_setitem_property(col, batch, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 5, generator=g)
    model = Writes("setitem", col).eval()
    R = sx.explain(model, x, preset="epsilon")
    assert np.all(R.values[:, col] == 0)
    _ledger_balances(R)


class ViewWrite(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.how = how

    def forward(self, x):
        if self.how == "fill_":
            x[:, 0].fill_(0)
        elif self.how == "zero_":
            x.narrow(1, 0, 2).zero_()
        elif self.how == "copy_":
            x[:, 0].copy_(x[:, 1])
        return self.lin(x)


@pytest.mark.parametrize("how", ["fill_", "zero_", "copy_"])
def test_a_write_through_a_view_is_refused_naming_it(how):
    with pytest.raises(UnsupportedModelError, match=rf"written in place after it was recorded by {how}"):
        sx.explain(ViewWrite(how).eval(), torch.randn(2, 5))
    # writing into the tensor itself is the supported spelling of the same model
    R = sx.explain(Writes("setitem").eval(), torch.randn(2, 5), preset="epsilon")
    _ledger_balances(R)


class WriteIntoAnUnreadView(nn.Module):
    """An in-place ReLU through a view whose base is never read again: nothing is stale."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        v = h.view(h.shape[0], 2, 3)
        v.relu_()
        return self.b(v.flatten(1))


def test_a_write_into_a_view_nobody_reads_stale_is_fine():
    torch.manual_seed(1)
    model = WriteIntoAnUnreadView().eval()
    R = sx.explain(model, torch.randn(3, 6), preset="epsilon")
    _ledger_balances(R)
