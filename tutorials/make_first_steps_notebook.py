"""Build tutorials/first_steps.ipynb from the cells below (run: python tutorials/make_first_steps_notebook.py).

The notebook is committed; this script keeps its source reviewable as plain Python.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    ("md", "# First steps: explain your own model\n\n"
           "A small convolutional network trained here on scikit-learn's handwritten digits (1797 real "
           "8x8 scans, shipped with scikit-learn), explained with Layer-wise Relevance Propagation. "
           "Five steps: explain, check the ledger, pool, plot, save and reopen. Runs offline in seconds."),
    ("code", "%matplotlib inline\nimport numpy as np\nimport torch\nfrom torch import nn\nimport xarray as xr\n"
             "from sklearn.datasets import load_digits\nimport sciexplain as sx\n\n"
             "digits = load_digits()\n"
             "x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)  # (1797, 1, 8, 8), pixels in [0, 1]\n"
             "y = torch.tensor(digits.target)\n"
             "torch.manual_seed(0)\n"
             "model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
             "                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))\n"
             "opt = torch.optim.Adam(model.parameters(), lr=3e-3)\n"
             "train, test = slice(0, 1400), slice(1400, None)\n"
             "for epoch in range(15):\n"
             "    for i in torch.randperm(1400).split(64):\n"
             "        opt.zero_grad()\n"
             "        nn.functional.cross_entropy(model(x[train][i]), y[train][i]).backward()\n"
             "        opt.step()\n"
             "model.eval()\n"
             "accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()\n"
             "print(f'held-out accuracy {accuracy:.3f}')"),
    ("md", "## 1. Explain\n`sx.explain` returns a labelled `xarray.DataArray`: one relevance per input value, "
           "with the explained logit (`prediction`), the class (`target`) and what the rules absorbed "
           "(`absorbed`) per sample. `bounds` tells the first layer's rule (`ZBox`) the valid pixel range."),
    ("code", "R = sx.explain(model, x[test][:32], preset='epsilon-plus-box', bounds=(0.0, 1.0),\n"
             "               dims=('digit', 'channel', 'y', 'x'))\nR"),
    ("md", "## 2. Check the ledger\nRelevance plus `absorbed` adds up to f(x), per sample. "
           "`sx.ledger` shows where the rest went, layer by layer."),
    ("code", "R.relevance.check()  # raises if relevance + absorbed != f(x)\n"
             "print('largest residual', float(abs(R.relevance.residual()).max()))\n"
             "print('absorbed share of f(x), median', float(np.median(R.absorbed / R.prediction)))\n"
             "ledger = sx.ledger(model, x[test][:32], preset='epsilon-plus-box', bounds=(0.0, 1.0))\n"
             "fig = sx.result.plot_ledger(ledger)"),
    ("md", "## 3. Pool\nSums of relevance are relevance: pooling keeps the ledger. Here the channel is summed "
           "away and the rows are grouped into the top and the bottom half of the digit."),
    ("code", "P = R.relevance.pool('channel')\n"
             "halves = P.relevance.group('y', {'top': [0, 1, 2, 3], 'bottom': [4, 5, 6, 7]})\n"
             "halves.relevance.check()\n"
             "halves.isel(digit=slice(0, 4)).sum('x').to_pandas()"),
    ("md", "## 4. Plot\nOne call draws any result: here a map the right way up, red for evidence for the "
           "class, blue against, in units of f(x); `share=True` in shares of f(x)."),
    ("code", "fig = R.relevance.plot(0)"),
    ("code", "fig = R.relevance.plot(0, share=True)"),
    ("md", "## 5. Save and reopen\nThe result is a netCDF file with its coordinates and attributes; the "
           "reopened result still balances."),
    ("code", "import os, tempfile\npath = os.path.join(tempfile.mkdtemp(), 'digits_relevance.nc')\n"
             "R.to_netcdf(path)\n"
             "R2 = xr.open_dataarray(path)\n"
             "R2.relevance.check()\n"
             "print(R2.attrs['method'], R2.attrs['preset'], np.array_equal(R2.values, R.values))"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), HERE / "first_steps.ipynb")
