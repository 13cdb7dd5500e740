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

__all__ = ["load_config", "resolve", "parse", "read_text", "MAX_DEPTH"]

#: the deepest nesting of arrays and tables a pipeline file may use (its schema needs 4)
MAX_DEPTH = 32


def load_config(source: str | Path | Mapping, *, domains: Mapping[str, Any] | None = None
                ) -> tuple[dict, str, Path, str]:
    """Read and validate a pipeline file or dict: (config, text, base folder, source name).

    Raises
    ------
    ConfigError
        Every problem found, each with its line; also for TOML syntax errors, a file that is
        not UTF-8, values nested deeper than :data:`MAX_DEPTH`, and a file that does not exist
        or cannot be read (a ConfigError is also a ValueError).
    """
    if isinstance(source, Mapping):
        config, text, base, name = copy.deepcopy(dict(source)), "", Path.cwd(), "<dict>"
        depth = _depth(config)
        if depth > MAX_DEPTH:
            raise ConfigError([Problem(None, "", f"values are nested {depth} levels deep; at most {MAX_DEPTH} "
                                                 "are allowed")], name)
    else:
        path = Path(source)
        name = str(path)
        text = read_text(path, name)
        base = path.resolve().parent
        config = parse(text, name)
    problems = validate(config, text, base, domains=domains)
    if problems:
        raise ConfigError(problems, name)
    return config, text, base, name


def read_text(path: Path, name: str) -> str:
    """The text of a pipeline file; a missing, unreadable or non-UTF-8 file is a ConfigError with its line."""
    if not path.is_file():
        raise ConfigError([Problem(None, "", f"the pipeline file {path} does not exist"
                                             + (" (it is a folder)" if path.is_dir() else ""))], name)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError([Problem(None, "", f"the pipeline file cannot be read: {err.strerror or err}")], name) from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError([Problem(line, "", f"not UTF-8: byte 0x{raw[err.start]:02x} at column {column} "
                                             "cannot be decoded (TOML files are UTF-8; save the file as UTF-8, "
                                             "e.g. iconv -f latin1 -t utf-8)")], name) from None


def parse(text: str, name: str = "<config>") -> dict:
    """Parse TOML text; a syntax error or nesting deeper than :data:`MAX_DEPTH` is a ConfigError with its line."""
    deep = _too_deep_line(text)
    if deep is not None:
        raise ConfigError([Problem(deep, "", f"arrays or inline tables nested more than {MAX_DEPTH} levels deep")],
                          name)
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise ConfigError([Problem(int(m.group(1)) if m else None, "", f"not valid TOML: {err}")], name) from None
    except RecursionError:
        raise ConfigError([Problem(None, "", f"values nested too deeply (at most {MAX_DEPTH} levels)")],
                          name) from None
    depth = _depth(config)
    if depth > MAX_DEPTH:  # dotted keys and table headers nest without brackets
        raise ConfigError([Problem(None, "", f"tables nested {depth} levels deep; at most {MAX_DEPTH} are allowed")],
                          name)
    return config


def _too_deep_line(text: str) -> int | None:
    """The line where brackets/braces outside strings and comments first nest deeper than MAX_DEPTH."""
    depth, line, quote, i, n = 0, 1, "", 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            if quote in ('"', "'"):
                quote = ""  # a basic string cannot span lines: TOML reports that itself
        elif quote:
            if quote in ('"', '"""') and ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else ch
            i += len(quote)
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _depth(obj: object) -> int:
    """Nesting depth of lists and dicts, counted without recursion."""
    best, stack = 0, [(obj, 0)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
        else:
            continue
        best = max(best, d + 1)
        if best > MAX_DEPTH:
            return best
    return best


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
