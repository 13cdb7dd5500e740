"""Tests for the Fashion-MNIST reader and the trained FashionCNN."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sciexplain_image.fashion import (
    FASHION_CLASSES,
    FASHION_PREPROCESS,
    WEIGHTS_PATH,
    FashionCNN,
    fashion_to_tensor,
    load_fashion_cnn,
    load_fashion_mnist,
    read_idx,
)


def _write_idx(path, array, dtype_code=0x08, compress=True, extra=b""):
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes() + extra
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)


# ---------------------------------------------------------------- IDX parser


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_idx_round_trip(tmp_path_factory, shape, compress, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compress else "a.idx")
    _write_idx(path, array, compress=compress)
    out = read_idx(path, ndim=len(shape))
    assert out.dtype == np.uint8 and np.array_equal(out, array)


def test_idx_errors(tmp_path):
    array = np.zeros((2, 3, 3), np.uint8)
    bad_magic = tmp_path / "magic.gz"
    with gzip.open(bad_magic, "wb") as handle:
        handle.write(b"\x01\x00\x08\x03" + b"\x00" * 40)
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad_magic, ndim=3)
    wrong_type = tmp_path / "type.gz"
    _write_idx(wrong_type, array, dtype_code=0x0D)
    with pytest.raises(ValueError, match="unsigned byte"):
        read_idx(wrong_type, ndim=3)
    good = tmp_path / "good.gz"
    _write_idx(good, array)
    with pytest.raises(ValueError, match="dimensions"):
        read_idx(good, ndim=1)
    long = tmp_path / "long.gz"
    _write_idx(long, array, extra=b"\x00")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(long, ndim=3)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as handle:
        handle.write(struct.pack(">HBB3I", 0, 8, 3, 2, 3, 3) + b"\x00" * 5)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(short, ndim=3)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(not_gzip, ndim=3)


def test_missing_files_name_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


def test_inconsistent_files_are_refused(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"expected \(10000, 28, 28\)"):
        load_fashion_mnist("test", root=tmp_path)


# ---------------------------------------------------------------- the real data


def test_real_fashion_mnist():
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert np.array_equal(np.bincount(y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))
    assert x_test.max() == 255 and x_test.min() == 0
    # real content, checked on class-mean images: trousers have a gap between
    # the legs, bags are wide, sneakers sit in the lower half
    trouser, bag, sneaker = (x_test[y_test == c].mean(0) for c in (1, 8, 7))
    gap, leg = trouser[18:27, 13:15].mean(), trouser[18:27, 17:20].mean()
    assert gap < 0.75 * leg
    assert bag[8:20, 2:6].mean() > 50 > trouser[8:20, 2:6].mean()
    assert sneaker[14:24].mean() > 20 * sneaker[:8].mean()
    original = x_train[0, 0, 0]
    x_train[0, 0, 0] = original ^ 0xFF  # callers get copies
    assert load_fashion_mnist("train")[0][0, 0, 0] == original
    assert len(FASHION_CLASSES) == 10 and FASHION_CLASSES[9] == "Ankle boot"


def test_fashion_to_tensor_matches_the_preprocess_spec():
    x_test, _ = load_fashion_mnist("test")
    batch = fashion_to_tensor(x_test[:3])
    assert batch.shape == (3, 1, 28, 28) and batch.dtype == torch.float32
    assert float(batch.max()) == 1.0
    single, prepared = FASHION_PREPROCESS(x_test[1])
    assert torch.equal(single[0], batch[1])
    assert np.array_equal(prepared.array[..., 0], x_test[1])
    with pytest.raises(ValueError, match="28, 28"):
        fashion_to_tensor(np.zeros((2, 32, 32), np.uint8))


# ---------------------------------------------------------------- the model


def test_fashion_cnn_is_lrp_friendly_and_small():
    model = FashionCNN()
    allowed = (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.AvgPool2d, torch.nn.Linear, torch.nn.Flatten,
               torch.nn.Sequential, FashionCNN)
    for name, module in model.named_modules():
        assert isinstance(module, allowed), f"{name}: {type(module).__name__}"
    n_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert n_bytes < 1_000_000
    ids = [id(m) for m in model.modules()]
    assert len(ids) == len(set(ids))  # no module reused
    out = model(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities


@pytest.fixture(scope="module")
def trained():
    return load_fashion_cnn()


def test_committed_weights_checksum(trained):
    record = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    assert hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest() == record["sha256"]
    assert trained.training_record == record
    for key in ("test_accuracy", "epochs", "seed", "sha256"):
        assert key in record
    assert not trained.training
    assert trained.class_names == list(FASHION_CLASSES)
    with np.load(WEIGHTS_PATH, allow_pickle=False) as arrays:
        assert set(arrays.files) == set(FashionCNN().state_dict())


def test_trained_model_reaches_the_recorded_accuracy(trained):
    record = trained.training_record
    x_test, y_test = load_fashion_mnist("test")
    with torch.no_grad():
        predicted = trained(fashion_to_tensor(x_test[:2000])).argmax(1).numpy()
    accuracy = float((predicted == y_test[:2000]).mean())
    assert accuracy == pytest.approx(record["test_accuracy_first_2000"], abs=0.01)
    assert accuracy == pytest.approx(record["test_accuracy"], abs=0.02)
    assert accuracy >= 0.85


def test_tampered_weights_are_refused(tmp_path):
    path = tmp_path / "fashion_cnn.npz"
    shutil.copy(WEIGHTS_PATH, path)
    shutil.copy(WEIGHTS_PATH.with_suffix(".json"), path.with_suffix(".json"))
    assert isinstance(load_fashion_cnn(path), FashionCNN)
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="sha256"):
        load_fashion_cnn(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="train_fashion_cnn"):
        load_fashion_cnn(path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, **{"features.0.weight": np.zeros((3, 1, 3, 3), np.float32)})
    record = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(RuntimeError, match="architecture"):
        load_fashion_cnn(path)

