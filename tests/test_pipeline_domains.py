"""The text and video pipelines (``examples/text_newsgroups.toml``, ``examples/video_motion.toml``) on
their small settings, twice, against references computed here with the plugins' own functions; the
pipeline's continuity and randomization evaluations."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import sciexplain as sx
from conftest import provenance_of
from sciexplain.cli import main
from sciexplain.pipeline import ConfigError, check, run

pytest.importorskip("dask")
pytest.importorskip("zarr")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))




def _every_output_has_the_provenance(out: Path, sha: str) -> None:
    files = [p for p in out.iterdir() if p.name not in ("_chunks", "figures")] + list((out / "figures").iterdir())
    assert files
    for path in files:
        got = provenance_of(path)
        if got:
            assert got["config_sha256"] == sha, path


def _same_numbers(a: Path, b: Path) -> None:
    """Every netCDF output of run ``a`` has the same values as run ``b``'s."""
    names = sorted(p.name for p in a.glob("*.nc"))
    assert names == sorted(p.name for p in b.glob("*.nc"))
    for name in names:
        with xr.open_dataset(a / name) as p, xr.open_dataset(b / name) as q:
            for var in p.data_vars:
                if np.issubdtype(p[var].dtype, np.number):
                    assert np.array_equal(p[var].values, q[var].values, equal_nan=True), (name, var)


def _run_twice(example: str, tmp_path: Path):
    """The example on small settings, on its own scheduler and serially (the numbers must match)."""
    first = run(EXAMPLES / f"{example}.toml", small=True, out=tmp_path / "one", progress=False)
    second = run(EXAMPLES / f"{example}.toml", small=True, out=tmp_path / "two", progress=False, scheduler="serial")
    return first, second


# -- text -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_text_example_runs_small_twice_against_the_plugin(tmp_path):
    st = pytest.importorskip("sciexplain_text")
    first, second = _run_twice("text_newsgroups", tmp_path)
    R = first.relevance["lrp"].load()
    assert R.dims == ("document", "token") and R.sizes["document"] == 4
    R.relevance.check()
    # the reference: the plugin's explain_documents on the first four held-out posts
    from sciexplain_text.models import WEIGHTS_DIR
    held_out = json.loads((WEIGHTS_DIR / "newsgroups_cnn.json").read_text())["test_indices"][:4]
    corpus = st.load_mini_newsgroups()
    model, tok = st.load_model("newsgroups_cnn")
    docs = st.Documents([corpus.texts[i] for i in held_out], tok, labels=corpus.labels[held_out],
                        class_names=corpus.class_names)
    ref = st.explain_documents(model, docs)
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6)
    assert R.coords["post"].values.tolist() == held_out
    assert R.coords["word"].values.tolist() == ref.coords["word"].values.tolist()
    assert R.coords["label"].values.tolist() == corpus.labels[held_out].tolist()
    # words: the plugin's group_words, same totals per document
    with xr.open_dataarray(tmp_path / "one" / "pooled_words_lrp.nc") as W:
        G = st.group_words(ref)
        np.testing.assert_allclose(W.values, G.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(W.sum("word").values, R.sum("token").values, rtol=1e-5)
    with xr.open_dataarray(tmp_path / "one" / "pooled_word_types_lrp.nc") as S:
        ref_types = st.word_type_relevance(ref, by="target")
        assert list(S["class"].values) == list(ref_types["class"].values) == ["sci.space"]
        np.testing.assert_allclose(S.values, ref_types.values, rtol=1e-5, atol=1e-6)
    # word deletion: the plugin's removal, one token per step, most relevant first
    ids = docs.ids if docs.ids.shape[1] == 400 else st.prepare_documents(docs, model).ids
    morf = sx.evaluate.perturbation_curve(model, ids, ref, steps=3, removal=st.DOMAIN.removal())
    with xr.open_dataarray(tmp_path / "one" / "perturbation_lrp_morf.nc") as c:
        np.testing.assert_allclose(c.values, morf.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c.values[:, 0], ref.prediction.values, rtol=1e-5)
    rows = {(r["method"], r["order"]) for r in first.evaluation}
    assert {("lrp", "morf"), ("lrp", "lerf"), ("sensitivity", "morf"), ("random", "random")} <= rows
    # randomization: one call of sciexplain.evaluate.randomization on the same posts
    rand = sx.evaluate.randomization(model, ids, "lrp", seed=0, preset=st.explain.DEFAULT_PRESET)
    with xr.open_dataset(tmp_path / "one" / "randomization_lrp.nc") as got:
        assert list(got["layer"].values) == ["out", "conv", "embedding"]
        np.testing.assert_allclose(got["spearman"].values, rand["spearman"].values, rtol=1e-6, atol=1e-9)
    assert {r["method"] for r in first.checks} == {"lrp", "gradient_x_input"}
    for name in ("document_0", "top_words", "perturbation"):
        assert (tmp_path / "one" / "figures" / f"{name}.png").stat().st_size > 1000
    # the same file twice (threads, then serial): the same numbers; provenance in every output
    assert first.evaluation == second.evaluation and first.checks == second.checks
    _same_numbers(tmp_path / "one", tmp_path / "two")
    _every_output_has_the_provenance(tmp_path / "one", first.provenance["config_sha256"])


@pytest.mark.slow
def test_text_state_dict_into_an_architecture_with_a_shipped_vocabulary(tmp_path):
    st = pytest.importorskip("sciexplain_text")
    model, _ = st.load_model("newsgroups_cnn")
    torch.save(model.state_dict(), tmp_path / "cnn.pt")
    config = model.config()
    params = ", ".join(f"{k} = {v}" for k, v in config.items())
    (tmp_path / "t.toml").write_text(textwrap.dedent(f"""\
        [run]
        chunk = 2
        scheduler = "serial"
        progress = false
        format = "netcdf"

        [data]
        plugin = "text"
        loader = "newsgroups"
        params = {{ split = "train", categories = ["alt.atheism"], n = 2, vocabulary = "newsgroups_cnn" }}

        [model]
        state_dict = "cnn.pt"
        architecture = "text:TextCNN"
        params = {{ {params} }}

        [[methods]]
        name = "lrp"
        target = "true"
        """))
    result = run(tmp_path / "t.toml", out=tmp_path / "out")
    R = result.relevance["lrp"].load()
    assert R.target.values.tolist() == [0, 0]  # alt.atheism, the true class
    corpus = st.load_mini_newsgroups()
    from sciexplain_text.models import WEIGHTS_DIR
    held_out = set(json.loads((WEIGHTS_DIR / "newsgroups_cnn.json").read_text())["test_indices"])
    posts = [i for i in range(200) if i not in held_out and corpus.labels[i] == 0][:2]
    assert R.coords["post"].values.tolist() == posts
    shipped, tok = st.load_model("newsgroups_cnn")
    ref = st.explain_documents(shipped, st.Documents([corpus.texts[i] for i in posts], tok), target=0)
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_text_bilstm_through_the_pipeline(tmp_path):
    st = pytest.importorskip("sciexplain_text")
    config = {"run": {"chunk": 2, "scheduler": "threads", "progress": False, "format": "netcdf",
                      "out": str(tmp_path / "out")},
              "data": {"plugin": "text", "loader": "newsgroups", "params": {"split": "test", "n": 3}},
              "model": {"plugin": "text", "name": "newsgroups_lstm"},
              "methods": [{"name": "lrp"}]}
    R = run(config).relevance["lrp"].load()
    R.relevance.check()
    from sciexplain_text.models import WEIGHTS_DIR
    posts = json.loads((WEIGHTS_DIR / "newsgroups_lstm.json").read_text())["test_indices"][:3]
    corpus = st.load_mini_newsgroups()
    model, tok = st.load_model("newsgroups_lstm")
    ref = st.explain_documents(model, st.Documents([corpus.texts[i] for i in posts], tok))
    assert R.shape == ref.shape == (3, 200)
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6)


def test_text_loader_splits_and_errors():
    st = pytest.importorskip("sciexplain_text")
    loader = st.DOMAIN.pipeline_loaders()["newsgroups"]
    test, train, whole = loader("test"), loader("train"), loader("all")
    assert len(test["y"]) == 40 and len(train["y"]) == 160 and len(whole["y"]) == 200
    assert not set(test["extras"]["index"].tolist()) & set(train["extras"]["index"].tolist())
    space = loader("all", categories=["sci.space"], n=5)
    assert space["y"].tolist() == [1] * 5
    with pytest.raises(ValueError, match="split"):
        loader("dev")
    with pytest.raises(ValueError, match="categories"):
        loader("test", categories=["rec.autos"])
    # texts without a tokenizer: to_tensor says what to do
    with pytest.raises(ValueError, match="vocabulary"):
        st.DOMAIN.to_tensor(test["native"], torch.nn.Embedding(3, 2))


# -- video ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_video_example_runs_small_twice_against_the_plugin(tmp_path):
    sv = pytest.importorskip("sciexplain_video")
    first, second = _run_twice("video_motion", tmp_path)
    R = first.relevance["lrp"].load()
    assert R.dims == ("clip", "component", "frame", "block_y", "block_x") and R.sizes["clip"] == 3
    R.relevance.check()
    # the reference: the same generated clips (make_dataset is seeded), explained by the plugin
    items = sv.make_dataset(tmp_path / "clips", 1, seed=7)
    fields = [sv.read_motion_vectors(p) for p, _ in items]
    truths = [t for _, t in items]
    model = sv.load_pretrained("cnn")
    ref = sv.explain_motion(model, fields, pool_components=False)
    np.testing.assert_allclose(R.values, ref.transpose(*R.dims).values, rtol=1e-5, atol=1e-6)
    assert R.coords["action"].values.tolist() == [t.action for t in truths]
    pooled = ref.relevance.pool("component")
    with xr.open_dataarray(tmp_path / "one" / "pooled_frames_lrp.nc") as F:
        np.testing.assert_allclose(F.values, sv.frame_relevance(pooled).values, rtol=1e-5, atol=1e-6)
    with xr.open_dataset(tmp_path / "one" / "pooled_ground_truth_lrp.nc") as gt:
        scores = sv.ground_truth_scores(pooled, truths)
        for name in ("inside_share", "area_share", "frame_correlation"):
            np.testing.assert_allclose(gt[name].values, scores[name].values, rtol=1e-5, atol=1e-6)
    with xr.open_dataarray(tmp_path / "one" / "pooled_halves_lrp.nc") as H:
        assert list(H["region"].values) == ["left", "right"]  # the halves cover the frame: no remainder
        np.testing.assert_allclose(H.sum(["frame", "region"]).values, pooled.sum(["frame", "block_y", "block_x"]).values,
                                   rtol=1e-5, atol=1e-6)
    with xr.open_dataarray(tmp_path / "one" / "pooled_block_map_lrp.nc") as B:
        assert B.dims == ("clip", "block_y", "block_x")
    # block perturbation: the plugin's own block_perturbation (block-frames zeroed, most relevant first) on
    # the run's relevance (relevance equal to 1e-5 can still rank near-equal blocks the other way round)
    morf = sv.block_perturbation(model, fields, R.relevance.pool("component"), order="morf", steps=3,
                                 regions_per_step=4)
    with xr.open_dataarray(tmp_path / "one" / "perturbation_lrp_morf.nc") as c:
        np.testing.assert_allclose(c.values, morf.values, rtol=1e-5, atol=1e-5)
    # continuity and randomization, chunk-wise on the run's scheduler
    with xr.open_dataset(tmp_path / "one" / "continuity_lrp.nc") as cont:
        assert cont["ratio"].shape == (3, 5) and np.isfinite(cont["continuity"].values).all()
        np.testing.assert_allclose(cont["continuity"].values, cont["ratio"].max("pair").values)
    with xr.open_dataset(tmp_path / "one" / "randomization_lrp.nc") as rand:
        x = sv.fields_to_tensor(fields, model)[0]
        ref_rand = sx.evaluate.randomization(model, x, "lrp", seed=0, preset=sv.explain.DEFAULT_PRESET)  # the run's
        np.testing.assert_allclose(rand["spearman"].values, ref_rand["spearman"].values, rtol=1e-6, atol=1e-9)
    checks = {(r["method"], r["check"].split(" ")[0]) for r in _rows(tmp_path / "one" / "checks.csv")}
    assert checks == {(m, c) for m in ("lrp", "gradient_x_input") for c in ("continuity", "randomization")}
    for name in ("frame_curve_0", "frames_0", "perturbation"):
        assert (tmp_path / "one" / "figures" / f"{name}.png").stat().st_size > 1000
    assert first.evaluation == second.evaluation and first.checks == second.checks
    for label in first.relevance:
        assert np.array_equal(first.relevance[label].values, second.relevance[label].values)
    _same_numbers(tmp_path / "one", tmp_path / "two")
    _every_output_has_the_provenance(tmp_path / "one", first.provenance["config_sha256"])


@pytest.mark.slow
def test_video_fisher_model_on_descriptors_maps_back_to_blocks(tmp_path):
    sv = pytest.importorskip("sciexplain_video")
    config = {"run": {"chunk": 2, "scheduler": "threads", "progress": False, "format": "netcdf",
                      "out": str(tmp_path / "out")},
              "data": {"plugin": "video", "loader": "generated",
                       "params": {"n_per_action": 1, "seed": 3, "actions": ["updown", "wave"]}},
              "model": {"plugin": "video", "name": "motion_fisher"},
              "methods": [{"name": "lrp"}],
              "pooling": [{"name": "blocks", "kind": "plugin", "function": "blocks"}]}
    result = run(config)
    Rd = result.relevance["lrp"]
    assert Rd.dims == ("clip", "descriptor", "feature")
    with xr.open_dataarray(tmp_path / "out" / "pooled_blocks_lrp.nc") as B:
        items = sv.make_dataset(tmp_path / "clips", 1, seed=3)
        fields = [sv.read_motion_vectors(p) for p, t in items if t.action in ("updown", "wave")]
        ref = sv.explain_motion(sv.load_pretrained("fisher"), fields)
        assert B.dims == ref.dims
        np.testing.assert_allclose(B.values, ref.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(B.absorbed.values, ref.absorbed.values, rtol=1e-5, atol=1e-6)


# -- validation of the evaluation tables -----------------------------------------------------------

def test_continuity_and_randomization_tables_are_validated(tmp_path):
    bad = textwrap.dedent("""\
        [data]
        file = "x.npy"

        [model]
        torchscript = "m.pt"

        [[methods]]
        name = "lrp"

        [evaluation.continuity]
        points = 1
        radius = -0.5
        sample = 3
        methods = ["nope"]

        [evaluation.randomization]
        cascade = "yes"
        layers = [1]
        """)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "m.pt").write_bytes(b"")
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as info:
        check(path)
    problems = {p.path: p.message for p in info.value.problems}
    assert "expected an integer >= 2" in problems["evaluation.continuity.points"]
    assert "positive" in problems["evaluation.continuity.radius"]
    assert "did you mean 'samples'" in problems["evaluation.continuity.sample"]
    assert "'nope'" in problems["evaluation.continuity.methods"]
    assert "is a string" in problems["evaluation.randomization.cascade"]
    assert "module paths" in problems["evaluation.randomization.layers"]
    assert main(["check", str(EXAMPLES / "text_newsgroups.toml")]) == 0
    assert main(["check", str(EXAMPLES / "video_motion.toml")]) == 0
