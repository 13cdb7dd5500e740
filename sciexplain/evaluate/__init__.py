"""Measuring the quality of explanations (``sx.evaluate``)."""

from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401
from .core import COMPARE_METRICS  # noqa: F401
