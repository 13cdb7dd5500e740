"""braindecode's networks through the EEG plugin: shipped weights, labels, ledger, netCDF, the registry."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("braindecode")

import sciexplain as sx  # noqa: E402
import xarray as xr  # noqa: E402
from sciexplain.errors import InputError  # noqa: E402

from sciexplain_eeg import ground_truth_scores, make_synthetic_epochs  # noqa: E402
from sciexplain_eeg.synthetic import DEFAULT_CH_NAMES  # noqa: E402
from sciexplain_eeg.zoo import (ZOO, BraindecodeEEG, HeadsApartMHA, load_zoo, make_braindecode,  # noqa: E402
                                wrap_braindecode, zoo_weights_path)

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "eeg_zoo.json"
NAMES = list(ZOO)


@pytest.fixture(scope="module")
def fresh():
    """12 fresh synthetic epochs (30 channels x 101 samples at 100 Hz, as the shipped weights expect)."""
    return make_synthetic_epochs(n_epochs=12, seed=77)


class _Loaded(dict):
    """The shipped networks, each loaded once, on first use."""

    def __missing__(self, name):
        self[name] = load_zoo(name)
        return self[name]


@pytest.fixture(scope="module")
def models():
    return _Loaded()


def test_registry_names_the_five_networks_with_documentation():
    assert NAMES == ["ShallowFBCSPNet", "Deep4Net", "EEGNetv4", "EEGConformer", "ATCNet"]
    for entry in ZOO.values():
        assert entry.description and entry.accuracy is not None and 0.5 < entry.accuracy <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_are_plain_tensors(name):
    with zoo_weights_path(name).open("rb") as fh:
        saved = torch.load(fh, map_location="cpu", weights_only=True)
    assert set(saved) == {"state_dict", "meta"}
    assert saved["meta"]["ch_names"] == list(DEFAULT_CH_NAMES) and saved["meta"]["scaling"] == 1e6


@pytest.mark.parametrize("name", NAMES)
def test_network_is_explained_through_the_plugin(name, models, fresh, tmp_path):
    model = models[name]
    epochs, _ = fresh
    assert isinstance(model, BraindecodeEEG) and model.architecture == name
    R = sx.explain(model, epochs)  # the domain dispatch: epochs in, labelled relevance out
    assert R.dims == ("epoch", "channel", "time") and R.shape == (12, 30, 101)
    assert list(R.channel.values) == list(DEFAULT_CH_NAMES)
    np.testing.assert_allclose(R.time.values, epochs.times)
    assert set(R.condition.values) <= {"left", "right"} and R.attrs["input_units"] == "uV"
    assert R.attrs["preset"] == ZOO[name].default_preset  # the registry's default, chosen by the study
    assert (R.predicted.values == R.label.values).mean() >= 0.9
    # the ledger: relevance + absorbed == the explained logit, to 1e-5 relative
    pred = R.prediction.values
    total = R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values
    np.testing.assert_allclose(total, pred, rtol=1e-5, atol=1e-5 * np.abs(pred).max())
    x = torch.as_tensor(epochs.get_data() * 1e6, dtype=torch.float32)
    with torch.no_grad():
        logits = model(x).double().numpy()
    np.testing.assert_allclose(pred, logits[np.arange(12), R.target.values], rtol=1e-5, atol=1e-6)
    path = tmp_path / f"{name}.nc"
    R.to_netcdf(path)
    with xr.open_dataarray(path) as back:
        back = back.load()
    assert back.dims == R.dims and list(back.channel.values) == list(R.channel.values)
    assert list(back.condition.values) == list(R.condition.values)
    np.testing.assert_allclose(back.values, R.values)
    np.testing.assert_allclose(back.y.values, R.y.values)
    back.relevance.check(rtol=1e-5, atol=1e-5 * float(np.abs(pred).max()))


@pytest.mark.parametrize("name", NAMES)
def test_default_preset_finds_the_planted_source(name, models):
    """Top-3 electrode hits of the default preset on fresh epochs, as the benchmark measured them."""
    epochs, truth = make_synthetic_epochs(n_epochs=30, seed=1234)
    R = sx.explain(models[name], epochs)
    scores = ground_truth_scores(R, truth)
    stored = json.loads(RESULTS.read_text())["models"][name]["rows"][f"LRP {ZOO[name].default_preset}"]
    assert scores["top_hits"] >= min(0.8, stored["top_hits"] - 0.15)
    assert scores["window_share"] > 2 * scores["window_chance"]


def test_registry_agrees_with_the_stored_study():
    stored = json.loads(RESULTS.read_text())["models"]
    for name, entry in ZOO.items():
        assert entry.default_preset == stored[name]["default_preset"], name
        assert entry.accuracy == pytest.approx(stored[name]["accuracy"], abs=5e-4), name
        lrp = {m: r["abpc"][0] for m, r in stored[name]["rows"].items() if m.startswith("LRP ")}
        assert lrp[f"LRP {entry.default_preset}"] == max(lrp.values())


def test_heads_apart_attention_equals_braindecodes():
    from braindecode.models.atcnet import _MHA
    torch.manual_seed(0)
    mha = _MHA(input_dim=6, head_dim=4, output_dim=6, num_heads=3).eval()
    q = torch.randn(5, 7, 6)
    with torch.no_grad():
        np.testing.assert_allclose(HeadsApartMHA(mha)(q, q, q).numpy(), mha(q, q, q).numpy(), rtol=1e-5, atol=1e-6)


def test_wrap_leaves_the_users_network_alone_and_computes_the_same():
    from braindecode.models import ATCNet
    from braindecode.models.atcnet import _MHA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1)
        net = ATCNet(n_chans=30, n_outputs=2, n_times=101, input_window_seconds=None, sfreq=100.0,
                     conv_block_kernel_length_1=26, conv_block_pool_size_1=4, conv_block_pool_size_2=3,
                     n_windows=3, add_log_softmax=False).eval()
    x = torch.randn(3, 30, 101)
    # braindecode's MaxNormLinear rescales its weight in place in every forward (eval mode too); the
    # wrapper applies that constraint in training only, so the reference is braindecode's own network
    # with the constraint switched off
    reference = copy.deepcopy(net)
    for m in reference.modules():
        if type(m).__name__ == "MaxNormLinear":
            m._max_norm = lambda: None
    state = {k: v.clone() for k, v in net.state_dict().items()}
    model = wrap_braindecode(net, ch_names=list(DEFAULT_CH_NAMES), scaling=1e6)
    with torch.no_grad():
        expected = reference(x)
    assert sum(isinstance(m, _MHA) for m in net.modules()) == 3  # the user's model keeps its blocks
    assert not any(isinstance(m, _MHA) for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert model.sfreq == 100.0 and model.default_preset == ZOO["ATCNet"].default_preset
    with torch.no_grad():
        again = model(x)
    assert torch.equal(again, model(x).detach())  # the wrapped network is a fixed function in eval mode
    R = sx.explain(model, x)  # a plain tensor works too: the batch stays apart in the attention
    np.testing.assert_allclose(R.values.sum((1, 2)) + R.absorbed.values, R.prediction.values, rtol=1e-5,
                               atol=1e-6)


def test_training_sets_what_explaining_needs():
    from sciexplain_eeg import fit
    train, _ = make_synthetic_epochs(n_epochs=24, seed=9)
    model = make_braindecode("EEGNetv4", 30, 101)
    result = fit(model, train, seed=0, max_epochs=2, patience=2)
    assert model.ch_names == list(DEFAULT_CH_NAMES) and model.scaling == 1e6 and model.sfreq == 100.0
    assert len(result.history["train_loss"]) == 2
    R = sx.explain(model, train[:3])
    assert R.shape == (3, 30, 101)


def test_bad_requests_say_what_to_do(fresh):
    with pytest.raises(InputError, match="registry has"):
        make_braindecode("EEGNet", 30, 101)
    with pytest.raises(InputError, match="Shorter kernels"):
        make_braindecode("Deep4Net", 30, 20)
    with pytest.raises(InputError, match="n_times"):
        wrap_braindecode(torch.nn.Linear(3, 2))
    epochs, _ = fresh
    model = load_zoo("EEGNetv4")
    with pytest.raises(InputError, match="channel mismatch"):
        sx.explain(model, epochs.copy().drop_channels(["Cz"]))
    with pytest.raises(InputError, match="expects input of shape"):
        model(torch.zeros(2, 29, 101))
