"""``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` unrolled over time: ordinary operations on the layer's own parameters.

The rules these operations get are in :mod:`sciexplain.recurrent`; the initial states pass
through :class:`~sciexplain.kinds.units.recurrent.InitialState` leaves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kinds.units.recurrent import InitialState
from .recurrent_steps import _gru_step, _gru_weights, _lstm_step, _lstm_weights, _rnn_step, _Unrolled, prepare_sequence

__all__ = ["UnrolledLSTM", "UnrolledGRU", "UnrolledRNN"]


class _UnrolledRNNBase(_Unrolled):
    """Common parts of the unrolled ``nn.LSTM`` and ``nn.GRU``."""

    def __init__(self, source: nn.RNNBase):
        super().__init__(source)
        self.input_size = source.input_size
        self.hidden_size = source.hidden_size
        self.num_layers = source.num_layers
        self.bias = source.bias
        self.batch_first = source.batch_first
        self.dropout = float(source.dropout)
        self.bidirectional = source.bidirectional
        self.proj_size = int(getattr(source, "proj_size", 0) or 0)
        self.num_directions = 2 if source.bidirectional else 1
        self.initial = nn.ModuleDict()
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                for role in self._roles():
                    size = self.proj_size if (role == "h" and self.proj_size) else self.hidden_size
                    self.initial[self._state_key(role, layer, d)] = InitialState(size, role)

    def _roles(self) -> tuple[str, ...]:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def _state_key(role: str, layer: int, d: int) -> str:
        return f"{role}_l{layer}{'_reverse' if d else ''}"

    def _names(self, layer: int, d: int) -> tuple[str, str, str, str]:
        sfx = f"l{layer}{'_reverse' if d else ''}"
        return f"weight_ih_{sfx}", f"weight_hh_{sfx}", f"bias_ih_{sfx}", f"bias_hh_{sfx}"

    @property
    def _time_dim(self) -> int:
        return 1 if self.batch_first else 0

    def _prepare(self, input, hx):
        return prepare_sequence(self.source_type, "unrolled for relevance", self.batch_first, input, hx)

    def _run(self, input, hx, direction):
        """Run all layers and directions. ``direction(layer, d, X, steps)`` returns
        ``step(t, state) -> state`` for one direction over the layer input ``X`` (whose time
        steps are ``steps``)."""
        roles = self._roles()
        tdim = self._time_dim
        X = input
        anchor = X if self.batch_first else X[0]  # batch first, for the initial states
        finals: dict[str, list[torch.Tensor]] = {r: [] for r in roles}
        for layer in range(self.num_layers):
            steps = X.unbind(tdim)
            T = len(steps)
            per_dir = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                state = tuple(
                    self.initial[self._state_key(r, layer, d)](anchor, None if hx is None else hx[j][k])
                    for j, r in enumerate(roles))
                step = direction(layer, d, X, steps)
                outs: list[torch.Tensor | None] = [None] * T
                for t in (reversed(range(T)) if d else range(T)):
                    state = step(t, state)
                    outs[t] = state[0]
                for j, r in enumerate(roles):
                    finals[r].append(state[j])
                per_dir.append(torch.stack(outs, tdim))
            X = per_dir[0] if len(per_dir) == 1 else torch.cat(per_dir, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                X = F.dropout(X, self.dropout, True)
        return X, tuple(torch.stack(finals[r], 0) for r in roles)


class UnrolledLSTM(_UnrolledRNNBase):
    """``nn.LSTM`` unrolled over time with the same parameters (see the module docstring).

    ``forward(input, hx=None)`` takes and returns what ``nn.LSTM`` does (padded tensors only):
    ``output, (h_n, c_n)``.
    """

    def __init__(self, source: nn.LSTM):
        super().__init__(source)

    def _roles(self):
        return ("h", "c")

    def _weights(self, layer: int, d: int):
        wi, wh, bi, bh = self._names(layer, d)
        weights = _lstm_weights(self._param(wi), self._param(wh), self._param(bi) if self.bias else None,
                                self._param(bh) if self.bias else None)
        sfx = f"l{layer}{'_reverse' if d else ''}"
        return weights + (self._param(f"weight_hr_{sfx}") if self.proj_size else None,)

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the layer: ``input`` (batch, time, features) or (time, batch, features) as
        ``batch_first`` says, ``hx = (h0, c0)`` of shape (layers * directions, batch, hidden)."""
        input, hx, unbatched = self._prepare(input, hx)

        def direction(layer, d, X, steps):
            weights = self._weights(layer, d)

            def step(t, state):
                return _lstm_step(steps[t], state[0], state[1], *weights)
            return step
        output, (h_n, c_n) = self._run(input, hx, direction)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)


class UnrolledGRU(_UnrolledRNNBase):
    """``nn.GRU`` unrolled over time with the same parameters: ``forward(input, hx=None) ->
    (output, h_n)``."""

    def __init__(self, source: nn.GRU):
        super().__init__(source)

    def _roles(self):
        return ("h",)

    def _weights(self, layer: int, d: int):
        wi, wh, bi, bh = self._names(layer, d)
        return _gru_weights(self._param(wi), self._param(wh),
                            self._param(bi) if self.bias else None, self._param(bh) if self.bias else None)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the layer; arguments and results as for ``nn.GRU``."""
        input, hx_t, unbatched = self._prepare(input, None if hx is None else (hx,))
        tdim = self._time_dim

        def direction(layer, d, X, steps):
            w_ih_rz, b_rz, w_hh_rz, w_in, b_in, w_hn, b_hn = self._weights(layer, d)
            x_rz = F.linear(X, w_ih_rz, b_rz).unbind(tdim)
            x_n = F.linear(X, w_in, b_in).unbind(tdim)

            def step(t, state):
                return (_gru_step(x_rz[t], x_n[t], state[0], w_hh_rz, w_hn, b_hn),)
            return step
        output, (h_n,) = self._run(input, hx_t, direction)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n = h_n.squeeze(1)
        return output, h_n


class UnrolledRNN(_UnrolledRNNBase):
    """``nn.RNN`` (Elman, tanh or ReLU) unrolled over time with the same parameters:
    ``forward(input, hx=None) -> (output, h_n)``; the epsilon rule runs jointly over
    cat([x_t, h_{t-1}]) and the activation passes relevance."""

    def __init__(self, source: nn.RNN):
        super().__init__(source)
        self.nonlinearity = source.nonlinearity

    def _roles(self):
        return ("h",)

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the layer; arguments and results as for ``nn.RNN``."""
        input, hx_t, unbatched = self._prepare(input, None if hx is None else (hx,))
        relu = self.nonlinearity == "relu"

        def direction(layer, d, X, steps):
            wi, wh, bi, bh = self._names(layer, d)
            w = torch.cat([self._param(wi), self._param(wh)], 1)
            b = self._param(bi) + self._param(bh) if self.bias else None

            def step(t, state):
                return (_rnn_step(steps[t], state[0], w, b, relu),)
            return step
        output, (h_n,) = self._run(input, hx_t, direction)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n = h_n.squeeze(1)
        return output, h_n
