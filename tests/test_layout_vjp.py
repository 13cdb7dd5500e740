"""Reshapes, permutes and transposes send relevance back by their inverse, written directly: the
same relevance as the operation's own vector-Jacobian product (which the walk used before)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.kinds import layout


class Shuffle(nn.Module):
    """Linear layers between a permute (as a list, as ints, negative dims), a transpose and reshapes."""

    def __init__(self, perm: tuple[int, int, int], negative: bool, as_list: bool) -> None:
        super().__init__()
        self.perm, self.negative, self.as_list = perm, negative, as_list
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(60, 3)

    def forward(self, x):  # x: (batch, 3, 5, 4)
        h = torch.relu(self.a(x))
        perm = (0,) + tuple(p + 1 - (4 if self.negative else 0) for p in self.perm)
        h = h.permute(list(perm)) if self.as_list else h.permute(*perm)
        h = h.transpose(1, -1).contiguous()
        h = h.reshape(h.shape[0], -1).unsqueeze(1).squeeze(1)
        return self.b(h.view(h.shape[0], 60))


@settings(max_examples=20, deadline=None)
@given(perm=st.sampled_from(list(itertools.permutations(range(3)))), negative=st.booleans(),
       as_list=st.booleans(), seed=st.integers(0, 1000))
def test_direct_inverse_equals_the_operations_own_vjp(perm, negative, as_list, seed):
    torch.manual_seed(seed)
    model = Shuffle(perm, negative, as_list).eval().double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    direct = sx.explain(model, x, preset="epsilon-plus")
    with pytest.MonkeyPatch.context() as mp:  # every layout node through its own vjp
        mp.setattr(layout, "_moved_back", lambda walk, node, outs: None)
        replayed = sx.explain(model, x, preset="epsilon-plus")
    np.testing.assert_array_equal(direct.values, replayed.values)
    np.testing.assert_array_equal(direct.absorbed.values, replayed.absorbed.values)
    direct.relevance.check(rtol=1e-10, atol=1e-12)


def test_the_direct_path_is_taken_for_these_operations(monkeypatch):
    seen = []
    real = layout._moved_back

    def spy(walk, node, outs):
        got = real(walk, node, outs)
        seen.append((node.op, got is not None))
        return got
    monkeypatch.setattr(layout, "_moved_back", spy)
    sx.explain(Shuffle((2, 0, 1), True, False).eval(), torch.randn(2, 3, 5, 4), preset="epsilon")
    ops = {op for op, direct in seen if direct}
    assert {"permute", "transpose", "reshape", "view", "unsqueeze", "squeeze"} <= ops
