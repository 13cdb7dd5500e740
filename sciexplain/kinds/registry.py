"""The operation registry: what each kind of recorded operation is, and how relevance passes it.

The engine is a walk over the recorded operations (:mod:`sciexplain.record.tape`). Every operation
*kind* (affine, pass, layout, sum, product, embedding, folded BatchNorm, final squash, leaf
modules such as Fisher vectors or a user's own layer) is one :class:`OpKind` entry of the
:data:`REGISTRY`: how it is recognised on the tape, how relevance passes back through it and
what it adds to the ledger. The walk looks the kind up and calls its ``propagate``; it never
names a kind itself, so a new kind is a new entry, never another branch.

Recognition is by table, not by first match: a module node is looked up by its class's MRO (the
most specific registered class wins, so a ``Conv2d`` subclass is a ``Conv2d`` unless its own
class is registered), a function node by the function's name.

Users give their own leaf modules a propagation rule with :func:`register`::

    import sciexplain as sx

    class Scale(torch.nn.Module):               # y = s * x with a learned vector s
        ...

    def propagate(call: sx.LeafCall) -> sx.LeafRelevance:
        return sx.LeafRelevance([call.relevance])   # y_i depends on x_i alone: pass it on

    sx.register(Scale, propagate, description="element-wise scale: relevance passes through")

From then on ``Scale`` is one unit on the tape (its inner operations are not recorded) and the
LRP walk calls ``propagate`` for it; gradient-type methods differentiate its own forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError, InputTypeError, RuleError, UnsupportedModelError
from ..record.tape import Node, _Placeholder
from ..rules.terms import Rule

__all__ = ["Kind", "OpKind", "Registry", "REGISTRY", "register", "LeafCall", "LeafRelevance",
           "Contributions"]

#: what a propagator returns: relevance sent to each parent reference, and the per-sample
#: relevance absorbed at this node (bias and stabiliser terms, constants)
Contributions = tuple[list[tuple[Any, torch.Tensor]], torch.Tensor]


@dataclass
class Kind:
    """How one recorded node was recognised.

    ``category`` names the :class:`OpKind` entry that propagates it; the flags refine it.
    """

    category: str
    detail: str = ""  # readable description (also the reason when unsupported)
    rule_keys: tuple = ()  # keys for rule lookup, most specific first
    weighted: bool = False  # a layer with weights (its rule comes from the preset)
    relu_like: bool = False  # piecewise-linear activation (deconvnet / guided backprop)
    max_pool: bool = False  # max pooling (winner-take-all or proportional)
    gate: bool = False  # output is a gate (sigmoid-like) for the product rules
    final_squash: bool = False  # stripped when it is the model's last operation


@dataclass(frozen=True)
class OpKind:
    """One registry entry: an operation kind and how relevance passes through it.

    Parameters
    ----------
    name : str
        The category name that :class:`Kind` objects refer to.
    propagate : callable
        ``propagate(walk, step, outs) -> (contributions, absorbed)``: ``outs`` holds the
        relevance arriving at each of the node's outputs (None where nothing arrived);
        ``contributions`` is a list of ``(parent_ref, relevance)`` and ``absorbed`` the
        per-sample relevance taken up at this node. The batch dim of a recorded tensor need
        not be its first: take per-sample sums with ``walk.per_sample_sum(ref, t)`` and ask
        ``walk.batch_axis(ref)`` where the samples are.
    description : str
        The ledger's "rule" column for nodes of this kind that have no rule of their own.
    takes_rule : str or None
        ``"affine"``, ``"sum"``, ``"product"`` or ``"leaf"`` when the plan resolves a rule
        from the preset for nodes of this kind; None when the kind needs no rule.
    transparent : bool
        Whether a layer fed through nodes of this kind still counts as the first layer
        (reshapes and activations are transparent, weights are not).
    describe : callable, optional
        ``describe(step, registry) -> str``: the "rule" column for one node of this kind that
        has no rule, when it depends on the node (registered modules give their own
        description); default ``description``.
    """

    name: str
    propagate: Callable[..., Contributions]
    description: str
    takes_rule: str | None = None
    transparent: bool = False
    describe: Callable[..., str] | None = None


@dataclass
class LeafCall:
    """What a registered leaf module's propagator is given.

    Attributes
    ----------
    name : str
        The module's path in the model.
    module : torch.nn.Module
        The module itself.
    inputs : tuple
        The positional arguments as recorded: tensors detached, other values as passed.
    output : torch.Tensor
        The recorded output.
    relevance : torch.Tensor
        The relevance arriving at the output (same shape as ``output``).
    rule : Rule or None
        The rule the preset maps to this module (by path or type), else the entry's default.
    """

    name: str
    module: nn.Module
    inputs: tuple
    output: torch.Tensor
    relevance: torch.Tensor
    rule: Rule | None = None


@dataclass
class LeafRelevance:
    """What a leaf propagator returns.

    Attributes
    ----------
    inputs : sequence of tensor or None
        Relevance for each positional argument of the module (shaped like it), None for
        arguments that receive none (constants, integer arguments).
    absorbed : tensor of shape (batch,), optional
        Relevance absorbed per sample by the module's own bias or stabiliser terms. None: the
        engine records ``entering - leaving`` as absorbed.
    """

    inputs: Sequence[torch.Tensor | None]
    absorbed: torch.Tensor | None = None


@dataclass(frozen=True)
class LeafEntry:
    """A registered leaf module type."""

    module_type: type
    propagate: Callable[[LeafCall], LeafRelevance]
    description: str
    default_rule: Any = None


def _mro_keys(module: nn.Module) -> tuple:
    return tuple(c for c in type(module).__mro__ if isinstance(c, type) and issubclass(c, nn.Module)
                 and c is not nn.Module)


class Registry:
    """Operation kinds and the tables that recognise recorded nodes as one of them."""

    def __init__(self) -> None:
        self.kinds: dict[str, OpKind] = {}
        self.modules: dict[type, Callable[[nn.Module, Node], Kind]] = {}
        self.functions: dict[str, Callable[[Node], Kind]] = {}
        self.leaves: dict[type, LeafEntry] = {}

    def add_kind(self, kind: OpKind) -> None:
        """Register an operation kind (replacing one of the same name)."""
        self.kinds[kind.name] = kind

    def recognise_modules(self, types: Sequence[type], recogniser: Callable[[nn.Module, Node], Kind]) -> None:
        """Recognise modules of these types (and their subclasses) with ``recogniser``."""
        for t in types:
            self.modules[t] = recogniser

    def recognise_functions(self, names: Sequence[str], recogniser: Callable[[Node], Kind]) -> None:
        """Recognise torch functions and tensor methods of these names with ``recogniser``."""
        for n in names:
            self.functions[n] = recogniser

    def kind(self, name: str) -> OpKind:
        try:
            return self.kinds[name]
        except KeyError:  # pragma: no cover - a recogniser named a kind nobody registered
            raise RuleError(f"no operation kind {name!r} is registered; known: {sorted(self.kinds)}") from None

    def leaf_types(self) -> tuple[type, ...]:
        """Module types recorded as one unit (their inner operations are not recorded)."""
        return tuple(self.modules)

    def leaf_entry(self, module: nn.Module) -> LeafEntry:
        for cls in type(module).__mro__:
            if cls in self.leaves:
                return self.leaves[cls]
        raise UnsupportedModelError(f"{type(module).__name__} is not a registered module type")  # pragma: no cover

    def classify(self, node: Node) -> Kind:
        """Put a recorded node in its kind."""
        if node.kind == "input":
            return Kind("input")
        if node.kind == "module":
            m = node.target
            live_kw = [k for k, v in node.kwargs.items() if isinstance(v, _Placeholder)]
            if live_kw:
                # propagators follow a module's positional arguments
                return Kind("unsupported", f"{type(m).__name__} called with the input-dependent keyword "
                            f"argument(s) {live_kw}; pass them positionally (e.g. layer(x), not "
                            "layer(input=x))", _mro_keys(m))
            for cls in type(m).__mro__:
                recogniser = self.modules.get(cls)
                if recogniser is not None:
                    return recogniser(m, node)
            if type(m).__module__.startswith("torch."):  # register() refuses torch's own types
                how = ("wrap it in a module type of your own and give that a rule with sciexplain.register, "
                       "or map Pass() to its path if it is shape-preserving")
            else:
                how = "give it one with sciexplain.register"
            return Kind("unsupported", f"no relevance rule for module type {type(m).__name__} ({how})",
                        _mro_keys(m))
        recogniser = self.functions.get(node.op)
        if recogniser is None:
            return Kind("unsupported", f"no relevance rule for the operation {node.op}")
        return recogniser(node)


#: the registry the engine uses; :mod:`sciexplain.kinds.builtin` fills it with the built-in kinds
REGISTRY = Registry()


def register(module_type: type, propagate: Callable[[LeafCall], LeafRelevance], *, description: str,
             default_rule: Any = None, registry: Registry | None = None) -> None:
    """Give a module type (and its subclasses) its own relevance propagation.

    Parameters
    ----------
    module_type : type
        A ``torch.nn.Module`` subclass. Modules of this type become one unit on the recorded
        tape; their inner operations are not recorded.
    propagate : callable
        ``propagate(call: LeafCall) -> LeafRelevance``: distribute ``call.relevance`` (at the
        module's output) onto its positional inputs. Must be a module-level function (no
        lambdas), so that explainers stay picklable. A registered module is taken to keep the
        batch dim where its input has it (first, for batch-first inputs); ``absorbed``, when
        returned, is one value per sample.
    description : str
        Shown in the result's ``rules`` attribute and the ledger.
    default_rule : Rule, optional
        The rule handed to ``propagate`` when the preset maps none to the module (by path,
        pattern or type).
    registry : Registry, optional
        The registry to add to (default: the engine's :data:`REGISTRY`).

    Notes
    -----
    Registering the same type again replaces the earlier entry (so a module that registers its
    own types at import can be re-imported). Built-in torch types cannot be re-registered this
    way for safety; wrap them in a module of your own.
    """
    reg = REGISTRY if registry is None else registry
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise InputTypeError(f"register() takes a torch.nn.Module subclass, got {module_type!r}")
    if module_type.__module__.startswith("torch."):
        raise InputError(f"{module_type.__name__} is a torch type and cannot be registered itself: wrap it "
                         "in a module type of your own and register that (to change the rule of a supported "
                         "torch layer such as Linear, map a rule to it in the preset instead)")
    if not callable(propagate):
        raise InputTypeError(f"propagate must be callable, got {propagate!r}")
    if not isinstance(description, str) or not description:
        raise InputError("register() needs a description (shown in the result's rules attribute)")
    if default_rule is not None and not isinstance(default_rule, Rule):
        raise InputTypeError(f"default_rule must be a rule object such as sciexplain.rules.Epsilon(0.01) "
                             f"or None, got {default_rule!r}")
    entry = LeafEntry(module_type, propagate, description, default_rule)
    reg.leaves[module_type] = entry
    reg.recognise_modules([module_type], _LeafRecogniser(description))


@dataclass(frozen=True)
class _LeafRecogniser:
    """Recognises a registered leaf module (a class, not a closure, so it pickles)."""

    description: str

    def __call__(self, module: nn.Module, node: Node) -> Kind:
        return Kind("leaf", f"{type(module).__name__}: {self.description}", _mro_keys(module))
