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
:func:`sciexplain.canonizers.default`. This module holds the base classes and
:func:`canonized`, which applies the model canonizers; the concrete canonizers live in the
modules beside it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn

from ..kinds.registry import Kind
from ..record.tape import Node, Ref, Tape
from ..rules.presets import RuleMap

__all__ = ["Canonizer", "ModelCanonizer", "PlanCanonizer", "canonized"]


class RecordedForward(Protocol):
    """What a plan canonizer reads of one recorded forward pass (the engine's
    :class:`~sciexplain.explain.forward.Forward`)."""

    tape: Tape
    logits_ref: Ref

    def value(self, ref: Ref) -> torch.Tensor: ...


class PlanStep(Protocol):
    """What a plan canonizer reads and rewrites of one node of the plan (the engine's
    :class:`~sciexplain.explain.plan.Step`)."""

    node: Node
    kind: Kind
    fuse_after: Node | None
    fuse_before: Node | None
    folded_into: Node | None


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

    def rewrite(self, fw: RecordedForward, steps: dict[int, PlanStep], keep: frozenset | set) -> list[str]:  # pragma: no cover
        """Rewrite ``steps`` in place; return the names of the nodes it changed. Nodes named in
        ``keep`` (``at=``/``through=`` targets) must stay nodes of their own."""
        raise NotImplementedError


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
