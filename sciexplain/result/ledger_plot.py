"""The per-layer ledger as a waterfall: from f(x) at the output down to the input, where relevance is absorbed."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from .plotting import pyplot
from .style import figure_style

__all__ = ["plot_ledger", "ledger_segments"]

_NEEDED = ("absorbed", "prediction", "input_relevance")


def _check(ledger: Any) -> str:
    if not isinstance(ledger, xr.Dataset) or any(v not in ledger for v in _NEEDED) or "layer" not in ledger.dims:
        raise InputError("plot_ledger needs the ledger Dataset of sciexplain.ledger(model, x, ...) (variables "
                         f"{_NEEDED} over dims (sample, 'layer')); got {type(ledger).__name__}")
    batch = [d for d in ledger["absorbed"].dims if d != "layer"]
    if len(batch) != 1:
        raise InputError(f"the ledger's 'absorbed' should have dims (batch, 'layer'), got {ledger['absorbed'].dims}")
    return batch[0]


def ledger_segments(ledger: xr.Dataset, sample: int | None = None, *, relative: bool = True,
                    min_share: float = 0.005, max_rows: int = 24) -> dict[str, Any]:
    """The numbers :func:`plot_ledger` draws.

    Each layer's absorbed relevance, as a share of f(x) per sample when ``relative`` (then
    averaged over the samples, or of ``sample`` only). Layers absorbing at least ``min_share``
    (in absolute value) get a row each, at most ``max_rows // 2`` of them (the largest); each run
    of the other layers between them is one row ("k other layers") unless that run absorbs less
    than ``min_share`` in all (then it is only counted in ``hidden_layers`` and ``hidden_total``),
    so ``start - sum(values) - hidden_total == end``.

    Returns
    -------
    dict
        ``start`` (f(x), 1 when relative), ``end`` (the input relevance), ``labels`` and ``values``
        (absorbed per row, walk order from the output down), ``levels`` (the relevance still to be
        passed on just above each row), ``hidden_layers``, ``hidden_total``, ``n_samples``, ``relative``.
    """
    batch = _check(ledger)
    if min_share < 0:
        raise InputError(f"min_share must be >= 0, got {min_share!r}")
    absorbed = ledger["absorbed"].transpose(batch, "layer").values.astype(np.float64)
    pred = ledger["prediction"].values.astype(np.float64)
    inp = ledger["input_relevance"].values.astype(np.float64)
    if sample is not None:
        if not -len(pred) <= int(sample) < len(pred):
            raise InputError(f"sample={sample} is out of range for a ledger of {len(pred)} samples")
        absorbed, pred, inp = absorbed[[sample]], pred[[sample]], inp[[sample]]
    if relative:
        if np.any(pred == 0):
            raise InputError("f(x) is 0 for some sample, so shares of f(x) are undefined: pass relative=False")
        absorbed, inp, start = absorbed / pred[:, None], inp / pred, 1.0
    else:
        start = float(pred.mean())
    a = absorbed.mean(0)
    names = [str(v) for v in ledger["layer"].values]
    ops = [str(v) for v in ledger["op"].values] if "op" in ledger.coords else [""] * len(names)
    big = np.flatnonzero(np.abs(a) >= min_share)
    if len(big) > max_rows // 2:
        big = np.sort(big[np.argsort(-np.abs(a[big]))[: max_rows // 2]])
    labels, values, levels, prev, level = [], [], [], -1, start
    hidden, hidden_total = 0, 0.0
    for k in list(big) + [len(a)]:
        run = list(range(prev + 1, k))
        if run and abs(float(a[run].sum())) >= min_share:
            labels.append(f"{len(run)} other layer{'s' if len(run) > 1 else ''}")
            values.append(float(a[run].sum()))
            levels.append(level)
        elif run:  # a run that absorbs next to nothing in all: no row, counted in the note
            hidden, hidden_total = hidden + len(run), hidden_total + float(a[run].sum())
        level -= float(a[run].sum()) if run else 0.0
        if k < len(a):
            labels.append(f"{names[k]} ({ops[k]})" if ops[k] else names[k])
            values.append(float(a[k]))
            levels.append(level)
            level -= float(a[k])
        prev = k
    return {"start": start, "end": float(inp.mean()), "labels": labels, "values": values, "levels": levels,
            "hidden_layers": hidden, "hidden_total": hidden_total, "n_samples": len(pred), "relative": relative}


def plot_ledger(ledger: xr.Dataset, sample: int | None = None, *, relative: bool = True, min_share: float = 0.005,
                max_rows: int = 24, title: str | None = None, ax: Any = None):
    """Waterfall of the ledger: f(x) at the top, each layer's absorbed relevance, the input relevance at the bottom.

    Parameters
    ----------
    ledger : xarray.Dataset
        From :func:`sciexplain.ledger` (``Explainer.explain_with_ledger``).
    sample : int, optional
        One sample (position in the batch); default the mean over the samples of the per-sample shares.
    relative : bool
        Shares of f(x) (default; f(x) = 1) or the relevance itself (the mean over the samples).
    min_share, max_rows
        Which layers get a row of their own (see :func:`ledger_segments`); the others are shown as
        runs of "k other layers".
    title : str, optional
    ax : matplotlib Axes, optional
        Draw into this Axes; default a new Figure sized to the rows.

    Returns
    -------
    matplotlib.figure.Figure
        Red bars: relevance absorbed (taken away from what reaches the input); blue: relevance
        added by a layer (a negative absorbed part, e.g. a negative bias). Grey: f(x) and the input
        relevance. The numbers beside the bars are the same quantities.
    """
    seg = ledger_segments(ledger, sample, relative=relative, min_share=min_share, max_rows=max_rows)
    plt = pyplot()
    rows = ["f(x), the explained output"] + seg["labels"] + ["relevance on the input"]
    if ax is None:
        with figure_style():
            fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.22 * len(rows)))
    else:
        fig = ax.figure
    y = np.arange(len(rows))[::-1]
    ax.barh(y[0], seg["start"], color="0.55", height=0.6)
    lows = [0.0, seg["start"]]
    for i, (v, level) in enumerate(zip(seg["values"], seg["levels"]), start=1):
        new = level - v
        ax.barh(y[i], new - level, left=level, color="tab:red" if v >= 0 else "tab:blue", height=0.6)
        ax.plot([level, level], [y[i - 1] - 0.3, y[i] + 0.3], color="0.7", lw=0.6, zorder=0)
        lows += [level, new]
    ax.barh(y[-1], seg["end"], color="0.3", height=0.6)
    span = max(max(lows) - min(lows + [seg["end"]]), 1e-12)
    fmt = "{:+.3f}" if seg["relative"] else "{:+.3g}"
    for i, v in enumerate(seg["values"], start=1):
        ax.text(max(lows) + 0.04 * span, y[i], ("absorbs " if v >= 0 else "adds ") + fmt.format(abs(v))[1:],
                va="center", fontsize=7, color="0.2")
    ax.text(max(lows) + 0.04 * span, y[0], f"{seg['start']:.3g}", va="center", fontsize=7)
    ax.text(max(lows) + 0.04 * span, y[-1], f"{seg['end']:.3g}", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(rows, fontsize=7)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(min(lows + [seg["end"], 0.0]) - 0.05 * span, max(lows) + 0.3 * span)
    who = f"sample {sample}" if sample is not None else f"mean over {seg['n_samples']} sample(s)"
    xlabel = "relevance, as a share of f(x)" if seg["relative"] else "relevance (units of f(x))"
    if seg["hidden_layers"]:
        xlabel += (f"\n(not shown: {seg['hidden_layers']} layers in short runs, absorbing "
                   f"{seg['hidden_total']:+.2g} in all)")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title or f"Where f(x) is absorbed, from the output down to the input ({who})", fontsize=9)
    return fig
