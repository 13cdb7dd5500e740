"""Reading H.264 motion vectors with PyAV and rasterising them onto a regular block grid.

No pixels reach the result: FFmpeg's decoder exports the motion vectors the encoder stored
(``flags2=+export_mvs``) as side data of each frame. The decoder still has to parse every frame
to get them; by default it skips the inverse transform and the deblocking filter
(``skip_pixels=True``), so it reconstructs no usable pixels and no frame is converted to an array.

Conventions (verified in ``tests/test_motion.py`` on clips encoded here with libx264)
------------------------------------------------------------------------------------
* **Sign.** FFmpeg stores where a block *came from*: ``src = dst + motion / motion_scale``.
  The field holds the displacement of the content **forward in time**, in pixels per
  reference step: ``d = source * motion / motion_scale`` with ``source = -1`` for a past
  reference (so ``d = dst - src``) and ``+1`` for a future reference (B-frames; then the
  content moves from ``dst`` to ``src``, ``d = src - dst``). A square moving +4 px per frame
  in x has ``dx = +4`` on its blocks. ``component`` is ``"dx"`` (right positive) and ``"dy"``
  (down positive, image rows).
* **Reference distance.** FFmpeg exports only the direction of the reference (``source = +-1``),
  not which reference picture was used. With ``refs=1`` and ``bf=0`` (the clips this plugin
  encodes) every vector points exactly one frame back. Clips encoded with several reference
  frames (most real clips) contain vectors that span two or more frames; they are read as they
  are (a displacement per reference step, not per frame), which ``attrs["reference_note"]``
  states.
* **Block sizes.** H.264 predicts partitions of 16x16 down to 4x4 pixels (16x8, 8x16, 8x8,
  ...). Every vector covers the rectangle ``[dst_x - w/2, dst_x + w/2) x [dst_y - h/2, dst_y +
  h/2)``. Rasterisation onto a grid of ``block`` x ``block`` pixels: each grid cell gets the
  **pixel-area-weighted mean** of the displacements of all vectors overlapping it (a
  bidirectional B-block contributes both of its vectors), and ``coverage`` is the share of the
  cell's pixels inside the frame that any vector covers. Cells no vector covers (intra-coded
  blocks) are NaN in ``field`` with coverage 0.
* **I-frames** carry no vectors: their whole frame is NaN, ``has_vectors`` is False and
  ``frame_type`` is ``"I"``. They are never zeros that would look like stillness.
  :meth:`MotionField.to_array` fills NaN with ``fill`` (0) for the models, which see that as
  "no measured motion"; explanations flag those frames (see ``explain.py``).
* **Time.** ``time`` is the presentation time in seconds (``frame.time``; for frames without a
  timestamp, the frame index divided by the stream's average rate). Frames are in presentation
  order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

from .errors import (BlockSizeError, CorruptVideoError, NoMotionVectorsError, NoVideoStreamError,
                     VideoNotFoundError)
from sciexplain.errors import InputError

__all__ = ["MotionField", "read_motion_vectors", "rasterize_vectors", "rasterize_frames", "decode_frames", "COMPONENTS",
           "FRAME_TYPES", "is_motion_field"]

#: names of the motion components, in the order of the model's channel axis
COMPONENTS = ("dx", "dy")
#: PyAV's picture types by their integer code
FRAME_TYPES = {0: "?", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}
#: H.264 vectors are aligned to 4x4 pixel sub-blocks; rasterisation works on that raster
_SUB = 4

REFERENCE_NOTE = ("FFmpeg exports only the direction of each vector's reference (past/future), not its "
                  "distance: with several reference frames a vector can span two or more frames and is read "
                  "as a displacement per reference step")


def _check_block(block: Any) -> int:
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < _SUB or block % _SUB:
        raise BlockSizeError(f"block must be a positive multiple of {_SUB} pixels (H.264 vectors are aligned "
                             f"to {_SUB}x{_SUB} sub-blocks), e.g. 16 (a macroblock) or 8; got {block!r}")
    return int(block)


def rasterize_vectors(vectors: np.ndarray, width: int, height: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one frame's motion vectors onto a ``block`` x ``block`` pixel grid.

    Parameters
    ----------
    vectors : numpy structured array
        FFmpeg's ``AVMotionVector`` records (fields ``source``, ``w``, ``h``, ``dst_x``,
        ``dst_y``, ``motion_x``, ``motion_y``, ``motion_scale``), as returned by PyAV's
        ``frame.side_data.get("MOTION_VECTORS").to_ndarray()``.
    width, height : int
        Frame size in pixels.
    block : int
        Grid cell size in pixels (a multiple of 4).

    Returns
    -------
    field : numpy.ndarray, shape (n_block_y, n_block_x, 2), float32
        Area-weighted mean forward displacement ``(dx, dy)`` per cell (pixels per reference
        step), NaN where no vector covers the cell.
    coverage : numpy.ndarray, shape (n_block_y, n_block_x), float32
        Share of the cell's in-frame pixels covered by at least one vector.
    """
    field, coverage = rasterize_frames([vectors], width, height, block)
    return field[0], coverage[0]


def rasterize_frames(frames: Sequence[np.ndarray], width: int, height: int,
                     block: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rasterize_vectors` for several frames at once (one pass of array operations).

    Returns ``field`` of shape (n_frames, n_block_y, n_block_x, 2) and ``coverage`` of shape
    (n_frames, n_block_y, n_block_x).
    """
    block = _check_block(block)
    n = len(frames)
    ny, nx = -(-height // block), -(-width // block)
    sy, sx = -(-height // _SUB), -(-width // _SUB)
    cells_per_frame = sy * sx
    count = np.zeros(n * cells_per_frame, np.float64)
    total = np.zeros((2, n * cells_per_frame), np.float64)
    sizes = [len(v) for v in frames]
    if sum(sizes):
        vectors = np.concatenate([v for v in frames if len(v)])
        frame_of = np.repeat(np.arange(n), sizes)
        scale = np.where(vectors["motion_scale"] == 0, 1, vectors["motion_scale"]).astype(np.float64)
        sign = np.where(vectors["source"] > 0, 1.0, -1.0)
        dx = sign * vectors["motion_x"] / scale
        dy = sign * vectors["motion_y"] / scale
        w = vectors["w"].astype(np.int64)
        h = vectors["h"].astype(np.int64)
        x0 = vectors["dst_x"].astype(np.int64) - w // 2
        y0 = vectors["dst_y"].astype(np.int64) - h // 2
        # each vector covers (w/4) x (h/4) sub-blocks of 4x4 pixels: enumerate them all at once
        nw, nh = np.maximum(w // _SUB, 1), np.maximum(h // _SUB, 1)
        n_sub = nw * nh
        owner = np.repeat(np.arange(len(w)), n_sub)
        k = np.arange(n_sub.sum()) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
        px = x0[owner] + (k % nw[owner]) * _SUB
        py = y0[owner] + (k // nw[owner]) * _SUB
        ok = (px >= 0) & (py >= 0) & (px < width) & (py < height)
        owner = owner[ok]
        index = frame_of[owner] * cells_per_frame + (py[ok] // _SUB) * sx + px[ok] // _SUB
        size = n * cells_per_frame
        count = np.bincount(index, minlength=size).astype(np.float64)
        total = np.stack([np.bincount(index, weights=dx[owner], minlength=size),
                          np.bincount(index, weights=dy[owner], minlength=size)])
    count = count.reshape(n, sy, sx)
    total = np.moveaxis(total.reshape(2, n, sy, sx), 0, -1)
    # pixel area of each 4x4 sub-block inside the frame (the last row/column can be partial)
    area_y = np.minimum(_SUB, height - np.arange(sy) * _SUB).astype(np.float64)
    area_x = np.minimum(_SUB, width - np.arange(sx) * _SUB).astype(np.float64)
    area = area_y[:, None] * area_x[None, :]
    per = block // _SUB
    pad_y, pad_x = ny * per - sy, nx * per - sx

    def cells(a: np.ndarray) -> np.ndarray:  # (n, sy, sx, ...) -> (n, ny, nx, ...) sums
        if pad_y or pad_x:
            a = np.pad(a, [(0, 0), (0, pad_y), (0, pad_x)] + [(0, 0)] * (a.ndim - 3))
        return a.reshape(a.shape[0], ny, per, nx, per, *a.shape[3:]).sum(axis=(2, 4))

    weight = cells(area * count)                       # pixel-area x vectors per cell
    weighted = cells(area[None, ..., None] * total)
    covered = cells(area * (count > 0))
    cell_area = cells(area[None])
    with np.errstate(invalid="ignore", divide="ignore"):
        field = np.where(weight[..., None] > 0, weighted / weight[..., None], np.nan)
    coverage = covered / cell_area
    return field.astype(np.float32), coverage.astype(np.float32)


def is_motion_field(data: Any) -> bool:
    """True for a :class:`MotionField` or a non-empty list/tuple of them."""
    if isinstance(data, MotionField):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(d, MotionField) for d in data)


@dataclass(frozen=True)
class MotionField:
    """The motion vectors of one clip on a regular block grid, labelled.

    Attributes
    ----------
    field : xarray.DataArray
        Dims ``("frame", "block_y", "block_x", "component")``, float32 pixels per reference step
        (forward displacement, see the module docstring), NaN where no vector was stored
        (I-frames, intra-coded blocks). Coords: ``frame`` (index in presentation order),
        ``time`` (s), ``frame_type`` (``"I"``, ``"P"``, ``"B"``), ``has_vectors`` (bool) along
        ``frame``; ``y_origin``/``x_origin`` (pixel origin of each block row/column) along
        ``block_y``/``block_x``; ``component`` (``"dx"``, ``"dy"``).
    coverage : xarray.DataArray
        Dims ``("frame", "block_y", "block_x")``: share of each block's pixels covered by vectors.
    block : int
        Block size in pixels.
    width, height : int
        Frame size in pixels.
    fps : float
        The stream's average frame rate.
    path : str or None
        The file the vectors were read from.
    """

    field: xr.DataArray
    coverage: xr.DataArray
    block: int
    width: int
    height: int
    fps: float
    path: str | None = None
    attrs: dict = dc_field(default_factory=dict)

    # -- views -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.field.sizes["frame"])

    @property
    def grid(self) -> tuple[int, int]:
        """(n_block_y, n_block_x)."""
        return int(self.field.sizes["block_y"]), int(self.field.sizes["block_x"])

    @property
    def frame_type(self) -> np.ndarray:
        """Picture type per frame (``"I"``, ``"P"``, ``"B"``)."""
        return np.asarray(self.field.coords["frame_type"].values)

    @property
    def times(self) -> np.ndarray:
        """Presentation time per frame in seconds."""
        return np.asarray(self.field.coords["time"].values, dtype=np.float64)

    @property
    def has_vectors(self) -> np.ndarray:
        """Whether each frame carries motion vectors (False for I-frames)."""
        return np.asarray(self.field.coords["has_vectors"].values, dtype=bool)

    def to_array(self, fill: float = 0.0) -> np.ndarray:
        """The model input of this clip: float32 ``(component, frame, block_y, block_x)``.

        NaN (I-frames, blocks without vectors) becomes ``fill``.
        """
        a = np.asarray(self.field.transpose("component", "frame", "block_y", "block_x").values, np.float32)
        return np.where(np.isnan(a), np.float32(fill), a)

    def select_frames(self, frames: slice | Sequence[int]) -> "MotionField":
        """A new field with the chosen frames (positions), e.g. ``field.select_frames(slice(0, 24))``."""
        return MotionField(self.field.isel(frame=frames), self.coverage.isel(frame=frames), self.block,
                           self.width, self.height, self.fps, self.path, dict(self.attrs))

    def magnitude(self) -> xr.DataArray:
        """Length of the displacement per frame and block (NaN where no vector)."""
        return np.hypot(self.field.sel(component="dx"), self.field.sel(component="dy"))

    def to_netcdf(self, path: str | os.PathLike) -> None:
        """Save ``field`` and ``coverage`` with the clip's metadata as one netCDF data set."""
        ds = xr.Dataset({"field": self.field, "coverage": self.coverage})
        ds.attrs.update({"block": self.block, "width": self.width, "height": self.height, "fps": self.fps,
                         "path": self.path or "none", **{k: str(v) for k, v in self.attrs.items()}})
        ds.to_netcdf(path)

    def __repr__(self) -> str:
        types = "".join(t[0] for t in self.frame_type)
        shown = types if len(types) <= 40 else types[:37] + "..."
        return (f"<MotionField {self.n_frames} frames ({shown}) x {self.grid[0]}x{self.grid[1]} blocks of "
                f"{self.block} px, {self.width}x{self.height} px, {self.fps:g} fps, path={self.path!r}>")


def _open(path: str | os.PathLike):
    import av

    p = Path(path)
    if not p.exists():
        raise VideoNotFoundError(f"no video file at {str(p)!r}: check the path (nothing is read from anywhere "
                                 "else)")
    if not p.is_file():
        raise VideoNotFoundError(f"{str(p)!r} is not a file; pass the path of a video file such as an .mp4")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise CorruptVideoError(f"{str(p)!r} could not be opened as a video container ({type(err).__name__}: "
                                f"{err}); the file is corrupt or truncated (or not a video). "
                                "Re-encode or re-download it (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4).") from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise NoVideoStreamError(f"{str(p)!r} contains no video stream (streams: {', '.join(kinds)}); motion "
                                 "vectors need an H.264/MPEG video stream")
    return container


def read_motion_vectors(path: str | os.PathLike, block: int = 16, *, max_frames: int | None = None,
                        skip_pixels: bool = True, progress: bool = False) -> MotionField:
    """Read the encoder's motion vectors of a video file onto a block grid, without decoding pixels.

    Parameters
    ----------
    path : str or path-like
        A video file (H.264 in MP4/MKV, MPEG-4 part 2, ...). Only this path is read.
    block : int, default 16
        Grid cell size in pixels (a multiple of 4; 16 is the H.264 macroblock).
    max_frames : int, optional
        Stop after this many frames (presentation order).
    skip_pixels : bool, default True
        Tell FFmpeg's decoder to skip the inverse transform of the residuals and the deblocking
        filter (``skip_idct=all``, ``skip_loop_filter=all``). The decoder still parses every
        frame (the vectors are side data of decoding), but reconstructs no correct pixels, which
        nothing here needs; the vectors are identical (tested), reading is faster.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    MotionField

    Raises
    ------
    VideoNotFoundError
        The path does not exist.
    CorruptVideoError
        The file cannot be opened or decoded, or decoding stops before the first frame.
    NoVideoStreamError
        The container has no video stream.
    NoMotionVectorsError
        No frame carries motion vectors (an intra-only clip).
    BlockSizeError
        ``block`` is not a positive multiple of 4.
    """
    import av
    from tqdm.auto import tqdm

    block = _check_block(block)
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise InputError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    container = _open(path)
    fields, coverages, times, types, flags = [], [], [], [], []
    try:
        stream = container.streams.video[0]
        options = {"flags2": "+export_mvs"}
        if skip_pixels:
            options.update(skip_idct="all", skip_loop_filter="all")
        stream.codec_context.options = options
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        total = stream.frames or None
        expected = total
        if expected is None and container.duration and rate:
            expected = int(round(container.duration / 1e6 * rate))  # from the container's header
        if max_frames is not None and total:
            total = min(total, int(max_frames))
        bar = tqdm(total=total, desc="motion vectors", unit="frame", disable=not progress)
        error: Exception | None = None
        try:
            for frame in container.decode(stream):
                side = frame.side_data.get("MOTION_VECTORS")
                vectors = side.to_ndarray() if side is not None else np.zeros(0)
                if not fields:
                    width, height = int(frame.width), int(frame.height)
                elif (int(frame.width), int(frame.height)) != (width, height):
                    raise CorruptVideoError(f"{str(path)!r} changes its frame size mid-stream "
                                            f"({width}x{height} -> {frame.width}x{frame.height}); split the "
                                            "clip where the size changes and read the parts separately")
                fields.append(vectors)
                t = frame.time
                times.append(float(t) if t is not None else (len(times) / rate if rate else np.nan))
                types.append(FRAME_TYPES.get(int(frame.pict_type), "?"))
                flags.append(side is not None)
                bar.update(1)
                if max_frames is not None and len(fields) >= int(max_frames):
                    break
        except av.error.FFmpegError as err:  # truncated or corrupt data in the middle of the stream
            error = err
        finally:
            bar.close()
    finally:
        container.close()
    if not fields:
        raise CorruptVideoError(f"no frame of {str(path)!r} could be decoded"
                                + (f" ({type(error).__name__}: {error})" if error else "")
                                + "; the file is corrupt or truncated. Re-encode or re-download it.")
    if error is not None:
        raise CorruptVideoError(f"decoding {str(path)!r} failed after {len(fields)} frames ({type(error).__name__}: "
                                f"{error}); the file is corrupt or truncated. Re-encode it, or pass "
                                f"max_frames={len(fields)} to read only the intact start.")
    short_read = max_frames is None or len(fields) < int(max_frames)
    if expected and short_read and len(fields) < expected - 1:
        raise CorruptVideoError(f"{str(path)!r} is truncated or corrupt: its header announces {expected} frames, "
                                f"only {len(fields)} could be decoded. Re-encode or re-download it, or pass "
                                f"max_frames={len(fields)} to read only the intact start.")
    if not any(flags):
        raise NoMotionVectorsError(f"{str(path)!r} has {len(fields)} frames, all without motion vectors (frame "
                                   f"types {''.join(sorted(set(types)))}): an intra-only clip carries no motion. "
                                   "Re-encode it with inter frames, e.g. ffmpeg -i in.mp4 -c:v libx264 -g 12 out.mp4")
    n = len(fields)
    chunk = 64  # frames rasterised per pass (bounded memory for large frames)
    parts = [rasterize_frames(fields[i:i + chunk], width, height, block) for i in range(0, n, chunk)]
    fields = [p[0] for p in parts]
    coverages = [p[1] for p in parts]
    ny, nx = fields[0].shape[1:3]
    t = np.asarray(times, np.float64)
    if np.isnan(t).any():
        t = np.arange(n) / (rate or 1.0)
    coords = {"frame": np.arange(n), "time": ("frame", t), "frame_type": ("frame", np.asarray(types, dtype=str)),
              "has_vectors": ("frame", np.asarray(flags, dtype=bool)),
              "block_y": np.arange(ny), "block_x": np.arange(nx),
              "y_origin": ("block_y", np.arange(ny) * block), "x_origin": ("block_x", np.arange(nx) * block)}
    field = xr.DataArray(np.concatenate(fields), dims=("frame", "block_y", "block_x", "component"),
                         coords={**coords, "component": list(COMPONENTS)}, name="motion",
                         attrs={"units": "pixels per reference step (forward displacement of the content)",
                                "sign": "dx > 0: content moves right; dy > 0: content moves down"})
    coverage = xr.DataArray(np.concatenate(coverages), dims=("frame", "block_y", "block_x"), coords=coords,
                            name="coverage")
    attrs = {"reference_note": REFERENCE_NOTE, "source": "H.264 motion vectors exported by FFmpeg (PyAV)"}
    return MotionField(field, coverage, block, width, height, rate, str(path), attrs)


def decode_frames(path: str | os.PathLike, frames: Sequence[int] | None = None, *,
                  gray: bool = False) -> dict[int, np.ndarray]:
    """Decode chosen frames (presentation positions) of a video to RGB (or gray) uint8 arrays.

    Used for figures only; the models never see pixels.
    """
    import av

    wanted = None if frames is None else {int(f) for f in frames}
    out: dict[int, np.ndarray] = {}
    container = _open(path)
    try:
        stream = container.streams.video[0]
        try:
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    out[i] = frame.to_ndarray(format="gray" if gray else "rgb24")
                if wanted is not None and len(out) == len(wanted):
                    break
        except av.error.FFmpegError as err:
            if not out:
                raise CorruptVideoError(f"decoding {str(path)!r} failed ({err}); the file is corrupt or "
                                        "truncated") from err
    finally:
        container.close()
    return out
