"""Does the relevance find the known effect? Ground-truth scores on synthetic epochs.

:func:`sciexplain_eeg.make_synthetic_epochs` puts each class's activity at known electrodes
(``truth.sources``) inside a known window (``truth.window``). For every correctly classified
test epoch, the relevance of the predicted (= true) class is pooled two ways, both sums that
keep the decomposition:

* over time (``R.relevance.pool("time")``): one value per electrode. A **top-3 hit** means the
  class's source electrode is among the three electrodes with the largest pooled relevance.
* over channels (``R.relevance.pool("channel")``): a time course. The **window share** is the
  positive relevance inside the true window divided by all positive relevance of the epoch.
  Its chance level is the window's share of the epoch's samples (``window_chance``).

The same scores are computed for sensitivity analysis (squared gradients, which decompose the
squared gradient norm, not f(x)) and gradient x input, explained on the same epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sciexplain.errors import InputError

__all__ = ["ground_truth_scores", "run_acceptance", "AcceptanceResult", "format_table"]

#: methods compared by default: (row name, explain_epochs keyword arguments)
DEFAULT_METHODS: tuple[tuple[str, dict], ...] = (
    ("LRP (epsilon-plus)", {"method": "lrp"}),
    ("gradient x input", {"method": "gradient_x_input"}),
    ("sensitivity", {"method": "sensitivity"}),
)


def ground_truth_scores(R: Any, truth: Any, *, top: int = 3) -> dict[str, float]:
    """Top-``top`` electrode hits and window share of one explanation against the ground truth.

    Parameters
    ----------
    R : xarray.DataArray
        An explanation from :func:`sciexplain_eeg.explain_epochs` of synthetic epochs; only
        the epochs where ``predicted == label`` (correctly classified) are scored, explaining
        their predicted class.
    truth : sciexplain_eeg.GroundTruth
        The ground truth of those epochs.
    top : int
        How many electrodes count as "ranked first".

    Returns
    -------
    dict
        ``n_correct``, ``top_hits`` (fraction of correct epochs whose source electrode is in
        the top ``top``), ``top1_hits`` (... is the first), ``window_share`` (mean share of positive relevance inside the true
        window), ``window_chance`` (the window's share of samples).
    """
    import warnings

    from sciexplain.result import DecompositionWarning

    correct = (R.coords["predicted"].values == R.coords["label"].values) & \
              (R.coords["target"].values == R.coords["predicted"].values)
    if not correct.any():
        raise InputError("no correctly classified epoch to score: train the model first")
    Rc = R.isel(epoch=np.flatnonzero(correct))
    with warnings.catch_warnings():  # sensitivity pools the squared gradient norm; that is intended here
        warnings.simplefilter("ignore", DecompositionWarning)
        by_channel = Rc.relevance.pool("time")
        by_time = Rc.relevance.pool("channel")
    names = list(Rc.channel.values)
    hits, firsts = [], []
    for i, condition in enumerate(Rc.condition.values):
        sources = truth.sources[str(condition)]
        order = np.argsort(-by_channel.values[i], kind="stable")[:top]
        hits.append(any(names[j] in sources for j in order))
        firsts.append(names[order[0]] in sources)
    times = Rc.time.values
    lo, hi = truth.window
    inside = (times >= lo - 1e-9) & (times <= hi + 1e-9)
    positive = np.clip(by_time.values, 0, None)
    totals = positive.sum(axis=1)
    share = np.where(totals > 0, positive[:, inside].sum(axis=1) / np.where(totals > 0, totals, 1), 0.0)
    return {"n_correct": int(correct.sum()), "top_hits": float(np.mean(hits)), "top1_hits": float(np.mean(firsts)),
            "window_share": float(share.mean()), "window_chance": float(inside.mean())}


@dataclass
class AcceptanceResult:
    """Outcome of :func:`run_acceptance`.

    ``model``, ``epochs`` and ``explanations`` (method name -> relevance) are kept for figures;
    :meth:`as_dict` leaves them out.
    """

    model_name: str
    test_accuracy: float
    rows: list[dict]
    settings: dict
    model: Any = None
    epochs: Any = None
    explanations: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"model": self.model_name, "test_accuracy": self.test_accuracy, "rows": self.rows,
                "settings": self.settings}


def run_acceptance(*, model: str = "CompactEEGNet", n_train: int = 200, n_test: int = 200, seed: int = 0,
                   methods: Sequence[tuple[str, dict]] = DEFAULT_METHODS, top: int = 3,
                   synthetic: dict | None = None, model_kwargs: dict | None = None,
                   fit_kwargs: dict | None = None) -> AcceptanceResult:
    """Train on synthetic epochs, explain fresh ones, score every method against the truth.

    Parameters
    ----------
    model : {"CompactEEGNet", "SturmDNN"}
        The network trained with :func:`sciexplain_eeg.fit` (seeded).
    n_train, n_test : int
        Epochs to train on and to explain (the test set uses ``seed + 1000``).
    seed : int
        Seeds the data and the training.
    methods : sequence of (name, explain_epochs keyword arguments)
    top : int
        Electrodes counted as ranked first.
    synthetic : dict, optional
        Keyword arguments of :func:`make_synthetic_epochs` (e.g. a shorter epoch for tests).
    model_kwargs, fit_kwargs : dict, optional
        Passed to the model class and to :func:`fit`.

    Returns
    -------
    AcceptanceResult
        One row per method: name, n_correct, top_hits, window_share, window_chance.
    """
    from .explain import explain_epochs
    from .models import CompactEEGNet, SturmDNN
    from .synthetic import make_synthetic_epochs
    from .training import evaluate, fit

    classes = {"CompactEEGNet": CompactEEGNet, "SturmDNN": SturmDNN}
    if model not in classes:
        raise InputError(f"model must be one of {sorted(classes)}, got {model!r}")
    synthetic = dict(synthetic or {})
    train, truth = make_synthetic_epochs(n_epochs=n_train, seed=seed, **synthetic)
    test, truth_test = make_synthetic_epochs(n_epochs=n_test, seed=seed + 1000, **synthetic)
    n_ch, n_t = train.get_data().shape[1:]
    net = classes[model](n_ch, n_t, **(model_kwargs or {}))
    fit(net, train, seed=seed, **(fit_kwargs or {}))
    accuracy = evaluate(net, test)
    rows = []
    explanations = {}
    for name, kwargs in methods:
        R = explain_epochs(net, test, **kwargs)
        explanations[name] = R
        rows.append({"method": name, **ground_truth_scores(R, truth_test, top=top)})
    settings = {"n_train": n_train, "n_test": n_test, "seed": seed, "top": top, "window": list(truth.window),
                "sources": {k: list(v) for k, v in truth.sources.items()}, **synthetic}
    return AcceptanceResult(model, float(accuracy), rows, settings, model=net, epochs=test,
                            explanations=explanations)


def format_table(result: AcceptanceResult) -> str:
    """A Markdown table of an :class:`AcceptanceResult`, best method first (by top hits, then window)."""
    rows = sorted(result.rows, key=lambda r: (-r["top_hits"], -r["window_share"]))
    lines = [f"{result.model_name}, test accuracy {result.test_accuracy:.3f}; scored on correctly "
             f"classified test epochs; chance window share {rows[0]['window_chance']:.2f}", "",
             f"| method | correct epochs | top-{result.settings['top']} electrode hits | top-1 electrode hits | "
             "positive relevance in the true window |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n_correct']} | {r['top_hits']:.3f} | {r['top1_hits']:.3f} | "
                     f"{r['window_share']:.3f} |")
    return "\n".join(lines)
