"""The compiled program: plain picklable data a TorchScript graph compiles to, no ``torch._C`` objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Op:
    """One graph node. ``kind`` is the interpreter's handler, ``data`` its static arguments."""

    kind: str
    inputs: tuple
    outputs: tuple
    data: Any = None
    where: str = ""


@dataclass(frozen=True)
class _Block:
    inputs: tuple
    ops: tuple
    outputs: tuple


@dataclass(frozen=True)
class _Call:
    """A torch operator call: how to find the callable and the schema's arguments."""

    op: str  # the aten name without namespace, e.g. "add"
    overload: str
    names: tuple  # schema argument names
    kwarg_only: tuple
    defaults: tuple  # (has_default, default) per argument
    tensor: bool  # the schema takes a tensor (else a scalar/list operation)
    n_out: int
