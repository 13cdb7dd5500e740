"""Figures of video explanations; every ``plot_*`` returns a matplotlib Figure.

Red is evidence for the explained class, blue against (symmetric colour limits). Frames without
motion vectors (I-frames) are marked as such, never drawn as still frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from sciexplain.result import method_title, pyplot, RELEVANCE_CMAP, styled, symmetric_limit

__all__ = ["plot_frame_curve", "plot_frames", "plot_perturbation", "frame_relevance", "block_map"]



def _clip(R: xr.DataArray, clip: int) -> xr.DataArray:
    if "clip" in R.dims:
        return R.isel(clip=clip)
    return R


def _flags(R: xr.DataArray, clip: int) -> tuple[np.ndarray, np.ndarray]:
    types = R.coords["frame_type"]
    flags = R.coords["has_vectors"]
    if "clip" in types.dims:
        types, flags = types.isel(clip=clip), flags.isel(clip=clip)
    return np.asarray(types.values, dtype=str), np.asarray(flags.values, dtype=bool)


def frame_relevance(R: xr.DataArray) -> xr.DataArray:
    """Relevance per clip and frame: ``R`` summed over blocks (and components if present)."""
    dims = [d for d in ("block_y", "block_x", "component") if d in R.dims]
    return R.relevance.pool(*dims)


def _plain(text: str) -> str:
    """Text for matplotlib titles: ``$`` would start mathtext (TeX), so it is escaped."""
    return str(text).replace("$", r"\$")



def _title(R: xr.DataArray, clip: int) -> str:
    sub = _clip(R, clip)
    name = str(sub.coords["target_name"].values) if "target_name" in sub.coords else str(int(sub.target))
    path = os.path.basename(str(sub.coords["path"].values)) if "path" in sub.coords else ""
    return _plain(f"{path + ': ' if path else ''}class {name}, f(x) = {float(sub.prediction):.3g} ({method_title(R)})")


@styled
def plot_frame_curve(R: xr.DataArray, clip: int = 0, *, truth: Any = None, ax=None):
    """Relevance per frame against time, I-frames shaded; optionally the true motion per frame.

    Parameters
    ----------
    R : xarray.DataArray
        A video explanation (dims ``("clip", "frame", "block_y", "block_x")``).
    clip : int
        Which clip.
    truth : ClipTruth or array-like, optional
        The figure's true motion per frame (pixels), drawn on a second axis.
    ax : matplotlib Axes, optional
    """
    plt = pyplot()
    curve = _clip(frame_relevance(R), clip)
    t = np.asarray(R.coords["time"].values, dtype=float)
    types, flags = _flags(R, clip)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.5, 2.9 if truth is not None else 2.6))
    else:
        fig = ax.figure
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    colors = np.where(curve.values >= 0, "tab:red", "tab:blue")
    ax.bar(t, curve.values, width=0.8 * step, color=colors, label="relevance per frame")
    for ti in t[~flags]:
        ax.axvspan(ti - 0.5 * step, ti + 0.5 * step, color="0.85", zorder=0)
        ax.text(ti, 0.98, "I", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7, color="0.4")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("relevance per frame\n(sum over blocks)")
    ax.set_title(_title(R, clip) + "\ngrey, I: frames without motion vectors")
    if truth is not None:
        motion = np.asarray(getattr(truth, "motion", truth), dtype=float)
        ax2 = ax.twinx()
        ax2.plot(t[:motion.size], motion, color="k", lw=1, marker=".", label="true motion (px/frame)")
        ax2.set_ylabel("true motion (px)")
        ax2.set_ylim(bottom=0)
        ax2.spines["right"].set_visible(True)  # the style hides it; this axis needs it
        handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
        if own:
            fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=2)
        else:
            ax.legend(handles, [h.get_label() for h in handles], loc="upper right")
    return fig


def block_map(R: xr.DataArray, clip: int, frame: int, height: int, width: int) -> np.ndarray:
    """Relevance of one frame's blocks upsampled to a (height, width) pixel map (block-constant)."""
    sub = _clip(R, clip)
    if "component" in sub.dims:
        sub = sub.sum("component")
    m = np.asarray(sub.isel(frame=frame).values, dtype=float)
    block = int(R.attrs.get("block", 16))
    big = np.kron(m, np.ones((block, block)))
    return big[:height, :width]


@styled
def plot_frames(R: xr.DataArray, path: str | os.PathLike | None = None, frames: Sequence[int] | None = None, *,
                clip: int = 0, n: int = 4, alpha: float = 0.55, vmax: float | None = None):
    """Heatmaps of block relevance over the decoded frames (the seeds' Fig. 2C).

    Parameters
    ----------
    R : xarray.DataArray
        A video explanation.
    path : path, optional
        The video file to decode for the background (default: the clip's ``path`` coord).
    frames : sequence of int, optional
        Frame positions; default the ``n`` frames with the largest total |relevance|, in time order.
    clip : int
    n : int
    alpha : float
        Opacity of the heatmap.
    vmax : float, optional
        Colour limit (default: shared across the panels, a high percentile of |relevance|).
    """
    from .motion import decode_frames

    plt = pyplot()
    sub = _clip(R, clip)
    if path is None:
        path = str(sub.coords["path"].values)
    per_frame = np.abs(_clip(R, clip)).sum([d for d in ("block_y", "block_x", "component") if d in sub.dims]).values
    if frames is None:
        frames = sorted(np.argsort(-per_frame, kind="stable")[:n].tolist())
    frames = [int(f) for f in frames]
    images = decode_frames(path, frames, gray=True)
    h, w = next(iter(images.values())).shape[:2]
    maps = [block_map(R, clip, f, h, w) for f in frames]
    lim = vmax if vmax is not None else symmetric_limit(np.stack(maps))
    types, flags = _flags(R, clip)
    t = np.asarray(R.coords["time"].values, dtype=float)
    # wide frames two to a row, square ones four: every thumbnail about as large as the page allows
    ncols = min(len(frames), 2 if w / h > 1.6 else 4)
    nrows = int(np.ceil(len(frames) / ncols))
    panel = 6.2 / ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0, nrows * (panel * h / w + 0.35) + 0.35), squeeze=False)
    for ax in axes.flat[len(frames):]:
        ax.axis("off")
    for ax, f, m in zip(axes.flat, frames, maps):
        ax.imshow(images[f], cmap="gray")
        im = ax.imshow(m, cmap=RELEVANCE_CMAP, vmin=-lim, vmax=lim, alpha=alpha)
        label = f"frame {f} ({types[f]}), {t[f]:.2f} s"
        if not flags[f]:
            label += "\nno vectors"
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(_title(R, clip))
    cb = fig.colorbar(im, ax=list(axes.flat), shrink=0.8, aspect=25)
    cb.solids.set_alpha(1)  # the bar in full colour, whatever the overlay's opacity
    cb.set_label("relevance per block")
    return fig


@styled
def plot_perturbation(curves: dict, *, ax=None, title: str = "block perturbation"):
    """Explained logit against the share of blocks removed, one line per ordering.

    ``curves`` maps a label to a curve from :func:`sciexplain.evaluate.perturbation_curve`
    (dims ``(sample, step)``); the mean over clips is drawn.
    """
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3))
    else:
        fig = ax.figure
    for k, (label, curve) in enumerate(curves.items()):  # markers and dashes: coinciding curves stay visible
        values = np.asarray(curve.mean(curve.dims[0]).values, dtype=float)
        every = max(1, values.size // 8)
        ax.plot(np.arange(values.size), values, label=label, marker="osD^vPX"[k % 7], ms=3.5,
                ls=["-", "--", "-.", ":"][k % 4], markevery=((k * every) // max(1, len(curves)), every))
    ax.set_xlabel("perturbation step (blocks removed)")
    ax.set_ylabel("explained logit (mean over clips)")
    ax.set_title(title)
    ax.legend()
    return fig
