"""Shared small fixtures for the EEG explanation tests (synthetic epochs, tiny models)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from sciexplain_eeg.models import CompactEEGNet, SturmDNN  # noqa: E402
from sciexplain_eeg.synthetic import DEFAULT_CH_NAMES, make_synthetic_epochs  # noqa: E402

#: a short, coarse variant of the synthetic epochs: 30 channels x 31 samples
SHORT = dict(sfreq=50.0, tmin=0.0, tmax=0.6, window=(0.2, 0.4))
N_CH, N_T = len(DEFAULT_CH_NAMES), 31


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def epochs():
    """40 synthetic epochs (volts, montage set), 30 channels x 31 samples at 50 Hz."""
    ep, _ = make_synthetic_epochs(n_epochs=40, seed=3, **SHORT)
    return ep


@pytest.fixture(scope="session")
def truth():
    _, gt = make_synthetic_epochs(n_epochs=40, seed=3, **SHORT)
    return gt


def annotated(model: torch.nn.Module, scaling: float = 1e6) -> torch.nn.Module:
    """Set what fit() would set (channel names, sampling rate, scaling) and eval mode."""
    model.ch_names = list(DEFAULT_CH_NAMES)
    model.sfreq = SHORT["sfreq"]
    model.scaling = scaling
    return model.eval()


@pytest.fixture(scope="session")
def annotate():
    """The function that annotates a model like fit() does."""
    return annotated


@pytest.fixture(scope="session")
def short():
    """Keyword arguments of make_synthetic_epochs for the short variant."""
    return dict(SHORT)


@pytest.fixture()
def dnn():
    """An untrained small SturmDNN with the epochs' channels (random weights, seeded)."""
    torch.manual_seed(0)
    return annotated(SturmDNN(N_CH, N_T, hidden=(16,)))


@pytest.fixture()
def cnn():
    torch.manual_seed(0)
    return annotated(CompactEEGNet(N_CH, N_T, n_filters=4, kernel=5, pool=4))
