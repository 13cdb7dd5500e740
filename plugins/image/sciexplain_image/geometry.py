"""Pixel geometry of preprocessing: boxes, and how resize and centre crop move them."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from .image_input import _error

__all__ = ["Box"]


class Box(NamedTuple):
    """An axis-aligned pixel box ``(y0, y1, x0, x1)``.

    Coordinates are pixel edges: the box covers rows ``y0 <= y < y1`` and
    columns ``x0 <= x < x1``, so ``image[y0:y1, x0:x1]`` cuts it out.
    """

    y0: int
    y1: int
    x0: int
    x1: int


class _Geometry(NamedTuple):
    original_shape: tuple[int, int]
    resized_shape: tuple[int, int]
    crop_offset: tuple[int, int]
    output_shape: tuple[int, int]


def _resized_shape(size: int | tuple[int, int] | None, shape: tuple[int, int]) -> tuple[int, int]:
    height, width = shape
    if size is None:
        return height, width
    if isinstance(size, tuple):
        return size
    # shorter side -> size, keep the aspect ratio (rounded half up)
    if height <= width:
        return size, max(1, int(math.floor(width * size / height + 0.5)))
    return max(1, int(math.floor(height * size / width + 0.5))), size


def _map_box_geometry(box: Sequence[int], geometry: _Geometry) -> Box:
    if len(box) != 4:
        raise _error("InputError", f"a box is (y0, y1, x0, x1); got {box!r}.")
    y0, y1, x0, x1 = (float(v) for v in box)
    height, width = geometry.original_shape
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise _error("InputError",
            f"box {tuple(box)} is not inside the {height}x{width} image: need "
            "0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width."
        )
    sy = geometry.resized_shape[0] / height
    sx = geometry.resized_shape[1] / width
    top, left = geometry.crop_offset
    out_h, out_w = geometry.output_shape

    def edge(value: float, factor: float, offset: int, limit: int) -> int:
        return int(min(max(math.floor(value * factor - offset + 0.5), 0), limit))

    mapped = Box(
        edge(y0, sy, top, out_h), edge(y1, sy, top, out_h),
        edge(x0, sx, left, out_w), edge(x1, sx, left, out_w),
    )
    if mapped.y1 <= mapped.y0 or mapped.x1 <= mapped.x0:
        raise _error("InputError",
            f"box {tuple(box)} falls outside the centre crop (model input {out_h}x{out_w}); "
            "the object is cropped away by this preprocessing."
        )
    return mapped
