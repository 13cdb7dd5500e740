"""The relevance contract: one labelled ``xarray.DataArray`` per explanation, its accessor and plots."""

from .contract import *  # noqa: F401,F403
from .contract import __all__  # noqa: F401
