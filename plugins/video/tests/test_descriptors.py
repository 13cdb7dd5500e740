"""HOF/MBH descriptors against a loop reference; provenance conserves relevance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sciexplain_video.descriptors import DescriptorSpec, compute_descriptors


def _reference_hist(field, spec):
    """Plain loops over blocks: the documented votes."""
    T, Y, X, _ = field.shape
    B = spec.bins
    nt, ny, nx = -(-T // spec.cell_frames), -(-Y // spec.cell_blocks), -(-X // spec.cell_blocks)
    hist = np.zeros((nt, ny, nx, 3 * B))
    valid = ~np.isnan(field).any(-1)
    z = np.where(valid[..., None], field, 0.0)

    def grad(a, t, y, x, axis):  # central differences, one-sided at the edges (numpy.gradient)
        n = a.shape[axis]
        idx = [t, y, x]
        i = idx[axis]
        if n == 1:
            return 0.0
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        a_lo, a_hi = list(idx), list(idx)
        a_lo[axis], a_hi[axis] = lo, hi
        return (a[tuple(a_hi)] - a[tuple(a_lo)]) / (hi - lo)

    def vote(k, gx, gy, cell):
        length = np.hypot(gx, gy)
        if length > 0:
            b = int(np.floor(np.mod(np.arctan2(gy, gx), 2 * np.pi) / (2 * np.pi / B))) % B
            hist[cell][k * B + b] += length

    for t in range(T):
        for y in range(Y):
            for x in range(X):
                if not valid[t, y, x]:
                    continue
                cell = (t // spec.cell_frames, y // spec.cell_blocks, x // spec.cell_blocks)
                vote(0, z[t, y, x, 0], z[t, y, x, 1], cell)
                for c in range(2):
                    vote(1 + c, grad(z[..., c], t, y, x, 2), grad(z[..., c], t, y, x, 1), cell)
    return hist.reshape(-1, 3 * B)


@st.composite
def _fields(draw):
    T, Y, X = draw(st.integers(1, 7)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    f = rng.integers(-4, 5, size=(T, Y, X, 2)).astype(np.float64) * draw(st.sampled_from([0.25, 1.0]))
    f[rng.random((T, Y, X)) < draw(st.sampled_from([0.0, 0.2]))] = np.nan  # intra blocks
    if draw(st.booleans()):
        f[0] = np.nan  # an I-frame
    spec = DescriptorSpec(draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.sampled_from([4, 8])))
    return f, spec


@settings(max_examples=40, deadline=None)
@given(_fields())
def test_histograms_match_loop_reference_and_relevance_is_conserved(case):
    f, spec = case
    d = compute_descriptors(f, spec)
    ref = _reference_hist(f, spec)
    np.testing.assert_allclose(d.histograms(), ref, atol=1e-9)
    np.testing.assert_allclose(d.values, np.sqrt(ref / spec.cell_volume), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(0)
    r = rng.normal(size=d.values.shape)
    blocks, unassigned = d.to_blocks(r)
    assert blocks.sum() + unassigned == pytest.approx(r.sum(), abs=1e-9)
    invalid = np.isnan(f).any(-1)
    assert (blocks[invalid] == 0).all()  # blocks without vectors (and I-frames) never get relevance
    # a descriptor value's relevance goes exactly to the blocks that voted, by their votes
    n0 = int(np.flatnonzero(d.histograms().ravel() > 0)[0]) if (d.histograms() > 0).any() else None
    if n0 is not None:
        one = np.zeros(d.values.size)
        one[n0] = 1.0
        b1, u1 = d.to_blocks(one)
        sel = d.rows == n0
        expect = np.zeros(b1.size)
        np.add.at(expect, d.cols[sel], d.votes[sel] / d.votes[sel].sum())
        np.testing.assert_allclose(b1.ravel(), expect, atol=1e-12)
        assert u1 == 0.0


def test_empty_bins_spread_uniformly_and_i_frame_cells_unassigned():
    f = np.zeros((6, 2, 2, 2))
    f[:3] = np.nan  # the first cell's frames are all I-frames / without vectors
    f[3:, 0, 0] = (2.0, 0.0)  # one moving block in the second cell
    spec = DescriptorSpec(3, 2, 4)
    d = compute_descriptors(f, spec)
    assert d.n == 2
    r = np.ones(d.values.shape)
    blocks, unassigned = d.to_blocks(r)
    assert unassigned == pytest.approx(d.values.shape[1])  # the whole first cell's relevance
    assert blocks[:3].sum() == 0
    assert blocks.sum() + unassigned == pytest.approx(r.sum())
    # HOF bin 0 (motion to the right) came from block (0, 0) only
    one = np.zeros(d.values.shape)
    one[1, 0] = 1.0
    b, _ = d.to_blocks(one)
    assert b[3:, 0, 0].sum() == pytest.approx(1.0) and b.sum() == pytest.approx(1.0)
    # an empty bin (HOF bin 2: upwards... nobody voted) goes uniformly to the 12 valid blocks
    empty = np.zeros(d.values.shape)
    empty[1, 2] = 1.0
    b, _ = d.to_blocks(empty)
    np.testing.assert_allclose(b[3:], np.full((3, 2, 2), 1 / 12))


def test_spec_validation():
    with pytest.raises(ValueError, match="positive integer"):
        DescriptorSpec(cell_frames=0)
    assert DescriptorSpec().dim == 24 and len(DescriptorSpec().feature_names()) == 24
