"""Explain ICLabel's classification of ICA components: relevance on its topomap, PSD and autocorrelation.

ICLabelNet (Pion-Tonachini et al. 2019; the weights shipped in ``mne-icalabel``) classifies each
independent component of an EEG recording into seven classes (:data:`ICLABEL_CLASSES`) from three
features computed by the package itself (``mne_icalabel.iclabel.get_iclabel_features`` on an
``mne.io.Raw`` and a fitted ``mne.preprocessing.ICA``): a 32 x 32 scalp map of the component, its
power spectrum at 1-100 Hz (dB, scaled to a maximum of 1) and its autocorrelation at lags of 10 to
1000 ms. The network sees four views of every component (the map, its negative, its left-right mirror
and the negative mirror, with the same PSD and autocorrelation) and averages the class probabilities
over the views.

:func:`explain_iclabel` explains the probability of one class per component with the core's LRP
(``sx.explain(net, inputs, views=4)``) and folds the four views back onto the component's own
features: the relevance of a map pixel is the sum of the relevance of that pixel in each view, read
through the mirror for the mirrored views (a sum, so the ledger is kept: relevance of the map, the PSD
and the autocorrelation plus ``absorbed`` equals the explained probability, per component). The
result is an ``xarray.Dataset`` with one variable per input, labelled: ``topomap`` (component, y, x;
head radii, 0.5 is the head's edge, nose towards +y, right ear towards +x), ``psd`` (component,
frequency in Hz), ``autocorrelation`` (component, lag in ms); the features themselves as coords
``*_value``, the class probabilities, and ``share`` (component, input): each input's part of f(x).
:func:`plot_iclabel` draws it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sciexplain.errors import InputError, MissingDependencyError

__all__ = ["ICLABEL_CLASSES", "ICLABEL_INPUTS", "load_iclabelnet", "iclabel_features", "explain_iclabel",
           "input_shares", "plot_iclabel"]

#: ICLabel's classes, in the order of the network's outputs
ICLABEL_CLASSES = ("brain", "muscle artifact", "eye blink", "heart beat", "line noise", "channel noise", "other")

#: the relevance variables of :func:`explain_iclabel`, one per input of the network
ICLABEL_INPUTS = ("topomap", "psd", "autocorrelation")

#: the LRP preset used when none is given
ICLABEL_PRESET = "epsilon"

_GRID = np.linspace(-0.5, 0.5, 32)  # EEGLAB's topoplot grid, in head radii (0.5 = the head's edge)


def _need_icalabel():
    try:
        import mne_icalabel.iclabel.network.torch as network
        from mne_icalabel.iclabel.features import get_iclabel_features
        from mne_icalabel.iclabel.network.utils import _format_input
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("explaining ICLabel needs mne-icalabel (and psutil): pip install mne-icalabel==0.10.0 "
                          "psutil") from exc
    return network, get_iclabel_features, _format_input


def load_iclabelnet():
    """ICLabelNet with the weights shipped in mne-icalabel (``torch.load(..., weights_only=True)``), eval mode."""
    import importlib.resources

    import torch

    network, _, _ = _need_icalabel()
    net = network.ICLabelNet().float()
    path = importlib.resources.files("mne_icalabel.iclabel.network") / "assets" / "ICLabelNet.pt"
    with path.open("rb") as fh:
        net.load_state_dict(torch.load(fh, map_location="cpu", weights_only=True))
    return net.eval()


def _logit_model(net: Any):
    """ICLabelNet without its softmax: the class scores (logits) averaged over the four views.

    The same layers and the same reshapes as ``ICLabelNet.forward`` of mne-icalabel 0.10, with the
    final ``nn.Softmax`` left out; ``view_logits`` returns the per-view scores before averaging
    (the network's output is the mean over views of their softmax, which the tests check).
    """
    from torch import nn

    class _ICLabelLogits(nn.Module):
        def __init__(self, source: nn.Module) -> None:
            super().__init__()
            self.net = source

        def view_logits(self, images, psds, autocorr):
            n = self.net
            concat = torch_cat([n.img_conv(images), n.reshape_concat(n.psds_conv(psds)),
                                n.reshape_concat(n.autocorr_conv(autocorr))])
            return n.conv(concat).flatten(1)  # (4 * n_components, 7): view v of component j at row v * n + j

        def forward(self, images, psds, autocorr):
            scores = self.view_logits(images, psds, autocorr)
            return scores.reshape(4, -1, scores.shape[-1]).mean(0)

    def torch_cat(parts):
        import torch
        return torch.cat(parts, 1)

    return _ICLabelLogits(net).eval()


def iclabel_features(raw: Any, ica: Any, *, quiet: bool = True) -> dict[str, np.ndarray]:
    """ICLabel's three features of every component, computed by mne-icalabel itself.

    Parameters
    ----------
    raw : mne.io.Raw or mne.Epochs
        The data the ICA was fitted on (ICLabel expects 1-100 Hz band pass and common average
        reference; mne-icalabel warns otherwise).
    ica : mne.preprocessing.ICA
        Fitted (ICLabel expects extended infomax).
    quiet : bool
        Silence mne-icalabel's warnings about filtering, reference and ICA method.

    Returns
    -------
    dict
        ``topomap`` (n_components, 32, 32; rows toward the nose, columns toward the right ear),
        ``psd`` (n_components, 100), ``autocorrelation`` (n_components, 100), float32.
    """
    _, get_iclabel_features, _ = _need_icalabel()
    if getattr(ica, "n_components_", None) is None:
        raise InputError("the ICA is not fitted: call ica.fit(raw) first (ICLabel expects "
                         "ICA(method='infomax', fit_params=dict(extended=True)))")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        topo, psd, autocorr = get_iclabel_features(raw, ica)
    return {"topomap": np.ascontiguousarray(topo[:, :, 0, :].transpose(2, 0, 1)),
            "psd": np.ascontiguousarray(psd[0, :, 0, :].T), "autocorrelation": np.ascontiguousarray(autocorr[0, :, 0, :].T)}


def _network_inputs(features: dict[str, np.ndarray]):
    """The four-view tensors ICLabelNet takes, made by mne-icalabel's own formatting functions."""
    network, _, format_input = _need_icalabel()
    topo = features["topomap"].transpose(1, 2, 0)[:, :, None, :]
    psd = features["psd"].T[None, :, None, :]
    autocorr = features["autocorrelation"].T[None, :, None, :]
    return network._format_input_for_torch(*format_input(topo, psd, autocorr))


def _targets(target: Any, probs: np.ndarray) -> np.ndarray:
    n = probs.shape[0]
    if target is None:
        return probs.argmax(1)
    items = [target] * n if isinstance(target, (str, int, np.integer)) else list(target)
    if len(items) != n:
        raise InputError(f"target has {len(items)} entries for {n} components; give one class or one per component")
    out = []
    for t in items:
        if isinstance(t, str):
            if t not in ICLABEL_CLASSES:
                raise InputError(f"unknown ICLabel class {t!r}; the classes are {list(ICLABEL_CLASSES)}")
            out.append(ICLABEL_CLASSES.index(t))
        elif isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < len(ICLABEL_CLASSES):
            out.append(int(t))
        else:
            raise InputError(f"target {t!r} is neither a class name nor an index 0..6")
    return np.asarray(out, dtype=np.int64)


def explain_iclabel(raw: Any = None, ica: Any = None, *, features: dict | None = None, target: Any = None,
                    components: Sequence[int] | None = None, output: str = "logit", preset: Any = None,
                    method: str = "lrp", model: Any = None):
    """Explain ICLabel's class probability of ICA components on its three inputs.

    Parameters
    ----------
    raw, ica : mne.io.Raw, mne.preprocessing.ICA
        The recording and its fitted ICA (features are computed with :func:`iclabel_features`).
    features : dict, optional
        Precomputed :func:`iclabel_features` (then ``raw`` and ``ica`` are not needed).
    target : None, str, int or sequence
        The class explained: None for each component's most probable class, a class name of
        :data:`ICLABEL_CLASSES` or its index, or one per component.
    components : sequence of int, optional
        The ICA components to explain (default all).
    output : {"logit", "probability"}
        What is decomposed. ``"logit"`` (default): the class's score before ICLabel's softmax,
        averaged over the four views. ``"probability"``: ICLabel's output itself, the softmax
        averaged over the views; for a confident component (p near 1) the softmax is saturated
        and nearly all of p is absorbed, so the inputs' shares say little.
    preset : optional
        LRP rules (default ``"epsilon"``).
    method : str
        ``"lrp"`` (the core explains several inputs and grouped views with LRP only).
    model : torch.nn.Module, optional
        ICLabelNet (default :func:`load_iclabelnet`).

    Returns
    -------
    xarray.Dataset
        Variables ``topomap`` (component, y, x), ``psd`` (component, frequency),
        ``autocorrelation`` (component, lag); coords ``component`` (ICA index), ``target_class``,
        ``predicted_class``, ``probability`` (component, iclabel_class), ``topomap_value``,
        ``psd_value``, ``autocorrelation_value`` (the features), ``share`` (component, input);
        per component the relevance of all three plus ``absorbed`` equals ``prediction``, the
        explained class's logit or probability (``attrs["output"]``).
    """
    import torch

    import sciexplain as sx
    import xarray as xr
    from sciexplain.result import build_result

    if features is None:
        if raw is None or ica is None:
            raise InputError("explain_iclabel needs raw and ica, or features=iclabel_features(raw, ica)")
        features = iclabel_features(raw, ica)
    missing = [k for k in ICLABEL_INPUTS if k not in features]
    if missing:
        raise InputError(f"features lacks {missing}; pass the dict of iclabel_features(raw, ica)")
    n_all = features["topomap"].shape[0]
    picked = np.arange(n_all) if components is None else np.asarray(list(components), dtype=np.int64)
    if picked.size == 0 or picked.min() < 0 or picked.max() >= n_all:
        raise InputError(f"components must be indices 0..{n_all - 1}, got {list(picked)}")
    feats = {k: np.asarray(features[k], dtype=np.float32)[picked] for k in ICLABEL_INPUTS}
    net = load_iclabelnet() if model is None else model
    images, psds, autocorrs = _network_inputs(feats)
    with torch.no_grad():
        probs = net(images, psds, autocorrs).double().numpy().reshape(len(picked), -1)
    classes = _targets(target, probs)
    if output not in ("logit", "probability"):
        raise InputError(f"output must be 'logit' or 'probability', got {output!r}")
    explained = _logit_model(net) if output == "logit" else net
    kwargs = {"preset": ICLABEL_PRESET if preset is None else preset} if method == "lrp" else {}
    R4 = sx.explain(explained, {"images": images, "psds": psds, "autocorr": autocorrs}, target=classes, views=4,
                    method=method, **kwargs)
    n = len(picked)
    im = R4["images"].values.reshape(n, 4, 32, 32).astype(np.float64)
    topo_rel = im[:, 0] + im[:, 1] + im[:, 2, :, ::-1] + im[:, 3, :, ::-1]  # views 2, 3 are mirrored left-right
    psd_rel = R4["psds"].values.reshape(n, 4, 100).sum(1)
    ac_rel = R4["autocorr"].values.reshape(n, 4, 100).sum(1)
    freqs = np.arange(1, 101, dtype=np.float64)
    lags = np.arange(1, 101, dtype=np.float64) * 10.0
    variables = {"topomap": (topo_rel, ("component", "y", "x"), {"y": _GRID, "x": _GRID}),
                 "psd": (psd_rel, ("component", "frequency"), {"frequency": freqs}),
                 "autocorrelation": (ac_rel, ("component", "lag"), {"lag": lags})}
    attrs = {k: v for k, v in R4.attrs.items()
             if k not in ("inputs", "ledger", "decomposes", "method", "rules", "sciexplain_version")}
    attrs.update({"domain": "eeg", "model": "ICLabelNet (mne-icalabel weights)", "output": output,
                  "views": "4 views (map, -map, mirrored map, -mirrored map) folded back onto the component's "
                           "features by summing, mirrored views read through the mirror",
                  "y_units": "head radius (EEGLAB topoplot grid, 0.5 = head edge), +y towards the nose",
                  "x_units": "head radius, +x towards the right ear", "frequency_units": "Hz",
                  "lag_units": "ms", "psd_units": "dB, divided by its maximum (ICLabel's feature)",
                  "units": f"relevance in units of the explained class {output} (mean over the four views)"})
    # one relevance contract per input, sharing the per-component ledger coords (as the core's Dataset results)
    R = xr.Dataset({name: build_result(values, dims=dims, coords=coords, prediction=R4["prediction"].values,
                                       target=classes, absorbed=R4["absorbed"].values,
                                       method=R4.attrs.get("method", method), rules=R4.attrs.get("rules", ""),
                                       decomposes=R4.attrs.get("decomposes", "f(x)"), attrs={**attrs, "input": name},
                                       name=name)
                    for name, (values, dims, coords) in variables.items()})
    R.attrs.update({k: v for k, v in R["topomap"].attrs.items() if k != "input"})
    R.attrs["inputs"] = ", ".join(ICLABEL_INPUTS)
    R.attrs["ledger"] = "the relevance of all variables plus absorbed equals prediction, per component"
    shares = np.stack([topo_rel.sum((1, 2)), psd_rel.sum(1), ac_rel.sum(1)], axis=1) / R4["prediction"].values[:, None]
    R = R.assign_coords(component=picked, target_class=("component", np.asarray([ICLABEL_CLASSES[c] for c in classes])),
                        predicted_class=("component", np.asarray([ICLABEL_CLASSES[c] for c in probs.argmax(1)])),
                        iclabel_class=np.asarray(ICLABEL_CLASSES), input=np.asarray(ICLABEL_INPUTS),
                        probability=(("component", "iclabel_class"), probs),
                        share=(("component", "input"), shares),
                        topomap_value=(("component", "y", "x"), feats["topomap"].astype(np.float64)),
                        psd_value=(("component", "frequency"), feats["psd"].astype(np.float64)),
                        autocorrelation_value=(("component", "lag"), feats["autocorrelation"].astype(np.float64)))
    return R


def input_shares(R: Any):
    """Each input's share of the explained probability, (component, input): relevance summed / f(x).

    The three shares plus ``absorbed / prediction`` add up to 1 per component.
    """
    import xarray as xr

    parts = [R[name].sum([d for d in R[name].dims if d != "component"]) for name in ICLABEL_INPUTS]
    out = xr.concat(parts, dim=xr.DataArray(list(ICLABEL_INPUTS), dims="input", name="input")) / R["prediction"]
    return out.transpose("component", "input").rename("share")


def plot_iclabel(R: Any, component: int | None = None, *, figsize: tuple[float, float] = (11.0, 7.5)):
    """The component's map beside the map's relevance, its PSD and autocorrelation with their relevance.

    Parameters
    ----------
    R : xarray.Dataset
        From :func:`explain_iclabel` (or read back from netCDF).
    component : int, optional
        The ICA component index (a value of ``R.component``); default the first explained.

    Returns
    -------
    matplotlib.figure.Figure
        Top: the component's scalp map (ICLabel's feature, nose up), the relevance of each map
        pixel (red for, blue against the explained class; symmetric scale), and the class
        probabilities. Middle: the PSD (dB, ICLabel's scaling) and autocorrelation features.
        Bottom: the relevance per frequency and per lag, each on its own symmetric axis. The title
        gives the explained class, its probability and the share of it each input carries.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Polygon

    comps = list(np.asarray(R.component.values))
    c = comps[0] if component is None else component
    if c not in comps:
        raise InputError(f"component {c} was not explained; R holds components {comps}")
    S = R.sel(component=c)
    output = R.attrs.get("output", "logit")
    fig = plt.figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=[1.5, 0.8, 0.8])
    x, y = R.x.values, R.y.values
    extent = (x[0] - 0.5 * (x[1] - x[0]), x[-1] + 0.5 * (x[1] - x[0]), y[0] - 0.5 * (y[1] - y[0]),
              y[-1] + 0.5 * (y[1] - y[0]))

    def head(ax):
        ax.add_patch(Circle((0, 0), 0.5, fill=False, lw=1.2, color="k"))
        ax.add_patch(Polygon([(-0.05, 0.495), (0, 0.56), (0.05, 0.495)], closed=False, fill=False, lw=1.2, color="k"))
        for side in (-1, 1):
            ax.add_patch(Polygon([(side * 0.497, 0.06), (side * 0.53, 0.08), (side * 0.54, -0.07),
                                  (side * 0.5, -0.08)], closed=False, fill=False, lw=1.2, color="k"))
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.58, 0.62)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)

    inside = np.hypot(*np.meshgrid(x, y)) <= 0.5
    ax = fig.add_subplot(grid[0, 0])
    value = np.where(inside, S["topomap_value"].values, np.nan)
    im = ax.imshow(value, origin="lower", extent=extent, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    head(ax)
    ax.set_title("component map (ICLabel input)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.7, label="map value (scaled to max |1|)")
    ax = fig.add_subplot(grid[0, 1])
    rel = np.where(inside, S["topomap"].values, np.nan)
    lim = float(np.nanmax(np.abs(rel))) or 1.0
    im = ax.imshow(rel, origin="lower", extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    head(ax)
    ax.set_title("relevance of the map", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.7, label=f"relevance ({output} units)")
    ax = fig.add_subplot(grid[0, 2])
    probs = S["probability"].values
    target = str(S["target_class"].values)
    colours = ["tab:red" if k == target else "0.6" for k in R.iclabel_class.values]
    ax.barh(np.arange(len(probs)), probs, color=colours)
    ax.set_yticks(np.arange(len(probs)), list(R.iclabel_class.values), fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title("ICLabel output", fontsize=10)
    f, lag = R.frequency.values, R.lag.values
    ax_p = fig.add_subplot(grid[1, :2])
    ax_p.plot(f, S["psd_value"].values, color="k", lw=1.2)
    ax_p.set_ylabel("PSD (dB / max)")
    ax_p.set_title("power spectrum (ICLabel input)", fontsize=10)
    ax_a = fig.add_subplot(grid[1, 2])
    ax_a.plot(lag, S["autocorrelation_value"].values, color="k", lw=1.2)
    ax_a.set_ylabel("autocorrelation")
    ax_a.set_title("autocorrelation (ICLabel input)", fontsize=10)
    rp, ra = S["psd"].values, S["autocorrelation"].values
    lim = float(np.abs(rp).max()) * 1.1 or 1.0
    ax_rp = fig.add_subplot(grid[2, :2], sharex=ax_p)
    ax_rp.bar(f, rp, width=0.9, color=np.where(rp >= 0, "tab:red", "tab:blue"))
    ax_rp.set_xlabel("frequency (Hz)")
    ax_rp.set_ylabel("relevance")
    ax_rp.set_title("relevance per frequency", fontsize=10)
    ax_rp.set_ylim(-lim, lim)
    ax_ra = fig.add_subplot(grid[2, 2], sharex=ax_a)
    ax_ra.bar(lag, ra, width=9.0, color=np.where(ra >= 0, "tab:red", "tab:blue"))
    ax_ra.set_xlabel("lag (ms)")
    ax_ra.set_title("relevance per lag (own scale)", fontsize=10)
    lim = float(np.abs(ra).max()) * 1.1 or 1.0
    ax_ra.set_ylim(-lim, lim)
    for a in (ax_p, ax_a):
        a.tick_params(labelbottom=False)
    for a in (ax_rp, ax_ra):
        a.axhline(0, color="k", lw=0.6)
    ax_ra.set_ylabel("relevance")
    share = S["share"].values
    p_target = float(probs[list(R.iclabel_class.values).index(target)])
    fig.suptitle(f"ICA component {c}: class '{target}' (p = {p_target:.2f}), explained {output} "
                 f"{float(S['prediction']):.2f}\nshare of it: map {share[0]:.0%}, PSD {share[1]:.0%}, "
                 f"autocorrelation {share[2]:.0%}, absorbed (biases, stabiliser) "
                 f"{float(S['absorbed']) / float(S['prediction']):.0%}", fontsize=11)
    return fig
