"""The pipeline's ``[analysis.spray]`` section: checks with lines, the clusters, figure and table, provenance."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
from conftest import provenance_of
from sciexplain.pipeline import ConfigError, PipelineError, check, run
from sciexplain.pipeline.spray_step import spray_class

pytest.importorskip("dask")
pytest.importorskip("zarr")

N_A, N_B, N_OTHER = 24, 24, 12


def _line(text: str, needle: str) -> int:
    for no, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return no
    raise AssertionError(f"{needle!r} not in the text")


def _files(tmp_path) -> np.ndarray:
    """Class 0 has two strategies (features 0-1, features 3-4); class 1 lies on features 2 and 5."""
    W = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]])
    model = torch.nn.Sequential(torch.nn.Linear(6, 2, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(W)
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 6)), tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(0.0, 0.1, (N_A + N_B + N_OTHER, 6)))
    x[:N_A, [0, 1]] += 2.0
    x[N_A:N_A + N_B, [3, 4]] += 2.0
    x[N_A + N_B:, [2, 5]] += 2.0
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    groups = np.r_[np.zeros(N_A, int), np.ones(N_B, int)]
    return groups


PIPELINE = textwrap.dedent("""\
    [run]
    scheduler = "serial"
    chunk = 16
    progress = false

    [data]
    file = "x.npy"
    dims = ["sample", "feature"]

    [model]
    torchscript = "model.pt"

    [[methods]]
    name = "lrp"
    preset = "epsilon"

    [analysis.spray]
    target = 0
    n_neighbors = 10
    max_clusters = 5
    """)


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_spray_section_writes_clusters_figure_and_table_with_provenance(tmp_path):
    groups = _files(tmp_path)
    (tmp_path / "p.toml").write_text(PIPELINE)
    result = run(tmp_path / "p.toml", out=tmp_path / "out")
    out = tmp_path / "out"
    assert {"spray_lrp.nc", "figures/spray_lrp.png", "evaluation.md"} <= set(result.files)
    # the reference: sx.spray on the relevance of the class-0 samples, computed here
    R = result.relevance["lrp"].load()
    assert R.target.values.tolist() == [0] * (N_A + N_B) + [1] * N_OTHER
    ref = sx.spray(R.isel(sample=slice(0, N_A + N_B)), n_neighbors=10, max_clusters=5)
    with xr.open_dataset(out / "spray_lrp.nc") as ds:
        assert ds.attrs["class"] == 0 and ds.attrs["n_clusters"] == 2 == ref.attrs["n_clusters"]
        np.testing.assert_array_equal(ds.cluster.values, ref.cluster.values)
        np.testing.assert_allclose(ds.prototype.values, ref.prototype.values)
        assert _agree(ds.cluster.values, groups)  # the two strategies, found
        assert ds.sizes["sample"] == N_A + N_B and ds.attrs["pipeline_method"] == "lrp"
    record = json.loads((out / "provenance.json").read_text())
    for name in ("spray_lrp.nc", "figures/spray_lrp.png"):
        assert provenance_of(out / name)["config_sha256"] == record["config_sha256"], name
    assert "spray_lrp.nc" in record["outputs"]
    table = (out / "evaluation.md").read_text()
    assert "| lrp | 0 | 48 | 2 | eigengap (absolute) |" in table and record["config_sha256"] in table
    assert set(result.spray) == {"lrp"}


def test_spray_options_reach_sx_spray_and_figure_false_draws_nothing(tmp_path):
    _files(tmp_path)
    text = PIPELINE.replace("max_clusters = 5", 'max_clusters = 5\nn_clusters = 3\nnormalise = "none"\n'
                                                  'gap = "relative"\nfigure = false\ntarget = "predicted"')
    text = text.replace("target = 0\n", "", 1)
    (tmp_path / "p.toml").write_text(text)
    result = run(tmp_path / "p.toml", out=tmp_path / "out")
    assert "figures/spray_lrp.png" not in result.files and not (tmp_path / "out" / "figures").exists()
    ds = result.spray["lrp"]
    # 'predicted': the class explained most often (class 0, 48 of 60 samples)
    assert ds.attrs["class"] == 0 and ds.attrs["n_clusters"] == 3 and ds.attrs["n_clusters_from"] == "given"
    assert ds.attrs["normalise"] == "none" and ds.attrs["gap"] == "relative"
    ref = sx.spray(result.relevance["lrp"].load().isel(sample=slice(0, N_A + N_B)), 3, n_neighbors=10,
                   normalise=None)
    np.testing.assert_array_equal(ds.cluster.values, ref.cluster.values)


BAD = textwrap.dedent("""\
    [data]
    file = "x.npy"

    [model]
    torchscript = "model.pt"

    [[methods]]
    name = "lrp"

    [analysis.spray]
    methods = ["lpr"]
    target = -1
    n_neighbors = 0
    normalise = "l2"
    gap = "ratio"
    embedding = "umap"
    downsample = { feature = 0 }
    nclusters = 3
    figure = "yes"
    """)


def test_spray_problems_are_reported_with_their_lines(tmp_path):
    _files(tmp_path)
    (tmp_path / "bad.toml").write_text(BAD)
    with pytest.raises(ConfigError) as info:
        check(tmp_path / "bad.toml")
    problems = {(p.line, p.path): p.message for p in info.value.problems}
    expected = {
        (_line(BAD, "methods = ["), "analysis.spray.methods"): "'lpr', which is not in [[methods]]",
        (_line(BAD, "target = -1"), "analysis.spray.target"): "expected a class index >= 0",
        (_line(BAD, "n_neighbors"), "analysis.spray.n_neighbors"): "n_neighbors must be an integer >= 1",
        (_line(BAD, "normalise"), "analysis.spray.normalise"): "normalise must be one of",
        (_line(BAD, "gap ="), "analysis.spray.gap"): "gap must be one of",
        (_line(BAD, "embedding"), "analysis.spray.embedding"): "embedding must be one of",
        (_line(BAD, "downsample"), "analysis.spray.downsample"): "expected an integer >= 1",
        (_line(BAD, "nclusters"), "analysis.spray.nclusters"): "did you mean 'n_clusters'",
        (_line(BAD, "figure"), "analysis.spray.figure"): "expected draw figures",
    }
    for key, fragment in expected.items():
        assert key in problems, (key, sorted(problems))
        assert fragment in problems[key], (key, problems[key])
    assert len(problems) == len(expected), sorted(problems)


def test_a_class_without_samples_is_named_and_nothing_is_half_written(tmp_path):
    _files(tmp_path)
    (tmp_path / "p.toml").write_text(PIPELINE.replace("target = 0", "target = 7"))
    with pytest.raises(PipelineError, match=r"no sample is explained for class 7 \(explained classes: \[0, 1\]\)"):
        run(tmp_path / "p.toml", out=tmp_path / "out")
    assert not (tmp_path / "out" / "spray_lrp.nc").exists()


def test_predicted_class_is_the_most_explained_one_ties_lowest():
    R = xr.DataArray(np.zeros((5, 2)), dims=("s", "f"), coords={"target": ("s", [2, 1, 2, 1, 0])})
    assert spray_class(R, "predicted") == 1 and spray_class(R, 2) == 2


def test_what_spray_warns_about_is_kept_with_the_result(tmp_path):
    """Class 1 has one strategy: the eigengap picks one cluster, and sx.spray's warning about that lands in the
    result's attrs and under the table of evaluation.md instead of stopping the run (the suite turns the
    warning into an error, so this test also shows it was caught)."""
    _files(tmp_path)
    (tmp_path / "p.toml").write_text(PIPELINE.replace("target = 0", "target = 1"))
    result = run(tmp_path / "p.toml", out=tmp_path / "out")
    ds = result.spray["lrp"]
    assert ds.attrs["class"] == 1 and ds.attrs["n_clusters"] == 1
    assert "eigengap picked one cluster" in ds.attrs["notes"] and "sx.spray(R, 2)" in ds.attrs["notes"]
    with xr.open_dataset(tmp_path / "out" / "spray_lrp.nc") as saved:
        assert saved.attrs["notes"] == ds.attrs["notes"]
    table = (tmp_path / "out" / "evaluation.md").read_text()
    assert f"lrp: {ds.attrs['notes']}" in table
