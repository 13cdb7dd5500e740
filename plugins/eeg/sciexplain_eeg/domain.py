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
from sciexplain.errors import InputError

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

    def plot(self, R, sample: int = 0, **kwargs: Any):
        """The headline figure: single-trial topomaps of relevance summed in time windows."""
        from .plots import plot_topomap
        return plot_topomap(R, **{"epoch": sample, **kwargs})  # epoch= is the same, by its EEG name

    def demo(self, out: Path) -> dict:
        """Train on FingerMovements, explain the test epochs, write figures and netCDF into ``out``."""
        from .demo import run_demo
        return run_demo(out)

    # -- pipelines (``sciexplain run FILE.toml``) ---------------------------------------------
    def pipeline_loaders(self) -> dict:
        """``finger_movements(split="test", montage="colin27_1020")``: the real BCI II set IV epochs;
        ``synthetic(n_epochs=200, seed=1000, noise_level=1e-6)``: epochs with known sources
        (:func:`sciexplain_eeg.make_synthetic_epochs`, the data the shipped braindecode weights were
        trained on). Both explain with the model's ``default_preset`` where it has one (the braindecode
        registry's networks), else the plugin's."""
        return {"finger_movements": _load_finger_movements, "synthetic": _load_synthetic}

    def pipeline_models(self) -> dict:
        """``LinearEEG`` (logistic regression, penalty by CV), ``CompactEEGNet`` and ``SturmDNN``
        (trained with :func:`sciexplain_eeg.fit`, seeded), all trained on a FingerMovements split."""
        return {"LinearEEG": _linear_eeg, "CompactEEGNet": _trained("CompactEEGNet"),
                "SturmDNN": _trained("SturmDNN")}

    def pipeline_architectures(self) -> dict:
        """The plugin's model classes for state dicts: ``build(n_channels=28, n_times=28, **params)``; and
        the braindecode registry's networks (``ShallowFBCSPNet``, ``Deep4Net``, ``EEGNetv4``,
        ``EEGConformer``, ``ATCNet``): ``build(size="synthetic", scaling=1e6, **braindecode_params)``,
        sized for the synthetic epochs (30 channels, 101 samples) or ``size="finger"`` (28 x 28), so
        that the shipped weights ``sciexplain_eeg/weights/zoo_<name>.pt`` load into them."""
        from .zoo import ZOO
        return {"LinearEEG": _architecture("LinearEEG"), "CompactEEGNet": _architecture("CompactEEGNet"),
                "SturmDNN": _architecture("SturmDNN"), **{name: _zoo_architecture(name) for name in ZOO}}

    def pipeline_poolings(self) -> dict:
        """``rois(by="lobe")``: relevance summed over the montage's regions (:func:`pool_rois`)."""
        return {"rois": _pool_rois}

    def pipeline_figures(self) -> dict:
        """Topomaps of single trials and classes, joint plot, ROI time courses, left vs right."""
        return {"topomap": _figure("plot_topomap"), "class_topomaps": _figure("plot_class_topomaps"),
                "joint": _figure("plot_joint"), "roi_timecourse": _figure("plot_roi_timecourse"),
                "left_right": _figure("plot_left_right")}


def _model_preset(model: Any) -> dict:
    """The explanation defaults for ``model``: its registry preset if it has one (braindecode networks)."""
    return {"preset": getattr(model, "default_preset", None) or DEFAULT_PRESET}


def _load_finger_movements(split: str = "test", montage: str | None = "colin27_1020") -> dict:
    from .data import _splits, finger_movements_path, load_finger_movements
    epochs = load_finger_movements(split, montage=montage)
    return {"native": epochs, "files": [finger_movements_path(s) for s in _splits(split)],
            "extras": {"epochs": epochs}, "explain": _model_preset}


def _load_synthetic(n_epochs: int = 200, seed: int = 1000, noise_level: float = 1e-6) -> dict:
    from .synthetic import make_synthetic_epochs
    epochs, truth = make_synthetic_epochs(n_epochs=int(n_epochs), seed=int(seed), noise_level=float(noise_level))
    return {"native": epochs, "extras": {"epochs": epochs, "truth": truth}, "explain": _model_preset}


def _zoo_architecture(name: str):
    def build(size: str = "synthetic", scaling: float = 1e6, ch_names: list[str] | None = None, n_classes: int = 2,
              **params: Any):
        from .data import FINGER_MOVEMENTS_CH_NAMES
        from .synthetic import DEFAULT_CH_NAMES
        from .zoo import SIZES, make_braindecode
        if size not in SIZES:
            raise InputError(f"size must be one of {sorted(SIZES)}, not {size!r}")
        n_channels, n_times, sfreq = SIZES[size]
        model = make_braindecode(name, n_channels, n_times, n_classes=n_classes, sfreq=sfreq, size=size, **params)
        default = DEFAULT_CH_NAMES if size == "synthetic" else FINGER_MOVEMENTS_CH_NAMES
        model.ch_names = [str(c) for c in (ch_names or default)]
        model.scaling = float(scaling)
        return model
    build.__name__ = f"build_{name}"
    return build


def _linear_eeg(*, seed: int, train_split: str = "train", C: Any = (1e-4, 1e-3, 1e-2, 1e-1), cv: int = 5,
                demean: bool = True):
    from .data import load_finger_movements
    from .models import LinearEEG
    train = load_finger_movements(train_split)
    n_ch, n_t = train.get_data().shape[1:]
    return LinearEEG(n_ch, n_t, demean=demean).fit_logistic(train, C=tuple(C) if isinstance(C, list) else C,
                                                             cv=cv, seed=seed)


def _trained(name: str):
    def factory(*, seed: int, train_split: str = "train", model_params: dict | None = None, **fit_params: Any):
        from . import models
        from .data import load_finger_movements
        from .training import fit
        train = load_finger_movements(train_split)
        n_ch, n_t = train.get_data().shape[1:]
        model = getattr(models, name)(n_ch, n_t, **(model_params or {}))
        return fit(model, train, seed=seed, **fit_params).model
    factory.__name__ = f"train_{name}"
    return factory


def _architecture(name: str):
    def build(n_channels: int = 28, n_times: int = 28, **params: Any):
        from . import models
        return getattr(models, name)(n_channels, n_times, **params)
    build.__name__ = f"build_{name}"
    return build


def _pool_rois(R: Any, data: Any, model: Any, by: str = "lobe"):
    from .rois import pool_rois
    return pool_rois(R, by=by)


def _figure(name: str):
    def figure(R: Any, data: Any, model: Any, **params: Any):
        from . import plots
        if name == "plot_topomap" and isinstance(params.get("epoch"), str):
            params["epoch"] = _first_epoch(R, params["epoch"])
        return getattr(plots, name)(R, **params)
    figure.__name__ = name
    return figure


def _first_epoch(R: Any, which: str) -> int:
    """``"correct-left"`` / ``"correct-right"``: the first correctly predicted epoch of that condition."""
    import numpy as np
    kind, _, condition = which.partition("-")
    ok = np.ones(R.sizes["epoch"], dtype=bool)
    if kind == "correct" and "label" in R.coords:
        ok &= R.target.values == R.label.values
    if condition:
        ok &= R.condition.values == condition
    hits = np.flatnonzero(ok)
    if not hits.size:
        raise InputError(f"no epoch matches {which!r}; give an epoch index instead")
    return int(hits[0])


DOMAIN = EEGDomain()
