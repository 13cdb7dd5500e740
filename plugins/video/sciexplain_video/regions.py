"""Regions of the frame: relevance summed over blocks inside pixel boxes (conserving)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from sciexplain.errors import InputError

__all__ = ["pool_regions", "block_regions"]


def block_regions(R: xr.DataArray, regions: Mapping[str, Sequence[float]], remainder: str = "other") -> np.ndarray:
    """Region label per block, shape (block_y, block_x): the box ``(x0, y0, x1, y1)`` (pixels, end
    exclusive) that contains the block's centre, else ``remainder``.

    Raises
    ------
    ValueError
        If a box is malformed or a block centre lies in two boxes (a block would count twice).
    """
    block = int(R.attrs["block"])
    cy = np.asarray(R.coords["y_origin"].values, dtype=float) + block / 2
    cx = np.asarray(R.coords["x_origin"].values, dtype=float) + block / 2
    labels = np.full((cy.size, cx.size), remainder, dtype=object)
    taken = np.zeros((cy.size, cx.size), dtype=object)
    for name, box in regions.items():
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            raise InputError(f"region {name!r}: give a pixel box (x0, y0, x1, y1) with x0 < x1 and y0 < y1, got {box!r}")
        if name == remainder:
            raise InputError(f"region name {name!r} is the remainder label; rename it or pass remainder=")
        x0, y0, x1, y1 = (float(v) for v in box)
        inside = ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
        clash = inside & (labels != remainder)
        if clash.any():
            other = sorted({str(v) for v in taken[clash]})
            raise InputError(f"region {name!r} overlaps {other} on {int(clash.sum())} block(s); regions must not "
                             "overlap (a block would be counted twice)")
        labels[inside] = name
        taken[inside] = name
    return labels.astype(str)


def pool_regions(R: xr.DataArray, regions: Mapping[str, Sequence[float]], *, remainder: str = "other") -> xr.DataArray:
    """Sum relevance over the blocks of each region of the frame, per clip and frame.

    Parameters
    ----------
    R : xarray.DataArray
        A video explanation with dims ``("clip", "frame", "block_y", "block_x")``.
    regions : mapping name -> (x0, y0, x1, y1)
        Pixel boxes; a block belongs to the box containing its centre.
    remainder : str
        Label of the blocks in no box, so the total is conserved.

    Returns
    -------
    xarray.DataArray
        Dims ``("clip", "frame", "region")``; per clip, the sum over frames and regions plus
        ``absorbed`` is still f(x).
    """
    labels = block_regions(R, regions, remainder)
    flat = R.stack(block=("block_y", "block_x"))
    flat = flat.drop_vars(["block", "block_y", "block_x", "y_origin", "x_origin"], errors="ignore")
    flat = flat.assign_coords(region_of_block=("block", labels.ravel()))
    groups = {name: [name] for name in regions}
    return flat.relevance.group("block", groups, coord="region_of_block", remainder=remainder, name="region")
