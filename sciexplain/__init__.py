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
from .explain.engine import METHODS, Explainer, explain, ledger
from .errors import (ComputationError, DataNotFoundError, ExplainWarning, InputError, InputTypeError,
                     LedgerError, MissingDependencyError, RuleError, SciexplainError, UnsupportedModelError)
from .rules.presets import PRESETS
from .kinds.registry import LeafCall, LeafRelevance, register
from .result import accessor as _accessor  # noqa: F401  (registers the ``relevance`` accessor)

__all__ = [
    "__version__", "explain", "ledger", "Explainer", "METHODS", "PRESETS", "rules", "canonizers",
    "register", "LeafCall", "LeafRelevance", "domains",
    "SciexplainError", "InputError", "InputTypeError", "RuleError", "UnsupportedModelError",
    "DataNotFoundError", "MissingDependencyError", "ComputationError", "LedgerError", "ExplainWarning",
]


#: ``sx.<name>`` namespaces imported on first use, and the module that holds each
_LAZY_MODULES = {
    "evaluate": ".evaluate",
    "plotting": ".result.plotting",
    "plugins": ".plugins",
    "prototypes": ".analysis.prototypes",
    "tricks": ".analysis.tricks",
    "pipeline": ".pipeline",
    "dataset": ".scale",
    "fisher": ".kinds.units.fisher",
    "recurrent": ".canonizers.recurrent",
    "recurrent_fused": ".canonizers.recurrent_fused",
    "torchscript": ".canonizers.torchscript",
}


#: ``sx.<name>`` functions and classes imported on first use, and the module that holds each
_LAZY_FUNCTIONS = {
    "spray": ".analysis.spray",
    "plot_spray": ".analysis.spray_plot",
    "artifact_direction": ".analysis.clarc",
    "PClArC": ".analysis.clarc",
    "AClArC": ".analysis.clarc",
    "clarc_report": ".analysis.clarc_report",
}


def domains() -> dict[str, str]:
    """Installed domain plugins and their versions."""
    from .plugins import domains as _domains
    return _domains()


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        import importlib
        return importlib.import_module(_LAZY_MODULES[name], __name__)
    if name in _LAZY_FUNCTIONS:
        import importlib
        return getattr(importlib.import_module(_LAZY_FUNCTIONS[name], __name__), name)
    if name in ("explain_dataset", "perturbation_dataset", "continuity_dataset",
                "randomization_dataset"):  # Dask and Zarr are imported on first use
        from . import scale
        return getattr(scale, name)
    raise AttributeError(f"module 'sciexplain' has no attribute {name!r}")
