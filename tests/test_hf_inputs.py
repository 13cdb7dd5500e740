"""Hugging Face transformers built from tiny configs, explained with keyword inputs and ModelOutputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciexplain as sx
from sciexplain.result.ledger import ledger_residual

from conftest import hook_counts, state_copy, assert_state_equal

transformers = pytest.importorskip("transformers")


def _text_models(impl: str):
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=3, attn_implementation=impl))
    distil = transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=3, attn_implementation=impl))
    return {"bert": bert, "distilbert": distil}


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", ["bert", "distilbert"])
def test_token_classifiers_explain_each_token_with_an_exact_ledger(name, impl):
    torch.manual_seed(0)
    model = _text_models(impl)[name].eval()
    ids = torch.randint(5, 100, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    before, hooks = state_copy(model), hook_counts(model)
    R = sx.explain(model, {"input_ids": ids, "attention_mask": mask}, inputs=["input_ids"], preset="attnlrp")
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    assert list(R.data_vars) == ["input_ids"] and R["input_ids"].shape == (2, 8)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    np.testing.assert_allclose(R["prediction"].values, logits.max(1).values.double().numpy(), rtol=1e-5)
    pred = R["prediction"].values
    assert (np.abs(ledger_residual(R).values) <= 1e-5 * np.abs(pred)).all()
    assert np.all(R["input_ids"].values[1, 6:] == 0)  # padded tokens are never attended to


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_vit_explains_pixel_values(impl):
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, attn_implementation=impl)).eval()
    pixels = torch.randn(2, 3, 16, 16)
    R = sx.explain(model, {"pixel_values": pixels}, preset="attnlrp")
    assert R["pixel_values"].shape == (2, 3, 16, 16)
    pred = R["prediction"].values
    assert (np.abs(ledger_residual(R).values) <= 1e-5 * np.abs(pred)).all()
