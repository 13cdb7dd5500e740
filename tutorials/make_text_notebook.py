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
