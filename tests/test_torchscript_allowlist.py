"""The TorchScript interpreter runs tensor mathematics only: file, printing and other operators are refused, named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain.canonizers.torchscript import (ScriptConversionError, ScriptOperatorError, check_operators,
                                               refused_operators, script_file_problems, to_eager)
from sciexplain.canonizers.torchscript.allowlist import ALLOWED_FAMILIES, operator_allowed
from sciexplain.canonizers.torchscript.converter import _Converter
from sciexplain.canonizers.torchscript.operators import _PY_OPS, _TENSOR_SPECIAL

EVIL = "/tmp/sciexplain_allowlist_test_from_file.bin"


class FromFile(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        t = torch.from_file("/tmp/sciexplain_allowlist_test_from_file.bin", True, 4)
        return self.lin(x) + t.sum() * 0


class Prints(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        print("printed from the graph", x.shape)
        return self.lin(x)


class PrintsInABranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] > 1000:  # never taken here: still refused, nothing is run to find it
            print("large batch")
        return self.lin(x)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return torch.relu(self.lin(x)).clone()


@pytest.fixture(autouse=True)
def _no_evil_file():
    import os
    if os.path.exists(EVIL):
        os.remove(EVIL)
    yield
    assert not os.path.exists(EVIL), "a refused operator created its file"


def test_from_file_is_refused_and_never_runs():
    sm = torch.jit.script(FromFile().eval())
    with pytest.raises(ScriptOperatorError, match=r"aten::from_file") as err:
        to_eager(sm)
    assert isinstance(err.value, ScriptConversionError)
    assert "test_torchscript_allowlist.py" in str(err.value)  # where the scripted code wrote it
    with pytest.raises(ScriptOperatorError, match="from_file"):
        sx.explain(sm, torch.randn(3, 4))


def test_print_is_refused_and_prints_nothing(capsys):
    sm = torch.jit.script(Prints().eval())
    with pytest.raises(ScriptOperatorError, match=r"prim::Print"):
        sx.explain(sm, torch.randn(3, 4))
    assert "printed from the graph" not in capsys.readouterr().out


def test_check_reads_every_branch_without_running(capsys):
    sm = torch.jit.script(PrintsInABranch())
    refused = refused_operators(sm)
    assert len(refused) == 1 and refused[0].startswith("prim::Print")
    with pytest.raises(ScriptOperatorError, match="prim::Print"):
        check_operators(sm)
    assert capsys.readouterr().out == ""


def test_the_interpreter_refuses_a_refused_node_it_reaches(capsys):
    # the check skipped (the converter alone): the node itself is refused when reached
    model = _Converter().convert(torch.jit.script(Prints()), "", top=True)
    with pytest.raises(ScriptOperatorError, match="prim::Print"):
        model(torch.randn(2, 4))
    assert "printed" not in capsys.readouterr().out


def test_plain_models_pass_and_give_the_same_output():
    sm = torch.jit.script(Plain().eval())
    assert refused_operators(sm) == []
    x = torch.randn(3, 4)
    torch.testing.assert_close(to_eager(sm)(x), sm(x))
    R = sx.explain(sm, x)
    import numpy as np
    np.testing.assert_allclose(R.sum("dim_0").values + R.absorbed.values, R.prediction.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, allowed", [
    ("aten::add", True), ("aten::add_", True), ("aten::__iadd__", True), ("aten::conv2d", True),
    ("aten::masked_fill_", True), ("aten::from_file", False), ("aten::save", False), ("aten::_save_for_mobile", False),
    ("aten::set_", False), ("prim::Print", False), ("aten::__", False), ("aten::warn", True),
])
def test_operator_allowed(kind, allowed):
    assert operator_allowed(kind) is allowed


def test_the_interpreters_own_tables_are_on_the_allowlist():
    # every Python operation and special tensor call the interpreter maps is allowed, so the
    # allowlist (not a forgotten table entry) decides
    for name in list(_PY_OPS) + list(_TENSOR_SPECIAL):
        assert operator_allowed(f"aten::{name}"), name
    assert "from_file" not in set().union(*ALLOWED_FAMILIES.values())


def test_script_file_problems_for_sciexplain_check(tmp_path):
    torch.jit.save(torch.jit.script(Prints()), str(tmp_path / "prints.pt"))
    torch.jit.save(torch.jit.script(Plain()), str(tmp_path / "plain.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    (problem,) = script_file_problems(tmp_path, "prints.pt")
    assert "prim::Print" in problem
    assert script_file_problems(tmp_path, "plain.pt") == []
    assert "not a TorchScript file" in script_file_problems(tmp_path, str(tmp_path / "junk.pt"))[0]
    assert script_file_problems(tmp_path, "missing.pt") == [] and script_file_problems(tmp_path, 3) == []


def test_pipeline_check_reports_a_refused_operator(tmp_path):
    from sciexplain.pipeline.checking import validate
    torch.jit.save(torch.jit.script(Prints()), str(tmp_path / "prints.pt"))
    text = '[model]\ntorchscript = "prints.pt"\n'
    problems = validate({"model": {"torchscript": "prints.pt"}}, text, tmp_path)
    hits = [p for p in problems if "prim::Print" in str(p)]
    assert len(hits) == 1 and "model.torchscript" in str(hits[0])
