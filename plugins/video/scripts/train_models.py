"""Train the bundled video models on generated clips (seeded) and write their weights.

Run: python plugins/video/scripts/train_models.py [--per-class 40] [--test-per-class 20]

Writes sciexplain_video/weights/motion_cnn.{npz,json} and motion_fisher.{npz,json} (arrays and
JSON only, no pickles) with the held-out accuracy on clips generated with another seed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sciexplain_video import (ACTIONS, accuracy, fit_fisher, make_dataset, read_motion_vectors, save_model,
                              train_cnn)

WEIGHTS = Path(__file__).resolve().parents[1] / "sciexplain_video" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        train = make_dataset(Path(tmp) / "train", args.per_class, seed=100 + args.seed, progress=True)
        test = make_dataset(Path(tmp) / "test", args.test_per_class, seed=200 + args.seed, progress=True)
        F = [read_motion_vectors(p) for p, _ in train]
        Ft = [read_motion_vectors(p) for p, _ in test]
    y = [t.label for _, t in train]
    yt = [t.label for _, t in test]
    common = {"train_clips": len(F), "test_clips": len(Ft), "train_seed": 100 + args.seed,
              "test_seed": 200 + args.seed, "clip": "64x64 px, 24 frames, 12 fps, libx264 bf=0 g=12 refs=1",
              "classes": list(ACTIONS), "script": "plugins/video/scripts/train_models.py"}
    cnn = train_cnn(F, y, seed=args.seed, epochs=args.epochs, progress=True)
    info = {**common, "seed": args.seed, "epochs": args.epochs, "train_accuracy": accuracy(cnn, F, y),
            "test_accuracy": accuracy(cnn, Ft, yt)}
    save_model(cnn, args.out / "motion_cnn", info)
    print("MotionCNN", {k: info[k] for k in ("train_accuracy", "test_accuracy")})
    fisher = fit_fisher(F, y, seed=args.seed)
    info = {**common, "seed": args.seed, "n_components": fisher.fisher.n_components, "svm": "LinearSVC(C=1.0)",
            "train_accuracy": accuracy(fisher, F, y), "test_accuracy": accuracy(fisher, Ft, yt)}
    save_model(fisher, args.out / "motion_fisher", info)
    print("MotionFisherModel", {k: info[k] for k in ("train_accuracy", "test_accuracy")})
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
