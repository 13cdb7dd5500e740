"""Reading a pipeline file (TOML) and resolving it: defaults filled in, small settings applied, paths absolute."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checking import validate
from .problems import ConfigError, Problem

__all__ = ["load_config", "resolve"]


def load_config(source: str | Path | Mapping, *, domains: Mapping[str, Any] | None = None
                ) -> tuple[dict, str, Path, str]:
    """Read and validate a pipeline file or dict: (config, text, base folder, source name).

    Raises
    ------
    ConfigError
        Every problem found, each with its line; also for TOML syntax errors.
    FileNotFoundError
        The pipeline file does not exist (as a ConfigError, which is also a ValueError).
    """
    if isinstance(source, Mapping):
        config, text, base, name = copy.deepcopy(dict(source)), "", Path.cwd(), "<dict>"
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise ConfigError([Problem(None, "", f"the pipeline file {path} does not exist")], name)
        text = path.read_text(encoding="utf-8")
        base = path.resolve().parent
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            m = re.search(r"line (\d+)", str(err))
            raise ConfigError([Problem(int(m.group(1)) if m else None, "", f"not valid TOML: {err}")], name) from err
    problems = validate(config, text, base, domains=domains)
    if problems:
        raise ConfigError(problems, name)
    return config, text, base, name


def resolve(config: Mapping, base: Path, *, small: bool | None = None, scheduler: str | None = None,
            out: str | None = None, name: str = "pipeline") -> dict:
    """The configuration with every default filled in, small settings applied, paths absolute."""
    cfg = copy.deepcopy(dict(config))
    run = cfg.setdefault("run", {})
    run.setdefault("name", name)
    run.setdefault("seed", 0)
    run.setdefault("chunk", 256)
    run.setdefault("scheduler", "threads")
    run.setdefault("format", "zarr")
    run.setdefault("progress", True)
    run.setdefault("small", False)
    if small is not None:
        run["small"] = bool(small)
    if scheduler is not None:
        run["scheduler"] = scheduler
    if out is not None:
        run["out"] = out
    run.setdefault("out", str(Path("results") / run["name"]))
    run["out"] = str(Path(run["out"]).resolve())
    data, model = cfg["data"], cfg["model"]
    data.setdefault("params", {}) if "loader" in data else None
    model.setdefault("params", {}) if "torchscript" not in model else None
    for section, key in (("data", "file"), ("data", "target_file"), ("model", "torchscript"), ("model", "state_dict")):
        if key in cfg[section]:
            p = Path(cfg[section][key])
            cfg[section][key] = str(p if p.is_absolute() else (base / p).resolve())
    pert = cfg.get("evaluation", {}).get("perturbation")
    if pert is not None:
        pert.setdefault("orders", ["morf", "lerf"])
        pert.setdefault("random", True)
        pert.setdefault("removal", "plugin" if "loader" in data else "uniform")
        pert.setdefault("regions_per_step", 1)
        pert.setdefault("batch_size", 256)
    cont = cfg.get("evaluation", {}).get("continuity")
    if cont is not None:
        cont.setdefault("points", 8)
        cont.setdefault("radius", 0.1)
    rand = cfg.get("evaluation", {}).get("randomization")
    if rand is not None:
        rand.setdefault("cascade", True)
    for m in cfg["methods"]:
        m.setdefault("method", "lrp")
        m.setdefault("target", "predicted")
    if run["small"]:
        s = run.get("small_settings", {})
        if "samples" in s:
            data["samples"] = min(s["samples"], data.get("samples", s["samples"]))
        if "chunk" in s:
            run["chunk"] = s["chunk"]
        if "steps" in s and pert is not None:
            pert["steps"] = s["steps"]
        data.get("params", {}).update(s.get("data_params", {}))
        if "params" in model:
            model["params"].update(s.get("model_params", {}))
    return cfg
