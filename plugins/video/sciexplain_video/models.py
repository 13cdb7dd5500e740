"""Action classifiers over motion fields, and their weights (npz + json, no pickles).

* :class:`MotionCNN`: a small Conv3d network over ``(component, frame, block_y, block_x)``,
  explained by the core's LRP directly.
* :class:`MotionFisherModel`: the seeds' pipeline: HOF/MBH descriptors per spatio-temporal cell
  (:mod:`sciexplain_video.descriptors`), an improved Fisher vector under a diagonal Gaussian
  mixture and a linear SVM (:mod:`sciexplain.kinds.units.fisher`). Its torch part maps descriptor sets
  ``(clip, n_descriptors, D)`` to class scores; the descriptors are computed from the motion
  field outside torch, with a record of which blocks each came from.

Both record the block size they were trained on (``block``), the fewest frames they accept
(``min_frames``) and their class names (``classes``).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .descriptors import DescriptorSpec
from .synthetic import ACTIONS
from sciexplain.errors import DataNotFoundError, InputError

__all__ = ["MotionCNN", "MotionFisherModel", "save_model", "load_model", "load_pretrained", "WEIGHTS"]

#: the bundled weights, made by plugins/video/scripts/train_models.py
WEIGHTS = {"cnn": "motion_cnn", "fisher": "motion_fisher"}


class MotionCNN(nn.Module):
    """Conv3d classifier of motion fields ``(clip, 2, frame, block_y, block_x)`` -> class logits.

    Two 3x3x3 convolutions with ReLU, a mean over frames and blocks (so any clip length from
    ``min_frames`` and any grid size work), and a linear read-out.

    Parameters
    ----------
    classes : sequence of str
        Class names, one logit each.
    block : int
        Block size (pixels) of the motion fields it is trained on.
    channels : (int, int)
        Feature maps of the two convolutions.
    """

    def __init__(self, classes: Sequence[str] = ACTIONS, block: int = 16, channels: tuple[int, int] = (8, 16)) -> None:
        super().__init__()
        self.classes = tuple(str(c) for c in classes)
        self.block = int(block)
        self.channels = tuple(int(c) for c in channels)
        c1, c2 = self.channels
        self.features = nn.Sequential(nn.Conv3d(2, c1, 3, padding=1), nn.ReLU(),
                                      nn.Conv3d(c1, c2, 3, padding=1), nn.ReLU())
        self.classifier = nn.Linear(c2, len(self.classes))

    min_frames = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.classifier(h.mean(dim=(2, 3, 4)))

    def config(self) -> dict:
        return {"kind": "cnn", "classes": list(self.classes), "block": self.block, "channels": list(self.channels)}


class MotionFisherModel(nn.Module):
    """Fisher vector + linear SVM over HOF/MBH descriptor sets ``(clip, n_descriptors, D)``.

    Parameters
    ----------
    fisher : sciexplain.kinds.units.fisher.FisherVector
    linear : torch.nn.Linear
        The SVM's decision function (:func:`sciexplain.kinds.units.fisher.linear_from_sklearn`).
    spec : DescriptorSpec
        How the descriptors are computed from a motion field.
    classes : sequence of str
    block : int
    """

    def __init__(self, fisher: nn.Module, linear: nn.Linear, spec: DescriptorSpec, classes: Sequence[str] = ACTIONS,
                 block: int = 16) -> None:
        super().__init__()
        self.fisher = fisher
        self.linear = linear
        self.spec = spec
        self.classes = tuple(str(c) for c in classes)
        self.block = int(block)

    @property
    def min_frames(self) -> int:
        return self.spec.cell_frames

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.linear(self.fisher(descriptors))

    def config(self) -> dict:
        return {"kind": "fisher", "classes": list(self.classes), "block": self.block, "spec": self.spec.to_dict(),
                "improved": bool(self.fisher.improved), "alpha": float(self.fisher.alpha)}

    @classmethod
    def from_arrays(cls, weights: Any, means: Any, variances: Any, coef: Any, intercept: Any, *,
                    spec: DescriptorSpec, classes: Sequence[str], block: int, improved: bool = True,
                    alpha: float = 0.5) -> "MotionFisherModel":
        """Build from the GMM's and the linear classifier's parameter arrays."""
        import sciexplain as sx

        fisher = sx.fisher.FisherVector(weights, means, variances, improved=improved, alpha=alpha, dtype=torch.float32)
        coef = np.atleast_2d(np.asarray(coef, np.float32))
        linear = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(coef))
            linear.bias.copy_(torch.as_tensor(np.asarray(intercept, np.float32).reshape(-1)))
        return cls(fisher, linear.eval(), spec, classes, block)


def save_model(model: nn.Module, stem: str | Path, info: dict | None = None) -> tuple[Path, Path]:
    """Write ``stem.npz`` (parameters as arrays) and ``stem.json`` (configuration and ``info``)."""
    stem = Path(stem)
    config = model.config()
    if isinstance(model, MotionFisherModel):
        arrays = {"weights": model.fisher.weights, "means": model.fisher.means,
                  "variances": model.fisher.variances, "coef": model.linear.weight, "intercept": model.linear.bias}
        arrays = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
    else:
        arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(stem.with_suffix(".npz"), **arrays)
    stem.with_suffix(".json").write_text(json.dumps({**config, "info": info or {}}, indent=2) + "\n")
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def load_model(stem: str | Path) -> nn.Module:
    """Load a model written by :func:`save_model` (arrays only: ``np.load(allow_pickle=False)``)."""
    stem = Path(stem)
    config = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if config["kind"] == "cnn":
        model = MotionCNN(config["classes"], config["block"], tuple(config["channels"]))
        model.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
    elif config["kind"] == "fisher":
        model = MotionFisherModel.from_arrays(arrays["weights"], arrays["means"], arrays["variances"],
                                              arrays["coef"], arrays["intercept"],
                                              spec=DescriptorSpec(**config["spec"]), classes=config["classes"],
                                              block=config["block"], improved=config["improved"],
                                              alpha=config["alpha"])
    else:
        raise InputError(f"{stem}.json describes an unknown model kind {config['kind']!r}")
    model.info = config.get("info", {})
    return model.eval()


def load_pretrained(kind: str = "cnn") -> nn.Module:
    """The bundled model trained on generated clips: ``"cnn"`` or ``"fisher"``.

    ``model.info`` holds the training record (seed, clip counts, held-out accuracy).
    """
    if kind not in WEIGHTS:
        raise InputError(f"kind must be one of {sorted(WEIGHTS)}, got {kind!r}")
    base = resources.files("sciexplain_video") / "weights" / WEIGHTS[kind]
    path = Path(str(base))
    if not path.with_suffix(".npz").exists():
        raise DataNotFoundError(f"the bundled weights {path}.npz are missing; run "
                                "python plugins/video/scripts/train_models.py to make them")
    return load_model(path)
