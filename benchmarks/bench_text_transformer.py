"""Word deletion on 20 Newsgroups for the transformer (newsgroups_bert recipe): AttnLRP, CP-LRP, gradient x input,
integrated gradients and random order.

As ``bench_text_deletion.py`` does for the CNN and BiLSTM: the shipped recipe
(plugins/text/scripts/train_models.py, ``newsgroups_bert``) is trained on each of 5 stratified
folds' training posts and explains the held-out fold's posts, so each of the 200 posts is
explained by a model that never saw it; relevance is for the **true** class. Subword relevance is
summed into words (``st.group_words``); a word is deleted by replacing all its pieces with the
padding id, which the model masks out (``[CLS]``/``[SEP]`` are never deleted). On correctly
classified posts the k most relevant words go first (accuracy should fall), on falsely classified
posts the k least relevant (accuracy should rise). AOPC (Samek et al. 2017) on the correct posts:
the mean over k = 0..K of the drop of the true class's logit, averaged over posts (higher is
better). Integrated gradients run on the word embeddings (16 steps, zero baseline = the padding
row), one post at a time with its attention mask.

Usage::

    python benchmarks/bench_text_transformer.py [--folds 5] [--k 20] [--threads 1] [--write]

``--write`` stores ``benchmarks/results/text_transformer.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "text" / "scripts"))
sys.path.insert(0, str(ROOT / "plugins" / "text"))

import sciexplain as sx  # noqa: E402
import sciexplain_text as st  # noqa: E402
from train_models import RECIPES, fit_recipe  # noqa: E402

METHODS = ("attnlrp", "cp-lrp", "gradient_x_input", "integrated_gradients", "random")


class _FromEmbeddings(nn.Module):
    """The transformer as a function of its word embeddings, for one post (its mask broadcast over the batch)."""

    def __init__(self, model: nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        mask = self.mask.expand(embeds.shape[0], -1)
        return self.model.bert(inputs_embeds=embeds, attention_mask=mask).logits


def integrated_gradients(model, docs, targets, steps: int = 16) -> np.ndarray:
    """Token relevance (document, token) by integrated gradients on the word embeddings, summed over them."""
    out = np.zeros(docs.ids.shape)
    emb = model.token_embedding
    for d in range(len(docs)):
        ids = docs.ids[d: d + 1]
        mask = (ids != 0).long()
        with torch.no_grad():
            e = emb(ids)
        R = sx.explain(_FromEmbeddings(model, mask).eval(), e, int(targets[d]), method="integrated_gradients",
                       steps=steps, batch_size=steps)
        out[d] = R.values.sum(-1)[0]
    return out


def word_scores(R) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Per document: relevance per word and the token positions of each word (specials and padding excluded)."""
    W = st.group_words(R)
    idx = R.coords["word_index"].values
    scores, positions = [], []
    for d in range(R.sizes["document"]):
        words = np.unique(idx[d][idx[d] >= 0])
        scores.append(W.values[d, words])
        positions.append([np.flatnonzero(idx[d] == w) for w in words])
    return scores, positions


def deletion(model, ids, labels, R, order: str, k_max: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, mean true-class logit) after deleting k = 0..k_max words, per method order."""
    scores, positions = word_scores(R)
    rng = np.random.default_rng(seed)
    ranked = []
    for s in scores:
        if order == "random":
            ranked.append(rng.permutation(len(s)))
        else:
            ranked.append(np.argsort(-s if order == "most" else s, kind="stable"))
    acc, logit = [], []
    for k in range(k_max + 1):
        mask = np.zeros(ids.shape, dtype=bool)
        for d, r in enumerate(ranked):
            for w in r[:k]:
                mask[d, positions[d][w]] = True
        out = st.predict(model, st.delete_tokens(ids, mask))
        acc.append(float((out.argmax(1) == labels).mean()))
        logit.append(out[np.arange(len(labels)), labels])
    return np.asarray(acc), np.asarray(logit)


def run(corpus, folds, k_max: int, seed: int) -> dict:
    recipe = RECIPES["newsgroups_bert"]
    acc_sum = {"correct": {m: np.zeros(k_max + 1) for m in METHODS}, "false": {m: np.zeros(k_max + 1) for m in METHODS}}
    drops = {m: [] for m in METHODS}
    counts = {"correct": 0, "false": 0}
    fold_acc, absorbed_share = [], {"attnlrp": [], "cp-lrp": []}
    for f, test in enumerate(tqdm(folds, desc="folds")):
        train = np.setdiff1d(np.arange(len(corpus)), test)
        model, tok, info = fit_recipe(recipe, corpus, train, seed)
        model.class_names = corpus.class_names
        docs = st.prepare_documents(st.Documents([corpus.texts[i] for i in test], tok, labels=corpus.labels[test]),
                                    model)
        pred = st.predict(model, docs.ids).argmax(1)
        fold_acc.append(float((pred == docs.labels).mean()))
        for part, sel in (("correct", pred == docs.labels), ("false", pred != docs.labels)):
            idx = np.flatnonzero(sel)
            if len(idx) == 0:
                continue
            sub = docs.subset(idx)
            y = sub.labels
            exp = {"attnlrp": st.explain_documents(model, sub, y.tolist()),
                   "cp-lrp": st.explain_documents(model, sub, y.tolist(), preset="cp-lrp"),
                   "gradient_x_input": st.explain_documents(model, sub, y.tolist(), method="gradient_x_input")}
            for name in ("attnlrp", "cp-lrp"):
                exp[name].relevance.check()
                absorbed_share[name] += (exp[name].coords["absorbed"].values
                                         / exp[name].coords["prediction"].values).tolist()
            exp["integrated_gradients"] = exp["attnlrp"].copy(data=integrated_gradients(model, sub, y))
            exp["random"] = exp["attnlrp"]
            for m in METHODS:
                order = "random" if m == "random" else ("most" if part == "correct" else "least")
                a, lg = deletion(model, sub.ids, y, exp[m], order, k_max, seed + f)
                acc_sum[part][m] += a * len(idx)
                if part == "correct":
                    drops[m].append((lg[0][None, :] - lg).mean(axis=0))  # (post,) AOPC per post
            counts[part] += len(idx)
    out = {"cv_accuracy": float(np.mean(fold_acc)), "fold_accuracy": fold_acc, "n_correct": counts["correct"],
           "n_false": counts["false"],
           "median_absorbed_share": {k: float(np.median(np.abs(v))) for k, v in absorbed_share.items()}}
    for part in acc_sum:
        if counts[part]:
            out[part] = {m: (acc_sum[part][m] / counts[part]).round(4).tolist() for m in METHODS}
    aopc = {}
    rng = np.random.default_rng(seed)
    for m in METHODS:
        v = np.concatenate(drops[m])
        boot = [rng.choice(v, len(v)).mean() for _ in range(1000)]
        aopc[m] = [round(float(v.mean()), 4), round(float(np.percentile(boot, 2.5)), 4),
                   round(float(np.percentile(boot, 97.5)), 4)]
    out["aopc_correct"] = aopc
    return out


def table(res: dict, k_max: int) -> str:
    lines = ["| method | correct posts: accuracy at k = 10 | at k = 20 | AOPC (true-class logit, 95% CI) | "
             f"false posts: accuracy at k = {k_max} |", "|---|---|---|---|---|"]
    for m in METHODS:
        c = res["correct"][m]
        fl = res.get("false", {}).get(m, [float("nan")] * (k_max + 1))
        a = res["aopc_correct"][m]
        lines.append(f"| {m} | {c[min(10, k_max)]:.3f} | {c[k_max]:.3f} | {a[0]:.3f} ({a[1]:.3f}-{a[2]:.3f}) | "
                     f"{fl[k_max]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    corpus = st.load_mini_newsgroups()
    folds = st.stratified_folds(corpus.labels, args.folds, args.seed)
    res = run(corpus, folds, args.k, args.seed)
    meta = {"command": "python benchmarks/bench_text_transformer.py --write", "seconds": round(time.time() - t0, 1),
            "threads": args.threads, "folds": args.folds, "seed": args.seed, "k": args.k,
            "deletion": "all pieces of a word replaced by the padding id (masked out by the model)"}
    print(json.dumps(res, indent=1))
    print(table(res, args.k))
    if args.write:
        path = ROOT / "benchmarks" / "results" / "text_transformer.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "results": res, "table": table(res, args.k)}, indent=1) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
