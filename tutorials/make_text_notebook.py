"""Build tutorials/text_newsgroups.ipynb from the cell sources below.

Run: python tutorials/make_text_notebook.py. The notebook is committed without outputs; this
script keeps its source reviewable as plain Python. plugins/text/tests/test_tutorial.py runs it.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent

TEXT = [
    ("md", "# Which words make a classifier call a Usenet post \"sci.space\"?\n\n"
           "Real posts from 20 Newsgroups (the 200 alt.atheism and sci.space posts that ship in gensim's test "
           "data), with their headers stripped: the `Newsgroups:` line would give the answer away. Two document "
           "classifiers over GloVe word vectors ship with `sciexplain-text`, trained by "
           "`plugins/text/scripts/train_models.py`: the seeds' CNN (one convolution over word windows, ReLU, "
           "max-pooling over time, a linear read-out) and a bidirectional LSTM. We explain held-out posts word "
           "by word with Layer-wise Relevance Propagation (LRP): every word gets a relevance, red for evidence "
           "for the class, blue against, and the relevance of a post adds up to the model's output f(x). "
           "Everything runs offline on the CPU."),
    ("code", "%matplotlib inline\nimport numpy as np\nimport torch\nimport sciexplain as sx\nimport sciexplain_text as st\n\n"
             "torch.set_num_threads(2)\ncorpus = st.load_mini_newsgroups()       # restricted unpickler, headers stripped\n"
             "cnn, tok = st.load_model('newsgroups_cnn')\nrec = cnn.training_record\n"
             "print(corpus.class_names, len(corpus), 'posts')\n"
             "print('CNN: 5-fold CV accuracy', rec['cv5_accuracy'], '| held-out posts', rec['n_test'], "
             "'| held-out accuracy', rec['test_accuracy'])"),
    ("md", "## Documents\n`Documents` tokenizes with character offsets, pads to the model's length and records "
           "truncation and unknown words. `sx.explain` recognises it and hands it to the text plugin. The posts "
           "below were never seen in training."),
    ("code", "test = np.asarray(rec['test_indices'])\n"
             "docs = st.Documents([corpus.texts[i] for i in test], tok, labels=corpus.labels[test], "
             "class_names=corpus.class_names)\ndocs"),
    ("code", "R = sx.explain(cnn, docs)            # LRP (epsilon) for the predicted class of every post\n"
             "R.relevance.check()                  # relevance + absorbed = f(x), post by post\n"
             "print(R.dims, R.sizes)\nprint('held-out accuracy', float((R.predicted.values == docs.labels).mean()))\n"
             "print('f(x):              ', R.prediction.values[:4].round(3))\n"
             "print('sum of relevance:  ', R.relevance.total().values[:4].round(3))\n"
             "print('absorbed by biases:', R.absorbed.values[:4].round(3))"),
    ("md", "## One post, as written\n`st.show(R, d)` renders the original text with each word highlighted "
           "(escaped HTML; in Jupyter it displays itself). Hover over a word to see its relevance."),
    ("code", "d = int(np.flatnonzero((R.predicted.values == docs.labels) & (docs.labels == 1))[0])\n"
             "st.show(R, d)"),
    ("code", "fig = st.plot_document(R, d)"),
    ("md", "## Sensitivity, gradient x input and LRP side by side\nSensitivity analysis (squared gradients) "
           "is never negative: it shows which words the output is sensitive to, not which speak for or against "
           "the class. LRP and gradient x input also show negative evidence (Samek et al. 2017, Fig. 2B)."),
    ("code", "one = docs.subset([d])\nt = int(R.target.values[d])\n"
             "res = {m: st.explain_documents(cnn, one, t, method=m) for m in ('sensitivity', 'gradient_x_input', 'lrp')}\n"
             "fig = st.plot_methods(res, 0, max_tokens=80)"),
    ("md", "## Which words does the model use for each class?\nSumming relevance over all occurrences of a "
           "word type in the held-out posts, per explained class, gives a corpus-level view that still adds up "
           "(the sums over a class equal its summed f(x) minus absorbed and padding)."),
    ("code", "S = st.word_type_relevance(R, by='target')\n"
             "{str(c): [w for w, _, _ in st.top_words(S, str(c), 8, min_count=2)] for c in S.coords['class'].values}"),
    ("code", "fig = st.plot_top_words(S, k=10)"),
    ("md", "## The bidirectional LSTM\nThe core unrolls `nn.LSTM` into its gates (sharing the model's own "
           "parameters) and explains it with the LSTM rule of Arras et al. (2017): gate products pass all "
           "relevance to the signal, the cell-state sum splits it proportionally, and relevance reaching the "
           "initial state is absorbed (and counted). Padding is read by the LSTM, so its relevance is reported "
           "in `padding_relevance`, never dropped."),
    ("code", "lstm, ltok = st.load_model('newsgroups_lstm')\nlrec = lstm.training_record\n"
             "print('BiLSTM: 5-fold CV accuracy', lrec['cv5_accuracy'], '| held-out accuracy', lrec['test_accuracy'])\n"
             "ldocs = st.Documents([corpus.texts[i] for i in test[:8]], ltok, labels=corpus.labels[test[:8]])\n"
             "RL = sx.explain(lstm, ldocs)\nRL.relevance.check()\n"
             "print('f(x)', RL.prediction.values.round(3))\nprint('padding relevance', RL.padding_relevance.values.round(3))\n"
             "dl = int(np.flatnonzero(RL.predicted.values == ldocs.labels)[0])\nst.show(RL, dl)"),
    ("md", "## Is the explanation faithful? Word deletion\nArras et al. (2017): on correctly classified posts, "
           "delete the k most relevant words (the embedding set to zero) and watch the accuracy fall. A "
           "faithful explanation should make it fall faster than deleting words at random or by sensitivity. "
           "Here for the CNN on the held-out posts it classifies correctly (the full benchmark with the LSTM and "
           "cross-validated models is `benchmarks/bench_text_deletion.py`)."),
    ("code", "ok = np.flatnonzero(R.predicted.values == docs.labels)\ncd = docs.subset(ok)\n"
             "exp = {m: st.explain_documents(cnn, cd, cd.labels.tolist(), method=m) "
             "for m in ('lrp', 'sensitivity', 'gradient_x_input')}\nexp['random'] = exp['lrp']\n"
             "ids = st.prepare_documents(cd, cnn).ids     # padded as the model reads them\ncurves = st.word_deletion(cnn, ids, cd.labels, exp, k_max=10)\n"
             "curves.to_pandas().round(2)"),
    ("code", "fig = st.plot_deletion({'correct posts, most relevant deleted first': curves})"),
    ("md", "## A transformer: subword pieces, [CLS] and [SEP]\nThe plugin also ships a small BERT-style "
           "classifier trained here from scratch on the same posts (`newsgroups_bert`: 2 layers, 2 heads, hidden "
           "64, a 1000-entry WordPiece vocabulary learned on the training posts; `bbc_bert` is the same "
           "architecture on BBC News). It reads subword pieces, with `[CLS]` before and `[SEP]` after each post; "
           "the class is read from `[CLS]`. `sx.explain` runs CP-LRP (Ali et al. 2022) by default: one "
           "relevance per piece, each piece keeping its character offsets, and the ledger still balances. Trained "
           "on 128 posts without pre-training, it is less accurate than the GloVe models."),
    ("code", "bert, btok = st.load_model('newsgroups_bert')\ninfo = st.model_info('newsgroups_bert')\n"
             "print(info.description)\nprint('transformer: 5-fold CV accuracy', info.cv_accuracy, "
             "'| held-out accuracy', info.held_out_accuracy)\n"
             "bdocs = st.Documents([corpus.texts[i] for i in test[:8]], btok, labels=corpus.labels[test[:8]], "
             "class_names=corpus.class_names)\n"
             "RB = sx.explain(bert, bdocs)         # CP-LRP; relevance for the predicted class\n"
             "RB.relevance.check()                 # pieces + [CLS]/[SEP] + absorbed = f(x)\n"
             "db = int(np.flatnonzero((RB.predicted.values == bdocs.labels) & (bdocs.labels == 1))[0])\n"
             "import pandas as pd\n"
             "pd.DataFrame({k: RB[k].values[db, :14] for k in ('word', 'start', 'end', 'word_index')} | "
             "{'relevance': RB.values[db, :14].round(4)})"),
    ("md", "Pieces of one word share a `word_index`; `group_words` sums them into the words as written, with "
           "one entry each for `[CLS]`, `[SEP]` and the padding, so the totals do not change. The specials' "
           "relevance is reported, not dropped."),
    ("code", "WB = st.group_words(RB)\nrow = WB.isel(document=db)\n"
             "words = row.where(~row.is_empty & ~row.is_special, drop=True)\n"
             "top = words.sortby(words, ascending=False)[:8]\n"
             "print('most relevant words:', top.word_text.values.tolist())\n"
             "print('f(x) = %.3f  words = %.3f  [CLS] + [SEP] = %.3f  padding = %.3f  absorbed = %.3f' % (\n"
             "    RB.prediction.values[db], float(words.sum()), RB.special_relevance.values[db],\n"
             "    RB.padding_relevance.values[db], RB.absorbed.values[db]))"),
    ("code", "st.show(RB, db)   # the post as written; the pieces of a word highlighted side by side"),
    ("md", "### AttnLRP or CP-LRP?\nCP-LRP treats the attention weights as constants (relevance flows only "
           "through the values); AttnLRP also passes relevance through the softmax into the queries and keys. "
           "On this model both rank words alike in the word-deletion benchmark "
           "(`benchmarks/bench_text_transformer.py`, table in the plugin README); the maps differ in detail and "
           "in how much of f(x) stays absorbed: a median 59% under AttnLRP against -7% under CP-LRP on the "
           "posts (`benchmarks/bench_conservation.py`), which is why CP-LRP is the default. Attention rollout (`st.attention_rollout`) is shown beside them "
           "as a baseline: it says where `[CLS]` looked, for every class alike, and decomposes nothing."),
    ("code", "one = bdocs.subset([db])\nres = {'AttnLRP': st.explain_documents(bert, one, int(RB.target.values[db]), preset='attnlrp'),\n"
             "       'CP-LRP': RB.isel(document=[db])}   # explained above\n"
             "for name, Rm in res.items():\n"
             "    print('%-8s absorbed %.3f of f(x) = %.3f' % (name, float(Rm.absorbed[0]), float(Rm.prediction[0])))\n"
             "a, c = (st.group_words(Rm).values[0] for Rm in res.values())\n"
             "print('correlation of the word relevance: %.2f' % np.corrcoef(a, c)[0, 1])\n"
             "roll = st.group_words(st.attention_rollout(bert, one)).isel(document=0)\n"
             "roll = roll.where(~roll.is_special & ~roll.is_empty, drop=True)\n"
             "print('attention rollout, top words:',\n"
             "      roll.sortby(roll, ascending=False).word_text.values[:8].tolist())\n"
             "fig = st.plot_methods(res, 0, max_tokens=70)"),
    ("md", "## For a paper, and for later\n`to_latex` writes a `\\colorbox` heatmap (every special character "
           "escaped); the result saves to netCDF with the words, offsets and texts as coordinates."),
    ("code", "import os, tempfile, xarray as xr\nfolder = tempfile.mkdtemp()\n"
             "tex = st.to_latex(R, os.path.join(folder, 'post.tex'), d)\nprint(tex[:300])\n"
             "R.to_netcdf(os.path.join(folder, 'newsgroups_cnn.nc'))\n"
             "back = xr.open_dataarray(os.path.join(folder, 'newsgroups_cnn.nc'))\nback.relevance.check()\n"
             "print(back.word.values[d, :8])"),
]


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HERE))
    from make_notebooks import build  # one notebook writer for all tutorials

    build(TEXT, HERE / "text_newsgroups.ipynb")
