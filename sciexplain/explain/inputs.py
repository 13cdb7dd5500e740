"""Several model inputs: the arguments as the caller gives them, and which of them are explained.

``sx.explain(model, (x1, x2))`` calls ``model(x1, x2)``; ``sx.explain(model, {"input_ids": ids,
"attention_mask": mask})`` calls ``model(input_ids=ids, attention_mask=mask)``. The inputs named
by ``inputs=`` (default: every tensor) are explained, each recorded as an input of the tape; the
others are constants of the model, so relevance that reaches them is counted as absorbed where it
enters them (a bias). Positional inputs are named ``input_0``, ``input_1``, ...; keyword inputs
keep their keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError

__all__ = ["ModelInputs", "model_inputs", "is_several", "check_device"]


def is_several(data: Any) -> bool:
    """Whether ``data`` is several model inputs: a tuple/list of which at least one entry is a
    tensor or array, or a mapping from names to values of which at least one is."""
    if isinstance(data, Mapping):
        values = list(data.values())
        return bool(values) and all(isinstance(k, str) for k in data) and any(
            isinstance(v, (torch.Tensor, np.ndarray)) for v in values)
    if isinstance(data, (tuple, list)):
        return bool(data) and all(isinstance(v, (torch.Tensor, np.ndarray)) or v is None for v in data) \
            and any(v is not None for v in data)
    return False


def check_device(x: torch.Tensor, what: str = "x") -> None:
    """An input on the meta device has shapes but no values: nothing can be explained."""
    if x.device.type == "meta":
        raise InputError(f"{what} is on the meta device (a tensor with a shape but no values, e.g. made "
                         "under torch.device('meta') or torch.set_default_device('meta')); pass a tensor "
                         "with values, on the model's device (e.g. x.to('cpu') after filling it)")


@dataclass
class ModelInputs:
    """The inputs of one model call, by name, in the order the model takes them.

    ``values`` holds private copies (the caller's arrays are never modified); ``explained``
    names the inputs whose relevance is returned; ``positional`` tells whether the model takes
    them as positional arguments (a tuple) or as keywords (a mapping).
    """

    values: dict[str, Any]
    explained: list[str]
    positional: bool

    @property
    def batch(self) -> int:
        """The number of samples (dim 0 of the explained inputs)."""
        return int(self.values[self.explained[0]].shape[0])

    def call(self, substitute: Mapping[str, torch.Tensor]) -> tuple[tuple, dict]:
        """The model's ``(args, kwargs)`` with the explained inputs replaced by ``substitute``."""
        vals = {k: substitute.get(k, v) for k, v in self.values.items()}
        if self.positional:
            return tuple(vals.values()), {}
        return (), vals

    def select(self, rows: Sequence[int]) -> ModelInputs:
        """The same inputs for the batch entries ``rows`` (of every tensor with the batch dim)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device="cpu")
        B = self.batch
        picked = {k: (v.index_select(0, idx.to(v.device)) if isinstance(v, torch.Tensor) and v.ndim
                      and v.shape[0] == B else v) for k, v in self.values.items()}
        return ModelInputs(picked, list(self.explained), self.positional)

    def describe(self) -> str:
        """The inputs' names, shapes and dtypes, for error messages."""
        return ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else f"{k}={v!r}"
                         for k, v in self.values.items())


def model_inputs(data: tuple | list | Mapping, inputs: Any, as_input) -> ModelInputs:
    """Validate several inputs and the choice ``inputs=`` of those to explain.

    Parameters
    ----------
    data : tuple, list or mapping
        The model's positional arguments, or its keyword arguments by name. Tensors and numpy
        arrays are copied; other values (None, flags) are passed on as they are.
    inputs : str, int, sequence of them, or None
        The inputs to explain, by name (``"input_ids"``, or ``"input_0"`` for the first
        positional one) or by position; None: every tensor input.
    as_input : callable
        Validates and copies one explained input (:func:`sciexplain.explain.forward.as_input`).
    """
    positional = not isinstance(data, Mapping)
    items = list(enumerate(data)) if positional else list(data.items())
    values: dict[str, Any] = {}
    for key, v in items:
        name = f"input_{key}" if positional else key
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.array(v, copy=True))
        elif isinstance(v, torch.Tensor):
            check_device(v, name)
            v = v.detach().clone()
        values[name] = v
    names = list(values)
    tensors = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    if inputs is None:
        chosen = tensors
    else:
        wanted = [inputs] if isinstance(inputs, (str, int)) else list(inputs)
        chosen = []
        for w in wanted:
            if isinstance(w, (int, np.integer)) and not isinstance(w, bool) and -len(names) <= int(w) < len(names):
                w = names[int(w)]
            if w not in values:
                raise InputError(f"inputs= names {w!r}, which is not an input of this call; the inputs are "
                                 f"{names} (positional inputs are named input_0, input_1, ...)")
            if not isinstance(values[w], torch.Tensor):
                raise InputError(f"inputs= names {w!r}, which is {values[w]!r}, not a tensor: only tensor "
                                 "inputs can be explained")
            if w in chosen:
                raise InputError(f"inputs= names {w!r} twice")
            chosen.append(w)
        if not chosen:
            raise InputError(f"inputs= names no input: name at least one of {tensors}")
    for name in chosen:
        try:
            values[name] = as_input(values[name])
        except InputError as err:
            raise InputError(f"input {name!r}: {err}") from None
    sizes = {name: int(values[name].shape[0]) for name in chosen}
    if len(set(sizes.values())) > 1:
        raise InputError(f"the explained inputs have different batch sizes {sizes}; every explained input "
                         "needs the samples along dim 0, the same number in each")
    return ModelInputs(values, chosen, positional)
