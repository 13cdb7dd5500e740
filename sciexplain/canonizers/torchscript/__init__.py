"""Explain TorchScript models: turn a ``ScriptModule`` into an eager module the engine can record.

``torch.jit.load`` gives a :class:`torch.jit.ScriptModule` whose ``forward`` runs as a compiled
graph: neither a :class:`~torch.overrides.TorchFunctionMode` nor module hooks see what happens
inside, so the engine cannot record the operations that LRP needs (gradient methods work on any
differentiable module). :func:`to_eager` gives an ordinary :class:`torch.nn.Module` that computes
the same function by **interpreting the TorchScript graph in Python**:

* submodules whose class is a standard ``torch.nn`` layer (``__torch__.torch.nn.modules.*``:
  Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d, activations, pooling, Flatten, Dropout, Embedding,
  LSTM, GRU, RNN, Identity, Sequential, ModuleList...) are rebuilt as the real eager module with
  copies of the same parameters and buffers. Hyper-parameters (stride, padding, groups, eps,
  batch_first...) are read from the script module's attributes when it was made with
  ``torch.jit.script``, and from the constant arguments of the layer's one operation when it was
  made with ``torch.jit.trace`` (a traced module keeps no Python attributes). So module-level
  rules and BatchNorm folding apply, and the ledger names layers by their module paths exactly
  as in the original model;
* everything else (the top-level ``forward``, custom submodules, TorchScript functions) is
  interpreted node by node: ``prim::GetAttr``/``SetAttr``/``CallMethod``/``CallFunction``,
  constants, lists, tuples and dicts, ``prim::If`` and ``prim::Loop``, exceptions, and ``aten::``
  operations mapped to the equivalent public torch function (``torch.add``, ``torch.cat``,
  ``F.conv2d``, ``F.batch_norm``, tensor methods such as ``view``...), so the function mode sees
  ordinary torch calls with the names the engine's rules are registered under.

The module's ``.code`` is never evaluated: only the graph's nodes are read, and an operation runs
only if it is a torch operator that the graph names (a builtin of ``torch._C``, a C-implemented
tensor method, a registered ``torch.ops.aten`` operator for non-tensor values, or a method of a
rebuilt torch layer) **and** it is on the operator allowlist (:mod:`.allowlist`: tensor creation
from values, arithmetic, linear algebra, comparison, reductions, shape and layout, indexing, the
layers, scalars, containers and control flow). Anything else (``aten::from_file``, ``aten::save``,
``prim::Print``...) is refused with :class:`ScriptOperatorError` naming each operator, before
anything runs: :func:`check_operators` reads every graph of the module without running it. Loading a file is ``torch.jit.load``'s business, before any of this: its
documentation warns that a malicious file can run code while it is loaded, so load trusted files.
The user's script module is not modified; the eager module holds copies of its tensors and no
reference to it, and it can be pickled and deep-copied (for Dask workers and canonizers).

Checked (``tests/test_torchscript.py``): an MLP, a CNN with BatchNorm, a residual add, ``cat``
and Flatten, an EEG-like Conv1d net, LSTM and GRU classifiers, scripted control flow, an
Embedding model and the image plugin's Fashion CNN, scripted and traced, and (traced only: their
Python code cannot be scripted) the image plugin's EfficientNet-Lite0 and the EEG plugin's
CompactEEGNet, also from files on disk: equal outputs, equal LRP relevance and rules on the same
module paths, balanced ledgers. And ~30 torch layers, their own scripted code (argument checks,
overloads, functional calls) interpreted instead of rebuilt, or traced and converted.

Limits (each is an error naming the node, raised when the node is reached, so a node in a branch
the model never takes, e.g. training-only code, does not stop a conversion):

* nodes without a Python equivalent here (:class:`ScriptConversionError`): ``prim::fork``/``wait``,
  ``prim::CreateObject`` of TorchScript classes (``with torch.no_grad():`` and
  ``torch.enable_grad()`` blocks are supported, nothing else), ``prim::isinstance``, calls through
  module interfaces,
  ``prim::ModuleContainerIndex`` (a ModuleList indexed by a run-time integer), operators outside
  ``aten::`` (``quantized::``, torchbind classes); graphs rewritten by
  ``torch.jit.optimize_for_inference`` were not tried.
* a traced standard layer whose graph is not the layer's plain single operation is interpreted
  node by node instead of rebuilt: a convolution with ``padding_mode`` other than zeros, a
  transposed convolution, an Embedding with ``max_norm``, a BatchNorm traced in training mode or
  without running statistics, an LSTM/GRU traced with an explicit initial state, on unbatched
  input or in training mode, an Upsample with ``recompute_scale_factor``, and layers without a
  reader here (InstanceNorm, EmbeddingBag, MultiheadAttention...). The function is the same, but
  the engine then sees functional calls (``conv2d@block``, ``pad@block``), so module-level rules
  and BatchNorm folding into a module
  do not apply to them, and a functional ``lstm`` has no LRP rule (gradient methods still work).
* a custom subclass of a torch layer (e.g. EfficientNet's ``Conv2dStaticSamePadding``) is not a
  ``torch.nn`` class in the file, so its ``forward`` is interpreted: its ``F.conv2d`` call is explained
  as a functional convolution named ``conv2d@<its path>`` (a following BatchNorm is still folded).
* a frozen module (``torch.jit.freeze``) has no submodules left (BatchNorm already folded, weights
  inlined as constants): it is interpreted as functional code, and the ledger names operations.
* TorchScript writes indexing as its own primitives, one per dim: ``x[:, i]`` is a full slice of
  dim 0 and a select of dim 1. Here the full slice of dim 0 is dropped and the select runs as
  ``x[:, i]``, so the engine sees one indexing as for the eager code; but ``x[1:, 2:]`` runs as two
  and ``x[:]`` as none, so the count of anonymous layout operations in a result's ``rules`` (and the
  ledger's rows for them) can differ from the eager model's.
* a traced model is the trace: control flow was fixed when it was traced (torch's ``TracerWarning``),
  and the conversion reproduces that, not the Python model.
* values are TorchScript's: dtypes are integer codes inside the graph (converted where an
  operation takes a dtype), ``int[]`` lists where eager code has tuples.

The parts, each a module of this package: :mod:`.errors` (what a conversion raises),
:mod:`.allowlist` (the operators that may run),
:mod:`.program` (the plain data a graph compiles to), :mod:`.compiler` (graph to program),
:mod:`.operators` (aten operators as public torch calls), :mod:`.interpreter` (running a program:
:class:`InterpretedModule`), :mod:`.layers` (standard layers rebuilt as eager modules),
:mod:`.converter` (:func:`to_eager`) and :mod:`.canonizer` (:class:`TorchScriptToEager`).
"""

from __future__ import annotations

from .allowlist import ScriptOperatorError, check_operators, refused_operators, script_file_problems
from .canonizer import TorchScriptToEager
from .converter import is_script_module, to_eager
from .errors import (ScriptAssertionError, ScriptConversionError, ScriptIndexError, ScriptRaisedError, ScriptTypeError,
                     ScriptValueError)
from .interpreter import InterpretedModule

__all__ = ["to_eager", "is_script_module", "TorchScriptToEager", "InterpretedModule", "ScriptConversionError", "ScriptRaisedError",
           "ScriptValueError", "ScriptTypeError", "ScriptIndexError", "ScriptAssertionError", "ScriptOperatorError",
           "check_operators", "refused_operators", "script_file_problems"]
