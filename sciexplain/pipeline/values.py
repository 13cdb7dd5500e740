"""Checking the values of a pipeline file with the code the run itself uses, before anything runs.

:func:`check_values` adds, with their lines, the problems the run would otherwise meet later:
non-finite numbers, options the pipeline sets itself (``options = {dims = ...}``), a method's
configuration as the engine's :class:`~sciexplain.explain.Explainer` checks it (presets,
bounds: reversed, NaN or infinite ones are refused by the rules), method options checked by
explaining one stand-in sample, negative targets, ``data.dims`` against the data file's shape,
the labels of ``target_file`` (:func:`~sciexplain.pipeline.loading.load_labels`), the values of
``[analysis.spray]`` as :func:`sciexplain.spray` checks them, and an output folder that cannot be created. What needs the model or the data themselves (a target beyond the
model's classes) is checked by :func:`sciexplain.pipeline.probe.probe_methods`.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import SciexplainError
from ..explain.engine import METHODS, Explainer
from ..rules.presets import PRESETS
from ..scale import explain_dataset
from .loading import DataLoadError, load_labels
from .schema import INT, LIST, type_ok
from .spray_step import check_spray

__all__ = ["check_values", "RESERVED_OPTIONS", "non_finite"]

#: keys the pipeline passes to explain_dataset itself; an ``options`` entry of the same name would collide
RESERVED_OPTIONS = frozenset(p for p in inspect.signature(explain_dataset).parameters if p != "explain_kwargs") \
    | {"method", "preset", "bounds", "max_pool", "at", "through", "x", "data"}
_WHERE = {"target": "methods[i].target", "dims": "data.dims", "coords": "data (coords come with the data)",
          "method": "methods[i].method", "preset": "methods[i].preset", "bounds": "methods[i].bounds",
          "max_pool": "methods[i].max_pool", "chunk": "run.chunk", "scheduler": "run.scheduler",
          "n_workers": "run.workers", "progress": "run.progress", "store": "run.out"}


def non_finite(obj: Any, path: tuple = ()) -> list[tuple[tuple, float]]:
    """(path, value) of every NaN or infinite float in a parsed configuration (iteratively)."""
    found, stack = [], [(obj, path)]
    while stack:
        item, p = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            found.append((p, item))
        elif isinstance(item, Mapping):
            stack.extend((v, p + (k,)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, p + (i,)) for i, v in enumerate(item))
    return sorted(found, key=lambda pv: str(pv[0]))


def _stand_in() -> Any:
    import torch
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(2, 2)).eval()  # eval: no training-mode warning


def _method(add: Callable[[tuple, str], None], i: int, m: Mapping, plugin_data: bool) -> None:
    """One ``[[methods]]`` entry: the options it may not set, then the engine's own checks."""
    path = ("methods", i)
    options = m.get("options", {}) if isinstance(m.get("options"), dict) else {}
    reserved = sorted(set(options) & RESERVED_OPTIONS)
    for key in reserved:
        where = _WHERE.get(key, "its own key").replace("[i]", f"[{i}]")
        add(path + ("options", key), f"{key!r} is set by the pipeline itself ({where}), not in options")
    target = m.get("target")
    if type_ok(target, INT) and target < 0:
        add(path + ("target",), f"is {target}; expected a class index >= 0, 'predicted' or 'true'")
    method = m.get("method", "lrp")
    preset = m.get("preset", "epsilon-plus")
    if reserved or method not in METHODS or not isinstance(preset, str) or preset not in PRESETS:
        return  # reported by validate
    bounds = m.get("bounds")
    if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 2
                                   and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                           and math.isfinite(b) for b in bounds)):
        return  # reported by validate or as a non-finite number
    kwargs = dict(options)
    kwargs.pop("progress", None)
    model = _stand_in()
    checks = [("options", {"max_pool": m["max_pool"]} if "max_pool" in m else {}, "epsilon-plus", kwargs)]
    # a plugin's data may supply the preset and bounds (its explain defaults): then only the probe knows them
    if method == "lrp" and (not plugin_data or ("preset" in m and "bounds" in m)):
        checks.append(("preset", {"bounds": tuple(bounds) if bounds is not None else None}, preset, {}))
    elif method != "lrp" and bounds is not None:
        checks.append(("bounds", {"bounds": tuple(bounds)}, preset, {}))
    for key, engine_kwargs, use_preset, opts in checks:
        try:
            Explainer(model, method, use_preset, **engine_kwargs, **opts)._check()
        except (SciexplainError, TypeError, ValueError) as err:
            if key == "preset" and "bounds" in m and any(w in str(err) for w in ("bounds", "low", "high")):
                key = "bounds"
            add(path + (key,), f"{err}")
            return
    engine_kwargs = {"max_pool": m["max_pool"]} if "max_pool" in m else {}
    if method == "lrp" and kwargs:
        return
    if not kwargs or isinstance(kwargs.get("baseline"), list):
        return  # nothing method-specific left that a stand-in sample can check (array baselines need the data)
    import torch
    try:  # the method's option values, as the engine checks them when it explains (one stand-in sample)
        Explainer(model, method, **engine_kwargs, **kwargs).explain(torch.zeros(1, 2), 0)
    except Exception as err:  # noqa: BLE001 -- any refusal of an option value is a problem of the file
        add(path + ("options",), f"the method refuses these options: {type(err).__name__}: {err}")


def _npy_shape(path: Path) -> tuple | None:
    import numpy as np
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)  # the header only
    except Exception:  # noqa: BLE001 -- an unreadable file is reported when it is loaded
        return None


def _writable_out(add: Callable[[tuple, str], None], out: Any, base: Path) -> None:
    if not isinstance(out, str):
        return
    p = Path(out) if Path(out).is_absolute() else base / out
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        add(("run", "out"), f"{out!r} cannot be created: {probe} is a file, not a folder")
    elif probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        add(("run", "out"), f"{out!r} cannot be written: {probe} is not writable")


def check_values(config: Mapping, base: Path, add: Callable[[tuple, str], None]) -> None:
    """Add every value problem of ``config`` (see the module docstring) through ``add(path, message)``."""
    for path, value in non_finite(config):
        add(path, f"is {value}; expected a finite number")
    methods = config.get("methods") if isinstance(config.get("methods"), list) else []
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    for i, m in enumerate(methods):
        if isinstance(m, dict):
            _method(add, i, m, "loader" in data or "plugin" in data)
    dims = data.get("dims")
    if type_ok(dims, LIST) and all(isinstance(d, str) for d in dims):
        if any(not d for d in dims) or len(set(dims)) != len(dims):
            add(("data", "dims"), f"{dims!r}: dims must be distinct non-empty names")
        file = data.get("file")
        if isinstance(file, str) and file.endswith(".npy"):
            p = Path(file) if Path(file).is_absolute() else base / file
            shape = _npy_shape(p) if p.is_file() else None
            if shape is not None and len(shape) != len(dims):
                add(("data", "dims"), f"names {len(dims)} dims, but {file} holds {len(shape)}-dimensional data "
                                      f"(shape {shape}); give one name per axis, samples first")
    target_file = data.get("target_file")
    if isinstance(target_file, str):
        p = Path(target_file) if Path(target_file).is_absolute() else base / target_file
        if p.is_file() and p.suffix == ".npy":
            try:
                load_labels(p)
            except DataLoadError as err:
                add(("data", "target_file"), str(err))
    analysis = config.get("analysis") if isinstance(config.get("analysis"), dict) else {}
    if isinstance(analysis.get("spray"), dict):
        check_spray(analysis["spray"], add)
    run = config.get("run") if isinstance(config.get("run"), dict) else {}
    _writable_out(add, run.get("out"), base)
