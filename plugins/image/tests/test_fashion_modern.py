"""Tests for the Fashion-MNIST ViT and ConvNeXt: shipped weights, exact ledgers through the image plugin."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image
from torch import nn

import sciexplain as sx
from sciexplain_image import explain_image, plot_overlay, pool_patches, pool_regions
from sciexplain_image.fashion import FASHION_CLASSES, fashion_to_tensor, load_fashion_mnist
from sciexplain_image.fashion_modern import (
    CONVNEXT_WEIGHTS_PATH, DEFAULT_PRESETS, VIT_WEIGHTS_PATH, FashionConvNeXt, FashionViT,
    load_fashion_convnext, load_fashion_vit)

LOADERS = {"vit": (load_fashion_vit, FashionViT, VIT_WEIGHTS_PATH),
           "convnext": (load_fashion_convnext, FashionConvNeXt, CONVNEXT_WEIGHTS_PATH)}
ALLOWED = (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.GELU, nn.ModuleList)


@pytest.fixture(scope="module")
def test_images():
    images, labels = load_fashion_mnist("test")
    return images[:4], labels[:4]


@pytest.fixture(scope="module", params=sorted(LOADERS))
def loaded(request):
    return request.param, LOADERS[request.param][0]()


@pytest.fixture(scope="module")
def explained(loaded, test_images):
    key, model = loaded
    return key, model, explain_image(model, list(test_images[0]), names=["a", "b", "c", "d"])


@pytest.mark.parametrize("cls", [FashionViT, FashionConvNeXt])
def test_architectures_are_small_and_plain(cls):
    model = cls()
    own = {type(model)} | {type(m) for m in model.modules() if type(m).__module__.endswith("fashion_modern")}
    for name, module in model.named_modules():
        assert isinstance(module, ALLOWED + tuple(own)), f"{name}: {type(module).__name__}"
    assert sum(p.numel() for p in model.parameters()) < 100_000
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.MaxPool2d)) for m in model.modules())
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    if cls is FashionViT:
        with pytest.raises(ValueError, match="heads dividing dim"):
            FashionViT(dim=30, heads=4)


@pytest.mark.parametrize("key", sorted(LOADERS))
def test_shipped_weights_checksum_and_accuracy(key):
    load, cls, path = LOADERS[key]
    model = load()
    record = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert model.training_record == record and not model.training
    assert model.class_names == list(FASHION_CLASSES)
    assert model.default_preset == DEFAULT_PRESETS[cls.__name__]
    with np.load(path, allow_pickle=False) as arrays:
        assert set(arrays.files) == set(cls().state_dict())
    images, labels = load_fashion_mnist("test")
    with torch.no_grad():
        predicted = model(fashion_to_tensor(images[:2000])).argmax(1).numpy()
    accuracy = float((predicted == labels[:2000]).mean())
    assert accuracy == pytest.approx(record["test_accuracy_first_2000"], abs=0.005)
    assert record["test_accuracy"] >= 0.85


@pytest.mark.parametrize("key", sorted(LOADERS))
def test_tampered_or_foreign_weights_are_refused(key, tmp_path):
    load, _, path = LOADERS[key]
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    shutil.copy(path.with_suffix(".json"), copy.with_suffix(".json"))
    assert isinstance(load(copy), nn.Module)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="sha256"):
        load(copy)
    copy.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="train_fashion_modern"):
        load(copy)
    other = tmp_path / "other.npz"
    np.savez(other, **{"embed.weight": np.zeros((3, 1, 2, 2), np.float32)})
    other.with_suffix(".json").write_text(json.dumps({"sha256": hashlib.sha256(other.read_bytes()).hexdigest()}))
    with pytest.raises(RuntimeError, match="architecture"):
        load(other)


def _described(preset) -> str:
    """How a result's ``preset`` attribute names ``preset`` (a name, or "custom mapping (base=...)")."""
    from sciexplain.rules.presets import resolve_preset
    return resolve_preset(preset, (0.0, 1.0)).description


def test_exact_ledger_labels_and_default_preset(explained, test_images):
    key, model, R = explained
    assert R.dims == ("image", "y", "x") and R.shape == (4, 28, 28)
    assert list(R.image.values) == ["a", "b", "c", "d"]
    assert np.array_equal(R.y.values, np.arange(28)) and R.attrs["domain"] == "image"
    assert R.attrs["preset"] == _described(model.default_preset) == "custom mapping (base='attnlrp')"
    assert "BiasToInputs" in R.attrs["rules"] and "Fallback" in R.attrs["rules"]
    with torch.no_grad():
        logits = model(fashion_to_tensor(test_images[0]))
    predicted = logits.argmax(1).numpy()
    assert list(R.target.values) == list(predicted)
    assert list(R.target_name.values) == [FASHION_CLASSES[t] for t in predicted]
    np.testing.assert_allclose(R.prediction.values, logits[np.arange(4), predicted].numpy(), rtol=1e-6)
    f = R.prediction.values.astype(np.float64)
    total = R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values.astype(np.float64)
    assert np.all(np.abs(total - f) <= 1e-5 * np.abs(f)), (total, f)
    R.relevance.check(rtol=1e-5, atol=0.0)
    # the first layer (ViT: 4x4/stride-4 patches, ConvNeXt: 2x2/stride-2) passes relevance in proportion to
    # x w and the bias's share by |x| |w| (BiasToInputs): a black pixel in a patch with some ink gets nothing;
    # a patch with no ink at all has no such carrier, and the default's Fallback spreads its share by w^2
    k = 4 if key == "vit" else 2
    img = test_images[0]
    black = img == 0
    assert black.mean() > 0.3
    inked = (img.reshape(4, 28 // k, k, 28 // k, k).max((2, 4)) > 0).repeat(k, 1).repeat(k, 2)
    assert np.all(R.values[black & inked] == 0.0)
    assert np.abs(R.values[~black]).sum() > 0
    assert np.abs(R.values[~inked]).sum() > 0  # all-black patches: w^2 fallback, not absorbed


def test_dispatch_through_sx_explain_uses_the_models_default(loaded, test_images):
    key, model = loaded
    pil = [Image.fromarray(img) for img in test_images[0][:2]]
    R = sx.explain(model, pil)
    assert R.attrs["preset"] == _described(model.default_preset) and R.dims == ("image", "y", "x")
    assert R.attrs["rules"] == sx.explain(model, pil, preset=model.default_preset).attrs["rules"]
    other = "epsilon-plus" if model.default_preset != "epsilon-plus" else "attnlrp"
    Q = sx.explain(model, pil, preset=other)
    assert Q.attrs["preset"] == other and not np.allclose(Q.values, R.values)


def test_overlay_figure_region_pooling_and_netcdf(explained, test_images, tmp_path):
    import matplotlib.figure
    key, model, R = explained
    fig = plot_overlay(R, test_images[0][1], 1)
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
    total = R.relevance.total().values
    P = pool_patches(R, 4)
    assert P.sizes["y"] == 7 and P.sizes["x"] == 7
    np.testing.assert_allclose(P.relevance.total().values, total, rtol=1e-5)
    halves = np.zeros((28, 28), int)
    halves[14:] = 1
    H = pool_regions(R, halves, names={0: "top", 1: "bottom"})
    np.testing.assert_allclose(H.sum("region").values, total, rtol=1e-5)
    path = tmp_path / f"{key}.nc"
    R.to_netcdf(path)
    back = xr.open_dataarray(path)
    np.testing.assert_array_equal(back.values, R.values)
    np.testing.assert_array_equal(back.absorbed.values, R.absorbed.values)
    assert list(back.target_name.values) == list(R.target_name.values)
    assert back.attrs["preset"] == R.attrs["preset"] and back.attrs["rules"] == R.attrs["rules"]
    back.close()


@pytest.mark.parametrize("preset", ["mobilenet-conserving", "epsilon-plus-box"])
def test_convnext_stem_with_zbox_keeps_every_layers_ledger(preset):
    """The ConvNeXt stem is a 2x2/stride-2 convolution on [0, 1] pixels: on black or white
    patches some of its zB denominators are exactly 0. Every layer's ledger still balances on
    the test images where it once missed up to 2.9% of f(x) (247 among them), with no warning."""
    images, _ = load_fashion_mnist("test")
    x = fashion_to_tensor(images[240:256])
    model = load_fashion_convnext()
    with warnings.catch_warnings():
        warnings.simplefilter("error", sx.ExplainWarning)
        R, led = sx.Explainer(model, preset=preset, bounds=(0.0, 1.0)).explain_with_ledger(x)
    f = np.abs(led.prediction.values)[:, None]
    gap = np.abs((led.entering - led.leaving - led.absorbed).values) / f
    assert gap.max() <= 1e-5, (led.layer.values[gap.max(0).argmax()], gap.max())
    R.relevance.check(rtol=1e-5, atol=0.0)
