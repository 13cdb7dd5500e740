"""Where indexing (``x[...]``) puts the batch dim: NumPy / torch indexing rules, with an integer or
a one-sample slice at the batch dim picking one sample, anything else there losing the batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .tape import OneSample, _Placeholder


class _BatchLost(Exception):
    """Raised inside the rules: the operation loses (or mixes) the batch dim; the message says how."""


def _is_int(i: Any) -> bool:
    return (isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))) or \
        (isinstance(i, torch.Tensor) and i.ndim == 0 and not i.is_floating_point() and i.dtype != torch.bool)


def _is_advanced(i: Any) -> bool:
    return isinstance(i, (list, np.ndarray)) or (isinstance(i, torch.Tensor) and not _is_int(i))


def _index_ndim(i: Any) -> tuple[int, int]:
    """(input dims consumed, dims of the broadcast index) of an advanced index."""
    a = np.asarray(i.cpu() if isinstance(i, torch.Tensor) else i)
    if a.dtype == bool:
        return a.ndim, 1
    return 1, a.ndim


def _indexed(index: Any, ndim: int, b: int, B: int) -> int | OneSample:
    """Where ``x[index]`` puts the batch dim of ``x`` (numpy/torch indexing rules); an integer
    at the batch dim picks one sample."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, _Placeholder) for i in items):
        raise _BatchLost("indexes with input-dependent indices")
    advanced = any(_is_advanced(i) for i in items)

    def consumed(i):
        if i is None or i is Ellipsis or isinstance(i, (bool, np.bool_)):
            return 0
        return _index_ndim(i)[0] if _is_advanced(i) else 1
    n = sum(consumed(i) for i in items)
    if any(i is Ellipsis for i in items):
        k = next(j for j, i in enumerate(items) if i is Ellipsis)
        items = items[:k] + [slice(None)] * (ndim - n) + items[k + 1:]
    else:
        items = items + [slice(None)] * (ndim - n)
    # with an advanced index, integers are advanced too; the broadcast index dims go where the
    # advanced indices are if they are adjacent, else first
    adv = [j for j, i in enumerate(items) if _is_advanced(i) or (advanced and _is_int(i))]
    adv_ndim = max((_index_ndim(items[j])[1] for j in adv if _is_advanced(items[j])), default=0)
    front = bool(adv) and adv != list(range(adv[0], adv[-1] + 1))
    out = adv_ndim if front else 0
    d = 0
    for j, i in enumerate(items):
        if adv and not front and j == adv[0]:
            out += adv_ndim
        c = consumed(i)
        if d <= b < d + c or (c == 1 and d == b):
            if isinstance(i, slice):
                picked = range(*i.indices(B))
                # one sample (x[j:j + 1]); a slice of the batch that is not all of it fails the size check
                return OneSample(picked[0], B) if len(picked) == 1 and B > 1 else out
            if _is_int(i) and not advanced and -B <= int(i) < B:
                return OneSample(int(i) % B, B)
            raise _BatchLost(f"indexes the batch dim (dim {b}) with {_describe_index(i)}, which picks "
                             "or reorders samples")
        if isinstance(i, slice) or i is None or isinstance(i, (bool, np.bool_)):
            out += 1
        d += c
    raise _BatchLost("indexing beyond the batch dim")  # pragma: no cover


def _describe_index(i: Any) -> str:
    if _is_int(i):
        return f"the integer {int(i)}"
    return f"an index of type {type(i).__name__}"
