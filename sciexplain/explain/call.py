"""One explanation call: the (canonized) model and the method's settings, as the methods receive it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .forward import Forward, record_forward
from .inputs import ModelInputs
from .plan import make_plan
from ..rules.presets import RuleMap

__all__ = ["Call"]


@dataclass
class Call:
    """One explanation call: the (canonized) model and the method's settings.

    The methods in :mod:`sciexplain.explain.methods` receive this object; it holds nothing between calls.
    """

    model: nn.Module
    method: str
    max_pool: str
    options: dict = field(default_factory=dict)
    canonizers: tuple = ()
    applied: list = field(default_factory=list)
    output: int | str | None = None  # which output to explain, for models returning several

    def _forward(self, x: torch.Tensor | ModelInputs, grad: bool, leaf_names: set[str] | frozenset = frozenset(),
                 batch: int | None = None) -> Forward:
        return record_forward(self.model, x, grad, leaf_names, output=self.output, batch=batch)

    def plan(self, fw: Forward, rule_map: RuleMap | None, keep=frozenset()) -> None:
        self.applied = self.applied + make_plan(fw, rule_map, self.canonizers, keep)
