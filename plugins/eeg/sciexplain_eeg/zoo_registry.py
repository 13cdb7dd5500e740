"""The registry of braindecode networks the EEG plugin ships: :data:`ZOO` (one :class:`ZooEntry` per
network: braindecode arguments for the synthetic and the FingerMovements input sizes, the default
LRP preset, the measured accuracies), :func:`zoo_models` (the registry as a table) and
:func:`conserving_preset`.

Each network's default LRP preset is the one the conservation benchmark chose
(``benchmarks/bench_conservation.py --only "eeg zoo"``): where a preset leaves at most 20% of f(x)
absorbed (median), no epoch above 50%, with an ABPC not significantly below the earlier default's,
the default meets both; where none does, no measured preset absorbs less and ranks blocks better.
Three of them are :func:`conserving_preset` mappings (a base preset with the biases' share passed on
to the inputs); :attr:`ZooEntry.preset_name` is their readable name. Building, wrapping and loading
the networks is :mod:`sciexplain_eeg.zoo`.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sciexplain.errors import InputError

__all__ = ["ZOO", "ZooEntry", "SIZES", "conserving_preset", "zoo_models", "zoo_weights_path"]


def conserving_preset(base: str) -> dict:
    """The preset ``base`` with the biases' share of f(x) passed on to the inputs.

    ``BiasToInputs(Epsilon(1e-6))`` on dense layers and ``Fallback(BiasToInputs(Epsilon(1e-6)))`` on
    1d/2d/3d convolutions (a bias's share goes to the inputs in proportion to ``|x w|``, and by ``w^2``
    where no input contributes), ``base`` on every other layer: the row "Epsilon(1e-6),
    Fallback(BiasToInputs(Epsilon(1e-6))) on convs, BiasToInputs on dense" (``base="epsilon"``) or
    "cp-lrp, ..." of ``benchmarks/bench_conservation.py``.

    Parameters
    ----------
    base : str
        A preset name, e.g. ``"epsilon"`` or ``"cp-lrp"``.

    Returns
    -------
    dict
        A preset mapping, as ``sx.explain(..., preset=...)`` accepts it (a new dict on every call).
    """
    from sciexplain.rules import BiasToInputs, Epsilon, Fallback

    if not isinstance(base, str):
        raise InputError(f"conserving_preset takes a preset name as its base, got {type(base).__name__}")
    carry = BiasToInputs(Epsilon(1e-6))
    return {"base": base, nn.Linear: carry, nn.Conv1d: Fallback(carry), nn.Conv2d: Fallback(carry),
            nn.Conv3d: Fallback(carry)}


def _preset_name(preset: Any) -> str:
    """A readable name of a preset given without one: the name itself, or the core's description."""
    if isinstance(preset, str):
        return preset
    if isinstance(preset, Mapping):
        base = preset.get("base")
        return f"custom mapping (base={base!r})" if base else "custom mapping"
    return repr(preset)

#: input sizes the registry has braindecode arguments for: (n_channels, n_times, sfreq) of the data
SIZES = {"synthetic": (30, 101, 100.0), "finger": (28, 28, 100.0)}


@dataclass(frozen=True)
class ZooEntry:
    """One braindecode network in the plugin's registry.

    Attributes
    ----------
    name : str
        The braindecode class name.
    params : dict
        Keyword arguments of the braindecode class for 1 s epochs at 100 Hz (besides ``n_chans``,
        ``n_outputs``, ``n_times``); braindecode's defaults are for 250 Hz (128 Hz for EEGNet) and
        epochs of 4 s, so kernel and pooling lengths are scaled to the sampling rate here.
    default_preset : str or mapping
        The LRP preset :func:`sciexplain_eeg.explain_epochs` (``sx.explain(model, epochs)``) uses for
        it: a preset name or a preset mapping (:func:`conserving_preset`), chosen by the conservation
        benchmark (``benchmarks/bench_conservation.py --only "eeg zoo"``, issue 20).
    preset_name : str
        The readable name of :attr:`default_preset` (e.g. ``"epsilon + bias to inputs"``), shown by
        :func:`zoo_models` and recorded as the result's ``preset`` attribute; empty for a named preset
        (its name is used). Read it through :attr:`default_preset_name`.
    abpc_preset : str
        The LRP preset with the highest ABPC in ``benchmarks/bench_eeg_zoo.py`` (channel-time block
        perturbation on the synthetic epochs): the registry's default before issue 20, the reference
        of the conservation table's paired differences.
    accuracy : float or None
        Test accuracy of the shipped weights on 400 fresh synthetic epochs (seed 1000, default
        noise), as measured by ``benchmarks/bench_eeg_zoo.py``.
    description : str
        What the network is, in one sentence, and its reference.
    n_parameters : int or None
        Trainable parameters of the shipped network (synthetic size).
    finger_params : dict
        Keyword arguments for the FingerMovements epochs (28 channels, 28 samples = 280 ms at 100 Hz):
        kernels and pooling shortened so that the network fits 28 samples
        (``make_braindecode(name, 28, 28, size="finger")``).
    finger_accuracy : float or None
        Test accuracy on the 100 FingerMovements test trials, mean over training seeds 0, 1, 2
        (``python benchmarks/bench_eeg_zoo.py --data finger``); chance is :attr:`finger_chance`.
    finger_accuracy_ci : tuple of float or None
        95 % bootstrap interval of :attr:`finger_accuracy` over the test trials.
    finger_chance : float or None
        The majority class's share of the FingerMovements test trials (0.51).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    default_preset: str | Mapping[Any, Any] = "epsilon"
    preset_name: str = ""
    abpc_preset: str = "epsilon"
    accuracy: float | None = None
    description: str = ""
    n_parameters: int | None = None
    finger_params: Mapping[str, Any] = field(default_factory=dict)
    finger_accuracy: float | None = None
    finger_accuracy_ci: tuple[float, float] | None = None
    finger_chance: float | None = None

    @property
    def default_preset_name(self) -> str:
        """The readable name of :attr:`default_preset`."""
        return self.preset_name or _preset_name(self.default_preset)


#: the braindecode networks the plugin trains, explains and ships weights for. Defaults from the
#: conservation table (benchmarks/README.md, "eeg zoo: *"; absorbed / f(x), median, and ABPC on 100 epochs):
#: ShallowFBCSPNet keeps alpha2-beta1 (0.0%, meets both criteria); EEGNetv4 and ATCNet meet both with
#: the conserving preset (9.9% -> 0.0% and 10.9% -> 0.1%, ABPC unchanged within its interval); on
#: Deep4Net (33.8% -> 0.0%, ABPC 3.72 -> 3.71) and EEGConformer (0.9% -> -0.2%, ABPC 8.27 -> 8.29) no
#: preset meets both, and no measured preset absorbs less and ranks blocks better than the conserving one.
ZOO: dict[str, ZooEntry] = {
    "ShallowFBCSPNet": ZooEntry(
        "ShallowFBCSPNet",
        {"filter_time_length": 10, "pool_time_length": 30, "pool_time_stride": 6, "final_conv_length": "auto"},
        default_preset="alpha2-beta1", abpc_preset="alpha2-beta1", accuracy=0.9875, n_parameters=49402,
        finger_params={"filter_time_length": 5, "pool_time_length": 8, "pool_time_stride": 2},
        finger_accuracy=0.5467, finger_accuracy_ci=(0.4767, 0.6200), finger_chance=0.51,
        description="temporal conv, spatial conv, BatchNorm, square, mean pooling, log (Schirrmeister et al. "
                    "2017): a learned filter-bank CSP"),
    "Deep4Net": ZooEntry(
        "Deep4Net",
        {"filter_time_length": 4, "filter_length_2": 4, "filter_length_3": 4, "filter_length_4": 4,
         "pool_time_length": 2, "pool_time_stride": 2, "final_conv_length": "auto"},
        default_preset=conserving_preset("epsilon"), preset_name="epsilon + bias to inputs", abpc_preset="epsilon",
        accuracy=0.99, n_parameters=125827,
        finger_params={"filter_time_length": 3, "filter_length_2": 3, "filter_length_3": 3, "filter_length_4": 3,
                       "pool_time_length": 2, "pool_time_stride": 1},
        finger_accuracy=0.5033, finger_accuracy_ci=(0.4200, 0.5867), finger_chance=0.51,
        description="four conv-BatchNorm-ELU-max-pool blocks (Schirrmeister et al. 2017)"),
    "EEGNetv4": ZooEntry(
        "EEGNetv4", {"kernel_length": 50},
        default_preset=conserving_preset("epsilon"), preset_name="epsilon + bias to inputs", abpc_preset="epsilon",
        accuracy=0.9925, n_parameters=1570,
        finger_params={"kernel_length": 14},  # braindecode fixes EEGNet's pooling at 4 and 8: 28 samples fit
        finger_accuracy=0.4933, finger_accuracy_ci=(0.4267, 0.5600), finger_chance=0.51,
        description="temporal conv, depthwise spatial conv, separable conv, BatchNorm, ELU, average pooling "
                    "(Lawhern et al. 2018)"),
    "EEGConformer": ZooEntry(
        "EEGConformer",
        {"filter_time_length": 10, "pool_time_length": 30, "pool_time_stride": 6, "att_depth": 2,
         "final_fc_length": "auto"},
        default_preset=conserving_preset("cp-lrp"), preset_name="cp-lrp + bias to inputs", abpc_preset="cp-lrp",
        accuracy=0.99, n_parameters=210826,
        finger_params={"filter_time_length": 5, "pool_time_length": 8, "pool_time_stride": 2},
        finger_accuracy=0.4967, finger_accuracy_ci=(0.4467, 0.5467), finger_chance=0.51,
        description="shallow conv stem, then transformer encoder layers (LayerNorm, multi-head attention, "
                    "GELU MLP) over time tokens (Song et al. 2023)"),
    "ATCNet": ZooEntry(
        "ATCNet",
        {"conv_block_kernel_length_1": 26, "conv_block_pool_size_1": 4, "conv_block_pool_size_2": 3,
         "n_windows": 3},
        default_preset=conserving_preset("cp-lrp"), preset_name="cp-lrp + bias to inputs", abpc_preset="epsilon",
        accuracy=1.0, n_parameters=74998,
        finger_params={"conv_block_kernel_length_1": 14, "conv_block_pool_size_1": 2, "conv_block_pool_size_2": 2},
        finger_accuracy=0.5333, finger_accuracy_ci=(0.4667, 0.6000), finger_chance=0.51,
        description="EEGNet-style conv block, sliding windows each with multi-head attention and a temporal "
                    "conv net, averaged (Altaheri et al. 2023)"),
}


def zoo_weights_path(name: str):
    """The shipped weight file of a registry network (``sciexplain_eeg/weights/zoo_<name>.pt``)."""
    if name not in ZOO:
        raise InputError(f"unknown braindecode network {name!r}; the registry has {sorted(ZOO)}")
    return importlib.resources.files("sciexplain_eeg") / "weights" / f"zoo_{name}.pt"


def zoo_models():
    """The registry as a table: one row per network with its description and measured numbers.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``network``; columns ``description``, ``parameters``, ``default_preset`` (its
        readable name, :attr:`ZooEntry.default_preset_name`),
        ``synthetic_accuracy`` (shipped weights, 400 fresh synthetic epochs), ``finger_accuracy``
        (FingerMovements test trials, mean over 3 training seeds), ``finger_ci_low`` /
        ``finger_ci_high`` (its 95 % bootstrap interval), ``finger_chance`` (the majority class's
        share) and ``weights`` (whether shipped weights load with :func:`load_zoo`). The numbers are
        those of ``benchmarks/bench_eeg_zoo.py`` (``--data synthetic`` and ``--data finger``).

    Examples
    --------
    >>> import sciexplain_eeg as se
    >>> se.zoo_models()[["default_preset", "synthetic_accuracy", "finger_accuracy"]]  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for name, entry in ZOO.items():
        ci = entry.finger_accuracy_ci or (None, None)
        rows.append({"network": name, "description": entry.description, "parameters": entry.n_parameters,
                     "default_preset": entry.default_preset_name, "synthetic_accuracy": entry.accuracy,
                     "finger_accuracy": entry.finger_accuracy, "finger_ci_low": ci[0], "finger_ci_high": ci[1],
                     "finger_chance": entry.finger_chance, "weights": zoo_weights_path(name).is_file()})
    return pd.DataFrame(rows).set_index("network")
