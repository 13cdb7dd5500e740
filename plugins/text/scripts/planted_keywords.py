"""Synthetic ground truth: how often does each method put the planted keywords at the top?

Trains a TextCNN (and a BiLSTM) on documents whose class is decided only by a few planted
keywords, explains the held-out documents the model classifies correctly with LRP,
sensitivity, gradient x input and a random order, and prints the hit rate (fraction of the
planted keywords among each document's top-n tokens, n = keywords planted) per method.

Usage::

    python plugins/text/scripts/planted_keywords.py [--docs 600] [--length 40] [--seed 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sciexplain_text import (BiLSTMClassifier, Documents, TextCNN, WordTokenizer, explain_documents,  # noqa: E402
                             glove_embedding, keyword_hit_rate, planted_keyword_corpus, train_classifier)
from sciexplain_text.training import predict  # noqa: E402


def run(n_docs: int = 600, length: int = 40, n_planted: int = 3, seed: int = 0, arch: str = "cnn",
        epochs: int = 15) -> dict:
    """Train on 2/3 of a planted corpus, measure hit rates on the correctly classified rest."""
    pc = planted_keyword_corpus(n_docs, length, n_planted, seed=seed)
    c = pc.corpus
    n_train = 2 * n_docs // 3
    tok = WordTokenizer.fit(c.texts[:n_train])
    torch.manual_seed(seed)
    if arch == "cnn":
        model = TextCNN(len(tok), 2, n_filters=16, window=3, max_length=length)
    else:
        model = BiLSTMClassifier(len(tok), 2, hidden=16, max_length=length)
    model.embedding = glove_embedding(tok.vocabulary, freeze=True, seed=seed)
    ids = Documents(c.texts, tok, pad_to=length, allow_all_unknown=True).ids
    train_classifier(model, ids[:n_train], c.labels[:n_train], epochs=epochs, lr=1e-2, seed=seed)
    test = np.arange(n_train, n_docs)
    pred = predict(model, ids[test]).argmax(1)
    acc = float((pred == c.labels[test]).mean())
    correct = test[pred == c.labels[test]]
    docs = Documents([c.texts[i] for i in correct], tok, pad_to=length, allow_all_unknown=True)
    planted = [pc.planted[i] for i in correct]
    out = {"arch": arch, "test_accuracy": acc, "n_explained": int(len(correct))}
    lrp = explain_documents(model, docs, c.labels[correct].tolist())
    for m in ("lrp", "sensitivity", "gradient_x_input"):
        R = lrp if m == "lrp" else explain_documents(model, docs, c.labels[correct].tolist(), method=m)
        out[m] = keyword_hit_rate(R, planted)
    rng = np.random.default_rng(seed)
    rand = lrp.copy(data=rng.random(lrp.shape))
    out["random"] = keyword_hit_rate(rand, planted)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", nargs="+", default=["cnn", "lstm"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [run(args.docs, args.length, seed=args.seed, arch=a) for a in args.arch]
    for r in results:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
