"""Measuring the quality of explanations.

``perturbation_curve``  region perturbation / pixel flipping (Bach et al. 2015; Samek et al.
                        2017, "Evaluating the visualization of what a deep neural network has
                        learned"): remove the most (MoRF) or least (LeRF) relevant regions
                        first and record how the explained output falls
``aopc``, ``abpc``      area over the MoRF perturbation curve (Samek et al. 2017) and the area
                        between the LeRF and MoRF curves
``continuity``          the largest ratio ||R(x) - R(x')||_1 / ||x - x'||_2 along a path of
                        inputs (Montavon et al. 2017, Sec. 7.1)
``input_invariance``    explanations of a model and of its twin that sees shifted inputs and
                        absorbs the shift in its first bias (Kindermans et al. 2017)
``randomization``       model-parameter randomization test (Adebayo et al. 2018)
``bootstrap_ci``        percentile bootstrap confidence interval of a mean over samples
``compare``             several explanations of one batch side by side: MoRF/LeRF curves over
                        several noise seeds, AOPC and ABPC with bootstrap confidence intervals,
                        as one tidy Dataset (methods x metrics)

The perturbation functions accept any callable model (an ``nn.Module`` or e.g. a Fisher-vector
pipeline ``f(x_batch) -> scores``): it is called on tensors and may return a tensor or an array.

Everything works on batches and returns labelled xarray objects; the sample dim is the batch
dim of the explanation evaluated (``"sample"`` for plain arrays).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import ExplainWarning, InputError

__all__ = ["perturbation_curve", "aopc", "abpc", "bootstrap_ci", "compare", "continuity", "input_invariance",
           "randomization"]

_REMOVALS = ("uniform", "zero", "mean")
_ORDERS = ("morf", "lerf", "random")


# -- inputs and relevance ---------------------------------------------------------------------

def _as_tensor(x: Any, what: str = "x") -> torch.Tensor:
    if isinstance(x, xr.DataArray):
        x = x.values
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError(f"{what} is an object array; pass numbers")
        x = torch.from_numpy(np.array(x, copy=True))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor or numpy array with the batch dim first, got "
                         f"{type(x).__name__}")
    if x.ndim < 2:
        raise InputError(f"{what} has shape {tuple(x.shape)}: it needs a batch dim first, shape (batch, ...)")
    if x.shape[0] == 0:
        raise InputError(f"{what} is an empty batch")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise InputError(f"{what} contains NaN/Inf")
    return x.detach()


def _batch_dim_of(R: xr.DataArray) -> str:
    if "prediction" in R.coords and R.coords["prediction"].ndim == 1:
        return R.coords["prediction"].dims[0]
    return R.dims[0]


def _embeddings(x_shape: Sequence[int], r_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Every increasing choice of x axes whose sizes equal ``r_shape`` (axes counted without batch)."""
    out = []
    for axes in itertools.combinations(range(len(x_shape)), len(r_shape)):
        if all(x_shape[a] == n for a, n in zip(axes, r_shape)):
            out.append(axes)
    return out


def _align_relevance(R: Any, x: torch.Tensor, x_dims: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, tuple[int, ...], dict]:
    """Relevance as a float64 array ``(batch, ...)`` and the axes of ``x`` (without batch) it covers.

    Dims are matched by name when ``x_dims`` (names of x's dims, batch first) is given and ``R``
    is a DataArray; otherwise by shape: R's dims after the batch must equal x's dims after the
    batch, or a subsequence of them (R pooled over e.g. a colour dim: a position of R then stands
    for all entries of x along the pooled dims). An ambiguous shape match is an error.
    """
    info: dict[str, Any] = {"batch_dim": "sample", "batch_coords": {}, "target": None, "prediction": None,
                            "method": None}
    x_shape = tuple(x.shape[1:])
    if isinstance(R, xr.DataArray):
        bdim = _batch_dim_of(R)
        if R.dims[0] != bdim:
            R = R.transpose(bdim, ...)
        info["batch_dim"] = bdim
        for name, c in R.coords.items():
            if c.dims == (bdim,) and name not in ("prediction", "absorbed", "filtered_out"):
                info["batch_coords"][name] = c.values
        if "target" in R.coords and R.coords["target"].ndim == 1:
            info["target"] = np.asarray(R.coords["target"].values)
        if "prediction" in R.coords and R.coords["prediction"].ndim == 1:
            info["prediction"] = np.asarray(R.coords["prediction"].values, dtype=np.float64)
        info["method"] = R.attrs.get("method")
        names = list(R.dims[1:])
        values = np.asarray(R.values, dtype=np.float64)
    else:
        if isinstance(R, torch.Tensor):
            R = R.detach().cpu().numpy()
        try:
            values = np.asarray(R, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"R must be a DataArray, tensor or numeric array: {err}") from None
        names = None
    if values.ndim < 1 or values.shape[0] != x.shape[0]:
        raise InputError(f"R has shape {values.shape} but x has a batch of {x.shape[0]}: give one "
                         "explanation per sample of x, batch dim first")
    if np.isnan(values).any():
        raise InputError(f"R contains {int(np.isnan(values).sum())} NaN value(s); rank only finite relevance")
    r_shape = values.shape[1:]
    if x_dims is not None and names is not None:
        x_dims = list(x_dims)
        if len(x_dims) != x.ndim:
            raise InputError(f"x_dims has {len(x_dims)} names for x with {x.ndim} dims (batch first)")
        missing = [n for n in names if n not in x_dims[1:]]
        if missing:
            raise InputError(f"R's dims {missing} are not among x_dims {x_dims[1:]}")
        axes = tuple(x_dims[1:].index(n) for n in names)
        order = np.argsort(axes)
        axes = tuple(sorted(axes))
        values = values.transpose(0, *(int(i) + 1 for i in order))
        if tuple(x_shape[a] for a in axes) != values.shape[1:]:
            raise InputError(f"R's dims {names} have sizes {r_shape}, x's dims {[x_dims[a + 1] for a in axes]} "
                             f"have sizes {[x_shape[a] for a in axes]}")
        return values, axes, info
    found = _embeddings(x_shape, r_shape)
    if not found:
        raise InputError(f"R of shape {values.shape} does not match x of shape {tuple(x.shape)}: after the "
                         "batch dim, R's dims must equal x's, or be a subsequence of them (relevance pooled "
                         "over e.g. a colour dim)")
    if len(found) > 1:
        raise InputError(f"R of shape {values.shape} matches x of shape {tuple(x.shape)} in {len(found)} "
                         f"ways ({found}); pass x_dims= (names of x's dims, batch first) to match R's dims "
                         "by name")
    return values, found[0], info


def _regions(r_shape: tuple[int, ...], patch: Sequence[int] | None) -> tuple[np.ndarray, int, tuple]:
    """Region index of every relevance position: patches over the last ``len(patch)`` dims."""
    if patch is None:
        ids = np.arange(int(np.prod(r_shape, dtype=np.int64)), dtype=np.int64).reshape(r_shape)
        return ids, ids.size, r_shape
    patch = tuple(int(p) for p in patch)
    if not patch or len(patch) > len(r_shape) or any(p < 1 for p in patch):
        raise InputError(f"patch={patch} must give 1..{len(r_shape)} positive sizes for the last dims of the "
                         f"relevance (shape {r_shape})")
    lead = r_shape[: len(r_shape) - len(patch)]
    tail = r_shape[len(r_shape) - len(patch):]
    grid = lead + tuple(math.ceil(n / p) for n, p in zip(tail, patch))
    index = np.indices(r_shape, dtype=np.int64)
    coarse = [index[i] for i in range(len(lead))]
    coarse += [index[len(lead) + j] // patch[j] for j in range(len(patch))]
    ids = np.ravel_multi_index(coarse, grid)
    return ids, int(np.prod(grid, dtype=np.int64)), grid


def _region_members(elem_region: np.ndarray, n_regions: int) -> torch.Tensor:
    """(n_regions, m) element indices of each region; short regions repeat their first element."""
    order = np.argsort(elem_region, kind="stable")
    counts = np.bincount(elem_region, minlength=n_regions)
    if (counts == 0).any():  # cannot happen for regions built from positions
        raise AssertionError("empty region")  # pragma: no cover
    m = int(counts.max())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cols = np.arange(m)[None, :]
    pos = starts[:, None] + np.minimum(cols, counts[:, None] - 1)
    return torch.from_numpy(order[pos].astype(np.int64))


def _replacement(x: torch.Tensor, removal: Any, value_range, gen: torch.Generator) -> tuple[torch.Tensor | None, str]:
    if callable(removal) and not isinstance(removal, (str, torch.Tensor, np.ndarray)):
        return None, f"callable {getattr(removal, '__qualname__', type(removal).__name__)}"
    if isinstance(removal, str):
        if removal not in _REMOVALS:
            raise InputError(f"unknown removal {removal!r}; choose one of {_REMOVALS}, a baseline tensor, or a "
                             "callable removal(x_batch, mask) -> x_batch")
        if removal == "zero":
            return torch.zeros_like(x), "zero"
        if not x.is_floating_point():
            raise InputError(f"removal={removal!r} needs a float input; for integer input (token ids) pass a "
                             "baseline tensor or a callable")
        if removal == "mean":
            return x.mean(dim=0, keepdim=True).expand_as(x).clone(), "mean (per-feature mean over the batch)"
        if value_range is None:
            lo, hi = float(x.min()), float(x.max())
        else:
            if len(value_range) != 2 or not float(value_range[0]) <= float(value_range[1]):
                raise InputError(f"value_range must be (low, high) with low <= high, got {value_range!r}")
            lo, hi = float(value_range[0]), float(value_range[1])
        noise = torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
        return lo + (hi - lo) * noise, f"uniform noise in [{lo:.6g}, {hi:.6g}]"
    if isinstance(removal, (int, float)) and not isinstance(removal, bool):
        return torch.full_like(x, float(removal)), f"constant {removal}"
    if not isinstance(removal, (torch.Tensor, np.ndarray)):
        raise InputError(f"removal must be one of {_REMOVALS}, a number, a baseline tensor or a callable "
                         f"removal(x_batch, mask) -> x_batch, got {type(removal).__name__}")
    base = torch.as_tensor(np.asarray(removal) if isinstance(removal, np.ndarray) else removal).detach()
    if base.is_floating_point() and not bool(torch.isfinite(base).all()):
        raise InputError("the removal baseline contains NaN/Inf")
    try:
        return torch.broadcast_to(base.to(x.dtype), x.shape).clone(), "baseline tensor"
    except RuntimeError:
        raise InputError(f"the baseline of shape {tuple(base.shape)} does not broadcast to x of shape "
                         f"{tuple(x.shape)}") from None


def _select_output(out: Any, t: torch.Tensor, check: bool = True) -> torch.Tensor:
    if isinstance(out, np.ndarray) and out.dtype != object:
        out = torch.from_numpy(np.asarray(out, dtype=np.float64))
    if check and not isinstance(out, torch.Tensor):
        raise InputError(f"the model returned {type(out).__name__}; perturbation curves need one output "
                         "tensor or numeric array of shape (batch, n_outputs) or (batch,)")
    if out.ndim == 2:
        if check and bool(((t < 0) | (t >= out.shape[1])).any()):
            raise InputError(f"target {int(t.max())} out of range for a model with {out.shape[1]} outputs")
        return out.gather(1, t[:, None])[:, 0]
    if out.ndim == 1:
        return out
    raise InputError(f"the model output has shape {tuple(out.shape)}; expected (batch, n_outputs) or (batch,)")


def _model_mode(model: nn.Module | Callable):
    """Eval mode for modules (flags restored afterwards); any other callable is used as it is."""
    if isinstance(model, nn.Module):
        from ..explain.engine import _eval_mode
        return _eval_mode(model)
    if not callable(model):
        raise InputError(f"model must be a torch.nn.Module or a callable f(x_batch) -> scores, got "
                         f"{type(model).__name__}")
    return contextlib.nullcontext()


def _as_output(out: Any) -> Any:
    """A model's output as a tensor (numeric arrays from non-torch pipelines are converted)."""
    if isinstance(out, np.ndarray) and out.dtype != object:
        return torch.from_numpy(np.asarray(out, dtype=np.float64))
    return out


# -- perturbation curves ----------------------------------------------------------------------

def perturbation_curve(model: nn.Module | Callable, x: Any, R: Any = None, *, steps: int | None = None,
                       order: str = "morf", removal: str | torch.Tensor | np.ndarray | Callable = "uniform",
                       patch: Sequence[int] | None = None, target: Any = None, batch_size: int = 256,
                       seed: int | Sequence[int] = 0, regions_per_step: int = 1,
                       value_range: tuple[float, float] | None = None,
                       x_dims: Sequence[str] | None = None, ties: str = "stable",
                       progress: bool = False) -> xr.DataArray:
    """Region perturbation: the explained output as the most (or least) relevant regions are removed.

    At step ``k`` the ``k * regions_per_step`` top-ranked regions of each sample are removed
    (cumulatively) and ``f(x^(k))``, the target output of the model, is recorded; step 0 is
    the unperturbed input, so it equals ``R.prediction`` for an explanation of the model's
    logits.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A module is evaluated in eval mode (its training flags are restored) and left
        unchanged. Any other callable ``model(x_batch) -> scores`` (a tensor or numeric array
        of shape (batch, n_outputs) or (batch,)) is called as it is, e.g. a Fisher-vector
        pipeline.
    x : tensor or array, shape (batch, ...)
        The inputs that ``R`` explains.
    R : xarray.DataArray or array, optional
        One explanation per sample. **How dims are matched**: the dims after R's batch dim
        (the dim carrying ``prediction``, else the first) must equal x's dims after the batch,
        or be a subsequence of them in the same order, e.g. R ``(image, y, x)`` pooled over
        colour for x ``(batch, 3, H, W)``: a removed position then removes all channels at
        that position. When the sizes leave the match ambiguous, pass ``x_dims`` (names of x's
        dims, batch first) and the DataArray's dims are matched by name. ``R`` may be None for
        ``order="random"`` (every entry of x is then a feature).
    steps : int, optional
        Number of perturbation steps L after step 0; default: until every region is removed.
        More steps than ``n_regions / regions_per_step`` is an error.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a random order per sample, reproducible
        with ``seed``.
    removal : {"uniform", "zero", "mean"}, tensor or callable
        What a removed feature becomes. ``"uniform"``: uniform noise over the input's range
        (``value_range``, default min..max of x over the batch), drawn once per sample so
        that removal is cumulative (the papers' choice for images); ``"zero"``; ``"mean"``: the
        per-feature mean over the batch; a baseline tensor broadcastable to x; or a callable
        ``removal(x_batch, mask) -> x_batch`` (``mask`` a bool tensor like ``x_batch``, True
        where removed, cumulative) that plugins supply.
    patch : tuple of int, optional
        Pool relevance over non-overlapping patches of the last ``len(patch)`` dims of R
        (e.g. ``(4, 4)`` on ``(y, x)``) before ranking; a patch is then removed as a whole.
        Sizes that do not divide the dims leave smaller patches at the far edges.
    target : int or sequence, optional
        The output to record; default ``R.target``, else the class predicted at step 0.
    batch_size : int
        Perturbed copies evaluated per forward pass (copies of successive steps share a batch
        when the batch of samples is smaller).
    seed : int or sequence of int
        Seeds the uniform noise, the random order and random ties. A sequence runs one curve
        per seed (e.g. several noise draws) and stacks them along a leading ``seed`` dim.
    regions_per_step : int
        Regions removed per step.
    value_range : (low, high), optional
        Range of the uniform noise; default min..max of x over the batch.
    x_dims : sequence of str, optional
        Names of x's dims (batch first), to match a DataArray ``R`` by dim name.
    ties : {"stable", "random"}
        Order of regions with equal relevance (e.g. the exact zeros that LRP and gradient x
        input give a black background): by position (first region first), or in a random
        order drawn from ``seed``, so that ties do not favour one corner of the input.
    progress : bool
        Show a tqdm bar over the forward passes.

    Notes
    -----
    Cost: ``steps + 1`` forward passes over the batch (in chunks of ``batch_size``), plus
    one ranking of the regions and, per step, an in-place update of the entries removed at
    that step; the flat indices of all removed entries are computed once (int64, at most one
    per entry of x).

    Returns
    -------
    xarray.DataArray
        ``(sample, step)`` (``(seed, sample, step)`` for a sequence of seeds), with step 0
        unperturbed; coords ``removed`` (regions removed),
        ``removed_fraction``, ``target`` per sample; attrs ``order``, ``removal``, ``patch``,
        ``n_regions``, ``regions_per_step``.

    Raises
    ------
    InputError
        Mismatched shapes of x and R, too many steps, an unknown order or removal, NaN in R.
    """
    if not isinstance(seed, (int, np.integer)):
        try:
            seeds = [int(v) for v in seed]
        except TypeError:
            raise InputError(f"seed must be an int or a sequence of ints, got {type(seed).__name__}") from None
        if not seeds:
            raise InputError("seed is an empty sequence; give at least one seed")
        if len(set(seeds)) != len(seeds):
            raise InputError(f"seed lists a seed twice: {seeds}")
        curves = [perturbation_curve(model, x, R, steps=steps, order=order, removal=removal, patch=patch,
                                     target=target, batch_size=batch_size, seed=sd,
                                     regions_per_step=regions_per_step, value_range=value_range, x_dims=x_dims,
                                     ties=ties, progress=progress) for sd in seeds]
        out = xr.concat(curves, dim="seed", coords="minimal", compat="override", combine_attrs="override")
        out = out.assign_coords(seed=np.asarray(seeds, dtype=np.int64))
        out.attrs["seed"] = np.asarray(seeds, dtype=np.int64)
        return out
    xt = _as_tensor(x)
    if order not in _ORDERS:
        raise InputError(f"unknown order {order!r}; choose one of {_ORDERS}")
    if ties not in ("stable", "random"):
        raise InputError(f"ties must be 'stable' or 'random', got {ties!r}")
    if int(batch_size) < 1 or int(regions_per_step) < 1:
        raise InputError("batch_size and regions_per_step must be >= 1")
    B = xt.shape[0]
    if R is None:
        if order != "random":
            raise InputError(f"order={order!r} ranks by relevance: pass R (only order='random' works without)")
        values = np.zeros(tuple(xt.shape), dtype=np.float64)
        axes = tuple(range(xt.ndim - 1))
        info = {"batch_dim": "sample", "batch_coords": {}, "target": None, "prediction": None, "method": None}
    else:
        values, axes, info = _align_relevance(R, xt, x_dims)
    r_shape = values.shape[1:]
    region_of_r, n_regions, grid = _regions(r_shape, patch)
    max_steps = n_regions // int(regions_per_step)
    if steps is None:
        steps = max_steps
    steps = int(steps)
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if steps > max_steps:
        raise InputError(f"steps={steps} with regions_per_step={regions_per_step} needs "
                         f"{steps * regions_per_step} regions but there are only {n_regions} "
                         f"({'patches' if patch else 'features'}); use steps <= {max_steps}")

    # ranking: scores per region (sum of relevance in the region)
    rng = np.random.default_rng(seed)
    if order == "random":
        ranked = np.stack([rng.permutation(n_regions) for _ in range(B)])
    else:
        flat_r = torch.from_numpy(values.reshape(B, -1))
        scores = torch.zeros((B, n_regions), dtype=torch.float64).index_add_(
            1, torch.from_numpy(region_of_r.reshape(-1)), flat_r)
        if ties == "random":  # a random permutation first, then a stable sort: equal scores in random order
            perm = torch.from_numpy(np.stack([rng.permutation(n_regions) for _ in range(B)]))
            idx = torch.sort(scores.gather(1, perm), dim=1, descending=order == "morf", stable=True).indices
            ranked = perm.gather(1, idx).numpy()
        else:
            ranked = torch.sort(scores, dim=1, descending=order == "morf", stable=True).indices.numpy()

    # region of every entry of x (x's axes not covered by R are broadcast)
    x_shape = tuple(xt.shape[1:])
    expand = [1] * len(x_shape)
    for a, n in zip(axes, r_shape):
        expand[a] = n
    elem_region = np.broadcast_to(region_of_r.reshape(expand), x_shape).reshape(-1)
    members = _region_members(elem_region, n_regions)  # (n_regions, m)
    D = elem_region.size

    gen = torch.Generator().manual_seed(int(seed))
    repl, removal_text = _replacement(xt, removal, value_range, gen)
    custom = repl is None

    curve = np.empty((steps + 1, B), dtype=np.float64)
    from tqdm.auto import tqdm
    n_removed = int(regions_per_step)
    ranked_t = torch.from_numpy(ranked)
    offsets = (torch.arange(B, dtype=torch.int64) * D)[:, None]

    with _model_mode(model), torch.no_grad():
        # step 0, which also fixes the target when none is given
        t = None
        if target is None and info["target"] is not None:
            target = info["target"]
        outs0 = []
        for s in range(0, B, int(batch_size)):
            outs0.append(_as_output(model(xt[s:s + int(batch_size)])))
        if target is None:
            first = outs0[0]
            if not isinstance(first, torch.Tensor):
                _select_output(first, torch.zeros(1, dtype=torch.long))
            t = torch.cat([o.argmax(dim=1) if o.ndim == 2 else torch.zeros(len(o), dtype=torch.long)
                           for o in outs0])
        else:
            t = torch.as_tensor(np.asarray(target)).long().reshape(-1)
            if t.numel() == 1:
                t = t.expand(B).clone()
            if t.numel() != B:
                raise InputError(f"target has {t.numel()} entries for a batch of {B}")
        pos = 0
        for o in outs0:
            if not isinstance(o, torch.Tensor):
                _select_output(o, t)  # raises: the model must return a tensor or numeric array
            n = o.shape[0]
            curve[0, pos:pos + n] = _select_output(o, t[pos:pos + n]).double().numpy()
            pos += n
        if info["prediction"] is not None:
            gap = np.abs(curve[0] - info["prediction"])
            if (gap > 1e-4 + 1e-3 * np.abs(info["prediction"])).any():
                warnings.warn("f(x) at step 0 differs from R.prediction: R explains other inputs, another "
                              "model, or a model whose final softmax/sigmoid the engine stripped (the curve "
                              "records the model's output itself)", ExplainWarning, stacklevel=2)

        # a contiguous copy: flat_work must alias work (entries are written through it), and the
        # flat indices below assume C order also when x arrives transposed
        work = xt.clone(memory_format=torch.contiguous_format)
        flat_work = work.view(-1)
        flat_repl = repl.reshape(-1) if not custom else None
        mask = torch.zeros(xt.shape, dtype=torch.bool) if custom else None
        flat_mask = mask.view(-1) if custom else None

        # flat indices of the entries removed at each step, and their replacement values: (steps, B * per step)
        removed_idx = (members[ranked_t[:, : steps * n_removed]].reshape(B, steps, -1) + offsets[:, :, None])
        removed_idx = removed_idx.transpose(0, 1).reshape(steps, -1).contiguous()
        removed_val = None if custom else flat_repl[removed_idx]

        def step_batches() -> Iterator[tuple[int, int, int, torch.Tensor]]:
            for k in range(1, steps + 1):
                if custom:
                    flat_mask[removed_idx[k - 1]] = True
                else:
                    flat_work[removed_idx[k - 1]] = removed_val[k - 1]
                for s in range(0, B, int(batch_size)):
                    e = min(B, s + int(batch_size))
                    if custom:
                        xb = removal(xt[s:e].clone(), mask[s:e].clone())
                        if not isinstance(xb, torch.Tensor) or xb.shape[0] != e - s:
                            raise InputError("the removal callable must return a tensor batch of the same "
                                             "length as the batch it was given")
                    else:
                        xb = work[s:e]
                    yield k, s, e, xb

        pending: list[tuple[int, int, int, torch.Tensor]] = []
        filled = 0
        total_calls = math.ceil(steps * B / int(batch_size))
        bar = tqdm(total=total_calls, desc="perturbation curve", disable=not progress)

        def flush():
            nonlocal pending, filled
            if not pending:
                return
            if len(pending) == 1:
                xb, tb = pending[0][3], t[pending[0][1]:pending[0][2]]
            else:
                xb = torch.cat([p[3] for p in pending])
                tb = torch.cat([t[s:e] for _, s, e, _ in pending])
            out = _select_output(_as_output(model(xb)), tb).double().numpy()
            pos = 0
            for k, s, e, _ in pending:
                curve[k, s:e] = out[pos:pos + e - s]
                pos += e - s
            pending, filled = [], 0
            bar.update(1)

        for k, s, e, xb in step_batches():
            while s < e:
                room = int(batch_size) - filled
                take = min(room, e - s)
                piece = xb[:take]
                # the work buffer changes at the next step: rows that wait for a later flush are copied
                if not custom and (pending or take < int(batch_size)):
                    piece = piece.clone()
                pending.append((k, s, s + take, piece))
                filled += take
                s += take
                xb = xb[take:]
                if filled == int(batch_size):
                    flush()
        flush()
        bar.close()

    bdim = info["batch_dim"]
    removed = np.minimum(np.arange(steps + 1) * n_removed, n_regions)
    coords: dict[str, Any] = {"step": np.arange(steps + 1), "removed": ("step", removed),
                              "removed_fraction": ("step", removed / n_regions)}
    for name, v in info["batch_coords"].items():
        coords[name] = (bdim, v)
    coords["target"] = (bdim, t.numpy().copy())
    attrs = {"order": order, "ties": ties, "removal": removal_text, "patch": list(patch) if patch else "none",
             "n_regions": int(n_regions), "regions_per_step": n_removed, "seed": int(seed),
             "quantity": "target output of the model (the explained logit)",
             "explained_method": info["method"] or "unknown",
             "description": "region perturbation curve: f(x) after removing the top-ranked regions; step 0 "
                            "is the unperturbed input", "sciexplain_version": __version__}
    return xr.DataArray(curve.T.copy(), dims=(bdim, "step"), coords=coords, attrs=attrs,
                        name="perturbation_curve")


def _check_curve(curve: Any, what: str) -> xr.DataArray:
    if not isinstance(curve, xr.DataArray) or curve.ndim < 2 or "step" not in curve.dims:
        raise InputError(f"{what} must be a DataArray (sample, step) or (seed, sample, step) from "
                         "perturbation_curve")
    if curve.dims[-1] != "step":
        curve = curve.transpose(..., "step")
    if curve.sizes["step"] < 2:
        raise InputError(f"{what} has a single step; it needs step 0 and at least one perturbation")
    return curve


def _area_result(per: np.ndarray, curve: xr.DataArray, name: str, attrs: dict) -> xr.DataArray:
    dims = curve.dims[:-1]
    coords = {n: c for n, c in curve.coords.items() if set(c.dims) <= set(dims)}
    return xr.DataArray(per, dims=dims, coords=coords, name=name,
                        attrs={"mean": float(per.mean()), **attrs, "sciexplain_version": __version__})


def aopc(curve: xr.DataArray) -> xr.DataArray:
    """Area over the perturbation curve (Samek et al. 2017).

    ``AOPC = 1/(L+1) sum_{k=0}^{L} (f(x^(0)) - f(x^(k)))`` per sample, for a curve with steps
    0..L. On a MoRF curve, larger is better (the explanation found what the output depends
    on); on a LeRF curve, smaller is better.

    Returns
    -------
    xarray.DataArray
        Per sample (and per seed for a curve with a ``seed`` dim); ``attrs["mean"]`` is the
        average over all of them, the number the papers report (also ``.mean()``).
    """
    curve = _check_curve(curve, "curve")
    v = curve.values
    per = (v[..., :1] - v).mean(axis=-1)
    return _area_result(per, curve, "aopc",
                        {"order": curve.attrs.get("order", "unknown"), "steps": int(v.shape[-1] - 1),
                         "description": "area over the perturbation curve: mean over steps 0..L of "
                                        "f(x^(0)) - f(x^(k))"})


def abpc(morf: xr.DataArray, lerf: xr.DataArray) -> xr.DataArray:
    """Area between the LeRF and MoRF curves: mean over steps of ``f_LeRF(k) - f_MoRF(k)`` per sample.

    Larger is better: removing the least relevant regions should keep the output, the most
    relevant ones should destroy it. Both curves must have the same dims (e.g. the same seeds).
    """
    morf = _check_curve(morf, "morf")
    lerf = _check_curve(lerf, "lerf")
    for c, want in ((morf, "morf"), (lerf, "lerf")):
        if c.attrs.get("order", want) != want:
            raise InputError(f"the {want} argument is a curve of order {c.attrs['order']!r}")
    if morf.dims != lerf.dims or morf.shape != lerf.shape:
        raise InputError(f"morf {dict(morf.sizes)} and lerf {dict(lerf.sizes)} curves differ in samples, "
                         "seeds or steps")
    per = (lerf.values - morf.values).mean(axis=-1)
    return _area_result(per, morf, "abpc", {"steps": int(morf.shape[-1] - 1),
                                            "description": "area between the LeRF and MoRF perturbation curves"})


# -- confidence intervals and comparison tables -------------------------------------------------

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


# -- continuity -------------------------------------------------------------------------------

def _relevance_values(R: Any, n: int) -> np.ndarray:
    if isinstance(R, xr.DataArray):
        bdim = _batch_dim_of(R)
        R = R.transpose(bdim, ...).values
    elif isinstance(R, torch.Tensor):
        R = R.detach().cpu().numpy()
    values = np.asarray(R, dtype=np.float64)
    if values.ndim < 1 or values.shape[0] != n:
        raise InputError(f"explain returned shape {values.shape} for {n} inputs; it must return one "
                         "explanation per input, batch dim first")
    return values.reshape(n, -1)


def continuity(explain: Callable[[torch.Tensor], Any], inputs: Any) -> xr.DataArray:
    """Explanation continuity along a path of inputs (Montavon et al. 2017, Sec. 7.1).

    For consecutive inputs ``x, x'`` of the sequence the ratio ``||R(x) - R(x')||_1 /
    ||x - x'||_2`` is computed; the continuity of the explanation method on that path is the
    maximum (a Lipschitz-like constant: bounded for continuous explanations, growing without
    bound as the steps shrink across a discontinuity).

    Parameters
    ----------
    explain : callable
        ``explain(x_batch) -> relevance`` (DataArray, tensor or array, batch first), e.g.
        ``lambda x: sx.explain(model, x, target=0, preset=sx.rules.ZPlus())``. It receives the
        whole sequence as one batch.
    inputs : tensor or array, shape (n, ...)
        The path, n >= 2 inputs in order; consecutive inputs must differ.

    Returns
    -------
    xarray.DataArray
        The ratio per consecutive pair (dim ``pair``, coords ``distance``: ||x - x'||_2);
        ``attrs["continuity"]`` and ``.max()`` give the maximum.
    """
    xs = _as_tensor(inputs, "inputs")
    n = xs.shape[0]
    if n < 2:
        raise InputError("continuity needs a sequence of at least 2 inputs")
    flat = xs.reshape(n, -1).double()
    dist = (flat[1:] - flat[:-1]).norm(dim=1).numpy()
    if (dist == 0).any():
        raise InputError(f"inputs {np.flatnonzero(dist == 0).tolist()} equal their successors: consecutive "
                         "inputs must differ")
    R = _relevance_values(explain(xs.clone()), n)
    diff = np.abs(R[1:] - R[:-1]).sum(axis=1)
    ratio = diff / dist
    return xr.DataArray(ratio, dims=("pair",), coords={"pair": np.arange(n - 1), "distance": ("pair", dist),
                                                       "relevance_change": ("pair", diff)},
                        name="continuity_ratio",
                        attrs={"continuity": float(ratio.max()),
                               "description": "||R(x) - R(x')||_1 / ||x - x'||_2 per consecutive pair; "
                                              "continuity = the maximum", "sciexplain_version": __version__})


# -- input invariance -------------------------------------------------------------------------

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _module_calls(model: nn.Module, x: torch.Tensor, select, *, after: bool = False) -> list[tuple[str, nn.Module, Any]]:
    """Run ``model(x)`` once and list ``(name, module, first argument)`` of the selected modules, in
    the order they are entered (``after=False``) or finish (``after=True``); hooks are removed again."""
    calls: list[tuple[str, nn.Module, Any]] = []
    names = {m: n for n, m in model.named_modules()}

    def record(m, args, *_):
        calls.append((names[m], m, args[0].detach() if args and isinstance(args[0], torch.Tensor) else None))

    handles = [(m.register_forward_hook(record) if after else m.register_forward_pre_hook(record))
               for m in model.modules() if select(m)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _first_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module, torch.Tensor]:
    """The first Linear/Conv module called in the forward pass and its input (must hold x's data)."""
    calls = [c for c in _module_calls(model, x, lambda m: isinstance(m, _WEIGHTED)) if c[2] is not None]
    if not calls:
        raise InputError("input_invariance: the model has no Linear/Conv layer to absorb the shift into")
    name, m, inp = calls[0]
    if inp.data_ptr() != x.data_ptr() or inp.numel() != x.numel():
        raise InputError(f"input_invariance: the first weighted layer {name!r} does not receive the input "
                         "itself (or a reshaped view of it), so the shift cannot be absorbed into its bias")
    return name, m, inp


def _absorb_shift(model: nn.Module, x: torch.Tensor, shift: torch.Tensor) -> tuple[nn.Module, str]:
    """A deep copy of ``model`` with ``-W shift`` added to the first layer's bias."""
    twin = copy.deepcopy(model).eval()  # the copy is explained in eval mode anyway
    xc = x.contiguous().clone()
    name, layer, inp = _first_layer(twin, xc)
    s = torch.broadcast_to(shift.to(x.dtype), x.shape[1:]).contiguous().reshape((1,) + tuple(inp.shape[1:]))
    with torch.no_grad():
        w64 = copy.deepcopy(layer).double()
        if w64.bias is not None:
            w64.bias.zero_()
        delta = w64(s.double())  # W shift, one entry per output position
        channel_axis = 1 if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else delta.ndim - 1
        per_channel = delta.movedim(channel_axis, -1).reshape(-1, delta.shape[channel_axis])
        if not torch.allclose(per_channel, per_channel[:1].expand_as(per_channel), rtol=1e-9, atol=1e-9):
            raise InputError(f"input_invariance: the shift through {name!r} differs between output positions "
                             "(zero padding at borders, or a shift that varies across positions a convolution "
                             "slides over), so no bias can absorb it; use a per-channel shift and a first "
                             "layer without padding, or a dense first layer")
        b = -per_channel[0].to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(b.clone())
        else:
            layer.bias.add_(b)
    return twin, name


def _shift_rule(rule: Any, shift: torch.Tensor):
    from ..rules.affine import ZBox
    if isinstance(rule, ZBox):
        return ZBox(torch.as_tensor(rule.low) + shift, torch.as_tensor(rule.high) + shift, rule.stabilizer)
    return rule


def input_invariance(model: nn.Module, x: Any, method: str = "lrp", shift: float | Any = 1.0, *,
                     shift_bounds: bool = True, shifted_kwargs: dict | None = None,
                     **explain_kwargs: Any) -> xr.Dataset:
    """The input-invariance test of Kindermans et al. (2017, "The (un)reliability of saliency methods").

    A twin of the model receives ``x + shift`` and absorbs the shift into its first layer's
    bias (``b - W shift``), so both compute the same function of the data; an input-invariant
    explanation method explains both alike. The model is never modified: the twin is a deep
    copy.

    Parameters
    ----------
    model : torch.nn.Module
        Its first weighted layer (Linear or convolution) must receive the input directly or
        through a reshape. With convolutions, a shift constant per channel and no padding.
    x : tensor or array
    method : str
        Explanation method (see :func:`sciexplain.explain`).
    shift : float or tensor
        Added to every input; a tensor broadcastable to one sample's shape.
    shift_bounds : bool
        Move ``bounds=(low, high)`` and ZBox rules in ``preset`` along with the data for the
        twin (the box of the shifted data); False keeps them fixed.
    shifted_kwargs : dict, optional
        Explanation arguments for the twin that override ``explain_kwargs``.
    **explain_kwargs
        Passed to :func:`sciexplain.explain` (``preset``, ``bounds``, ``target``, ...).

    Returns
    -------
    xarray.Dataset
        ``original`` and ``shifted`` relevance (the explanations of x and of x + shift on the
        twin), per sample ``max_abs_difference`` and ``relative_difference`` (max |difference|
        / max |original|), ``prediction``; attrs ``max_relative_difference``, ``first_layer``.
    """
    from ..explain.engine import explain
    xt = _as_tensor(x)
    if not xt.is_floating_point():
        raise InputError("input_invariance needs a float input")
    shift_t = torch.as_tensor(shift, dtype=xt.dtype)
    if not bool(torch.isfinite(shift_t).all()):
        raise InputError("shift contains NaN/Inf")
    try:
        torch.broadcast_to(shift_t, xt.shape[1:])
    except RuntimeError:
        raise InputError(f"shift of shape {tuple(shift_t.shape)} does not broadcast to one sample of shape "
                         f"{tuple(xt.shape[1:])}") from None
    twin, first = _absorb_shift(model, xt, shift_t)
    xs = xt + shift_t
    with _model_mode(model), torch.no_grad():
        out = model(xt)
    with _model_mode(twin), torch.no_grad():
        out_twin = twin(xs)
    if not torch.allclose(out_twin, out, rtol=1e-4, atol=1e-5 * float(out.abs().max()) + 1e-6):
        raise InputError(f"input_invariance: the twin with the shift absorbed in {first!r} does not compute the "
                         f"same outputs (max difference {float((out_twin - out).abs().max()):.3g}); the input "
                         "probably reaches the output also by another path than the first layer")
    R1 = explain(model, xt, method=method, **explain_kwargs)
    kw2 = dict(explain_kwargs)
    if "target" not in kw2:
        kw2["target"] = R1.coords["target"].values
    if shift_bounds:
        if kw2.get("bounds") is not None:
            lo, hi = kw2["bounds"]
            kw2["bounds"] = (torch.as_tensor(lo) + shift_t, torch.as_tensor(hi) + shift_t)
        preset = kw2.get("preset")
        if preset is not None and not isinstance(preset, str):
            if isinstance(preset, dict):
                kw2["preset"] = {k: _shift_rule(v, shift_t) for k, v in preset.items()}
            else:
                kw2["preset"] = _shift_rule(preset, shift_t)
    kw2.update(shifted_kwargs or {})
    R2 = explain(twin, xs, method=method, **kw2)
    bdim = R1.dims[0]
    a = R1.values.astype(np.float64)
    b = R2.transpose(*R1.dims).values.astype(np.float64)
    diff = np.abs(a - b).reshape(len(a), -1).max(axis=1)
    scale = np.abs(a).reshape(len(a), -1).max(axis=1)
    rel = diff / np.where(scale > 0, scale, 1.0)
    keep = [d for d in R1.dims]
    plain1 = R1.drop_vars([c for c in R1.coords if c not in keep])
    plain2 = R2.drop_vars([c for c in R2.coords if c not in keep])
    ds = xr.Dataset({"original": plain1, "shifted": plain2,
                     "max_abs_difference": ((bdim,), diff), "relative_difference": ((bdim,), rel),
                     "prediction": ((bdim,), R1.coords["prediction"].values),
                     "target": ((bdim,), R1.coords["target"].values)})
    shift_desc = float(shift_t) if shift_t.numel() == 1 else f"tensor{tuple(shift_t.shape)}"
    ds.attrs = {"method": method, "shift": shift_desc, "first_layer": first,
                "max_relative_difference": float(rel.max()), "shift_bounds": int(bool(shift_bounds)),
                "description": "explanations of x on the model and of x + shift on its twin that absorbs the "
                               "shift in the first layer's bias (Kindermans et al. 2017)",
                "sciexplain_version": __version__}
    return ds


# -- model-parameter randomization ------------------------------------------------------------

def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / den, np.nan)


def _parametrized_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Modules with parameters of their own, in the order the forward pass calls them."""
    has_own = lambda m: any(True for _ in m.parameters(recurse=False))  # noqa: E731
    calls = _module_calls(model, x, has_own, after=True)
    return list(dict.fromkeys(name for name, _, _ in calls))


def randomization(model: nn.Module, x: Any, method: str = "lrp", cascade: bool = True, *, seed: int = 0,
                  layers: Sequence[str] | None = None, **explain_kwargs: Any) -> xr.Dataset:
    """Model-parameter randomization test (Adebayo et al. 2018, "Sanity checks for saliency maps").

    Layers with parameters are re-initialised from the top (output) down, on deep copies: with
    ``cascade=True`` layer k's copy has every layer from the top to k randomized, with
    ``cascade=False`` only layer k. Each randomized explanation is compared with the trained
    model's by Spearman rank correlation per sample (on the values and on their absolute
    values). An explanation that stays highly correlated does not depend on what the model
    learned. Weights and biases are redrawn as ``N(0, std(parameter))`` (the scale of the
    trained parameter; 1e-2 where it is 0), reproducibly from ``seed``.

    Parameters
    ----------
    model, x
        The model (left unchanged) and a batch.
    method : str
        Explanation method; ``**explain_kwargs`` (``preset``, ``target``, ...) go to
        :func:`sciexplain.explain`. The target is the trained model's, fixed for all copies.
    cascade : bool
        Cumulative (cascading) or independent randomization.
    layers : sequence of str, optional
        Module paths to randomize, top first; default every module with parameters on the
        forward path.

    Returns
    -------
    xarray.Dataset
        ``spearman`` and ``spearman_abs`` with dims ``(layer, sample)``, layers in the order
        randomized (top first).
    """
    from ..explain.engine import explain
    xt = _as_tensor(x)
    R0 = explain(model, xt, method=method, **explain_kwargs)
    bdim = R0.dims[0]
    kw = dict(explain_kwargs)
    kw["target"] = R0.coords["target"].values
    if layers is None:
        with _model_mode(model):
            layers = list(reversed(_parametrized_layers(model, xt)))
    else:
        layers = list(layers)
        known = dict(model.named_modules())
        bad = [n for n in layers if n not in known]
        if bad:
            raise InputError(f"unknown module path(s) {bad}; see model.named_modules()")
    if not layers:
        raise InputError("the model has no parameters to randomize")
    gen = torch.Generator().manual_seed(int(seed))
    base = R0.values.reshape(len(R0), -1).astype(np.float64)
    rho, rho_abs = [], []
    current = copy.deepcopy(model).eval()
    for name in layers:
        target_model = current if cascade else copy.deepcopy(model).eval()
        module = dict(target_model.named_modules())[name]
        with torch.no_grad():
            for p in module.parameters(recurse=False):
                std = float(p.detach().double().std()) if p.numel() > 1 else float(p.detach().abs().mean())
                if not std > 0:
                    std = 1e-2
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std)
        Rk = explain(target_model, xt, method=method, **kw)
        vals = Rk.values.reshape(len(Rk), -1).astype(np.float64)
        rho.append(_spearman_rows(base, vals))
        rho_abs.append(_spearman_rows(np.abs(base), np.abs(vals)))
    coords = {"layer": layers}
    for n, c in R0.coords.items():
        if c.dims == (bdim,):
            coords[n] = c
    return xr.Dataset({"spearman": (("layer", bdim), np.array(rho)),
                       "spearman_abs": (("layer", bdim), np.array(rho_abs))}, coords=coords,
                      attrs={"method": method, "cascade": int(bool(cascade)), "seed": int(seed),
                             "description": "Spearman rank correlation of explanations of randomized models "
                                            "with the trained model's (Adebayo et al. 2018)",
                             "sciexplain_version": __version__})
