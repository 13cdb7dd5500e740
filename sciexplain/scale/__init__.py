"""Explanations and evaluations of whole data sets, chunk by chunk, on Dask (``sx.dataset``).

Modules: :mod:`.sources` (what a chunk's inputs are read from), :mod:`.jobs` (one chunk of work
and the setup the runners share), :mod:`.schedulers` (running the jobs), :mod:`.stores` (the
Zarr stores of relevance), and the runners, :mod:`.explain_runner` (``explain_dataset``) and
:mod:`.evaluation_runners` (``perturbation_dataset``, ``continuity_dataset``,
``randomization_dataset``). Dask and Zarr are imported on first use.
"""

from .evaluation_runners import continuity_dataset, continuity_path, perturbation_dataset, randomization_dataset
from .explain_runner import explain_dataset
from .jobs import SampleError
from .schedulers import LOCAL_SCHEDULERS, SchedulerError
from .sources import NpySource
from .stores import StoreError, open_relevance

__all__ = ["explain_dataset", "perturbation_dataset", "continuity_dataset", "randomization_dataset",
           "continuity_path", "open_relevance", "NpySource", "SampleError", "StoreError", "SchedulerError",
           "LOCAL_SCHEDULERS"]
