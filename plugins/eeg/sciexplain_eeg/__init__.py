"""sciexplain-eeg: EEG data, reference models and training for sciexplain.

Importing the package is cheap: the public names below are loaded on first
use, so ``import sciexplain_eeg`` neither imports torch, mne nor the
sciexplain core.

Data
    :func:`load_finger_movements`, :func:`finger_movements_arrays`,
    :func:`read_ts` (real data, BCI Competition II set IV, repaired);
    :func:`make_synthetic_epochs`, :class:`GroundTruth` (known effects).
Models
    :class:`SturmDNN`, :class:`CompactEEGNet`, :class:`LinearEEG` (with
    :class:`EpochDemean`; LRP-friendly, output logits).
Training
    :func:`fit`, :class:`FitResult`, :func:`evaluate`;
    :meth:`LinearEEG.fit_logistic`.
braindecode's networks (needs braindecode 0.8.1)
    :data:`ZOO` (the registry: ShallowFBCSPNet, Deep4Net, EEGNetv4, EEGConformer, ATCNet),
    :func:`zoo_models` (the registry as a table with measured accuracies), :func:`make_braindecode`,
    :func:`load_zoo` (shipped weights), :func:`wrap_braindecode`,
    :class:`BraindecodeEEG`.
ICLabel (needs mne-icalabel and psutil)
    :func:`explain_iclabel`, :func:`iclabel_features`, :func:`input_shares`, :func:`plot_iclabel`,
    :func:`load_iclabelnet`, :data:`ICLABEL_CLASSES`; a simulated recording with known sources:
    :func:`simulate_recording`, :func:`fit_ica`, :func:`match_components`.
Explaining
    :func:`explain_epochs` (also reached as ``sciexplain.explain(model, epochs)``),
    :func:`epochs_to_tensor`, the domain object ``DOMAIN``.
Pooling and MNE
    :func:`default_rois`, :func:`pool_rois`, :func:`channel_regions`;
    :func:`to_evoked`, :func:`relevance_info`.
Figures (each returns a matplotlib Figure)
    :func:`plot_topomap`, :func:`plot_class_topomaps`, :func:`plot_joint`,
    :func:`plot_roi_timecourse`, :func:`plot_left_right`, :func:`plot_perturbation`.
Checks
    :func:`block_removal`, :func:`perturbation_comparison` (MoRF/LeRF, AOPC);
    :func:`run_acceptance`, :func:`ground_truth_scores` (synthetic ground truth);
    :func:`run_demo`.
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
    "EpochDemean": "models",
    "LinearEEG": "models",
    "SturmDNN": "models",
    "DOMAIN": "domain",
    "EEGDomain": "domain",
    "epochs_to_tensor": "explain",
    "explain_epochs": "explain",
    "is_epochs": "explain",
    "channel_regions": "rois",
    "default_rois": "rois",
    "pool_rois": "rois",
    "relevance_info": "evoked",
    "to_evoked": "evoked",
    "MontageMissingError": "plots",
    "plot_class_topomaps": "plots",
    "plot_joint": "plots",
    "plot_left_right": "plots",
    "plot_perturbation": "plots",
    "plot_roi_timecourse": "plots",
    "plot_topomap": "plots",
    "BlockRemoval": "perturbation",
    "PerturbationResult": "perturbation",
    "block_removal": "perturbation",
    "perturbation_comparison": "perturbation",
    "AcceptanceResult": "acceptance",
    "ground_truth_scores": "acceptance",
    "run_acceptance": "acceptance",
    "run_demo": "demo",
    "ZOO": "zoo_registry",
    "BraindecodeEEG": "zoo",
    "load_zoo": "zoo",
    "make_braindecode": "zoo",
    "wrap_braindecode": "zoo",
    "zoo_models": "zoo_registry",
    "conserving_preset": "zoo_registry",
    "ICLABEL_CLASSES": "iclabel",
    "explain_iclabel": "iclabel",
    "iclabel_features": "iclabel",
    "input_shares": "iclabel",
    "load_iclabelnet": "iclabel",
    "plot_iclabel": "iclabel",
    "fit_ica": "icsim",
    "match_components": "icsim",
    "simulate_recording": "icsim",
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
    from .acceptance import AcceptanceResult, ground_truth_scores, run_acceptance
    from .demo import run_demo
    from .evoked import relevance_info, to_evoked
    from .domain import DOMAIN, EEGDomain
    from .explain import epochs_to_tensor, explain_epochs, is_epochs
    from .models import CompactEEGNet, EpochDemean, LinearEEG, SturmDNN
    from .perturbation import BlockRemoval, PerturbationResult, block_removal, perturbation_comparison
    from .plots import (MontageMissingError, plot_class_topomaps, plot_joint, plot_left_right,
                        plot_perturbation, plot_roi_timecourse, plot_topomap)
    from .rois import channel_regions, default_rois, pool_rois
    from .synthetic import DEFAULT_CH_NAMES, GroundTruth, make_synthetic_epochs
    from .training import FitResult, evaluate, fit
    from .zoo import ZOO, BraindecodeEEG, conserving_preset, load_zoo, make_braindecode, wrap_braindecode, zoo_models
    from .iclabel import (ICLABEL_CLASSES, explain_iclabel, iclabel_features, input_shares, load_iclabelnet,
                          plot_iclabel)
    from .icsim import fit_ica, match_components, simulate_recording


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sciexplain_eeg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
