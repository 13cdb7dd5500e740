"""Writing a run's outputs with its provenance: netCDF attrs, a comment line of CSV files, figure metadata.

Every file is written to a temporary name in its folder and renamed into place
(:func:`sciexplain.scale.atomic.atomic_path`), so a killed run never leaves a half-written file
under an output's name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from ..scale.atomic import atomic_path, write_text
from .provenance import as_json

__all__ = ["save_figure", "write_csv", "write_netcdf", "write_text", "read_provenance"]


def _nc_attrs(provenance: Mapping) -> dict:
    return {"provenance": as_json(provenance), "config_sha256": provenance["config_sha256"]}


def write_netcdf(obj: xr.DataArray | xr.Dataset, path: Path, provenance: Mapping) -> None:
    obj = obj.copy()
    obj.attrs = {**{k: v for k, v in obj.attrs.items() if k not in ("store",)}, **_nc_attrs(provenance)}
    if isinstance(obj, xr.Dataset):
        for name in obj.variables:
            obj[name].attrs.pop("store", None)
    else:  # the provenance also as a global attribute, where netCDF tools look first
        obj = obj.to_dataset(name=obj.name or "values", promote_attrs=True)
    obj = obj.load()
    with atomic_path(path) as tmp:
        obj.to_netcdf(tmp)


def write_csv(rows: list[dict], path: Path, provenance: Mapping) -> None:
    buf = io.StringIO()
    buf.write(f"# provenance: {as_json(provenance)}\n")
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def save_figure(fig: Any, path: Path, provenance: Mapping) -> None:
    import matplotlib.pyplot as plt
    text = as_json(provenance)
    key = {"png": "provenance", "pdf": "Subject", "svg": "Description"}[path.suffix[1:]]
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={key: text})
    finally:
        plt.close(fig)


def read_provenance(path: str | Path) -> dict:
    """The provenance record a pipeline output carries, read back from the file itself.

    Parameters
    ----------
    path : path-like
        A run's output: a netCDF file or Zarr store (the ``provenance`` attribute), a CSV table
        (its first line, ``# provenance: {...}``), a PNG figure (its metadata; PDF and SVG figures
        keep it in their Subject / Description metadata, for PDF and SVG tools),
        ``evaluation.md`` (only the config hash is written there: ``{"config_sha256": ...}``) or
        ``provenance.json``.

    Returns
    -------
    dict
        The record (config hash, versions, data and model hashes, the run's settings).

    Raises
    ------
    sciexplain.InputError
        When the file carries no provenance (it was not written by a pipeline run).
    """
    from ..errors import InputError
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".nc", ".zarr"):
            with (xr.open_zarr(path) if suffix == ".zarr" else xr.open_dataset(path)) as d:
                return json.loads(d.attrs["provenance"])
        if suffix == ".csv":
            first = (path.read_text(encoding="utf-8").splitlines() or [""])[0]
            if first.startswith("# provenance: "):
                return json.loads(first[len("# provenance: "):])
        if suffix == ".png":
            from PIL import Image
            with Image.open(path) as im:
                return json.loads(im.info["provenance"])
        if suffix == ".md":
            found = re.search(r"<!-- provenance: config_sha256 (\w+)", path.read_text(encoding="utf-8"))
            if found is not None:
                return {"config_sha256": found.group(1)}
        elif suffix not in (".nc", ".zarr", ".csv", ".png"):
            return json.loads(path.read_text(encoding="utf-8"))
        why = "no provenance in it"
    except (KeyError, ValueError, OSError) as err:
        why = f"{type(err).__name__}: {err}"
    raise InputError(f"{path} carries no provenance record a pipeline run writes ({why}); read the outputs "
                     "of `sciexplain run`")
