"""The plan of an LRP explanation: a kind and a rule for every node between input and output.

:func:`make_plan` classifies every recorded node the explained output depends on (through the
registry), collects everything unsupported into one error, applies the plan canonizers
(BatchNorm folding), finds the gates of products, and resolves each node's rule from the
preset with the documented precedence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..canonizers.base import Canonizer, PlanCanonizer
from ..errors import RuleError, UnsupportedModelError
from .forward import Forward
from ..kinds.context import Step
from ..kinds.products import product_operands
from ..kinds.registry import REGISTRY, Kind, Registry
from ..kinds.sums import _sum_signs
from ..record import batch_axes as _batch_axes
from ..record.op_names import IDENTITY_LIKE
from ..rules.affine import Epsilon, Pass
from ..rules.presets import RuleMap
from ..rules.products import ProductRule, SignalTakeAll
from ..record.tape import Node, Ref, _Placeholder

__all__ = ["Step", "make_plan", "track_batch_axes"]


def _ancestors(fw: Forward) -> set[int]:
    seen, stack = set(), [fw.logits_ref.node]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(r.node for r in fw.tape.nodes[i].parents)
    return seen


def make_plan(fw: Forward, rule_map: RuleMap | None, canonizers: Sequence[Canonizer] = (),
              keep: set[str] | frozenset = frozenset(), registry: Registry = REGISTRY) -> list[str]:
    """Fill ``fw.steps``; return ``"Name: nodes"`` for each plan canonizer that changed something.

    With ``rule_map=None`` (gradient-type walks) no rules are assigned.
    """
    needed = _ancestors(fw)
    problems: list[str] = []
    steps: dict[int, Step] = {}
    for node in fw.tape.nodes:
        if node.index not in needed:
            continue
        kind = registry.classify(node)
        if rule_map is not None and node.kind == "module":
            mapped = rule_map.by_name.get(node.name.split("#")[0])
            if isinstance(mapped, Pass):
                kind = Kind("pass", f"{kind.detail or node.op} (Pass by name)", kind.rule_keys)
        if kind.category == "squash":
            problems.append(f"  - {node.name} ({kind.detail}): softmax/log-softmax is only supported as the "
                            "final operation (it is stripped; logits are explained)")
        elif kind.category == "unsupported":
            where = f" inside module '{node.scope}'" if node.scope and node.kind == "function" else ""
            problems.append(f"  - {node.name}{where}: {kind.detail}")
        elif kind.category == "embedding" and fw.tape.nodes[node.parents[0].node].kind != "input":
            problems.append(f"  - {node.name}: an embedding lookup of computed indices")
        steps[node.index] = Step(node, kind)
    if problems:
        raise UnsupportedModelError(
            "cannot explain this model: no relevance rule for\n" + "\n".join(problems) +
            "\nWhat you can do: replace the operation by a supported one (see sciexplain.kinds), map "
            "Pass() to a shape-preserving module by its path (preset={'base': 'epsilon-plus', "
            "'path.to.module': Pass()}), give your own module type a rule with sciexplain.register, "
            "or explain an intermediate output. Nothing falls back to the gradient silently.")
    if rule_map is not None:  # LRP keeps relevance per sample: it needs the batch dim of every tensor
        track_batch_axes(fw, needed)
    applied = []
    for canon in canonizers:
        if isinstance(canon, PlanCanonizer):
            changed = canon.rewrite(fw, steps, keep)
            if changed:
                applied.append(f"{canon.describe()}: {len(changed)} ({', '.join(changed[:6])}"
                               f"{', ...' if len(changed) > 6 else ''})")
    if rule_map is not None:
        _find_signals(fw, steps, rule_map)
        _assign_rules(fw, steps, rule_map, registry)
    fw.steps = steps
    return applied


def track_batch_axes(fw: Forward, indices: set[int] | None = None) -> None:
    """Record on each node of the tape of ``fw`` (those in ``indices``, default all up to the
    explained output) which dim of each output indexes the samples: the LRP walk keeps relevance
    per sample through (time, batch, ...) tensors and raises where the batch dim was lost (see
    :func:`sciexplain.record.batch_axes.track_batch_axes`, which this applies to the recorded
    forward pass)."""
    _batch_axes.track_batch_axes(fw.tape, fw.logits_ref.node, fw.logits.shape[0], indices)


def _gate_refs(fw: Forward, steps: dict[int, Step]) -> set[Ref]:
    """Outputs that are gates: sigmoid-like outputs, and what layout ops, identities and
    ``c - g`` (with a constant c) make of them."""
    gates: set[Ref] = set()
    for i in sorted(steps):
        st = steps[i]
        node, kind = st.node, st.kind
        refs = [Ref(i, k) for k in range(len(node.outputs))]
        live = list(dict.fromkeys(node.parents))
        if kind.gate:
            gates.update(refs)
        elif kind.category == "layout" or (kind.category == "pass" and kind.detail in IDENTITY_LIKE):
            if live and all(r in gates for r in live):
                gates.update(refs)
        elif kind.category == "sum" and len(live) == 1 and live[0] in gates:
            # 1 - g (rsub), or c - g: the operand with the negative sign is the gate
            operands = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
            signs = _sum_signs(node)
            if any(isinstance(o, _Placeholder) and s < 0 for o, s in zip(operands, signs)):
                gates.update(refs)
    return gates


#: multiplications (not divisions or negations) that make ``gate * constant`` a product
_MUL_OPS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"}


def _scales_by_a_number(node: Node) -> bool:
    """Whether a multiplication's constant operand is a number or 0-d tensor (a scale)."""
    value = next((c for ref, c in product_operands(node) if ref is None), None)
    return not isinstance(value, torch.Tensor) or value.ndim == 0


def _find_signals(fw: Forward, steps: dict[int, Step], rule_map: RuleMap) -> None:
    """Find the signal operand of every product; make ``gate * constant`` a product too (its
    constant is the signal: under signal-take-all the gate gets nothing, as for a given
    initial cell state ``f * c0``)."""
    # a number (or 0-d tensor) is a scale of the gate, not a signal: sigmoid(z) * 10 (a bounded
    # output) stays an affine map, else the whole explanation would be absorbed there
    scaled = [st for st in steps.values() if st.kind.category == "affine" and st.node.op in _MUL_OPS
              and len(st.node.parents) == 1 and not _scales_by_a_number(st.node)]
    products = [st for st in steps.values() if st.kind.category == "product"]
    if not products and not scaled:
        return
    gates = _gate_refs(fw, steps)
    for st in scaled:
        if st.node.parents[0] in gates:
            st.kind = Kind("product", f"{st.node.op} (gate times a constant)", ("op:mul",))
            products.append(st)
    for st in products:
        operands = product_operands(st.node)
        non_gates = [k for k, (ref, _) in enumerate(operands) if ref is None or ref not in gates]
        if len(non_gates) == 1:
            st.signal = non_gates[0]


def _assign_rules(fw: Forward, steps: dict[int, Step], rule_map: RuleMap, registry: Registry) -> None:
    reaches_input: dict[int, bool] = {n.index: True for n in fw.tape.nodes if n.kind == "input"}
    for i in sorted(steps):
        st = steps[i]
        kind = registry.kinds.get(st.kind.category)
        if kind is not None and kind.transparent:
            reaches_input[i] = all(reaches_input.get(r.node, False) for r in st.node.parents)
    missing = []
    for st in steps.values():
        cat = st.kind.category
        kind = registry.kinds.get(cat)
        takes = kind.takes_rule if kind is not None else None
        if takes is None:
            continue
        name = st.node.name
        if takes == "product":
            st.rule = rule_map.product_rule(st.node.scope, st.kind.rule_keys)  # "op:mul", "op:matmul"...
            if isinstance(st.rule, SignalTakeAll) and st.signal is None:
                raise RuleError(
                    f"{name}: cannot tell the gate from the signal in this product of two input-dependent "
                    "tensors (signal-take-all needs exactly one operand computed by a sigmoid, or derived "
                    "from one). Map a product rule that needs no gate: preset={'base': ..., 'op:mul': "
                    "sciexplain.rules.UniformProduct()} (or ProportionalProduct()), or name the enclosing "
                    "module path instead of 'op:mul'.")
            continue
        if takes == "leaf":
            entry = registry.leaf_entry(st.node.target)
            rule = rule_map.explicit(name, st.kind.rule_keys)
            st.rule = rule if rule is not None else entry.default_rule
            continue
        parents = st.node.parents if st.fuse_before is None else st.fuse_before.parents
        st.first = st.kind.weighted and all(reaches_input.get(r.node, False) for r in parents)
        rule = rule_map.resolve(name, st.kind.rule_keys, weighted=st.kind.weighted, first=st.first)
        if isinstance(rule, ProductRule):
            if takes == "affine" and not st.kind.weighted and st.kind.rule_keys == ("op:mul",):
                rule = rule_map.resolve(name, (), weighted=False, first=False)  # "op:mul" meant products
            else:
                raise RuleError(f"{name} ({st.kind.detail}): {rule!r} is a rule for products of two "
                                "input-dependent tensors, not for a layer with weights or a sum")
        if rule is None:
            missing.append(f"  - {name} ({st.kind.detail})")
            continue
        if takes == "sum" and not isinstance(rule, Epsilon):
            raise RuleError(f"{name}: a sum of tensors takes Epsilon(eps) (proportional "
                            f"redistribution), not {rule!r}")
        if isinstance(rule, Pass):
            st.kind = Kind("pass", f"{st.kind.detail} (Pass)", st.kind.rule_keys)
        st.rule = rule
    if missing:
        raise RuleError("no rule for these layers with weights:\n" + "\n".join(missing) +
                        "\nAdd them to the preset mapping by path or type, or give a base preset, "
                        "e.g. preset={'base': 'epsilon-plus', ...}.")

