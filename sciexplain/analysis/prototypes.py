"""Prototypes by activation maximization (Montavon et al. 2017, Sec. 3).

A prototype of class c is an input that the model finds very typical of c. It is found by
gradient ascent on

    log p(c | x)  +  lam * r(x)  -  eta * ||x - x0||^2

where ``log p(c | x)`` is the log-softmax of the model's logits and ``r`` keeps the
prototype plausible:

* ``"l2"``: ``r(x) = -||x - mean||^2``, a pull towards a mean (Sec. 3.1);
* an expert ``r(x) = log p(x)``: a density model of the data, :class:`GaussianExpert` or
  :class:`GaussianMixtureExpert`, fitted with scikit-learn and evaluated in torch so that it has
  gradients (Sec. 3.2);
* a :class:`Decoder` ``g``: the search runs in code space, ``x = g(z)``, with
  ``r = -||z||^2`` (Sec. 3.3).

The optional locality term ``eta * ||x - x0||^2`` keeps the prototype near a given input
``x0``. scikit-learn is needed only to fit the experts (imported on use).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError, MissingDependencyError

__all__ = ["activation_maximization", "GaussianExpert", "GaussianMixtureExpert", "Decoder"]


def _sklearn_mixture():
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("fitting a density expert needs scikit-learn: pip install scikit-learn "
                          "(or pip install 'sciexplain[demo]')") from err
    return GaussianMixture


def _as_2d(X: Any) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or X.shape[0] < 2:
        raise InputError(f"fit needs data of shape (n_samples, ...) with n_samples >= 2, got {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("the data contain NaN/Inf")
    return X.reshape(X.shape[0], -1)


class GaussianMixtureExpert:
    """A Gaussian mixture density ``log p(x)`` with full covariances, usable as a torch objective.

    Fit it with :meth:`fit` (scikit-learn's ``GaussianMixture``); calling the expert on a
    tensor ``(batch, ...)`` returns ``log p(x)`` per sample with gradients.

    Parameters
    ----------
    n_components : int
    reg_covar : float
        Added to the covariance diagonals (keeps them invertible for data on a subspace, such
        as image borders that are always 0).
    seed : int
    """

    def __init__(self, n_components: int = 1, reg_covar: float = 1e-3, seed: int = 0):
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.seed = seed

    @classmethod
    def fit(cls, X: Any, n_components: int = 1, *, reg_covar: float = 1e-3, seed: int = 0,
            max_iter: int = 200) -> GaussianMixtureExpert:
        """Fit a mixture of ``n_components`` Gaussians to ``X`` ``(n_samples, ...)``."""
        if int(n_components) < 1:
            raise InputError(f"n_components must be >= 1, got {n_components}")
        data = _as_2d(X)
        GaussianMixture = _sklearn_mixture()
        gm = GaussianMixture(n_components=int(n_components), covariance_type="full", reg_covar=reg_covar,
                             random_state=seed, max_iter=max_iter).fit(data)
        expert = cls(int(n_components), reg_covar, seed)
        expert._set(gm.weights_, gm.means_, gm.precisions_cholesky_)
        expert.shape = tuple(np.shape(X)[1:]) if not isinstance(X, torch.Tensor) else tuple(X.shape[1:])
        return expert

    def _set(self, weights, means, prec_chol) -> None:
        self.log_weights_ = torch.as_tensor(np.log(weights), dtype=torch.float64)
        self.means_ = torch.as_tensor(means, dtype=torch.float64)
        self.prec_chol_ = torch.as_tensor(prec_chol, dtype=torch.float64)  # (K, D, D): precision = L L^T
        D = self.means_.shape[1]
        logdet = torch.log(torch.diagonal(self.prec_chol_, dim1=1, dim2=2)).sum(dim=1)
        self._const = logdet - 0.5 * D * math.log(2 * math.pi)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "means_"):
            raise InputError(f"{type(self).__name__} is not fitted; use {type(self).__name__}.fit(X)")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.means_.shape[1]:
            raise InputError(f"the expert was fitted on {self.means_.shape[1]} features, x has {flat.shape[1]}")
        return flat

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` per sample (differentiable), in x's dtype."""
        flat = self._check(x).double()
        diff = flat[:, None, :] - self.means_[None]  # (B, K, D)
        y = torch.einsum("bkd,kde->bke", diff, self.prec_chol_)
        comp = self._const[None] - 0.5 * (y ** 2).sum(dim=-1) + self.log_weights_[None]
        return torch.logsumexp(comp, dim=1).to(x.dtype)

    __call__ = log_prob

    def mean(self) -> torch.Tensor:
        """The mixture's mean (a start point for the search)."""
        return (self.log_weights_.exp()[:, None] * self.means_).sum(dim=0)

    def describe(self) -> str:
        return f"{type(self).__name__}(n_components={self.n_components})"


class GaussianExpert(GaussianMixtureExpert):
    """A single Gaussian density ``log N(x; mu, Sigma)`` (see :class:`GaussianMixtureExpert`)."""

    @classmethod
    def fit(cls, X: Any, *, reg_covar: float = 1e-3, seed: int = 0) -> GaussianExpert:  # type: ignore[override]
        """Fit mean and full covariance to ``X`` ``(n_samples, ...)``."""
        return super().fit(X, 1, reg_covar=reg_covar, seed=seed)

    def describe(self) -> str:
        return "GaussianExpert"


class Decoder:
    """A decoder ``g(z) -> x`` (any torch module): the prototype search runs in code space.

    Parameters
    ----------
    module : torch.nn.Module
        Maps codes ``(batch, *latent_shape)`` to inputs ``(batch, *shape)``.
    latent_shape : int or tuple
        Shape of one code.
    """

    def __init__(self, module: nn.Module, latent_shape: int | Sequence[int]):
        if not isinstance(module, nn.Module):
            raise InputError(f"Decoder wraps a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.latent_shape = (int(latent_shape),) if isinstance(latent_shape, int) else tuple(latent_shape)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z)

    def describe(self) -> str:
        return f"Decoder({type(self.module).__name__}, latent {self.latent_shape})"


def _targets(target: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(target)).reshape(-1)
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise InputError(f"target must be integer class indices, got {target!r}")
    if t.numel() == 0:
        raise InputError("target is empty")
    return t.long()


def activation_maximization(model: nn.Module, target: int | Sequence[int], *, shape: Sequence[int],
                            init: Any = None, regularizer: str | GaussianMixtureExpert | Decoder = "l2",
                            lam: float = 0.01, mean: Any = None, eta: float = 0.0, x0: Any = None,
                            steps: int = 200, lr: float = 0.05, seed: int = 0, progress: bool = False
                            ) -> tuple[xr.DataArray, xr.Dataset]:
    """Find prototypes of classes by maximizing ``log p(class | x)`` with a regularizer.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits ``(batch, n_classes)``; evaluated in eval mode, left unchanged (its
        parameters get no gradients).
    target : int or sequence of int
        One prototype per entry.
    shape : tuple of int
        Shape of one input (without batch), e.g. ``(64,)`` or ``(1, 28, 28)``.
    init : tensor, optional
        Start point ``(shape)`` or ``(len(target), *shape)`` (for a decoder: codes). Default:
        the mean of the l2 term / the expert's mean / code 0, plus small noise from ``seed``.
    regularizer : "l2", GaussianExpert, GaussianMixtureExpert or Decoder
        See the module docstring.
    lam : float
        Weight of the regularizer (``lam * r(x)`` is added to the objective).
    mean : tensor, optional
        The mean of the ``"l2"`` term (default 0).
    eta : float
        Weight of the locality term ``eta * ||x - x0||^2`` (needs ``x0``).
    x0 : tensor, optional
        The input the prototype should stay near.
    steps, lr : int, float
        Adam steps (gradient ascent) and learning rate.
    seed : int
        Seeds the initial noise; the result is deterministic for a seed.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    prototype : xarray.DataArray
        ``("prototype", "dim_0", ...)`` with coords ``target`` and ``probability`` (p(c | x)).
    trace : xarray.Dataset
        Per ``step`` and ``prototype``: ``objective``, ``log_p_class``, ``regularizer`` (r),
        ``locality`` (||x - x0||^2).
    """
    from tqdm.auto import tqdm

    from ..explain.forward import eval_mode as _eval_mode
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in shape)
    t = _targets(target)
    P = t.numel()
    if int(steps) < 1 or not lr > 0:
        raise InputError("steps must be >= 1 and lr > 0")
    if not (lam >= 0 and eta >= 0):
        raise InputError("lam and eta must be >= 0")
    gen = torch.Generator().manual_seed(int(seed))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    def batch_of(v: Any, what: str, shp: tuple[int, ...]) -> torch.Tensor:
        v = torch.as_tensor(v).to(dtype)
        try:  # one tensor for all prototypes, or one per prototype
            return torch.broadcast_to(v, (P,) + shp).clone()
        except RuntimeError:
            raise InputError(f"{what} of shape {tuple(v.shape)} does not fit {shp} (or ({P}, *{shp}))") from None

    decoder = regularizer if isinstance(regularizer, Decoder) else None
    expert = regularizer if isinstance(regularizer, GaussianMixtureExpert) else None
    if decoder is None and expert is None and regularizer != "l2":
        raise InputError(f"unknown regularizer {regularizer!r}; use 'l2', a GaussianExpert, a "
                         "GaussianMixtureExpert or a Decoder")
    if eta > 0 and x0 is None:
        raise InputError("eta > 0 needs x0, the input to stay near")
    x0_t = batch_of(x0, "x0", shape) if x0 is not None else None
    mean_t = batch_of(mean if mean is not None else 0.0, "mean", shape)
    if expert is not None and int(np.prod(shape)) != expert.means_.shape[1]:
        raise InputError(f"the expert was fitted on {expert.means_.shape[1]} features; shape {shape} has "
                         f"{int(np.prod(shape))}")
    var_shape = decoder.latent_shape if decoder is not None else shape
    noise = 0.01 * torch.randn((P,) + var_shape, generator=gen, dtype=torch.float64).to(dtype)
    if init is not None:
        v = batch_of(init, "init", var_shape)
    elif decoder is not None:
        v = torch.zeros((P,) + var_shape, dtype=dtype) + noise
    elif expert is not None:
        v = expert.mean().to(dtype).reshape((1,) + shape).expand((P,) + shape) + noise
    else:
        v = mean_t + noise
    v = v.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=float(lr))
    rec = {k: np.empty((int(steps) + 1, P)) for k in ("objective", "log_p_class", "regularizer", "locality")}
    rows = torch.arange(P)
    params = [p for p in model.parameters()]
    if decoder is not None:
        params += list(decoder.module.parameters())
    flags = [p.requires_grad for p in params]

    def evaluate(var):
        x = decoder(var) if decoder is not None else var
        if tuple(x.shape[1:]) != shape:
            raise InputError(f"the decoder returns inputs of shape {tuple(x.shape[1:])}, expected {shape}")
        logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise InputError("activation_maximization needs a model returning logits (batch, n_classes)")
        if bool((t >= logits.shape[1]).any()) or bool((t < 0).any()):
            raise InputError(f"target {t.tolist()} out of range for {logits.shape[1]} classes")
        lpc = torch.log_softmax(logits, dim=1)[rows, t]
        if decoder is not None:
            reg = -(var.reshape(P, -1) ** 2).sum(dim=1)
        elif expert is not None:
            reg = expert(x)
        else:
            reg = -((x - mean_t).reshape(P, -1) ** 2).sum(dim=1)
        loc = ((x - x0_t).reshape(P, -1) ** 2).sum(dim=1) if x0_t is not None else torch.zeros(P, dtype=x.dtype)
        obj = lpc + lam * reg - eta * loc
        return x, obj, lpc, reg, loc

    def record(i, obj, lpc, reg, loc):
        for k, val in zip(("objective", "log_p_class", "regularizer", "locality"), (obj, lpc, reg, loc)):
            rec[k][i] = val.detach().double().numpy()

    try:
        for p in params:  # gradients for the search variable only
            p.requires_grad_(False)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_eval_mode(model))
            if decoder is not None:
                stack.enter_context(_eval_mode(decoder.module))
            stack.enter_context(torch.enable_grad())
            for i in tqdm(range(int(steps)), desc="activation maximization", disable=not progress):
                opt.zero_grad()
                _, obj, lpc, reg, loc = evaluate(v)
                record(i, obj, lpc, reg, loc)
                (-obj.sum()).backward()
                opt.step()
            with torch.no_grad():
                x, obj, lpc, reg, loc = evaluate(v)
                record(int(steps), obj, lpc, reg, loc)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    x = x.detach()
    prob = np.exp(rec["log_p_class"][-1])
    reg_text = "l2 towards a mean" if regularizer == "l2" else regularizer.describe()
    attrs = {"method": "activation_maximization", "regularizer": reg_text, "lam": float(lam), "eta": float(eta),
             "steps": int(steps), "lr": float(lr), "seed": int(seed),
             "objective": "log p(c|x) + lam * r(x) - eta * ||x - x0||^2", "sciexplain_version": __version__}
    dims = ("prototype",) + tuple(f"dim_{i}" for i in range(len(shape)))
    proto = xr.DataArray(x.numpy(), dims=dims, coords={"target": ("prototype", t.numpy()),
                                                       "probability": ("prototype", prob)},
                         attrs=attrs, name="prototype")
    trace = xr.Dataset({k: (("step", "prototype"), val) for k, val in rec.items()},
                       coords={"step": np.arange(int(steps) + 1), "target": ("prototype", t.numpy())},
                       attrs={**attrs, "description": "optimisation trace; step i is before the i-th update"})
    if decoder is not None:  # the final codes z, with x = g(z)
        trace["code"] = (("prototype",) + tuple(f"code_{i}" for i in range(len(var_shape))), v.detach().numpy())
    return proto, trace
