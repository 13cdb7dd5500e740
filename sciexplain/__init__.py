"""sciexplain: explain predictions of trained models by decomposing them.

>>> import sciexplain as sx
>>> R = sx.explain(model, x)                  # LRP, labelled xarray.DataArray
>>> R.relevance.pool("dim_1")                 # sums that keep the ledger

Heavy or optional parts (evaluation, plotting, plugins) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from . import canonizers, rules
from ._version import __version__
from .engine import METHODS, Explainer, explain, ledger
from .errors import (ComputationError, DataNotFoundError, ExplainWarning, InputError, InputTypeError,
                     LedgerError, MissingDependencyError, RuleError, SciexplainError, UnsupportedModelError)
from .presets import PRESETS
from .registry import LeafCall, LeafRelevance, register
from . import accessor as _accessor  # noqa: F401  (registers the ``relevance`` accessor)

__all__ = [
    "__version__", "explain", "ledger", "Explainer", "METHODS", "PRESETS", "rules", "canonizers",
    "register", "LeafCall", "LeafRelevance", "domains",
    "SciexplainError", "InputError", "InputTypeError", "RuleError", "UnsupportedModelError",
    "DataNotFoundError", "MissingDependencyError", "ComputationError", "LedgerError", "ExplainWarning",
]


def domains() -> dict[str, str]:
    """Installed domain plugins and their versions."""
    from .plugins import domains as _domains
    return _domains()


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "plotting", "plugins", "prototypes", "tricks", "pipeline", "dataset", "fisher",
                "recurrent", "recurrent_fused", "torchscript"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    if name in ("explain_dataset", "perturbation_dataset", "continuity_dataset",
                "randomization_dataset"):  # Dask and Zarr are imported on first use
        from . import dataset
        return getattr(dataset, name)
    raise AttributeError(f"module 'sciexplain' has no attribute {name!r}")
