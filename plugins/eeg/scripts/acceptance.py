"""Ground-truth acceptance of the EEG explanations on synthetic epochs; prints Markdown tables.

Run from the repository root::

    python plugins/eeg/scripts/acceptance.py                 # 2 noise levels x 2 networks x 3 seeds

For each network (trained with ``sciexplain_eeg.fit`` on 200 epochs of ``make_synthetic_epochs``,
seeded) 200 fresh test epochs are explained; the correctly classified ones are scored for LRP
(the EEG default preset ``epsilon-plus``, and ``epsilon``), gradient x input and sensitivity
analysis: the share of epochs whose source electrode (C4 for "left", C3 for "right") is among
the three electrodes, or is the first electrode, with the largest relevance summed over time,
and the share of positive relevance (summed over channels) inside the true window
(0.3-0.5 s; chance 0.21). The tables list seeds 0, 1, 2 separated by "/" and the mean; rows
are ordered by mean top-3 hits, then window share.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sciexplain_eeg.acceptance import run_acceptance

METHODS = (
    ("LRP (epsilon-plus)", {"method": "lrp", "preset": "epsilon-plus"}),
    ("LRP (epsilon, default)", {"method": "lrp"}),
    ("gradient x input", {"method": "gradient_x_input"}),
    ("sensitivity", {"method": "sensitivity"}),
)


def _cell(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) + f" (mean {np.mean(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["CompactEEGNet", "SturmDNN"])
    parser.add_argument("--noise", type=float, nargs="+", default=[1e-6, 3e-6],
                        help="background noise SD(s) in volts (the default data use 1e-6)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), seeds {args.seeds}\n")
    for noise in args.noise:
        for model in args.models:
            start = time.perf_counter()
            results = [run_acceptance(model=model, seed=s, methods=METHODS, synthetic={"noise_level": noise})
                       for s in args.seeds]
            acc = [r.test_accuracy for r in results]
            print(f"### {model}, background noise {noise * 1e6:g} uV (effect 5 uV at the source); "
                  f"test accuracy {_cell(acc)}\n")
            print("| method | top-3 electrode hits | top-1 electrode hits | positive relevance in the true window |")
            print("|---|---|---|---|")
            rows = []
            for k, (name, _) in enumerate(METHODS):
                top3 = [r.rows[k]["top_hits"] for r in results]
                top1 = [r.rows[k]["top1_hits"] for r in results]
                window = [r.rows[k]["window_share"] for r in results]
                rows.append((np.mean(top3), np.mean(window), name, top3, top1, window))
            for _, _, name, top3, top1, window in sorted(rows, key=lambda r: (-r[0], -r[1])):
                print(f"| {name} | {_cell(top3)} | {_cell(top1)} | {_cell(window)} |")
            n_correct = [r.rows[0]["n_correct"] for r in results]
            print(f"\n(correctly classified test epochs scored: {n_correct}; "
                  f"{time.perf_counter() - start:.1f} s)\n")


if __name__ == "__main__":
    main()
