"""Device and precision: every tensor the engine makes follows the model's; half models explained."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError

from conftest import FAMILIES, state_copy, assert_state_equal


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.out(y[:, -1])


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.emb = nn.Embedding(9, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x, ids):
        return self.out(torch.relu(self.a(x)) + self.emb(ids).sum(1))


def _cases():
    cases = {name: factory for name, factory in FAMILIES.items()}
    cases["lstm"] = lambda: (torch.manual_seed(0), LSTMNet().eval(), torch.randn(2, 6, 4))[1:]
    return cases


CASES = _cases()


def _on_meta_default(fn):
    torch.set_default_device("meta")
    try:
        return fn()
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("preset", ["epsilon-plus", "alpha2-beta1", "epsilon-plus-box"])
def test_the_default_device_does_not_leak_into_an_explanation(name, preset):
    """Anything the engine creates without ``device=`` lands on the meta device and breaks this."""
    model, x = CASES[name]()
    kwargs = {"bounds": (-4.0, 4.0)} if preset == "epsilon-plus-box" else {}
    R = sx.explain(model, x, preset=preset, **kwargs)
    R_meta = _on_meta_default(lambda: sx.explain(model, x, preset=preset, **kwargs))
    np.testing.assert_array_equal(R_meta.values, R.values)
    np.testing.assert_array_equal(R_meta["absorbed"].values, R["absorbed"].values)


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "smoothgrad", "sensitivity"])
def test_gradient_methods_do_not_use_the_default_device(method):
    model, x = FAMILIES["cnn_bn"]()
    kwargs = {"steps": 4} if method == "integrated_gradients" else {"n_samples": 3} if method == "smoothgrad" else {}
    R = sx.explain(model, x, method=method, **kwargs)
    R_meta = _on_meta_default(lambda: sx.explain(model, x, method=method, **kwargs))
    np.testing.assert_array_equal(R_meta.values, R.values)


def test_several_inputs_and_views_do_not_use_the_default_device():
    torch.manual_seed(0)
    model = TwoInputs().eval()
    data = {"x": torch.randn(4, 5), "ids": torch.randint(0, 9, (4, 3))}
    R = sx.explain(model, data)
    R_meta = _on_meta_default(lambda: sx.explain(model, data))
    for v in R.data_vars:
        np.testing.assert_array_equal(R_meta[v].values, R[v].values)

    class MeanOfTwoViews(TwoInputs):
        def forward(self, x, ids):
            return super().forward(x, ids).reshape(2, -1, 2).mean(0)

    grouped = MeanOfTwoViews().eval()
    R = sx.explain(grouped, data, views=2)
    R_meta = _on_meta_default(lambda: sx.explain(grouped, data, views=2))
    np.testing.assert_array_equal(R_meta["x"].values, R["x"].values)


@pytest.mark.parametrize("several", [False, True])
def test_an_input_on_the_meta_device_is_an_input_error(several):
    model, x = FAMILIES["mlp"]()
    x_meta = torch.empty(x.shape, device="meta")
    with pytest.raises(InputError, match="meta device"):
        sx.explain(model, (x_meta,) if several else x_meta)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_explained_in_float32(name, dtype):
    model, x = FAMILIES[name]()
    R32 = sx.explain(model, x)
    half = copy.deepcopy(model).to(dtype)
    before = state_copy(half)
    xh = x.to(dtype) if x.is_floating_point() else x
    R = sx.explain(half, xh)
    assert_state_equal(half, before)
    assert next(half.parameters()).dtype == dtype  # the caller's model keeps its precision
    assert R.dtype == np.float32 and "float32 copy" in R.attrs["precision"]
    # exactly the explanation of the float32 model with the half model's (rounded) weights
    rounded = sx.explain(copy.deepcopy(half).float(), xh.float() if xh.is_floating_point() else xh)
    np.testing.assert_array_equal(R.values, rounded.values)
    # the ledger is exact in float32 terms
    R.relevance.check(rtol=1e-5, atol=1e-6)
    # and close to the float32 model's: the weights and inputs differ by the type's rounding only
    # (about 5e-4 relative for float16, 4e-3 for bfloat16, amplified where denominators are small)
    rel = np.linalg.norm(R.values - R32.values) / np.linalg.norm(R32.values)
    assert rel < 3e-2, rel
    np.testing.assert_allclose(R["prediction"].values, R32["prediction"].values, rtol=0,
                               atol=5e-3 * max(1.0, np.abs(R32["prediction"].values).max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["cnn_bn", "residual", "embedding"])
def test_a_cuda_model_is_explained_on_its_device(name):
    model, x = FAMILIES[name]()
    R = sx.explain(model, x)
    R_gpu = sx.explain(copy.deepcopy(model).cuda(), x.cuda())
    np.testing.assert_allclose(R_gpu.values, R.values, rtol=1e-4, atol=1e-5 * np.abs(R.values).max())
    R_gpu.relevance.check(rtol=1e-5, atol=1e-6)
