"""The explanation engine: configuration, and one explanation from recording to result.

An explanation is four steps, each in its own module:

1. :mod:`sciexplain.canonizers` rewrite the model (on a copy of the paths they change) into a
   form whose operations have rules (recurrent layers unrolled into cells);
2. :mod:`sciexplain.explain.forward` validates the batch and records one forward pass
   (:mod:`sciexplain.record.tape`);
3. :mod:`sciexplain.explain.plan` gives every recorded node a kind from the operation registry
   (:mod:`sciexplain.kinds.registry`, built-in kinds in :mod:`sciexplain.kinds.builtin`) and a
   rule from the preset, and folds BatchNorm;
4. :mod:`sciexplain.explain.walk` walks the relevance back, keeping the ledger
   (:mod:`sciexplain.explain.ledger`).

One explanation costs one recorded forward pass plus one backward walk over the tape. Layers
whose rule is plain (epsilon) reuse the autograd graph of the recorded forward pass, so they need
no second forward; rules whose formula needs a modified forward (z+, alpha-beta, zB, gamma) run
that modified forward once per layer, each part once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .. import canonizers as _canonizers
from . import methods as _methods
from ..kinds import builtin as _builtin  # noqa: F401  (registers the built-in operation kinds)
from ..kinds.affine_layers import affine_layer, forward_graph_needed
from ..errors import InputError, RuleError
from .call import Call
from .forward import (as_input, default_dims, eval_mode, explained_text, float32_model, prediction, targets,
                      to_float32)
from .inputs import is_several, model_inputs
from .multi import explain_several
from .ledger import ledger_dataset, rules_summary
from ..rules.presets import RuleMap, resolve_preset
from ..kinds.registry import REGISTRY
from ..rules.products import ProductRule
from ..rules.terms import Rule
from ..record.tape import Ref, _Placeholder
from .walk import Walk, lrp_walk, rule_text

__all__ = ["Explainer", "explain", "ledger", "METHODS"]

_eval_mode = eval_mode  # the name older callers import

METHODS = ("lrp", "gradient", "sensitivity", "gradient_x_input", "integrated_gradients",
           "smoothgrad", "deconvnet", "guided_backprop")


class Explainer:
    """Explain a model's predictions; holds the configuration, no state between calls.

    Parameters
    ----------
    model : torch.nn.Module
        The model, left unchanged: parameters, buffers and training flags are as before the
        call (also when the call raises) and no hooks remain.
    method : str
        One of :data:`METHODS`.
    preset : str, Rule or mapping
        For ``method="lrp"``: which rule runs on which layer (see :mod:`sciexplain.presets`).
    bounds : (low, high), optional
        Input bounds for presets that use ZBox on the first layer; an error for presets and
        methods that do not use them.
    max_pool : {"winner-take-all", "proportional"}
        Max pooling passes relevance to the maximum (default) or proportionally to the
        activations in each window (sum-pooling, Montavon et al. 2017, Sec. 5).
    canonizers : sequence of Canonizer, optional
        How the model is rewritten before it is explained (default
        :func:`sciexplain.canonizers.default`: recurrent layers unrolled, BatchNorm folded).
        The applied ones are listed in the result's ``attrs["canonizers"]``.
    inputs : str, int, sequence of them, or None
        For several inputs (a tuple or a mapping of them): which are explained (see
        :func:`sciexplain.explain`); the others are constants.
    output : int, str or None
        For a model that returns a tuple or a dict: the output to explain (default: the one
        named ``"logits"``).
    views : int, optional
        The batch holds this many views of each sample, which the model combines (see
        :func:`sciexplain.explain`).
    **options
        Method parameters: ``baseline``, ``steps``, ``batch_size`` (integrated gradients);
        ``n_samples``, ``noise``, ``seed``, ``batch_size`` (SmoothGrad); ``progress`` (tqdm bar).
    """

    def __init__(self, model: nn.Module, method: str = "lrp", preset: str | Rule | Mapping = "epsilon-plus",
                 *, bounds: tuple | None = None, max_pool: str = "winner-take-all",
                 canonizers: Sequence[_canonizers.Canonizer] | None = None, inputs: Any = None,
                 output: int | str | None = None, views: int | None = None, **options: Any):
        self.model = model
        self.inputs = inputs
        self.output = output
        self.views = views
        self.method = method
        self.preset = preset
        self.bounds = bounds
        self.max_pool = max_pool
        self.canonizers = canonizers
        self.options = options

    # -- configuration -------------------------------------------------------------------
    def _check_names(self, rule_map: RuleMap, model: nn.Module) -> None:
        """Every module path or pattern in a preset mapping must name a module of the model."""
        import difflib
        import fnmatch
        names = [n for n, _ in model.named_modules() if n]
        for key in list(rule_map.by_name) + list(rule_map.patterns):
            pattern = key in rule_map.patterns
            hit = any(fnmatch.fnmatchcase(n, key) for n in names) if pattern else key in names
            if not hit:
                close = difflib.get_close_matches(key, names, n=3)
                hint = f" Did you mean {close}?" if close else f" Module paths look like {names[:4]}."
                raise RuleError(f"preset key {key!r} names no module of the model, so its rule would never "
                                f"run.{hint}")

    def _check(self, model: nn.Module | None = None) -> RuleMap | None:
        if not isinstance(self.model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.max_pool not in ("winner-take-all", "proportional"):
            raise InputError(f"max_pool must be 'winner-take-all' or 'proportional', got {self.max_pool!r}")
        allowed = {"integrated_gradients": {"baseline", "steps", "batch_size", "progress"},
                   "smoothgrad": {"n_samples", "noise", "seed", "batch_size", "progress"}}.get(self.method, set())
        unknown = set(self.options) - allowed
        if unknown:
            raise InputError(f"unknown option(s) {sorted(unknown)} for method {self.method!r}; "
                             f"it accepts {sorted(allowed) or 'none'}")
        if self.method != "lrp":
            if self.bounds is not None:
                raise InputError(f"bounds= is used by LRP presets with ZBox on the first layer; method "
                                 f"{self.method!r} does not use it: remove bounds=")
            return None
        rule_map = resolve_preset(self.preset, self.bounds)
        if self.bounds is not None and not rule_map.uses_bounds:
            users = ", ".join(repr(n) for n in _presets_using_bounds())
            raise InputError(f"bounds={self.bounds!r} is not used by the preset {rule_map.description!r} "
                             f"(only {users} and mappings based on them apply ZBox with the bounds): "
                             "remove bounds= or choose such a preset")
        self._check_names(rule_map, model if model is not None else self.model)
        return rule_map

    def _call(self, model: nn.Module, applied: list[str]) -> Call:
        return Call(model, self.method, self.max_pool, dict(self.options),
                    _canonizers.validate(self.canonizers), list(applied), output=self.output)

    # -- public API --------------------------------------------------------------------------
    def layers(self, x: Any) -> list[tuple[str, str, str]]:
        """The nodes on the path from input to output: (name, type, rule), in forward order."""
        rules = self._check()
        xt = as_input(x)
        with eval_mode(self.model), _canonizers.canonized(self.model, _canonizers.validate(self.canonizers),
                                                          rules) as (model, applied):
            rule_map = self._check(model)
            call = self._call(model, applied)
            fw = call._forward(xt, grad=False, leaf_names=_unit_names(rule_map) if rule_map else set())
            call.plan(fw, rule_map)
        return [(st.node.name, st.kind.detail or st.node.op, rule_text(st))
                for _, st in sorted(fw.steps.items())]

    def check_canonization(self, x: Any) -> dict[str, float]:
        """Relative error, per folded layer, of the folded layer against the original pair.

        For each Linear/Conv with a BatchNorm folded into it: max |folded(x) - original(x)| /
        max(1, max |original(x)|) on the batch ``x``, where "original" is the recorded output of
        the layer pair. Values of order 1e-7 mean the folding reproduces the model to float32
        precision; the model itself is never modified."""
        self._check()
        xt = as_input(x)
        with eval_mode(self.model), _canonizers.canonized(self.model, _canonizers.validate(self.canonizers)) \
                as (model, applied):
            call = self._call(model, applied)
            fw = call._forward(xt, grad=False, leaf_names=set())
            call.plan(fw, None)
        errors: dict[str, float] = {}
        with torch.no_grad():
            for st in fw.steps.values():
                if st.fuse_after is None and st.fuse_before is None:
                    continue
                if st.fuse_before is not None:
                    xref, ref_out = st.fuse_before.parents[0], Ref(st.node.index, 0)
                else:
                    xref = next(a.ref for a in st.node.args if isinstance(a, _Placeholder))
                    ref_out = Ref(st.fuse_after.index, 0)
                x_in = fw.value(xref)
                layer = affine_layer(st.node, st.kind, x_in, st.node.outputs[0].ndim, st.fuse_after,
                                     st.fuse_before)
                ref = fw.value(ref_out)
                scale = max(1.0, float(ref.abs().max()))
                errors[st.node.name] = float((layer.forward(x_in) - ref).abs().max()) / scale
        return errors

    def explain(self, x: Any, target: Any = None, *, dims: Sequence[str] | None = None,
                coords: Mapping[str, Any] | None = None, at: str | None = None,
                through: Mapping[str, Sequence[int]] | None = None) -> xr.DataArray:
        """Explain ``model(x)`` for ``target``; see :func:`sciexplain.explain`."""
        return self._run(x, target, dims, coords, at, through, full_ledger=False)[0]

    def explain_with_ledger(self, x: Any, target: Any = None, *, dims: Sequence[str] | None = None,
                            coords: Mapping[str, Any] | None = None, at: str | None = None,
                            through: Mapping[str, Sequence[int]] | None = None):
        """Like :meth:`explain`, also returning the per-layer ledger as an ``xarray.Dataset``.

        The ledger has, per sample and layer (in the order the relevance passed them, output
        first), the relevance ``entering`` the layer, ``leaving`` it towards the input and
        ``absorbed`` by its bias and stabilizer terms; ``entering = leaving + absorbed``. For
        methods other than LRP the ledger is ``None``.
        """
        return self._run(x, target, dims, coords, at, through, full_ledger=True)

    def _run(self, x, target, dims, coords, at, through, full_ledger):
        # callers may sit inside torch.no_grad() or torch.inference_mode(): explanations need autograd
        with torch.inference_mode(False), torch.enable_grad():
            rules = self._check()
            if (at is not None or through is not None) and self.method != "lrp":
                raise InputError("at= and through= are available for method='lrp'")
            several = is_several(x)
            base, note = float32_model(self.model)
            if several or self.views is not None or self.inputs is not None:
                R, led = self._run_several(base, x, target, dims, coords, at, through, full_ledger, rules, several)
            else:
                R, led = self._run_one(base, x, target, dims, coords, at, through, full_ledger, rules)
            if note:
                R.attrs["precision"] = note
            return R, led

    def _run_one(self, base, x, target, dims, coords, at, through, full_ledger, rules):
        """One input tensor: the result is a DataArray."""
        xt = to_float32(as_input(x)) if base is not self.model else as_input(x)
        with eval_mode(base), _canonizers.canonized(base, _canonizers.validate(self.canonizers),
                                                    rules) as (model, applied):
            rule_map = self._check(model)
            call = self._call(model, applied)
            if self.method == "lrp":
                R, led = self._explain_lrp(call, xt, target, rule_map, dims, coords, at, through, full_ledger)
            else:
                R, led = _methods.run(call, xt, target, dims, coords), None
        if call.applied:
            R.attrs["canonizers"] = "; ".join(call.applied)
        return R, led

    def _run_several(self, base, x, target, dims, coords, at, through, full_ledger, rules, several):
        """Several inputs (a Dataset), or a grouped batch of views (see :mod:`sciexplain.explain.multi`)."""
        if self.method != "lrp":
            raise InputError(f"several inputs, inputs= and views= are explained with method='lrp'; "
                             f"method {self.method!r} takes one input tensor")
        if at is not None or through is not None:
            raise InputError("at= and through= take one input tensor; they are not available with several "
                             "inputs, inputs= or views=")
        if not several:
            if not isinstance(x, (torch.Tensor, np.ndarray)):
                as_input(x)  # the error for data that is neither
            if self.inputs is not None:
                raise InputError("inputs= chooses among several inputs (a tuple or a mapping of tensors); "
                                 "x is one tensor, which is explained: remove inputs=")
        inp = model_inputs(x if several else (x,), self.inputs, as_input)
        if base is not self.model:
            inp.values = {k: to_float32(v) if isinstance(v, torch.Tensor) else v for k, v in inp.values.items()}
        with eval_mode(base), _canonizers.canonized(base, _canonizers.validate(self.canonizers),
                                                    rules) as (model, applied):
            rule_map = self._check(model)
            call = self._call(model, applied)
            R, led = explain_several(call, inp, target, rule_map, _unit_names(rule_map), self.max_pool, dims,
                                     coords, self.views, single=not several, full_ledger=full_ledger)
        if call.applied:
            R.attrs["canonizers"] = "; ".join(call.applied)
        return R, led

    def _explain_lrp(self, call: Call, xt, target, rule_map, dims, coords, at, through, full_ledger=True):
        # recorded with autograd only where a layer without an adjoint reuses the graph (no second pass)
        fw = call._forward(xt, grad=xt.is_floating_point() and forward_graph_needed(call.model),
                           leaf_names=_unit_names(rule_map))
        keep = ({at} if at else set()) | set(through or {})
        call.plan(fw, rule_map, keep=keep)
        t = targets(target, fw.logits)
        fw.logits = fw.logits.detach()  # keep the values, let the walk free the graph
        fw.tape.output = None
        with torch.no_grad():
            Rx, rows, filtered_out = lrp_walk(Walk(fw, self.max_pool, REGISTRY), t, stop_at=at,
                                              through=through, full_ledger=full_ledger)
        B = xt.shape[0]
        pred = prediction(fw.logits, t)
        if Rx is None:
            Rx = torch.zeros_like(xt, dtype=fw.logits.dtype)
        absorbed_layers = sum((r.absorbed for r in rows), fw.logits.new_zeros(B))
        absorbed = absorbed_layers + filtered_out
        from ..result.contract import build_result
        attrs = {"preset": rule_map.description, "explained": explained_text(fw, self.max_pool)}
        if at is not None:
            attrs["layer"] = at
        if through:
            attrs["through"] = "; ".join(f"{k}: {list(v)}" for k, v in through.items())
            attrs["absorbed_note"] = "absorbed includes the relevance filtered out"
        absorbed = absorbed.detach().cpu()
        R = build_result(Rx.detach(), dims=dims or default_dims(Rx.ndim), coords=coords,
                         prediction=pred, target=t.numpy(), absorbed=absorbed.numpy(),
                         method="lrp", rules=rules_summary(fw), decomposes="f(x)", attrs=attrs)
        if through:
            R = R.assign_coords(filtered_out=(R.dims[0], filtered_out.cpu().numpy()))
        return R, (ledger_dataset(rows, R.dims[0], pred, Rx.cpu()) if full_ledger else None)


def _presets_using_bounds() -> list[str]:
    """The named presets that apply ZBox with the caller's ``bounds=``."""
    from ..rules.presets import PRESETS
    return [name for name in PRESETS if resolve_preset(name, (0.0, 1.0)).uses_bounds]


def _unit_names(rule_map: RuleMap) -> set[str]:
    """Module paths the preset names: recorded as one unit each (so that e.g. ``Pass()`` acts on the
    module, not on the operations inside it), except where a product rule names the products
    inside a module."""
    return {name for name, rule in rule_map.by_name.items() if not isinstance(rule, ProductRule)}


def explain(model: nn.Module, data: Any, target: Any = None, *, method: str = "lrp",
            preset: str | Rule | Mapping | None = None, dims: Sequence[str] | None = None,
            coords: Mapping[str, Any] | None = None, bounds: tuple | None = None,
            max_pool: str = "winner-take-all", at: str | None = None,
            through: Mapping[str, Sequence[int]] | None = None,
            canonizers: Sequence[_canonizers.Canonizer] | None = None, inputs: Any = None,
            output: int | str | None = None, views: int | None = None,
            **options: Any) -> xr.DataArray | xr.Dataset:
    """Explain the predictions of ``model`` on a batch.

    Parameters
    ----------
    model : torch.nn.Module
        Any PyTorch model; it is left unchanged.
    data : torch.Tensor, numpy.ndarray, tuple or mapping
        A batch, batch dim first. Several inputs: a tuple (``model(*data)``) or a mapping of
        keyword inputs (``model(**data)``, e.g. ``{"input_ids": ids, "attention_mask": mask}``).
        Domain data (e.g. ``mne.Epochs``) is dispatched to the installed plugin that claims
        its type.
    target : int, sequence of int, or None
        The class to explain, per batch or per sample; None explains the predicted class.
        The explained quantity is the target's output before any final softmax.
    method : str
        ``"lrp"`` (default), ``"gradient"``, ``"sensitivity"``, ``"gradient_x_input"``,
        ``"integrated_gradients"``, ``"smoothgrad"``, ``"deconvnet"``, ``"guided_backprop"``.
    preset : str, Rule, mapping or None
        LRP rules per layer: ``"epsilon"``, ``"epsilon-plus"``, ``"epsilon-plus-box"``,
        ``"alpha2-beta1"``, ``"deep-taylor"``, one rule, or a mapping (see
        :mod:`sciexplain.presets`). None: ``"epsilon-plus"`` for tensors, the plugin's default
        preset for domain data (e.g. ``"epsilon-plus-box"`` for images).
    dims, coords
        Names of the result's dims (batch first) and coordinates; by default
        ``("sample", "dim_0", ...)``.
    bounds : (low, high), optional
        Input bounds for ZBox on the first layer (``"epsilon-plus-box"``, ``"deep-taylor"``).
    max_pool : {"winner-take-all", "proportional"}
        How max pooling passes relevance back.
    at : str, optional
        Return the relevance of this module's output instead of the input's (with the batch dim
        first, wherever the model keeps it in that tensor).
    through : mapping, optional
        ``{module path: [channel indices]}``: keep only the relevance flowing through those
        channels of that module's output; channels are the dim right after the batch dim (dim 1
        for batch-first tensors).
    canonizers : sequence of Canonizer, optional
        How the model is rewritten before it is explained (see :mod:`sciexplain.canonizers`).
    inputs : str, int, sequence of them, or None
        With several inputs: the ones to explain, by name (the mapping's keys; ``"input_0"``,
        ``"input_1"``, ... for a tuple) or position; None explains every tensor input. The
        others are constants of the model: relevance reaching them is absorbed where it enters
        them. Integer token ids are explained at their embedding lookup, one relevance per
        token (summed over the embedding dim).
    output : int or str, optional
        For a model returning a tuple, a dict or a Hugging Face ``ModelOutput``: the output to
        explain, an index or a key; by default the entry named ``"logits"``.
    views : int, optional
        Test-time augmentation: the batch holds ``views`` views of each of ``n`` samples, view
        ``v`` of sample ``j`` at row ``v * n + j``, and the model combines them into ``n``
        output rows. Each sample is explained over its views (exact ledger per sample); the
        relevance has a ``view`` dim after the batch dim.
    **options
        Method parameters (see :class:`Explainer`).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Relevance with ``prediction``, ``target`` and ``absorbed`` coordinates on the batch dim
        and attrs ``method``, ``rules``, ``decomposes``; for decompositions of f(x) the
        relevance plus ``absorbed`` sums to ``prediction`` per sample. With several inputs a
        Dataset, one relevance variable per explained input, whose relevance together plus
        ``absorbed`` sums to ``prediction``.
    """
    several = {"inputs": inputs, "output": output, "views": views}
    if not isinstance(data, (torch.Tensor, np.ndarray)) and not is_several(data):
        from ..plugins import dispatch
        return dispatch(model, data, target=target, method=method, preset=preset, bounds=bounds,
                        max_pool=max_pool, at=at, through=through, dims=dims, coords=coords,
                        **({"canonizers": canonizers} if canonizers is not None else {}),
                        **{k: v for k, v in several.items() if v is not None}, **options)
    return Explainer(model, method, "epsilon-plus" if preset is None else preset, bounds=bounds,
                     max_pool=max_pool, canonizers=canonizers, **several, **options).explain(
        data, target, dims=dims, coords=coords, at=at, through=through)


def ledger(model: nn.Module, x: Any, target: Any = None, *, preset: str | Rule | Mapping = "epsilon-plus",
           bounds: tuple | None = None, max_pool: str = "winner-take-all",
           canonizers: Sequence[_canonizers.Canonizer] | None = None, inputs: Any = None,
           output: int | str | None = None, views: int | None = None) -> xr.Dataset:
    """The per-layer relevance ledger of an LRP explanation (see :meth:`Explainer.explain_with_ledger`;
    the parameters are those of :func:`explain`)."""
    return Explainer(model, "lrp", preset, bounds=bounds, max_pool=max_pool, canonizers=canonizers,
                     inputs=inputs, output=output, views=views).explain_with_ledger(x, target)[1]
