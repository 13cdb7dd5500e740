"""Broken arrays are named for what they are: truncated or corrupt .npy files, object arrays, meta tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError
from sciexplain.scale.sources import NpySource


@pytest.fixture()
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(600, dtype=np.float32).reshape(6, 100))
    return path


@pytest.mark.parametrize("keep, says", [(500, "is truncated"), (300, "is truncated"), (40, "truncated .npy header"),
                                        (3, "not a .npy file, or it is truncated"), (0, "is empty")])
def test_a_truncated_npy_is_called_truncated(npy, keep, says):
    data = npy.read_bytes()
    npy.write_bytes(data[:keep])
    with pytest.raises(InputError, match=says) as err:
        NpySource(npy)
    assert "Python objects" not in str(err.value)


def test_a_file_that_is_not_npy(tmp_path):
    path = tmp_path / "notes.npy"
    path.write_text("just some text, long enough to be read as a header")
    with pytest.raises(InputError, match="does not start like a .npy file"):
        NpySource(path)


def test_an_object_array_is_still_refused_as_objects(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="holds Python objects"):
        NpySource(path)


def test_a_whole_npy_reads(npy):
    src = NpySource(npy)
    assert src.shape == (6, 100)
    np.testing.assert_array_equal(src.read(1, 3), np.arange(600, dtype=np.float32).reshape(6, 100)[1:3])


def test_an_input_on_the_meta_device_is_an_input_error():
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    with pytest.raises(InputError, match="meta device"):
        sx.explain(model, torch.empty(3, 4, device="meta"))
