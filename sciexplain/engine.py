"""The explanation engine: record a forward pass, plan a rule per node, walk relevance back.

One explanation costs one recorded forward pass plus one backward walk over the tape. Layers
whose rule is plain (epsilon) reuse the autograd graph of the recorded forward pass, so they need
no second forward; rules whose formula needs a modified forward (z+, alpha-beta, zB, gamma) run
that modified forward once per layer, each part once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from . import ops
from ._version import __version__
from .errors import ExplainWarning, InputError, RuleError, UnsupportedModelError
from .presets import RuleMap, resolve_preset
from .propagation import lrp_affine, per_sample_sum, sign0
from .rules import Epsilon, Pass, Rule
from .tape import Node, Ref, Tape, _Placeholder, record, replay_args

__all__ = ["Explainer", "explain", "ledger", "METHODS"]

METHODS = ("lrp", "gradient", "sensitivity", "gradient_x_input", "integrated_gradients",
           "smoothgrad", "deconvnet", "guided_backprop")

# -- safety of the user's model ----------------------------------------------------------------

def _caller_stacklevel() -> int:
    """The stacklevel that attributes a warning to the first frame outside sciexplain."""
    import inspect
    import os
    pkg = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe().f_back, 1  # level 1 = the function that calls warn()
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(pkg + os.sep) and "contextlib" not in fname:
            return level
        frame, level = frame.f_back, level + 1
    return level


@contextmanager
def _eval_mode(model: nn.Module):
    """Explain in eval mode; restore every module's own training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    if any(f for _, f in flags):
        warnings.warn("the model is in training mode; it is explained in eval mode (dropout off, "
                      "BatchNorm running statistics) and its training flag is restored afterwards",
                      ExplainWarning, stacklevel=_caller_stacklevel())
    try:
        for m, _ in flags:
            m.training = False
        yield
    finally:
        for m, f in flags:
            m.training = f


def _as_input(x: Any) -> torch.Tensor:
    """Validate and copy the batch; the caller's array is never modified."""
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError("x is an object array; pass a numeric array or tensor")
        x = torch.from_numpy(np.array(x, copy=True))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor or numpy array of shape (batch, ...), got "
                         f"{type(x).__name__}; for data such as mne.Epochs install the matching "
                         "sciexplain plugin")
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"x has dtype {x.dtype}; pass real numbers (or integer token ids)")
    if x.ndim < 2:
        raise InputError(f"x has shape {tuple(x.shape)}: it needs a batch dim first, shape "
                         "(batch, ...); for a single sample pass x[None]")
    if x.shape[0] == 0:
        raise InputError("x is an empty batch (0 samples): nothing to explain")
    if x.numel() == 0:
        raise InputError(f"x has shape {tuple(x.shape)} with a zero-sized dim")
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):  # fast path: one reduction
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise InputError(f"x contains {int(bad.sum())} NaN/Inf value(s), the first at index {idx}; "
                             "clean or impute the data before explaining")
    return x.detach().clone()


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    B = logits.shape[0]
    K = logits.shape[1] if logits.ndim == 2 else 1
    if target is None:
        t = logits.argmax(dim=1) if logits.ndim == 2 else torch.zeros(B, dtype=torch.long)
        return t.detach().long()
    try:
        t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"target must be an int, one int per sample, or None; got {target!r}")
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise InputError(f"target must be integer class indices, got {target!r}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(B)
    if t.numel() != B:
        raise InputError(f"target has {t.numel()} entries for a batch of {B}; give one int, "
                         "one per sample, or None for the predicted class")
    if bool(((t < 0) | (t >= K)).any()):
        raise InputError(f"target {t.tolist()} out of range: the model has {K} output(s), "
                         f"valid classes are 0..{K - 1}")
    return t.clone()


# -- the plan ----------------------------------------------------------------------------------

@dataclass
class Step:
    node: Node
    kind: ops.Kind
    rule: Rule | None = None
    fuse_after: Node | None = None  # BatchNorm folded into this layer (follows it)
    fuse_before: Node | None = None  # BatchNorm folded into this layer (precedes it)
    folded_into: Node | None = None  # this BatchNorm is folded into that layer
    first: bool = False


@dataclass
class Forward:
    tape: Tape
    leaf: torch.Tensor
    logits_ref: Ref
    logits: torch.Tensor
    squash: str | None
    steps: dict[int, Step] = field(default_factory=dict)

    def value(self, ref: Ref) -> torch.Tensor:
        return self.tape.node_of(ref).value(ref.k)


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
        Input bounds for presets that use ZBox on the first layer.
    max_pool : {"winner-take-all", "proportional"}
        Max pooling passes relevance to the maximum (default) or proportionally to the
        activations in each window (sum-pooling, Montavon et al. 2017, Sec. 5).
    **options
        Method parameters: ``baseline``, ``steps``, ``batch_size`` (integrated gradients);
        ``n_samples``, ``noise``, ``seed``, ``batch_size`` (SmoothGrad); ``progress`` (tqdm bar).
    """

    def __init__(self, model: nn.Module, method: str = "lrp", preset: str | Rule | Mapping = "epsilon-plus",
                 *, bounds: tuple | None = None, max_pool: str = "winner-take-all", **options: Any):
        self.model = model
        self.method = method
        self.preset = preset
        self.bounds = bounds
        self.max_pool = max_pool
        self.options = options

    # -- configuration -------------------------------------------------------------------
    def _check_names(self, rule_map: RuleMap) -> None:
        """Every module path or pattern in a preset mapping must name a module of the model."""
        import difflib
        import fnmatch
        names = [n for n, _ in self.model.named_modules() if n]
        for key in list(rule_map.by_name) + list(rule_map.patterns):
            pattern = key in rule_map.patterns
            hit = any(fnmatch.fnmatchcase(n, key) for n in names) if pattern else key in names
            if not hit:
                close = difflib.get_close_matches(key, names, n=3)
                hint = f" Did you mean {close}?" if close else f" Module paths look like {names[:4]}."
                raise RuleError(f"preset key {key!r} names no module of the model, so its rule would never "
                                f"run.{hint}")

    def _check(self) -> RuleMap | None:
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
        if self.method == "lrp":
            rule_map = resolve_preset(self.preset, self.bounds)
            self._check_names(rule_map)
            return rule_map
        return None

    # -- forward -------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, grad: bool, leaf_names: set[str]) -> Forward:
        # x is already a private copy (_as_input); the model may even modify its input in place
        leaf = x.detach()
        if leaf.is_floating_point() and grad:
            leaf.requires_grad_(True)
            inp = leaf.clone()  # in-place operations on a leaf that requires grad are not allowed
        else:
            inp = leaf
        try:
            with torch.inference_mode(False), torch.set_grad_enabled(grad):
                tape = record(self.model, inp, leaf_names)
        except (InputError, UnsupportedModelError, RuleError):
            raise
        except Exception as err:
            raise InputError(f"the model's forward pass failed on x of shape {tuple(x.shape)} and dtype "
                             f"{x.dtype}: {type(err).__name__}: {err}. Check that x has the shape and "
                             "scaling the model expects (batch dim first).") from err
        out = tape.output
        if not isinstance(out, torch.Tensor):
            raise UnsupportedModelError(f"the model returned {type(out).__name__}; explanations need a "
                                        "single output tensor of shape (batch, n_outputs). Wrap the model "
                                        "so that forward returns the output to explain.")
        ref = tape.output_refs[0] if tape.output_refs else None
        if ref is None:
            raise UnsupportedModelError("the model output does not depend on the input x (or depends on "
                                        "it only through operations that are not differentiable)")
        squash = None
        node = tape.node_of(ref)
        kind = ops.classify(node)
        if kind.category == "squash":
            squash = kind.detail
            ref = node.parents[0]
        logits = tape.node_of(ref).value(ref.k)
        if logits.ndim not in (1, 2) or logits.shape[0] != x.shape[0]:
            raise UnsupportedModelError(f"the model output has shape {tuple(logits.shape)}; explanations "
                                        f"need (batch, n_outputs) or (batch,) with batch = {x.shape[0]}")
        return Forward(tape, leaf, ref, logits, squash)

    def _ancestors(self, fw: Forward) -> set[int]:
        seen, stack = set(), [fw.logits_ref.node]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(r.node for r in fw.tape.nodes[i].parents)
        return seen

    def _plan(self, fw: Forward, rule_map: RuleMap | None, keep: set[str] = frozenset()) -> None:
        tape = fw.tape
        needed = self._ancestors(fw)
        consumers = tape.consumers()
        problems: list[str] = []
        steps: dict[int, Step] = {}
        for node in tape.nodes:
            if node.index not in needed:
                continue
            kind = ops.classify(node)
            if rule_map is not None and node.kind == "module":
                mapped = rule_map.by_name.get(node.name.split("#")[0])
                if isinstance(mapped, Pass):
                    kind = ops.Kind("pass", f"{kind.detail or node.op} (Pass by name)", kind.rule_keys)
            if kind.category == "squash":
                problems.append(f"  - {node.name} ({kind.detail}): softmax/log-softmax/sigmoid is only "
                                "supported as the final operation (it is stripped; logits are explained)")
            elif kind.category == "unsupported":
                where = f" inside module '{node.scope}'" if node.scope and node.kind == "function" else ""
                problems.append(f"  - {node.name}{where}: {kind.detail}")
            elif kind.category == "embedding" and node.parents[0].node != 0:
                problems.append(f"  - {node.name}: an embedding lookup of computed indices")
            steps[node.index] = Step(node, kind)
        if problems:
            raise UnsupportedModelError(
                "cannot explain this model: no relevance rule for\n" + "\n".join(problems) +
                "\nWhat you can do: replace the operation by a supported one (see sciexplain.ops), map "
                "Pass() to a shape-preserving module by its path (preset={'base': 'epsilon-plus', "
                "'path.to.module': Pass()}), or explain an intermediate output. Nothing falls back "
                "to the gradient silently.")
        self._fold_batchnorm(fw, steps, consumers, keep)
        if rule_map is not None:
            self._assign_rules(fw, steps, rule_map)
        fw.steps = steps

    def _fold_batchnorm(self, fw: Forward, steps: dict[int, Step], consumers, keep=frozenset()) -> None:
        """Fold BatchNorm into the adjacent Linear/Conv, except where the caller asks for the
        relevance at that BatchNorm itself (``at=``/``through=``), which must stay a node."""
        tape = fw.tape
        for step in steps.values():
            node = step.node
            if not (node.kind == "module" and isinstance(node.target, ops._BN_MODULES)):
                continue
            if node.name in keep:
                continue
            if len(node.parents) != 1:
                continue
            pref = node.parents[0]
            prev = steps.get(pref.node)
            if (prev is not None and prev.kind.category == "affine" and prev.kind.weighted
                    and prev.fuse_after is None and prev.fuse_before is None
                    and consumers.get(pref, []) == [node.index] and tape.node_of(pref).pristine(pref.k)
                    and pref != fw.logits_ref and fw.value(pref).ndim >= 2):
                if isinstance(prev.node.target, nn.Linear) and fw.value(pref).ndim != 2:
                    continue
                prev.fuse_after = node
                step.folded_into = prev.node
                continue
            # BatchNorm1d feeding a Linear on (batch, features)
            users = consumers.get(Ref(node.index, 0), [])
            if len(users) == 1 and fw.value(Ref(node.index, 0)).ndim == 2:
                nxt = steps.get(users[0])
                if (nxt is not None and nxt.node.kind == "module" and type(nxt.node.target) is nn.Linear
                        and nxt.fuse_before is None and nxt.fuse_after is None):
                    nxt.fuse_before = node
                    step.folded_into = nxt.node

    def _assign_rules(self, fw: Forward, steps: dict[int, Step], rule_map: RuleMap) -> None:
        reaches_input: dict[int, bool] = {0: True}
        for i in sorted(steps):
            st = steps[i]
            if st.kind.category in ("layout", "pass") or st.folded_into is not None:
                reaches_input[i] = all(reaches_input.get(r.node, False) for r in st.node.parents)
        missing = []
        for st in steps.values():
            if st.kind.category not in ("affine", "sum"):
                continue
            if st.folded_into is not None:
                continue
            parents = st.node.parents if st.fuse_before is None else st.fuse_before.parents
            st.first = st.kind.weighted and all(reaches_input.get(r.node, False) for r in parents)
            keys = st.kind.rule_keys
            rule = rule_map.resolve(st.node.name, keys, weighted=st.kind.weighted, first=st.first)
            if rule is None:
                missing.append(f"  - {st.node.name} ({st.kind.detail})")
                continue
            if st.kind.category == "sum" and not isinstance(rule, Epsilon):
                raise RuleError(f"{st.node.name}: a sum of tensors takes Epsilon(eps) (proportional "
                                f"redistribution), not {rule!r}")
            if isinstance(rule, Pass):
                st.kind = ops.Kind("pass", f"{st.kind.detail} (Pass)", st.kind.rule_keys)
            st.rule = rule
        if missing:
            raise RuleError("no rule for these layers with weights:\n" + "\n".join(missing) +
                            "\nAdd them to the preset mapping by path or type, or give a base preset, "
                            "e.g. preset={'base': 'epsilon-plus', ...}.")

    # -- LRP walk ------------------------------------------------------------------------
    def _lrp(self, fw: Forward, target: torch.Tensor, *, stop_at: str | None = None,
             through: Mapping[str, Sequence[int]] | None = None, full_ledger: bool = True):
        B = fw.logits.shape[0]
        logits = fw.logits.detach()
        R: dict[Ref, torch.Tensor] = {fw.logits_ref: start_vector(logits, target, "logit")}
        rows: list[tuple] = []
        filtered_out = torch.zeros(B, dtype=logits.dtype)
        through = dict(through or {})
        at_value = None
        for node, outs in reverse_walk(fw, R):
            if stop_at is not None and node.name == stop_at:
                at_value = outs[0]
                break
            if node.name in through:
                keep = outs[0].clone()
                n_channels = outs[0].shape[1]
                channels = list(through.pop(node.name))
                bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, (int, np.integer))
                       or not -n_channels <= int(c) < n_channels]
                if bad:
                    raise InputError(f"through={{{node.name!r}: {channels}}}: channels must be integer "
                                     f"indices into dim 1 of that layer's output, which has {n_channels}; "
                                     f"invalid: {bad}")
                mask = torch.zeros(n_channels, dtype=torch.bool)
                if channels:
                    mask[[int(c) for c in channels]] = True
                shape = [1, -1] + [1] * (outs[0].ndim - 2)
                keep = outs[0] * mask.reshape(shape)
                filtered_out = filtered_out + per_sample_sum(outs[0] - keep)
                outs[0] = keep
            step = fw.steps[node.index]
            nan = torch.full((B,), float("nan"), dtype=logits.dtype)
            entering = leaving = nan
            if full_ledger:  # two reductions per layer: only when the ledger is asked for
                entering = sum(per_sample_sum(self._batch_check(o, B, node)) for o in outs if o is not None)
            contributions, absorbed = self._relevance(fw, step, outs)
            if full_ledger:
                leaving = torch.zeros(B, dtype=logits.dtype)
            for ref, r in contributions:
                self._batch_check(r, B, node)
                if full_ledger:
                    leaving = leaving + per_sample_sum(r)
                R[ref] = r if ref not in R else R[ref] + r
            rows.append((node.name, step.kind.detail or node.op, self._rule_text(step),
                         entering.detach(), leaving.detach(), absorbed.detach()))
        if through:
            raise InputError(f"through= names {sorted(through)} which were not reached; use module paths "
                             "that lie between the input and the output (see Explainer.layers())")
        if stop_at is not None and at_value is None:
            raise InputError(f"at={stop_at!r} is not a module on the path from input to output; "
                             "see Explainer.layers() for the names")
        return (at_value if stop_at is not None else R.get(Ref(0, 0))), rows, filtered_out

    @staticmethod
    def _batch_check(t: torch.Tensor, B: int, node: Node) -> torch.Tensor:
        if t.ndim == 0 or t.shape[0] != B:
            raise UnsupportedModelError(f"{node.name}: the tensor of shape {tuple(t.shape)} does not keep "
                                        f"the batch ({B}) as its first dim, so relevance cannot be kept per "
                                        "sample; keep the batch dim first inside the model")
        return t

    @staticmethod
    def _rule_text(step: Step) -> str:
        if step.rule is not None:
            return repr(step.rule)
        cat = step.kind.category
        if step.folded_into is not None:
            return f"folded into {step.folded_into.name}"
        return {"pass": "pass-through", "layout": "moves with entries", "embedding": "sum over embedding",
                "sum": "proportional"}.get(cat, cat)

    def _relevance(self, fw: Forward, step: Step, outs: list[torch.Tensor | None]):
        node, cat = step.node, step.kind.category
        B = fw.logits.shape[0]
        zero = torch.zeros(B, dtype=fw.logits.dtype)
        if step.folded_into is not None:
            # folded into the preceding layer: its relevance is that layer's output relevance;
            # folded into the following layer: that layer sends relevance past it, none arrives
            if fw.steps[step.folded_into.index].fuse_after is node:
                return [(node.parents[0], outs[0])], zero
            return [], zero
        if cat == "pass":
            r = outs[0]
            parent = node.parents[0]
            pv = fw.value(parent)
            if pv.shape != r.shape:
                if pv.numel() != r.numel():
                    raise UnsupportedModelError(f"{node.name}: Pass needs a shape-preserving layer, got "
                                                f"{tuple(pv.shape)} -> {tuple(r.shape)}")
                r = r.reshape(pv.shape)
            return [(parent, r.to(pv.dtype))], zero
        if cat == "affine":
            return self._affine(fw, step, outs[0])
        if cat == "layout":
            if step.kind.max_pool and self.max_pool == "proportional":
                return self._max_proportional(fw, step, outs)
            return self._layout(fw, step, outs)
        if cat == "sum":
            return self._sum(fw, step, outs[0])
        if cat == "embedding":
            return [(node.parents[0], outs[0].sum(dim=-1))], zero
        raise AssertionError(cat)  # pragma: no cover

    def _affine(self, fw: Forward, step: Step, R: torch.Tensor):
        node = step.node
        if step.fuse_before is not None:
            xref = step.fuse_before.parents[0]
        else:
            xref = next(a.ref for a in node.args if isinstance(a, _Placeholder))
        x = fw.value(xref)
        out_ndim = node.outputs[0].ndim
        layer = ops.affine_layer(node, step.kind, x, out_ndim, step.fuse_after, step.fuse_before)
        cached = None
        xnode = fw.tape.node_of(xref)
        if (step.fuse_after is None and step.fuse_before is None and x.requires_grad
                and node.pristine(0) and xnode.pristine(xref.k) and node.outputs[0].grad_fn is not None):
            cached = (xnode.outputs[xref.k], node.outputs[0])
        R_in, absorbed = lrp_affine(layer, x.detach(), R, step.rule, cached)
        return [(xref, R_in)], absorbed

    def _layout(self, fw: Forward, step: Step, outs):
        """Relevance moves with the entries (the operation's vector-Jacobian product). Entries
        that come from constants (padding values, a constant operand of cat/where/max) take their
        relevance with them: for an operation that only moves entries that is exactly the part
        of the incoming relevance that reaches no input, and it is counted as absorbed."""
        contributions = local_vjp(fw, step.node, outs)
        entering = sum(per_sample_sum(r) for r in outs if r is not None)
        leaving = sum((per_sample_sum(g) for _, g in contributions), torch.zeros_like(entering))
        return contributions, entering - leaving

    def _max_proportional(self, fw: Forward, step: Step, outs):
        """Max pooling redistributed like sum pooling over each window (Montavon et al. 2017)."""
        node = step.node
        m = node.target
        xref = node.parents[0]
        x = fw.value(xref).detach()
        if node.kind == "module" and isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            nd = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(m)]
            pool = getattr(torch.nn.functional, f"avg_pool{nd}d")
            def apply(x_, w):
                return pool(x_, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode,
                            count_include_pad=True) * w
        elif node.kind == "module":
            nd = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(m)]
            pool = getattr(torch.nn.functional, f"adaptive_avg_pool{nd}d")
            def apply(x_, w):
                return pool(x_, m.output_size) * w
        else:
            raise UnsupportedModelError(f"{node.name}: max_pool='proportional' supports MaxPool and "
                                        "AdaptiveMaxPool modules; use the default winner-take-all")
        if getattr(m, "dilation", 1) not in (1, (1,), (1, 1), (1, 1, 1)):
            raise UnsupportedModelError(f"{node.name}: proportional max pooling with dilation")
        from .propagation import AffineLayer
        layer = AffineLayer(node.name, "max as sum pooling", torch.ones((), dtype=x.dtype), None, apply, False)
        R_in, absorbed = lrp_affine(layer, x, outs[0], Epsilon(1e-9))
        return [(xref, R_in)], absorbed

    def _sum(self, fw: Forward, step: Step, R: torch.Tensor):
        node = step.node
        args = list(node.args)
        alpha = node.kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        a, b = args[0], args[1] if len(args) > 1 else node.kwargs.get("other")
        name = node.op
        if name in ("rsub", "__rsub__"):
            signs = [-(alpha if name == "rsub" else 1), 1]
        elif name.startswith("sub") or name in ("__sub__", "__isub__", "subtract"):
            signs = [1, -alpha]
        else:
            signs = [1, alpha]
        contribs = []
        for operand, sgn in zip((a, b), signs):
            if isinstance(operand, _Placeholder):
                v = fw.value(operand.ref).detach()
                contribs.append((operand.ref, sgn * v))
            else:
                contribs.append((None, sgn * torch.as_tensor(operand, dtype=R.dtype)))
        shape = R.shape
        total = sum(torch.broadcast_to(c, shape) for _, c in contribs)
        eps = step.rule.epsilon if isinstance(step.rule, Epsilon) else 1e-9
        stab = eps * sign0(total)
        den = total + stab
        dead = den == 0  # only with eps == 0: that relevance reaches no operand and is absorbed
        s = torch.where(dead, torch.zeros_like(R), R / torch.where(dead, torch.ones_like(den), den))
        B = R.shape[0]
        absorbed = per_sample_sum(s * stab) + per_sample_sum(torch.where(dead, R, torch.zeros_like(R)))
        result = []
        for ref, c in contribs:
            share = torch.broadcast_to(c, shape) * s
            if ref is None:
                absorbed = absorbed + per_sample_sum(share) if share.ndim and share.shape[0] == B else absorbed
                continue
            result.append((ref, _unbroadcast(share, fw.value(ref).shape)))
        return result, absorbed

    # -- public API --------------------------------------------------------------------------
    def layers(self, x: Any) -> list[tuple[str, str, str]]:
        """The nodes on the path from input to output: (name, type, rule), in forward order."""
        rule_map = self._check()
        xt = _as_input(x)
        with _eval_mode(self.model):
            fw = self._forward(xt, grad=False, leaf_names=rule_map.names() if rule_map else set())
            self._plan(fw, rule_map)
        return [(st.node.name, st.kind.detail or st.node.op, self._rule_text(st))
                for _, st in sorted(fw.steps.items())]

    def check_canonization(self, x: Any) -> dict[str, float]:
        """Relative error, per folded layer, of the folded layer against the original pair.

        For each Linear/Conv with a BatchNorm folded into it: max |folded(x) - original(x)| /
        max(1, max |original(x)|) on the batch ``x``, where "original" is the recorded output of
        the layer pair. Values of order 1e-7 mean the folding reproduces the model to float32
        precision; the model itself is never modified."""
        xt = _as_input(x)
        with _eval_mode(self.model):
            fw = self._forward(xt, grad=False, leaf_names=set())
            self._plan(fw, None)
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
                layer = ops.affine_layer(st.node, st.kind, x_in, st.node.outputs[0].ndim, st.fuse_after,
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
            return self._run_with_grad(x, target, dims, coords, at, through, full_ledger)

    def _run_with_grad(self, x, target, dims, coords, at, through, full_ledger):
        rule_map = self._check()
        if (at is not None or through is not None) and self.method != "lrp":
            raise InputError("at= and through= are available for method='lrp'")
        xt = _as_input(x)
        with _eval_mode(self.model):
            if self.method == "lrp":
                return self._explain_lrp(xt, target, rule_map, dims, coords, at, through, full_ledger)
            from . import methods
            return methods.run(self, xt, target, dims, coords), None

    def _explain_lrp(self, xt, target, rule_map, dims, coords, at, through, full_ledger=True):
        # recorded with autograd so that epsilon layers reuse the forward graph (no second pass)
        fw = self._forward(xt, grad=xt.is_floating_point(), leaf_names=rule_map.names())
        self._plan(fw, rule_map, keep={at} | set(through or {}) if at else set(through or {}))
        t = _targets(target, fw.logits)
        fw.logits = fw.logits.detach()  # keep the values, let the walk free the graph
        fw.tape.output = None
        with torch.no_grad():
            Rx, rows, filtered_out = self._lrp(fw, t, stop_at=at, through=through, full_ledger=full_ledger)
        B = xt.shape[0]
        prediction = _prediction(fw.logits, t)
        if Rx is None:
            Rx = torch.zeros_like(xt, dtype=fw.logits.dtype)
        absorbed_layers = sum((r[5] for r in rows), torch.zeros(B, dtype=fw.logits.dtype))
        absorbed = absorbed_layers + filtered_out
        from .result import build_result
        attrs = {"preset": rule_map.description, "explained": _explained_text(fw, self.max_pool)}
        if at is not None:
            attrs["layer"] = at
        if through:
            attrs["through"] = "; ".join(f"{k}: {list(v)}" for k, v in through.items())
            attrs["absorbed_note"] = "absorbed includes the relevance filtered out"
        R = build_result(Rx.detach(), dims=dims or _default_dims(Rx.ndim), coords=coords,
                         prediction=prediction, target=t.numpy(), absorbed=absorbed.numpy(),
                         method="lrp", rules=_rules_summary(fw), decomposes="f(x)", attrs=attrs)
        if through:
            R = R.assign_coords(filtered_out=(R.dims[0], filtered_out.numpy()))
        return R, (_ledger_dataset(rows, R.dims[0], prediction, Rx) if full_ledger else None)


# -- helpers -----------------------------------------------------------------------------------

def start_vector(logits: torch.Tensor, target: torch.Tensor, value: str) -> torch.Tensor:
    """What enters the backward walk at the output: the target's logit (``value="logit"``, LRP)
    or a one (``value="one"``, gradient-type walks), zero for the other outputs."""
    logits = logits.detach()
    if logits.ndim == 1:
        return logits.clone() if value == "logit" else torch.ones_like(logits)
    out = torch.zeros_like(logits)
    rows = torch.arange(logits.shape[0])
    out[rows, target] = logits[rows, target] if value == "logit" else 1.0
    return out


def reverse_walk(fw: Forward, store: dict[Ref, torch.Tensor]):
    """Visit the tape from the explained output back to the input.

    Yields ``(node, outs)``, where ``outs`` holds what arrived at each of the node's outputs
    (popped from ``store``); the caller adds what it sends to the node's inputs into ``store``.
    Nodes nothing arrived at are skipped. At the input node the walk ends, leaving its value
    in ``store[Ref(0, 0)]``.
    """
    for node in reversed(fw.tape.nodes[: fw.logits_ref.node + 1]):
        outs = [store.pop(Ref(node.index, k), None) for k in range(len(node.outputs))]
        if all(o is None for o in outs):
            continue
        if node.kind == "input":
            store[Ref(0, 0)] = outs[0]
            return
        yield node, outs
        # every consumer of this node came later in the tape and has been visited: its recorded
        # outputs (and the autograd graph above them) are no longer needed, so memory is freed
        # as the walk descends, like a backward pass
        node.outputs = [None] * len(node.outputs)
        node.snapshots.clear()


def local_vjp(fw: Forward, node: Node, outs: list[torch.Tensor | None]) -> list[tuple[Ref, torch.Tensor]]:
    """The node's own vector-Jacobian product with ``outs``, re-running the node on copies of its
    recorded inputs (copies, so that in-place operations do not act on the recorded values)."""
    leaves = {}
    for ref in dict.fromkeys(node.parents):
        v = fw.value(ref).detach()
        if v.is_floating_point():
            leaves[ref] = v.clone().requires_grad_(True)
    with torch.enable_grad():
        args, kwargs = replay_args(node, {r: l.clone() for r, l in leaves.items()})
        out = node.target(*args, **kwargs)
    flat = [o for o in _flatten_tensors(out) if o.is_floating_point()]
    pairs = [(o, g) for o, g in zip(flat, outs) if g is not None]
    grads = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()),
                                grad_outputs=[g for _, g in pairs], allow_unused=True)
    return [(ref, g) for ref, g in zip(leaves, grads) if g is not None]


def _flatten_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten_tensors(o)


def _unbroadcast(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` down to ``shape`` (the inverse of broadcasting)."""
    while t.ndim > len(shape):
        t = t.sum(dim=0)
    for i, n in enumerate(shape):
        if n == 1 and t.shape[i] != 1:
            t = t.sum(dim=i, keepdim=True)
    return t


def _prediction(logits: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    l = logits.detach()
    if l.ndim == 2:
        return l[torch.arange(l.shape[0]), t].numpy().astype(np.float64)
    return l.numpy().astype(np.float64)


def _default_dims(ndim: int) -> tuple[str, ...]:
    return ("sample",) + tuple(f"dim_{i}" for i in range(ndim - 1))


def _explained_text(fw: Forward, max_pool: str) -> str:
    node = fw.tape.node_of(fw.logits_ref)
    text = f"output of {node.name}"
    if fw.squash:
        text += f" before the final {fw.squash}"
    return text + f"; max pooling: {max_pool}"


def _rules_summary(fw: Forward) -> str:
    lines = []
    other: dict[str, list[str]] = {}
    for _, st in sorted(fw.steps.items()):
        if st.rule is not None and st.kind.category == "affine":
            flag = " [first layer]" if st.first else ""
            kind = st.kind.detail
            if st.fuse_after is not None:
                kind += f"+{type(st.fuse_after.target).__name__}"
            if st.fuse_before is not None:
                kind = f"{type(st.fuse_before.target).__name__}+" + kind
            lines.append(f"{st.node.name} ({kind}): {st.rule!r}{flag}")
        elif st.kind.category == "sum":
            other.setdefault(f"sums: {st.rule!r}", []).append(st.node.name)
        elif st.kind.category in ("pass", "layout", "embedding"):
            other.setdefault({"pass": "activations/identity: pass-through",
                              "layout": "reshapes/slicing/max pooling: relevance moves with entries",
                              "embedding": "embeddings: summed over the embedding dim"}[st.kind.category],
                             []).append(st.node.name)
    for desc, names in other.items():
        lines.append(f"{desc} ({len(names)} ops)")
    return "\n".join(lines)


def _ledger_dataset(rows, batch_dim: str, prediction: np.ndarray, Rx: torch.Tensor) -> xr.Dataset:
    names = [r[0] for r in rows]
    def stack(i):
        return np.stack([r[i].numpy() for r in rows], axis=1) if rows else np.zeros((len(prediction), 0))
    return xr.Dataset(
        {"entering": ((batch_dim, "layer"), stack(3)), "leaving": ((batch_dim, "layer"), stack(4)),
         "absorbed": ((batch_dim, "layer"), stack(5)),
         "input_relevance": ((batch_dim,), per_sample_sum(Rx.detach()).numpy()),
         "prediction": ((batch_dim,), prediction)},
        coords={"layer": names, "op": ("layer", [r[1] for r in rows]), "rule": ("layer", [r[2] for r in rows])},
        attrs={"description": "per-layer relevance ledger: entering = leaving + absorbed at each layer; "
                              "input_relevance + sum of absorbed = prediction",
               "sciexplain_version": __version__})


def explain(model: nn.Module, data: Any, target: Any = None, *, method: str = "lrp",
            preset: str | Rule | Mapping | None = None, dims: Sequence[str] | None = None,
            coords: Mapping[str, Any] | None = None, bounds: tuple | None = None,
            max_pool: str = "winner-take-all", at: str | None = None,
            through: Mapping[str, Sequence[int]] | None = None, **options: Any) -> xr.DataArray:
    """Explain the predictions of ``model`` on a batch.

    Parameters
    ----------
    model : torch.nn.Module
        Any PyTorch model; it is left unchanged.
    data : torch.Tensor or numpy.ndarray
        A batch, batch dim first. Domain data (e.g. ``mne.Epochs``) is dispatched to the
        installed plugin that claims its type.
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
        Return the relevance of this module's output instead of the input's.
    through : mapping, optional
        ``{module path: [channel indices]}``: keep only the relevance flowing through those
        channels (dim 1) of that module's output.
    **options
        Method parameters (see :class:`Explainer`).

    Returns
    -------
    xarray.DataArray
        Relevance with ``prediction``, ``target`` and ``absorbed`` coordinates on the batch dim
        and attrs ``method``, ``rules``, ``decomposes``; for decompositions of f(x) the
        relevance plus ``absorbed`` sums to ``prediction`` per sample.
    """
    if not isinstance(data, (torch.Tensor, np.ndarray)):
        from .plugins import dispatch
        return dispatch(model, data, target=target, method=method, preset=preset, bounds=bounds,
                        max_pool=max_pool, at=at, through=through, dims=dims, coords=coords, **options)
    return Explainer(model, method, "epsilon-plus" if preset is None else preset, bounds=bounds,
                     max_pool=max_pool, **options).explain(data, target, dims=dims, coords=coords, at=at,
                                                           through=through)


def ledger(model: nn.Module, x: Any, target: Any = None, *, preset: str | Rule | Mapping = "epsilon-plus",
           bounds: tuple | None = None, max_pool: str = "winner-take-all") -> xr.Dataset:
    """The per-layer relevance ledger of an LRP explanation (see :meth:`Explainer.explain_with_ledger`)."""
    return Explainer(model, "lrp", preset, bounds=bounds, max_pool=max_pool).explain_with_ledger(x, target)[1]
