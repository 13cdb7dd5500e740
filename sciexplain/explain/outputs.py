"""The explained output of a model that returns a tuple, a dict or a Hugging Face ``ModelOutput``.

A ``ModelOutput`` is a dict subclass (with attributes), so no optional package is imported: the
logits are found by the key ``"logits"``, or chosen with ``output=`` (an index into a tuple or
list, a key of a dict); anything else is an error that lists the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InputError, UnsupportedModelError

__all__ = ["select_output", "LOGITS_KEYS"]

#: the keys under which a dict-like output holds the logits, in the order they are tried
LOGITS_KEYS = ("logits",)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _candidates(out: Any) -> str:
    if isinstance(out, Mapping):
        return ", ".join(f"{k!r}: {_describe(v)}" for k, v in out.items())
    return ", ".join(f"[{i}]: {_describe(v)}" for i, v in enumerate(out))


def select_output(out: Any, output: int | str | None = None) -> torch.Tensor:
    """The tensor to explain among what the model returned.

    Parameters
    ----------
    out : tensor, tuple, list or mapping
        What the model's forward returned.
    output : int, str or None
        An index (tuple, list; also a ``ModelOutput``'s position) or a key (mapping); None: the
        output itself if it is a tensor, else the entry named ``"logits"``.
    """
    if output is None:
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, Mapping):
            for key in LOGITS_KEYS:
                if isinstance(out.get(key), torch.Tensor):
                    return out[key]
        if isinstance(out, (tuple, list, Mapping)) and len(out):
            keyhint = "a key" if isinstance(out, Mapping) else "an index"
            raise UnsupportedModelError(
                f"the model returned {type(out).__name__} with {len(out)} entries ({_candidates(out)}) and "
                f"none is named 'logits'; choose the one to explain with output= ({keyhint}), e.g. "
                f"sx.explain(model, x, output={next(iter(out)) if isinstance(out, Mapping) else 0!r})")
        raise UnsupportedModelError(f"the model returned {type(out).__name__}; explanations need an output "
                                    "tensor of shape (batch, n_outputs), or a tuple/dict holding one (chosen "
                                    "with output=)")
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise InputError(f"output= must be an index or a key, got {output!r}")
    try:
        if isinstance(out, Mapping) and isinstance(output, int):
            chosen = list(out.values())[output]  # a ModelOutput indexes its entries by position too
        elif isinstance(out, (tuple, list, Mapping)):
            chosen = out[output]
        else:
            raise InputError(f"output={output!r} chooses among several outputs, but the model returned one "
                             f"{type(out).__name__}: remove output=")
    except (KeyError, IndexError, TypeError):
        raise InputError(f"output={output!r} is not among the model's outputs: {_candidates(out)}") from None
    if not isinstance(chosen, torch.Tensor):
        raise InputError(f"output={output!r} is {_describe(chosen)}, not a tensor; the outputs are "
                         f"{_candidates(out)}")
    return chosen
