"""Activation maximization with an l2 penalty, density experts and a decoder (Montavon et al. 2017, Sec. 3)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

from sciexplain.errors import InputError  # noqa: E402
from sciexplain.analysis.prototypes import (Decoder, GaussianExpert, GaussianMixtureExpert,  # noqa: E402
                                   activation_maximization)

try:
    from conftest import assert_state_equal, state_copy  # noqa: E402
except ImportError:  # pytest --import-mode=importlib does not put tests/ on sys.path
    import sys as _sys
    from pathlib import Path as _Path
    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from conftest import assert_state_equal, state_copy  # noqa: E402

CLASSES = [0, 3, 7]


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """Tiny matrices: one BLAS thread is much faster than several (no hand-off), also on a busy machine."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits in [0, 1] and a small MLP trained on them in the test."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    acc = float((model(Xt).argmax(1) == yt).float().mean())
    assert acc > 0.95
    return model, X, y


@pytest.fixture(scope="module")
def judge(digits):
    """An independent density of the data (not used by any prototype): diagonal mixture of 6."""
    _, X, _ = digits
    return GaussianMixture(6, covariance_type="diag", reg_covar=1e-2, random_state=1).fit(X)


def test_l2_prototype_raises_class_probability(digits):
    model, X, _ = digits
    before = state_copy(model)
    flags = [p.requires_grad for p in model.parameters()]
    proto, trace = activation_maximization(model, CLASSES, shape=(64,), mean=X.mean(0), lam=0.05,
                                           steps=150, lr=0.05)
    assert proto.dims == ("prototype", "dim_0") and proto.shape == (3, 64)
    np.testing.assert_array_equal(proto["target"].values, CLASSES)
    assert set(trace.data_vars) == {"objective", "log_p_class", "regularizer", "locality"}
    assert trace.sizes["step"] == 151
    lp = trace["log_p_class"].values
    assert (lp[-1] > lp[0]).all() and (np.exp(lp[-1]) > 0.9).all()
    assert (trace["objective"].values[-1] > trace["objective"].values[0]).all()
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(proto.values)), 1)[torch.arange(3), torch.tensor(CLASSES)]
    np.testing.assert_allclose(proto["probability"].values, p.numpy(), rtol=1e-4)
    # the regularizer recorded is -||x - mean||^2
    np.testing.assert_allclose(trace["regularizer"].values[-1],
                               -((proto.values - X.mean(0)) ** 2).sum(1), rtol=1e-4)
    assert_state_equal(model, before)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_deterministic_with_seed(digits):
    model, X, _ = digits
    kw = dict(shape=(64,), lam=0.05, steps=20)
    a, ta = activation_maximization(model, 5, seed=3, **kw)
    b, tb = activation_maximization(model, 5, seed=3, **kw)
    c, _ = activation_maximization(model, 5, seed=4, **kw)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(ta["objective"].values, tb["objective"].values)
    assert not np.array_equal(a.values, c.values)


def test_experts_match_sklearn_densities(digits):
    _, X, _ = digits
    g = GaussianExpert.fit(X[:600])
    ref = GaussianMixture(1, covariance_type="full", reg_covar=1e-3, random_state=0).fit(X[:600])
    np.testing.assert_allclose(g(torch.from_numpy(X[600:640])).numpy(), ref.score_samples(X[600:640]),
                               rtol=1e-4, atol=1e-3)
    gm = GaussianMixtureExpert.fit(X[:600], 3, max_iter=50)
    ref3 = GaussianMixture(3, covariance_type="full", reg_covar=1e-3, random_state=0, max_iter=50).fit(X[:600])
    np.testing.assert_allclose(gm(torch.from_numpy(X[600:640])).numpy(), ref3.score_samples(X[600:640]),
                               rtol=1e-4, atol=1e-3)
    x = torch.from_numpy(X[:2]).requires_grad_(True)
    gm(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(InputError, match="not fitted"):
        GaussianExpert()(x)
    with pytest.raises(InputError, match="64 features"):
        g(torch.zeros(1, 10))


@pytest.mark.parametrize("expert_kind", ["gaussian", "mixture"])
def test_expert_keeps_prototype_near_the_data(digits, judge, expert_kind):
    model, X, _ = digits
    expert = GaussianExpert.fit(X) if expert_kind == "gaussian" else GaussianMixtureExpert.fit(X, 3, max_iter=50)
    plain, _ = activation_maximization(model, CLASSES, shape=(64,), mean=X.mean(0), lam=0.01, steps=150)
    reg, trace = activation_maximization(model, CLASSES, shape=(64,), regularizer=expert, lam=0.05, steps=150)
    assert (reg["probability"].values > 0.5).all()
    assert (trace["log_p_class"].values[-1] > trace["log_p_class"].values[0] - 1e-6).all()
    # judged by a density the search never saw, and by the distance to the nearest real digit
    assert (judge.score_samples(reg.values) > judge.score_samples(plain.values)).all()
    nearest = lambda P: np.sqrt(((P[:, None] - X[None]) ** 2).sum(-1)).min(1)  # noqa: E731
    assert nearest(reg.values).mean() < nearest(plain.values).mean()
    assert "Gaussian" in reg.attrs["regularizer"]


def test_decoder_searches_code_space(digits):
    model, X, _ = digits
    pca = PCA(12, random_state=0).fit(X)
    dec = nn.Linear(12, 64)
    with torch.no_grad():
        dec.weight.copy_(torch.from_numpy((pca.components_.T * np.sqrt(pca.explained_variance_)).astype(np.float32)))
        dec.bias.copy_(torch.from_numpy(pca.mean_.astype(np.float32)))
    dec.eval()
    proto, trace = activation_maximization(model, CLASSES, shape=(64,), regularizer=Decoder(dec, 12), lam=0.05,
                                           steps=150, lr=0.05)
    assert trace["code"].shape == (3, 12)
    lp = trace["log_p_class"].values
    assert (lp[-1] > lp[0]).all() and (proto["probability"].values > 0.5).all()
    with torch.no_grad():
        np.testing.assert_allclose(proto.values, dec(torch.from_numpy(trace["code"].values.astype(np.float32))).numpy(),
                                   rtol=1e-5, atol=1e-6)
    # the prototype lies in the decoder's 12-dim subspace around the data mean
    resid = (proto.values - pca.mean_) - pca.inverse_transform(pca.transform(proto.values)) + pca.mean_
    assert np.abs(resid).max() < 1e-4
    np.testing.assert_allclose(trace["regularizer"].values[-1], -(trace["code"].values ** 2).sum(1), rtol=1e-4)


def test_locality_term_pulls_towards_x0(digits):
    model, X, y = digits
    x0 = X[np.flatnonzero(y == 3)[0]]
    far, _ = activation_maximization(model, 3, shape=(64,), lam=0.01, steps=100)
    near, tr = activation_maximization(model, 3, shape=(64,), lam=0.01, eta=1.0, x0=x0, steps=100)
    d = lambda P: np.sqrt(((P.values[0] - x0) ** 2).sum())  # noqa: E731
    assert d(near) < 0.5 * d(far)
    np.testing.assert_allclose(tr["locality"].values[-1], d(near) ** 2, rtol=1e-4)


def test_errors(digits, monkeypatch):
    model, X, _ = digits
    with pytest.raises(InputError, match="unknown regularizer"):
        activation_maximization(model, 0, shape=(64,), regularizer="l1")
    with pytest.raises(InputError, match="x0"):
        activation_maximization(model, 0, shape=(64,), eta=1.0)
    with pytest.raises(InputError, match="out of range"):
        activation_maximization(model, 12, shape=(64,), steps=2)
    with pytest.raises(InputError, match="features"):
        activation_maximization(model, 0, shape=(64,), regularizer=GaussianExpert.fit(X[:100, :10]))
    with pytest.raises(InputError, match="does not fit"):
        activation_maximization(model, 0, shape=(64,), init=torch.zeros(3))
    monkeypatch.setitem(sys.modules, "sklearn.mixture", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        GaussianExpert.fit(X)
