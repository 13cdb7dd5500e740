"""Perturbation check of EEG explanations (MoRF/LeRF curves, AOPC) on real and synthetic data.

Run from the repository root::

    python plugins/eeg/scripts/perturbation.py [--figures DIR]

Real data: FingerMovements, ``LinearEEG.fit_logistic`` on the 316 training trials, the 100
test trials explained and perturbed. Synthetic: ``CompactEEGNet`` trained with ``fit`` on 200
epochs of ``make_synthetic_epochs``, 200 fresh epochs explained and perturbed. Blocks are one
channel by ``--block`` samples, replaced by the epoch's channel mean (and, for the real data,
also by zero). Prints one Markdown table per setting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sciexplain_eeg import (CompactEEGNet, LinearEEG, fit, load_finger_movements, make_synthetic_epochs,
                            perturbation_comparison, plot_perturbation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--figures", type=Path, default=None, help="write the curves as PNG here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), seed {args.seed}\n")

    train, test = load_finger_movements("train"), load_finger_movements("test")
    model = LinearEEG(*train.get_data().shape[1:]).fit_logistic(train, seed=args.seed)
    for removal in ("mean", "zero"):
        start = time.perf_counter()
        result = perturbation_comparison(model, test, block=4, removal=removal, seed=args.seed)
        print(f"### FingerMovements test split, LinearEEG (C = {model.C:g}), removal by {removal}\n")
        print(result.table())
        print(f"\n({time.perf_counter() - start:.1f} s)\n")
        if args.figures is not None:
            args.figures.mkdir(parents=True, exist_ok=True)
            plot_perturbation(result).savefig(args.figures / f"perturbation_real_{removal}.png", dpi=110)

    train_s, _ = make_synthetic_epochs(seed=args.seed)
    test_s, _ = make_synthetic_epochs(seed=args.seed + 1000)
    net = CompactEEGNet(*train_s.get_data().shape[1:])
    fit(net, train_s, seed=args.seed)
    start = time.perf_counter()
    result = perturbation_comparison(net, test_s, block=10, removal="mean", seed=args.seed)
    print("### synthetic (make_synthetic_epochs defaults), CompactEEGNet, removal by mean\n")
    print(result.table())
    print(f"\n({time.perf_counter() - start:.1f} s)\n")
    if args.figures is not None:
        plot_perturbation(result).savefig(args.figures / "perturbation_synthetic.png", dpi=110)


if __name__ == "__main__":
    main()
