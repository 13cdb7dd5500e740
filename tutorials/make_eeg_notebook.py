"""Build tutorials/eeg_finger_movements.ipynb from the cell sources below.

Run: python tutorials/make_eeg_notebook.py. The notebook is committed without outputs; this
script keeps its source reviewable as plain Python. plugins/eeg/tests/test_tutorial.py runs it.
"""

from pathlib import Path


HERE = Path(__file__).resolve().parent

EEG = [
    ("md", "# Which electrodes and moments decide a single-trial EEG prediction?\n\n"
           "Real EEG from BCI Competition II, data set IV: one subject typing self-paced with the left or the "
           "right hand, 28 electrodes, 100 Hz, 316 training and 100 test trials of 280 ms. We train a "
           "classifier, explain every test trial with Layer-wise Relevance Propagation (LRP), and pool the "
           "relevance the way Sturm et al. (2016) did: over time windows, over regions of the scalp, over "
           "conditions. Every pooled number is a **sum** of relevance, so it still adds up to the model's "
           "output f(x) for that trial. Everything runs offline on the CPU in about a minute.\n\n"
           "**Caveat up front:** these data are only weakly separable. Simple linear classifiers reach about "
           "0.6-0.67 on the test trials; the networks of this plugin trained with early stopping stay at "
           "chance. The explanations below explain a model that is right about two trials in three."),
    ("code", "%matplotlib inline\nimport numpy as np\nimport torch\nimport sciexplain as sx\nimport sciexplain_eeg as se\n\n"
             "torch.set_num_threads(2)\ntrain = se.load_finger_movements('train')   # mne.EpochsArray, volts, "
             "colin27_1020 montage\ntest = se.load_finger_movements('test')\ntest"),
    ("md", "## Train\n`LinearEEG` removes each channel's mean over the epoch inside the model (a fixed linear "
           "operation, so the engine explains it) and reads the class out linearly. `fit_logistic` fits it "
           "as an L2-regularised logistic regression to convergence; the penalty `C` is chosen by 5-fold "
           "cross-validation on the training trials only. The test trials are used once, to score it."),
    ("code", "model = se.LinearEEG(28, 28).fit_logistic(train)\n"
             "print('chosen C:', model.C, ' cross-validated accuracy per C:', "
             "{c: round(a, 3) for c, a in model.cv_scores.items()})\n"
             "print('training accuracy', round(se.evaluate(model, train), 3))\n"
             "print('test accuracy', se.evaluate(model, test))\n"
             "print('the model saw', model.scaling, 'x volts (microvolts),', model.sfreq, 'Hz, channels', "
             "model.ch_names[:4], '...')"),
    ("md", "## Explain\n`sx.explain` recognises `mne.Epochs` and hands them to the EEG plugin, which checks the "
           "channels, sampling rate and length against the model and applies the model's scaling. The result "
           "is labelled by epoch (with its condition), channel (with positions) and time (in seconds). For "
           "each trial, relevance summed over channels and time, plus what biases absorbed (nothing here: the "
           "model has no intercept), equals the explained logit."),
    ("code", "R = sx.explain(model, test)        # explains the predicted class of every test trial\n"
             "R.relevance.check()                 # the ledger balances, trial by trial\n"
             "print(R.dims, R.sizes)\n"
             "print('f(x) of the first trials:     ', R.prediction.values[:4].round(3))\n"
             "print('summed relevance of the same: ', R.relevance.total().values[:4].round(3))\n"
             "R.coords['condition'].values[:6], R.coords['predicted'].values[:6]"),
    ("md", "## Single trials in time windows (the headline figure)\nSumming the relevance of each electrode "
           "over 70 ms windows gives one scalp map per window; the maps of a trial still add up to its "
           "f(x). Red is evidence for the predicted class, blue against."),
    ("code", "W = R.relevance.windows('time', 0.07)\nW.relevance.check()\n"
             "print(W.time_start.values, W.time_end.values)\n"
             "right = int(np.flatnonzero((R.predicted == R.label).values & (R.condition == 'right').values)[0])\n"
             "fig = se.plot_topomap(R, right, windows=0.07)"),
    ("md", "## Left vs right\nTo compare conditions, explain the same class in every trial: here the logit of "
           "\"right\" (class 1). The rows are the mean over the trials of each condition; their difference "
           "shows where the evidence for \"right\" differs between right- and left-hand trials (what both "
           "conditions share cancels). Means over trials summarise many decompositions; they are not the "
           "decomposition of one prediction."),
    ("code", "R1 = sx.explain(model, test, target=1)\n"
             "fig = se.plot_class_topomaps(R1, windows=0.07, difference=True)"),
    ("code", "fig = se.plot_left_right(R1)"),
    ("md", "## Regions of interest\nElectrodes are grouped by lobe (from their 10-20 names, positions as a "
           "fallback) and hemisphere; summing relevance over a region keeps the decomposition. Pass your own "
           "mapping to `pool_rois` to use other regions."),
    ("code", "print(se.default_rois(test, by='lobe'))\nP = se.pool_rois(R1)\nP.relevance.check()\n"
             "by_condition = P.relevance.pool('time').groupby('condition').mean()\n"
             "by_condition.to_pandas().round(3)"),
    ("code", "fig = se.plot_roi_timecourse(R1, window=0.03)"),
    ("md", "## With MNE's own tools\n`to_evoked` averages the relevance over trials into an `mne.EvokedArray` "
           "with the epochs' channel positions, so MNE's plots work. Like `epochs.average()` it gives one evoked "
           "over all trials; like `epochs.average(by_event_type=True)`, `by_event_type=True` gives a list with "
           "one evoked per condition, named by its `comment` (`as_dict=True` keys them by name instead). The "
           "evoked holds relevance (units of the explained logit), not volts: tell MNE with `scalings` and "
           "`units`."),
    ("code", "evokeds = se.to_evoked(R1, test.info, by_event_type=True)\nprint([ev.comment for ev in evokeds])\n"
             "right = evokeds[[ev.comment for ev in evokeds].index('right')]\nprint(right.info['description'])\n"
             "fig = right.plot_joint(times=[0.05, 0.17], ts_args=dict(scalings=dict(eeg=1), "
             "units=dict(eeg='relevance')), topomap_args=dict(scalings=1), show=False)"),
    ("md", "## Is the explanation faithful? Perturbation\nRemove blocks of one channel x 40 ms, most relevant "
           "first (MoRF) or least relevant first (LeRF), replacing each by the trial's own mean of that "
           "channel, and watch the explained logit. LRP should make the MoRF curve fall fast (high AOPC) and "
           "beat a random order. For this linear model LRP and gradient x input coincide exactly; "
           "sensitivity (squared gradients) is the same map for every trial and does no better than random."),
    ("code", "result = se.perturbation_comparison(model, test, block=4, steps=60)\nprint(result.table())\n"
             "fig = se.plot_perturbation(result)"),
    ("md", "## A braindecode network from the model zoo\nThe plugin ships five of the field's standard "
           "networks from braindecode (ShallowFBCSPNet, Deep4Net, EEGNetv4, EEGConformer, ATCNet) with weights "
           "and explains them through the same `sx.explain(model, epochs)`. `se.zoo_models()` lists them with "
           "what was measured: on FingerMovements every one of them stays near chance (the majority class is "
           "0.51 of the test trials, and 100 trials need 0.60 to beat it at p < 0.05), so the shipped weights "
           "were trained on the plugin's synthetic epochs instead, where the answer is known: a deflection at "
           "C4 in \"left\" trials and at C3 in \"right\" trials, 0.3-0.5 s after the epoch's start."),
    ("code", "zoo = se.zoo_models()\n"
             "zoo[['parameters', 'default_preset', 'synthetic_accuracy', 'finger_accuracy', 'finger_chance']]"),
    ("md", "Load EEGNetv4 (1570 parameters, trained on 1 s synthetic epochs of 30 electrodes at 100 Hz) and "
           "explain 40 fresh synthetic epochs. Without `preset=`, the plugin uses the network's own default "
           "(`net.default_preset`, named `net.default_preset_name`), chosen by the conservation benchmark: for "
           "EEGNetv4 `epsilon` with the biases' share of the logit passed on to the inputs, so that almost "
           "nothing is left absorbed, with a faithfulness (ABPC) not distinguishable from `epsilon` alone; "
           "the ledger still balances per epoch."),
    ("code", "net = se.load_zoo('EEGNetv4')\nsynthetic, truth = se.make_synthetic_epochs(n_epochs=40, seed=1000)\n"
             "Rz = sx.explain(net, synthetic)\nRz.relevance.check()\n"
             "print('preset:', Rz.attrs['preset'], '(the registry default:', net.default_preset_name + ')')\n"
             "print('accuracy on these epochs:', float((Rz.predicted == Rz.label).mean()))\n"
             "print('absorbed / f(x), median:', float(np.median(Rz.absorbed / Rz.prediction)).__round__(3))\n"
             "se.ground_truth_scores(Rz, truth)   # planted electrode in the top 3 / top 1, share in the true window"),
    ("md", "A single \"right\" trial in 100 ms windows: the evidence sits over the left motor cortex (C3) in "
           "the windows of the planted deflection. The region time courses show the same over all 40 epochs: "
           "the central region carries the relevance, in the planted window, for both conditions."),
    ("code", "i = int(np.flatnonzero((Rz.predicted == Rz.label).values & (Rz.condition == 'right').values)[0])\n"
             "fig = se.plot_topomap(Rz, i, windows=0.1)"),
    ("code", "fig = se.plot_roi_timecourse(Rz, window=0.05)"),
    ("md", "## ICLabel: why is this ICA component an eye blink?\nICLabel (Pion-Tonachini et al. 2019) is the "
           "pretrained network that labels independent components of a recording as brain, muscle, eye, "
           "heart, line noise, channel noise or other, from three features: the component's scalp map, its "
           "power spectrum and its autocorrelation. No recording ships with the packages here, so "
           "`simulate_recording` builds one with MNE with known sources (alpha, mu, eye blinks, muscle). We "
           "keep it short and use FastICA so that this runs in seconds; ICLabel was trained on extended "
           "infomax, which the plugin's benchmark uses (minutes)."),
    ("code", "import warnings\nraw, sources = se.simulate_recording(duration=20, seed=0)\n"
             "with warnings.catch_warnings():\n    warnings.simplefilter('ignore')   # mne-icalabel warns that "
             "ICLabel was trained on infomax\n"
             "    prepared, ica = se.fit_ica(raw, n_components=8, method='fastica', max_iter='auto')\n"
             "    Ric = se.explain_iclabel(prepared, ica)\n"
             "found = se.match_components(ica, sources)   # each known source's component, by its scalp pattern\n"
             "for name, (c, r) in found.items():\n"
             "    print(f'{name:10s} component {c} (pattern r = {r:.3f}): ICLabel says '\n"
             "          f'{Ric.predicted_class.values[c]}')"),
    ("md", "`explain_iclabel` returns one relevance variable per input (`topomap`, `psd`, `autocorrelation`), "
           "and per component the map + PSD + autocorrelation relevance + `absorbed` equals the explained "
           "score (the class's logit). `R.share` says what part of that score each input carries."),
    ("code", "blink = found['eye blink'][0]\n"
             "total = sum(float(Ric[v].sel(component=blink).sum()) for v in ('topomap', 'psd', 'autocorrelation'))\n"
             "print('relevance', round(total, 4), '+ absorbed', round(float(Ric.absorbed.sel(component=blink)), 4), "
             "'= score', round(float(Ric.prediction.sel(component=blink)), 4))\n"
             "picked = [c for c, _ in found.values()]\n"
             "shares = Ric.share.sel(component=picked).to_pandas()\n"
             "shares['absorbed'] = (Ric.absorbed / Ric.prediction).sel(component=picked).values\n"
             "shares.index = [f'{name} (component {c})' for name, (c, _) in found.items()]\n"
             "shares.round(2)   # each row adds up to 1: the explained score, split by input"),
    ("code", "fig = se.plot_iclabel(Ric, component=blink)"),
    ("md", "## Save\nThe relevance is an ordinary labelled array: netCDF keeps the channel names, positions, "
           "times, conditions and the units in its attributes."),
    ("code", "import os, tempfile, xarray as xr\npath = os.path.join(tempfile.mkdtemp(), 'finger_relevance.nc')\n"
             "R.to_netcdf(path)\nback = xr.open_dataarray(path)\n"
             "print(list(back.channel.values[:5]), back.time.values[:3], back.attrs['input_units'])\n"
             "back.relevance.check()"),
]


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HERE))
    from make_notebooks import build  # one notebook writer for all tutorials

    build(EEG, HERE / "eeg_finger_movements.ipynb")
