"""Reading images as RGB uint8: the one place that decides what an input image means.

Input conventions (applied by :func:`as_rgb_uint8`):

* PIL images in any 8-bit mode; ``"I"``, ``"I;16"`` and ``"F"`` modes are
  refused, because their range is unknown.
* NumPy arrays are channel-last: ``(H, W)`` greyscale, or ``(H, W, C)`` with
  ``C`` in 1 (grey), 3 (RGB) or 4 (RGBA).
* torch tensors are channel-first: ``(C, H, W)`` or ``(H, W)``.
* uint8 values are taken as they are; floating-point values must lie in
  [0, 1] and are scaled by 255 and rounded; other integer types must lie in
  [0, 255].
* Greyscale is replicated to the three RGB channels.
* RGBA is composited on a **white** background (``rgb * a + 255 * (1 - a)``):
  fully transparent pixels become white, as image viewers usually show them,
  instead of exposing whatever colour the transparent pixels happen to store.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["as_rgb_uint8"]


def _error(kind: str, message: str) -> Exception:
    """The sciexplain error ``kind`` with ``message``; the core is imported only when an error is
    raised, so that importing this module stays light (no torch, no sciexplain core)."""
    from sciexplain import errors
    return getattr(errors, kind)(message)



def _describe(image: Any) -> str:
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is not None:
        return f"{type(image).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return type(image).__name__


def _pil_to_rgb(image: Any) -> np.ndarray:
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise _error("InputError",
            f"PIL image mode {mode!r} holds values of unknown range; convert it to an "
            "8-bit mode first (e.g. scale to 0..255 and use image.convert('L'))."
        )
    if mode == "P":
        mode_after = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode_after)
        mode = mode_after
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        return _array_to_rgb(np.asarray(image.convert("RGBA")))
    if mode == "1":
        image = image.convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def _values_to_uint8(values: np.ndarray, what: str) -> np.ndarray:
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        raise _error("InputError",
            f"{what} is boolean; convert it to uint8 (0..255) or float (0..1) first."
        )
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise _error("InputError", f"{what} contains NaN or infinite values.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise _error("InputError",
                f"{what} is floating point with values in [{low:g}, {high:g}]; float "
                "images must lie in [0, 1] (divide 0..255 data by 255, or pass uint8)."
            )
        return np.round(values.astype(np.float64) * 255.0).astype(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 255:
            raise _error("InputError",
                f"{what} is integer with values in [{low}, {high}]; integer images must "
                "lie in [0, 255] (rescale 16-bit data to 8 bits first)."
            )
        return values.astype(np.uint8)
    raise _error("InputTypeError", f"{what} has dtype {values.dtype}, which is not an image dtype.")


def _array_to_rgb(array: np.ndarray, what: str = "image array") -> np.ndarray:
    if array.ndim not in (2, 3):
        raise _error("InputError",
            f"{what} must have shape (H, W) or (H, W, C) (channel-last); got shape "
            f"{array.shape}. For a batch use prepare_batch(); for channel-first data "
            "pass a torch tensor (C, H, W) or transpose the array."
        )
    if array.size == 0 or array.shape[0] == 0 or array.shape[1] == 0:
        raise _error("InputError", f"{what} is empty (shape {array.shape}).")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise _error("InputError",
            f"{what} has {array.shape[2]} channels in its last axis (shape "
            f"{array.shape}); expected 1 (grey), 3 (RGB) or 4 (RGBA). NumPy arrays "
            "are read channel-last; pass channel-first data as a torch tensor."
        )
    values = _values_to_uint8(array, what)
    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    if channels == 1:
        return np.repeat(values, 3, axis=2)
    if channels == 3:
        return np.ascontiguousarray(values)
    # RGBA: composite on white.
    rgb = values[:, :, :3].astype(np.float64)
    alpha = values[:, :, 3:4].astype(np.float64) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.round(out).astype(np.uint8)


def as_rgb_uint8(image: Any) -> np.ndarray:
    """Convert an image to a ``(H, W, 3)`` uint8 RGB array.

    Parameters
    ----------
    image : PIL.Image.Image, numpy.ndarray or torch.Tensor
        See the module docstring for the accepted layouts and value ranges:
        NumPy arrays are channel-last ``(H, W[, C])``, tensors channel-first
        ``(C, H, W)``; floats must lie in [0, 1]; grey is replicated; RGBA is
        composited on white.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous uint8 array of shape ``(H, W, 3)``.

    Raises
    ------
    TypeError
        If ``image`` is not an image type.
    ValueError
        If the array has the wrong number of dimensions or channels, is empty,
        contains NaN/Inf, or its values are outside the range of its dtype kind.
    """
    pil_image = sys.modules.get("PIL.Image")
    if pil_image is not None and isinstance(image, pil_image.Image):
        if image.width == 0 or image.height == 0:
            raise _error("InputError", f"PIL image is empty (size {image.size}).")
        return _pil_to_rgb(image)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(image, torch.Tensor):
        if image.ndim == 3:
            if image.shape[0] not in (1, 3, 4):
                raise _error("InputError",
                    f"torch tensor images are channel-first (C, H, W) with C in 1, 3, 4; "
                    f"got shape {tuple(image.shape)}. For a batch use prepare_batch()."
                )
            array = image.detach().cpu().permute(1, 2, 0).numpy()
        elif image.ndim == 2:
            array = image.detach().cpu().numpy()
        else:
            raise _error("InputError",
                f"torch tensor images must have shape (C, H, W) or (H, W); got "
                f"{tuple(image.shape)}. For a batch (N, C, H, W) use prepare_batch()."
            )
        return _array_to_rgb(np.asarray(array), what="image tensor")
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise _error("InputTypeError",
        f"cannot read an image from {_describe(image)}; pass a PIL image, a NumPy array "
        "(H, W[, C]) or a torch tensor (C, H, W)."
    )
