"""Channel-time block removal and the MoRF/LeRF comparison on EEG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain_eeg import explain_epochs, fit
from sciexplain_eeg.domain import DOMAIN
from sciexplain_eeg.explain import epochs_to_tensor
from sciexplain_eeg.models import CompactEEGNet
from sciexplain_eeg.perturbation import BlockRemoval, block_removal, perturbation_comparison
from sciexplain_eeg.synthetic import make_synthetic_epochs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["mean", "zero"]))
def test_block_removal_replaces_only_masked_entries(seed, kind):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 9, generator=gen) + 5.0
    mask = torch.rand(3, 4, 9, generator=gen) < 0.3
    out = BlockRemoval(kind)(x.clone(), mask)
    torch.testing.assert_close(out[~mask], x[~mask])
    fill = x.mean(dim=-1, keepdim=True).expand_as(x) if kind == "mean" else torch.zeros_like(x)
    torch.testing.assert_close(out[mask], fill[mask])


def test_block_removal_validates():
    with pytest.raises(ValueError, match="kind"):
        block_removal("noise")
    with pytest.raises(ValueError, match="epoch, channel, time"):
        BlockRemoval()(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    removal = DOMAIN.removal()
    assert isinstance(removal, BlockRemoval) and removal.kind == "mean"
    assert DOMAIN.removal(kind="zero").kind == "zero"


@pytest.fixture(scope="module")
def trained(short):
    train, _ = make_synthetic_epochs(n_epochs=120, seed=0, **short)
    test, _ = make_synthetic_epochs(n_epochs=40, seed=7, **short)
    model = CompactEEGNet(30, 31, n_filters=4, kernel=5, pool=4)
    fit(model, train, seed=0)
    return model, test


def test_curves_start_at_the_prediction_and_lrp_beats_random(trained):
    model, test = trained
    result = perturbation_comparison(model, test, block=5, steps=30)
    rows = {r["method"]: r for r in result.rows}
    assert set(rows) == {"LRP", "gradient x input", "sensitivity", "random"}
    R = explain_epochs(model, test)
    np.testing.assert_allclose(result.curves[("LRP", "morf")].isel(step=0).values, R.prediction.values,
                               rtol=1e-5, atol=1e-5)
    assert rows["LRP"]["aopc_morf"] > rows["random"]["aopc_morf"] + 1.0
    assert rows["LRP"]["aopc_morf"] > rows["LRP"]["aopc_lerf"]
    assert result.settings["n_blocks"] == 30 * 7 and result.settings["steps"] == 30
    table = result.table()
    assert table.count("\n|") == 6 and "AOPC MoRF" in table


def test_works_with_the_core_perturbation_curve_directly(trained):
    model, test = trained
    x, _ = epochs_to_tensor(test, model)
    R = explain_epochs(model, test)
    curve = sx.evaluate.perturbation_curve(model, x, R, steps=10, order="morf", removal=DOMAIN.removal(),
                                           patch=(1, 5))
    assert curve.dims == ("epoch", "step") and curve.sizes["step"] == 11
    assert float(sx.evaluate.aopc(curve).mean()) > 0
