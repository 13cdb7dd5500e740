"""Seeded training of the two action classifiers on generated clips (used by scripts/train_models.py)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .descriptors import DescriptorSpec, compute_descriptors
from .models import MotionCNN, MotionFisherModel
from .motion import MotionField
from .synthetic import ACTIONS
from sciexplain.errors import InputError

__all__ = ["stack_fields", "descriptor_batch", "train_cnn", "fit_fisher", "predict", "accuracy"]


def stack_fields(fields: Sequence[MotionField], fill: float = 0.0) -> torch.Tensor:
    """Float32 tensor ``(clip, component, frame, block_y, block_x)`` of same-shaped fields."""
    return torch.as_tensor(np.stack([f.to_array(fill) for f in fields]))


def descriptor_batch(fields: Sequence[MotionField], spec: DescriptorSpec) -> tuple[torch.Tensor, list]:
    """Descriptor sets ``(clip, n_descriptors, D)`` and each clip's :class:`Descriptors` record."""
    records = [compute_descriptors(f.field.values, spec) for f in fields]
    sizes = {r.n for r in records}
    if len(sizes) > 1:
        raise InputError(f"the clips give different numbers of descriptors ({sorted(sizes)}); use clips of one "
                         "length and grid, or explain them one at a time")
    return torch.as_tensor(np.stack([r.values for r in records])), records


def predict(model: nn.Module, fields: Sequence[MotionField]) -> np.ndarray:
    """Predicted class index per clip."""
    with torch.no_grad():
        if isinstance(model, MotionFisherModel):
            x, _ = descriptor_batch(fields, model.spec)
        else:
            x = stack_fields(fields)
        return model.eval()(x).argmax(1).numpy()


def accuracy(model: nn.Module, fields: Sequence[MotionField], labels: Sequence[int]) -> float:
    """Share of clips whose predicted class is the label."""
    return float(np.mean(predict(model, fields) == np.asarray(labels)))


def train_cnn(fields: Sequence[MotionField], labels: Sequence[int], *, seed: int = 0, epochs: int = 60,
              lr: float = 3e-3, batch_size: int = 16, classes: Sequence[str] = ACTIONS,
              progress: bool = False) -> MotionCNN:
    """Train a :class:`MotionCNN` with Adam on cross-entropy (seeded, CPU, deterministic order)."""
    from tqdm.auto import trange

    torch.manual_seed(seed)
    x = stack_fields(fields)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    model = MotionCNN(classes, block=fields[0].block)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in trange(epochs, desc="training MotionCNN", disable=not progress):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def fit_fisher(fields: Sequence[MotionField], labels: Sequence[int], *, seed: int = 0, n_components: int = 8,
               C: float = 1.0, spec: DescriptorSpec | None = None,
               classes: Sequence[str] = ACTIONS) -> MotionFisherModel:
    """Fit the GMM (diagonal, on all training descriptors), the improved Fisher vector and a LinearSVC."""
    from sklearn.mixture import GaussianMixture
    from sklearn.svm import LinearSVC
    import sciexplain as sx

    spec = spec or DescriptorSpec()
    x, _ = descriptor_batch(fields, spec)
    flat = x.reshape(-1, x.shape[-1]).numpy().astype(np.float64)
    gmm = GaussianMixture(n_components, covariance_type="diag", reg_covar=1e-3, random_state=seed, max_iter=200)
    gmm.fit(flat)
    fisher = sx.fisher.FisherVector.from_gmm(gmm, improved=True, alpha=0.5, dtype=torch.float32)
    with torch.no_grad():
        fv = fisher(x).numpy()
    svm = LinearSVC(C=C, random_state=seed, max_iter=20000).fit(fv, np.asarray(labels))
    linear = sx.fisher.linear_from_sklearn(svm, dtype=torch.float32)
    return MotionFisherModel(fisher, linear, spec, classes, block=fields[0].block).eval()
