"""Fashion-MNIST from the Debian package, and a small LRP-friendly CNN trained on it.

The data are read from ``/usr/share/datasets/fashion-mnist/*-ubyte.gz``
(``apt-get install dataset-fashion-mnist``) with a small IDX parser; nothing is
downloaded. :class:`FashionCNN` follows the design the LRP papers recommend
for clean explanations: convolutions with ReLU, **average** pooling (max
pooling is not a sum and redistributes relevance winner-take-all), no
BatchNorm, a small dense head, and logits out (no softmax). The committed
weights (``weights/fashion_cnn.npz``, no pickle) were written by
``scripts/train_fashion_cnn.py``; :func:`load_fashion_cnn` verifies their
sha256 before use.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .preprocess import Preprocess
from sciexplain.errors import ComputationError, DataNotFoundError, InputError

__all__ = [
    "FASHION_CLASSES",
    "FASHION_DIR",
    "FASHION_PREPROCESS",
    "FashionCNN",
    "WEIGHTS_PATH",
    "fashion_to_tensor",
    "load_fashion_cnn",
    "load_fashion_mnist",
    "read_idx",
]

#: Where the Debian package ``dataset-fashion-mnist`` installs the files.
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Class names, index = label.
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: 28 x 28 greyscale, scaled to [0, 1] (``x / 255``), no resizing.
FASHION_PREPROCESS = Preprocess(
    size=None, crop=None, mean=0.0, scale=255.0, channels="L", input_size=28
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_IDX_UBYTE = 0x08
#: The committed weights; the training record sits beside it as ``.json``.
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "fashion_cnn.npz"


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (the MNIST format), gzip-compressed or not.

    The header is two zero bytes, a type code (``0x08`` = unsigned byte), the
    number of dimensions, then one big-endian uint32 per dimension.

    Parameters
    ----------
    path : path-like
        ``*.gz`` files are decompressed.
    ndim : int
        Expected number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    numpy.ndarray
        uint8 array of the shape given in the header.

    Raises
    ------
    ValueError
        If the magic number, type code, number of dimensions or data length
        does not match.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise InputError(f"cannot read IDX file {path}: {err}") from err
    if len(raw) < 4:
        raise InputError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    zero, dtype_code, file_ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise InputError(f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()}.")
    if dtype_code != _IDX_UBYTE:
        raise InputError(f"{path} holds IDX type 0x{dtype_code:02x}; expected 0x08 (unsigned byte).")
    if file_ndim != ndim:
        raise InputError(f"{path} has {file_ndim} dimensions; expected {ndim}.")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise InputError(f"{path} is truncated inside its header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header_end != expected:
        raise InputError(
            f"{path} declares shape {shape} ({expected} bytes of data) but holds "
            f"{len(raw) - header_end}; the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape).copy()


@functools.lru_cache(maxsize=2)
def _load_split(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name, count = _FILES[split]
    directory = Path(root)
    missing = [n for n in (images_name, labels_name) if not (directory / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST files {missing} not found in {directory}. They come from the "
            "Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist "
            "(or pass root= pointing to a folder with the *-ubyte.gz files)."
        )
    images = read_idx(directory / images_name, ndim=3)
    labels = read_idx(directory / labels_name, ndim=1)
    if images.shape != (count, 28, 28):
        raise InputError(f"{directory / images_name} has shape {images.shape}; expected ({count}, 28, 28).")
    if labels.shape != (count,):
        raise InputError(f"{directory / labels_name} has {labels.shape[0]} labels; expected {count}.")
    if labels.max() >= len(FASHION_CLASSES):
        raise InputError(f"{directory / labels_name} holds label {labels.max()}; expected 0..9.")
    images.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST from the Debian package files.

    Parameters
    ----------
    split : {"train", "test"}
        60000 training or 10000 test images.
    root : path-like, optional
        Folder with the four ``*-ubyte.gz`` files; defaults to
        :data:`FASHION_DIR`.

    Returns
    -------
    X : numpy.ndarray
        uint8, shape ``(n, 28, 28)``, 0 = background.
    y : numpy.ndarray
        int64 labels 0..9, see :data:`FASHION_CLASSES`.

    Raises
    ------
    FileNotFoundError
        If the files are missing (install ``dataset-fashion-mnist``).
    ValueError
        If ``split`` is unknown or a file is malformed.
    """
    if split not in _FILES:
        raise InputError(f"split must be 'train' or 'test'; got {split!r}.")
    images, labels = _load_split(split, str(Path(root) if root is not None else FASHION_DIR))
    return images.copy(), labels.copy()


def fashion_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(n, 28, 28)`` uint8 -> float32 tensor ``(n, 1, 28, 28)`` in [0, 1].

    The same scaling as :data:`FASHION_PREPROCESS`, vectorised for whole sets.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise InputError(
            f"expected uint8 images of shape (n, 28, 28); got {images.dtype} {images.shape}."
        )
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


class FashionCNN(nn.Module):
    """A small CNN for 28 x 28 greyscale images, built for LRP.

    ``conv(1->16, 3x3) ReLU avgpool2 -> conv(16->32, 3x3) ReLU avgpool2 ->
    flatten -> linear(1568->64) ReLU -> linear(64->10)``, logits out. Every
    layer is a plain ``nn`` module (no functional activations, no module
    reused), so each has its own place in an LRP rule map. About 106 k
    parameters (0.42 MB as float32).

    Input: ``(batch, 1, 28, 28)`` with values in [0, 1].
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` for images ``(batch, 1, 28, 28)``."""
        return self.classifier(self.features(x))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_fashion_cnn(path: str | os.PathLike[str] | None = None) -> FashionCNN:
    """Load the trained :class:`FashionCNN` shipped with the package.

    Parameters
    ----------
    path : path-like, optional
        A ``.npz`` written by ``scripts/train_fashion_cnn.py``; its ``.json``
        record must sit beside it. Defaults to the committed
        ``weights/fashion_cnn.npz``.

    Returns
    -------
    FashionCNN
        In eval mode, with ``class_names`` (:data:`FASHION_CLASSES`),
        ``preprocess`` (:data:`FASHION_PREPROCESS`) and ``training_record``
        (the JSON record: accuracy, epochs, seed, sha256) attached.

    Raises
    ------
    FileNotFoundError
        If the weights or the record are missing.
    RuntimeError
        If the file's sha256 differs from the record, or the arrays do not
        match the architecture.
    """
    path = Path(path) if path is not None else WEIGHTS_PATH
    record_path = path.with_suffix(".json")
    for needed in (path, record_path):
        if not needed.is_file():
            raise DataNotFoundError(
                f"{needed} not found; train the weights with "
                "plugins/image/scripts/train_fashion_cnn.py or reinstall sciexplain-image."
            )
    record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
    digest = _sha256(path)
    if digest != record.get("sha256"):
        raise ComputationError(
            f"{path} has sha256 {digest} but {record_path.name} records "
            f"{record.get('sha256')}; the weights were changed or damaged. Retrain with "
            "scripts/train_fashion_cnn.py or reinstall sciexplain-image."
        )
    model = FashionCNN()
    with np.load(path, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in arrays.files}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ComputationError(f"{path} does not match the FashionCNN architecture: {err}") from err
    model.eval()
    model.class_names = list(FASHION_CLASSES)
    model.preprocess = FASHION_PREPROCESS
    model.training_record = record
    return model
