"""Pipelines (``sciexplain run/check FILE.toml``): validation with line numbers, model and data
loading that never unpickles, provenance in every output, determinism, resume, the CLI."""

from __future__ import annotations

import csv
import hashlib
import re
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
from conftest import provenance_of
from sciexplain import scale as ds
from sciexplain.scale import explain_runner
from sciexplain.cli import main
from sciexplain.pipeline import ConfigError, PipelineError, check, key_lines, run, validate

pytest.importorskip("dask")
pytest.importorskip("zarr")


def _line(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle`` (the test's own reference)."""
    for no, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return no
    raise AssertionError(f"{needle!r} not in the text")


# -- validation ---------------------------------------------------------------------------------

BAD = textwrap.dedent("""\
    [run]
    seed = "zero"
    chunck = 5
    scheduler = "thread"

    [data]
    file = "missing.npy"

    [model]
    state_dict = "nowhere.pt"
    architecture = "image:FashionCNNN"

    [[methods]]
    name = "lrp"
    method = "lrpp"

    [[methods]]
    method = "gradient"
    preset = 3

    [[pooling]]
    name = "bad pool"
    kind = "windows"

    [evalution]
    steps = 3
    """)


def test_every_problem_is_reported_at_once_with_its_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        check(path)
    problems = {(p.line, p.path): p.message for p in info.value.problems}
    expected = {
        (_line(BAD, "seed ="), "run.seed"): "expected an integer seed",
        (_line(BAD, "chunck"), "run.chunck"): "did you mean 'chunk'",
        (_line(BAD, "scheduler ="), "run.scheduler"): "did you mean 'threads'",
        (_line(BAD, "missing.npy"), "data.file"): "does not exist",
        (_line(BAD, "nowhere.pt"), "model.state_dict"): "does not exist",
        (_line(BAD, "FashionCNNN"), "model.architecture"): "did you mean 'FashionCNN'",
        (_line(BAD, '"lrpp"'), "methods[0].method"): "unknown method 'lrpp'",
        (_line(BAD, "preset = 3"), "methods[1].preset"): "is an integer",
        (_line(BAD, "bad pool"), "pooling[0].name"): "letters, digits",
        (_line(BAD, "[evalution]"), "evalution"): "did you mean [evaluation]",
    }
    for (line, key), fragment in expected.items():
        assert (line, key) in problems, f"no problem at line {line} for {key}; got {sorted(problems)}"
        assert fragment in problems[(line, key)]
    # the second method misses its name: reported at its [[methods]] header
    missing_name = [p for p in info.value.problems if "missing required key 'name'" in p.message]
    assert [p.line for p in missing_name] == [_line(BAD, "method = \"gradient\"") - 1]
    windows = [p for p in info.value.problems if p.path == "pooling[0]"]
    assert {p.message for p in windows} == {"kind = 'windows' needs 'dim'", "kind = 'windows' needs 'size'"}
    assert str(path) + f":{_line(BAD, 'chunck')}: run.chunck" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_check_runs_nothing_and_the_cli_exits_non_zero(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    out = tmp_path / "never"
    assert main(["run", str(path), "--out", str(out)]) == 1
    assert not out.exists(), "problems are found before any work starts"
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"bad.toml:{_line(BAD, 'chunck')}: run.chunck: unknown key 'chunck'; did you mean 'chunk'?" in err
    assert main(["check", str(tmp_path / "absent.toml")]) == 1
    (tmp_path / "syntax.toml").write_text("[run]\nseed = = 1\n")
    assert main(["check", str(tmp_path / "syntax.toml")]) == 1
    assert "syntax.toml:2: not valid TOML" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["run"])
    assert usage.value.code == 2


def test_key_lines_follow_tables_arrays_and_inline_tables():
    text = textwrap.dedent("""\
        # a comment = not a key
        [run]
        seed = 1  # trailing comment
        [[methods]]
        name = "a"
        [[methods]]
        name = "b"
        options = { steps = 4, "n_samples" = 2 }
        [methods.extra]
        depth = 3
        [evaluation.perturbation]
        steps = 5
        """)
    lines = key_lines(text)
    assert lines[("run", "seed")] == 3
    assert lines[("methods", 0, "name")] == 5 and lines[("methods", 1, "name")] == 7
    assert lines[("methods", 1, "options", "steps")] == 8 and lines[("methods", 1, "options", "n_samples")] == 8
    assert lines[("methods", 1, "extra", "depth")] == 10
    assert lines[("evaluation", "perturbation", "steps")] == 12
    # a dict config has no lines, and its problems still name the key
    problems = validate({"data": {"file": "x.npy", "sample": 3}, "model": {"torchscript": "m.pt"},
                         "methods": [{"name": "g"}]}, domains={})
    assert any(p.path == "data.sample" and "did you mean 'samples'" in p.message and p.line is None for p in problems)


# -- a file-based pipeline on real Fashion-MNIST data -------------------------------------------

def _fashion_inputs(tmp_path: Path, n: int = 12) -> dict:
    image = pytest.importorskip("sciexplain_image")
    X, y = image.load_fashion_mnist("test")
    x = image.fashion_to_tensor(X[:n]).numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:n])
    torch.save(image.load_fashion_cnn().state_dict(), tmp_path / "weights.pt")
    return {"x": x, "y": y[:n]}


PIPELINE = textwrap.dedent("""\
    [run]
    name = "fashion"
    seed = 3
    chunk = 5
    scheduler = "serial"
    progress = false

    [data]
    file = "x.npy"
    dims = ["image", "color", "y", "x"]
    target_file = "y.npy"

    [model]
    state_dict = "weights.pt"
    architecture = "image:FashionCNN"

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
    steps = 4
    patch = [7, 7]
    removal = "uniform"
    pool = ["color"]

    [[figures]]
    name = "heatmap"
    kind = "heatmap"
    method = "lrp"
    params = { sample = 1, pool = ["color"] }

    [[figures]]
    name = "curves"
    kind = "perturbation"
    """)


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name not in ("_chunks", "figures")) + sorted((out / "figures").iterdir())




def test_file_pipeline_provenance_everywhere_and_deterministic(tmp_path):
    inputs = _fashion_inputs(tmp_path)
    cfg = tmp_path / "fashion.toml"
    cfg.write_text(PIPELINE)
    first = run(cfg, out=tmp_path / "one")
    second = run(cfg, out=tmp_path / "two", scheduler="threads")
    # the relevance: the contract, the true class, the ledger
    R = first.relevance["lrp"]
    assert R.dims == ("image", "color", "y", "x") and R.shape == (12, 1, 28, 28)
    assert R.target.values.tolist() == inputs["y"].tolist()
    R.relevance.check()
    image = pytest.importorskip("sciexplain_image")
    ref = sx.explain(image.load_fashion_cnn(), torch.from_numpy(inputs["x"]), target=inputs["y"],
                     preset="epsilon-plus-box", bounds=(0.0, 1.0))
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6)
    # same file twice (serial, then threads): identical numbers
    for label in ("lrp", "gradient"):
        assert np.array_equal(first.relevance[label].values, second.relevance[label].values)
    assert first.evaluation == second.evaluation
    rows = list(csv.DictReader(line for line in (tmp_path / "one" / "evaluation.csv").read_text().splitlines()
                               if not line.startswith("#")))
    assert {(r["method"], r["order"]) for r in rows} >= {("lrp", "morf"), ("lrp", "lerf"), ("gradient", "morf"),
                                                         ("random", "random")}
    # ABPC rows are named ABPC, every other row is an AOPC
    assert {r["metric"] for r in rows if r["order"] == "lerf - morf"} == {"ABPC"}
    assert {r["metric"] for r in rows if r["order"] != "lerf - morf"} == {"AOPC"}
    with xr.open_dataarray(tmp_path / "one" / "pooled_colorless_lrp.nc") as P, \
            xr.open_dataarray(tmp_path / "two" / "pooled_colorless_lrp.nc") as Q:
        assert P.dims == ("image", "y", "x") and np.array_equal(P.values, Q.values)
    # provenance: in provenance.json and in every output file
    record = json.loads((tmp_path / "one" / "provenance.json").read_text())
    for key in ("config", "config_sha256", "versions", "seeds", "inputs", "started", "finished", "machine"):
        assert key in record
    for pkg in ("sciexplain", "torch", "numpy", "xarray"):
        assert pkg in record["versions"]
    assert record["seeds"]["run"] == 3 and "image" in record["versions"]["plugins"]
    hashes = {Path(i["path"]).name: i["sha256"] for i in record["inputs"]}
    for name in ("x.npy", "y.npy", "weights.pt"):
        assert hashes[name] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    assert record["config_sha256"] == json.loads((tmp_path / "two" / "provenance.json").read_text())["config_sha256"]
    files = _outputs(tmp_path / "one")
    assert {p.suffix for p in files} >= {".zarr", ".nc", ".csv", ".png", ".json", ".md"}
    for path in files:
        got = provenance_of(path)
        if got:
            assert got["config_sha256"] == record["config_sha256"], path


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    _fashion_inputs(tmp_path, n=12)
    cfg = tmp_path / "fashion.toml"
    cfg.write_text(PIPELINE.split("[evaluation.perturbation]")[0])
    original = explain_runner._explain_batch

    class Interrupt:
        calls = 0

        def __call__(self, *args, **kwargs):
            Interrupt.calls += 1
            if Interrupt.calls == 4:  # probe, chunk 0, chunk 1, then chunk 2 of the first method fails
                raise KeyboardInterrupt
            return original(*args, **kwargs)

    monkeypatch.setattr(explain_runner, "_explain_batch", Interrupt())
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "out")
    partial = ds.open_relevance(tmp_path / "out" / "relevance_lrp.zarr", complete=False)
    assert partial.attrs["chunks_written"] == "2 of 3"
    monkeypatch.setattr(explain_runner, "_explain_batch", original)
    resumed = run(cfg, out=tmp_path / "out")
    assert resumed.chunks_computed == {"lrp": 1, "gradient": 3}
    fresh = run(cfg, out=tmp_path / "fresh")
    assert fresh.chunks_computed == {"lrp": 3, "gradient": 3}
    assert np.array_equal(resumed.relevance["lrp"].values, fresh.relevance["lrp"].values)
    assert run(cfg, out=tmp_path / "out").chunks_computed == {"lrp": 0, "gradient": 0}


def test_a_failing_sample_is_named_and_the_cli_exits_3(tmp_path, capsys):
    inputs = _fashion_inputs(tmp_path, n=10)
    x = inputs["x"].copy()
    x[7, 0, 3, 3] = np.inf
    np.save(tmp_path / "x.npy", x)
    cfg = tmp_path / "fashion.toml"
    cfg.write_text(PIPELINE)
    with pytest.raises(PipelineError, match="sample 7"):
        run(cfg, out=tmp_path / "out")
    assert ds.open_relevance(tmp_path / "out" / "relevance_lrp.zarr", complete=False).attrs["chunks_written"] == "1 of 2"
    assert main(["run", str(cfg), "--out", str(tmp_path / "cli")]) == 3
    assert "sample 7" in capsys.readouterr().err


class _Payload:
    """Unpickling this would create a file: the marker proves whether a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused(tmp_path):
    _fashion_inputs(tmp_path, n=4)
    marker = tmp_path / "pwned"
    torch.save({"weight": _Payload(marker)}, tmp_path / "weights.pt")
    cfg = tmp_path / "fashion.toml"
    cfg.write_text(PIPELINE)
    with pytest.raises(PipelineError, match="weights_only=True"):
        run(cfg, out=tmp_path / "out")
    assert not marker.exists(), "the pickle must never run"
    torch.save({"not": "tensors"}, tmp_path / "weights.pt")
    with pytest.raises(PipelineError, match="state dict of tensors"):
        run(cfg, out=tmp_path / "out2")


def test_torchscript_models_load_and_are_explained_like_the_eager_model(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 6)), tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32))
    config = {"run": {"scheduler": "serial", "progress": False, "chunk": 4},
              "data": {"file": str(tmp_path / "x.npy")}, "model": {"torchscript": str(tmp_path / "model.pt")},
              "methods": [{"name": "lrp"}]}
    loaded = sx.pipeline.loading.load_model(config["model"], {}, seed=0)
    x = torch.from_numpy(np.load(tmp_path / "x.npy"))
    assert torch.equal(loaded(x), model(x))
    # the file is converted to an eager module (sciexplain.canonizers.torchscript), so LRP explains it
    result = run(config, out=tmp_path / "out")
    ref = sx.explain(model, x, preset="epsilon-plus")
    np.testing.assert_allclose(result.relevance["lrp"].values, ref.values, rtol=1e-5, atol=1e-6)
    hashes = {Path(i["path"]).name: i["sha256"] for i in result.provenance["inputs"]}
    assert hashes["model.pt"] == hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()


def test_progress_announces_every_step_with_its_time(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Linear(6, 3)).eval()
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 6)), tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
    config = {"run": {"scheduler": "serial", "chunk": 4}, "data": {"file": str(tmp_path / "x.npy")},
              "model": {"torchscript": str(tmp_path / "model.pt")}, "methods": [{"name": "lrp"}]}
    run(config, out=tmp_path / "shown", progress=True)
    err = capsys.readouterr().err
    for what in ("loading the data", "loading the model", "explaining the first sample with every method"):
        assert f"sciexplain: {what}" in err and re.search(rf"{what}.*: done in \d+\.\d s", err), err
    run(config, out=tmp_path / "quiet", progress=False)
    assert "sciexplain:" not in capsys.readouterr().err


def test_domain_protocol_defaults_and_plugin_tables():
    from sciexplain.plugins import Domain

    base = Domain()
    for member in ("pipeline_loaders", "pipeline_models", "pipeline_architectures", "pipeline_poolings",
                   "pipeline_figures"):
        assert getattr(base, member)() == {}
    domains = sx.pipeline.domains.load_named_domains({"eeg", "image"})[0]
    if "eeg" in domains:
        eeg = domains["eeg"]
        assert set(eeg.pipeline_models()) == {"LinearEEG", "CompactEEGNet", "SturmDNN"}
        assert "finger_movements" in eeg.pipeline_loaders() and "topomap" in eeg.pipeline_figures()
    if "image" in domains:
        image = domains["image"]
        assert {"efficientnet_lite0", "fashion_cnn"} <= set(image.pipeline_models())
        assert "box_shares" in image.pipeline_poolings() and "photos" in image.pipeline_loaders()


# -- the examples, on small settings ------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_examples_validate():
    for path in sorted(EXAMPLES.glob("*.toml")):
        assert main(["check", str(path)]) == 0, path


@pytest.mark.slow
def test_eeg_example_runs_small(tmp_path):
    pytest.importorskip("sciexplain_eeg")
    result = run(EXAMPLES / "eeg_finger_movements.toml", small=True, out=tmp_path, progress=False)
    R = result.relevance["lrp"]
    assert R.dims == ("epoch", "channel", "time") and R.sizes["epoch"] == 12
    R.relevance.check()
    assert "condition" in R.coords and len(R.channel) == 28
    with xr.open_dataarray(tmp_path / "pooled_windows_70ms_lrp.nc") as W:
        W.relevance.check()
    with xr.open_dataarray(tmp_path / "pooled_lobes_lrp_right.nc") as P:
        P.relevance.check()
    methods = {r["method"] for r in result.evaluation}
    assert methods == {"lrp", "gradient_x_input", "sensitivity", "random"}
    for name in ("single_trial_right", "single_trial_left", "class_topomaps", "left_right", "perturbation",
                 "spray_lrp_right"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    assert all(provenance_of(p)["config_sha256"] == result.provenance["config_sha256"]
               for p in tmp_path.glob("*.nc"))
    # [analysis.spray]: the 12 epochs' evidence for "right" read back from the chunked netCDF
    # store (data in chunks of 6, per-epoch coords in one) equals sx.spray on the relevance itself
    with xr.open_dataset(tmp_path / "spray_lrp_right.nc") as ds:
        with pytest.warns(sx.ExplainWarning, match="one cluster"):  # 12 epochs, one cluster: kept as a note
            ref = sx.spray(result.relevance["lrp_right"].compute(), downsample={"time": 4}, n_neighbors=8,
                           max_clusters=6)
        assert ds.attrs["n_clusters"] == 1 and "eigengap picked one cluster" in ds.attrs["notes"]
        np.testing.assert_array_equal(ds.cluster.values, ref.cluster.values)
        np.testing.assert_allclose(ds.prototype.values, ref.prototype.values, rtol=1e-6, atol=1e-12)
        assert ds.attrs["class"] == 1 and ds.sizes["epoch"] == 12


@pytest.mark.slow
def test_image_example_runs_small(tmp_path):
    pytest.importorskip("sciexplain_image")
    result = run(EXAMPLES / "image_photos.toml", small=True, out=tmp_path, progress=False)
    R = result.relevance["lrp"]
    assert R.dims == ("image", "color", "y", "x") and list(R.image.values) == ["chelsea", "coffee"]
    R.relevance.check()
    with xr.open_dataset(tmp_path / "pooled_box_vs_context_lrp.nc") as shares:
        total = shares["relevance"].sum("region").values
        np.testing.assert_allclose(total, R.prediction.values, rtol=1e-4, atol=1e-4)
        assert json.loads(shares.attrs["provenance"])["config_sha256"] == result.provenance["config_sha256"]
    orders = {(r["method"], r["order"]) for r in result.evaluation}
    assert ("lrp", "morf") in orders and ("random", "random") in orders
    assert (tmp_path / "figures" / "box_shares.png").exists()


def test_the_cli_prints_the_continuity_and_randomization_checks(tmp_path, capsys):
    _fashion_inputs(tmp_path, n=6)
    cfg = tmp_path / "fashion.toml"
    cfg.write_text(PIPELINE + textwrap.dedent("""\

        [evaluation.continuity]
        points = 3
        radius = 0.05
        samples = 2
        methods = ["lrp"]

        [evaluation.randomization]
        cascade = false
        samples = 2
        methods = ["gradient"]
        """))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    import csv
    with open(tmp_path / "out" / "checks.csv") as fh:  # a provenance comment line, then the table
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert rows and {r["method"] for r in rows} == {"lrp", "gradient"}
    for r in rows:
        line = next(ln for ln in printed.splitlines() if r["check"] in ln and ln.strip().startswith(r["method"])
                    and (not r["layer"] or f" {r['layer']}:" in ln))
        assert f"mean {float(r['mean']):.4f}" in line and f"({r['n_samples']} samples)" in line


def test_class_names_label_the_explained_targets_only_when_they_fit():
    """A model's ``class_names`` become the ``target_name`` coordinate; names that do not cover
    every target, or a single string, leave the relevance as it was."""
    import types
    import xarray as xr
    from sciexplain.pipeline.runner import _with_class_names
    R = xr.DataArray(np.zeros((3, 2)), dims=("sample", "feature"),
                     coords={"target": ("sample", np.array([0, 2, 1]))})
    named = _with_class_names(R, types.SimpleNamespace(class_names=["cat", "dog", "owl"]))
    assert list(named.target_name.values) == ["cat", "owl", "dog"]
    for names in (["cat", "dog"], "cat dog owl", None):
        assert "target_name" not in _with_class_names(R, types.SimpleNamespace(class_names=names)).coords
    assert "target_name" not in _with_class_names(R, object()).coords
