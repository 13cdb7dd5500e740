"""One writer per output folder or store: a lock file created atomically (``O_CREAT | O_EXCL``).

The lock file holds the writer's pid, host, start time and command line (JSON). A second writer
finds it and stops at once with a :class:`LockError` naming the running one. A lock whose
writer is gone is *stale*; what happens then is decided as follows:

* the lock was taken on this host and its pid is no longer alive (the run was killed): the
  lock is taken over, with a :class:`StaleLockWarning` naming the dead run;
* the lock was taken on another host (a shared file system): whether that run is alive cannot
  be known from here, so the lock is refused with a message saying which file to delete once
  that run is known to be over.

Taking over is itself race-free: the stale file is renamed away and only removed if it still
holds the dead writer's record; a live lock renamed by mistake is linked back.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import OutputError

__all__ = ["FolderLock", "LockError", "StaleLockWarning", "LOCK_NAME", "lock_file_for"]

#: the lock file of an output folder (inside it)
LOCK_NAME = ".sciexplain.lock"


class LockError(OutputError):
    """Another run is writing the same output folder or store; ``holder`` is its lock record."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


class StaleLockWarning(UserWarning):
    """A lock left by a run that is no longer running (killed) was taken over."""


def lock_file_for(path: str | os.PathLike, *, inside: bool) -> Path:
    """The lock file of a folder: inside it (an output folder), or beside it (a store, which may be
    replaced as a whole: ``store.zarr`` -> ``.store.zarr.lock``)."""
    path = Path(path)
    return path / LOCK_NAME if inside else path.with_name(f".{path.name}.lock")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # written but not yet filled, or damaged: treat as held, unknown
        return {}


class FolderLock:
    """Hold the lock of ``target`` while a ``with`` block writes it.

    Parameters
    ----------
    target : path
        The output folder or store.
    inside : bool
        Put the lock file inside ``target`` (an output folder; it must exist) or beside it (a
        store that may be removed and recreated while locked).
    what : str
        How messages call ``target`` ("output folder", "store").

    Raises
    ------
    LockError
        Another live run holds the lock (the message names it: pid, host, start time), or a
        lock from another host cannot be verified.
    OutputError
        The folder cannot be written.
    """

    def __init__(self, target: str | os.PathLike, *, inside: bool = True, what: str = "output folder"):
        self.target = Path(target)
        self.path = lock_file_for(self.target, inside=inside)
        self.what = what
        self.record: dict[str, Any] = {}
        self.took_over: dict | None = None
        self._held = False

    def acquire(self) -> FolderLock:
        record = {"pid": os.getpid(), "host": platform.node(),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)[:300], "token": secrets.token_hex(8)}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:  # released meanwhile
                    continue
                if not self._stale(holder) or not self._take_over(holder):
                    raise self._busy(holder)
                continue
            except OSError as err:
                raise OutputError(f"cannot write the {self.what} {self.target}: {type(err).__name__}: "
                                  f"{err.strerror or err}") from err
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
                fh.flush()
            self.record, self._held = record, True
            return self
        raise self._busy(_read(self.path) or {})

    def _stale(self, holder: dict) -> bool:
        if not holder or holder.get("host") != platform.node():
            return False
        pid = holder.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)

    def _take_over(self, holder: dict) -> bool:
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # another process removed it first; try again
        except OSError:
            return False
        moved = _read(aside)
        if moved is not None and moved.get("token") == holder.get("token") and moved.get("pid") == holder.get("pid"):
            aside.unlink(missing_ok=True)
            self.took_over = holder
            warnings.warn(f"took over the lock of the {self.what} {self.target}, left by a run that is no longer "
                          f"running ({_describe(holder)}); its unfinished outputs are redone or resumed",
                          StaleLockWarning, stacklevel=4)
            return True
        try:  # a live lock taken in the meantime: put it back
            os.link(aside, self.path)
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False

    def _busy(self, holder: dict) -> LockError:
        if holder and holder.get("host") not in (None, platform.node()):
            how = (f"it was taken on another host, so whether that run is still going cannot be checked from here; "
                   f"once it is known to be over, delete {self.path}")
        else:
            how = f"wait for it to finish, or write to another {self.what}"
        who = _describe(holder) if holder else "a run whose lock file is not readable yet"
        return LockError(f"the {self.what} {self.target} is being written by another run ({who}): {how}", holder)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        current = _read(self.path)
        if current is not None and current.get("token") == self.record.get("token"):
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire() if not self._held else self

    def __exit__(self, *exc: Any) -> None:
        self.release()
