"""Provenance of a pipeline run: configuration and its hash, versions, seeds, inputs, times, machine.

The same record is written to ``provenance.json`` and into every output file (netCDF and Zarr
attrs, a comment line of CSV files, PNG/PDF/SVG metadata), so that any file says how it was made.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..plugins import domains

__all__ = ["collect", "config_hash", "file_sha256", "versions", "as_json", "now"]

#: distributions whose versions are recorded when installed
PACKAGES = ("sciexplain", "torch", "numpy", "xarray", "mne", "dask", "distributed", "zarr", "scipy",
            "scikit-learn", "matplotlib")


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def as_json(obj: Any, indent: int | None = None) -> str:
    """Canonical JSON (sorted keys) of ``obj``; values JSON cannot hold become their repr."""
    return json.dumps(_canonical(obj), sort_keys=True, indent=indent)


def config_hash(config: Mapping) -> str:
    """sha256 of the resolved configuration's canonical JSON, without the output folder and
    the scheduler (neither changes a number)."""
    cfg = json.loads(as_json(config))
    run = cfg.get("run", {})
    for key in ("out", "scheduler", "workers", "progress"):
        run.pop(key, None)
    return hashlib.sha256(as_json(cfg).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of every file below a folder (a Zarr store) in sorted order."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    for q in files:
        if p.is_dir():
            h.update(str(q.relative_to(p)).encode())
        with open(q, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def versions(plugins: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Versions of Python, the recorded packages that are installed, and the installed plugins."""
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    if plugins is None:
        plugins = domains()
    out["plugins"] = dict(plugins)
    return out


def machine() -> dict[str, Any]:
    """The machine the run ran on (host name, platform, CPU count)."""
    return {"host": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def collect(config: Mapping, *, config_file: str | None, inputs: Iterable[str | Path], seeds: Mapping[str, int],
            scheduler: str, started: str) -> dict[str, Any]:
    """The provenance record of a run (``finished`` is added when it ends)."""
    record: dict[str, Any] = {
        "config": json.loads(as_json(config)),
        "config_sha256": config_hash(config),
        "config_file": config_file,
        "versions": versions(),
        "seeds": dict(seeds),
        "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in inputs],
        "scheduler": scheduler,
        "machine": machine(),
        "started": started,
    }
    if config_file and Path(config_file).is_file():
        record["config_file_sha256"] = file_sha256(config_file)
    return record
