"""The image domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain`` and ``demo`` never
import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sciexplain.plugins import Domain

from .explain import DIMS, DIMS_COLOR, _spec_for, explain_image, prepare_images
from .preprocess import Preprocess
from sciexplain.errors import InputError

__all__ = ["ImageDomain", "DOMAIN"]


class ImageDomain(Domain):
    """The image domain registered under ``sciexplain.domains`` (see ``docs/plugins.md``)."""

    name = "image"
    distribution = "sciexplain-image"
    default_preset = "mobilenet-conserving"  # = explain.DEFAULT_PRESET, chosen by benchmarks/bench_conservation.py
    dims = DIMS

    def claims(self, data: Any) -> bool:
        names = [f"{c.__module__}.{c.__qualname__}" for c in type(data).__mro__]
        if any(n.startswith("PIL.") for n in names):
            return True
        if isinstance(data, (list, tuple)) and data:
            return all(any(f"{c.__module__}".startswith("PIL.") for c in type(d).__mro__) for d in data)
        return False

    def to_tensor(self, data: Any, model: Any = None, preprocess: Preprocess | None = None, **options: Any):
        spec = _spec_for(model, preprocess)
        x, prepared = prepare_images(data, spec)
        return x, {"dims": DIMS_COLOR, "coords": {"y": np.arange(x.shape[2]), "x": np.arange(x.shape[3])},
                   "attrs": prepared[0].to_dict(), "prepared": prepared}

    def explain(self, model: Any, data: Any, **kwargs: Any):
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("dims", "coords", "bounds") and v is None)}
        if kwargs.get("preset") is None:
            kwargs["preset"] = getattr(model, "default_preset", self.default_preset)
        for key in ("at", "through"):
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        if kwargs.get("max_pool") == "winner-take-all":
            kwargs.pop("max_pool")
        if "dims" in kwargs or "coords" in kwargs:
            raise InputError("image explanations set dims and coords themselves; do not pass dims=/coords=")
        return explain_image(model, data, **kwargs)

    def removal(self, **options: Any):
        return "uniform"

    def plot(self, R, sample: int = 0, **kwargs: Any):
        """The headline figure: the relevance map (over the image when ``image=`` is given)."""
        from .plots import plot_overlay
        return plot_overlay(R, sample=sample, **kwargs)

    def demo(self, out: Path) -> dict:
        from .demo import run_demo
        return run_demo(out)

    # -- pipelines (``sciexplain run FILE.toml``) ---------------------------------------------
    def pipeline_loaders(self) -> dict:
        """``photos(names=[...])``: bundled photos with object boxes; ``fashion_mnist(split, n)``."""
        return {"photos": _load_photos, "fashion_mnist": _load_fashion}

    def pipeline_models(self) -> dict:
        """The models of :data:`~sciexplain_image.registry.SHIPPED`: ``efficientnet_lite0`` (ImageNet
        weights from the model package), ``fashion_cnn``, ``fashion_vit`` and ``fashion_convnext`` (the
        plugin's shipped Fashion-MNIST weights). The ViT and the ConvNeXt are explained with their own
        ``default_preset`` where a method names no preset, as :func:`explain_image` explains them."""
        from .fashion import load_fashion_cnn
        from .fashion_modern import load_fashion_convnext, load_fashion_vit
        from .models import load_efficientnet_lite0
        return {"efficientnet_lite0": _ignore_seed(load_efficientnet_lite0),
                "fashion_cnn": _ignore_seed(load_fashion_cnn),
                "fashion_vit": _ignore_seed(load_fashion_vit),
                "fashion_convnext": _ignore_seed(load_fashion_convnext)}

    def pipeline_architectures(self) -> dict:
        """``FashionCNN``, ``FashionViT`` and ``FashionConvNeXt`` (default sizes) for state dicts."""
        from .fashion import FashionCNN
        from .fashion_modern import FashionConvNeXt, FashionViT
        return {"FashionCNN": FashionCNN, "FashionViT": FashionViT, "FashionConvNeXt": FashionConvNeXt}

    def pipeline_poolings(self) -> dict:
        """``box_shares``: object box vs context (photos only); ``patches(size)``: square patches."""
        return {"box_shares": _box_shares, "patches": _patches}

    def pipeline_figures(self) -> dict:
        """``overlay(sample)``: relevance over the model's view of the image; ``box_shares``."""
        return {"overlay": _overlay, "box_shares": _box_shares_figure}


def _ignore_seed(load):
    def factory(*, seed: int, **params: Any):  # shipped weights: nothing is random
        return load(**params)
    factory.__name__ = load.__name__
    return factory


def _load_photos(names: list | None = None) -> dict:
    from .demo import DEMO_PHOTOS
    from .photos import load_photo
    names = list(names) if names is not None else list(DEMO_PHOTOS)
    images = [load_photo(n) for n in names]

    def explain_defaults(model: Any) -> dict:
        from .explain import input_bounds
        return {"preset": "epsilon-plus-box", "bounds": input_bounds(_spec_for(model, None))}
    return {"native": images, "coords": {"image": names}, "extras": {"photos": names, "images": images},
            "explain": explain_defaults}


def _load_fashion(split: str = "test", n: int | None = None) -> dict:
    from .fashion import _FILES, FASHION_DIR, fashion_to_tensor, load_fashion_mnist
    X, y = load_fashion_mnist(split)
    if n is not None:
        X, y = X[:n], y[:n]
    x = fashion_to_tensor(X).numpy()
    return {"x": x, "dims": DIMS_COLOR, "y": y,
            "coords": {"color": ["L"], "y": np.arange(28), "x": np.arange(28), "label": ("image", y)},
            "explain": _fashion_explain_defaults,
            "files": [FASHION_DIR / name for name in _FILES[split][:2]], "extras": {"images": X}}


def _fashion_explain_defaults(model: Any) -> dict:
    """The model's own ``default_preset`` where it has one (the Fashion ViT and ConvNeXt, as
    :func:`~sciexplain_image.explain_image` chooses it); else ``epsilon-plus-box`` on pixels in [0, 1]."""
    preset = getattr(model, "default_preset", None)
    if preset is not None:
        from sciexplain.rules import uses_bounds
        return {"preset": preset, **({"bounds": (0.0, 1.0)} if uses_bounds(preset) else {})}
    return {"preset": "epsilon-plus-box", "bounds": (0.0, 1.0)}


def _colorless(R):
    return R.relevance.pool("color") if "color" in R.dims else R


def _box_shares(R, data, model, **params: Any):
    from .photos import photo_box
    from .regions import box_shares
    if data.extras.get("photos") is None:
        raise InputError("box_shares needs photos with known object boxes: use the 'photos' loader")
    names = [str(n) for n in R[R.dims[0]].values]  # the photos explained (a run may use the first few)
    spec = _spec_for(model, None)
    return box_shares(_colorless(R), [photo_box(n, spec) for n in names])


def _patches(R, data, model, size: int = 16):
    from .regions import pool_patches
    return pool_patches(_colorless(R), size)


def _seen(data, model, i: int):
    images = data.extras.get("images")
    if images is None:
        return None
    if data.extras.get("photos") is not None:
        return _spec_for(model, None).prepare(images[i]).array
    return np.asarray(images[i])


def _overlay(R, data, model, sample: int = 0, alpha: float = 0.65):
    from .plots import plot_overlay
    return plot_overlay(_colorless(R), _seen(data, model, sample), sample, alpha=alpha)


def _box_shares_figure(R, data, model):
    from .plots import plot_box_shares
    return plot_box_shares(_box_shares(R, data, model))


DOMAIN = ImageDomain()

