"""Word deletion on 20 Newsgroups (Arras et al. 2017): CNN and BiLSTM, LRP vs sensitivity vs gradient x input vs random.

For each architecture the shipped recipe (plugins/text/scripts/train_models.py) is trained on
each of 5 stratified folds' training posts and explains the held-out fold's posts, so every one
of the 200 posts is explained by a model that never saw it. Relevance is computed for the
**true** class. On correctly classified posts the k most relevant words are deleted (embedding
set to zero) and the accuracy should fall fast; on falsely classified posts the k least
relevant words (strongest evidence against the true class) are deleted and the accuracy should
rise. k = 0..20.

Usage::

    python benchmarks/bench_text_deletion.py [--write] [--folds 5] [--threads 1] [--k 20]

``--write`` stores ``benchmarks/results/text_deletion.json`` and ``text_deletion.png`` and
replaces the ``text`` section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "text" / "scripts"))
sys.path.insert(0, str(ROOT / "plugins" / "text"))

import sciexplain_text as st  # noqa: E402
from train_models import RECIPES, fit_recipe  # noqa: E402

METHODS = ("lrp", "sensitivity", "gradient_x_input", "random")


def run_arch(name: str, corpus, folds, k_max: int, seed: int) -> dict:
    recipe = RECIPES[name]
    curves = {"correct": [], "false": []}
    counts = {"correct": 0, "false": 0}
    accs = []
    for f, test in enumerate(tqdm(folds, desc=name)):
        train = np.setdiff1d(np.arange(len(corpus)), test)
        model, tok, info = fit_recipe(recipe, corpus, train, seed)
        model.class_names = corpus.class_names
        docs = st.Documents([corpus.texts[i] for i in test], tok, recipe["max_length"], pad_to=recipe["max_length"],
                            labels=corpus.labels[test], allow_all_unknown=True)
        pred = st.predict(model, docs.ids).argmax(1)
        accs.append(float((pred == docs.labels).mean()))
        for part, sel in (("correct", pred == docs.labels), ("false", pred != docs.labels)):
            idx = np.flatnonzero(sel)
            if len(idx) == 0:
                continue
            sub = docs.subset(idx)
            exp = {m: st.explain_documents(model, sub, sub.labels.tolist(), method=m) for m in METHODS[:3]}
            for R in exp.values():
                if R.attrs["decomposes"] == "f(x)" and R.attrs["method"] == "lrp":
                    R.relevance.check()
            exp["random"] = exp["lrp"]
            C = st.word_deletion(model, sub.ids, sub.labels, exp, order="most" if part == "correct" else "least",
                                 k_max=k_max, seed=seed + f)
            curves[part].append(C.values * len(idx))
            counts[part] += len(idx)
    out = {"cv_accuracy": float(np.mean(accs)), "fold_accuracy": accs, "n_correct": counts["correct"],
           "n_false": counts["false"]}
    for part in curves:
        if counts[part]:
            acc = np.sum(curves[part], axis=0) / counts[part]
            out[part] = {m: acc[i].round(4).tolist() for i, m in enumerate(METHODS)}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 2, figsize=(9, 3.2 * len(results)), layout="constrained", squeeze=False)
    for row, (name, res) in zip(axes, results.items()):
        for ax, part, title in ((row[0], "correct", "correct posts: most relevant deleted"),
                                (row[1], "false", "false posts: least relevant deleted")):
            if part not in res:
                ax.set_axis_off()
                continue
            for m, acc in res[part].items():
                ax.plot(range(len(acc)), acc, marker="o", ms=3, label=m)
            n = res["n_" + part]
            ax.set_title(f"{name}: {title} (n={n})", fontsize=9)
            ax.set_xlabel("words deleted (k)")
            ax.set_ylabel("accuracy")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def readme_section(results: dict, meta: dict) -> str:
    ks = [0, 1, 2, 3, 5, 10, 20]
    lines = ["<!-- text:start -->", "## Word deletion on 20 Newsgroups (text plugin)", "",
             f"`{meta['command']}` ({meta['seconds']:.0f} s on this machine, {meta['threads']} thread). "
             "Five stratified folds of the 200 real posts (alt.atheism vs sci.space, headers stripped); each "
             "fold's posts are explained by a model trained on the other four folds with the shipped recipe, "
             "relevance for the true class, deletion = the word's embedding set to zero. Accuracy after deleting "
             "k words ([figure](results/text_deletion.png), [numbers](results/text_deletion.json)).", ""]
    for name, res in results.items():
        lines.append(f"**{name}** (5-fold CV accuracy {res['cv_accuracy']:.3f}; {res['n_correct']} correct, "
                     f"{res['n_false']} false posts)")
        diffs = [max(abs(a - b) for a, b in zip(res[p]["lrp"], res[p]["gradient_x_input"])) for p in ("correct", "false")
                 if p in res]
        why = ("(epsilon-LRP with a small epsilon on a ReLU network is close to gradient x input); "
               if "cnn" in name else "(the LSTM's gates make them differ); ")
        lines.append(f"LRP and gradient x input curves differ by at most {max(diffs):.3f} in accuracy " + why +
                     "sensitivity stays near random on correct posts and cannot find the negative evidence "
                     "on false ones (squared gradients are never negative).")
        lines.append("")
        for part, title in (("correct", "correct posts, most relevant first (lower is better)"),
                            ("false", "false posts, least relevant first (higher is better)")):
            if part not in res:
                continue
            lines.append(f"| {title} | " + " | ".join(f"k={k}" for k in ks) + " |")
            lines.append("|---|" + "---|" * len(ks))
            for m, acc in res[part].items():
                lines.append(f"| {m} | " + " | ".join(f"{acc[k]:.3f}" for k in ks if k < len(acc)) + " |")
            lines.append("")
    lines.append("<!-- text:end -->")
    return "\n".join(lines)


def write_section(section: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"<!-- text:start -->.*?<!-- text:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["newsgroups_cnn", "newsgroups_lstm"])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--from-json", type=Path, help="redraw the figure and README section from a saved run")
    args = ap.parse_args()
    res_dir = ROOT / "benchmarks" / "results"
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        plot(saved["results"], res_dir / "text_deletion.png")
        write_section(readme_section(saved["results"], saved["meta"]), ROOT / "benchmarks" / "README.md")
        return
    torch.set_num_threads(args.threads)
    t0 = time.time()
    corpus = st.load_mini_newsgroups()
    folds = st.stratified_folds(corpus.labels, args.folds, args.seed)
    results = {name: run_arch(name, corpus, folds, args.k, args.seed) for name in args.models}
    meta = {"command": "python benchmarks/bench_text_deletion.py --write", "seconds": time.time() - t0,
            "threads": args.threads, "folds": args.folds, "seed": args.seed}
    print(json.dumps(results, indent=1))
    if args.write:
        res_dir.mkdir(exist_ok=True)
        (res_dir / "text_deletion.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        plot(results, res_dir / "text_deletion.png")
        write_section(readme_section(results, meta), ROOT / "benchmarks" / "README.md")


if __name__ == "__main__":
    main()
