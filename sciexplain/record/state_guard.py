"""Parameters and buffers a model writes in place during its own forward pass, put back afterwards.

Some models change their weights inside ``forward`` (braindecode's ``MaxNormLinear`` and
``Conv2dWithConstraint`` renormalise their weights with max-norm on every call, as ATCNet and
EEGNet do in training). An explanation runs the model, so without a guard it would change the
user's model. :func:`parameters_kept` has the recorder (:mod:`sciexplain.record.tape`, which sees
every operation of the forward pass) report the in-place torch operations; the first write into the storage of a parameter or buffer saves that tensor's values,
and they are written back when the last explanation of the model leaves the block (the
explanation itself uses the weights the forward pass used).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["parameters_kept", "write_watch"]

_INPLACE_DUNDER = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__ifloordiv__",
                             "__imod__", "__ipow__", "__setitem__", "__ior__", "__iand__", "__ixor__",
                             "__ilshift__", "__irshift__"})
_LOCK = threading.Lock()
_USERS: dict[int, list] = {}  # id(model) -> [explanations inside, storage map, saved values]


def _storages(model: nn.Module) -> dict[int, torch.Tensor]:
    """The model's parameters and buffers by the address of their storage (shared ones once)."""
    out: dict[int, torch.Tensor] = {}
    for t in (*model.parameters(), *model.buffers()):
        if t.device.type == "meta" or t.numel() == 0:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr:
            out.setdefault(ptr, t)
    return out


def _written(func: Any, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors an in-place call writes: its first argument, or its ``out=`` tensors."""
    name = getattr(func, "__name__", "")
    hits: list[torch.Tensor] = []
    if (name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__"))
            or kwargs.get("inplace") is True) and args and isinstance(args[0], torch.Tensor):
        hits.append(args[0])
    out = kwargs.get("out")
    if out is not None:
        hits.extend(o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor))
    return hits


_ACTIVE = threading.local()  # .guards: the entries of the explanations running in this thread


def _note(func: Any, args: tuple, kwargs: dict) -> None:
    """Save a parameter's or buffer's values before the first in-place write into its storage."""
    for t in _written(func, args, kwargs):
        if t.device.type == "meta":
            continue
        ptr = t.untyped_storage().data_ptr()
        for entry in _ACTIVE.guards:
            owner = entry[1].get(ptr)
            if owner is not None and ptr not in entry[2]:
                with _LOCK, torch.no_grad():
                    entry[2].setdefault(ptr, (owner, owner.detach().clone()))


def write_watch() -> Callable[[Any, tuple, dict], None] | None:
    """The function a recorder calls with every torch call it sees (``func, args, kwargs``) while an
    explanation in this thread keeps its model's parameters (:func:`parameters_kept`); None when
    none does. The recorder sees every operation of the forward pass, so the watch costs no pass
    of its own."""
    return _note if getattr(_ACTIVE, "guards", None) else None


@contextmanager
def parameters_kept(model: nn.Module) -> Iterator[None]:
    """Run the block with the model's parameters and buffers put back as they were afterwards.

    Only tensors that are written in place by a recorded forward pass inside the block are saved
    (on their first write), so a model that does not write its weights costs nothing but the
    watch. Safe for concurrent explanations of one model in several threads: the values are
    written back when the last one leaves.

    Parameters
    ----------
    model : torch.nn.Module
        The user's model.
    """
    key = id(model)
    with _LOCK:
        entry = _USERS.get(key)
        if entry is None:
            entry = _USERS[key] = [0, _storages(model), {}]
        entry[0] += 1
    if not hasattr(_ACTIVE, "guards"):
        _ACTIVE.guards = []
    guards = _ACTIVE.guards
    guards.append(entry)
    try:
        yield
    finally:
        guards.remove(entry)
        with _LOCK:
            entry[0] -= 1
            restore = entry[0] == 0
            if restore:
                del _USERS[key]
        if restore:
            with torch.no_grad():
                for owner, value in entry[2].values():
                    owner.copy_(value)
