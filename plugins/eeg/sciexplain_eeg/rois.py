"""Regions of interest: electrodes grouped by hemisphere and lobe, pooled by summing.

Pooling relevance over the electrodes of a region is a sum, so the regions (plus the
remainder ``"other"`` for electrodes in none) still add up to the explained output:
``pool_rois(R).relevance.check()`` passes whenever ``R.relevance.check()`` does.

How electrodes are assigned (:func:`channel_regions`)
-----------------------------------------------------
* **Hemisphere** from the 10-20/10-10 name: a trailing odd number is left (C3), even is
  right (C4), ``z`` is the midline (Cz). Names that do not follow the system use the sensor
  position instead: ``x < -1 cm`` left, ``x > 1 cm`` right, else midline (MNE head
  coordinates, x towards the right ear).
* **Lobe** from the name's letter prefix: ``Fp``, ``AF``, ``F``, ``FC`` frontal; ``C``
  central; ``FT``, ``T``, ``TP`` temporal; ``CP``, ``P`` parietal; ``PO``, ``O``, ``I``
  occipital. Without a recognisable prefix, the position's y (towards the nose) decides:
  above 4 cm frontal, above -2 cm central, above -6 cm parietal, else occipital.
* An electrode with neither a usable name nor a position goes to ``"other"``.

``default_rois(..., by="lobe")`` gives frontal / central / temporal / parietal / occipital;
``by="hemisphere"`` left / midline / right; ``by="lobe-hemisphere"`` their combinations
("central left", ...). Empty regions are left out. Pass your own mapping
``{"motor left": ["C3", "CP3"], ...}`` to :func:`pool_rois` to override them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sciexplain.errors import InputError, InputTypeError

__all__ = ["channel_regions", "default_rois", "pool_rois", "LOBES", "HEMISPHERES"]

LOBES = ("frontal", "central", "temporal", "parietal", "occipital")
HEMISPHERES = ("left", "midline", "right")

_PREFIX_LOBE = (  # longest prefixes first
    ("Fp", "frontal"), ("AF", "frontal"), ("FC", "frontal"), ("FT", "temporal"), ("TP", "temporal"),
    ("CP", "parietal"), ("PO", "occipital"), ("F", "frontal"), ("C", "central"), ("T", "temporal"),
    ("P", "parietal"), ("O", "occipital"), ("I", "occipital"),
)
_NAME = re.compile(r"^([A-Za-z]+?)(z|Z|\d+)$")
_MIDLINE_TOLERANCE = 0.01  # m
_Y_EDGES = ((0.04, "frontal"), (-0.02, "central"), (-0.06, "parietal"))  # m, else occipital


def _names_and_positions(info_or_R: Any) -> tuple[list[str], np.ndarray]:
    """Channel names and (n, 3) positions (NaN where unknown) from an mne.Info, Epochs/Evoked or R."""
    if hasattr(info_or_R, "dims") and "channel" in getattr(info_or_R, "dims", ()):
        names = [str(c) for c in info_or_R["channel"].values]
        pos = np.full((len(names), 3), np.nan)
        for k, axis in enumerate("xyz"):
            if axis in info_or_R.coords and info_or_R.coords[axis].dims == ("channel",):
                pos[:, k] = np.asarray(info_or_R.coords[axis].values, dtype=np.float64)
        return names, pos
    info = getattr(info_or_R, "info", info_or_R)
    if not (hasattr(info, "keys") and "chs" in info):
        raise InputTypeError(f"expected an mne.Info, Epochs, Evoked or a relevance DataArray with a 'channel' dim, "
                        f"got {type(info_or_R).__name__}")
    names = [ch["ch_name"] for ch in info["chs"]]
    pos = np.full((len(names), 3), np.nan)
    for i, ch in enumerate(info["chs"]):
        loc = np.asarray(ch["loc"][:3], dtype=np.float64)
        if np.all(np.isfinite(loc)) and np.any(loc != 0):
            pos[i] = loc
    return names, pos


def _lobe(name: str, pos: np.ndarray) -> str | None:
    match = _NAME.match(name)
    if match:
        prefix = match.group(1)
        for p, lobe in _PREFIX_LOBE:
            if prefix.lower() == p.lower():
                return lobe
    if np.all(np.isfinite(pos)):
        for edge, lobe in _Y_EDGES:
            if pos[1] > edge:
                return lobe
        return "occipital"
    return None


def _hemisphere(name: str, pos: np.ndarray) -> str | None:
    match = _NAME.match(name)
    if match and _lobe_prefix_known(match.group(1)):
        suffix = match.group(2)
        if suffix in ("z", "Z"):
            return "midline"
        return "left" if int(suffix) % 2 == 1 else "right"
    if np.all(np.isfinite(pos)):
        if pos[0] < -_MIDLINE_TOLERANCE:
            return "left"
        if pos[0] > _MIDLINE_TOLERANCE:
            return "right"
        return "midline"
    return None


def _lobe_prefix_known(prefix: str) -> bool:
    return any(prefix.lower() == p.lower() for p, _ in _PREFIX_LOBE)


def channel_regions(info_or_R: Any) -> dict[str, tuple[str | None, str | None]]:
    """Per channel: (lobe, hemisphere), None where neither the name nor a position tells.

    Parameters
    ----------
    info_or_R : mne.Info, mne.Epochs, mne.Evoked or xarray.DataArray
        Anything with channel names (and, for the fallback, positions): an explanation's
        ``channel`` dim with its ``x``, ``y``, ``z`` coords works too.
    """
    names, pos = _names_and_positions(info_or_R)
    return {n: (_lobe(n, p), _hemisphere(n, p)) for n, p in zip(names, pos)}


def default_rois(info_or_R: Any, by: str = "lobe") -> dict[str, list[str]]:
    """Non-overlapping regions of interest from the channel names and montage positions.

    Parameters
    ----------
    info_or_R : mne.Info, mne.Epochs, mne.Evoked or xarray.DataArray
        The channels to group (see :func:`channel_regions`).
    by : {"lobe", "hemisphere", "lobe-hemisphere"}
        Frontal/central/temporal/parietal/occipital, left/midline/right, or both
        combined (``"central left"``).

    Returns
    -------
    dict of str to list of str
        Region name -> channel names, in a fixed order (front to back, left to right); empty
        regions are omitted; electrodes that cannot be placed are in no region (pooling puts
        them in the remainder ``"other"``).
    """
    if by not in ("lobe", "hemisphere", "lobe-hemisphere"):
        raise InputError(f"by must be 'lobe', 'hemisphere' or 'lobe-hemisphere', got {by!r}")
    regions = channel_regions(info_or_R)
    if by == "lobe":
        keys = list(LOBES)
    elif by == "hemisphere":
        keys = list(HEMISPHERES)
    else:
        keys = [f"{lobe} {hemi}" for lobe in LOBES for hemi in HEMISPHERES]
    out: dict[str, list[str]] = {k: [] for k in keys}
    for name, (lobe, hemi) in regions.items():
        if by == "lobe":
            key = lobe
        elif by == "hemisphere":
            key = hemi
        else:
            key = f"{lobe} {hemi}" if lobe is not None and hemi is not None else None
        if key is not None:
            out[key].append(name)
    return {k: v for k, v in out.items() if v}


def pool_rois(R: Any, rois: Mapping[str, Sequence[str]] | None = None, *, by: str = "lobe",
              name: str = "roi", remainder: str | None = "other"):
    """Sum relevance over the electrodes of each region of interest (conserving f(x)).

    Parameters
    ----------
    R : xarray.DataArray
        An explanation with a ``channel`` dim (e.g. from :func:`explain_epochs`, pooled or
        windowed in time or not).
    rois : mapping of region -> channel names, optional
        Your own regions (must not overlap). Default: :func:`default_rois` of ``R`` ``by``.
    by : str
        Which default regions (ignored when ``rois`` is given).
    name : str
        Name of the new dim replacing ``channel``.
    remainder : str or None
        Label of the region that collects electrodes in no region, so the total is kept;
        None drops them (the result is then a partial sum, recorded in ``attrs["pooling"]``).

    Returns
    -------
    xarray.DataArray
        ``channel`` replaced by ``name``; a coord ``n_channels`` gives each region's size,
        ``attrs["rois"]`` lists the members.
    """
    if "channel" not in R.dims:
        raise InputError(f"pool_rois needs a 'channel' dim; this result has dims {list(R.dims)}")
    if rois is None:
        rois = default_rois(R, by=by)
        if not rois:
            raise InputError("no electrode could be placed in a region (names are not 10-20 style and there "
                             "are no positions): pass rois={'region': [channel names], ...}")
    pooled = R.relevance.group("channel", {k: list(v) for k, v in rois.items()}, remainder=remainder, name=name)
    members = {k: list(v) for k, v in rois.items()}
    grouped = {c for v in members.values() for c in v}
    rest = [str(c) for c in R["channel"].values if str(c) not in grouped]
    if rest and remainder is not None:
        members[remainder] = rest
    sizes = [len(members.get(str(label), [])) for label in pooled[name].values]
    pooled = pooled.assign_coords(n_channels=(name, np.asarray(sizes, dtype=np.int64)))
    pooled.attrs["rois"] = "; ".join(f"{k}: {' '.join(v)}" for k, v in members.items())
    return pooled
