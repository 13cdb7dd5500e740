"""Canonizers (``sx.canonizers``): rewrite a model into an equivalent form whose layers have LRP rules."""

from .base import *  # noqa: F401,F403
from .base import __all__ as _base_all
from .batchnorm import BatchNormFolding
from .defaults import default, validate  # noqa: F401  (validate: for the engine)
from .recurrent import RecurrentUnrolling
from .torchscript import TorchScriptToEager

__all__ = [*_base_all[:3], "BatchNormFolding", "default", *_base_all[3:], "RecurrentUnrolling", "TorchScriptToEager"]
