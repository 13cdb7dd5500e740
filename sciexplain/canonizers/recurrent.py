"""Recurrent layers for LRP: LSTM, GRU and Elman RNN unrolled over time (Arras et al. 2017).

``torch.nn.LSTM`` and ``torch.nn.GRU`` run their time loop inside one fused kernel, so the
engine cannot see the gates. The :class:`RecurrentUnrolling` canonizer swaps each of them (and
``nn.LSTMCell``/``nn.GRUCell``, and the Elman ``nn.RNN``/``nn.RNNCell``) for an unrolled module
written with ordinary operations that **shares the very same** ``nn.Parameter`` **objects**
(nothing is copied) and computes the same function. The engine then explains the unrolled
operations with its ordinary rules, which give the LSTM rule of Arras, Montavon, Mueller &
Samek (2017, WASSA):

* the candidate's pre-activation is **one** affine map over ``cat([x_t, h_{t-1}])`` with weight
  ``cat([W_ig, W_hg], 1)`` and bias ``b_ig + b_hg``, so the Epsilon rule on it is the paper's
  joint epsilon rule over input and recurrent weights (the bias and stabilizer absorb their
  share, which the ledger counts). The gates i, f, o are one affine map over the same input;
  they receive no relevance;
* products with a sigmoid gate (``f * c``, ``i * g``, ``o * tanh(c)``) give all relevance to
  the signal (signal-take-all), none to the gate;
* the cell state ``c_t = f * c_{t-1} + i * g`` is a sum: relevance is split between the previous
  cell and the new input in proportion to their contributions (the ``"op:add"`` rule).

For the GRU (torch's equations ``r, z = sigmoid(...)``, ``n = tanh(W_in x + b_in + r * (W_hn h +
b_hn))``, ``h' = (1 - z) * n + z * h``) the same principles hold: ``W_hn h + b_hn`` is an affine
map of its own because ``r`` multiplies it, ``1 - z`` is a gate derived from a sigmoid, and
the two sums are split in proportion. ``W_in x + b_in`` is an affine map of ``x_t`` alone, so it
is computed for all time steps in one matmul (the rule on it stays exact). For the LSTM that is
not possible: the joint epsilon denominator includes ``W_hg h_{t-1}``. The Elman RNN is
``act(W [x_t; h_{t-1}] + b)`` with the joint epsilon rule; the activation passes relevance.

Where the preset gives the cell exactly these rules (plain ``Epsilon`` on the linear maps and
the cell sum, signal-take-all at the gates), an ``nn.LSTM`` is not unrolled operation by
operation but swapped for :class:`sciexplain.recurrent_fused.FusedLSTM`: one unit per layer
(both directions) with the same relevance at a fraction of the cost (``benchmarks/bench_lstm.py``);
``RecurrentUnrolling(fused=False)`` always unrolls.

Relevance that reaches the initial states ``h0``/``c0`` is absorbed by an :class:`InitialState`
leaf module, a ledger row of its own named after its path (e.g. ``lstm.initial.h_l0``), also when
the states are zeros (then it absorbs exactly zero).

Layers with ``batch_first=False`` (between the model's transposes) and classifiers on the stacked
final states ``h_n``/``c_n`` (shape ``(layers * directions, batch, hidden)``) are explained like
any other: the engine tracks where the batch dim of every tensor is. Not supported: packed
sequences (refused with :class:`PackedSequenceError`, which says what to do).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import UnsupportedModelError

__all__ = [
    "InitialState",
    "UnrolledLSTM",
    "UnrolledGRU",
    "UnrolledLSTMCell",
    "UnrolledGRUCell",
    "UnrolledRNN",
    "UnrolledRNNCell",
    "PackedSequenceError",
    "RecurrentUnrolling",
    "unroll",
]


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
    from ..kinds.registry import LeafRelevance
    absorbed = call.relevance.reshape(call.relevance.shape[0], -1).sum(dim=1)
    return LeafRelevance(inputs=[None] * len(call.inputs), absorbed=absorbed)


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


# -- cells ----------------------------------------------------------------------------------------

def _recorded(t: torch.Tensor) -> bool:
    """Whether ``t`` depends on the explained input in the forward pass being recorded.

    True when no recording is under way (then the answer changes nothing). A cell's given state
    that does not depend on the input is an initial state (a learned or constant ``h0``/``c0``):
    it goes through :class:`InitialState`, so that a gate times a constant cell state is still a
    product of two recorded tensors (signal-take-all) and its relevance is a ledger row."""
    from ..record.tape import _Recorder
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


_UNROLLED: dict[type, type] = {
    nn.LSTM: UnrolledLSTM,
    nn.GRU: UnrolledGRU,
    nn.LSTMCell: UnrolledLSTMCell,
    nn.GRUCell: UnrolledGRUCell,
    nn.RNN: UnrolledRNN,
    nn.RNNCell: UnrolledRNNCell,
}


def unroll(module: nn.Module) -> nn.Module | None:
    """The unrolled equivalent of a recurrent module, sharing its parameters.

    Parameters
    ----------
    module : torch.nn.Module
        Any module. ``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, ``nn.LSTMCell``, ``nn.GRUCell`` and
        ``nn.RNNCell`` (and subclasses that keep the base class's ``forward``; a subclass with
        its own ``forward`` computes something else) have an unrolled equivalent.

    Returns
    -------
    torch.nn.Module or None
        A new module computing the same function from the very same ``nn.Parameter`` objects
        (registered under the same names), or None when ``module`` is not recurrent.

    Examples
    --------
    >>> lstm = nn.LSTM(50, 64, batch_first=True)
    >>> u = unroll(lstm)
    >>> u.weight_ih_l0 is lstm.weight_ih_l0
    True
    """
    for base, unrolled in _UNROLLED.items():
        if isinstance(module, base) and type(module).forward is base.forward:
            return unrolled(module).train(module.training)  # its own submodules too
    return None


from .base import ModelCanonizer  # noqa: E402  (after the modules it swaps in)


class RecurrentUnrolling(ModelCanonizer):
    """Model canonizer: swap ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells for unrolled
    modules that share their parameters (see the module docstring).

    The engine applies model canonizers on a shallow copy of the path from the root to each
    replaced module, so the user's model object is never modified, not even temporarily.

    Parameters
    ----------
    fused : bool, default True
        Explain an ``nn.LSTM`` as fused layers (:class:`sciexplain.recurrent_fused.FusedLSTM`,
        one unit per layer and direction, same relevance, several times faster) wherever the
        preset gives the operations inside it the paper's rules: plain ``Epsilon`` on the linear
        maps (keys: the layer's path or a pattern, ``nn.Linear``, ``"op:linear"``) and on the
        cell sum (``"op:add"``), signal-take-all at the gates (``"op:mul"``). Otherwise, and
        always with ``fused=False``, the layer is unrolled operation by operation, so every rule
        the preset names reaches the operation it names.
    """

    name = "RecurrentUnrolling"

    def __init__(self, fused: bool = True):
        self.fused = bool(fused)

    def describe(self) -> str:
        return "RecurrentUnrolling (LSTM/GRU unrolled over time, shared parameters; Arras et al. 2017)"

    def replacement(self, module: nn.Module, path: str) -> nn.Module | None:
        """The unrolled module for a recurrent ``module``, None for every other module."""
        return unroll(module)

    def replacement_for_rules(self, module: nn.Module, path: str, rules) -> nn.Module | None:
        """A :class:`~sciexplain.recurrent_fused.FusedLSTM` where the rules allow it (see the class
        docstring), else :meth:`replacement`."""
        if self.fused and isinstance(module, nn.LSTM) and type(module).forward is nn.LSTM.forward \
                and not getattr(module, "proj_size", 0):
            eps = _fused_lstm_epsilons(rules, path)
            if eps is not None:
                from .recurrent_fused import FusedLSTM
                return FusedLSTM(module, epsilon=eps[0], cell_epsilon=eps[1], for_lrp=rules is not None)
        return self.replacement(module, path)

    def __eq__(self, other) -> bool:
        return isinstance(other, RecurrentUnrolling) and other.fused == self.fused

    def __hash__(self) -> int:
        return hash((RecurrentUnrolling, self.fused))

    def __repr__(self) -> str:
        return "RecurrentUnrolling()" if self.fused else "RecurrentUnrolling(fused=False)"


def _fused_lstm_epsilons(rules, path: str) -> tuple[float, float] | None:
    """The (linear, cell sum) epsilons that the preset ``rules`` gives the operations of the
    unrolled LSTM at ``path``, resolved with the keys those operations would have; None when any
    of them is not the paper's rule (then the layer is unrolled operation by operation)."""
    from ..rules.presets import PROPORTIONAL
    from ..rules.affine import Epsilon, SignalTakeAll
    if rules is None:  # not LRP: the rules do not matter, the fused forward is the fastest
        return PROPORTIONAL.epsilon, PROPORTIONAL.epsilon
    name = f"{path}#op"
    linear = rules.resolve(name, (nn.Linear, "op:linear"), weighted=True, first=False)
    cell = rules.resolve(name, ("op:add",), weighted=False, first=False)
    if type(linear) is not Epsilon or type(cell) is not Epsilon or type(rules.product_rule(path)) is not SignalTakeAll:
        return None
    return linear.epsilon, cell.epsilon


def _register() -> None:
    from ..kinds.registry import register
    register(InitialState, _absorb_initial_state,
             description="initial state of an unrolled recurrent layer: absorbs the relevance "
                         "that reaches it")


_register()
