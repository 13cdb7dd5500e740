"""LSTM layers as fused units: the LSTM rule of Arras et al. (2017) in one loop per layer.

:class:`sciexplain.recurrent.UnrolledLSTM` explains an ``nn.LSTM`` operation by operation:
about twenty recorded operations per time step and direction, each with its own rule, which
lets any preset reach inside the cell but costs the engine's per-operation overhead on every
step (about 20x a gradient pass on a text-sized LSTM, see ``benchmarks/bench_lstm.py``).

When the rules inside the cell are the paper's (Epsilon on the linear maps, Epsilon on the cell
state sum, signal-take-all at the gates), :class:`FusedLSTM` is swapped in instead. It runs each
layer (both directions of a bidirectional one) as one :class:`LSTMLayer` unit on the tape, whose
forward is torch's own fused kernel, and whose propagator computes the same relevance as the
unrolled operations with whole-sequence tensor operations wherever the rule allows (the rule
and how it is computed: :mod:`sciexplain.kinds.units.recurrent`).

Which epsilons: the ones the preset would give the unrolled operations, resolved by the
:class:`~sciexplain.recurrent.RecurrentUnrolling` canonizer with the same keys (the layer's
path or a pattern, then ``nn.Linear`` / ``"op:linear"`` for the linear maps and ``"op:add"`` for
the cell sum). When those are not plain ``Epsilon`` rules, or a product rule other than
signal-take-all is asked for inside the layer, or the layer has a projection (``proj_size``),
the canonizer keeps the operation-by-operation unrolling, so every preset still means what it
says. ``RecurrentUnrolling(fused=False)`` always unrolls.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedModelError
from ..kinds.units.recurrent import InitialState, LSTMLayer
from .recurrent_layers import _UnrolledRNNBase
from .recurrent_steps import prepare_sequence

__all__ = ["LSTMLayer", "FusedLSTM"]


class FusedLSTM(nn.Module):
    """``nn.LSTM`` as :class:`LSTMLayer` units sharing its parameters (see the module docstring).

    ``forward(input, hx=None)`` takes and returns what ``nn.LSTM`` does (padded tensors, any
    ``batch_first``, uni- or bidirectional, several layers, initial states given or not):
    ``output, (h_n, c_n)``. The initial states pass through
    :class:`~sciexplain.recurrent.InitialState` units, whose ledger rows hold the relevance that
    ends on them.

    Parameters
    ----------
    source : torch.nn.LSTM
        The layer (without projection, ``proj_size=0``).
    epsilon, cell_epsilon : float
        Stabilisers of the linear maps and of the cell state sum.
    for_lrp : bool
        Recorded for LRP (see :class:`LSTMLayer`).
    """

    def __init__(self, source: nn.LSTM, *, epsilon: float, cell_epsilon: float, for_lrp: bool = False):
        super().__init__()
        if getattr(source, "proj_size", 0):
            raise UnsupportedModelError("FusedLSTM does not cover projected LSTMs (proj_size > 0); they are "
                                        "unrolled operation by operation")
        self.source_type = type(source).__name__
        self.batch_first, self.bidirectional = source.batch_first, source.bidirectional
        self.num_layers, self.hidden_size = source.num_layers, source.hidden_size
        self.num_directions = 2 if source.bidirectional else 1
        self.epsilon, self.cell_epsilon = float(epsilon), float(cell_epsilon)
        self.layers = nn.ModuleDict()
        self.initial = nn.ModuleDict()
        for layer in range(self.num_layers):
            dirs = []
            for d in range(self.num_directions):
                sfx = f"l{layer}{'_reverse' if d else ''}"
                dirs.append(tuple(getattr(source, f"{k}_{sfx}") if source.bias or k.startswith("weight") else None
                                  for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                for role in ("h", "c"):
                    key = _UnrolledRNNBase._state_key(role, layer, d)
                    self.initial[key] = InitialState(self.hidden_size, role)
            self.layers[f"l{layer}"] = LSTMLayer(dirs, epsilon=epsilon, cell_epsilon=cell_epsilon, for_lrp=for_lrp)
        self.train(source.training)

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the layer: ``input`` (batch, time, features) or (time, batch, features) as
        ``batch_first`` says, ``hx = (h0, c0)`` of shape (layers * directions, batch, hidden)."""
        input, hx, unbatched = prepare_sequence(self.source_type, "explained as fused layers", self.batch_first,
                                                input, hx)
        X = input if self.batch_first else input.transpose(0, 1)
        T, H = X.shape[1], self.hidden_size
        h_fin, c_fin = [], []
        for layer in range(self.num_layers):
            states = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                sfx = f"l{layer}{'_reverse' if d else ''}"
                states.append(self.initial[f"h_{sfx}"](X, None if hx is None else hx[0][k]))
                states.append(self.initial[f"c_{sfx}"](X, None if hx is None else hx[1][k]))
            Y = self.layers[f"l{layer}"](X, *states)
            X = Y[:, :T]
            for d in range(self.num_directions):
                h_fin.append(Y[:, 0, H:] if d else Y[:, T - 1, :H])
                c_fin.append(Y[:, T, d * H:(d + 1) * H])
        output = X if self.batch_first else X.transpose(0, 1)
        h_n, c_n = torch.stack(h_fin, 0), torch.stack(c_fin, 0)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)
