"""SpRAy and ClArC on a planted video shortcut: a logo in half of one class's clips.

Run: ``MPLBACKEND=Agg .venv/bin/python benchmarks/bench_spray_video.py [--save-weights]`` (about 3 minutes,
one thread). Writes ``benchmarks/results/spray_video.json``, ``benchmarks/results/spray_video.png`` (the
SpRAy figure) and ``benchmarks/results/spray_video_still.png`` (SpRAy relative to the camera on the still logo,
seed 0) and prints tables; ``--save-weights`` also writes the animated-logo model as the video plugin's
shipped ``weights/motion_cnn_logo.{npz,json}`` (with its sha256), which the plugin's tests load.

* data: the video plugin's generated actions (updown, sideways, wave; 64x64 px, 24 frames, 12 fps, encoded
  by libx264 through PyAV, read back as 16-px motion-vector blocks): 40 clips per action for training
  (seed 100), 40 per action held out (seed 200).
* case "animated" (the shipped model): a 16 x 16 px logo in the top-left corner whose content scrolls 3 px
  per frame to the left (``plant_logo``: its block holds dx = -3, dy = 0 on every P-frame, as libx264
  encodes ``draw_logo``) in half of the "sideways" clips, train and test.
* case "still": an opaque still 32 x 32 px logo (2 x 2 blocks forced to dx = dy = 0) in half of the
  "sideways" clips, on the same actions filmed by a camera panning 1 px per frame
  (``make_panning_dataset``); case "still-no-pan": the same logo on the clips without the pan.
* model: the plugin's MotionCNN, trained 40 epochs (Adam, seed 0).
* SpRAy on the LRP relevance (the plugin's default preset; for the still logo also epsilon-plus-box with
  zB bounds -8..8 px, under which a zero input can get relevance) of the 40 held-out "sideways" clips,
  pooled over frames (4 x 4 block maps), 5 neighbours; cluster precision / recall against the known logo
  set (clusters whose majority has the logo), with k from the eigengap and with k = 2.
* ClArC in ``features.1`` (the first convolution's ReLU output, 8 x 24 x 4 x 4): the direction from the
  training "sideways" clips with and without the logo; accuracy on clean held-out clips and on held-out
  clips of the two other classes with the logo, and the logo blocks' share of |relevance| on those, before
  and after P-ClArC and A-ClArC (10 epochs of the layers after ``features.1``); also P-ClArC in ``features.3``
  (the second convolution's ReLU).
* SpRAy at a hidden layer (every case): LRP relevance at ``features.1`` (the first convolution's output,
  where a still logo's blocks carry the bias and their moving neighbours' response) and at ``features.3``
  (``sciexplain_video.shortcut.explain_at_layer``), summed over frames, with the channels summed (4 x 4
  maps, the input's layout) or kept (8 x 4 x 4); the same SpRAy settings and scores. Each row also gives
  the scores of a random assignment with the same cluster sizes (the logo set permuted, 2000 draws): the
  majority rule scores more clusters better by chance.
* relative to a reference (the "still" case, ``sciexplain_video.reference``): SpRAy with the same settings on
  integrated gradients (32 steps) from the mean training field (chosen on seed 0, then run unchanged on seeds 1
  and 2), from each clip's camera motion and from zero; scores also against the logo clips whose logo raises the
  "sideways" logit (the model run on the same clip with and without it), and the accuracies split by the camera's
  pan axis. P-ClArC relative to the camera (``CameraPClArC``): directions from the clusters the same SpRAy marks
  on the 40 training "sideways" clips (``departure_directions``, k from the eigengap; k = 2 as a second row).

``--seed N`` reruns a case with other seeds (train data 100 + N, held-out 200 + N, logo clips, model);
results go under ``<case>_seed<N>`` in the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


HIDDEN = {"features.1, channels summed": ("features.1", ["channel", "frame"]),
          "features.1, channels kept": ("features.1", ["frame"]),
          "features.3, channels summed": ("features.3", ["channel", "frame"])}


def _null(labels: np.ndarray, truth: np.ndarray, draws: int = 2000) -> tuple[float, float, float]:
    """Mean precision, recall of the majority rule on ``labels`` with ``truth`` permuted; share of draws with
    both >= 0.8."""
    rng = np.random.default_rng(0)
    pr = np.array([_precision_recall(labels, rng.permutation(truth))[1:] for _ in range(draws)])
    return float(pr[:, 0].mean()), float(pr[:, 1].mean()), float(np.mean((pr >= 0.8).all(axis=1)))


def _precision_recall(labels: np.ndarray, truth: np.ndarray) -> tuple[list[int], float, float]:
    """Clusters whose majority carries the logo; precision and recall of their union against ``truth``."""
    k = int(labels.max()) + 1
    logo_clusters = [c for c in range(k) if truth[labels == c].mean() > 0.5]
    found = np.isin(labels, logo_clusters)
    tp = float((found & truth).sum())
    return logo_clusters, tp / max(float(found.sum()), 1.0), tp / max(float(truth.sum()), 1.0)


CASES = {
    "animated": {"box": (0, 0, 16, 16), "motion": (-3.0, 0.0), "pan": False,
                 "presets": {"epsilon-plus (default)": {}}},
    "still": {"box": (0, 0, 32, 32), "motion": (0.0, 0.0), "pan": True,
              "presets": {"epsilon-plus (default)": {},
                          "epsilon-plus-box": {"preset": "epsilon-plus-box", "bounds": (-8.0, 8.0)}}},
    "still-no-pan": {"box": (0, 0, 32, 32), "motion": (0.0, 0.0), "pan": False,
                     "presets": {"epsilon-plus (default)": {}}},
}


REFERENCES = ("training mean", "camera", "zero")  # the first is the pre-registered one (chosen on seed 0)


def _pan_axis(x: torch.Tensor) -> np.ndarray:
    """"x" or "y" per clip: the axis along which the camera (the per-frame median motion) moved most."""
    from sciexplain_video.reference import camera_motion

    cam = camera_motion(x)[:, :, :, 0, 0].abs().sum(2).numpy()
    return np.where(cam[:, 0] >= cam[:, 1], "x", "y")


def _spray_figure(ds, box, block: int, truth: np.ndarray, title: str, path: Path,
                  marks: tuple[np.ndarray, str] | None = None) -> None:
    """The SpRAy figure (``sx.plot_spray``, prototypes with the logo box dashed), the logo clips ringed and
    optionally a subset of them crossed (``marks``: mask, legend label)."""
    import sciexplain as sx
    import sciexplain_video as sv
    from sciexplain.result import save_figure

    fig = sx.plot_spray(ds, sv.draw_logo_prototype(box, block), truth=truth)
    ax = fig.axes[1]  # the embedding
    ax.collections[-1].set_label("with logo (ring)")
    if marks is not None:
        mask, label = marks
        emb = np.asarray(ds["embedding"].values)
        ax.scatter(emb[mask, 0], emb[mask, 1], s=22, marker="x", color="k", linewidths=0.7, label=label)
    ax.legend(fontsize=7, frameon=False, loc="best", markerscale=1.5)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))  # the spectral embedding's long tick labels overlap otherwise
    fig.axes[-1].set_ylabel("relevance (logit), summed over frames,\nmean over the cluster's clips")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=80)


def _reference_rows(model, Fl, y, logo_tr, Ft, Ftl, yt, logo_te, box, motion, seed: int,
                    figure: Path | None = None) -> dict:
    """SpRAy on integrated gradients from a reference field, and P-ClArC relative to the camera; ``figure``:
    where to write the SpRAy figure of the camera reference."""
    import sciexplain as sx
    import sciexplain_video as sv
    from sciexplain_video.reference import (CameraPClArC, departure_directions, explain_from_reference,
                                            logit_effect, mean_reference)

    logo_class = sv.ACTIONS.index(sv.LOGO_CLASS)
    ys, xs = sv.logo_blocks(Ft[0], box)
    x_train = sv.stack_fields(Fl)
    refs = {"training mean": mean_reference(x_train), "camera": "camera", "zero": "zero"}
    cls = np.flatnonzero(yt == logo_class)
    truth = logo_te[cls]
    F_cls = [Ftl[i] for i in cls]
    # the pan axis decides whether the model reads the logo as "sideways"
    x_cls, x_cls0 = sv.stack_fields(F_cls), sv.stack_fields([Ft[i] for i in cls])
    axis = _pan_axis(x_cls0)
    effect = logit_effect(model, x_cls, x_cls0, logo_class)
    used = truth & (effect > 0)  # logo clips whose logo raises the class logit (paired clips)
    spray = {}
    for name in REFERENCES:
        R = explain_from_reference(model, F_cls, logo_class, refs[name])
        R.relevance.check()
        ds = sx.spray(R, pool="frame", n_neighbors=5)
        clusters, prec, rec = _precision_recall(ds.cluster.values, truth)
        _, prec2, rec2 = _precision_recall(sx.spray(R, 2, pool="frame", n_neighbors=5).cluster.values, truth)
        nullp, nullr, nullhit = _null(ds.cluster.values, truth)
        _, prec_used, rec_used = _precision_recall(ds.cluster.values, used)
        logo_R = R.isel(block_y=ys, block_x=xs).sum(("frame", "block_y", "block_x")).values
        spray[name] = {"n_clusters_eigengap": int(ds.attrs["n_clusters"]),
                       "cluster_sizes": ds.cluster_size.values.tolist(), "logo_clusters": clusters,
                       "precision": round(prec, 3), "recall": round(rec, 3),
                       "precision_k2": round(prec2, 3), "recall_k2": round(rec2, 3),
                       "random_assignment_precision": round(nullp, 3), "random_assignment_recall": round(nullr, 3),
                       "random_assignment_share_both_0.8": round(nullhit, 4),
                       "clips_whose_logo_raises_the_logit": int(used.sum()),
                       "precision_against_those": round(prec_used, 3), "recall_against_those": round(rec_used, 3),
                       "logo_blocks_relevance_with_logo": round(float(logo_R[truth].mean()), 3),
                       "logo_blocks_relevance_without_logo": round(float(logo_R[~truth].mean()), 3),
                       "max_abs_integration_error": round(float(np.abs(R.integration_error.values).max()), 4)}
        if name == "camera" and figure is not None:
            _spray_figure(ds, box, Ft[0].block, truth,
                          f"SpRAy on {len(cls)} held-out '{sv.LOGO_CLASS}' clips under a panning camera, "
                          f"{int(truth.sum())} with a still logo (dashed box, rings); integrated gradients from "
                          "each clip's camera motion, relevance summed over frames", figure,
                          (truth & (axis == "x"), "with logo, horizontal pan (x)"))
    other = yt != logo_class
    x_other, x_other_logo = sv.stack_fields([f for f, o in zip(Ft, other) if o]), \
        sv.stack_fields([sv.plant_logo(f, box, motion) for f, o in zip(Ft, other) if o])
    axis_other = _pan_axis(x_other)
    by_axis = {}
    for a in ("x", "y"):
        m = axis_other == a
        with torch.no_grad():
            by_axis[a] = {"other_clips": int(m.sum()),
                          "accuracy_other_classes_without_logo": round(float(np.mean(
                              model(x_other[torch.from_numpy(m)]).argmax(1).numpy() == yt[other][m])), 4),
                          "accuracy_other_classes_with_logo": round(float(np.mean(
                              model(x_other_logo[torch.from_numpy(m)]).argmax(1).numpy() == yt[other][m])), 4),
                          "logo_clips_of_the_class": int((truth & (axis == a)).sum()),
                          "mean_logo_effect_on_class_logit": round(float(effect[truth & (axis == a)].mean()), 3)
                          if (truth & (axis == a)).any() else None}
    # ClArC: the clusters marked from SpRAy (pre-registered reference) on the training clips of the class
    cls_tr = np.flatnonzero(y == logo_class)
    x_tr_cls = x_train[torch.from_numpy(cls_tr)]
    R_tr = explain_from_reference(model, x_tr_cls, logo_class, refs[REFERENCES[0]])
    ds_tr = sx.spray(R_tr, pool="frame", n_neighbors=5)
    marked_clusters, mp, mr = _precision_recall(ds_tr.cluster.values, logo_tr[cls_tr])
    marked = np.isin(ds_tr.cluster.values, marked_clusters)
    artifact = departure_directions(x_tr_cls[torch.from_numpy(marked)], x_tr_cls[torch.from_numpy(~marked)])
    corrected = CameraPClArC(model, artifact)
    artifact2 = departure_directions(x_tr_cls[torch.from_numpy(marked)], x_tr_cls[torch.from_numpy(~marked)], k=2)
    maps = artifact.maps()
    energy = float((maps[:, :, ys, xs] ** 2).sum() / (maps ** 2).sum())
    x_clean = sv.stack_fields(Ft)
    clarc = {}
    for name, m in (("original", model), ("camera P-ClArC", corrected),
                    ("camera P-ClArC, k = 2 (not pre-registered)", CameraPClArC(model, artifact2))):
        with torch.no_grad():
            row = {"accuracy_clean": round(float(np.mean(m(x_clean).argmax(1).numpy() == yt)), 4),
                   "accuracy_other_classes_with_logo": round(float(np.mean(
                       m(x_other_logo).argmax(1).numpy() == yt[other])), 4),
                   "accuracy_logo_class_as_planted": round(float(np.mean(
                       m(x_cls).argmax(1).numpy() == logo_class)), 4)}
            for a in ("x", "y"):
                sel = torch.from_numpy(axis_other == a)
                row[f"accuracy_other_classes_with_logo_pan_{a}"] = round(float(np.mean(
                    m(x_other_logo[sel]).argmax(1).numpy() == yt[other][axis_other == a])), 4)
        Rm = explain_from_reference(m, x_other_logo, logo_class, "camera")
        share = (np.abs(Rm.isel(block_y=ys, block_x=xs)).sum(("frame", "block_y", "block_x"))
                 / np.abs(Rm).sum(("frame", "block_y", "block_x"))).values
        row["logo_share_of_abs_relevance_camera_reference_logo_class_logit"] = round(float(share.mean()), 4)
        clarc[name] = row
    return {"spray_by_reference": spray, "pre_registered": REFERENCES[0], "steps": 32,
            "by_pan_axis": by_axis,
            "clarc": {"marked_from": f"SpRAy on the {len(cls_tr)} training '{sv.LOGO_CLASS}' clips, integrated "
                                     f"gradients from the {REFERENCES[0]}",
                      "marked_clusters": marked_clusters, "marked_precision": round(mp, 3),
                      "marked_recall": round(mr, 3), "k": artifact.k,
                      "eigenvalues": np.round(artifact.eigenvalues[:8], 4).tolist(),
                      "artifact_energy_on_logo_blocks": round(energy, 3), "models": clarc}}


def case_data(case: str, seed: int, per_class: int = 40, test_per_class: int = 40, axis: str | None = None):
    """The case's clips for one seed: train and held-out fields, labels, logo sets, the fields with the logo
    planted, and the seconds taken. ``axis``: the camera's pan axis for the panning cases (None: the seed's)."""
    import sciexplain_video as sv

    cfg = CASES[case]
    box, motion = cfg["box"], cfg["motion"]
    logo_class = sv.ACTIONS.index(sv.LOGO_CLASS)
    if cfg["pan"]:
        def make(path, n, seed):
            return sv.make_panning_dataset(path, n, seed=seed, axis=axis)
    else:
        make = sv.make_dataset
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train = make(Path(tmp) / "train", per_class, seed=100 + seed)
        test = make(Path(tmp) / "test", test_per_class, seed=200 + seed)
        F = [sv.read_motion_vectors(p) for p, _ in train]
        Ft = [sv.read_motion_vectors(p) for p, _ in test]
    data_s = time.perf_counter() - t0
    y = np.array([t.label for _, t in train])
    yt = np.array([t.label for _, t in test])
    logo_tr = sv.choose_logo_clips(y, logo_class, 0.5, seed=seed)
    logo_te = sv.choose_logo_clips(yt, logo_class, 0.5, seed=seed + 1)
    Fl = [sv.plant_logo(f, box, motion) if m else f for f, m in zip(F, logo_tr)]
    Ftl = [sv.plant_logo(f, box, motion) if m else f for f, m in zip(Ft, logo_te)]
    return F, Ft, y, yt, logo_tr, logo_te, Fl, Ftl, data_s


def run(case: str, per_class: int = 40, test_per_class: int = 40, epochs: int = 40, seed: int = 0,
        save_weights: bool = False, figure: Path | None = None, reference_figure: Path | None = None) -> dict:
    """Train the case's model, run SpRAy (input and hidden-layer relevance) and ClArC; the result record.

    ``figure``: where to write the SpRAy figure of the input LRP relevance; ``reference_figure`` (cases with a
    camera pan): that of the relevance relative to the camera."""
    import sciexplain as sx
    import sciexplain_video as sv

    cfg = CASES[case]
    box, motion = cfg["box"], cfg["motion"]
    logo_class = sv.ACTIONS.index(sv.LOGO_CLASS)
    F, Ft, y, yt, logo_tr, logo_te, Fl, Ftl, data_s = case_data(case, seed, per_class, test_per_class)

    t0 = time.perf_counter()
    model = sv.train_cnn(Fl, y, seed=seed, epochs=epochs)
    train_s = time.perf_counter() - t0
    other = yt != logo_class
    F_other_logo = [sv.plant_logo(f, box, motion) for f, o in zip(Ft, other) if o]
    acc = {"train": sv.accuracy(model, Fl, y), "test_clean": sv.accuracy(model, Ft, yt),
           "other_classes_without_logo": sv.accuracy(model, [f for f, o in zip(Ft, other) if o], yt[other]),
           "other_classes_with_logo": sv.accuracy(model, F_other_logo, yt[other])}
    info = {"train_clips": len(F), "test_clips": len(Ft), "train_seed": 100 + seed, "test_seed": 200 + seed,
            "seed": seed, "epochs": epochs, "logo_box": list(box), "logo_motion": list(motion),
            "logo_class": sv.LOGO_CLASS, "logo_train_clips": int(logo_tr.sum()),
            "clip": "64x64 px, 24 frames, 12 fps, libx264 bf=0 g=12 refs=1" + (", camera pan 1 px/frame"
                                                                             if cfg["pan"] else ""),
            "train_accuracy": acc["train"], "test_accuracy": acc["test_clean"],
            "accuracy_other_classes_with_logo": acc["other_classes_with_logo"],
            "script": "benchmarks/bench_spray_video.py --save-weights"}
    if save_weights:
        sv.save_logo_model(model, info, still=case == "still")

    # SpRAy over the held-out clips of the logo class, half of them with the logo
    cls = np.flatnonzero(yt == logo_class)
    truth = logo_te[cls]
    F_cls = [Ftl[i] for i in cls]
    ys, xs = sv.logo_blocks(F_cls[0], box)
    spray = {}
    first = None
    for name, kwargs in cfg["presets"].items():
        R = sv.explain_motion(model, F_cls, logo_class, **kwargs)
        R.relevance.check()
        t0 = time.perf_counter()
        ds = sx.spray(R, pool="frame", n_neighbors=5, embedding="tsne")
        sec = time.perf_counter() - t0
        clusters, prec, rec = _precision_recall(ds.cluster.values, truth)
        _, prec2, rec2 = _precision_recall(sx.spray(R, 2, pool="frame", n_neighbors=5).cluster.values, truth)
        share = (np.abs(R.isel(block_y=ys, block_x=xs)).sum(("frame", "block_y", "block_x"))
                 / np.abs(R).sum(("frame", "block_y", "block_x"))).values
        spray[name] = {"n_clusters_eigengap": int(ds.attrs["n_clusters"]),
                       "eigenvalues": np.round(ds.eigenvalues.values, 4).tolist(),
                       "cluster_sizes": ds.cluster_size.values.tolist(), "logo_clusters": clusters,
                       "precision": round(prec, 3), "recall": round(rec, 3),
                       "precision_k2": round(prec2, 3), "recall_k2": round(rec2, 3), "seconds": round(sec, 2),
                       "logo_share_with_logo": round(float(share[truth].mean()), 4),
                       "logo_share_without_logo": round(float(share[~truth].mean()), 4),
                       "_labels": ds.cluster.values.tolist()}
        first = first or ds
    hidden = {}
    from sciexplain_video.shortcut import explain_at_layer
    for name, (layer_name, pool) in HIDDEN.items():
        R = explain_at_layer(model, F_cls, logo_class, layer_name)
        R.relevance.check()
        ds = sx.spray(R, pool=pool, n_neighbors=5)
        clusters, prec, rec = _precision_recall(ds.cluster.values, truth)
        _, prec2, rec2 = _precision_recall(sx.spray(R, 2, pool=pool, n_neighbors=5).cluster.values, truth)
        nullp, nullr, nullhit = _null(ds.cluster.values, truth)
        dims = ("channel", "frame", "block_y", "block_x")
        share = (np.abs(R.isel(block_y=ys, block_x=xs)).sum(dims) / np.abs(R).sum(dims)).values
        hidden[name] = {"layer": layer_name, "pool": pool, "n_clusters_eigengap": int(ds.attrs["n_clusters"]),
                        "cluster_sizes": ds.cluster_size.values.tolist(), "logo_clusters": clusters,
                        "precision": round(prec, 3), "recall": round(rec, 3),
                        "precision_k2": round(prec2, 3), "recall_k2": round(rec2, 3),
                        "random_assignment_precision": round(nullp, 3), "random_assignment_recall": round(nullr, 3),
                        "random_assignment_share_both_0.8": round(nullhit, 4),
                        "logo_share_with_logo": round(float(share[truth].mean()), 4),
                        "logo_share_without_logo": round(float(share[~truth].mean()), 4)}
    for name in spray:
        nullp, nullr, nullhit = _null(np.asarray(spray[name].pop("_labels")), truth)
        spray[name].update({"random_assignment_precision": round(nullp, 3), "random_assignment_recall": round(nullr, 3),
                            "random_assignment_share_both_0.8": round(nullhit, 4)})
    if figure is not None:
        _spray_figure(first, box, F[0].block, truth, "SpRAy on 40 held-out 'sideways' clips, 20 with a logo "
                      "(dashed box, rings); LRP epsilon-plus, relevance summed over frames", figure)

    # ClArC
    layer = sv.LOGO_LAYER
    x_tr = sv.stack_fields(Fl)
    cls_tr = y == logo_class
    direction = sx.artifact_direction(model, layer, x_tr[torch.from_numpy(cls_tr & logo_tr)],
                                      x_tr[torch.from_numpy(cls_tr & ~logo_tr)])
    p = sx.PClArC(model, layer, direction)
    t0 = time.perf_counter()
    a = sx.AClArC(model, layer, direction).fit(x_tr, y, epochs=10, lr=1e-3, batch_size=16, seed=seed)
    aclarc_s = time.perf_counter() - t0
    one = sv.logo_mask(Ft[0], box)
    mask = np.broadcast_to(one[None], (2, *one.shape))
    x_clean, x_logo = sv.stack_fields(Ft), sv.stack_fields(F_other_logo)
    x_cls = sv.stack_fields(F_cls)
    direction3 = sx.artifact_direction(model, "features.3", x_tr[torch.from_numpy(cls_tr & logo_tr)],
                                       x_tr[torch.from_numpy(cls_tr & ~logo_tr)])
    models = {"original": model, "P-ClArC": p, "A-ClArC": a, "P-ClArC features.3": sx.PClArC(model, "features.3",
                                                                                             direction3)}
    report = sx.clarc_report(models, x_clean, yt, x_logo, yt[other], mask)
    clarc = {name: {v: round(float(report[v].sel(model=name)), 4) for v in report.data_vars if report[v].ndim == 1}
             for name in report.model.values.tolist()}
    for name, m in models.items():
        with torch.no_grad():
            clarc[name]["logo_predicted_as_logo_class"] = round(float(np.mean(
                m(x_logo).argmax(1).numpy() == logo_class)), 4)
            clarc[name]["accuracy_logo_class_as_planted"] = round(float(np.mean(
                m(x_cls).argmax(1).numpy() == logo_class)), 4)
    reference = _reference_rows(model, Fl, y, logo_tr, Ft, Ftl, yt, logo_te, box, motion, seed,
                                reference_figure) if cfg["pan"] else None
    return {
        "reference": reference,
        "data_seconds": round(data_s, 1), "train_seconds": round(train_s, 1), "model": info,
        "accuracy": {k: round(v, 4) for k, v in acc.items()},
        "spray": {"samples": int(len(cls)), "with_logo": int(truth.sum()), "pool": "frame", "n_neighbors": 5,
                  "by_preset": spray, "hidden_layer": hidden},
        "direction": {"layer": layer, "artifact_value": round(direction.artifact_value, 4),
                      "clean_value": round(direction.clean_value, 4)},
        "clarc": clarc, "clarc_preset": "epsilon-plus (the plugin's default)",
        "aclarc": {"epochs": 10, "lr": 1e-3, "batch_size": 16, "fit_seconds": round(aclarc_s, 1)},
    }


def _print(case: str, res: dict) -> None:
    acc = res["accuracy"]
    print(f"[{case}] MotionCNN, logo in {res['model']['logo_train_clips']} of the 40 training "
          f"'{res['model']['logo_class']}' clips: train {acc['train']:.3f}, held-out clean {acc['test_clean']:.3f}; "
          f"other classes without / with the logo {acc['other_classes_without_logo']:.3f} / "
          f"{acc['other_classes_with_logo']:.3f}")
    s = res["spray"]
    for name, r in s["by_preset"].items():
        print(f"  SpRAy ({name}) on {s['samples']} held-out clips ({s['with_logo']} with the logo): "
              f"k = {r['n_clusters_eigengap']} (eigengap), logo clusters {r['logo_clusters']}: precision "
              f"{r['precision']}, recall {r['recall']}; k = 2: precision {r['precision_k2']}, recall "
              f"{r['recall_k2']}; logo share of |R| with / without logo {r['logo_share_with_logo']:.3f} / "
              f"{r['logo_share_without_logo']:.3f}")
    for name, r in s["hidden_layer"].items():
        print(f"  SpRAy at {name}: k = {r['n_clusters_eigengap']} (eigengap): precision {r['precision']}, recall "
              f"{r['recall']} (random assignment {r['random_assignment_precision']} / "
              f"{r['random_assignment_recall']}); k = 2: {r['precision_k2']} / {r['recall_k2']}; logo share of |R| "
              f"with / without logo {r['logo_share_with_logo']:.3f} / {r['logo_share_without_logo']:.3f}")
    ref = res.get("reference")
    if ref:
        for name, r in ref["spray_by_reference"].items():
            print(f"  SpRAy on integrated gradients from the {name}{' (pre-registered)' if name == ref['pre_registered'] else ''}"
                  f": k = {r['n_clusters_eigengap']} (eigengap): precision {r['precision']}, recall {r['recall']} "
                  f"(random assignment {r['random_assignment_precision']} / {r['random_assignment_recall']}); k = 2: "
                  f"{r['precision_k2']} / {r['recall_k2']}; against the {r['clips_whose_logo_raises_the_logit']} clips whose logo "
                  f"raises the logit {r['precision_against_those']} / {r['recall_against_those']}; relevance on the logo blocks with / without logo "
                  f"{r['logo_blocks_relevance_with_logo']:.2f} / {r['logo_blocks_relevance_without_logo']:.2f}")
        for a, r in ref["by_pan_axis"].items():
            print(f"  pan along {a}: other classes without / with the logo {r['accuracy_other_classes_without_logo']:.3f} / "
                  f"{r['accuracy_other_classes_with_logo']:.3f}; logo's effect on the class logit "
                  f"{r['mean_logo_effect_on_class_logit']} ({r['logo_clips_of_the_class']} clips)")
        c = ref["clarc"]
        print(f"  camera P-ClArC: marked clusters precision / recall {c['marked_precision']} / {c['marked_recall']}, "
              f"k = {c['k']}, artifact energy on the logo blocks {c['artifact_energy_on_logo_blocks']}")
        for name, r in c["models"].items():
            print(f"    {name:<43} clean {r['accuracy_clean']:.3f}, other classes with the logo "
                  f"{r['accuracy_other_classes_with_logo']:.3f} (pan x {r['accuracy_other_classes_with_logo_pan_x']:.3f}, "
                  f"pan y {r['accuracy_other_classes_with_logo_pan_y']:.3f})")
    print(f"  {'model':<19} {'acc clean':>10} {'acc logo, others':>17} {'logo share of |R|':>18} "
          f"{'-> sideways':>12}")
    for name, r in res["clarc"].items():
        print(f"  {name:<19} {r['accuracy_clean']:>10.3f} {r['accuracy_artifact']:>17.3f} "
              f"{r['artifact_share']:>18.3f} {r['logo_predicted_as_logo_class']:>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="all", choices=[*CASES, "all"])
    parser.add_argument("--save-weights", action="store_true",
                        help="write the animated and the still case's models as the plugin's shipped weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "machine": platform.machine(), "command": "MPLBACKEND=Agg python benchmarks/bench_spray_video.py"}
    path = RESULTS / "spray_video.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out.update(meta)
    for case in (list(CASES) if args.case == "all" else [args.case]):
        res = run(case, seed=args.seed, save_weights=args.save_weights and case in ("animated", "still")
                  and args.seed == 0, figure=RESULTS / "spray_video.png" if case == "animated" and args.seed == 0 else None,
                  reference_figure=RESULTS / "spray_video_still.png" if case == "still" and args.seed == 0 else None)
        key = case if args.seed == 0 else f"{case}_seed{args.seed}"
        out[key] = res
        _print(case, res)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
