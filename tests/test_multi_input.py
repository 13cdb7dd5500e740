"""Several inputs (positional, keyword, token ids), grouped batches of views, ICLabelNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError
from sciexplain.result.ledger import check_ledger, ledger_residual

from conftest import assert_no_hooks, assert_state_equal, hook_counts, make_tokens, state_copy


class ThreeInputs(nn.Module):
    """A signal, an image-like tensor and token ids, joined by a sum of their features."""

    def __init__(self, d: int = 5, c: int = 2, vocab: int = 11, hidden: int = 6, classes: int = 3):
        super().__init__()
        self.dense = nn.Linear(d, hidden)
        self.conv = nn.Conv1d(c, hidden, 3)
        self.emb = nn.Embedding(vocab, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, signal, image, ids):
        h = torch.relu(self.dense(signal)) + torch.relu(self.conv(image)).mean(-1) + self.emb(ids).mean(1)
        return self.out(h)


def _three(batch: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    model = ThreeInputs().eval()
    g = torch.Generator().manual_seed(seed)
    return model, (torch.randn(batch, 5, generator=g), torch.randn(batch, 2, 9, generator=g),
                   torch.randint(0, 11, (batch, 7), generator=g))


def _total(R: xr.Dataset) -> np.ndarray:
    return sum(R[v].astype(np.float64).sum([d for d in R[v].dims if d != "sample"]).values for v in R.data_vars)


def _assert_exact_ledger(R: xr.Dataset, rtol: float = 1e-5) -> None:
    pred = R["prediction"].values
    total = _total(R) + R["absorbed"].values.astype(np.float64)
    np.testing.assert_allclose(total, pred, rtol=rtol, atol=rtol * np.abs(pred).max())
    check_ledger(R, rtol=rtol, atol=rtol * float(np.abs(pred).max()))


def test_positional_inputs_give_a_dataset_with_one_ledger():
    model, (s, im, ids) = _three()
    R = sx.explain(model, (s, im, ids))
    assert isinstance(R, xr.Dataset)
    assert list(R.data_vars) == ["input_0", "input_1", "input_2"]
    assert R["input_0"].dims == ("sample", "input_0_dim_0")
    assert R["input_1"].shape == (4, 2, 9)
    assert R["input_2"].shape == (4, 7)  # token ids: one relevance per token
    with torch.no_grad():
        logits = model(s, im, ids)
    np.testing.assert_allclose(R["prediction"].values, logits.max(1).values.double().numpy(), rtol=1e-6)
    _assert_exact_ledger(R)
    assert R.attrs["decomposes"] == "f(x)" and R.attrs["inputs"] == "input_0, input_1, input_2"


def test_keyword_inputs_equal_positional_ones():
    model, (s, im, ids) = _three()
    Rp = sx.explain(model, (s, im, ids))
    Rk = sx.explain(model, {"signal": s, "image": im, "ids": ids})
    assert list(Rk.data_vars) == ["signal", "image", "ids"]
    for a, b in zip(Rp.data_vars, Rk.data_vars):
        np.testing.assert_array_equal(Rp[a].values, Rk[b].values)
    np.testing.assert_array_equal(Rp["absorbed"].values, Rk["absorbed"].values)


def test_one_input_in_a_tuple_equals_the_plain_call(family):
    _, model, x = family
    R = sx.explain(model, x)
    Rt = sx.explain(model, (x,))
    np.testing.assert_array_equal(Rt["input_0"].values, R.values)
    np.testing.assert_array_equal(Rt["absorbed"].values, R["absorbed"].values)
    np.testing.assert_array_equal(Rt["prediction"].values, R["prediction"].values)


def test_token_model_by_keyword_explains_each_token():
    model, ids = make_tokens()
    R = sx.explain(model, {"tokens": ids})
    np.testing.assert_array_equal(R["tokens"].values, sx.explain(model, ids).values)
    assert R["tokens"].shape == tuple(ids.shape)


def test_unexplained_inputs_are_constants_whose_share_is_absorbed():
    model, (s, im, ids) = _three()
    full = sx.explain(model, {"signal": s, "image": im, "ids": ids})
    part = sx.explain(model, {"signal": s, "image": im, "ids": ids}, inputs=["signal", "ids"])
    assert list(part.data_vars) == ["signal", "ids"]
    _assert_exact_ledger(part)
    # the epsilon rule of the sum splits in proportion: the image's share is what part absorbs more
    image_share = full["image"].sum(["image_dim_0", "image_dim_1"]).values
    np.testing.assert_allclose(part["absorbed"].values, full["absorbed"].values + image_share,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(part["signal"].values, full["signal"].values, rtol=1e-5, atol=1e-7)
    by_position = sx.explain(model, (s, im, ids), inputs=[0, -1])
    assert list(by_position.data_vars) == ["input_0", "input_2"]


def test_model_untouched_and_hooks_gone():
    model, (s, im, ids) = _three()
    before, hooks = state_copy(model), hook_counts(model)
    copies = [t.clone() for t in (s, im, ids)]
    R, led = sx.Explainer(model).explain_with_ledger({"signal": s, "image": im, "ids": ids})
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    assert_no_hooks(model)
    for a, b in zip((s, im, ids), copies):
        assert torch.equal(a, b)
    # the per-layer ledger of several inputs: input_relevance is the sum over all of them
    np.testing.assert_allclose(led["input_relevance"].values, _total(R), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(led["input_relevance"].values + led["absorbed"].sum("layer").values,
                               led["prediction"].values, rtol=1e-5, atol=1e-6)


def test_dataset_round_trips_through_netcdf(tmp_path):
    model, (s, im, ids) = _three()
    R = sx.explain(model, {"signal": s, "image": im, "ids": ids},
                   dims={"image": ("sample", "channel", "time")},
                   coords={"image": {"channel": ["a", "b"]}})
    assert R["image"].dims == ("sample", "channel", "time")
    path = tmp_path / "R.nc"
    R.to_netcdf(path)
    with xr.open_dataset(path) as back:
        back = back.load()
    xr.testing.assert_identical(back, R)
    _assert_exact_ledger(back)


def test_pooling_works_per_variable():
    model, (s, im, ids) = _three()
    R = sx.explain(model, {"signal": s, "image": im, "ids": ids})
    pooled = R["image"].relevance.pool("image_dim_1")
    np.testing.assert_allclose(pooled.sum("image_dim_0").values, R["image"].relevance.total().values, rtol=1e-6)
    assert pooled.attrs["input"] == "image"
    residual = ledger_residual(R)
    assert np.abs(residual.values).max() <= 1e-5 * np.abs(R["prediction"].values).max()


def test_clear_errors():
    model, (s, im, ids) = _three()
    data = {"signal": s, "image": im, "ids": ids}
    with pytest.raises(InputError, match=r"inputs= names 'imag'.*\['signal', 'image', 'ids'\]"):
        sx.explain(model, data, inputs=["imag"])
    with pytest.raises(InputError, match=r"inputs= names 5"):
        sx.explain(model, (s, im, ids), inputs=[5])
    with pytest.raises(InputError, match=r"different batch sizes"):
        sx.explain(model, {"signal": s, "image": im[:2], "ids": ids})
    with pytest.raises(InputError, match=r"input 'signal'.*NaN"):
        sx.explain(model, {"signal": s * float("nan"), "image": im, "ids": ids})
    with pytest.raises(InputError, match=r"dims= for several inputs is a mapping"):
        sx.explain(model, data, dims=("sample", "x"))
    with pytest.raises(InputError, match=r"method='lrp'"):
        sx.explain(model, data, method="gradient")
    with pytest.raises(InputError, match=r"x is one tensor"):
        sx.explain(nn.Linear(3, 2), torch.randn(2, 3), inputs=["x"])
    with pytest.raises(InputError, match=r"the inputs signal \(4, 5\)"):
        sx.explain(model, {"signal": s, "image": im[:, :1], "ids": ids}, inputs=["signal"])


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 4), d=st.integers(1, 6), c=st.integers(1, 3), t=st.integers(3, 8),
       seed=st.integers(0, 10_000), preset=st.sampled_from(["epsilon", "epsilon-plus", "alpha2-beta1"]))
def test_ledger_balances_for_varied_shapes(batch, d, c, t, seed, preset):
    torch.manual_seed(seed)
    model = ThreeInputs(d=d, c=c).eval()
    g = torch.Generator().manual_seed(seed)
    data = {"signal": torch.randn(batch, d, generator=g), "image": torch.randn(batch, c, t, generator=g),
            "ids": torch.randint(0, 11, (batch, 4), generator=g)}
    R = sx.explain(model, data, preset=preset)
    _assert_exact_ledger(R)


# -- grouped batches: views of each sample, combined by the model ---------------------------------

class MeanOfViews(nn.Module):
    """Test-time augmentation as ICLabel does it: the batch holds ``views`` blocks of ``n`` samples
    (view v of sample j at row v * n + j); the model averages its outputs over the views."""

    def __init__(self, d: int = 6, views: int = 3, classes: int = 4, hidden: bool = True):
        super().__init__()
        self.views = views
        self.net = nn.Sequential(nn.Linear(d, 5), nn.ReLU(), nn.Linear(5, classes)) if hidden else \
            nn.Linear(d, classes, bias=False)

    def forward(self, x):
        y = self.net(x)
        return y.reshape(self.views, -1, y.shape[-1]).mean(0)


def test_views_need_a_grouped_explanation():
    torch.manual_seed(0)
    model = MeanOfViews().eval()
    x = torch.randn(3 * 2, 6)
    with pytest.raises(sx.UnsupportedModelError, match="batch"):
        sx.explain(model, x)


def test_views_of_a_linear_model_match_the_z_rule():
    """f_j(x) = mean_v w_t . x_(v, j): the relevance of input i of view v is w_ti x_(v,j,i) / views."""
    torch.manual_seed(1)
    views, n = 3, 4
    model = MeanOfViews(views=views, hidden=False).eval()
    x = torch.randn(views * n, 6)
    R = sx.explain(model, x, target=2, views=views, preset=sx.rules.Epsilon(1e-9))
    assert R.dims == ("sample", "view", "dim_0") and R.shape == (n, views, 6)
    w = model.net.weight.detach()[2]
    expected = (x.reshape(views, n, 6) * w / views).permute(1, 0, 2)
    np.testing.assert_allclose(R.values, expected.numpy(), rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        np.testing.assert_allclose(R["prediction"].values, model(x)[:, 2].double().numpy(), rtol=1e-6)


def test_views_ledger_per_sample_and_targets():
    torch.manual_seed(2)
    views, n = 4, 3
    model = MeanOfViews(views=views).eval()
    x = torch.randn(views * n, 6)
    R = sx.explain(model, x, target=[0, 3, 1], views=views)
    assert R["target"].values.tolist() == [0, 3, 1]
    pred = R["prediction"].values
    total = R.sum(["view", "dim_0"]).values.astype(np.float64) + R["absorbed"].values
    np.testing.assert_allclose(total, pred, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="not a whole number of 5 views"):
        sx.explain(model, x, views=5)
    with pytest.raises(InputError, match="target has 2 entries for 3 samples"):
        sx.explain(model, x, target=[0, 1], views=views)


def test_iclabelnet_with_its_weights_three_inputs_four_views():
    pytest.importorskip("psutil")
    network = pytest.importorskip("mne_icalabel.iclabel.network.torch")
    from importlib.resources import files

    from mne_icalabel.iclabel.network.utils import _format_input
    net = network.ICLabelNet().float()
    weights = files("mne_icalabel.iclabel.network") / "assets" / "ICLabelNet.pt"
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    rng = np.random.default_rng(0)
    n = 1
    topo = rng.standard_normal((32, 32, 1, n)).astype(np.float32)
    psd = rng.standard_normal((1, 100, 1, n)).astype(np.float32)
    autocorr = rng.standard_normal((1, 100, 1, n)).astype(np.float32)
    images, psds, autocorrs = network._format_input_for_torch(*_format_input(topo, psd, autocorr))
    before, hooks = state_copy(net), hook_counts(net)
    R = sx.explain(net, {"images": images, "psds": psds, "autocorr": autocorrs}, views=4)
    assert_state_equal(net, before)
    assert hook_counts(net) == hooks
    assert list(R.data_vars) == ["images", "psds", "autocorr"]
    assert R["images"].shape == (n, 4, 1, 32, 32)
    with torch.no_grad():
        probs = net(images, psds, autocorrs)
    # the explained output is the model's own: the mean over the views of the class probabilities
    np.testing.assert_allclose(R["prediction"].values, probs.max(1).values.double().numpy(), rtol=1e-5)
    _assert_exact_ledger(R)
