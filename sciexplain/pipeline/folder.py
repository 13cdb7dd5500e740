"""A run's output folder: created or checked, locked for one run at a time, marked as sciexplain's.

:func:`open_output` creates the folder (an unwritable one is an
:class:`~sciexplain.scale.atomic.OutputError`), takes its lock
(:class:`~sciexplain.scale.locks.FolderLock`: a second run stops at once, naming the running
one; a lock left by a killed run on this host is taken over), and refuses a folder sciexplain did
not write if it already holds a file the run would replace. :func:`mark_output` writes the
marker (``.sciexplain-run``) that makes the folder recognisably sciexplain's and removes the
temporary files a killed run left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .._version import __version__
from ..scale.atomic import OutputError, remove_partials, write_text
from ..scale.locks import FolderLock

__all__ = ["MARKER", "open_output", "mark_output", "planned_outputs", "is_run_folder"]

#: the file that marks a folder as a sciexplain run's output folder
MARKER = ".sciexplain-run"


def planned_outputs(cfg: Mapping) -> set[str]:
    """The names (directly in the output folder) a resolved configuration writes."""
    labels = [m["name"] for m in cfg.get("methods", [])]
    fmt = cfg.get("run", {}).get("format", "zarr")
    names = {"provenance.json", "evaluation.md", "evaluation.csv", "checks.csv", "figures", "_chunks"}
    names |= {f"relevance_{label}.{'zarr' if fmt == 'zarr' else 'nc'}" for label in labels}
    for p in cfg.get("pooling", []):
        names |= {f"pooled_{p['name']}_{label}.nc" for label in p.get("methods", labels)}
    evaluation = cfg.get("evaluation", {})
    pert = evaluation.get("perturbation")
    if pert is not None:
        names |= {f"perturbation_{label}_{order}.nc" for label in pert.get("methods", labels)
                  for order in pert.get("orders", ("morf", "lerf"))} | {"perturbation_random.nc"}
    for section in ("continuity", "randomization"):
        if evaluation.get(section) is not None:
            names |= {f"{section}_{label}.nc" for label in evaluation[section].get("methods", labels)}
    return names


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by ``sciexplain run`` (its marker, or a provenance.json of a run)."""
    if (folder / MARKER).is_file():
        return True
    try:
        return "config_sha256" in json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def open_output(outdir: Path, cfg: Mapping) -> tuple[FolderLock, bool]:
    """Create (if needed) and lock the output folder; returns (the held lock, whether it was created).

    Raises
    ------
    OutputError
        The folder cannot be created or written, or it is a folder sciexplain did not write that
        already holds files this run would replace (nothing is changed then).
    LockError
        Another run is writing the folder.
    """
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = "a file is in the way" if isinstance(err, (FileExistsError, NotADirectoryError)) else \
            (err.strerror or str(err))
        raise OutputError(f"the output folder {outdir} cannot be created: {why} ({type(err).__name__})") from err
    lock = FolderLock(outdir, inside=True, what="output folder").acquire()
    try:
        if not is_run_folder(outdir):
            clash = sorted(planned_outputs(cfg) & {p.name for p in outdir.iterdir()})
            if clash:
                raise OutputError(f"the output folder {outdir} was not written by sciexplain run (it has no {MARKER} "
                                  f"marker) and holds {', '.join(clash[:5])}{' ...' if len(clash) > 5 else ''}, which "
                                  "this run would replace: nothing was changed; choose another output folder (--out)")
    except BaseException:
        lock.release()
        raise
    return lock, created


def mark_output(outdir: Path, record: Mapping) -> None:
    """Mark ``outdir`` as a run folder (the run's config hash) and remove a killed run's temporary files."""
    write_text(outdir / MARKER, json.dumps({"written_by": f"sciexplain run {__version__}",
                                            "config_sha256": record.get("config_sha256"),
                                            "started": record.get("started")}, sort_keys=True) + "\n")
    for folder in (outdir, outdir / "figures", outdir / "_chunks"):
        remove_partials(folder)


def discard_if_empty(outdir: Path, created: bool) -> None:
    """Remove an output folder this run created if nothing was written into it."""
    if created:
        try:
            outdir.rmdir()
        except OSError:
            pass
