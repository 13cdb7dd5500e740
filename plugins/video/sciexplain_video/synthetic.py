"""Generated action clips with known ground truth, encoded by libx264 through PyAV.

HMDB51 cannot be reached here, so the models are trained on clips this module renders: a
textured figure on a textured, slightly drifting background, performing one of three actions,

* ``"updown"``: the whole figure moves up and down (2 px per frame, turning at the edges),
* ``"sideways"``: the whole figure moves left and right (2 px per frame),
* ``"wave"``: the body stands still, an arm patch beside it moves up and down (4 px per frame),

with a few still frames (the figure pauses). Every clip is encoded with libx264 (``bf=0``,
``g=12``, ``refs=1``: P-frames referencing the previous frame only, an I-frame every 12 frames),
so the motion vectors the models read are real encoder output. :class:`ClipTruth` records the
figure's boxes, which part moves and its true displacement per frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sciexplain.errors import InputError

__all__ = ["ACTIONS", "ClipTruth", "render_clip", "encode_clip", "make_action_clip", "make_dataset",
           "X264_OPTIONS"]

ACTIONS = ("updown", "sideways", "wave")
#: libx264 options of every generated clip: no B-frames, GOP 12, one reference frame
X264_OPTIONS = {"bf": "0", "g": "12", "refs": "1"}

_BODY = (16, 24)     # width, height in pixels
_ARM = (8, 8)
_STEP = {"updown": 2, "sideways": 2, "wave": 4}


@dataclass(frozen=True)
class ClipTruth:
    """Ground truth of a generated clip.

    Attributes
    ----------
    action : str
        One of :data:`ACTIONS`; ``label`` is its index.
    boxes : numpy.ndarray, shape (n_frames, n_parts, 4)
        Pixel boxes ``(x0, y0, x1, y1)`` (end exclusive) of the figure's parts per frame
        (body; and arm for ``"wave"``).
    moving : numpy.ndarray, shape (n_frames, 2)
        True forward displacement ``(dx, dy)`` in pixels of the moving part at each frame
        (relative to the previous frame; zero at frame 0 and on still frames).
    moving_part : int
        Index of the moving part in ``boxes`` (0 body, 1 arm).
    background_drift : numpy.ndarray, shape (n_frames, 2)
        Displacement of the background per frame.
    still_frames : tuple of int
        Frames on which the figure does not move.
    """

    action: str
    label: int
    width: int
    height: int
    fps: float
    boxes: np.ndarray
    moving: np.ndarray
    moving_part: int
    background_drift: np.ndarray
    still_frames: tuple[int, ...]

    @property
    def n_frames(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def motion(self) -> np.ndarray:
        """True motion of the figure per frame: length of the moving part's displacement (px)."""
        return np.hypot(self.moving[:, 0], self.moving[:, 1])

    def block_mask(self, block: int, parts: Sequence[int] | None = None) -> np.ndarray:
        """Bool ``(frame, block_y, block_x)``: blocks overlapping the figure (all parts by default)."""
        ny, nx = -(-self.height // block), -(-self.width // block)
        mask = np.zeros((self.n_frames, ny, nx), bool)
        use = range(self.boxes.shape[1]) if parts is None else parts
        for t in range(self.n_frames):
            for p in use:
                x0, y0, x1, y1 = self.boxes[t, p]
                mask[t, y0 // block:-(-y1 // block), x0 // block:-(-x1 // block)] = True
        return mask


def _texture(rng: np.random.Generator, h: int, w: int, low: int, high: int, smooth: int) -> np.ndarray:
    noise = rng.random((h + smooth, w + smooth))
    if smooth > 1:  # box blur by cumulative sums: a smoother texture for the background
        c = np.cumsum(np.cumsum(noise, 0), 1)
        c = np.pad(c, ((1, 0), (1, 0)))
        noise = (c[smooth:, smooth:] - c[:-smooth, smooth:] - c[smooth:, :-smooth] + c[:-smooth, :-smooth])
        noise /= smooth * smooth
        noise = (noise - noise.min()) / max(np.ptp(noise), 1e-9)
    noise = noise[:h, :w]
    return (low + noise * (high - low)).astype(np.uint8)


def _bounce(pos: int, step: int, lo: int, hi: int, direction: int) -> tuple[int, int]:
    nxt = pos + direction * step
    if nxt < lo or nxt > hi:
        direction = -direction
        nxt = pos + direction * step
    return nxt, direction


def render_clip(action: str, seed: int, *, size: int | tuple[int, int] = 64, n_frames: int = 24,
                fps: float = 12.0, n_still: int = 3) -> tuple[np.ndarray, ClipTruth]:
    """Render the gray frames of one generated clip and its ground truth.

    Parameters
    ----------
    action : {"updown", "sideways", "wave"}
    seed : int
        Everything random (textures, position, phase, still frames, drift) follows from it.
    size : int or (width, height)
        Frame size in pixels (at least 48; multiples of 16 keep blocks whole).
    n_frames : int
        Clip length (at least 4).
    fps : float
        Frame rate written into the file.
    n_still : int
        Number of frames (after the first) on which the figure pauses.

    Returns
    -------
    frames : numpy.ndarray, uint8, shape (n_frames, height, width)
    truth : ClipTruth
    """
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; choose one of {ACTIONS}")
    width, height = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if width < 48 or height < 48:
        raise InputError(f"frames must be at least 48x48 pixels to hold the figure, got {width}x{height}")
    if n_frames < 4:
        raise InputError(f"n_frames must be at least 4, got {n_frames}")
    rng = np.random.default_rng(seed)
    margin = 8
    bg = _texture(rng, height + 2 * margin, width + 2 * margin, 40, 200, 5)
    body_tex = _texture(rng, _BODY[1], _BODY[0], 0, 255, 1)
    arm_tex = _texture(rng, _ARM[1], _ARM[0], 0, 255, 1)
    bw, bh = _BODY
    aw, ah = _ARM
    # body position: leave room for the arm (wave) and for the motion range (8 px each side)
    lo_x, hi_x = 8, width - bw - 8 - (aw if action == "wave" else 0)
    lo_y, hi_y = 8 + (ah if action == "wave" else 0), height - bh - 8
    bx, by = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    bx -= bx % 2
    by -= by % 2
    still = tuple(sorted(rng.choice(np.arange(1, n_frames), size=min(n_still, n_frames - 1), replace=False).tolist()))
    direction = int(rng.choice([-1, 1]))
    step = _STEP[action]
    # the arm moves in a 12-pixel band beside the body's shoulder
    arm_x = bx + bw
    arm_lo, arm_hi = by - ah, by - ah + 12
    ay = int(rng.integers(arm_lo // 4, arm_hi // 4 + 1)) * 4
    ay = min(max(ay, arm_lo), arm_hi)
    drift_axis = int(rng.integers(0, 2))
    drift_sign = int(rng.choice([-1, 1]))
    ox = oy = margin
    frames = np.empty((n_frames, height, width), np.uint8)
    n_parts = 2 if action == "wave" else 1
    boxes = np.zeros((n_frames, n_parts, 4), np.int64)
    moving = np.zeros((n_frames, 2), np.float64)
    drift = np.zeros((n_frames, 2), np.float64)
    for t in range(n_frames):
        if t > 0:
            if t % 3 == 0:  # the background drifts by one pixel every third frame
                d = np.zeros(2, int)
                d[drift_axis] = drift_sign
                nox, noy = ox - d[0], oy - d[1]  # moving the crop window left moves content right
                if 0 <= nox <= 2 * margin and 0 <= noy <= 2 * margin:
                    ox, oy = nox, noy
                    drift[t] = d
            if t not in still:
                if action == "updown":
                    nb, direction = _bounce(by, step, lo_y, hi_y, direction)
                    moving[t] = (0, nb - by)
                    by = nb
                elif action == "sideways":
                    nb, direction = _bounce(bx, step, lo_x, hi_x, direction)
                    moving[t] = (nb - bx, 0)
                    bx = nb
                else:
                    na, direction = _bounce(ay, step, arm_lo, arm_hi, direction)
                    moving[t] = (0, na - ay)
                    ay = na
        img = bg[oy:oy + height, ox:ox + width].copy()
        img[by:by + bh, bx:bx + bw] = body_tex
        boxes[t, 0] = (bx, by, bx + bw, by + bh)
        if action == "wave":
            img[ay:ay + ah, arm_x:arm_x + aw] = arm_tex
            boxes[t, 1] = (arm_x, ay, arm_x + aw, ay + ah)
        frames[t] = img
    truth = ClipTruth(action=action, label=ACTIONS.index(action), width=width, height=height, fps=float(fps),
                      boxes=boxes, moving=moving, moving_part=1 if action == "wave" else 0,
                      background_drift=drift, still_frames=still)
    return frames, truth


def encode_clip(frames: np.ndarray, path: str | os.PathLike, *, fps: float = 12.0,
                options: dict | None = None) -> Path:
    """Encode gray (T, H, W) or RGB (T, H, W, 3) uint8 frames to H.264 (libx264) with PyAV.

    ``options`` are libx264 options (default :data:`X264_OPTIONS`).
    """
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise InputError(f"frames must be uint8 of shape (T, H, W) or (T, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    path = Path(path)
    out = av.open(str(path), "w")
    try:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = dict(X264_OPTIONS if options is None else options)
        for img in frames:
            rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
    return path


def make_action_clip(path: str | os.PathLike, action: str, seed: int, **render_options) -> ClipTruth:
    """Render and encode one clip to ``path``; returns its :class:`ClipTruth`."""
    fps = render_options.get("fps", 12.0)
    frames, truth = render_clip(action, seed, **render_options)
    encode_clip(frames, path, fps=fps)
    return truth


def make_dataset(directory: str | os.PathLike, n_per_action: int, seed: int = 0, *, progress: bool = False,
                 **render_options) -> list[tuple[Path, ClipTruth]]:
    """Write ``n_per_action`` clips of every action into ``directory`` (seeded); returns (path, truth) pairs.

    Clip ``i`` of action ``a`` uses seed ``seed * 100003 + 3 * i + label``, so data sets with
    different ``seed`` do not share clips.
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    jobs = [(a, i) for i in range(n_per_action) for a in ACTIONS]
    for action, i in tqdm(jobs, desc="encoding clips", disable=not progress):
        clip_seed = seed * 100003 + 3 * i + ACTIONS.index(action)
        path = directory / f"{action}_{seed}_{i:03d}.mp4"
        items.append((path, make_action_clip(path, action, clip_seed, **render_options)))
    return items
