"""Pooling image relevance over regions: object box versus context, superpixels, patch grids.

Every function sums relevance (never averages), so each pooled number is a share of f(x): over
all regions plus ``absorbed`` the values add up to the prediction, per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from .preprocess import Box
from sciexplain.errors import InputError

__all__ = ["pool_regions", "box_shares", "superpixels", "pool_superpixels", "pool_patches"]


def _check_map(R: xr.DataArray) -> xr.DataArray:
    if "color" in R.dims:
        R = R.relevance.pool("color")
    missing = {"y", "x"} - set(R.dims)
    if missing:
        raise InputError(f"region pooling needs dims 'y' and 'x'; the relevance has {R.dims}")
    return R


def pool_regions(R: xr.DataArray, labels: np.ndarray, *, names: Mapping[int, str] | None = None,
                 dim: str = "region") -> xr.DataArray:
    """Sum relevance over the regions of a label map.

    Parameters
    ----------
    R : xarray.DataArray
        Image relevance with dims ``("image", "y", "x")`` (colour is pooled first if present).
    labels : array of int, shape (y, x)
        One region label per pixel of the model input (the same for every image), or shape
        (image, y, x) with one map per image; then region names are taken from the labels and
        images without a region get 0 for it.
    names : mapping, optional
        Label -> region name; default ``"region <label>"``.

    Returns
    -------
    xarray.DataArray
        Dims ``("image", dim)``; per image the regions plus ``absorbed`` sum to ``prediction``.
    """
    R = _check_map(R)
    labels = np.asarray(labels)
    ny, nx = R.sizes["y"], R.sizes["x"]
    if labels.shape[-2:] != (ny, nx):
        raise InputError(f"labels of shape {labels.shape} do not match the relevance map ({ny}, {nx}); "
                         "label the pixels of the model input (after resize and crop)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError("labels must be integers, one region label per pixel")
    keys = np.unique(labels)
    naming = {int(k): (names or {}).get(int(k), f"region {int(k)}") for k in keys}
    if labels.ndim == 2:
        S = R.stack(pixel=("y", "x")).drop_vars(["pixel", "y", "x"])
        S = S.assign_coords(region_label=("pixel", [naming[int(k)] for k in labels.ravel()]))
        groups = {naming[int(k)]: [naming[int(k)]] for k in keys}
        out = S.relevance.group("pixel", groups, coord="region_label", name=dim, remainder=None)
        return out.drop_vars("region_label", errors="ignore")
    if labels.ndim == 3 and labels.shape[0] == R.sizes[R.dims[0]]:
        values = np.zeros((labels.shape[0], len(keys)), dtype=np.float64)
        for i in range(labels.shape[0]):
            Ri = R.isel({R.dims[0]: i}).values
            for j, k in enumerate(keys):
                values[i, j] = Ri[labels[i] == k].sum(dtype=np.float64)
        batch = R.dims[0]
        keep = {c: R.coords[c] for c in R.coords if R.coords[c].dims == (batch,)}
        out = xr.DataArray(values.astype(R.dtype), dims=(batch, dim),
                           coords={**keep, dim: [naming[int(k)] for k in keys]}, attrs=dict(R.attrs), name=R.name)
        out.attrs["pooling"] = (str(R.attrs.get("pooling", "")) + "; regions per image").lstrip("; ")
        return out
    raise InputError(f"labels must have shape (y, x) or (image, y, x); got {labels.shape}")


def box_shares(R: xr.DataArray, boxes: Box | Sequence[Box]) -> xr.Dataset:
    """Relevance on an object box versus its context (Lapuschkin et al. 2016).

    Parameters
    ----------
    boxes : Box or list of Box
        In model-input pixel coordinates (see :func:`sciexplain_image.photo_box` and
        :meth:`PreparedImage.map_box`); one for all images or one per image.

    Returns
    -------
    xarray.Dataset
        ``relevance`` with dims ``("image", "region")``, regions ``object``, ``context`` and
        ``absorbed`` (which together sum to f(x)), and ``share`` = relevance / f(x).
    """
    R = _check_map(R)
    batch = R.dims[0]
    n, ny, nx = R.sizes[batch], R.sizes["y"], R.sizes["x"]
    boxes = [boxes] * n if isinstance(boxes, Box) or (len(boxes) == 4 and np.isscalar(boxes[0])) else list(boxes)
    if len(boxes) != n:
        raise InputError(f"{len(boxes)} boxes for {n} images")
    labels = np.zeros((n, ny, nx), dtype=np.int64)
    for i, b in enumerate(boxes):
        y0, y1, x0, x1 = (int(v) for v in b)
        if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            raise InputError(f"box {tuple(b)} is empty or outside the {ny}x{nx} model input")
        labels[i, y0:y1, x0:x1] = 1
    P = pool_regions(R, labels, names={1: "object", 0: "context"})
    P = P.sel(region=["object", "context"])
    absorbed = xr.DataArray(R.coords["absorbed"].values.astype(P.dtype)[:, None], dims=(batch, "region"),
                            coords={"region": ["absorbed"]})
    full = xr.concat([P, absorbed.assign_coords({c: P.coords[c] for c in P.coords if P.coords[c].dims == (batch,)})],
                     dim="region")
    full.attrs = dict(P.attrs)
    pred = R.coords["prediction"]
    share = full / pred
    share.attrs = {"description": "relevance / f(x); object + context + absorbed = 1"}
    return xr.Dataset({"relevance": full, "share": share},
                      attrs={"description": "object box versus context; sums to f(x) per image"})


def superpixels(image: np.ndarray, n_segments: int = 64, compactness: float = 10.0, seed: int = 0) -> np.ndarray:
    """SLIC superpixels of the image the model saw (scikit-image); returns an int label map."""
    from skimage.segmentation import slic
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"superpixels need an (H, W, 3) RGB image; got shape {img.shape}")
    return slic(img, n_segments=n_segments, compactness=compactness, start_label=0).astype(np.int64)


def pool_superpixels(R: xr.DataArray, image: np.ndarray, n_segments: int = 64) -> tuple[xr.DataArray, np.ndarray]:
    """Relevance summed per superpixel of ``image``; returns (pooled, label map)."""
    labels = superpixels(image, n_segments)
    return pool_regions(R, labels, names={int(k): f"superpixel {int(k)}" for k in np.unique(labels)}), labels


def pool_patches(R: xr.DataArray, size: int | tuple[int, int]) -> xr.DataArray:
    """Relevance summed over a grid of ``size x size`` patches (the last row/column may be smaller)."""
    sy, sx = (size, size) if np.isscalar(size) else size
    R = _check_map(R)
    return R.relevance.windows("y", float(sy)).relevance.windows("x", float(sx))
