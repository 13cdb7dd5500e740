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

This module holds :func:`unroll` and the canonizer, and exports the unrolled modules with them:
``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` are unrolled in :mod:`.recurrent_layers`, the cells in
:mod:`.recurrent_cells`, both from the steps in :mod:`.recurrent_steps`; the initial-state leaf
is a kind of :mod:`sciexplain.kinds.units.recurrent`.
"""

from __future__ import annotations

from torch import nn

from ..kinds.units.recurrent import InitialState
from ..rules.affine import Epsilon
from ..rules.products import SignalTakeAll
from ..rules.presets import PROPORTIONAL
from .base import ModelCanonizer
from .recurrent_cells import UnrolledGRUCell, UnrolledLSTMCell, UnrolledRNNCell
from .recurrent_fused import FusedLSTM
from .recurrent_layers import UnrolledGRU, UnrolledLSTM, UnrolledRNN
from .recurrent_steps import PackedSequenceError, prepare_sequence  # noqa: F401  (prepare_sequence: as before)

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
    if rules is None:  # not LRP: the rules do not matter, the fused forward is the fastest
        return PROPORTIONAL.epsilon, PROPORTIONAL.epsilon
    name = f"{path}#op"
    linear = rules.resolve(name, (nn.Linear, "op:linear"), weighted=True, first=False)
    cell = rules.resolve(name, ("op:add",), weighted=False, first=False)
    if type(linear) is not Epsilon or type(cell) is not Epsilon or type(rules.product_rule(path)) is not SignalTakeAll:
        return None
    return linear.epsilon, cell.epsilon
