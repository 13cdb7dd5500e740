"""Canonizers: rewrite a model into an equivalent form whose layers have LRP rules.

Two kinds, both listed in the result's ``attrs["canonizers"]``:

* :class:`ModelCanonizer` rewrites the *module tree* before recording: each module for which
  :meth:`ModelCanonizer.replacement` returns a module is swapped for it. The swap happens on a
  shallow copy of the path from the root to that module (new container objects holding the
  same children, parameters and buffers), so the user's model object is never modified, not
  even temporarily; the replacement shares the original's parameters. Example:
  :class:`sciexplain.recurrent.RecurrentUnrolling` (LSTM/GRU as unrolled cells).
* :class:`PlanCanonizer` rewrites the *plan* of one recorded forward pass: e.g.
  :class:`BatchNormFolding` merges a BatchNorm into the adjacent Linear/convolution, so that
  the pair is explained as one affine layer (W' = a W, b' = a b + c).

``Explainer(model, canonizers=...)`` takes a sequence of canonizer objects; the default is
:func:`default`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ..errors import InputTypeError
from ..record.tape import Ref

if TYPE_CHECKING:  # pragma: no cover
    from ..explain.forward import Forward
    from ..explain.plan import Step
    from ..rules.presets import RuleMap

__all__ = ["Canonizer", "ModelCanonizer", "PlanCanonizer", "BatchNormFolding", "default", "canonized"]


class Canonizer:
    """Base class of canonizers."""

    #: short name shown in ``attrs["canonizers"]``
    name: str = ""

    def describe(self) -> str:
        return self.name or type(self).__name__


class ModelCanonizer(Canonizer):
    """Swaps modules for equivalent ones, on a copy of the path to them (see the module doc).

    Subclasses implement :meth:`replacement`.
    """

    def replacement(self, module: nn.Module, path: str) -> nn.Module | None:  # pragma: no cover
        """The module to use instead of ``module`` (sharing its parameters), or None to keep it."""
        raise NotImplementedError

    def replacement_for_rules(self, module: nn.Module, path: str, rules: RuleMap | None) -> nn.Module | None:
        """Like :meth:`replacement`, knowing the explanation's resolved preset (None for methods
        other than LRP), for canonizers whose best replacement depends on the rules that would
        apply inside it (e.g. :class:`~sciexplain.recurrent.RecurrentUnrolling`, which swaps in
        fused LSTM layers only where the preset gives the paper's rules). The default ignores
        ``rules``."""
        return self.replacement(module, path)


class PlanCanonizer(Canonizer):
    """Rewrites the plan (node index -> :class:`~sciexplain.plan.Step`) of one recorded forward."""

    def rewrite(self, fw: Forward, steps: dict[int, Step], keep: frozenset | set) -> list[str]:  # pragma: no cover
        """Rewrite ``steps`` in place; return the names of the nodes it changed. Nodes named in
        ``keep`` (``at=``/``through=`` targets) must stay nodes of their own."""
        raise NotImplementedError


@dataclass(frozen=True)
class BatchNormFolding(PlanCanonizer):
    """Fold each BatchNorm (with running statistics) into the adjacent Linear or convolution.

    A BatchNorm that follows a Linear/Conv whose output nothing else reads becomes part of it
    (W' = a W, b' = a b + c); a BatchNorm1d that feeds a Linear on ``(batch, features)`` is folded
    into that Linear (W' = W diag(a), b' = b + W c). Others stay standalone element-wise affine
    layers. ``Explainer.check_canonization`` measures the folding error.
    """

    name: str = "BatchNormFolding"

    def rewrite(self, fw: Forward, steps: dict[int, Step], keep: frozenset | set) -> list[str]:
        from ..kinds import ops as ops
        from ..kinds.registry import Kind
        tape = fw.tape
        consumers = tape.consumers()
        folded = []
        for step in steps.values():
            node = step.node
            if not (node.kind == "module" and isinstance(node.target, ops._BN_MODULES)):
                continue
            if node.name in keep or len(node.parents) != 1 or step.kind.category != "affine":
                continue
            pref = node.parents[0]
            prev = steps.get(pref.node)
            if (prev is not None and prev.kind.category == "affine" and prev.kind.weighted
                    and prev.fuse_after is None and prev.fuse_before is None
                    and consumers.get(pref, []) == [node.index] and tape.node_of(pref).pristine(pref.k)
                    and pref != fw.logits_ref and _weight_rows_are_channels(prev.node, fw.value(pref).ndim)):
                prev.fuse_after = node
                step.folded_into = prev.node
            else:
                # BatchNorm1d feeding a Linear on (batch, features)
                users = consumers.get(Ref(node.index, 0), [])
                if not (len(users) == 1 and fw.value(Ref(node.index, 0)).ndim == 2):
                    continue
                nxt = steps.get(users[0])
                if not (nxt is not None and nxt.node.kind == "module" and type(nxt.node.target) is nn.Linear
                        and nxt.fuse_before is None and nxt.fuse_after is None):
                    continue
                nxt.fuse_before = node
                step.folded_into = nxt.node
            step.kind = Kind("folded", f"{step.kind.detail} folded into {step.folded_into.name}",
                             step.kind.rule_keys)
            folded.append(node.name)
        return folded


def _weight_rows_are_channels(layer, out_ndim: int) -> bool:
    """Whether a BatchNorm on ``layer``'s output scales the rows of its weight.

    That needs a weight laid out ``(out_channels, ...)`` (Linear, convolutions, ``F.linear``,
    ``F.conv*``; not a matmul with a constant weight, which is ``(in, out)``), and for a linear
    map an output ``(batch, features)``, so that the BatchNorm's channel dim (dim 1) is the
    layer's output dim.
    """
    if out_ndim < 2:
        return False
    if layer.kind == "module":
        linear = isinstance(layer.target, nn.Linear)
    elif layer.op in ("linear", "conv1d", "conv2d", "conv3d"):
        linear = layer.op == "linear"
    else:
        return False
    return out_ndim == 2 or not linear


def default() -> tuple[Canonizer, ...]:
    """The canonizers an explanation applies unless told otherwise: TorchScript modules as eager
    ones, recurrent unrolling (when :mod:`sciexplain.recurrent` provides it) and BatchNorm
    folding."""
    from .torchscript import TorchScriptToEager
    out: list[Canonizer] = [TorchScriptToEager()]
    try:
        from .recurrent import RecurrentUnrolling
    except ImportError:  # pragma: no cover - until the recurrent module exists
        pass
    else:
        out.append(RecurrentUnrolling())
    out.append(BatchNormFolding())
    return tuple(out)


def validate(canonizers: Sequence[Canonizer] | None) -> tuple[Canonizer, ...]:
    """The canonizers to apply: ``None`` means :func:`default`."""
    if canonizers is None:
        return default()
    if isinstance(canonizers, Canonizer):
        canonizers = (canonizers,)
    out = tuple(canonizers)
    bad = [c for c in out if not isinstance(c, Canonizer)]
    if bad:
        raise InputTypeError(f"canonizers must be sciexplain.canonizers.Canonizer objects, got {bad!r}")
    return out


def _shallow(module: nn.Module) -> nn.Module:
    """A new module object with the same attributes, children, parameters and buffers; its own
    ``_modules`` dict, so swapping a child in the copy leaves the original untouched."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    return twin


@contextmanager
def canonized(model: nn.Module, canonizers: Sequence[Canonizer], rules: RuleMap | None = None
              ) -> Iterator[tuple[nn.Module, list[str]]]:
    """Apply the model canonizers; yield ``(model_to_explain, applied)``.

    ``rules`` is the explanation's resolved preset, handed to
    :meth:`ModelCanonizer.replacement_for_rules`.

    ``model_to_explain`` is ``model`` itself when no module is replaced, else a copy of the paths
    to the replaced modules sharing everything else. ``applied`` lists ``"Name: path, ..."`` per
    canonizer that changed something.
    """
    root = model
    applied: list[str] = []
    for canon in canonizers:
        if not isinstance(canon, ModelCanonizer):
            continue
        swaps: list[tuple[str, nn.Module]] = []
        done: dict[int, nn.Module] = {}
        for path, module in root.named_modules(remove_duplicate=False):
            if any(p == "" or path.startswith(p + ".") for p, _ in swaps):
                continue
            new = done.get(id(module))
            if new is None:
                new = canon.replacement_for_rules(module, path, rules)
                if new is None:
                    continue
                done[id(module)] = new
            swaps.append((path, new))
        if not swaps:
            continue
        if swaps[0][0] == "":  # the model itself is replaced (e.g. an nn.GRUCell explained on its own)
            root = swaps[0][1]
            applied.append(f"{canon.describe()}: <model>")
            continue
        if root is model:
            root = _shallow(model)
        for path, new in swaps:
            parent = root
            parts = path.split(".")
            for part in parts[:-1]:
                child = parent._modules[part]
                # copy each container on the path once (a copy is recognised by not being in the original)
                if not getattr(child, "_sciexplain_copy", False):
                    child = _shallow(child)
                    object.__setattr__(child, "_sciexplain_copy", True)
                    parent._modules[part] = child
                parent = child
            parent._modules[parts[-1]] = new
        applied.append(f"{canon.describe()}: {', '.join(p for p, _ in swaps)}")
    yield root, applied
