"""sciexplain-image: images, photos and image models for sciexplain.

Importing this package is cheap: torch, PIL and the model packages are
imported only when a function that needs them is used. Names are resolved
lazily from the submodules:

* :mod:`sciexplain_image.preprocess` -- :class:`Preprocess`,
  :class:`PreparedImage`, :class:`Box`, :func:`as_rgb_uint8`,
  :func:`map_box`, :func:`prepare_batch`
* :mod:`sciexplain_image.photos` -- :func:`load_photo`, :func:`list_photos`,
  :func:`photo_box`, :func:`photo_info`, ``PHOTO_BOXES``
* :mod:`sciexplain_image.models` -- :func:`load_efficientnet_lite0`,
  :func:`imagenet_class_names`, :func:`predict_top`,
  ``EFFICIENTNET_LITE0_PREPROCESS``
* :mod:`sciexplain_image.fashion` -- :func:`load_fashion_mnist`,
  :class:`FashionCNN`, :func:`load_fashion_cnn`, :func:`fashion_to_tensor`,
  ``FASHION_CLASSES``, ``FASHION_PREPROCESS``
* :mod:`sciexplain_image.fashion_modern` -- :class:`FashionViT`, :class:`FashionConvNeXt`,
  :func:`load_fashion_vit`, :func:`load_fashion_convnext`
* :mod:`sciexplain_image.registry` -- :class:`ShippedModel`, ``SHIPPED``, :func:`model_info`
  (every image model by name: architecture, data, input size, accuracy, default preset)
* :mod:`sciexplain_image.explain` -- :func:`explain_image`, :func:`input_bounds`,
  the domain object ``DOMAIN`` registered under ``sciexplain.domains``
* :mod:`sciexplain_image.regions` -- :func:`box_shares`, :func:`pool_regions`,
  :func:`pool_superpixels`, :func:`pool_patches`
* :mod:`sciexplain_image.plots` -- :func:`plot_overlay`, :func:`plot_methods`,
  :func:`plot_pattern`, :func:`plot_box_shares` (each returns a Figure)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Box": "preprocess",
    "PreparedImage": "preprocess",
    "Preprocess": "preprocess",
    "as_rgb_uint8": "preprocess",
    "map_box": "preprocess",
    "prepare_batch": "preprocess",
    "PHOTO_BOXES": "photos",
    "list_photos": "photos",
    "load_photo": "photos",
    "photo_box": "photos",
    "photo_info": "photos",
    "EFFICIENTNET_LITE0_PREPROCESS": "models",
    "imagenet_class_names": "models",
    "load_efficientnet_lite0": "models",
    "predict_top": "models",
    "FASHION_CLASSES": "fashion",
    "FASHION_PREPROCESS": "fashion",
    "FashionCNN": "fashion",
    "fashion_to_tensor": "fashion",
    "load_fashion_cnn": "fashion",
    "load_fashion_mnist": "fashion",
    "FashionConvNeXt": "fashion_modern",
    "FashionViT": "fashion_modern",
    "load_fashion_convnext": "fashion_modern",
    "load_fashion_vit": "fashion_modern",
    "SHIPPED": "registry",
    "ShippedModel": "registry",
    "model_info": "registry",
    "explain_image": "explain",
    "input_bounds": "explain",
    "prepare_images": "explain",
    "ImageDomain": "domain",
    "DOMAIN": "domain",
    "pool_regions": "regions",
    "box_shares": "regions",
    "superpixels": "regions",
    "pool_superpixels": "regions",
    "pool_patches": "regions",
    "plot_overlay": "plots",
    "plot_methods": "plots",
    "plot_models": "plots",
    "plot_pattern": "plots",
    "plot_box_shares": "plots",
    "run_demo": "demo",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sciexplain_image' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
