"""Writing a run's outputs with its provenance: netCDF attrs, a comment line of CSV files, figure metadata.

Every file is written to a temporary name in its folder and renamed into place
(:func:`sciexplain.scale.atomic.atomic_path`), so a killed run never leaves a half-written file
under an output's name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from ..scale.atomic import atomic_path, write_text
from .provenance import as_json

__all__ = ["save_figure", "write_csv", "write_netcdf", "write_text"]


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
