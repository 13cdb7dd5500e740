"""The real 20 Newsgroups header shortcut: found with SpRAy, reduced with ClArC.

Run: ``MPLBACKEND=Agg .venv/bin/python benchmarks/bench_spray_text.py [--train]``.
``--train`` retrains the shipped ``newsgroups_cnn_headers`` (about 10 s on one thread) and writes
its weights into ``plugins/text/sciexplain_text/weights/``; without it the shipped weights are used.
Writes ``benchmarks/results/spray_text.json`` and ``spray_text.png`` and prints the tables. ``--seeds 0-4`` trains
a model in memory per seed instead (which half keeps its headers, the split, the model) and writes
``spray_text_seeds.json`` (the shipped weights are left alone).

Design (all posts real; nothing planted):

* data: the 200 posts (alt.atheism, sci.space) of gensim's 20 Newsgroups test file; a seeded
  random half keeps its header block (``Newsgroups: sci.space``, ``Path:``, ``Xref:``, ``From:``...),
  the others are stripped (``strip_headers``). The known shortcut set is the posts that kept it.
* model: the plugin's TextCNN recipe (frozen GloVe), trained on folds 1-4, scored on fold 0.
* SpRAy: LRP (the plugin's default epsilon preset) of all 100 alt.atheism posts for class
  alt.atheism, summed by word type per post (token positions do not line up across posts; word
  types do), max-normalised, 10 neighbours, number of clusters from the eigengap. The header
  cluster is named without the truth: the cluster whose prototype rests on header-only words
  (``header_vocabulary``). Precision / recall against the posts that kept their header.
  A few other representations are scored too (the table "representation"), and the sci.space
  posts: there the header's words (space, nasa, jpl, the subject line) are also the body's words,
  and SpRAy does not separate the two strategies (reported, not hidden).
* ClArC in ``flatten`` (the 64 max-pooled filter outputs): the direction is the mean difference
  between the training posts' bodies with an alt.atheism header prepended (headers of the training
  posts in SpRAy's header cluster) and the same bodies without. Accuracy on the 40 held-out posts
  stripped, with their own headers, and on the 20 held-out sci.space posts given a held-out
  alt.atheism post's header (the probe of header reading); the header tokens' share of |R| for
  alt.atheism on the held-out alt.atheism posts with headers and on the probes. All of it by
  ``sx.clarc_report`` on the Documents, with ``mask=header_mask`` (the header tokens of each post).
  A-ClArC fine-tunes the read-out for 20 epochs, seeded (``fit(seed=0)``, dropout included). The
  probe the other way round (held-out alt.atheism texts with a held-out sci.space header) and a
  P-ClArC that projects out both headers' directions at once (the sci.space one from the training
  posts in the sci.space SpRAy header cluster). The shipped ``newsgroups_cnn`` (trained on stripped
  posts only) is scored on the same sets as a reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0  # alt.atheism: the class whose explanations SpRAy clusters (see the module docstring)
OTHER = 1


def _pr(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float((found & truth).sum())
    return tp / max(int(found.sum()), 1), tp / max(int(truth.sum()), 1)


def run(train: bool, seed: int = 0, *, save: bool = True, figure: bool = True) -> dict:
    """The benchmark; ``train``: retrain with ``seed`` first (``save``: into the shipped weights; otherwise the
    model trained here is scored in memory); ``figure``: write ``spray_text.png``."""
    import sciexplain as sx
    import sciexplain_text as st
    from sciexplain_text.models import save_model
    from sciexplain_text.shortcut import (HEADER_MODEL, draw_word_prototype, header_block, header_clusters,
                                          header_mask, header_share, header_vocabulary, headers_kept_corpus,
                                          relevance_by_word_type, train_header_cnn, with_header)

    out: dict = {}
    if train:
        t0 = time.perf_counter()
        model, tok, record = train_header_cnn(0.5, seed)
        record["train_seconds"] = round(time.perf_counter() - t0, 1)
        record["threads"] = torch.get_num_threads()
        if save:
            save_model(model, tok, HEADER_MODEL, record)
    if save or not train:
        model, tok = st.load_model(HEADER_MODEL)
    else:
        model.training_record = record
        model.eval()
    rec = model.training_record
    corpus, keep = headers_kept_corpus(rec["headers_kept_fraction"], rec["seed"])
    assert keep.astype(int).tolist() == rec["headers_kept"]
    raw = st.load_mini_newsgroups(strip=False)
    y, names = corpus.labels, corpus.class_names
    L = model.max_length
    test = np.asarray(rec["test_indices"])
    train_idx = np.setdiff1d(np.arange(len(corpus)), test)

    def docs(texts, labels=None):
        return st.Documents(list(texts), tok, L, pad_to=L, allow_all_unknown=True, labels=labels, class_names=names)

    stripped = [st.strip_headers(t) for t in raw.texts]
    out["model"] = {k: rec[k] for k in ("test_accuracy", "test_accuracy_with_headers", "test_accuracy_headers_stripped",
                                        "n_train", "n_test", "best_epoch")}
    out["model"]["headers_kept"] = int(keep.sum())
    ref, ref_tok = st.load_model("newsgroups_cnn")  # trained on stripped posts only: a reference

    # -- SpRAy on the alt.atheism posts
    cls = np.flatnonzero(y == TARGET)
    truth = keep[cls]
    R = sx.explain(model, docs([corpus.texts[i] for i in cls], y[cls]), target=TARGET)
    W = relevance_by_word_type(R)
    hv = header_vocabulary(corpus.texts, tok)
    t0 = time.perf_counter()
    ds = sx.spray(W, n_neighbors=10)
    spray_s = time.perf_counter() - t0
    chosen, shares = header_clusters(ds, hv)
    found = np.isin(ds.cluster.values, chosen)
    prec, rec_ = _pr(found, truth)
    held = np.isin(cls, test)
    hp, hr = _pr(found[held], truth[held])
    share_R = header_share(R)
    out["spray"] = {
        "class": names[TARGET], "samples": int(len(cls)), "with_header": int(truth.sum()),
        "held_out_samples": int(held.sum()), "representation": "relevance by word type, max-normalised",
        "n_clusters_eigengap": int(ds.attrs["n_clusters"]), "cluster_sizes": ds.cluster_size.values.tolist(),
        "eigenvalues": np.round(ds.eigenvalues.values, 4).tolist(), "header_clusters": chosen,
        "prototype_header_word_share": np.round(shares, 3).tolist(), "header_only_words": len(hv),
        "precision": round(prec, 3), "recall": round(rec_, 3),
        "precision_held_out": round(hp, 3), "recall_held_out": round(hr, 3), "seconds": round(spray_s, 2),
        "false_positives": [int(cls[i]) for i in np.flatnonzero(found & ~truth)],
        "header_share_with_header_mean": round(float(share_R[truth].mean()), 3),
        "ledger_max_residual": float(np.abs(R.sum("token") + R.absorbed - R.prediction).max()),
    }
    if figure:
        fig = sx.plot_spray(ds, truth=truth, draw_prototype=draw_word_prototype)
        fig.savefig(RESULTS / "spray_text.png", dpi=80)

    # other representations, for the record (the header cluster picked the same way where word types exist,
    # by the majority of the truth for position maps, which have no words)
    variants = {}
    for label, kwargs in (("word type, sum-normalised", dict(normalise="sum")),
                          ("word type, max-normalised, 5 neighbours", dict(n_neighbors=5)),
                          ("word type, max-normalised, k = 2 given", dict(n_clusters=2))):
        d2 = sx.spray(W, **kwargs)
        c2, _ = header_clusters(d2, hv)
        p2, r2 = _pr(np.isin(d2.cluster.values, c2), truth)
        variants[label] = {"k": int(d2.attrs["n_clusters"]), "precision": round(p2, 3), "recall": round(r2, 3)}
    for block in (10, 40):
        d2 = sx.spray(R, downsample={"token": block})
        lab = d2.cluster.values
        c2 = [c for c in range(d2.attrs["n_clusters"]) if truth[lab == c].mean() > 0.5]
        p2, r2 = _pr(np.isin(lab, c2), truth)
        variants[f"token positions, blocks of {block}, majority-matched"] = {
            "k": int(d2.attrs["n_clusters"]), "precision": round(p2, 3), "recall": round(r2, 3)}
    # the other class
    cls_o = np.flatnonzero(y == OTHER)
    W_o = relevance_by_word_type(sx.explain(model, docs([corpus.texts[i] for i in cls_o], y[cls_o]), target=OTHER))
    found_o = None
    for label, kwargs in (("", {}), (", k = 2 given", {"n_clusters": 2})):
        d_o = sx.spray(W_o, **kwargs)
        c_o, _ = header_clusters(d_o, hv)
        p_o, r_o = _pr(np.isin(d_o.cluster.values, c_o), keep[cls_o])
        found_o = np.isin(d_o.cluster.values, c_o) if found_o is None else found_o  # the eigengap's clusters
        variants[f"{names[OTHER]} posts, word type, max-normalised{label}"] = {
            "k": int(d_o.attrs["n_clusters"]), "precision": round(p_o, 3), "recall": round(r_o, 3)}
    out["spray_variants"] = variants

    # -- ClArC
    in_cluster = cls[found]
    headers = [header_block(raw.texts[i]) for i in in_cluster if i in set(train_idx.tolist())]
    x_art = docs([with_header(stripped[i], headers[j % len(headers)]) for j, i in enumerate(train_idx)]).ids
    x_cln = docs([stripped[i] for i in train_idx]).ids
    direction = sx.artifact_direction(model, "flatten", x_art, x_cln)
    pcl = sx.PClArC(model, "flatten", direction)
    # the other header too: from the sci.space posts in that class's header cluster (small, but pure)
    headers_o = [header_block(raw.texts[i]) for i in cls_o[found_o] if i in set(train_idx.tolist())]
    x_art_o = docs([with_header(stripped[i], headers_o[j % len(headers_o)]) for j, i in enumerate(train_idx)]).ids
    direction_o = sx.artifact_direction(model, "flatten", x_art_o, x_cln)
    pcl_both = sx.PClArC(model, "flatten", [direction, direction_o])  # the span of both header directions
    t0 = time.perf_counter()
    acl = sx.AClArC(model, "flatten", direction).fit(docs([corpus.texts[i] for i in train_idx]).ids, y[train_idx],
                                                      epochs=20, lr=1e-3, seed=seed)
    acl_s = time.perf_counter() - t0
    te_other, te_target = test[y[test] == OTHER], test[y[test] == TARGET]
    probe_texts = [with_header(stripped[i], header_block(raw.texts[te_target[j % len(te_target)]]))
                   for j, i in enumerate(te_other)]
    probe_texts_o = [with_header(stripped[i], header_block(raw.texts[te_other[j % len(te_other)]]))
                     for j, i in enumerate(te_target)]  # alt.atheism texts with a sci.space header
    residuals: dict[int, float] = {}

    def explained(m, documents):  # LRP for alt.atheism: (document, token) with the text coords header_mask reads
        R = sx.explain(m, documents, target=TARGET)
        residuals[id(m)] = max(residuals.get(id(m), 0.0), float(np.abs(R.sum("token") + R.absorbed - R.prediction).max()))
        return R

    # the reference model never saw a header; it has its own tokenizer
    ref_docs = lambda texts: st.Documents(list(texts), ref_tok, ref.max_length, pad_to=ref.max_length,  # noqa: E731
                                          allow_all_unknown=True)
    groups = (({"original": model, "P-ClArC": pcl, "A-ClArC": acl, "P-ClArC, both headers": pcl_both}, docs),
              ({"newsgroups_cnn (no headers in training)": ref}, ref_docs))
    target_posts = y[test] == TARGET
    clarc: dict = {}
    for group, make_docs in groups:
        for m in group.values():
            m.class_names = names
        # the header tokens are at different positions in every post: header_mask finds them in each result
        clean = make_docs([stripped[i] for i in test])
        own = sx.clarc_report(group, clean, y[test], make_docs([raw.texts[i] for i in test]), y[test], header_mask,
                              explain=explained)
        probes = sx.clarc_report(group, clean, y[test], make_docs(probe_texts), y[te_other], header_mask,
                                 explain=explained)
        probes_o = sx.clarc_report(group, clean, y[test], make_docs(probe_texts_o), y[te_target], header_mask,
                                   explain_target=OTHER)
        for name, m in group.items():
            clarc[name] = {
                "accuracy, stripped": float(own.accuracy_clean.sel(model=name)),
                "accuracy, own headers": float(own.accuracy_artifact.sel(model=name)),
                f"accuracy, {names[OTHER]} + {names[TARGET]} header": float(probes.accuracy_artifact.sel(model=name)),
                f"header share, {names[TARGET]} posts":
                    float(own.artifact_share_per_sample.sel(model=name).values[target_posts].mean()),
                "header share, probes": float(probes.artifact_share.sel(model=name)),
                f"accuracy, {names[TARGET]} + {names[OTHER]} header": float(probes_o.accuracy_artifact.sel(model=name)),
                f"header share for {names[OTHER]}, {names[TARGET]} + {names[OTHER]} header":
                    float(probes_o.artifact_share.sel(model=name)),
                "ledger max residual": residuals[id(m)],
            }
    out["clarc"] = clarc
    out["direction"] = {"layer": "flatten", "artifact_value": direction.artifact_value,
                        "clean_value": direction.clean_value, "headers_used": len(headers)}
    out["direction_other"] = {"class": names[OTHER], "artifact_value": direction_o.artifact_value,
                              "clean_value": direction_o.clean_value, "headers_used": len(headers_o),
                              "cosine_to_direction": float((direction.vector.double() * direction_o.vector.double()).sum())}
    out["aclarc"] = {"epochs": 20, "lr": 1e-3, "fit_seconds": round(acl_s, 1), "trained": "out (the read-out)"}
    return out


def seeds(lo: int, hi: int) -> None:
    """The benchmark with a model trained in memory on each seed (which half keeps its headers, the split, the
    model): SpRAy's header cluster and ClArC's probe accuracies per seed, into ``results/spray_text_seeds.json``."""
    from tqdm.auto import tqdm

    rows = []
    for seed in tqdm(range(lo, hi + 1), desc="seeds"):
        res = run(True, seed, save=False, figure=False)
        s, c = res["spray"], res["clarc"]
        probe = next(k for k in c["original"] if k.startswith("accuracy, sci.space + "))
        rows.append({"seed": seed, "test_accuracy": res["model"]["test_accuracy"],
                     "with_header": s["with_header"], "k": s["n_clusters_eigengap"],
                     "precision": s["precision"], "recall": s["recall"],
                     "k2": res["spray_variants"]["word type, max-normalised, k = 2 given"],
                     "probe_accuracy": {m: round(c[m][probe], 3) for m in ("original", "P-ClArC", "A-ClArC")},
                     "stripped_accuracy": {m: round(c[m]["accuracy, stripped"], 3)
                                           for m in ("original", "P-ClArC", "A-ClArC")}})
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "machine": platform.machine(), "command": f"python benchmarks/bench_spray_text.py --seeds {lo}-{hi}"}
    (RESULTS / "spray_text_seeds.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    print(f"| seed | held-out accuracy | posts with header | SpRAy k (eigengap) | precision / recall | k = 2 | {probe} "
          "(original / P-ClArC / A-ClArC) | stripped held-out posts (same) |")
    print("|---:|---:|---:|---:|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['test_accuracy']} | {r['with_header']} | {r['k']} | {r['precision']} / {r['recall']} | "
              f"{r['k2']['precision']} / {r['k2']['recall']} | "
              + " / ".join(str(v) for v in r["probe_accuracy"].values()) + " | "
              + " / ".join(str(v) for v in r["stripped_accuracy"].values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="retrain and overwrite the shipped weights")
    parser.add_argument("--seeds", default=None, help="e.g. 0-4: models trained in memory on these seeds "
                        "(the shipped weights and spray_text.json are left alone)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    RESULTS.mkdir(exist_ok=True)
    if args.seeds is not None:
        lo, _, hi = args.seeds.partition("-")
        seeds(int(lo), int(hi or lo))
        return
    res = run(args.train)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "machine": platform.machine()}
    (RESULTS / "spray_text.json").write_text(json.dumps({**meta, **res}, indent=1) + "\n")
    m, s = res["model"], res["spray"]
    print(f"model: held-out accuracy {m['test_accuracy']} (as collected), {m['test_accuracy_with_headers']} (all with "
          f"headers), {m['test_accuracy_headers_stripped']} (all stripped); {m['headers_kept']} of 200 posts kept headers")
    print(f"SpRAy on {s['samples']} {s['class']} posts ({s['with_header']} with header): k = {s['n_clusters_eigengap']} "
          f"(eigengap), sizes {s['cluster_sizes']}, header clusters {s['header_clusters']}: precision {s['precision']}, "
          f"recall {s['recall']} (held-out {s['held_out_samples']}: {s['precision_held_out']} / {s['recall_held_out']}); "
          f"header share of |R| on posts with header {s['header_share_with_header_mean']}")
    print(f"{'representation':<58} {'k':>3} {'precision':>9} {'recall':>7}")
    for name, v in res["spray_variants"].items():
        print(f"{name:<58} {v['k']:>3} {v['precision']:>9.3f} {v['recall']:>7.3f}")
    cols = list(next(iter(res["clarc"].values())))
    cols = [c for c in cols if c != "ledger max residual"]
    print("| model | " + " | ".join(cols) + " |")
    for name, row in res["clarc"].items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
