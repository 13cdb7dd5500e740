"""``nn.LSTMCell``, ``nn.GRUCell`` and ``nn.RNNCell`` written with ordinary operations on the cell's own parameters.

A given state that does not depend on the explained input (a constant or learned initial state)
passes through an :class:`~sciexplain.kinds.units.recurrent.InitialState` leaf, so that its relevance
is a ledger row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import UnsupportedModelError
from ..kinds.units.recurrent import InitialState
from ..record.tape import _Recorder
from .recurrent_steps import _gru_step, _gru_weights, _lstm_step, _lstm_weights, _packed_error, _rnn_step, _Unrolled

__all__ = ["UnrolledLSTMCell", "UnrolledGRUCell", "UnrolledRNNCell"]


def _recorded(t: torch.Tensor) -> bool:
    """Whether ``t`` depends on the explained input in the forward pass being recorded.

    True when no recording is under way (then the answer changes nothing). A cell's given state
    that does not depend on the input is an initial state (a learned or constant ``h0``/``c0``):
    it goes through :class:`InitialState`, so that a gate times a constant cell state is still a
    product of two recorded tensors (signal-take-all) and its relevance is a ledger row."""
    for mode in torch.overrides._get_current_function_mode_stack():
        if isinstance(mode, _Recorder):
            return mode.ref_of(t) is not None
    return True


class _UnrolledCell(_Unrolled):
    def __init__(self, source: nn.RNNCellBase, roles: tuple[str, ...]):
        super().__init__(source)
        self.input_size = source.input_size
        self.hidden_size = source.hidden_size
        self.bias = source.bias
        self.initial = nn.ModuleDict({r: InitialState(source.hidden_size, r) for r in roles})

    def _check(self, input):
        if isinstance(input, PackedSequence):
            raise _packed_error(self.source_type)
        if input.dim() not in (1, 2):
            raise UnsupportedModelError(f"{self.source_type}: expected input of 1 or 2 dims, got "
                                        f"shape {tuple(input.shape)}")
        return input.dim() == 1

    def _single_state(self, input, hx):
        """(batched input, hidden state, whether the input was unbatched) for a one-state cell;
        a state that does not depend on the input comes from the :class:`InitialState` leaf."""
        unbatched = self._check(input)
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else hx.unsqueeze(0)
        if hx is None:
            return input, self.initial["h"](input), unbatched
        return input, (hx if _recorded(hx) else self.initial["h"](input, hx)), unbatched


class UnrolledLSTMCell(_UnrolledCell):
    """``nn.LSTMCell`` written with ordinary operations: ``forward(input, hx=None) -> (h', c')``.

    When ``hx`` is None, or a given state does not depend on the input (a constant or learned
    initial state), the state comes from an :class:`InitialState` leaf (a ledger row); a state
    computed from the input (the previous step's, in a loop) is used as it is.
    """

    def __init__(self, source: nn.LSTMCell):
        super().__init__(source, ("h", "c"))

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``input`` (batch, features), ``hx = (h, c)`` (batch, hidden) or None."""
        unbatched = self._check(input)
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else tuple(s.unsqueeze(0) for s in hx)
        if hx is None:
            h, c = self.initial["h"](input), self.initial["c"](input)
        else:
            h, c = hx
            h = h if _recorded(h) else self.initial["h"](input, h)
            c = c if _recorded(c) else self.initial["c"](input, c)
        weights = _lstm_weights(self.weight_ih, self.weight_hh, self._param("bias_ih"), self._param("bias_hh"))
        h, c = _lstm_step(input, h, c, *weights, None)
        if unbatched:
            return h.squeeze(0), c.squeeze(0)
        return h, c


class UnrolledGRUCell(_UnrolledCell):
    """``nn.GRUCell`` written with ordinary operations: ``forward(input, hx=None) -> h'``."""

    def __init__(self, source: nn.GRUCell):
        super().__init__(source, ("h",))

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``input`` (batch, features), ``hx`` (batch, hidden) or None."""
        input, h, unbatched = self._single_state(input, hx)
        w_ih_rz, b_rz, w_hh_rz, w_in, b_in, w_hn, b_hn = _gru_weights(
            self.weight_ih, self.weight_hh, self._param("bias_ih"), self._param("bias_hh"))
        h = _gru_step(F.linear(input, w_ih_rz, b_rz), F.linear(input, w_in, b_in), h, w_hh_rz, w_hn, b_hn)
        return h.squeeze(0) if unbatched else h


class UnrolledRNNCell(_UnrolledCell):
    """``nn.RNNCell`` written with ordinary operations: ``forward(input, hx=None) -> h'``."""

    def __init__(self, source: nn.RNNCell):
        super().__init__(source, ("h",))
        self.nonlinearity = source.nonlinearity

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``input`` (batch, features), ``hx`` (batch, hidden) or None."""
        input, h, unbatched = self._single_state(input, hx)
        w = torch.cat([self.weight_ih, self.weight_hh], 1)
        b = self.bias_ih + self.bias_hh if self.bias else None
        h = _rnn_step(input, h, w, b, self.nonlinearity == "relu")
        return h.squeeze(0) if unbatched else h
