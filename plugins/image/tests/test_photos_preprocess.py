"""Tests for photo loading, object boxes and the preprocessing spec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sciexplain_image.photos import PHOTO_BOXES, list_photos, load_photo, photo_box, photo_info
from sciexplain_image.preprocess import (
    Box,
    Preprocess,
    PreparedImage,
    as_rgb_uint8,
    map_box,
    prepare_batch,
)

WARP = Preprocess(size=(224, 224), crop=None, input_size=224)


# ---------------------------------------------------------------- photos


def test_list_photos_has_the_documented_names():
    names = list_photos()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower"):
        assert name in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", list_photos())
def test_load_photo_is_rgb_uint8_of_the_recorded_shape(name):
    photo = load_photo(name)
    assert photo.dtype == np.uint8
    assert photo.ndim == 3 and photo.shape[2] == 3
    assert photo.shape[:2] == photo_info(name)["shape"]
    assert photo.std() > 10  # a real picture, not a blank


def test_colour_photos_are_not_grey():
    for name in ("chelsea", "coffee", "astronaut", "china"):
        photo = load_photo(name).astype(int)
        assert np.abs(photo[..., 0] - photo[..., 2]).mean() > 5


def test_unknown_photo_lists_the_names():
    with pytest.raises(ValueError) as info:
        load_photo("lena")
    assert "chelsea" in str(info.value) and "flower" in str(info.value)
    with pytest.raises(ValueError):
        photo_info("lena")


def test_boxes_exist_for_the_main_photos_and_lie_inside():
    assert set(PHOTO_BOXES) >= {"chelsea", "coffee", "rocket", "astronaut", "motorcycle"}
    for name, box in PHOTO_BOXES.items():
        height, width = photo_info(name)["shape"]
        assert 0 <= box.y0 < box.y1 <= height
        assert 0 <= box.x0 < box.x1 <= width


def test_boxes_cover_their_objects():
    # The rocket is a bright column against a dark sky: the box holds the
    # bright pixels of the central column.
    rocket = load_photo("rocket").astype(float).mean(axis=2)
    box = photo_box("rocket")
    rows = slice(box.y0, 330)  # above the launch-pad floodlights
    inside = rocket[rows, box.x0 : box.x1].mean()
    left = rocket[rows, box.x0 - 40 : box.x0 - 8].mean()
    right = rocket[rows, box.x1 + 8 : box.x1 + 40].mean()
    assert inside > 1.25 * left and inside > 1.25 * right
    shifted = rocket[rows, box.x0 + 40 : box.x1 + 40].mean()  # a box moved off the rocket
    assert inside > 1.25 * shifted
    # The espresso cup is white-rimmed: its box is brighter than the saucer/table around it.
    coffee = load_photo("coffee").astype(float).mean(axis=2)
    cup = photo_box("coffee")
    assert coffee[cup.y0 : cup.y0 + 80, cup.x0 : cup.x1].mean() > coffee[330:400, :].mean() + 40


def test_photo_box_maps_through_preprocessing():
    assert photo_box("chelsea", WARP) == Box(0, 224, 0, 199)
    assert photo_box("coffee", WARP) == map_box(PHOTO_BOXES["coffee"], WARP, (400, 600))
    with pytest.raises(ValueError, match="no object box"):
        photo_box("camera")


# ---------------------------------------------------------------- input conversion


def _pattern(height=20, width=30):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_all_input_kinds_agree():
    rgb = _pattern()
    reference = as_rgb_uint8(rgb)
    assert np.array_equal(reference, rgb)
    assert np.array_equal(as_rgb_uint8(Image.fromarray(rgb)), rgb)
    assert np.array_equal(as_rgb_uint8(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)
    assert np.array_equal(as_rgb_uint8(rgb.astype(np.float64) / 255.0), rgb)
    assert np.array_equal(as_rgb_uint8(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255), rgb)
    assert np.array_equal(as_rgb_uint8(rgb.astype(np.int64)), rgb)


def test_grey_is_replicated():
    grey = _pattern()[..., 0]
    for image in (grey, grey[..., None], Image.fromarray(grey), torch.from_numpy(grey)[None]):
        out = as_rgb_uint8(image)
        assert out.shape == grey.shape + (3,)
        assert all(np.array_equal(out[..., c], grey) for c in range(3))


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # opaque red-ish
    rgba[0, 1, 3] = 0  # transparent -> white
    rgba[0, 2, 3] = 128  # half
    out = as_rgb_uint8(rgba)
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    half = 128 / 255
    assert tuple(out[0, 2]) == tuple(round(v * half + 255 * (1 - half)) for v in (200, 0, 0))
    assert np.array_equal(as_rgb_uint8(Image.fromarray(rgba, mode="RGBA")), out)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros(10, np.uint8), ValueError, "shape"),
        (np.zeros((2, 5, 5, 3), np.uint8), ValueError, "prepare_batch"),
        (np.zeros((5, 5, 2), np.uint8), ValueError, "channels"),
        (np.zeros((3, 5, 5), np.uint8), ValueError, "channel-last"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
        (np.full((5, 5, 3), np.nan), ValueError, "NaN"),
        (np.full((5, 5), np.inf), ValueError, "NaN or infinite"),
        (np.full((5, 5, 3), 2.0), ValueError, r"\[0, 1\]"),
        (np.full((5, 5, 3), -0.1), ValueError, r"\[0, 1\]"),
        (np.full((5, 5), 300, np.int32), ValueError, r"\[0, 255\]"),
        (np.zeros((5, 5), bool), ValueError, "boolean"),
        (torch.zeros(5, 5, 3), ValueError, "channel-first"),
        (torch.zeros(1, 3, 5, 5), ValueError, "prepare_batch"),
        ([[0, 1], [1, 0]], TypeError, "PIL image"),
        ("chelsea.png", TypeError, "PIL image"),
    ],
)
def test_non_images_are_refused_clearly(bad, error, match):
    with pytest.raises(error, match=match):
        as_rgb_uint8(bad)
    with pytest.raises(error, match=match):
        Preprocess()(bad)


def test_16_bit_pil_images_are_refused():
    with pytest.raises(ValueError, match="8-bit"):
        as_rgb_uint8(Image.new("I;16", (5, 5)))


# ---------------------------------------------------------------- the spec


def test_spec_validation():
    with pytest.raises(ValueError, match="channels"):
        Preprocess(channels="CMYK")
    with pytest.raises(ValueError, match="resample"):
        Preprocess(resample="area")
    with pytest.raises(ValueError, match="positive"):
        Preprocess(size=0)
    with pytest.raises(ValueError, match="pair"):
        Preprocess(crop=(224, 224, 3))
    with pytest.raises(ValueError, match="non-zero"):
        Preprocess(scale=0.0)
    with pytest.raises(ValueError, match="channel"):
        Preprocess(mean=(1.0, 2.0))
    with pytest.raises(ValueError, match="channel"):
        Preprocess(channels="L", mean=(1.0, 2.0, 3.0))
    assert Preprocess(size=[300, 200]).size == (300, 200)
    assert Preprocess() == Preprocess(256, 224, 127.0, 128.0)


def test_default_spec_resizes_shorter_side_and_centre_crops():
    image = _pattern(300, 451)
    x, prepared = Preprocess()(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert isinstance(prepared, PreparedImage)
    assert prepared.array.shape == (224, 224, 3) and prepared.array.dtype == np.uint8
    assert prepared.geometry.resized_shape == (256, 385)
    assert prepared.geometry.crop_offset == (16, 80)
    assert prepared.original_shape == (300, 451)
    assert not prepared.array.flags.writeable


def test_tensor_is_exactly_the_scaled_prepared_array():
    spec = Preprocess(mean=(120.0, 110.0, 100.0), scale=(60.0, 50.0, 40.0))
    x, prepared = spec(load_photo("chelsea"))
    expected = (prepared.array.astype(np.float32) - np.float32([120, 110, 100])) / np.float32([60, 50, 40])
    assert torch.equal(x[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
    back = spec.denormalize(x)[0]
    assert np.allclose(back, prepared.array, atol=1e-3)


def test_identity_spec_keeps_pixels():
    image = _pattern(28, 28)
    x, prepared = Preprocess(size=None, crop=None, mean=0.0, scale=255.0)(image)
    assert np.array_equal(prepared.array, image)
    assert torch.allclose(x[0], torch.from_numpy(image).permute(2, 0, 1).float() / 255)


def test_bgr_and_grey_channels():
    image = _pattern(10, 12)
    x_rgb, _ = Preprocess(size=None, crop=None)(image)
    x_bgr, prep_bgr = Preprocess(size=None, crop=None, channels="BGR")(image)
    assert torch.equal(x_bgr[0], x_rgb[0].flip(0))
    assert np.array_equal(prep_bgr.array, image)  # display array stays RGB
    grey = image[..., 1]
    x_l, prep_l = Preprocess(size=None, crop=None, channels="L", mean=0.0, scale=1.0)(grey)
    assert x_l.shape == (1, 1, 10, 12)
    assert torch.equal(x_l[0, 0], torch.from_numpy(grey).float())
    assert np.array_equal(prep_l.array[..., 2], grey)


def test_fixed_input_size_is_enforced():
    spec = Preprocess(size=None, crop=None, input_size=224)
    with pytest.raises(ValueError, match="needs a 224x224 input"):
        spec(_pattern(300, 451))
    x, _ = spec(_pattern(224, 224))
    assert x.shape == (1, 3, 224, 224)


def test_crop_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        Preprocess(size=None, crop=224)(_pattern(100, 300))


def test_warp_spec_changes_the_aspect_ratio():
    x, prepared = WARP(_pattern(300, 451))
    assert x.shape == (1, 3, 224, 224)
    assert prepared.geometry.resized_shape == (224, 224)


def test_resample_method_matters():
    image = load_photo("coffee")
    a = Preprocess(resample="bilinear").prepare(image).array
    b = Preprocess(resample="nearest").prepare(image).array
    assert not np.array_equal(a, b)


def test_to_dict_is_netcdf_safe_and_round_trips(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("netCDF4")
    spec = Preprocess(size=(224, 224), crop=None, mean=(1.0, 2.0, 3.0), input_size=224)
    _, prepared = spec(_pattern(40, 50))
    attrs = prepared.to_dict()
    for value in attrs.values():
        assert isinstance(value, (str, int, float, list))
        if isinstance(value, list):
            assert all(isinstance(v, (int, float)) for v in value)
    path = tmp_path / "a.nc"
    xr.DataArray(np.zeros(2), dims=["x"], attrs=attrs).to_netcdf(path)
    loaded = xr.open_dataarray(path)
    spec_attrs = {
        key[len("preprocess_"):]: value
        for key, value in loaded.attrs.items()
        if key[len("preprocess_"):] in spec.to_dict()
    }
    loaded.close()
    assert Preprocess.from_dict(spec_attrs) == spec
    assert Preprocess.from_dict(Preprocess().to_dict()) == Preprocess()
    with pytest.raises(ValueError, match="unknown"):
        Preprocess.from_dict({"sizes": 3})


def test_prepare_batch():
    images = [load_photo("chelsea"), load_photo("coffee")]
    x, prepared = prepare_batch(images, WARP)
    assert x.shape == (2, 3, 224, 224)
    assert torch.equal(x[1:], WARP(images[1])[0])
    assert [p.original_shape for p in prepared] == [(300, 451), (400, 600)]
    with pytest.raises(ValueError, match="different sizes"):
        prepare_batch(images, Preprocess(size=None, crop=None))
    with pytest.raises(ValueError, match="no images"):
        prepare_batch([], WARP)
    x4, _ = prepare_batch(torch.rand(3, 3, 16, 16), Preprocess(size=None, crop=None))
    assert x4.shape == (3, 3, 16, 16)


# ---------------------------------------------------------------- box mapping


def test_map_box_identity_and_errors():
    spec = Preprocess(size=None, crop=None)
    assert map_box((3, 10, 4, 12), spec, (20, 30)) == Box(3, 10, 4, 12)
    with pytest.raises(ValueError, match="not inside"):
        map_box((3, 10, 4, 40), spec, (20, 30))
    with pytest.raises(ValueError, match="not inside"):
        map_box((10, 3, 4, 12), spec, (20, 30))
    with pytest.raises(ValueError, match="cropped away"):
        map_box((0, 10, 0, 10), Preprocess(size=None, crop=20), (100, 100))


specs = st.builds(
    Preprocess,
    size=st.one_of(
        st.none(),
        st.integers(16, 80),
        st.tuples(st.integers(16, 80), st.integers(16, 80)),
    ),
    crop=st.one_of(st.none(), st.integers(8, 16)),
    resample=st.sampled_from(["bilinear", "nearest", "bicubic"]),
)


@settings(max_examples=60, deadline=None)
@given(
    spec=specs,
    height=st.integers(16, 90),
    width=st.integers(16, 90),
    fractions=st.tuples(*(st.floats(0.0, 1.0) for _ in range(4))),
)
def test_mapped_box_matches_where_the_pixels_go(spec, height, width, fractions):
    fy0, fy1, fx0, fx1 = fractions
    y0, y1 = sorted((int(fy0 * (height - 4)), int(fy1 * (height - 4)) + 4))
    x0, x1 = sorted((int(fx0 * (width - 4)), int(fx1 * (width - 4)) + 4))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[y0:y1, x0:x1] = 255
    try:
        prepared = spec.prepare(image)
    except ValueError:
        return  # crop larger than this resized image: covered elsewhere
    out_h, out_w = prepared.shape
    bright = prepared.array[..., 0] >= 128
    rows, cols = np.nonzero(bright)
    # the resampling filter blurs edges by about one source pixel, and edges are rounded
    sy = prepared.geometry.resized_shape[0] / height
    sx = prepared.geometry.resized_shape[1] / width
    margin_y, margin_x = math.ceil(2 * max(sy, 1.0)) + 1, math.ceil(2 * max(sx, 1.0)) + 1
    try:
        box = prepared.map_box((y0, y1, x0, x1))
    except ValueError:
        # claimed "cropped away": bright pixels may only be blur at the border
        near_border = (
            (rows < margin_y) | (rows >= out_h - margin_y) | (cols < margin_x) | (cols >= out_w - margin_x)
        )
        assert near_border.all()
        return
    assert box == map_box((y0, y1, x0, x1), spec, (height, width))
    assert 0 <= box.y0 < box.y1 <= out_h and 0 <= box.x0 < box.x1 <= out_w
    # every clearly bright pixel is inside the mapped box, give or take the margin
    assert np.all(rows >= box.y0 - margin_y) and np.all(rows < box.y1 + margin_y)
    assert np.all(cols >= box.x0 - margin_x) and np.all(cols < box.x1 + margin_x)
    # and the middle of the mapped box is bright when the box is big enough
    cy, cx = (box.y0 + box.y1) // 2, (box.x0 + box.x1) // 2
    if box.y1 - box.y0 >= 6 and box.x1 - box.x0 >= 6:
        assert prepared.array[cy, cx, 0] > 128
