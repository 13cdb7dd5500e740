"""Which LRP preset is faithful on the EEG models? Channel-time block perturbation with bootstrap CIs.

The EEG part of issue 12's study, and the measurement behind ``sciexplain_eeg.DEFAULT_PRESET``.
Models: ``LinearEEG`` fitted on the real FingerMovements training trials (its 100 test trials
explained), and ``CompactEEGNet`` / ``SturmDNN`` trained on synthetic epochs with known
class-specific activity (``make_synthetic_epochs``; 200 fresh epochs explained), since the
networks stay at chance on the real data. Blocks of one channel x ``--block`` samples are
replaced by the epoch's own mean of that channel (``BlockRemoval("mean")``, the plugin's
removal) most relevant first / least relevant first; AOPC of both curves and ABPC with
percentile bootstrap intervals over epochs from ``sx.evaluate.compare`` (ties in random order,
several seeds).

Usage: python benchmarks/bench_eeg_faithfulness.py [--steps 40] [--seeds 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sciexplain as sx
from sciexplain.rules.presets import ScaledEpsilon
from sciexplain.rules import Epsilon, Gamma

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

PRESETS: dict[str, object] = {
    "epsilon-plus": "epsilon-plus",
    "epsilon": "epsilon",
    "alpha2-beta1": "alpha2-beta1",
    "deep-taylor": "deep-taylor",
    "ScaledEpsilon(0.25)": ScaledEpsilon(0.25),
    "Gamma(0.25) convs + Epsilon(1e-6) dense": {nn.Conv2d: Gamma(0.25), nn.Conv1d: Gamma(0.25),
                                                nn.Linear: Epsilon(1e-6)},
}


def study(name: str, model, epochs, *, block: int, steps: int, seeds: list[int]) -> tuple:
    from sciexplain_eeg import explain_epochs
    from sciexplain_eeg.explain import epochs_to_tensor
    from sciexplain_eeg.perturbation import block_removal
    x, _ = epochs_to_tensor(epochs, model)
    with torch.no_grad():
        target = model(x).argmax(1)
    explanations, absorbed = {}, {}
    for label, preset in PRESETS.items():
        R = explain_epochs(model, epochs, target.numpy(), preset=preset)
        R.relevance.check()
        explanations[f"LRP {label}"] = R
        absorbed[f"LRP {label}"] = float(np.mean(R.absorbed.values / R.prediction.values))
    for label, method in (("gradient x input", "gradient_x_input"), ("sensitivity", "sensitivity")):
        explanations[label] = explain_epochs(model, epochs, target.numpy(), method=method)
    explanations["random order"] = None
    ds = sx.evaluate.compare(model, x, explanations, steps=steps, patch=(1, block), removal=block_removal("mean"),
                             seeds=seeds, target=target.numpy(), n_boot=2000, ties="random")
    ds.attrs["model"] = name
    return ds, absorbed


def markdown(ds, absorbed: dict) -> str:
    rows = ["| method | AOPC MoRF (95% CI) | AOPC LeRF (95% CI) | ABPC (95% CI) | absorbed / f(x) |",
            "|---|---|---|---|---|"]
    for i in np.argsort(-ds["estimate"].sel(metric="abpc").values):
        m = str(ds.method.values[i])
        cells = [f"{float(ds['estimate'][i, j]):.3f} [{float(ds['ci_low'][i, j]):.3f}, "
                 f"{float(ds['ci_high'][i, j]):.3f}]" for j in range(3)]
        rows.append(f"| {m} | " + " | ".join(cells) + f" | {absorbed[m]:.2f} |" if m in absorbed else
                    f"| {m} | " + " | ".join(cells) + " |  |")
    return "\n".join(rows)


def merge_saved(blocks: list, wanted: list[str]) -> list:
    """The models not run this time keep their last saved result (netCDF + title in the JSON), so
    that each model can be measured in a run of its own and the table still shows all of them."""
    saved_file = RESULTS / "eeg_faithfulness.json"
    saved = json.loads(saved_file.read_text())["models"] if saved_file.exists() else {}
    order = ["LinearEEG", "CompactEEGNet", "SturmDNN"]
    have = {ds.attrs["model"]: (title, (ds, absorbed)) for title, (ds, absorbed) in blocks}
    for tag, entry in saved.items():
        nc = RESULTS / f"eeg_faithfulness_{tag}.nc"
        if tag not in wanted and tag not in have and nc.exists():
            import xarray as xr
            ds = xr.load_dataset(nc)
            ds.attrs.setdefault("model", tag)
            ds.attrs.setdefault("settings", entry.get("settings", "see the JSON of an earlier run"))
            have[tag] = (entry["title"], (ds, entry["absorbed"]))
    return [have[t] for t in order if t in have]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--models", default="LinearEEG,CompactEEGNet,SturmDNN",
                    help="comma-separated: LinearEEG (real data), CompactEEGNet, SturmDNN (synthetic, trained here)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    from sciexplain_eeg import CompactEEGNet, LinearEEG, SturmDNN, fit, load_finger_movements, make_synthetic_epochs
    seeds = list(range(args.seeds))
    blocks = []
    wanted = [m.strip() for m in args.models.split(",")]
    train, test = load_finger_movements("train"), load_finger_movements("test")
    lin = LinearEEG(*train.get_data().shape[1:]).fit_logistic(train, seed=0)
    if "LinearEEG" in wanted:
        blocks.append(("LinearEEG on FingerMovements (real; 100 test trials, blocks of 1 channel x 4 samples)",
                       study("LinearEEG", lin, test, block=4, steps=min(args.steps, 98), seeds=seeds)))
    train_s, _ = make_synthetic_epochs(seed=0)
    test_s, _ = make_synthetic_epochs(seed=1000)
    shape = train_s.get_data().shape[1:]
    for cls in (CompactEEGNet, SturmDNN):
        if cls.__name__ not in wanted:
            continue
        net = cls(*shape)
        fit(net, train_s, seed=0)
        from sciexplain_eeg.training import evaluate
        acc = evaluate(net, test_s)
        blocks.append((f"{cls.__name__} on synthetic epochs (200 fresh epochs, test accuracy {acc:.2f}, blocks of "
                       "1 channel x 10 samples)", study(cls.__name__, net, test_s, block=10, steps=args.steps,
                                                        seeds=seeds)))
    elapsed = time.time() - t0
    settings = (f"{args.steps} steps (at most 98 for LinearEEG), seeds {seeds}, ran in {elapsed / 60:.1f} min "
                f"(`--models {args.models} --steps {args.steps} --seeds {args.seeds}`), {time.strftime('%Y-%m-%d')}")
    for _, (ds, _) in blocks:
        ds.attrs["settings"] = settings
    blocks = merge_saved(blocks, wanted)
    parts = []
    summary = {}
    for title, (ds, absorbed) in blocks:
        parts.append(f"#### {title}\n\n{markdown(ds, absorbed)}")
        tag = ds.attrs["model"]
        ds.to_netcdf(RESULTS / f"eeg_faithfulness_{tag}.nc")
        summary[tag] = {"title": title, "settings": ds.attrs["settings"], "rows": ds[["estimate", "ci_low", "ci_high"]].to_dataframe().reset_index()
                        .to_dict(orient="records"), "absorbed": absorbed}
    for title, (ds, _) in blocks:
        ds.attrs.setdefault("settings", settings)
    env = "\n".join(f"- {ds.attrs['model']}: {ds.attrs['settings']}" for _, (ds, _) in blocks)
    env = ("Removal: the epoch's own channel mean, blocks removed one per step, ties in random order; 95% "
           f"percentile bootstrap over epochs. Per model:\n{env}")
    text = "\n\n".join(parts) + "\n\n" + env
    print(text)
    (RESULTS / "eeg_faithfulness.json").write_text(json.dumps({"env": env, "models": summary}, indent=1))
    if args.write:
        from bench_image_faithfulness import replace_block
        replace_block(HERE / "README.md", "eeg_faithfulness",
                      f"### LRP presets on the EEG models, channel-time block perturbation (issue 12)\n\n{text}\n\n"
                      "Command: `python benchmarks/bench_eeg_faithfulness.py --write` (`--models` runs some of "
                      "the models and keeps the others' last results)")


if __name__ == "__main__":
    main()
