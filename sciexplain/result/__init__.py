"""The relevance contract: one labelled ``xarray.DataArray`` per explanation, its accessor and plots."""

from .contract import BATCH_COORDS, DECOMPOSES_VALUES, DecompositionWarning, build_result, find_batch_dim
from .ledger import LedgerError, check_ledger, ledger_residual
from .plotting import RELEVANCE_CMAP, method_title, plot_heatmap, plot_heatmaps, pyplot, symmetric_limit
from .ledger_plot import ledger_segments, plot_ledger
from .result_plot import plot_result
from .style import STYLE, figure_style, save_figure, styled

__all__ = [
    "BATCH_COORDS",
    "DECOMPOSES_VALUES",
    "DecompositionWarning",
    "LedgerError",
    "build_result",
    "check_ledger",
    "find_batch_dim",
    "ledger_residual",
    "RELEVANCE_CMAP",
    "plot_heatmap",
    "plot_heatmaps",
    "plot_ledger",
    "plot_result",
    "figure_style",
    "save_figure",
    "styled",
    "method_title",
    "STYLE",
    "ledger_segments",
    "pyplot",
    "symmetric_limit",
]
