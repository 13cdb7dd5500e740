"""Errors of a TorchScript conversion: a node that cannot be interpreted, exceptions the scripted code raises."""

from __future__ import annotations

from ...errors import SciexplainError, UnsupportedModelError

__all__ = ["ScriptConversionError", "ScriptRaisedError", "ScriptValueError", "ScriptTypeError", "ScriptIndexError",
           "ScriptAssertionError"]


class ScriptConversionError(UnsupportedModelError):
    """A TorchScript graph contains a node that :func:`to_eager` cannot interpret.

    The message names the node kind, its schema and its source location in the scripted code.
    """


class ScriptRaisedError(SciexplainError, RuntimeError):
    """The interpreted TorchScript code raised an exception (``prim::RaiseException``), where the
    script module itself raises ``torch.jit.Error``. The subclasses below also derive from the
    builtin exception the scripted code named (``raise ValueError(...)`` gives
    :class:`ScriptValueError`, a ``ValueError``)."""


class ScriptValueError(ScriptRaisedError, ValueError):
    """The scripted code raised ``ValueError``."""


class ScriptTypeError(ScriptRaisedError, TypeError):
    """The scripted code raised ``TypeError``."""


class ScriptIndexError(ScriptRaisedError, IndexError):
    """The scripted code raised ``IndexError``."""


class ScriptAssertionError(ScriptRaisedError, AssertionError):
    """The scripted code raised ``AssertionError`` (an ``assert`` statement)."""


_RAISED = {"ValueError": ScriptValueError, "TypeError": ScriptTypeError, "IndexError": ScriptIndexError,
           "AssertionError": ScriptAssertionError}
