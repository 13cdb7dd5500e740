"""Translation trick, sliding windows and relevant patterns (Montavon et al. 2017, Sec. 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain.errors import InputError
from sciexplain.analysis.tricks import relevant_pattern, sliding_window, translation_trick

try:
    from conftest import assert_balances, make_cnn, make_eeg
except ImportError:  # pytest --import-mode=importlib does not put tests/ on sys.path
    import sys as _sys
    from pathlib import Path as _Path
    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from conftest import assert_balances, make_cnn, make_eeg


# -- translation trick --------------------------------------------------------------------------

def test_translation_trick_keeps_the_contract():
    model, x = make_cnn(batch=3)
    R0 = sx.explain(model, x)
    target = R0["target"].values
    T = translation_trick(lambda z: sx.explain(model, z, target=target), x)
    assert T.dims == R0.dims and T.shape == R0.shape
    assert T.attrs["trick"] == "translation" and T.attrs["method"] == "lrp"
    assert len(T.attrs["shifts"].split("; ")) == 9
    assert_balances(T)
    np.testing.assert_array_equal(T["target"].values, target)
    # prediction is the mean output over the translated inputs
    preds = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            idx_y = (torch.arange(8) - dy).clamp(0, 7)
            idx_x = (torch.arange(8) - dx).clamp(0, 7)
            xs = x[:, :, idx_y][:, :, :, idx_x]
            with torch.no_grad():
                preds.append(model(xs)[torch.arange(3), torch.as_tensor(target)].numpy())
    np.testing.assert_allclose(T["prediction"].values, np.mean(preds, axis=0), rtol=1e-5)
    assert not np.allclose(T.values, R0.values)  # averaging changes the map


def test_translation_of_a_translation_equivariant_explanation_is_identity():
    """For an explanation that moves with its input (here: the input itself) and a constant border,
    translate -> explain -> translate back returns the original inside, averaged over the shifts."""
    x = torch.zeros(2, 1, 7, 7)
    x[:, :, 2:5, 2:5] = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)) + 0.5

    def explain(z):
        from sciexplain.result.contract import build_result
        return build_result(z.clone(), dims=("sample", "c", "y", "x"), prediction=z.sum((1, 2, 3)),
                            target=np.zeros(len(z), int), absorbed=np.zeros(len(z)), method="identity",
                            rules="none", decomposes="f(x)")

    T = translation_trick(explain, x, fill=0.0)
    np.testing.assert_allclose(T.values, x.numpy(), rtol=1e-6)
    assert_balances(T)
    # 1-D translations along the last dim only
    T1 = translation_trick(explain, x, shifts=[(-2,), (0,), (2,)], fill=0.0)
    np.testing.assert_allclose(T1.values, x.numpy(), rtol=1e-6)


def test_translation_borders_go_to_absorbed():
    """With edge filling, relevance on the filled strip belongs to no original pixel: it is absorbed."""
    x = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1)) + 1.0

    def explain(z):
        from sciexplain.result.contract import build_result
        return build_result(z.clone(), dims=("sample", "c", "y", "x"), prediction=z.sum((1, 2, 3)),
                            target=np.zeros(len(z), int), absorbed=np.zeros(len(z)), method="identity",
                            rules="none", decomposes="f(x)")

    T = translation_trick(explain, x, shifts=[(0, 1)])
    # shift right by 1: column 0 of the shifted input is the filled strip (copy of column 0)
    np.testing.assert_allclose(T["absorbed"].values, x[0, 0, :, 0].sum().numpy(), rtol=1e-6)
    np.testing.assert_allclose(T.values[0, 0, :, :4], x[0, 0, :, :4].numpy(), rtol=1e-6)
    assert np.all(T.values[0, 0, :, 4] == 0)  # pushed out of view: no relevance from that shift
    assert_balances(T)


def test_translation_errors():
    model, x = make_cnn(batch=2)
    targets = iter([0, 1])
    with pytest.raises(InputError, match="target changes"):
        translation_trick(lambda z: sx.explain(model, z, target=next(targets)), x, shifts=[(0, 0), (1, 1)])
    with pytest.raises(InputError, match="one length"):
        translation_trick(lambda z: sx.explain(model, z), x, shifts=[(0, 1), (1,)])
    with pytest.raises(InputError, match="DataArray"):
        translation_trick(lambda z: z, x, shifts=[(0, 0)])


# -- sliding window -----------------------------------------------------------------------------

@settings(max_examples=8, deadline=None)
@given(length=st.integers(24, 60), stride=st.integers(4, 30))
def test_sliding_window_1d_decomposes_g(length, stride):
    model, _ = make_eeg()
    X = torch.randn(2, 5, length, generator=torch.Generator().manual_seed(length))
    R = sliding_window(model, X, 24, stride)
    assert R.shape == tuple(X.shape) and R.dims[0] == "sample"
    starts = list(range(0, length - 24 + 1, stride))
    assert R.attrs["n_windows"] == len(starts)
    assert_balances(R)  # sum + absorbed = prediction
    with torch.no_grad():
        logits = sum(model(X[:, :, s:s + 24]) for s in starts)
    t = logits.argmax(1)
    np.testing.assert_array_equal(R["target"].values, t.numpy())
    np.testing.assert_allclose(R["prediction"].values, logits[torch.arange(2), t].numpy(), rtol=1e-5)
    # every position receives relevance from all windows containing it
    for s in starts[:2]:
        Rw = sx.explain(model, X[:, :, s:s + 24], target=t)
        covering = [u for u in starts if u <= s + 23 and u + 24 > s]
        if covering == [s]:
            np.testing.assert_allclose(R.values[:, :, s:s + 24], Rw.values, rtol=1e-5, atol=1e-7)
    last = starts[-1] + 24
    assert np.all(R.values[:, :, last:] == 0)  # no window covers the tail


def test_sliding_window_overlap_sums_windows():
    model, _ = make_eeg()
    X = torch.randn(1, 5, 36, generator=torch.Generator().manual_seed(0))
    R = sliding_window(model, X, 24, 12, target=1, preset="alpha2-beta1")
    a = sx.explain(model, X[:, :, :24], target=1, preset="alpha2-beta1").values
    b = sx.explain(model, X[:, :, 12:], target=1, preset="alpha2-beta1").values
    expect = np.zeros((1, 5, 36))
    expect[:, :, :24] += a
    expect[:, :, 12:] += b
    np.testing.assert_allclose(R.values, expect, rtol=1e-5, atol=1e-7)
    assert_balances(R)


def test_sliding_window_2d_with_dims_and_batches():
    model, _ = make_cnn()
    X = torch.rand(2, 3, 12, 14, generator=torch.Generator().manual_seed(0))
    R = sliding_window(model, X, (8, 8), (4, 3), dims=("image", "color", "y", "x"),
                       coords={"color": ["r", "g", "b"]}, batch_size=5)
    assert R.dims == ("image", "color", "y", "x") and list(R["color"].values) == ["r", "g", "b"]
    assert R.attrs["n_windows"] == 2 * 3 and R.attrs["window"].tolist() == [8, 8]
    assert_balances(R)
    R_all = sliding_window(model, X, (8, 8), (4, 3))
    np.testing.assert_allclose(R.values, R_all.values, rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="larger"):
        sliding_window(model, X, (13, 8))


# -- relevant pattern ---------------------------------------------------------------------------

def test_relevant_pattern():
    model, x = make_cnn(batch=2)
    R = sx.explain(model, x, dims=("image", "color", "y", "x"))
    pooled = R.relevance.pool("color")
    P = relevant_pattern(x, pooled)
    assert P.dims == ("image", "dim_0", "y", "x") and P.shape == tuple(x.shape)
    assert P.attrs["decomposes"] == "none"
    scaled = pooled.values - pooled.values.min(axis=(1, 2), keepdims=True)
    scaled /= scaled.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(P.values, x.numpy() * scaled[:, None], rtol=1e-5, atol=1e-7)
    # the most relevant position keeps its input, the least relevant one vanishes
    i, j = np.unravel_index(np.argmax(pooled.values[0]), (8, 8))
    np.testing.assert_allclose(P.values[0, :, i, j], x[0, :, i, j].numpy(), rtol=1e-6)
    P_full = relevant_pattern(x, R)
    assert P_full.dims == R.dims
    P_arr = relevant_pattern(x.numpy(), R.values)
    np.testing.assert_allclose(P_arr.values, P_full.values)
    with pytest.raises(InputError):
        relevant_pattern(x, R.values[:, :, :3])
