"""The engine: ledger, canonization, safety of the user's model, the other methods, results."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

import sciexplain as sx
from sciexplain.errors import ExplainWarning, InputError, RuleError, UnsupportedModelError
from sciexplain.rules import AlphaBeta, Epsilon, ZPlus

from conftest import (FAMILIES, FLOAT_FAMILIES, assert_balances, assert_ledger_balances, assert_no_hooks,
                      assert_state_equal, hook_counts, make_cnn, make_eeg, make_mlp, make_tokens, per_sample,
                      set_bn_stats, state_copy, training_flags)

PRESETS = [("epsilon", None), ("epsilon-plus", None), ("epsilon-plus-box", (-4.0, 4.0)),
           ("alpha2-beta1", None), ("deep-taylor", None), ("deep-taylor", (-4.0, 4.0))]
PRESET_IDS = [p if b is None else f"{p}+bounds" for p, b in PRESETS]


def logits_of(model, x):
    with torch.no_grad():
        return model(x)


# -- 2. the ledger -----------------------------------------------------------------------------

@pytest.mark.parametrize("preset,bounds", PRESETS, ids=PRESET_IDS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_ledger_balances(name, preset, bounds):
    model, x = FAMILIES[name]()
    R, led = sx.Explainer(model, "lrp", preset, bounds=bounds).explain_with_ledger(x)
    assert R.dims[0] == "sample" and R.shape == tuple(x.shape)
    assert R.attrs["method"] == "lrp" and R.attrs["decomposes"] == "f(x)"
    assert np.isfinite(R.values).all()
    # per sample: sum(R) + absorbed == prediction == the explained logit
    assert_balances(R)
    R.relevance.check()  # the accessor's own ledger check agrees
    # explain() (no ledger) gives the same result as explain_with_ledger()
    R_plain = sx.explain(model, x, preset=preset, bounds=bounds)
    np.testing.assert_array_equal(R_plain.values, R.values)
    np.testing.assert_array_equal(R_plain["absorbed"].values, R["absorbed"].values)
    logits = logits_of(model, x)
    t = logits.argmax(1)
    np.testing.assert_array_equal(R["target"].values, t.numpy())
    np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(len(t)), t].double().numpy(),
                               rtol=1e-6, atol=1e-7)
    # the ledger: per layer and in total
    assert_ledger_balances(led)
    assert set(led.data_vars) >= {"entering", "leaving", "absorbed", "input_relevance", "prediction"}
    assert led.sizes["layer"] >= 3
    np.testing.assert_allclose(led["input_relevance"].values, per_sample(R.values), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(led["prediction"].values, R["prediction"].values, rtol=1e-12)
    np.testing.assert_allclose(led["absorbed"].sum("layer").values, R["absorbed"].values, rtol=1e-4, atol=1e-6)
    # the first row is the output layer receiving the whole prediction
    np.testing.assert_allclose(led["entering"].values[:, 0], R["prediction"].values, rtol=1e-5, atol=1e-6)
    # consecutive layers hand relevance on when the graph is a chain of single-input nodes
    assert not np.allclose(R.values, 0)


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "residual"])
def test_ledger_with_given_targets(name):
    model, x = FAMILIES[name]()
    n_out = logits_of(model, x).shape[1]
    targets = [(i + 1) % n_out for i in range(x.shape[0])]
    R, led = sx.Explainer(model, "lrp", "epsilon").explain_with_ledger(x, target=targets)
    np.testing.assert_array_equal(R["target"].values, targets)
    logits = logits_of(model, x)
    np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(len(targets)), targets].numpy(),
                               rtol=1e-6)
    assert_balances(R)
    assert_ledger_balances(led)
    R1 = sx.explain(model, x, target=0, preset="epsilon")
    np.testing.assert_array_equal(R1["target"].values, np.zeros(x.shape[0]))


def test_ledger_function_matches_explainer():
    model, x = make_cnn()
    led = sx.ledger(model, x, preset="alpha2-beta1")
    _, led2 = sx.Explainer(model, "lrp", "alpha2-beta1").explain_with_ledger(x)
    xr.testing.assert_allclose(led, led2)
    assert list(led["layer"].values[:1]) == ["head.3"]
    assert "features.0" in list(led["layer"].values)


def test_per_channel_bounds():
    """bounds=(low, high) may be per-channel tensors: the same as mapping ZBox to the first layer."""
    model, x = make_cnn()
    low = torch.tensor([0.0, -0.5, -1.0]).reshape(1, 3, 1, 1)
    high = torch.tensor([1.0, 1.5, 2.0]).reshape(1, 3, 1, 1)
    R = sx.explain(model, x, preset="epsilon-plus-box", bounds=(low, high))
    R_map = sx.explain(model, x, preset={"base": "epsilon-plus", "features.0": sx.rules.ZBox(low, high)})
    R_scalar = sx.explain(model, x, preset="epsilon-plus-box", bounds=(0.0, 1.0))
    np.testing.assert_allclose(R.values, R_map.values, rtol=1e-6, atol=1e-9)
    assert not np.allclose(R.values, R_scalar.values)
    assert "ZBox(low=tensor(1, 3, 1, 1), high=tensor(1, 3, 1, 1)) [first layer]" in R.attrs["rules"]
    assert_balances(R)


def test_absorbed_is_not_trivially_zero():
    """Biases and epsilon do absorb: the ledger has to count something for these models."""
    model, x = make_mlp()
    R = sx.explain(model, x, preset=Epsilon(1.0))
    assert np.abs(R["absorbed"].values).max() > 1e-3
    assert_balances(R)


# -- BatchNorm canonization --------------------------------------------------------------------

def fold_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """Independent fold of a BatchNorm that follows a conv/linear layer."""
    fused = copy.deepcopy(conv)
    a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * a.reshape([-1] + [1] * (conv.weight.ndim - 1)))
        b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(a)
        if fused.bias is None:
            fused.bias = nn.Parameter(torch.zeros_like(a))
        fused.bias.copy_((b - bn.running_mean) * a + bn.bias)
    return fused


def folded_cnn(model):
    f = copy.deepcopy(model)
    f.features[0] = fold_conv_bn(model.features[0], model.features[1])
    f.features[1] = nn.Identity()
    f.features[4] = fold_conv_bn(model.features[4], model.features[5])
    f.features[5] = nn.Identity()
    return f.eval()


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1", ZPlus()], ids=str)
def test_batchnorm_folding_equals_manual_fold(preset):
    model, x = make_cnn()
    with torch.no_grad():  # one channel with a negative BatchNorm scale
        model.features[1].weight[2] = -0.8
        model.features[5].weight[0] = -1.3
    before = logits_of(model, x)
    state = state_copy(model)
    R = sx.explain(model, x, preset=preset)
    ref = folded_cnn(model)
    torch.testing.assert_close(logits_of(ref, x), before, rtol=1e-5, atol=1e-5)
    R_ref = sx.explain(ref, x, preset=preset)
    np.testing.assert_allclose(R.values, R_ref.values, rtol=2e-4, atol=1e-6 * np.abs(R_ref.values).max())
    np.testing.assert_allclose(R["absorbed"].values, R_ref["absorbed"].values, rtol=1e-3, atol=1e-6)
    assert torch.equal(logits_of(model, x), before)  # the model's outputs did not change
    assert_state_equal(model, state)
    np.testing.assert_allclose(R["prediction"].values, before.max(1).values.double().numpy(), rtol=1e-5, atol=1e-5)
    assert "features.0 (Conv2d+BatchNorm2d)" in R.attrs["rules"]
    assert "features.4 (Conv2d+BatchNorm2d)" in R.attrs["rules"]
    assert_balances(R)


def test_batchnorm1d_after_conv1d_is_folded():
    model, x = make_eeg()
    R = sx.explain(model, x, preset="epsilon")
    assert "temporal (Conv1d+BatchNorm1d)" in R.attrs["rules"]
    ref = copy.deepcopy(model)
    ref.temporal = fold_conv_bn(model.temporal, model.bn)
    ref.bn = nn.Identity()
    R_ref = sx.explain(ref.eval(), x, preset="epsilon")
    np.testing.assert_allclose(R.values, R_ref.values, rtol=2e-4, atol=1e-6 * np.abs(R_ref.values).max())
    np.testing.assert_allclose(R["prediction"].values, logits_of(model, x).max(1).values.numpy(), rtol=1e-5)


class BNBeforeLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.bn = nn.BatchNorm1d(7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        return self.fc2(self.bn(torch.relu(self.fc1(x))))


def test_input_batchnorm_folded_into_first_layer_keeps_zbox_on_raw_input():
    """BatchNorm1d on the raw input, then Linear: folded forward, and the first-layer ZBox then acts
    on the raw input with the caller's bounds (equal to an independently folded model)."""
    torch.manual_seed(0)
    model = set_bn_stats(nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))).eval()
    x = torch.rand(4, 5)
    bn = model[0]
    a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    c = bn.bias.detach() - bn.running_mean * a
    ref = copy.deepcopy(model)
    ref[0] = nn.Identity()
    with torch.no_grad():
        ref[1].weight.copy_(model[1].weight * a[None])
        ref[1].bias.copy_(model[1].bias + model[1].weight @ c)
    for preset, bounds in (("epsilon-plus-box", (0, 1)), ("deep-taylor", None), ("alpha2-beta1", None)):
        R = sx.explain(model, x, preset=preset, bounds=bounds)
        R_ref = sx.explain(ref.eval(), x, preset=preset, bounds=bounds)
        np.testing.assert_allclose(R.values, R_ref.values, rtol=1e-5, atol=1e-7)
        assert R.attrs["rules"].startswith("1 (BatchNorm1d+Linear)")
        assert "[first layer]" in R.attrs["rules"].splitlines()[0]


def test_batchnorm1d_before_linear_is_folded_forward():
    torch.manual_seed(0)
    model = set_bn_stats(BNBeforeLinear()).eval()
    x = torch.randn(4, 5)
    R = sx.explain(model, x, preset="epsilon")
    assert "fc2 (BatchNorm1d+Linear)" in R.attrs["rules"]
    # independent fold: W' = W diag(a), b' = b + W c with BN(h) = a h + c
    bn = model.bn
    a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    c = bn.bias.detach() - bn.running_mean * a
    ref = copy.deepcopy(model)
    ref.bn = nn.Identity()
    with torch.no_grad():
        ref.fc2.weight.copy_(model.fc2.weight * a[None, :])
        ref.fc2.bias.copy_(model.fc2.bias + model.fc2.weight @ c)
    torch.testing.assert_close(logits_of(ref, x), logits_of(model, x), rtol=1e-5, atol=1e-6)
    R_ref = sx.explain(ref.eval(), x, preset="epsilon")
    np.testing.assert_allclose(R.values, R_ref.values, rtol=2e-4, atol=1e-6)
    assert_balances(R)


def test_reused_relu6_equals_separate_modules():
    """One ReLU6 module called twice gives the same explanation as two separate modules."""
    model, x = FAMILIES["depthwise_relu6"]()
    R = sx.explain(model, x, preset="epsilon-plus")

    class Separate(type(model)):
        def forward(self, x):
            h = self.act(self.bn0(self.stem(x)))
            y = self.act_b(self.bn1(self.dw(h)))
            y = self.bn2(self.pw(y))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(h + y, 1), 1))

    sep = Separate()
    sep.load_state_dict(model.state_dict())
    sep.act_b = nn.ReLU6()
    sep.eval()
    torch.testing.assert_close(logits_of(sep, x), logits_of(model, x))
    R_sep = sx.explain(sep, x, preset="epsilon-plus")
    np.testing.assert_allclose(R.values, R_sep.values, rtol=1e-5, atol=1e-7)
    assert "dw (Conv2d+BatchNorm2d)" in R.attrs["rules"]
    # the input does reach the ReLU6 ceiling somewhere, so saturation is exercised
    with torch.no_grad():
        h = model.bn0(model.stem(x))
    assert bool((h > 6).any())


# -- 3. the model is never changed -------------------------------------------------------------

METHOD_OPTIONS = {
    "lrp": {}, "gradient": {}, "sensitivity": {}, "gradient_x_input": {},
    "integrated_gradients": {"steps": 4}, "smoothgrad": {"n_samples": 3, "seed": 1},
    "deconvnet": {}, "guided_backprop": {},
}


def _check_untouched(model, x, x_before, state, flags, hooks):
    assert_state_equal(model, state)
    assert training_flags(model) == flags
    assert hook_counts(model) == hooks
    assert torch.equal(x, x_before), "the caller's x was modified"


@pytest.mark.parametrize("method", sx.METHODS)
@pytest.mark.parametrize("name", ["cnn_bn", "residual", "depthwise_relu6", "mlp"])
def test_model_unchanged_for_every_method(name, method):
    model, x = FAMILIES[name]()
    out_before = logits_of(model, x)
    x_before, state, flags, hooks = x.clone(), state_copy(model), training_flags(model), hook_counts(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExplainWarning)  # eval-mode models: no warning
        R = sx.explain(model, x, method=method, **METHOD_OPTIONS[method])
    assert R.attrs["method"] == method
    _check_untouched(model, x, x_before, state, flags, hooks)
    assert_no_hooks(model)
    # the model still computes what it computed before
    assert torch.equal(logits_of(model, x), out_before)


@pytest.mark.parametrize("method", ["lrp", "gradient", "sensitivity", "gradient_x_input"])
def test_token_model_unchanged(method):
    model, x = make_tokens()
    x_before, state, flags, hooks = x.clone(), state_copy(model), training_flags(model), hook_counts(model)
    if method == "gradient":  # documented: a gradient has no per-token value
        with pytest.raises(InputError, match="token"):
            sx.explain(model, x, method=method)
    else:
        R = sx.explain(model, x, method=method)
        assert R.shape == tuple(x.shape)
        assert np.isfinite(R.values).all()
        if method == "lrp":
            assert_balances(R)
    _check_untouched(model, x, x_before, state, flags, hooks)


def test_embedding_relevance_is_summed_over_the_embedding_dim():
    """LRP on tokens: relevance per token = relevance of its embedding vector summed over dims."""
    model, x = make_tokens()
    R = sx.explain(model, x, preset="epsilon", at=None)
    R_emb = sx.explain(model, x, preset="epsilon", at="emb")
    assert R_emb.shape == tuple(x.shape) + (model.emb.embedding_dim,)
    np.testing.assert_allclose(R.values, R_emb.values.sum(-1), rtol=1e-5, atol=1e-7)
    assert_balances(R)


def test_training_mode_warns_and_flags_restored_mixed():
    model, x = make_cnn()
    model.train()
    model.features[1].eval()  # a mixed case: one BatchNorm in eval, the rest in train
    model.head.eval()
    state, flags, hooks = state_copy(model), training_flags(model), hook_counts(model)
    assert flags["features.1"] is False and flags["features.5"] is True and flags[""] is True
    with pytest.warns(ExplainWarning, match="training mode"):
        R = sx.explain(model, x)
    assert training_flags(model) == flags
    assert_state_equal(model, state)  # no running-stat update, no num_batches_tracked change
    assert hook_counts(model) == hooks
    # explained in eval mode: the same result as the model put in eval mode
    model_eval = copy.deepcopy(model).eval()
    R_eval = sx.explain(model_eval, x)
    np.testing.assert_allclose(R.values, R_eval.values, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "guided_backprop"])
def test_training_mode_other_methods(method):
    model, x = make_cnn()
    model.train()
    flags, state = training_flags(model), state_copy(model)
    with pytest.warns(ExplainWarning):
        sx.explain(model, x, method=method, **METHOD_OPTIONS[method])
    assert training_flags(model) == flags
    assert_state_equal(model, state)


class MidwaySoftmin(nn.Module):
    """A dense layer, then a Softmin (no rule): discovered after the forward pass."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.norm = nn.Softmin(dim=1)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.norm(self.bn(self.fc(x))))


class RaisesInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.block(x)
        if h.shape[1] == 8:
            raise RuntimeError("failure in the middle of forward")
        return self.out(h)


def _error_cases():
    def softmin():
        return set_bn_stats(MidwaySoftmin()), torch.randn(3, 6), {}, UnsupportedModelError, "Softmin"

    def forward_raises():
        return set_bn_stats(RaisesInForward()), torch.randn(3, 6), {}, InputError, "failure in the middle"

    def target_out_of_range():
        model, x = make_cnn()
        return model, x, {"target": 9}, InputError, "out of range"

    def bounds_mismatch():  # raised during the backward walk, after the plan
        model, x = make_cnn()
        box = sx.rules.ZBox(torch.zeros(5), torch.ones(5))
        return model, x, {"preset": {"base": "epsilon-plus", "features.0": box}}, RuleError, "broadcast"

    def guided_on_tanh():
        model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2))
        return set_bn_stats(model), torch.randn(3, 6), {"method": "guided_backprop"}, \
            UnsupportedModelError, "ReLU"

    return {"softmin": softmin, "forward_raises": forward_raises, "target": target_out_of_range,
            "bounds": bounds_mismatch, "guided_tanh": guided_on_tanh}


@pytest.mark.parametrize("case", list(_error_cases()))
@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_model_restored_when_the_call_raises(case, mode):
    model, x, kwargs, error, match = _error_cases()[case]()
    if mode == "eval":
        model.eval()
    elif mode == "train":
        model.train()
    else:
        model.train()
        next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)).eval()
    x_before, state, flags, hooks = x.clone(), state_copy(model), training_flags(model), hook_counts(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExplainWarning)
        with pytest.raises(error, match=match):
            sx.explain(model, x, **kwargs)
    _check_untouched(model, x, x_before, state, flags, hooks)
    assert_no_hooks(model)


def test_users_own_hooks_are_kept_and_called():
    model, x = make_mlp()
    calls = []
    h1 = model[2].register_forward_hook(lambda m, i, o: calls.append("fwd"))
    h2 = model[0].register_forward_pre_hook(lambda m, i: calls.append("pre"))
    try:
        before = hook_counts(model)
        sx.explain(model, x)
        assert hook_counts(model) == before
        assert calls.count("fwd") >= 1 and calls.count("pre") >= 1
        assert len(model[2]._forward_hooks) == 1 and len(model[0]._forward_pre_hooks) == 1
    finally:
        h1.remove()
        h2.remove()


def test_global_hooks_of_others_are_kept():
    model, x = make_mlp()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(type(m)))
    try:
        n_fwd = len(nn.modules.module._global_forward_hooks)
        n_pre = len(nn.modules.module._global_forward_pre_hooks)
        sx.explain(model, x)
        assert len(nn.modules.module._global_forward_hooks) == n_fwd
        assert len(nn.modules.module._global_forward_pre_hooks) == n_pre
        assert handle.id in nn.modules.module._global_forward_hooks
    finally:
        handle.remove()


@pytest.mark.parametrize("kind", ["tensor", "numpy", "requires_grad"])
def test_callers_input_not_modified_by_inplace_model(kind):
    """The first operation of the model is in place on its input; the caller's x is unchanged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(5, 3), nn.ReLU(inplace=True), nn.Linear(3, 2)).eval()
    x = torch.randn(4, 5)
    x_before = x.clone()
    arg = {"tensor": x, "numpy": x.numpy(), "requires_grad": x.clone().requires_grad_(True)}[kind]
    R = sx.explain(model, arg)
    if kind == "requires_grad":
        assert torch.equal(arg.detach(), x_before) and arg.grad is None
    assert torch.equal(x, x_before)
    assert_balances(R)
    R2 = sx.explain(model, x, method="gradient_x_input")
    assert torch.equal(x, x_before)
    assert np.isfinite(R2.values).all()


# -- 7. the other methods ----------------------------------------------------------------------

def autograd_gradient(model, x, target):
    xg = x.detach().clone().requires_grad_(True)
    out = model(xg)
    (g,) = torch.autograd.grad(out[torch.arange(x.shape[0]), target].sum(), xg)
    return g


@pytest.mark.parametrize("name", FLOAT_FAMILIES)
def test_gradient_sensitivity_gradient_x_input(name):
    model, x = FAMILIES[name]()
    logits = logits_of(model, x)
    t = logits.argmax(1)
    g = autograd_gradient(model, x, t)
    G = sx.explain(model, x, method="gradient")
    S = sx.explain(model, x, method="sensitivity")
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(G.values, g.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(S.values, G.values ** 2, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(per_sample(S.values), (g.reshape(len(t), -1) ** 2).sum(1).double().numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(GI.values, (g * x).numpy(), rtol=1e-5, atol=1e-7)
    assert G.attrs["decomposes"] == "none" and np.isnan(G["absorbed"].values).all()
    assert S.attrs["decomposes"] == "squared gradient norm"
    assert GI.attrs["decomposes"] == "f(x)"
    assert_balances(GI)  # absorbed is the Taylor remainder f(x) - sum R
    for R in (G, S, GI):
        np.testing.assert_array_equal(R["target"].values, t.numpy())
        np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(len(t)), t].numpy(), rtol=1e-6)


def test_gradient_for_given_target():
    model, x = make_mlp()
    g = autograd_gradient(model, x, torch.full((x.shape[0],), 2))
    G = sx.explain(model, x, target=2, method="gradient")
    np.testing.assert_allclose(G.values, g.numpy(), rtol=1e-5, atol=1e-7)


def tanh_mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    x = torch.randn(3, 4, dtype=torch.float64) * 1.5
    return model.eval(), x


def test_integrated_gradients_completeness_improves_with_steps():
    model, x = tanh_mlp()
    baseline = 0.1
    logits = logits_of(model, x)
    t = logits.argmax(1)
    f_x = logits[torch.arange(3), t].numpy()
    f_b = logits_of(model, torch.full_like(x, baseline))[torch.arange(3), t].numpy()
    errors = []
    for steps in (2, 8, 32, 128):
        R = sx.explain(model, x, method="integrated_gradients", steps=steps, baseline=baseline, batch_size=17)
        err = np.abs(per_sample(R.values) - (f_x - f_b)).max()
        errors.append(err)
        assert R.attrs["decomposes"] == "f(x) - f(baseline)"
        # independent midpoint rule
        total = torch.zeros_like(x)
        for k in range(steps):
            a = (k + 0.5) / steps
            total += autograd_gradient(model, baseline + a * (x - baseline), t)
        ref = ((x - baseline) * total / steps).numpy()
        np.testing.assert_allclose(R.values, ref, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(R["absorbed"].values, f_x - per_sample(R.values), rtol=1e-8, atol=1e-10)
    assert errors[0] > 1e-3, errors  # the test can tell a coarse integration from a fine one
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < coarse / 4, errors  # midpoint rule: error ~ 1/steps^2
    assert errors[-1] < 1e-3 * np.abs(f_x - f_b).max()


def test_integrated_gradients_tensor_baseline():
    model, x = tanh_mlp(1)
    base = torch.randn_like(x)
    R = sx.explain(model, x, method="integrated_gradients", steps=64, baseline=base)
    t = torch.as_tensor(R["target"].values)
    f = lambda z: logits_of(model, z)[torch.arange(3), t].numpy()  # noqa: E731
    np.testing.assert_allclose(per_sample(R.values), f(x) - f(base), rtol=1e-3, atol=1e-4)


def test_smoothgrad_seeded_and_consistent():
    model, x = make_mlp()
    a = sx.explain(model, x, method="smoothgrad", n_samples=8, noise=0.2, seed=3)
    b = sx.explain(model, x, method="smoothgrad", n_samples=8, noise=0.2, seed=3)
    c = sx.explain(model, x, method="smoothgrad", n_samples=8, noise=0.2, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)
    # no noise: the mean of identical gradients is the gradient
    z = sx.explain(model, x, method="smoothgrad", n_samples=3, noise=0.0)
    g = autograd_gradient(model, x, torch.as_tensor(z["target"].values))
    np.testing.assert_allclose(z.values, g.numpy(), rtol=1e-5, atol=1e-7)
    # a linear model has the same gradient everywhere, whatever the noise
    lin = nn.Linear(6, 3).eval()
    s = sx.explain(lin, x, method="smoothgrad", n_samples=5, noise=1.0, seed=0, target=1)
    np.testing.assert_allclose(s.values, lin.weight[1].detach().expand(x.shape[0], -1).numpy(), rtol=1e-5)
    assert a.attrs["decomposes"] == "none"


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0).to(g.dtype)


class _FnReLU(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def modified_gradient(model, x, target, fn):
    ref = copy.deepcopy(model)
    for name, m in list(ref.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(m, child_name, _FnReLU(fn))
    return autograd_gradient(ref.eval(), x, target)


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "eeg_conv1d"])
def test_guided_backprop_and_deconvnet_match_independent_implementation(name):
    model, x = FAMILIES[name]()
    t = logits_of(model, x).argmax(1)
    for method, fn in (("deconvnet", _DeconvReLU), ("guided_backprop", _GuidedReLU)):
        R = sx.explain(model, x, method=method)
        ref = modified_gradient(model, x, t, fn)
        np.testing.assert_allclose(R.values, ref.numpy(), rtol=1e-5, atol=1e-6 * float(ref.abs().max()),
                                   err_msg=method)
        assert R.attrs["decomposes"] == "none"
    # and they are not just the gradient
    g = autograd_gradient(model, x, t)
    assert not np.allclose(sx.explain(model, x, method="deconvnet").values, g.numpy(), atol=1e-6)


@pytest.mark.parametrize("method", ["deconvnet", "guided_backprop"])
def test_guided_methods_raise_on_tanh(method):
    model, x = tanh_mlp()
    with pytest.raises(UnsupportedModelError, match=r"ReLU.*|.*Tanh"):
        sx.explain(model, x, method=method)


# -- 8. netCDF round trip ----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lrp", "gradient", "integrated_gradients"])
def test_netcdf_round_trip(tmp_path, method):
    model, x = make_eeg()
    channels = ["Fz", "C3", "Cz", "C4", "Pz"]
    times = np.arange(x.shape[2]) / 100.0
    R = sx.explain(model, x, method=method, dims=("epoch", "channel", "time"),
                   coords={"channel": channels, "time": times}, **METHOD_OPTIONS.get(method, {}))
    path = tmp_path / "relevance.nc"
    R.to_netcdf(path)
    with xr.open_dataarray(path) as back:
        back = back.load()
    np.testing.assert_array_equal(back.values, R.values)
    assert back.dims == ("epoch", "channel", "time")
    assert list(back["channel"].values) == channels
    np.testing.assert_array_equal(back["time"].values, times)
    for c in ("prediction", "target", "absorbed"):
        np.testing.assert_array_equal(back[c].values, R[c].values)
        assert back[c].dims == ("epoch",)
    for a in ("method", "rules", "decomposes", "sciexplain_version"):
        assert back.attrs[a] == R.attrs[a]
    assert back.attrs["method"] == method
    if method == "lrp":
        assert_balances(back)


# -- 9. softmax stripping, max pooling ---------------------------------------------------------

class WithSoftmax(nn.Module):
    def __init__(self, base, how):
        super().__init__()
        self.base, self.how = base, how
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        z = self.base(x)
        if self.how == "module":
            return self.softmax(z)
        if self.how == "function":
            return F.softmax(z, dim=1)
        return torch.log_softmax(z, dim=1)


@pytest.mark.parametrize("how", ["module", "function", "log"])
@pytest.mark.parametrize("method", ["lrp", "gradient"])
def test_final_softmax_is_stripped(how, method):
    base, x = make_mlp()
    model = WithSoftmax(base, how).eval()
    R = sx.explain(model, x, method=method)
    R_base = sx.explain(base, x, method=method)
    logits = logits_of(base, x)
    t = logits.argmax(1)
    np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(len(t)), t].numpy(), rtol=1e-6)
    assert not np.allclose(R["prediction"].values, logits_of(model, x)[torch.arange(len(t)), t].numpy())
    np.testing.assert_allclose(R.values, R_base.values, rtol=1e-6, atol=1e-8)
    if method == "lrp":
        assert_balances(R)
        assert "before the final" in R.attrs["explained"]


def test_max_pool_proportional_and_winner_take_all_single_layer():
    """On a bare pooling model: winner-take-all puts the window's relevance on the maximum,
    proportional spreads it as x_i / sum_window(x) (Montavon et al. 2017, Sec. 5)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64) + 0.1
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten()).eval()
    for target in (0, 3):
        wy, wx = divmod(target, 2)
        win = x[:, 0, 2 * wy:2 * wy + 2, 2 * wx:2 * wx + 2]
        mx = win.reshape(2, -1).max(1).values
        wta = sx.explain(model, x, target=target)
        prop = sx.explain(model, x, target=target, max_pool="proportional")
        exp_wta = torch.zeros_like(x)
        exp_prop = torch.zeros_like(x)
        for b in range(2):
            k = int(win[b].reshape(-1).argmax())
            exp_wta[b, 0, 2 * wy + k // 2, 2 * wx + k % 2] = mx[b]
            exp_prop[b, 0, 2 * wy:2 * wy + 2, 2 * wx:2 * wx + 2] = win[b] / win[b].sum() * mx[b]
        np.testing.assert_allclose(wta.values, exp_wta.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(prop.values, exp_prop.numpy(), rtol=1e-7, atol=1e-9)
        assert_balances(prop, rtol=1e-7)


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_max_pool_proportional_conserves(preset):
    model, x = make_cnn()
    R, led = sx.Explainer(model, "lrp", preset, max_pool="proportional").explain_with_ledger(x)
    R_wta = sx.explain(model, x, preset=preset)
    assert_balances(R)
    assert_ledger_balances(led)
    assert "proportional" in R.attrs["explained"]
    assert not np.allclose(R.values, R_wta.values)


# -- intermediate relevance and filtering ------------------------------------------------------

def test_relevance_at_a_layer_balances():
    model, x = make_cnn()
    R = sx.explain(model, x, preset="epsilon", at="features.4")
    assert R.shape == (x.shape[0], 8, 4, 4)
    assert R.attrs["layer"] == "features.4"
    assert_balances(R)


def test_relevance_through_channels_balances():
    model, x = make_cnn()
    full = sx.explain(model, x, preset="epsilon")
    part = sx.explain(model, x, preset="epsilon", through={"features.4": [0, 1]})
    rest = sx.explain(model, x, preset="epsilon", through={"features.4": list(range(2, 8))})
    assert_balances(part)
    np.testing.assert_allclose(part.values + rest.values, full.values, rtol=1e-4,
                               atol=1e-6 * np.abs(full.values).max())


# -- grad mode of the caller -------------------------------------------------------------------

def _grad_mode_params():
    return [pytest.param(ctx, method, id=f"{ctx}-{method}")
            for ctx in ("no_grad", "inference_mode") for method in sx.METHODS]


@pytest.mark.parametrize("ctx,method", _grad_mode_params())
def test_explain_inside_no_grad_and_inference_mode(ctx, method):
    """Users often call explain inside their evaluation loop's no_grad / inference_mode block."""
    model, x = make_cnn()
    opts = METHOD_OPTIONS[method]
    expected = sx.explain(model, x, method=method, **opts)
    state = state_copy(model)
    with getattr(torch, ctx)():
        R = sx.explain(model, x, method=method, **opts)
    np.testing.assert_allclose(R.values, expected.values, rtol=1e-6, atol=1e-9)
    assert_state_equal(model, state)


def test_epsilon_layers_reuse_the_recorded_forward(monkeypatch):
    """DESIGN, cost: a plain epsilon term reuses the recorded forward (no second forward): the
    recorded output with the layer's adjoint (W^T s directly) where the layer has one, else the
    recorded autograd graph."""
    from sciexplain.rules import propagation
    calls = []
    original = propagation._term_relevance

    def spy(layer, term, R, cached, **kwargs):
        reused = cached is not None or (kwargs.get("recorded") is not None and layer.adjoint is not None)
        calls.append((layer.name, term.plain, reused))
        return original(layer, term, R, cached, **kwargs)

    monkeypatch.setattr(propagation, "_term_relevance", spy)
    model, x = make_mlp()
    R = sx.explain(model, x, preset="epsilon")
    assert_balances(R)
    dense = [c for c in calls if c[0] in ("0", "2", "4")]
    assert len(dense) == 3
    assert all(plain and cached for _, plain, cached in dense), dense
    # sign-split rules (z+, alpha-beta, gamma) are evaluated together, once per layer
    signed = []
    original_signed = propagation._signed_relevance

    def spy_signed(layer, *args, **kwargs):
        signed.append(layer.name)
        return original_signed(layer, *args, **kwargs)

    monkeypatch.setattr(propagation, "_signed_relevance", spy_signed)
    calls.clear()
    assert_balances(sx.explain(model, x, preset=ZPlus()))
    assert [n for n in signed if n in ("0", "2", "4")] == ["4", "2", "0"]  # one evaluation per layer


# -- layout operations with constants ----------------------------------------------------------

class WhereNet(nn.Module):
    def __init__(self, other: str):
        super().__init__()
        self.a, self.b, self.other = nn.Linear(4, 6), nn.Linear(6, 2), other
        self.register_buffer("mask", torch.tensor([True, False, True, True, False, True]))

    def forward(self, x):
        h = torch.relu(self.a(x))
        if self.other == "scalar":
            h = torch.where(self.mask, h, 0.5)
        elif self.other == "batched":
            h = torch.where(self.mask, h, torch.full((x.shape[0], 6), 0.5))
        else:
            h = torch.where(self.mask, h, torch.full((6,), 0.5))  # broadcast over the batch
        return self.b(h)


@pytest.mark.parametrize("other", [
    "batched",
    "scalar",
    "broadcast",
])
def test_where_with_constant_operand_balances(other):
    torch.manual_seed(0)
    model = WhereNet(other).eval()
    x = torch.randn(4, 4)
    R, led = sx.Explainer(model, "lrp", "epsilon").explain_with_ledger(x)
    assert_balances(R)
    assert_ledger_balances(led)
    # the constant 0.5 entries take up relevance: it is counted as absorbed
    assert np.abs(R["absorbed"].values).max() > 0


class FloorNet(nn.Module):
    """Element-wise maximum with a constant floor (a winner-take-all between two operands)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
        self.register_buffer("floor", torch.full((6,), 0.3))

    def forward(self, x):
        return self.b(torch.max(self.a(x), self.floor))


def test_elementwise_max_with_constant_balances():
    torch.manual_seed(0)
    model = FloorNet().eval()
    x = torch.randn(4, 4)
    with torch.no_grad():
        assert bool((model.a(x) < 0.3).any())  # the floor wins somewhere
    R, led = sx.Explainer(model, "lrp", "epsilon").explain_with_ledger(x)
    assert_ledger_balances(led)
    assert_balances(R)


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, stride=2, padding=1), nn.AdaptiveMaxPool2d(2),
    nn.MaxPool2d(2, ceil_mode=True),
], ids=["overlapping", "adaptive", "ceil_mode"])
def test_max_pool_proportional_variants(pool):
    torch.manual_seed(0)
    x = torch.randn(2, 1, 5, 5)
    feats = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), pool, nn.Flatten())
    with torch.no_grad():
        n = feats(x).shape[1]
    model = nn.Sequential(*feats, nn.Linear(n, 2)).eval()
    for mode in ("winner-take-all", "proportional"):
        R, led = sx.Explainer(model, "lrp", "epsilon", max_pool=mode).explain_with_ledger(x)
        assert_balances(R)
        assert_ledger_balances(led)


# -- module subclasses and shared modules ------------------------------------------------------

class SamePadConv(nn.Conv2d):
    """Like EfficientNet's Conv2dStaticSamePadding: an nn.Conv2d subclass with its own forward."""

    def forward(self, x):
        x = F.pad(x, (1, 1, 1, 1))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rule", [Epsilon(0.1), ZPlus(), AlphaBeta(2, 1)], ids=repr)
def test_conv_subclass_with_own_forward(rule, bias):
    torch.manual_seed(1)
    sub = SamePadConv(2, 3, 3, bias=bias).double()
    plain = nn.Conv2d(2, 3, 3, padding=1, bias=bias).double()
    plain.load_state_dict(sub.state_dict())
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    a = sx.explain(nn.Sequential(sub, nn.ReLU(), nn.Flatten()).eval(), x, target=10, preset=rule)
    b = sx.explain(nn.Sequential(plain, nn.ReLU(), nn.Flatten()).eval(), x, target=10, preset=rule)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a["absorbed"].values, b["absorbed"].values, rtol=1e-10, atol=1e-12)


class Siamese(nn.Module):
    """One Linear + BatchNorm applied to two halves of the input (shared weights)."""

    def __init__(self, separate: bool = False):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)
        self.separate = separate

    def forward(self, x):
        fc2 = self.fc2 if self.separate else self.fc
        bn2 = self.bn2 if self.separate else self.bn
        return self.out(torch.relu(self.bn(self.fc(x[:, :3]))) + torch.relu(bn2(fc2(x[:, 3:]))))


@pytest.mark.parametrize("preset", ["epsilon", "epsilon-plus", "alpha2-beta1"])
def test_shared_modules_equal_separate_copies(preset):
    torch.manual_seed(0)
    shared = set_bn_stats(Siamese()).eval()
    sep = Siamese(separate=True)
    sep.load_state_dict(shared.state_dict())
    sep.fc2, sep.bn2 = copy.deepcopy(shared.fc), copy.deepcopy(shared.bn)
    sep.eval()
    x = torch.randn(4, 6)
    R = sx.explain(shared, x, preset=preset)
    R_sep = sx.explain(sep, x, preset=preset)
    np.testing.assert_allclose(R.values, R_sep.values, rtol=1e-6, atol=1e-8)
    assert "fc (Linear+BatchNorm1d): " in R.attrs["rules"] and "[x2 calls]" in R.attrs["rules"]
    assert_balances(R)
