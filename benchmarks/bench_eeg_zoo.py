"""braindecode's networks on the synthetic ground truth: accuracy, localisation and faithfulness per LRP preset.

Issue 19, EEG part. Each network of ``sciexplain_eeg.zoo.ZOO`` (ShallowFBCSPNet, Deep4Net, EEGNetv4,
EEGConformer, ATCNet; braindecode 0.8.1, sized for 1 s epochs at 100 Hz) is trained with
``sciexplain_eeg.fit`` (seed 0, AdamW, early stopping on a stratified validation split) on 200 epochs of
``make_synthetic_epochs(seed=0)`` (class-specific deflection at C4 / C3, 0.3-0.5 s) and scored on 400 fresh
epochs (seed 1000). On the first 200 of them, for the predicted class:

* localisation, as ``benchmarks``' plugin acceptance measures it for the plugin's own networks
  (``sciexplain_eeg.ground_truth_scores``; correctly classified epochs): source electrode among the top 3
  (top 1) electrodes by relevance summed over time, share of the positive relevance in the true window;
* faithfulness, as ``bench_eeg_faithfulness.py`` measures it: blocks of 1 channel x 10 samples replaced by
  the epoch's channel mean most relevant first / least relevant first, AOPC of both and ABPC with 95%
  percentile bootstrap intervals over epochs (``sx.evaluate.compare``, ties in random order, 2 seeds).

LRP presets (``epsilon``, ``epsilon-plus``, ``alpha2-beta1``, ``deep-taylor``, ``attnlrp``, ``cp-lrp``)
against gradient x input, sensitivity and a random order. Each network's default preset is the LRP
preset with the highest ABPC (``sciexplain_eeg.zoo.ZOO[name].abpc_preset`` is set from this; the test
``plugins/eeg/tests/test_zoo.py`` checks they agree with the stored results). The registry's
``default_preset`` follows the conservation table (``benchmarks/bench_conservation.py``) instead.

With ``--iclabel``: ICLabelNet (mne-icalabel's weights) on ``simulate_recording(duration=60)`` (known alpha,
mu, eye-blink and muscle sources), extended infomax ICA with 15 components, each known source's component
found by its scalp pattern, explained by ``explain_iclabel`` (the class's logit): predicted class and each
input's share, figures ``benchmarks/results/eeg_zoo_iclabel_<source>.png``.

With ``--data finger``: each network sized for FingerMovements (``ZOO[name].finger_params``: 28 channels x
28 samples at 100 Hz) is trained with ``fit`` on the 316 training trials, seeds 0, 1, 2, and scored on the 100
test trials (accuracy per seed, their mean with a 95% bootstrap interval over trials, the seed-0 network's
exact binomial interval and p-value against chance = the majority class's share); faithfulness as above on
the seed-0 network over all 100 test trials with blocks of 1 channel x 4 samples (no ground truth on real
data). Results in ``benchmarks/results/eeg_zoo_finger.json``.

Usage: python benchmarks/bench_eeg_zoo.py [--models ShallowFBCSPNet,...] [--steps 40] [--seeds 2]
                                          [--write-weights]
       python benchmarks/bench_eeg_zoo.py --data finger [--models ...] [--fit-seeds 3]
       python benchmarks/bench_eeg_zoo.py --iclabel [--ica-method infomax|fastica]
Results: benchmarks/results/eeg_zoo.json (one entry per network; networks not run keep their last entry),
eeg_zoo_finger.json (the same for --data finger), eeg_zoo_iclabel.json / .nc / _*.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import sciexplain as sx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "eeg_zoo.json"
FINGER = HERE / "results" / "eeg_zoo_finger.json"
WEIGHTS = HERE.parent / "plugins" / "eeg" / "sciexplain_eeg" / "weights"

PRESETS = ("epsilon", "epsilon-plus", "alpha2-beta1", "deep-taylor", "attnlrp", "cp-lrp")
FIT = {"max_epochs": 100, "patience": 10}


def faithfulness(net, epochs, *, truth=None, block: int, steps: int, seeds: list[int]) -> tuple[dict, dict]:
    """Rows per method (localisation if ``truth`` is given, AOPC MoRF / LeRF, ABPC with 95% CI, absorbed
    share) and the presets that failed, explaining the predicted class of ``epochs``."""
    from sciexplain_eeg import explain_epochs, ground_truth_scores
    from sciexplain_eeg.explain import epochs_to_tensor
    from sciexplain_eeg.perturbation import block_removal

    x, _ = epochs_to_tensor(epochs, net)
    with torch.no_grad():
        target = net(x).argmax(1).numpy()
    explanations, rows, failed = {}, {}, {}
    for preset in PRESETS:
        try:
            R = explain_epochs(net, epochs, target, preset=preset)
            # float32 rounding scales with the terms that cancel: where biases absorb much more than a small
            # logit (networks near chance), allow 1e-5 of |f(x)| + |absorbed|, as the core's walk does (1e-3)
            scale = float(np.abs(R.prediction.values).max() + np.abs(R.absorbed.values).max())
            R.relevance.check(rtol=1e-4, atol=1e-5 * max(scale, 1.0))
        except Exception as exc:  # a preset that does not apply to the network is reported, not hidden
            failed[f"LRP {preset}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        explanations[f"LRP {preset}"] = R
        share = R.absorbed.values / R.prediction.values
        rows[f"LRP {preset}"] = {"absorbed_share": float(np.mean(share)), "absorbed_median": float(np.median(share))}
    for label, method in (("gradient x input", "gradient_x_input"), ("sensitivity", "sensitivity")):
        explanations[label] = explain_epochs(net, epochs, target, method=method)
        rows[label] = {}
    if truth is not None:
        for label, R in explanations.items():
            rows[label].update(ground_truth_scores(R, truth))
    explanations["random order"] = None
    rows["random order"] = {}
    ds = sx.evaluate.compare(net, x, explanations, steps=steps, patch=(1, block), removal=block_removal("mean"),
                             seeds=seeds, target=target, n_boot=2000, ties="random")
    for i, method in enumerate(ds.method.values):
        for j, metric in enumerate(ds.metric.values):
            rows[str(method)][str(metric)] = [float(ds["estimate"][i, j]), float(ds["ci_low"][i, j]),
                                              float(ds["ci_high"][i, j])]
    return rows, failed


def study(name: str, *, steps: int, seeds: list[int], n_explain: int, write_weights: bool) -> dict:
    from sciexplain_eeg import fit, make_synthetic_epochs
    from sciexplain_eeg.training import evaluate
    from sciexplain_eeg.zoo import make_braindecode, save_zoo

    t0 = time.time()
    train, _ = make_synthetic_epochs(n_epochs=200, seed=0)
    test, truth = make_synthetic_epochs(n_epochs=400, seed=1000)
    net = make_braindecode(name, *train.get_data().shape[1:], sfreq=train.info["sfreq"])
    result = fit(net, train, seed=0, **FIT)
    accuracy = float(evaluate(net, test))
    t_fit = time.time() - t0
    if write_weights:
        WEIGHTS.mkdir(exist_ok=True)
        save_zoo(net, WEIGHTS / f"zoo_{name}.pt")
    rows, failed = faithfulness(net, test[:n_explain], truth=truth, block=10, steps=steps, seeds=seeds)
    lrp = {m: r["abpc"][0] for m, r in rows.items() if m.startswith("LRP ")}
    best = max(lrp, key=lambda m: (round(lrp[m], 6), m == "LRP epsilon"))
    return {"accuracy": accuracy, "val_accuracy": float(result.val_accuracy), "best_epoch": result.best_epoch,
            "epochs_trained": len(result.history["val_loss"]),
            "n_parameters": int(sum(p.numel() for p in net.parameters())),
            "params": {k: v for k, v in net.params.items()}, "default_preset": best.removeprefix("LRP "),
            "rows": rows, "failed": failed,
            "settings": f"train 200 (seed 0), test 400 (seed 1000), explained {n_explain}; fit {FIT}; "
                        f"blocks 1 x 10 samples, {steps} steps, seeds {seeds}; {time.time() - t0:.0f} s "
                        f"(fit {t_fit:.0f} s), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"}


def accuracy_summary(correct: np.ndarray, chance: float, *, n_boot: int = 10000) -> dict:
    """Accuracy of (seeds, trials) correctness: per seed, mean over seeds with a 95% bootstrap interval over
    test trials, the seed-0 model's exact binomial interval and p-value against chance, and the accuracy a
    model needs to beat chance at p < 0.05 on this many trials."""
    from scipy import stats

    n = correct.shape[1]
    rng = np.random.default_rng(0)
    boot = correct[:, rng.integers(0, n, size=(n_boot, n))].mean((0, 2))
    k0 = int(correct[0].sum())
    test0 = stats.binomtest(k0, n, p=chance, alternative="greater")  # one-sided: better than chance?
    ci0 = stats.binomtest(k0, n).proportion_ci(confidence_level=0.95, method="exact")  # two-sided
    needed = int(stats.binom.isf(0.05, n, chance)) + 1  # smallest k with P(X >= k) <= 0.05 under chance
    return {"per_seed": [float(c.mean()) for c in correct], "mean": float(correct.mean()),
            "mean_ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "seed0": k0 / n, "seed0_ci": [float(ci0.low), float(ci0.high)], "seed0_p_vs_chance": float(test0.pvalue),
            "chance": chance, "needed_for_p05": needed / n, "n_test": n}


def study_finger(name: str, *, steps: int, seeds: list[int], fit_seeds: list[int]) -> dict:
    """A registry network on FingerMovements: train on the 316 training trials (one network per seed in
    ``fit_seeds``), score the 100 test trials, and measure faithfulness on the first seed's network."""
    from sciexplain_eeg import fit, load_finger_movements
    from sciexplain_eeg.explain import epochs_to_tensor
    from sciexplain_eeg.training import evaluate
    from sciexplain_eeg.zoo import make_braindecode

    t0 = time.time()
    train, test = load_finger_movements("train"), load_finger_movements("test")
    n_channels, n_times = train.get_data().shape[1:]
    labels = np.unique(test.events[:, 2], return_inverse=True)[1]  # event codes ranked, as fit does
    chance = float(np.bincount(labels).max() / labels.size)
    correct, fits, first = [], [], None
    for seed in fit_seeds:
        net = make_braindecode(name, n_channels, n_times, sfreq=train.info["sfreq"], seed=seed, size="finger")
        result = fit(net, train, seed=seed, **FIT)
        x, _ = epochs_to_tensor(test, net)
        with torch.no_grad():
            hit = net(x).argmax(1).numpy() == labels
        assert abs(hit.mean() - evaluate(net, test)) < 1e-9  # the plugin's own scoring agrees
        correct.append(hit)
        fits.append({"seed": seed, "val_accuracy": float(result.val_accuracy), "best_epoch": result.best_epoch,
                     "epochs_trained": len(result.history["val_loss"])})
        first = net if first is None else first
    t_fit = time.time() - t0
    rows, failed = faithfulness(first, test, block=4, steps=steps, seeds=seeds)
    lrp = {m: r["abpc"][0] for m, r in rows.items() if m.startswith("LRP ")}
    best = max(lrp, key=lambda m: (round(lrp[m], 6), m == "LRP epsilon"))
    return {"accuracy": accuracy_summary(np.array(correct, dtype=float), chance), "fits": fits,
            "n_parameters": int(sum(p.numel() for p in first.parameters())), "params": dict(first.params),
            "best_preset": best.removeprefix("LRP "), "rows": rows, "failed": failed,
            "settings": f"train 316, test 100 (FingerMovements, 28 channels x 28 samples at 100 Hz); fit {FIT}, "
                        f"seeds {fit_seeds}; faithfulness of the seed-{fit_seeds[0]} network on the 100 test "
                        f"trials, blocks 1 x 4 samples, {steps} steps, seeds {seeds}; {time.time() - t0:.0f} s "
                        f"(fit {t_fit:.0f} s), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"}


def markdown_finger(saved: dict) -> str:
    """The summary table of the FingerMovements study and one faithfulness table per network."""
    from sciexplain_eeg.zoo import ZOO

    entries = {n: saved[n] for n in ZOO if n in saved}
    lines = ["| network | parameters | test accuracy, mean of 3 seeds (95% CI) | per seed | seed 0: exact 95% CI, "
             "p vs chance | ABPC: ABPC-chosen preset / best LRP / gradient x input / random |",
             "|---|---|---|---|---|---|"]
    for name, e in entries.items():
        a, r = e["accuracy"], e["rows"]
        default = f"LRP {ZOO[name].abpc_preset}"
        abpc = " / ".join(f"{r[m]['abpc'][0]:.2f}" if m in r else "n/a"
                          for m in (default, f"LRP {e['best_preset']}", "gradient x input", "random order"))
        lines.append(f"| {name} | {e['n_parameters']} | {a['mean']:.3f} [{a['mean_ci'][0]:.2f}, {a['mean_ci'][1]:.2f}]"
                     f" | {' / '.join(f'{v:.2f}' for v in a['per_seed'])} | {a['seed0']:.2f} [{a['seed0_ci'][0]:.2f}, "
                     f"{a['seed0_ci'][1]:.2f}], p = {a['seed0_p_vs_chance']:.2f} | {abpc} (`{ZOO[name].abpc_preset}`"
                     f" / `{e['best_preset']}`) |")
    parts = ["\n".join(lines)]
    for name, e in entries.items():
        rows = ["| method | AOPC MoRF | AOPC LeRF | ABPC (95% CI) | absorbed / f(x), median |", "|---|---|---|---|---|"]
        for m in sorted(e["rows"], key=lambda m: -e["rows"][m]["abpc"][0]):
            r = e["rows"][m]
            ab = r["abpc"]
            rows.append(f"| {m} | {r['aopc_morf'][0]:.3f} | {r['aopc_lerf'][0]:.3f} | {ab[0]:.3f} [{ab[1]:.3f}, "
                        f"{ab[2]:.3f}] | " + (f"{r['absorbed_median']:.3f} |" if "absorbed_median" in r else " |"))
        for m, why in e["failed"].items():
            rows.append(f"| {m} | not run: {why} | | | |")
        parts.append(f"#### {name} on FingerMovements (seed-0 network, test accuracy {e['accuracy']['seed0']:.2f})"
                     "\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def markdown(name: str, entry: dict) -> str:
    head = (f"#### {name}: test accuracy {entry['accuracy']:.3f}, {entry['n_parameters']} parameters, "
            f"default preset `{entry['default_preset']}`\n\n"
            "| method | top-3 hits | top-1 hits | window share | AOPC MoRF | AOPC LeRF | ABPC (95% CI) | absorbed / f(x) |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    order = sorted(entry["rows"], key=lambda m: -entry["rows"][m]["abpc"][0])
    for m in order:
        r = entry["rows"][m]
        loc = (f"{r['top_hits']:.3f} | {r['top1_hits']:.3f} | {r['window_share']:.3f}" if "top_hits" in r
               else " | | ")
        ab = r["abpc"]
        lines.append(f"| {m} | {loc} | {r['aopc_morf'][0]:.3f} | {r['aopc_lerf'][0]:.3f} | "
                     f"{ab[0]:.3f} [{ab[1]:.3f}, {ab[2]:.3f}] | "
                     + (f"{r['absorbed_share']:.3f} |" if "absorbed_share" in r else " |"))
    for m, why in entry["failed"].items():
        lines.append(f"| {m} | not run: {why} | | | | | | |")
    return "\n".join(lines)


def iclabel_study(*, duration: float, n_components: int, method: str) -> dict:
    """ICLabel on the simulated recording: which component is which source, its class, each input's share."""
    import matplotlib
    matplotlib.use("Agg")
    from sciexplain_eeg.icsim import fit_ica, match_components, simulate_recording
    from sciexplain_eeg.iclabel import explain_iclabel, iclabel_features, plot_iclabel

    t0 = time.time()
    raw, truth = simulate_recording(duration=duration, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared, ica = fit_ica(raw, n_components=n_components, method=method,
                                max_iter=500 if method == "infomax" else "auto")
    matched = match_components(ica, truth)
    R = explain_iclabel(features=iclabel_features(prepared, ica))
    R.to_netcdf(HERE / "results" / "eeg_zoo_iclabel.nc")
    rows = {}
    for name, (comp, r) in matched.items():
        S = R.sel(component=comp)
        rows[name] = {"component": comp, "pattern_r": r, "expected": truth.kinds[name],
                      "predicted": str(S.predicted_class.values),
                      "probability": float(S.probability.sel(iclabel_class=str(S.predicted_class.values))),
                      "logit": float(S.prediction), "absorbed_share": float(S.absorbed / S.prediction),
                      **{f"share_{k}": float(v) for k, v in zip(R.input.values, S.share.values)}}
        slug = name.replace(" ", "_")
        plot_iclabel(R, comp).savefig(HERE / "results" / f"eeg_zoo_iclabel_{slug}.png", dpi=110)
    return {"rows": rows, "settings": f"simulate_recording(duration={duration}, seed=0), ICA {method} "
                                      f"({n_components} components, seed 0), preset {R.attrs['preset']}, output "
                                      f"{R.attrs['output']}; {time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d')}"}


def main() -> None:
    from sciexplain_eeg.zoo import ZOO

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--explain", type=int, default=200, help="epochs explained and perturbed")
    ap.add_argument("--write-weights", action="store_true",
                    help="save the trained networks as the plugin's shipped weights")
    ap.add_argument("--data", choices=("synthetic", "finger"), default="synthetic",
                    help="synthetic ground-truth epochs (eeg_zoo.json) or FingerMovements (eeg_zoo_finger.json)")
    ap.add_argument("--fit-seeds", type=int, default=3, help="--data finger: networks trained per architecture")
    ap.add_argument("--iclabel", action="store_true",
                    help="only the ICLabel study (simulated recording, ICA, explanation, figures)")
    ap.add_argument("--ica-method", default="infomax", help="infomax (extended; what ICLabel expects) or fastica")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="braindecode")
    if args.iclabel:
        out = iclabel_study(duration=60.0, n_components=15, method=args.ica_method)
        (HERE / "results" / "eeg_zoo_iclabel.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out, indent=1))
        return
    if args.data == "finger":
        saved = json.loads(FINGER.read_text()) if FINGER.exists() else {"models": {}}
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            saved["models"][name] = study_finger(name, steps=args.steps, seeds=list(range(args.seeds)),
                                                 fit_seeds=list(range(args.fit_seeds)))
            print(name, json.dumps(saved["models"][name]["accuracy"]), saved["models"][name]["settings"], flush=True)
            FINGER.write_text(json.dumps(saved, indent=1))
        saved["markdown"] = markdown_finger(saved["models"])
        FINGER.write_text(json.dumps(saved, indent=1))
        print(saved["markdown"])
        return
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        entry = study(name, steps=args.steps, seeds=list(range(args.seeds)), n_explain=args.explain,
                      write_weights=args.write_weights)
        saved["models"][name] = entry
        print(markdown(name, entry), "\n", entry["settings"], "\n", flush=True, file=sys.stdout)
        RESULTS.write_text(json.dumps(saved, indent=1))
    saved["markdown"] = "\n\n".join(markdown(n, saved["models"][n]) for n in ZOO if n in saved["models"])
    RESULTS.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
