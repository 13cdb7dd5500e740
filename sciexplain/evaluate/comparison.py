"""Comparing explanations of one batch: AOPC and ABPC per method, with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError
from .inputs import _as_tensor
from .perturbation import perturbation_curve


def _bootstrap(values: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float, float]:
    """Mean of ``values`` (1-D, one per sample) and its percentile bootstrap interval."""
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def bootstrap_ci(scores: Any, *, sample_dim: str | None = None, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean over samples and its percentile bootstrap confidence interval.

    Samples are drawn with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``,
    indices ``rng.integers(0, n, (n_boot, n))``), and the interval is the ``(1 - level) / 2``
    and ``(1 + level) / 2`` quantiles of the resampled means. Other dims than the sample dim
    (e.g. the noise ``seed`` of :func:`aopc` on several seeds) are averaged per sample first,
    so the interval is over samples (the photos, epochs...), not over noise draws.

    Parameters
    ----------
    scores : xarray.DataArray or array
        Per-sample scores, e.g. ``aopc(curve)``. For an array the first axis is the sample.
    sample_dim : str, optional
        The sample dim of a DataArray; default the dim carrying ``target``, else the last dim
        that is not ``seed``.
    n_boot : int
        Number of bootstrap resamples (>= 1).
    level : float
        Confidence level in (0, 1).
    seed : int
        Seeds the resampling, so the interval is reproducible.

    Returns
    -------
    (estimate, low, high) : tuple of float
    """
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level must be in (0, 1), got {level!r}")
    if int(n_boot) < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot!r}")
    if isinstance(scores, xr.DataArray):
        if sample_dim is None:
            if "target" in scores.coords and scores.coords["target"].ndim == 1:
                sample_dim = scores.coords["target"].dims[0]
            else:
                others = [d for d in scores.dims if d != "seed"]
                if not others:
                    raise InputError("scores have no sample dim; pass sample_dim=")
                sample_dim = others[-1]
        if sample_dim not in scores.dims:
            raise InputError(f"sample_dim {sample_dim!r} is not a dim of the scores {scores.dims}")
        rest = [d for d in scores.dims if d != sample_dim]
        values = np.asarray(scores.mean(rest).values if rest else scores.values, dtype=np.float64)
    else:
        values = np.asarray(scores, dtype=np.float64)
        if values.ndim < 1:
            raise InputError("scores must have a sample axis")
        values = values.reshape(values.shape[0], -1).mean(axis=1)
    if values.shape[0] == 0:
        raise InputError("no scores: the sample dim is empty")
    if not np.isfinite(values).all():
        raise InputError(f"{int((~np.isfinite(values)).sum())} score(s) are NaN/Inf")
    return _bootstrap(values, int(n_boot), float(level), int(seed))


#: the metrics :func:`compare` computes, and whether larger is better
COMPARE_METRICS = {"aopc_morf": "higher is better", "aopc_lerf": "lower is better", "abpc": "higher is better"}


def compare(model: nn.Module | Callable, x: Any, explanations: Mapping[str, Any], *, steps: int | None = None,
            regions_per_step: int = 1, patch: Sequence[int] | None = None,
            removal: str | torch.Tensor | np.ndarray | Callable = "uniform",
            value_range: tuple[float, float] | None = None, seeds: Sequence[int] = (0,),
            target: Any = None, n_boot: int = 2000, level: float = 0.95, bootstrap_seed: int = 0,
            batch_size: int = 256, x_dims: Sequence[str] | None = None, ties: str = "stable",
            progress: bool = False) -> xr.Dataset:
    """Compare explanations of one batch by region perturbation: methods x metrics with CIs.

    For every explanation the MoRF and LeRF curves are measured once per noise seed (the same
    seeds, hence the same noise, for every method), and per sample AOPC (MoRF), AOPC (LeRF)
    and ABPC = mean(LeRF - MoRF) are averaged over the seeds; the estimate is the mean over
    samples with a percentile bootstrap interval over samples (:func:`bootstrap_ci`, the same
    resampling for every method and metric, so the intervals are comparable).

    Parameters
    ----------
    model : torch.nn.Module or callable
        See :func:`perturbation_curve`.
    x : tensor or array, shape (batch, ...)
    explanations : mapping of str to explanation or None
        Method label -> relevance of ``x`` (DataArray or array, as for
        :func:`perturbation_curve`). ``None`` stands for a random order: its "MoRF" and "LeRF"
        curves are two independent random orders (seeds ``s`` and ``s + 1000003``) of the same
        regions as the first explanation's (e.g. whole pixel patches across colour), the
        baseline that an explanation must beat.
    steps, regions_per_step, patch, removal, value_range, batch_size, x_dims, ties
        As for :func:`perturbation_curve`.
    seeds : sequence of int
        Noise seeds (uniform noise, random orders, random ties).
    target : int or sequence, optional
        Output to record for every method; default each explanation's own ``target`` (the
        random order uses the first explanation's target). Explanations of different targets
        are an error: their curves would not measure the same output.
    n_boot, level, bootstrap_seed
        Bootstrap resamples, confidence level and the seed of the resampling.

    Returns
    -------
    xarray.Dataset
        ``estimate``, ``ci_low``, ``ci_high`` with dims ``(method, metric)`` (metrics
        ``aopc_morf``, ``aopc_lerf``, ``abpc``); ``score (method, metric, sample)`` averaged
        over seeds; ``curve (method, order, seed, sample, step)``. A tidy table:
        ``ds[["estimate", "ci_low", "ci_high"]].to_dataframe()``. Select a method with a dict,
        ``ds.sel({"method": "lrp"})``: ``sel(method=...)`` is xarray's own keyword.
    """
    if not isinstance(explanations, Mapping) or not explanations:
        raise InputError("explanations must be a non-empty mapping {method label: relevance or None}")
    labels = list(explanations)
    if any(not isinstance(k, str) or not k for k in labels):
        raise InputError(f"method labels must be non-empty strings, got {labels!r}")
    try:
        seeds = [int(s) for s in seeds]
    except TypeError:
        raise InputError("seeds must be a sequence of ints") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct and at least one, got {seeds!r}")
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level must be in (0, 1), got {level!r}")
    if int(n_boot) < 1:
        raise InputError(f"n_boot must be >= 1, got {n_boot!r}")
    xt = _as_tensor(x)
    if target is None:
        targets = {}
        for k, R in explanations.items():
            if isinstance(R, xr.DataArray) and "target" in R.coords and R.coords["target"].ndim == 1:
                targets[k] = np.asarray(R.coords["target"].values)
        if targets:
            first = next(iter(targets.values()))
            differ = [k for k, t in targets.items() if t.shape != first.shape or (t != first).any()]
            if differ:
                raise InputError(f"the explanations {differ} explain other targets than "
                                 f"{next(iter(targets))!r}; explain the same classes, or pass target=")
            target = first
    kw = dict(steps=steps, regions_per_step=regions_per_step, patch=patch, removal=removal, target=target,
              value_range=value_range, batch_size=batch_size, x_dims=x_dims, ties=ties, progress=progress)
    # the random order removes the same regions as the explanations do (e.g. whole pixel patches
    # across colour channels), so it ranks a zero map shaped like the first explanation
    template = next((R for R in explanations.values() if R is not None), None)
    if isinstance(template, xr.DataArray):
        template = xr.zeros_like(template)
    elif template is not None:
        template = np.zeros(np.shape(np.asarray(template)))
    curves, bdim, sample_coords, n_regions = [], None, {}, None
    for label in labels:
        R = explanations[label]
        if R is None:
            morf = perturbation_curve(model, xt, template, order="random", seed=seeds, **kw)
            lerf = perturbation_curve(model, xt, template, order="random", seed=[s + 1000003 for s in seeds],
                                      **kw)
            lerf = lerf.assign_coords(seed=morf.coords["seed"].values)
        else:
            morf = perturbation_curve(model, xt, R, order="morf", seed=seeds, **kw)
            lerf = perturbation_curve(model, xt, R, order="lerf", seed=seeds, **kw)
        if n_regions is None:
            n_regions = int(morf.attrs["n_regions"])
        if bdim is None:
            bdim = morf.dims[1]
            sample_coords = {n: c.values for n, c in morf.coords.items() if c.dims == (bdim,)}
        elif morf.dims[1] != bdim:
            morf = morf.rename({morf.dims[1]: bdim})
            lerf = lerf.rename({lerf.dims[1]: bdim})
        curves.append(np.stack([morf.transpose("seed", bdim, "step").values,
                                lerf.transpose("seed", bdim, "step").values]))
    curve = np.stack(curves)  # (method, order, seed, sample, step)
    f0 = curve[..., :1]
    a_morf = (f0[:, 0] - curve[:, 0]).mean(axis=-1).mean(axis=1)  # (method, sample)
    a_lerf = (f0[:, 1] - curve[:, 1]).mean(axis=-1).mean(axis=1)
    a_bpc = (curve[:, 1] - curve[:, 0]).mean(axis=-1).mean(axis=1)
    score = np.stack([a_morf, a_lerf, a_bpc], axis=1)  # (method, metric, sample)
    stats = np.array([[_bootstrap(score[i, j], int(n_boot), float(level), int(bootstrap_seed))
                       for j in range(score.shape[1])] for i in range(score.shape[0])])
    metrics = list(COMPARE_METRICS)
    n_steps = curve.shape[-1]
    coords: dict[str, Any] = {"method": labels, "metric": metrics, "order": ["morf", "lerf"], "seed": seeds,
                              "step": np.arange(n_steps)}
    for n, v in sample_coords.items():
        coords[n] = (bdim, v)
    ds = xr.Dataset({"estimate": (("method", "metric"), stats[..., 0]),
                     "ci_low": (("method", "metric"), stats[..., 1]),
                     "ci_high": (("method", "metric"), stats[..., 2]),
                     "score": (("method", "metric", bdim), score),
                     "curve": (("method", "order", "seed", bdim, "step"), curve)}, coords=coords)
    ds.attrs = {"description": "region perturbation: AOPC of the MoRF and LeRF curves and ABPC per method, mean "
                               "over samples of the seed-averaged scores, percentile bootstrap intervals over "
                               "samples",
                "level": float(level), "n_boot": int(n_boot), "bootstrap_seed": int(bootstrap_seed),
                "removal": str(morf.attrs.get("removal")), "patch": list(patch) if patch else "none",
                "regions_per_step": int(regions_per_step), "steps": int(n_steps - 1),
                "n_regions": int(n_regions),
                "better": "; ".join(f"{k}: {v}" for k, v in COMPARE_METRICS.items()),
                "random_lerf_seed_offset": 1000003, "sciexplain_version": __version__}
    return ds
