"""Region perturbation curves: the explained output as the most (or least) relevant regions are removed.

Region perturbation / pixel flipping (Bach et al. 2015; Samek et al. 2017, "Evaluating the
visualization of what a deep neural network has learned"): remove the most (MoRF) or least
(LeRF) relevant regions first and record how the explained output falls.

The model may be any callable (an ``nn.Module`` or e.g. a Fisher-vector pipeline
``f(x_batch) -> scores``): it is called on tensors and may return a tensor or an array.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import ExplainWarning, InputError
from .inputs import _align_relevance, _as_tensor
from .models import _model_mode


_REMOVALS = ("uniform", "zero", "mean")
_ORDERS = ("morf", "lerf", "random")


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


def _as_output(out: Any) -> Any:
    """A model's output as a tensor (numeric arrays from non-torch pipelines are converted)."""
    if isinstance(out, np.ndarray) and out.dtype != object:
        return torch.from_numpy(np.asarray(out, dtype=np.float64))
    return out


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
