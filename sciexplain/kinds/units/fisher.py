"""Fisher-vector models: a torch Fisher-vector encoder, scikit-learn linear classifiers as
``nn.Linear``, and LRP through the encoding (Lapuschkin et al. 2016).

A Fisher-vector classifier maps a *set* of local descriptors ``x_1 .. x_N`` (image patches,
motion vectors, ...) to one score. With a diagonal Gaussian mixture (weights ``pi_k``, means
``mu_kd``, variances ``v_kd``) and the posteriors ``gamma_nk = p(k | x_n)``, the un-normalised
Fisher vector is a **mean over descriptors of per-descriptor terms** ``u = (1/N) sum_n phi(x_n)``,
laid out as ``[d_pi (K), d_mu (K*D), d_sigma (K*D)]`` exactly like
``skimage.feature.fisher_vector``::

    phi_pi[n, k]      = (gamma_nk - pi_k) / sqrt(pi_k)
    phi_mu[n, k, d]   = gamma_nk (x_nd - mu_kd) / (sqrt(pi_k) sqrt(v_kd))
    phi_sig[n, k, d]  = gamma_nk (v_kd - (x_nd - mu_kd)^2) / (sqrt(2) sqrt(pi_k) v_kd)

(scikit-image's sign convention for ``d_sigma``). The *improved* Fisher vector (Perronnin et
al. 2010) applies the power normalisation ``p = sign(u) |u|^alpha`` and then ``y = p / ||p||_2``.
A linear classifier ``f = w . y + b`` on top (:func:`linear_from_sklearn`) completes the model::

    model = nn.Sequential(FisherVector.from_gmm(gmm), linear_from_sklearn(svm))
    R = sx.explain(model, descriptors)          # (batch, n_descriptors, dim)

How relevance passes the encoder (the leaf rule registered for :class:`FisherVector`)
-------------------------------------------------------------------------------------
1. The linear layer is an ordinary ``nn.Linear``: the preset's rule (``Epsilon`` under every
   built-in preset's treatment of the top layer, or whatever the preset maps to it) gives the
   relevance ``R_j`` of each Fisher-vector dimension ``j``; its bias and stabiliser shares are
   absorbed there.
2. **Normalisations.** Power and L2 normalisation rescale each dimension by a positive factor,
   ``y_j = c_j u_j`` with ``c_j = |u_j|^(alpha - 1) / ||p||``, which keeps the sign and the
   order of ``|u_j|`` (monotone per dimension; ``||p||`` is one number per sample). Relevance
   passes them unchanged, ``R(u_j) = R(y_j)``, like any monotone activation: they **absorb
   nothing** (exactly zero in the ledger). What they do is already in ``R_j``: the linear
   layer's relevance is computed on the normalised ``y``.
3. **Mapping to descriptors** (Lapuschkin et al. 2016): ``u_j = sum_n z_nj`` with
   ``z_nj = phi_j(x_n) / N``, so each descriptor gets its share
   ``R_nj = z_nj / (u_j + eps sign(u_j)) R_j``. The stabiliser keeps
   ``eps sign(u_j) / (u_j + eps sign(u_j)) R_j`` per dimension; the leaf reports the sum of these
   terms as absorbed (computed from the terms, not as a difference). With ``Epsilon(0)`` a
   dimension with ``u_j == 0`` cannot be distributed and its whole ``R_j`` is absorbed.
4. **Descriptor dimensions.** ``d_mu[k, d]`` and ``d_sigma[k, d]`` belong to descriptor
   dimension ``d``: ``R[n, d] = sum_k (R_n,mu[k,d] + R_n,sigma[k,d])``. ``d_pi[k]`` has no descriptor
   dimension: a descriptor's share of it is spread **uniformly over its D dimensions** (each gets
   ``1/D``), so summing over dims gives the descriptor's full relevance and nothing is invented
   about which dimension mattered for the weight term.

The result has the input's shape ``(batch, n_descriptors, dim)``; summing over ``dim`` gives one
relevance per descriptor, which a plugin maps back to where the descriptor came from (a block,
a frame, an image patch).

The core does not import scikit-learn: :meth:`FisherVector.from_gmm` and
:func:`linear_from_sklearn` read fitted attributes (``weights_``, ``means_``, ``covariances_``;
``coef_``, ``intercept_``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import InputError, InputTypeError, RuleError, UnsupportedModelError
from ...rules.affine import Epsilon

__all__ = ["FisherVector", "linear_from_sklearn", "fisher_lrp", "DEFAULT_RULE"]

#: The rule the Fisher-vector leaf uses unless the preset maps another ``Epsilon`` to it.
DEFAULT_RULE = Epsilon(1e-6)

_LINEAR_CLASSIFIERS = ("LinearSVC", "LogisticRegression", "LogisticRegressionCV", "SGDClassifier",
                       "RidgeClassifier", "RidgeClassifierCV", "Perceptron", "PassiveAggressiveClassifier")


# -- reading fitted scikit-learn objects without importing scikit-learn -----------------------

def _fitted_array(obj: Any, attr: str, what: str) -> np.ndarray:
    if not hasattr(obj, attr):
        if hasattr(obj, "fit"):
            raise InputError(f"{what} {type(obj).__name__} is not fitted (it has no {attr!r}); call "
                             f".fit(...) on it first")
        raise UnsupportedModelError(f"{what} must be a fitted scikit-learn estimator with {attr!r}, got "
                                    f"{type(obj).__name__}")
    value = getattr(obj, attr)
    if hasattr(value, "toarray"):  # a sparsified coef_
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what}.{attr} is not numeric: {err}") from None
    if not np.isfinite(arr).all():
        raise InputError(f"{what}.{attr} contains NaN/Inf; refit the estimator on finite data")
    return arr


def _dtype(dtype: torch.dtype | None, default: torch.dtype | None = None) -> torch.dtype:
    if dtype is None:
        dtype = torch.get_default_dtype() if default is None else default
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputTypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


# -- the encoder -------------------------------------------------------------------------------

class FisherVector(nn.Module):
    """Fisher-vector encoding of descriptor sets under a diagonal Gaussian mixture.

    Maps ``x`` of shape ``(batch, n_descriptors, dim)`` to ``(batch, K + 2 K D)`` with the layout
    and values of ``skimage.feature.fisher_vector``: ``[d_pi (K), d_mu (K*D, component-major),
    d_sigma (K*D)]``. Differentiable (gradient methods run through it); under LRP it is one leaf
    whose rule is described in :mod:`sciexplain.fisher`.

    Parameters
    ----------
    weights : array-like, shape (K,)
        Mixture weights, positive, summing to one.
    means : array-like, shape (K, D)
    variances : array-like, shape (K, D)
        Diagonal covariances, positive.
    improved : bool
        Apply power and L2 normalisation (the improved Fisher vector).
    alpha : float
        Exponent of the power normalisation, ``0 < alpha <= 1``.
    dtype : torch.dtype, optional
        Dtype of the buffers and of the computation, default ``torch.float64``: the log densities
        of a mixture in tens of dims are large numbers whose differences decide the posteriors,
        and in float32 those lose about three digits. The output has the input's floating dtype
        (float32 descriptors give a float32 Fisher vector, ready for a float32 linear layer);
        ``module.float()`` switches the computation to float32 as well.

    Notes
    -----
    Use :meth:`from_gmm` to build it from a fitted ``sklearn.mixture.GaussianMixture``. All
    descriptor sets of a batch have the same size; explain sets of different sizes in separate
    calls.
    """

    def __init__(self, weights: Any, means: Any, variances: Any, *, improved: bool = True,
                 alpha: float = 0.5, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = _dtype(dtype, torch.float64)
        w = np.asarray(weights, dtype=np.float64)
        mu = np.asarray(means, dtype=np.float64)
        var = np.asarray(variances, dtype=np.float64)
        if mu.ndim != 2:
            raise InputError(f"means must have shape (n_components, dim), got {mu.shape}")
        K, D = mu.shape
        if K == 0 or D == 0:
            raise InputError(f"means has shape {mu.shape}: need at least one component and one dim")
        if w.shape != (K,):
            raise InputError(f"weights must have shape ({K},) for {K} components, got {w.shape}")
        if var.shape != (K, D):
            raise InputError(f"variances must have shape {(K, D)} (diagonal covariances), got {var.shape}; "
                             "only covariance_type='diag' is supported")
        for name, a in (("weights", w), ("means", mu), ("variances", var)):
            if not np.isfinite(a).all():
                raise InputError(f"{name} contain NaN/Inf")
        if (w <= 0).any() or abs(w.sum() - 1.0) > 1e-4:
            raise InputError(f"weights must be positive and sum to 1, got sum {w.sum():.6g}, min {w.min():.3g}")
        if (var <= 0).any():
            raise InputError(f"variances must be positive, min is {var.min():.3g}")
        if not isinstance(improved, (bool, np.bool_)):
            raise InputError(f"improved must be True or False, got {improved!r}")
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise InputError(f"alpha must be a number in (0, 1], got {alpha!r}") from None
        if not (0.0 < alpha <= 1.0):
            raise InputError(f"alpha must be in (0, 1] (power normalisation sign(z)|z|^alpha), got {alpha!r}")
        self.improved = bool(improved)
        self.alpha = alpha
        # copies (torch.as_tensor would share memory with the fitted estimator's arrays)
        self.register_buffer("weights", torch.tensor(w, dtype=dtype))
        self.register_buffer("means", torch.tensor(mu, dtype=dtype))
        self.register_buffer("variances", torch.tensor(var, dtype=dtype))
        self.train(False)  # a fixed encoder: nothing in it depends on the training flag

    @classmethod
    def from_gmm(cls, gmm: Any, improved: bool = True, alpha: float = 0.5, *,
                 dtype: torch.dtype | None = None) -> FisherVector:
        """Build the encoder from a fitted ``sklearn.mixture.GaussianMixture``.

        Parameters
        ----------
        gmm : sklearn.mixture.GaussianMixture
            Fitted, with ``covariance_type="diag"``; its ``weights_``, ``means_`` and
            ``covariances_`` are copied (the estimator is not modified or kept).
        improved, alpha, dtype
            See :class:`FisherVector`.

        Raises
        ------
        InputError
            If the mixture is not fitted or its parameters are unusable.
        UnsupportedModelError
            If its covariance type is not ``"diag"``.
        """
        ctype = getattr(gmm, "covariance_type", None)
        if ctype is None:
            raise UnsupportedModelError(f"gmm must be a fitted sklearn.mixture.GaussianMixture, got "
                                        f"{type(gmm).__name__}")
        if ctype != "diag":
            raise UnsupportedModelError(
                f"the Gaussian mixture has covariance_type={ctype!r}; Fisher vectors here (as in "
                "skimage.feature.fisher_vector) need diagonal covariances: fit "
                "GaussianMixture(covariance_type='diag')")
        w = _fitted_array(gmm, "weights_", "gmm")
        mu = _fitted_array(gmm, "means_", "gmm")
        var = _fitted_array(gmm, "covariances_", "gmm")
        return cls(w, mu, var, improved=improved, alpha=alpha, dtype=dtype)

    # -- sizes and labels --------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        """Descriptor dimension D."""
        return int(self.means.shape[1])

    @property
    def out_features(self) -> int:
        return self.n_components * (2 * self.dim + 1)

    def feature_names(self) -> list[str]:
        """Labels of the output dims: ``pi[k]``, ``mu[k,d]``, ``sigma[k,d]`` in output order."""
        K, D = self.n_components, self.dim
        return ([f"pi[{k}]" for k in range(K)] + [f"mu[{k},{d}]" for k in range(K) for d in range(D)]
                + [f"sigma[{k},{d}]" for k in range(K) for d in range(D)])

    def extra_repr(self) -> str:
        return (f"n_components={self.n_components}, dim={self.dim}, improved={self.improved}, "
                f"alpha={self.alpha:g}")

    # -- computation -------------------------------------------------------------------------
    def _check_input(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputTypeError(f"FisherVector expects a tensor of descriptor sets (batch, n_descriptors, dim), "
                             f"got {type(x).__name__}")
        if x.ndim != 3:
            raise InputError(f"FisherVector expects descriptor sets of shape (batch, n_descriptors, dim), got "
                             f"shape {tuple(x.shape)}; for one set of descriptors pass x[None]")
        if x.shape[2] != self.dim:
            raise InputError(f"descriptors have dim {x.shape[2]}, but the Gaussian mixture was fitted on "
                             f"dim {self.dim}")
        if x.shape[1] == 0:
            raise InputError("empty descriptor set (n_descriptors = 0): a Fisher vector needs at least one "
                             "descriptor per set")
        if x.dtype == torch.bool or x.is_complex():
            raise InputError(f"descriptors must be real numbers, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"descriptors contain {int((~torch.isfinite(x)).sum())} NaN/Inf value(s); "
                             "remove or impute them before encoding")
        return x

    def posteriors(self, x: torch.Tensor) -> torch.Tensor:
        """``gamma[b, n, k] = p(k | x_bn)`` under the mixture, shape ``(batch, n_descriptors, K)``.

        Computed like scikit-learn's ``predict_proba`` (log densities from the precision form).
        """
        x = self._check_input(x)
        return self._posteriors(x.to(self.means.dtype)).to(_out_dtype(x))

    def _posteriors(self, x: torch.Tensor) -> torch.Tensor:
        prec = 1.0 / self.variances  # (K, D)
        D = self.dim
        # log N(x | mu_k, diag v_k) = -0.5 (D log 2pi + sum log v + sum (x - mu)^2 / v)
        maha = ((self.means ** 2) * prec).sum(1) - 2.0 * x @ (self.means * prec).T + (x ** 2) @ prec.T
        log_det = torch.log(self.variances).sum(1)
        log_prob = -0.5 * (D * math.log(2 * math.pi) + log_det + maha) + torch.log(self.weights)
        return torch.softmax(log_prob, dim=-1)

    def _unnormalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, gamma)``: the un-normalised Fisher vector (batch, K + 2KD) and the posteriors."""
        gamma = self._posteriors(x)
        N = x.shape[1]
        pi, mu, var = self.weights, self.means, self.variances
        s0 = gamma.sum(1) / N  # (B, K)
        gT = gamma.transpose(1, 2)
        s1 = gT @ x / N  # (B, K, D)
        s2 = gT @ (x ** 2) / N
        s0e = s0[..., None]
        sq = torch.sqrt(pi)
        d_pi = (s0 - pi) / sq
        d_mu = (s1 - s0e * mu) / (sq[:, None] * torch.sqrt(var))
        d_sigma = (-s2 - s0e * mu ** 2 + s0e * var + 2.0 * s1 * mu) / (math.sqrt(2.0) * sq[:, None] * var)
        u = torch.cat([d_pi, d_mu.flatten(1), d_sigma.flatten(1)], dim=1)
        return u, gamma

    def _normalize(self, u: torch.Tensor) -> torch.Tensor:
        # sign(u)|u|^alpha with the derivative at u == 0 taken as 0 (|u|^alpha has an infinite
        # slope there; posteriors that underflow make exact zeros common)
        zero = u == 0
        mag = torch.where(zero, torch.ones_like(u), u.abs()) ** self.alpha
        p = torch.where(zero, torch.zeros_like(u), torch.sign(u) * mag)
        norm = torch.linalg.vector_norm(p, dim=1, keepdim=True)
        return p / norm.clamp_min(torch.finfo(p.dtype).tiny)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fisher vectors of the descriptor sets ``x`` (batch, n_descriptors, dim)."""
        x = self._check_input(x)
        u, _ = self._unnormalized(x.to(self.means.dtype))
        return (self._normalize(u) if self.improved else u).to(_out_dtype(x))

    def unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """The Fisher vector before power and L2 normalisation, ``(1/N) sum_n phi(x_n)``."""
        x = self._check_input(x)
        return self._unnormalized(x.to(self.means.dtype))[0].to(_out_dtype(x))


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


# -- LRP through the encoder -------------------------------------------------------------------

def fisher_lrp(fv: FisherVector, x: torch.Tensor, relevance: torch.Tensor, epsilon: float = 1e-6
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Redistribute the relevance of the Fisher-vector dimensions onto the local descriptors.

    Parameters
    ----------
    fv : FisherVector
    x : torch.Tensor
        Descriptor sets ``(batch, n_descriptors, dim)``.
    relevance : torch.Tensor
        Relevance of the encoder's output dims ``(batch, K + 2KD)``.
    epsilon : float
        Stabiliser of ``R_nj = z_nj / (u_j + eps sign(u_j)) R_j``.

    Returns
    -------
    R_x : torch.Tensor
        ``(batch, n_descriptors, dim)``, in the input's dtype.
    absorbed : torch.Tensor
        ``(batch,)``: the stabiliser terms ``sum_j eps sign(u_j) / (u_j + eps sign(u_j)) R_j``
        (with ``epsilon == 0``: the relevance of dimensions with ``u_j == 0``). Normalisations
        absorb nothing. ``R_x.sum() + absorbed == relevance.sum()`` per sample.
    """
    x = fv._check_input(x.detach())
    in_dtype = _out_dtype(x)
    x = x.to(fv.means.dtype)
    B, N, D = x.shape
    K = fv.n_components
    if relevance.shape != (B, fv.out_features):
        raise InputError(f"relevance has shape {tuple(relevance.shape)}, expected {(B, fv.out_features)}")
    with torch.no_grad():
        R = relevance.detach().to(x.dtype)
        u, gamma = fv._unnormalized(x)
        if epsilon > 0:
            stab = torch.copysign(torch.tensor(epsilon, dtype=u.dtype, device=u.device), u)
            s = R / (u + stab)
            absorbed = (s * stab).sum(1)
        else:
            dead = u == 0
            s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(u), u))
            absorbed = torch.where(dead, R, torch.zeros_like(R)).sum(1)
        pi, mu, var = fv.weights, fv.means, fv.variances
        sq = torch.sqrt(pi)
        s_pi = s[:, :K]
        s_mu = s[:, K:K + K * D].reshape(B, K, D)
        s_sig = s[:, K + K * D:].reshape(B, K, D)
        # R[n, d] = sum_k z_mu[n,k,d] s_mu[k,d] + z_sig[n,k,d] s_sig[k,d] + (1/D) sum_k z_pi[n,k] s_pi[k]
        # with z = phi / N; expanded in powers of x_nd so that it is three batched matmuls
        a = s_mu / (N * sq[:, None] * torch.sqrt(var))
        b = s_sig / (N * math.sqrt(2.0) * sq[:, None] * var)
        c = s_pi / (N * sq)
        lin = gamma @ (a + 2.0 * b * mu)
        quad = gamma @ b
        const = gamma @ (b * (var - mu ** 2) - a * mu)
        pi_term = (gamma @ c[..., None] - (pi * c).sum(1)[:, None, None]) / D
        R_x = x * lin - x ** 2 * quad + const + pi_term
    return R_x.to(in_dtype), absorbed.to(relevance.dtype)


def _propagate(call: Any) -> Any:
    """Leaf propagator registered for :class:`FisherVector` (see the module docstring)."""
    from ..registry import LeafRelevance
    rule = DEFAULT_RULE if call.rule is None else call.rule
    if not isinstance(rule, Epsilon):
        raise RuleError(f"{call.name} (FisherVector): rule {rule!r} does not apply; the Fisher-vector "
                        "mapping to descriptors uses Epsilon(eps) (Lapuschkin et al. 2016). Map "
                        f"{{'{call.name}': sx.rules.Epsilon(1e-6)}} or FisherVector to an Epsilon rule in the preset")
    (x,) = call.inputs[:1]
    R_x, absorbed = fisher_lrp(call.module, x, call.relevance, rule.epsilon)
    return LeafRelevance(inputs=[R_x] + [None] * (len(call.inputs) - 1), absorbed=absorbed)


def _register() -> None:
    from ..registry import register
    register(FisherVector, _propagate, default_rule=DEFAULT_RULE,
             description="Fisher vector (Lapuschkin et al. 2016): normalisations pass relevance unchanged; "
                         "epsilon-stabilised redistribution to descriptors in proportion to each one's "
                         "term of the un-normalised FV; d_pi spread uniformly over descriptor dims")


# -- linear classifiers from scikit-learn ------------------------------------------------------

def linear_from_sklearn(clf: Any, *, binary: str = "one", dtype: torch.dtype | None = None) -> nn.Linear:
    """An ``nn.Linear`` whose output equals ``clf.decision_function``.

    Parameters
    ----------
    clf : fitted linear classifier
        ``LinearSVC``, ``LogisticRegression``, ``SGDClassifier`` (also ``RidgeClassifier``,
        ``Perceptron``, ``PassiveAggressiveClassifier``): any scikit-learn estimator with the
        linear-classifier decision function ``X @ coef_.T + intercept_``. Only its fitted
        attributes are read; scikit-learn is not imported.
    binary : {"one", "two"}
        For a two-class problem: ``"one"`` (default) gives one output, the decision function
        ``f`` itself (positive means ``clf.classes_[1]``), which is what an SVM explanation
        decomposes; ``"two"`` gives ``[-f, f]`` (one column per class in ``clf.classes_`` order),
        so that the predicted class is the argmax and either class can be a ``target``.
        Multiclass (one-vs-rest or multinomial): one output per class, in ``clf.classes_`` order.
    dtype : torch.dtype, optional
        Parameter dtype (default: torch's default dtype).

    Raises
    ------
    InputError
        If ``clf`` is not fitted, or its coefficients are not finite.
    UnsupportedModelError
        If ``clf`` is not a linear classifier of this kind (e.g. ``SVC``, whose multiclass scores
        are one-vs-one, or a ``Pipeline``: convert its last step and put the rest in torch).
    """
    dtype = _dtype(dtype)
    if binary not in ("one", "two"):
        raise InputError(f"binary must be 'one' or 'two', got {binary!r}")
    mro = [c.__name__ for c in type(clf).__mro__]
    if "LinearClassifierMixin" not in mro and type(clf).__name__ not in _LINEAR_CLASSIFIERS:
        hint = ""
        if type(clf).__name__ == "Pipeline":
            hint = " For a Pipeline, convert its final classifier and reproduce the other steps in torch."
        elif type(clf).__name__ in ("SVC", "NuSVC"):
            hint = " SVC's multiclass scores are one-vs-one; fit sklearn.svm.LinearSVC instead."
        raise UnsupportedModelError(
            f"linear_from_sklearn needs a fitted linear classifier ({', '.join(_LINEAR_CLASSIFIERS)}), got "
            f"{type(clf).__name__}.{hint}")
    coef = _fitted_array(clf, "coef_", "clf")
    intercept = _fitted_array(clf, "intercept_", "clf") if hasattr(clf, "intercept_") else np.zeros(1)
    if coef.ndim == 1:
        coef = coef[None, :]
    if coef.ndim != 2 or coef.shape[1] == 0:
        raise InputError(f"clf.coef_ has shape {coef.shape}; expected (n_outputs, n_features)")
    n_out, n_in = coef.shape
    intercept = np.broadcast_to(intercept.reshape(-1), (n_out,)) if intercept.size in (1, n_out) else None
    if intercept is None:
        raise InputError(f"clf.intercept_ does not match coef_ of shape {coef.shape}")
    if n_out == 1 and binary == "two":
        coef = np.concatenate([-coef, coef])
        intercept = np.concatenate([-intercept, intercept])
    layer = nn.Linear(coef.shape[1], coef.shape[0], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(coef, dtype=dtype))
        layer.bias.copy_(torch.as_tensor(np.array(intercept), dtype=dtype))
    return layer.eval()


# registered at import (the registry is global); registering again replaces the entry
_register()
