"""braindecode 0.8.1's newer networks (EEGNetv4, EEGConformer, ATCNet, EEGInception, EEGInceptionMI), built as
their users build them (small channel and time counts to stay fast) and explained with
``sx.explain``: the ledger balances to 1e-5 of f(x), the explained output is the logit before
the final log-softmax, and the model comes back untouched (parameters, buffers, training flags,
no hooks left). ShallowFBCSPNet and Deep4Net are in ``test_elementwise.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sciexplain as sx
from sciexplain.errors import UnsupportedModelError

from conftest import assert_balances, assert_no_hooks, assert_state_equal, hook_counts, state_copy, training_flags

pytest.importorskip("braindecode")
pytestmark = [pytest.mark.filterwarnings("ignore:LogSoftmax final layer will be removed"),
              pytest.mark.filterwarnings("ignore:The class EEGInception is deprecated")]


def _eegnet():
    from braindecode.models import EEGNetv4
    return EEGNetv4(n_chans=4, n_outputs=2, n_times=128), (2, 4, 128)


def _conformer(depth: int = 2, heads: int = 10):
    from braindecode.models import EEGConformer
    return (EEGConformer(n_outputs=2, n_chans=4, n_times=200, att_depth=depth, att_heads=heads,
                         final_fc_length="auto"), (2, 4, 200))


def _atcnet():
    from braindecode.models import ATCNet
    return ATCNet(n_chans=4, n_outputs=2, input_window_seconds=2.0, sfreq=250.0), (1, 4, 500)


def _inception():
    from braindecode.models import EEGInception  # 0.8.1's deprecated name of EEGInceptionERP
    return EEGInception(n_chans=4, n_outputs=2, n_times=256, sfreq=128), (2, 4, 256)


def _inception_mi():
    from braindecode.models import EEGInceptionMI
    return EEGInceptionMI(n_chans=4, n_outputs=2, input_window_seconds=1.0, sfreq=250, n_filters=12), (2, 4, 250)


ZOO = {"EEGNetv4": _eegnet, "EEGConformer": _conformer, "ATCNet": _atcnet, "EEGInception": _inception,
       "EEGInceptionMI": _inception_mi}


def _build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model, shape = ZOO[name]()
    return model.eval(), torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))


def _ends_in_log_softmax(model) -> bool:
    return any(isinstance(m, torch.nn.LogSoftmax) for m in model.modules())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_network_is_explained_with_an_exact_ledger_and_left_untouched(name):
    model, x = _build(name)
    before, flags, hooks = state_copy(model), training_flags(model), hook_counts(model)
    x_before = x.clone()
    R = sx.explain(model, x)
    assert R.shape == tuple(x.shape)
    assert_balances(R, rtol=1e-5, atol=1e-7)
    assert np.isfinite(R.values).all()
    # the model as the user left it: ATCNet's MaxNormLinear renormalises its weights inside forward,
    # the explanation puts them back
    assert_state_equal(model, before)
    assert training_flags(model) == flags
    assert hook_counts(model) == hooks
    assert_no_hooks(model)
    assert torch.equal(x, x_before)
    with torch.no_grad():
        out = model(x).double()
    model.load_state_dict(before)  # our own forward call renormalised ATCNet's weights
    if not _ends_in_log_softmax(model):
        np.testing.assert_allclose(R.prediction.values, out[torch.arange(len(x)), R.target.values].numpy(),
                                   rtol=1e-5)
        return
    # the explained output is the logit before the final log-softmax: the logits of both classes,
    # explained one after the other, squash to the model's output
    assert "LogSoftmax" in R.attrs["explained"]
    other = sx.explain(model, x, target=1 - torch.as_tensor(R.target.values))
    assert_balances(other, rtol=1e-5, atol=1e-7)
    assert_state_equal(model, before)
    logits = torch.zeros(len(x), 2, dtype=torch.float64)
    rows = torch.arange(len(x))
    logits[rows, torch.as_tensor(R.target.values)] = torch.as_tensor(R.prediction.values)
    logits[rows, torch.as_tensor(other.target.values)] = torch.as_tensor(other.prediction.values)
    np.testing.assert_allclose(torch.log_softmax(logits, 1).numpy(), out.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset, product_rule", [(None, "BilinearUniform"), ("attnlrp", "BilinearUniform"),
                                                  ("cp-lrp", "ConstantAttention")])
def test_conformer_attention_gets_the_attnlrp_rules(preset, product_rule):
    """EEGConformer's encoder: LayerNorm, two einsums of input-dependent tensors and a softmax
    inside the network, each by its AttnLRP kind; the result says which rule ran there."""
    torch.manual_seed(0)
    model, shape = _conformer(depth=1, heads=2)
    model.eval()
    x = torch.randn(*shape)
    R = sx.explain(model, x) if preset is None else sx.explain(model, x, preset=preset)
    assert_balances(R, rtol=1e-5, atol=1e-7)
    rules = R.attrs["rules"]
    assert f"bilinear: {product_rule}" in rules
    assert "softmax: LinearisedSoftmax" in rules
    assert "normalisation:" in rules


def test_conformer_in_training_mode_is_explained_in_eval_mode_and_flags_restored():
    model, x = _build("EEGConformer")
    expect = sx.explain(model, x)
    model.train()
    flags = training_flags(model)
    with pytest.warns(sx.errors.ExplainWarning, match="training mode"):
        R = sx.explain(model, x)
    assert training_flags(model) == flags
    np.testing.assert_array_equal(R.values, expect.values)


def test_atcnet_batch_of_several_samples_is_refused_naming_the_head_split():
    """ATCNet's attention (braindecode's ``_MHA``) splits the heads by concatenating them along the
    batch dim (``torch.cat(Q.split(head_dim, -1), 0)``): a tensor of (heads * batch) rows that the
    engine's batch tracking cannot keep apart per sample. One sample at a time is explained; a batch
    of several is refused with the operation named and the model left as it was."""
    model, x1 = _build("ATCNet")
    x = torch.cat([x1, torch.randn(1, *x1.shape[1:], generator=torch.Generator().manual_seed(7))])
    before = state_copy(model)
    with pytest.raises(UnsupportedModelError, match=r"cat@attention_blocks\.\d\.mha joins along the batch dim"):
        sx.explain(model, x)
    assert_state_equal(model, before)
    assert_no_hooks(model)
    # each sample on its own: balanced, and the explained logits of both classes squash to the
    # model's log-probabilities for that sample in the batch
    with torch.no_grad():
        out = model(x).double()
    model.load_state_dict(before)  # our own forward call renormalised the weights
    for i in range(len(x)):
        both = [sx.explain(model, x[i:i + 1], target=[c]) for c in (0, 1)]
        for r in both:
            assert_balances(r, rtol=1e-5, atol=1e-7)
        logits = torch.tensor([[float(r.prediction.values[0]) for r in both]], dtype=torch.float64)
        np.testing.assert_allclose(torch.log_softmax(logits, 1).numpy(), out[i:i + 1].numpy(), rtol=1e-5, atol=1e-6)
    assert_state_equal(model, before)


@settings(max_examples=4, deadline=None)
@given(n_chans=st.integers(1, 5), n_times=st.integers(100, 180), batch=st.integers(1, 3),
       heads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 100),
       preset=st.sampled_from(["epsilon", "attnlrp", "cp-lrp"]))
def test_conformer_ledger_balances_for_varied_shapes(n_chans, n_times, batch, heads, seed, preset):
    from braindecode.models import EEGConformer
    torch.manual_seed(seed)
    model = EEGConformer(n_outputs=3, n_chans=n_chans, n_times=n_times, att_depth=1, att_heads=heads,
                         n_filters_time=8, final_fc_length="auto").eval()
    x = torch.randn(batch, n_chans, n_times)
    before = state_copy(model)
    R = sx.explain(model, x, preset=preset)
    assert_balances(R, rtol=1e-5, atol=1e-7)
    assert_state_equal(model, before)
