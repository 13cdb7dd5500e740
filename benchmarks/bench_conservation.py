"""How much of f(x) does each shipped model's explanation carry to the input, and how faithful is it?

Issue 20. For every model and preset in :func:`cases`, over the model's data: the share of
f(x) absorbed (``absorbed / f(x)``, median and worst over the inputs), ``sum |R| / |f(x)|``
(median), and faithfulness by region perturbation (ABPC = AOPC(LeRF) - AOPC(MoRF), with a
percentile bootstrap interval over the inputs, ``sx.evaluate.compare``), plus the paired
bootstrap interval of each preset's ABPC minus the domain's current default over the same
inputs and noise.

Image: EfficientNet-Lite0 on the 12 bundled photos and their mirror images (24 inputs), 9x9
patches, 8 steps of 12 patches, uniform noise over the valid pixel range, as
``bench_image_faithfulness.py``; the Fashion-MNIST CNN, ViT and ConvNeXt (shipped weights) on the
first 200 test images, 4x4 patches, 20 steps, uniform noise in [0, 1] (``bench_fashion_quality.py``;
``--removal zero`` sets the patches to 0 instead, black on Fashion-MNIST, as ``bench_fashion_modern.py``,
and writes ``conservation_zero.json``). EEG: the plugin's networks as ``bench_eeg_faithfulness.py``; the
braindecode zoo (``load_zoo``: ShallowFBCSPNet, Deep4Net, EEGNetv4, EEGConformer, ATCNet, shipped weights)
on the first 100 of ``bench_eeg_zoo.py``'s 400 fresh synthetic epochs, blocks of 1 channel x 10 samples
replaced by the channel mean, 20 steps. Text: the shipped CNN, BiLSTM and transformer on 100 of the 200
posts, words deleted. Video: the Conv3d network and the Fisher vector model on generated clips.

Usage::

    python benchmarks/bench_conservation.py --quick                       # few inputs and steps: a smoke test
    python benchmarks/bench_conservation.py --threads 1 --only eeg --write # one domain, then the README table

``--only`` takes comma-separated domain names: an exact name runs that domain only (``eeg``, ``text``),
any other string every domain whose name contains it (``Fashion``, ``eeg zoo``). ``--table --write``
rewrites the README table from the stored results without running anything.

Writes ``benchmarks/results/conservation.json`` (and ``conservation_quick.json`` with
``--quick``); ``--write`` puts the table between the ``<!-- conservation:start -->`` /
``<!-- conservation:end -->`` markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import sciexplain as sx
from sciexplain.evaluate.comparison import bootstrap_ci
from sciexplain.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZPlus
from sciexplain.rules.conservation import BiasToInputs, Fallback
from sciexplain.rules.presets import ByConvKind, ScaledEpsilon

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"

#: the label of each domain's previous default (the reference of the paired differences)
TODAY = "previous default"
#: the mark of each domain's default after issue 20 (if it changed)
NEW = "(new default)"


def image_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for EfficientNet-Lite0 (``bounds`` are added by ``explain_image``)."""
    g, se = Gamma(0.25), ScaledEpsilon(0.25)
    fb = Fallback
    return {
        f"{TODAY}: mobilenet": "mobilenet",
        "epsilon-plus-box": "epsilon-plus-box",
        # the named preset "mobilenet-conserving" is exactly this composite on EfficientNet-Lite0
        # (plugins/image/tests/test_conservation.py checks it); the new image default
        f"mobilenet-conserving {NEW}: epsilon-plus-box, WSquare on depthwise convs": "mobilenet-conserving",
        "epsilon-plus-box, Fallback(ZPlus, WSquare) on convs": {"base": "epsilon-plus-box", nn.Conv2d: fb(ZPlus())},
        "epsilon-plus-box, Fallback(ZPlus, Flat) on convs": {"base": "epsilon-plus-box", nn.Conv2d: fb(ZPlus(), Flat())},
        "mobilenet, BiasToInputs + Fallback(WSquare) on convs and fc": {
            "base": "mobilenet",
            nn.Conv2d: ByConvKind(depthwise=fb(BiasToInputs(g)), pointwise=fb(BiasToInputs(se)), other=fb(BiasToInputs(se))),
            nn.Linear: BiasToInputs(se)},
        "Gamma(0.25) convs with BiasToInputs + Fallback, Epsilon(1e-6) fc": {
            "base": "epsilon-plus-box", nn.Conv2d: fb(BiasToInputs(g))},
        "Gamma(0.25) convs with BiasToInputs(sign) + Fallback, Epsilon(1e-6) fc": {
            "base": "epsilon-plus-box", nn.Conv2d: fb(BiasToInputs(g, "sign"))},
    }


def fashion_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the Fashion-MNIST CNN (bounds [0, 1] where a preset uses ZBox)."""
    return {
        f"{TODAY}: mobilenet": "mobilenet",
        "epsilon-plus-box": "epsilon-plus-box",
        "epsilon-plus-box, Fallback(ZPlus, WSquare) on convs": {"base": "epsilon-plus-box", nn.Conv2d: Fallback(ZPlus())},
        "epsilon-plus-box, BiasToInputs(Epsilon) on fc, Fallback on convs": {
            "base": "epsilon-plus-box", nn.Conv2d: Fallback(ZPlus()), nn.Linear: BiasToInputs(Epsilon(1e-6))},
        f"mobilenet-conserving {NEW}: ScaledEpsilon(0.05) on full convs, Epsilon(1e-6) on dense": "mobilenet-conserving",
        "mobilenet-conserving with Fallback(BiasToInputs(ScaledEpsilon(0.25))) on full convs (its first version)": {
            "base": "mobilenet-conserving", nn.Conv2d: Fallback(BiasToInputs(ScaledEpsilon(0.25)))},
        "ScaledEpsilon(0.02) on full convs, Epsilon(1e-6) on dense": {
            "base": "mobilenet-conserving", nn.Conv2d: ScaledEpsilon(0.02)},
        "ScaledEpsilon(0.05) on full convs and dense": {"base": "mobilenet", nn.Conv2d: ScaledEpsilon(0.05),
                                                        nn.Linear: ScaledEpsilon(0.05)},
        "mobilenet, BiasToInputs on dense only": {"base": "mobilenet", nn.Linear: BiasToInputs(ScaledEpsilon(0.25))},
        "Gamma(0.25) on full convs, ScaledEpsilon(0.05) on dense": {"base": "mobilenet", nn.Conv2d: Gamma(0.25),
                                                                    nn.Linear: ScaledEpsilon(0.05)},
        "AlphaBeta(2, 1) on full convs, Epsilon(1e-6) on dense": {"base": "mobilenet-conserving",
                                                                  nn.Conv2d: AlphaBeta(2, 1)},
        "mobilenet, BiasToInputs + Fallback": {
            "base": "mobilenet", nn.Conv2d: Fallback(BiasToInputs(ScaledEpsilon(0.25))),
            nn.Linear: BiasToInputs(ScaledEpsilon(0.25))},
    }


def _on_layers(rule, types=(nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) -> dict:
    return {t: rule for t in types}


def eeg_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the EEG plugin's networks (its default: ``"epsilon"``, Epsilon(0.01))."""
    return {
        f"{TODAY}: epsilon": "epsilon",
        "epsilon-plus": "epsilon-plus",
        "Epsilon(1e-6)": _on_layers(Epsilon(1e-6)),
        "BiasToInputs(Epsilon(0.01))": {"base": "epsilon", **_on_layers(BiasToInputs(Epsilon(0.01)))},
        "epsilon-plus, Fallback(ZPlus, WSquare) on convs": {"base": "epsilon-plus", nn.Conv2d: Fallback(ZPlus())},
        "mobilenet-conserving": "mobilenet-conserving",
    }


def text_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the text plugin's networks (its default: epsilon, Epsilon(0.1) on additions)."""
    from sciexplain_text.explain import DEFAULT_PRESET
    return {
        f"{TODAY}: epsilon, Epsilon(0.1) on additions": DEFAULT_PRESET,
        "Epsilon(1e-6), Epsilon(0.1) on additions": {"base": "epsilon", **_on_layers(Epsilon(1e-6)),
                                                     "op:add": Epsilon(0.1)},
        "epsilon, Epsilon(1e-6) on additions": {"base": "epsilon", "op:add": Epsilon(1e-6)},
        "epsilon, Epsilon(0.01) on additions": {"base": "epsilon", "op:add": Epsilon(0.01)},
        "BiasToInputs(Epsilon(0.01)), Epsilon(0.01) on additions": {
            "base": "epsilon", **_on_layers(BiasToInputs(Epsilon(0.01))), "op:add": Epsilon(0.01)},
        "BiasToInputs(Epsilon(0.01)), Epsilon(0.1) on additions": {
            "base": "epsilon", **_on_layers(BiasToInputs(Epsilon(0.01))), "op:add": Epsilon(0.1)},
        "epsilon-plus, Epsilon(0.1) on additions": {"base": "epsilon-plus", "op:add": Epsilon(0.1)},
    }


def video_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the video plugin's models (its default: ``"epsilon-plus"``)."""
    return {
        f"{TODAY}: epsilon-plus": "epsilon-plus",
        "epsilon-plus, Fallback(ZPlus, WSquare) on convs": {"base": "epsilon-plus", nn.Conv3d: Fallback(ZPlus())},
        # the plugin's DEFAULT_PRESET since issue 20
        f"epsilon-plus, BiasToInputs(Epsilon(1e-6)) on dense {NEW}": {"base": "epsilon-plus",
                                                                     nn.Linear: BiasToInputs(Epsilon(1e-6))},
        "epsilon": "epsilon",
        "mobilenet-conserving": "mobilenet-conserving",
    }


def _dense_and_convs(rule, convs=None) -> dict:
    """``rule`` on dense layers and ``convs`` (default ``rule``) on 1d/2d/3d convolutions."""
    return {nn.Linear: rule, **{t: rule if convs is None else convs for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d)}}


#: the zoo registry's defaults before issue 20 (``ZOO[name].default_preset``, chosen by ABPC alone in
#: ``bench_eeg_zoo.py``): the reference of each network's paired differences
ZOO_PREVIOUS = {"ShallowFBCSPNet": "alpha2-beta1", "Deep4Net": "epsilon", "EEGNetv4": "epsilon",
                "EEGConformer": "cp-lrp", "ATCNet": "epsilon"}


def zoo_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for a braindecode network of the EEG plugin's zoo (reference: :data:`ZOO_PREVIOUS`)."""
    name = case.rsplit(": ", 1)[-1]
    default = ZOO_PREVIOUS[name]
    rows: dict[str, object] = {f"{TODAY}: {default}": default}
    for named in ("epsilon", "alpha2-beta1", "attnlrp", "cp-lrp"):
        if named != default and (named != "alpha2-beta1" or name == "ShallowFBCSPNet") and (
                not named.endswith("lrp") or name in ("EEGConformer", "ATCNet")):
            rows[named] = named
    b2, b6 = BiasToInputs(Epsilon(0.01)), BiasToInputs(Epsilon(1e-6))
    rows["epsilon, BiasToInputs(Epsilon(0.01)) on dense and convs"] = {"base": "epsilon", **_dense_and_convs(b2)}
    rows["epsilon, Fallback(BiasToInputs(Epsilon(0.01))) on convs, BiasToInputs on dense"] = {
        "base": "epsilon", **_dense_and_convs(b2, Fallback(b2))}
    rows["Epsilon(1e-6), Fallback(BiasToInputs(Epsilon(1e-6))) on convs, BiasToInputs on dense"] = {
        "base": "epsilon", **_dense_and_convs(b6, Fallback(b6))}
    if name in ("EEGConformer", "ATCNet"):
        rows["cp-lrp, Fallback(BiasToInputs(Epsilon(1e-6))) on convs, BiasToInputs on dense"] = {
            "base": "cp-lrp", **_dense_and_convs(b6, Fallback(b6))}
    return rows


def transformer_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the text plugin's transformer (the reference: its default before issue 20, AttnLRP;
    ``DEFAULT_TRANSFORMER_PRESET`` is CP-LRP since, so it is not read here)."""
    b6 = BiasToInputs(Epsilon(1e-6))
    return {
        f"{TODAY}: attnlrp": "attnlrp",
        "cp-lrp": "cp-lrp",
        "attnlrp, BiasToInputs(Epsilon(1e-6)) on dense": {"base": "attnlrp", nn.Linear: b6},
        "cp-lrp, BiasToInputs(Epsilon(1e-6)) on dense": {"base": "cp-lrp", nn.Linear: b6},
        "epsilon": "epsilon",
    }


def fashion_modern_presets(case: str = "") -> dict[str, object]:
    """Label -> preset for the Fashion-MNIST ViT and ConvNeXt (their default: ``DEFAULT_PRESETS``, AttnLRP)."""
    b6 = BiasToInputs(Epsilon(1e-6))
    rows: dict[str, object] = {f"{TODAY}: attnlrp": "attnlrp"}
    if "ViT" in case:
        rows["cp-lrp"] = "cp-lrp"
    rows["attnlrp, Fallback(BiasToInputs(Epsilon(1e-6))) on convs"] = {"base": "attnlrp", nn.Conv2d: Fallback(b6)}
    # sciexplain_image.fashion_modern.DEFAULT_PRESETS since issue 20 (plugins/image/tests/test_conservation.py
    # checks that the models' default runs these rules)
    rows[f"attnlrp, Fallback(BiasToInputs(Epsilon(1e-6))) on convs, BiasToInputs on dense {NEW}"] = {
        "base": "attnlrp", nn.Conv2d: Fallback(b6), nn.Linear: b6}
    rows["attnlrp, BiasToInputs(Epsilon(1e-6)) on convs and dense (no fallback)"] = {
        "base": "attnlrp", nn.Conv2d: b6, nn.Linear: b6}
    if "ViT" in case:
        rows["cp-lrp, Fallback(BiasToInputs(Epsilon(1e-6))) on convs, BiasToInputs on dense"] = {
            "base": "cp-lrp", nn.Conv2d: Fallback(b6), nn.Linear: b6}
    else:
        rows["epsilon-plus-box"] = "epsilon-plus-box"
        rows["mobilenet-conserving"] = "mobilenet-conserving"
    rows["epsilon"] = "epsilon"
    return rows


def load_image(quick: bool):
    from sciexplain_image import list_photos, load_efficientnet_lite0, load_photo
    from sciexplain_image.explain import input_bounds, prepare_images
    model = load_efficientnet_lite0()
    names = list_photos()[:3] if quick else list_photos()
    photos = [load_photo(n) for n in names]
    images = photos + [np.ascontiguousarray(p[:, ::-1]) for p in photos]
    labels = names + [f"{n} (mirrored)" for n in names]
    x, _ = prepare_images(images, model.preprocess)
    lo, hi = input_bounds(model.preprocess)
    settings = dict(patch=(9, 9), steps=4 if quick else 8, regions_per_step=12, removal="uniform",
                    value_range=(float(lo.min()), float(hi.max())))
    env = (f"EfficientNet-Lite0, {len(names)} bundled photos and their mirror images ({len(labels)} inputs), "
           f"predicted class; 9x9 patches, {settings['steps']} steps of 12 patches, uniform noise in "
           f"[{settings['value_range'][0]:.3f}, {settings['value_range'][1]:.3f}]")
    return model, x, labels, (lo, hi), settings, env


def load_fashion(quick: bool, model: nn.Module | None = None):
    from sciexplain_image.fashion import fashion_to_tensor, load_fashion_cnn, load_fashion_mnist
    model = load_fashion_cnn().eval() if model is None else model
    X, _ = load_fashion_mnist("test")
    n = 20 if quick else 200
    x = fashion_to_tensor(X[:n])
    settings = dict(patch=(4, 4), steps=5 if quick else 20, regions_per_step=1, removal="uniform", value_range=(0.0, 1.0))
    env = (f"Fashion-MNIST CNN, first {n} test images, predicted class; 4x4 patches, {settings['steps']} steps, "
           "uniform noise in [0, 1]")
    return model, x, [str(i) for i in range(n)], (0.0, 1.0), settings, env


def _fashion_modern_loader(which: str) -> Callable:
    """The Fashion-MNIST ViT or ConvNeXt on the Fashion CNN row's images, patches and noise."""
    def load(quick: bool):
        from sciexplain_image.fashion_modern import load_fashion_convnext, load_fashion_vit
        model = (load_fashion_vit if which == "ViT" else load_fashion_convnext)().eval()
        _, x, labels, bounds, settings, env = load_fashion(quick, model=model)
        return model, x, labels, bounds, settings, env.replace("Fashion-MNIST CNN", f"Fashion-MNIST {which} (shipped)")
    return load


def _compare_scorer(model, x, target, settings: dict, args) -> Callable:
    """Per-input ABPC of each explanation by ``sx.evaluate.compare`` (region perturbation)."""
    def score(explanations: dict) -> dict:
        seeds = [0] if args.quick else list(range(args.seeds))
        ds = sx.evaluate.compare(model, x, explanations, seeds=seeds, target=np.asarray(target), n_boot=args.n_boot,
                                 level=0.95, bootstrap_seed=0, batch_size=60, ties="random", **settings)
        return {k: np.asarray(ds["score"].sel({"method": k, "metric": "abpc"}).values, dtype=np.float64)
                for k in explanations}
    return score


def _image_domain(loader):
    def load(args) -> dict:
        model, x, labels, bounds, settings, env = loader(args.quick)
        if args.removal == "zero":  # patches set to 0 (black on Fashion-MNIST) instead of noise
            settings = {**{k: v for k, v in settings.items() if k != "value_range"}, "removal": "zero"}
            env = env[: env.index("uniform noise")] + "patches set to 0"
        with torch.no_grad():
            target = model(x).argmax(1)

        def explain(preset):
            kw = {"bounds": bounds} if sx.rules.uses_bounds(preset) else {}
            return sx.explain(model, x, target, method="lrp", preset=preset, **kw)
        return {"explain": explain, "score": _compare_scorer(model, x, target.numpy(), settings, args), "env": env}
    return load


def load_eeg(args) -> list[tuple[str, dict]]:
    """The EEG plugin's networks as ``bench_eeg_faithfulness.py`` sets them up (its removal, blocks and steps)."""
    from sciexplain_eeg import (CompactEEGNet, LinearEEG, SturmDNN, explain_epochs, fit, load_finger_movements,
                                make_synthetic_epochs)
    from sciexplain_eeg.explain import epochs_to_tensor
    from sciexplain_eeg.perturbation import block_removal
    from sciexplain_eeg.training import evaluate
    out = []
    steps = 5 if args.quick else 30

    def domain(model, epochs, block: int, env: str) -> dict:
        model.eval()
        x, _ = epochs_to_tensor(epochs, model)
        with torch.no_grad():
            target = model(x).argmax(1).numpy()
        settings = dict(steps=steps, patch=(1, block), removal=block_removal("mean"))
        return {"explain": lambda preset: explain_epochs(model, epochs, target, preset=preset),
                "score": _compare_scorer(model, x, target, settings, args),
                "noise": f"no noise (channel-mean removal), ties in random order with seeds "
                         f"{[0] if args.quick else list(range(args.seeds))}",
                "env": env + f", predicted class; blocks of 1 channel x {block} samples replaced by the epoch's "
                             f"channel mean (the plugin's removal), {steps} steps"}
    train, test = load_finger_movements("train"), load_finger_movements("test")
    n_lin = 10 if args.quick else 40
    lin = LinearEEG(*train.get_data().shape[1:]).fit_logistic(train, seed=0)
    out.append(("eeg: LinearEEG", domain(lin, test[:n_lin], 4, f"LinearEEG on FingerMovements, the first {n_lin} "
                                                              "of the 100 test trials")))
    train_s, _ = make_synthetic_epochs(seed=0)
    test_s, _ = make_synthetic_epochs(seed=1000)
    n_syn = 20 if args.quick else len(test_s)
    for cls in (CompactEEGNet, SturmDNN):
        net = cls(*train_s.get_data().shape[1:])
        fit(net, train_s, seed=0)
        acc = evaluate(net, test_s)
        out.append((f"eeg: {cls.__name__}", domain(net, test_s[:n_syn], 10, f"{cls.__name__} trained on synthetic "
                    f"epochs (seed 0), {n_syn} fresh epochs (seed 1000, test accuracy {acc:.2f})")))
    return out


def _text_abpc(model, ids: torch.Tensor, target: np.ndarray, R, k_max: int, seed: int, random: bool = False) -> np.ndarray:
    """Per document: mean over k = 0..k_max of f(LeRF_k) - f(MoRF_k), words deleted by their relevance (or at random)."""
    from sciexplain_text.deletion import delete_tokens, deletion_order
    from sciexplain_text.training import predict
    rows = np.arange(len(target))
    curves = {}
    for order in ("most", "least"):
        pos = deletion_order(R, "random" if random else order, seed + (order == "least"))
        f = []
        for k in range(k_max + 1):
            mask = np.zeros(ids.shape, dtype=bool)
            sel = pos[:, :k]
            d_idx = np.repeat(rows, sel.shape[1])
            ok = sel.reshape(-1) >= 0
            mask[d_idx[ok], sel.reshape(-1)[ok]] = True
            f.append(predict(model, delete_tokens(ids, mask))[rows, target])
        curves[order] = np.stack(f, 1)
    return (curves["least"] - curves["most"]).mean(1)


def load_text(args) -> list[tuple[str, dict]]:
    """The shipped 20 Newsgroups CNN and BiLSTM on their posts; word deletion as ``bench_text_deletion.py``."""
    import sciexplain_text as st
    corpus = st.load_mini_newsgroups()
    n = 20 if args.quick else 100
    k_max = 5 if args.quick else 20
    out = []
    for name, arch in (("newsgroups_cnn", "CNN"), ("newsgroups_lstm", "BiLSTM")):
        model, tok = st.load_model(name)
        model.eval()
        max_len = model.config()["max_length"]
        idx = np.linspace(0, len(corpus.texts) - 1, n).round().astype(int)
        docs = st.Documents([corpus.texts[i] for i in idx], tok, max_len, pad_to=max_len,
                            labels=corpus.labels[idx], allow_all_unknown=True)
        target = st.predict(model, docs.ids).argmax(1)

        def score(explanations: dict, model=model, docs=docs, target=target) -> dict:
            seeds = [0] if args.quick else list(range(args.seeds))
            ref = next(R for R in explanations.values() if R is not None)
            return {k: np.mean([_text_abpc(model, docs.ids, target, ref if R is None else R, k_max, s, R is None)
                                for s in seeds], 0) for k, R in explanations.items()}
        out.append((f"text: {arch}", {
            "explain": lambda preset, model=model, docs=docs, target=target: st.explain_documents(
                model, docs, target.tolist(), preset=preset),
            "score": score, "noise": f"random orders seeded {[0] if args.quick else list(range(args.seeds))}",
            "env": f"shipped {name} (trained on the 200 posts), {n} of its posts evenly spaced, predicted class; "
                   f"words deleted (embedding set to zero) most / least relevant first, k = 0..{k_max}, "
                   "ABPC = mean over k of f(LeRF) - f(MoRF)"}))
    return out


def _zoo_domain(name: str) -> Callable:
    """A braindecode network of the EEG plugin (shipped weights, ``load_zoo``) on the synthetic epochs of
    ``bench_eeg_zoo.py``: fresh epochs of ``make_synthetic_epochs(n_epochs=400, seed=1000)``, blocks of
    1 channel x 10 samples replaced by the epoch's channel mean."""
    def load(args) -> list[tuple[str, dict]]:
        import warnings
        from sciexplain_eeg import explain_epochs, load_zoo, make_synthetic_epochs
        from sciexplain_eeg.explain import epochs_to_tensor
        from sciexplain_eeg.perturbation import block_removal
        from sciexplain_eeg.training import evaluate
        warnings.filterwarnings("ignore", module="braindecode")
        net = load_zoo(name).eval()
        test, _ = make_synthetic_epochs(n_epochs=400, seed=1000)
        acc = evaluate(net, test)
        n = 20 if args.quick else 100
        steps = 5 if args.quick else 20
        epochs = test[:n]
        x, _ = epochs_to_tensor(epochs, net)
        with torch.no_grad():
            target = net(x).argmax(1).numpy()
        settings = dict(steps=steps, patch=(1, 10), removal=block_removal("mean"))
        seeds = [0] if args.quick else list(range(args.seeds))
        return [(f"eeg zoo: {name}", {
            "explain": lambda preset: explain_epochs(net, epochs, target, preset=preset),
            "score": _compare_scorer(net, x, target, settings, args),
            "noise": f"no noise (channel-mean removal), ties in random order with seeds {seeds}",
            "env": f"{name} with the EEG plugin's shipped weights (`load_zoo`, trained on synthetic epochs, seed 0), "
                   f"the first {n} of the 400 fresh epochs of bench_eeg_zoo.py (seed 1000; test accuracy "
                   f"{acc:.3f} on all 400), predicted class; blocks of 1 channel x 10 samples replaced by the "
                   f"epoch's channel mean (the plugin's removal), {steps} steps"})]
    return load


def _word_abpc(model, ids: torch.Tensor, target: np.ndarray, R, k_max: int, seed: int, random: bool = False) -> np.ndarray:
    """As :func:`_text_abpc` for a subword model: words (all their tokens) deleted by the summed relevance
    of their tokens (or at random); ``[CLS]``, ``[SEP]`` and padding are never deleted."""
    import sciexplain_text as st
    W = st.group_words(R).values
    idx = R.coords["word_index"].values
    rows = np.arange(len(target))
    positions, ranked = [], {}
    for d in range(len(target)):
        words = np.unique(idx[d][idx[d] >= 0])
        positions.append([np.flatnonzero(idx[d] == w) for w in words])
        for order in ("most", "least"):
            if random:
                r = np.random.default_rng([seed + (order == "least"), d]).permutation(len(words))
            else:
                s = W[d, words]
                r = np.argsort(-s if order == "most" else s, kind="stable")
            ranked.setdefault(order, []).append(r)
    curves = {}
    for order in ("most", "least"):
        f = []
        for k in range(k_max + 1):
            mask = np.zeros(ids.shape, dtype=bool)
            for d, r in enumerate(ranked[order]):
                for w in r[:k]:
                    mask[d, positions[d][w]] = True
            f.append(st.predict(model, st.delete_tokens(ids, mask))[rows, target])
        curves[order] = np.stack(f, 1)
    return (curves["least"] - curves["most"]).mean(1)


def load_transformer(args) -> list[tuple[str, dict]]:
    """The shipped 20 Newsgroups transformer on the text CNN / BiLSTM rows' posts; word deletion."""
    import sciexplain_text as st
    corpus = st.load_mini_newsgroups()
    n = 20 if args.quick else 100
    k_max = 5 if args.quick else 20
    name = "newsgroups_bert"
    model, tok = st.load_model(name)
    model.eval()
    idx = np.linspace(0, len(corpus.texts) - 1, n).round().astype(int)
    docs = st.prepare_documents(st.Documents([corpus.texts[i] for i in idx], tok, labels=corpus.labels[idx]), model)
    target = st.predict(model, docs.ids).argmax(1)
    seeds = [0] if args.quick else list(range(args.seeds))

    def score(explanations: dict) -> dict:
        ref = next(R for R in explanations.values() if R is not None)
        return {k: np.mean([_word_abpc(model, docs.ids, target, ref if R is None else R, k_max, s, R is None)
                            for s in seeds], 0) for k, R in explanations.items()}
    return [("text: transformer", {
        "explain": lambda preset: st.explain_documents(model, docs, target.tolist(), preset=preset),
        "score": score, "noise": f"random orders seeded {seeds}",
        "env": f"shipped {name} (BERT-style, trained on the 200 posts), the text CNN rows' {n} posts, predicted "
               f"class; words deleted (all their subword tokens masked out as padding) most / least relevant "
               f"first (a word's relevance: the sum over its tokens), k = 0..{k_max}, ABPC = mean over k of "
               "f(LeRF) - f(MoRF)"})]


def load_video(args) -> list[tuple[str, dict]]:
    """The shipped Conv3d network and Fisher vector + SVM on generated clips, as ``bench_video.py``."""
    import tempfile
    import sciexplain_video as sv
    from sciexplain.evaluate import aopc
    per_class = 2 if args.quick else 5
    steps = 5 if args.quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        items = sv.make_dataset(tmp, per_class, seed=4242)
        fields = [sv.read_motion_vectors(p) for p, _ in items]
    targets = [t.label for _, t in items]
    out = []
    for name, kind in (("Conv3d CNN", "cnn"), ("Fisher vector + SVM", "fisher")):
        model = sv.load_pretrained(kind)

        def score(explanations: dict, model=model) -> dict:
            res, ref = {}, next(R for R in explanations.values() if R is not None)
            for k, R in explanations.items():
                # random order: two independent random orders in place of MoRF and LeRF
                a, b = (aopc(sv.block_perturbation(model, fields, ref if R is None else R, steps=steps,
                                                   order=o if R is not None else "random", regions_per_step=4,
                                                   seed=4242 + i)).values for i, o in enumerate(("morf", "lerf")))
                res[k] = np.asarray(a - b, dtype=np.float64)
            return res
        out.append((f"video: {name}", {
            "explain": lambda preset, model=model: sv.explain_motion(model, fields, target=targets, preset=preset),
            "score": score, "noise": "no noise (zero removal); the random order drawn with seeds 4242 and 4243",
            "env": f"shipped {kind} model, {len(fields)} generated clips ({per_class} per action, seed 4242), true "
                   f"class; block-frame regions zeroed 4 per step, {steps} steps (the plugin's block_perturbation), "
                   "ABPC = AOPC(MoRF) - AOPC(LeRF)"}))
    return out


DOMAINS: dict[str, tuple[Callable, Callable]] = {
    "image: EfficientNet-Lite0": (_image_domain(load_image), image_presets),
    "image: Fashion-MNIST CNN": (_image_domain(load_fashion), fashion_presets),
    "image: Fashion-MNIST ViT": (_image_domain(_fashion_modern_loader("ViT")), fashion_modern_presets),
    "image: Fashion-MNIST ConvNeXt": (_image_domain(_fashion_modern_loader("ConvNeXt")), fashion_modern_presets),
    "eeg": (load_eeg, eeg_presets),
    **{f"eeg zoo: {n}": (_zoo_domain(n), zoo_presets)
       for n in ("ShallowFBCSPNet", "Deep4Net", "EEGNetv4", "EEGConformer", "ATCNet")},
    "text": (load_text, text_presets),
    "text: transformer": (load_transformer, transformer_presets),
    "video": (load_video, video_presets),
}


def _coord(R, name: str) -> np.ndarray:
    return np.asarray(R.coords[name].values if name in R.coords else R[name].values, dtype=np.float64)


def run_case(name: str, ctx: dict, presets: dict, args) -> dict:
    """One model: its presets' absorbed shares and ABPC, with paired differences to the default."""
    rows, explanations = {}, {}
    for label, preset in presets.items():
        if args.presets and not (label.startswith(TODAY) or any(k.strip() in label for k in args.presets.split("|"))):
            continue
        t0 = time.time()
        try:
            R = ctx["explain"](preset)
        except Exception as exc:  # a preset that does not apply to the model is reported, not hidden
            rows[label] = {"failed": f"{type(exc).__name__}: {str(exc)[:300]}"}
            print(f"[{name}] {label}: failed: {rows[label]['failed']}", flush=True)
            continue
        pred = _coord(R, "prediction")
        absorbed = _coord(R, "absorbed") / pred
        rel = R.values if hasattr(R, "values") and not callable(R.values) else R["relevance"].values
        scale = np.abs(np.asarray(rel, dtype=np.float64)).reshape(len(pred), -1).sum(1) / np.abs(pred)
        explanations[label] = R
        # the ledger: relevance + absorbed = f(x); a residual is relevance lost without being counted
        total = np.asarray(rel, dtype=np.float64).reshape(len(pred), -1).sum(1) + _coord(R, "absorbed")
        residual = float(np.max(np.abs(total - pred) / (np.abs(pred) + np.abs(_coord(R, "absorbed")))))
        rows[label] = {"absorbed_median": float(np.median(absorbed)), "absorbed_worst": float(np.max(np.abs(absorbed))),
                       "abs_relevance_over_fx_median": float(np.median(scale)), "ledger_residual_worst": residual,
                       # the size of the share whatever its sign, and how many inputs exceed the 50% criterion
                       "absorbed_abs_median": float(np.median(np.abs(absorbed))),
                       "inputs_above_half": int(np.sum(np.abs(absorbed) > 0.5)), "inputs": int(len(absorbed)),
                       "prediction_abs_median": float(np.median(np.abs(pred))),
                       "worst_input": {"prediction": float(pred[np.argmax(np.abs(absorbed))]),
                                       "absorbed": float(_coord(R, "absorbed")[np.argmax(np.abs(absorbed))])},
                       "explain_seconds": time.time() - t0, "rules": R.attrs.get("rules", "")}
        print(f"[{name}] {label}: absorbed median {np.median(absorbed):.3f} worst {np.max(np.abs(absorbed)):.3f}, "
              f"sum|R|/|f(x)| {np.median(scale):.3g}, ledger residual {residual:.1e}, {time.time() - t0:.1f}s", flush=True)
    explanations["random order"] = None
    scores = ctx["score"](explanations)
    today = next(k for k in rows if k.startswith(TODAY))
    for label in [k for k in rows if "failed" not in rows[k]] + ["random order"]:
        row = rows.setdefault(label, {})
        est, lo, hi = bootstrap_ci(scores[label], n_boot=args.n_boot, seed=0)
        row.update(abpc=float(est), abpc_ci=[float(lo), float(hi)])
        row["abpc_minus_today"] = [float(v) for v in bootstrap_ci(scores[label] - scores[today], n_boot=args.n_boot, seed=0)]
    seeds = [0] if args.quick else list(range(args.seeds))
    noise = ctx.get("noise", f"noise seeds {seeds}")
    return {"env": ctx["env"] + f"; {noise}; 95% percentile bootstrap over inputs ({args.n_boot} "
                                "resamples, seed 0), the same resamples for the paired differences", "rows": rows}


def run_domain(name: str, args) -> dict:
    """Every model of one domain: ``{model name: result}``."""
    loader, presets = DOMAINS[name]
    cases = loader(args)
    if isinstance(cases, dict):
        cases = [(name, cases)]
    out = {}
    for case, ctx in cases:
        t0 = time.time()
        out[case] = run_case(case, ctx, presets(case), args)
        out[case]["seconds"] = time.time() - t0
    return out


def meets(row: dict) -> bool:
    """Issue 20's criteria: at most 20% of f(x) absorbed (median, either sign), none above 50%, and
    ABPC not significantly below the domain's previous default (the paired interval's upper end >= 0)."""
    return (abs(row["absorbed_median"]) <= 0.2 and row["absorbed_worst"] <= 0.5
            and row["abpc_minus_today"][2] >= 0)


def _domain_rank(case: str) -> int:
    """The position in :data:`DOMAINS` of the domain that measured ``case`` (its name, or the longest
    domain name it starts with: ``"eeg: LinearEEG"`` -> ``"eeg"``)."""
    names = list(DOMAINS)
    if case in DOMAINS:
        return names.index(case)
    prefixes = [n for n in names if case.startswith(n)]
    return names.index(max(prefixes, key=len)) if prefixes else len(names)


def markdown(results: dict) -> str:
    out = []
    for name in sorted(results, key=_domain_rank):  # stable: a domain's cases keep their order
        res = results[name]
        took = f" Ran in {res['seconds'] / 60:.1f} min." if "seconds" in res else ""
        out += [f"**{name}.** {res['env']}.{took}", "",
                "| preset | absorbed / f(x), median | worst | sum abs(R) / abs(f(x)), median | ABPC (95% CI) | "
                "ABPC minus the previous default (paired 95% CI) | meets both criteria |",
                "|---|---|---|---|---|---|---|"]
        for label, r in res["rows"].items():
            if "failed" in r:
                out.append(f"| {label} | not run: {r['failed']} |  |  |  |  |  |")
                continue
            if "absorbed_median" in r:
                cells = [f"{r['absorbed_median']:.3f}", f"{r['absorbed_worst']:.3f}", f"{r['abs_relevance_over_fx_median']:.3g}"]
            else:
                cells = ["", "", ""]
            d = r["abpc_minus_today"]
            cells += [f"{r['abpc']:.2f} [{r['abpc_ci'][0]:.2f}, {r['abpc_ci'][1]:.2f}]",
                      f"{d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}]", ("yes" if meets(r) else "no") if "absorbed_median" in r else ""]
            leak = r.get("ledger_residual_worst", 0.0)
            note = f" (ledger residual up to {leak:.1e} of abs(f(x)) + abs(absorbed))" if leak > 1e-4 else ""
            out.append(f"| {label}{note} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def replace_block(path: Path, name: str, block: str) -> None:
    s = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = f"{start}\n{block}\n{end}"
    s = s[: s.index(start)] + text + s[s.index(end) + len(end):] if start in s else s.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 photos (+ mirrors), 20 Fashion images, few steps, 1 seed")
    ap.add_argument("--only", default=None, help="comma-separated substrings of the domain names to run")
    ap.add_argument("--presets", default=None, help="'|'-separated substrings of the preset labels to run "
                    "(the domain's current default always runs)")
    ap.add_argument("--removal", choices=("uniform", "zero"), default="uniform",
                    help="image domains only: 'zero' sets patches to 0 instead of uniform noise (a second view of "
                         "faithfulness, written to results/conservation_zero.json, never into the README table)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/README.md")
    ap.add_argument("--table", action="store_true", help="run nothing: print (and with --write, write) the table "
                    "from the stored results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    wanted = [w.strip() for w in args.only.split(",")] if args.only else []
    # a domain's exact name runs that domain only ("text", "eeg"); any other string every domain containing it
    names = [n for n in DOMAINS if not wanted or any(w == n or (w not in DOMAINS and w in n) for w in wanted)]
    if args.table:
        names = []
    if args.removal == "zero":
        names = [n for n in names if n.startswith("image")]
    stem = "conservation" + ("_zero" if args.removal == "zero" else "") + ("_quick" if args.quick else "")
    path = RESULTS / f"{stem}.json"
    results = json.loads(path.read_text()) if path.exists() and (args.only or args.table) else {}
    for name in names:
        done = run_domain(name, args)
        RESULTS.mkdir(exist_ok=True)
        # re-read before writing: runs of other domains (--only) may have written theirs meanwhile
        results = json.loads(path.read_text()) if path.exists() and args.only else results
        results.update(done)
        path.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    print(table)
    if args.write and not args.quick and args.removal != "zero":
        cmd = "python benchmarks/bench_conservation.py --threads 1 --only DOMAIN --write"
        replace_block(README, "conservation", f"{table}\nCommand: `{cmd}` per domain (`image: Efficient`, "
                      "`Fashion`, `eeg`, `eeg zoo`, `text`, `text: transformer`, `video`; each run rewrites the "
                      "whole table from `results/conservation.json`; `--table --write` rewrites it without "
                      f"running); table written {time.strftime('%Y-%m-%d')}.")


if __name__ == "__main__":
    main()
