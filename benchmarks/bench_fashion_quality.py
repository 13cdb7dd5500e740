"""Explanation quality on Fashion-MNIST: region perturbation (MoRF / LeRF) and AOPC.

The Fashion-MNIST CNN of the image plugin (``sciexplain_image.fashion``) is explained on the
first N test images (default 500) for its predicted class by gradient, sensitivity, gradient x
input, integrated gradients, SmoothGrad and the LRP presets epsilon-plus, epsilon-plus-box
(bounds = the input range [0, 1]), deep-taylor (w^2 on the first layer: no bounds) and
alpha2-beta1, plus a random order. For each, 4x4 patches are removed (replaced by uniform noise
over [0, 1]) most relevant first (MoRF) and least relevant first (LeRF), following Samek et al.
2017; the table gives the AOPC of both curves (Samek et al.'s AOPC on MoRF: higher is better; on
LeRF: lower is better) and the area between them (ABPC: higher is better).

Writes ``benchmarks/results/fashion_perturbation.png`` (the mean curves) and
``benchmarks/results/fashion_quality.json``; ``--write`` puts the table between the
``<!-- fashion_quality:start -->`` / ``<!-- fashion_quality:end -->`` markers of
``benchmarks/README.md`` (appending the markers if absent) and touches nothing else there.

Needs ``sciexplain-image`` and ``apt-get install -y dataset-fashion-mnist``.

Usage: python benchmarks/bench_fashion_quality.py [--n 500] [--steps 20] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import sciexplain as sx
from sciexplain.evaluate import abpc, aopc, perturbation_curve

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
START, END = "<!-- fashion_quality:start -->", "<!-- fashion_quality:end -->"

#: label -> sx.explain arguments (None: random order)
METHODS: dict[str, dict | None] = {
    "gradient": dict(method="gradient"),
    "sensitivity": dict(method="sensitivity"),
    "gradient x input": dict(method="gradient_x_input"),
    "integrated gradients (32 steps, baseline 0)": dict(method="integrated_gradients", steps=32, batch_size=500),
    "SmoothGrad (25 samples, noise 0.15)": dict(method="smoothgrad", n_samples=25, noise=0.15, batch_size=500),
    "LRP epsilon-plus": dict(method="lrp", preset="epsilon-plus"),
    "LRP epsilon-plus-box (bounds 0..1)": dict(method="lrp", preset="epsilon-plus-box", bounds=(0.0, 1.0)),
    "LRP deep-taylor": dict(method="lrp", preset="deep-taylor"),
    "LRP alpha2-beta1": dict(method="lrp", preset="alpha2-beta1"),
    "random order": None,
}


def load(n: int):
    try:
        from sciexplain_image.fashion import fashion_to_tensor, load_fashion_cnn, load_fashion_mnist
    except ImportError as err:
        raise SystemExit(f"this benchmark needs the image plugin: pip install -e plugins/image ({err})")
    model = load_fashion_cnn()
    images, labels = load_fashion_mnist("test")
    return model, fashion_to_tensor(images[:n]), labels[:n]


def run(n: int, steps: int, patch: int, seed: int, removal: str = "uniform", ties: str = "random") -> dict:
    model, x, labels = load(n)
    with torch.no_grad():
        pred = model(x).argmax(1)
    accuracy = float((pred.numpy() == labels).mean())
    common = dict(steps=steps, patch=(patch, patch), removal=removal, value_range=(0.0, 1.0), seed=seed,
                  batch_size=500, ties=ties)
    rows, curves = [], {}
    for label, kw in METHODS.items():
        t0 = time.perf_counter()
        if kw is None:
            R, order_m, order_l = None, "random", "random"
        else:
            kw = dict(kw)
            method = kw.pop("method")
            R = sx.explain(model, x, target=pred, method=method, **kw)
            order_m, order_l = "morf", "lerf"
        t_explain = time.perf_counter() - t0
        t0 = time.perf_counter()
        morf = perturbation_curve(model, x, R, order=order_m, target=pred, **common)
        lerf = perturbation_curve(model, x, R, order=order_l, target=pred, **{**common, "seed": seed + 1})
        t_curves = time.perf_counter() - t0
        if kw is None:  # two random orders: the LeRF curve is a second random draw
            morf.attrs["order"], lerf.attrs["order"] = "morf", "lerf"
        a_m, a_l, ab = aopc(morf), aopc(lerf), abpc(morf, lerf)
        rows.append({"method": label, "aopc_morf": a_m.attrs["mean"],
                     "aopc_morf_sem": float(a_m.std() / np.sqrt(n)), "aopc_lerf": a_l.attrs["mean"],
                     "abpc": ab.attrs["mean"], "explain_s": t_explain, "curves_s": t_curves})
        curves[label] = {"morf": morf.mean(morf.dims[0]).values.tolist(),
                         "lerf": lerf.mean(lerf.dims[0]).values.tolist(),
                         "removed_fraction": morf["removed_fraction"].values.tolist()}
        print(f"{label:45s} AOPC MoRF {a_m.attrs['mean']:.3f}  LeRF {a_l.attrs['mean']:.3f}  "
              f"ABPC {ab.attrs['mean']:.3f}  ({t_explain:.1f} s explain, {t_curves:.1f} s curves)", flush=True)
    return {"n_images": n, "steps": steps, "patch": patch, "seed": seed, "removal": removal, "ties": ties,
            "accuracy_on_these": accuracy,
            "rows": rows, "curves": curves, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "python": platform.python_version(),
            "mean_logit": float(curves["random order"]["morf"][0])}


REMOVAL_TEXT = {"uniform": "uniform noise in [0, 1]", "zero": "zeros (the background value)",
                "mean": "the per-pixel mean of the images"}


def table(res: dict) -> str:
    lines = [f"Fashion-MNIST CNN (`sciexplain_image.fashion`), first {res['n_images']} test images "
             f"(accuracy {res['accuracy_on_these']:.3f} on them), predicted class; {res['patch']}x{res['patch']} "
             f"patches replaced by {REMOVAL_TEXT[res['removal']]}, {res['steps']} steps "
             f"({res['steps'] * res['patch'] ** 2 / 784:.0%} of the image), patches of equal relevance in "
             f"{'random' if res['ties'] == 'random' else 'position'} order; mean logit before perturbation "
             f"{res['mean_logit']:.2f}. AOPC = mean over steps 0..L of f(x) - f(x^(k)) "
             "(MoRF: higher is better; LeRF: lower is better), ABPC = area between the LeRF and MoRF curves.",
             "",
             "| method | AOPC MoRF (+- s.e.m.) | AOPC LeRF | ABPC | explain time |",
             "|---|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['aopc_morf']:.3f} +- {r['aopc_morf_sem']:.3f} | {r['aopc_lerf']:.3f} | "
                     f"{r['abpc']:.3f} | {r['explain_s']:.2f} s |")
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for label, c in res["curves"].items():
        style = dict(color="0.4", linestyle="--") if label == "random order" else {}
        axes[0].plot(np.asarray(c["removed_fraction"]) * 100, c["morf"], label=label, **style)
        axes[1].plot(np.asarray(c["removed_fraction"]) * 100, c["lerf"], label=label, **style)
    axes[0].set_title("MoRF: most relevant patches removed first")
    axes[1].set_title("LeRF: least relevant patches removed first")
    for ax in axes:
        ax.set_xlabel("image area removed (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean logit of the predicted class")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Fashion-MNIST CNN, {res['n_images']} test images, {res['patch']}x{res['patch']} patches "
                 f"replaced by {REMOVAL_TEXT[res['removal']]}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_readme(text: str) -> None:
    old = README.read_text(encoding="utf-8") if README.exists() else ""
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old and old.index(START) < old.index(END):
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="number of test images")
    ap.add_argument("--steps", type=int, default=20, help="perturbation steps (of 49 patches)")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--removal", choices=["uniform", "zero", "mean"], default="uniform",
                    help="what a removed patch becomes (default: uniform noise, as in Samek et al. 2017)")
    ap.add_argument("--ties", choices=["random", "stable"], default="random",
                    help="order of patches with equal relevance (e.g. the zeros on the black background)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--write", action="store_true", help="update the table in benchmarks/README.md")
    args = ap.parse_args()
    if args.write and args.removal != "uniform":
        raise SystemExit("--write records the benchmark as specified (uniform noise); drop --removal")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = run(args.n, args.steps, args.patch, args.seed, args.removal, args.ties)
    res["total_s"] = time.perf_counter() - t0
    text = table(res)
    print("\n" + text + f"\n\ntotal {res['total_s']:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.removal == "uniform" else f"_{args.removal}"
    (RESULTS / f"fashion_quality{suffix}.json").write_text(json.dumps(res, indent=2) + "\n")
    figure(res, RESULTS / f"fashion_perturbation{suffix}.png")
    if args.write:
        write_readme(text + f"\n\n`python benchmarks/bench_fashion_quality.py --write` ({res['total_s']:.0f} s on "
                     f"this machine); curves: `benchmarks/results/fashion_perturbation.png`. Fashion-MNIST has a "
                     "black (0) background, and noise on background patches moves the logit as well, so under "
                     "uniform noise a ranking that puts background patches early scores high on MoRF; "
                     "`--removal zero` (replacement by the background value, written to "
                     "`results/fashion_quality_zero.json`) separates the two effects.")
        print(f"updated {README}")


if __name__ == "__main__":
    main()
