"""Writing output files atomically: to a temporary name in the same folder, then renamed into place.

A file written through :func:`atomic_path` is either absent, the previous complete file, or the
new complete file: a run killed mid-write (SIGKILL, a full disk) leaves at most a hidden
``.NAME.sxpartial-*`` file beside it, never a half-written file under the output's name. The
rename is :func:`os.replace` within one folder, atomic on POSIX and Windows file systems.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SciexplainError

__all__ = ["OutputError", "atomic_path", "write_text", "remove_partials", "PARTIAL_MARK"]

#: part of every temporary name, so that leftovers of a killed run can be recognised (and only they)
PARTIAL_MARK = ".sxpartial-"


class OutputError(SciexplainError, OSError):
    """An output folder or file cannot be written (read-only, a path under a file, disk full...)."""


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync; the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed to ``path`` when the block ends.

    The temporary name keeps the suffix (writers such as ``to_netcdf`` and ``savefig`` choose
    their format by it). If the block raises, the temporary file is removed and ``path`` is
    left as it was.

    Raises
    ------
    OutputError
        The folder cannot be written; the message names the file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write {path}: {type(err).__name__}: {err.strerror or err}") from err
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a folder (a writer that made one) or no permission: leave it; it is hidden
        pass


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_partials(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files a killed writer left directly in ``folder``; returns their names.

    Only names that :func:`atomic_path` makes (hidden, with :data:`PARTIAL_MARK`) are touched.
    Call it only while holding the folder's lock (:mod:`sciexplain.scale.locks`), when no other
    writer can be using them.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and PARTIAL_MARK in p.name and p.is_file():
            try:
                p.unlink()
                removed.append(p.name)
            except OSError:
                pass
    return removed
