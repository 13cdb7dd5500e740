"""The core's end-to-end job: a small CNN trained on scikit-learn's bundled handwritten digits
(real scans, 8x8), explained with LRP and the other methods; figures and netCDF written out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sciexplain as sx

__all__ = ["DigitsCNN", "train_digits_cnn", "run_digits_demo"]


class DigitsCNN(nn.Module):
    """An LRP-friendly CNN for 8x8 digits: ReLU, average pooling, two dense layers, logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_digits_split(seed: int = 0):
    """Digits scaled to [0, 1] as (n, 1, 8, 8) float32, split 1400 train / 397 test (seeded)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    tr, te = order[:1400], order[1400:]
    return X[tr], y[tr], X[te], y[te]


def train_digits_cnn(seed: int = 0, epochs: int = 40):
    """Train :class:`DigitsCNN` deterministically; returns (model in eval mode, test accuracy, data)."""
    torch.manual_seed(seed)
    Xtr, ytr, Xte, yte = load_digits_split(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean())
    return model, acc, (Xtr, ytr, Xte, yte)


def run_digits_demo(out: str | Path) -> dict:
    """Train, explain and write ``digits_*`` figures, netCDF and a JSON summary into ``out``."""
    from .result.plotting import plot_heatmaps
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, acc, (_, _, Xte, yte) = train_digits_cnn()
    x = torch.from_numpy(Xte[:16])
    dims = ("image", "color", "y", "x")
    coords = {"y": np.arange(8), "x": np.arange(8), "color": ["grey"],
              "label": ("image", yte[:16])}
    R = sx.explain(model, x, preset="epsilon-plus-box", bounds=(0.0, 1.0), dims=dims, coords=coords)
    R.relevance.check()
    R.to_netcdf(out / "digits_relevance.nc")
    R2 = R.relevance.pool("color")
    methods = [("sensitivity", {}), ("gradient_x_input", {}), ("integrated_gradients", {}),
               ("lrp", {"preset": "epsilon-plus-box", "bounds": (0.0, 1.0)}),
               ("lrp", {"preset": "alpha2-beta1"}), ("lrp", {"preset": "deep-taylor", "bounds": (0.0, 1.0)})]
    maps, titles, images = [], [], []
    for i in range(4):
        maps.append(R2.isel(image=i) * 0 + x[i, 0].numpy())
        titles.append(f"input (label {yte[i]})")
        images.append(None)
        for m, kw in methods:
            Ri = sx.explain(model, x[i:i + 1], method=m, dims=dims, coords={"y": np.arange(8), "x": np.arange(8)},
                            **kw).relevance.pool("color").isel(image=0)
            maps.append(Ri)
            titles.append(kw.get("preset", m).replace("_", " "))
            images.append(None)
    fig = plot_heatmaps(maps, titles, ncols=len(methods) + 1)
    fig.savefig(out / "digits_methods.png", dpi=120)
    residual = (R.relevance.total() + R.absorbed - R.prediction)
    summary = {"test_accuracy": acc, "n_explained": int(R.sizes["image"]),
               "max_ledger_residual": float(abs(residual).max()),
               "mean_absorbed_fraction": float((R.absorbed / R.prediction).mean()),
               "files": ["digits_relevance.nc", "digits_methods.png"]}
    (out / "digits_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
