"""SpRAy and ClArC benchmarks: a planted Fashion-MNIST shortcut, and the time and memory of SpRAy at 100k samples.

Run: ``MPLBACKEND=Agg .venv/bin/python benchmarks/bench_spray.py [--case fashion|eeg|scale|all] [--n 100000]``.
Writes ``benchmarks/results/spray_{fashion,eeg,scale}.json`` (and the SpRAy figures as PNG) and prints tables.
``--seeds 0-4`` reruns the planted cases (fashion, eeg; or the one ``--case`` names) with those seeds (data split,
planted set, model) into ``benchmarks/results/spray_seeds.json`` and prints a table per seed.

* fashion: a 4 x 4 white tag is planted in the top-left corner of half of the "Trouser" images
  (train and test). The image plugin's FashionCNN is trained on 12 000 training images (2 epochs).
  SpRAy runs on the LRP relevance (epsilon-plus-box, bounds 0..1) of the tagged-and-untagged test
  trousers; cluster precision / recall against the known tagged set. The artifact direction is
  found in the ``features`` output (32 x 7 x 7) from the training trousers with and without tag;
  accuracy on clean test images and on tagged test images of the other nine classes, and the tag's
  share of absolute relevance, before and after P-ClArC and A-ClArC.
* eeg: the EEG plugin's synthetic epochs (1200, classes left/right, 30 channels, 100 Hz, class signal
  1.2 uV against 1 uV noise); a frontal
  blink-like bump (8 uV, 0-0.3 s, full on Fp1/Fp2, 40 % on the F row) planted in half of the
  "left" epochs; CompactEEGNet trained on 800; SpRAy on the held-out left epochs' LRP relevance
  (epsilon); ClArC in ``layers.4`` (after pooling); the blink is added to held-out "right" epochs.
* scale: synthetic maps 100k x 16 x 16 (= 256 features), five groups; spray's wall time and the
  process's peak memory (ru_maxrss) measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _fashion(seed: int = 0, figure: bool = True) -> dict:
    import sciexplain as sx
    from sciexplain_image import FashionCNN, fashion_to_tensor, load_fashion_mnist

    TAG_CLASS, N_TRAIN = 1, 12000
    rng = np.random.default_rng(seed)
    Xtr, ytr = load_fashion_mnist("train")
    Xte, yte = load_fashion_mnist("test")
    keep = rng.permutation(len(Xtr))[:N_TRAIN]
    Xtr, ytr = Xtr[keep], ytr[keep]

    def plant(X, where):
        X = X.copy()
        X[where, 1:5, 1:5] = 255
        return X

    tag_tr = (ytr == TAG_CLASS) & (rng.random(len(ytr)) < 0.5)
    Xtr_t = plant(Xtr, tag_tr)
    torch.manual_seed(seed)
    model = FashionCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = fashion_to_tensor(Xtr_t), torch.from_numpy(ytr)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(2):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    train_s = time.perf_counter() - t0

    # SpRAy on the test trousers, half of them tagged
    cls = np.flatnonzero(yte == TAG_CLASS)
    tag_te = rng.random(len(cls)) < 0.5
    x_cls = fashion_to_tensor(plant(Xte[cls], tag_te))
    R = sx.explain(model, x_cls, TAG_CLASS, preset="epsilon-plus-box", bounds=(0.0, 1.0))
    t0 = time.perf_counter()
    ds = sx.spray(R, pool="dim_0", downsample=2)
    spray_s = time.perf_counter() - t0
    labels = ds.cluster.values
    k = ds.attrs["n_clusters"]
    tag_clusters = [c for c in range(k) if tag_te[labels == c].mean() > 0.5]
    found = np.isin(labels, tag_clusters)
    tp = float((found & tag_te).sum())
    prec, rec = tp / max(found.sum(), 1), tp / tag_te.sum()
    ds2 = sx.spray(R, 2, pool="dim_0", downsample=2)
    corner = ds2.prototype.isel(dim_1=slice(0, 6), dim_2=slice(0, 6)).sum(("dim_1", "dim_2")).values
    found2 = ds2.cluster.values == int(np.argmax(corner))
    tp2 = float((found2 & tag_te).sum())
    prec2, rec2 = tp2 / max(found2.sum(), 1), tp2 / tag_te.sum()
    if figure:
        fig = sx.plot_spray(ds, truth=tag_te)
        fig.savefig(RESULTS / "spray_fashion.png", dpi=80)

    # ClArC
    tr_cls = ytr == TAG_CLASS
    direction = sx.artifact_direction(model, "features", fashion_to_tensor(Xtr_t[tr_cls & tag_tr]),
                                      fashion_to_tensor(Xtr_t[tr_cls & ~tag_tr]))
    p = sx.PClArC(model, "features", direction)
    t0 = time.perf_counter()
    a = sx.AClArC(model, "features", direction).fit(xt, ytr, epochs=1, lr=5e-4)
    aclarc_s = time.perf_counter() - t0
    other = np.flatnonzero(yte != TAG_CLASS)[:2000]
    x_clean = fashion_to_tensor(Xte[:2000])
    x_tag = fashion_to_tensor(plant(Xte[other], np.ones(len(other), bool)))
    mask = np.zeros((1, 28, 28), bool)
    mask[0, 1:5, 1:5] = True
    report = sx.clarc_report({"original": model, "P-ClArC": p, "A-ClArC": a}, x_clean, yte[:2000],
                             x_tag[:500], yte[other][:500], mask, preset="epsilon-plus-box", bounds=(0.0, 1.0))
    report["accuracy_artifact_all"] = ("model", [
        float((m(x_tag).argmax(1).numpy() == yte[other]).mean()) for m in (model, p, a)])
    return {
        "train_images": N_TRAIN, "tag_class": "Trouser", "train_seconds": round(train_s, 1),
        "spray": {"samples": int(len(cls)), "tagged": int(tag_te.sum()), "n_clusters_eigengap": int(k),
                  "eigenvalues": np.round(ds.eigenvalues.values, 4).tolist(), "cluster_sizes": ds.cluster_size.values.tolist(),
                  "tag_clusters": tag_clusters, "precision": round(prec, 3), "recall": round(rec, 3),
                  "precision_k2": round(prec2, 3), "recall_k2": round(rec2, 3), "seconds": round(spray_s, 2)},
        "direction": {"layer": "features", "artifact_value": direction.artifact_value,
                      "clean_value": direction.clean_value},
        "clarc": {name: {v: float(report[v].sel(model=name)) for v in report.data_vars if report[v].ndim == 1}
                  for name in report.model.values.tolist()},
        "aclarc_fit_seconds": round(aclarc_s, 1),
    }


def _eeg(seed: int = 0, figure: bool = True) -> dict:
    import sciexplain as sx
    from sciexplain_eeg import CompactEEGNet, fit, make_synthetic_epochs

    # a weak class signal (1.2 uV against 1 uV noise), so that the blink is the easier cue
    epochs, truth = make_synthetic_epochs(n_epochs=1200, amplitude=1.2e-6, seed=seed)
    X = (epochs.get_data(copy=True) * 1e6).astype(np.float32)  # microvolts
    y = epochs.events[:, 2].astype(np.int64)
    names = list(truth.ch_names)
    times = np.asarray(truth.times)
    # a blink: a positive 8 uV Hann bump over 0.0-0.3 s, full on Fp1/Fp2, 40 % on the F row
    weights = np.array([1.0 if c in ("Fp1", "Fp2") else 0.4 if c in ("F7", "F3", "Fz", "F4", "F8") else 0.0
                        for c in names], dtype=np.float32)
    bump = np.where((times >= 0.0) & (times <= 0.3), np.sin(np.pi * np.clip(times / 0.3, 0, 1)) ** 2, 0.0)
    blink = 8.0 * weights[:, None] * bump[None, :].astype(np.float32)
    mask = (weights[:, None] > 0) & (bump[None, :] > 0)
    rng = np.random.default_rng(seed)
    train = np.arange(len(X)) < 800
    tagged = (y == 0) & (rng.random(len(X)) < 0.5)
    Xb = X + tagged[:, None, None] * blink[None]
    model = CompactEEGNet(len(names), X.shape[2], n_filters=8, pool=5)
    t0 = time.perf_counter()
    fit(model, Xb[train], y[train], scaling=1.0, max_epochs=60, patience=15, seed=seed)
    train_s = time.perf_counter() - t0
    model.eval()

    test = ~train
    cls = np.flatnonzero(test & (y == 0))
    R = sx.explain(model, torch.from_numpy(Xb[cls]), 0, preset="epsilon", dims=("epoch", "channel", "time"),
                   coords={"channel": names, "time": times})
    tag_cls = tagged[cls]
    ds = sx.spray(R, downsample={"time": 5})
    labels, k = ds.cluster.values, ds.attrs["n_clusters"]
    tag_clusters = [c for c in range(k) if tag_cls[labels == c].mean() > 0.5]
    found = np.isin(labels, tag_clusters)
    tp = float((found & tag_cls).sum())
    ds2 = sx.spray(R, 2, downsample={"time": 5})
    front = ds2.prototype.sel(channel=["Fp1", "Fp2"]).sum(("channel", "time")).values
    found2 = ds2.cluster.values == int(np.argmax(front))
    tp2 = float((found2 & tag_cls).sum())
    if figure:
        fig = sx.plot_spray(ds, truth=tag_cls)
        fig.savefig(RESULTS / "spray_eeg.png", dpi=80)

    direction = sx.artifact_direction(model, "layers.4", torch.from_numpy(Xb[train & tagged]),
                                      torch.from_numpy(Xb[train & (y == 0) & ~tagged]))
    p = sx.PClArC(model, "layers.4", direction)
    a = sx.AClArC(model, "layers.4", direction).fit(Xb[train], y[train], epochs=5, lr=1e-3)
    other = np.flatnonzero(test & (y != 0))
    x_blink = X[other] + blink[None]
    report = sx.clarc_report({"original": model, "P-ClArC": p, "A-ClArC": a}, X[test], y[test], x_blink, y[other],
                             mask, preset="epsilon")
    return {
        "epochs": int(len(X)), "train": int(train.sum()), "train_seconds": round(train_s, 1),
        "spray": {"samples": int(len(cls)), "tagged": int(tag_cls.sum()), "n_clusters_eigengap": int(k),
                  "eigenvalues": np.round(ds.eigenvalues.values, 4).tolist(), "tag_clusters": tag_clusters,
                  "precision": round(tp / max(found.sum(), 1), 3), "recall": round(tp / max(tag_cls.sum(), 1), 3),
                  "precision_k2": round(tp2 / max(found2.sum(), 1), 3),
                  "recall_k2": round(tp2 / max(tag_cls.sum(), 1), 3)},
        "clarc": {name: {v: float(report[v].sel(model=name)) for v in report.data_vars if report[v].ndim == 1}
                  for name in report.model.values.tolist()},
    }


def _scale_child(n: int) -> None:
    import xarray as xr
    import sciexplain as sx
    import tracemalloc

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 5, n)
    centres = rng.normal(0, 1, (5, 16, 16)).astype(np.float32)
    maps = np.empty((n, 16, 16), dtype=np.float32)
    for s in range(0, n, 10_000):  # in float32 blocks, so that making the input sets no memory peak
        e = min(s + 10_000, n)
        maps[s:e] = centres[groups[s:e]] + rng.standard_normal((e - s, 16, 16), dtype=np.float32) * 0.8
    R = xr.DataArray(maps, dims=("sample", "y", "x"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    ds = sx.spray(R, n_neighbors=10)
    sec = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    labels = ds.cluster.values
    purity = min(np.mean(labels[groups == g] == np.bincount(labels[groups == g]).argmax()) for g in range(5))
    print(json.dumps({"samples": n, "features": 256, "seconds": round(sec, 1), "n_clusters": ds.attrs["n_clusters"],
                      "peak_rss_mb": round(peak / 1024, 1), "rss_before_spray_mb": round(base / 1024, 1),
                      "spray_traced_peak_mb": round(traced_peak / 2**20, 1),
                      "input_mb": round(maps.nbytes / 2**20, 1), "min_group_purity": round(float(purity), 3),
                      "load_avg_1min": round(os.getloadavg()[0], 1)}))


def _scale(n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--scale-child", str(n)], capture_output=True, text=True,
                         check=True, env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                          "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seeds(cases: list[str], seeds: list[int], meta: dict) -> None:
    """Each planted case rerun on other seeds (data split, planted set, model): SpRAy's scores and ClArC's
    accuracies per seed, in ``results/spray_seeds.json``; a Markdown table on stdout."""
    from tqdm.auto import tqdm

    path = RESULTS / "spray_seeds.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out.update(meta)
    run = {"fashion": _fashion, "eeg": _eeg}
    for case in cases:
        rows = []
        for seed in tqdm(seeds, desc=case):
            res = run[case](seed, figure=False)
            rows.append({"seed": seed, "spray": res["spray"],
                         "clarc": {m: {k: round(v, 4) for k, v in r.items()} for m, r in res["clarc"].items()}})
        out.setdefault("cases", {})[case] = rows
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("| case | seed | SpRAy eigengap k: precision / recall | k = 2 | clean accuracy original / P-ClArC / A-ClArC "
          "| artifact data accuracy original / P-ClArC / A-ClArC |")
    print("|---|---:|---|---|---|---|")
    for case, rows in out.get("cases", {}).items():
        acc = "accuracy_artifact_all" if case == "fashion" else "accuracy_artifact"
        for r in rows:
            s, c = r["spray"], r["clarc"]
            print(f"| {case} | {r['seed']} | {s['n_clusters_eigengap']}: {s['precision']} / {s['recall']} | "
                  f"{s['precision_k2']} / {s['recall_k2']} | "
                  + " / ".join(f"{c[m]['accuracy_clean']:.3f}" for m in ("original", "P-ClArC", "A-ClArC")) + " | "
                  + " / ".join(f"{c[m][acc]:.3f}" for m in ("original", "P-ClArC", "A-ClArC")) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="all", choices=["fashion", "eeg", "scale", "all"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seeds", default=None,
                        help="e.g. 0-4: rerun the planted cases (fashion, eeg) on these seeds into spray_seeds.json")
    parser.add_argument("--scale-child", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.scale_child:
        _scale_child(args.scale_child)
        return
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "machine": platform.machine()}
    if args.seeds is not None:
        lo, _, hi = args.seeds.partition("-")
        seeds = list(range(int(lo), int(hi or lo) + 1))
        _seeds(["fashion", "eeg"] if args.case in ("all", "scale") else [args.case], seeds,
               {**meta, "command": f"MPLBACKEND=Agg python benchmarks/bench_spray.py --seeds {args.seeds}"})
        return
    if args.case in ("fashion", "all"):
        res = _fashion()
        (RESULTS / "spray_fashion.json").write_text(json.dumps({**meta, **res}, indent=1))
        s = res["spray"]
        print(f"SpRAy on {s['samples']} test trousers ({s['tagged']} tagged): k = {s['n_clusters_eigengap']} "
              f"(eigengap), tag clusters {s['tag_clusters']}: precision {s['precision']}, recall {s['recall']}; "
              f"k = 2: precision {s['precision_k2']}, recall {s['recall_k2']}")
        print(f"{'model':<10} {'acc clean':>10} {'acc tagged others':>18} {'tag share of |R|':>17}")
        for name, r in res["clarc"].items():
            print(f"{name:<10} {r['accuracy_clean']:>10.3f} {r['accuracy_artifact_all']:>18.3f} "
                  f"{r['artifact_share']:>17.3f}")
    if args.case in ("eeg", "all"):
        res = _eeg()
        (RESULTS / "spray_eeg.json").write_text(json.dumps({**meta, **res}, indent=1))
        s = res["spray"]
        print(f"SpRAy on {s['samples']} test epochs of class 'left' ({s['tagged']} with a blink): "
              f"k = {s['n_clusters_eigengap']} (eigengap), blink clusters {s['tag_clusters']}: precision "
              f"{s['precision']}, recall {s['recall']}; k = 2: precision {s['precision_k2']}, recall {s['recall_k2']}")
        print(f"{'model':<10} {'acc clean':>10} {'acc blink, right':>17} {'blink share of |R|':>19}")
        for name, r in res["clarc"].items():
            print(f"{name:<10} {r['accuracy_clean']:>10.3f} {r['accuracy_artifact']:>17.3f} "
                  f"{r['artifact_share']:>19.3f}")
    if args.case in ("scale", "all"):
        res = _scale(args.n)
        (RESULTS / "spray_scale.json").write_text(json.dumps({**meta, **res}, indent=1))
        print(f"SpRAy on {res['samples']} x 256: {res['seconds']} s (load {res['load_avg_1min']}), peak RSS "
              f"{res['peak_rss_mb']} MB (before spray {res['rss_before_spray_mb']} MB; numpy/scipy peak inside spray "
              f"{res['spray_traced_peak_mb']} MB; input {res['input_mb']} MB), k = {res['n_clusters']}")


if __name__ == "__main__":
    main()
