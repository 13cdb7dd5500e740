"""sciexplain-eeg: EEG data, reference models and training for sciexplain.

Importing the package is cheap: the public names below are loaded on first
use, so ``import sciexplain_eeg`` neither imports torch, mne nor the
sciexplain core.

Data
    :func:`load_finger_movements`, :func:`finger_movements_arrays`,
    :func:`read_ts` (real data, BCI Competition II set IV, repaired);
    :func:`make_synthetic_epochs`, :class:`GroundTruth` (known effects).
Models
    :class:`SturmDNN`, :class:`CompactEEGNet` (LRP-friendly, output logits).
Training
    :func:`fit`, :class:`FitResult`, :func:`evaluate`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "FINGER_MOVEMENTS_CH_NAMES": "data",
    "FINGER_MOVEMENTS_EVENT_ID": "data",
    "FINGER_MOVEMENTS_SFREQ": "data",
    "TsData": "data",
    "finger_movements_arrays": "data",
    "finger_movements_path": "data",
    "load_finger_movements": "data",
    "read_ts": "data",
    "DEFAULT_CH_NAMES": "synthetic",
    "GroundTruth": "synthetic",
    "make_synthetic_epochs": "synthetic",
    "CompactEEGNet": "models",
    "SturmDNN": "models",
    "FitResult": "training",
    "evaluate": "training",
    "fit": "training",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .data import (
        FINGER_MOVEMENTS_CH_NAMES,
        FINGER_MOVEMENTS_EVENT_ID,
        FINGER_MOVEMENTS_SFREQ,
        TsData,
        finger_movements_arrays,
        finger_movements_path,
        load_finger_movements,
        read_ts,
    )
    from .models import CompactEEGNet, SturmDNN
    from .synthetic import DEFAULT_CH_NAMES, GroundTruth, make_synthetic_epochs
    from .training import FitResult, evaluate, fit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sciexplain_eeg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
