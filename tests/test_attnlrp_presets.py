"""The presets "attnlrp" and "cp-lrp", what the other presets do in attention blocks, and how the
attention rules are mapped (operation keys, module paths) and reported."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.rules import (BilinearUniform, ConstantAttention, Epsilon, LinearisedSoftmax, SignalTakeAll,
                              UniformProduct)
from sciexplain.rules.presets import PRESETS, resolve_preset

MATMUL, SOFTMAX, SDPA = ("op:matmul",), ("op:softmax",), ("op:scaled_dot_product_attention", "op:matmul")


def test_the_two_papers_presets():
    assert {"attnlrp", "cp-lrp"} <= set(PRESETS)
    attn, cp = resolve_preset("attnlrp"), resolve_preset("cp-lrp")
    assert attn.product_rule("", MATMUL) == BilinearUniform() and attn.product_rule("", SDPA) == BilinearUniform()
    assert cp.product_rule("", MATMUL) == ConstantAttention() and cp.product_rule("", SDPA) == ConstantAttention()
    for rm in (attn, cp):
        assert rm.product_rule("", SOFTMAX) == LinearisedSoftmax()
        assert rm.product_rule("") == UniformProduct()  # element-wise products: the uniform rule
        assert rm.by_type[nn.Linear] == Epsilon(1e-6)


@pytest.mark.parametrize("name", ["epsilon", "epsilon-plus", "alpha2-beta1", "deep-taylor", "mobilenet"])
def test_every_preset_covers_attention(name):
    rm = resolve_preset(name)
    assert rm.product_rule("any.scope", MATMUL) == BilinearUniform()
    assert rm.product_rule("any.scope", SOFTMAX) == LinearisedSoftmax()
    assert rm.product_rule("any.scope") == SignalTakeAll()  # gates, as before


def test_module_path_scopes_and_keys():
    rm = resolve_preset({"base": "attnlrp", "blocks.1": ConstantAttention(), "op:einsum": ConstantAttention(0.1),
                         "op:mul": SignalTakeAll()})
    assert rm.product_rule("blocks.1.attn", MATMUL) == ConstantAttention()
    assert rm.product_rule("blocks.0.attn", MATMUL) == BilinearUniform()
    assert rm.product_rule("blocks.0", ("op:einsum", "op:matmul")) == ConstantAttention(0.1)
    # a scope's rule applies to the operations its family accepts only
    assert rm.product_rule("blocks.1", SOFTMAX) == LinearisedSoftmax()
    assert rm.product_rule("blocks.1") == SignalTakeAll()


def test_rules_are_picklable_and_validated():
    for rule in (BilinearUniform(), ConstantAttention(1e-3), LinearisedSoftmax()):
        assert pickle.loads(pickle.dumps(rule)) == rule
    with pytest.raises(sx.RuleError, match="epsilon must be a finite number"):
        BilinearUniform(-1.0)
    with pytest.raises(sx.RuleError, match="epsilon must be a finite number"):
        ConstantAttention(float("inf"))


class TwoBlocks(nn.Module):
    """Two single-head attention blocks (the first written out, the second with SDPA)."""

    def __init__(self, d=6):
        super().__init__()
        self.blocks = nn.ModuleList(Attn(d, sdpa=i == 1) for i in range(2))
        self.cls = nn.Linear(d, 2)

    def forward(self, x):
        for blk in self.blocks:
            x = x + blk(x)
        return self.cls(x.mean(1))


class Attn(nn.Module):
    def __init__(self, d, sdpa):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.sdpa = sdpa

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.sdpa:
            return F.scaled_dot_product_attention(q, k, v)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v


def test_rules_attr_says_which_rule_ran_where():
    torch.manual_seed(0)
    model = TwoBlocks().eval()
    x = torch.randn(2, 4, 6)
    R = sx.Explainer(model, preset={"base": "attnlrp", "blocks.1": ConstantAttention()}).explain(x)
    rules = R.attrs["rules"]
    assert "bilinear: BilinearUniform(epsilon=1e-06) (2 ops)" in rules  # q k^T and A v of block 0
    assert "softmax: LinearisedSoftmax() (1 ops)" in rules
    assert "attention: ConstantAttention(epsilon=1e-06) (1 ops)" in rules  # SDPA of block 1
    np.testing.assert_allclose(R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values, R.prediction.values,
                               rtol=1e-5, atol=1e-6)
    layers = {name: rule for name, _, rule in sx.Explainer(model, preset="cp-lrp").layers(x)}
    assert layers["scaled_dot_product_attention@blocks.1"] == "ConstantAttention(epsilon=1e-06)"
    assert layers["softmax@blocks.0"] == "LinearisedSoftmax()"


def test_cp_lrp_keeps_more_of_f_x_than_attnlrp_on_attention():
    """CP-LRP passes the relevance of A v to v alone, nothing is absorbed by the softmax: on a
    block without biases nearly all of f(x) reaches the input."""
    torch.manual_seed(1)
    model = TwoBlocks().eval()
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    x = torch.randn(3, 4, 6)
    cp = sx.Explainer(model, preset="cp-lrp").explain(x)
    assert np.all(np.abs(cp.absorbed.values) < 1e-3 * np.abs(cp.prediction.values) + 1e-5)


def test_matmul_with_a_constant_still_takes_the_dense_rule():
    """'op:matmul' maps the product rules; x @ W with a constant W stays a dense layer."""
    torch.manual_seed(2)

    class Proj(nn.Module):
        def __init__(self):
            super().__init__()
            self.W = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return x @ self.W
    R = sx.Explainer(Proj().eval(), preset="attnlrp").explain(torch.randn(2, 4))
    assert "Epsilon(epsilon=1e-06)" in R.attrs["rules"]
