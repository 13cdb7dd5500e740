"""The registry of image models: every shipped weights file named, entries agree with the training records
and with the loaded models."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sciexplain_image as si
from sciexplain.errors import DataNotFoundError
from sciexplain_image.registry import WEIGHTS_DIR


def test_every_shipped_weights_file_is_registered_and_agrees_with_its_record():
    shipped_files = {p.name for p in WEIGHTS_DIR.glob("*.npz")}
    assert shipped_files == {e.weights for e in si.SHIPPED.values() if e.weights is not None}
    for name, entry in si.SHIPPED.items():
        assert entry.name == name and si.model_info(name) is entry
        if entry.weights is None:
            continue
        record = json.loads((WEIGHTS_DIR / entry.weights).with_suffix(".json").read_text())
        assert record["test_accuracy"] == entry.test_accuracy  # the stored number, not a rounded copy
        assert record["model"].rsplit(".", 1)[-1] == entry.architecture
        assert f"{record['n_parameters']:,}" in entry.description
        assert entry.n_test == 10000 and "10000 test" in record["data"]
        assert entry.weights.removesuffix(".npz") in entry.accuracy_note


def test_the_package_model_has_no_invented_accuracy():
    entry = si.model_info("efficientnet_lite0")
    assert entry.test_accuracy is None and entry.n_test is None
    assert entry.accuracy_note == "ImageNet weights of the package, accuracy not measured here"
    spec = si.EFFICIENTNET_LITE0_PREPROCESS
    assert (spec.n_channels, *spec.size) == entry.input_size


@pytest.mark.parametrize("name", ["fashion_cnn", "fashion_vit", "fashion_convnext"])
def test_entries_describe_the_loaded_model(name):
    entry = si.model_info(name)
    model = getattr(si, entry.loader)()
    assert type(model).__name__ == entry.architecture
    x, _ = model.preprocess(np.zeros((28, 28), np.uint8))
    assert tuple(x.shape[1:]) == entry.input_size
    if entry.default_preset == "attnlrp + bias to inputs":
        assert model.default_preset["base"] == "attnlrp"
    else:  # no default of its own: the domain's
        assert not hasattr(model, "default_preset") and entry.default_preset == si.DOMAIN.default_preset


def test_the_pipeline_offers_every_registered_model():
    assert set(si.DOMAIN.pipeline_models()) == set(si.SHIPPED)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(DataNotFoundError, match="fashion_vit"):
        si.model_info("fashion_swin")
