"""Bad input and unsupported models: each a clear exception that names the problem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.errors import (ExplainWarning, InputError, RuleError, SciexplainError,
                               UnsupportedModelError)
from sciexplain.rules import Epsilon, Pass, ZPlus

from conftest import assert_balances, make_cnn, make_mlp, make_resnet, make_tokens


@pytest.fixture
def mlp():
    return make_mlp()


# -- the data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_in_x(mlp, bad):
    model, x = mlp
    x = x.clone()
    x[1, 2] = bad
    with pytest.raises(InputError, match=r"NaN/Inf.*\(1, 2\)"):
        sx.explain(model, x)
    with pytest.raises(InputError, match=r"NaN/Inf"):
        sx.explain(model, x.numpy(), method="gradient")


def test_errors_are_catchable_as_builtin_types(mlp):
    model, x = mlp
    with pytest.raises(ValueError):
        sx.explain(model, x[0])
    with pytest.raises(SciexplainError):
        sx.explain(model, x[0])
    with pytest.raises(TypeError):
        sx.explain(nn.Sequential(nn.Linear(6, 4), nn.Softmin(dim=1), nn.Linear(4, 2)).eval(), x)


def test_one_dimensional_x(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"shape \(6,\).*batch dim.*x\[None\]"):
        sx.explain(model, x[0])
    with pytest.raises(InputError, match=r"batch"):
        sx.explain(model, torch.tensor(1.0))


def test_wrong_feature_shape_names_the_shape(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"forward pass failed on x of shape \(2, 7\)"):
        sx.explain(model, torch.randn(2, 7))
    cnn, xc = make_cnn()
    with pytest.raises(InputError, match=r"shape \(3, 4, 8, 8\)"):
        sx.explain(cnn, torch.rand(3, 4, 8, 8))


def test_wrong_dtype_names_the_dtype(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"float64"):
        sx.explain(model, x.double().numpy())


@pytest.mark.parametrize("x", [torch.zeros(0, 6), torch.zeros(3, 0)], ids=["empty_batch", "zero_dim"])
def test_empty(mlp, x):
    model, _ = mlp
    with pytest.raises(InputError, match=r"empty batch|zero-sized"):
        sx.explain(model, x)


@pytest.mark.parametrize("kind", ["bool", "complex", "str", "object_array"])
def test_x_of_wrong_type(mlp, kind):
    model, x = mlp
    bad = {"bool": x > 0, "complex": x.to(torch.complex64), "str": "text",
           "object_array": np.array([[object()] * 6] * 2)}[kind]
    with pytest.raises(InputError):
        sx.explain(model, bad)


def test_model_not_a_module(mlp):
    _, x = mlp
    with pytest.raises(InputError, match="torch.nn.Module"):
        sx.explain(lambda z: z, x)


# -- targets -----------------------------------------------------------------------------------

@pytest.mark.parametrize("target,match", [
    (3, r"out of range.*3 output\(s\).*0\.\.2"),
    (-1, r"out of range"),
    ([0, 1, 2, 5], r"out of range"),
    ([0, 1], r"2 entries for a batch of 4"),
    ([0, 1, 2, 0, 1], r"5 entries for a batch of 4"),
    (1.5, r"integer"),
    ([0.0, 1.0, 0.5, 2.0], r"integer"),
])
def test_bad_target(mlp, target, match):
    model, x = mlp
    with pytest.raises(InputError, match=match):
        sx.explain(model, x, target=target)
    with pytest.raises(InputError, match=match):
        sx.explain(model, x, target=target, method="gradient")


def test_string_target_is_an_input_error(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"target"):
        sx.explain(model, x, target="cat")


def test_integer_like_targets_are_accepted(mlp):
    model, x = mlp
    for t in (1, np.int64(1), torch.tensor(1), 1.0, [1, 1, 1, 1], np.ones(4, dtype=np.int32)):
        R = sx.explain(model, x, target=t)
        np.testing.assert_array_equal(R["target"].values, [1, 1, 1, 1])


# -- methods, presets, mappings ----------------------------------------------------------------

def test_unknown_method(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"unknown method 'lime'.*'lrp'"):
        sx.explain(model, x, method="lime")


def test_unknown_preset(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"unknown preset 'epsilon_plus'.*epsilon-plus"):
        sx.explain(model, x, preset="epsilon_plus")
    with pytest.raises(RuleError, match=r"preset must be"):
        sx.explain(model, x, preset=3)


def test_unknown_option(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"unknown option.*steps.*'lrp'"):
        sx.explain(model, x, steps=3)
    with pytest.raises(InputError, match=r"max_pool"):
        sx.explain(model, x, max_pool="average")


def test_epsilon_plus_box_needs_bounds(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"epsilon-plus-box.*bounds=\(low, high\)"):
        sx.explain(model, x, preset="epsilon-plus-box")
    with pytest.raises(RuleError, match=r"bounds must be \(low, high\)"):
        sx.explain(model, x, preset="epsilon-plus-box", bounds=(0, 1, 2))
    R = sx.explain(model, x, preset="epsilon-plus-box", bounds=(-3, 3))
    assert "ZBox(low=-3, high=3) [first layer]" in R.attrs["rules"]


def test_mapping_without_rule_for_a_weighted_layer(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"no rule for these layers with weights:\s+- 2 \(Linear\)\s+- 4 \(Linear\)"):
        sx.explain(model, x, preset={"0": ZPlus()})
    # with a base preset it is complete
    R = sx.explain(model, x, preset={"base": "epsilon", "0": ZPlus()})
    assert "0 (Linear): ZPlus" in R.attrs["rules"]
    assert "2 (Linear): Epsilon(epsilon=0.01)" in R.attrs["rules"]


def test_mapping_values_must_be_rules(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"preset\['0'\].*got 'zplus'"):
        sx.explain(model, x, preset={"base": "epsilon", "0": "zplus"})
    with pytest.raises(RuleError, match=r"not a torch.nn.Module subclass"):
        sx.explain(model, x, preset={"base": "epsilon", int: ZPlus()})


def test_sum_takes_only_epsilon():
    model, x = make_resnet()
    with pytest.raises(RuleError, match=r"sum of tensors takes Epsilon"):
        sx.explain(model, x, preset={"base": "epsilon", "op:add": ZPlus()})


def test_overlapping_patterns(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"several patterns"):
        sx.explain(model, x, preset={"base": "epsilon", "[02]": ZPlus(), "0*": Epsilon()})


def test_mapping_key_that_names_no_module(mlp):
    model, x = mlp
    with pytest.raises(RuleError, match=r"'fc9'"):
        sx.explain(model, x, preset={"base": "epsilon", "fc9": ZPlus()})


def test_at_and_through_must_name_reached_modules(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"at='nope'"):
        sx.explain(model, x, at="nope")
    with pytest.raises(InputError, match=r"through= names \['nope'\]"):
        sx.explain(model, x, through={"nope": [0]})
    with pytest.raises(InputError, match=r"method='lrp'"):
        sx.explain(model, x, method="gradient", at="2")


def test_method_option_errors(mlp):
    model, x = mlp
    with pytest.raises(InputError, match=r"baseline of shape \(3,\)"):
        sx.explain(model, x, method="integrated_gradients", baseline=torch.zeros(3))
    with pytest.raises(InputError, match=r"steps"):
        sx.explain(model, x, method="integrated_gradients", steps=0)
    with pytest.raises(InputError, match=r"n_samples"):
        sx.explain(model, x, method="smoothgrad", n_samples=0)
    tokens_model, tokens = make_tokens()
    with pytest.raises(InputError, match=r"float input"):
        sx.explain(tokens_model, tokens, method="integrated_gradients")


# -- unsupported models ------------------------------------------------------------------------

class Encoder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.proj = nn.Linear(6, 4)
        self.inner = inner

    def forward(self, x):
        return self.inner(self.proj(x))


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder(nn.Identity())
        self.up = nn.LPPool1d(2, 3, stride=1)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(self.up(self.encoder(x)[:, None, :]).flatten(1))


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder(nn.Softmin(dim=1))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)))


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.a(x) * self.b(x))


class ExpBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, x):
        return torch.cumsum(self.lin(x), dim=1)


class WithExp(nn.Module):
    def __init__(self):
        super().__init__()
        self.block, self.head = ExpBlock(), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(x))


class MiddleSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(F.log_softmax(self.a(x), dim=1))  # (a softmax inside is explained: AttnLRP)


@pytest.mark.parametrize("model,match", [
    (Transposed(), r"- up: no relevance rule for module type LPPool1d"),
    (Normed(), r"- encoder\.inner: no relevance rule for module type Softmin"),
    (WithExp(), r"cumsum.*inside module 'block'.*operation cumsum"),
    (MiddleSoftmax(), r"log_softmax.*only supported as the final operation"),
    (nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)),
     r"- 1: BatchNorm1d without running statistics"),
], ids=["lp_pool", "softmin", "cumsum", "middle_softmax", "batchnorm_no_stats"])
def test_unsupported_layer_is_named(mlp, model, match):
    _, x = mlp
    with pytest.raises(UnsupportedModelError, match=match) as info:
        sx.explain(model.eval(), x)
    text = str(info.value)
    assert "Pass()" in text and "Nothing falls back to the gradient" in text  # says what to do


def test_unsupported_layer_also_for_lrp_variants(mlp):
    """The check does not depend on the preset."""
    _, x = mlp
    for preset in ("epsilon", "alpha2-beta1", ZPlus()):
        with pytest.raises(UnsupportedModelError, match="Softmin"):
            sx.explain(Normed().eval(), x, preset=preset)


def test_pass_by_name_makes_an_unsupported_module_explainable(mlp):
    _, x = mlp
    torch.manual_seed(0)
    model = Normed().eval()
    R, led = sx.Explainer(model, "lrp", {"base": "epsilon-plus", "encoder.inner": Pass()}).explain_with_ledger(x)
    assert_balances(R)
    row = list(led["layer"].values).index("encoder.inner")
    np.testing.assert_allclose(led["entering"].values[:, row], led["leaving"].values[:, row], rtol=1e-6)
    np.testing.assert_array_equal(led["absorbed"].values[:, row], 0.0)
    # Pass() hands relevance on unchanged: the norm's output and input carry the same relevance
    kw = dict(preset={"base": "epsilon-plus", "encoder.inner": Pass()})
    R_out = sx.explain(model, x, at="encoder.inner", **kw)
    R_in = sx.explain(model, x, at="encoder.proj", **kw)
    assert R_out.shape == (x.shape[0], 4)
    np.testing.assert_array_equal(R_out.values, R_in.values)
    assert not np.allclose(R_out.values, 0)


def test_pass_on_a_shape_changing_layer_is_an_error(mlp):
    _, x = mlp

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.pool, self.head = nn.Linear(6, 4), nn.AvgPool1d(2), nn.Linear(2, 2)

        def forward(self, x):
            return self.head(self.pool(self.lin(x)[:, None, :])[:, 0])

    with pytest.raises(UnsupportedModelError, match=r"pool: Pass needs a shape-preserving layer"):
        sx.explain(Pooled().eval(), x, preset={"base": "epsilon", "pool": Pass()})


def test_model_output_must_be_one_tensor(mlp):
    _, x = mlp

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 2)

        def forward(self, x):
            return self.a(x), self.a(x)

    with pytest.raises(UnsupportedModelError, match=r"returned tuple"):
        sx.explain(Two().eval(), x)


def test_guided_methods_name_the_activation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    x = torch.randn(3, 6)
    for method in ("deconvnet", "guided_backprop"):
        with pytest.raises(UnsupportedModelError, match=r"ReLU networks; 1 is Tanh"):
            sx.explain(model, x, method=method)


def test_training_mode_warning_points_at_the_caller():
    model, x = make_cnn()
    model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sx.explain(model, x)
    ours = [w for w in caught if issubclass(w.category, ExplainWarning)]
    assert ours and ours[0].filename == __file__
