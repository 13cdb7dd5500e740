"""ClArC options (issue 23): per-sample artifact masks and a caller's explain in clarc_report, a seeded
A-ClArC fit that leaves the global RNG alone, no autograd below the layer, several directions at once."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hs
from torch import nn

import sciexplain as sx
from sciexplain.analysis import clarc, clarc_report
from sciexplain.errors import InputError
from shortcut_data import SIZE, make_images, tag_mask, trained_model


@pytest.fixture(scope="module")
def setup():
    model, x, y, tagged = trained_model()
    direction = sx.artifact_direction(model, "features", x[tagged], x[(y == 0) & ~tagged])
    y_test = np.repeat(np.arange(3), 30)
    x_clean = make_images(y_test, np.zeros(len(y_test), bool), seed=1)
    other = y_test != 0
    x_tag = make_images(y_test[other], np.ones(other.sum(), bool), seed=2)
    return model, x, y, tagged, direction, (x_clean, y_test), (x_tag, y_test[other])


# -- clarc_report: per-sample masks, the caller's explain ------------------------------------------


def _reference_share(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """sum_mask |R| / sum |R| per sample, by a plain loop."""
    out = []
    for v, m in zip(values, masks):
        total = np.abs(v).sum()
        out.append(np.abs(v[m]).sum() / total if total > 0 else 0.0)
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(n=hs.integers(1, 4), h=hs.integers(1, 5), w=hs.integers(1, 5), seed=hs.integers(0, 2 ** 16))
def test_relevance_share_per_sample_masks(n, h, w, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, h, w))
    values[rng.random(values.shape) < 0.2] = 0.0
    masks = rng.random((n, h, w)) < 0.4
    R = xr.DataArray(values, dims=("image", "y", "x"), coords={"image": np.arange(n) + 10})
    expected = _reference_share(values, masks)
    np.testing.assert_allclose(clarc_report.relevance_share(R, masks), expected, rtol=1e-12, atol=1e-15)
    # a DataArray is aligned by dim name, whatever its order; a callable is given the result
    M = xr.DataArray(masks.transpose(2, 0, 1), dims=("x", "image", "y"), coords={"image": R.image.values})
    np.testing.assert_allclose(clarc_report.relevance_share(R, M), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(clarc_report.relevance_share(R, lambda r: masks), expected, rtol=1e-12, atol=1e-15)
    # a per-sample DataArray without some dims broadcasts over them (here: whole rows per sample)
    rows = rng.random((n, h)) < 0.5
    Mr = xr.DataArray(rows, dims=("image", "y"))
    np.testing.assert_allclose(clarc_report.relevance_share(R, Mr), _reference_share(values, np.repeat(rows[:, :, None], w, 2)),
                               rtol=1e-12, atol=1e-15)
    # one mask for all samples, as before
    np.testing.assert_allclose(clarc_report.relevance_share(R, masks[0]), _reference_share(values, np.repeat(masks[:1], n, 0)),
                               rtol=1e-12, atol=1e-15)


def test_mask_errors():
    R = xr.DataArray(np.ones((2, 3, 4)), dims=("image", "y", "x"), coords={"image": [0, 1]})
    with pytest.raises(InputError, match="fits neither"):
        clarc_report.relevance_share(R, np.ones((3, 3, 4), bool))
    with pytest.raises(InputError, match="lacks"):
        clarc_report.relevance_share(R, xr.DataArray(np.ones((2, 5), bool), dims=("image", "token")))
    with pytest.raises(InputError, match="coords"):
        clarc_report.relevance_share(R, xr.DataArray(np.ones(2, bool), dims=("image",), coords={"image": [5, 6]}))
    with pytest.raises(InputError, match="boolean"):
        clarc_report.relevance_share(R, np.array(["a", "b", "c", "d"]))


def test_report_takes_per_sample_masks_and_the_callers_explain(setup):
    model, *_, (x_clean, y_clean), (x_tag, y_tag) = setup
    fixed = sx.PClArC(model, "features", setup[4])
    models = {"original": model, "P-ClArC": fixed}
    old = sx.clarc_report(models, x_clean, y_clean, x_tag, y_tag, tag_mask())
    # the same tag as one mask per sample, and found in each result by a callable: the same report
    per_sample = np.repeat(tag_mask()[None], len(x_tag), 0)
    for mask in (per_sample, lambda R: np.broadcast_to(tag_mask(), R.shape)):
        new = sx.clarc_report(models, x_clean, y_clean, x_tag, y_tag, mask)
        xr.testing.assert_allclose(new, old)
    shares = old.artifact_share_per_sample.values
    assert old.artifact_share_per_sample.dims == ("model", "sample")
    np.testing.assert_allclose(shares.mean(1), old.artifact_share.values, rtol=1e-12)

    # the tag moved to a different corner in every sample: a per-sample mask follows it
    rng = np.random.default_rng(5)
    corners = rng.integers(0, 4, len(x_tag))
    x_moved, masks = x_tag.copy(), np.zeros(x_tag.shape, bool)
    for i, c in enumerate(corners):
        ys, xs = (slice(0, 3) if c < 2 else slice(SIZE - 3, SIZE)), (slice(0, 3) if c % 2 == 0 else slice(SIZE - 3, SIZE))
        x_moved[i, 0, 0:3, 0:3] = make_images(np.array([y_tag[i]]), np.array([False]), seed=100 + i)[0, 0, 0:3, 0:3]
        x_moved[i, 0, ys, xs] = 1.0
        masks[i, 0, ys, xs] = True

    def explain(m, data):  # the caller's labelled explanation: image dims with pixel coordinates
        R = sx.explain(m, torch.from_numpy(data), 0, dims=("image", "color", "y", "x"),
                       coords={"y": np.arange(SIZE) + 0.5, "x": np.arange(SIZE) + 0.5})
        R.relevance.check()  # the ledger balances for the original and the corrected model
        return R.isel(color=0, drop=True)

    mask_da = xr.DataArray(masks[:, 0].transpose(0, 2, 1), dims=("image", "x", "y"),
                           coords={"x": np.arange(SIZE) + 0.5, "y": np.arange(SIZE) + 0.5})
    rep = sx.clarc_report(models, x_clean, y_clean, x_moved, y_tag, mask_da, explain=explain)
    assert rep.artifact_share_per_sample.dims == ("model", "image")
    for j, m in enumerate(models.values()):
        R = sx.explain(m, torch.from_numpy(x_moved), 0)
        np.testing.assert_allclose(rep.artifact_share_per_sample.values[j], _reference_share(R.values, masks),
                                   rtol=1e-6, atol=1e-9)
    with pytest.raises(InputError, match="inside it"):
        sx.clarc_report(models, x_clean, y_clean, x_tag, y_tag, tag_mask(), explain=explain, explain_target=0)


# -- AClArC.fit: seeded, no autograd below the layer -----------------------------------------------


class DropoutCNN(nn.Module):
    """Batch norm and dropout below "features", dropout above: what a seeded, frozen-below fit must handle."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                                      nn.AvgPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.fixture(scope="module")
def dropout_case():
    torch.manual_seed(3)
    model = DropoutCNN().eval()
    with torch.no_grad():  # batch-norm statistics that are not the defaults, so a change shows
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    _, x, y, tagged = trained_model()
    x, y, tagged = x[::3], y[::3], tagged[::3]
    direction = sx.artifact_direction(model, "features", x[tagged], x[(y == 0) & ~tagged])
    return model, x, y, direction


def _fit(model, direction, x, y, seed, **kw):
    return sx.AClArC(model, "features", direction).fit(x, y, epochs=2, lr=1e-2, batch_size=32, seed=seed, **kw)


def test_fit_is_reproducible_and_leaves_the_global_rng_alone(dropout_case):
    model, x, y, direction = dropout_case
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = _fit(model, direction, x, y, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is where it was
    torch.manual_seed(2)  # another global state: the fit does not read it
    b = _fit(model, direction, x, y, seed=7)
    c = _fit(model, direction, x, y, seed=8)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    # the seed matters (dropout and batch order), so the equality above is not vacuous
    assert not torch.equal(a.model.classifier[4].weight, c.model.classifier[4].weight)


def _reference_fit(model, direction, x, y, seed, epochs=2, lr=1e-2, batch_size=32):
    """A-ClArC written out: full autograd, layers below in eval mode, torch.manual_seed(seed) for the dropout."""
    ref = copy.deepcopy(model)
    ref.features = nn.Sequential(ref.features, clarc.ArtifactProjection(direction.vector, direction.artifact_value))
    params = list(ref.classifier.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.as_tensor(y, dtype=torch.long)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref.train()
        ref.features.eval()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                opt.zero_grad()
                nn.functional.cross_entropy(ref(xt[idx]), yt[idx]).backward()
                opt.step()
    return ref


def test_fit_differentiates_only_the_layers_above(dropout_case):
    model, x, y, direction = dropout_case
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fitted = _fit(model, direction, x, y, seed=4)
    # no parameter below got a gradient; every one above did
    assert all(p.grad is None for p in fitted.model.features.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fitted.model.classifier.parameters())
    # the layers below are untouched, batch-norm statistics included (they ran in eval mode)
    for k, v in fitted.model.features.state_dict().items():
        assert torch.equal(v, before["features." + k]), k
    # the same weights as the fit written out with full autograd, to rounding
    ref = _reference_fit(model, direction, x, y, seed=4)
    for k, v in fitted.model.classifier.state_dict().items():
        torch.testing.assert_close(v, ref.classifier.state_dict()[k], atol=1e-5, rtol=1e-5)
    assert not torch.equal(fitted.model.classifier[4].weight, before["classifier.4.weight"])
    for k, v in model.state_dict().items():  # the user's model
        assert torch.equal(v, before[k])
    assert torch.is_grad_enabled()
    R = sx.explain(fitted, torch.from_numpy(x[:6]), 0)
    np.testing.assert_allclose(R.relevance.residual().values, 0.0, atol=1e-4)


def test_fit_needs_the_layer_in_the_forward():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(3, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            return torch.zeros(len(x), 2) + 0 * x.sum()

    d = clarc.ArtifactDirection("unused", torch.tensor([1.0, 0, 0]), 1.0, 0.0, "mean-difference")
    with pytest.raises(InputError, match="does not depend"):
        sx.AClArC(Skips(), None, d).fit(np.zeros((4, 3), np.float32), [0, 1, 0, 1])


# -- several directions ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(k=hs.integers(1, 4), d=hs.integers(5, 12), seed=hs.integers(0, 2 ** 16))
def test_projection_onto_a_span_is_the_formula(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(k, d, generator=g, dtype=torch.float64) * torch.rand(k, 1, generator=g, dtype=torch.float64).add(0.2)
    refs = (torch.randn(k, generator=g, dtype=torch.float64) * 3).tolist()
    proj = clarc.ArtifactProjection(raw.float(), refs)
    # independent reference: an orthonormal basis by SVD, z the least-norm solution of u_i^T z = r_i
    U = (raw.float().double() / raw.float().double().norm(dim=1, keepdim=True)).numpy()  # (k, d) unit rows
    basis = np.linalg.svd(U.T, full_matrices=False)[0]
    z = np.linalg.lstsq(U, np.array(refs), rcond=None)[0]
    a = torch.randn(7, d, generator=g, dtype=torch.float64).numpy() * 2
    expected = a - (a - z) @ basis @ basis.T  # h(a) = a - V V^T (a - z)
    out = proj(torch.from_numpy(a).float()).double().numpy()
    np.testing.assert_allclose(out, expected, atol=2e-5 * (1 + np.abs(expected).max()))
    # each direction reads its reference; what is orthogonal to the span is unchanged
    np.testing.assert_allclose(out @ U.T, np.tile(refs, (7, 1)), atol=1e-4 * (1 + np.abs(a).max()))
    np.testing.assert_allclose(proj.basis.numpy().T @ proj.basis.numpy(), np.eye(k), atol=1e-12)


def test_one_direction_is_exactly_the_single_direction_projection(setup):
    model, x, y, tagged, direction, *_ = setup
    v = direction.vector.reshape(-1).double()
    v = v / torch.linalg.vector_norm(v)
    weight = (torch.eye(v.numel(), dtype=torch.float64) - torch.outer(v, v)).float()  # the single-direction model
    bias = (direction.clean_value * v).float()
    variants = [sx.PClArC(model, "features", direction), sx.PClArC(model, None, [direction]),
                sx.PClArC(model, "features", direction.vector[None], reference=[direction.clean_value]),
                sx.PClArC(model, "features", direction.vector, reference=direction.clean_value)]
    for p in variants:
        assert torch.equal(p.projection[1].weight, weight) and torch.equal(p.projection[1].bias, bias)
    xt = torch.from_numpy(x[:16])
    assert torch.equal(variants[0](xt), variants[1](xt))
    a1 = sx.AClArC(model, "features", direction).fit(x[::6], y[::6], epochs=1, seed=3)
    a2 = sx.AClArC(model, "features", [direction]).fit(x[::6], y[::6], epochs=1, seed=3)
    for k, t in a1.model.state_dict().items():
        assert torch.equal(t, a2.model.state_dict()[k])


def test_two_artifacts_projected_together_with_a_balanced_ledger(setup):
    model, x, y, tagged, direction, (x_clean, y_clean), _ = setup
    # a second artifact: a bright bar along the top edge, pasted onto clean images (it overlaps the tag)
    x_bar = x_clean.copy()
    x_bar[:, 0, :2, :] = 1.0
    second = sx.artifact_direction(model, "features", x_bar, x_clean)
    both = sx.PClArC(model, "features", [direction, second])
    nested = sx.PClArC(sx.PClArC(model, "features", direction), "model.features.0", second.vector,
                       reference=second.clean_value)
    xt = torch.from_numpy(np.concatenate([x_bar[:20], x[tagged][:20]]))
    acts = clarc.layer_activations(both, "model.features", xt).reshape(len(xt), -1).double()
    for dvec, r in ((direction, direction.clean_value), (second, second.clean_value)):
        u = dvec.vector.reshape(-1).double()
        np.testing.assert_allclose((acts @ (u / u.norm())).numpy(), r, atol=1e-3 * (1 + abs(r)))
    # not nested projections: the later one moves the earlier direction's component again (the two
    # directions are far from orthogonal here)
    a_nested = clarc.layer_activations(nested, "model.model.features", xt).reshape(len(xt), -1).double()
    u2 = second.vector.reshape(-1).double()
    assert abs(float(direction.vector.reshape(-1).double() @ u2)) > 0.1
    assert np.abs((a_nested @ u2).numpy() - second.clean_value).max() > 1e-2 * (1 + abs(second.clean_value))
    R = sx.explain(both, xt, 0)
    np.testing.assert_allclose(R.relevance.residual().values, 0.0, atol=1e-4)
    np.testing.assert_allclose(R.prediction.values, both(xt)[:, 0].detach().numpy(), rtol=1e-5, atol=1e-5)
    tuned = sx.AClArC(model, None, [direction, second]).fit(x[::4], y[::4], epochs=1, seed=0)
    R = sx.explain(tuned, xt, 0)
    np.testing.assert_allclose(R.relevance.residual().values, 0.0, atol=1e-4)


def test_several_directions_errors(setup):
    model, x, y, tagged, direction, *_ = setup
    with pytest.raises(InputError, match="span of the ones before"):
        sx.PClArC(model, None, [direction, direction])
    other = clarc.ArtifactDirection("classifier.1", torch.ones(32), 1.0, 0.0, "mean-difference")
    with pytest.raises(InputError, match="different layers"):
        sx.PClArC(model, None, [direction, other])
    with pytest.raises(InputError, match="references"):
        sx.PClArC(model, None, [direction], reference=[0.0, 1.0])
    with pytest.raises(InputError, match="stacked"):
        sx.PClArC(model, "features", direction.vector, reference=[0.0, 1.0])
    with pytest.raises(InputError, match="zero"):
        clarc.ArtifactProjection(torch.zeros(2, 4), [0.0, 0.0])
