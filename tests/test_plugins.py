"""Plugin discovery and dispatch in the core (no plugin needed for these tests)."""

import numpy as np
import pytest
import torch

import sciexplain as sx
from sciexplain.plugins import Domain, _type_names, dispatch, domains


def _fake(module: str, name: str):
    cls = type(name, (), {})
    cls.__module__ = module
    return cls()


@pytest.mark.parametrize("module, dist", [("mne.epochs", "sciexplain-eeg"), ("av.container", "sciexplain-video")])
def test_uninstalled_domain_named(module, dist):
    model = torch.nn.Linear(3, 2).eval()
    with pytest.raises(sx.InputError, match=dist):
        sx.explain(model, _fake(module, "EpochsArray"))


def test_documents_hint_text_plugin():
    with pytest.raises(sx.InputError, match="sciexplain-text"):
        dispatch(torch.nn.Linear(3, 2).eval(), ["a document", "another"])


def test_unknown_type_says_what_to_pass():
    with pytest.raises(sx.InputError, match="torch.Tensor or numpy array"):
        sx.explain(torch.nn.Linear(3, 2).eval(), {1, 2})


def test_tensor_needs_no_plugin_and_domains_is_a_mapping():
    R = sx.explain(torch.nn.Linear(3, 2).eval(), np.ones((2, 3), np.float32))
    assert R.dims == ("sample", "dim_0")
    assert isinstance(domains(), dict)
    assert _type_names(1)[0] == "builtins.int"


def test_domain_base_class_documents_the_contract():
    for member in ("claims", "to_tensor", "explain", "removal", "plot", "demo"):
        assert getattr(Domain, member).__doc__
    with pytest.raises(NotImplementedError):
        Domain().claims(object())


def test_core_imports_no_plugin():
    import subprocess
    import sys
    code = ("import sys, sciexplain as sx, torch; sx.explain(torch.nn.Linear(2, 2).eval(), torch.ones(1, 2)); "
            "sx.domains(); print(sorted(m for m in sys.modules if m.startswith('sciexplain_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
