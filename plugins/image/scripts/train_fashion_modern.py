"""Train the FashionViT or the FashionConvNeXt on Fashion-MNIST and write its weights and record.

Deterministic as ``train_fashion_cnn.py`` (fixed seeds, deterministic algorithms, a fixed thread
count recorded, byte-reproducible ``.npz``). Trains on all 60000 training images for a fixed
number of epochs with AdamW and a one-cycle schedule, reports the accuracy on the 10000 test
images (no model selection on them).

Usage::

    python plugins/image/scripts/train_fashion_modern.py vit [--epochs 4] [--threads 1]
    python plugins/image/scripts/train_fashion_modern.py convnext [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
sys.path.insert(0, str(HERE))

from sciexplain_image.fashion import fashion_to_tensor, load_fashion_mnist  # noqa: E402
from sciexplain_image.fashion_modern import (  # noqa: E402
    CONVNEXT_WEIGHTS_PATH, VIT_WEIGHTS_PATH, FashionConvNeXt, FashionViT)
from train_fashion_cnn import accuracy, write_npz  # noqa: E402

MODELS = {"vit": (FashionViT, VIT_WEIGHTS_PATH, 4), "convnext": (FashionConvNeXt, CONVNEXT_WEIGHTS_PATH, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=VIT_WEIGHTS_PATH.parent)
    args = parser.parse_args(argv)
    cls, default_path, default_epochs = MODELS[args.model]
    epochs = args.epochs or default_epochs

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    inputs, targets = fashion_to_tensor(x_train), torch.from_numpy(y_train)

    model = cls()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = -(-len(inputs) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(inputs)))
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.batch_size: (step + 1) * args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch + 1}: train loss {total / len(inputs):.4f}, "
              f"test accuracy {accuracy(model, x_test, y_test):.4f}", flush=True)
    seconds = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / default_path.name
    arrays = {name: value.detach().cpu().numpy().astype(np.float32) for name, value in model.state_dict().items()}
    write_npz(npz_path, arrays)
    record = {
        "model": f"sciexplain_image.fashion_modern.{cls.__name__}",
        "data": "Fashion-MNIST, Debian package dataset-fashion-mnist (60000 train / 10000 test)",
        "test_accuracy": round(accuracy(model, x_test, y_test), 4),
        "test_accuracy_first_2000": round(accuracy(model, x_test[:2000], y_test[:2000]), 4),
        "train_accuracy": round(accuracy(model, x_train, y_train), 4),
        "epochs": epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "optimizer": f"AdamW (weight decay 0.05), one-cycle learning rate, max {args.lr}",
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "train_seconds": round(seconds, 1),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "sha256": hashlib.sha256(npz_path.read_bytes()).hexdigest(),
    }
    npz_path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
