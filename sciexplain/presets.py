"""Presets: which rule runs on which layer.

A preset is given to :func:`sciexplain.explain` as

* a name: ``"epsilon"``, ``"epsilon-plus"``, ``"epsilon-plus-box"``, ``"alpha2-beta1"``,
  ``"deep-taylor"`` (see :data:`PRESETS`);
* a single rule, applied to every layer with weights (Linear, convolutions, their functional
  forms, matmul with a constant);
* a mapping whose keys are module paths (``"features.0"``; shell-style patterns such as
  ``"features.*"`` allowed), layer types (``torch.nn.Conv2d``; a subclass matches, the most
  specific class wins) or operation keys (``"op:add"`` for sums and residuals, ``"op:mean"``,
  ``"op:mul"``...), plus optionally ``"base"``: a preset name that fills in every layer the
  mapping does not name.

Precedence is fixed and documented, not first-match: an exact module path wins over a pattern,
a pattern over the preset's first-layer rule, that over a type, and a subclass over its base.
Two patterns that both match one layer are an error. A weighted layer that no entry covers is
an error (never a silent default); weight-free linear operations (average pooling, mean, sum,
scaling by constants, standalone BatchNorm) and sums of tensors default to the proportional
rule ``Epsilon(1e-9)`` unless mapped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .errors import RuleError
from .rules import DEFAULT_STABILIZER, Epsilon, Rule, WSquare, ZBox, ZPlus, AlphaBeta

__all__ = ["RuleMap", "PRESETS", "resolve_preset", "uses_bounds", "PROPORTIONAL"]

#: the rule for weight-free linear operations and sums: proportional redistribution
PROPORTIONAL = Epsilon(DEFAULT_STABILIZER)

_DENSE = (nn.Linear,)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

PRESETS: dict[str, str] = {
    "epsilon": "Epsilon(0.01) on every layer with weights",
    "epsilon-plus": "Epsilon(1e-6) on dense layers, ZPlus on convolutions",
    "epsilon-plus-box": "as epsilon-plus, with ZBox(low, high) on the first layer (needs bounds)",
    "alpha2-beta1": "AlphaBeta(2, 1) on every layer with weights",
    "deep-taylor": "ZPlus on every layer with weights; ZBox on the first layer when bounds are "
                   "given, WSquare otherwise",
}


@dataclass
class RuleMap:
    """Resolved assignment of rules to layers."""

    by_name: dict[str, Rule] = field(default_factory=dict)
    patterns: dict[str, Rule] = field(default_factory=dict)
    by_type: dict[Any, Rule] = field(default_factory=dict)
    first_layer: Rule | None = None
    description: str = ""
    #: whether the preset applies ZBox with the caller's ``bounds=`` (else giving bounds is an error)
    uses_bounds: bool = False

    def resolve(self, name: str, keys: tuple, *, weighted: bool, first: bool) -> Rule | None:
        """The rule for one layer, or None when a weighted layer is not covered."""
        base = name.split("#")[0]
        for candidate in (name, base):
            if candidate in self.by_name:
                return self.by_name[candidate]
        hits = [p for p in self.patterns if fnmatch.fnmatchcase(base, p)]
        if len(hits) > 1:
            raise RuleError(f"layer {name!r} matches several patterns {hits}; make the patterns "
                            "disjoint or name the layer exactly")
        if hits:
            return self.patterns[hits[0]]
        if first and weighted and self.first_layer is not None:
            return self.first_layer
        for key in keys:
            if key in self.by_type:
                return self.by_type[key]
        if not weighted:
            return PROPORTIONAL
        return None

    def names(self) -> set[str]:
        return set(self.by_name)


def _check_rule(value: Any, where: str) -> Rule:
    if not isinstance(value, Rule):
        raise RuleError(f"{where}: expected a rule such as sciexplain.rules.Epsilon(0.01), "
                        f"got {value!r}")
    return value


def _named(name: str, bounds: tuple | None) -> RuleMap:
    def types(rule_dense: Rule, rule_conv: Rule) -> dict:
        d: dict[Any, Rule] = {t: rule_dense for t in _DENSE}
        d.update({t: rule_conv for t in _CONV})
        return d
    box = None if bounds is None else ZBox(*bounds)
    if name == "epsilon":
        return RuleMap(by_type=types(Epsilon(0.01), Epsilon(0.01)), description=name)
    if name == "epsilon-plus":
        return RuleMap(by_type=types(Epsilon(1e-6), ZPlus()), description=name)
    if name == "epsilon-plus-box":
        if box is None:
            raise RuleError("preset 'epsilon-plus-box' applies ZBox(low, high) to the first layer and "
                            "needs the input bounds: pass bounds=(low, high), e.g. bounds=(0, 1) for "
                            "pixels in [0, 1]")
        return RuleMap(by_type=types(Epsilon(1e-6), ZPlus()), first_layer=box, description=name, uses_bounds=True)
    if name == "alpha2-beta1":
        return RuleMap(by_type=types(AlphaBeta(2, 1), AlphaBeta(2, 1)), description=name)
    if name == "deep-taylor":
        return RuleMap(by_type=types(ZPlus(), ZPlus()), first_layer=box or WSquare(), description=name,
                       uses_bounds=box is not None)
    raise RuleError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}, a rule, or a mapping "
                    "from module names / layer types to rules")


def uses_bounds(preset: str | Rule | Mapping) -> bool:
    """Whether ``preset`` applies ZBox with the ``bounds=`` an explanation is given."""
    return resolve_preset(preset, (0.0, 1.0)).uses_bounds


def resolve_preset(preset: str | Rule | Mapping, bounds: tuple | None = None) -> RuleMap:
    """Turn the ``preset=`` argument into a :class:`RuleMap`."""
    if bounds is not None:
        if len(bounds) != 2:
            raise RuleError(f"bounds must be (low, high), got {bounds!r}")
    if isinstance(preset, str):
        return _named(preset, bounds)
    if isinstance(preset, Rule):
        types = {t: preset for t in _DENSE + _CONV}
        return RuleMap(by_type=types, description=repr(preset))
    if isinstance(preset, Mapping):
        base = preset.get("base")
        rm = _named(base, bounds) if base is not None else RuleMap()
        for key, value in preset.items():
            if key == "base":
                continue
            rule = _check_rule(value, f"preset[{key!r}]")
            if isinstance(key, type):
                if not issubclass(key, nn.Module):
                    raise RuleError(f"preset key {key!r} is a type but not a torch.nn.Module subclass")
                rm.by_type[key] = rule
            elif isinstance(key, str) and key.startswith("op:"):
                rm.by_type[key] = rule
            elif isinstance(key, str):
                if any(ch in key for ch in "*?["):
                    rm.patterns[key] = rule
                else:
                    rm.by_name[key] = rule
            else:
                raise RuleError(f"preset key {key!r}: use a module path (str), a layer type, or "
                                "'op:<name>'")
        rm.description = f"custom mapping (base={base!r})" if base else "custom mapping"
        return rm
    raise RuleError(f"preset must be a name, a rule or a mapping, got {type(preset).__name__}")
