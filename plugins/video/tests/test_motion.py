"""Reading motion vectors: sign convention, rasterisation of variable block sizes, frame types/times."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st

import sciexplain_video as sv
from sciexplain_video.motion import rasterize_vectors

MV_DTYPE = np.dtype([("source", "i4"), ("w", "u1"), ("h", "u1"), ("src_x", "i2"), ("src_y", "i2"),
                     ("dst_x", "i2"), ("dst_y", "i2"), ("flags", "u8"), ("motion_x", "i4"),
                     ("motion_y", "i4"), ("motion_scale", "u2")])


def _raw_vectors(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"flags2": "+export_mvs"}
        out = []
        for frame in c.decode(s):
            sd = frame.side_data.get("MOTION_VECTORS")
            out.append((int(frame.pict_type), None if sd is None else sd.to_ndarray()))
        return out


def test_sign_and_exact_displacement_on_known_motion(square_clip):
    """DATA.md: FFmpeg stores src = dst + motion/scale; the field holds the content's displacement."""
    raw = _raw_vectors(square_clip)
    ffmpeg_signs = []
    for ptype, a in raw[1:]:
        inner = a[(a["dst_y"] >= 16) & (a["dst_y"] < 32) & (a["w"] == 16)]
        moving = inner[inner["motion_x"] != 0]
        ffmpeg_signs += list(moving["motion_x"] / moving["motion_scale"])
        assert (a["source"] == -1).all()  # bf=0: every vector references the past
    assert ffmpeg_signs and np.median(ffmpeg_signs) == -4.0  # FFmpeg's own sign: minus the motion
    mf = sv.read_motion_vectors(square_clip)
    f = mf.field.values
    for t in range(1, mf.n_frames):
        x_new = 8 + 4 * t
        # the grid block (row 1) whose 16 pixels lie entirely inside the square at frame t
        inside = [bx for bx in range(4) if bx * 16 >= x_new and bx * 16 + 16 <= x_new + 16]
        for bx in inside:
            assert f[t, 1, bx, 0] == pytest.approx(4.0)
            assert f[t, 1, bx, 1] == pytest.approx(0.0)
    still = f[1:, 3, :, :]  # the bottom row shows only the still background
    assert np.nanmax(np.abs(still)) == 0.0


def test_frame_types_times_and_i_frames(fields):
    mf = fields[0]
    types = mf.frame_type
    assert types[0] == "I" and types[12] == "I"  # g=12
    assert set(types) == {"I", "P"}  # bf=0
    assert not mf.has_vectors[0] and not mf.has_vectors[12] and mf.has_vectors[1:12].all()
    # I-frames are flagged and NaN, not zeros that look like stillness
    assert np.isnan(mf.field.values[0]).all() and np.isnan(mf.field.values[12]).all()
    assert (mf.coverage.values[0] == 0).all()
    np.testing.assert_allclose(mf.times, np.arange(24) / 12.0, atol=1e-9)
    assert mf.fps == pytest.approx(12.0)
    assert mf.field.coords["x_origin"].values.tolist() == [0, 16, 32, 48]
    assert mf.to_array().shape == (2, 24, 4, 4) and np.isfinite(mf.to_array()).all()


def test_variable_block_sizes_are_present(fields):
    sizes = set()
    for p in [f.path for f in fields]:
        for _, a in _raw_vectors(p):
            if a is not None:
                sizes |= set(zip(a["w"].tolist(), a["h"].tolist()))
    assert (16, 16) in sizes and len(sizes) >= 2, sizes


def _reference(vectors, width, height, block):
    """Pixel-by-pixel reference of the documented rule (independent of the 4x4 raster)."""
    total = np.zeros((height, width, 2))
    count = np.zeros((height, width))
    for v in vectors:
        s = v["motion_scale"] or 1
        sign = 1.0 if v["source"] > 0 else -1.0
        d = np.array([sign * v["motion_x"] / s, sign * v["motion_y"] / s])
        x0, y0 = int(v["dst_x"]) - int(v["w"]) // 2, int(v["dst_y"]) - int(v["h"]) // 2
        for y in range(max(y0, 0), min(y0 + int(v["h"]), height)):
            for x in range(max(x0, 0), min(x0 + int(v["w"]), width)):
                total[y, x] += d
                count[y, x] += 1
    ny, nx = -(-height // block), -(-width // block)
    field = np.full((ny, nx, 2), np.nan)
    cov = np.zeros((ny, nx))
    for by in range(ny):
        for bx in range(nx):
            sl = (slice(by * block, (by + 1) * block), slice(bx * block, (bx + 1) * block))
            c = count[sl]
            if c.sum() > 0:
                field[by, bx] = total[sl].sum(axis=(0, 1)) / c.sum()
            cov[by, bx] = (c > 0).mean()
    return field, cov


@st.composite
def _frames(draw):
    width = draw(st.integers(2, 10)) * 8
    height = draw(st.integers(2, 10)) * 8
    n = draw(st.integers(0, 25))
    recs = np.zeros(n, MV_DTYPE)
    for i in range(n):
        w = draw(st.sampled_from([4, 8, 16]))
        h = draw(st.sampled_from([4, 8, 16]))
        x0 = draw(st.integers(0, width // 4)) * 4 - (4 if draw(st.booleans()) and w == 16 else 0)
        y0 = draw(st.integers(0, height // 4)) * 4
        recs[i] = (draw(st.sampled_from([-1, 1])), w, h, 0, 0, x0 + w // 2, y0 + h // 2, 0,
                   draw(st.integers(-64, 64)), draw(st.integers(-64, 64)), draw(st.sampled_from([1, 2, 4])))
    block = draw(st.sampled_from([4, 8, 16]))
    return recs, width, height, block


@settings(max_examples=60, deadline=None)
@given(_frames())
def test_rasterisation_matches_pixel_reference(case):
    recs, width, height, block = case
    field, cov = rasterize_vectors(recs, width, height, block)
    ref_field, ref_cov = _reference(recs, width, height, block)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(field), np.isnan(ref_field))
    np.testing.assert_allclose(field, ref_field, atol=1e-5, equal_nan=True)


def test_block_8_and_16_agree_by_area(fields):
    p = fields[1].path
    f16 = sv.read_motion_vectors(p, block=16)
    f8 = sv.read_motion_vectors(p, block=8)
    assert f8.grid == (8, 8) and f8.block == 8
    a8 = f8.field.values[1:12]
    pooled = a8.reshape(11, 4, 2, 4, 2, 2).mean(axis=(2, 4))  # full coverage: equal areas
    np.testing.assert_allclose(pooled, f16.field.values[1:12], atol=1e-5)


def test_netcdf_round_trip(fields, tmp_path):
    mf = fields[0]
    mf.to_netcdf(tmp_path / "field.nc")
    back = xr.open_dataset(tmp_path / "field.nc")
    np.testing.assert_array_equal(back["field"].values, mf.field.values)
    assert back["field"].coords["frame_type"].values.tolist() == mf.frame_type.tolist()
    assert int(back.attrs["block"]) == 16
    back.close()


def test_select_frames_and_repr(fields):
    sub = fields[0].select_frames(slice(0, 6))
    assert sub.n_frames == 6 and "IPPPPP" in repr(sub)


@pytest.fixture(scope="module")
def real_paths():
    try:
        return {name: sv.real_clip_path(name) for name in sv.REAL_CLIPS}
    except sv.SkvideoDataMissingError as err:
        pytest.skip(str(err))


def test_real_clip_carphone(real_paths):
    mf = sv.read_motion_vectors(real_paths["carphone"])
    assert mf.n_frames == 120 and mf.grid == (9, 11) and (mf.width, mf.height) == (176, 144)
    assert {"I", "P", "B"} <= set(mf.frame_type)
    assert np.all(np.diff(mf.times) > 0)
    # B-frames have vectors from the future too (source +1): both read with the forward sign
    assert mf.has_vectors[mf.frame_type == "B"].all()
    assert np.nanmax(np.abs(mf.field.values)) > 1


def test_real_clip_bikes_partial_read(real_paths):
    mf = sv.read_motion_vectors(real_paths["bikes"], max_frames=30)
    assert mf.n_frames == 30 and mf.grid == (17, 40) and mf.fps == pytest.approx(25)
    assert "reference" in mf.attrs["reference_note"]


def test_real_clip_path_unknown():
    with pytest.raises(ValueError, match="choose one of"):
        sv.real_clip_path("hmdb51")


def test_skipping_pixel_reconstruction_keeps_the_vectors(fields, real_paths):
    for path in (fields[2].path, real_paths["carphone"]):
        fast = sv.read_motion_vectors(path, max_frames=40)
        full = sv.read_motion_vectors(path, max_frames=40, skip_pixels=False)
        np.testing.assert_array_equal(fast.field.values, full.field.values)
        np.testing.assert_array_equal(fast.coverage.values, full.coverage.values)
        assert fast.frame_type.tolist() == full.frame_type.tolist()


def test_multiple_reference_frames_give_vectors_spanning_several_frames(tmp_path):
    """DATA.md: with refs=3 some vectors span 2-3 frames; FFmpeg does not say which (documented caveat)."""
    rng = np.random.default_rng(5)
    bg = (rng.random((64, 64)) * 160 + 40).astype(np.uint8)
    tex = (rng.random((16, 16)) * 255).astype(np.uint8)
    frames = []
    for t in range(10):
        img = bg.copy()
        img[16:32, 8 + 4 * t:24 + 4 * t] = tex
        frames.append(img)
    found = {}
    for refs in ("1", "3"):
        p = sv.encode_clip(np.stack(frames), tmp_path / f"refs{refs}.mp4", options={"bf": "0", "g": "12", "refs": refs})
        dx = sv.read_motion_vectors(p, block=4).field.values[1:, 4:8, :, 0]
        found[refs] = set(np.round(dx[~np.isnan(dx)], 2).tolist())
    assert max(found["1"]) < 5  # one frame back: the true 4 px (and sub-pixel fits at the edges)
    assert {8.0, 12.0} & found["3"]  # two or three frames back: 8 or 12 px for the same motion
