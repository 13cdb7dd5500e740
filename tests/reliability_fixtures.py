"""A small file-based pipeline (random 4x4 images, a small TorchScript CNN: core only) for the reliability tests."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
import xarray as xr

PIPELINE = textwrap.dedent("""\
    [run]
    seed = 1
    chunk = 3
    scheduler = "serial"
    progress = false

    [data]
    file = "x.npy"
    dims = ["image", "color", "y", "x"]
    target_file = "y.npy"

    [model]
    torchscript = "model.pt"

    [[methods]]
    name = "lrp"
    preset = "epsilon-plus-box"
    bounds = [0.0, 1.0]
    target = "true"

    [[methods]]
    name = "gradient"
    method = "gradient"

    [[pooling]]
    name = "colorless"
    kind = "pool"
    dims = ["color"]
    methods = ["lrp"]

    [evaluation.perturbation]
    steps = 2
    patch = [2, 2]
    removal = "zero"
    pool = ["color"]

    [[figures]]
    name = "heatmap"
    kind = "heatmap"
    method = "lrp"
    params = { sample = 0, pool = ["color"] }
    """)


def write_inputs(folder: Path, n: int = 6, text: str = PIPELINE) -> Path:
    """x.npy, y.npy, model.pt (TorchScript) and pipeline.toml in ``folder``; returns the pipeline file."""
    import torch
    from torch import nn
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.random((n, 1, 4, 4), dtype=np.float32))
    np.save(folder / "y.npy", rng.integers(0, 3, n))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)).eval()
    torch.jit.save(torch.jit.script(model), str(folder / "model.pt"))
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def assert_same_outputs(got: Path, ref: Path) -> None:
    """The numbers of two runs' outputs are identical (provenance times aside); nothing half-written is left."""
    names = sorted(p.name for p in ref.iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in got.iterdir() if not p.name.startswith(".")) == names
    for name in names:
        a, b = got / name, ref / name
        if name.endswith(".zarr"):
            with xr.open_zarr(a) as A, xr.open_zarr(b) as B:
                assert bool(A["chunk_done"].values.all()), name
                for v in B.data_vars:
                    assert np.array_equal(A[v].values, B[v].values, equal_nan=True), (name, v)
        elif name.endswith(".nc"):
            with xr.open_dataset(a) as A, xr.open_dataset(b) as B:
                for v in B.data_vars:
                    assert np.array_equal(A[v].values, B[v].values, equal_nan=True), (name, v)
        elif name.endswith(".csv"):
            assert csv_rows(a) == csv_rows(b), name
        elif name == "figures":
            from PIL import Image
            for f in b.iterdir():
                with Image.open(a / f.name) as im, Image.open(f) as ref_im:
                    assert im.size == ref_im.size
    hidden = [p.name for p in got.rglob(".*") if p.name != ".sciexplain-run" and not p.name.startswith(".z")]
    assert hidden == [], f"temporary or lock files left: {hidden}"
