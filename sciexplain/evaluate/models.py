"""The model under evaluation: run in eval mode, and the modules one forward pass calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..explain.engine import _eval_mode


def _model_mode(model: nn.Module | Callable):
    """Eval mode for modules (flags restored afterwards); any other callable is used as it is."""
    if isinstance(model, nn.Module):
        return _eval_mode(model)
    if not callable(model):
        raise InputError(f"model must be a torch.nn.Module or a callable f(x_batch) -> scores, got "
                         f"{type(model).__name__}")
    return contextlib.nullcontext()


def _module_calls(model: nn.Module, x: torch.Tensor, select, *, after: bool = False) -> list[tuple[str, nn.Module, Any]]:
    """Run ``model(x)`` once and list ``(name, module, first argument)`` of the selected modules, in
    the order they are entered (``after=False``) or finish (``after=True``); hooks are removed again."""
    calls: list[tuple[str, nn.Module, Any]] = []
    names = {m: n for n, m in model.named_modules()}

    def record(m, args, *_):
        calls.append((names[m], m, args[0].detach() if args and isinstance(args[0], torch.Tensor) else None))

    handles = [(m.register_forward_hook(record) if after else m.register_forward_pre_hook(record))
               for m in model.modules() if select(m)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls
