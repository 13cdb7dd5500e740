"""LRP composites on the Fashion-MNIST CNN: region perturbation with black patches, bootstrap CIs.

The smaller companion of ``bench_image_faithfulness.py`` (issue 12): the image plugin's
Fashion-MNIST CNN, the first N test images explained for their predicted class, 4x4 patches set
to black (0, the background: Montavon et al. 2017, Sec. 7.2 flip pixels of digit-like images to
the background) most relevant first (MoRF) and least relevant first (LeRF), ties in random order
(several seeds), AOPC and ABPC with percentile bootstrap intervals over images from
``sx.evaluate.compare``.

Usage: python benchmarks/bench_fashion_faithfulness.py [--n 300] [--steps 15] [--seeds 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sciexplain as sx
from sciexplain.rules.presets import ScaledEpsilon
from sciexplain.rules import Epsilon, Gamma, ZBox

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

METHODS: dict[str, dict | None] = {
    "LRP epsilon-plus": dict(preset="epsilon-plus"),
    "LRP epsilon-plus-box (bounds 0..1)": dict(preset="epsilon-plus-box", bounds=(0.0, 1.0)),
    "LRP deep-taylor (w^2 first)": dict(preset="deep-taylor"),
    "LRP alpha2-beta1": dict(preset="alpha2-beta1"),
    "LRP epsilon (0.01)": dict(preset="epsilon"),
    "LRP zB + Gamma(0.25) convs + Epsilon(1e-6) dense": dict(
        preset={"features.0": ZBox(0.0, 1.0), nn.Conv2d: Gamma(0.25), nn.Linear: Epsilon(1e-6)}),
    "LRP ScaledEpsilon(0.25) everywhere": dict(preset=ScaledEpsilon(0.25)),
    "sensitivity": dict(method="sensitivity"),
    "gradient x input": dict(method="gradient_x_input"),
    "random order": None,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--steps", type=int, default=15, help="4x4 patches removed, one per step (of 49)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t_start = time.time()
    from sciexplain_image.fashion import fashion_to_tensor, load_fashion_cnn, load_fashion_mnist
    model = load_fashion_cnn()
    images, labels = load_fashion_mnist("test")
    x = fashion_to_tensor(images[: args.n])
    with torch.no_grad():
        pred = model(x).argmax(1)
    accuracy = float((pred.numpy() == labels[: args.n]).mean())
    explanations, absorbed = {}, {}
    for label, kw in METHODS.items():
        if kw is None:
            explanations[label] = None
            continue
        kw = dict(kw)
        R = sx.explain(model, x, target=pred, method=kw.pop("method", "lrp"), **kw)
        if R.attrs.get("decomposes") == "f(x)":
            R.relevance.check()
            absorbed[label] = float(np.mean(R.absorbed.values / R.prediction.values))
        explanations[label] = R
    ds = sx.evaluate.compare(model, x, explanations, steps=args.steps, patch=(4, 4), removal="zero",
                             seeds=list(range(args.seeds)), target=pred.numpy(), n_boot=2000, batch_size=500,
                             ties="random", progress=False)
    elapsed = time.time() - t_start
    rows = ["| method | AOPC MoRF (95% CI) | AOPC LeRF (95% CI) | ABPC (95% CI) | absorbed / f(x) |",
            "|---|---|---|---|---|"]
    for i in np.argsort(-ds["estimate"].sel(metric="abpc").values):
        m = str(ds.method.values[i])
        cells = [f"{float(ds['estimate'][i, j]):.2f} [{float(ds['ci_low'][i, j]):.2f}, {float(ds['ci_high'][i, j]):.2f}]"
                 for j in range(3)]
        ab = f"{absorbed[m]:.2f}" if m in absorbed else ""
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {ab} |")
    table = "\n".join(rows)
    env = (f"Fashion-MNIST CNN (`sciexplain_image.fashion`), first {args.n} test images (accuracy {accuracy:.3f}), "
           f"predicted class; 4x4 patches set to 0 (black background), {args.steps} of 49 patches, one per step, "
           f"ties in random order, seeds {list(range(args.seeds))}; 95% percentile bootstrap over images. "
           f"Ran in {elapsed:.0f} s, {time.strftime('%Y-%m-%d')}.")
    print(table)
    print(env)
    RESULTS.mkdir(exist_ok=True)
    out = ds.copy()
    out.attrs["env"] = env
    out.to_netcdf(RESULTS / "fashion_faithfulness.nc")
    frame = ds[["estimate", "ci_low", "ci_high"]].to_dataframe().reset_index()
    (RESULTS / "fashion_faithfulness.json").write_text(json.dumps(
        {"env": env, "rows": frame.to_dict(orient="records"), "absorbed": absorbed}, indent=1))
    if args.write:
        from bench_image_faithfulness import replace_block
        replace_block(HERE / "README.md", "fashion_faithfulness",
                      f"### LRP composites on the Fashion-MNIST CNN, black patches (issue 12)\n\n{table}\n\n{env}\n\n"
                      "Command: `python benchmarks/bench_fashion_faithfulness.py --write`")


if __name__ == "__main__":
    main()
