"""Exceptions and warnings raised by sciexplain.

Every error says what was wrong and what the caller can do about it. They subclass the builtin
exception a caller would naturally catch (``ValueError`` for bad input, ``TypeError`` for a
model the engine cannot map to rules), so generic handlers keep working.
"""

from __future__ import annotations


class SciexplainError(Exception):
    """Base class of all sciexplain errors."""


class InputError(SciexplainError, ValueError):
    """The data or arguments given to an explanation are unusable (shape, NaN/Inf, target...)."""


class UnsupportedModelError(SciexplainError, TypeError):
    """The model contains a layer or operation for which no relevance rule is defined.

    The message names every offending module path or operation, its type, and the options.
    """


class RuleError(SciexplainError, ValueError):
    """A rule or preset is misconfigured, or was mapped onto a layer it cannot apply to."""


class ExplainWarning(UserWarning):
    """Something about an explanation the caller should know (e.g. training mode switched off)."""


class InputTypeError(SciexplainError, TypeError):
    """An argument has the wrong type (a list where an array is needed, a non-string document...)."""


class DataNotFoundError(SciexplainError, FileNotFoundError):
    """A data file, model file or bundled data package is missing; the message names what to install."""


class MissingDependencyError(SciexplainError, ImportError):
    """An optional package that this function needs is not installed; the message names it."""


class ComputationError(SciexplainError, RuntimeError):
    """A computation could not be completed (training diverged, a solver failed...)."""


class LedgerError(SciexplainError, AssertionError):
    """The relevance ledger does not balance: sum(R) + absorbed != prediction."""
