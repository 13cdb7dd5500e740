"""The operation registry, user-registered leaf modules, canonizers and the walk's warnings."""

from __future__ import annotations

import ast
import copy
import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import sciexplain as sx
from sciexplain import canonizers as canon
from sciexplain.errors import ExplainWarning, InputError, InputTypeError, RuleError, SciexplainError
from sciexplain.kinds.registry import REGISTRY, Kind, LeafCall, LeafRelevance, Registry

from conftest import make_mlp, assert_balances, assert_ledger_balances, assert_state_equal, hook_counts, state_copy

ROOT = pathlib.Path(__file__).resolve().parents[1]


# -- a user's own module type ------------------------------------------------------------------

class SoftScale(nn.Module):
    """y = x * exp(s): registered as a unit, its inner operations need no rules of their own."""

    def __init__(self, n: int):
        super().__init__()
        self.s = nn.Parameter(torch.linspace(-0.5, 0.5, n))

    def forward(self, x):
        return x * torch.exp(self.s)


def propagate_soft_scale(call: LeafCall) -> LeafRelevance:
    # y_i depends on x_i alone and y_i = c_i x_i: relevance passes through unchanged
    return LeafRelevance([call.relevance])


class HalfAbsorbing(nn.Module):
    def forward(self, x):
        return 2 * x


def propagate_half(call: LeafCall) -> LeafRelevance:
    eps = call.rule.epsilon if call.rule is not None else 0.0
    return LeafRelevance([call.relevance * 0.5], absorbed=None if eps == 0 else
                         (call.relevance * 0.5).reshape(len(call.relevance), -1).sum(1))


sx.register(SoftScale, propagate_soft_scale, description="element-wise scale: relevance passes through")
sx.register(HalfAbsorbing, propagate_half, description="half the relevance absorbed",
            default_rule=sx.rules.Epsilon(0.0))


def _scaled_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), SoftScale(6), nn.Linear(6, 3)).eval()


def test_registered_module_is_one_unit_with_its_own_rule():
    model = _scaled_mlp()
    x = torch.randn(4, 5)
    R, led = sx.Explainer(model).explain_with_ledger(x)
    assert_balances(R)
    assert_ledger_balances(led)
    assert "2" in list(led.layer.values)
    assert not any("exp" in str(n) for n in led.layer.values), "the module's inner ops were recorded"
    assert "element-wise scale" in R.attrs["rules"]
    # pass-through at the scale: the relevance equals explaining the model with the scale folded
    folded = copy.deepcopy(model)
    with torch.no_grad():
        folded[3].weight.mul_(torch.exp(model[2].s))
    ref = sx.explain(nn.Sequential(folded[0], folded[1], folded[3]).eval(), x)
    np.testing.assert_allclose(R.values, ref.values, rtol=1e-4, atol=1e-6)


def test_registered_module_absorbed_defaults_to_the_difference():
    model = nn.Sequential(nn.Linear(4, 3), HalfAbsorbing(), nn.Linear(3, 2)).eval()
    x = torch.randn(3, 4)
    R, led = sx.Explainer(model).explain_with_ledger(x)
    assert_balances(R)
    row = led.sel(layer="1")
    np.testing.assert_allclose(row.absorbed, row.entering / 2, rtol=1e-5, atol=1e-7)
    # a rule given by type in the preset reaches the propagator (here it makes it report absorbed)
    R2, led2 = sx.Explainer(model, preset={"base": "epsilon", HalfAbsorbing: sx.rules.Epsilon(1.0)}) \
        .explain_with_ledger(x)
    assert_balances(R2)
    assert "Epsilon(epsilon=1.0)" in str(led2.sel(layer="1").rule.values)


def test_gradient_methods_differentiate_a_registered_module():
    model = _scaled_mlp(1)
    x = torch.randn(3, 5, requires_grad=True)
    g = sx.explain(model, x.detach(), method="gradient")
    out = model(x)
    out[torch.arange(3), out.argmax(1)].sum().backward()
    np.testing.assert_allclose(g.values, x.grad.numpy(), rtol=1e-5, atol=1e-7)


class BadShape(nn.Module):
    def forward(self, x):
        return x + 0


def propagate_bad_shape(call):
    return LeafRelevance([call.relevance[:, :1]])


def propagate_not_relevance(call):
    return [call.relevance]


class NotRelevance(nn.Module):
    def forward(self, x):
        return x * 1


sx.register(BadShape, propagate_bad_shape, description="returns a wrong shape")
sx.register(NotRelevance, propagate_not_relevance, description="returns a list")


@pytest.mark.parametrize("layer,match", [(BadShape(), "shape"), (NotRelevance(), "LeafRelevance")])
def test_bad_propagators_are_named(layer, match):
    model = nn.Sequential(nn.Linear(4, 3), layer, nn.Linear(3, 2)).eval()
    state = state_copy(model)
    with pytest.raises(InputError, match=match):
        sx.explain(model, torch.randn(2, 4))
    assert_state_equal(model, state)


def test_register_refuses_what_it_cannot_use():
    with pytest.raises(InputTypeError):
        sx.register(int, propagate_soft_scale, description="x")
    with pytest.raises(InputError, match="cannot be registered itself: wrap it"):
        sx.register(nn.Linear, propagate_soft_scale, description="x")
    with pytest.raises(InputError, match="description"):
        sx.register(SoftScale, propagate_soft_scale, description="")
    with pytest.raises(InputTypeError):
        sx.register(SoftScale, "not callable", description="x")
    with pytest.raises(InputTypeError, match="default_rule must be a rule object"):
        sx.register(SoftScale, propagate_soft_scale, description="x", default_rule="epsilon")
    assert REGISTRY.leaves[SoftScale].default_rule is None, "a refused registration replaced the entry"


def test_a_private_registry_leaves_the_engine_alone():
    reg = Registry()

    class Local(nn.Module):
        def forward(self, x):
            return x

    sx.register(Local, propagate_soft_scale, description="local", registry=reg)
    assert Local in reg.leaves and Local not in REGISTRY.leaves


# -- the registry's structure ------------------------------------------------------------------

def test_every_recognised_kind_has_an_entry():
    from sciexplain.record.tape import Node
    known = set(REGISTRY.kinds)
    assert {"affine", "pass", "layout", "sum", "product", "embedding", "folded", "leaf"} <= known
    x = torch.randn(2, 3)
    modules = [nn.Linear(3, 3), nn.Conv1d(3, 3, 1), nn.BatchNorm1d(3), nn.AvgPool1d(1), nn.ReLU(), nn.Tanh(),
               nn.Sigmoid(), nn.Dropout(), nn.Identity(), nn.Flatten(), nn.MaxPool1d(1), nn.Embedding(3, 2),
               nn.Softmax(1), nn.Upsample(scale_factor=2), SoftScale(3)]
    for m in modules:
        node = Node(0, "module", type(m).__name__, "m", "", m, (), {}, [], [x], 0, [0])
        kind = REGISTRY.classify(node)
        assert kind.category in known | {"squash"}, (m, kind)
    node = Node(0, "module", "Softmin", "m", "", nn.Softmin(dim=1), (), {}, [], [x], 0, [0])
    assert REGISTRY.classify(node).category == "unsupported"


def test_the_walk_names_no_kind():
    """Nothing in the LRP walk dispatches on a kind name (the plan's rule assignment goes by the
    entries' ``takes_rule`` and ``transparent``)."""
    kinds = set(REGISTRY.kinds) | {"squash"}
    tree = ast.parse((ROOT / "sciexplain" / "explain" / "walk.py").read_text())
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not (named & kinds), named & kinds


def test_explainer_with_a_registered_module_pickles():
    ex = sx.Explainer(_scaled_mlp(), preset={"base": "epsilon-plus", "2": sx.rules.Epsilon(0.1)})
    clone = pickle.loads(pickle.dumps(ex))
    x = torch.randn(2, 5)
    np.testing.assert_allclose(clone.explain(x).values, ex.explain(x).values, rtol=1e-6)


# -- canonizers --------------------------------------------------------------------------------

class ReluToSoftScale(canon.ModelCanonizer):
    """Swaps every ReLU for an identity-like registered module (a toy rewrite to test the mechanism)."""

    name = "ReluSwap"

    def replacement(self, module, path):
        return nn.Identity() if isinstance(module, nn.ReLU) else None


def test_model_canonizer_rewrites_a_copy_of_the_path_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.ReLU()), nn.Linear(5, 2)).eval()
    inner, relu = model[0], model[0][1]
    state, hooks = state_copy(model), hook_counts(model)
    x = torch.randn(3, 4)
    R = sx.explain(model, x, canonizers=[ReluToSoftScale()], preset="epsilon")
    assert_balances(R)
    assert "ReluSwap: 0.1" in R.attrs["canonizers"]
    assert model[0] is inner and model[0][1] is relu, "the user's modules were replaced"
    assert_state_equal(model, state)
    assert hook_counts(model) == hooks
    # the explanation is the one of the rewritten (linear) model
    lin = nn.Sequential(model[0][0], model[1]).eval()
    np.testing.assert_allclose(R.values, sx.explain(lin, x, preset="epsilon").values, rtol=1e-5, atol=1e-7)


def test_batchnorm_folding_is_listed_and_can_be_switched_off():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(3, 4)
    R = sx.explain(model, x)
    assert R.attrs["canonizers"].startswith("BatchNormFolding: 1")
    plain = sx.explain(model, x, canonizers=[])
    assert "canonizers" not in plain.attrs
    assert_balances(plain)
    led = sx.Explainer(model, canonizers=[]).explain_with_ledger(x)[1]
    assert "BatchNorm1d" in list(led.op.values)
    assert "BatchNorm1d" in list(sx.ledger(model, x, canonizers=[]).op.values)
    assert "BatchNorm1d" not in list(sx.ledger(model, x).op.values)
    with pytest.raises(InputTypeError):
        sx.explain(model, x, canonizers=["BatchNormFolding"])


def test_canonizer_objects_describe_themselves():
    assert canon.BatchNormFolding().describe() == "BatchNormFolding"
    assert any(isinstance(c, canon.BatchNormFolding) for c in canon.default())


# -- bounds, the ledger rows, the growth warning -----------------------------------------------

def test_bounds_given_where_unused_is_an_error():
    model, x = make_mlp()
    with pytest.raises(InputError, match="not used by the preset") as info:
        sx.explain(model, x, preset="epsilon-plus", bounds=(0, 1))
    # the message names exactly the presets that use bounds
    from sciexplain.rules.presets import PRESETS, resolve_preset
    named = str(info.value).split("(only ")[1].split(" and mappings")[0]
    listed = {name for name in PRESETS if repr(name) in named}
    assert listed == {name for name in PRESETS if resolve_preset(name, (0, 1)).uses_bounds}
    assert {"epsilon-plus-box", "deep-taylor"} <= listed
    with pytest.raises(InputError, match="does not use it"):
        sx.explain(model, x, method="gradient", bounds=(0, 1))
    assert_balances(sx.explain(model, x, preset="epsilon-plus-box", bounds=(-3, 3)))
    assert_balances(sx.explain(model, x, preset="deep-taylor", bounds=(-3, 3)))
    assert_balances(sx.explain(model, x, preset={"base": "epsilon-plus-box"}, bounds=(-3, 3)))


def test_ledger_rows_are_named_fields():
    from sciexplain.explain.forward import as_input, record_forward, targets
    from sciexplain.explain.ledger import LedgerRow
    from sciexplain.explain.plan import make_plan
    from sciexplain.rules.presets import resolve_preset
    from sciexplain.explain.walk import Walk, lrp_walk
    model, x = make_mlp()
    model.eval()
    fw = record_forward(model, as_input(x), grad=True)
    make_plan(fw, resolve_preset("epsilon"), canon.default())
    with torch.no_grad():
        _, rows, _ = lrp_walk(Walk(fw), targets(None, fw.logits.detach()))
    assert rows and all(isinstance(r, LedgerRow) for r in rows)
    for r in rows:
        torch.testing.assert_close(r.entering, r.leaving + r.absorbed, rtol=1e-4, atol=1e-5)


def test_relevance_that_explodes_gets_a_warning_naming_the_layer():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
    model = nn.Sequential(lin).eval()
    x = torch.tensor([[1.0, -1.0 + 1e-6]], dtype=torch.float64)
    model = model.double()
    with pytest.warns(ExplainWarning, match=r"grows without bound: sum \|R\| at the input is .*explain_with_ledger"):
        R = sx.explain(model, x, preset=sx.rules.Epsilon(0.0))
    with pytest.warns(ExplainWarning, match=r"grows without bound at 0"):  # the full ledger names the layer
        sx.Explainer(model, preset=sx.rules.Epsilon(0.0)).explain_with_ledger(x)
    assert_balances(R, rtol=1e-3, atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExplainWarning)
        sx.explain(model, torch.tensor([[1.0, 0.5]], dtype=torch.float64), preset=sx.rules.Epsilon(0.0))


class _HalfLost(sx.rules.Rule):
    """Passes on half of the epsilon relevance and absorbs nothing: a rule that leaks."""

    def terms(self, layer, x):
        from sciexplain.rules.terms import Term
        return [Term(0.5, [(x, layer.weight)], layer.bias, 0.0)]


def test_a_ledger_that_does_not_balance_gets_a_warning_naming_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).eval().double()
    x = torch.rand(3, 4, dtype=torch.float64)
    before = copy.deepcopy(model.state_dict())
    with pytest.warns(ExplainWarning, match=r"does not balance for 3 of 3 samples.*most of it at 0 "):
        R, led = sx.Explainer(model, preset={"base": "epsilon", "0": _HalfLost()}).explain_with_ledger(x)
    with pytest.raises(sx.LedgerError):
        R.relevance.check()
    gap = (led.entering - led.leaving - led.absorbed).sel(layer="0").values
    assert np.abs(gap).min() > 1e-3  # the layer it names is the one that leaked
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.warns(ExplainWarning, match=r"does not balance"):  # also without the full ledger
        sx.explain(model, x, preset={"base": "epsilon", "0": _HalfLost()})
    with warnings.catch_warnings():  # a conserving preset is silent
        warnings.simplefilter("error", ExplainWarning)
        assert_balances(sx.explain(model, x, preset="epsilon"))


# -- one error hierarchy -----------------------------------------------------------------------

_BUILTIN = {"ValueError", "TypeError", "RuntimeError", "FileNotFoundError", "ImportError",
            "ModuleNotFoundError", "KeyError", "IndexError", "OSError"}


def _sources():
    yield from (ROOT / "sciexplain").rglob("*.py")
    for plugin in (ROOT / "plugins").glob("*/sciexplain_*"):
        yield from plugin.rglob("*.py")


def test_no_builtin_exception_is_raised_bare():
    """Every error the library raises derives from SciexplainError (keeping the builtin base)."""
    bare = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id in _BUILTIN:
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.id}")
    assert not bare, "\n".join(bare)


def test_every_error_class_is_a_sciexplain_error():
    import sciexplain.errors as errors
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, SciexplainError), name
    assert issubclass(sx.InputError, ValueError) and issubclass(sx.InputTypeError, TypeError)
    assert issubclass(sx.LedgerError, AssertionError)
    assert issubclass(RuleError, ValueError)


def test_concurrent_explanations_keep_eval_mode_and_restore_flags():
    """Threads explaining one model in training mode: each runs in eval mode, flags come back."""
    from concurrent.futures import ThreadPoolExecutor
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 2)).train()
    x = torch.randn(8, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExplainWarning)
        ref = sx.explain(model, x).values
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: sx.explain(model, x).values, range(8)))
    for r in results:  # dropout off in every one of them
        np.testing.assert_allclose(r, ref, rtol=1e-6, atol=1e-7)
    assert all(m.training for m in model.modules())


def test_layers_lists_every_node_from_the_input_with_its_rule():
    """Explainer.layers() (which the at=/through= errors point to) names every node and its rule."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).eval()
    rows = sx.Explainer(model).layers(torch.randn(3, 4))
    assert rows[0] == ("input", "input", "input")
    by_name = {name: (op, rule) for name, op, rule in rows}
    assert set(by_name) == {"input", "0", "1", "2", "3"}
    assert by_name["0"][1].startswith("Epsilon") or by_name["0"][1].startswith("ZPlus")
    assert by_name["1"] == ("BatchNorm1d folded into 0", "folded into its neighbour")
    assert by_name["2"][1] == "pass-through"


class _MatmulBatchNorm(nn.Module):
    """x @ W (W laid out (in, out)) or F.linear on (batch, length, features), then BatchNorm1d."""

    def __init__(self, how: str):
        super().__init__()
        torch.manual_seed(0)
        self.how = how
        self.W = nn.Parameter(torch.randn(4, 4))
        self.bn = nn.BatchNorm1d(4 if how == "matmul" else 3)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 2)
        self.head = nn.Linear(4 if how == "matmul" else 12, 2)

    def forward(self, x):
        h = x @ self.W if self.how == "matmul" else nn.functional.linear(x, self.W)
        return self.head(torch.relu(self.bn(h)).flatten(1))


@pytest.mark.parametrize("how,shape", [("matmul", (3, 4)), ("linear3d", (3, 3, 4))])
def test_batchnorm_is_folded_only_where_it_scales_weight_rows(how, shape):
    """A BatchNorm after x @ W or after F.linear on 3-d input does not scale W's rows: it stays a
    layer of its own, and the explanation equals the one without folding."""
    model = _MatmulBatchNorm(how).eval()
    x = torch.randn(*shape)
    assert sx.Explainer(model).check_canonization(x) == {}
    R = sx.explain(model, x, preset="epsilon")
    assert_balances(R)
    assert "canonizers" not in R.attrs
    np.testing.assert_allclose(R.values, sx.explain(model, x, preset="epsilon", canonizers=[]).values,
                               rtol=1e-5, atol=1e-7)


class _KeywordCall(nn.Module):
    """A residual whose branch module is called with its input as a keyword argument."""

    def __init__(self, keyword: bool):
        super().__init__()
        torch.manual_seed(0)
        self.keyword = keyword
        self.a, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(x + (self.a(input=x) if self.keyword else self.a(x)))


def test_a_unit_called_with_an_input_dependent_keyword_is_an_error_not_a_constant():
    """Before: the keyword tensor was not followed, so the branch became a constant that absorbed
    its relevance silently (the ledger still balanced)."""
    model = _KeywordCall(keyword=True).eval()
    state, hooks = state_copy(model), hook_counts(model)
    x = torch.randn(3, 4)
    with pytest.raises(sx.UnsupportedModelError, match=r"a: Linear called with the input-dependent keyword.*\['input'\]"):
        sx.explain(model, x)
    assert_state_equal(model, state)
    assert hook_counts(model) == hooks
    positional = _KeywordCall(keyword=False).eval()
    np.testing.assert_allclose(sx.explain(model, x, method="gradient").values,
                               sx.explain(positional, x, method="gradient").values, rtol=1e-6)


def test_an_unsupported_torch_module_gets_advice_that_works():
    """register() refuses torch types, so the error for one must not send the user there."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Softmin(dim=1), nn.Linear(4, 2)).eval()
    with pytest.raises(sx.UnsupportedModelError, match=r"Softmin \(wrap it in a module type of your own"):
        sx.explain(model, torch.randn(2, 4))

    class Custom(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    with pytest.raises(sx.UnsupportedModelError, match="cumsum"):
        sx.explain(nn.Sequential(nn.Linear(4, 2), Custom()).eval(), torch.randn(2, 4))


class _Raises(nn.Module):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def forward(self, x):
        raise self.error


@pytest.mark.parametrize("error", [sx.errors.InputTypeError("descriptors must be float"),
                                   sx.errors.ComputationError("solver failed")])
def test_library_errors_from_inside_the_forward_pass_keep_their_type(error):
    """A sciexplain error raised by a (plugin's) module is not rewrapped as 'the forward pass failed'."""
    model = nn.Sequential(nn.Linear(4, 4), _Raises(error)).eval()
    with pytest.raises(type(error), match=str(error)) as info:
        sx.explain(model, torch.randn(2, 4))
    assert type(info.value) is type(error)


def test_a_model_canonizer_may_replace_the_model_itself():
    """The root module is canonized too (before, only modules below it were): an nn.GRUCell
    explained on its own is unrolled, a root ReLU is swapped by the toy canonizer."""
    torch.manual_seed(0)
    cell = nn.GRUCell(4, 3).eval()
    state = state_copy(cell)
    x = torch.randn(5, 4)
    R = sx.explain(cell, x, preset="epsilon")
    assert_balances(R)
    assert R.attrs["canonizers"].startswith("RecurrentUnrolling") and R.attrs["canonizers"].endswith(": <model>")
    assert_state_equal(cell, state)
    negative = -torch.rand(5, 4) - 0.1  # ReLU's gradient is 0 here, the identity's 1
    swapped = sx.explain(nn.ReLU().eval(), negative, 0, canonizers=[ReluToSoftScale()], method="gradient")
    np.testing.assert_allclose(swapped.values, np.eye(4)[[0] * 5])


class _Halve(nn.Module):
    def forward(self, x):
        return x / 2


def _recognise_halve(module, node):
    return Kind("halve", "Halve", ())


def _propagate_halve(walk, step, outs):
    return [(step.node.parents[0], outs[0])], walk.zero()


def test_a_kind_registered_beyond_the_built_in_ones_is_walked_and_summarised():
    """A new kind is one registry entry: the walk propagates it, attrs['rules'] lists it."""
    from sciexplain.kinds.registry import OpKind
    REGISTRY.add_kind(OpKind("halve", _propagate_halve, "relevance passes unchanged"))
    REGISTRY.recognise_modules([_Halve], _recognise_halve)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), _Halve(), nn.Linear(3, 2)).eval()
        R, led = sx.Explainer(model, preset="epsilon").explain_with_ledger(torch.randn(2, 4))
        assert_balances(R)
        assert_ledger_balances(led)
        assert "halve: relevance passes unchanged (1 ops)" in R.attrs["rules"]
    finally:
        del REGISTRY.kinds["halve"], REGISTRY.modules[_Halve]


@pytest.mark.parametrize("call", ["check_canonization", "layers", "explain"])
def test_every_explainer_entry_point_validates_the_model(call):
    with pytest.raises(InputError, match="model must be a torch.nn.Module"):
        getattr(sx.Explainer("not a model"), call)(torch.randn(2, 4))


class _ConstantOperand(nn.Module):
    """A scaling or matmul by a constant given positionally or as ``other=``."""

    def __init__(self, op: str, keyword: bool):
        super().__init__()
        torch.manual_seed(0)
        self.op, self.keyword = op, keyword
        self.a, self.head = nn.Linear(4, 4), nn.Linear(4, 2)
        self.register_buffer("c", torch.linspace(0.5, 2.0, 4) if op != "matmul" else torch.randn(4, 4))

    def forward(self, x):
        fn = {"mul": torch.mul, "div": torch.div, "matmul": torch.matmul}[self.op]
        z = self.a(x)
        return self.head(fn(z, other=self.c) if self.keyword else fn(z, self.c))


@pytest.mark.parametrize("op", ["mul", "div", "matmul"])
def test_a_constant_operand_given_as_other_is_the_same_layer(op):
    """torch.mul(z, other=c) raised a bare IndexError while building the affine layer."""
    x = torch.randn(3, 4)
    R = sx.explain(_ConstantOperand(op, keyword=True).eval(), x, preset="epsilon")
    assert_balances(R)
    np.testing.assert_allclose(R.values, sx.explain(_ConstantOperand(op, keyword=False).eval(), x,
                                                    preset="epsilon").values, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["gradient_x_input", "sensitivity", "lrp"])
def test_token_models_with_frozen_embeddings(method):
    """Gradient methods on token ids differentiate w.r.t. the looked-up vectors, also when the
    embedding is frozen (e.g. GloVe vectors kept fixed); the model stays frozen."""
    torch.manual_seed(0)
    emb = nn.Embedding(20, 4)
    emb.weight.requires_grad_(False)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(4 * 5, 3)).eval()
    x = torch.randint(0, 20, (3, 5))
    R = sx.explain(model, x, method=method)
    assert R.shape == (3, 5)
    assert not emb.weight.requires_grad
    if method != "sensitivity":
        assert_balances(R, rtol=1e-4, atol=1e-5)
    unfrozen = copy.deepcopy(model)
    unfrozen[0].weight.requires_grad_(True)
    np.testing.assert_allclose(R.values, sx.explain(unfrozen, x, method=method).values, rtol=1e-5, atol=1e-7)
