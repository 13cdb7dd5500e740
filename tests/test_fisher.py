"""Fisher-vector models: the torch encoder against scikit-image, scikit-learn linear classifiers
as nn.Linear, and LRP through the encoding against an independent reference written here from
the equations of Lapuschkin et al. 2016 (numpy loops over descriptors and dimensions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.kinds.units import fisher
from sciexplain.errors import InputError, InputTypeError, RuleError, SciexplainError, UnsupportedModelError
from sciexplain.kinds.units.fisher import FisherVector, fisher_lrp, linear_from_sklearn

skimage_feature = pytest.importorskip("skimage.feature")
mixture = pytest.importorskip("sklearn.mixture")
from sklearn.linear_model import LogisticRegression, SGDClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC, LinearSVC  # noqa: E402

from conftest import assert_state_equal, state_copy  # noqa: E402

F64 = torch.float64


# -- helpers -----------------------------------------------------------------------------------

def make_gmm(weights, means, variances) -> mixture.GaussianMixture:
    """A GaussianMixture with given diagonal parameters, usable by predict_proba and scikit-image."""
    g = mixture.GaussianMixture(len(weights), covariance_type="diag")
    g.weights_ = np.asarray(weights, dtype=np.float64)
    g.means_ = np.asarray(means, dtype=np.float64)
    g.covariances_ = np.asarray(variances, dtype=np.float64)
    g.precisions_cholesky_ = 1.0 / np.sqrt(g.covariances_)
    g.precisions_ = 1.0 / g.covariances_
    g.converged_, g.n_iter_, g.lower_bound_ = True, 1, 0.0
    return g


def random_gmm(rng: np.random.Generator, K: int, D: int) -> mixture.GaussianMixture:
    w = rng.uniform(0.2, 1.0, K)
    return make_gmm(w / w.sum(), rng.normal(0, 1.5, (K, D)), rng.uniform(0.3, 2.0, (K, D)))


def fv_model(*layers: nn.Module) -> nn.Sequential:
    """The Fisher-vector classifier, in eval mode (sx.explain warns about training mode)."""
    return nn.Sequential(*layers).eval()


def sign0(v: float) -> float:
    return 1.0 if v >= 0 else -1.0


def reference_descriptor_terms(X: np.ndarray, gmm) -> np.ndarray:
    """phi[n, j]: descriptor n's term of Fisher-vector dim j (layout of scikit-image), by loops."""
    N, D = X.shape
    K = len(gmm.weights_)
    gamma = gmm.predict_proba(X)
    pi, mu, var = gmm.weights_, gmm.means_, gmm.covariances_
    phi = np.zeros((N, K + 2 * K * D))
    for n in range(N):
        for k in range(K):
            phi[n, k] = (gamma[n, k] - pi[k]) / math.sqrt(pi[k])
            for d in range(D):
                c = X[n, d] - mu[k, d]
                phi[n, K + k * D + d] = gamma[n, k] * c / (math.sqrt(pi[k]) * math.sqrt(var[k, d]))
                phi[n, K + K * D + k * D + d] = (gamma[n, k] * (var[k, d] - c * c)
                                                 / (math.sqrt(2) * math.sqrt(pi[k]) * var[k, d]))
    return phi


def reference_fisher_lrp(X: np.ndarray, gmm, R_fv: np.ndarray, eps: float):
    """R[n, d] and the stabiliser's absorbed relevance from the paper's rule, by loops.

    R_nj = z_nj / (u_j + eps sign(u_j)) R_j with z_nj = phi_j(x_n) / N and u_j = sum_n z_nj; the
    normalisations pass R_j unchanged; d_mu[k, d], d_sigma[k, d] go to dim d, d_pi[k] is split
    evenly over the D dims."""
    N, D = X.shape
    K = len(gmm.weights_)
    z = reference_descriptor_terms(X, gmm) / N
    u = z.sum(0)
    R = np.zeros((N, D))
    absorbed = 0.0
    for j in range(z.shape[1]):
        den = u[j] + eps * sign0(u[j])
        absorbed += eps * sign0(u[j]) / den * R_fv[j]
        for n in range(N):
            share = z[n, j] / den * R_fv[j]
            if j < K:
                for d in range(D):
                    R[n, d] += share / D
            else:
                R[n, (j - K) % (K * D) % D] += share
    return R, absorbed


def reference_model_lrp(X: np.ndarray, gmm, w: np.ndarray, b: float, improved: bool, alpha: float,
                        eps_linear: float, eps_fv: float):
    """The whole Fisher-vector + linear model: (R per descriptor and dim, total absorbed, f)."""
    y = skimage_feature.fisher_vector(X, gmm, improved=improved, alpha=alpha)
    f = float(w @ y + b)
    den = f + eps_linear * sign0(f)
    R_fv = y * w * f / den  # epsilon rule on the linear layer, with R = f entering
    absorbed_linear = (b + eps_linear * sign0(f)) * f / den
    R, absorbed_fv = reference_fisher_lrp(X, gmm, R_fv, eps_fv)
    return R, absorbed_linear + absorbed_fv, f


@pytest.fixture(scope="module")
def fitted():
    """A GMM fitted on real-valued descriptors, a LinearSVC on their Fisher vectors."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2, (3, 4))
    pool = np.concatenate([c + rng.normal(0, 0.7, (300, 4)) for c in centers])
    gmm = mixture.GaussianMixture(3, covariance_type="diag", random_state=0).fit(pool)
    sets = rng.normal(0, 2, (40, 6, 4))
    labels = (sets[:, :, 0].mean(1) > 0).astype(int)
    sets[labels == 1, :, 1] += 1.0
    fv = FisherVector.from_gmm(gmm, dtype=F64)
    F = fv(torch.tensor(sets)).numpy()
    svm = LinearSVC(C=1.0, random_state=0).fit(F, labels)
    return gmm, svm, sets


# -- the encoder against scikit-image ----------------------------------------------------------

@pytest.mark.parametrize("improved,alpha", [(False, 0.5), (True, 0.5), (True, 0.3), (True, 1.0)])
@pytest.mark.parametrize("dtype,x_dtype", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                           (None, torch.float32)], ids=["f64", "f32", "f64-compute-f32-io"])
def test_encoder_matches_skimage_entry_by_entry(fitted, improved, alpha, dtype, x_dtype):
    gmm, _, sets = fitted
    fv = FisherVector.from_gmm(gmm, improved=improved, alpha=alpha, dtype=dtype)
    y = fv(torch.tensor(sets, dtype=x_dtype))
    assert y.dtype == x_dtype
    out = y.double().numpy()
    ref = np.stack([skimage_feature.fisher_vector(s, gmm, improved=improved, alpha=alpha) for s in sets])
    assert out.shape == ref.shape == (len(sets), 3 + 2 * 3 * 4)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    if dtype == torch.float64:
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_float32_descriptors_on_real_digits_match_skimage():
    """18-dim digit-patch descriptors under a GMM with small variances: log densities in the
    thousands, whose float32 differences would shift posteriors by ~1e-4. With the default
    float64 computation, float32 descriptors still give scikit-image's values to 1e-5."""
    from sklearn.datasets import load_digits
    X = _digit_descriptors(load_digits().images[:200])
    gmm = mixture.GaussianMixture(8, covariance_type="diag", reg_covar=1e-3, random_state=0, max_iter=20, tol=1e-2)
    gmm.fit(X.reshape(-1, X.shape[2]))
    fv = FisherVector.from_gmm(gmm)
    out = fv(torch.tensor(X[:50], dtype=torch.float32)).double().numpy()
    ref = np.stack([skimage_feature.fisher_vector(s.astype(np.float32).astype(np.float64), gmm, improved=True)
                    for s in X[:50]])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_encoder_posteriors_and_layout(fitted):
    gmm, _, sets = fitted
    fv = FisherVector.from_gmm(gmm, improved=False, dtype=F64)
    x = torch.tensor(sets)
    np.testing.assert_allclose(fv.posteriors(x).numpy().reshape(-1, 3),
                               gmm.predict_proba(sets.reshape(-1, 4)), atol=1e-12)
    # the un-normalised Fisher vector is the mean over descriptors of the loop reference's terms
    phi = reference_descriptor_terms(sets[0], gmm)
    np.testing.assert_allclose(fv.unnormalized(x[:1])[0].numpy(), phi.mean(0), atol=1e-12)
    names = fv.feature_names()
    assert names[:3] == ["pi[0]", "pi[1]", "pi[2]"] and names[3] == "mu[0,0]" and names[3 + 12] == "sigma[0,0]"
    assert len(names) == fv.out_features == 27
    assert (fv.n_components, fv.dim) == (3, 4)


def test_from_gmm_copies_and_leaves_the_gmm_alone(fitted):
    gmm, _, _ = fitted
    before = (gmm.weights_.copy(), gmm.means_.copy(), gmm.covariances_.copy())
    fv = FisherVector.from_gmm(gmm)
    with torch.no_grad():
        fv.means.add_(1.0)
    for a, b in zip(before, (gmm.weights_, gmm.means_, gmm.covariances_)):
        np.testing.assert_array_equal(a, b)
    assert fv.means.dtype == torch.float64  # computation in float64 unless asked otherwise
    assert fv(torch.zeros(1, 2, 4, dtype=torch.float32)).dtype == torch.float32


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(1, 4), D=st.integers(1, 4), N=st.integers(1, 6),
       improved=st.booleans(), alpha=st.floats(0.2, 1.0))
def test_encoder_and_lrp_on_random_mixtures(seed, K, D, N, improved, alpha):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D)
    X = rng.normal(0, 2, (N, D))
    fv = FisherVector.from_gmm(gmm, improved=improved, alpha=alpha, dtype=F64)
    x = torch.tensor(X)[None]
    y = fv(x)[0].numpy()
    np.testing.assert_allclose(y, skimage_feature.fisher_vector(X, gmm, improved=improved, alpha=alpha),
                               rtol=1e-8, atol=1e-10)
    R_fv = rng.normal(size=fv.out_features)
    R, absorbed = fisher_lrp(fv, x, torch.tensor(R_fv)[None], epsilon=1e-3)
    R_ref, absorbed_ref = reference_fisher_lrp(X, gmm, R_fv, 1e-3)
    np.testing.assert_allclose(R[0].numpy(), R_ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(float(absorbed[0]), absorbed_ref, rtol=1e-7, atol=1e-9)
    # conservation at the leaf: descriptors + stabiliser = what entered
    assert float(R.sum() + absorbed.sum()) == pytest.approx(R_fv.sum(), rel=1e-9, abs=1e-9)


# -- closed form -------------------------------------------------------------------------------

def test_closed_form_one_gaussian_two_descriptors():
    """K = 1, D = 1, mu = 0, v = 1, descriptors x = 1 and 3; weights w = (0.5, 1, 0.25), b = 0.

    gamma = 1, so d_pi = 0; d_mu = ((1 - 0) + (3 - 0)) / 2 = 2;
    d_sigma = ((1 - 1) + (1 - 9)) / (2 sqrt 2) = -2 sqrt 2. Un-normalised: f = 2 - sqrt(2) / 2.
    R(d_mu) = 2 splits 1:3 over the descriptors (their terms 1/2 and 3/2): 0.5 and 1.5;
    R(d_sigma) = -sqrt(2)/2 goes wholly to x = 3 (x = 1 has (x - mu)^2 = v, term 0).
    Improved (alpha 1/2): p = (0, sqrt 2, -(2 sqrt 2)^(1/2)), y = p / ||p||, R(y_j) = w_j y_j
    reaches u_j unchanged and splits in the same proportions."""
    fv = FisherVector([1.0], [[0.0]], [[1.0]], improved=False, dtype=F64)
    lin = nn.Linear(3, 1, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, 1.0, 0.25]]))
        lin.bias.zero_()
    x = torch.tensor([[[1.0], [3.0]]], dtype=F64)
    np.testing.assert_allclose(fv(x)[0].numpy(), [0.0, 2.0, -2 * math.sqrt(2)], atol=1e-15)
    model = fv_model(fv, lin)
    R = sx.explain(model, x, preset={"0": sx.rules.Epsilon(1e-12), "1": sx.rules.Epsilon(1e-12)})
    f = 2 - math.sqrt(2) / 2
    assert float(R.prediction[0]) == pytest.approx(f, abs=1e-12)
    np.testing.assert_allclose(R.values[0, :, 0], [0.5, 1.5 - math.sqrt(2) / 2], atol=1e-9)
    R.relevance.check()

    fv_i = FisherVector([1.0], [[0.0]], [[1.0]], improved=True, alpha=0.5, dtype=F64)
    p = np.array([0.0, math.sqrt(2), -math.sqrt(2 * math.sqrt(2))])
    y = p / math.sqrt(2 + 2 * math.sqrt(2))
    R_i = sx.explain(fv_model(fv_i, lin), x, preset={"0": sx.rules.Epsilon(1e-12), "1": sx.rules.Epsilon(1e-12)})
    R_mu, R_sig = 1.0 * y[1], 0.25 * y[2]
    np.testing.assert_allclose(R_i.values[0, :, 0], [R_mu / 4, 3 * R_mu / 4 + R_sig], atol=1e-9)
    assert float(R_i.absorbed[0]) == pytest.approx(0.0, abs=1e-9)
    R_i.relevance.check()


# -- linear classifiers from scikit-learn ------------------------------------------------------

def _classification(n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 7))
    y = (X[:, :n_classes] + 0.3 * rng.normal(size=(120, n_classes))).argmax(1) if n_classes > 2 \
        else (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


@pytest.mark.parametrize("make", [lambda: LinearSVC(C=0.5), lambda: LogisticRegression(max_iter=500),
                                  lambda: SGDClassifier(random_state=0, max_iter=50, tol=None),
                                  lambda: LinearSVC(fit_intercept=False)],
                         ids=["LinearSVC", "LogisticRegression", "SGDClassifier", "LinearSVC-no-intercept"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_linear_from_sklearn_equals_decision_function(make, n_classes):
    X, y = _classification(n_classes)
    clf = make().fit(X, y)
    ref = clf.decision_function(X)
    layer = linear_from_sklearn(clf, dtype=F64)
    assert isinstance(layer, nn.Linear)
    out = layer(torch.tensor(X)).detach().numpy()
    if n_classes == 2:
        assert out.shape == (120, 1)
        np.testing.assert_allclose(out[:, 0], ref, rtol=1e-10, atol=1e-10)
        two = linear_from_sklearn(clf, binary="two", dtype=F64)(torch.tensor(X)).detach().numpy()
        np.testing.assert_allclose(two, np.stack([-ref, ref], 1), rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(clf.classes_[two.argmax(1)], clf.predict(X))
    else:
        assert out.shape == (120, n_classes)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(clf.classes_[out.argmax(1)], clf.predict(X))
    f32 = linear_from_sklearn(clf)(torch.tensor(X, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(f32.reshape(ref.shape[0], -1), ref.reshape(ref.shape[0], -1), rtol=1e-4, atol=1e-4)


def test_linear_from_sklearn_sparsified_coef():
    X, y = _classification(3)
    clf = LogisticRegression(max_iter=500).fit(X, y).sparsify()
    np.testing.assert_allclose(linear_from_sklearn(clf, dtype=F64)(torch.tensor(X)).detach().numpy(),
                               clf.decision_function(X), atol=1e-10)


def test_linear_from_sklearn_refuses_clearly():
    X, y = _classification(2)
    with pytest.raises(InputError, match="not fitted"):
        linear_from_sklearn(LinearSVC())
    with pytest.raises(UnsupportedModelError, match="one-vs-one"):
        linear_from_sklearn(SVC(kernel="linear").fit(X, y))
    with pytest.raises(UnsupportedModelError, match="Pipeline"):
        linear_from_sklearn(make_pipeline(StandardScaler(), LinearSVC()).fit(X, y))
    with pytest.raises(UnsupportedModelError, match="linear classifier"):
        linear_from_sklearn(object())
    with pytest.raises(InputError, match="binary"):
        linear_from_sklearn(LinearSVC().fit(X, y), binary="both")
    clf = LinearSVC().fit(X, y)
    clf.coef_ = clf.coef_.copy()
    clf.coef_[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        linear_from_sklearn(clf)
    assert issubclass(UnsupportedModelError, SciexplainError) and issubclass(InputError, ValueError)


# -- bad input to the encoder ------------------------------------------------------------------

def test_encoder_refuses_bad_mixtures(fitted):
    gmm, _, sets = fitted
    full = mixture.GaussianMixture(2, covariance_type="full", random_state=0).fit(sets.reshape(-1, 4))
    with pytest.raises(UnsupportedModelError, match="covariance_type='full'.*diag"):
        FisherVector.from_gmm(full)
    with pytest.raises(InputError, match="not fitted"):
        FisherVector.from_gmm(mixture.GaussianMixture(2, covariance_type="diag"))
    with pytest.raises(UnsupportedModelError, match="GaussianMixture"):
        FisherVector.from_gmm(object())
    with pytest.raises(InputError, match="alpha"):
        FisherVector.from_gmm(gmm, alpha=0.0)
    with pytest.raises(InputError, match="variances must be positive"):
        FisherVector([1.0], [[0.0]], [[0.0]])
    with pytest.raises(InputError, match="sum to 1"):
        FisherVector([0.5, 0.2], [[0.0], [1.0]], [[1.0], [1.0]])
    with pytest.raises(InputError, match="variances must have shape"):
        FisherVector([1.0], [[0.0, 0.0]], [[1.0]])


def test_encoder_refuses_bad_descriptors(fitted):
    gmm, svm, sets = fitted
    fv = FisherVector.from_gmm(gmm, dtype=F64)
    model = fv_model(fv, linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:2])
    before = x.clone()
    with pytest.raises(InputError, match="dim 3, but the Gaussian mixture was fitted on dim 4"):
        fv(x[:, :, :3])
    with pytest.raises(InputError, match="dim 3, but the Gaussian mixture"):
        sx.explain(model, x[:, :, :3])
    with pytest.raises(InputError, match=r"\(batch, n_descriptors, dim\)"):
        fv(x[0])
    with pytest.raises(InputError, match="empty descriptor set"):
        fv(x[:, :0])
    bad = x.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fv(bad)
    with pytest.raises(InputError, match="NaN"):
        sx.explain(model, bad)
    with pytest.raises(InputError):
        sx.explain(model, x[:, :0])
    with pytest.raises(InputTypeError, match="tensor"):
        fv(sets[:2])
    with pytest.raises(InputTypeError, match="dtype"):
        FisherVector.from_gmm(gmm, dtype=torch.int64)
    assert torch.equal(x, before)


# -- LRP through the model ---------------------------------------------------------------------

@pytest.mark.parametrize("improved", [False, True])
def test_explain_matches_independent_reference(fitted, improved):
    gmm, svm, sets = fitted
    fv = FisherVector.from_gmm(gmm, improved=improved, dtype=F64)
    lin = linear_from_sklearn(svm, dtype=F64)
    model = fv_model(fv, lin)
    before = state_copy(model)
    x = torch.tensor(sets[:8])
    R = sx.explain(model, x, preset={"1": sx.rules.Epsilon(1e-6)}, dims=("set", "descriptor", "feature"))
    assert R.dims == ("set", "descriptor", "feature") and R.shape == (8, 6, 4)
    R.relevance.check()
    assert_state_equal(model, before)
    w, b = svm.coef_[0], float(svm.intercept_[0])
    for i in range(8):
        R_ref, absorbed_ref, f = reference_model_lrp(sets[i], gmm, w, b, improved, 0.5, 1e-6,
                                                     fisher.DEFAULT_RULE.epsilon)
        assert float(R.prediction[i]) == pytest.approx(f, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(R.values[i], R_ref, rtol=1e-8, atol=1e-10)
        assert float(R.absorbed[i]) == pytest.approx(absorbed_ref, rel=1e-8, abs=1e-10)
    # pooling over descriptor dims gives one relevance per descriptor and keeps the ledger
    per_descriptor = R.relevance.pool("feature")
    assert per_descriptor.dims == ("set", "descriptor")
    per_descriptor.relevance.check()


def test_explain_float32_default_preset_balances(fitted):
    gmm, svm, sets = fitted
    model = fv_model(FisherVector.from_gmm(gmm), linear_from_sklearn(svm))
    x = torch.tensor(sets, dtype=torch.float32)
    R = sx.explain(model, x)
    R.relevance.check()
    assert np.isfinite(R.values).all()
    np.testing.assert_allclose(R.prediction.values, svm.decision_function(
        FisherVector.from_gmm(gmm, dtype=F64)(torch.tensor(sets)).numpy()), rtol=1e-4, atol=1e-4)
    assert "0 (FisherVector: Fisher vector (Lapuschkin et al. 2016)" in R.attrs["rules"]


def test_multiclass_target_and_rule_override_by_path_and_type(fitted):
    gmm, _, sets = fitted
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, len(sets))
    fv = FisherVector.from_gmm(gmm, improved=True, dtype=F64)
    F = fv(torch.tensor(sets)).numpy()
    clf = LogisticRegression(max_iter=1000).fit(F, labels)
    model = fv_model(fv, linear_from_sklearn(clf, dtype=F64))
    x = torch.tensor(sets[:4])
    for key in ("0", FisherVector):
        R = sx.explain(model, x, target=2, preset={"1": sx.rules.Epsilon(1e-6), key: sx.rules.Epsilon(0.05)})
        R.relevance.check()
        for i in range(4):
            R_ref, absorbed_ref, f = reference_model_lrp(sets[i], gmm, clf.coef_[2], float(clf.intercept_[2]),
                                                         True, 0.5, 1e-6, 0.05)
            assert float(R.prediction[i]) == pytest.approx(f, rel=1e-10)
            np.testing.assert_allclose(R.values[i], R_ref, rtol=1e-8, atol=1e-10)
            assert float(R.absorbed[i]) == pytest.approx(absorbed_ref, rel=1e-8, abs=1e-10)
    with pytest.raises(RuleError, match="FisherVector.*Epsilon"):
        sx.explain(model, x, preset={"1": sx.rules.Epsilon(1e-6), "0": sx.rules.ZPlus()})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(1, 3), D=st.integers(1, 3), N=st.integers(1, 5),
       B=st.integers(1, 3), improved=st.booleans())
def test_explain_random_mixtures_and_sets_against_reference(seed, K, D, N, B, improved):
    rng = np.random.default_rng(seed)
    gmm = random_gmm(rng, K, D)
    X = rng.normal(0, 2, (B, N, D))
    fv = FisherVector.from_gmm(gmm, improved=improved, dtype=F64)
    lin = nn.Linear(fv.out_features, 1, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(rng.normal(size=(1, fv.out_features))))
        lin.bias.fill_(float(rng.normal()))
    R = sx.explain(fv_model(fv, lin), torch.tensor(X), preset={"1": sx.rules.Epsilon(1e-6), "0": sx.rules.Epsilon(1e-4)})
    R.relevance.check()
    for i in range(B):
        R_ref, absorbed_ref, f = reference_model_lrp(X[i], gmm, lin.weight[0].detach().numpy(),
                                                     float(lin.bias.detach()), improved, 0.5, 1e-6, 1e-4)
        np.testing.assert_allclose(R.values[i], R_ref, rtol=1e-6, atol=1e-8)
        assert float(R.absorbed[i]) == pytest.approx(absorbed_ref, rel=1e-6, abs=1e-8)


def test_registering_twice_is_harmless(fitted):
    gmm, svm, sets = fitted
    model = fv_model(FisherVector.from_gmm(gmm, dtype=F64), linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:3])
    first = sx.explain(model, x)
    fisher._register()
    fisher._register()
    again = sx.explain(model, x)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.absorbed.values, again.absorbed.values)


def test_ledger_has_the_fisher_vector_row(fitted):
    gmm, svm, sets = fitted
    model = fv_model(FisherVector.from_gmm(gmm, dtype=F64), linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:3])
    R, led = sx.Explainer(model, preset={"1": sx.rules.Epsilon(1e-6), "0": sx.rules.Epsilon(0.01)}
                          ).explain_with_ledger(x)
    R.relevance.check()
    absorbed_rows = led["absorbed"].values
    np.testing.assert_allclose(absorbed_rows.sum(1), R.absorbed.values, rtol=1e-9, atol=1e-12)
    # the Fisher-vector row's absorbed part is its stabiliser terms, from the reference
    for i in range(3):
        y = FisherVector.from_gmm(gmm, dtype=F64)(x[i:i + 1])[0].numpy()
        f = float(svm.decision_function(y[None])[0])
        R_fv = y * svm.coef_[0] * f / (f + 1e-6 * sign0(f))
        _, absorbed_fv = reference_fisher_lrp(sets[i], gmm, R_fv, 0.01)
        row = [j for j, name in enumerate(led["layer"].values) if str(name).startswith("0")]
        assert len(row) == 1
        assert absorbed_rows[i, row[0]] == pytest.approx(absorbed_fv, rel=1e-8, abs=1e-12)


def test_result_round_trips_netcdf(fitted, tmp_path):
    import xarray as xr
    gmm, svm, sets = fitted
    model = fv_model(FisherVector.from_gmm(gmm, dtype=F64), linear_from_sklearn(svm, dtype=F64))
    R = sx.explain(model, torch.tensor(sets[:2]), dims=("set", "descriptor", "feature"))
    R.to_netcdf(tmp_path / "fv.nc")
    back = xr.open_dataarray(tmp_path / "fv.nc")
    np.testing.assert_allclose(back.values, R.values)
    back.relevance.check()
    back.close()


# -- gradient methods --------------------------------------------------------------------------

def test_gradient_methods_run_through_the_encoder(fitted):
    gmm, svm, sets = fitted
    fv = FisherVector.from_gmm(gmm, improved=True, dtype=F64)
    model = fv_model(fv, linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:3])
    assert torch.autograd.gradcheck(lambda t: fv(t), (x[:1].clone().requires_grad_(True),))
    xg = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(model(xg)[:, 0].sum(), xg)
    G = sx.explain(model, x, method="gradient")
    np.testing.assert_allclose(G.values, g_ref.numpy(), rtol=1e-10, atol=1e-12)
    GI = sx.explain(model, x, method="gradient_x_input")
    np.testing.assert_allclose(GI.values, (g_ref * x).numpy(), rtol=1e-10, atol=1e-12)
    IG = sx.explain(model, x, method="integrated_gradients", steps=16)
    assert np.isfinite(IG.values).all()


def test_power_normalisation_gradient_is_finite_at_exact_zeros():
    # a component far from every descriptor: its posteriors underflow, d_mu and d_sigma are 0
    fv = FisherVector([0.5, 0.5], [[0.0], [1e4]], [[1.0], [1.0]], improved=True, dtype=F64)
    x = torch.tensor([[[0.1], [-0.3]]], dtype=F64, requires_grad=True)
    y = fv(x)
    assert (y[0, [3, 5]] == 0).all()
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()


# -- real data: digits as sets of local patches ------------------------------------------------

def _digit_descriptors(images: np.ndarray, size: int = 4, stride: int = 2) -> np.ndarray:
    """Every ``size x size`` patch (stride ``stride``) of each 8x8 digit, with its position."""
    out = []
    for im in images:
        ds = []
        for i in range(0, 8 - size + 1, stride):
            for j in range(0, 8 - size + 1, stride):
                ds.append(np.concatenate([im[i:i + size, j:j + size].ravel() / 16.0,
                                          [i / (8 - size), j / (8 - size)]]))
        out.append(ds)
    return np.asarray(out)


def deletion_curve(model: nn.Module, x: torch.Tensor, order: np.ndarray, target: torch.Tensor,
                   sign: torch.Tensor) -> np.ndarray:
    """Mean signed target score as the first k descriptors of ``order`` are deleted from each set."""
    curve = []
    with torch.no_grad():
        for k in range(order.shape[1]):
            keep = np.sort(order[:, k:], axis=1)
            kept = torch.stack([x[i, keep[i]] for i in range(len(x))])
            curve.append(float((model(kept).gather(1, target[:, None])[:, 0] * sign).mean()))
    return np.asarray(curve)


@pytest.mark.parametrize("classes", [(3, 8), tuple(range(10))], ids=["3-vs-8", "ten-digits"])
def test_digits_fisher_vector_svm_explanation_is_faithful(classes):
    """Real digits (load_digits): descriptors are 4x4 patches (stride 2, 9 per digit) plus their
    position; a diagonal GMM (8 components) and a LinearSVC on improved Fisher vectors, trained on
    half the digits. On held-out digits, the predicted class is explained and descriptors are
    deleted from each set (the Fisher vector of the remaining ones): in the order of their LRP
    relevance the score falls faster than in random order, and least-relevant-first slowest."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    keep = np.isin(digits.target, classes)
    X = _digit_descriptors(digits.images[keep])
    y = digits.target[keep]
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    train, test = idx[: len(X) // 2], idx[len(X) // 2:]
    gmm = mixture.GaussianMixture(8, covariance_type="diag", reg_covar=1e-3, random_state=0, max_iter=30)
    gmm.fit(X[train].reshape(-1, X.shape[2]))
    fv = FisherVector.from_gmm(gmm, dtype=F64)
    svm = LinearSVC(C=1.0, max_iter=5000, random_state=0).fit(fv(torch.tensor(X[train])).numpy(), y[train])
    model = fv_model(fv, linear_from_sklearn(svm, dtype=F64))
    accuracy = svm.score(fv(torch.tensor(X[test])).numpy(), y[test])
    assert accuracy > 0.9
    x = torch.tensor(X[test][:150])

    R = sx.explain(model, x, dims=("digit", "patch", "feature"))  # predicted class
    R.relevance.check()
    target = torch.as_tensor(R.target.values)
    # one output for two classes: its sign is the prediction; explain the evidence for it
    sign = torch.sign(torch.as_tensor(R.prediction.values)) if len(classes) == 2 else torch.ones(len(x), dtype=F64)
    per_patch = R.relevance.pool("feature").values * sign.numpy()[:, None]
    n = x.shape[1]
    morf = deletion_curve(model, x, np.argsort(-per_patch, axis=1, kind="stable"), target, sign)
    lerf = deletion_curve(model, x, np.argsort(per_patch, axis=1, kind="stable"), target, sign)
    random = np.mean([deletion_curve(model, x, np.stack([rng.permutation(n) for _ in range(len(x))]), target, sign)
                      for _ in range(5)], axis=0)
    aopc = {k: float(np.mean(c[0] - c[1:])) for k, c in (("morf", morf), ("random", random), ("lerf", lerf))}
    print(f"\ndigits {classes}: held-out accuracy {accuracy:.3f}; mean explained score after deleting "
          f"k = 0..{n - 1} patches\n  MoRF   {np.round(morf, 3)}\n  random {np.round(random, 3)}\n"
          f"  LeRF   {np.round(lerf, 3)}\n  AOPC (mean drop over k = 1..{n - 1}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in aopc.items()))
    np.testing.assert_allclose([random[0], lerf[0]], morf[0], rtol=1e-12)
    assert aopc["morf"] > aopc["random"] > aopc["lerf"]
    assert (morf[1:] < random[1:]).all()


# -- evaluation --------------------------------------------------------------------------------

def test_perturbation_curve_on_the_model_and_on_the_sklearn_pipeline(fitted):
    """Region perturbation over descriptors works on the torch model and, as a plain callable,
    on the scikit-image + scikit-learn pipeline it reproduces; both give the same curve."""
    gmm, svm, sets = fitted
    model = fv_model(FisherVector.from_gmm(gmm, dtype=F64), linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:5])
    R = sx.explain(model, x, dims=("set", "descriptor", "feature"))
    per_descriptor = R.relevance.pool("feature")

    def pipeline(batch):
        batch = np.asarray(batch)
        fvs = np.stack([skimage_feature.fisher_vector(s, gmm, improved=True, alpha=0.5) for s in batch])
        return svm.decision_function(fvs)

    curves = [sx.evaluate.perturbation_curve(m, x, per_descriptor, removal="mean", order="morf")
              for m in (model, pipeline)]
    for curve in curves:
        assert curve.shape[-1] == 7  # step 0 plus one step per descriptor
        np.testing.assert_allclose(curve.isel(step=0).values, R.prediction.values, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(curves[0].values, curves[1].values, rtol=1e-7, atol=1e-9)


def test_relevance_at_the_fisher_vector_and_through_its_parts(fitted):
    """at= the encoder gives the relevance of the Fisher-vector dims (the linear layer's epsilon
    rule, from the reference); through= the d_pi, d_mu and d_sigma blocks partitions the
    descriptor relevance: the three filtered explanations add up to the full one."""
    gmm, svm, sets = fitted
    fv = FisherVector.from_gmm(gmm, dtype=F64)
    model = fv_model(fv, linear_from_sklearn(svm, dtype=F64))
    x = torch.tensor(sets[:3])
    at = sx.explain(model, x, at="0")
    at.relevance.check()
    y = fv(x).numpy()
    f = svm.decision_function(y)
    np.testing.assert_allclose(at.values, y * svm.coef_[0] * (f / (f + 1e-6 * np.sign(f)))[:, None], rtol=1e-9)
    full = sx.explain(model, x)
    K, D = fv.n_components, fv.dim
    blocks = [range(0, K), range(K, K + K * D), range(K + K * D, K + 2 * K * D)]
    parts = [sx.explain(model, x, through={"0": list(b)}) for b in blocks]
    for p in parts:
        p.relevance.check()
    np.testing.assert_allclose(sum(p.values for p in parts), full.values, rtol=1e-9, atol=1e-12)
    # d_pi relevance is spread evenly over a descriptor's dims
    pi_part = parts[0].values
    np.testing.assert_allclose(pi_part, np.repeat(pi_part[..., :1], D, axis=-1), rtol=1e-12, atol=1e-15)


def test_core_reads_fitted_attributes_without_importing_sklearn():
    import subprocess
    import sys
    code = ("import sys, sciexplain.kinds.units.fisher, sciexplain as sx; "
            "print(sorted(m for m in ('sklearn', 'skimage') if m in sys.modules)); "
            "import sciexplain.kinds.registry; print(sciexplain.kinds.units.fisher.FisherVector in sciexplain.kinds.registry.REGISTRY.leaves)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "True"]
