"""A small data set with a planted Clever Hans shortcut, and a CNN trained on it in seconds (SpRAy/ClArC tests)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

SIZE = 16
TAG = (slice(0, 3), slice(0, 3))  # the tag: a bright 3 x 3 square in the top-left corner
N_PER_CLASS = 200


def tag_mask() -> np.ndarray:
    """Where the tag lies in one image, shape (1, SIZE, SIZE)."""
    m = np.zeros((1, SIZE, SIZE), dtype=bool)
    m[(0,) + TAG] = True
    return m


def _class_pattern(c: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((SIZE, SIZE), dtype=np.float32)
    if c == 0:  # a round blob at a random place (so its maps vary smoothly from sample to sample)
        cy, cx = rng.uniform(5.0, SIZE - 4.0, size=2)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5 ** 2)).astype(np.float32)
    pos = rng.integers(5, SIZE - 3)
    if c == 1:
        img[pos, 4:SIZE - 2] = 1.0  # a horizontal bar
    else:
        img[4:SIZE - 2, pos] = 1.0  # a vertical bar
    return img


def make_images(labels: np.ndarray, tagged: np.ndarray, seed: int, noise: float = 0.35) -> np.ndarray:
    """Images (n, 1, SIZE, SIZE): the class's pattern faintly, noise, and the tag where ``tagged``."""
    rng = np.random.default_rng(seed)
    x = np.stack([0.6 * _class_pattern(int(c), rng) for c in labels])
    x += noise * rng.random(x.shape, dtype=np.float32)
    x[tagged, TAG[0], TAG[1]] = 1.0
    return x[:, None].astype(np.float32)


def training_set(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes; half of class 0 carries the tag, no other sample does."""
    y = np.repeat(np.arange(3), N_PER_CLASS)
    tagged = (y == 0) & (np.arange(len(y)) % 2 == 0)
    return make_images(y, tagged, seed), y, tagged


class SmallCNN(nn.Module):
    """conv-ReLU-avgpool twice, then a dense head: LRP-friendly, 16 x 4 x 4 = 256 features."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@functools.lru_cache(maxsize=1)
def trained_model() -> tuple[SmallCNN, np.ndarray, np.ndarray, np.ndarray]:
    """The CNN trained for 15 epochs on :func:`training_set` (a few seconds on one core)."""
    torch.manual_seed(0)
    x, y, tagged = training_set()
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    return model, x, y, tagged
