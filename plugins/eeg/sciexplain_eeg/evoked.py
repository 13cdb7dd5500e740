"""Relevance as ``mne.EvokedArray``: MNE's own ``plot_topomap``/``plot_joint`` on explanations.

What the evoked holds
---------------------
The **mean relevance over epochs** (per condition, per explained class, or over all),
channel by channel and sample by sample. A mean over epochs is a summary of many
decompositions, not the decomposition of one prediction: its sum over channels and time is
the mean of ``prediction - absorbed`` of the epochs averaged (recorded in
``evoked.comment``), not any single f(x).

Units: relevance is in units of the explained output (the target logit), per sample. MNE
treats the channels as EEG in volts and its plots scale EEG by 1e6 and label it "uV" by
default; pass ``scalings=1, units="relevance"`` (topomaps) or
``scalings=dict(eeg=1), units=dict(eeg="relevance")`` (``plot``, ``plot_joint``) to show
the relevance itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sciexplain.errors import InputError

__all__ = ["to_evoked", "relevance_info"]


def relevance_info(R: Any, info: Any = None):
    """The ``mne.Info`` for the channels of ``R``, with positions.

    With ``info`` (e.g. ``epochs.info``), its channels are picked in R's channel order, so
    everything the original info knew (montage, fiducials, bads) is kept. Without it, an
    info is built from R's coords: names, ``ch_type``, ``x``/``y``/``z`` positions (a montage
    is set when all positions are known) and ``attrs["sfreq"]``.
    """
    import mne

    names = [str(c) for c in R["channel"].values]
    if info is not None:
        info = getattr(info, "info", info)
        missing = [c for c in names if c not in info["ch_names"]]
        if missing:
            raise InputError(f"info has no channels {missing} of the relevance; pass the info of the explained "
                             "epochs (epochs.info) or info=None to build one from R's coords")
        return mne.pick_info(info, [info["ch_names"].index(c) for c in names])  # keeps only bads it picks
    sfreq = R.attrs.get("sfreq")
    if sfreq is None:
        times = np.asarray(R["time"].values, dtype=np.float64) if "time" in R.dims else None
        if times is None or times.size < 2:
            raise InputError("R has no attrs['sfreq'] and no time axis to infer it from; pass info=epochs.info")
        sfreq = 1.0 / float(np.median(np.diff(times)))
    types = [str(t) for t in R["ch_type"].values] if "ch_type" in R.coords else "eeg"
    new = mne.create_info(names, float(sfreq), types)
    pos = np.stack([np.asarray(R.coords[a].values, dtype=np.float64) if a in R.coords else
                    np.full(len(names), np.nan) for a in "xyz"], axis=1)
    if np.all(np.isfinite(pos)):
        montage = mne.channels.make_dig_montage(ch_pos=dict(zip(names, pos)), coord_frame="head")
        new.set_montage(montage, on_missing="ignore")
    return new


def _groups(R: Any, by: str | None) -> list[tuple[str, np.ndarray]]:
    n = R.sizes["epoch"]
    if by is None:
        return [("all epochs", np.arange(n))]
    if by == "condition":
        if "condition" not in R.coords:
            raise InputError("R has no 'condition' coord; use by='target' or by=None")
        values = np.asarray(R.coords["condition"].values).astype(str)
        label = lambda v: str(v)  # noqa: E731
    elif by == "target":
        values = np.asarray(R.coords["target"].values)
        label = lambda v: f"target {v}"  # noqa: E731
    else:
        raise InputError(f"by must be 'condition', 'target' or None, got {by!r}")
    out = []
    for v in dict.fromkeys(values.tolist()):
        out.append((label(v), np.flatnonzero(values == v)))
    return out


def to_evoked(R: Any, info: Any = None, *, by_event_type: bool = False, by: str | None = None,
              epochs: Any = None, as_dict: bool = False):
    """Average relevance over epochs into ``mne.EvokedArray``, following ``mne.Epochs.average``.

    Like ``epochs.average()`` the default is **one** evoked over all epochs; like
    ``epochs.average(by_event_type=True)``, ``by_event_type=True`` gives a **list** with one
    evoked per condition (event type), whose ``comment`` is the condition's name, so that
    ``mne.viz.plot_compare_evokeds`` and ``mne.combine_evoked`` take it as it is.
    ``by="target"`` gives one per explained class instead. A dict keyed by group name comes
    back only when asked for by ``as_dict=True``.

    Parameters
    ----------
    R : xarray.DataArray
        An explanation with dims ``("epoch", "channel", "time")`` (from
        :func:`explain_epochs`; not pooled over channels or time).
    info : mne.Info, optional
        The explained epochs' info (channel positions, montage); default: built from R's
        coords (see :func:`relevance_info`).
    by_event_type : bool
        One evoked per condition (the ``condition`` coord), as in MNE; same as
        ``by="condition"``.
    by : {"condition", "target"} or None
        Group by condition or by explained class; None (default) averages all epochs unless
        ``by_event_type`` is set.
    epochs : sequence of int, optional
        Only these epochs (positions along ``epoch``).
    as_dict : bool
        Return ``{group name: evoked}`` instead of a list (needs a grouping).

    Returns
    -------
    mne.EvokedArray, list of mne.EvokedArray, or dict of str to mne.EvokedArray
        One evoked without grouping; otherwise one per group in order of first appearance.
        ``nave`` is the number of epochs averaged and ``comment`` the group's name (``"all
        epochs"`` without grouping); ``info["description"]`` says what was averaged: the
        method and the mean of the averaged epochs' ``prediction - absorbed``, which the
        evoked's data sum to. See the module docstring for the unit.
    """
    import mne

    if not isinstance(by_event_type, (bool, np.bool_)):
        raise InputError(f"by_event_type must be True or False, got {by_event_type!r}")
    if by_event_type:
        if by not in (None, "condition"):
            raise InputError(f"by_event_type=True groups by condition; it contradicts by={by!r} (pass one of them)")
        by = "condition"
    if as_dict and by is None:
        raise InputError("as_dict=True needs a grouping: pass by_event_type=True or by='target'")
    if tuple(getattr(R, "dims", ())) != ("epoch", "channel", "time"):
        raise InputError(f"to_evoked needs relevance with dims ('epoch', 'channel', 'time'), got "
                         f"{getattr(R, 'dims', type(R).__name__)}; pool over epochs with to_evoked itself, not before")
    if epochs is not None:
        R = R.isel(epoch=np.asarray(epochs))
    use_info = relevance_info(R, info)
    tmin = float(R["time"].values[0])
    out: dict[str, Any] = {}
    method = R.attrs.get("method", "relevance")
    for name, idx in _groups(R, by):
        sub = R.isel(epoch=idx)
        data = np.asarray(sub.values, dtype=np.float64).mean(axis=0)
        explained = np.asarray(sub.coords["prediction"].values, dtype=np.float64)
        if "absorbed" in sub.coords:
            absorbed = np.nan_to_num(np.asarray(sub.coords["absorbed"].values, dtype=np.float64))
            explained = explained - absorbed
        group_info = use_info.copy()
        group_info["description"] = (f"{name}: mean {method} relevance over {len(idx)} epochs (sum = mean "
                                     f"prediction - absorbed = {explained.mean():.4g}; units of the explained "
                                     "logit)")
        out[name] = mne.EvokedArray(data, group_info, tmin=tmin, nave=len(idx), comment=str(name), verbose=False)
    if by is None:
        return out["all epochs"]
    return out if as_dict else list(out.values())
