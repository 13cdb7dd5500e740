"""Shared model factories and helpers for the relevance-core tests.

Every factory returns ``(model, x)``: a small model in eval mode with deterministic weights and
a batch it accepts. The families cover what the engine must see: dense layers, convolutions
with BatchNorm (non-trivial running statistics), 1-d convolutions on EEG-like input
``(batch, channels, time)``, functional residual adds, depthwise-separable blocks with one ReLU6
module reused twice, functional ``torch.cat`` / ``mean`` / ``flatten``, and an embedding of
integer tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

# tiny tensors: one thread is much faster than two (no thread hand-off), also on a busy machine
torch.set_num_threads(1)


# -- helpers -----------------------------------------------------------------------------------

def set_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(1000 + seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert after[k].dtype == v.dtype, k
        assert torch.equal(after[k], v), f"parameter/buffer {k} changed"


def hook_counts(model: nn.Module) -> dict:
    """Sizes of every hook dict on the model's modules and of torch's global hook dicts."""
    mm = nn.modules.module
    per_module = {}
    for name, m in model.named_modules():
        per_module[name] = (len(m._forward_hooks), len(m._forward_pre_hooks),
                            len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", {})))
    glob = (len(mm._global_forward_hooks), len(mm._global_forward_pre_hooks),
            len(mm._global_backward_hooks), len(getattr(mm, "_global_backward_pre_hooks", {})))
    return {"modules": per_module, "global": glob}


def assert_no_hooks(model: nn.Module, before_global: tuple | None = None) -> None:
    for name, m in model.named_modules():
        assert len(m._forward_hooks) == 0, f"forward hook left on {name!r}"
        assert len(m._forward_pre_hooks) == 0, f"forward pre-hook left on {name!r}"
        assert len(m._backward_hooks) == 0, f"backward hook left on {name!r}"
    if before_global is not None:
        assert hook_counts(model)["global"] == before_global


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def per_sample(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1).sum(axis=1)


def assert_balances(R, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """sum(R) + absorbed == prediction per sample (tolerance relative to |prediction|)."""
    total = per_sample(R.values) + R["absorbed"].values
    pred = R["prediction"].values
    np.testing.assert_allclose(total, pred, rtol=0, atol=atol + rtol * np.abs(pred).max())
    for t, p in zip(total, pred):
        assert abs(t - p) <= atol + rtol * abs(p), (t, p)


def assert_ledger_balances(led, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Per layer entering == leaving + absorbed, and input_relevance + sum absorbed == prediction."""
    ent, lea, ab = (np.asarray(led[v].values, np.float64) for v in ("entering", "leaving", "absorbed"))
    pred = np.asarray(led["prediction"].values, np.float64)
    scale = np.maximum(np.abs(ent).max(axis=1), np.abs(pred))[:, None]
    gap = np.abs(ent - (lea + ab))
    bad = gap > atol + rtol * scale
    assert not bad.any(), (f"layer(s) {list(np.asarray(led['layer'].values)[bad.any(axis=0)])} do not "
                           f"balance: entering - leaving - absorbed up to {gap.max():.3g}")
    total = led["input_relevance"].values + ab.sum(axis=1)
    gap = np.abs(total - pred)
    assert (gap <= atol + rtol * np.abs(pred)).all(), (total, pred)


# -- model families ----------------------------------------------------------------------------

def _seeded(seed: int):
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 7)


def make_mlp(seed: int = 0, batch: int = 4):
    g = _seeded(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(batch, 6, generator=g)
    return model.eval(), x


class CNN(nn.Module):
    """Conv2d + BatchNorm2d + ReLU + MaxPool, Conv + BN, global average pooling, dense head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


def make_cnn(seed: int = 0, batch: int = 3):
    g = _seeded(seed)
    model = set_bn_stats(CNN(), seed)
    x = torch.rand(batch, 3, 8, 8, generator=g)
    return model.eval(), x


class EEGNet(nn.Module):
    """Temporal Conv1d over (batch, channels, time), BatchNorm1d, ReLU, AvgPool1d, dense head."""

    def __init__(self, channels: int = 5, times: int = 24):
        super().__init__()
        self.temporal = nn.Conv1d(channels, 8, kernel_size=5, padding=2)
        self.bn = nn.BatchNorm1d(8)
        self.act = nn.ReLU()
        self.pool = nn.AvgPool1d(4)
        self.conv2 = nn.Conv1d(8, 6, kernel_size=3, stride=2)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(6 * 2, 2)

    def forward(self, x):
        h = self.pool(self.act(self.bn(self.temporal(x))))
        h = self.act2(self.conv2(h))
        return self.fc(h.flatten(1))


def make_eeg(seed: int = 0, batch: int = 4):
    g = _seeded(seed)
    model = set_bn_stats(EEGNet(), seed)
    x = torch.randn(batch, 5, 24, generator=g)
    return model.eval(), x


class ResNet(nn.Module):
    """Two residual blocks with functional ``x + y`` adds (one with a 1x1 projection)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.a1 = nn.Conv2d(4, 4, 3, padding=1)
        self.a2 = nn.Conv2d(4, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 6, 3, padding=1, stride=2)
        self.proj = nn.Conv2d(4, 6, 1, stride=2, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        y = self.a2(torch.relu(self.a1(h)))
        h = torch.relu(h + y)
        h = torch.relu(self.b1(h) + self.proj(h))
        return self.fc(h.mean(dim=(2, 3)))


def make_resnet(seed: int = 0, batch: int = 3):
    g = _seeded(seed)
    model = ResNet()
    x = torch.randn(batch, 2, 8, 8, generator=g)
    return model.eval(), x


class DepthwiseNet(nn.Module):
    """Depthwise-separable block (BN after each conv), one ReLU6 module used twice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()  # reused: after bn0 and after bn1
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        h = self.act(self.bn0(self.stem(x)))
        y = self.act(self.bn1(self.dw(h)))
        y = self.bn2(self.pw(y))
        h = h + y
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def make_depthwise(seed: int = 0, batch: int = 3):
    g = _seeded(seed)
    model = set_bn_stats(DepthwiseNet(), seed)
    with torch.no_grad():  # larger stem weights: some units reach the ReLU6 ceiling
        model.stem.weight.mul_(6.0)
    x = torch.randn(batch, 3, 6, 6, generator=g)
    return model.eval(), x


class CatMeanNet(nn.Module):
    """Two conv branches joined by ``torch.cat``; ``mean`` and ``torch.flatten`` functionally."""

    def __init__(self):
        super().__init__()
        self.left = nn.Conv1d(3, 4, 3, padding=1)
        self.right = nn.Conv1d(3, 4, 5, padding=2)
        self.mix = nn.Conv1d(8, 6, 1)
        self.fc = nn.Linear(6 * 4, 3)

    def forward(self, x):
        h = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1)
        h = torch.relu(self.mix(h))
        h = h.reshape(h.shape[0], h.shape[1], 4, -1).mean(dim=-1)  # mean over time windows
        return self.fc(torch.flatten(h, 1))


def make_catmean(seed: int = 0, batch: int = 3):
    g = _seeded(seed)
    model = CatMeanNet()
    x = torch.randn(batch, 3, 16, generator=g)
    return model.eval(), x


class TokenNet(nn.Module):
    """Embedding of integer tokens, a per-token dense layer, mean over tokens, classifier."""

    def __init__(self, vocab: int = 20, dim: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, tokens):
        h = torch.relu(self.proj(self.emb(tokens)))
        return self.fc(h.mean(dim=1))


def make_tokens(seed: int = 0, batch: int = 3):
    g = _seeded(seed)
    model = TokenNet()
    x = torch.randint(0, 20, (batch, 7), generator=g)
    return model.eval(), x


#: every model family: name -> factory(seed, batch) -> (model, x)
FAMILIES = {
    "mlp": make_mlp,
    "cnn_bn": make_cnn,
    "eeg_conv1d": make_eeg,
    "residual": make_resnet,
    "depthwise_relu6": make_depthwise,
    "cat_mean_flatten": make_catmean,
    "embedding": make_tokens,
}

#: families with a float input (all but the token model)
FLOAT_FAMILIES = [k for k in FAMILIES if k != "embedding"]


@pytest.fixture(params=list(FAMILIES))
def family(request):
    """(name, model, x) for every model family."""
    model, x = FAMILIES[request.param]()
    return request.param, model, x


@pytest.fixture(params=FLOAT_FAMILIES)
def float_family(request):
    model, x = FAMILIES[request.param]()
    return request.param, model, x


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


def provenance_of(path) -> dict:
    """The provenance record a pipeline output carries (:func:`sciexplain.pipeline.read_provenance`)."""
    from sciexplain.pipeline import read_provenance
    return read_provenance(path)
