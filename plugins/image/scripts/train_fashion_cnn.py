"""Train the LRP-friendly FashionCNN on Fashion-MNIST and write its weights.

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, a
fixed number of CPU threads (2 by default; use ``--threads 1`` on a busy
machine, where two OpenMP threads competing with other work run several times
slower; the thread count is recorded because it may change float rounding), a fixed shuffling order and a byte-reproducible ``.npz`` (zip
entries with a fixed timestamp, no pickle). Trains on all 60000 training
images for a fixed number of epochs (no model selection on the test set) and
reports the accuracy on the 10000 test images.

Usage::

    python plugins/image/scripts/train_fashion_cnn.py [--epochs 8] [--seed 0] [--threads 2] [--out DIR]

Writes ``fashion_cnn.npz`` and ``fashion_cnn.json`` (accuracy, epochs, seed,
sha256 of the npz, ...) into ``sciexplain_image/weights/`` by default.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from sciexplain_image.fashion import (  # noqa: E402
    WEIGHTS_PATH,
    FashionCNN,
    fashion_to_tensor,
    load_fashion_mnist,
)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` whose bytes depend only on the arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model(fashion_to_tensor(images[start : start + batch]))
            correct += int((logits.argmax(1).numpy() == labels[start : start + batch]).sum())
    return correct / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH.parent, help="output folder")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    inputs = fashion_to_tensor(x_train)
    targets = torch.from_numpy(y_train)

    model = FashionCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(inputs) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(inputs)))
        total = 0.0
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for step in progress:
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch + 1}: train loss {total / len(inputs):.4f}, "
              f"test accuracy {accuracy(model, x_test, y_test):.4f}", flush=True)
    seconds = time.perf_counter() - started

    test_accuracy = accuracy(model, x_test, y_test)
    first_2000 = accuracy(model, x_test[:2000], y_test[:2000])
    train_accuracy = accuracy(model, x_train, y_train)
    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / "fashion_cnn.npz"
    arrays = {name: value.detach().cpu().numpy().astype(np.float32) for name, value in model.state_dict().items()}
    write_npz(npz_path, arrays)
    record = {
        "model": "sciexplain_image.fashion.FashionCNN",
        "data": "Fashion-MNIST, Debian package dataset-fashion-mnist (60000 train / 10000 test)",
        "test_accuracy": round(test_accuracy, 4),
        "test_accuracy_first_2000": round(first_2000, 4),
        "train_accuracy": round(train_accuracy, 4),
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "optimizer": f"Adam, one-cycle learning rate, max {args.lr}",
        "n_parameters": int(sum(a.size for a in arrays.values())),
        "train_seconds": round(seconds, 1),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "sha256": hashlib.sha256(npz_path.read_bytes()).hexdigest(),
    }
    (args.out / "fashion_cnn.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
