"""Patch perturbation on the Fashion-MNIST ViT, ConvNeXt and CNN: LRP against gradient x input and random order.

The settings of ``bench_fashion_faithfulness.py``: the first N test images explained for their
predicted class, 4x4 patches set to black (0, the background) most relevant first (MoRF) and
least relevant first (LeRF), ties in random order (several seeds), AOPC and ABPC with percentile
bootstrap intervals over images from ``sx.evaluate.compare``. Per model: LRP with the model's
default preset and one alternative, gradient x input, random order (issue 19, images).

Usage: python benchmarks/bench_fashion_modern.py [--n 300] [--steps 15] [--seeds 2] [--models ...] [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import sciexplain as sx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

BOX = dict(bounds=(0.0, 1.0))
#: per model: (loader name, {row label: explain kwargs or None for random order}); the image plugin's
#: default "mobilenet-conserving" is left out on the ConvNeXt: its ledger leaks there (up to 3% of f(x) on
#: 12 of 300 images, 2026-12-07), so its ABPC would not compare like for like
MODELS: dict[str, tuple[str, dict[str, dict | None]]] = {
    "FashionViT": ("load_fashion_vit", {
        "LRP attnlrp": dict(preset="attnlrp"),
        "LRP cp-lrp": dict(preset="cp-lrp"),
        "gradient x input": dict(method="gradient_x_input"),
        "random order": None}),
    "FashionConvNeXt": ("load_fashion_convnext", {
        "LRP attnlrp": dict(preset="attnlrp"),
        "LRP epsilon-plus": dict(preset="epsilon-plus"),
        "gradient x input": dict(method="gradient_x_input"),
        "random order": None}),
    "FashionCNN": ("load_fashion_cnn", {
        "LRP epsilon-plus-box (bounds 0..1)": dict(preset="epsilon-plus-box", **BOX),
        "LRP epsilon-plus": dict(preset="epsilon-plus"),
        "gradient x input": dict(method="gradient_x_input"),
        "random order": None}),
}


def run_model(name: str, n: int, steps: int, seeds: int) -> tuple[list[dict], float, float]:
    """Explain and perturb the first ``n`` test images with one model; rows, accuracy, seconds."""
    import sciexplain_image as si
    from sciexplain_image.fashion import fashion_to_tensor, load_fashion_mnist
    t0 = time.time()
    loader, methods = MODELS[name]
    model = getattr(si, loader)()
    images, labels = load_fashion_mnist("test")
    x = fashion_to_tensor(images[:n])
    with torch.no_grad():
        pred = model(x).argmax(1)
    accuracy = float((pred.numpy() == labels[:n]).mean())
    explanations, absorbed = {}, {}
    for label, kw in methods.items():
        if kw is None:
            explanations[label] = None
            continue
        kw = dict(kw)
        R = sx.explain(model, x, target=pred, method=kw.pop("method", "lrp"), **kw)
        if R.attrs.get("decomposes") == "f(x)":
            R.relevance.check()
            absorbed[label] = float(np.median(R.absorbed.values / R.prediction.values))
        explanations[label] = R
    ds = sx.evaluate.compare(model, x, explanations, steps=steps, patch=(4, 4), removal="zero",
                             seeds=list(range(seeds)), target=pred.numpy(), n_boot=2000, batch_size=500,
                             ties="random", progress=False)
    rows = []
    for i, m in enumerate(ds.method.values):
        row = {"model": name, "method": str(m), "absorbed_median": absorbed.get(str(m))}
        for j, metric in enumerate(ds.metric.values):
            row[str(metric)] = [float(ds[k][i, j]) for k in ("estimate", "ci_low", "ci_high")]
        rows.append(row)
    return rows, accuracy, time.time() - t0


def table(rows: list[dict]) -> str:
    """Markdown table, models in order, methods by ABPC descending."""
    out = ["| model | method | AOPC MoRF (95% CI) | AOPC LeRF (95% CI) | ABPC (95% CI) | absorbed / f(x), median |",
           "|---|---|---|---|---|---|"]
    for model in MODELS:
        for r in sorted((r for r in rows if r["model"] == model), key=lambda r: -r["abpc"][0]):
            cells = [f"{r[k][0]:.2f} [{r[k][1]:.2f}, {r[k][2]:.2f}]" for k in ("aopc_morf", "aopc_lerf", "abpc")]
            ab = "" if r["absorbed_median"] is None else f"{r['absorbed_median']:.2f}"
            out.append(f"| {model} | {r['method']} | " + " | ".join(cells) + f" | {ab} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--steps", type=int, default=15, help="4x4 patches removed, one per step (of 49)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out", default="fashion_modern.json", help="file name under benchmarks/results")
    ap.add_argument("--write", action="store_true", help="also replace the block in benchmarks/README.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, accuracies, seconds = [], {}, {}
    for name in args.models:
        r, accuracies[name], seconds[name] = run_model(name, args.n, args.steps, args.seeds)
        rows += r
    text = table(rows)
    env = (f"Fashion-MNIST, first {args.n} test images (accuracy on them: "
           + ", ".join(f"{k} {v:.3f}" for k, v in accuracies.items())
           + f"), predicted class; 4x4 patches set to 0 (black background), {args.steps} of 49 patches, one "
           f"per step, ties in random order, seeds {list(range(args.seeds))}; 95% percentile bootstrap over "
           f"images. Ran in {sum(seconds.values()):.0f} s on 1 CPU thread, {time.strftime('%Y-%m-%d')}.")
    print(text)
    print(env)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(
        {"env": env, "accuracy": accuracies, "seconds": seconds, "rows": rows}, indent=1))
    if args.write:
        from bench_image_faithfulness import replace_block
        replace_block(HERE / "README.md", "fashion_modern",
                      f"### Fashion-MNIST ViT and ConvNeXt beside the CNN, black patches (issue 19)\n\n{text}\n\n"
                      f"{env}\n\nCommand: `python benchmarks/bench_fashion_modern.py --write`")


if __name__ == "__main__":
    main()
