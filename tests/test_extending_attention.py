"""docs/extending.md, "An attention kind": its example runs as written, a product registered into the
``bilinear`` kind follows AttnLRP's uniform rule term by term, and the preset mapping it shows
(a rule by an attention module's path) does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import sciexplain as sx
from sciexplain.kinds.registry import REGISTRY

from conftest import assert_balances

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _example_code() -> str:
    section = DOC.read_text().split("## An attention kind", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (code,) = [b for b in blocks if "class Pairwise" in b]
    return code


@pytest.fixture
def registered_vecdot():
    before = dict(REGISTRY.functions)
    yield
    REGISTRY.functions.clear()
    REGISTRY.functions.update(before)


def test_unregistered_product_is_refused_naming_it():
    code = _example_code().split("def _vecdot_function")[0]
    ns: dict = {}
    exec(code, ns)
    with pytest.raises(sx.UnsupportedModelError, match="linalg_vecdot"):
        sx.explain(ns["Pairwise"]().eval(), torch.randn(3, 6))


def test_the_documented_example_runs_and_matches_the_uniform_rule(registered_vecdot, capsys):
    torch.manual_seed(0)
    ns: dict = {}
    exec(_example_code(), ns)
    assert "bilinear: BilinearUniform(epsilon=1e-06) (1 ops)" in capsys.readouterr().out
    R = ns["R"]
    assert_balances(R, rtol=1e-5, atol=1e-7)
    # the formula, written out: o_b = sum_i a_bi c_bi; a_bi and c_bi each get
    # a_bi c_bi R_b / (2 (o_b + eps sign(o_b))) with R_b = o_b; the linear layers then pass each share
    # back by the epsilon rule (eps = 1e-6): R(x)_bj = sum_i x_bj W_ij / (a_bi + eps sign a_bi) * R(a)_bi
    model = ns["Pairwise"]().eval()
    torch.manual_seed(1)
    model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items()})
    x = torch.randn(4, 6, dtype=torch.float64)
    model = model.double()
    R = sx.explain(model, x, preset="attnlrp")
    eps = 1e-6
    with torch.no_grad():
        a, c = model.w(x), model.u(x)
        o = (a * c).sum(1)
        share = a * c * (o / (2 * (o + eps * torch.where(o >= 0, 1.0, -1.0))))[:, None]

        def back(layer, out, rel):
            z = out + eps * torch.where(out >= 0, 1.0, -1.0)
            return x * ((rel / z) @ layer.weight)
        expect = back(model.w, a, share) + back(model.u, c, share)
    np.testing.assert_allclose(R.values, expect.numpy(), rtol=1e-6, atol=1e-9)
    assert_balances(R, rtol=1e-9, atol=1e-12)


def test_constant_attention_by_the_attention_modules_path():
    """The mapping the section shows: CP-LRP in the first layer's attention, AttnLRP elsewhere."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        num_labels=2, attn_implementation="eager")).eval()
    ids = torch.randint(5, 50, (2, 6))
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    mixed = sx.explain(model, data, inputs=["input_ids"],
                       preset={"base": "attnlrp", "bert.encoder.layer.0.attention": sx.rules.ConstantAttention()})
    rules = mixed.attrs["rules"]
    assert "ConstantAttention(epsilon=1e-06) (2 ops)" in rules and "BilinearUniform(epsilon=1e-06) (2 ops)" in rules
    uniform = sx.explain(model, data, inputs=["input_ids"], preset="attnlrp")
    constant = sx.explain(model, data, inputs=["input_ids"], preset="cp-lrp")
    for R in (mixed, uniform, constant):
        pred = R["prediction"].values
        total = R["input_ids"].values.sum(1) + R["absorbed"].values
        np.testing.assert_allclose(total, pred, rtol=1e-5, atol=1e-7)
    assert not np.allclose(mixed["input_ids"].values, uniform["input_ids"].values)
    assert not np.allclose(mixed["input_ids"].values, constant["input_ids"].values)
