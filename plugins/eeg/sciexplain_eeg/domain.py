"""The EEG domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; each member imports what it
needs when called, so registering the plugin costs nothing and no module imports another in a
cycle (``explain`` and ``demo`` never import this module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .explain import DEFAULT_PRESET, DIMS, epochs_to_tensor, explain_epochs, is_epochs

__all__ = ["EEGDomain", "DOMAIN"]


class EEGDomain(Domain):
    """The EEG domain registered under ``sciexplain.domains`` (see ``docs/plugins.md``)."""

    name = "eeg"
    distribution = "sciexplain-eeg"
    default_preset = DEFAULT_PRESET
    dims = DIMS

    def claims(self, data: Any) -> bool:
        """True for ``mne.Epochs``/``EpochsArray``, decided from type names without importing mne."""
        return is_epochs(data)

    def to_tensor(self, data: Any, model: Any = None, **options: Any):
        """Epochs -> (tensor, {"dims", "coords", "attrs"}); see :func:`epochs_to_tensor`."""
        return epochs_to_tensor(data, model, **options)

    def explain(self, model: Any, data: Any, **kwargs: Any):
        """``sx.explain(model, epochs, ...)`` lands here; see :func:`explain_epochs`."""
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("dims", "coords", "at", "through", "bounds")
                                                          and v is None)}
        return explain_epochs(model, data, **kwargs)

    def removal(self, **options: Any):
        """Channel-time blocks replaced by the epoch's channel mean (``kind="mean"``) or zeroed."""
        from .perturbation import block_removal
        return block_removal(**options)

    def plot(self, R, **kwargs: Any):
        """The headline figure: single-trial topomaps of relevance summed in time windows."""
        from .plots import plot_topomap
        return plot_topomap(R, **kwargs)

    def demo(self, out: Path) -> dict:
        """Train on FingerMovements, explain the test epochs, write figures and netCDF into ``out``."""
        from .demo import run_demo
        return run_demo(out)


DOMAIN = EEGDomain()
