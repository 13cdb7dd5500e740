"""The ``[analysis.spray]`` step of a pipeline: SpRAy on one class's stored relevance, per method, with provenance.

For every method it names (all by default), the run takes the stored relevance, keeps the
samples explained for the chosen class (``target``: an integer class, or ``"predicted"``: the
class explained most often, which for a method with ``target = "predicted"`` is the class the
model predicts most often), and runs :func:`sciexplain.spray` on them. It writes
``spray_<method>.nc`` (the clusters, the spectrum, the embedding and the prototypes, with the
run's provenance), ``figures/spray_<method>.png`` (:func:`sciexplain.plot_spray`, unless
``figure = false``) and a row per method in ``evaluation.md``. What sx.spray warns about (the
eigengap picking one cluster) is kept with the result: ``attrs["notes"]`` and a line under the table.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..analysis.spray import check_parameters, spray
from ..analysis.spray_plot import plot_spray
from ..errors import ExplainWarning, InputError
from .outputs import save_figure, write_netcdf
from .problems import PipelineError

__all__ = ["spray_kwargs", "check_spray", "run_spray", "spray_class"]

#: keys of the section passed to sx.spray as they are
_PASSED = ("pool", "downsample", "n_clusters", "max_clusters", "gap", "n_neighbors", "embedding")


def spray_kwargs(table: Mapping) -> dict:
    """The keyword arguments of :func:`sciexplain.spray` a ``[analysis.spray]`` table asks for.

    ``normalise = "none"`` (TOML has no null) becomes ``None``; keys left out keep sx.spray's defaults.
    """
    kwargs = {key: table[key] for key in _PASSED if key in table}
    if "normalise" in table:
        kwargs["normalise"] = None if table["normalise"] == "none" else table["normalise"]
    if isinstance(kwargs.get("downsample"), Mapping):
        kwargs["downsample"] = dict(kwargs["downsample"])
    return kwargs


def check_spray(table: Mapping, add: Callable[[tuple, str], None]) -> None:
    """Add the problems sx.spray would raise for the section's values, each at its key (the run's own check)."""
    path = ("analysis", "spray")
    kwargs = spray_kwargs(table)
    checked = {k: v for k, v in kwargs.items() if k in ("n_clusters", "n_neighbors", "max_clusters", "embedding",
                                                           "normalise", "gap")}
    for key, value in checked.items():  # one at a time, so every refused key is named
        try:
            check_parameters(**{key: value})
        except InputError as err:
            add(path + ("normalise" if key == "normalise" else key,), str(err).replace("None", "'none'"))
    down = table.get("downsample")
    factors = down.values() if isinstance(down, Mapping) else [down] if down is not None else []
    if any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in factors):
        add(path + ("downsample",), f"{down!r}; expected an integer >= 1 or a table of them, {{dim = n}}")
    pool = table.get("pool")
    if isinstance(pool, list) and not all(isinstance(d, str) and d for d in pool):
        add(path + ("pool",), f"{pool!r}; expected dim names (strings)")
    target = table.get("target")
    if isinstance(target, bool) or (isinstance(target, int) and target < 0):
        add(path + ("target",), f"is {target!r}; expected a class index >= 0 or 'predicted'")
    elif isinstance(target, str) and target != "predicted":
        add(path + ("target",), f"{target!r}; expected an integer class or 'predicted'")


def spray_class(R: xr.DataArray, target: int | str) -> int:
    """The class analysed: ``target`` itself, or for ``"predicted"`` the class explained most often (ties: lowest)."""
    if "target" not in R.coords:
        raise PipelineError("the relevance has no per-sample 'target' coord, so its class cannot be chosen")
    explained = np.asarray(R["target"].values).astype(np.int64)
    if target != "predicted":
        return int(target)
    classes, counts = np.unique(explained, return_counts=True)
    return int(classes[np.argmax(counts)])


def _one(R: xr.DataArray, target: int | str, kwargs: Mapping) -> xr.Dataset:
    c = spray_class(R, target)
    bdim = R.dims[0]
    keep = np.flatnonzero(np.asarray(R["target"].values).astype(np.int64) == c)
    if keep.size == 0:
        present = sorted(set(np.asarray(R["target"].values).astype(np.int64).tolist()))
        raise PipelineError(f"no sample is explained for class {c} (explained classes: {present}); "
                            "set [analysis.spray] target to one of them")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExplainWarning)
        ds = spray(R.isel({bdim: keep}), **kwargs)
    notes = []
    for w in caught:  # SpRAy's own warnings go with the result; anything else is passed on
        if issubclass(w.category, ExplainWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if notes:
        ds.attrs["notes"] = " | ".join(notes)
    ds.attrs["class"] = c
    ds.attrs["samples_of_run"] = int(R.sizes[bdim])
    return ds


def run_spray(cfg: Mapping, relevance: Mapping[str, xr.DataArray], outdir: Path, record: Mapping,
              step: Callable[..., Any]) -> tuple[dict, list[str], list[str]]:
    """Run ``[analysis.spray]`` (if the file has it): returns (datasets by method, files written, Markdown lines)."""
    table = cfg.get("analysis", {}).get("spray")
    if table is None:
        return {}, [], []
    kwargs = spray_kwargs(table)
    target = table.get("target", "predicted")
    datasets, files = {}, []
    for label in table.get("methods", list(relevance)):
        R = relevance[label]
        ds = step(f"SpRAy of {label!r}", _one, R, target, kwargs)
        ds.attrs["pipeline_method"] = label
        write_netcdf(ds, outdir / f"spray_{label}.nc", record)
        files.append(f"spray_{label}.nc")
        if table.get("figure", True):
            (outdir / "figures").mkdir(exist_ok=True)
            fig = step(f"SpRAy figure of {label!r}", plot_spray, ds)
            fname = Path("figures") / f"spray_{label}.png"
            save_figure(fig, outdir / fname, record)
            files.append(str(fname))
        datasets[label] = ds
    lines = ["| method | class | samples | clusters | chosen by | gap | cluster sizes |", "|---|---|---|---|---|---|---|"]
    for label, ds in datasets.items():
        how = ds.attrs["n_clusters_from"] + (f" ({ds.attrs['gap']})" if ds.attrs["n_clusters_from"] == "eigengap" else "")
        lines.append(f"| {label} | {ds.attrs['class']} | {ds.sizes[ds.attrs['batch_dim']]} | {ds.attrs['n_clusters']} | "
                     f"{how} | {ds.attrs['chosen_gap']:.4f} | {', '.join(map(str, ds.cluster_size.values.tolist()))} |")
    lines += [f"\n{label}: {ds.attrs['notes']}" for label, ds in datasets.items() if "notes" in ds.attrs]
    return datasets, files, lines
