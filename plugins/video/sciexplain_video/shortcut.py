"""A Clever Hans shortcut for motion-vector models: a logo planted in part of one class's clips.

What a logo does to motion vectors
----------------------------------
A logo overlaid on a video (a broadcaster's bug in a corner) occupies the same pixel box in
every frame, and the encoder predicts its blocks from the logo itself in the previous frame,
whatever moves underneath. What the motion vectors then carry depends on the logo's content:

* an **opaque, unchanging logo** gives vectors of length zero on its blocks (checked on libx264:
  exactly ``dx = dy = 0``): it is forced still. It is visible only against motion around it, and
  as a zero input it gets exactly zero relevance under LRP's z-rules and gradient x input;
* an **animated logo** whose content loops at a fixed place (a scrolling emblem or ticker in a
  fixed box) gives a **constant vector** on its blocks on every P-frame (checked on libx264: a
  16 x 16 px texture scrolling 3 px per frame to the left gives exactly ``dx = -3, dy = 0``),
  a pattern no action in the generated clips has.

:func:`plant_logo` plants either in the plugin's own representation, a :class:`MotionField`:
on every frame with vectors the blocks inside ``box`` get the logo's displacement ``motion``
(``(0, 0)`` for a still logo) and coverage 1; I-frames stay without vectors (NaN) and every
other entry is unchanged, so the same decoded clip is available with and without the logo.
:func:`draw_logo` draws the same logo into pixels, to compare with what the encoder makes of it.

The shipped model and the benchmark use the animated logo (:data:`LOGO_BOX`, :data:`LOGO_MOTION`)
on the plugin's generated clips: a MotionCNN learns it from half of one class's clips. A still
logo on those clips is hardly learned (their background drifts by only a pixel on every third
frame); with a camera that pans one pixel per frame (:func:`render_panning_clip`) it is learned,
but its blocks are zero inputs, which get no relevance under LRP's z-rules, and neither the input
relevance nor SpRAy on it separates the clips with the logo (``benchmarks/bench_spray_video.py``
runs all three cases). The first convolution's output does respond to the still blocks (its bias and
the moving blocks around them), so relevance at that layer (:func:`explain_at_layer`) can land on
them; ``load_logo_model(still=True)`` is a MotionCNN trained with the still logo (:data:`LOGO_STILL_BOX`)
on panning clips, to try that on. :mod:`sciexplain_video.reference` explains and corrects it relative to
each clip's camera motion instead of the zero input.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sciexplain.errors import ComputationError, DataNotFoundError, InputError

from .motion import MotionField
from .synthetic import ACTIONS, ClipTruth, encode_clip, render_clip

__all__ = ["LOGO_BOX", "LOGO_MOTION", "LOGO_CLASS", "LOGO_LAYER", "LOGO_WEIGHTS", "render_panning_clip",
           "make_panning_dataset", "plant_logo", "draw_logo", "logo_blocks", "logo_mask", "choose_logo_clips",
           "draw_logo_prototype", "load_logo_model", "save_logo_model", "explain_at_layer",
           "LOGO_STILL_BOX", "LOGO_STILL_WEIGHTS"]

#: the logo's pixel box ``(x0, y0, x1, y1)`` (end exclusive): one 16-px block in the top-left corner
LOGO_BOX = (0, 0, 16, 16)
#: the logo's content displacement ``(dx, dy)`` per frame (px): scrolling left 3 px per frame
LOGO_MOTION = (-3.0, 0.0)
#: the class whose clips carry the logo in the shipped model's training data
LOGO_CLASS = "sideways"
#: the MotionCNN layer in which ClArC removes the logo (the first convolution's ReLU, 8 x frames x 4 x 4)
LOGO_LAYER = "features.1"
#: the shipped MotionCNN trained with the logo (written by ``benchmarks/bench_spray_video.py --save-weights``)
LOGO_WEIGHTS = "motion_cnn_logo"
#: the still logo's box: 2 x 2 blocks in the top-left corner (motion ``(0, 0)``)
LOGO_STILL_BOX = (0, 0, 32, 32)
#: the shipped MotionCNN trained with the still logo on panning clips (``bench_spray_video.py --save-weights``)
LOGO_STILL_WEIGHTS = "motion_cnn_logo_still"


# ---------------------------------------------------------------------------- clips


def render_panning_clip(action: str, seed: int, *, size: int = 64, pan: int = 12, step: int = 1,
                        n_frames: int = 24, axis: str | None = None) -> tuple[np.ndarray, ClipTruth]:
    """Render a generated clip as filmed by a camera that pans ``step`` px per frame.

    The scene of :func:`~sciexplain_video.render_clip` is rendered ``pan`` pixels larger than
    ``size`` and cropped by a ``size`` x ``size`` window that moves ``step`` pixels per frame along
    one axis (chosen by ``seed``), turning at the edges of the scene. Content then moves by minus
    the window's displacement plus its own motion.

    Parameters
    ----------
    action : {"updown", "sideways", "wave"}
    seed : int
        Everything random follows from it (the scene as in ``render_clip(action, seed)``, then the
        pan's axis, start and direction).
    size : int
        Width and height of the clip in pixels (a multiple of 16 keeps blocks whole).
    pan : int
        How far the window can move (pixels); the scene is ``size + pan`` wide and high.
    step : int
        Camera displacement per frame (pixels).
    n_frames : int
    axis : {"x", "y"} or None
        The axis the camera pans along; None (default) lets ``seed`` choose it.

    Returns
    -------
    frames : numpy.ndarray, uint8, shape (n_frames, size, size)
    truth : ClipTruth
        Boxes in the cropped frame's pixels; ``moving`` is the figure's own motion plus the
        camera's, ``background_drift`` the scene's drift plus the camera's.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1 or pan < step:
        raise InputError(f"step must be an integer >= 1 and pan >= step, got step={step!r}, pan={pan!r}")
    if not (axis is None or (isinstance(axis, str) and axis in ("x", "y"))):
        raise InputError(f"axis must be 'x', 'y' or None (chosen by the seed), got {axis!r}")
    frames, truth = render_clip(action, seed, size=size + pan, n_frames=n_frames)
    rng = np.random.default_rng([seed, 7])
    drawn = int(rng.integers(0, 2))  # drawn even when given, so the start and direction do not depend on it
    axis = drawn if axis is None else ("x", "y").index(axis)
    pos = int(rng.integers(0, pan // step + 1)) * step
    direction = int(rng.choice([-1, 1]))
    offsets = np.zeros((n_frames, 2), np.int64)  # (ox, oy) of the window per frame
    for t in range(n_frames):
        if t > 0:
            nxt = pos + direction * step
            if nxt < 0 or nxt > pan:
                direction = -direction
                nxt = pos + direction * step
            pos = nxt
        offsets[t] = (pos, pan // 2) if axis == 0 else (pan // 2, pos)
    out = np.stack([frames[t, oy:oy + size, ox:ox + size] for t, (ox, oy) in enumerate(offsets)])
    camera = np.zeros((n_frames, 2), np.float64)
    camera[1:] = -(offsets[1:] - offsets[:-1])  # content moves against the window
    shift = np.concatenate([offsets, offsets], axis=1)[:, None, :]
    moving_now = truth.moving + camera
    still = tuple(t for t in truth.still_frames)
    return out, ClipTruth(action=truth.action, label=truth.label, width=size, height=size, fps=truth.fps,
                          boxes=truth.boxes - shift, moving=moving_now, moving_part=truth.moving_part,
                          background_drift=truth.background_drift + camera, still_frames=still)


def make_panning_dataset(directory: str | os.PathLike, n_per_action: int, seed: int = 0,
                         actions: Sequence[str] = ACTIONS, **render_options: Any) -> list[tuple[Path, ClipTruth]]:
    """Write ``n_per_action`` panning clips of every action into ``directory`` (libx264 through PyAV).

    Clip ``i`` of action ``a`` uses seed ``seed * 100003 + 3 * i + label`` (the scheme of
    :func:`~sciexplain_video.make_dataset`). Returns (path, truth) pairs, actions interleaved.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise InputError(f"unknown actions {unknown}; choose from {ACTIONS}")
    items = []
    for i in range(int(n_per_action)):
        for action in actions:
            clip_seed = seed * 100003 + 3 * i + ACTIONS.index(action)
            frames, truth = render_panning_clip(action, clip_seed, **render_options)
            path = directory / f"pan_{action}_{seed}_{i:03d}.mp4"
            encode_clip(frames, path, fps=truth.fps)
            items.append((path, truth))
    return items


# ---------------------------------------------------------------------------- the logo


def _check_box(box: Sequence[int], width: int, height: int, block: int | None) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"the logo box must be four integers (x0, y0, x1, y1) in pixels, got {box!r}") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(f"the logo box {box!r} must lie inside the {width}x{height} px frame with x0 < x1, y0 < y1")
    if block is not None and any(v % block for v in (x0, y0, x1, y1)) and (x1, y1) != (width, height):
        raise InputError(f"the logo box {box!r} must lie on the {block}-px block grid (every edge a multiple of "
                         f"{block}): a logo covering part of a block mixes its zero vectors with the block's own")
    return x0, y0, x1, y1


def logo_blocks(field: MotionField, box: Sequence[int] = LOGO_BOX) -> tuple[slice, slice]:
    """``(block_y, block_x)`` slices of the blocks the logo covers."""
    x0, y0, x1, y1 = _check_box(box, field.width, field.height, field.block)
    b = field.block
    return slice(y0 // b, -(-y1 // b)), slice(x0 // b, -(-x1 // b))


def logo_mask(field: MotionField, box: Sequence[int] = LOGO_BOX) -> np.ndarray:
    """Bool ``(frame, block_y, block_x)``: the entries :func:`plant_logo` sets (logo blocks on frames with vectors)."""
    ys, xs = logo_blocks(field, box)
    mask = np.zeros((field.n_frames, *field.grid), bool)
    mask[np.ix_(field.has_vectors, np.arange(field.grid[0])[ys], np.arange(field.grid[1])[xs])] = True
    return mask


def plant_logo(field: MotionField, box: Sequence[int] = LOGO_BOX,
               motion: Sequence[float] = LOGO_MOTION) -> MotionField:
    """The field of the same clip with a logo over ``box`` whose content moves by ``motion`` per frame.

    On every frame with vectors the blocks inside ``box`` get ``(dx, dy) = motion`` and coverage 1
    (the encoder predicts the logo from itself in the previous frame); I-frames stay NaN and every
    other entry is unchanged. ``box`` must lie on the block grid.

    Parameters
    ----------
    field : MotionField
    box : (x0, y0, x1, y1)
        The logo in pixels, end exclusive (default :data:`LOGO_BOX`).
    motion : (dx, dy)
        The logo content's forward displacement per frame in pixels: ``(0, 0)`` for an opaque
        still logo, :data:`LOGO_MOTION` (default) for a logo scrolling 3 px per frame to the left.

    Returns
    -------
    MotionField
        A new field (the input is not modified); ``attrs["logo_box"]`` records the box.
    """
    if not isinstance(field, MotionField):
        raise InputError(f"plant_logo takes a MotionField (from read_motion_vectors), got {type(field).__name__}")
    try:
        dx, dy = (float(v) for v in motion)
    except (TypeError, ValueError):
        raise InputError(f"motion must be two numbers (dx, dy) in pixels per frame, got {motion!r}") from None
    if not (np.isfinite(dx) and np.isfinite(dy)):
        raise InputError(f"motion must be finite, got {motion!r}")
    mask = logo_mask(field, box)
    values = np.array(field.field.transpose("frame", "block_y", "block_x", "component").values, copy=True)
    values[mask] = (dx, dy)
    coverage = np.array(field.coverage.transpose("frame", "block_y", "block_x").values, copy=True)
    coverage[mask] = 1.0
    new_field = field.field.transpose("frame", "block_y", "block_x", "component").copy(data=values)
    new_field = new_field.transpose(*field.field.dims)
    new_cov = field.coverage.transpose("frame", "block_y", "block_x").copy(data=coverage).transpose(*field.coverage.dims)
    attrs = {**field.attrs, "logo_box": ", ".join(str(int(v)) for v in box), "logo_motion": f"{dx:g}, {dy:g}"}
    return MotionField(new_field, new_cov, field.block, field.width, field.height, field.fps, field.path, attrs)


def draw_logo(frames: np.ndarray, box: Sequence[int] = LOGO_BOX, motion: Sequence[int] = LOGO_MOTION,
              seed: int = 0) -> np.ndarray:
    """Draw the logo into gray frames ``(T, H, W)`` uint8: a random texture over ``box`` that moves by
    ``motion`` (whole pixels) per frame, wrapping around inside the box (a looping animation; ``(0, 0)``:
    the same pixels in every frame). Returns new frames; the input is not modified.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise InputError(f"frames must be uint8 of shape (T, H, W), got {frames.dtype} {frames.shape}")
    x0, y0, x1, y1 = _check_box(box, frames.shape[2], frames.shape[1], None)
    dx, dy = (int(round(float(v))) for v in motion)
    texture = (np.random.default_rng(seed).random((y1 - y0, x1 - x0)) * 255).astype(np.uint8)
    out = frames.copy()
    for t in range(len(out)):
        # content displaced by (dx, dy) per frame: the pixel at x shows what was at x - dx one frame before
        out[t, y0:y1, x0:x1] = np.roll(texture, (dy * t, dx * t), axis=(0, 1))
    return out


def choose_logo_clips(labels: Sequence[int], logo_class: int, share: float = 0.5, seed: int = 0) -> np.ndarray:
    """Bool per clip: which clips of ``logo_class`` get the logo: ``round(share * n)`` of its ``n`` clips,
    drawn without replacement (seeded)."""
    labels = np.asarray(labels)
    if not 0.0 <= share <= 1.0:
        raise InputError(f"share must lie in [0, 1], got {share!r}")
    members = np.flatnonzero(labels == int(logo_class))
    chosen = np.random.default_rng(seed).permutation(members)[:int(round(share * len(members)))]
    out = np.zeros(len(labels), bool)
    out[chosen] = True
    return out


# ---------------------------------------------------------------------------- the SpRAy view


class draw_logo_prototype:  # noqa: N801 - used like a function: plot_spray(ds, draw_logo_prototype())
    """Draw a video prototype for :func:`sciexplain.plot_spray`: relevance per block (summed over
    frames when the prototype has them), over the frame in pixels, with the logo's box outlined.

    Parameters
    ----------
    box : (x0, y0, x1, y1) or None
        Outlined in black dashes (pixels).
    block : int
        Block size in pixels (for the axes' pixel extent).
    """

    def __init__(self, box: Sequence[int] | None = LOGO_BOX, block: int = 16) -> None:
        self.box = None if box is None else tuple(int(v) for v in box)
        self.block = int(block)

    def __call__(self, ax: Any, prototype: Any, vmax: float) -> Any:
        proto = prototype.sum("frame") if "frame" in prototype.dims else prototype
        proto = proto.transpose("block_y", "block_x")
        if "frame" in prototype.dims:  # the shared limit was set on per-frame values
            vmax = max(float(np.abs(proto.values).max()), 1e-12)
        ny, nx = proto.shape
        image = ax.imshow(proto.values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                          extent=(0, nx * self.block, ny * self.block, 0))
        if self.box is not None:
            from matplotlib.patches import Rectangle

            x0, y0, x1, y1 = self.box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1.2, ec="k"))
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        return image


# ---------------------------------------------------------------------------- shipped weights


def _weights_stem(still: bool = False) -> Path:
    name = LOGO_STILL_WEIGHTS if still else LOGO_WEIGHTS
    return Path(str(resources.files("sciexplain_video") / "weights" / name))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_logo_model(model: Any, info: dict, stem: str | os.PathLike | None = None, *, still: bool = False) -> Path:
    """Write the model with :func:`~sciexplain_video.save_model` and the npz's sha256 into its json
    (by default as the shipped animated-logo weights; ``still=True``: the still-logo weights)."""
    from .models import save_model

    stem = _weights_stem(still) if stem is None else Path(stem)
    npz, js = save_model(model, stem, info)
    record = json.loads(js.read_text())
    record["sha256"] = _sha256(npz)
    js.write_text(json.dumps(record, indent=2) + "\n")
    return npz


def load_logo_model(stem: str | os.PathLike | None = None, *, still: bool = False) -> Any:
    """The shipped MotionCNN trained on generated clips with the logo in half of the "sideways" clips.

    ``still=False`` (default): the scrolling logo (:data:`LOGO_BOX`, :data:`LOGO_MOTION`) on the plugin's
    generated clips. ``still=True``: the opaque still logo (:data:`LOGO_STILL_BOX`, motion ``(0, 0)``) on
    clips filmed by a camera panning 1 px per frame (:func:`make_panning_dataset`). The npz's sha256 is checked against its json before loading (arrays only, no pickles).
    ``model.info`` holds the training record (seeds, clip counts, accuracies).

    Raises
    ------
    DataNotFoundError
        The weights are missing.
    ComputationError
        The file's sha256 differs from the record (a damaged or replaced file).
    """
    from .models import load_model

    stem = _weights_stem(still) if stem is None else Path(stem)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if not npz.exists() or not js.exists():
        raise DataNotFoundError(f"the weights {npz} are missing; make them with "
                                "python benchmarks/bench_spray_video.py --save-weights")
    want = json.loads(js.read_text()).get("sha256")
    got = _sha256(npz)
    if got != want:
        raise ComputationError(f"{npz} has sha256 {got}, its record says {want}: the weights were changed or "
                               "damaged; restore them or make them again with "
                               "python benchmarks/bench_spray_video.py --save-weights")
    return load_model(stem)


# ---------------------------------------------------------------------------- relevance at a hidden layer


def explain_at_layer(model: Any, fields: Any, target: Any = None, layer: str = LOGO_LAYER, *,
                     preset: Any = None) -> Any:
    """LRP relevance of a MotionCNN's hidden layer: per clip, channel, frame and block.

    A still logo's blocks are zero inputs and get exactly zero input relevance under LRP's z-rules;
    a convolution's output on them is its bias plus what the moving blocks around them contribute,
    so relevance at that output can land on them. The model's convolutions keep the frame and block
    grid (3 x 3 x 3 kernels, padding 1), so the layer's map has the input's layout with its channels
    in place of ``dx``/``dy``.

    Parameters
    ----------
    model : MotionCNN
    fields : MotionField or list of MotionField
    target : int, sequence of int, or None
        Class to explain per clip; None explains the predicted class.
    layer : str
        A module of ``model.features`` whose output keeps the input's grid (default :data:`LOGO_LAYER`,
        the first convolution's ReLU).
    preset : optional
        LRP preset of the layers above ``layer`` (default: the plugin's ``DEFAULT_PRESET``).

    Returns
    -------
    xarray.DataArray
        Dims ``("clip", "channel", "frame", "block_y", "block_x")`` with the fields' frame and block
        coords; per clip, relevance + ``absorbed`` = ``prediction`` (what the layers above absorbed);
        ``attrs["layer"]`` names the layer.

    Raises
    ------
    InputError
        ``layer`` is not a module of ``model.features`` or its output does not keep the input's grid.
    """
    import sciexplain as sx
    import torch

    from .explain import DEFAULT_PRESET, fields_to_tensor

    names = {f"features.{n}" for n, _ in getattr(model, "features", {}).named_children()} \
        if hasattr(model, "features") else set()
    if layer not in names:
        raise InputError(f"layer must be one of the model's feature layers {sorted(names)}, got {layer!r}")
    x, labels = fields_to_tensor(fields, model)
    shape: list[tuple[int, ...]] = []

    def record(module: Any, inputs: Any, output: Any) -> None:
        shape.append(tuple(output.shape))

    hook = dict(model.named_modules())[layer].register_forward_hook(record)
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        hook.remove()
    if shape[0][2:] != tuple(x.shape[2:]):
        raise InputError(f"{layer!r} outputs {shape[0][1:]}, not the input's (frame, block_y, block_x) grid "
                         f"{tuple(x.shape[2:])}")
    coords = {k: v for k, v in labels["coords"].items() if k != "component"}
    coords["channel"] = np.arange(shape[0][1])
    R = sx.explain(model, x, target, preset=DEFAULT_PRESET if preset is None else preset, at=layer,
                   dims=("clip", "channel", "frame", "block_y", "block_x"), coords=coords)
    R.attrs.update(labels["attrs"])
    return R
