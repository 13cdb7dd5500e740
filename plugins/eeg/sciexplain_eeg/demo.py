"""The EEG domain's end-to-end demo (``python -m sciexplain demo``).

Real data: BCI Competition II set IV (FingerMovements). A :class:`LinearEEG` (per-channel
epoch mean removed inside the model, linear read-out, L2-regularised logistic regression
with the penalty chosen by cross-validation on the training split) is fitted on the 316
training trials and scored on the 100 test trials. The test epochs are explained with LRP;
the relevance is written as netCDF (channel names, positions and times kept) and drawn:
single-trial scalp maps over time windows, class averages, a channel x time image with maps,
region time courses, left vs right hemispheres, MNE's own topomap of the evoked relevance, and
a perturbation check (MoRF/LeRF AOPC of LRP vs gradient x input vs sensitivity vs random).

Synthetic data with known ground truth: the acceptance scores of
:func:`sciexplain_eeg.acceptance.run_acceptance`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sciexplain.errors import ComputationError

__all__ = ["run_demo"]



def _absorbed_share(R: Any, what: str, domain: str) -> dict[str, Any]:
    """The part of f(x) the default leaves absorbed (biases, stabilisers) over the explained inputs, in plain words."""
    share = np.asarray(R.absorbed.values, dtype=float) / np.asarray(R.prediction.values, dtype=float)
    med, worst = float(np.median(share)), float(np.max(np.abs(share)))
    return {"median": med, "worst": worst, "n": int(share.size),
            "statement": f"the default preset leaves {med:.1%} of f(x) absorbed (median over {share.size} {what}, "
                         f"worst {worst:.1%}); the rest reaches the input. Every network of the plugin: "
                         f"python benchmarks/bench_conservation.py --only {domain}"}

#: the time windows of every windowed EEG figure (class and single-trial maps, the joint plot, MNE's maps)
WINDOW = 0.07
#: the same for the synthetic epochs (-0.2 to 1 s): four windows and the whole epoch fit a page width
SYNTHETIC_WINDOW = 0.3


def _save(fig: Any, path: Path, written: list[str]) -> None:
    import matplotlib.pyplot as plt

    from sciexplain.result import save_figure
    save_figure(fig, path)  # 300 dpi
    plt.close(fig)
    written.append(path.name)


def _mne_topomaps(evoked: Any, R: Any, window: float, title: str):
    """MNE's own ``Evoked.plot_topomap`` of the evoked relevance, in the windows of the other figures.

    MNE averages over each window; scaled by the samples per window it shows the sum in the window,
    the same quantity (and labels) as :func:`plot_class_topomaps` where every window holds the same
    number of samples (as the demo's do).
    """
    import matplotlib.pyplot as plt

    from sciexplain.result import RELEVANCE_CMAP, figure_style, symmetric_limit
    W = R.relevance.windows("time", window)
    starts, ends = W["time_start"].values, W["time_end"].values
    sfreq = float(evoked.info["sfreq"])
    n_per = int(round(window * sfreq))
    sums = [evoked.data[:, k * n_per:(k + 1) * n_per].sum(axis=1) for k in range(len(starts))]
    lim = symmetric_limit(np.concatenate(sums), 100)  # the colour scale of the window sums shown
    centres = [min(float(a) + (n_per - 1) / (2 * sfreq), float(evoked.times[-1])) for a in starts]
    with figure_style():
        fig, axes = plt.subplots(1, len(centres), figsize=(1.25 * len(centres) + 0.9, 2.1), squeeze=False)
        evoked.plot_topomap(times=centres, average=window - 0.5 / sfreq, scalings=n_per, axes=list(axes[0]),
                            colorbar=False, cmap=RELEVANCE_CMAP, vlim=(-lim, lim), time_format="", contours=0,
                            show=False)
        for ax, a, b in zip(axes[0], starts, ends):
            ax.set_title(f"{float(a) * 1000:.0f}-{float(b) * 1000:.0f} ms")
        cb = fig.colorbar(axes[0, 0].images[0], ax=list(axes[0]), fraction=0.03, pad=0.02)
        cb.set_ticks([-lim, 0.0, lim], labels=[f"{-lim:.2g}", "0", f"{lim:.2g}"])
        cb.set_label("mean relevance per epoch\n(sum in window)")
        fig.suptitle(title)
    return fig


def run_demo(out: str | Path, *, seed: int = 0, acceptance: bool = True) -> dict:
    """Train, explain, draw and check on FingerMovements; score the synthetic ground truth.

    Parameters
    ----------
    out : path
        Folder for the figures (``eeg_*.png``), the relevance (``eeg_relevance.nc``) and a
        JSON summary (``eeg_summary.json``); created if missing.
    seed : int
        Seeds the cross-validation folds and the synthetic run.
    acceptance : bool
        Also run the synthetic ground-truth acceptance (about 20 s).

    Returns
    -------
    dict
        Held-out accuracy, chosen penalty, ledger residual, perturbation AOPC, acceptance
        scores, files written, run time.
    """
    import xarray as xr

    from .data import load_finger_movements
    from .evoked import to_evoked
    from .explain import explain_epochs
    from .models import LinearEEG
    from .perturbation import perturbation_comparison
    from .plots import (plot_class_topomaps, plot_joint, plot_left_right, plot_perturbation,
                        plot_roi_timecourse, plot_topomap)
    from .rois import pool_rois
    from .training import evaluate

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    train = load_finger_movements("train")
    test = load_finger_movements("test")
    n_ch, n_t = train.get_data().shape[1:]
    model = LinearEEG(n_ch, n_t).fit_logistic(train, seed=seed)
    test_accuracy = evaluate(model, test)
    train_accuracy = evaluate(model, train)

    R = explain_epochs(model, test)  # the predicted class of every test epoch
    R.relevance.check()
    residual = float(np.abs(R.relevance.residual().values).max())
    R.to_netcdf(out / "eeg_relevance.nc")
    written.append("eeg_relevance.nc")
    with xr.open_dataarray(out / "eeg_relevance.nc") as back:
        if list(back.channel.values) != list(R.channel.values) or not np.allclose(back.time.values, R.time.values):
            raise ComputationError("the netCDF round trip lost channel or time labels")
    windows = R.relevance.windows("time", 0.1)
    windows.relevance.check()
    regions = pool_rois(R)
    regions.relevance.check()

    # class averages: the evidence for "right" (class 1) in every epoch, so that conditions compare
    R_right = explain_epochs(model, test, target=1)
    correct = np.flatnonzero(R.predicted.values == R.label.values)
    for condition in ("left", "right"):
        hits = [i for i in correct if R.condition.values[i] == condition]
        if hits:
            _save(plot_topomap(R, hits[0], windows=WINDOW), out / f"eeg_single_trial_{condition}.png", written)
    _save(plot_class_topomaps(R_right, windows=WINDOW, difference=True), out / "eeg_class_topomaps.png", written)
    _save(plot_joint(R, windows=WINDOW), out / "eeg_joint.png", written)
    _save(plot_roi_timecourse(R_right, window=0.03), out / "eeg_roi_timecourse.png", written)
    _save(plot_left_right(R_right), out / "eeg_left_right.png", written)
    right = to_evoked(R_right, test.info, by_event_type=True, as_dict=True)["right"]
    fig = _mne_topomaps(right, R_right, WINDOW, "MNE's Evoked.plot_topomap of the evidence for 'right', "
                                                "'right' epochs")
    _save(fig, out / "eeg_mne_topomap_right.png", written)

    pert = perturbation_comparison(model, test, block=4, steps=60)
    _save(plot_perturbation(pert), out / "eeg_perturbation.png", written)

    summary: dict[str, Any] = {
        "data": "FingerMovements (BCI Competition II set IV): 316 train / 100 test trials, 28 channels, 28 samples",
        "model": "LinearEEG: per-channel epoch mean removed, linear read-out; L2 logistic regression "
                 "(no intercept), C chosen by 5-fold CV on the training split",
        "C": model.C,
        "cv_accuracy": {str(k): round(v, 4) for k, v in model.cv_scores.items()},
        "train_accuracy": round(train_accuracy, 4),
        "test_accuracy": round(test_accuracy, 4),
        "n_test_epochs": int(R.sizes["epoch"]),
        "ledger_max_residual": residual,
        "absorbed_share_of_fx": _absorbed_share(R, "test epochs", "eeg"),
        "relevance_dims": list(R.dims),
        "perturbation": {"settings": pert.settings,
                         "rows": [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                                  for row in pert.rows]},
    }
    if acceptance:
        from .acceptance import format_table, run_acceptance
        result = run_acceptance(model="CompactEEGNet", seed=seed)
        summary["synthetic_acceptance"] = result.as_dict()
        Rs = result.explanations[result.rows[0]["method"]]
        for condition in ("left", "right"):
            hits = np.flatnonzero((Rs.predicted.values == Rs.label.values) & (Rs.condition.values == condition))
            if hits.size:
                _save(plot_topomap(Rs, int(hits[0]), windows=SYNTHETIC_WINDOW),
                      out / f"eeg_synthetic_single_trial_{condition}.png", written)
        _save(plot_class_topomaps(Rs, windows=SYNTHETIC_WINDOW), out / "eeg_synthetic_class_topomaps.png", written)
        (out / "eeg_acceptance.md").write_text(format_table(result) + "\n")
        written.append("eeg_acceptance.md")
    summary["files"] = written
    summary["seconds"] = round(time.perf_counter() - start, 1)
    (out / "eeg_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
