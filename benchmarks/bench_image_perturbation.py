"""Region perturbation on a real ImageNet network: EfficientNet-Lite0 on the bundled photos.

9x9 patches of the 224x224 model input are replaced, most relevant first (MoRF), by uniform noise
over the valid pixel range (Samek et al. 2017); the explained logit is recorded after each step.
AOPC (area over the MoRF perturbation curve, mean over steps 0..L) is reported for LRP presets,
sensitivity analysis, gradient x input and a random order, plus LRP's LeRF AOPC.

Usage: python benchmarks/bench_image_perturbation.py [--steps 50] [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import sciexplain as sx
from sciexplain_image import explain_image, list_photos, load_efficientnet_lite0, load_photo
from sciexplain_image.explain import input_bounds

HERE = Path(__file__).resolve().parent
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "china", "flower", "camera")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_efficientnet_lite0()
    spec = model.preprocess
    photos = [p for p in PHOTOS if p in list_photos()]
    images = [load_photo(p) for p in photos]
    x = torch.cat([spec(im)[0] for im in images])
    lo, hi = input_bounds(spec)
    value_range = (float(lo.min()), float(hi.max()))
    methods = {
        "LRP epsilon-plus-box": dict(preset="epsilon-plus-box"),
        "LRP alpha2-beta1": dict(preset="alpha2-beta1"),
        "LRP deep-taylor": dict(preset="deep-taylor"),
        "sensitivity": dict(method="sensitivity"),
        "gradient x input": dict(method="gradient_x_input"),
    }
    rows, curves = [], {}
    t0 = time.time()
    ref = None
    for name, kw in methods.items():
        R = explain_image(model, images, names=photos, **kw)
        ref = R if ref is None else ref
        c = sx.evaluate.perturbation_curve(model, x, R, steps=args.steps, order="morf", removal="uniform",
                                           patch=(9, 9), value_range=value_range, seed=0, batch_size=16)
        curves[name] = c
        row = {"method": name, "aopc_morf": float(sx.evaluate.aopc(c).mean())}
        if name.startswith("LRP epsilon-plus-box"):
            cl = sx.evaluate.perturbation_curve(model, x, R, steps=args.steps, order="lerf", removal="uniform",
                                                patch=(9, 9), value_range=value_range, seed=0, batch_size=16)
            row["aopc_lerf"] = float(sx.evaluate.aopc(cl).mean())
            curves[name + " (LeRF)"] = cl
        rows.append(row)
        print(row, f"{time.time() - t0:.0f}s", flush=True)
    c = sx.evaluate.perturbation_curve(model, x, ref, steps=args.steps, order="random", removal="uniform",
                                       patch=(9, 9), value_range=value_range, seed=0, batch_size=16)
    curves["random"] = c
    rows.append({"method": "random order", "aopc_morf": float(sx.evaluate.aopc(c).mean())})
    table = ["| method | AOPC (MoRF) | AOPC (LeRF) |", "|---|---|---|"]
    for r in rows:
        lerf = f"{r['aopc_lerf']:.3f}" if "aopc_lerf" in r else ""
        table.append(f"| {r['method']} | {r['aopc_morf']:.3f} | {lerf} |")
    env = (f"EfficientNet-Lite0, {len(photos)} photos ({', '.join(photos)}), 9x9 patches of 224x224, "
           f"uniform noise in [{value_range[0]:.3f}, {value_range[1]:.3f}], {args.steps} steps, seed 0; "
           f"{time.strftime('%Y-%m-%d')}")
    text = "\n".join(table)
    print(text)
    print(env)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "image_perturbation.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, c in curves.items():
        ax.plot(c.mean(c.dims[0]).values, label=name, ls="--" if "LeRF" in name else "-")
    ax.set_xlabel("9x9 patches removed")
    ax.set_ylabel("mean logit of the explained class")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "image_perturbation.png", dpi=120)
    if args.write:
        readme = HERE / "README.md"
        s = readme.read_text()
        start, end = "<!-- image_perturbation:start -->", "<!-- image_perturbation:end -->"
        block = f"{start}\n{text}\n\n{env}\n\n![curves](results/image_perturbation.png)\n{end}"
        s = s[: s.index(start)] + block + s[s.index(end) + len(end):] if start in s else s + "\n" + block + "\n"
        readme.write_text(s)


if __name__ == "__main__":
    main()
