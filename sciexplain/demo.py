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


def _methods_figure(inputs: np.ndarray, labels: np.ndarray, rows: list[list[np.ndarray]], names: list[str]):
    """Digits (grey) and their explanations (one column per method), each map scaled to its largest |value|."""
    from .result import RELEVANCE_CMAP, figure_style, pyplot, symmetric_limit
    plt = pyplot()
    with figure_style():
        fig, axes = plt.subplots(len(rows), len(names) + 1, figsize=(7.0, 1.0 * len(rows) + 0.9), squeeze=False)
        im = None
        for r, (digit, label, maps) in enumerate(zip(inputs, labels, rows)):
            axes[r, 0].imshow(digit, cmap="gray_r", vmin=0, vmax=1)
            axes[r, 0].set_ylabel(f"label {label}")
            for c, M in enumerate(maps, start=1):
                im = axes[r, c].imshow(M / symmetric_limit(M, 100), cmap=RELEVANCE_CMAP, vmin=-1, vmax=1)
        for c, name in enumerate(["input"] + names):
            axes[0, c].set_title(name)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        cb = fig.colorbar(im, ax=list(axes[:, 1:].flat), shrink=0.7, aspect=30)
        cb.set_ticks([-1, 0, 1], labels=["-max", "0", "max"])
        cb.set_label("relevance, scaled to the\nlargest |value| of each map")
        fig.suptitle("Held-out digits explained by six methods\n(red: evidence for the predicted class, blue: against)")
    return fig


def run_digits_demo(out: str | Path) -> dict:
    """Train, explain and write ``digits_*`` figures, netCDF and a JSON summary into ``out``."""
    from .result.style import save_figure
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
    methods = [("sensitivity", {}), ("gradient_x_input", {}), ("integrated_gradients", {}),
               ("lrp", {"preset": "epsilon-plus-box", "bounds": (0.0, 1.0)}),
               ("lrp", {"preset": "alpha2-beta1"}), ("lrp", {"preset": "deep-taylor", "bounds": (0.0, 1.0)})]
    rows = []
    for i in range(4):
        row = []
        for m, kw in methods:
            Ri = sx.explain(model, x[i:i + 1], method=m, dims=dims, coords={"y": np.arange(8), "x": np.arange(8)},
                            **kw).relevance.pool("color").isel(image=0)
            row.append(np.asarray(Ri.values, dtype=float))
        rows.append(row)
    names = ["sensitivity", "gradient\nx input", "integrated\ngradients", "LRP eps-\nplus-box", "LRP\nalpha2-beta1",
             "LRP deep\nTaylor"]
    fig = _methods_figure(x[:4, 0].numpy(), yte[:4], rows, names)
    save_figure(fig, out / "digits_methods.png")
    residual = (R.relevance.total() + R.absorbed - R.prediction)
    summary = {"test_accuracy": acc, "n_explained": int(R.sizes["image"]),
               "max_ledger_residual": float(abs(residual).max()),
               "mean_absorbed_fraction": float((R.absorbed / R.prediction).mean()),
               "files": ["digits_relevance.nc", "digits_methods.png"]}
    (out / "digits_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
