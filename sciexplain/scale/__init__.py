"""Explanations and evaluations of whole data sets, chunk by chunk, on Dask (``sx.dataset``)."""

from .dataset import *  # noqa: F401,F403
from .dataset import __all__  # noqa: F401
