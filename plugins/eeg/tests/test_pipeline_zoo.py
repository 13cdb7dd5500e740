"""examples/eeg_braindecode_zoo.toml: a braindecode registry network with its shipped weights, run as a pipeline
on small settings and compared with the plugin's own explanation of the same epochs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("braindecode")
pytest.importorskip("dask")

import sciexplain as sx  # noqa: E402,F401  (the relevance accessor)
import xarray as xr  # noqa: E402
from sciexplain.pipeline import run  # noqa: E402

from sciexplain_eeg import explain_epochs, make_synthetic_epochs  # noqa: E402
from sciexplain_eeg.zoo import SHA256_FILE, ZOO, load_zoo, zoo_weights_path  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "eeg_braindecode_zoo.toml"


@pytest.mark.slow
def test_zoo_example_runs_small_and_matches_the_plugin(tmp_path):
    result = run(EXAMPLE, small=True, out=tmp_path, progress=False)
    R = result.relevance["lrp"].load()
    assert R.dims == ("epoch", "channel", "time") and R.shape == (8, 30, 101)
    R.relevance.check(rtol=1e-5, atol=1e-5 * float(np.abs(R.prediction.values).max()))
    # the reference: the shipped network loaded by load_zoo, explained by the plugin on the same epochs
    epochs, _ = make_synthetic_epochs(n_epochs=8, seed=1000)
    ref = explain_epochs(load_zoo("EEGConformer"), epochs)
    # no preset in the file: the network's registry default (cp-lrp with the biases' share passed on to
    # the inputs), the same rules layer by layer as sx.explain(model, epochs) runs; the pipeline names
    # the mapping by the core's description, the plugin by the registry's name
    assert ref.attrs["preset"] == ZOO["EEGConformer"].default_preset_name == "cp-lrp + bias to inputs"
    assert R.attrs["preset"] == "custom mapping (base='cp-lrp')"
    assert R.attrs["rules"] == ref.attrs["rules"] and "BiasToInputs" in R.attrs["rules"]
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-4, atol=1e-6 * float(np.abs(ref.values).max()))
    np.testing.assert_allclose(R.prediction.values, ref.prediction.values, rtol=1e-5)
    assert list(R.condition.values) == list(ref.condition.values)
    assert (R.predicted.values == R.label.values).all()  # the shipped network classifies these epochs
    right = result.relevance["lrp_right"].load()
    assert set(right.target.values) == {1}
    for name in ("windows_100ms_lrp", "lobes_lrp", "lobes_lrp_right"):
        with xr.open_dataarray(tmp_path / f"pooled_{name}.nc") as pooled:
            pooled.load().relevance.check(rtol=1e-5, atol=1e-5 * float(np.abs(pooled.prediction.values).max()))
    with xr.open_dataarray(tmp_path / "pooled_lobes_lrp_right.nc") as lobes:
        central = lobes.sel(roi="central").sum("time")
        # the evidence for "right" at the central electrodes (C3 is the "right" source) is larger in
        # right-hand trials than in left-hand ones
        assert central.values[lobes.condition.values == "right"].mean() > \
            central.values[lobes.condition.values == "left"].mean()
    rows = list(csv.DictReader(ln for ln in (tmp_path / "evaluation.csv").read_text().splitlines()
                               if not ln.startswith("#")))
    assert {r["method"] for r in rows} == {"lrp", "gradient_x_input", "sensitivity", "random"}
    for name in ("single_trial_right", "class_topomaps", "roi_timecourse", "perturbation"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    # the provenance names the weight file by the sha256 the plugin ships for it
    inputs = json.loads((tmp_path / "provenance.json").read_text())["inputs"]
    weights = zoo_weights_path("EEGConformer")
    recorded = json.loads((weights.parent / SHA256_FILE).read_text())[weights.name]
    assert any(Path(i["path"]).name == weights.name and i["sha256"] == recorded for i in inputs)
