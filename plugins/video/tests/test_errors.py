"""Bad input gets a clear error (a SciexplainError with the natural builtin base) and nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain as sx
import sciexplain_video as sv
from sciexplain.errors import SciexplainError



def params_snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_params(model, snapshot) -> bool:
    now = model.state_dict()
    return set(now) == set(snapshot) and all(torch.equal(now[k], snapshot[k]) for k in now)


def test_missing_file(tmp_path):
    with pytest.raises(sv.VideoNotFoundError, match="no video file") as info:
        sv.read_motion_vectors(tmp_path / "nope.mp4")
    assert isinstance(info.value, (SciexplainError, FileNotFoundError))


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a file"):
        sv.read_motion_vectors(tmp_path)


def test_corrupt_file(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(sv.CorruptVideoError, match="corrupt") as info:
        sv.read_motion_vectors(p)
    assert isinstance(info.value, (SciexplainError, ValueError))


def test_truncated_file(clips, tmp_path):
    data = clips[0][0].read_bytes()
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[: len(data) // 2])  # the mp4 index (moov) is written at the end
    with pytest.raises(sv.CorruptVideoError, match="corrupt or truncated"):
        sv.read_motion_vectors(p)


def test_no_video_stream(tmp_path):
    import av

    p = tmp_path / "tone.wav"
    with av.open(str(p), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        t = np.arange(800) / 8000
        frame = av.AudioFrame.from_ndarray((np.sin(2 * np.pi * 440 * t) * 1e4).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in s.encode(frame):
            out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    with pytest.raises(sv.NoVideoStreamError, match="no video stream"):
        sv.read_motion_vectors(p)


def test_only_i_frames(tmp_path):
    frames, _ = sv.render_clip("updown", 1, n_frames=6)
    p = sv.encode_clip(frames, tmp_path / "intra.mp4", options={"g": "1", "bf": "0"})
    with pytest.raises(sv.NoMotionVectorsError, match="intra-only"):
        sv.read_motion_vectors(p)


@pytest.mark.parametrize("block", [0, 6, 3.5, True, -16])
def test_bad_block(block, clips):
    with pytest.raises(sv.BlockSizeError, match="multiple of 4"):
        sv.read_motion_vectors(clips[0][0], block=block)


def test_block_size_the_model_was_not_trained_on(cnn, clips):
    f8 = sv.read_motion_vectors(clips[0][0], block=8)
    snap = params_snapshot(cnn)
    with pytest.raises(sv.BlockSizeError, match="block=16") as info:
        sx.explain(cnn, f8)
    assert isinstance(info.value, ValueError)
    assert same_params(cnn, snap)


def test_clip_too_short(cnn, fields):
    short = fields[0].select_frames(slice(0, 2))
    with pytest.raises(sv.ClipTooShortError, match="at least 3"):
        sv.explain_motion(cnn, short)


def test_fields_that_differ(cnn, fields):
    with pytest.raises(sv.FieldMismatchError, match="frames"):
        sv.explain_motion(cnn, [fields[0], fields[1].select_frames(slice(0, 12))])


def test_not_a_field(cnn):
    with pytest.raises(TypeError, match="MotionField"):
        sv.explain_motion(cnn, np.zeros((1, 2, 4, 4, 4)))


def test_field_is_not_modified(cnn, fields):
    before = fields[0].field.values.copy()
    sv.explain_motion(cnn, fields[0])
    np.testing.assert_array_equal(fields[0].field.values, before)


def test_bad_options(cnn, fields):
    with pytest.raises(ValueError, match="dims="):
        sv.explain_motion(cnn, fields[0], dims=("a",))
    with pytest.raises(ValueError, match="unknown action"):
        sv.render_clip("jump", 0)
    with pytest.raises(ValueError, match="kind must be"):
        sv.load_pretrained("lstm")


def test_truncated_mkv_with_intact_header(tmp_path):
    frames, _ = sv.render_clip("sideways", 3)
    full = sv.encode_clip(frames, tmp_path / "full.mkv")
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(sv.CorruptVideoError, match=r"announces 24 frames, only \d+ could be decoded") as info:
        sv.read_motion_vectors(cut)
    intact = int(str(info.value).split("only ")[1].split()[0])
    assert sv.read_motion_vectors(cut, max_frames=intact).n_frames == intact
    assert sv.read_motion_vectors(full).n_frames == 24
