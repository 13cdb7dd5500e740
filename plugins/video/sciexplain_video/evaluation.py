"""Checks of video explanations: ground truth on generated clips and block perturbation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from sciexplain.errors import InputError

__all__ = ["ground_truth_scores", "block_perturbation", "block_removal", "FieldScorer", "X_DIMS"]

#: dims of the model input of a video explanation
X_DIMS = ("clip", "component", "frame", "block_y", "block_x")


def ground_truth_scores(R: xr.DataArray, truths: Sequence[Any]) -> xr.Dataset:
    """How well relevance finds the moving figure of generated clips.

    Parameters
    ----------
    R : xarray.DataArray
        A video explanation, dims ``("clip", "frame", "block_y", "block_x")``.
    truths : sequence of ClipTruth
        One per clip.

    Returns
    -------
    xarray.Dataset
        Per clip: ``inside_share`` (share of the positive relevance on blocks overlapping the
        figure), ``area_share`` (share of blocks overlapping the figure: what a map without
        information would score), ``frame_correlation`` (Pearson correlation of relevance per
        frame with the figure's true motion per frame; NaN when either is constant).
    """
    if len(truths) != R.sizes["clip"]:
        raise InputError(f"{len(truths)} truths for {R.sizes['clip']} clips")
    block = int(R.attrs["block"])
    values = R.transpose("clip", "frame", "block_y", "block_x").values.astype(np.float64)
    inside, area, corr = [], [], []
    for r, truth in zip(values, truths):
        mask = truth.block_mask(block)
        if mask.shape != r.shape:
            raise InputError(f"the truth's block grid {mask.shape} does not match the explanation's {r.shape}")
        pos = np.clip(r, 0, None)
        inside.append(pos[mask].sum() / pos.sum() if pos.sum() > 0 else np.nan)
        area.append(mask.mean())
        curve = r.sum(axis=(1, 2))
        motion = truth.motion
        ok = np.std(curve) > 0 and np.std(motion) > 0
        corr.append(float(np.corrcoef(curve, motion)[0, 1]) if ok else np.nan)
    return xr.Dataset({"inside_share": ("clip", np.asarray(inside)), "area_share": ("clip", np.asarray(area)),
                       "frame_correlation": ("clip", np.asarray(corr))},
                      coords={"clip": R.coords["clip"].values},
                      attrs={"method": R.attrs.get("method", ""), "block": block})


class FieldScorer:
    """The Fisher-vector model as a function of one clip's motion-field tensor (for perturbation curves).

    ``scorer(x)`` takes perturbed copies ``(copy, 2, frame, block_y, block_x)`` of the clip's
    ``to_array()`` and returns the class scores, recomputing the descriptors of each copy. Which
    blocks carry vectors comes from the original field: a zeroed block stays a block with vectors
    (zero motion), I-frames stay without.
    """

    def __init__(self, model: Any, field: Any) -> None:
        self.model = model
        self.valid = ~np.isnan(field.field.values).any(-1)

    def __call__(self, x: Any):
        import torch
        from .descriptors import compute_descriptors

        a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
        out = []
        for copy in a:
            field = np.moveaxis(copy, 0, -1).copy()
            field[~self.valid] = np.nan
            out.append(compute_descriptors(field, self.model.spec).values)
        with torch.no_grad():
            return self.model(torch.as_tensor(np.stack(out)))


def block_removal(x_batch: Any, mask: Any) -> Any:
    """Removal for :func:`sciexplain.evaluate.perturbation_curve`: removed motion blocks become zero."""
    return x_batch.masked_fill(mask, 0.0)


def block_perturbation(model: Any, fields: Sequence[Any], R: xr.DataArray, *, order: str = "morf",
                       steps: int | None = None, regions_per_step: int = 1, seed: int = 0) -> xr.DataArray:
    """Perturbation curve of block-frame regions: zero the most relevant blocks first (or ``order``).

    A region is one block of one frame (both components). For the Fisher-vector model the
    descriptors are recomputed from the perturbed field (:class:`FieldScorer`).

    Returns
    -------
    xarray.DataArray
        The curve of :func:`sciexplain.evaluate.perturbation_curve` (dims ``(clip, step)``).
    """
    import sciexplain as sx
    from .explain import fields_to_tensor
    from .models import MotionFisherModel

    x, _ = fields_to_tensor(list(fields), None)
    if isinstance(model, MotionFisherModel):
        if len(fields) > 1:
            # the scorer needs to know which clip each perturbed copy comes from: run clip by clip
            curves = [block_perturbation(model, [f], R.isel(clip=[i]), order=order, steps=steps,
                                         regions_per_step=regions_per_step, seed=seed + i)
                      for i, f in enumerate(fields)]
            return xr.concat(curves, dim="clip")
        scorer: Any = FieldScorer(model, fields[0])
    else:
        scorer = model
    rel = R if "component" not in R.dims else R.relevance.pool("component")
    return sx.evaluate.perturbation_curve(scorer, x, rel, steps=steps, order=order, removal="zero",
                                          regions_per_step=regions_per_step, seed=seed, x_dims=X_DIMS,
                                          batch_size=64)
