"""ICLabel explained: a simulated recording with known sources, mne-icalabel's features, relevance per input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("psutil")
pytest.importorskip("mne_icalabel")

import xarray as xr  # noqa: E402
from sciexplain.errors import InputError  # noqa: E402
from sciexplain.result.ledger import check_ledger  # noqa: E402

from sciexplain_eeg.icsim import fit_ica, match_components, simulate_recording  # noqa: E402
from sciexplain_eeg.iclabel import (ICLABEL_CLASSES, ICLABEL_INPUTS, _logit_model, _network_inputs,  # noqa: E402
                                    explain_iclabel, iclabel_features, input_shares, load_iclabelnet,
                                    plot_iclabel)


@pytest.fixture(scope="module")
def recording():
    """20 s of the simulated recording, fast ICA (FastICA, 8 components), ICLabel's features."""
    raw, truth = simulate_recording(duration=20.0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared, ica = fit_ica(raw, n_components=8, method="fastica", max_iter="auto")
    return prepared, ica, truth, iclabel_features(prepared, ica)


@pytest.fixture(scope="module")
def explained(recording):
    _, _, _, features = recording
    return explain_iclabel(features=features)


def test_ica_recovers_the_known_sources(recording):
    _, ica, truth, _ = recording
    matched = match_components(ica, truth)
    for name in ("alpha", "eye blink", "muscle"):
        assert matched[name][1] > 0.95, (name, matched[name])


def test_iclabel_names_the_simulated_sources(recording, explained):
    _, ica, truth, _ = recording
    matched = match_components(ica, truth)
    for name in ("alpha", "eye blink", "muscle"):
        comp = matched[name][0]
        assert str(explained.predicted_class.sel(component=comp).values) == truth.kinds[name]


def test_relevance_per_input_is_labelled(explained, recording):
    R = explained
    assert list(R.data_vars) == list(ICLABEL_INPUTS)
    assert R["topomap"].dims == ("component", "y", "x") and R["topomap"].shape[1:] == (32, 32)
    assert R["psd"].dims == ("component", "frequency") and R["autocorrelation"].dims == ("component", "lag")
    np.testing.assert_allclose(R.frequency.values, np.arange(1, 101))
    np.testing.assert_allclose(R.lag.values, np.arange(10, 1001, 10))
    assert R.attrs["frequency_units"] == "Hz" and R.attrs["lag_units"] == "ms"
    assert list(R.iclabel_class.values) == list(ICLABEL_CLASSES)
    np.testing.assert_allclose(R.probability.sum("iclabel_class"), 1.0, rtol=1e-5)
    # the map's orientation: the blink component peaks at the front, the muscle one at the right ear
    _, ica, truth, _ = recording
    matched = match_components(ica, truth)
    for name, (y_sign, x_sign) in {"eye blink": (1, 0), "muscle": (0, 1)}.items():
        v = np.abs(R.topomap_value.sel(component=matched[name][0]).values)
        i, j = np.unravel_index(v.argmax(), v.shape)
        y, x = R.y.values[i], R.x.values[j]
        assert (y > 0.35 if y_sign else abs(y) < 0.2) and (x > 0.35 if x_sign else abs(x) < 0.2), (name, y, x)


def test_ledger_and_shares(explained):
    R = explained
    pred = R.prediction.values
    check_ledger(R, rtol=1e-5, atol=1e-5 * float(np.abs(pred).max()))
    shares = input_shares(R)
    np.testing.assert_allclose(shares.values, R.share.values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(shares.sum("input").values + R.absorbed.values / pred, 1.0, rtol=1e-5, atol=1e-5)


def test_the_logits_are_iclabels_own(recording):
    """Softmax of the per-view class scores, averaged over the views, is mne-icalabel's output."""
    _, _, _, features = recording
    net = load_iclabelnet()
    images, psds, autocorr = _network_inputs(features)
    with torch.no_grad():
        probs = net(images, psds, autocorr)
        scores = _logit_model(net).view_logits(images, psds, autocorr)
        mean_logit = _logit_model(net)(images, psds, autocorr)
    n = probs.shape[0]
    np.testing.assert_allclose(torch.softmax(scores, 1).reshape(4, n, 7).mean(0).numpy(), probs.numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_logit.numpy(), scores.reshape(4, n, 7).mean(0).numpy(), rtol=1e-6)


def test_probability_output_and_targets(recording):
    _, _, _, features = recording
    R = explain_iclabel(features=features, components=[0, 1], target="brain", output="probability")
    assert list(R.component.values) == [0, 1] and list(R.target_class.values) == ["brain", "brain"]
    np.testing.assert_allclose(R.prediction.values, R.probability.sel(iclabel_class="brain").values, rtol=1e-5)
    check_ledger(R, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="unknown ICLabel class"):
        explain_iclabel(features=features, target="blink")
    with pytest.raises(InputError, match="components must be"):
        explain_iclabel(features=features, components=[99])
    with pytest.raises(InputError, match="raw and ica"):
        explain_iclabel()


def test_mirrored_views_fold_back_onto_the_map(recording):
    """For a left-right symmetric map, view 2 (3) equals view 0 (1), so the folded relevance is symmetric;
    it would not be if the mirrored views were added without reading them through the mirror."""
    _, _, _, features = recording
    sym = {k: v[:1].copy() for k, v in features.items()}
    sym["topomap"] = 0.5 * (sym["topomap"] + sym["topomap"][:, :, ::-1])
    R = explain_iclabel(features=sym, target=0)
    m = R["topomap"].values[0]
    np.testing.assert_allclose(m, m[:, ::-1], rtol=1e-4, atol=1e-6 * np.abs(m).max())
    assert np.abs(m).max() > 0


def test_netcdf_round_trip_and_figure(explained, tmp_path):
    path = tmp_path / "iclabel.nc"
    explained.to_netcdf(path)
    back = xr.load_dataset(path)
    assert list(back.data_vars) == list(ICLABEL_INPUTS)
    np.testing.assert_allclose(back["topomap"].values, explained["topomap"].values)
    assert list(back.target_class.values) == list(explained.target_class.values)
    check_ledger(back, rtol=1e-5, atol=1e-5 * float(np.abs(back.prediction.values).max()))
    fig = plot_iclabel(back, int(back.component.values[1]))
    texts = " ".join(t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label))
    assert "frequency (Hz)" in texts and "lag (ms)" in texts and "relevance of the map" in texts
    assert "share of it" in fig._suptitle.get_text()
    with pytest.raises(InputError, match="was not explained"):
        plot_iclabel(back, 999)
