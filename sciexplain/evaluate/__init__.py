"""Measuring the quality of explanations (``sx.evaluate``).

``perturbation_curve``  region perturbation / pixel flipping (Bach et al. 2015; Samek et al.
                        2017, "Evaluating the visualization of what a deep neural network has
                        learned"): remove the most (MoRF) or least (LeRF) relevant regions
                        first and record how the explained output falls
``aopc``, ``abpc``      area over the MoRF perturbation curve (Samek et al. 2017) and the area
                        between the LeRF and MoRF curves
``continuity``          the largest ratio ||R(x) - R(x')||_1 / ||x - x'||_2 along a path of
                        inputs (Montavon et al. 2017, Sec. 7.1)
``input_invariance``    explanations of a model and of its twin that sees shifted inputs and
                        absorbs the shift in its first bias (Kindermans et al. 2017)
``randomization``       model-parameter randomization test (Adebayo et al. 2018)
``bootstrap_ci``        percentile bootstrap confidence interval of a mean over samples
``compare``             several explanations of one batch side by side: MoRF/LeRF curves over
                        several noise seeds, AOPC and ABPC with bootstrap confidence intervals,
                        as one tidy Dataset (methods x metrics)

The perturbation functions accept any callable model (an ``nn.Module`` or e.g. a Fisher-vector
pipeline ``f(x_batch) -> scores``): it is called on tensors and may return a tensor or an array.

Everything works on batches and returns labelled xarray objects; the sample dim is the batch
dim of the explanation evaluated (``"sample"`` for plain arrays).

Modules: :mod:`.inputs` (batches and relevance aligned to them) and :mod:`.models` (running the
model) serve the rest; :mod:`.perturbation`, :mod:`.metrics`, :mod:`.comparison`,
:mod:`.explanation_continuity`, :mod:`.invariance` and :mod:`.parameter_randomization` hold one
evaluation each.
"""

from .comparison import COMPARE_METRICS, bootstrap_ci, compare  # noqa: F401  (COMPARE_METRICS: exported beside __all__)
from .explanation_continuity import continuity
from .invariance import input_invariance
from .metrics import abpc, aopc
from .parameter_randomization import randomization
from .perturbation import perturbation_curve

__all__ = ["perturbation_curve", "aopc", "abpc", "bootstrap_ci", "compare", "continuity", "input_invariance",
           "randomization"]
