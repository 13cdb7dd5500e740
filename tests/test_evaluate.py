"""Explanation quality: perturbation curves, AOPC/ABPC, continuity, input invariance, randomization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import ExplainWarning, InputError
from sciexplain.evaluate import abpc, aopc, continuity, input_invariance, perturbation_curve, randomization

try:
    from conftest import FAMILIES, assert_state_equal, make_cnn, make_eeg, make_mlp, state_copy
except ImportError:  # pytest --import-mode=importlib does not put tests/ on sys.path
    import sys as _sys
    from pathlib import Path as _Path
    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from conftest import FAMILIES, assert_state_equal, make_cnn, make_eeg, make_mlp, state_copy


def outputs(model, x, t):
    with torch.no_grad():
        out = model(x)
    return out[torch.arange(len(x)), torch.as_tensor(t)].double().numpy()


def linear_model(n: int = 12, seed: int = 0, positive: bool = False):
    g = torch.Generator().manual_seed(seed)
    m = nn.Linear(n, 1)
    with torch.no_grad():
        w = torch.randn(1, n, generator=g)
        m.weight.copy_(w.abs() if positive else w)
        m.bias.fill_(0.3)
    x = torch.randn(5, n, generator=g)
    if positive:
        x = x.abs() + 0.1
    return m.eval(), x


# -- perturbation curves ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "eeg_conv1d", "residual"])
def test_step0_is_the_model_output(name):
    model, x = FAMILIES[name]()
    R = sx.explain(model, x)
    curve = perturbation_curve(model, x, R, steps=5)
    assert curve.dims == ("sample", "step") and curve.shape == (x.shape[0], 6)
    np.testing.assert_allclose(curve.isel(step=0).values, R["prediction"].values, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(curve["target"].values, R["target"].values)
    np.testing.assert_array_equal(curve["removed"].values, np.arange(6))
    assert curve.attrs["order"] == "morf" and curve.attrs["patch"] == "none"
    assert not np.allclose(curve.values[:, -1], curve.values[:, 0])  # the perturbation changes the output


def test_linear_model_exact_relevance_zero_removal():
    """f(x) = w.x + b, R = x * w (LRP-0): removing feature i with 'zero' lowers f by exactly R_i."""
    model, x = linear_model()
    R = sx.explain(model, x, preset=sx.rules.Epsilon(0))
    np.testing.assert_allclose(R.values, (x * model.weight.detach()).numpy(), rtol=1e-5, atol=1e-6)
    n = x.shape[1]
    morf = perturbation_curve(model, x, R, removal="zero", order="morf")
    lerf = perturbation_curve(model, x, R, removal="zero", order="lerf")
    assert morf.sizes["step"] == n + 1
    ranked = -np.sort(-R.values, axis=1)
    np.testing.assert_allclose(-np.diff(morf.values, axis=1), ranked, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(-np.diff(lerf.values, axis=1), ranked[:, ::-1], rtol=1e-4, atol=1e-5)
    # all features removed: only the bias is left
    np.testing.assert_allclose(morf.values[:, -1], 0.3, rtol=1e-5)
    # the decrements never grow: the curve is concave, and falls while relevance is positive
    dec = -np.diff(morf.values, axis=1)
    assert (np.diff(dec, axis=1) <= 1e-5).all()
    for i in range(len(x)):
        pos = int((ranked[i] > 0).sum())
        assert (np.diff(morf.values[i, : pos + 1]) <= 1e-6).all()
    # MoRF below LeRF everywhere: the exact relevance is the best ranking
    assert (morf.values <= lerf.values + 1e-6).all()
    assert (abpc(morf, lerf).values > 0).all()


def test_linear_positive_morf_monotone_and_better_than_random():
    model, x = linear_model(positive=True, seed=3)
    R = sx.explain(model, x, method="gradient_x_input")
    morf = perturbation_curve(model, x, R, removal="zero")
    assert (np.diff(morf.values, axis=1) <= 1e-6).all()
    rand = perturbation_curve(model, x, R, removal="zero", order="random", seed=1)
    assert (aopc(morf).values >= aopc(rand).values - 1e-6).all()
    assert aopc(morf).attrs["mean"] > aopc(rand).attrs["mean"]


def test_matches_a_naive_loop():
    """Brute force: sort the 2x2 patches of the colour-pooled relevance, copy the baseline in, evaluate."""
    model, x = make_cnn(batch=3)
    R = sx.explain(model, x).relevance.pool("dim_0").values
    base = torch.rand(x.shape, generator=torch.Generator().manual_seed(5))
    for order in ("morf", "lerf"):
        curve = perturbation_curve(model, x, R, steps=7, patch=(2, 2), removal=base, order=order, target=2,
                                   batch_size=5)
        for i in range(3):
            pooled = R[i].reshape(4, 2, 4, 2).sum(axis=(1, 3)).reshape(-1)
            ranking = np.argsort(-pooled if order == "morf" else pooled, kind="stable")
            xi = x[i:i + 1].clone()
            expect = [outputs(model, xi, [2])[0]]
            for p in ranking[:7]:
                r, c = divmod(int(p), 4)
                xi[..., 2 * r:2 * r + 2, 2 * c:2 * c + 2] = base[i, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
                expect.append(outputs(model, xi, [2])[0])
            np.testing.assert_allclose(curve.values[i], expect, rtol=1e-5, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(batch_size=st.integers(1, 9), per_step=st.integers(1, 3), use_patch=st.booleans(),
       removal=st.sampled_from(["uniform", "zero", "mean"]))
def test_batching_does_not_change_the_curve(batch_size, per_step, use_patch, removal):
    model, x = make_cnn(batch=4)
    R = sx.explain(model, x).relevance.pool("dim_0")
    patch = (2, 2) if use_patch else None
    kw = dict(steps=5, removal=removal, patch=patch, regions_per_step=per_step, seed=3)
    ref = perturbation_curve(model, x, R, batch_size=1, **kw)
    got = perturbation_curve(model, x, R, batch_size=batch_size, **kw)
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["removed"].values, np.arange(6) * per_step)


def test_removal_is_cumulative_and_pooled_dims_remove_all_channels():
    model, x = make_cnn(batch=3)
    R = sx.explain(model, x).relevance.pool("dim_0")  # (sample, 8, 8) for x (3, 3, 8, 8)
    masks = []

    def removal(xb, mask):
        masks.append(mask.clone())
        return torch.where(mask, torch.zeros_like(xb), xb)

    custom = perturbation_curve(model, x, R, steps=6, removal=removal, patch=(2, 2))
    zero = perturbation_curve(model, x, R, steps=6, removal="zero", patch=(2, 2))
    np.testing.assert_allclose(custom.values, zero.values, rtol=1e-6)
    assert len(masks) == 6
    for k, m in enumerate(masks, start=1):
        assert m.shape == x.shape
        # a removed position removes every channel; patches are 2x2: 4 positions x 3 channels per step
        assert torch.equal(m, m[:, :1].expand_as(m))
        assert (m.reshape(3, -1).sum(1) == 12 * k).all()
        if k > 1:
            assert bool((m >= masks[k - 2]).all())  # cumulative
    # MoRF removes the patch with the largest pooled relevance first
    pooled = R.values.reshape(3, 4, 2, 4, 2).sum(axis=(2, 4))
    first = masks[0][:, 0].reshape(3, 4, 2, 4, 2)[:, :, 0, :, 0]
    for i in range(3):
        assert first[i].flatten().nonzero()[0].item() == int(np.argmax(pooled[i]))


def test_uniform_noise_in_range_and_random_order_reproducible():
    model, x = make_mlp(batch=6)
    R = sx.explain(model, x)
    seen = []

    class Spy(nn.Module):
        def forward(self, z):
            seen.append(z.clone())
            return model(z)

    perturbation_curve(Spy().eval(), x, R, steps=6, value_range=(5.0, 6.0), batch_size=6)
    last = seen[-1]
    changed = last != x
    assert int(changed.sum()) == 6 * 6  # every feature of every sample replaced after 6 steps
    assert bool(((last[changed] >= 5.0) & (last[changed] <= 6.0)).all())
    a = perturbation_curve(model, x, R, order="random", seed=4)
    b = perturbation_curve(model, x, R, order="random", seed=4)
    c = perturbation_curve(model, x, R, order="random", seed=5)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    d = perturbation_curve(model, x, None, order="random", seed=4)  # R not needed for a random order
    assert d.shape == a.shape


def test_ties_stable_or_random():
    """Equal relevance: 'stable' removes the first features first, 'random' a seeded random choice."""
    model, x = linear_model(n=10)
    R = np.zeros((5, 10))
    R[:, 7] = 1.0  # one relevant feature, nine ties at 0
    seen = []

    def removal(xb, mask):
        seen.append(mask.clone())
        return torch.where(mask, torch.zeros_like(xb), xb)

    perturbation_curve(model, x, R, steps=2, removal=removal, batch_size=5)
    assert seen[0][:, 7].all() and seen[1][:, [0, 7]].all() and int(seen[1].sum()) == 10
    seen.clear()
    perturbation_curve(model, x, R, steps=2, removal=removal, batch_size=5, ties="random", seed=0)
    assert seen[0][:, 7].all() and int(seen[0].sum()) == 5  # the relevant one still first
    picks = (seen[1] & ~seen[0]).nonzero()[:, 1]
    assert len(picks) == 5 and len(set(picks.tolist())) > 1  # ties broken differently per sample
    first_run = [m.clone() for m in seen]
    seen.clear()
    perturbation_curve(model, x, R, steps=2, removal=removal, batch_size=5, ties="random", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first_run, seen))  # reproducible with the seed
    with pytest.raises(InputError, match="ties"):
        perturbation_curve(model, x, R, steps=2, ties="first")


def test_baseline_tensor_and_mean_removal():
    model, x = make_mlp(batch=5)
    R = sx.explain(model, x)
    full = perturbation_curve(model, x, R, removal=torch.full((6,), 0.5))
    np.testing.assert_allclose(full.values[:, -1], outputs(model, torch.full_like(x, 0.5), R.target.values),
                               rtol=1e-5)
    mean = perturbation_curve(model, x, R, removal="mean")
    np.testing.assert_allclose(mean.values[:, -1], outputs(model, x.mean(0).expand_as(x), R.target.values),
                               rtol=1e-5)


def test_dims_matched_by_name_when_ambiguous():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 2)).eval()
    x = torch.rand(2, 3, 3, 3, generator=g)
    R = sx.explain(model, x, dims=("sample", "color", "y", "x")).relevance.pool("color")
    with pytest.raises(InputError, match="x_dims"):
        perturbation_curve(model, x, R, steps=3)
    curve = perturbation_curve(model, x, R, steps=3, x_dims=("sample", "color", "y", "x"))
    assert curve.attrs["n_regions"] == 9
    # the transpose of R, matched by name, ranks the same
    curve_t = perturbation_curve(model, x, R.transpose("sample", "x", "y"), steps=3,
                                 x_dims=("sample", "color", "y", "x"))
    np.testing.assert_allclose(curve.values, curve_t.values)


def test_perturbation_errors():
    model, x = make_cnn(batch=2)
    R = sx.explain(model, x)
    with pytest.raises(InputError, match="does not match"):
        perturbation_curve(model, x, R.values[:, :, :5])
    with pytest.raises(InputError, match="batch"):
        perturbation_curve(model, x[:1], R)
    with pytest.raises(InputError, match="only 192"):
        perturbation_curve(model, x, R, steps=193)
    with pytest.raises(InputError, match="only 48"):
        perturbation_curve(model, x, R, steps=49, patch=(2, 2))
    with pytest.raises(InputError, match="unknown removal"):
        perturbation_curve(model, x, R, steps=2, removal="blur")
    with pytest.raises(InputError, match="unknown order"):
        perturbation_curve(model, x, R, steps=2, order="most")
    bad = R.values.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        perturbation_curve(model, x, bad, steps=2)
    with pytest.raises(InputError, match="pass R"):
        perturbation_curve(model, x, None, steps=2)
    with pytest.raises(InputError, match="broadcast"):
        perturbation_curve(model, x, R, steps=2, removal=torch.zeros(5))
    with pytest.raises(InputError, match="patch"):
        perturbation_curve(model, x, R, steps=2, patch=(2, 2, 2, 2))


def test_warns_when_R_explains_another_output():
    model, x = make_mlp()
    R = sx.explain(model, x)
    with_softmax = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    with pytest.warns(ExplainWarning, match="differs from R.prediction"):
        perturbation_curve(with_softmax, x, R, steps=2)


def test_aopc_and_abpc_values():
    curve = xr.DataArray(np.array([[3.0, 2.0, 0.0], [1.0, 1.0, 1.0]]), dims=("sample", "step"),
                         attrs={"order": "morf"})
    a = aopc(curve)
    np.testing.assert_allclose(a.values, [(0 + 1 + 3) / 3, 0.0])
    assert a.attrs["mean"] == pytest.approx(2 / 3)
    assert float(a.mean()) == pytest.approx(2 / 3)
    lerf = xr.DataArray(np.array([[3.0, 3.0, 2.0], [1.0, 2.0, 0.0]]), dims=("sample", "step"),
                        attrs={"order": "lerf"})
    np.testing.assert_allclose(abpc(curve, lerf).values, [(0 + 1 + 2) / 3, (0 + 1 - 1) / 3])
    with pytest.raises(InputError, match="order"):
        abpc(lerf, curve)
    with pytest.raises(InputError):
        aopc(xr.DataArray(np.zeros((2, 1)), dims=("sample", "step")))


# -- continuity: the max(x1, x2) network of Montavon et al. 2017, Sec. 7.1 --------------------

def max_network() -> nn.Module:
    """f(x) = max(0, 0.5 max(0, x1 - x2) + 0.5 max(0, x2 - x1) + 0.5 max(0, x1 + x2)) = max(x1, x2) on R+^2."""
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]))
        net[2].weight.copy_(torch.tensor([[0.5, 0.5, 0.5]]))
    return net.eval()


def crossing_path(n: int) -> torch.Tensor:
    """Points (2 + t, 2 - t) with t = (-1)^k 0.5^k: every step crosses x1 = x2 and the steps shrink."""
    t = torch.tensor([(-1) ** k * 0.5 ** k for k in range(n)], dtype=torch.float64)
    return torch.stack([2 + t, 2 - t], dim=1).float()


def test_max_network_computes_max():
    net = max_network()
    x = torch.rand(50, 2) * 3
    with torch.no_grad():
        np.testing.assert_allclose(net(x)[:, 0].numpy(), x.max(dim=1).values.numpy(), rtol=1e-6)


def test_continuity_zplus_bounded_gradient_methods_not():
    net = max_network()
    methods = {
        "zplus": lambda z: sx.explain(net, z, target=0, preset=sx.rules.ZPlus()),
        "sensitivity": lambda z: sx.explain(net, z, target=0, method="sensitivity"),
        "gradient_x_input": lambda z: sx.explain(net, z, target=0, method="gradient_x_input"),
    }
    short, long = crossing_path(6), crossing_path(18)
    c = {k: (continuity(f, short).attrs["continuity"], continuity(f, long)) for k, f in methods.items()}
    zp = c["zplus"][1]
    assert zp.dims == ("pair",) and zp.sizes["pair"] == 17
    assert float(zp.max()) == pytest.approx(zp.attrs["continuity"])
    assert zp.attrs["continuity"] <= math.sqrt(2) * (1 + 1e-4)
    assert zp.attrs["continuity"] > 0.5  # the relevance does move with the input
    for k in ("sensitivity", "gradient_x_input"):
        small, large = c[k][0], c[k][1].attrs["continuity"]
        assert large > 100 * small > 0  # grows as the steps shrink: 2^12 times smaller steps here
        assert large > 1000
        # per pair: the ratio (nearly) doubles with every halving of the step
        r = c[k][1].values
        assert (r[1:] > 1.5 * r[:-1]).all()


def test_continuity_errors():
    with pytest.raises(InputError, match="at least 2"):
        continuity(lambda z: z, torch.ones(1, 2))
    with pytest.raises(InputError, match="differ"):
        continuity(lambda z: z, torch.ones(3, 2))
    with pytest.raises(InputError, match="one explanation per input"):
        continuity(lambda z: z[:1], torch.rand(3, 2))


# -- input invariance (Kindermans et al.) ------------------------------------------------------

def box_mlp():
    model, _ = make_mlp(seed=2, batch=5)
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(9))  # data in the box [0, 1]
    return model, x


def test_input_invariance_gradient_invariant_others_not():
    model, x = box_mlp()
    before = state_copy(model)
    grad = input_invariance(model, x, method="gradient", shift=-1.0)
    assert grad.attrs["max_relative_difference"] < 1e-5
    assert grad.attrs["first_layer"] == "0"
    assert set(grad.data_vars) >= {"original", "shifted", "max_abs_difference", "relative_difference"}
    gxi = input_invariance(model, x, method="gradient_x_input", shift=-1.0)
    assert gxi.attrs["max_relative_difference"] > 0.1
    lrp0 = input_invariance(model, x, preset=sx.rules.Epsilon(0), shift=-1.0)
    assert lrp0.attrs["max_relative_difference"] > 0.1
    assert_state_equal(model, before)  # the twin is a copy


def test_input_invariance_zbox_with_moving_box():
    model, x = box_mlp()
    kw = dict(preset="epsilon-plus-box", bounds=(0.0, 1.0), shift=-1.0)
    moved = input_invariance(model, x, **kw)
    fixed = input_invariance(model, x, shift_bounds=False, **kw)
    assert moved.attrs["max_relative_difference"] < 1e-4
    assert fixed.attrs["max_relative_difference"] > 0.05
    # a ZBox rule given directly in the preset moves as well
    rule = input_invariance(model, x, preset={"base": "epsilon-plus", "0": sx.rules.ZBox(0.0, 1.0)}, shift=-1.0)
    assert rule.attrs["max_relative_difference"] < 1e-4


def test_input_invariance_conv_first_layer_and_errors():
    g = torch.Generator().manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    x = torch.rand(3, 2, 6, 6, generator=g)
    res = input_invariance(conv, x, method="gradient", shift=torch.tensor([0.5, -1.0]).reshape(2, 1, 1))
    assert res.attrs["max_relative_difference"] < 1e-5
    padded, xp = make_cnn()
    with pytest.raises(InputError, match="padding"):
        input_invariance(padded, xp, method="gradient")
    with pytest.raises(InputError, match="broadcast"):
        input_invariance(conv, x, method="gradient", shift=torch.ones(5))


# -- model-parameter randomization (Adebayo et al.) --------------------------------------------

def test_randomization_cascade_and_independent():
    model, x = make_cnn(batch=3)
    before = state_copy(model)
    ds = randomization(model, x, method="gradient", seed=1)
    assert ds["spearman"].dims == ("layer", "sample")
    assert list(ds["layer"].values) == ["head.3", "head.1", "features.5", "features.4", "features.1",
                                        "features.0"]
    assert (ds["spearman"].values < 0.99).all()
    assert np.nanmean(np.abs(ds["spearman"].values[-1])) < 0.5  # fully random model: unrelated maps
    again = randomization(model, x, method="gradient", seed=1)
    np.testing.assert_array_equal(ds["spearman"].values, again["spearman"].values)
    indep = randomization(model, x, method="gradient", cascade=False, seed=1, layers=["head.3", "features.0"])
    assert indep.sizes["layer"] == 2 and indep.attrs["cascade"] == 0
    np.testing.assert_allclose(indep["spearman"].values[0], ds["spearman"].values[0])  # same first step
    assert_state_equal(model, before)
    with pytest.raises(InputError, match="unknown module"):
        randomization(model, x, layers=["nope"])


def test_randomization_lrp_runs_with_preset():
    model, x = make_eeg(batch=2)
    ds = randomization(model, x, preset="epsilon-plus")
    assert ds.sizes["layer"] == 4 and np.isfinite(ds["spearman_abs"].values).all()


def test_perturbation_curve_on_a_non_contiguous_input():
    """A transposed x gives the same curve as its contiguous copy (entries are removed in place)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    x = torch.randn(4, 4, 3).transpose(1, 2)
    R = sx.explain(m, x.contiguous())
    a = sx.evaluate.perturbation_curve(m, x, R, steps=3, removal="zero")
    b = sx.evaluate.perturbation_curve(m, x.contiguous(), R, steps=3, removal="zero")
    np.testing.assert_allclose(a.values, b.values)
    assert not np.allclose(a.values[:, 0], a.values[:, -1])


# -- several seeds, bootstrap intervals, compare, callable models ---------------------------------

def test_several_seeds_stack_the_single_seed_curves():
    model, x = make_cnn(batch=3)
    R = sx.explain(model, x)
    kw = dict(steps=4, patch=(2, 2), removal="uniform")
    both = perturbation_curve(model, x, R, seed=[3, 7], **kw)
    assert both.dims == ("seed", "sample", "step") and list(both.seed.values) == [3, 7]
    for s in (3, 7):
        np.testing.assert_array_equal(both.sel(seed=s).values, perturbation_curve(model, x, R, seed=s, **kw).values)
    assert not np.allclose(both.sel(seed=3).values, both.sel(seed=7).values)  # other noise, other curve
    # aopc over (seed, sample, step) is the plain formula per seed and sample
    a = aopc(both)
    v = both.values
    np.testing.assert_allclose(a.values, (v[..., :1] - v).mean(axis=-1))
    assert a.dims == ("seed", "sample") and math.isclose(a.attrs["mean"], float((v[..., :1] - v).mean()))
    lerf = perturbation_curve(model, x, R, seed=[3, 7], order="lerf", **kw)
    np.testing.assert_allclose(abpc(both, lerf).values, (lerf.values - v).mean(axis=-1))
    with pytest.raises(InputError, match="differ"):
        abpc(both, perturbation_curve(model, x, R, seed=[3], order="lerf", **kw))
    with pytest.raises(InputError, match="twice"):
        perturbation_curve(model, x, R, seed=[1, 1], **kw)
    with pytest.raises(InputError, match="empty"):
        perturbation_curve(model, x, R, seed=[], **kw)


def test_bootstrap_ci_is_the_plain_percentile_bootstrap():
    from sciexplain.evaluate import bootstrap_ci
    values = np.array([0.3, 1.2, -0.4, 2.0, 0.9, 0.1, 1.5])
    est, lo, hi = bootstrap_ci(values, n_boot=500, level=0.9, seed=11)
    rng = np.random.default_rng(11)  # the documented resampling, written out
    means = values[rng.integers(0, len(values), size=(500, len(values)))].mean(axis=1)
    assert est == pytest.approx(values.mean())
    assert lo == pytest.approx(np.quantile(means, 0.05)) and hi == pytest.approx(np.quantile(means, 0.95))
    assert lo < est < hi
    assert bootstrap_ci(np.full(5, 2.5), n_boot=50) == pytest.approx((2.5, 2.5, 2.5))  # no spread, no width
    # a DataArray with a seed dim: seeds averaged per sample first, the interval is over samples
    da = xr.DataArray(np.stack([values, values + 1.0]), dims=("seed", "image"))
    assert bootstrap_ci(da, n_boot=500, level=0.9, seed=11) == pytest.approx(
        bootstrap_ci(values + 0.5, n_boot=500, level=0.9, seed=11))
    # a wider level gives a wider interval; more samples of the same spread a narrower one
    w90 = np.subtract(*bootstrap_ci(values, level=0.9, seed=1)[2:0:-1])
    w99 = np.subtract(*bootstrap_ci(values, level=0.99, seed=1)[2:0:-1])
    assert w99 > w90
    big = np.random.default_rng(0).normal(size=400)
    half = np.subtract(*bootstrap_ci(big, seed=2)[2:0:-1]) / 2
    assert half == pytest.approx(1.96 * big.std() / math.sqrt(400), rel=0.15)  # normal theory
    for bad in (dict(level=1.0), dict(level=0.0), dict(n_boot=0)):
        with pytest.raises(InputError):
            bootstrap_ci(values, **bad)
    with pytest.raises(InputError, match="NaN"):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="sample_dim"):
        bootstrap_ci(da, sample_dim="photo")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30), st.integers(0, 10_000))
def test_bootstrap_interval_brackets_the_mean(values, seed):
    from sciexplain.evaluate import bootstrap_ci
    est, lo, hi = bootstrap_ci(np.asarray(values), n_boot=200, seed=seed)
    tol = 1e-9 * (1 + abs(est))
    assert min(values) - tol <= lo <= hi <= max(values) + tol
    assert lo - tol <= est or math.isclose(lo, est, abs_tol=1e-6 * (1 + abs(est)))


def test_compare_is_a_tidy_table_of_the_plain_metrics():
    from sciexplain.evaluate import COMPARE_METRICS, bootstrap_ci, compare
    model, x = make_cnn(batch=4)
    R_lrp = sx.explain(model, x)
    R_grad = sx.explain(model, x, method="gradient_x_input")
    seeds = [0, 5]
    kw = dict(steps=5, patch=(2, 2), removal="uniform")
    ds = compare(model, x, {"lrp": R_lrp, "gxi": R_grad, "random": None}, seeds=seeds, n_boot=300, **kw)
    assert list(ds.method.values) == ["lrp", "gxi", "random"]
    assert list(ds.metric.values) == list(COMPARE_METRICS) == ["aopc_morf", "aopc_lerf", "abpc"]
    assert ds["estimate"].dims == ("method", "metric")
    assert ds["curve"].dims == ("method", "order", "seed", "sample", "step")
    # each number is the plain formula on the curves of perturbation_curve itself
    morf = perturbation_curve(model, x, R_lrp, order="morf", seed=seeds, **kw)
    lerf = perturbation_curve(model, x, R_lrp, order="lerf", seed=seeds, **kw)
    np.testing.assert_array_equal(ds["curve"].sel({"method": "lrp", "order": "morf"}).values, morf.values)
    per_sample = {"aopc_morf": aopc(morf).mean("seed"), "aopc_lerf": aopc(lerf).mean("seed"),
                  "abpc": abpc(morf, lerf).mean("seed")}
    for metric, want in per_sample.items():
        np.testing.assert_allclose(ds["score"].sel({"method": "lrp", "metric": metric}).values, want.values)
        est, lo, hi = bootstrap_ci(want.values, n_boot=300, seed=0)
        got = [float(ds[v].sel({"method": "lrp", "metric": metric})) for v in ("estimate", "ci_low", "ci_high")]
        assert got == pytest.approx([est, lo, hi])
    # the random order: two independent random orders of the same 2x2 patches (all colours at once)
    rnd = ds["curve"].sel({"method": "random"})
    want_morf = perturbation_curve(model, x, xr.zeros_like(R_lrp), order="random", seed=seeds, **kw)
    np.testing.assert_array_equal(rnd.sel(order="morf").values, want_morf.values)
    assert not np.array_equal(rnd.sel(order="morf").values, rnd.sel(order="lerf").values)
    assert ds.attrs["n_regions"] == 3 * 16  # 2x2 patches of 8x8, per colour channel (R keeps colour)
    frame = ds[["estimate", "ci_low", "ci_high"]].to_dataframe()
    assert len(frame) == 9 and (frame["ci_low"] <= frame["ci_high"]).all()
    assert ((frame["ci_low"] <= frame["estimate"] + 1e-12) & (frame["estimate"] <= frame["ci_high"] + 1e-12)).all()


def test_compare_errors():
    from sciexplain.evaluate import compare
    model, x = make_cnn(batch=3)
    R = sx.explain(model, x)
    other = sx.explain(model, x, target=(R.target.values + 1) % 4)
    with pytest.raises(InputError, match="other targets"):
        compare(model, x, {"a": R, "b": other}, steps=2, patch=(2, 2))
    with pytest.raises(InputError, match="non-empty mapping"):
        compare(model, x, {}, steps=2)
    with pytest.raises(InputError, match="distinct"):
        compare(model, x, {"a": R}, steps=2, seeds=[1, 1])
    with pytest.raises(InputError, match="level"):
        compare(model, x, {"a": R}, steps=2, level=95)


def test_any_callable_model_is_accepted():
    """A non-module pipeline (numpy in the middle, as a Fisher-vector pipeline has) works like the module."""
    model, x = linear_model()
    R = sx.explain(model, x)
    w = model.weight.detach().double().numpy()[0]
    b = float(model.bias.detach())

    def pipeline(xb):  # returns a numpy array of shape (batch,)
        return np.asarray(xb, dtype=np.float64) @ w + b

    ref = perturbation_curve(model, x, R, removal="zero")
    got = perturbation_curve(pipeline, x, R, removal="zero")
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-6, atol=1e-6)
    got_t = perturbation_curve(lambda xb: model(xb), x, R, removal="zero", steps=4)
    np.testing.assert_allclose(got_t.values, ref.values[:, :5], rtol=1e-6)
    from sciexplain.evaluate import compare
    ds = compare(pipeline, x, {"lrp": R, "random": None}, steps=6, removal="zero", n_boot=50)
    assert float(ds["estimate"].sel({"method": "lrp", "metric": "abpc"})) > float(
        ds["estimate"].sel({"method": "random", "metric": "abpc"}))
    with pytest.raises(InputError, match="callable"):
        perturbation_curve(42, x, R, removal="zero")
    with pytest.raises(InputError, match="returned"):
        perturbation_curve(lambda xb: [1.0] * len(xb), x, R, removal="zero", steps=2)
