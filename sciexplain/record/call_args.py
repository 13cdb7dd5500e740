"""Reading the arguments of a recorded call: which are live (input-dependent), which is constant."""

from __future__ import annotations

from typing import Any

from .tape import Node, Ref, _Placeholder


def _live_positions(node: Node) -> list[int]:
    return [i for i, a in enumerate(node.args) if isinstance(a, _Placeholder)]


def _constant_operand(args: tuple, kwargs: dict):
    """The constant operand of a binary op with one live operand: positional, or ``other=``."""
    if "other" in kwargs:
        return kwargs["other"]
    return args[1] if isinstance(args[0], _Placeholder) else args[0]


def parent_positions(node: Node) -> list[tuple[Any, Ref]]:
    """(position, ref) of the node's live inputs, positional args first."""
    out = []
    for i, a in enumerate(node.args):
        if isinstance(a, _Placeholder):
            out.append((i, a.ref))
    for k, a in node.kwargs.items():
        if isinstance(a, _Placeholder):
            out.append((k, a.ref))
    return out


def _arg(node: Node, i: int, *names: str, default: Any = None) -> Any:
    """Positional argument ``i`` of the call, or the first of the keyword ``names`` given."""
    if len(node.args) > i:
        return node.args[i]
    for n in names:
        if n in node.kwargs:
            return node.kwargs[n]
    return default
