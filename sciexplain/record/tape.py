"""Record the computation of one forward pass as a tape of nodes.

The engine must see the whole computation, functional operations included (``x + y``
residuals, ``torch.cat``, ``flatten``, ``mean``), so that each gets a proper rule. Instead of a
symbolic trace (which fails on ordinary Python control flow such as input-shape checks in
``forward``), the model is run for real on the batch being explained while

* a :class:`torch.overrides.TorchFunctionMode` sees every torch function and tensor method
  applied to a tensor that depends on the input, and
* temporary global module hooks mark the modules the engine treats as units (Linear, Conv,
  BatchNorm, pooling, activations...), so the functional calls inside them are not recorded
  twice.

Both are removed when recording ends, also when the forward pass raises; the model itself is
never modified. A tensor modified in place after it was recorded keeps a snapshot of its old
value, so later rules see the values the layer actually consumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from ..errors import UnsupportedModelError
from .state_guard import write_watch

__all__ = ["Ref", "Node", "Tape", "OneSample", "record", "record_call", "LEAF_TYPES"]

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU,
    nn.Softsign, nn.Threshold, nn.LogSigmoid, nn.Tanhshrink,
)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveAvgPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_PADS = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
         nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
         nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d,
         nn.CircularPad2d, nn.CircularPad3d)

#: modules the engine treats as one unit (subclasses included)
LEAF_TYPES: tuple[type, ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Embedding, nn.Softmax, nn.LogSoftmax, nn.Upsample,
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d,
) + _ACTIVATIONS + _DROPOUT + _POOLS + _PADS

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__setitem__",
                   "__ior__", "__iand__"}
_IGNORED = {"__get__", "size", "dim", "numel", "__len__", "__bool__", "item", "tolist",
            "__format__", "__repr__", "__hash__", "data_ptr", "stride", "is_contiguous",
            "storage_offset", "element_size", "is_floating_point", "is_complex", "__iter__"}
#: tensor factories whose output takes only the shape, dtype and device of their argument: a
#: constant (e.g. a hand-written cell's initial state ``x.new_zeros(...)``, or ``ones_like(g) - g``)
_CONSTANT_FACTORIES = {"zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
                       "randint_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"}


@dataclass(frozen=True)
class Ref:
    """Reference to output ``k`` of node ``node``."""

    node: int
    k: int = 0


@dataclass(frozen=True)
class OneSample:
    """The batch "axis" of a tensor that holds one sample of the batch only (``x[j]``, a piece
    of ``x.unbind(0)``, or anything computed from such a tensor alone): all its entries belong
    to sample ``index`` of a batch of ``batch``."""

    index: int
    batch: int


@dataclass
class Node:
    """One recorded operation whose output depends on the model input."""

    index: int
    kind: str  # "input", "module" or "function"
    op: str  # function name or module class name
    name: str  # unique readable name (module path, or op@scope)
    scope: str  # path of the innermost enclosing module ("" for the model itself)
    target: Any  # the module or the function
    args: tuple
    kwargs: dict
    parents: list[Ref]
    outputs: list[torch.Tensor]
    out_struct: Any  # nested structure of the output with ints at tensor positions
    versions: list[int]
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    #: per output, the dim that indexes the samples of the batch (a :class:`OneSample` for a
    #: tensor of one sample), or None where the operation lost it (then ``batch_lost[k]`` says
    #: which operation and why); filled for an LRP plan by
    #: :func:`sciexplain.record.batch_axes.track_batch_axes` (None: not tracked, the batch dim is first)
    batch_axes: list[int | OneSample | None] | None = None
    batch_lost: dict[int, str] = field(default_factory=dict)

    def value(self, k: int = 0) -> torch.Tensor:
        """The output value as recorded, even if the tensor was later modified in place."""
        if k in self.snapshots:
            return self.snapshots[k]
        return self.outputs[k]

    def batch_axis(self, k: int = 0) -> int | OneSample | None:
        """The dim of output ``k`` that indexes the samples (0 unless tracked otherwise), or None
        when the operations that computed it lost the batch dim."""
        return 0 if self.batch_axes is None else self.batch_axes[k]

    def pristine(self, k: int = 0) -> bool:
        """True when output ``k`` was not modified in place after recording."""
        return k not in self.snapshots and self.outputs[k]._version == self.versions[k]


class _WritesInPlace:
    """An in-place write that returns nothing (``x[i] = v``, i.e. ``Tensor.__setitem__``), recorded as
    the operation it is: its output is the written tensor, so later uses see the new values."""

    def __init__(self, func: Any):
        self.func = func
        self.__name__ = func_name(func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.func(*args, **kwargs)
        return args[0]


class _Placeholder:
    """Stands for a live tensor inside recorded args; resolved on replay."""

    __slots__ = ("ref",)

    def __init__(self, ref: Ref):
        self.ref = ref

    def __repr__(self) -> str:  # pragma: no cover
        return f"<ref {self.ref.node}:{self.ref.k}>"


@dataclass
class Tape:
    nodes: list[Node]
    output: Any  # the model output
    output_refs: list[Ref | None]
    module_names: dict[int, str]

    def node_of(self, ref: Ref) -> Node:
        return self.nodes[ref.node]

    def consumers(self) -> dict[Ref, list[int]]:
        out: dict[Ref, list[int]] = {}
        for n in self.nodes:
            for r in n.parents:
                out.setdefault(r, []).append(n.index)
        return out


def _flatten(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flatten(o)
    else:
        yield obj


def _map(obj: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple (e.g. torch.return_types)
        return type(obj)(*(_map(o, fn) for o in obj))
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return fn(obj)


def replay_args(node: Node, values: dict[Ref, torch.Tensor]) -> tuple[tuple, dict]:
    """Rebuild a node's args with each live input replaced by ``values[ref]``."""
    def sub(o):
        return values[o.ref] if isinstance(o, _Placeholder) else o
    return _map(node.args, sub), _map(node.kwargs, sub)


def func_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    return name


class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module, leaf_names: set[str], leaf_types: tuple[type, ...] = LEAF_TYPES):
        super().__init__()
        self.leaf_types = leaf_types
        # module hooks are process-global: only calls from the recording thread are ours (the
        # function mode itself is thread-local), so explanations may run in several threads
        self.thread = threading.get_ident()
        self.model = model
        # named_modules(remove_duplicate=False) lists a reused module under every path; keep the
        # first (one traversal: later paths are written first, the first path last)
        self.module_names = {id(m): n for n, m in reversed(list(model.named_modules(remove_duplicate=False)))}
        self.leaf_names = leaf_names
        self.nodes: list[Node] = []
        self.live: dict[int, tuple[Ref, torch.Tensor]] = {}
        self.scope: list[str] = []
        self.leaf_depth = 0
        self.leaf_stack: list[tuple[nn.Module, tuple]] = []
        self.name_counts: dict[str, int] = {}
        self.busy = False  # our own tensor calls (snapshots) must not be recorded
        self.written: dict[int, str] = {}  # id(recorded tensor) -> the in-place write through a view of it
        self.watch = write_watch()

    # -- bookkeeping -----------------------------------------------------------------------
    def ref_of(self, t: Any) -> Ref | None:
        if isinstance(t, torch.Tensor):
            hit = self.live.get(id(t))
            if hit is not None and hit[1] is t:
                return hit[0]
        return None

    def unique(self, base: str) -> str:
        c = self.name_counts.get(base, 0) + 1
        self.name_counts[base] = c
        return base if c == 1 else f"{base}#{c}"

    def snapshot(self, t: Any) -> None:
        ref = self.ref_of(t)
        if ref is not None:
            node = self.nodes[ref.node]
            if ref.k not in node.snapshots:
                self.busy, busy = True, self.busy
                try:
                    node.snapshots[ref.k] = t.detach().clone()
                finally:
                    self.busy = busy

    def check_fresh(self, parents: list[Ref], consumer: str) -> None:
        """Refuse to record a use of a tensor that was written in place after it was recorded by a
        write the tape does not hold (through a view of it, ``x[:, 0].fill_(0)``, or of the same
        memory): the tape would replay its old values. Tensor version counters tell."""
        for ref in parents:
            node = self.nodes[ref.node]
            t = node.outputs[ref.k]
            if t._version == node.versions[ref.k]:
                continue
            writer = self.written.get(id(t)) or (self.written.get(id(t._base)) if t._base is not None else None)
            raise UnsupportedModelError(
                f"{consumer} reads {node.name}, which was written in place after it was recorded"
                f"{' by ' + writer if writer else ''}, through a view of it or of the same memory (e.g. "
                "x[:, 0].fill_(0), x.view(-1)[i] = v, or a write into a tensor that shares memory with it). "
                "The explanation cannot follow such a write. Write into the tensor itself (x[:, 0] = 0, "
                "x.masked_fill_(mask, 0)) or out of place (x = x.masked_fill(mask, 0), torch.where, "
                "torch.cat), or clone the tensor before writing into a view of it")

    def add_input(self, x: torch.Tensor, name: str = "input") -> None:
        """Record ``x`` as an input of the model (one input node per explained input)."""
        self.add_node("input", "input", name, "", None, (), {}, [], x)

    def add_node(self, kind, op, name, scope, target, args, kwargs, parents, out) -> None:
        index = len(self.nodes)
        outputs: list[torch.Tensor] = []

        def number(o):
            if isinstance(o, torch.Tensor) and (o.is_floating_point() or kind == "input"):
                outputs.append(o)
                return len(outputs) - 1
            return None
        struct = _map(out, number)
        node = Node(index, kind, op, name, scope, target, args, kwargs, parents, outputs, struct,
                    [o._version for o in outputs])
        self.nodes.append(node)
        for k, o in enumerate(outputs):
            self.live[id(o)] = (Ref(index, k), o)

    def placeholders(self, obj: Any) -> tuple[Any, list[Ref]]:
        parents: list[Ref] = []

        def sub(o):
            r = self.ref_of(o)
            if r is None:
                return o
            parents.append(r)
            return _Placeholder(r)
        return _map(obj, sub), parents

    # -- module hooks ----------------------------------------------------------------------
    def is_leaf(self, module: nn.Module, name: str) -> bool:
        if name in self.leaf_names or isinstance(module, self.leaf_types):
            return True
        if isinstance(module, _CONTAINERS):
            return False
        # other torch.nn modules (LSTM, MultiheadAttention, LayerNorm, ...): one unit, so the
        # error names the module instead of an operation deep inside it
        return type(module).__module__.startswith("torch.nn")

    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        if threading.get_ident() != self.thread:
            return
        name = self.module_names.get(id(module), f"<{type(module).__name__} not registered in the model>")
        self.scope.append(name)
        if self.leaf_depth:
            self.leaf_depth += 1
            return
        if self.is_leaf(module, name):
            if getattr(module, "inplace", False):
                for a in args:
                    self.snapshot(a)
            self.check_fresh(self.placeholders(args)[1], name or "<model>")
            self.leaf_depth = 1
            self.leaf_stack.append((module, args))

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        name = self.scope.pop() if self.scope else "?"
        if not self.leaf_depth:
            return
        self.leaf_depth -= 1
        if self.leaf_depth:
            return
        _, leaf_args = self.leaf_stack.pop()
        rec_args, parents = self.placeholders(leaf_args)
        # keyword tensors too: otherwise an input-dependent one would become a constant
        rec_kwargs, kparents = self.placeholders(dict(kwargs or {}))
        parents = parents + kparents
        if not parents:
            return  # a module applied to constants only
        scope = self.scope[-1] if self.scope else ""
        if isinstance(module, nn.Embedding):
            _track_lookup(output)
        self.add_node("module", type(module).__name__, self.unique(name or "<model>"), scope, module,
                      rec_args, rec_kwargs, parents, output)

    # -- functions -------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.watch is not None:  # parameters written in place are saved first (state_guard)
            self.watch(func, args, kwargs)
        if self.leaf_depth or self.busy:
            return func(*args, **kwargs)
        name = func_name(func)
        if name in _IGNORED or name in _CONSTANT_FACTORIES:
            return func(*args, **kwargs)
        rec_args, parents = self.placeholders(args)
        rec_kwargs, kparents = self.placeholders(kwargs)
        parents = parents + kparents
        if not parents:
            return func(*args, **kwargs)
        inplace = (name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__"))
                   or kwargs.get("inplace") is True)
        scope = self.scope[-1] if self.scope else ""
        unique = self.unique(f"{name}@{scope}" if scope else name)
        self.check_fresh(parents, unique)
        target = func
        if inplace and args:
            self.snapshot(args[0])
            written = args[0]
            if isinstance(written, torch.Tensor) and written._base is not None and self.ref_of(written._base):
                self.written[id(written._base)] = unique  # a write through a view: named if it is read
        out = func(*args, **kwargs)
        recorded = out
        if inplace and out is None and args and isinstance(args[0], torch.Tensor):
            target, recorded = _WritesInPlace(func), args[0]  # x[i] = v: the written x is its output
        if name == "embedding":
            _track_lookup(out)
        self.add_node("function", name, unique, scope, target, rec_args, rec_kwargs, parents, recorded)
        return out


def _track_lookup(out: Any) -> None:
    """Make an embedding lookup of the input ids part of the autograd graph even when the
    embedding weights are frozen (``requires_grad=False``): gradient methods on token input
    differentiate with respect to the looked-up vectors. Only a lookup that is not yet in the
    graph is changed (it is a leaf then), so the model's computation is untouched."""
    if (isinstance(out, torch.Tensor) and torch.is_grad_enabled() and out.is_floating_point()
            and not out.requires_grad):
        out.requires_grad_(True)


@contextmanager
def _hooks(recorder: _Recorder):
    handles: list[RemovableHandle] = [
        nn.modules.module.register_module_forward_pre_hook(recorder.pre_hook),
        nn.modules.module.register_module_forward_hook(recorder.post_hook, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def record(model: nn.Module, x: torch.Tensor, leaf_names: set[str] | frozenset = frozenset(),
           leaf_types: tuple[type, ...] = LEAF_TYPES) -> Tape:
    """Run ``model(x)`` once and return the tape of operations that depend on ``x``.

    ``x`` is used as given (the caller passes a private copy). Modules of ``leaf_types`` (the
    registry's recognised module types) and those named in ``leaf_names`` are recorded as one
    unit each. Hooks and the function mode are removed on return and on error.
    """
    return record_call(model, (x,), {}, {"input": x}, leaf_names, leaf_types)


def record_call(model: nn.Module, args: tuple, kwargs: dict, explained: dict[str, torch.Tensor],
                leaf_names: set[str] | frozenset = frozenset(),
                leaf_types: tuple[type, ...] = LEAF_TYPES) -> Tape:
    """Run ``model(*args, **kwargs)`` once and return the tape of operations that depend on the
    ``explained`` tensors (name -> tensor, each passed somewhere in ``args`` or ``kwargs``).

    Input node ``i`` of the tape is the ``i``-th explained tensor; every other argument is a
    constant of the model. See :func:`record`.
    """
    rec = _Recorder(model, set(leaf_names), tuple(leaf_types))
    for name, x in explained.items():
        rec.add_input(x, name)
    with _hooks(rec), rec:
        out = model(*args, **kwargs)
    refs = [rec.ref_of(o) for o in _flatten(out)]
    return Tape(rec.nodes, out, refs, rec.module_names)
