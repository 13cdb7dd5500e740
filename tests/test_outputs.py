"""Models that return tuples, dicts or Hugging Face ``ModelOutput``s: the explained output."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.errors import InputError, UnsupportedModelError


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def parts(self, x):
        h = torch.relu(self.hidden(x))
        return h, self.head(h)


class AsTuple(Body):
    def forward(self, x):
        h, logits = self.parts(x)
        return h, logits, None


class AsDict(Body):
    def forward(self, x):
        h, logits = self.parts(x)
        return {"hidden_states": h, "logits": logits}


class AsDictWithoutLogits(Body):
    def forward(self, x):
        h, logits = self.parts(x)
        return {"hidden_states": h, "scores": logits}


class FakeModelOutput(OrderedDict):
    """What transformers' ``ModelOutput`` is: an ordered dict whose entries are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class AsModelOutput(Body):
    def forward(self, x):
        h, logits = self.parts(x)
        return FakeModelOutput(logits=logits, hidden_states=(h,))


class Plain(Body):
    def forward(self, x):
        return self.parts(x)[1]


@pytest.fixture
def data():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    reference = Plain().eval()
    return reference, x, sx.explain(reference, x)


def _same(kind, reference, x, R_ref, **kwargs):
    model = kind().eval()
    model.load_state_dict(reference.state_dict())
    R = sx.explain(model, x, **kwargs)
    np.testing.assert_array_equal(R.values, R_ref.values)
    np.testing.assert_array_equal(R["prediction"].values, R_ref["prediction"].values)
    return R


def test_logits_found_by_name_in_a_dict_and_a_model_output(data):
    _same(AsDict, *data)
    _same(AsModelOutput, *data)


def test_output_chosen_by_index_or_key(data):
    _same(AsTuple, *data, output=1)
    _same(AsDictWithoutLogits, *data, output="scores")
    _same(AsModelOutput, *data, output=0)  # a ModelOutput's entries by position, as transformers allows


def test_transformers_model_output_if_installed(data):
    outputs = pytest.importorskip("transformers.modeling_outputs")

    class HF(Body):
        def forward(self, x):
            h, logits = self.parts(x)
            return outputs.SequenceClassifierOutput(logits=logits, hidden_states=(h,))

    _same(HF, *data)


def test_errors_list_the_candidates(data):
    reference, x, _ = data
    model = AsTuple().eval()
    with pytest.raises(UnsupportedModelError, match=r"returned tuple with 3 entries \(\[0\]: tensor \(4, 5\), "
                                                    r"\[1\]: tensor \(4, 3\), \[2\]: NoneType\).*output="):
        sx.explain(model, x)
    with pytest.raises(UnsupportedModelError, match=r"'hidden_states': tensor \(4, 5\), 'scores': tensor"):
        sx.explain(AsDictWithoutLogits().eval(), x)
    with pytest.raises(InputError, match=r"output=5 is not among the model's outputs: \[0\]"):
        sx.explain(model, x, output=5)
    with pytest.raises(InputError, match=r"output=2 is NoneType, not a tensor"):
        sx.explain(model, x, output=2)
    with pytest.raises(InputError, match=r"output='logit' is not among"):
        sx.explain(AsDict().eval(), x, output="logit")
    with pytest.raises(InputError, match=r"remove output="):
        sx.explain(reference, x, output=0)


def test_another_output_may_be_explained(data):
    _, x, _ = data
    # output 0 (4, 5) is a (batch, n_outputs) tensor too: explaining it is the caller's choice
    R = sx.explain(AsTuple().eval(), x, output=0)
    assert R.shape == x.shape
    R.relevance.check(rtol=1e-5, atol=1e-6)


def test_read_provenance_reads_every_kind_of_output_back(tmp_path):
    """Each writer's provenance comes back through sciexplain.pipeline.read_provenance; a file
    without one is a clear error, nothing else."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr
    from sciexplain.errors import InputError
    from sciexplain.pipeline import read_provenance
    from sciexplain.pipeline.outputs import save_figure, write_csv, write_netcdf
    record = {"config_sha256": "abc123", "sciexplain": "1.0", "seed": 0}
    write_netcdf(xr.DataArray([1.0, 2.0], dims=("sample",), name="r"), tmp_path / "r.nc", record)
    write_csv([{"a": 1.0}], tmp_path / "t.csv", record)
    fig, ax = plt.subplots()
    save_figure(fig, tmp_path / "f.png", record)
    (tmp_path / "evaluation.md").write_text("| a |\n\n<!-- provenance: config_sha256 abc123, see provenance.json -->\n")
    for name in ("r.nc", "t.csv", "f.png"):
        assert read_provenance(tmp_path / name) == record, name
    assert read_provenance(tmp_path / "evaluation.md") == {"config_sha256": "abc123"}
    (tmp_path / "plain.csv").write_text("a\n1\n")
    xr.DataArray([1.0], dims=("s",), name="r").to_netcdf(tmp_path / "plain.nc")
    for name in ("plain.csv", "plain.nc", "missing.nc"):
        with pytest.raises(InputError, match="provenance|does not exist"):
            read_provenance(tmp_path / name)
