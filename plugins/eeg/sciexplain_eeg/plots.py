"""Figures of EEG explanations; every function returns a matplotlib Figure.

Scalp maps are drawn by MNE (``mne.viz.plot_topomap``) into the figure's axes from the
sensor positions stored in the relevance itself (coords ``x``, ``y``, ``z``), so a saved and
reloaded netCDF file plots the same. Colours: a diverging map centred at zero (red: evidence
for the explained class, blue: against), symmetric limits shared by the panels of a figure.

What is drawn is always a **sum** of relevance (over a time window, over the electrodes of a
region), which keeps the decomposition of f(x) for a single trial; class-average panels show
the **mean over epochs** of those sums, which is a summary, not a decomposition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sciexplain.result import method_title, pyplot, RELEVANCE_CMAP, styled, symmetric_limit
from sciexplain.errors import InputError, SciexplainError

__all__ = ["plot_topomap", "plot_class_topomaps", "plot_joint", "plot_roi_timecourse", "plot_left_right",
           "plot_perturbation", "MontageMissingError"]




def _ticks(cb, lim: float) -> None:
    """Colour-bar ticks at -lim, 0 and lim, written out (short labels, no offset text)."""
    cb.set_ticks([-lim, 0.0, lim], labels=[f"{-lim:.2g}", "0", f"{lim:.2g}"])


class MontageMissingError(SciexplainError, ValueError):
    """The relevance has no sensor positions, so no scalp map can be drawn."""


def _require_positions(R: Any) -> None:
    if "channel" not in R.dims:
        raise InputError(f"scalp maps need a 'channel' dim; this result has dims {list(R.dims)} (pool_rois "
                         "results have regions instead of electrodes)")
    pos = np.stack([np.asarray(R.coords[a].values, dtype=np.float64) if a in R.coords else
                    np.full(R.sizes["channel"], np.nan) for a in "xyz"], axis=1)
    missing = [str(c) for c, p in zip(R["channel"].values, pos) if not np.all(np.isfinite(p))]
    if missing:
        raise MontageMissingError(
            f"no sensor positions for channels {missing[:10]}{' ...' if len(missing) > 10 else ''}: the epochs "
            "had no montage when they were explained. The relevance is still labelled by channel name; for "
            "scalp maps set a montage and explain again, e.g. epochs.set_montage('colin27_1020') (MNE's "
            "built-in 10-20 positions, no download) or epochs.set_montage(your_digmontage).")


def _info(R: Any):
    from .evoked import relevance_info
    _require_positions(R)
    return relevance_info(R)


def _windowed(R: Any, windows: Any):
    """R summed in time windows (a size in seconds or edges); None: one window over the whole epoch."""
    import warnings

    from sciexplain.result import DecompositionWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecompositionWarning)  # display of non-decompositions
        if windows is None:
            W = R.relevance.windows("time", [float(R.time.values[0]), float(R.time.values[-1])])
        else:
            W = R.relevance.windows("time", windows)
    return W


def _window_label(W: Any, k: int) -> str:
    start, end = float(W["time_start"].values[k]), float(W["time_end"].values[k])
    return f"{start * 1000:.0f}-{end * 1000:.0f} ms"


def _topo(ax, values: np.ndarray, info: Any, lim: float, *, names: bool = False, extrapolate: str = "local"):
    import mne
    im, _ = mne.viz.plot_topomap(np.asarray(values, dtype=np.float64), info, axes=ax, show=False,
                                 cmap=RELEVANCE_CMAP, vlim=(-lim, lim), sensors=True, contours=0,
                                 extrapolate=extrapolate, names=list(info["ch_names"]) if names else None)
    return im


def _topomap_row(fig, grid, maps, titles, info, lim: float, label: str, *, extrapolate: str, fontsize: int,
                 fraction: float) -> None:
    """Topomaps in the first row of ``grid``, one colour scale and one colour bar for the row."""
    im = None
    for k, (values, title) in enumerate(zip(maps, titles)):
        ax = fig.add_subplot(grid[0, k])
        im = _topo(ax, values, info, lim, extrapolate=extrapolate)
        ax.set_title(title, fontsize=fontsize)
    cb = fig.colorbar(im, ax=fig.axes[:len(maps)], fraction=fraction, pad=0.02)
    _ticks(cb, lim)
    cb.set_label(label, fontsize=8)


def _epoch_title(R: Any, i: int) -> str:
    sub = R.isel(epoch=i)
    parts = [f"epoch {sub.epoch.values}"]
    if "condition" in sub.coords:
        parts.append(f"{sub.condition.values}")
    if "predicted" in sub.coords:
        parts.append(f"predicted {int(sub.predicted)}")
    parts.append(f"f(x) = {float(sub.prediction):.3g}")
    return ", ".join(parts)


@styled
def plot_topomap(R: Any, epoch: int = 0, *, windows: float | Sequence[float] | None = 0.1, total: bool = True,
                 vmax: float | None = None, names: bool = False, extrapolate: str = "local",
                 size: float = 1.25):
    """Single-trial scalp maps of relevance summed in time windows (Sturm et al. 2016).

    Each panel is the relevance of one epoch summed over the samples of one window, per
    electrode; with ``total`` a last panel sums over the whole epoch. The panels plus the
    absorbed relevance add up to f(x), shown in the title.

    Parameters
    ----------
    R : xarray.DataArray
        From :func:`explain_epochs` (dims epoch, channel, time) with sensor positions.
    epoch : int
        Position of the epoch along ``epoch``.
    windows : float, sequence of float or None
        Window size in seconds, window edges, or None for the whole epoch only.
    total : bool
        Add the map summed over all samples.
    vmax : float, optional
        Colour limit (default: robust maximum over the panels).
    names : bool
        Write channel names on the maps.
    extrapolate : {"local", "head", "box"}
        MNE's extrapolation outside the electrodes (``"local"``: only near them).

    Raises
    ------
    MontageMissingError
        If R has no sensor positions (set a montage on the epochs and explain again).
    """
    plt = pyplot()
    info = _info(R)
    single = R.isel(epoch=[int(epoch)])
    panels, labels = [], []
    if windows is not None:
        W = _windowed(single, windows)
        for k in range(W.sizes["time"]):
            panels.append(W.isel(epoch=0, time=k).values)
            labels.append(_window_label(W, k))
    if total or not panels:
        T = _windowed(single, None)
        panels.append(T.isel(epoch=0, time=0).values)
        labels.append("whole epoch")
    lim = vmax if vmax is not None else symmetric_limit(np.concatenate([np.ravel(p) for p in panels]), 100)
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.9, size + 0.8), squeeze=False)
    im = None
    for ax, values, label in zip(axes[0], panels, labels):
        im = _topo(ax, values, info, lim, names=names, extrapolate=extrapolate)
        ax.set_title(label, fontsize=8)
    sub = single.isel(epoch=0)
    absorbed = float(sub.absorbed) if "absorbed" in sub.coords else float("nan")
    fig.suptitle(f"{_epoch_title(R, int(epoch))}; absorbed {absorbed:.3g} "
                 f"({method_title(R)})", fontsize=9)
    cb = fig.colorbar(im, ax=list(axes[0]), fraction=0.02, pad=0.02)
    _ticks(cb, lim)
    cb.set_label("relevance (sum in window)", fontsize=8)
    return fig


def _groups(R: Any, by: str | None) -> list[tuple[str, np.ndarray]]:
    from .evoked import _groups as groups
    return groups(R, by)


@styled
def plot_class_topomaps(R: Any, *, by: str | None = "condition", windows: float | Sequence[float] | None = 0.1,
                        total: bool = True, difference: bool = False, vmax: float | None = None,
                        extrapolate: str = "local", size: float = 1.2):
    """Class-average scalp maps: per group (row), the mean over its epochs of the window sums.

    Parameters
    ----------
    by : {"condition", "target"} or None
        One row per condition, per explained class, or one row over all epochs.
    windows, total, vmax, extrapolate
        As in :func:`plot_topomap`.
    difference : bool
        With exactly two groups, add a row "first - second". Explain one fixed class for all
        epochs (``target=1``) for this contrast: the rows then show the evidence for that class
        in each condition, and their difference what separates the conditions (the part the
        conditions share, e.g. the average epoch times the weights, cancels).
    """
    plt = pyplot()
    info = _info(R)
    groups = _groups(R, by)
    W = _windowed(R, windows) if windows is not None else None
    T = _windowed(R, None) if total or W is None else None
    rows, col_labels = [], []
    if W is not None:
        col_labels += [_window_label(W, k) for k in range(W.sizes["time"])]
    if T is not None:
        col_labels.append("whole epoch")
    for _, idx in groups:
        panels = []
        if W is not None:
            mean = W.isel(epoch=idx).values.mean(axis=0)
            panels += [mean[:, k] for k in range(mean.shape[1])]
        if T is not None:
            panels.append(T.isel(epoch=idx).values.mean(axis=0)[:, 0])
        rows.append(panels)
    groups = list(groups)
    if difference:
        if len(groups) != 2:
            raise InputError(f"difference=True needs exactly two groups, got {[g for g, _ in groups]}")
        rows.append([a - b for a, b in zip(rows[0], rows[1])])
        groups.append((f"{groups[0][0]} - {groups[1][0]}", None))
    n_groups = len(rows) - (1 if difference else 0)
    lim = vmax if vmax is not None else symmetric_limit(
        np.concatenate([np.ravel(p) for r in rows[:n_groups] for p in r]), 100)
    # the difference row gets its own colour scale: it is usually much weaker than the class rows
    lim_diff = symmetric_limit(np.concatenate([np.ravel(p) for p in rows[-1]]), 100) if difference else lim
    nr, nc = len(rows), len(col_labels)
    fig, axes = plt.subplots(nr, nc, figsize=(size * nc + 1.6, size * nr + 0.8), squeeze=False)
    im = im_diff = None
    for r, ((name, idx), panels) in enumerate(zip(groups, rows)):
        is_diff = difference and r == nr - 1
        for c, values in enumerate(panels):
            shown = _topo(axes[r, c], values, info, lim_diff if is_diff else lim, extrapolate=extrapolate)
            if is_diff:
                im_diff = shown
            else:
                im = shown
            if r == 0:
                axes[r, c].set_title(col_labels[c], fontsize=8)
        label = name if idx is None else f"{name}\n(n={len(idx)})"
        axes[r, 0].text(-0.25, 0.5, label, transform=axes[r, 0].transAxes, rotation=90,
                        ha="center", va="center", fontsize=9)
    fig.suptitle(f"mean over epochs of relevance summed in windows ({method_title(R)})", fontsize=9)
    cb = fig.colorbar(im, ax=list(axes[:n_groups].flat), fraction=0.02, pad=0.02)
    _ticks(cb, lim)
    cb.set_label("mean relevance per epoch", fontsize=8)
    if difference:
        cb2 = fig.colorbar(im_diff, ax=list(axes[-1]), fraction=0.02, pad=0.02)
        _ticks(cb2, lim_diff)
        cb2.set_label("difference\n(own scale)", fontsize=8)
    return fig


def _joint_windows(R: Any, windows: Any) -> tuple[list[tuple[float, float]], list[str]]:
    """(first, last sample time) per window and its label, from a size, edges or (start, end) pairs."""
    times = np.asarray(R.time.values, dtype=np.float64)
    if windows is None:  # three equal thirds of the epoch
        windows = list(np.linspace(times[0], times[-1] + (times[1] - times[0] if times.size > 1 else 1.0), 4))
    if np.ndim(windows) == 2:  # (start, end) pairs, both ends inclusive
        pairs = [(float(a), float(b)) for a, b in windows]
        return pairs, [f"{a * 1000:.0f}-{b * 1000:.0f} ms" for a, b in pairs]
    W = _windowed(R.isel(epoch=[0]), windows)  # the same windows and labels as plot_topomap / class topomaps
    pairs, labels = [], []
    for k in range(W.sizes["time"]):
        start, end = float(W["time_start"].values[k]), float(W["time_end"].values[k])
        last = k == W.sizes["time"] - 1
        inside = times[(times >= start - 1e-9) & ((times <= end + 1e-9) if last else (times < end - 1e-9))]
        if inside.size:
            pairs.append((float(inside[0]), float(inside[-1])))
            labels.append(_window_label(W, k))
    return pairs, labels


@styled
def plot_joint(R: Any, epoch: int | None = None, *, windows: Any = None,
               vmax: float | None = None, extrapolate: str = "local"):
    """Channel x time relevance image with scalp maps of chosen windows above it.

    Parameters
    ----------
    epoch : int, optional
        One epoch (single trial); default: the mean over all epochs (a summary, not a
        decomposition).
    windows : float, sequence of float, or list of (start, end), optional
        Windows whose relevance sums are drawn as maps, shaded on the image: a window size in
        seconds or window edges (as in :func:`plot_topomap`, with the same labels), or
        ``(first, last)`` sample times in seconds (both included). Default: three equal thirds
        of the epoch.
    """
    plt = pyplot()
    info = _info(R)
    times = np.asarray(R.time.values, dtype=np.float64)
    windows, window_labels = _joint_windows(R, windows)
    if epoch is None:
        image = R.values.mean(axis=0)
        what = f"mean over {R.sizes['epoch']} epochs"
    else:
        image = R.isel(epoch=int(epoch)).values
        what = _epoch_title(R, int(epoch))
    maps = []
    for a, b in windows:
        inside = (times >= a - 1e-9) & (times <= b + 1e-9)
        if not inside.any():
            raise InputError(f"window ({a}, {b}) s holds no sample of the epoch ({times[0]:.3f} to {times[-1]:.3f} s)")
        maps.append(image[:, inside].sum(axis=1))
    n = len(windows)
    fig = plt.figure(figsize=(min(7.0, max(5.5, 1.5 * n + 1.2)), 5.0))
    grid = fig.add_gridspec(2, n, height_ratios=[1, 2.0])
    lim_map = vmax if vmax is not None else symmetric_limit(np.concatenate(maps), 100)
    _topomap_row(fig, grid, maps, window_labels, info, lim_map,
                 "sum in window", extrapolate=extrapolate, fontsize=8, fraction=0.02)
    ax_img = fig.add_subplot(grid[1, :])
    lim = symmetric_limit(image)
    step = times[1] - times[0] if times.size > 1 else 1.0
    shown = ax_img.imshow(image, aspect="auto", cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim, interpolation="nearest",
                          extent=(times[0] - step / 2, times[-1] + step / 2, R.sizes["channel"] - 0.5, -0.5))
    for a, b in windows:
        ax_img.axvspan(a - step / 2, b + step / 2, color="k", alpha=0.07)
        for edge in (a - step / 2, b + step / 2):
            ax_img.axvline(edge, color="0.3", lw=0.6, ls=":")
    ax_img.set_yticks(np.arange(R.sizes["channel"]))
    ax_img.set_yticklabels([str(c) for c in R.channel.values], fontsize=6)
    ax_img.set_xlabel("time (s)")
    ax_img.set_ylabel("channel")
    cb2 = fig.colorbar(shown, ax=ax_img, fraction=0.03, pad=0.01)
    _ticks(cb2, lim)
    cb2.set_label("relevance per sample", fontsize=8)
    fig.suptitle(f"{what} ({method_title(R)})", fontsize=9)
    return fig


@styled
def plot_roi_timecourse(R: Any, rois: Mapping[str, Sequence[str]] | None = None, *, by: str = "lobe",
                        group: str | None = "condition", window: float | None = None):
    """Relevance time course per region of interest: summed over the region's electrodes.

    One panel per region; one line per group of epochs (mean over epochs, shaded +- standard
    error of the mean). A sum over all regions (with the remainder) at every time point is the
    relevance time course of the whole scalp.

    Parameters
    ----------
    rois : mapping, optional
        Regions (default :func:`default_rois` ``by``).
    group : {"condition", "target"} or None
        Lines per condition, per explained class, or one line over all epochs.
    window : float, optional
        Sum in windows of this many seconds first (a smoother curve that still decomposes).
    """
    from .rois import pool_rois

    plt = pyplot()
    P = pool_rois(R, rois, by=by)
    if window is not None:
        P = _windowed(P, window)
    names = [str(v) for v in P["roi"].values]
    times = np.asarray(P.time.values, dtype=np.float64)
    ncols = min(3, int(np.ceil(np.sqrt(len(names)))))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 2.1 * nrows + 0.3), squeeze=False, sharex=True,
                             sharey=True)
    groups = _groups(R, group)
    for k, name in enumerate(names):
        ax = axes.flat[k]
        for label, idx in groups:
            values = P.isel(epoch=idx, roi=k).values
            mean = values.mean(axis=0)
            sem = values.std(axis=0, ddof=1) / np.sqrt(len(idx)) if len(idx) > 1 else np.zeros_like(mean)
            line, = ax.plot(times, mean, label=label, lw=1.4)
            ax.fill_between(times, mean - sem, mean + sem, color=line.get_color(), alpha=0.2, lw=0)
        ax.axhline(0, color="0.6", lw=0.6)
        n = int(P.n_channels.values[k]) if "n_channels" in P.coords else None
        ax.set_title(f"{name}" + (f" ({n} ch)" if n else ""), fontsize=9)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for c in range(ncols):  # the lowest panel in use of each column carries the time axis
        used = [axes[r, c] for r in range(nrows) if r * ncols + c < len(names)]
        if used:
            used[-1].set_xlabel("time (s)")
            used[-1].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("relevance (sum)")
    axes.flat[0].legend(fontsize=7, frameon=False)
    unit = f"sum per {window * 1000:.0f} ms window" if window else "sum per sample"
    fig.suptitle(f"relevance per region, {unit}; mean +- SEM over epochs ({method_title(R)})",
                 fontsize=9)
    return fig


@styled
def plot_left_right(R: Any, *, group: str | None = "condition", extrapolate: str = "local"):
    """Left vs right: class-average maps per group and hemisphere sums per group.

    Top: per group, the mean over its epochs of the relevance summed over the whole epoch,
    as a scalp map. Bottom: per group, the relevance summed over the left hemisphere, the
    midline and the right hemisphere (mean +- SEM over epochs), and the lateralisation
    ``right - left``.
    """
    from .rois import pool_rois

    plt = pyplot()
    info = _info(R)
    groups = _groups(R, group)
    T = _windowed(R, None)
    H = pool_rois(T, by="hemisphere", name="hemisphere")
    maps = [T.isel(epoch=idx).values.mean(axis=0)[:, 0] for _, idx in groups]
    lim = symmetric_limit(np.concatenate(maps), 100)
    n = len(groups)
    fig = plt.figure(figsize=(max(5.0, 2.0 * n + 1.6), 4.6))
    grid = fig.add_gridspec(2, n, height_ratios=[1.1, 1])
    _topomap_row(fig, grid, maps, [f"{label} (n={len(idx)})" for label, idx in groups], info, lim,
                 "mean relevance per epoch", extrapolate=extrapolate, fontsize=9, fraction=0.03)
    ax = fig.add_subplot(grid[1, :])
    hemis = [str(h) for h in H.hemisphere.values]
    width = 0.8 / max(1, n)
    for k, (label, idx) in enumerate(groups):
        values = H.isel(epoch=idx, time=0).values  # (epochs, hemisphere)
        mean = values.mean(axis=0)
        sem = values.std(axis=0, ddof=1) / np.sqrt(len(idx)) if len(idx) > 1 else np.zeros_like(mean)
        ax.bar(np.arange(len(hemis)) + (k - (n - 1) / 2) * width, mean, width, yerr=sem, capsize=3,
               label=label if label.endswith("epochs") else f"{label} epochs")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xticks(np.arange(len(hemis)))
    ax.set_xticklabels(hemis)
    ax.set_xlabel("hemisphere (midline: electrodes on the midline)")
    ax.set_ylabel("relevance summed over\nthe hemisphere and epoch")
    ax.legend(fontsize=8, frameon=False)
    if "left" in hemis and "right" in hemis:
        li, ri = hemis.index("left"), hemis.index("right")
        text = ", ".join(
            f"{(H.isel(epoch=idx, time=0).values[:, ri] - H.isel(epoch=idx, time=0).values[:, li]).mean():.3g} "
            f"in {label if label.endswith('epochs') else label + ' epochs'}" for label, idx in groups)
        ax.set_title(f"right minus left hemisphere: {text}", fontsize=8)
    fig.suptitle(f"left vs right hemisphere ({method_title(R)}); mean +- SEM over epochs", fontsize=9)
    return fig


def _removal_words(removal: str) -> str:
    """The removal strategy in words (the settings hold its repr, e.g. ``BlockRemoval(kind='mean')``)."""
    if "mean" in removal:
        return "removed blocks set to the channel's epoch mean"
    if "zero" in removal:
        return "removed blocks set to 0"
    return f"removal: {removal}"


@styled
def plot_perturbation(result: Any, *, methods: Sequence[str] | None = None):
    """Mean MoRF (solid) and LeRF (dashed) curves per method from :func:`perturbation_comparison`.

    Each method has its own colour and marker; a method whose curves coincide with an earlier
    method's (within 0.5 % of the y range everywhere, e.g. LRP-epsilon and gradient x input on a
    linear model) is drawn with markers only, on top, and the legend says so.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.3))
    names = methods or list(dict.fromkeys(name for name, _ in result.curves))
    means = {key: curve.values.mean(axis=0) for key, curve in result.curves.items() if key[0] in names}
    orders = {name: [o for (n, o) in means if n == name] for name in names}
    # curves that coincide on the plot: within 0.5 % of the y range everywhere (e.g. LRP-epsilon and
    # gradient x input on a linear model, equal up to the stabiliser and ties in the ordering)
    span = float(np.ptp(np.concatenate(list(means.values())))) if means else 0.0
    same_as: dict[str, str] = {}
    for k, name in enumerate(names):
        for earlier in names[:k]:
            if earlier not in same_as and orders[name] == orders[earlier] and all(
                    np.allclose(means[(name, o)], means[(earlier, o)], rtol=0, atol=0.005 * span)
                    for o in orders[name]):
                same_as[name] = earlier
                break
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    n_steps = max(len(m) for m in means.values()) if means else 1
    for k, name in enumerate(names):
        color, marker = f"C{k}", markers[k % len(markers)]
        for order in orders[name]:
            curve = result.curves[(name, order)]
            mean = means[(name, order)]
            what = {"morf": "MoRF", "lerf": "LeRF", "random": "random order"}[order]
            label = f"{name}, {what}" if order != "random" else "random order"
            style = {"morf": "-", "lerf": "--", "random": ":"}[order]
            every = max(1, n_steps // 8)
            offset = (k * every) // max(1, len(names))  # markers of different methods at different steps
            if name in same_as:
                ax.plot(curve.step.values, mean, linestyle="none", marker=marker, ms=5, mfc="none", color=color,
                        markevery=(offset, every), label=f"{label} (= {same_as[name]}: the curves coincide)",
                        zorder=3)
            else:
                ax.plot(curve.step.values, mean, style, color=color, lw=1.4, marker=marker, ms=3.5,
                        markevery=(offset, every), label=label)
    ax.set_xlabel(f"blocks removed (1 channel x {result.settings['block']} samples each)")
    ax.set_ylabel("explained logit (mean over epochs)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    ax.set_title(f"region perturbation, {_removal_words(str(result.settings.get('removal', '')))}")
    return fig
