"""Build tutorials/text_header_shortcut.ipynb from the cell sources below.

Run: python tutorials/make_text_shortcut_notebook.py. The notebook is committed without outputs;
plugins/text/tests/test_header_shortcut.py runs it.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent

SHORTCUT = [
    ("md", "# A classifier that reads the answer off the header: finding and removing a Clever Hans shortcut\n\n"
           "Real Usenet posts from 20 Newsgroups (the 200 alt.atheism and sci.space posts in gensim's test data). "
           "Every post starts with a header block (`Newsgroups: alt.atheism`, `Path:`, `Xref:`, `From:`) that "
           "names the group the post was filed in: the class. Here half of the posts (a seeded draw) kept their "
           "headers, as happens when posts come from archives that treat them differently. A text CNN over "
           "GloVe vectors (`newsgroups_cnn_headers`, shipped with `sciexplain-text`) was trained on them.\n\n"
           "We go from a suspicious accuracy to the shortcut, with explanations (LRP), spectral relevance "
           "analysis (SpRAy, Lapuschkin et al. 2019) over a whole class, and class artifact compensation "
           "(ClArC, Anders et al. 2022). Everything runs offline on the CPU."),
    ("code", "%matplotlib inline\nimport numpy as np\nimport torch\nimport sciexplain as sx\n"
             "import sciexplain_text as st\n\ntorch.set_num_threads(1)\n"
             "model, tok = st.load_model(st.HEADER_MODEL)     # sha256-checked weights\n"
             "rec = model.training_record\n"
             "corpus, kept = st.headers_kept_corpus(rec['headers_kept_fraction'], rec['seed'])\n"
             "raw = st.load_mini_newsgroups(strip=False)\nnames = corpus.class_names\n"
             "test = np.asarray(rec['test_indices'])\n"
             "train = np.setdiff1d(np.arange(len(corpus)), test)\n"
             "stripped = [st.strip_headers(t) for t in raw.texts]\n"
             "L = model.max_length\n\n"
             "def docs(texts):\n"
             "    return st.Documents(list(texts), tok, L, pad_to=L, allow_all_unknown=True, class_names=names)\n\n"
             "print(int(kept.sum()), 'of', len(corpus), 'posts kept their headers')\n"
             "acc_headers = st.accuracy(model, docs(raw.texts[i] for i in test).ids, corpus.labels[test])\n"
             "acc_stripped = st.accuracy(model, docs(stripped[i] for i in test).ids, corpus.labels[test])\n"
             "print(f'held-out accuracy with headers {acc_headers:.3f}, headers stripped {acc_stripped:.3f}')"),
    ("md", "## A suspicious accuracy\nEvery one of the 40 held-out posts is right when it carries its header. "
           "On 160 training posts that is suspicious: the header names the class. But the accuracy without "
           "headers is high as well, so accuracy alone cannot tell whether the model reads the header. "
           "Explanations can."),
    ("code", "d = int(test[(corpus.labels[test] == 0)][0])\n"
             "R1 = sx.explain(model, docs([raw.texts[d]]))         # LRP, the plugin's default preset\n"
             "R1.relevance.check()                                    # relevance + absorbed = f(x)\n"
             "print('predicted', R1.target_name.values[0], '| header share of |R|:', "
             "st.header_share(R1).round(3)[0])\n"
             "st.show(R1, 0)"),
    ("code", "fig = st.plot_document(R1, 0, max_tokens=120)"),
    ("md", "## One class, all its explanations: SpRAy\nWe explain all 100 alt.atheism posts for class "
           "alt.atheism and sum each post's relevance by word type (`relevance_by_word_type`; the ledger is "
           "unchanged). Word types, not token positions: headers have 7 to 20 lines, so the body starts at a "
           "different token in every post and position maps do not line up; the same word is the same "
           "feature in every post. SpRAy builds a nearest-neighbour graph of the maps and reads the number "
           "of strategies from the eigengap of its Laplacian."),
    ("code", "cls = np.flatnonzero(corpus.labels == 0)\n"
             "R = sx.explain(model, docs(corpus.texts[i] for i in cls), target='alt.atheism')\n"
             "R.relevance.check()\nW = st.relevance_by_word_type(R)\n"
             "ds = sx.spray(W, n_neighbors=10)\n"
             "print('clusters from the eigengap:', ds.attrs['n_clusters'], '| sizes', ds.cluster_size.values)\n"
             "fig = sx.plot_spray(ds, draw_prototype=st.draw_word_prototype, truth=kept[cls])"),
    ("md", "## The header cluster\nOne cluster's mean map rests on `alt`, `newsgroups`, `path` and the news "
           "server's name, `cantaloupe`: words that occur only in headers (`header_vocabulary`). "
           "`header_clusters` picks it without knowing which posts kept their header; we compare with that "
           "known set (the rings in the embedding above)."),
    ("code", "chosen, share = st.header_clusters(ds, st.header_vocabulary(corpus.texts, tok))\n"
             "found = np.isin(ds.cluster.values, chosen)\ntruth = kept[cls]\n"
             "precision = (found & truth).sum() / found.sum()\nrecall = (found & truth).sum() / truth.sum()\n"
             "print('header-only words in each prototype:', share.round(3), '-> header cluster', chosen)\n"
             "print(f'precision {precision:.3f}, recall {recall:.3f} against the {truth.sum()} posts with header')"),
    ("md", "## Does the model act on it? A probe\nGive each held-out sci.space text the header of a held-out "
           "alt.atheism post. A model that reads the text still says sci.space."),
    ("code", "atheist = test[corpus.labels[test] == 0]\nspace = test[corpus.labels[test] == 1]\n"
             "probes = [st.with_header(stripped[i], st.header_block(raw.texts[atheist[j % len(atheist)]]))\n"
             "          for j, i in enumerate(space)]\n"
             "print('sci.space texts with an alt.atheism header: accuracy', "
             "st.accuracy(model, docs(probes).ids, corpus.labels[space]))"),
    ("md", "## Removing it: ClArC\nThe artifact is a direction `v` in the 64 max-pooled filter outputs "
           "(`flatten`): the mean difference between the training bodies with an alt.atheism header from the "
           "header cluster prepended and the same bodies without. P-ClArC projects it out at inference "
           "(`h(a) = a - v v^T (a - z_clean)`, no training); A-ClArC adds the header to every training post "
           "along `v` and fine-tunes the read-out (seeded, dropout included; only the read-out is differentiated), so "
           "the header stops telling the classes apart. `sx.clarc_report` scores both on the posts themselves: "
           "accuracy on the stripped posts and on the probes, and the header tokens' share of |R|, with "
           "`st.header_mask` as the per-post artifact mask."),
    ("code", "headers = [st.header_block(raw.texts[i]) for i in cls[found] if i in set(train.tolist())]\n"
             "x_art = docs(st.with_header(stripped[i], headers[j % len(headers)]) for j, i in enumerate(train)).ids\n"
             "x_cln = docs(stripped[i] for i in train).ids\n"
             "v = sx.artifact_direction(model, 'flatten', x_art, x_cln)\n"
             "models = {'original': model, 'P-ClArC': sx.PClArC(model, 'flatten', v),\n"
             "          'A-ClArC': sx.AClArC(model, 'flatten', v).fit(docs(corpus.texts[i] for i in train).ids,\n"
             "                                                     corpus.labels[train], epochs=20, lr=1e-3, seed=0)}\n"
             "for m in models.values():\n"
             "    m.class_names = names\n\n"
             "def explain_atheism(m, documents):\n"
             "    R = sx.explain(m, documents, target='alt.atheism')   # labelled: (document, token), the words' offsets\n"
             "    R.relevance.check()                                   # relevance + absorbed = f(x), every model\n"
             "    return R\n\n"
             "# the header is at different tokens in every post: header_mask finds it in each explanation\n"
             "report = sx.clarc_report(models, docs(stripped[i] for i in test), corpus.labels[test],\n"
             "                         docs(probes), corpus.labels[space], st.header_mask, explain=explain_atheism)\n"
             "for name, m in models.items():\n"
             "    r = report.sel(model=name)\n"
             "    own = st.accuracy(m, docs(raw.texts[i] for i in test).ids, corpus.labels[test])\n"
             "    print(f\"{name:9s} accuracy: stripped {float(r.accuracy_clean):.3f}, own headers {own:.3f}, \"\n"
             "          f\"probes {float(r.accuracy_artifact):.3f} | header share of |R| on probes {float(r.artifact_share):.3f}\")"),
    ("md", "P-ClArC turns the probes around at no cost in accuracy on the stripped posts; A-ClArC, as run "
           "here (20 epochs of the read-out, no tuning), also fixes most probes but loses accuracy on the "
           "stripped posts. The header still gets relevance after ClArC: its words (`atheism`, `religion`, the "
           "subject line) are evidence a model may use; what is gone is the model's reliance on the header "
           "alone. A probe explained by the corrected model: the header words now speak against alt.atheism or "
           "not at all, and the text decides. The projection is one affine layer whose bias `(v^T z) v` takes up "
           "part of f(x); `absorbed` in the title says how much, and the ledger still balances."),
    ("code", "Rf = sx.explain(models['P-ClArC'], docs(probes[:1]))\nRf.relevance.check()\n"
             "print('P-ClArC predicts', Rf.target_name.values[0])\nfig = st.plot_document(Rf, 0, max_tokens=120)"),
]


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HERE))
    from make_notebooks import build  # one notebook writer for all tutorials

    build(SHORTCUT, HERE / "text_header_shortcut.ipynb")
