"""Explain image classifiers on photos: preprocessing recorded, pixels labelled.

The relevance comes back on the pixels the model saw (after resize and crop), with dims
``("image", "y", "x")`` after pooling colour, or ``("image", "color", "y", "x")`` before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


from .preprocess import PreparedImage, Preprocess
from sciexplain.errors import InputError, InputTypeError

__all__ = ["explain_image", "input_bounds", "prepare_images", "DEFAULT_PRESET"]

#: the image domain's default LRP preset, chosen by measurement (``benchmarks/bench_conservation.py``,
#: issue 20): on EfficientNet-Lite0 over the bundled photos and their mirror images it leaves 0.3% of
#: f(x) absorbed (median) where the earlier default ``"mobilenet"`` left 99.8%, with an area between
#: the LeRF and MoRF curves whose paired difference to "mobilenet" is not significant (table in the
#: plugin README)
DEFAULT_PRESET = "mobilenet-conserving"

#: dims of an image explanation before and after pooling colour
DIMS_COLOR = ("image", "color", "y", "x")
DIMS = ("image", "y", "x")


def input_bounds(spec: Preprocess):
    """The box of valid model inputs: pixel values 0 and 255 after the spec's scaling.

    Returns per-channel tensors of shape (1, C, 1, 1), the bounds for ZBox on the first layer.
    """
    import torch
    mean = np.broadcast_to(np.asarray(spec.mean, dtype=np.float32), (spec.n_channels,))
    scale = np.broadcast_to(np.asarray(spec.scale, dtype=np.float32), (spec.n_channels,))
    if spec.channels == "BGR":
        mean, scale = mean[::-1], scale[::-1]
    lo, hi = (0.0 - mean) / scale, (255.0 - mean) / scale
    low, high = np.minimum(lo, hi), np.maximum(lo, hi)  # a negative scale flips the box
    shape = (1, spec.n_channels, 1, 1)
    return torch.tensor(low.copy()).reshape(shape), torch.tensor(high.copy()).reshape(shape)


def _is_single_image(images: Any) -> bool:
    if isinstance(images, (list, tuple)):
        return False
    if isinstance(images, np.ndarray):
        return images.ndim in (2, 3)
    try:
        import torch
        if isinstance(images, torch.Tensor):
            return images.ndim in (2, 3)
    except ImportError:  # pragma: no cover
        pass
    return True  # a PIL image or another single object


def prepare_images(images: Any, spec: Preprocess):
    """Images -> (batch tensor (N, C, H, W), list of PreparedImage); one size for the batch."""
    import torch
    items = [images] if _is_single_image(images) else list(images)
    if not items:
        raise InputError("no images given: pass one image or a non-empty list of images")
    prepared: list[PreparedImage] = [spec.prepare(img) for img in items]
    shapes = {p.array.shape for p in prepared}
    if len(shapes) > 1:
        raise InputError(f"the preprocessing gives images of different sizes {sorted(shapes)}; set crop= (or "
                         "size=(h, w)) in the Preprocess so that every image has the model's input size")
    x = torch.cat([spec.normalize(p.array) for p in prepared])
    return x, prepared


def _spec_for(model: Any, preprocess: Preprocess | None) -> Preprocess:
    spec = preprocess if preprocess is not None else getattr(model, "preprocess", None)
    if spec is None:
        raise InputError("no preprocessing spec: pass preprocess=Preprocess(size=..., crop=..., mean=..., "
                         "scale=...) with the resize and scaling the model was trained with (or attach it "
                         "as model.preprocess). Without it the image's size and value range are unknown.")
    if not isinstance(spec, Preprocess):
        raise InputTypeError(f"preprocess must be a sciexplain_image.Preprocess, got {type(spec).__name__}")
    return spec


def explain_image(model: Any, images: Any, target: Any = None, *, preprocess: Preprocess | None = None,
                  method: str = "lrp", preset: Any = None, pool_color: bool = True,
                  names: Sequence[str] | None = None, **kwargs: Any):
    """Explain an image classifier on one image or a list of images.

    Parameters
    ----------
    model : torch.nn.Module
        An image classifier taking ``(N, C, H, W)``.
    images : PIL image, array, tensor, or a list of them
        See :func:`sciexplain_image.as_rgb_uint8` for the accepted forms (greyscale is
        replicated to RGB, RGBA composited on white).
    target : int, list of int, or None
        Class(es) to explain; None explains the predicted class.
    preprocess : Preprocess, optional
        Resize, crop and scaling; defaults to ``model.preprocess``. Recorded in the result's attrs.
    method, preset, **kwargs
        As for :func:`sciexplain.explain`. ``preset=None`` is ``model.default_preset`` where the
        model has one (the Fashion-MNIST ViT and ConvNeXt do), else :data:`DEFAULT_PRESET`
        (``"mobilenet-conserving"``: ZBox on the first layer, WSquare on depthwise convolutions,
        ZPlus on pointwise ones, Epsilon(1e-6) on dense layers; see the plugin README for the
        measurement that chose it, how much of f(x) it leaves absorbed, and the other presets).
        For presets with ZBox (``"mobilenet-conserving"``, ``"mobilenet"``, ``"epsilon-plus-box"``,
        ``"deep-taylor"``) the bounds are the valid pixel range after scaling, per channel.
    pool_color : bool
        Sum relevance over colour (dims ``("image", "y", "x")``); False keeps ``"color"``.
    names : list of str, optional
        A label per image (e.g. the photo name), stored as the ``image`` coordinate.

    Returns
    -------
    xarray.DataArray
        The relevance contract with pixel coordinates ``y``, ``x`` of the model input, the
        class name of the target (``target_name``) when the model has ``class_names``, and the
        preprocessing in ``attrs`` (keys ``preprocess_*``).
    """
    import sciexplain as sx
    spec = _spec_for(model, preprocess)
    x, prepared = prepare_images(images, spec)
    n, c, h, w = x.shape
    if names is not None and len(names) != n:
        raise InputError(f"{len(names)} names for {n} images")
    if "bounds" not in kwargs and method == "lrp":
        from sciexplain.rules import uses_bounds
        if preset is None:  # a model may name its own default (the Fashion ViT: "attnlrp")
            preset = getattr(model, "default_preset", DEFAULT_PRESET)
        if uses_bounds(preset):
            kwargs["bounds"] = input_bounds(spec)
    coords: dict[str, Any] = {
        "image": list(names) if names is not None else np.arange(n),
        "color": list(spec.channels) if spec.channels != "L" else ["L"],
        "y": np.arange(h), "x": np.arange(w),
    }
    R = sx.explain(model, x, target, method=method, preset=preset, dims=DIMS_COLOR, coords=coords, **kwargs)
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        R = R.assign_coords(target_name=("image", [str(class_names[int(t)]) for t in R.target.values]))
    attrs = {**R.attrs, "domain": "image"}
    for key, value in prepared[0].to_dict().items():
        attrs[key] = _netcdf_value(value)
    R.attrs = attrs
    if not pool_color:
        return R
    if R.attrs.get("decomposes") == "none":
        # gradients etc. decompose nothing; summing their colour channels is the usual display
        # convention, not a decomposition, and the attrs keep saying decomposes="none"
        import warnings
        from sciexplain.result import DecompositionWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DecompositionWarning)
            return R.relevance.pool("color")
    return R.relevance.pool("color")


def _netcdf_value(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value
