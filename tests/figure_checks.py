"""What a reviewer checks on a figure, as functions the figure tests share."""

from __future__ import annotations

import itertools

import numpy as np


def _drawn_tick_labels(ax) -> list:
    """The tick labels matplotlib draws: those of ticks inside the axis' view interval."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        span = hi - lo
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            loc = tick.get_loc()
            if loc is not None and lo - 1e-9 * span <= loc <= hi + 1e-9 * span:
                out += [lab for lab in (tick.label1, tick.label2) if lab.get_visible()]
    return out


def texts(fig) -> list:
    """Every drawn, non-empty text of the figure: titles, axis labels, drawn tick labels, offset texts,
    legends and free texts."""
    fig.canvas.draw()
    found = list(fig.texts) + [t for legend in fig.legends for t in legend.get_texts()]
    for ax in [a for parent in fig.axes for a in (parent, *parent.child_axes)]:  # inset colour bars too
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:  # ax.axis("off") hides the axes' labels and ticks (not its title and texts)
            found += [ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text(),
                      *_drawn_tick_labels(ax)]
        if ax.get_legend() is not None:
            found += list(ax.get_legend().get_texts())
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of texts whose bounding boxes overlap by more than ``tolerance`` pixels each way."""
    r = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer=r)) for t in texts(fig)]
    bad = []
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        if w > tolerance and h > tolerance:
            bad.append((a, b))
    return bad


def texts_outside(fig) -> list[str]:
    """Texts that reach past the figure's canvas (clipped when saved without a tight box)."""
    r = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    return [t.get_text() for t in texts(fig)
            if (e := t.get_window_extent(renderer=r)).x0 < -1 or e.y0 < -1 or e.x1 > W + 1 or e.y1 > H + 1]


def diverging_limits(fig) -> list[tuple[float, float]]:
    """(vmin, vmax) of every image drawn with a colour map."""
    return [im.get_clim() for ax in fig.axes for im in ax.get_images()]


def symmetric(limits) -> bool:
    return all(np.isclose(lo, -hi) for lo, hi in limits)
