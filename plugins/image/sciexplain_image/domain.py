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
    default_preset = "epsilon-plus-box"
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
            kwargs["preset"] = self.default_preset
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

    def plot(self, R, **kwargs: Any):
        from .plots import plot_overlay
        return plot_overlay(R, **kwargs)

    def demo(self, out: Path) -> dict:
        from .demo import run_demo
        return run_demo(out)


DOMAIN = ImageDomain()

