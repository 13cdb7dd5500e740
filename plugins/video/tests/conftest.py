"""Shared fixtures of the video plugin's tests: small generated clips in a session tmp dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """One generated clip per action (64x64, 24 frames): list of (path, truth)."""
    from sciexplain_video import ACTIONS, make_action_clip

    d = tmp_path_factory.mktemp("clips")
    out = []
    for i, action in enumerate(ACTIONS):
        path = d / f"{action}.mp4"
        out.append((path, make_action_clip(path, action, seed=900 + i)))
    return out


@pytest.fixture(scope="session")
def fields(clips):
    from sciexplain_video import read_motion_vectors

    return [read_motion_vectors(p) for p, _ in clips]


@pytest.fixture(scope="session")
def cnn():
    from sciexplain_video import load_pretrained

    return load_pretrained("cnn")


@pytest.fixture(scope="session")
def fisher_model():
    from sciexplain_video import load_pretrained

    return load_pretrained("fisher")


@pytest.fixture
def small_cnn():
    from sciexplain_video import MotionCNN

    torch.manual_seed(0)
    return MotionCNN().eval()


@pytest.fixture(scope="session")
def square_clip(tmp_path_factory):
    """A textured 16x16 square moving +4 px per frame in x over a still textured background."""
    from sciexplain_video import encode_clip

    rng = np.random.default_rng(5)
    H = W = 64
    bg = (rng.random((H, W)) * 160 + 40).astype(np.uint8)
    tex = (rng.random((16, 16)) * 255).astype(np.uint8)
    frames = []
    for t in range(10):
        img = bg.copy()
        x = 8 + 4 * t
        img[16:32, x:x + 16] = tex
        frames.append(img)
    path = tmp_path_factory.mktemp("square") / "square.mp4"
    encode_clip(np.stack(frames), path)
    return path
