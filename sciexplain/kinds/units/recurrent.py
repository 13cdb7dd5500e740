"""Recurrent leaf kinds: initial states and fused LSTM layers, each one unit on the tape with its own propagator.

:class:`InitialState` holds the initial hidden or cell state of an unrolled recurrent layer
(:mod:`sciexplain.recurrent`); it absorbs the relevance that reaches it, one ledger row.

:class:`LSTMLayer` is one layer of an ``nn.LSTM`` (both directions if it has two), swapped in by
:class:`sciexplain.recurrent_fused.FusedLSTM`. Its forward is torch's own fused kernel, and its
propagator computes the same relevance as the unrolled operations with whole-sequence tensor
operations wherever the rule allows:

* the gate pre-activations of all steps are recomputed in two matmuls from the recorded hidden
  states, the cell states by their recurrence;
* the per-step loop (one for both directions) carries only what is sequential, the relevance
  of ``h_{t-1}`` and ``c_{t-1}``; the candidate's share ``q_t = R_g / (z_g + eps sign z_g)`` of every step is kept,
  and the input relevance ``x_t * (q_t W_ig)`` of all steps is one matmul after the loop.

The rule, per step (``z_g = W_ig x_t + W_hg h_{t-1} + b_g``, ``c_t = f c_{t-1} + i g``)::

    S        = R(h_t) + R(c_t)                         (o and tanh pass all of R(h_t) to c_t)
    R(c_t-1) = f c_{t-1} / stab_add(c_t) S             (the cell sum, proportional)
    R(g)     = i g / stab_add(c_t) S                   (i is a gate: signal-take-all)
    R(x_t)   = x_t * (R(g) / stab_lin(z_g) W_ig)       (joint epsilon rule over [x_t, h_{t-1}])
    R(h_t-1) = h_{t-1} * (R(g) / stab_lin(z_g) W_hg)

with ``stab(z) = z + eps * sign(z)``; the gates i, f, o get nothing, the biases and stabilisers
absorb the rest (the ledger's ``entering - leaving`` of the unit). The numbers equal those of
the unrolled operations to float rounding (tested, and against the numpy reference of the
paper's equations in ``tests/test_recurrent.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedModelError
from ...record.tape import Node
from ..registry import REGISTRY, Kind, LeafCall, LeafEntry, LeafRelevance, register

__all__ = ["InitialState", "LSTMLayer"]


class InitialState(nn.Module):
    """The initial hidden or cell state of an unrolled recurrent layer, as a leaf on the tape.

    Its propagator absorbs all relevance that arrives: relevance ending on ``h0``/``c0`` is one
    ledger row named after this module's path. It takes the layer's input as its first argument
    only so that it sits on the recorded tape with the batch dim first; the input gets nothing.

    Parameters
    ----------
    size : int
        Size of the state (hidden size, or projection size for a projected LSTM's ``h``).
    role : str
        ``"h"`` or ``"c"``, for messages.
    """

    def __init__(self, size: int, role: str):
        super().__init__()
        self.size = int(size)
        self.role = role

    def forward(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``given`` (a fresh tensor with the same values) or zeros of shape (batch, size)."""
        if given is None:
            return x.new_zeros(x.shape[0], self.size)
        if given.shape != (x.shape[0], self.size):
            raise UnsupportedModelError(
                f"initial {self.role} state of shape {tuple(given.shape)}; expected "
                f"({x.shape[0]}, {self.size}) for this batch")
        return given.clone()

    def extra_repr(self) -> str:
        return f"size={self.size}, role={self.role!r}"


def _absorb_initial_state(call):
    """Propagator of :class:`InitialState`: everything that arrives is absorbed."""
    absorbed = call.relevance.reshape(call.relevance.shape[0], -1).sum(dim=1)
    return LeafRelevance(inputs=[None] * len(call.inputs), absorbed=absorbed)


def _stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)``, with the engine's sign convention (copysign)."""
    return z + torch.copysign(torch.tensor(eps, dtype=z.dtype, device=z.device), z)


class LSTMLayer(nn.Module):
    """One layer of an LSTM, both directions if it has two, recorded as one unit (see the
    module docstring).

    ``forward(x, h0, c0[, h0_reverse, c0_reverse])`` takes the layer input ``(batch, time,
    features)`` and the initial states ``(batch, hidden)`` of each direction, and returns
    ``(batch, time + 1, directions * hidden)``: the layer's output (the hidden states of all
    steps in time order, directions side by side, as ``nn.LSTM`` returns them), then the final
    cell states (after the last step each direction processed). One tensor, so that relevance
    arriving at the outputs, the final hidden states and the final cell states all reach the
    unit.

    Parameters
    ----------
    directions : sequence of (weight_ih, weight_hh, bias_ih, bias_hh)
        The LSTM's own parameters of this layer, forward direction first (the same objects, not
        copies); biases None for ``bias=False``. A second entry runs backwards in time.
    epsilon, cell_epsilon : float
        The stabilisers of the joint epsilon rule on the linear maps and of the cell state sum.
    for_lrp : bool
        The unit is recorded for LRP, whose walk never differentiates through it (its
        propagator computes the relevance): the kernel then runs without building its autograd
        graph, and the output is a fresh tensor that the layers above can differentiate to. With
        False (gradient methods) the graph through the kernel is kept.
    """

    def __init__(self, directions, *, epsilon: float, cell_epsilon: float, for_lrp: bool = False):
        super().__init__()
        if len(directions) not in (1, 2):
            raise UnsupportedModelError(f"an LSTM layer has one or two directions, got {len(directions)}")
        self.for_lrp = bool(for_lrp)
        self.num_directions = len(directions)
        self.bias = directions[0][2] is not None
        for d, params in enumerate(directions):
            for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
                if p is not None:
                    self.register_parameter(f"{name}{'_reverse' if d else ''}", p)
        self.hidden_size = directions[0][1].shape[1]
        self.epsilon, self.cell_epsilon = float(epsilon), float(cell_epsilon)

    def _params(self, d: int) -> tuple:
        sfx = "_reverse" if d else ""
        return tuple(self._parameters.get(f"{n}{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        """Run the layer with torch's fused kernel; see the class docstring for the layout."""
        D = self.num_directions
        if len(states) != 2 * D:
            raise UnsupportedModelError(f"LSTMLayer with {D} direction(s) takes x and {2 * D} initial states, "
                                        f"got {len(states)}")
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not self.for_lrp):
            flat = [p for d in range(D) for p in self._params(d) if p is not None]
            h0 = torch.stack(states[0::2], 0)
            c0 = torch.stack(states[1::2], 0)
            out, _, c_n = torch.lstm(x, (h0, c0), flat, self.bias, 1, 0.0, False, D == 2, True)
            y = torch.cat([out, c_n.transpose(0, 1).reshape(x.shape[0], 1, -1)], 1)
        return y.requires_grad_(grad) if self.for_lrp and y.is_floating_point() else y

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden_size}, directions={self.num_directions}, epsilon={self.epsilon:g}, "
                f"cell_epsilon={self.cell_epsilon:g}")


def _lstm_layer_relevance(call: LeafCall) -> LeafRelevance:
    """Propagator of :class:`LSTMLayer`: the rule in the module docstring, both directions in
    one loop (tensors ``(time, direction, batch, hidden)`` in each direction's processing order)."""
    m: LSTMLayer = call.module
    x, states = call.inputs[0], call.inputs[1:]
    Y, R_Y = call.output, call.relevance
    H, T, D = m.hidden_size, x.shape[1], m.num_directions
    with torch.no_grad():
        xt = x.transpose(0, 1)  # (time, batch, features)
        xs, hs, R_h, zs, w_ig, w_hg = [], [], [], [], [], []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = (None if p is None else p.detach() for p in m._params(d))
            w_ih, w_hh = w_ih[:3 * H], w_hh[:3 * H]  # o gets nothing: its rows are not needed
            cols = slice(d * H, (d + 1) * H)
            xd, hd, rd = xt, Y[:, :T, cols].transpose(0, 1), R_Y[:, :T, cols].transpose(0, 1)
            if d:  # processing order
                xd, hd, rd = xd.flip(0), hd.flip(0), rd.flip(0)
            h_prev = torch.cat([states[2 * d].unsqueeze(0), hd[:-1]], 0)
            z = F.linear(xd, w_ih)
            z += F.linear(h_prev, w_hh)
            if b_ih is not None:
                z += (b_ih + b_hh)[:3 * H]
            xs.append(xd)
            hs.append(h_prev)
            R_h.append(rd)
            zs.append(z)
            w_ig.append(w_ih[2 * H:])
            w_hg.append(w_hh[2 * H:])
        z, h_prev, R_h = torch.stack(zs, 1), torch.stack(hs, 1), torch.stack(R_h, 1).contiguous()
        w_hg = torch.stack(w_hg, 0)  # (direction, hidden out, hidden in)
        c0 = torch.stack(states[1::2], 0)  # (direction, batch, hidden)
        i, f = torch.sigmoid(z[..., :2 * H]).chunk(2, -1)
        z_g = z[..., 2 * H:]
        ig = i * torch.tanh(z_g)
        fs, igs, cs, c_prev = f.unbind(0), ig.unbind(0), [], c0
        for p in range(T):  # the cell state recurrence (one operation per step)
            c_prev = torch.addcmul(igs[p], fs[p], c_prev)
            cs.append(c_prev)
        c = torch.stack(cs, 0)
        c_before = torch.cat([c0.unsqueeze(0), c[:-1]], 0)
        inv_c = _stab(c, m.cell_epsilon).reciprocal_()
        keep_c = f * c_before * inv_c  # share of S that goes to c_{t-1}
        to_g = ig * inv_c / _stab(z_g, m.epsilon)  # S -> q = R(g) / stab(z_g)
        keeps, tos, hps, Rhs = keep_c.unbind(0), to_g.unbind(0), h_prev.unbind(0), R_h.unbind(0)
        q: list[torch.Tensor] = [None] * T  # type: ignore[list-item]
        # S_p, all relevance on c_p (from h_p, from c_{p+1} and from h_p's use at step p + 1):
        # S_{p-1} = R(h_{p-1}) + keep_p S_p + h_{p-1} * (q_p W_hg), q_p = to_p S_p: four operations
        S = Rhs[T - 1] + R_Y[:, T].reshape(-1, D, H).transpose(0, 1)  # the final cells join at the last step
        for p in range(T - 1, 0, -1):
            qp = q[p] = tos[p] * S
            S = torch.addcmul(torch.addcmul(Rhs[p - 1], keeps[p], S), hps[p], torch.bmm(qp, w_hg))
        qp = q[0] = tos[0] * S
        R_c0, R_h0 = keeps[0] * S, hps[0] * torch.bmm(qp, w_hg)
        Q = torch.stack(q, 0)
        R_x = 0
        for d in range(D):
            r = xs[d] * (Q[:, d] @ w_ig[d])
            R_x = R_x + (r.flip(0) if d else r)
        R_x = R_x.transpose(0, 1)
    return LeafRelevance([R_x] + [r for d in range(D) for r in (R_h0[d], R_c0[d])])


def _recognise(module: LSTMLayer, node: Node):
    both = " (both directions)" if module.num_directions == 2 else ""
    return Kind("leaf", f"LSTM layer{both}: Arras et al. 2017, Epsilon({module.epsilon:g}) on the linear maps, "
                f"Epsilon({module.cell_epsilon:g}) on the cell sum, signal-take-all at the gates", (LSTMLayer,))


register(InitialState, _absorb_initial_state,
         description="initial state of an unrolled recurrent layer: absorbs the relevance "
                     "that reaches it")
REGISTRY.leaves[LSTMLayer] = LeafEntry(LSTMLayer, _lstm_layer_relevance,
                                       "LSTM layer, one unit (Arras et al. 2017)")
REGISTRY.recognise_modules([LSTMLayer], _recognise)
