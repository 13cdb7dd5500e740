"""The schema of a pipeline file: its sections, their keys with types and meanings, and allowed values."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SCHEMA", "NESTED", "SCHEDULER_NAMES", "FORMATS", "POOLING_KINDS", "FIGURE_KINDS", "ORDERS", "REMOVALS",
           "LABEL", "type_ok", "type_name"]

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
_SPRAY = {
    "methods": (LIST, False, "the methods whose relevance is clustered (default: all)"),
    "target": ((INT, STR), False, "the class whose explanations are clustered: an integer class or 'predicted' "
                                  "(default: the class the model predicts most often)"),
    "pool": (LIST, False, "dims of the relevance summed first (e.g. ['color'])"),
    "downsample": ((INT, TABLE), False, "sum blocks of this many neighbouring entries (all dims, or {dim = n})"),
    "normalise": (STR, False, "'max' (default), 'sum' or 'none': how each map is scaled"),
    "n_clusters": (INT, False, "the number of clusters (default: read from the eigengap)"),
    "max_clusters": (INT, False, "the largest number of clusters the eigengap may pick (default 10)"),
    "gap": (STR, False, "'absolute' (default) or 'relative': how the eigengap is read"),
    "n_neighbors": (INT, False, "neighbours per sample in the affinity graph (default 10)"),
    "embedding": (STR, False, "'spectral' (default) or 'tsne': the 2-D view"),
    "figure": (BOOL, False, "draw figures/spray_<method>.png (default true)"),
}
_ANALYSIS = {"spray": (TABLE, False, "spectral relevance analysis (SpRAy): the model's strategies on one class")}
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
    "analysis": (_ANALYSIS, "table"),
    "figures": (_FIGURE, "array"),
}
NESTED = {("run", "small_settings"): _SMALL, ("evaluation", "perturbation"): _PERTURBATION,
          ("evaluation", "continuity"): _CONTINUITY, ("evaluation", "randomization"): _RANDOMIZATION,
          ("analysis", "spray"): _SPRAY}
_FREE_TABLES = {"params", "options", "groups", "data_params", "model_params", "removal_params"}

SCHEDULER_NAMES = ("serial", "threads", "processes")
FORMATS = ("zarr", "netcdf")
POOLING_KINDS = ("windows", "group", "pool", "plugin")
FIGURE_KINDS = ("plugin", "heatmap", "perturbation")
ORDERS = ("morf", "lerf")
REMOVALS = ("plugin", "uniform", "zero", "mean")
LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")


def type_ok(value: Any, kinds: Any) -> bool:
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


def type_name(value: Any) -> str:
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
