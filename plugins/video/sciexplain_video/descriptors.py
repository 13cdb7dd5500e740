"""Local motion descriptors (HOF/MBH-style histograms) over spatio-temporal cells, with provenance.

The descriptors are those of the seeds' compressed-domain action classifier (Samek et al. 2017,
Sec. 5.3, after Kantorov & Laptev 2014), computed on the block grid of a :class:`MotionField`:

* the grid is tiled into cells of ``cell_frames`` frames x ``cell_blocks`` x ``cell_blocks``
  blocks (cells at the end or the edges may be smaller);
* every block with a motion vector (not an I-frame, not intra-coded) votes in three
  ``bins``-bin orientation histograms of its cell:
  **HOF**: the direction of its displacement ``(dx, dy)``, weighted by the displacement's length;
  **MBHx** / **MBHy**: the direction of the spatial gradient (central differences on the block
  grid of the same frame) of ``dx`` / ``dy``, weighted by the gradient's length;
* a descriptor is ``sqrt(histogram / cell_volume)`` (``cell_volume`` = the number of blocks of a
  full cell), ``D = 3 * bins`` values.

Provenance: :class:`Descriptors` keeps, for every descriptor value ``(n, d)``, which blocks
``(frame, block_y, block_x)`` voted into it and with what weight (their vote over the bin's
total). :meth:`Descriptors.to_blocks` spreads relevance of descriptor values over those blocks
in proportion to their votes, so the total is conserved. A bin no block voted into (an empty
histogram bin) has its relevance spread uniformly over the cell's blocks that carry vectors
(they are what made the bin empty); a cell with no such block (all I-frames) keeps its
relevance unassigned, which :meth:`to_blocks` returns separately. Blocks without vectors and
I-frames never vote, so they never receive relevance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sciexplain.errors import InputError

__all__ = ["DescriptorSpec", "Descriptors", "compute_descriptors"]


@dataclass(frozen=True)
class DescriptorSpec:
    """How descriptors are computed: cell size in frames and blocks, orientation bins."""

    cell_frames: int = 3
    cell_blocks: int = 2
    bins: int = 8

    def __post_init__(self) -> None:
        for name in ("cell_frames", "cell_blocks", "bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")

    @property
    def dim(self) -> int:
        """Descriptor length: HOF, MBHx and MBHy histograms of ``bins`` each."""
        return 3 * self.bins

    @property
    def cell_volume(self) -> int:
        return self.cell_frames * self.cell_blocks * self.cell_blocks

    def feature_names(self) -> list[str]:
        return [f"{kind}[{b}]" for kind in ("HOF", "MBHx", "MBHy") for b in range(self.bins)]

    def to_dict(self) -> dict:
        return {k: int(v) for k, v in asdict(self).items()}


@dataclass
class Descriptors:
    """The descriptors of one clip and where each of their values came from.

    Attributes
    ----------
    values : numpy.ndarray, shape (n_descriptors, D), float32
    cells : numpy.ndarray, shape (n_descriptors, 3), int
        First frame, block row and block column of each descriptor's cell.
    rows, cols, votes : numpy.ndarray
        Provenance triplets: descriptor value ``rows`` (``n * D + d``) received ``votes`` from the
        block with flat index ``cols`` (``(frame * n_block_y + block_y) * n_block_x + block_x``).
    weights : numpy.ndarray
        Share of each triplet in its descriptor value (votes / bin total; uniform for empty bins).
    shape : (n_frames, n_block_y, n_block_x)
    spec : DescriptorSpec
    """

    values: np.ndarray
    cells: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    votes: np.ndarray
    weights: np.ndarray
    shape: tuple[int, int, int]
    spec: DescriptorSpec

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def histograms(self) -> np.ndarray:
        """The raw histograms (sum of votes per descriptor value), shape (n_descriptors, D)."""
        h = np.zeros(self.values.size, np.float64)
        np.add.at(h, self.rows, self.votes)
        return h.reshape(self.values.shape)

    def to_blocks(self, relevance: Any) -> tuple[np.ndarray, float]:
        """Spread relevance of descriptor values over the blocks they were computed from.

        Parameters
        ----------
        relevance : array-like, shape (n_descriptors, D)

        Returns
        -------
        blocks : numpy.ndarray, shape (n_frames, n_block_y, n_block_x), float64
        unassigned : float
            Relevance of descriptor values no block carrying vectors contributed to (cells of
            I-frames only); ``blocks.sum() + unassigned == relevance.sum()``.
        """
        r = np.asarray(relevance, dtype=np.float64).reshape(-1)
        if r.size != self.values.size:
            raise InputError(f"relevance has {r.size} values, the descriptors {self.values.size} "
                             f"({self.values.shape})")
        out = np.zeros(int(np.prod(self.shape)), np.float64)
        np.add.at(out, self.cols, r[self.rows] * self.weights)
        assigned = np.zeros(r.size, bool)
        assigned[self.rows] = True
        return out.reshape(self.shape), float(r[~assigned].sum())


def _orientation_votes(gx: np.ndarray, gy: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin index (0..bins-1, counter-clockwise from +x in image coordinates) and length."""
    angle = np.mod(np.arctan2(gy, gx), 2 * np.pi)
    index = np.floor(angle / (2 * np.pi / bins)).astype(np.int64) % bins
    return index, np.hypot(gx, gy)


def compute_descriptors(field: np.ndarray, spec: DescriptorSpec | None = None) -> Descriptors:
    """HOF/MBH descriptors of a motion field with their provenance.

    Parameters
    ----------
    field : numpy.ndarray, shape (n_frames, n_block_y, n_block_x, 2)
        Displacements ``(dx, dy)``, NaN where no vector (as in :attr:`MotionField.field`).
    spec : DescriptorSpec, optional

    Returns
    -------
    Descriptors
    """
    spec = spec or DescriptorSpec()
    f = np.asarray(field, dtype=np.float64)
    if f.ndim != 4 or f.shape[-1] != 2:
        raise InputError(f"field must have shape (frame, block_y, block_x, 2), got {f.shape}")
    T, Y, X, _ = f.shape
    valid = ~np.isnan(f).any(axis=-1)
    z = np.where(valid[..., None], f, 0.0)
    ct, cb, B, D = spec.cell_frames, spec.cell_blocks, spec.bins, spec.dim
    nt, ny, nx = -(-T // ct), -(-Y // cb), -(-X // cb)
    t, y, x = np.meshgrid(np.arange(T), np.arange(Y), np.arange(X), indexing="ij")
    cell = ((t // ct) * ny + y // cb) * nx + x // cb
    flat = (t * Y + y) * X + x
    channels = [_orientation_votes(z[..., 0], z[..., 1], B)]
    for comp in range(2):
        if Y > 1 and X > 1:
            gy, gx = np.gradient(z[..., comp], axis=(1, 2))
        else:
            gy = np.gradient(z[..., comp], axis=1) if Y > 1 else np.zeros((T, Y, X))
            gx = np.gradient(z[..., comp], axis=2) if X > 1 else np.zeros((T, Y, X))
        channels.append(_orientation_votes(gx, gy, B))
    rows, cols, votes = [], [], []
    for k, (index, length) in enumerate(channels):
        keep = valid & (length > 0)
        rows.append(cell[keep] * D + k * B + index[keep])
        cols.append(flat[keep])
        votes.append(length[keep])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    votes = np.concatenate(votes)
    n = nt * ny * nx
    hist = np.zeros(n * D, np.float64)
    np.add.at(hist, rows, votes)
    weights = votes / hist[rows]
    # empty bins: spread uniformly over the cell's blocks that carry vectors
    cell_valid = cell[valid]
    flat_valid = flat[valid]
    n_valid = np.bincount(cell_valid, minlength=n)
    empty = np.flatnonzero(hist == 0)
    empty_cell = empty // D
    has = n_valid[empty_cell] > 0
    empty, empty_cell = empty[has], empty_cell[has]
    if empty.size:
        order = np.argsort(cell_valid, kind="stable")
        starts = np.concatenate([[0], np.cumsum(n_valid)])
        counts = n_valid[empty_cell]
        rep_rows = np.repeat(empty, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rep_cols = flat_valid[order[np.repeat(starts[empty_cell], counts) + offsets]]
        rows = np.concatenate([rows, rep_rows])
        cols = np.concatenate([cols, rep_cols])
        votes = np.concatenate([votes, np.zeros(rep_rows.size)])
        weights = np.concatenate([weights, 1.0 / np.repeat(counts, counts)])
    values = np.sqrt(hist / spec.cell_volume).reshape(n, D).astype(np.float32)
    ct_, cy_, cx_ = np.meshgrid(np.arange(nt) * ct, np.arange(ny) * cb, np.arange(nx) * cb, indexing="ij")
    cells = np.stack([ct_.ravel(), cy_.ravel(), cx_.ravel()], axis=1)
    return Descriptors(values=values, cells=cells, rows=rows, cols=cols, votes=votes, weights=weights,
                       shape=(T, Y, X), spec=spec)
