"""Building blocks of the unrolled recurrent modules: input checks, shared parameters, one time step per cell.

The step functions write torch's LSTM, GRU and Elman equations so that the engine sees one affine
map per pre-activation (see :mod:`sciexplain.recurrent` for the rules this gives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import UnsupportedModelError

__all__ = ["PackedSequenceError", "prepare_sequence"]


class PackedSequenceError(UnsupportedModelError):
    """A recurrent layer received a ``PackedSequence``.

    A packed batch stores the time steps of all sequences in one flat tensor, so relevance
    cannot be kept per sample.
    """


def _packed_error(layer: str) -> PackedSequenceError:
    return PackedSequenceError(
        f"the {layer} received a PackedSequence: a packed batch interleaves all sequences in one "
        "flat tensor, so relevance cannot be kept per sample. What you can do: explain a padded "
        "batch without packing (the padded steps then take part in the computation and get "
        "relevance, which you can pool or drop), or explain each sequence on its own at its true "
        "length (a batch of equal-length sequences needs no packing).")


def prepare_sequence(layer: str, how: str, batch_first: bool, input, hx):
    """Check a recurrent layer's input and give an unbatched one its batch dim.

    Returns ``(input, hx, unbatched)``; ``hx`` is a tuple of states (or None). Packed sequences
    and inputs of other than 2 or 3 dims are refused with what to do.
    """
    if isinstance(input, PackedSequence):
        raise _packed_error(f"{layer} ({how})")
    if input.dim() not in (2, 3):
        raise UnsupportedModelError(f"{layer}: expected input of 2 or 3 dims, got shape {tuple(input.shape)}")
    unbatched = input.dim() == 2
    if unbatched:
        input = input.unsqueeze(0 if batch_first else 1)
        if hx is not None:
            hx = tuple(s.unsqueeze(1) for s in hx)
    return input, hx, unbatched


# -- shared parameters --------------------------------------------------------------------------

class _Unrolled(nn.Module):
    """Base of the unrolled modules: registers the source's own parameters (same objects)."""

    def __init__(self, source: nn.Module):
        super().__init__()
        for name, p in source.named_parameters(recurse=False):
            self.register_parameter(name, p)
        self.source_type = type(source).__name__
        self.training = source.training

    def _param(self, name: str) -> torch.Tensor | None:
        return self._parameters.get(name)


def _lstm_weights(w_ih, w_hh, b_ih, b_hh):
    """Joint weights over cat([x, h]): the gates i, f, o (one map, never given relevance) and the
    candidate g (the map the epsilon rule runs on), from torch's row order i, f, g, o."""
    H = w_ih.shape[0] // 4
    w = torch.cat([w_ih, w_hh], 1)
    w_ifo, w_g = torch.cat([w[: 2 * H], w[3 * H:]], 0), w[2 * H: 3 * H]
    if b_ih is None:
        return w_ifo, None, w_g, None
    b = b_ih + b_hh
    return w_ifo, torch.cat([b[: 2 * H], b[3 * H:]]), w_g, b[2 * H: 3 * H]


def _lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ifo, b_ifo, w_g, b_g,
               w_hr: torch.Tensor | None):
    """One LSTM step. Each pre-activation is one affine map over cat([x_t, h_{t-1}]); the
    candidate's has its own map, so that relevance reaches it without passing a split of the
    gates (a few operations less on the walk; the gates get no relevance anyway)."""
    xh = torch.cat([x, h], -1)
    i, f, o = torch.sigmoid(F.linear(xh, w_ifo, b_ifo)).chunk(3, -1)
    g = torch.tanh(F.linear(xh, w_g, b_g))
    c = f * c + i * g
    h = o * torch.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def _gru_weights(w_ih, w_hh, b_ih, b_hh):
    """(w_ih_rz, b_rz, w_hh_rz, w_in, b_in, w_hn, b_hn) from torch's row order r, z, n."""
    H = w_hh.shape[1]
    if b_ih is None:
        return w_ih[: 2 * H], None, w_hh[: 2 * H], w_ih[2 * H:], None, w_hh[2 * H:], None
    return (w_ih[: 2 * H], b_ih[: 2 * H] + b_hh[: 2 * H], w_hh[: 2 * H], w_ih[2 * H:], b_ih[2 * H:],
            w_hh[2 * H:], b_hh[2 * H:])


def _gru_step(x_rz: torch.Tensor, x_n: torch.Tensor, h: torch.Tensor, w_hh_rz, w_hn, b_hn):
    """One GRU step in torch's equations, from the input projections ``x_rz = W_i{r,z} x + b``
    and ``x_n = W_in x + b_in`` (affine maps of x_t alone, so computing them for all steps at
    once leaves every rule exact). ``W_hn h + b_hn`` is its own affine map (r multiplies it)."""
    r, z = torch.sigmoid(x_rz + F.linear(h, w_hh_rz)).chunk(2, -1)
    n = torch.tanh(x_n + r * F.linear(h, w_hn, b_hn))
    return (1 - z) * n + z * h


def _rnn_step(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, relu: bool):
    """One Elman step: ``act(W [x_t, h_{t-1}] + b)``, one affine map over cat([x_t, h_{t-1}])."""
    z = F.linear(torch.cat([x, h], -1), w, b)
    return torch.relu(z) if relu else torch.tanh(z)
