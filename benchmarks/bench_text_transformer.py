"""Word deletion and planted keywords for the text transformers (20 Newsgroups, BBC News), beside the CNN.

Methods on the transformer: AttnLRP (the default), CP-LRP, LXT 2.1's AttnLRP (the reference
implementation, where it runs), gradient x input, integrated gradients, attention rollout
(Abnar & Zuidema 2020; ``st.attention_rollout``) and random order. On the CNN beside it: LRP
(the plugin's default preset), gradient x input, integrated gradients, random.

* **20 Newsgroups** (``newsgroups_bert`` recipe, 200 posts): as ``bench_text_deletion.py`` does
  for the CNN and BiLSTM, the recipe (plugins/text/scripts/train_models.py) is trained on each of
  5 stratified folds' training posts and explains the held-out fold's posts, so each post is
  explained by a model that never saw it.
* **BBC News**: the shipped ``bbc_bert`` and ``bbc_cnn`` on the articles both held out (the same
  stratified 20 %, ``test_indices`` in their records).

Relevance is for the **true** class. Token relevance is summed into words (``st.group_words``);
a word is deleted by replacing all its tokens with the padding id (the transformer masks it
out; the CNN's padding embedding is zero); ``[CLS]``/``[SEP]`` are never deleted. On correctly
classified documents the k most relevant words go first (accuracy should fall), on falsely
classified ones the k least relevant (accuracy should rise). AOPC (Samek et al. 2017) on the
correct documents: the mean over k = 0..K of the drop of the true class's logit (higher is
better). 95 % intervals: 1000 bootstrap resamples of the documents. Integrated gradients: 16
midpoint steps on the word embeddings from the zero vector (the padding row); for the
transformer the position and segment embeddings and the mask stay as they are.

LXT (``pip install --no-deps lxt==2.1``, not a sciexplain dependency) patches ``torch.nn.LayerNorm``
and ``nn.Dropout`` globally, so it runs in a child process on the same weights (its model is
``lxt.efficient.models.bert``'s BertForSequenceClassification with the state dict loaded; the
logits are checked equal); relevance = gradient x input at the word embeddings, as LXT's BERT
example does. LXT imports torchvision, which does not load beside this machine's CPU torch: the
child puts a stub module for the one name LXT uses into ``sys.modules`` first.

``attnlrp_vs_lxt_max_relative_gap``: the largest, over documents, of max |R_sciexplain - R_LXT| over
tokens divided by the document's largest |R_sciexplain| (both AttnLRP, same model and class).

Planted keywords (as ``plugins/text/scripts/planted_keywords.py`` does for the CNN and BiLSTM):
600 synthetic documents of 40 words, 3 planted keywords each, the newsgroups_bert architecture
trained on 400 of them; hit rate = share of the planted keywords among a correctly classified
test document's top-3 words.

Usage::

    python benchmarks/bench_text_transformer.py [--parts newsgroups bbc planted] [--k 20] [--threads 1]
                                                [--no-lxt] [--write]

``--write`` stores ``benchmarks/results/text_transformer.json`` and ``text_transformer.png`` (accuracy
curves of the correct documents); ``--from-json PATH`` redraws the figure from a saved run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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

TRANSFORMER_METHODS = ("attnlrp", "cp-lrp", "lxt", "gradient_x_input", "integrated_gradients", "attention_rollout",
                       "random")
CNN_METHODS = ("lrp", "gradient_x_input", "integrated_gradients", "random")
LABELS = {"attnlrp": "LRP, AttnLRP", "cp-lrp": "LRP, CP-LRP (default)", "lxt": "LXT 2.1 AttnLRP",
          "gradient_x_input": "gradient x input", "integrated_gradients": "integrated gradients",
          "attention_rollout": "attention rollout", "random": "random", "lrp": "LRP (default preset)"}
STUB_NOTE = ("LXT imports torchvision at import time, which fails beside this machine's CPU torch: a stub module "
             "torchvision.models.vision_transformer (nn = torch.nn) was put into sys.modules first")


# -- methods ------------------------------------------------------------------------------------

def integrated_gradients(model, ids: torch.Tensor, targets: np.ndarray, steps: int = 16) -> np.ndarray:
    """Token relevance (document, token): integrated gradients on the word embeddings from zero, summed over them."""
    emb = st.find_embedding(model)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    out = np.zeros(ids.shape)
    model.eval()
    for d in range(len(ids)):
        one = ids[d: d + 1].expand(steps, -1)
        with torch.no_grad():
            e = emb(ids[d: d + 1])
        path = (alphas[:, None, None] * e).requires_grad_(True)
        handle = emb.register_forward_hook(lambda module, inputs, output: path)
        try:
            logits = model(one)
        finally:
            handle.remove()
        (g,) = torch.autograd.grad(logits[:, int(targets[d])].sum(), path)
        out[d] = (e[0] * g.mean(0)).sum(-1).detach().numpy()
    return out


def lxt_relevance(model, ids: torch.Tensor, targets: np.ndarray) -> tuple[np.ndarray | None, str]:
    """LXT 2.1's AttnLRP on the same weights, in a child process; (relevance or None, note or error)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.pt", Path(tmp) / "out.pt"
        torch.save({"config": json.dumps(model.config()), "state": model.state_dict(), "ids": ids,
                    "targets": torch.as_tensor(np.asarray(targets), dtype=torch.long)}, src)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        run = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--lxt-worker", str(src), str(dst)],
                             capture_output=True, text=True, env=env)
        if run.returncode:
            return None, (run.stderr.strip().splitlines() or ["failed"])[-1]
        return torch.load(dst, weights_only=True).numpy(), STUB_NOTE


def lxt_worker(src: Path, dst: Path) -> None:
    import types
    import warnings
    torch.set_num_threads(1)
    import transformers  # noqa: F401  (before the stub: transformers probes torchvision's spec)
    from transformers.models.bert import modeling_bert
    data = torch.load(src, weights_only=True)
    ours = st.TransformerClassifier(**json.loads(data["config"])).eval()
    ours.load_state_dict(data["state"])
    tv, tvm, vt = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                  "torchvision.models.vision_transformer"))
    vt.nn, tvm.vision_transformer, tv.models = torch.nn, vt, tvm
    sys.modules.update({"torchvision": tv, "torchvision.models": tvm, "torchvision.models.vision_transformer": vt})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lxt.efficient import monkey_patch
        monkey_patch(modeling_bert)
    lxt_model = modeling_bert.BertForSequenceClassification(ours.bert.config).eval()
    lxt_model.load_state_dict(ours.bert.state_dict())
    ids, t = data["ids"], data["targets"]
    out = torch.zeros(ids.shape)
    for s in range(0, len(ids), 16):
        b = ids[s: s + 16]
        mask = (b != 0).long()
        e = lxt_model.bert.get_input_embeddings()(b).detach().requires_grad_(True)
        logits = lxt_model(inputs_embeds=e, attention_mask=mask).logits
        with torch.no_grad():
            ref = ours(b)
        if not torch.allclose(logits, ref, rtol=1e-4, atol=1e-5):
            raise SystemExit(f"LXT's patched BERT computes other logits (max diff {(logits - ref).abs().max():.2e})")
        sel = logits[torch.arange(len(b)), t[s: s + 16]]
        (g,) = torch.autograd.grad(sel.sum(), e)
        out[s: s + 16] = (e * g).sum(-1).detach()
    torch.save(out, dst)


def explain_all(model, sub, y: np.ndarray, methods, use_lxt: bool, notes: dict) -> dict:
    """Relevance per method (DataArrays with the text coords) for documents ``sub`` and true classes ``y``."""
    exp, target = {}, y.tolist()
    if "attnlrp" in methods:
        exp["attnlrp"] = st.explain_documents(model, sub, target, preset="attnlrp")
        exp["cp-lrp"] = st.explain_documents(model, sub, target, preset="cp-lrp")
        exp["attention_rollout"] = st.attention_rollout(model, sub, target)
        base = exp["attnlrp"]
    else:
        exp["lrp"] = base = st.explain_documents(model, sub, target)
    for name in ("attnlrp", "cp-lrp", "lrp"):
        if name in exp:
            exp[name].relevance.check()
    exp["gradient_x_input"] = st.explain_documents(model, sub, target, method="gradient_x_input")
    exp["integrated_gradients"] = base.copy(data=integrated_gradients(model, sub.ids, y))
    if "lxt" in methods:
        values, note = lxt_relevance(model, sub.ids, y) if use_lxt else (None, "not run (--no-lxt)")
        notes["lxt"] = note
        if values is not None:
            exp["lxt"] = base.copy(data=values)
    exp["random"] = base
    return exp


# -- word deletion --------------------------------------------------------------------------------

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
    """Per k = 0..k_max and document: (still correct, true-class logit) after deleting k words."""
    scores, positions = word_scores(R)
    rng = np.random.default_rng(seed)
    ranked = [rng.permutation(len(s)) if order == "random" else np.argsort(-s if order == "most" else s, kind="stable")
              for s in scores]
    correct, logit = [], []
    for k in range(k_max + 1):
        mask = np.zeros(ids.shape, dtype=bool)
        for d, r in enumerate(ranked):
            for w in r[:k]:
                mask[d, positions[d][w]] = True
        out = st.predict(model, st.delete_tokens(ids, mask))
        correct.append(out.argmax(1) == labels)
        logit.append(out[np.arange(len(labels)), labels])
    return np.asarray(correct), np.asarray(logit)


class Tally:
    """Per-document deletion outcomes of one model, collected over folds."""

    def __init__(self, methods) -> None:
        self.methods = [m for m in methods]
        self.ok = {p: {m: [] for m in methods} for p in ("correct", "false")}
        self.drop = {m: [] for m in methods}
        self.absorbed: dict[str, list] = {}
        self.sum_ratio: dict[str, list] = {}
        self.lxt_gap: list[float] = []

    def add(self, model, sub, y, exp, part: str, k_max: int, seed: int) -> None:
        for m in self.methods:
            if m not in exp:
                continue
            order = "random" if m == "random" else ("most" if part == "correct" else "least")
            ok, lg = deletion(model, sub.ids, y, exp[m], order, k_max, seed)
            self.ok[part][m].append(ok)
            if part == "correct":
                self.drop[m].append((lg[0][None, :] - lg).mean(axis=0))
        for m in ("attnlrp", "cp-lrp", "lrp", "lxt"):
            if m in exp:
                R = exp[m]
                f = R.coords["prediction"].values if "prediction" in R.coords else None
                total = R.values.sum(1)
                self.sum_ratio.setdefault(m, []).extend((total / f).tolist())
                if m != "lxt":
                    self.absorbed.setdefault(m, []).extend(np.abs(R.coords["absorbed"].values / f).tolist())
        if "lxt" in exp and "attnlrp" in exp:  # per document: largest token difference / largest |relevance|
            a, b = exp["attnlrp"].values.astype(np.float64), exp["lxt"].values.astype(np.float64)
            self.lxt_gap.extend((np.abs(a - b).max(1) / np.abs(a).max(1)).tolist())

    def summary(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        out: dict = {"n_correct": 0, "n_false": 0}
        for part in ("correct", "false"):
            rows = {}
            for m, parts in self.ok[part].items():
                if not parts:
                    continue
                ok = np.concatenate(parts, axis=1).astype(float)  # (k, document)
                out[f"n_{part}"] = ok.shape[1]
                last = ok[-1]
                boot = [last[rng.integers(0, len(last), len(last))].mean() for _ in range(1000)]
                rows[m] = {"accuracy": ok.mean(1).round(4).tolist(),
                           "accuracy_k_max_ci": [round(float(np.percentile(boot, q)), 4) for q in (2.5, 97.5)]}
            out[part] = rows
        aopc = {}
        for m, drops in self.drop.items():
            if not drops:
                continue
            v = np.concatenate(drops)
            boot = [v[rng.integers(0, len(v), len(v))].mean() for _ in range(1000)]
            aopc[m] = [round(float(v.mean()), 4), round(float(np.percentile(boot, 2.5)), 4),
                       round(float(np.percentile(boot, 97.5)), 4)]
        out["aopc_correct"] = aopc
        out["median_absorbed_share"] = {m: round(float(np.median(v)), 4) for m, v in self.absorbed.items()}
        out["median_sum_relevance_over_fx"] = {m: round(float(np.median(v)), 4) for m, v in self.sum_ratio.items()}
        if self.lxt_gap:
            out["attnlrp_vs_lxt_max_relative_gap"] = float(np.max(self.lxt_gap))
        return out


def split_and_explain(model, docs, tally: Tally, methods, use_lxt: bool, notes: dict, k_max: int, seed: int) -> float:
    """Explain the correct and the false documents of ``docs`` and add their deletion curves; returns accuracy."""
    pred = st.predict(model, docs.ids).argmax(1)
    for part, sel in (("correct", pred == docs.labels), ("false", pred != docs.labels)):
        idx = np.flatnonzero(sel)
        if len(idx):
            sub = docs.subset(idx)
            exp = explain_all(model, sub, sub.labels, methods, use_lxt, notes)
            tally.add(model, sub, sub.labels, exp, part, k_max, seed)
    return float((pred == docs.labels).mean())


def run_newsgroups(k_max: int, seed: int, use_lxt: bool, folds_n: int = 5) -> dict:
    corpus = st.load_mini_newsgroups()
    folds = st.stratified_folds(corpus.labels, folds_n, seed)
    tally, notes, fold_acc = Tally(TRANSFORMER_METHODS), {}, []
    for f, test in enumerate(tqdm(folds, desc="newsgroups folds")):
        train = np.setdiff1d(np.arange(len(corpus)), test)
        model, tok, _ = fit_recipe(RECIPES["newsgroups_bert"], corpus, train, seed)
        model.class_names = corpus.class_names
        docs = st.prepare_documents(st.Documents([corpus.texts[i] for i in test], tok, labels=corpus.labels[test]),
                                    model)
        fold_acc.append(split_and_explain(model, docs, tally, TRANSFORMER_METHODS, use_lxt, notes, k_max, seed + f))
    return {"newsgroups_bert": {"cv_accuracy": float(np.mean(fold_acc)), "fold_accuracy": fold_acc,
                                **tally.summary(seed), "notes": notes}}


def run_bbc(k_max: int, seed: int, use_lxt: bool, n_docs: int | None) -> dict:
    corpus = st.load_bbc_news()
    out = {}
    for name, methods in (("bbc_bert", TRANSFORMER_METHODS), ("bbc_cnn", CNN_METHODS)):
        model, tok = st.load_model(name)
        test = np.asarray(model.training_record["test_indices"])
        if n_docs is not None:
            test = test[:n_docs]
        docs = st.prepare_documents(st.Documents([corpus.texts[i] for i in test], tok, labels=corpus.labels[test],
                                                 allow_all_unknown=True), model)
        tally, notes = Tally(methods), {}
        acc = split_and_explain(model, docs, tally, methods, use_lxt, notes, k_max, seed)
        out[name] = {"held_out_accuracy": acc, "n_documents": len(test), **tally.summary(seed), "notes": notes}
    return out


# -- planted keywords -----------------------------------------------------------------------------

def run_planted(seed: int, use_lxt: bool, n_docs: int = 600, length: int = 40, n_planted: int = 3) -> dict:
    pc = st.planted_keyword_corpus(n_docs, length, n_planted, seed=seed)
    c = pc.corpus
    n_train = 2 * n_docs // 3
    tok = st.train_wordpiece(c.texts[:n_train], vocab_size=8000, min_frequency=1)
    longest = int(st.Documents(c.texts, tok).ids.shape[1])  # no document is truncated
    torch.manual_seed(seed)
    r = RECIPES["newsgroups_bert"]
    model = st.TransformerClassifier(len(tok), 2, hidden=r["hidden"], layers=r["layers"], heads=r["heads"],
                                     intermediate=r["intermediate"], max_length=longest, dropout=0.1)
    model.class_names = c.class_names
    docs = st.prepare_documents(st.Documents(c.texts, tok, labels=c.labels), model)
    st.train_classifier(model, docs.ids[:n_train], c.labels[:n_train], epochs=15, lr=2e-3, seed=seed)
    test = np.arange(n_train, n_docs)
    pred = st.predict(model, docs.ids[test]).argmax(1)
    correct = test[pred == c.labels[test]]
    sub = docs.subset(correct)
    notes: dict = {}
    exp = explain_all(model, sub, c.labels[correct], TRANSFORMER_METHODS, use_lxt, notes)
    rng = np.random.default_rng(seed)
    exp["random"] = exp["attnlrp"].copy(data=rng.random(exp["attnlrp"].shape))
    out = {"test_accuracy": float((pred == c.labels[test]).mean()), "n_explained": int(len(correct)),
           "pieces_per_word": float(np.mean([len(t) - 2 for t in sub.tokens]) / length), "max_length": longest,
           "notes": notes}
    assert not sub.truncated.any()
    for m, R in exp.items():
        W = st.group_words(R)
        hits = []
        for row, d in enumerate(correct):
            top = np.argsort(-W.values[row, :length], kind="stable")[:n_planted]
            hits.append(len(set(top.tolist()) & set(pc.planted[d].tolist())) / n_planted)
        out[m] = round(float(np.mean(hits)), 4)
    return out


# -- tables ---------------------------------------------------------------------------------------

def table(res: dict, k_max: int) -> str:
    lines = [f"| model | method | correct: accuracy at k = {k_max} (95% CI; lower is better) | AOPC (95% CI; higher "
             f"is better) | false: accuracy at k = {k_max} (higher is better) |", "|---|---|---|---|---|"]
    for name, r in res.items():
        if name == "planted":
            continue
        for m, row in r["correct"].items():
            a = r["aopc_correct"][m]
            ci = row["accuracy_k_max_ci"]
            fl = r.get("false", {}).get(m)
            false = f"{fl['accuracy'][k_max]:.3f}" if fl else "-"
            lines.append(f"| `{name}` | {LABELS[m]} | {row['accuracy'][k_max]:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) | "
                         f"{a[0]:.3f} ({a[1]:.3f}-{a[2]:.3f}) | {false} |")
    return "\n".join(lines)


def plot(res: dict, path: Path, k_max: int) -> None:
    """Accuracy of the correct documents after deleting k words, one panel per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sciexplain.result import save_figure, styled

    names = [n for n in res if n != "planted"]

    style = {"attnlrp": ("C0", "-", "o"), "lrp": ("C0", "-", "o"), "cp-lrp": ("C1", "-", "s"),
             "lxt": ("k", "none", "x"), "gradient_x_input": ("C3", "-", "^"),
             "integrated_gradients": ("C4", "-", "v"), "attention_rollout": ("C5", "--", "D"),
             "random": ("0.5", ":", "o")}

    @styled
    def draw():
        fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False, layout="constrained")
        handles = {}
        for ax, name in zip(axes[0], names):
            r = res[name]
            for m, row in r["correct"].items():
                color, ls, marker = style[m]
                (line,) = ax.plot(range(k_max + 1), row["accuracy"], color=color, ls=ls, marker=marker, ms=3, lw=1.2,
                                  label=LABELS[m])
                handles.setdefault(LABELS[m], line)
            ax.set_title(f"{name}: {r['n_correct']} correct documents", fontsize=9)
            ax.set_xlabel("words deleted, most relevant first (k)")
            ax.set_ylabel("accuracy")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=4, fontsize=7,
                   frameon=False)
        return fig
    save_figure(draw(), path, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["newsgroups", "bbc", "planted"],
                    choices=["newsgroups", "bbc", "planted"])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bbc-docs", type=int, default=None, help="explain only the first N held-out BBC articles")
    ap.add_argument("--no-lxt", action="store_true")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--lxt-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--from-json", type=Path, help="redraw the figure from a saved run")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        plot(saved["results"], ROOT / "benchmarks" / "results" / "text_transformer.png", saved["meta"]["k"])
        print(saved["table"])
        return
    if args.lxt_worker:
        lxt_worker(*args.lxt_worker)
        return
    torch.set_num_threads(args.threads)
    t0, res, seconds = time.time(), {}, {}
    for part in args.parts:
        t1 = time.time()
        if part == "newsgroups":
            res.update(run_newsgroups(args.k, args.seed, not args.no_lxt))
        elif part == "bbc":
            res.update(run_bbc(args.k, args.seed, not args.no_lxt, args.bbc_docs))
        else:
            res["planted"] = run_planted(args.seed, not args.no_lxt)
        seconds[part] = round(time.time() - t1, 1)
        print(part, seconds[part], "s", flush=True)
    meta = {"command": "python benchmarks/bench_text_transformer.py --write", "seconds": round(time.time() - t0, 1),
            "seconds_per_part": seconds, "threads": args.threads, "seed": args.seed, "k": args.k,
            "bbc_docs": args.bbc_docs, "parts": args.parts,
            "deletion": "all tokens of a word replaced by the padding id (the transformer masks them out; the CNN's "
                        "padding embedding is zero)"}
    print(json.dumps(res, indent=1))
    print(table(res, args.k))
    if args.write:
        path = ROOT / "benchmarks" / "results" / "text_transformer.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"meta": meta, "results": res, "table": table(res, args.k)}, indent=1) + "\n")
        plot(res, path.with_suffix(".png"), args.k)
        print("wrote", path, "and", path.with_suffix(".png"))


if __name__ == "__main__":
    main()
