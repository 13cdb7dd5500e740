"""Explain action classifiers on motion fields: relevance per block and frame.

``explain_motion(model, field)`` (and ``sx.explain(model, field)``, which dispatches here through
the ``sciexplain.domains`` entry point) returns the relevance contract with dims
``("clip", "frame", "block_y", "block_x")`` (``pool_components=False`` keeps ``"component"``):

* ``frame``: index, with coords ``time`` (s), ``frame_type`` (``"I"``, ``"P"``, ``"B"``) and
  ``has_vectors``; ``block_y``/``block_x``: indices with ``y_origin``/``x_origin`` (pixels);
* ``clip``: positions, with ``path``, ``predicted``, ``target_name`` (class names in
  ``attrs["classes"]``) and the contract's ``prediction``, ``target``, ``absorbed``.

For several clips, ``time`` comes from the first clip (all must share frame count, grid, block
size and frame rate); ``frame_type`` and ``has_vectors`` are 1-d when the clips agree and
``("clip", "frame")`` otherwise.

How each model is explained
---------------------------
* :class:`~sciexplain_video.models.MotionCNN` (any torch model taking ``(clip, 2, frame,
  block_y, block_x)``): the core explains the tensor; relevance over the two components is
  summed. I-frames and blocks without vectors enter as 0 ("no measured motion"); under LRP and
  gradient x input a zero input gets exactly zero relevance, and the result flags those
  frames (``has_vectors`` False) so a figure can mark them instead of reading them as still.
* :class:`~sciexplain_video.models.MotionFisherModel`: the core explains the descriptor sets
  (Fisher-vector LRP of :mod:`sciexplain.kinds.units.fisher`, the linear SVM under the preset's rule);
  each descriptor value's relevance is spread over the blocks and frames that voted into its
  histogram bin, in proportion to their votes (:meth:`Descriptors.to_blocks`). Per clip,
  relevance on the blocks + ``absorbed`` = f(x), where ``absorbed`` is what the Fisher vector
  and the SVM's bias absorbed (``absorbed_model``) plus relevance of descriptor values no
  block with vectors contributed to (``absorbed_unassigned``, cells made of I-frames only).
  Blocks that never vote (no vectors, I-frames) get exactly zero. Gradient methods
  (sensitivity, gradient x input) are computed on the descriptors and spread the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from sciexplain.rules import BiasToInputs, Epsilon

from .errors import BlockSizeError, ClipTooShortError, FieldMismatchError
from .motion import COMPONENTS, MotionField, is_motion_field
from sciexplain.errors import InputError, InputTypeError

__all__ = ["explain_motion", "fields_to_tensor", "descriptors_to_blocks", "DIMS", "DEFAULT_PRESET"]

DIMS = ("clip", "frame", "block_y", "block_x")
#: ``epsilon-plus`` with the dense layers' (the SVM's, the CNN's classifier's) bias share passed on to
#: their inputs (:class:`sciexplain.rules.BiasToInputs`): under plain ``epsilon-plus`` the SVM bias of
#: the Fisher-vector model absorbed a median -27% of f(x) (worst 233%); with it, 0%, ABPC unchanged
#: within its interval on both models (``benchmarks/bench_conservation.py --only video``, issue 20)
DEFAULT_PRESET = {"base": "epsilon-plus", nn.Linear: BiasToInputs(Epsilon(1e-6))}


def _as_list(fields: Any) -> list[MotionField]:
    if isinstance(fields, MotionField):
        return [fields]
    if is_motion_field(fields):
        return list(fields)
    raise InputTypeError(f"expected a MotionField or a list of them (from sciexplain_video.read_motion_vectors), got "
                    f"{type(fields).__name__}")


def _check_fields(fields: list[MotionField], model: Any) -> None:
    first = fields[0]
    for i, f in enumerate(fields[1:], start=1):
        diffs = []
        if f.block != first.block:
            diffs.append(f"block {f.block} vs {first.block}")
        if f.grid != first.grid:
            diffs.append(f"grid {f.grid} vs {first.grid} blocks")
        if f.n_frames != first.n_frames:
            diffs.append(f"{f.n_frames} vs {first.n_frames} frames")
        if abs(f.fps - first.fps) > 1e-6 * max(1.0, first.fps):
            diffs.append(f"{f.fps:g} vs {first.fps:g} fps")
        if diffs:
            raise FieldMismatchError(f"clip {i} ({f.path}) differs from clip 0 ({first.path}): {', '.join(diffs)}. "
                                     "Clips explained together must share these; explain them one at a time or "
                                     "cut them with field.select_frames(...)")
    want_block = getattr(model, "block", None)
    if want_block is not None and int(want_block) != first.block:
        raise BlockSizeError(f"the model was trained on {int(want_block)}x{int(want_block)} pixel blocks, the motion "
                             f"field has {first.block}x{first.block}; read the clip again with "
                             f"read_motion_vectors(path, block={int(want_block)})")
    need = getattr(model, "min_frames", None)
    if need is not None and first.n_frames < int(need):
        raise ClipTooShortError(f"the clip has {first.n_frames} frames, the model needs at least {int(need)}; "
                                "use a longer clip")


def _coords(fields: list[MotionField]) -> dict[str, Any]:
    first = fields[0].field
    types = np.stack([np.asarray(f.frame_type, dtype=str) for f in fields])
    flags = np.stack([f.has_vectors for f in fields])
    coords: dict[str, Any] = {
        "clip": np.arange(len(fields)),
        "path": ("clip", np.asarray([str(f.path) for f in fields], dtype=str)),
        "frame": first.coords["frame"].values,
        "time": ("frame", first.coords["time"].values),
        "block_y": first.coords["block_y"].values,
        "block_x": first.coords["block_x"].values,
        "y_origin": ("block_y", first.coords["y_origin"].values),
        "x_origin": ("block_x", first.coords["x_origin"].values),
    }
    if (types == types[0]).all() and (flags == flags[0]).all():
        coords["frame_type"] = ("frame", types[0])
        coords["has_vectors"] = ("frame", flags[0])
    else:
        coords["frame_type"] = (("clip", "frame"), types)
        coords["has_vectors"] = (("clip", "frame"), flags)
    return coords


def fields_to_tensor(fields: Any, model: Any = None, *, fill: float = 0.0):
    """Motion field(s) -> ``(clip, component, frame, block_y, block_x)`` float32 tensor and labels.

    Returns
    -------
    tensor : torch.Tensor
    labels : dict
        ``{"dims", "coords", "attrs"}`` of the explanation before pooling the components.

    Raises
    ------
    BlockSizeError, ClipTooShortError, FieldMismatchError
        When the fields do not fit the model or each other.
    """
    import torch

    fields = _as_list(fields)
    _check_fields(fields, model)
    x = torch.as_tensor(np.stack([f.to_array(fill) for f in fields]))
    coords = _coords(fields)
    coords["component"] = list(COMPONENTS)
    f0 = fields[0]
    attrs = {"domain": "video", "block": f0.block, "width": f0.width, "height": f0.height, "fps": f0.fps,
             "input_units": "pixels per reference step (forward displacement; dx right, dy down)",
             "fill": f"I-frames and blocks without vectors enter the model as {fill:g}",
             "reference_note": f0.attrs.get("reference_note", "")}
    dims = ("clip", "component", "frame", "block_y", "block_x")
    return x, {"dims": dims, "coords": coords, "attrs": attrs}


def _classes(model: Any) -> list[str] | None:
    classes = getattr(model, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def _predicted(model: Any, x: Any) -> np.ndarray:
    import torch

    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            return model(x).argmax(dim=1).numpy().astype(np.int64)
    finally:
        for m, f in flags:
            m.training = f


def _finish(R: Any, model: Any, x: Any, labels: dict) -> Any:
    classes = _classes(model)
    predicted = _predicted(model, x)
    R = R.assign_coords(predicted=("clip", predicted))
    if classes is not None:
        R = R.assign_coords(target_name=("clip", np.asarray([classes[int(t)] for t in R.target.values], dtype=str)))
    attrs = dict(R.attrs)
    attrs.update(labels["attrs"])
    attrs["model"] = type(model).__name__
    if classes is not None:
        attrs["classes"] = ", ".join(classes)
    R.attrs = attrs
    return R


def explain_motion(model: Any, fields: Any, target: Any = None, *, method: str = "lrp", preset: Any = None,
                   pool_components: bool = True, fill: float = 0.0, bounds: Any = None,
                   max_pool: str = "winner-take-all", **options: Any):
    """Explain an action classifier on motion field(s); relevance per clip, frame and block.

    Parameters
    ----------
    model : MotionCNN, MotionFisherModel or torch.nn.Module
        A module taking ``(clip, 2, frame, block_y, block_x)``, or the Fisher-vector model.
    fields : MotionField or list of MotionField
    target : int, sequence of int, or None
        Class to explain per clip; None explains the predicted class.
    method : str
        ``"lrp"``, ``"sensitivity"``, ``"gradient_x_input"``, ... (see :func:`sciexplain.explain`).
    preset : optional
        LRP preset; default :data:`DEFAULT_PRESET`.
    pool_components : bool
        Sum relevance over ``dx``/``dy`` (default) or keep the ``component`` dim. The
        Fisher-vector model's relevance is per block (its descriptors mix both components), so
        it always has the pooled dims.
    fill : float
        Model input for I-frames and blocks without vectors.
    bounds, max_pool, **options
        Passed to :class:`sciexplain.Explainer`.

    Returns
    -------
    xarray.DataArray
        Dims :data:`DIMS`; for LRP, per clip, relevance + ``absorbed`` = ``prediction``.
    """
    import sciexplain as sx
    from .models import MotionFisherModel

    for key in ("dims", "coords", "at", "through"):
        if options.get(key) is not None:
            raise InputError(f"video explanations set {key}= themselves or do not support it; explain "
                             "fields_to_tensor(...)[0] with sciexplain.explain for that")
        options.pop(key, None)
    if isinstance(model, MotionFisherModel):
        return _explain_fisher(model, fields, target, method=method, preset=preset, fill=fill, bounds=bounds,
                               max_pool=max_pool, **options)
    x, labels = fields_to_tensor(fields, model, fill=fill)
    explainer = sx.Explainer(model, method, DEFAULT_PRESET if preset is None else preset, bounds=bounds,
                             max_pool=max_pool, **options)
    R = explainer.explain(x, target, dims=labels["dims"], coords=labels["coords"])
    if pool_components:
        R = R.relevance.pool("component")
    R = R.transpose(*(DIMS if pool_components else DIMS + ("component",)))
    return _finish(R, model, x, labels)


def _explain_fisher(model: Any, fields: Any, target: Any, *, method: str, preset: Any, fill: float, bounds: Any,
                    max_pool: str, **options: Any):
    import sciexplain as sx
    from .training import descriptor_batch

    fields = _as_list(fields)
    _check_fields(fields, model)
    x, records = descriptor_batch(fields, model.spec)
    explainer = sx.Explainer(model, method, DEFAULT_PRESET if preset is None else preset, bounds=bounds,
                             max_pool=max_pool, **options)
    Rd = explainer.explain(x, target, dims=("clip", "descriptor", "feature"))
    return descriptors_to_blocks(model, fields, Rd, x, records)


def descriptors_to_blocks(model: Any, fields: Any, Rd: Any, x: Any = None, records: Any = None):
    """The relevance of a :class:`~sciexplain_video.MotionFisherModel`'s descriptor sets spread over the
    blocks and frames of the clips (the mapping of the module docstring).

    Parameters
    ----------
    model : MotionFisherModel
    fields : MotionField or list of MotionField
        The clips ``Rd`` explains, in order.
    Rd : xarray.DataArray
        Relevance of the descriptor sets, dims ``(clip, descriptor, feature)`` with the contract's
        ``prediction``, ``target``, ``absorbed`` (e.g. from ``sciexplain.explain_dataset`` on the
        descriptors, as the pipeline computes it).
    x, records : optional
        The descriptor batch and records of :func:`~sciexplain_video.descriptor_batch` (recomputed
        when not given).

    Returns
    -------
    xarray.DataArray
        Dims :data:`DIMS`; ``absorbed_model`` and ``absorbed_unassigned`` per clip.
    """
    from sciexplain.result import build_result
    from .training import descriptor_batch

    fields = _as_list(fields)
    if x is None or records is None:
        x, records = descriptor_batch(fields, model.spec)
    if Rd.shape[0] != len(fields) or tuple(Rd.shape[1:]) != tuple(x.shape[1:]):
        raise FieldMismatchError(f"the descriptor relevance has shape {Rd.shape}, the {len(fields)} clips give "
                                 f"descriptors of shape {tuple(x.shape)}; pass the clips the relevance explains")
    blocks, unassigned = [], []
    for rec, r in zip(records, Rd.values):
        b, u = rec.to_blocks(r)
        blocks.append(b)
        unassigned.append(u)
    blocks = np.stack(blocks)
    unassigned = np.asarray(unassigned)
    decomposes = Rd.attrs["decomposes"]
    absorbed_model = Rd.coords["absorbed"].values.astype(np.float64)
    if decomposes == "f(x)":
        absorbed = absorbed_model + unassigned
    else:  # gradient methods: absorbed is NaN or meaningless; keep what the core said
        absorbed = absorbed_model
    coords = _coords(fields)
    keep = {k: v for k, v in Rd.attrs.items() if k not in ("method", "rules", "decomposes", "sciexplain_version")}
    f0 = fields[0]
    attrs = {**keep, "domain": "video", "block": f0.block, "width": f0.width, "height": f0.height, "fps": f0.fps,
             "descriptors": (f"HOF/MBHx/MBHy histograms ({model.spec.bins} bins each) over cells of "
                             f"{model.spec.cell_frames} frames x {model.spec.cell_blocks}x{model.spec.cell_blocks} "
                             f"blocks, {records[0].n} descriptors per clip"),
             "mapping": ("descriptor relevance spread over the blocks that voted into each histogram bin, in "
                         "proportion to their votes; empty bins uniformly over the cell's blocks with vectors"),
             "reference_note": f0.attrs.get("reference_note", "")}
    R = build_result(blocks.astype(np.float64), dims=DIMS, coords=coords, prediction=Rd.prediction.values,
                     target=Rd.target.values, absorbed=absorbed, method=Rd.attrs["method"], rules=Rd.attrs["rules"],
                     decomposes=decomposes, attrs=attrs)
    R = R.assign_coords(absorbed_model=("clip", absorbed_model), absorbed_unassigned=("clip", unassigned))
    return _finish(R, model, x, {"attrs": {}})
