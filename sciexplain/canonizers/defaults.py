"""The canonizers an explanation applies: the default ones, and the check of a user's choice."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputTypeError
from .base import Canonizer
from .batchnorm import BatchNormFolding
from .recurrent import RecurrentUnrolling
from .torchscript import TorchScriptToEager

__all__ = ["default", "validate"]


def default() -> tuple[Canonizer, ...]:
    """The canonizers an explanation applies unless told otherwise: TorchScript modules as eager
    ones, recurrent unrolling and BatchNorm folding."""
    return (TorchScriptToEager(), RecurrentUnrolling(), BatchNormFolding())


def validate(canonizers: Sequence[Canonizer] | None) -> tuple[Canonizer, ...]:
    """The canonizers to apply: ``None`` means :func:`default`."""
    if canonizers is None:
        return default()
    if isinstance(canonizers, Canonizer):
        canonizers = (canonizers,)
    out = tuple(canonizers)
    bad = [c for c in out if not isinstance(c, Canonizer)]
    if bad:
        raise InputTypeError(f"canonizers must be sciexplain.canonizers.Canonizer objects, got {bad!r}")
    return out
