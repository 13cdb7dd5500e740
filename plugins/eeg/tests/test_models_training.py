"""Tests of the reference models and the training helper (tiny, fast runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sciexplain_eeg.models import CompactEEGNet, SturmDNN
from sciexplain_eeg.synthetic import make_synthetic_epochs
from sciexplain_eeg.training import FitResult, evaluate, fit

SMALL_CHANNELS = ("F3", "Fz", "F4", "C3", "Cz", "C4", "P3", "Pz", "P4")
SMALL = dict(ch_names=SMALL_CHANNELS, sfreq=50.0, tmin=0.0, tmax=0.6, window=(0.2, 0.4))
N_CH, N_T = len(SMALL_CHANNELS), 31


@pytest.fixture(scope="module")
def easy():
    """Small, easy synthetic train and test sets (volts)."""
    train, _ = make_synthetic_epochs(n_epochs=120, seed=0, **SMALL)
    test, _ = make_synthetic_epochs(n_epochs=200, seed=1, **SMALL)
    return train, test


def tiny_cnn() -> CompactEEGNet:
    return CompactEEGNet(N_CH, N_T, n_filters=4, kernel=5, pool=4)


def tiny_dnn() -> SturmDNN:
    return SturmDNN(N_CH, N_T, hidden=(32,))


# --------------------------------------------------------------------------- #
# models
# --------------------------------------------------------------------------- #
LRP_FRIENDLY = (nn.Sequential, nn.Flatten, nn.Unflatten, nn.Linear, nn.Conv2d, nn.ReLU, nn.AvgPool2d)


@pytest.mark.parametrize("make", [lambda: SturmDNN(28, 28), lambda: CompactEEGNet(28, 28)])
def test_models_are_lrp_friendly_and_output_logits(make):
    model = make()
    for name, module in model.named_modules():
        if module is not model:
            assert isinstance(module, LRP_FRIENDLY), f"{name}: {type(module).__name__}"
    assert (model.n_channels, model.n_times, model.n_classes) == (28, 28, 2)
    assert model.ch_names is None and model.sfreq is None and model.scaling is None
    x = torch.randn(5, 28, 28) * 20
    out = model(x)
    assert out.shape == (5, 2)
    assert not torch.allclose(out.sum(1), torch.ones(5))  # logits, not probabilities
    # Traceable by torch.fx (the input check steps aside for proxies).
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), out)


@settings(max_examples=20, deadline=None)
@given(
    n_channels=st.integers(1, 12),
    n_times=st.integers(4, 40),
    n_classes=st.integers(2, 4),
    batch=st.integers(1, 3),
    kind=st.sampled_from(["dnn", "cnn"]),
)
def test_models_accept_their_shape(n_channels, n_times, n_classes, batch, kind):
    if kind == "dnn":
        model: nn.Module = SturmDNN(n_channels, n_times, n_classes, hidden=(8, 4))
    else:
        model = CompactEEGNet(n_channels, n_times, n_classes, n_filters=3, kernel=3, pool=min(4, n_times))
    out = model(torch.randn(batch, n_channels, n_times))
    assert out.shape == (batch, n_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("model", [SturmDNN(4, 10), CompactEEGNet(4, 10, kernel=3)])
@pytest.mark.parametrize("shape", [(2, 5, 10), (2, 4, 9), (4, 10), (1, 2, 4, 10)])
def test_forward_rejects_wrong_shapes(model, shape):
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, channel, time\) = \(batch, 4, 10\)"):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SturmDNN(0, 10), "n_channels must be a positive integer"),
        (lambda: SturmDNN(4, 10, n_classes=1), "n_classes must be at least 2"),
        (lambda: SturmDNN(4, 10, hidden=(8, 0)), "hidden layer width"),
        (lambda: SturmDNN(4, 10, hidden=8), "hidden must be a sequence"),
        (lambda: CompactEEGNet(4, 10, kernel=4), "kernel must be odd"),
        (lambda: CompactEEGNet(4, 10, pool=11), r"pool \(11\) must not exceed n_times"),
        (lambda: CompactEEGNet(4, 10.0), "n_times must be a positive integer"),
    ],
)
def test_constructor_validation(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_sturm_dnn_without_hidden_layers_is_linear():
    model = SturmDNN(3, 5, hidden=())
    assert [type(m) for m in model.layers] == [nn.Flatten, nn.Linear]


# --------------------------------------------------------------------------- #
# training
# --------------------------------------------------------------------------- #
def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_is_deterministic_and_leaves_global_rng_alone(easy):
    train, _ = easy
    model = tiny_cnn()  # building a model draws from the global RNG; fit must not
    rng_before = torch.get_rng_state()
    a = fit(model, train, seed=3, max_epochs=4)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b = fit(tiny_cnn(), train, seed=3, max_epochs=4)
    c = fit(tiny_cnn(), train, seed=4, max_epochs=4)
    sa, sb, sc = _state(a.model), _state(b.model), _state(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history == b.history
    np.testing.assert_array_equal(a.val_index, b.val_index)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fit_on_epochs_records_scaling_and_labels(easy):
    train, test = easy
    result = fit(tiny_dnn(), train, seed=0, max_epochs=3)
    assert isinstance(result, FitResult)
    model = result.model
    assert result.scaling == 1e6 and model.scaling == 1e6
    assert model.ch_names == list(SMALL_CHANNELS) and model.sfreq == 50.0
    assert result.classes == ["left", "right"]
    assert not model.training
    assert set(result.history) == {"train_loss", "val_loss", "train_accuracy", "val_accuracy"}
    assert all(len(v) == 3 for v in result.history.values())
    # Stratified split: 120 epochs, 60 per class -> 12 of each in validation.
    y = train.events[:, 2]
    assert len(result.val_index) == 24 and np.bincount(y[result.val_index]).tolist() == [12, 12]
    assert not set(result.train_index) & set(result.val_index)
    # evaluate() applies model.scaling to epochs, as fit did.
    X_uv = test.get_data() * 1e6
    assert evaluate(model, test) == evaluate(model, X_uv, test.events[:, 2])


def test_fit_with_arrays_uses_them_as_given(easy):
    train, _ = easy
    X = train.get_data() * 1e6
    y = train.events[:, 2]
    model = tiny_dnn()
    result = fit(model, X, y, seed=0, max_epochs=2)
    assert result.scaling == 1.0 and model.scaling is None and result.classes is None
    result2 = fit(tiny_dnn(), train.get_data(), y, seed=0, max_epochs=2, scaling=1e6)
    assert result2.model.scaling == 1e6
    for k, v in result.model.state_dict().items():
        torch.testing.assert_close(v, result2.model.state_dict()[k])


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4, 10)).astype(np.float32)
    y = rng.permutation(np.arange(80) % 2)  # labels unrelated to X: validation loss soon rises
    model = SturmDNN(4, 10, hidden=(64,))
    result = fit(model, X, y, seed=0, max_epochs=200, patience=3, lr=1e-2)
    val_loss = result.history["val_loss"]
    assert result.stopped_early
    assert len(val_loss) < 200
    assert result.best_epoch == int(np.argmin(val_loss))
    assert len(val_loss) == result.best_epoch + 3 + 1
    assert result.val_loss == pytest.approx(val_loss[result.best_epoch], rel=1e-6)
    assert result.val_accuracy == pytest.approx(result.history["val_accuracy"][result.best_epoch])
    # The returned model really holds those weights.
    with torch.no_grad():
        xv = torch.as_tensor(X[result.val_index])
        loss = nn.functional.cross_entropy(model(xv), torch.as_tensor(y[result.val_index]))
    assert float(loss) == pytest.approx(val_loss[result.best_epoch], rel=1e-5)


def test_no_early_stop_when_patience_is_not_exhausted(easy):
    train, _ = easy
    result = fit(tiny_cnn(), train, seed=0, max_epochs=3, patience=10)
    assert not result.stopped_early and len(result.history["val_loss"]) == 3


@pytest.mark.parametrize("make", [tiny_cnn, tiny_dnn])
def test_easy_synthetic_data_beats_chance_clearly(easy, make):
    train, test = easy
    result = fit(make(), train, seed=0, max_epochs=40, patience=10, lr=3e-3)
    accuracy = evaluate(result.model, test)
    assert accuracy > 0.8, accuracy


def test_reset_parameters_false_continues_training(easy):
    train, _ = easy
    model = tiny_dnn()
    fit(model, train, seed=0, max_epochs=2)
    before = _state(model)
    fit(model, train, seed=0, max_epochs=1, reset_parameters=False, lr=1e-6, patience=1)
    after = _state(model)
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)
    fit(model, train, seed=5, max_epochs=1, lr=1e-6)
    reset = _state(model)
    assert not all(torch.allclose(before[k], reset[k], atol=1e-4) for k in before)


def test_verbose_shows_progress(easy, capsys):
    train, _ = easy
    fit(tiny_dnn(), train, seed=0, max_epochs=2, verbose=True)
    assert "fit" in capsys.readouterr().err
    fit(tiny_dnn(), train, seed=0, max_epochs=2, verbose=False)
    assert "fit" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), ValueError, "NaN or infinite"),
        (lambda X, y: (X[:, :-1], y), ValueError, r"X has 3 channels .* model expects 4"),
        (lambda X, y: (X[:, :, :-1], y), ValueError, "time samples .* model expects 10"),
        (lambda X, y: (X[0], y), ValueError, r"shape \(n_samples, n_channels, n_times\)"),
        (lambda X, y: (X, y + 1), ValueError, "has 2 outputs"),
        (lambda X, y: (X, y - 1), ValueError, "labels 0 .. n_classes - 1"),
        (lambda X, y: (X, y + 0.5), ValueError, "non-integer"),
        (lambda X, y: (X, y[:-1]), ValueError, r"y must have shape \(40,\)"),
        (lambda X, y: (X, None), ValueError, "y .* is required"),
        (lambda X, y: (X, np.zeros_like(y)), ValueError, "single class"),
        (lambda X, y: (X, np.r_[1, np.zeros(39, dtype=int)]), ValueError, "at least 2 per class"),
        (lambda X, y: (X.astype(str), y), TypeError, "real numbers"),
        (lambda X, y: (X, y.astype(bool)), TypeError, "integer class labels"),
    ],
)
def test_fit_validates_data(mutate, error, message):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4, 10))
    y = np.arange(40) % 2
    Xb, yb = mutate(X, y)
    with pytest.raises(error, match=message):
        fit(SturmDNN(4, 10, hidden=(4,)), Xb, yb, max_epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 0.01}, "Cannot split"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"patience": 0}, "patience"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"scaling": 0.0}, "scaling"),
        ({"seed": -1}, "seed"),
    ],
)
def test_fit_validates_parameters(kwargs, message):
    X = np.random.default_rng(0).normal(size=(40, 4, 10))
    y = np.arange(40) % 2
    with pytest.raises(ValueError, match=message):
        fit(SturmDNN(4, 10, hidden=(4,)), X, y, **{"max_epochs": 1, **kwargs})


def test_evaluate_restores_training_flag_and_counts_correctly():
    model = SturmDNN(2, 3, hidden=())
    with torch.no_grad():
        model.layers[1].weight.copy_(torch.tensor([[1.0] * 6, [-1.0] * 6]))
        model.layers[1].bias.zero_()
    X = np.stack([np.ones((2, 3)), -np.ones((2, 3)), np.ones((2, 3))])
    model.train()
    assert evaluate(model, X, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert model.training
    with pytest.raises(ValueError, match="NaN"):
        evaluate(model, X * np.nan, np.array([0, 1, 1]))
