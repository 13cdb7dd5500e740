"""Exceptions of the text plugin: each says what was wrong and what to do."""

from __future__ import annotations

import pickle

from sciexplain.errors import SciexplainError

__all__ = ["TextInputError", "VocabularyError", "UnsafePickleError", "MissingDataError"]


class TextInputError(SciexplainError, ValueError):
    """Documents that cannot be explained as given (empty, not strings, too long, ...)."""


class VocabularyError(SciexplainError, ValueError):
    """The tokenizer's vocabulary does not fit the model's embedding."""


class UnsafePickleError(SciexplainError, pickle.UnpicklingError):
    """A pickle asked for a class or function outside the small allowed set."""


class MissingDataError(SciexplainError, FileNotFoundError):
    """A data package the loader reads from is not installed."""
