"""TorchScript models explained through :func:`sciexplain.canonizers.torchscript.to_eager`.

The reference for every check is the original eager model the script module was made from: the
converted module must compute the same outputs, and LRP on it must give the same relevance, the
same rules on the same module paths, and a balanced ledger, for scripted (``torch.jit.script``)
and traced (``torch.jit.trace``) modules, also after a round trip through a file on disk.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputTypeError, UnsupportedModelError
from sciexplain.canonizers.torchscript import (InterpretedModule, ScriptConversionError, ScriptRaisedError, ScriptValueError,
                                    to_eager)

from conftest import assert_balances, assert_ledger_balances, set_bn_stats, state_copy, assert_state_equal


# -- architectures -------------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)) + x)


class CNN(nn.Module):
    """Conv + BatchNorm stem, a residual block (functional add), a side branch joined with
    ``torch.cat``, max and adaptive average pooling, Flatten."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block = Residual(4)
        self.side = nn.Conv2d(1, 2, 5, stride=1, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d((2, 2))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        h = self.block(self.stem(x))
        h = torch.cat([h, F.relu(self.side(x))], 1)
        return self.fc(self.flat(self.gap(self.pool(h))))


class EEGConv(nn.Module):
    """(epoch, channel, time): temporal Conv1d, BatchNorm1d, ELU, average pooling, dropout,
    ``view(x.size(0), -1)``, Linear."""

    def __init__(self, n_channels: int = 8, n_times: int = 32):
        super().__init__()
        self.temporal = nn.Conv1d(n_channels, 6, 5, padding=2, groups=2)
        self.bn = nn.BatchNorm1d(6)
        self.act = nn.ELU()
        self.pool = nn.AvgPool1d(4)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(6 * (n_times // 4), 2)

    def forward(self, x):
        h = self.drop(self.pool(self.act(self.bn(self.temporal(x)))))
        return self.fc(h.view(h.size(0), -1))


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class GRUClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(torch.tanh(out[:, -1]))


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = 0.5  # a plain attribute, read with prim::GetAttr
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return self.lin(x) * self.scale


class ControlFlow(nn.Module):
    """Scripted control flow: an input check that raises, a ModuleList loop, ``range`` loops with
    a branch, a list built with ``append``, a helper method and a TorchScript function."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(6, 8), nn.Linear(8, 8)])
        self.gate = Gate()
        self.n_parts = 2
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError("expected input of shape (batch, features)")
        h = x
        for layer in self.layers:
            h = F.relu(layer(h))
        parts: list[torch.Tensor] = []
        for i in range(self.n_parts):
            if i == 0:
                parts.append(self.gate(h))
            else:
                parts.append(self._smooth(h))
        return self.head(_halve(torch.cat(parts, dim=1)))

    def _smooth(self, h):
        return h.mean(dim=1, keepdim=True).expand(-1, 8) * 0.25 + h[:, :] / 2


def _halve(t: torch.Tensor) -> torch.Tensor:
    return t * 0.5


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 5)
        self.fc = nn.Linear(5, 2)

    def forward(self, tokens):
        return self.fc(self.emb(tokens).mean(dim=1))


class Linear(nn.Module):
    """A user's own class that happens to be called ``Linear``: it must not be rebuilt as nn.Linear."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return 2.0 * F.linear(x, self.weight)


class Forked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        fut = torch.jit.fork(self.fc, x)
        return torch.jit.wait(fut)


class Stateful(nn.Module):
    """Python features of TorchScript: a default and a keyword argument, a while loop, a dict, an
    ``assert``, a counter attribute updated in forward (prim::SetAttr), dtype conversions and a
    tuple of a tensor, a list and scalars as output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.calls = 0

    def forward(self, x, scale: float = 2.0):
        assert x.dim() == 2, "need (batch, features)"
        self.calls += 1
        y = self.fc(x).contiguous().to(torch.float64).float()
        k = 0
        while k < 3:
            y = y + 1
            k += 1
        d = {"a": y}
        return d["a"] * scale, [float(y.sum().item())], (x.size(0) // 2, x.dtype == torch.float32, self.calls)


class NoGradBlock(nn.Module):
    def forward(self, x):
        with torch.no_grad():
            y = x * 2
            if x.dim() != 1:
                raise ValueError("expected a vector")
        return y + x


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        h, _ = self.mha(x, x, x)
        return self.fc(h.mean(1))


def _inputs(name: str, g: torch.Generator) -> torch.Tensor:
    shapes = {"mlp": (5, 6), "cnn": (3, 1, 8, 8), "eeg": (4, 8, 32), "lstm": (3, 7, 4), "gru": (3, 6, 3),
              "control": (4, 6)}
    return torch.randn(*shapes[name], generator=g)


_FACTORIES = {"mlp": MLP, "cnn": CNN, "eeg": EEGConv, "lstm": LSTMClassifier, "gru": GRUClassifier,
              "control": ControlFlow}


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 11)
    model = set_bn_stats(_FACTORIES[name](), seed).eval()
    return model, _inputs(name, g)


def _script(model: nn.Module, x, how: str, tmp_path=None):
    sm = torch.jit.script(model) if how == "script" else torch.jit.trace(model, x)
    if tmp_path is not None:  # a TorchScript file on disk, as a pipeline gets it
        path = tmp_path / f"{type(model).__name__}_{how}.pt"
        torch.jit.save(sm, str(path))
        sm = torch.jit.load(str(path))
    return sm


# -- the same function -------------------------------------------------------------------------------

#: every architecture scripted and traced; the control-flow model scripted only (tracing would
#: unroll its loops and branches into a plain sequence of operations)
_CASES = [(n, h) for n in ("mlp", "cnn", "eeg", "lstm", "gru", "control") for h in ("script", "trace")
          if (n, h) != ("control", "trace")]


@pytest.mark.parametrize("name,how", _CASES)
def test_the_eager_module_computes_the_script_modules_function(name, how, tmp_path):
    model, x = _model(name)
    sm = _script(model, x, how, tmp_path)
    before, code = state_copy(sm), sm.code
    eager = to_eager(sm)
    with torch.no_grad():
        want = model(x)
        np.testing.assert_allclose(eager(x).numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(eager(x).numpy(), sm(x).numpy(), rtol=1e-6, atol=1e-6)
        x2 = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(1))  # another batch size
        np.testing.assert_allclose(eager(x2).numpy(), model(x2).numpy(), rtol=1e-6, atol=1e-6)
    # the user's script module is untouched, and the eager one does not share its tensors
    assert_state_equal(sm, before)
    assert sm.code == code
    for p in eager.parameters():
        assert all(p.data_ptr() != q.data_ptr() for q in sm.parameters())
    # torch layers are the real eager layers, at the paths of the original model
    original = dict(model.named_modules())
    converted = dict(eager.named_modules())
    for path, m in original.items():
        if type(m).__module__.startswith("torch.nn.modules") and not isinstance(m, nn.ModuleList):
            assert type(converted[path]) is type(m), path
        elif path:
            assert isinstance(converted[path], (InterpretedModule, nn.ModuleList)), path
    assert isinstance(eager, InterpretedModule) and eager.original_name == type(model).__name__


def _torch_layers():
    g = torch.Generator().manual_seed(12)
    x2, x3, x4 = (torch.randn(*shape, generator=g) for shape in ((2, 4), (2, 4, 6), (2, 4, 6, 6)))
    return [
        (nn.Bilinear(4, 4, 2), (x2, x2)), (nn.Conv1d(4, 2, 3, padding="same"), x3),
        (nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect"), x4), (nn.ConvTranspose2d(4, 2, 3, stride=2), x4),
        (nn.LayerNorm(6), x3), (nn.GroupNorm(2, 4), x4), (nn.InstanceNorm1d(4), x3),
        (nn.LSTM(6, 5, num_layers=2, batch_first=True), x3), (nn.GRU(6, 5), x3), (nn.RNN(6, 5, nonlinearity="relu"), x3),
        (nn.MultiheadAttention(6, 2, batch_first=True), (x3, x3, x3)),
        (nn.TransformerEncoderLayer(6, 2, 8, batch_first=True), x3),
        (nn.Embedding(10, 3, padding_idx=0), torch.tensor([[1, 2, 0]])), (nn.EmbeddingBag(10, 3), torch.tensor([[1, 2, 0]])),
        (nn.Upsample(scale_factor=2, mode="bilinear"), x4), (nn.Upsample(size=(9, 9), mode="nearest"), x4),
        (nn.MaxPool2d(3, 2, 1), x4), (nn.AvgPool2d(3, 2, 1, count_include_pad=False), x4),
        (nn.AdaptiveMaxPool1d(2), x3), (nn.LPPool2d(2, 2), x4), (nn.ReflectionPad1d(2), x3),
        (nn.ConstantPad1d(2, 3.0), x3), (nn.LogSoftmax(1), x2), (nn.Unflatten(1, (2, 2)), x2), (nn.PReLU(), x2),
        (nn.GLU(), x2), (nn.Threshold(0.1, 2.0), x2), (nn.CosineSimilarity(), (x2, x2)),
        (nn.Fold((4, 5), (2, 2)), torch.randn(1, 12, 12, generator=g)),
    ]


_REBUILT_WHEN_TRACED = (nn.Conv1d, nn.LayerNorm, nn.GroupNorm, nn.LSTM, nn.GRU, nn.RNN, nn.Embedding, nn.Upsample,
                        nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool1d, nn.LogSoftmax, nn.Unflatten, nn.PReLU)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchs_own_layer_code_is_interpreted_correctly(how):
    """Each torch layer's scripted forward (argument checks, branches, functional calls, overloads)
    run through the interpreter instead of rebuilt, and each traced layer converted (rebuilt, or
    interpreted where its graph is not the layer's plain operation), gives the eager layer's outputs."""
    from sciexplain.canonizers.torchscript.converter import _Converter
    for layer, x in _torch_layers():
        layer.eval()
        args = x if isinstance(x, tuple) else (x,)
        if how == "script":
            converted = _Converter().interpreted(torch.jit.script(layer), "")
        else:
            converted = to_eager(torch.jit.trace(layer, args, check_trace=False))
            if isinstance(layer, _REBUILT_WHEN_TRACED):  # read back from the constants of the trace
                assert type(converted) is type(layer), type(layer).__name__
        with torch.no_grad():
            want, got = layer(*args), converted(*args)
        want = [w for w in (want if isinstance(want, tuple) else (want,)) for w in (w if isinstance(w, tuple) else (w,))]
        got = [w for w in (got if isinstance(got, tuple) else (got,)) for w in (w if isinstance(w, tuple) else (w,))]
        assert len(got) == len(want), type(layer).__name__
        for w, v in zip(want, got):
            if isinstance(w, torch.Tensor):
                torch.testing.assert_close(v, w, rtol=1e-6, atol=1e-6, msg=type(layer).__name__)
            else:
                assert v == w, type(layer).__name__


def test_hyper_parameters_are_read_from_scripted_attributes_and_traced_constants():
    conv = nn.Conv2d(2, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2).eval()
    pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    for how in ("script", "trace"):
        seq = nn.Sequential(conv, bn, pool).eval()
        x = torch.randn(2, 2, 9, 11)
        e = to_eager(_script(seq, x, how))
        assert isinstance(e, nn.Sequential)
        assert (e[0].stride, e[0].padding, e[0].dilation, e[0].groups) == ((2, 1), (1, 2), (1, 2), 2)
        assert e[1].eps == 1e-3
        assert tuple(np.broadcast_to(e[2].kernel_size, 2)) == (3, 3) and e[2].ceil_mode
        torch.testing.assert_close(e(x), seq(x), rtol=0, atol=0)
        xs = torch.randn(2, 5, 3)
        el = to_eager(_script(lstm.eval(), xs, how))
        assert isinstance(el, nn.LSTM) and (el.num_layers, el.bidirectional, el.batch_first) == (2, True, True)
        torch.testing.assert_close(el(xs)[0], lstm(xs)[0], rtol=0, atol=0)


# -- LRP on the converted module == LRP on the original ------------------------------------------------

@pytest.mark.parametrize("name,how", _CASES)
def test_lrp_on_the_converted_module_equals_lrp_on_the_original(name, how):
    model, x = _model(name, seed=1)
    eager = to_eager(_script(model, x, how))
    presets = ["epsilon", "epsilon-plus", "alpha2-beta1"] if name != "lstm" else ["epsilon"]
    for preset in presets:
        want = sx.explain(model, x, preset=preset)
        got = sx.explain(eager, x, preset=preset)
        scale = float(np.abs(want.values).max())
        np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(got.prediction.values, want.prediction.values, rtol=1e-6, atol=1e-6)
        # the same rules on the same module paths (BatchNorm folded into the convolution)
        assert got.attrs["rules"] == want.attrs["rules"]
        assert_balances(got)
    led_want, led_got = sx.ledger(model, x), sx.ledger(eager, x)
    assert list(led_got.layer.values) == list(led_want.layer.values)
    assert_ledger_balances(led_got)
    if name == "cnn":
        assert "stem.0 (Conv2d+BatchNorm2d)" in got.attrs["rules"]


def test_bounds_preset_and_gradient_methods_agree_too():
    model, x = _model("cnn", seed=2)
    x = x.clamp(-1, 1)
    eager = to_eager(_script(model, x, "script"))
    for kwargs in ({"preset": "epsilon-plus-box", "bounds": (-1.0, 1.0)}, {"method": "gradient_x_input"}):
        want, got = sx.explain(model, x, **kwargs), sx.explain(eager, x, **kwargs)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_token_models_with_an_embedding(how):
    torch.manual_seed(3)
    model = TokenModel().eval()
    tokens = torch.randint(0, 20, (4, 7), generator=torch.Generator().manual_seed(3))
    eager = to_eager(_script(model, tokens, how))
    assert isinstance(eager.emb, nn.Embedding)
    want, got = sx.explain(model, tokens, preset="epsilon"), sx.explain(eager, tokens, preset="epsilon")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)
    assert_balances(got)


# -- real models of the project ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["script", "trace"])
def test_the_fashion_cnn_from_a_torchscript_file(how, tmp_path):
    image = pytest.importorskip("sciexplain_image")
    model = image.load_fashion_cnn()
    X, _ = image.load_fashion_mnist("test")
    x = image.fashion_to_tensor(X[:4])
    eager = to_eager(_script(model, x, how, tmp_path))
    kwargs = {"preset": "epsilon-plus-box", "bounds": (0.0, 1.0)}
    want, got = sx.explain(model, x, **kwargs), sx.explain(eager, x, **kwargs)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)
    assert got.attrs["rules"] == want.attrs["rules"]
    assert_balances(got)


def test_the_compact_eeg_net_traced(tmp_path):
    models = pytest.importorskip("sciexplain_eeg.models")
    torch.manual_seed(4)
    model = models.CompactEEGNet(28, 28).eval()
    x = torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(4))
    # its input check (isinstance of torch.fx.Proxy) cannot be scripted; tracing works
    with pytest.warns(torch.jit.TracerWarning):
        sm = _script(model, x, "trace", tmp_path)
    eager = to_eager(sm)
    assert isinstance(eager.layers, nn.Sequential) and isinstance(eager.layers[0], nn.Unflatten)
    for preset in ("epsilon", "epsilon-plus"):
        want, got = sx.explain(model, x, preset=preset), sx.explain(eager, x, preset=preset)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-7)
        assert got.attrs["rules"] == want.attrs["rules"]
        assert_balances(got)


def test_efficientnet_lite0_traced_from_a_file(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    models = pytest.importorskip("sciexplain_image.models")
    model = models.load_efficientnet_lite0().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(10))  # small: any size runs
    path = tmp_path / "efficientnet_lite0.pt"
    torch.jit.save(torch.jit.trace(model, x, check_trace=False), str(path))
    eager = to_eager(torch.jit.load(str(path)))
    # its Conv2dStaticSamePadding (an nn.Conv2d subclass of the model's package) is interpreted: the
    # static padding is a rebuilt ZeroPad2d, the convolution a functional one with its BatchNorm folded
    assert isinstance(eager._conv_stem, InterpretedModule) and isinstance(eager._bn0, nn.BatchNorm2d)
    assert isinstance(eager._conv_stem.static_padding, nn.ZeroPad2d)
    want, got = sx.explain(model, x), sx.explain(eager, x)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6 * float(np.abs(want.values).max()))
    assert "conv2d@_conv_stem (conv2d+BatchNorm2d)" in got.attrs["rules"]
    assert_balances(got)


# -- behaviour ---------------------------------------------------------------------------------------------

def test_errors_raised_by_the_script_are_raised_by_the_eager_module():
    model, x = _model("control")
    eager = to_eager(torch.jit.script(model))
    with pytest.raises(ScriptValueError, match=r"ValueError: expected input of shape \(batch, features\)") as info:
        eager(x[None])
    assert isinstance(info.value, ScriptRaisedError) and isinstance(info.value, ValueError)
    with pytest.raises(torch.jit.Error, match="expected input of shape"):  # what the script module raises
        torch.jit.script(model)(x[None])


def test_nodes_without_an_equivalent_are_named():
    eager = to_eager(torch.jit.script(Forked().eval()))
    with pytest.raises(ScriptConversionError, match="prim::fork") as info:
        eager(torch.randn(2, 4))
    assert isinstance(info.value, UnsupportedModelError)
    with pytest.raises(UnsupportedModelError, match="prim::fork"):
        sx.explain(eager, torch.randn(2, 4))
    with pytest.raises(InputTypeError, match="TorchScript module"):
        to_eager(MLP())


def test_a_users_class_named_like_a_torch_layer_is_interpreted():
    torch.manual_seed(5)
    model = Linear().eval()
    x = torch.randn(3, 4)
    eager = to_eager(torch.jit.script(model))
    assert isinstance(eager, InterpretedModule)
    torch.testing.assert_close(eager(x), model(x), rtol=0, atol=0)


def test_the_converted_module_pickles_copies_and_checks_an_example(tmp_path):
    model, x = _model("cnn")
    eager = to_eager(_script(model, x, "script", tmp_path), example=x)
    want = model(x)
    for twin in (pickle.loads(pickle.dumps(eager)), copy.deepcopy(eager)):
        torch.testing.assert_close(twin(x), want, rtol=1e-6, atol=1e-6)
    # a wrong conversion would be caught by the example check
    from sciexplain.canonizers.torchscript.converter import _compare
    broken = copy.deepcopy(eager)
    with torch.no_grad():
        broken.fc.bias.add_(1.0)
    with pytest.raises(ScriptConversionError, match="differs"):
        _compare(torch.jit.script(model), broken, x, 1e-5, 1e-6)


def test_a_pipeline_explains_a_torchscript_file_with_lrp(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    model, x = _model("cnn", seed=6)
    torch.jit.save(torch.jit.trace(model, x), str(tmp_path / "model.pt"))
    np.save(tmp_path / "x.npy", x.numpy())
    config = {"run": {"scheduler": "serial", "progress": False, "chunk": 2},
              "data": {"file": str(tmp_path / "x.npy")}, "model": {"torchscript": str(tmp_path / "model.pt")},
              "methods": [{"name": "lrp", "preset": "epsilon-plus"}]}
    loaded = sx.pipeline.loading.load_model(config["model"], {}, seed=0)
    assert not isinstance(loaded, torch.jit.ScriptModule) and not loaded.training
    result = sx.pipeline.run(config, out=tmp_path / "out")
    R = result.relevance["lrp"]
    want = sx.explain(model, x, preset="epsilon-plus")
    np.testing.assert_allclose(R.values, want.values, rtol=1e-5, atol=1e-7)
    R.relevance.check()


def test_python_features_of_torchscript():
    torch.manual_seed(7)
    model = Stateful().eval()
    sm = torch.jit.script(model)
    eager = to_eager(sm)
    x = torch.randn(4, 3)
    for call in (lambda m: m(x), lambda m: m(x, 3.0), lambda m: m(x, scale=0.5)):
        want, got = call(sm), call(eager)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        assert got[1:] == want[1:]
    assert eager._plain["calls"] == 3 and sm.calls == 3  # each counts its own calls
    with pytest.raises(AssertionError, match=r"need \(batch, features\)"):
        eager(x[None])
    with pytest.raises(TypeError, match="missing the argument 'x'"):
        eager()


def test_a_frozen_module_is_interpreted_and_explained():
    model, x = _model("cnn", seed=8)
    eager = to_eager(torch.jit.freeze(torch.jit.script(model)))
    # freezing folds the BatchNorms into the convolutions and inlines every submodule: what is
    # left is functional code, explained by the function rules
    assert isinstance(eager, InterpretedModule) and not list(eager.children())
    want, got = sx.explain(model, x, preset="epsilon"), sx.explain(eager, x, preset="epsilon")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-4, atol=1e-6 * float(np.abs(want.values).max()))
    assert_balances(got)


def test_a_layer_without_a_rule_is_named_as_in_the_original():
    torch.manual_seed(9)
    model = Attention().eval()
    x = torch.randn(2, 5, 8)
    eager = to_eager(torch.jit.script(model))
    assert isinstance(eager.mha, nn.MultiheadAttention)
    torch.testing.assert_close(eager(x), model(x), rtol=1e-6, atol=1e-6)
    for m in (model, eager):
        with pytest.raises(UnsupportedModelError, match="mha: no relevance rule for module type MultiheadAttention"):
            sx.explain(m, x)
    # gradient methods need no rules
    np.testing.assert_allclose(sx.explain(eager, x, method="gradient").values,
                               sx.explain(model, x, method="gradient").values, rtol=1e-5, atol=1e-7)


def test_no_grad_blocks_keep_their_meaning_and_are_left_on_errors():
    eager = to_eager(torch.jit.script(NoGradBlock()))
    x = torch.randn(3, requires_grad=True)
    eager(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))  # y = 2 x was computed without the graph
    with pytest.raises(ValueError, match="expected a vector"):
        eager(torch.randn(2, 3))
    assert torch.is_grad_enabled()  # the error left the with block


@pytest.mark.parametrize("name,how", [("cnn", "script"), ("lstm", "trace"), ("mlp", "script")])
def test_explain_takes_a_script_module_directly(name, how, tmp_path):
    """The default canonizers convert a TorchScript model (or submodule) on the fly: the same
    relevance as the eager original, listed in attrs["canonizers"], the script module untouched."""
    from sciexplain.canonizers.torchscript import TorchScriptToEager
    model, x = _model(name, seed=2)
    sm = _script(model, x, how, tmp_path)
    code, state = sm.code, {k: v.clone() for k, v in sm.state_dict().items()}
    for method in ("lrp", "gradient_x_input"):
        want = sx.explain(model, x, method=method, preset="epsilon")
        got = sx.explain(sm, x, method=method, preset="epsilon")
        np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6 * float(np.abs(want.values).max()))
        assert "TorchScriptToEager" in got.attrs["canonizers"]
    assert sm.code == code and all(torch.equal(v, state[k]) for k, v in sm.state_dict().items())

    class Wrapper(nn.Module):  # a scripted submodule inside an eager model
        def __init__(self):
            super().__init__()
            self.inner = sm

        def forward(self, x):
            return self.inner(x)

    got = sx.explain(Wrapper().eval(), x, preset="epsilon")
    want = sx.explain(model, x, preset="epsilon")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6 * float(np.abs(want.values).max()))
    first = got.attrs["canonizers"].split("; ")[0]
    assert first.startswith("TorchScriptToEager") and first.endswith(": inner")
    assert TorchScriptToEager() == TorchScriptToEager() and repr(TorchScriptToEager()) == "TorchScriptToEager()"
    # without the canonizer the recorder sees nothing it can explain, and says so
    with pytest.raises(sx.SciexplainError):
        sx.explain(sm, x, preset="epsilon", canonizers=[])
