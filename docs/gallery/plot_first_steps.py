"""
First steps: explain your own model
===================================

A small convolutional network trained on scikit-learn's handwritten digits (1797 real 8x8 scans),
explained with LRP: the ledger checked, relevance pooled into the top and bottom half of each
digit, one sample drawn in units of f(x).
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import sciexplain as sx

digits = load_digits()
x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(15):
    for i in torch.randperm(1400).split(64):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1400][i]), y[:1400][i]).backward()
        opt.step()
model.eval()
print(f"held-out accuracy {(model(x[1400:]).argmax(1) == y[1400:]).float().mean():.3f}")

# %%
# Explain and check the ledger: relevance plus what the rules absorbed is f(x).
R = sx.explain(model, x[1400:1432], preset="epsilon-plus-box", bounds=(0.0, 1.0),
               dims=("digit", "channel", "y", "x"))
R.relevance.check()
print("absorbed share of f(x), median:", float(np.median(R.absorbed / R.prediction)))

# %%
# Pool: sums of relevance are relevance.
halves = R.relevance.pool("channel").relevance.group("y", {"top": [0, 1, 2, 3], "bottom": [4, 5, 6, 7]})
print(halves.isel(digit=slice(0, 4)).sum("x").to_pandas())

# %%
# Draw one sample, in units of f(x).
fig = R.relevance.plot(0)
