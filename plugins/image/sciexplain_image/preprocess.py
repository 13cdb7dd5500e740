"""Turn an image into the tensor a model sees, and remember how.

A :class:`Preprocess` is a small, frozen description of the steps between a
photo and a model input: resize, centre crop, colour handling and the affine
scaling ``(pixel - mean) / scale``. Calling it on an image returns the model
tensor together with a :class:`PreparedImage` that keeps the uint8 picture the
model actually saw, so that relevance maps can be drawn on exactly those pixels
and boxes in the original photo can be mapped into model-input coordinates.

Reading an image as RGB uint8 is :mod:`sciexplain_image.image_input` (its input conventions are
documented there); the box geometry is :mod:`sciexplain_image.geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .geometry import Box, _Geometry, _map_box_geometry, _resized_shape
from .image_input import _error, as_rgb_uint8

__all__ = [
    "Box",
    "Preprocess",
    "PreparedImage",
    "as_rgb_uint8",
    "map_box",
    "prepare_batch",
]

_RESAMPLE_NAMES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_CHANNELS = ("RGB", "BGR", "L")


# --------------------------------------------------------------------------
# the specification
# --------------------------------------------------------------------------


def _pair(value: Any, name: str, allow_none: bool = True) -> tuple[int, int] | int | None:
    """Validate an int-or-(h, w) size; keep ints as ints, pairs as tuples."""
    if value is None:
        if allow_none:
            return None
        raise _error("InputError", f"{name} must not be None.")
    if isinstance(value, (bool, np.bool_)):
        raise _error("InputTypeError", f"{name} must be a positive int or a pair (height, width); got {value!r}.")
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise _error("InputError", f"{name} must be positive; got {value}.")
        return int(value)
    if isinstance(value, (tuple, list, np.ndarray)):
        items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if len(items) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v > 0
            for v in items
        ):
            return (int(items[0]), int(items[1]))
    raise _error("InputError", f"{name} must be a positive int or a pair (height, width) of positive ints; got {value!r}.")


def _per_channel(value: Any, name: str, n_channels: int, nonzero: bool) -> float | tuple[float, ...]:
    if isinstance(value, (bool, np.bool_)):
        raise _error("InputTypeError", f"{name} must be a number or one number per channel; got {value!r}.")
    if isinstance(value, (int, float, np.integer, np.floating)):
        values: tuple[float, ...] = (float(value),)
    elif isinstance(value, (tuple, list, np.ndarray)):
        values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).ravel())
        if len(values) != n_channels:
            raise _error("InputError",
                f"{name} has {len(values)} values but the model input has {n_channels} "
                "channel(s); give one number or one per channel (in model channel order)."
            )
    else:
        raise _error("InputTypeError", f"{name} must be a number or a tuple of numbers; got {value!r}.")
    if not all(math.isfinite(v) for v in values):
        raise _error("InputError", f"{name} must be finite; got {value!r}.")
    if nonzero and any(v == 0.0 for v in values):
        raise _error("InputError", f"{name} must be non-zero; got {value!r}.")
    return values[0] if len(values) == 1 and not isinstance(value, (tuple, list, np.ndarray)) else values


def _to_none_or_list(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_none_or_list(value: Any) -> Any:
    if isinstance(value, str):
        if value == "none":
            return None
        raise _error("InputError", f"unexpected string {value!r} in a preprocessing dictionary.")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input.

    The steps run in this order: convert to RGB uint8 (see
    :func:`as_rgb_uint8`), resize, centre crop, check the fixed model size,
    select the model's channels, then ``(pixel - mean) / scale`` in float32.

    Parameters
    ----------
    size : int, (int, int) or None, default 256
        An int resizes the **shorter** side to ``size`` keeping the aspect
        ratio; a pair ``(height, width)`` resizes to exactly that shape
        (the aspect ratio may change); None keeps the size.
    crop : int, (int, int) or None, default 224
        Centre crop to ``crop x crop`` (or ``(height, width)``); None keeps
        the whole resized image. The crop must fit inside the resized image.
    mean, scale : float or tuple of float, default 127.0 and 128.0
        The model input is ``(pixel - mean) / scale`` with pixels in 0..255;
        tuples give one value per model channel, in model channel order.
    channels : {"RGB", "BGR", "L"}, default "RGB"
        Channel layout the model expects: ``"L"`` is one greyscale channel
        (ITU-R 601-2 luma, exact for grey input), ``"BGR"`` reverses the
        colour channels.
    resample : {"bilinear", "bicubic", "lanczos", "nearest", "box", "hamming"}
        PIL filter used for resizing (PIL filters are anti-aliased when
        shrinking).
    input_size : int, (int, int) or None, default None
        The fixed input size the model needs; a prepared image of any other
        size is an error instead of a confusing failure inside the model.

    Examples
    --------
    >>> spec = Preprocess(size=(224, 224), crop=None, input_size=224)
    >>> x, prepared = spec(photo)            # doctest: +SKIP
    >>> x.shape, prepared.array.shape        # doctest: +SKIP
    (torch.Size([1, 3, 224, 224]), (224, 224, 3))
    """

    size: int | tuple[int, int] | None = 256
    crop: int | tuple[int, int] | None = 224
    mean: float | tuple[float, ...] = 127.0
    scale: float | tuple[float, ...] = 128.0
    channels: str = "RGB"
    resample: str = "bilinear"
    input_size: int | tuple[int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.channels not in _CHANNELS:
            raise _error("InputError", f"channels must be one of {_CHANNELS}; got {self.channels!r}.")
        if self.resample not in _RESAMPLE_NAMES:
            raise _error("InputError", f"resample must be one of {_RESAMPLE_NAMES}; got {self.resample!r}.")
        n_channels = self.n_channels
        object.__setattr__(self, "size", _pair(self.size, "size"))
        object.__setattr__(self, "crop", _pair(self.crop, "crop"))
        object.__setattr__(self, "input_size", _pair(self.input_size, "input_size"))
        object.__setattr__(self, "mean", _per_channel(self.mean, "mean", n_channels, nonzero=False))
        object.__setattr__(self, "scale", _per_channel(self.scale, "scale", n_channels, nonzero=True))

    @property
    def n_channels(self) -> int:
        """Number of channels of the model input (3, or 1 for ``"L"``)."""
        return 1 if self.channels == "L" else 3

    # -- geometry ---------------------------------------------------------

    def _geometry(self, shape: tuple[int, int]) -> _Geometry:
        resized = _resized_shape(self.size, shape)
        if self.crop is None:
            offset, out = (0, 0), resized
        else:
            crop = self.crop if isinstance(self.crop, tuple) else (self.crop, self.crop)
            if crop[0] > resized[0] or crop[1] > resized[1]:
                raise _error("InputError",
                    f"crop {crop[0]}x{crop[1]} does not fit the resized image "
                    f"{resized[0]}x{resized[1]} (original {shape[0]}x{shape[1]}, size="
                    f"{self.size!r}); increase size or reduce crop."
                )
            offset = ((resized[0] - crop[0]) // 2, (resized[1] - crop[1]) // 2)
            out = crop
        if self.input_size is not None:
            need = self.input_size if isinstance(self.input_size, tuple) else (self.input_size,) * 2
            if tuple(out) != need:
                raise _error("InputError",
                    f"the model needs a {need[0]}x{need[1]} input but this preprocessing "
                    f"turns a {shape[0]}x{shape[1]} image into {out[0]}x{out[1]} (size="
                    f"{self.size!r}, crop={self.crop!r}); set size and/or crop so the "
                    f"result is {need[0]}x{need[1]}."
                )
        return _Geometry(tuple(shape), tuple(resized), offset, tuple(out))

    def output_shape(self, image_shape: tuple[int, int]) -> tuple[int, int]:
        """Model-input ``(height, width)`` for an image of ``image_shape``."""
        return self._geometry(_check_shape(image_shape))[3]

    # -- running ----------------------------------------------------------

    def prepare(self, image: Any) -> "PreparedImage":
        """Resize and crop ``image``; return the uint8 picture the model sees.

        Parameters
        ----------
        image : PIL.Image.Image, numpy.ndarray or torch.Tensor
            Any input accepted by :func:`as_rgb_uint8`.

        Returns
        -------
        PreparedImage
        """
        rgb = as_rgb_uint8(image)
        geometry = self._geometry(rgb.shape[:2])
        array = rgb
        if geometry.resized_shape != geometry.original_shape:
            from PIL import Image

            resample = getattr(Image.Resampling, self.resample.upper())
            height, width = geometry.resized_shape
            array = np.asarray(Image.fromarray(rgb).resize((width, height), resample))
        top, left = geometry.crop_offset
        out_h, out_w = geometry.output_shape
        array = array[top : top + out_h, left : left + out_w]
        if self.channels == "L":
            array = _luma(array)
        array = np.ascontiguousarray(array, dtype=np.uint8)
        array.setflags(write=False)
        return PreparedImage(array=array, spec=self, geometry=geometry)

    def normalize(self, array: np.ndarray) -> Any:
        """Scale a prepared ``(H, W, 3)`` uint8 RGB array into a model tensor.

        Parameters
        ----------
        array : numpy.ndarray
            ``(H, W, 3)`` RGB with values 0..255 (uint8 or float), e.g.
            :attr:`PreparedImage.array` or a perturbed copy of it.

        Returns
        -------
        torch.Tensor
            float32 of shape ``(1, C, H, W)``.
        """
        import torch

        array = np.asarray(array)
        if array.ndim != 3 or array.shape[2] != 3:
            raise _error("InputError", f"normalize() needs an (H, W, 3) RGB array; got shape {array.shape}.")
        values = array.astype(np.float32)
        if self.channels == "L":
            if np.array_equal(array[:, :, 0], array[:, :, 1]) and np.array_equal(array[:, :, 1], array[:, :, 2]):
                values = values[:, :, :1]
            else:  # colour input to a grey model: ITU-R 601-2 luma, as PIL's convert("L")
                values = (values @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
        elif self.channels == "BGR":
            values = values[:, :, ::-1]
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 1, -1)
        scale = np.asarray(self.scale, dtype=np.float32).reshape(1, 1, -1)
        values = (values - mean) / scale
        return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1))[None])

    def denormalize(self, tensor: Any) -> np.ndarray:
        """Invert :meth:`normalize`: model tensor -> ``(N, H, W, 3)`` float RGB in 0..255.

        Accepts ``(C, H, W)`` or ``(N, C, H, W)``; values are not clipped.
        """
        values = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        if values.ndim == 3:
            values = values[None]
        if values.ndim != 4 or values.shape[1] != self.n_channels:
            raise _error("InputError",
                f"denormalize() needs (N, {self.n_channels}, H, W) or ({self.n_channels}, H, W); "
                f"got shape {values.shape}."
            )
        mean = np.asarray(self.mean, dtype=np.float64).reshape(1, -1, 1, 1)
        scale = np.asarray(self.scale, dtype=np.float64).reshape(1, -1, 1, 1)
        pixels = values.astype(np.float64) * scale + mean
        if self.channels == "BGR":
            pixels = pixels[:, ::-1]
        elif self.channels == "L":
            pixels = np.repeat(pixels, 3, axis=1)
        return pixels.transpose(0, 2, 3, 1)

    def __call__(self, image: Any) -> tuple[Any, "PreparedImage"]:
        """Prepare ``image``; return ``(tensor (1, C, H, W) float32, PreparedImage)``."""
        prepared = self.prepare(image)
        return self.normalize(prepared.array), prepared

    # -- serialisation ----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain str/number/list values, usable as netCDF attributes.

        ``None`` is written as the string ``"none"`` and pairs as lists.
        """
        return {
            "size": _to_none_or_list(self.size),
            "crop": _to_none_or_list(self.crop),
            "mean": _to_none_or_list(self.mean),
            "scale": _to_none_or_list(self.scale),
            "channels": self.channels,
            "resample": self.resample,
            "input_size": _to_none_or_list(self.input_size),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Preprocess":
        """Rebuild a spec from :meth:`to_dict` output (also after a netCDF round trip)."""
        known = {"size", "crop", "mean", "scale", "channels", "resample", "input_size"}
        unknown = set(values) - known
        if unknown:
            raise _error("InputError", f"unknown preprocessing keys {sorted(unknown)}; expected {sorted(known)}.")
        kwargs = {
            key: str(value) if key in ("channels", "resample") else _from_none_or_list(value)
            for key, value in values.items()
        }
        return cls(**kwargs)


def _luma(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    return np.repeat(grey[:, :, None], 3, axis=2)


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape[:2])
    if len(shape) != 2 or shape[0] <= 0 or shape[1] <= 0:
        raise _error("InputError", f"image shape must start with positive (height, width); got {shape!r}.")
    return shape  # type: ignore[return-value]


# --------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """The picture a model saw, and how it was made.

    Attributes
    ----------
    array : numpy.ndarray
        Read-only ``(H, W, 3)`` uint8 RGB after resize and crop: exactly the
        pixels behind the model tensor (for ``channels="L"`` the grey value is
        repeated in all three channels).
    spec : Preprocess
        The specification that produced it.
    geometry : NamedTuple
        ``original_shape``, ``resized_shape``, ``crop_offset`` (top, left) and
        ``output_shape``, all ``(rows, cols)``.
    """

    array: np.ndarray
    spec: Preprocess
    geometry: _Geometry

    @property
    def shape(self) -> tuple[int, int]:
        """Model-input ``(height, width)``."""
        return self.geometry.output_shape

    @property
    def original_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the image before preprocessing."""
        return self.geometry.original_shape

    def map_box(self, box: Sequence[int]) -> Box:
        """Map a box in original-image pixels into model-input pixels (see :func:`map_box`)."""
        return _map_box_geometry(box, self.geometry)

    def to_dict(self) -> dict[str, Any]:
        """Spec and geometry as netCDF-safe attributes (``preprocess_*`` keys)."""
        out = {f"preprocess_{key}": value for key, value in self.spec.to_dict().items()}
        out["preprocess_original_shape"] = list(self.geometry.original_shape)
        out["preprocess_resized_shape"] = list(self.geometry.resized_shape)
        out["preprocess_crop_offset"] = list(self.geometry.crop_offset)
        return out


def map_box(box: Sequence[int], spec: Preprocess, image_shape: Sequence[int]) -> Box:
    """Map a box from original-image pixels into model-input pixels.

    Edges are scaled by the resize factors, shifted by the crop offset,
    rounded to the nearest pixel edge and clipped to the model input.

    Parameters
    ----------
    box : (y0, y1, x0, x1)
        Pixel-edge coordinates in the original image (``image[y0:y1, x0:x1]``).
    spec : Preprocess
        The preprocessing that will be applied.
    image_shape : (height, width, ...)
        Shape of the original image.

    Returns
    -------
    Box
        ``(y0, y1, x0, x1)`` in model-input pixels.

    Raises
    ------
    ValueError
        If the box is not inside the image, or lies entirely outside the crop.
    """
    return _map_box_geometry(box, spec._geometry(_check_shape(image_shape)))


def prepare_batch(images: Iterable[Any], spec: Preprocess) -> tuple[Any, list[PreparedImage]]:
    """Prepare several images with one spec.

    Parameters
    ----------
    images : iterable of images, or a torch tensor / array with a batch axis
        Each item is anything :func:`as_rgb_uint8` accepts; a 4-d torch
        tensor ``(N, C, H, W)`` or NumPy array ``(N, H, W, C)`` is split
        along its first axis.
    spec : Preprocess

    Returns
    -------
    tensor : torch.Tensor
        float32 ``(N, C, H, W)``.
    prepared : list of PreparedImage

    Raises
    ------
    ValueError
        If there are no images, or they come out in different sizes (set
        ``size`` and ``crop`` so that every image maps to the same shape).
    """
    import torch

    if not isinstance(spec, Preprocess):
        raise _error("InputTypeError", f"spec must be a Preprocess; got {type(spec).__name__}.")
    if isinstance(images, (str, bytes)):
        raise _error("InputTypeError", "images must be an iterable of images, not a string.")
    prepared = [spec.prepare(image) for image in images]
    if not prepared:
        raise _error("InputError", "prepare_batch() got no images.")
    shapes = sorted({p.shape for p in prepared})
    if len(shapes) > 1:
        raise _error("InputError",
            f"the images come out in different sizes {shapes}; set size and crop (or "
            "size=(h, w)) so that every image maps to the same shape."
        )
    tensor = torch.cat([spec.normalize(p.array) for p in prepared], dim=0)
    return tensor, prepared
