"""The pipeline file: its schema, validation with line numbers, and the resolved configuration.

``tomllib`` gives no positions, so :func:`key_lines` finds the line of every key and table in
the source text itself. :func:`validate` checks the whole file against :data:`SCHEMA` and
returns every problem at once (unknown keys with close-match suggestions, wrong types and
values, missing files, unknown plugins, loaders, models and figures) before any work starts.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SciexplainError

__all__ = ["ConfigError", "Problem", "SCHEMA", "load_config", "validate", "key_lines", "resolve"]


class ConfigError(SciexplainError, ValueError):
    """The pipeline file has problems; ``problems`` lists each with its line."""

    def __init__(self, problems: list[Problem], source: str = "<config>"):
        self.problems = list(problems)
        self.source = source
        lines = [p.format(source) for p in self.problems]
        super().__init__(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} in {source}:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Problem:
    """One problem in a pipeline file: where (line, key path) and what is wrong / expected."""

    line: int | None
    path: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


# -- schema -------------------------------------------------------------------------------------
# A field: (types, required, what is expected). "table" fields hold a nested schema or any table.

STR, INT, NUM, BOOL, TABLE, LIST = "string", "integer", "number", "boolean", "table", "array"

_RUN = {
    "name": (STR, False, "a name for the run (default: the file's stem)"),
    "seed": (INT, False, "an integer seed for models, noise and random orders (default 0)"),
    "chunk": (INT, False, "samples per chunk, >= 1 (default 256)"),
    "scheduler": (STR, False, "'serial', 'threads', 'processes' or a scheduler address like 'tcp://host:8786'"),
    "workers": (INT, False, "workers of the local schedulers, >= 1 (default: the CPU count)"),
    "format": (STR, False, "'zarr' or 'netcdf': the format of the relevance written"),
    "out": (STR, False, "the output folder (default: results/<name>)"),
    "progress": (BOOL, False, "show progress bars (default true)"),
    "small": (BOOL, False, "run with the [run.small_settings] (for tests and quick looks)"),
    "small_settings": (TABLE, False, "settings used when small = true"),
}
_SMALL = {
    "samples": (INT, False, "use only the first N samples"),
    "steps": (INT, False, "perturbation steps"),
    "chunk": (INT, False, "samples per chunk"),
    "data_params": (TABLE, False, "loader parameters that replace [data.params] entries"),
    "model_params": (TABLE, False, "model parameters that replace [model.params] entries"),
}
_DATA = {
    "plugin": (STR, False, "the domain plugin whose loader reads the data (e.g. 'eeg', 'image')"),
    "loader": (STR, False, "the loader's name in the plugin"),
    "params": (TABLE, False, "the loader's parameters"),
    "file": (STR, False, "a .npy, .nc or .zarr file of inputs, samples first"),
    "variable": (STR, False, "the variable in a netCDF/Zarr file (default: its only data variable)"),
    "dims": (LIST, False, "dim names of a .npy input, samples first"),
    "target_file": (STR, False, "a .npy file of integer labels, one per sample (for target = 'true')"),
    "samples": (INT, False, "use only the first N samples"),
}
_MODEL = {
    "plugin": (STR, False, "the domain plugin that provides the model"),
    "name": (STR, False, "a named model of the plugin (e.g. 'LinearEEG', 'efficientnet_lite0')"),
    "params": (TABLE, False, "parameters of the named model or architecture"),
    "torchscript": (STR, False, "a TorchScript file (torch.jit.save), loaded with torch.jit.load"),
    "state_dict": (STR, False, "a state dict file (torch.save(model.state_dict())), loaded with weights_only=True"),
    "architecture": (STR, False, "'plugin:Name' of the architecture a state_dict is loaded into"),
}
_METHOD = {
    "name": (STR, True, "a unique label used in file names (letters, digits, '-', '_')"),
    "method": (STR, False, "an explanation method of sciexplain.explain (default 'lrp')"),
    "preset": (STR, False, "an LRP preset name"),
    "target": ((INT, STR), False, "an integer class, 'predicted' (default) or 'true'"),
    "bounds": (LIST, False, "[low, high] input bounds for box presets"),
    "max_pool": (STR, False, "'winner-take-all' or 'proportional'"),
    "options": (TABLE, False, "method parameters (steps, n_samples, noise, ...)"),
}
_POOLING = {
    "name": (STR, True, "a unique label used in file names"),
    "kind": (STR, True, "'windows', 'group', 'pool' or 'plugin'"),
    "dim": (STR, False, "the dim to window or group"),
    "size": (NUM, False, "window size in coordinate units (for kind = 'windows')"),
    "dims": (LIST, False, "dims to sum over (for kind = 'pool')"),
    "groups": (TABLE, False, "{label = [coordinate values]} (for kind = 'group')"),
    "function": (STR, False, "the plugin's pooling function (for kind = 'plugin')"),
    "params": (TABLE, False, "parameters of the plugin's pooling function"),
    "methods": (LIST, False, "the methods to pool (default: all)"),
}
_PERTURBATION = {
    "orders": (LIST, False, "orders to run: 'morf', 'lerf' (default both)"),
    "random": (BOOL, False, "also a random-order curve (default true)"),
    "steps": (INT, False, "perturbation steps"),
    "removal": (STR, False, "'plugin' (the data plugin's removal), 'uniform', 'zero' or 'mean'"),
    "removal_params": (TABLE, False, "parameters of the plugin's removal"),
    "patch": (LIST, False, "patch size over the last dims of the relevance, e.g. [1, 4]"),
    "regions_per_step": (INT, False, "regions removed per step"),
    "batch_size": (INT, False, "perturbed copies per forward pass"),
    "methods": (LIST, False, "the methods to evaluate (default: all)"),
    "pool": (LIST, False, "dims of the relevance to sum over before ranking (e.g. ['color'])"),
}
_CONTINUITY = {
    "points": (INT, False, "inputs along each sample's path, >= 2 (default 8)"),
    "radius": (NUM, False, "the path's length relative to ||x||_2, > 0 (default 0.1)"),
    "samples": (INT, False, "evaluate only the first N samples (each costs `points` explanations)"),
    "methods": (LIST, False, "the methods to evaluate (default: all)"),
}
_RANDOMIZATION = {
    "cascade": (BOOL, False, "randomize layers cumulatively from the top (default true) or one at a time"),
    "layers": (LIST, False, "module paths to randomize, top first (default: every layer with parameters)"),
    "samples": (INT, False, "evaluate only the first N samples"),
    "methods": (LIST, False, "the methods to evaluate (default: all)"),
}
_EVALUATION = {"perturbation": (TABLE, False, "region perturbation curves and AOPC"),
               "continuity": (TABLE, False, "explanation continuity along short paths from each sample"),
               "randomization": (TABLE, False, "model-parameter randomization test (Spearman per layer)")}
_FIGURE = {
    "name": (STR, True, "a unique label used in file names"),
    "kind": (STR, True, "'plugin', 'heatmap' or 'perturbation'"),
    "function": (STR, False, "the plugin's figure function (for kind = 'plugin')"),
    "method": (STR, False, "the method whose relevance is drawn (default: the first)"),
    "params": (TABLE, False, "parameters of the figure function"),
    "format": (STR, False, "'png' (default), 'pdf' or 'svg'"),
}

#: section -> (schema, kind): "table" one table, "array" an array of tables
SCHEMA: dict[str, tuple[dict, str]] = {
    "run": (_RUN, "table"),
    "data": (_DATA, "table"),
    "model": (_MODEL, "table"),
    "methods": (_METHOD, "array"),
    "pooling": (_POOLING, "array"),
    "evaluation": (_EVALUATION, "table"),
    "figures": (_FIGURE, "array"),
}
_NESTED = {("run", "small_settings"): _SMALL, ("evaluation", "perturbation"): _PERTURBATION,
           ("evaluation", "continuity"): _CONTINUITY, ("evaluation", "randomization"): _RANDOMIZATION}
_FREE_TABLES = {"params", "options", "groups", "data_params", "model_params", "removal_params"}

SCHEDULER_NAMES = ("serial", "threads", "processes")
FORMATS = ("zarr", "netcdf")
POOLING_KINDS = ("windows", "group", "pool", "plugin")
FIGURE_KINDS = ("plugin", "heatmap", "perturbation")
ORDERS = ("morf", "lerf")
REMOVALS = ("plugin", "uniform", "zero", "mean")
_LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")


# -- line numbers -------------------------------------------------------------------------------

_KEY = r'(?:[A-Za-z0-9_\-]+|"[^"]*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(_KEY, text))


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def key_lines(text: str) -> dict[tuple, int]:
    """The line (1-based) of every table header and key, by path: ``("methods", 0, "preset")``.

    Arrays of tables get their index in the path. Keys of inline tables (``params = {a = 1}``)
    get the line of their ``{``-line.
    """
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()

    def indexed(path: tuple[str, ...]) -> tuple:
        out: tuple = ()
        for part in path:
            out = out + (part,)
            if out in counts:
                out = out + (counts[out],)
        return out

    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        m = re.match(rf"^\[\[\s*({_DOTTED})\s*\]\]", line)
        if m:
            path = _split_dotted(m.group(1))
            parent = indexed(path[:-1])
            key = parent + (path[-1],)
            counts[key] = counts.get(key, -1) + 1
            current = key + (counts[key],)
            lines.setdefault(key, no)
            lines[current] = no
            continue
        m = re.match(rf"^\[\s*({_DOTTED})\s*\]", line)
        if m:
            current = indexed(_split_dotted(m.group(1)))
            lines.setdefault(current, no)
            continue
        m = re.match(rf"^({_DOTTED})\s*=(.*)$", line)
        if m:
            key = current + _split_dotted(m.group(1))
            lines.setdefault(key, no)
            rest = m.group(2)
            if "{" in rest:  # inline table: its keys (one level) on this line
                for k in re.findall(rf"[{{,]\s*({_KEY})\s*=", rest):
                    lines.setdefault(key + _split_dotted(k), no)
    return lines


def _line_of(lines: Mapping[tuple, int], path: tuple) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# -- validation ---------------------------------------------------------------------------------

def _type_ok(value: Any, kinds: Any) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    for kind in kinds:
        if kind == STR and isinstance(value, str):
            return True
        if kind == INT and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == NUM and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind == BOOL and isinstance(value, bool):
            return True
        if kind == TABLE and isinstance(value, dict):
            return True
        if kind == LIST and isinstance(value, list):
            return True
    return False


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


class _Checker:
    def __init__(self, lines: Mapping[tuple, int], base: Path):
        self.lines = lines
        self.base = base
        self.problems: list[Problem] = []

    def add(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(_line_of(self.lines, path), _dotted(path), message))

    def table(self, table: Mapping, schema: Mapping, path: tuple) -> None:
        for key, value in table.items():
            sub = path + (key,)
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(schema)}"
                self.add(sub, f"unknown key {key!r}{hint}")
                continue
            kinds, _, expected = schema[key]
            if not _type_ok(value, kinds):
                self.add(sub, f"is {_type_name(value)} ({value!r}); expected {expected}")
                continue
            nested = _NESTED.get(tuple(p for p in sub if not isinstance(p, int)))
            if nested is not None:
                self.table(value, nested, sub)
        for key, (_, required, expected) in schema.items():
            if required and key not in table:
                self.add(path, f"missing required key {key!r}: {expected}")

    def file(self, path: tuple, value: Any, suffixes: tuple[str, ...] | None = None) -> None:
        if not isinstance(value, str):
            return
        p = (self.base / value) if not Path(value).is_absolute() else Path(value)
        if suffixes and p.suffix not in suffixes:
            self.add(path, f"{value!r} has suffix {p.suffix or 'none'}; expected one of {', '.join(suffixes)}")
        if not p.exists():
            self.add(path, f"file {value!r} does not exist (looked for {p})")

    def positive(self, path: tuple, value: Any) -> None:
        if _type_ok(value, INT) and value < 1:
            self.add(path, f"is {value}; expected an integer >= 1")

    def choice(self, path: tuple, value: Any, choices: tuple[str, ...], what: str) -> None:
        if isinstance(value, str) and value not in choices:
            close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(path, f"unknown {what} {value!r}{hint}; expected one of {', '.join(map(repr, choices))}")


def _plugin_tables(domains: Mapping[str, Any]) -> dict[str, dict[str, dict]]:
    out = {}
    for name, dom in domains.items():
        tables = {}
        for member in ("pipeline_loaders", "pipeline_models", "pipeline_architectures", "pipeline_poolings",
                       "pipeline_figures"):
            fn = getattr(dom, member, None)
            tables[member] = dict(fn()) if callable(fn) else {}
        out[name] = tables
    return out


def _named_plugins(config: Mapping) -> set[str]:
    names = set()
    for section in ("data", "model"):
        table = config.get(section)
        if isinstance(table, dict):
            if isinstance(table.get("plugin"), str):
                names.add(table["plugin"])
            arch = table.get("architecture")
            if isinstance(arch, str) and ":" in arch:
                names.add(arch.split(":")[0])
    return names


def load_named_domains(names: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Load only the named domain plugins: ({name: domain}, {name: why it failed to load}).

    Other installed plugins are not imported, so a broken plugin the file does not use cannot
    stop the run.
    """
    from importlib.metadata import entry_points

    from ..plugins import ENTRY_POINT_GROUP
    found, broken = {}, {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in names:
            continue
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 -- reported as a problem of the file
            broken[ep.name] = (f"the {ep.name} plugin ({ep.value}) failed to load: {type(err).__name__}: {err}; "
                               "reinstall it")
            continue
        found[ep.name] = obj() if isinstance(obj, type) else obj
    return found, broken


def validate(config: Mapping, text: str = "", base: str | Path = ".", *, domains: Mapping[str, Any] | None = None
             ) -> list[Problem]:
    """Every problem of a pipeline configuration, each with its line in ``text``.

    Parameters
    ----------
    config : mapping
        The parsed TOML (or a dict given to :func:`sciexplain.pipeline.run`).
    text : str
        The TOML source, for line numbers (empty for a dict: problems then carry no line).
    base : path
        Folder that relative file names are resolved against (the file's folder).
    domains : mapping, optional
        Installed domain objects by name (default: :func:`sciexplain.plugins.load_domains`).
    """
    from ..explain.engine import METHODS
    from ..rules.presets import PRESETS

    lines = key_lines(text) if text else {}
    c = _Checker(lines, Path(base))
    for key, value in config.items():
        if key not in SCHEMA:
            close = difflib.get_close_matches(key, list(SCHEMA), n=1, cutoff=0.6)
            hint = f"; did you mean [{close[0]}]?" if close else f"; known sections: {', '.join(SCHEMA)}"
            c.add((key,), f"unknown section {key!r}{hint}")
            continue
        schema, kind = SCHEMA[key]
        if kind == "table":
            if not isinstance(value, dict):
                c.add((key,), f"is {_type_name(value)}; expected a table [{key}]")
                continue
            c.table(value, schema, (key,))
        else:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                c.add((key,), f"is {_type_name(value)}; expected an array of tables [[{key}]]")
                continue
            for i, item in enumerate(value):
                c.table(item, schema, (key, i))
    for section in ("data", "model"):
        if section not in config:
            c.add((), f"missing section [{section}]")
    if "methods" not in config:
        c.add((), "missing [[methods]]: at least one explanation method")

    if domains is None:
        domains, broken = load_named_domains(_named_plugins(config))
        for plugin, message in broken.items():
            c.add((), message)
    plugins = _plugin_tables(domains)

    def plugin_member(path: tuple, plugin: Any, member: str, name: Any, what: str) -> None:
        if not isinstance(plugin, str) or not isinstance(name, str):
            return
        if plugin not in plugins:
            c.add(path, f"plugin {plugin!r} is not installed (installed: {', '.join(plugins) or 'none'}); "
                        f"pip install sciexplain-{plugin}")
            return
        names = plugins[plugin][member]
        if name not in names:
            close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            c.add(path, f"the {plugin} plugin has no {what} {name!r}{hint}; it has: {', '.join(names) or 'none'}")

    run = config.get("run", {}) if isinstance(config.get("run"), dict) else {}
    for key in ("chunk", "workers"):
        c.positive(("run", key), run.get(key))
    if isinstance(run.get("seed"), int) and not isinstance(run.get("seed"), bool) and run["seed"] < 0:
        c.add(("run", "seed"), f"is {run['seed']}; expected an integer >= 0")
    c.choice(("run", "format"), run.get("format"), FORMATS, "format")
    sched = run.get("scheduler")
    if isinstance(sched, str) and sched not in SCHEDULER_NAMES and ":" not in sched:
        c.choice(("run", "scheduler"), sched, SCHEDULER_NAMES, "scheduler")
    small = run.get("small_settings") if isinstance(run.get("small_settings"), dict) else {}
    for key in ("samples", "steps", "chunk"):
        c.positive(("run", "small_settings", key), small.get(key))

    data = config.get("data") if isinstance(config.get("data"), dict) else None
    data_plugin = None
    if data is not None:
        has_loader, has_file = "loader" in data or "plugin" in data, "file" in data
        if has_loader == has_file:
            c.add(("data",), "name the data either with plugin + loader or with file (exactly one of them)")
        if has_loader:
            if "plugin" not in data or "loader" not in data:
                c.add(("data",), "a plugin loader needs both plugin and loader")
            plugin_member(("data", "loader"), data.get("plugin"), "pipeline_loaders", data.get("loader"), "loader")
            data_plugin = data.get("plugin") if isinstance(data.get("plugin"), str) else None
            for key in ("variable", "dims", "target_file"):
                if key in data:
                    c.add(("data", key), f"{key} applies to data files only, not to a plugin loader")
        if has_file:
            c.file(("data", "file"), data.get("file"), (".npy", ".nc", ".zarr"))
            if "params" in data:
                c.add(("data", "params"), "params apply to plugin loaders only")
        if "target_file" in data:
            c.file(("data", "target_file"), data.get("target_file"), (".npy",))
        c.positive(("data", "samples"), data.get("samples"))
        if isinstance(data.get("dims"), list) and not all(isinstance(d, str) for d in data["dims"]):
            c.add(("data", "dims"), "expected an array of strings")

    model = config.get("model") if isinstance(config.get("model"), dict) else None
    if model is not None:
        ways = [k for k in ("name", "torchscript", "state_dict") if k in model]
        if len(ways) != 1:
            c.add(("model",), "name the model with exactly one of: plugin + name, torchscript, "
                              f"state_dict + architecture (found {', '.join(ways) or 'none'})")
        if "name" in model:
            if "plugin" not in model:
                c.add(("model",), "a named model needs plugin = '<domain>'")
            plugin_member(("model", "name"), model.get("plugin"), "pipeline_models", model.get("name"), "model")
        if "torchscript" in model:
            c.file(("model", "torchscript"), model.get("torchscript"))
            for key in ("plugin", "params", "architecture"):
                if key in model:
                    c.add(("model", key), f"{key} does not apply to a TorchScript model")
        if "state_dict" in model:
            c.file(("model", "state_dict"), model.get("state_dict"))
            arch = model.get("architecture")
            if arch is None:
                c.add(("model",), "a state_dict needs architecture = '<plugin>:<Name>'")
            elif isinstance(arch, str):
                if arch.count(":") != 1:
                    c.add(("model", "architecture"), f"{arch!r}: expected '<plugin>:<Name>', e.g. 'image:FashionCNN'")
                else:
                    plugin, name = arch.split(":")
                    plugin_member(("model", "architecture"), plugin, "pipeline_architectures", name, "architecture")
        elif "architecture" in model:
            c.add(("model", "architecture"), "architecture applies to a state_dict only")

    names: dict[str, set] = {}

    def unique(section: str, i: int, item: Mapping) -> None:
        name = item.get("name")
        if isinstance(name, str):
            if not _LABEL.match(name):
                c.add((section, i, "name"), f"{name!r}: use letters, digits, '-' and '_' only (it names files)")
            seen = names.setdefault(section, set())
            if name in seen:
                c.add((section, i, "name"), f"{name!r} is used twice in [[{section}]]; names must be unique")
            seen.add(name)

    methods = config.get("methods") if isinstance(config.get("methods"), list) else []
    for i, m in enumerate(methods):
        if not isinstance(m, dict):
            continue
        unique("methods", i, m)
        c.choice(("methods", i, "method"), m.get("method"), tuple(METHODS), "method")
        if isinstance(m.get("preset"), str) and m["preset"] not in PRESETS:
            c.choice(("methods", i, "preset"), m["preset"], tuple(PRESETS), "preset")
        if isinstance(m.get("target"), str) and m["target"] not in ("predicted", "true"):
            c.add(("methods", i, "target"), f"{m['target']!r}; expected an integer class, 'predicted' or 'true'")
        if isinstance(m.get("bounds"), list) and (len(m["bounds"]) != 2 or not all(_type_ok(b, NUM) for b in m["bounds"])):
            c.add(("methods", i, "bounds"), f"{m['bounds']!r}; expected [low, high], two numbers")
        c.choice(("methods", i, "max_pool"), m.get("max_pool"), ("winner-take-all", "proportional"), "max_pool")
    method_names = {m.get("name") for m in methods if isinstance(m, dict)}

    def method_refs(path: tuple, refs: Any) -> None:
        if isinstance(refs, list):
            for r in refs:
                if r not in method_names:
                    c.add(path, f"names method {r!r}, which is not in [[methods]] ({', '.join(sorted(map(str, method_names)))})")

    pooling = config.get("pooling") if isinstance(config.get("pooling"), list) else []
    for i, p in enumerate(pooling):
        if not isinstance(p, dict):
            continue
        unique("pooling", i, p)
        kind = p.get("kind")
        c.choice(("pooling", i, "kind"), kind, POOLING_KINDS, "pooling kind")
        needs = {"windows": ("dim", "size"), "group": ("dim", "groups"), "pool": ("dims",), "plugin": ("function",)}
        for key in needs.get(kind, ()) if isinstance(kind, str) else ():
            if key not in p:
                c.add(("pooling", i), f"kind = {kind!r} needs {key!r}")
        if kind == "plugin" and "function" in p:
            if data_plugin is None:
                c.add(("pooling", i, "function"), "plugin poolings need data from a plugin loader")
            else:
                plugin_member(("pooling", i, "function"), data_plugin, "pipeline_poolings", p.get("function"), "pooling")
        if isinstance(p.get("size"), (int, float)) and not isinstance(p.get("size"), bool) and p["size"] <= 0:
            c.add(("pooling", i, "size"), f"is {p['size']}; expected a positive window size")
        method_refs(("pooling", i, "methods"), p.get("methods"))

    evaluation = config.get("evaluation") if isinstance(config.get("evaluation"), dict) else {}
    pert = evaluation.get("perturbation") if isinstance(evaluation.get("perturbation"), dict) else None
    if pert is not None:
        orders = pert.get("orders")
        if isinstance(orders, list):
            for o in orders:
                if o not in ORDERS:
                    c.add(("evaluation", "perturbation", "orders"), f"unknown order {o!r}; expected 'morf' and/or 'lerf'")
        c.choice(("evaluation", "perturbation", "removal"), pert.get("removal"), REMOVALS, "removal")
        if pert.get("removal") == "plugin" and data_plugin is None:
            c.add(("evaluation", "perturbation", "removal"), "'plugin' removal needs data from a plugin loader")
        for key in ("steps", "regions_per_step", "batch_size"):
            c.positive(("evaluation", "perturbation", key), pert.get(key))
        if isinstance(pert.get("patch"), list) and not all(_type_ok(v, INT) and v >= 1 for v in pert["patch"]):
            c.add(("evaluation", "perturbation", "patch"), f"{pert['patch']!r}; expected positive integers")
        method_refs(("evaluation", "perturbation", "methods"), pert.get("methods"))
    for section in ("continuity", "randomization"):
        table = evaluation.get(section) if isinstance(evaluation.get(section), dict) else None
        if table is None:
            continue
        c.positive(("evaluation", section, "samples"), table.get("samples"))
        method_refs(("evaluation", section, "methods"), table.get("methods"))
        if section == "continuity":
            if _type_ok(table.get("points"), INT) and table["points"] < 2:
                c.add(("evaluation", section, "points"), f"is {table['points']}; expected an integer >= 2")
            if _type_ok(table.get("radius"), NUM) and not table["radius"] > 0:
                c.add(("evaluation", section, "radius"), f"is {table['radius']}; expected a positive number")
        elif isinstance(table.get("layers"), list) and not all(isinstance(v, str) for v in table["layers"]):
            c.add(("evaluation", section, "layers"), f"{table['layers']!r}; expected module paths (strings)")

    figures = config.get("figures") if isinstance(config.get("figures"), list) else []
    for i, f in enumerate(figures):
        if not isinstance(f, dict):
            continue
        unique("figures", i, f)
        kind = f.get("kind")
        c.choice(("figures", i, "kind"), kind, FIGURE_KINDS, "figure kind")
        if kind == "plugin":
            if "function" not in f:
                c.add(("figures", i), "kind = 'plugin' needs 'function'")
            elif data_plugin is None:
                c.add(("figures", i, "function"), "plugin figures need data from a plugin loader")
            else:
                plugin_member(("figures", i, "function"), data_plugin, "pipeline_figures", f.get("function"), "figure")
        if kind == "perturbation" and pert is None:
            c.add(("figures", i, "kind"), "a perturbation figure needs [evaluation.perturbation]")
        c.choice(("figures", i, "format"), f.get("format"), ("png", "pdf", "svg"), "figure format")
        if isinstance(f.get("method"), str):
            method_refs(("figures", i, "method"), [f["method"]])
    return c.problems


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
