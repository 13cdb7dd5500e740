"""The canonizer :class:`TorchScriptToEager`: a TorchScript module in a model is explained as its eager conversion."""

from __future__ import annotations

from torch import nn

from ..base import ModelCanonizer
from .converter import is_script_module, to_eager

__all__ = ["TorchScriptToEager"]


class TorchScriptToEager(ModelCanonizer):
    """Model canonizer: a TorchScript module (the model itself or a submodule) is explained as
    :func:`to_eager` of it, so that ``sx.explain(torch.jit.load(path), x)`` records ordinary torch
    calls. The script module is not modified; the conversion is listed in
    ``attrs["canonizers"]``. One of :func:`sciexplain.canonizers.default`.
    """

    name = "TorchScriptToEager"

    def describe(self) -> str:
        return "TorchScriptToEager (TorchScript graph interpreted as eager modules)"

    def replacement(self, module: nn.Module, path: str) -> nn.Module | None:
        """``to_eager(module)`` for a TorchScript module, None for every other module."""
        return to_eager(module) if is_script_module(module) else None

    def __eq__(self, other) -> bool:
        return isinstance(other, TorchScriptToEager)

    def __hash__(self) -> int:
        return hash(TorchScriptToEager)

    def __repr__(self) -> str:
        return "TorchScriptToEager()"
