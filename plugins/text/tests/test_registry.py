"""The registry of shipped text models: every shipped file named, entries agree with the training records."""

from __future__ import annotations

import json

import pytest

import sciexplain_text as st
from sciexplain.errors import DataNotFoundError
from sciexplain_text.models import WEIGHTS_DIR


def test_every_shipped_file_is_in_the_registry_and_agrees_with_its_record():
    stems = {p.name[: -len(".json")] for p in WEIGHTS_DIR.glob("*.json") if not p.name.endswith(".vocab.json")}
    assert stems == set(st.SHIPPED)
    for name, entry in st.SHIPPED.items():
        assert entry.name == name and st.model_info(name) is entry
        rec = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert rec["model"] == entry.architecture
        assert rec["test_accuracy"] == pytest.approx(entry.held_out_accuracy, abs=5e-5)
        assert rec["n_test"] == entry.n_held_out == len(rec["test_indices"])
        if "cv5_accuracy" in rec:
            assert rec["cv5_accuracy"] == pytest.approx(entry.cv_accuracy, abs=5e-5)
        assert entry.tokenizer == ("subword" if rec["model"] == "TransformerClassifier" else "word")
        assert entry.default_preset.startswith("cp-lrp" if entry.tokenizer == "subword" else "epsilon")
        assert ("BBC" in entry.data) == ("BBC" in rec["data"])


def test_transformer_cv_accuracy_is_the_benchmarks():
    path = WEIGHTS_DIR.parents[3] / "benchmarks" / "results" / "text_transformer.json"
    res = json.loads(path.read_text())["results"]["newsgroups_bert"]
    assert st.model_info("newsgroups_bert").cv_accuracy == pytest.approx(res["cv_accuracy"], abs=5e-4)


def test_unknown_model_names_the_shipped_ones():
    with pytest.raises(DataNotFoundError, match="bbc_bert"):
        st.model_info("bbc_gpt")
    with pytest.raises(DataNotFoundError, match="bbc_bert"):
        st.load_model("bbc_gpt")
