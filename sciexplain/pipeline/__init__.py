"""Declarative, reproducible analysis pipelines: ``sciexplain run analysis.toml``.

A pipeline file (TOML) names the data (a plugin loader or netCDF / Zarr / .npy files), the
model (a plugin's named model, a TorchScript file, or a state dict loaded with
``weights_only=True`` into a named architecture), the explanation methods, pooling steps,
evaluations and figures. :func:`check` validates a file and reports every problem with its
line; :func:`run` runs it chunk-wise on a Dask scheduler (:func:`sciexplain.explain_dataset`),
resumably, and writes every output with its provenance: one run per output folder (a lock
file), every file written under a temporary name and renamed, never a file it did not write
replaced. The format is described in
``examples/README.md``.

>>> import sciexplain as sx
>>> result = sx.pipeline.run("examples/eeg_finger_movements.toml", scheduler="threads")
>>> result.out / "provenance.json"
"""

from __future__ import annotations

from .checking import validate
from .config import load_config
from .lines import key_lines
from .problems import ConfigError, PipelineError, Problem
from .schema import SCHEMA
from .loading import DataLoadError, ModelLoadError, PipelineData
from .outputs import read_provenance
from .runner import RunResult, check, plot_perturbation_curves, run
from ..scale.atomic import OutputError
from ..scale.locks import LockError, StaleLockWarning

__all__ = ["run", "check", "validate", "load_config", "key_lines", "ConfigError", "Problem", "PipelineError",
           "ModelLoadError", "DataLoadError", "PipelineData", "RunResult", "SCHEMA", "plot_perturbation_curves",
           "OutputError", "LockError", "StaleLockWarning", "read_provenance"]
