"""From a ``[[methods]]`` entry to the arguments of its explanation, and the probe that tries them.

:func:`probe_methods` is the run's first step and ``sciexplain check --probe``: it explains the
first sample with every method exactly as the chunked run will (the same arguments, the same
``explain_dataset`` preparation and batch function), so a value only the model or the data can
refuse (a target beyond the model's classes, bounds the plugin's preset does not use) is a
:class:`ConfigError` with its line before any output is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SciexplainError
from ..scale.explain_runner import _explain_batch
from ..scale.jobs import _data_setup, _explain_spec, _target_slice, _targets
from .lines import dotted, key_lines, line_of
from .loading import PipelineData
from .problems import ConfigError, PipelineError, Problem

__all__ = ["explain_kwargs", "method_target", "probe_methods"]


def explain_kwargs(method: Mapping, data: PipelineData, model: Any) -> dict:
    """The keyword arguments of ``method``'s explanation: the data's defaults, then the file's."""
    defaults = data.explain(model) if callable(data.explain) else dict(data.explain)
    kwargs = {k: v for k, v in defaults.items() if k in ("preset", "bounds", "max_pool")}
    kwargs["method"] = method["method"]
    if "preset" not in kwargs and data.domain is not None:  # as sx.explain does for the domain's data
        kwargs["preset"] = data.domain.default_preset
    if "preset" in method:
        kwargs["preset"] = method["preset"]
    if "bounds" in method:
        kwargs["bounds"] = tuple(method["bounds"])
    if "max_pool" in method:
        kwargs["max_pool"] = method["max_pool"]
    if kwargs["method"] != "lrp":
        for key in ("preset", "bounds", "max_pool"):
            if key not in method:
                kwargs.pop(key, None)
    kwargs.update(method.get("options", {}))
    return kwargs


def method_target(method: Mapping, data: PipelineData) -> Any:
    """The target ``method`` explains: None (predicted), the labels ('true') or one class."""
    t = method.get("target", "predicted")
    if t == "predicted":
        return None
    if t == "true":
        if data.y is None:
            raise PipelineError(f"method {method['name']!r} explains target = 'true', but the data have no labels "
                                "(give data.target_file, or use a loader that provides labels)")
        return data.y
    return int(t)


def _key_of(message: str, method: Mapping) -> tuple:
    for key in ("target", "bounds", "max_pool", "preset", "options"):
        if key in message and (key in method or key == "target"):
            return (key,)
    return ()


def probe_methods(methods: list[Mapping], data: PipelineData, model: Any, *, chunk: int, text: str = "",
                  source: str = "<config>") -> None:
    """Explain the first sample with every method as the run does; every refusal is a problem with its line.

    Raises
    ------
    ConfigError
        A method's values are refused by the model or the data (each problem with its line).
    """
    lines = key_lines(text) if text else {}
    problems: list[Problem] = []

    def add(path: tuple, message: str) -> None:
        problems.append(Problem(line_of(lines, path), dotted(path), message))

    try:
        src, n, dims, _, other = _data_setup(data.x, chunk, data.dims or None, data.coords)
    except SciexplainError as err:
        add(("data", "dims") if "dims" in str(err) else ("data",), f"the data are refused: {err}")
        raise ConfigError(problems, source) from err
    x0 = src.read(0, 1)
    if np.issubdtype(np.asarray(x0).dtype, np.floating) and not np.isfinite(x0).all():
        return  # not a value of the file: the run names the sample
    for i, method in enumerate(methods):
        path = ("methods", i)
        try:
            target = _targets(method_target(method, data), n)
            spec = _explain_spec(model, explain_kwargs(method, data, model), dims, other)
            _explain_batch(model, x0, _target_slice(target, 0, 1), spec)
        except PipelineError as err:
            add(path + ("target",), str(err))
        except (SciexplainError, TypeError, ValueError) as err:
            add(path + _key_of(str(err), method), f"method {method['name']!r} is refused on the first sample: "
                                                  f"{type(err).__name__}: {err}")
        except Exception as err:  # noqa: BLE001 -- not a value of the file: the model itself fails
            raise PipelineError(f"explaining the first sample with method {method['name']!r} failed: "
                                f"{type(err).__name__}: {err}") from err
    if problems:
        raise ConfigError(problems, source)
