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

Attention blocks under every preset (unless mapped by ``"op:softmax"``, ``"op:matmul"``,
``"op:einsum"``, ``"op:scaled_dot_product_attention"`` or a module path): a softmax inside the
network by AttnLRP's ``LinearisedSoftmax()``, products of two input-dependent tensors that sum
over terms (matmul, bmm, einsum, the two products of ``F.scaled_dot_product_attention``) by
``BilinearUniform(1e-6)``; the linear projections take the preset's dense-layer rule.
``"attnlrp"`` and ``"cp-lrp"`` are the presets of the two papers (see :data:`PRESETS`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import RuleError
from .affine import DEFAULT_STABILIZER, AlphaBeta, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus
from .attention import BilinearUniform, ConstantAttention, LinearisedSoftmax, rule_family
from .products import UniformProduct
from .terms import Rule, Term

__all__ = ["RuleMap", "PRESETS", "resolve_preset", "PROPORTIONAL", "ByConvKind", "ScaledEpsilon", "NoBias", "conv_kind"]

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
    "mobilenet": "for MobileNet/EfficientNet-style networks (depthwise and pointwise convolutions, folded "
                 "BatchNorm): Gamma(0.25) on depthwise convolutions, ScaledEpsilon(0.25) on pointwise (1x1) "
                 "and full convolutions and dense layers, ZBox on the first layer when bounds are given "
                 "(Flat otherwise); the image plugin's default, chosen by "
                 "benchmarks/bench_image_faithfulness.py",
    "mobilenet-conserving": "for MobileNet/EfficientNet-style networks, keeping f(x) on the input: WSquare on "
                            "depthwise convolutions, ZPlus on pointwise (1x1) convolutions, "
                            "ScaledEpsilon(0.05) on full convolutions, Epsilon(1e-6) on dense "
                            "layers, ZBox on the first layer when bounds are given; the image plugin's default, "
                            "chosen by benchmarks/bench_conservation.py (issue 20)",
    "attnlrp": "AttnLRP (Achtibat et al. 2024) for transformers: Epsilon(1e-6) on every layer with weights, "
               "the linearised softmax, BilinearUniform on matmul/einsum/attention, UniformProduct on "
               "element-wise products",
    "cp-lrp": "CP-LRP (Ali et al. 2022): as 'attnlrp', but the attention weights held constant "
              "(ConstantAttention: relevance through the values only)",
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

    def explicit(self, name: str, keys: tuple) -> Rule | None:
        """The rule this map names for ``name`` or one of ``keys`` explicitly (no defaults): by
        name, then pattern, then type, as :meth:`resolve` for a layer with weights that is not
        the first (so neither the first-layer rule nor the weight-free default applies)."""
        return self.resolve(name, keys, weighted=True, first=False)

    def product_rule(self, scope: str, keys: tuple = ("op:mul",)) -> Rule:
        """The rule for a product (or softmax) recorded inside module ``scope`` with the preset
        ``keys``: the one of its family (:func:`~sciexplain.rules.attention.rule_family`) this map
        names for that module or an enclosing one, else for the first of ``keys`` it maps, else
        the family's default (signal-take-all for element-wise products, ``BilinearUniform()``
        for matmul/einsum/attention, ``LinearisedSoftmax()`` for a softmax)."""
        accepts, default = rule_family(tuple(keys))
        while scope:  # "a.b.c", then "a.b", then "a"
            rule = self.explicit(scope, ())
            if isinstance(rule, accepts):
                return rule
            scope = scope.rpartition(".")[0]
        for key in keys:
            rule = self.by_type.get(key)
            if isinstance(rule, accepts):
                return rule
        return default


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
    if name == "mobilenet":
        return _mobilenet(box)
    if name == "mobilenet-conserving":
        return _mobilenet_conserving(box)
    if name in ("attnlrp", "cp-lrp"):
        product = BilinearUniform() if name == "attnlrp" else ConstantAttention()
        by_type = {**types(Epsilon(1e-6), Epsilon(1e-6)), "op:mul": UniformProduct(), "op:matmul": product,
                   "op:softmax": LinearisedSoftmax()}
        return RuleMap(by_type=by_type, description=name)
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


# -- rules that depend on the layer: depthwise vs pointwise convolutions, scaled stabilisers --------
#
# Depthwise and pointwise convolutions are both ``nn.Conv2d``, so neither a type nor (in
# general) a module path tells them apart. These small rules look at the layer itself when
# relevance passes through it; they are ordinary rules, so they go wherever a rule goes (a
# type key, a pattern, a preset name that uses them).

def conv_kind(layer: Any, x: Any) -> str:
    """``"depthwise"``, ``"pointwise"``, ``"dense"`` or ``"conv"`` for an affine layer and its input.

    Depthwise: a convolution with one input channel per group (``groups == in_channels``,
    weight shape ``(C_out, 1, k...)``) on an input of more than one channel. Pointwise: every
    kernel size 1 (a 1x1 convolution mixes channels only). Dense: a 2-D weight (Linear).
    """
    w = getattr(layer, "weight", None)
    if w is None or w.ndim < 2:
        return "conv" if w is not None and w.ndim > 2 else "dense"
    if w.ndim == 2:
        return "dense"
    if w.shape[1] == 1 and x.ndim >= 2 and x.shape[1] > 1:
        return "depthwise"
    if all(int(k) == 1 for k in w.shape[2:]):
        return "pointwise"
    return "conv"


@dataclass(frozen=True)
class ByConvKind(Rule):
    """One rule for depthwise convolutions, one for pointwise (1x1) ones, one for the rest.

    ``ByConvKind(depthwise=Gamma(0.25), pointwise=ScaledEpsilon(0.25), other=Epsilon(1e-6))``
    as the rule of ``nn.Conv2d`` applies the first to every depthwise convolution of a
    MobileNet/EfficientNet-style network, the second to its expansion and projection 1x1
    convolutions, and ``other`` to full convolutions and dense layers (see :func:`conv_kind`).
    """

    depthwise: Rule
    pointwise: Rule
    other: Rule

    def __post_init__(self) -> None:
        for field_name in ("depthwise", "pointwise", "other"):
            value = getattr(self, field_name)
            if not isinstance(value, Rule) or isinstance(value, (Pass, ByConvKind)):
                raise RuleError(f"ByConvKind({field_name}={value!r}): give a rule such as Epsilon(1e-6) "
                                "(not Pass() and not another ByConvKind)")

    def pick(self, layer: Any, x: Any) -> Rule:
        kind = conv_kind(layer, x)
        return self.depthwise if kind == "depthwise" else self.pointwise if kind == "pointwise" else self.other

    def terms(self, layer, x):
        return self.pick(layer, x).terms(layer, x)


@dataclass(frozen=True)
class ScaledEpsilon(Rule):
    """LRP-epsilon with a stabiliser relative to the layer's output scale, per sample.

    ``eps_b = factor * std(z_b)`` over all outputs ``z_b`` of the layer for sample ``b`` (bias
    included), then ``R_i = sum_j x_i w_ij / (z_j + eps_b sign(z_j)) R_j``. The same ``factor``
    then absorbs a comparable share of weak contributions on layers whose activations differ
    by orders of magnitude (a network with folded BatchNorm), which a fixed epsilon does not.
    ``include_bias=False`` leaves the bias out of the denominator (the bias then absorbs
    nothing, as in the deep Taylor rules). Costs one extra forward pass of the layer.
    """

    factor: float = 0.25
    include_bias: bool = True

    def __post_init__(self) -> None:
        if not (self.factor >= 0) or self.factor == float("inf"):
            raise RuleError(f"ScaledEpsilon(factor={self.factor!r}): factor must be a finite number >= 0")

    def terms(self, layer, x):
        import torch
        with torch.no_grad():
            z = layer.forward(x.detach())
            scale = z.reshape(z.shape[0], -1).std(dim=1) if z.ndim >= 2 and z[0].numel() > 1 else z.abs()
            scale = scale.reshape((-1,) + (1,) * (z.ndim - 1))
            if not self.include_bias and layer.bias is not None:
                z = z - layer.bias
            stab = torch.where(z >= 0, 1.0, -1.0).to(z.dtype) * (self.factor * scale + DEFAULT_STABILIZER)
        bias = stab if (layer.bias is None or not self.include_bias) else stab + layer.bias
        # the stabiliser rides in the bias (a full-size tensor): the ledger counts it as absorbed
        return [Term(1.0, [(x, layer.weight)], bias, 0.0, plain=False)]


@dataclass(frozen=True)
class NoBias(Rule):
    """Apply ``rule`` as if the layer had no bias: the bias (e.g. a folded BatchNorm shift) absorbs nothing.

    The relevance a layer receives is then divided among its inputs only (up to the rule's own
    stabiliser), instead of the bias taking its share.
    """

    rule: Rule

    def __post_init__(self) -> None:
        if not isinstance(self.rule, Rule) or isinstance(self.rule, (Pass, ByConvKind)):
            raise RuleError(f"NoBias({self.rule!r}): give a rule such as Epsilon(1e-6)")

    def terms(self, layer, x):
        import dataclasses
        bare = dataclasses.replace(layer, bias=None)
        # a plain term would reuse the recorded output, which includes the bias
        return [dataclasses.replace(t, plain=False) for t in self.rule.terms(bare, x)]


def _mobilenet(box: ZBox | None) -> RuleMap:
    """The ``"mobilenet"`` preset (see :data:`PRESETS`).

    Measured on EfficientNet-Lite0 over the twelve bundled photos
    (``benchmarks/bench_image_faithfulness.py``): the composite with the largest area between
    the LeRF and MoRF perturbation curves among those measured; the table is in
    ``benchmarks/README.md``.
    """
    scaled = ScaledEpsilon(0.25)
    conv = ByConvKind(depthwise=Gamma(0.25), pointwise=scaled, other=scaled)
    types: dict[Any, Rule] = {t: scaled for t in _DENSE}
    types.update({t: conv for t in _CONV})
    return RuleMap(by_type=types, first_layer=box if box is not None else Flat(), description="mobilenet",
                   uses_bounds=box is not None)


def _mobilenet_conserving(box: ZBox | None) -> RuleMap:
    """The ``"mobilenet-conserving"`` preset (see :data:`PRESETS`).

    On EfficientNet-Lite0 (its convolutions are the stem, depthwise and pointwise ones) this is
    ``epsilon-plus-box`` with w^2 on the depthwise convolutions: the z+ denominators of 3x3
    depthwise kernels vanish where their positive weights see only zeros, and z+ then drops that
    relevance; w^2 does not depend on the input. Measured in ``benchmarks/bench_conservation.py``.
    Full convolutions (other networks, e.g. the Fashion-MNIST CNN) get ``ScaledEpsilon(0.05)``: a
    small stabiliser that absorbs little; on the Fashion CNN it leaves 11% of f(x) absorbed (median;
    the biases' share) with an ABPC above ``"mobilenet"``'s, where ``BiasToInputs`` over
    ``ScaledEpsilon(0.25)`` absorbed nothing but ranked pixels significantly worse.
    """
    conv = ByConvKind(depthwise=WSquare(), pointwise=ZPlus(), other=ScaledEpsilon(0.05))
    types: dict[Any, Rule] = {t: Epsilon(1e-6) for t in _DENSE}
    types.update({t: conv for t in _CONV})
    return RuleMap(by_type=types, first_layer=box, description="mobilenet-conserving", uses_bounds=box is not None)
