"""Video plugin benchmark: ground truth, block perturbation and cost on motion-vector clips.

Run (after ``bash scripts/setup.sh; . .venv/bin/activate``)::

    python benchmarks/bench_video.py            # print the tables
    python benchmarks/bench_video.py --write    # also update benchmarks/README.md and results/

1. **Ground truth** on generated clips (a held-out seed; the figure's boxes and true motion are
   known): share of the positive relevance on the figure's blocks (against the share of blocks
   the figure covers), and the correlation of relevance per frame with the figure's true motion
   per frame; LRP (the plugin's default preset), sensitivity and gradient x input, for the
   Conv3d network and the Fisher vector + linear SVM.
2. **Block perturbation**: block-frame regions zeroed, most relevant first (MoRF) against a
   random order; AOPC = mean over steps 0..L of f(x) - f(x^(k)) (higher is better).
3. **Cost**: reading motion vectors (frames per second) against PyAV decoding the same clip to
   RGB arrays; explaining a batch of clips against one gradient pass (forward + backward).

Writes ``benchmarks/results/video_bench.json`` and ``video_perturbation.png`` and the section
between ``<!-- bench_video:start -->`` and ``<!-- bench_video:end -->`` of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results"
START, END = "<!-- bench_video:start -->", "<!-- bench_video:end -->"
METHODS = [("LRP", "lrp"), ("sensitivity", "sensitivity"), ("gradient x input", "gradient_x_input")]


def ground_truth_and_perturbation(models, fields, truths, steps, per_step, seed):
    import sciexplain as sx
    import sciexplain_video as sv

    targets = [t.label for t in truths]
    rows, curves = [], {}
    for mname, model in models.items():
        for label, method in METHODS:
            t0 = time.perf_counter()
            R = sv.explain_motion(model, fields, target=targets, method=method)
            seconds = time.perf_counter() - t0
            if R.attrs["decomposes"] == "f(x)":
                R.relevance.check()
            s = sv.ground_truth_scores(R, truths)
            curve = sv.block_perturbation(model, fields, R, steps=steps, regions_per_step=per_step, seed=seed)
            curves[(mname, label)] = curve
            rows.append({"model": mname, "method": label, "inside_share": float(s.inside_share.mean()),
                         "area_share": float(s.area_share.mean()),
                         "frame_correlation": float(np.nanmean(s.frame_correlation.values)),
                         "aopc_morf": float(sx.evaluate.aopc(curve).mean()), "explain_s": seconds})
        R = sv.explain_motion(model, fields, target=targets)
        rand = sv.block_perturbation(model, fields, R, order="random", steps=steps, regions_per_step=per_step,
                                     seed=seed)
        curves[(mname, "random")] = rand
        rows.append({"model": mname, "method": "random order", "inside_share": float("nan"),
                     "area_share": float("nan"), "frame_correlation": float("nan"),
                     "aopc_morf": float(sx.evaluate.aopc(rand).mean()), "explain_s": 0.0})
    return rows, curves


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reading_cost(repeats):
    import av
    import sciexplain_video as sv

    out = []
    for name in ("carphone", "bikes", "bigbuckbunny"):
        try:
            path = sv.real_clip_path(name)
        except sv.SkvideoDataMissingError:
            continue

        def pixels():
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                for f in c.decode(s):
                    f.to_ndarray(format="rgb24")

        n = sv.read_motion_vectors(path).n_frames
        t_mv = _median_time(lambda: sv.read_motion_vectors(path), repeats)
        t_mv_full = _median_time(lambda: sv.read_motion_vectors(path, skip_pixels=False), repeats)
        t_px = _median_time(pixels, repeats)
        out.append({"clip": name, "frames": n, "mv_fps": n / t_mv, "mv_full_decode_fps": n / t_mv_full,
                    "pixels_fps": n / t_px})
    return out


def explain_cost(models, fields, repeats):
    import sciexplain as sx
    import sciexplain_video as sv

    out = []
    for mname, model in models.items():
        if isinstance(model, sv.MotionFisherModel):
            x, _ = sv.descriptor_batch(fields, model.spec)
        else:
            x = sv.stack_fields(fields)

        def gradient():
            xi = x.clone().requires_grad_(True)
            logits = model(xi)
            logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()

        def lrp():
            sx.explain(model, x)

        def lrp_fields():
            sv.explain_motion(model, fields)

        t_g = _median_time(gradient, repeats)
        t_l = _median_time(lrp, repeats)
        t_f = _median_time(lrp_fields, repeats)
        out.append({"model": mname, "batch": len(fields), "gradient_s": t_g, "lrp_s": t_l, "lrp_ratio": t_l / t_g,
                    "explain_fields_s": t_f})
    return out


def plot_curves(curves, path):
    from sciexplain.result.plotting import pyplot

    plt = pyplot()
    models = sorted({m for m, _ in curves})
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        for (mm, label), c in curves.items():
            if mm == m:
                ax.plot(c.mean(c.dims[0]).values, label=label, ls="--" if label == "random" else "-")
        ax.set_title(f"{m}: block-frame regions zeroed", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("explained logit (mean over clips)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows, reading, cost, args, accuracy, elapsed, load):
    lines = [f"Generated clips: {args.per_class} per action ({3 * args.per_class} clips, seed {args.seed}, 64x64 px, 24 "
             f"frames, 16-px blocks, libx264 `bf=0 g=12 refs=1`), explained for their true class; held-out accuracy "
             f"on them: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()) + ". Inside share: positive "
             "relevance on the blocks the figure overlaps (area share: the share of such blocks, what an "
             "uninformed map scores). Frame correlation: Pearson r of relevance per frame with the figure's true "
             f"motion per frame. Perturbation: block-frame regions zeroed, {args.per_step} per step, "
             f"{args.steps} steps; AOPC = mean over steps 0..L of f(x) - f(x^(k)).", "",
             "| model | method | inside share | area share | frame correlation | AOPC MoRF | explain time (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        fmt = lambda v: "" if np.isnan(v) else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['method']} | {fmt(r['inside_share'])} | {fmt(r['area_share'])} | "
                     f"{fmt(r['frame_correlation'])} | {r['aopc_morf']:.3f} | {r['explain_s']:.2f} |")
    lines += ["", "Reading cost (median of repeats, whole clip):", "",
              "| clip | frames | motion vectors (fps) | motion vectors, full decode (fps) | PyAV decode to RGB (fps) |",
              "|---|---:|---:|---:|---:|"]
    for r in reading:
        lines.append(f"| {r['clip']} | {r['frames']} | {r['mv_fps']:.0f} | {r['mv_full_decode_fps']:.0f} | "
                     f"{r['pixels_fps']:.0f} |")
    lines += ["", f"Explanation cost on a batch of {cost[0]['batch']} generated clips:", "",
              "| model | gradient pass (s) | LRP (s) | x gradient | LRP from MotionFields incl. descriptors and labels (s) |",
              "|---|---:|---:|---:|---:|"]
    for r in cost:
        lines.append(f"| {r['model']} | {r['gradient_s']:.4f} | {r['lrp_s']:.4f} | {r['lrp_ratio']:.2f} | "
                     f"{r['explain_fields_s']:.4f} |")
    lines += ["", f"`python benchmarks/bench_video.py --write` ({elapsed:.0f} s); torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {platform.machine()}, {time.strftime('%Y-%m-%d')}; 1-minute load "
              f"average {load[0]:.1f} at the start and {load[1]:.1f} at the end on {os.cpu_count()} cores (times "
              "scale with the load of the shared machine; the quality numbers do not).", "",
              "![curves](results/video_perturbation.png)"]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    old = README.read_text(encoding="utf-8") if README.exists() else ""
    block = f"{START}\n{text}\n{END}"
    if START in old and END in old and old.index(START) < old.index(END):
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n## Video: motion-vector action classifiers\n\n" + block + "\n"
    README.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--per-step", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import sciexplain_video as sv

    t0 = time.time()
    load_start = os.getloadavg()[0]
    models = {"Conv3d CNN": sv.load_pretrained("cnn"), "Fisher vector + SVM": sv.load_pretrained("fisher")}
    with tempfile.TemporaryDirectory() as tmp:
        items = sv.make_dataset(tmp, args.per_class, seed=args.seed)
        fields = [sv.read_motion_vectors(p) for p, _ in items]
    truths = [t for _, t in items]
    accuracy = {k: sv.accuracy(m, fields, [t.label for t in truths]) for k, m in models.items()}
    rows, curves = ground_truth_and_perturbation(models, fields, truths, args.steps, args.per_step, args.seed)
    reading = reading_cost(args.repeats)
    cost = explain_cost(models, fields, args.repeats)
    elapsed = time.time() - t0
    load = (load_start, os.getloadavg()[0])
    text = table(rows, reading, cost, args, accuracy, elapsed, load)
    print(text)
    if args.write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "video_bench.json").write_text(json.dumps(
            {"args": vars(args), "accuracy": accuracy, "ground_truth_and_perturbation": rows, "reading": reading,
             "explain_cost": cost, "seconds": elapsed, "load_average": load}, indent=2) + "\n")
        plot_curves(curves, RESULTS / "video_perturbation.png")
        write_readme(text)


if __name__ == "__main__":
    main()
