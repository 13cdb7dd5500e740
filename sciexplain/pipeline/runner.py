"""Running a pipeline: data -> model -> explanations (chunk-wise, resumable) -> pooling ->
evaluation -> figures, every output carrying the run's provenance."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SciexplainError
from ..result import DecompositionWarning
from ..result.plotting import plot_heatmap, pyplot
from . import provenance as prov
from ..scale.atomic import OutputError
from .config import load_config, resolve
from .domains import load_named_domains, named_plugins
from .folder import discard_if_empty, mark_output, open_output
from .loading import PipelineData, _head, load_data, load_model, prepare_inputs
from .methods import explain_kwargs as _explain_kwargs
from .methods import method_target as _target
from .methods import probe_methods
from .outputs import save_figure, write_csv, write_netcdf, write_text
from .problems import ConfigError, PipelineError
from .spray_step import run_spray

__all__ = ["run", "check", "RunResult", "PipelineError"]


@dataclass
class RunResult:
    """What a run produced.

    Attributes
    ----------
    out : Path
        The output folder.
    provenance : dict
        The provenance record (also ``out / "provenance.json"``).
    relevance : dict of str to xarray.DataArray
        Per method, the relevance (backed by its store).
    evaluation : list of dict
        Rows of ``evaluation.csv``: ``method``, ``order`` (``morf``, ``lerf``, ``lerf - morf``,
        ``random``), ``metric`` (``AOPC`` per order, ``ABPC`` for ``lerf - morf``), ``value``,
        ``n_samples``, ``steps``.
    files : list of str
        Files written, relative to ``out``.
    chunks_computed : dict of str to int
        Per method, chunks computed by this run (0 when everything was already in the store).
    checks : list of dict
        Rows of ``checks.csv``: continuity and randomization per method (when the file asks).
    spray : dict of str to xarray.Dataset
        Per method, the ``[analysis.spray]`` result (also ``spray_<method>.nc``).
    """

    out: Path
    provenance: dict
    relevance: dict = field(default_factory=dict)
    evaluation: list = field(default_factory=list)
    files: list = field(default_factory=list)
    chunks_computed: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    spray: dict = field(default_factory=dict)


def check(source: str | Path | Mapping, *, probe: bool = False, small: bool | None = None) -> dict:
    """Validate a pipeline file (or dict) without writing anything; returns the parsed config.

    Every value is checked with the code the run uses (:mod:`sciexplain.pipeline.values`). With
    ``probe=True`` the data and the model are loaded too and the first sample is explained with
    every method, exactly as the run's first step does, so that what only the model or the data
    can refuse (a target beyond the model's classes) is found as well.

    Raises
    ------
    ConfigError
        Every problem, each named with its line.
    PipelineError
        With ``probe=True``: the data or the model could not be loaded (the message names the step).
    """
    config, text, base, name = load_config(source)
    if probe:
        cfg = resolve(config, base, small=small, name=Path(name).stem if not isinstance(source, Mapping) else "pipeline")
        domains, _ = load_named_domains(named_plugins(config))
        _load_and_probe(cfg, domains, text, name)
    return config


#: whether the steps of the run in this context announce themselves on stderr (``run.progress``)
_ANNOUNCE: ContextVar[bool] = ContextVar("sciexplain_pipeline_announce", default=False)


def _step(what: str, fn, *args, **kwargs):
    """Run one step; any failure becomes a PipelineError that names the step.

    With progress on, the step is announced on stderr when it starts and timed when it ends, so
    that loading, training and fitting (which have no progress bar of their own) show what runs.
    """
    from ..scale import SampleError
    announce = _ANNOUNCE.get()
    if announce:
        print(f"sciexplain: {what} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
        if announce:
            print(f"sciexplain: {what}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return out
    except (SampleError, PipelineError, ConfigError, OutputError):
        raise
    except SciexplainError as err:
        raise PipelineError(f"{what}: {err}") from err
    except Exception as err:  # noqa: BLE001 -- any failure is named with its step
        raise PipelineError(f"{what} failed: {type(err).__name__}: {err}") from err


def _load_and_probe(cfg: Mapping, domains: Mapping, text: str, name: str) -> tuple[PipelineData, Any]:
    """The run's first step: data and model loaded, the first sample explained with every method."""
    seed = int(cfg["run"]["seed"])
    data = _step("loading the data", load_data, cfg["data"], domains)
    model = _step("loading the model", load_model, cfg["model"], domains, seed=seed)
    data = _step("preparing the inputs", prepare_inputs, data, model, cfg["data"].get("samples"))
    _step("explaining the first sample with every method (the probe)", probe_methods, cfg["methods"], data, model,
          chunk=int(cfg["run"]["chunk"]), text=text, source=name)
    return data, model


def _with_class_names(R: xr.DataArray, model: Any) -> xr.DataArray:
    """``R`` with a ``target_name`` coordinate on its batch dim (the class each sample's relevance
    explains, by name) when the model carries ``class_names`` (a sequence indexed by class, as the
    image plugin's Fashion-MNIST models do) and every target is one of them; else ``R`` unchanged.
    Figures title their panels with it, and it is saved with the relevance."""
    names = getattr(model, "class_names", None)
    if names is None or isinstance(names, (str, bytes)) or "target_name" in R.coords or "target" not in R.coords:
        return R
    names = [str(n) for n in names]
    t = np.asarray(R.coords["target"].values)
    if t.ndim != 1 or t.shape[0] != R.shape[0] or not np.issubdtype(t.dtype, np.integer) \
            or (t < 0).any() or (t >= len(names)).any():
        return R
    return R.assign_coords(target_name=(R.dims[0], [names[int(i)] for i in t]))


def _pool(R: xr.DataArray, step: Mapping, data: PipelineData, model: Any) -> xr.DataArray | xr.Dataset:
    kind = step["kind"]
    if kind == "windows":
        return R.relevance.windows(step["dim"], step["size"])
    if kind == "group":
        return R.relevance.group(step["dim"], {k: list(v) for k, v in step["groups"].items()})
    if kind == "pool":
        return R.relevance.pool(*step["dims"])
    fn = data.domain.pipeline_poolings()[step["function"]]
    return fn(R, data, model, **step.get("params", {}))


def _evaluated(cfg: Mapping, table: Mapping) -> list[Mapping]:
    """The ``[[methods]]`` an evaluation table names (all by default), in file order."""
    names = table.get("methods")
    return [m for m in cfg["methods"] if names is None or m["name"] in names]


def _first(values: Any, n: int | None) -> Any:
    """The first ``n`` samples of inputs or per-sample targets (everything for None, a scalar as it is)."""
    if n is None or values is None:
        return values
    size = values.shape[0] if hasattr(values, "read") else (None if np.ndim(values) == 0 else len(values))
    if size is None or n >= size:  # a lazily read source (e.g. a .npy file) has a shape, not a len
        return values
    return _head(values, n)


def _non_batch_coords(data: PipelineData) -> dict:
    """The coords of the inputs that do not run along the batch dim (the explanations' labels)."""
    if not data.dims:
        return {}
    bdim = data.dims[0]
    out = {}
    for name, c in data.coords.items():
        cdims = c[0] if isinstance(c, tuple) else ((name,) if name in data.dims else ())
        cdims = (cdims,) if isinstance(cdims, str) else tuple(cdims)
        if bdim not in cdims:
            out[name] = c
    return out


def _summed(R: xr.DataArray, dims: list[str]) -> xr.DataArray:
    """R summed over ``dims``. For results that decompose nothing (gradients) the sum is the usual
    ranking/display convention, not a decomposition: the attrs keep saying so, the warning is dropped."""
    with warnings.catch_warnings():
        if R.attrs.get("decomposes") == "none":
            warnings.simplefilter("ignore", DecompositionWarning)
        return R.relevance.pool(*dims)


def _figure(spec: Mapping, R: xr.DataArray | None, data: PipelineData, model: Any, curves: Mapping) -> Any:
    kind = spec["kind"]
    params = dict(spec.get("params", {}))
    if kind == "plugin":
        return data.domain.pipeline_figures()[spec["function"]](R, data, model, **params)
    if kind == "heatmap":
        pool = params.pop("pool", None)
        return plot_heatmap(_summed(R, pool) if pool else R, params.pop("sample", 0), **params)
    return plot_perturbation_curves(curves, **params)


def plot_perturbation_curves(curves: Mapping[tuple[str, str], xr.DataArray], *, title: str | None = None):
    """Mean perturbation curve (over samples) per method and order; returns a matplotlib Figure."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    styles = {"morf": "-", "lerf": "--", "random": ":"}
    for (method, order), curve in curves.items():
        mean = curve.mean(curve.dims[0]).values
        ax.plot(np.arange(len(mean)), mean, styles.get(order, "-"), label=f"{method} {order}")
    ax.set_xlabel("regions removed (steps)")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_ylabel("mean f(x) of the explained class")
    ax.set_title(title or "region perturbation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run(source: str | Path | Mapping, *, scheduler: Any = None, out: str | Path | None = None,
        small: bool | None = None, progress: bool | None = None, overwrite: bool = False) -> RunResult:
    """Run a pipeline file (or dict): explanations, pooling, evaluation and figures into ``out``.

    Parameters
    ----------
    source : path or mapping
        The TOML file (relative paths inside it are taken from its folder) or a dict of the
        same structure (relative paths from the working directory).
    scheduler : str or dask.distributed.Client, optional
        Overrides ``run.scheduler``: ``"serial"``, ``"threads"``, ``"processes"``, a Client
        or a scheduler address. Changes no number (it is left out of the config hash).
    out : path, optional
        Overrides ``run.out``.
    small : bool, optional
        Overrides ``run.small`` (apply ``[run.small_settings]``).
    progress : bool, optional
        Overrides ``run.progress``.
    overwrite : bool
        Replace relevance stores in ``out`` that hold another computation (a changed file)
        instead of refusing them; only stores sciexplain wrote are ever replaced.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        The file has problems (all listed with their lines), or a method is refused on the
        first sample (:func:`check` with ``probe=True`` finds the same); nothing was written.
    OutputError
        The output folder cannot be created or written, or it holds files sciexplain did not
        write that the run would replace (nothing is changed then).
    LockError
        Another run is writing the output folder (the message names it: pid, host, start time).
        A lock left by a killed run on this host is taken over, with a ``StaleLockWarning``.
    PipelineError
        A step failed; the message names it (and the sample, for a failed explanation).
        Completed chunks stay in their stores, and rerunning resumes after them.
    """
    from ..scale.schedulers import scheduler_name

    started = prov.now()
    config, text, base, name = load_config(source)
    domains, _ = load_named_domains(named_plugins(config))
    stem = Path(name).stem if not isinstance(source, Mapping) else "pipeline"
    cfg = resolve(config, base, small=small,
                  scheduler=scheduler if isinstance(scheduler, (str, type(None))) else None,
                  out=None if out is None else str(out), name=stem)
    runcfg = cfg["run"]
    sched = scheduler if scheduler is not None and not isinstance(scheduler, str) else runcfg["scheduler"]
    show = runcfg["progress"] if progress is None else bool(progress)
    outdir = Path(runcfg["out"])
    lock, created = open_output(outdir, cfg)  # one run per output folder, from here to the end
    token = _ANNOUNCE.set(show)
    try:
        try:
            data, model = _load_and_probe(cfg, domains, text, name)
        except ConfigError:
            lock.release()
            discard_if_empty(outdir, created)
            raise
        return _produce(cfg, None if isinstance(source, Mapping) else str(Path(source).resolve()), data, model,
                        outdir, started=started, sched=sched, sched_name=scheduler_name(sched), show=show,
                        overwrite=overwrite)
    finally:
        _ANNOUNCE.reset(token)
        lock.release()


def _produce(cfg: Mapping, config_file: str | None, data: PipelineData, model: Any, outdir: Path, *, started: str,
             sched: Any, sched_name: str, show: bool, overwrite: bool) -> RunResult:
    """Everything a run writes, into its (locked) output folder."""
    from ..evaluate import abpc, aopc
    from ..scale import SampleError, continuity_dataset, explain_dataset, perturbation_dataset, randomization_dataset

    runcfg = cfg["run"]
    seed = int(runcfg["seed"])
    result = RunResult(out=outdir, provenance={})
    step = _step
    inputs = [p for p in data.files]
    for key in ("torchscript", "state_dict"):
        if key in cfg["model"]:
            inputs.append(Path(cfg["model"][key]))
    record = prov.collect(cfg, config_file=config_file,
                          inputs=inputs, seeds={"run": seed, "torch": seed, "numpy": seed, "perturbation": seed},
                          scheduler=sched_name, started=started)
    result.provenance = record
    mark_output(outdir, record)
    dims = data.dims or None
    fmt = runcfg["format"]
    work = outdir if fmt == "zarr" else outdir / "_chunks"
    work.mkdir(exist_ok=True)
    chunk = int(runcfg["chunk"])
    workers = runcfg.get("workers")

    # explanations
    for method in cfg["methods"]:
        label = method["name"]
        store = work / f"relevance_{label}.zarr"
        try:
            R = explain_dataset(model, data.x, chunk=chunk, scheduler=sched, store=store, target=_target(method, data),
                                dims=dims, coords=data.coords, attrs={**data.attrs, "pipeline_method": label},
                                provenance=record, n_workers=workers, progress=show, overwrite=overwrite,
                                **_explain_kwargs(method, data, model))
        except SampleError as err:
            raise PipelineError(f"method {label!r}: {err} (rerun the same command to resume; "
                                f"finished chunks are in {store})") from err
        except OutputError:
            raise
        except SciexplainError as err:
            raise PipelineError(f"method {label!r}: {err}") from err
        if method.get("target", "predicted") == "predicted" and dims:
            R = R.assign_coords(predicted=(R.dims[0], R.target.values))
        R = _with_class_names(R, model)
        result.relevance[label] = R
        result.chunks_computed[label] = int(R.attrs.get("chunks_computed", 0))
        if fmt == "netcdf":
            write_netcdf(R, outdir / f"relevance_{label}.nc", record)
            result.files.append(f"relevance_{label}.nc")
        else:
            result.files.append(store.name)

    # pooling
    for p in cfg.get("pooling", []):
        for label in p.get("methods", list(result.relevance)):
            pooled = step(f"pooling {p['name']!r} of {label!r}", _pool, result.relevance[label], p, data, model)
            fname = f"pooled_{p['name']}_{label}.nc"
            write_netcdf(pooled, outdir / fname, record)
            result.files.append(fname)

    # evaluation
    curves: dict[tuple[str, str], xr.DataArray] = {}
    markdown: list[str] = []
    pert = cfg.get("evaluation", {}).get("perturbation")
    if pert is not None:
        removal: Any = pert["removal"]
        if removal == "plugin":
            removal = data.domain.removal(**pert.get("removal_params", {}))
        kwargs = {"steps": pert.get("steps"), "removal": removal, "patch": tuple(pert["patch"]) if "patch" in pert else None,
                  "regions_per_step": pert["regions_per_step"], "batch_size": pert["batch_size"], "seed": seed,
                  "chunk": chunk, "scheduler": sched, "n_workers": workers, "progress": show}
        x_eval = data.x
        rows = []
        for label in pert.get("methods", list(result.relevance)):
            R = result.relevance[label]
            if pert.get("pool"):
                R = _summed(R, pert["pool"])
            aopcs = {}
            for order in pert["orders"]:
                c = step(f"perturbation {order} of {label!r}", perturbation_dataset, model, x_eval, R, order=order, **kwargs)
                curves[(label, order)] = c
                write_netcdf(c.rename("f_x"), outdir / f"perturbation_{label}_{order}.nc", record)
                result.files.append(f"perturbation_{label}_{order}.nc")
                aopcs[order] = aopc(c)
                rows.append({"method": label, "order": order, "metric": "AOPC", "value": float(aopcs[order].mean()),
                             "n_samples": int(c.shape[0]), "steps": int(c.shape[1] - 1)})
            if "morf" in aopcs and "lerf" in aopcs:
                rows.append({"method": label, "order": "lerf - morf", "metric": "ABPC",
                             "value": float(abpc(curves[(label, "morf")], curves[(label, "lerf")]).mean()),
                             "n_samples": int(c.shape[0]), "steps": int(c.shape[1] - 1)})
        if pert["random"]:
            first = next(iter(result.relevance.values()))
            if pert.get("pool"):
                first = _summed(first, pert["pool"])
            c = step("perturbation in random order", perturbation_dataset, model, x_eval, first, order="random", **kwargs)
            curves[("random", "random")] = c
            write_netcdf(c.rename("f_x"), outdir / "perturbation_random.nc", record)
            result.files.append("perturbation_random.nc")
            rows.append({"method": "random", "order": "random", "metric": "AOPC", "value": float(aopc(c).mean()),
                         "n_samples": int(c.shape[0]), "steps": int(c.shape[1] - 1)})
        write_csv(rows, outdir / "evaluation.csv", record)
        result.files.append("evaluation.csv")
        markdown += ["| method | order | metric | value | samples | steps |", "|---|---|---|---|---|---|"]
        markdown += [f"| {r['method']} | {r['order']} | {r['metric']} | {r['value']:.4f} | {r['n_samples']} | {r['steps']} |"
                     for r in rows]
        result.evaluation = rows

    # continuity and randomization: chunk-wise on the same scheduler (sciexplain.dataset)
    evaluation = cfg.get("evaluation", {})
    checks: list[dict] = []
    common = {"chunk": chunk, "scheduler": sched, "n_workers": workers, "progress": show, "dims": dims,
              "coords": _non_batch_coords(data)}
    if evaluation.get("continuity") is not None:
        cont = evaluation["continuity"]
        x_eval = _first(data.x, cont.get("samples"))
        for method in _evaluated(cfg, cont):
            label = method["name"]
            c = step(f"continuity of {label!r}", continuity_dataset, model, x_eval, points=int(cont["points"]),
                     radius=float(cont["radius"]), seed=seed, target=_first(_target(method, data), cont.get("samples")),
                     **common, **_explain_kwargs(method, data, model))
            write_netcdf(c, outdir / f"continuity_{label}.nc", record)
            result.files.append(f"continuity_{label}.nc")
            values = c["continuity"].values
            checks.append({"method": label, "check": "continuity (max over the path of L1 change of R / L2 step of x)",
                           "layer": "", "mean": float(values.mean()), "median": float(np.median(values)),
                           "n_samples": int(values.size)})
    if evaluation.get("randomization") is not None:
        rand = evaluation["randomization"]
        x_eval = _first(data.x, rand.get("samples"))
        for method in _evaluated(cfg, rand):
            label = method["name"]
            c = step(f"randomization of {label!r}", randomization_dataset, model, x_eval,
                     cascade=bool(rand["cascade"]), seed=seed, layers=rand.get("layers"),
                     target=_first(_target(method, data), rand.get("samples")), **common,
                     **_explain_kwargs(method, data, model))
            write_netcdf(c, outdir / f"randomization_{label}.nc", record)
            result.files.append(f"randomization_{label}.nc")
            for layer in c["layer"].values:
                rho = c["spearman"].sel(layer=layer).values
                checks.append({"method": label, "check": "randomization spearman" + (" (cascade)" if rand["cascade"]
                                                                                       else " (independent)"),
                               "layer": str(layer), "mean": float(np.nanmean(rho)), "median": float(np.nanmedian(rho)),
                               "n_samples": int(rho.size)})
    if checks:
        write_csv(checks, outdir / "checks.csv", record)
        result.files.append("checks.csv")
        if markdown:
            markdown.append("")
        markdown += ["| method | check | layer | mean | median | samples |", "|---|---|---|---|---|---|"]
        markdown += [f"| {r['method']} | {r['check']} | {r['layer'] or '-'} | {r['mean']:.4f} | {r['median']:.4f} | "
                     f"{r['n_samples']} |" for r in checks]
        result.checks = checks
    result.spray, spray_files, spray_lines = run_spray(cfg, result.relevance, outdir, record, step)
    result.files += spray_files
    if spray_lines:
        markdown += ([""] if markdown else []) + ["SpRAy (spectral relevance analysis) of one class:", ""] + spray_lines
    if markdown:
        markdown.append(f"\n<!-- provenance: config_sha256 {record['config_sha256']}, see provenance.json -->")
        write_text(outdir / "evaluation.md", "\n".join(markdown) + "\n")
        result.files.append("evaluation.md")

    # figures
    if cfg.get("figures"):
        (outdir / "figures").mkdir(exist_ok=True)
    for f in cfg.get("figures", []):
        label = f.get("method", next(iter(result.relevance)))
        R = result.relevance[label]
        fig = step(f"figure {f['name']!r}", _figure, f, R.load() if f["kind"] != "perturbation" else None,
                   data, model, curves)
        if fig is None or not hasattr(fig, "savefig"):
            raise PipelineError(f"figure {f['name']!r}: the figure function returned {type(fig).__name__}, not a "
                                "matplotlib Figure")
        fname = Path("figures") / f"{f['name']}.{f.get('format', 'png')}"
        save_figure(fig, outdir / fname, record)
        result.files.append(str(fname))

    record["finished"] = prov.now()
    record["outputs"] = sorted(result.files)
    record["chunks_computed"] = dict(result.chunks_computed)
    write_text(outdir / "provenance.json", prov.as_json(record, indent=2) + "\n")
    result.files.append("provenance.json")
    return result
