"""Evaluating every sample of a data set chunk by chunk: perturbation curves, continuity, randomization."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import InputError, SciexplainError
from ..evaluate.explanation_continuity import continuity
from ..evaluate.parameter_randomization import _parametrized_layers, randomization
from ..evaluate.perturbation import perturbation_curve
from ..explain.engine import _eval_mode
from .explain_runner import _explain_batch
from .jobs import SampleError, _chunks, _evaluation_jobs, _evaluation_setup, _Job, _target_slice, _targets
from .schedulers import MODEL_LOCK, _run_jobs
from .sources import _ArraySource, _as_source, _Slice
from .stores import _own_store, _RelevanceSlices


def _dataset_statistics(source: Any, chunk: int) -> tuple[float, float, np.ndarray]:
    """min, max and per-feature mean of the data, one chunk at a time (float64 sums)."""
    low, high, total = math.inf, -math.inf, None
    n = source.shape[0]
    for start, stop in _chunks(n, chunk):
        part = source.read(start, stop).astype(np.float64)
        low, high = min(low, float(part.min())), max(high, float(part.max()))
        s = part.sum(axis=0)
        total = s if total is None else total + s
    return low, high, total / n


def _perturb_chunk(model: Any, job: _Job) -> xr.DataArray:
    import torch

    x = torch.from_numpy(job.inputs())
    R = job.extra["relevance"].read(job.start, job.stop) if job.extra["relevance"] is not None else None
    kwargs = dict(job.extra["kwargs"])
    seed = int(kwargs.pop("seed")) + job.index  # one stream per chunk: the same on every scheduler
    try:
        with MODEL_LOCK:
            curve = perturbation_curve(model, x, R, seed=seed, target=job.target, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"perturbation curve of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    bdim = curve.dims[0]
    return curve.assign_coords({bdim: np.arange(job.start, job.stop)})


def perturbation_dataset(model: Any, data: Any, relevance: xr.DataArray | None, *, chunk: int = 256,
                         scheduler: Any = "threads", order: str = "morf", steps: int | None = None,
                         removal: Any = "uniform", patch: Sequence[int] | None = None, target: Any = None,
                         seed: int = 0, value_range: tuple[float, float] | None = None, regions_per_step: int = 1,
                         batch_size: int = 256, ties: str = "stable", x_dims: Sequence[str] | None = None,
                         n_workers: int | None = None, progress: bool = True) -> xr.DataArray:
    """Perturbation curves of a whole data set, chunk by chunk, on a Dask scheduler.

    Each chunk runs :func:`sciexplain.evaluate.perturbation_curve` on its samples and their
    relevance (read from the relevance's store in the worker when it came from
    :func:`explain_dataset`). Removals that depend on the batch are fixed for the whole data set
    first, so that a chunk sees the same removal as the full set would: ``"uniform"`` noise over
    the data set's min..max (unless ``value_range`` is given) and ``"mean"`` the data set's
    per-feature mean. The noise and random orders are seeded per chunk (``seed + chunk index``),
    so the curves depend on ``seed`` and ``chunk``, never on the scheduler.

    Parameters
    ----------
    model, data
        As for :func:`explain_dataset`.
    relevance : xarray.DataArray or None
        One explanation per sample, batch dim first (None for ``order="random"``).
    chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset`.
    order, steps, removal, patch, target, seed, value_range, regions_per_step, batch_size, ties, x_dims
        As for :func:`sciexplain.evaluate.perturbation_curve`.

    Returns
    -------
    xarray.DataArray
        ``(sample, step)`` curves of all samples in order; pass it to
        :func:`sciexplain.evaluate.aopc`. attrs say the removal used on the data set.
    """
    import torch

    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"chunk must be a positive number of samples, got {chunk!r}")
    source = _as_source(data.values if isinstance(data, xr.DataArray) and data.chunks is None else data)
    n = source.shape[0]
    if relevance is not None:
        if not isinstance(relevance, xr.DataArray) or relevance.shape[0] != n:
            raise InputError(f"relevance must be a DataArray with {n} samples along its first dim")
    removal_note = None
    if isinstance(removal, str) and removal in ("uniform", "mean"):
        low, high, mean = _dataset_statistics(source, chunk)
        if removal == "uniform" and value_range is None:
            value_range = (low, high)
            removal_note = f"uniform noise over the data set's range [{low:.6g}, {high:.6g}]"
        elif removal == "mean":
            removal = torch.from_numpy(mean.astype(source.dtype))[None]
            removal_note = "the data set's per-feature mean"
    store = _own_store(relevance)
    rel = None if relevance is None else _RelevanceSlices(relevance, store)
    if target is not None and not isinstance(target, (int, np.integer)):
        target = _targets(target, n)
    kwargs = {"steps": steps, "order": order, "removal": removal, "patch": patch, "seed": seed,
              "value_range": value_range, "regions_per_step": regions_per_step, "batch_size": batch_size,
              "ties": ties, "x_dims": x_dims}
    local = scheduler in ("serial", "sync", "synchronous", "threads")
    jobs = []
    for i, (start, stop) in enumerate(_chunks(n, chunk)):
        job_source = source if (local or not isinstance(source, _ArraySource)) else _Slice(source, start, stop)
        jobs.append(_Job(i, start, stop, source=job_source, target=_target_slice(target, start, stop),
                         extra={"relevance": rel, "kwargs": kwargs}))
    curves = _run_jobs(_perturb_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                       desc=f"perturbation ({order})")
    out = xr.concat(curves, dim=curves[0].dims[0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs["chunk"] = chunk
    out.attrs["seed"] = f"{seed} + chunk index"
    if removal_note:
        out.attrs["removal"] = removal_note
    return out


def continuity_path(x: np.ndarray, index: int, *, points: int = 8, radius: float = 0.1, seed: int = 0) -> np.ndarray:
    """The path of inputs along which :func:`continuity_dataset` explains sample ``index``.

    A straight line from the sample ``x`` (one sample, no batch dim) in a random direction
    ``u`` (standard normal, drawn from ``numpy.random.default_rng([seed, index])``, so it depends
    on the seed and the sample's position in the data set, never on the chunking), of length
    ``radius * ||x||_2`` (``radius * sqrt(x.size)`` for an all-zero sample), in ``points``
    equal steps: ``x_k = x + k / (points - 1) * length * u / ||u||_2``, ``k = 0..points-1``.

    Returns
    -------
    numpy.ndarray
        ``(points,) + x.shape``, in ``x``'s dtype.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"continuity needs float inputs (a path of inputs between them); got dtype {x.dtype}. "
                         "Integer inputs such as token ids have no path between them")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise InputError(f"points must be an integer >= 2 (inputs along each path), got {points!r}")
    if not (isinstance(radius, (int, float, np.floating)) and not isinstance(radius, bool) and radius > 0):
        raise InputError(f"radius must be a positive number (the path's length relative to ||x||), got {radius!r}")
    u = np.random.default_rng([int(seed), int(index)]).standard_normal(x.shape)
    norm = float(np.linalg.norm(x.astype(np.float64)))
    length = float(radius) * (norm if norm > 0 else math.sqrt(x.size))
    steps = np.arange(points, dtype=np.float64) / (points - 1)
    u = u * (length / float(np.linalg.norm(u)))
    return (x.astype(np.float64)[None] + steps.reshape((-1,) + (1,) * x.ndim) * u[None]).astype(x.dtype)


def _predicted_targets(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with MODEL_LOCK, _eval_mode(model), torch.no_grad():
        out = model(torch.from_numpy(x))
    return out.argmax(dim=1).numpy().astype(np.int64)


def _continuity_chunk(model: Any, job: _Job) -> xr.Dataset:
    import torch

    spec, opts = job.extra["spec"], job.extra["options"]
    x = job.inputs()
    n = len(x)
    try:
        targets = _predicted_targets(model, x) if job.target is None else np.broadcast_to(
            np.asarray(job.target, dtype=np.int64), (n,))
        ratios, dists, changes = [], [], []
        for k in range(n):
            path = continuity_path(x[k], job.start + k, points=opts["points"], radius=opts["radius"], seed=opts["seed"])
            t = int(targets[k])
            c = continuity(lambda z, t=t: _explain_batch(model, z.numpy() if isinstance(z, torch.Tensor) else z,
                                                        t, spec), torch.from_numpy(path))
            ratios.append(c.values)
            dists.append(c.coords["distance"].values)
            changes.append(c.coords["relevance_change"].values)
    except SciexplainError:
        raise
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"continuity of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    ratio = np.stack(ratios)
    bdim = spec["dims"][0]
    return xr.Dataset({"ratio": ((bdim, "pair"), ratio), "distance": ((bdim, "pair"), np.stack(dists)),
                       "relevance_change": ((bdim, "pair"), np.stack(changes)),
                       "continuity": ((bdim,), ratio.max(axis=1))},
                      coords={bdim: np.arange(job.start, job.stop), "pair": np.arange(ratio.shape[1]),
                              "target": ((bdim,), np.asarray(targets, dtype=np.int64))})


def continuity_dataset(model: Any, data: Any, *, chunk: int = 256, scheduler: Any = "threads", points: int = 8,
                       radius: float = 0.1, seed: int = 0, target: Any = None, dims: Sequence[str] | None = None,
                       coords: Mapping[str, Any] | None = None, n_workers: int | None = None, progress: bool = True,
                       **explain_kwargs: Any) -> xr.Dataset:
    """Explanation continuity of every sample of a data set, chunk by chunk, on a Dask scheduler.

    Each sample is explained along a short straight path of ``points`` inputs leaving it in a
    seeded random direction (:func:`continuity_path`), for one fixed class (``target``, default
    the class predicted at the sample), and :func:`sciexplain.evaluate.continuity` gives the
    ratio ``||R(x) - R(x')||_1 / ||x - x'||_2`` of every consecutive pair; a sample's continuity
    is the maximum. The path of a sample depends only on ``seed`` and its position, so the result
    is the same for every chunking and every scheduler.

    Parameters
    ----------
    model, data, chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset` (float inputs only: token ids have no path between them).
    points : int
        Inputs per path (>= 2).
    radius : float
        The path's length relative to ``||x||_2``.
    seed : int
        Seeds the directions.
    target : None, int or sequence of int
        The class explained along each path; None: the class predicted at the sample.
    dims, coords
        Names of the dims and non-batch coordinates of the explanations, as for :func:`explain_dataset`.
    **explain_kwargs
        ``method``, ``preset``, ``bounds``, ``max_pool`` and method options, as for :func:`sciexplain.explain`.

    Returns
    -------
    xarray.Dataset
        ``ratio``, ``distance`` and ``relevance_change`` per sample and pair, ``continuity`` per
        sample (the maximum ratio), coord ``target``; attrs say how the paths were made.
    """
    source, n, spec, target = _evaluation_setup(model, data, chunk, dims, coords, target, explain_kwargs)
    opts = {"points": points, "radius": radius, "seed": int(seed)}
    continuity_path(source.read(0, 1)[0], 0, **opts)  # checks the dtype and the options before any work
    jobs = _evaluation_jobs(source, n, int(chunk), scheduler, target, {"spec": spec, "options": opts})
    parts = _run_jobs(_continuity_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                      desc=f"continuity of {n} samples")
    out = xr.concat(parts, dim=spec["dims"][0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs = {"method": spec["method"], "points": int(points), "radius": float(radius), "seed": int(seed),
                 "chunk": int(chunk),
                 "path": ("straight line from each sample in a random direction drawn from "
                          "numpy.random.default_rng([seed, sample index]), length radius * ||x||_2, points equal steps"),
                 "description": "||R(x) - R(x')||_1 / ||x - x'||_2 per consecutive pair of each path; continuity = "
                                "the maximum per sample (Montavon et al. 2017, Sec. 7.1)",
                 "sciexplain_version": __version__}
    return out


def _randomization_chunk(model: Any, job: _Job) -> xr.Dataset:
    spec, opts = job.extra["spec"], job.extra["options"]
    x = job.inputs()
    kwargs = {"preset": spec["preset"], "bounds": spec["bounds"], "max_pool": spec["max_pool"],
              "dims": spec["dims"], "coords": spec["coords"], **spec["options"]}
    if job.target is not None:
        kwargs["target"] = job.target
    try:
        with MODEL_LOCK:
            out = randomization(model, x, spec["method"], opts["cascade"], seed=opts["seed"], layers=opts["layers"],
                                **kwargs)
    except SciexplainError:
        raise
    except Exception as err:  # noqa: BLE001
        raise SampleError(f"randomization of samples {job.start}..{job.stop - 1} (chunk {job.index}) failed: "
                          f"{type(err).__name__}: {err}", None, job.index) from err
    bdim = spec["dims"][0]
    keep = [c for c in out.coords if c in ("layer", "target", "prediction")]
    out = out.reset_coords([c for c in out.coords if c not in keep and c != bdim], drop=True)
    return out.assign_coords({bdim: np.arange(job.start, job.stop)})


def randomization_dataset(model: Any, data: Any, *, chunk: int = 256, scheduler: Any = "threads",
                          cascade: bool = True, seed: int = 0, layers: Sequence[str] | None = None,
                          target: Any = None, dims: Sequence[str] | None = None,
                          coords: Mapping[str, Any] | None = None, n_workers: int | None = None,
                          progress: bool = True, **explain_kwargs: Any) -> xr.Dataset:
    """The model-parameter randomization test of every sample, chunk by chunk, on a Dask scheduler.

    Each chunk runs :func:`sciexplain.evaluate.randomization` on its samples. The randomized
    copies of the model are drawn from ``seed`` alone, and the layers are fixed once for the
    data set (by default every module with parameters on the forward path of the first sample,
    top first), so every chunk compares against the same randomized models: the result is that
    of one call on the whole data set, on every scheduler.

    Parameters
    ----------
    model, data, chunk, scheduler, n_workers, progress
        As for :func:`explain_dataset`.
    cascade, seed, layers
        As for :func:`sciexplain.evaluate.randomization`.
    target : None, int or sequence of int
        The class explained (the trained model's prediction by default), the same for every copy.
    dims, coords
        Names of the dims and non-batch coordinates, as for :func:`explain_dataset`.
    **explain_kwargs
        ``method`` (default ``"lrp"``), ``preset``, ``bounds``, ``max_pool`` and method options.

    Returns
    -------
    xarray.Dataset
        ``spearman`` and ``spearman_abs`` with dims ``(layer, sample)``.
    """
    import torch

    source, n, spec, target = _evaluation_setup(model, data, chunk, dims, coords, target, explain_kwargs)
    if layers is None:
        with MODEL_LOCK, _eval_mode(model):
            layers = list(reversed(_parametrized_layers(model, torch.from_numpy(source.read(0, 1)))))
    opts = {"cascade": bool(cascade), "seed": int(seed), "layers": list(layers)}
    jobs = _evaluation_jobs(source, n, int(chunk), scheduler, target, {"spec": spec, "options": opts})
    parts = _run_jobs(_randomization_chunk, model, jobs, scheduler, n_workers=n_workers, progress=progress,
                      desc=f"randomization of {n} samples")
    out = xr.concat(parts, dim=spec["dims"][0], coords="minimal", compat="override", combine_attrs="override")
    out.attrs = {**parts[0].attrs, "chunk": int(chunk), "layers": ", ".join(opts["layers"])}
    return out
