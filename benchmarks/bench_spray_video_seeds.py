"""SpRAy and P-ClArC on the planted video logos, over many seeds: how often is the shortcut found?

Run: ``MPLBACKEND=Agg .venv/bin/python benchmarks/bench_spray_video_seeds.py [--seeds 0-9]`` (about 5 minutes,
one thread). Writes ``benchmarks/results/spray_video_seeds.json`` and prints a Markdown table.

``bench_spray_video.py`` runs each case on one seed in depth; this script reruns the same data, model and SpRAy
settings (nothing chosen here) on every seed: new training and held-out clips (seeds 100 + N, 200 + N), new logo
clips and a new model per seed. Cases:

* ``scrolling``: the shipped model's logo, 16 x 16 px, top-left, content scrolling 3 px per frame (dx = -3);
* ``still, pan x or y``: an opaque still 32 x 32 px logo (2 x 2 blocks of dx = dy = 0) under a camera panning
  1 px per frame along an axis drawn per clip (``bench_spray_video.py --case still``);
* ``still, pan x``: the same logo, every clip panned horizontally (``make_panning_dataset(..., axis="x")``).

Per seed and case: held-out accuracy (clean; the other two classes with the logo), the share of the held-out logo
clips whose logo raises the "sideways" logit (the same clip run with and without it: does this model use the
logo?), SpRAy on the 40 held-out "sideways" clips (20 with the logo; pool frames, 5 neighbours, k from the
eigengap and k = 2; precision / recall of the clusters whose majority has the logo) on LRP relevance (the plugin's
default preset) and, for the still logo, on integrated gradients from each clip's camera motion
(``sciexplain_video.reference``); the share of 2000 random assignments with the same cluster sizes that reach
0.8 / 0.8; the accuracy of a logistic regression (5-fold) telling logo from clean clips in the same features
(supervised: is the logo in the maps at all?); and P-ClArC in ``features.1`` (direction from the training "sideways" clips with and without the
logo): accuracy on the other classes with the logo and on clean clips, before and after.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bench_spray_video import CASES, RESULTS, _null, _precision_recall, case_data

#: name -> (case of bench_spray_video, pan axis)
SEED_CASES = {"scrolling": ("animated", None), "still, pan x or y": ("still", None), "still, pan x": ("still", "x")}


def _separability(R, truth: np.ndarray) -> float:
    """Accuracy (5-fold, stratified) of a logistic regression telling logo from clean clips in SpRAy's own features:
    is the logo in the maps at all, whatever the unsupervised graph makes of it?"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from sciexplain.analysis.spray import spray_features

    X = np.asarray(spray_features(R, pool="frame", normalise="max"))
    return float(cross_val_score(LogisticRegression(max_iter=5000), X, truth, cv=5).mean())


def _spray_scores(R, truth: np.ndarray) -> dict:
    import sciexplain as sx

    ds = sx.spray(R, pool="frame", n_neighbors=5)
    _, prec, rec = _precision_recall(ds.cluster.values, truth)
    _, prec2, rec2 = _precision_recall(sx.spray(R, 2, pool="frame", n_neighbors=5).cluster.values, truth)
    return {"k": int(ds.attrs["n_clusters"]), "precision": round(prec, 3), "recall": round(rec, 3),
            "precision_k2": round(prec2, 3), "recall_k2": round(rec2, 3),
            "random_assignment_share_both_0.8": round(_null(ds.cluster.values, truth)[2], 4),
            "logistic_regression_accuracy": round(_separability(R, truth), 3)}


def seed_row(name: str, seed: int) -> dict:
    """One case on one seed: accuracies, the logo's use, SpRAy scores and P-ClArC."""
    import sciexplain as sx
    import sciexplain_video as sv
    from sciexplain_video.reference import explain_from_reference, logit_effect

    case, axis = SEED_CASES[name]
    box, motion = CASES[case]["box"], CASES[case]["motion"]
    logo_class = sv.ACTIONS.index(sv.LOGO_CLASS)
    F, Ft, y, yt, logo_tr, logo_te, Fl, Ftl, _ = case_data(case, seed, axis=axis)
    model = sv.train_cnn(Fl, y, seed=seed, epochs=40)
    other = yt != logo_class
    x_clean = sv.stack_fields(Ft)
    x_other_logo = sv.stack_fields([sv.plant_logo(f, box, motion) for f, o in zip(Ft, other) if o])
    cls = np.flatnonzero(yt == logo_class)
    truth = logo_te[cls]
    x_cls = sv.stack_fields([Ftl[i] for i in cls])
    x_cls0 = sv.stack_fields([Ft[i] for i in cls])
    effect = logit_effect(model, x_cls, x_cls0, logo_class)[truth]
    row = {"seed": seed, "logo_clips": int(truth.sum()), "clips": int(len(cls)),
           "logo_raises_the_logit": round(float((effect > 0).mean()), 3),
           "mean_logo_effect_on_the_logit": round(float(effect.mean()), 3)}
    spray = {"LRP": _spray_scores(sv.explain_motion(model, [Ftl[i] for i in cls], logo_class), truth)}
    if CASES[case]["pan"]:
        spray["camera reference"] = _spray_scores(explain_from_reference(model, x_cls, logo_class, "camera"), truth)
    row["spray"] = spray
    x_tr = sv.stack_fields(Fl)
    cls_tr = y == logo_class
    direction = sx.artifact_direction(model, sv.LOGO_LAYER, x_tr[torch.from_numpy(cls_tr & logo_tr)],
                                      x_tr[torch.from_numpy(cls_tr & ~logo_tr)])
    fixed = sx.PClArC(model, sv.LOGO_LAYER, direction)
    with torch.no_grad():
        for label, m in (("original", model), ("P-ClArC", fixed)):
            row[label] = {"accuracy_clean": round(float(np.mean(m(x_clean).argmax(1).numpy() == yt)), 4),
                          "accuracy_other_classes_with_logo": round(float(np.mean(
                              m(x_other_logo).argmax(1).numpy() == yt[other])), 4)}
    return row


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def summarise(rows: list[dict]) -> dict:
    """Per relevance: seeds where SpRAy reaches precision and recall >= 0.8 (eigengap; k = 2) and medians."""
    out = {}
    for rel in rows[0]["spray"]:
        s = [r["spray"][rel] for r in rows]
        out[rel] = {"seeds_both_0.8_eigengap": sum(v["precision"] >= 0.8 and v["recall"] >= 0.8 for v in s),
                    "seeds_both_0.8_k2": sum(v["precision_k2"] >= 0.8 and v["recall_k2"] >= 0.8 for v in s),
                    "median_precision": float(np.median([v["precision"] for v in s])),
                    "median_recall": float(np.median([v["recall"] for v in s])),
                    "logistic_regression_accuracy_range": [min(v["logistic_regression_accuracy"] for v in s),
                                                           max(v["logistic_regression_accuracy"] for v in s)],
                    "seeds": len(s)}
    return out


def _table(results: dict) -> str:
    lines = ["| logo | seeds | logo raises the logit (median share of logo clips) | relevance | SpRAy P, R >= 0.8, "
             "eigengap k | k = 2 | median P / R (eigengap) | other classes with the logo, original -> P-ClArC "
             "(median) | clean accuracy, original -> P-ClArC (median) | logistic regression on the maps (range) |",
             "|---|---:|---:|---|---:|---:|---|---|---|---|"]
    for name, res in results.items():
        rows, summ = res["rows"], res["summary"]
        use = np.median([r["logo_raises_the_logit"] for r in rows])
        before = np.median([r["original"]["accuracy_other_classes_with_logo"] for r in rows])
        after = np.median([r["P-ClArC"]["accuracy_other_classes_with_logo"] for r in rows])
        c0 = np.median([r["original"]["accuracy_clean"] for r in rows])
        c1 = np.median([r["P-ClArC"]["accuracy_clean"] for r in rows])
        for rel, s in summ.items():
            lines.append(f"| {name} | {s['seeds']} | {use:.2f} | {rel} | {s['seeds_both_0.8_eigengap']} of {s['seeds']} | "
                         f"{s['seeds_both_0.8_k2']} of {s['seeds']} | {s['median_precision']:.2f} / "
                         f"{s['median_recall']:.2f} | {before:.3f} -> {after:.3f} | {c0:.3f} -> {c1:.3f} | "
                         f"{s['logistic_regression_accuracy_range'][0]:.2f}-{s['logistic_regression_accuracy_range'][1]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5")
    parser.add_argument("--case", action="append", choices=list(SEED_CASES),
                        help="repeatable; default every case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = _seeds(args.seeds)
    results = {}
    t0 = time.perf_counter()
    for name in args.case or list(SEED_CASES):
        rows = [seed_row(name, s) for s in tqdm(seeds, desc=name)]
        results[name] = {"rows": rows, "summary": summarise(rows)}
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "machine": platform.machine(), "seconds": round(time.perf_counter() - t0, 1),
            "command": f"MPLBACKEND=Agg python benchmarks/bench_spray_video_seeds.py --seeds {args.seeds}"}
    path = RESULTS / "spray_video_seeds.json"
    cases = json.loads(path.read_text())["cases"] if path.exists() else {}
    cases.update(results)  # a run of some cases keeps the others' last results
    path.write_text(json.dumps({**meta, "cases": cases}, indent=1) + "\n")
    print(_table(results))


if __name__ == "__main__":
    main()
