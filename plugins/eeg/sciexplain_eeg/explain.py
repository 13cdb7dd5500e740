"""Explain EEG classifiers on ``mne.Epochs``: relevance labelled by epoch, channel and time.

``explain_epochs(model, epochs)`` (and ``sx.explain(model, epochs)``, which dispatches here
through the ``sciexplain.domains`` entry point) turns the epochs into the tensor the model
was trained on, explains it with the core engine and returns the relevance contract with
dims ``("epoch", "channel", "time")``:

* ``channel``: the channel names, plus coords ``ch_type``, ``x``, ``y``, ``z`` (sensor
  position in metres, MNE head coordinates, NaN without a montage) and ``bad``;
* ``time``: seconds (the epochs' ``times``);
* ``epoch``: positions 0..n-1, plus coords ``condition`` (the event name), ``event_code``,
  ``label`` (the class index the training helper assigns: event codes ranked by value),
  ``predicted`` (the model's class), and the contract's ``prediction``, ``target``,
  ``absorbed``;
* attrs ``scaling``, ``sfreq``, ``units``, ``input_units``, ``channel_order``, ``bads_used``.

How the input is matched to the model
-------------------------------------
* **Units.** The tensor is the epochs' data as MNE stores them (volts) times ``scaling``.
  ``scaling`` defaults to ``model.scaling`` (set by :func:`sciexplain_eeg.fit` and
  :meth:`LinearEEG.fit_logistic`: 1e6 for models trained on epochs, i.e. microvolts), else
  1.0. Pass it when the model was trained outside these helpers.
* **Channels.** The expected channels are ``ch_names`` or ``model.ch_names``. A channel the
  model needs but the epochs lack, or a data channel of the epochs the model does not know,
  is an error that lists them (pick the model's channels with ``epochs.pick(...)`` or
  ``picks=``). The same channels in another order are **reordered automatically** to the
  model's order (recorded in ``attrs["channel_order"]``). Without expected names, the
  epochs' data channels are used as they are and only their number is checked against
  ``model.n_channels``.
* **Sampling.** ``model.sfreq`` (or ``sfreq=``) and ``model.n_times`` (or ``n_times=``) must
  match the epochs; a difference is an error that says to resample or crop.
* **Bad channels.** A channel listed in ``epochs.info["bads"]`` that the model needs is an
  error unless ``allow_bads=True`` (then it is explained as recorded, listed in
  ``attrs["bads_used"]`` and flagged in the ``bad`` coord). Bad channels the model does not
  use are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sciexplain.errors import InputError, InputTypeError


__all__ = ["explain_epochs", "epochs_to_tensor", "DIMS", "DEFAULT_PRESET",
           "is_epochs"]

#: dims of an EEG explanation
DIMS = ("epoch", "channel", "time")

#: the LRP preset used when none is given: Epsilon(0.01) on every layer, the most faithful in the
#: channel-time block perturbation study (``benchmarks/bench_eeg_faithfulness.py``: ABPC ahead of
#: epsilon-plus on CompactEEGNet, tied on LinearEEG and SturmDNN)
DEFAULT_PRESET = "epsilon"

#: MNE channel types that carry brain data (the default channels offered to the model)
DATA_CH_TYPES = ("eeg", "mag", "grad", "seeg", "ecog", "dbs", "csd", "hbo", "hbr", "fnirs_cw_amplitude",
                 "fnirs_od")

_TYPE_NAME = "mne.epochs.BaseEpochs"


def is_epochs(data: Any) -> bool:
    """True for ``mne.Epochs``/``EpochsArray`` (any ``mne.epochs.BaseEpochs``), by type name only.

    MNE is not imported: the check reads the names of the classes in the type's MRO.
    """
    return any(f"{c.__module__}.{c.__qualname__}" == _TYPE_NAME for c in type(data).__mro__)


def _input_units(scaling: float) -> str:
    known = {1.0: "V", 1e3: "mV", 1e6: "uV", 1e9: "nV"}
    for factor, unit in known.items():
        if abs(scaling - factor) <= 1e-9 * factor:
            return unit
    return f"V x {scaling:g}"


def _check_scaling(scaling: Any) -> float:
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"scaling must be a positive number (e.g. 1e6 for a model trained on microvolts), "
                        f"got {scaling!r}")
    value = float(scaling)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"scaling must be a positive finite number, got {scaling!r}")
    return value


def _available_channels(epochs: Any, picks: Any) -> list[str]:
    """Channel names offered to the model: the data channels, or those ``picks`` selects, in order."""
    names = list(epochs.ch_names)
    types = epochs.get_channel_types()
    if picks is None:
        return [n for n, t in zip(names, types) if t in DATA_CH_TYPES]
    items = [picks] if isinstance(picks, (str, int, np.integer)) else list(picks)
    if not items:
        raise InputError("picks is empty; pass channel names, channel types or indices (or None)")
    type_set = set(types) | set(DATA_CH_TYPES) | {"data", "all"}
    if all(isinstance(p, str) and p in type_set and p not in names for p in items):
        wanted = set(items)
        return [n for n, t in zip(names, types)
                if t in wanted or "all" in wanted or ("data" in wanted and t in DATA_CH_TYPES)]
    if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in items):
        bad = [int(p) for p in items if not -len(names) <= int(p) < len(names)]
        if bad:
            raise InputError(f"picks indices {bad} are out of range for {len(names)} channels")
        return [names[int(p)] for p in items]
    if all(isinstance(p, str) for p in items):
        unknown = [p for p in items if p not in names]
        if unknown:
            raise InputError(f"picks names channels {unknown} that the epochs do not have; they have "
                             f"{names}")
        return list(dict.fromkeys(items))
    raise InputTypeError(f"picks must be channel names, channel types or integer indices, got {picks!r}")


def _match_channels(epochs: Any, model: Any, picks: Any, ch_names: Sequence[str] | None) -> tuple[list[str], str]:
    """The channels to feed the model, in the model's order, and a note on the order."""
    available = _available_channels(epochs, picks)
    expected = list(ch_names) if ch_names is not None else getattr(model, "ch_names", None)
    if expected is None:
        n_model = getattr(model, "n_channels", None)
        if n_model is not None and len(available) != int(n_model):
            raise InputError(
                f"the model expects {n_model} channels, the epochs offer {len(available)} "
                f"({available}). The model does not record its channel names: pass "
                "ch_names=[...] in the order it was trained on (or set model.ch_names), or select "
                "channels with picks=")
        return available, "as in the epochs (the model records no channel names)"
    expected = [str(c) for c in expected]
    if len(set(expected)) != len(expected):
        dupes = sorted({c for c in expected if expected.count(c) > 1})
        raise InputError(f"the expected channel names contain duplicates: {dupes}")
    missing = [c for c in expected if c not in available]
    extra = [c for c in available if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            elsewhere = [c for c in missing if c in epochs.ch_names]
            parts.append(f"the model needs channels the epochs do not offer: {missing}"
                         + (f" ({elsewhere} exist in the epochs but are not data channels or were not "
                            "picked)" if elsewhere else ""))
        if extra:
            parts.append(f"the epochs have channels the model was not trained on: {extra}")
        raise InputError(
            "channel mismatch: " + "; ".join(parts) + f". The model expects {expected}. Select its "
            "channels with epochs.pick(model.ch_names) or picks=model.ch_names; add missing ones by "
            "interpolation (epochs.interpolate_bads) or retrain.")
    if available != expected:
        return expected, "reordered to the model's channel order"
    return expected, "as in the epochs (same as the model's)"


def _check_timing(epochs: Any, model: Any, sfreq: float | None, n_times: int | None) -> None:
    want_sfreq = sfreq if sfreq is not None else getattr(model, "sfreq", None)
    have_sfreq = float(epochs.info["sfreq"])
    if want_sfreq is not None and abs(float(want_sfreq) - have_sfreq) > 1e-6 * max(1.0, have_sfreq):
        raise InputError(f"sampling rate mismatch: the epochs are sampled at {have_sfreq:g} Hz, the model "
                         f"at {float(want_sfreq):g} Hz; resample first: epochs.resample({float(want_sfreq):g})")
    want_n = n_times if n_times is not None else getattr(model, "n_times", None)
    have_n = len(epochs.times)
    if want_n is not None and int(want_n) != have_n:
        raise InputError(f"epoch length mismatch: the epochs have {have_n} samples ({epochs.times[0]:.3f} to "
                         f"{epochs.times[-1]:.3f} s at {have_sfreq:g} Hz), the model expects {int(want_n)}; "
                         "crop them to the model's window with epochs.crop(tmin, tmax)")


def _positions(epochs: Any, names: Sequence[str]) -> np.ndarray:
    """(n, 3) sensor positions in metres (head frame) from the info; NaN where none is set."""
    index = {ch["ch_name"]: ch for ch in epochs.info["chs"]}
    pos = np.full((len(names), 3), np.nan)
    for i, name in enumerate(names):
        loc = np.asarray(index[name]["loc"][:3], dtype=np.float64)
        if np.all(np.isfinite(loc)) and np.any(loc != 0):
            pos[i] = loc
    return pos


def _epoch_labels(epochs: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per epoch: the condition name, the event code and the class index (codes ranked by value)."""
    codes = np.asarray(epochs.events[:, 2]).astype(np.int64)
    names_of: dict[int, str] = {}
    for name, code in epochs.event_id.items():
        names_of.setdefault(int(code), str(name))
    conditions = [names_of.get(int(c), str(int(c))) for c in codes]
    ranked = sorted({int(v) for v in epochs.event_id.values()})
    rank = {code: i for i, code in enumerate(ranked)}
    labels = np.array([rank.get(int(c), -1) for c in codes], dtype=np.int64)
    return conditions, codes, labels


def epochs_to_tensor(epochs: Any, model: Any = None, *, scaling: float | None = None, picks: Any = None,
                     ch_names: Sequence[str] | None = None, sfreq: float | None = None,
                     n_times: int | None = None, allow_bads: bool = False, dtype: Any = None):
    """Epochs -> (tensor of shape (epoch, channel, time), labels) as the model expects them.

    Parameters
    ----------
    epochs : mne.Epochs or mne.EpochsArray
        Data in volts, as MNE stores them.
    model : torch.nn.Module, optional
        Supplies the expected ``ch_names``, ``sfreq``, ``n_times``, ``scaling`` and the dtype.
    scaling : float, optional
        Factor applied to the volts (default ``model.scaling``, else 1.0).
    picks : channel names, types or indices, optional
        Which of the epochs' channels are offered to the model (default: its data channels).
    ch_names, sfreq, n_times : optional
        What the model expects, when the model does not record it.
    allow_bads : bool
        Explain channels marked bad instead of refusing.
    dtype : torch.dtype, optional
        Default: the dtype of the model's first parameter, else float32.

    Returns
    -------
    tensor : torch.Tensor
        ``epochs.get_data(picks=channels) * scaling`` in the model's channel order.
    labels : dict
        ``{"dims", "coords", "attrs"}`` for :func:`sciexplain.explain` (coords of all three
        dims and the per-epoch labels), plus ``"labels"`` (class index per epoch).

    Raises
    ------
    TypeError
        If ``epochs`` is not an ``mne.Epochs``.
    ValueError
        On a channel, sampling-rate, length or bad-channel mismatch (the message lists what
        differs and what to do).
    """
    import torch

    if not is_epochs(epochs):
        raise InputTypeError(f"expected mne.Epochs or mne.EpochsArray, got {type(epochs).__name__}; for a plain "
                        "array call sciexplain.explain(model, array) directly")
    used, order_note = _match_channels(epochs, model, picks, ch_names)
    _check_timing(epochs, model, sfreq, n_times)
    bads = [c for c in used if c in epochs.info["bads"]]
    if bads and not allow_bads:
        raise InputError(f"channels {bads} are marked bad in epochs.info['bads'] but the model needs them. "
                         "Interpolate them (epochs.interpolate_bads(reset_bads=False)) or pass "
                         "allow_bads=True to explain them as recorded.")
    if scaling is None:
        model_scaling = getattr(model, "scaling", None)
        scaling = 1.0 if model_scaling is None else model_scaling
    scaling = _check_scaling(scaling)
    # for lazy mne.Epochs, get_data loads the epochs and drops those that fail rejection; events and
    # len() describe the kept epochs afterwards
    data = epochs.get_data(picks=used)
    if data.shape[0] == 0 or len(epochs.events) != data.shape[0]:
        raise InputError(f"the epochs hold {data.shape[0]} epochs of data for {len(epochs.events)} events; "
                         "nothing to explain (all rejected?)" if data.shape[0] == 0 else
                         "the epochs' events do not match their data after loading; call epochs.drop_bad() "
                         "or load them with preload=True first")
    if not np.all(np.isfinite(data)):
        raise InputError(f"the epochs contain {int(np.sum(~np.isfinite(data)))} NaN/Inf values; drop or "
                         "repair those epochs first")
    if dtype is None:
        param = next(model.parameters(), None) if model is not None and hasattr(model, "parameters") else None
        dtype = param.dtype if param is not None else torch.float32
    x = torch.as_tensor(np.ascontiguousarray(data * scaling), dtype=dtype).contiguous()
    conditions, codes, labels = _epoch_labels(epochs)
    pos = _positions(epochs, used)
    type_of = dict(zip(epochs.ch_names, epochs.get_channel_types()))
    coords: dict[str, Any] = {
        "epoch": np.arange(data.shape[0]),
        "condition": ("epoch", np.asarray(conditions, dtype=str)),
        "event_code": ("epoch", codes),
        "label": ("epoch", labels),
        "channel": np.asarray(used, dtype=str),
        "ch_type": ("channel", np.asarray([type_of[c] for c in used], dtype=str)),
        "x": ("channel", pos[:, 0]), "y": ("channel", pos[:, 1]), "z": ("channel", pos[:, 2]),
        "bad": ("channel", np.asarray([c in bads for c in used], dtype=bool)),
        "time": np.asarray(epochs.times, dtype=np.float64),
    }
    attrs = {
        "domain": "eeg",
        "scaling": scaling,
        "input_units": _input_units(scaling),
        "sfreq": float(epochs.info["sfreq"]),
        "units": "relevance in units of the explained output (the target logit)",
        "channel_order": order_note,
        "bads_used": ", ".join(bads) if bads else "none",
        "montage": "none" if np.isnan(pos).all() else "set",
        "position_units": "m (MNE head coordinates)",
    }
    return x, {"dims": DIMS, "coords": coords, "attrs": attrs, "labels": labels}


def _predicted(model: Any, x: Any) -> np.ndarray:
    import torch

    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    finally:
        for m, f in flags:
            m.training = f
    if out.ndim == 2:
        return out.argmax(dim=1).numpy().astype(np.int64)
    return np.zeros(len(x), dtype=np.int64)


def explain_epochs(model: Any, epochs: Any, target: Any = None, *, scaling: float | None = None,
                   method: str = "lrp", preset: Any = None, picks: Any = None,
                   ch_names: Sequence[str] | None = None, sfreq: float | None = None,
                   n_times: int | None = None, allow_bads: bool = False, bounds: Any = None,
                   max_pool: str = "winner-take-all", through: Mapping[str, Sequence[int]] | None = None,
                   **options: Any):
    """Explain an EEG classifier on epochs; relevance labelled by epoch, channel and time.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (batch, channel, time) to logits.
    epochs : mne.Epochs or mne.EpochsArray
        The epochs to explain (volts, as MNE stores them).
    target : int, sequence of int, "true", or None
        The class whose logit is explained: None for the predicted class, ``"true"`` for each
        epoch's own class (its ``label``: event codes ranked by value, as in training).
    scaling : float, optional
        Factor from volts to the model's input units; default ``model.scaling``, else 1.0.
    method : str
        Any method of :func:`sciexplain.explain` (``"lrp"``, ``"sensitivity"``,
        ``"gradient_x_input"``, ...).
    preset : str, Rule or mapping, optional
        LRP rules; default ``model.default_preset`` if the model has one (the braindecode
        networks of :mod:`sciexplain_eeg.zoo`; the result's ``preset`` attribute is then
        ``model.default_preset_name``), else :data:`DEFAULT_PRESET`.
    picks, ch_names, sfreq, n_times, allow_bads
        Channel selection and what the model expects; see :func:`epochs_to_tensor` and the
        module docstring.
    bounds, max_pool, through, **options
        Passed to :class:`sciexplain.Explainer` (``through`` filters relevance through chosen
        channels of a layer; ``at`` is not available here since the result would not be on
        the electrodes: use ``sciexplain.explain`` on :func:`epochs_to_tensor`'s tensor).

    Returns
    -------
    xarray.DataArray
        Dims ``("epoch", "channel", "time")``; for LRP, per epoch, relevance summed over
        channels and time plus ``absorbed`` equals ``prediction`` (the explained logit).
        ``R.relevance.windows("time", 0.1)``, ``R.relevance.group("channel", ...)`` and
        :func:`sciexplain_eeg.pool_rois` keep that sum.
    """
    import sciexplain as sx

    if "at" in options:
        if options["at"] is not None:
            raise InputError("at= returns relevance of a hidden layer, which has no electrodes or times: call "
                             "sciexplain.explain(model, epochs_to_tensor(epochs, model)[0], at=...) instead")
        options.pop("at")
    for key in ("dims", "coords"):
        if options.get(key) is not None:
            raise InputError(f"EEG explanations set {key}= themselves (epoch, channel, time); do not pass {key}=")
        options.pop(key, None)
    x, labels = epochs_to_tensor(epochs, model, scaling=scaling, picks=picks, ch_names=ch_names, sfreq=sfreq,
                                 n_times=n_times, allow_bads=allow_bads)
    if isinstance(target, str):
        if target != "true":
            raise InputError(f"target must be an int, one int per epoch, 'true' or None, got {target!r}")
        target = labels["labels"]
        if (target < 0).any():
            raise InputError("target='true' needs every epoch's event code in epochs.event_id")
    preset_name = None
    if preset is None:  # a model may carry its own default (the braindecode networks of sciexplain_eeg.zoo)
        preset = getattr(model, "default_preset", None) or DEFAULT_PRESET
        if preset is getattr(model, "default_preset", None):  # a mapping's readable name, e.g. "epsilon + bias to inputs"
            preset_name = getattr(model, "default_preset_name", None)
    explainer = sx.Explainer(model, method, preset, bounds=bounds,
                             max_pool=max_pool, **options)
    R = explainer.explain(x, target, dims=DIMS, coords=labels["coords"], through=through)
    R = R.assign_coords(predicted=("epoch", _predicted(model, x)))
    attrs = dict(R.attrs)
    attrs.update(labels["attrs"])
    attrs["model"] = type(model).__name__
    if preset_name:
        attrs["preset"] = str(preset_name)
    R.attrs = attrs
    return R
