"""Cost of a perturbation curve relative to the bare forward passes it needs.

``sciexplain.evaluate.perturbation_curve`` with 100 steps over 256 inputs needs 101 forward
passes of the 256 (perturbed) inputs. This script times, interleaved in one run (so that load on
the machine affects both alike):

* ``bare forward``  the same number of forward evaluations at the same batch size, on a
                    preallocated batch, under ``torch.no_grad()`` (the lower bound);
* ``perturbation_curve``  ranking, masking and bookkeeping included;

and prints the median times and their ratio (target: at most 1.3x).

Usage: python benchmarks/bench_perturbation.py [--repeats 5] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import sciexplain as sx
from sciexplain.evaluate import perturbation_curve

HERE = Path(__file__).resolve().parent


def fashion_like_cnn() -> nn.Module:
    """The architecture of the image plugin's Fashion-MNIST CNN (random weights suffice for timing)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10)).eval()


def small_mlp() -> nn.Module:
    """A cheap model: the forward pass is small, so any overhead of the curve shows."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


CASES = [
    # name, model factory, perturbation_curve options
    ("CNN 1x28x28, pixels, uniform", fashion_like_cnn, dict(removal="uniform")),
    ("CNN 1x28x28, 2x2 patches, uniform", fashion_like_cnn, dict(removal="uniform", patch=(2, 2))),
    ("CNN 1x28x28, pixels, batch_size 64", fashion_like_cnn, dict(removal="uniform", batch_size=64)),
    ("MLP 784, pixels, zero", small_mlp, dict(removal="zero")),
]


def bare_forward(model: nn.Module, x: torch.Tensor, steps: int, batch_size: int) -> None:
    """The forward evaluations the curve needs: (steps + 1) x ceil(n / batch_size) calls."""
    with torch.no_grad():
        for _ in range(steps + 1):
            for s in range(0, len(x), batch_size):
                model(x[s:s + batch_size])


def run_case(name, factory, opts, n, steps, repeats):
    torch.manual_seed(0)
    model = factory()
    x = torch.rand(n, 1, 28, 28)
    R = sx.explain(model, x, method="gradient_x_input")
    batch_size = opts.get("batch_size", 256)
    calls = (steps + 1) * math.ceil(n / batch_size)
    kw = dict(opts)
    kw.setdefault("batch_size", batch_size)
    perturbation_curve(model, x, R, steps=steps, **kw)  # warm-up
    bare_forward(model, x, steps, batch_size)
    t_bare, t_curve = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bare_forward(model, x, steps, batch_size)
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        perturbation_curve(model, x, R, steps=steps, **kw)
        t_curve.append(time.perf_counter() - t0)
    bare, curve = statistics.median(t_bare), statistics.median(t_curve)
    return {"case": name, "inputs": n, "steps": steps, "batch_size": batch_size, "forward_calls": calls,
            "bare_forward_s": bare, "perturbation_curve_s": curve, "ratio": curve / bare}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inputs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "bench_perturbation.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [run_case(name, f, o, args.inputs, args.steps, args.repeats) for name, f, o in CASES]
    print(f"perturbation_curve vs bare forward passes: {args.inputs} inputs, {args.steps} steps, "
          f"median of {args.repeats} interleaved repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)\n")
    print("| case | forward calls | bare forward | perturbation_curve | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['forward_calls']} | {r['bare_forward_s'] * 1e3:.0f} ms | "
              f"{r['perturbation_curve_s'] * 1e3:.0f} ms | {r['ratio']:.2f}x |")
    worst = max(r["ratio"] for r in rows)
    print(f"\nworst ratio {worst:.2f}x (target <= 1.3x): {'met' if worst <= 1.3 else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
                                     "machine": platform.machine(), "python": platform.python_version()},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
