"""The embedding kind: the relevance of a looked-up vector, summed over its dims, is its index's."""

from __future__ import annotations

from torch import nn

from ..record.tape import Node
from .context import Step, WalkView
from .registry import Kind, _mro_keys


def _embedding_module(m: nn.Module, node: Node) -> Kind:
    return Kind("embedding", "Embedding", _mro_keys(m))


def _embedding_function(node: Node) -> Kind:
    return Kind("embedding", "embedding", ("op:embedding",))


def propagate_embedding(walk: WalkView, step: Step, outs):
    """An embedding lookup: the looked-up vector's relevance, summed over its dims, is the index's."""
    return [(step.node.parents[0], outs[0].sum(dim=-1))], walk.zero()

