"""The domain plugins a pipeline file names: loading only those, and the tables of what each offers."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from ..plugins import ENTRY_POINT_GROUP

__all__ = ["load_named_domains", "named_plugins", "plugin_tables"]


def plugin_tables(domains: Mapping[str, Any]) -> dict[str, dict[str, dict]]:
    out = {}
    for name, dom in domains.items():
        tables = {}
        for member in ("pipeline_loaders", "pipeline_models", "pipeline_architectures", "pipeline_poolings",
                       "pipeline_figures"):
            fn = getattr(dom, member, None)
            tables[member] = dict(fn()) if callable(fn) else {}
        out[name] = tables
    return out


def named_plugins(config: Mapping) -> set[str]:
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
