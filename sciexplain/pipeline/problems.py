"""A problem in a pipeline file, with its line; the error that lists every problem found, and the run's error."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SciexplainError

__all__ = ["ConfigError", "PipelineError", "Problem"]


class ConfigError(SciexplainError, ValueError):
    """The pipeline file has problems; ``problems`` lists each with its line."""

    def __init__(self, problems: list[Problem], source: str = "<config>"):
        self.problems = list(problems)
        self.source = source
        lines = [p.format(source) for p in self.problems]
        super().__init__(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} in {source}:\n  " + "\n  ".join(lines))


class PipelineError(SciexplainError, RuntimeError):
    """A pipeline run stopped; the message says at which step and why. Outputs written so far stay readable."""


@dataclass(frozen=True)
class Problem:
    """One problem in a pipeline file: where (line, key path) and what is wrong / expected."""

    line: int | None
    path: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
