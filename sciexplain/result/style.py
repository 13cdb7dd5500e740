"""The project's figure style: one matplotlib rc context for every ``plot_*``, and saving at 300 dpi or as vectors."""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["STYLE", "figure_style", "styled", "save_figure"]

#: rc parameters of every figure sciexplain draws: constrained layout (no clipped colour-bar ticks or
#: overlapping titles), sizes readable when a panel is printed at column width, 300 dpi when saved
STYLE: dict[str, Any] = {
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "image.interpolation": "nearest",
}


@contextmanager
def figure_style() -> Iterator[None]:
    """The style in a ``with`` block: figures created inside it are laid out and sized the project's way."""
    import matplotlib
    with matplotlib.rc_context(STYLE):
        yield


def styled(fn):
    """Decorate a ``plot_*`` function so that it draws inside :func:`figure_style`."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        with figure_style():
            return fn(*args, **kwargs)
    return wrapper


def save_figure(fig: Any, path: str | Path, *, dpi: int = 300) -> Path:
    """Save a figure for a publication: PNG (or JPEG/TIFF) at ``dpi``, PDF/SVG/EPS as vectors (by suffix).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        The file; its suffix chooses the format (``.png``, ``.pdf``, ``.svg``, ...).
    dpi : int
        Resolution of raster formats (and of images embedded in vector formats).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    with figure_style():
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
