"""Checking a pipeline configuration against the schema: every problem at once, each with its line.

:func:`validate` reports unknown keys with close-match suggestions, wrong types and values,
missing files, unknown plugins, loaders, models and figures, before any work starts; the values
themselves are checked by the code the run uses (:mod:`.values`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..canonizers.torchscript import script_file_problems
from ..explain.engine import METHODS
from ..rules.presets import PRESETS
from .domains import load_named_domains, named_plugins, plugin_tables
from .lines import dotted, key_lines, line_of
from .problems import Problem
from .values import check_values
from .schema import (
    FIGURE_KINDS,
    FORMATS,
    INT,
    LABEL,
    NESTED,
    NUM,
    ORDERS,
    POOLING_KINDS,
    REMOVALS,
    SCHEDULER_NAMES,
    SCHEMA,
    type_name,
    type_ok,
)

__all__ = ["validate"]


class _Checker:
    def __init__(self, lines: Mapping[tuple, int], base: Path):
        self.lines = lines
        self.base = base
        self.problems: list[Problem] = []

    def add(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(line_of(self.lines, path), dotted(path), message))

    def table(self, table: Mapping, schema: Mapping, path: tuple) -> None:
        for key, value in table.items():
            sub = path + (key,)
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(schema)}"
                self.add(sub, f"unknown key {key!r}{hint}")
                continue
            kinds, _, expected = schema[key]
            if not type_ok(value, kinds):
                self.add(sub, f"is {type_name(value)} ({value!r}); expected {expected}")
                continue
            nested = NESTED.get(tuple(p for p in sub if not isinstance(p, int)))
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
        if type_ok(value, INT) and value < 1:
            self.add(path, f"is {value}; expected an integer >= 1")

    def choice(self, path: tuple, value: Any, choices: tuple[str, ...], what: str) -> None:
        if isinstance(value, str) and value not in choices:
            close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(path, f"unknown {what} {value!r}{hint}; expected one of {', '.join(map(repr, choices))}")


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
                c.add((key,), f"is {type_name(value)}; expected a table [{key}]")
                continue
            c.table(value, schema, (key,))
        else:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                c.add((key,), f"is {type_name(value)}; expected an array of tables [[{key}]]")
                continue
            for i, item in enumerate(value):
                c.table(item, schema, (key, i))
    for section in ("data", "model"):
        if section not in config:
            c.add((), f"missing section [{section}]")
    if "methods" not in config:
        c.add((), "missing [[methods]]: at least one explanation method")

    if domains is None:
        domains, broken = load_named_domains(named_plugins(config))
        for plugin, message in broken.items():
            c.add((), message)
    plugins = plugin_tables(domains)

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
            for message in script_file_problems(c.base, model.get("torchscript")):  # refused operators: before a run
                c.add(("model", "torchscript"), message)
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
            if not LABEL.match(name):
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
        if isinstance(m.get("bounds"), list) and (len(m["bounds"]) != 2 or not all(type_ok(b, NUM) for b in m["bounds"])):
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
        if isinstance(pert.get("patch"), list) and not all(type_ok(v, INT) and v >= 1 for v in pert["patch"]):
            c.add(("evaluation", "perturbation", "patch"), f"{pert['patch']!r}; expected positive integers")
        method_refs(("evaluation", "perturbation", "methods"), pert.get("methods"))
    for section in ("continuity", "randomization"):
        table = evaluation.get(section) if isinstance(evaluation.get(section), dict) else None
        if table is None:
            continue
        c.positive(("evaluation", section, "samples"), table.get("samples"))
        method_refs(("evaluation", section, "methods"), table.get("methods"))
        if section == "continuity":
            if type_ok(table.get("points"), INT) and table["points"] < 2:
                c.add(("evaluation", section, "points"), f"is {table['points']}; expected an integer >= 2")
            if type_ok(table.get("radius"), NUM) and not table["radius"] > 0:
                c.add(("evaluation", section, "radius"), f"is {table['radius']}; expected a positive number")
        elif isinstance(table.get("layers"), list) and not all(isinstance(v, str) for v in table["layers"]):
            c.add(("evaluation", section, "layers"), f"{table['layers']!r}; expected module paths (strings)")

    analysis = config.get("analysis") if isinstance(config.get("analysis"), dict) else {}
    if isinstance(analysis.get("spray"), dict):  # its values: values.check_values, with sx.spray's own checks
        method_refs(("analysis", "spray", "methods"), analysis["spray"].get("methods"))

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
    check_values(config, c.base, c.add)
    return c.problems
