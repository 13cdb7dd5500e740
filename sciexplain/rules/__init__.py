"""LRP rules (``sx.rules``): small, named, picklable objects, and presets that map them to layers."""

from .affine import *  # noqa: F401,F403
from .affine import __all__ as _affine_all

__all__ = list(_affine_all)
