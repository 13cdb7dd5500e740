"""The video domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain``, ``plots`` and
``demo`` never import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .explain import DEFAULT_PRESET, DIMS, explain_motion, fields_to_tensor
from .motion import is_motion_field

__all__ = ["VideoDomain", "DOMAIN"]


class VideoDomain(Domain):
    """Motion-vector video: :class:`~sciexplain_video.MotionField` (or a list of them) in, relevance per block out."""

    name = "video"
    distribution = "sciexplain-video"
    default_preset = DEFAULT_PRESET
    dims = DIMS

    def claims(self, data: Any) -> bool:
        """True for a ``MotionField`` or a non-empty list/tuple of them (by type)."""
        return is_motion_field(data)

    def to_tensor(self, data: Any, model: Any = None, **options: Any):
        """Field(s) -> (tensor (clip, component, frame, block_y, block_x), labels); see :func:`fields_to_tensor`."""
        return fields_to_tensor(data, model, **options)

    def explain(self, model: Any, data: Any, **kwargs: Any):
        """``sx.explain(model, field, ...)`` lands here; see :func:`explain_motion`."""
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("dims", "coords", "at", "through", "bounds")
                                                          and v is None)}
        return explain_motion(model, data, **kwargs)

    def removal(self, **options: Any):
        """Motion blocks zeroed (both components, all frames of a block-frame region)."""
        return "zero"

    def plot(self, R, **kwargs: Any):
        """The headline figure: relevance per frame (the curve under Samek et al. 2017, Fig. 2C)."""
        from .plots import plot_frame_curve
        return plot_frame_curve(R, **kwargs)

    def demo(self, out: Path) -> dict:
        """Explain generated and real clips with the bundled models; figures and netCDF into ``out``."""
        from .demo import run_demo
        return run_demo(out)


DOMAIN = VideoDomain()
