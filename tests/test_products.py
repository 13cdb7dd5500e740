"""Products of two input-dependent tensors (gates) and squashing activations inside a network.

Each rule is checked against a plain numpy computation of its formula written here, and the
ledger is checked to stay exact at every product (nothing created or lost).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import RuleError
from sciexplain.rules import ProportionalProduct, SignalTakeAll, UniformProduct

from conftest import assert_balances, assert_ledger_balances

EPS = 1e-6


class GatedUnit(nn.Module):
    """head(gate(a(x)) * b(x)) with the gate derived in one of several ways."""

    def __init__(self, how: str = "sigmoid", seed: int = 0, n_in: int = 5, n_hidden: int = 4):
        super().__init__()
        torch.manual_seed(seed)
        self.how = how
        self.a = nn.Linear(n_in, 2 * n_hidden if how == "chunk" else n_hidden)
        self.b = nn.Linear(n_in, n_hidden)
        self.head = nn.Linear(n_hidden, 3)

    def forward(self, x):
        za = self.a(x)
        if self.how == "sigmoid":
            g = torch.sigmoid(za)
        elif self.how == "module":
            g = nn.functional.hardsigmoid(za)
        elif self.how == "one_minus":
            g = 1 - torch.sigmoid(za)
        elif self.how == "chunk":
            g, _ = torch.sigmoid(za).chunk(2, dim=1)
        elif self.how == "none":
            g = torch.tanh(za)
        else:  # pragma: no cover
            raise AssertionError(self.how)
        signal = self.b(x)
        return self.head(signal * g if self.how != "one_minus" else g * signal)


def _reference_signal_take_all(model: GatedUnit, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Numpy: epsilon on head, all relevance of the product to the signal, epsilon on b."""
    W_a, b_a = model.a.weight.detach().double().numpy(), model.a.bias.detach().double().numpy()
    W_b, b_b = model.b.weight.detach().double().numpy(), model.b.bias.detach().double().numpy()
    W_h, b_h = model.head.weight.detach().double().numpy(), model.head.bias.detach().double().numpy()
    za = x @ W_a.T + b_a
    gate = {"sigmoid": 1 / (1 + np.exp(-za)), "one_minus": 1 - 1 / (1 + np.exp(-za)),
            "module": np.clip(za / 6 + 0.5, 0, 1)}.get(model.how)
    if model.how == "chunk":
        gate = (1 / (1 + np.exp(-za)))[:, : W_b.shape[0]]
    s = x @ W_b.T + b_b
    p = s * gate
    out = p @ W_h.T + b_h
    R_out = np.zeros_like(out)
    R_out[np.arange(len(x)), target] = out[np.arange(len(x)), target]

    def eps_rule(inp, W, z, R):
        den = z + EPS * np.where(z >= 0, 1.0, -1.0)
        return inp * ((R / den) @ W)

    R_p = eps_rule(p, W_h, out, R_out)
    R_s = R_p  # signal-take-all: the gate gets nothing
    return eps_rule(x, W_b, s, R_s)


@pytest.mark.parametrize("how", ["sigmoid", "module", "one_minus", "chunk"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_signal_take_all_matches_its_formula(how, seed):
    model = GatedUnit(how, seed).eval().double()
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    R, led = sx.Explainer(model, preset="epsilon-plus").explain_with_ledger(x)
    assert_balances(R)
    assert_ledger_balances(led)
    ref = _reference_signal_take_all(model, x.numpy(), R.target.values)
    np.testing.assert_allclose(R.values, ref, rtol=1e-7, atol=1e-10)
    # nothing is created or lost at the product
    prod = [name for name, op in zip(led.layer.values, led.op.values) if op in ("mul", "__mul__")]
    assert len(prod) == 1
    row = led.sel(layer=prod[0])
    np.testing.assert_allclose(row.absorbed, 0.0, atol=1e-12)
    np.testing.assert_allclose(row.entering, row.leaving, rtol=1e-12)
    assert "products: SignalTakeAll()" in R.attrs["rules"]


def _branch_entering(led, layer):
    return led.sel(layer=layer).entering.values


@pytest.mark.parametrize("seed", [0, 3])
def test_uniform_product_gives_half_to_each_operand(seed):
    model = GatedUnit("none", seed).eval().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    R, led = sx.Explainer(model, preset={"base": "epsilon-plus", "op:mul": UniformProduct()}).explain_with_ledger(x)
    assert_balances(R)
    assert_ledger_balances(led)
    prod = [n for n, op in zip(led.layer.values, led.op.values) if op in ("mul", "__mul__")][0]
    half = led.sel(layer=prod).entering.values / 2
    np.testing.assert_allclose(_branch_entering(led, "b"), half, rtol=1e-10)
    # the tanh passes its half on unchanged to a
    np.testing.assert_allclose(_branch_entering(led, "a"), half, rtol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0))
def test_proportional_product_matches_its_formula(seed, scale):
    torch.manual_seed(seed)

    class Prod(nn.Module):
        def forward(self, x):
            return (x[:, :3] * (scale * x[:, 3:])).sum(1, keepdim=True)

    x = torch.randn(3, 6, dtype=torch.float64)
    rule = ProportionalProduct(1e-9)
    R = sx.explain(Prod().eval(), x, preset={"op:mul": rule, "base": "epsilon"})
    a, b = x[:, :3].numpy(), scale * x[:, 3:].numpy()
    p = a * b
    den = np.abs(a) + np.abs(b) + 1e-9
    ref = np.concatenate([p * np.abs(a) / den, p * np.abs(b) / den], axis=1)
    # the sum over the three products is the proportional rule with its 1e-9 stabiliser
    np.testing.assert_allclose(R.values, ref, rtol=1e-5, atol=1e-8)
    assert_balances(R, atol=1e-8)


def test_a_product_without_a_gate_needs_a_rule():
    model = GatedUnit("none").eval()
    x = torch.randn(3, 5)
    with pytest.raises(RuleError, match="cannot tell the gate from the signal"):
        sx.explain(model, x)
    # a product rule by module path (the products inside that module) or for all products
    assert_balances(sx.explain(model, x, preset={"base": "epsilon-plus", "op:mul": UniformProduct()}))


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.unit = GatedUnit("none")

    def forward(self, x):
        return self.unit(x)


def test_product_rule_by_module_path():
    model = Outer().eval()
    x = torch.randn(3, 5)
    R = sx.explain(model, x, preset={"base": "epsilon-plus", "unit": ProportionalProduct()})
    assert_balances(R)
    assert "ProportionalProduct" in R.attrs["rules"]


def test_product_rule_on_a_weighted_layer_is_an_error():
    model = GatedUnit("sigmoid").eval()
    with pytest.raises(RuleError, match="rule for products"):
        sx.explain(model, torch.randn(2, 5), preset={"base": "epsilon-plus", "b": SignalTakeAll()})


def test_gate_times_a_constant_gives_the_constant_all():
    """sigmoid(a(x)) * c with a constant signal c: signal-take-all gives the gate nothing, so the
    whole relevance of the product is absorbed (counted in the ledger at the product)."""
    class ConstSignal(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.head = nn.Linear(5, 4), nn.Linear(4, 2)
            self.register_buffer("c", torch.linspace(-1, 1, 4))

        def forward(self, x):
            return self.head(torch.sigmoid(self.a(x)) * self.c)

    model = ConstSignal().eval()
    x = torch.randn(3, 5)
    R, led = sx.Explainer(model).explain_with_ledger(x)
    assert_balances(R)
    np.testing.assert_allclose(R.values, 0.0, atol=1e-7)
    prod = led.isel(layer=[i for i, op in enumerate(led.op.values) if "gate times a constant" in op])
    assert prod.sizes["layer"] == 1
    np.testing.assert_allclose(prod.absorbed.values, prod.entering.values, rtol=1e-6)
    assert float(np.abs(prod.entering.values).min()) > 1e-3
    # the uniform rule gives the gate half
    R2, led2 = sx.Explainer(model, preset={"base": "epsilon-plus", "op:mul": UniformProduct()}).explain_with_ledger(x)
    assert_balances(R2)
    row = led2.isel(layer=[i for i, op in enumerate(led2.op.values) if "gate times a constant" in op][0])
    np.testing.assert_allclose(row.absorbed.values, row.entering.values / 2, rtol=1e-5)


# -- squashing activations inside the network ------------------------------------------------------

class Squashes(nn.Module):
    def __init__(self, final: bool):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.final = final

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = nn.functional.sigmoid(self.b(h))
        out = self.head(h)
        return torch.sigmoid(out) if self.final else out


def test_tanh_and_sigmoid_inside_pass_relevance_through():
    model = Squashes(final=False).eval().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    R, led = sx.Explainer(model, preset="epsilon").explain_with_ledger(x)
    assert_ledger_balances(led)
    for op in ("tanh", "sigmoid"):
        row = led.isel(layer=[i for i, o in enumerate(led.op.values) if o == op][0])
        np.testing.assert_allclose(row.entering, row.leaving, rtol=1e-12)
        assert str(row.rule.values) == "pass-through"


def test_only_a_final_sigmoid_is_stripped():
    model = Squashes(final=True).eval().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    R = sx.explain(model, x, preset="epsilon")
    assert "before the final sigmoid" in R.attrs["explained"]
    logits = Squashes(final=False).eval().double()(x)
    np.testing.assert_allclose(R.prediction.values, logits.max(1).values.detach().numpy(), rtol=1e-12)
    assert_balances(R)


class FactoryCell(nn.Module):
    """A hand-written gated cell that builds constants from its tensors (``ones_like``, ``new_zeros``)."""

    def __init__(self, factories: bool):
        super().__init__()
        torch.manual_seed(0)
        self.factories = factories
        self.a, self.b, self.head = nn.Linear(5, 4), nn.Linear(5, 4), nn.Linear(4, 3)

    def forward(self, x):
        z, n = torch.sigmoid(self.a(x)), torch.tanh(self.b(x))
        if self.factories:
            h0 = x.new_zeros(x.shape[0], 4) + torch.zeros_like(n)
            return self.head((torch.ones_like(z) - z) * n + z * h0)
        return self.head((1 - z) * n)


def test_tensor_factories_are_constants():
    """``ones_like(z) - z`` is the gate ``1 - z`` and ``new_zeros``/``zeros_like`` states are zeros:
    the explanation equals the one of the model written with plain constants."""
    x = torch.randn(4, 5, dtype=torch.float64)
    with_factories = FactoryCell(True).eval().double()
    plain = FactoryCell(False).eval().double()
    plain.load_state_dict(with_factories.state_dict())
    R, led = sx.Explainer(with_factories, preset="epsilon").explain_with_ledger(x)
    assert_balances(R)
    assert_ledger_balances(led)
    # (the extra sums with zeros take their stabiliser share: agreement to ~1e-7)
    np.testing.assert_allclose(R.values, sx.explain(plain, x, preset="epsilon").values, rtol=1e-5, atol=1e-9)


class BoundedOutput(nn.Module):
    """A regression output bounded to (0, scale): sigmoid(net(x)) * scale with a number."""

    def __init__(self, scale: float | None):
        super().__init__()
        torch.manual_seed(0)
        self.scale = scale
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        out = torch.sigmoid(self.net(x))
        return (out if self.scale is None else out * self.scale).squeeze(1)


def test_a_gate_scaled_by_a_number_is_scaled_not_absorbed():
    """sigmoid(z) * 10 is a scaling (the explanation is 10 times the unscaled one); as a
    'gate times a constant signal' the whole relevance was absorbed and R was zero."""
    x = torch.randn(3, 4, dtype=torch.float64)
    R = sx.explain(BoundedOutput(10.0).eval().double(), x, preset="epsilon")
    assert_balances(R)
    # (scale None would end in sigmoid -> squeeze, a final squash that is stripped: the logit)
    unscaled = sx.explain(BoundedOutput(1.0).eval().double(), x, preset="epsilon")
    assert float(np.abs(unscaled.values).max()) > 1e-3
    np.testing.assert_allclose(R.values, 10.0 * unscaled.values, rtol=1e-6, atol=1e-12)
