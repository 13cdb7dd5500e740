"""explain_epochs / sx.explain on mne.Epochs: labels, units, channel matching, dispatch, netCDF."""

from __future__ import annotations

import subprocess
import sys

import mne
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain_eeg import explain_epochs
from sciexplain_eeg.domain import DOMAIN, EEGDomain
from sciexplain_eeg.explain import epochs_to_tensor, is_epochs
from sciexplain_eeg.models import EpochDemean, LinearEEG, SturmDNN
from sciexplain_eeg.synthetic import DEFAULT_CH_NAMES, make_synthetic_epochs


def _logits(model, epochs, scaling=1e6):
    x = torch.as_tensor(epochs.get_data() * scaling, dtype=torch.float32)
    with torch.no_grad():
        return model(x).numpy()


# --------------------------------------------------------------------------- dispatch
def test_sx_explain_dispatches_epochs_to_the_plugin(dnn, epochs):
    R = sx.explain(dnn, epochs)
    assert R.dims == ("epoch", "channel", "time")
    assert R.shape == (40, 30, 31)
    R.relevance.check()
    logits = _logits(dnn, epochs)
    np.testing.assert_allclose(R.prediction.values, logits.max(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(R.target.values, logits.argmax(axis=1))
    np.testing.assert_array_equal(R.predicted.values, logits.argmax(axis=1))
    assert R.attrs["method"] == "lrp" and R.attrs["domain"] == "eeg"


def test_entry_point_is_installed_and_loads_the_domain():
    assert "eeg" in sx.domains()
    from sciexplain.plugins import load_domains
    assert load_domains()["eeg"] is DOMAIN
    assert isinstance(DOMAIN, EEGDomain) and DOMAIN.dims == ("epoch", "channel", "time")
    assert DOMAIN.name == "eeg" and DOMAIN.distribution == "sciexplain-eeg"


def test_claims_epochs_of_both_kinds_and_nothing_else(epochs):
    raw = mne.io.RawArray(np.concatenate(epochs.get_data()[:4], axis=1), epochs.info, verbose=False)
    events = np.array([[5, 0, 1], [40, 0, 2]])
    lazy = mne.Epochs(raw, events, {"a": 1, "b": 2}, tmin=0, tmax=0.3, baseline=None, preload=False,
                      verbose=False)
    assert DOMAIN.claims(epochs) and DOMAIN.claims(lazy) and is_epochs(lazy)
    for other in (epochs.get_data(), torch.zeros(2, 3), [epochs], raw, epochs.info, "epochs", None):
        assert not DOMAIN.claims(other)

    class BaseEpochs:  # same class name, another module: not MNE's
        pass
    assert not DOMAIN.claims(BaseEpochs())


def test_claims_does_not_import_mne():
    code = ("import sys\nfrom sciexplain_eeg.domain import DOMAIN\nclass X: pass\n"
            "assert not DOMAIN.claims(X()) and not DOMAIN.claims([1, 2])\n"
            "assert 'mne' not in sys.modules, 'mne imported'\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_lazy_mne_epochs_are_explained(dnn, epochs):
    raw = mne.io.RawArray(np.concatenate(epochs.get_data()[:6], axis=1), epochs.info, verbose=False)
    events = np.array([[0, 0, 0], [31, 0, 1], [62, 0, 0], [93, 0, 1]])
    lazy = mne.Epochs(raw, events, {"left": 0, "right": 1}, tmin=0, tmax=0.6, baseline=None, preload=False,
                      verbose=False)
    R = sx.explain(dnn, lazy)
    assert R.shape == (4, 30, 31)
    assert list(R.condition.values) == ["left", "right", "left", "right"]
    R.relevance.check()


# --------------------------------------------------------------------------- labels
def test_coords_labels_and_attrs(dnn, epochs):
    R = explain_epochs(dnn, epochs)
    assert list(R.channel.values) == list(DEFAULT_CH_NAMES)
    np.testing.assert_allclose(R.time.values, epochs.times)
    codes = epochs.events[:, 2]
    names = {v: k for k, v in epochs.event_id.items()}
    assert list(R.condition.values) == [names[c] for c in codes]
    np.testing.assert_array_equal(R.event_code.values, codes)
    np.testing.assert_array_equal(R.label.values, codes)  # codes 0/1 rank to labels 0/1
    c3 = list(R.channel.values).index("C3")
    np.testing.assert_allclose([R.x.values[c3], R.y.values[c3], R.z.values[c3]],
                               epochs.info["chs"][epochs.ch_names.index("C3")]["loc"][:3])
    assert R.x.values[c3] < 0 < R.x.values[list(R.channel.values).index("C4")]  # left, right
    assert set(R.ch_type.values) == {"eeg"} and not R.bad.values.any()
    assert R.attrs["scaling"] == 1e6 and R.attrs["input_units"] == "uV"
    assert R.attrs["sfreq"] == 50.0 and "logit" in R.attrs["units"]
    assert R.attrs["montage"] == "set" and R.attrs["bads_used"] == "none"


def test_netcdf_round_trip_keeps_labels(dnn, epochs, tmp_path):
    R = explain_epochs(dnn, epochs)
    path = tmp_path / "relevance.nc"
    R.to_netcdf(path)
    with xr.open_dataarray(path) as back:
        back = back.load()
    assert back.dims == R.dims
    assert list(back.channel.values) == list(R.channel.values)
    np.testing.assert_allclose(back.time.values, R.time.values)
    assert list(back.condition.values) == list(R.condition.values)
    np.testing.assert_allclose(back.x.values, R.x.values)
    np.testing.assert_allclose(back.values, R.values)
    assert back.attrs["scaling"] == R.attrs["scaling"] and back.attrs["sfreq"] == R.attrs["sfreq"]
    back.relevance.check()
    back.relevance.windows("time", 0.1).relevance.check()


def test_pooling_keeps_the_ledger(dnn, epochs):
    R = explain_epochs(dnn, epochs)
    W = R.relevance.windows("time", 0.1)
    assert W.sizes["time"] == 7  # 0..0.6 s in 100 ms windows (the last one holds 0.6 alone)
    W.relevance.check()
    np.testing.assert_allclose(W.relevance.total().values, R.relevance.total().values, rtol=1e-5, atol=1e-6)
    C = R.relevance.group("epoch", {"L": ["left"], "R": ["right"]}, coord="condition")
    C.relevance.check()
    assert list(C.epoch.values) == ["L", "R"]


# --------------------------------------------------------------------------- units and targets
def test_scaling_default_explicit_and_absent(epochs):
    torch.manual_seed(1)
    model = SturmDNN(30, 31, hidden=(8,)).eval()
    R1 = explain_epochs(model, epochs)  # no scaling recorded: volts as stored
    assert R1.attrs["scaling"] == 1.0 and R1.attrs["input_units"] == "V"
    np.testing.assert_allclose(R1.prediction.values, _logits(model, epochs, 1.0).max(1), rtol=1e-5, atol=1e-6)
    model.scaling = 1e6
    R2 = explain_epochs(model, epochs)
    np.testing.assert_allclose(R2.prediction.values, _logits(model, epochs, 1e6).max(1), rtol=1e-5, atol=1e-5)
    R3 = explain_epochs(model, epochs, scaling=1e3)  # explicit wins over the model's
    assert R3.attrs["input_units"] == "mV"
    np.testing.assert_allclose(R3.prediction.values, _logits(model, epochs, 1e3).max(1), rtol=1e-5, atol=1e-5)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scaling"):
            explain_epochs(model, epochs, scaling=bad)
    with pytest.raises(TypeError, match="scaling"):
        explain_epochs(model, epochs, scaling="1e6")


def test_targets(dnn, epochs):
    R0 = explain_epochs(dnn, epochs, target=0)
    assert (R0.target.values == 0).all()
    np.testing.assert_allclose(R0.prediction.values, _logits(dnn, epochs)[:, 0], rtol=1e-5, atol=1e-5)
    Rt = explain_epochs(dnn, epochs, target="true")
    np.testing.assert_array_equal(Rt.target.values, Rt.label.values)
    with pytest.raises(ValueError, match="'true'"):
        explain_epochs(dnn, epochs, target="left")


@pytest.mark.parametrize("method", ["sensitivity", "gradient_x_input"])
def test_other_methods_keep_the_labels(cnn, epochs, method):
    R = sx.explain(cnn, epochs, method=method)
    assert R.dims == ("epoch", "channel", "time") and R.attrs["method"] == method
    assert list(R.channel.values) == list(DEFAULT_CH_NAMES)


def test_rejects_dims_coords_and_at(dnn, epochs):
    with pytest.raises(ValueError, match="dims"):
        sx.explain(dnn, epochs, dims=("a", "b", "c"))
    with pytest.raises(ValueError, match="at="):
        sx.explain(dnn, epochs, at="layers.1")
    with pytest.raises(TypeError, match="mne.Epochs"):
        epochs_to_tensor(epochs.get_data(), dnn)


# --------------------------------------------------------------------------- channel matching
def test_missing_channel_is_an_error_that_names_it(dnn, epochs):
    with pytest.raises(ValueError, match=r"channel mismatch.*needs channels.*\['C3'\]"):
        explain_epochs(dnn, epochs.copy().drop_channels(["C3"]))


def test_extra_channel_is_an_error_that_names_it(dnn, epochs):
    model = dnn
    model.ch_names = [c for c in DEFAULT_CH_NAMES if c != "Oz"]
    model.n_channels = 29
    with pytest.raises(ValueError, match=r"not trained on: \['Oz'\]"):
        explain_epochs(model, epochs)
    # picking the model's channels is the fix the message gives
    torch.manual_seed(0)
    small = SturmDNN(29, 31, hidden=(4,)).eval()
    small.ch_names, small.sfreq = model.ch_names, 50.0
    R = explain_epochs(small, epochs, picks=small.ch_names)
    assert "Oz" not in R.channel.values


def test_reordered_channels_are_fixed_and_recorded(dnn, epochs):
    R = explain_epochs(dnn, epochs)
    shuffled = epochs.copy().reorder_channels(list(reversed(epochs.ch_names)))
    R2 = explain_epochs(dnn, shuffled)
    assert list(R2.channel.values) == list(DEFAULT_CH_NAMES)
    assert R2.attrs["channel_order"].startswith("reordered")
    np.testing.assert_allclose(R2.values, R.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(R2.x.values, R.x.values)


@settings(max_examples=8, deadline=None)
@given(order=st.permutations(list(range(30))))
def test_any_channel_order_gives_the_same_relevance_per_name(order, epochs):
    torch.manual_seed(0)
    model = SturmDNN(30, 31, hidden=(6,)).eval()
    model.ch_names, model.sfreq, model.scaling = list(DEFAULT_CH_NAMES), 50.0, 1e6
    names = [epochs.ch_names[i] for i in order]
    sub = epochs[:5]
    R = explain_epochs(model, sub)
    R2 = explain_epochs(model, sub.copy().reorder_channels(names))
    np.testing.assert_allclose(R2.sel(channel=names).values, R.sel(channel=names).values, rtol=1e-5, atol=1e-7)


def test_without_recorded_names_only_the_count_is_checked(epochs):
    torch.manual_seed(0)
    model = SturmDNN(30, 31, hidden=(4,)).eval()
    R = explain_epochs(model, epochs)
    assert R.attrs["channel_order"].startswith("as in the epochs (the model records no")
    small = SturmDNN(29, 31, hidden=(4,)).eval()
    with pytest.raises(ValueError, match="expects 29 channels, the epochs offer 30"):
        explain_epochs(small, epochs)
    names = [c for c in DEFAULT_CH_NAMES if c != "Fp1"]
    with pytest.raises(ValueError, match=r"not trained on: \['Fp1'\]"):  # extra channels stay an error
        explain_epochs(small, epochs, ch_names=names)
    R2 = explain_epochs(small, epochs, ch_names=names, picks=names)
    assert list(R2.channel.values) == names


def test_sampling_rate_and_length_mismatch(dnn, epochs):
    with pytest.raises(ValueError, match=r"sampling rate mismatch.*resample"):
        explain_epochs(dnn, epochs.copy().resample(25.0))
    with pytest.raises(ValueError, match=r"length mismatch.*crop"):
        explain_epochs(dnn, epochs.copy().crop(0.0, 0.5))
    with pytest.raises(ValueError, match="sampling rate"):
        explain_epochs(dnn, epochs, sfreq=100.0)


def test_bad_channels_refused_unless_allowed(dnn, epochs):
    marked = epochs.copy()
    marked.info["bads"] = ["C4"]
    with pytest.raises(ValueError, match=r"\['C4'\] are marked bad.*allow_bads=True"):
        explain_epochs(dnn, marked)
    R = explain_epochs(dnn, marked, allow_bads=True)
    assert R.attrs["bads_used"] == "C4"
    assert R.bad.sel(channel="C4").item() and R.bad.values.sum() == 1
    R.relevance.check()


def test_without_montage_relevance_is_labelled_and_positions_are_nan(dnn, epochs):
    bare = mne.EpochsArray(epochs.get_data(), mne.create_info(epochs.ch_names, 50.0, "eeg"),
                           events=epochs.events, event_id=epochs.event_id, verbose=False)
    R = explain_epochs(dnn, bare)
    assert np.isnan(R.x.values).all() and R.attrs["montage"] == "none"
    assert list(R.channel.values) == list(DEFAULT_CH_NAMES)
    R.relevance.check()


def test_model_left_unchanged(dnn, epochs):
    before = {k: v.clone() for k, v in dnn.state_dict().items()}
    dnn.train()
    with pytest.warns(sx.ExplainWarning):
        explain_epochs(dnn, epochs)
    assert dnn.training
    for k, v in dnn.state_dict().items():
        assert torch.equal(v, before[k])


# --------------------------------------------------------------------------- LinearEEG
def test_epoch_demean_gives_offsets_no_relevance():
    torch.manual_seed(0)
    model = LinearEEG(3, 10).eval()
    with torch.no_grad():
        model.layers[-1].bias.zero_()
    x = torch.randn(4, 3, 10)
    shifted = x + torch.tensor([5.0, -3.0, 0.0])[None, :, None]
    torch.testing.assert_close(model(shifted), model(x))
    R = sx.explain(model, shifted, preset="epsilon-plus")
    R.relevance.check()
    flat = torch.ones(2, 3, 10) * 7.0  # a constant epoch: zero logit, zero relevance
    Rf = sx.explain(model, flat, target=0)
    np.testing.assert_allclose(Rf.values, 0.0, atol=1e-5)
    assert isinstance(model.layers[0], EpochDemean)


def test_fit_logistic_separates_synthetic_data_and_decomposes_fully(short):
    train, _ = make_synthetic_epochs(n_epochs=80, seed=0, **short)
    test, _ = make_synthetic_epochs(n_epochs=60, seed=1, **short)
    model = LinearEEG(30, 31).fit_logistic(train, C=(1e-3, 1e-2), cv=3)
    from sciexplain_eeg import evaluate
    assert evaluate(model, test) > 0.9
    assert model.C in (1e-3, 1e-2) and set(model.cv_scores) == {1e-3, 1e-2}
    assert model.scaling == 1e6 and model.ch_names == list(DEFAULT_CH_NAMES) and not model.training
    R = explain_epochs(model, test)
    R.relevance.check()
    # the default Epsilon(0.01) absorbs a share of small logits in its stabiliser; with a tiny
    # epsilon a model without intercept puts all of f(x) on the input
    assert 0 < np.abs(R.absorbed.values).max() < 0.05 * np.abs(R.prediction.values).max()
    R = explain_epochs(model, test, preset=sx.rules.Epsilon(1e-9))
    np.testing.assert_allclose(R.absorbed.values, 0.0, atol=1e-4)  # no intercept: all of f(x) on the input
    logits = _logits(model, test)
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1], rtol=1e-5, atol=1e-5)  # symmetric split
    with pytest.raises(ValueError, match="C must be"):
        LinearEEG(30, 31).fit_logistic(train, C=[])
