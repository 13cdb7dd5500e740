"""``DOMAIN.demo(out)``: the shipped CNN, BiLSTM and transformer on held-out 20 Newsgroups posts, every output
read back from disk."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import xarray as xr

import sciexplain_text as st
from sciexplain_text.render import control_escape

MODELS = {"newsgroups_cnn", "newsgroups_lstm", "newsgroups_bert"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("text_demo")
    return st.DOMAIN.demo(out), out


@pytest.mark.slow
def test_demo_writes_every_model_and_the_files_open(demo):
    import matplotlib.image
    summary, out = demo
    assert set(summary["models"]) == MODELS
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    for name, info in summary["models"].items():
        assert info["ledger_max_residual"] < 1e-3
        assert info["held_out_accuracy"] == pytest.approx(info["recorded_test_accuracy"], abs=1e-4)
        assert info["class_names"] == ["alt.atheism", "sci.space"]
        tex = (out / info["files"]["latex"]).read_text(encoding="utf-8")
        assert tex.startswith("\\documentclass") and "\\colorbox{" in tex and tex.rstrip().endswith("\\end{document}")
        for fig in info["files"]["figures"]:
            image = matplotlib.image.imread(out / fig)
            assert image.ndim == 3 and min(image.shape[:2]) > 300  # 300 dpi
        with xr.open_dataarray(out / info["files"]["netcdf"]) as R:
            assert R.dims == ("document", "token") and R.sizes["document"] == info["n_explained"] == 16
            # the ledger, read back from the file: relevance + absorbed = f(x) per post
            np.testing.assert_allclose(R.sum("token").values + R.absorbed.values, R.prediction.values,
                                       rtol=1e-4, atol=1e-5)
            vals = R.values.astype(float)
            pad = R.is_padding.values
            special = R.is_special.values if "is_special" in R.coords else np.zeros(pad.shape, bool)
            rows = info["documents"]
            assert [r["predicted"] for r in rows] == [info["class_names"][p] for p in R.predicted.values]
            for d, row in enumerate(rows):
                assert row["prediction"] == pytest.approx(float(R.prediction.values[d]), rel=1e-6)
                assert row["words"] == pytest.approx(vals[d][~pad[d] & ~special[d]].sum(), rel=1e-5, abs=1e-6)
                assert row["words"] + row["special_tokens"] + row["padding"] + row["absorbed"] == pytest.approx(
                    row["prediction"], rel=1e-4, abs=1e-5)
                assert row["absorbed_share_of_fx"] == pytest.approx(row["absorbed"] / row["prediction"])
            assert info["absorbed_share_of_fx"]["median"] == pytest.approx(
                float(np.median([r["absorbed_share_of_fx"] for r in rows])))


@pytest.mark.slow
def test_demo_explains_the_transformer_with_its_default_and_writes_words(demo):
    summary, out = demo
    info = summary["models"]["newsgroups_bert"]
    assert info["preset"] == "cp-lrp" == st.model_info("newsgroups_bert").default_preset
    assert info["tokens"] == "subword pieces"
    assert "text: transformer" in info["absorbed_share_of_fx"]["statement"]
    assert {"netcdf", "netcdf_words", "html", "latex", "figures"} <= set(info["files"])
    assert info["files"]["figures"] == ["newsgroups_bert_document.png", "newsgroups_bert_methods.png",
                                        "newsgroups_bert_top_words.png"]
    with xr.open_dataarray(out / info["files"]["netcdf"]) as R, \
            xr.open_dataarray(out / info["files"]["netcdf_words"]) as W:
        assert R.attrs["preset"] == "cp-lrp" and R.is_special.values[:, 0].all()  # [CLS] first
        assert W.dims == ("document", "word") and W.sizes["word"] < R.sizes["token"]
        np.testing.assert_allclose(W.sum("word").values, R.sum("token").values, rtol=1e-5, atol=1e-6)
        words = W.word_text.values[~W.is_empty.values & ~W.is_special.values]
        assert words.size and not [w for w in words if str(w).startswith("##")]
        special = np.where(R.is_special.values, R.values, 0).sum(axis=1)
        np.testing.assert_allclose([r["special_tokens"] for r in info["documents"]], special, rtol=1e-5, atol=1e-6)
        # the page and the LaTeX show words, as the figure does: one coloured box per word, its value the sum
        word_values = [W.values[d][~W.is_empty.values[d] & ~W.is_special.values[d]][:-1] for d in range(16)]
        blocks = re.findall(r'pre-wrap[^>]*>(.*?)</div></div>',
                            (out / info["files"]["html"]).read_text(encoding="utf-8"), re.S)
        for block, values in zip(blocks, word_values):
            titles = [float(t) for t in re.findall(r'<span style="[^"]*" title="([^"]+)">', block)]
            np.testing.assert_allclose(titles, values, rtol=1e-3, atol=1e-7)
        d = int(re.search(r"document(\d+)\.tex", info["files"]["latex"]).group(1))
        tex = (out / info["files"]["latex"]).read_text(encoding="utf-8")
        assert tex.count("\\colorbox{") == len(word_values[d]) < int((~R.is_padding.values[d]).sum()) - 2
        assert f"[CLS], [SEP] {float(R.is_special.values[d] @ R.values[d]):.3f}" in tex  # in the header comment
    assert not [w for ws in info["top_words"].values() for w in ws if w.startswith("##") or w == "[CLS]"]


@pytest.mark.slow
def test_demo_html_is_escaped(demo):
    summary, out = demo
    for name, info in summary["models"].items():
        page = (out / info["files"]["html"]).read_text(encoding="utf-8")
        assert "<script" not in page and "rgba(" in page
        body = page.split("\n", 1)[1]
        blocks = re.findall(r'pre-wrap[^>]*>(.*?)</div></div>', body, re.S)
        assert len(blocks) == info["n_explained"]
        with xr.open_dataarray(out / info["files"]["netcdf"]) as R:
            texts = [str(t) for t in R.text.values]
        for block, text in zip(blocks, texts):
            shown = re.sub(r'<span style="background-color: rgba\([0-9,.]+\)" title="[^"<>]*">|</span>', "", block)
            assert "<" not in shown and ">" not in shown  # every < > of the posts is an entity
            assert html.unescape(shown) == control_escape(text)  # the post as written
        assert "&gt;" in page and "&lt;" in page  # the posts quote with ">" and give addresses in <...>
