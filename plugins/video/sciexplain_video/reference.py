"""Evidence by absence: explanations and artifact removal relative to a clip's camera motion.

An opaque still logo under a moving camera is seen by a motion model as *no motion where the camera
makes motion everywhere*. Its blocks are zero inputs, so every decomposition relative to the zero
input (LRP's z-rules, gradient x input) gives them exactly zero relevance: the evidence is an absence.
A decomposition relative to a **reference** can see it: with the reference ``x'`` the clip as the
camera alone would move it (every block moving with the clip's dominant motion in that frame),

* :func:`explain_from_reference` runs integrated gradients from ``x'`` (Sundararajan et al. 2017):
  relevance measures each block's departure from the camera's motion, weighted by what that departure
  does to the logit, and sums to ``f(x) - f(x')`` (up to the integration error, kept as a coord);
  ``absorbed`` is ``f(x')`` plus that error, so relevance + absorbed = f(x) per clip. The reference
  can also be the zero field (``"zero"``) or any tensor, e.g. the mean training field
  (:func:`mean_reference`);
* :func:`departure_directions` finds an artifact's directions from the clips a user marked (a SpRAy
  cluster) against the class's other clips: the leading eigenvectors of the difference of the two
  sets' second moments of the per-frame departure ``x - x'`` (one ``(component, block_y, block_x)``
  map per frame: a logo keeps its place in every frame). Second moments rather than means because a
  still logo's departure is minus the camera's motion, whose sign and axis differ from clip to clip:
  its mean over clips is about zero, its second moment is not;
* :class:`CameraPClArC` is P-ClArC relative to the camera: in every frame the departure's components
  in the artifact's span are set to zero (the blocks there move with the camera), everything
  orthogonal is kept. The correction's reference depends on the clip (its own camera motion), which
  a constant-reference projection (:class:`sciexplain.PClArC`) cannot express: the clean value of a
  still logo's blocks is the camera's motion in that clip, not a mean over clips (about zero, which
  *is* the logo).

The camera's motion is estimated as the median over blocks of each component per frame
(:func:`camera_motion`), robust to a moving figure and a logo covering less than half the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from sciexplain.errors import InputError

__all__ = ["camera_motion", "mean_reference", "explain_from_reference", "departure_directions",
           "DepartureArtifact", "CameraPClArC", "logit_effect"]


def _tensor(fields: Any, model: Any = None):
    """A ``(clip, component, frame, block_y, block_x)`` float tensor and its labels (dims only for a tensor)."""
    from .explain import fields_to_tensor

    if isinstance(fields, torch.Tensor):
        if fields.ndim != 5 or fields.shape[1] != 2 or not fields.is_floating_point():
            raise InputError(f"expected a float tensor (clip, component=2, frame, block_y, block_x), got "
                             f"{fields.dtype} {tuple(fields.shape)}")
        return fields, {"dims": ("clip", "component", "frame", "block_y", "block_x"),
                        "coords": {"component": ["dx", "dy"]}, "attrs": {"domain": "video"}}
    return fields_to_tensor(fields, model)


def camera_motion(x: Any) -> Any:
    """The clip as the camera alone would move it: each frame's median motion over blocks, everywhere.

    Parameters
    ----------
    x : torch.Tensor or MotionField or list of MotionField
        Motion fields ``(clip, component, frame, block_y, block_x)``.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``; per clip, component and frame one value (the median over blocks) in
        every block. Frames without vectors (zeros) stay zero.
    """
    x, _ = _tensor(x)
    median = x.flatten(3).median(dim=3).values
    return median[..., None, None].expand_as(x).clone()


def mean_reference(fields: Any) -> Any:
    """The mean motion field of ``fields`` (e.g. the training clips): a tensor ``(1, 2, frame, block_y, block_x)``.

    Under a camera that pans in random directions it is close to zero everywhere.
    """
    x, _ = _tensor(fields)
    return x.mean(0, keepdim=True)


def explain_from_reference(model: Any, fields: Any, target: Any = None, reference: Any = "camera", *,
                           steps: int = 32, batch_size: int = 64, pool_components: bool = True) -> Any:
    """Integrated gradients of a motion model from a reference field: relevance of the departure from it.

    Parameters
    ----------
    model : MotionCNN or torch.nn.Module
        Takes ``(clip, 2, frame, block_y, block_x)``.
    fields : MotionField, list of MotionField, or tensor ``(clip, 2, frame, block_y, block_x)``
    target : int, sequence of int, or None
        Class to explain per clip; None explains the predicted class.
    reference : {"camera", "zero"} or tensor
        ``"camera"``: :func:`camera_motion` of each clip; ``"zero"``: no motion; a tensor broadcasting to
        the clips' ``(clip, 2, frame, block_y, block_x)`` (e.g. :func:`mean_reference` of training clips).
    steps, batch_size : int
        Integration steps (midpoint rule) and the batch of path points per forward pass.
    pool_components : bool
        Sum relevance over ``dx``/``dy`` (default) or keep the ``component`` dim.

    Returns
    -------
    xarray.DataArray
        Dims ``("clip", "frame", "block_y", "block_x")`` (plus ``"component"`` when kept); per clip,
        relevance + ``absorbed`` = ``prediction``, with coords ``reference_prediction`` (``f(x')``) and
        ``integration_error`` (sum of relevance minus ``f(x) - f(x')``); ``attrs["decomposes"]`` is
        ``"f(x) - f(baseline)"`` and ``attrs["reference"]`` names the reference.
    """
    import sciexplain as sx

    from .explain import DIMS, _finish

    x, labels = _tensor(fields, model)
    if isinstance(reference, str):
        if reference not in ("camera", "zero"):
            raise InputError(f"reference must be 'camera', 'zero' or a tensor, got {reference!r}")
        name = reference
        base = camera_motion(x) if reference == "camera" else torch.zeros_like(x)
    else:
        name = "given tensor"
        base = torch.as_tensor(reference, dtype=x.dtype)
        try:
            base = torch.broadcast_to(base, x.shape).clone()
        except RuntimeError:
            raise InputError(f"the reference of shape {tuple(base.shape)} does not broadcast to the clips' "
                             f"{tuple(x.shape)}") from None
    R = sx.explain(model, x, target, method="integrated_gradients", baseline=base, steps=steps,
                   batch_size=batch_size, dims=labels["dims"], coords=labels["coords"])
    f_ref = np.asarray(R.attrs.pop("baseline_prediction"), dtype=np.float64)
    R.attrs.pop("baseline", None)
    if pool_components:
        R = R.relevance.pool("component")
    R = R.transpose(*(DIMS if pool_components else DIMS + ("component",)))
    total = R.sum([d for d in R.dims if d != "clip"]).values.astype(np.float64)
    R = R.assign_coords(reference_prediction=("clip", f_ref),
                        integration_error=("clip", total - (R.prediction.values - f_ref)))
    R = _finish(R, model, x, labels)
    R.attrs["reference"] = {"camera": "each frame's median motion over blocks, in every block (camera_motion)",
                            "zero": "no motion"}.get(name, name)
    R.attrs["steps"] = int(steps)
    return R


# ---------------------------------------------------------------------------- the artifact's directions


@dataclass(frozen=True)
class DepartureArtifact:
    """An artifact's span in the per-frame departure from the camera, ``x - camera_motion(x)``.

    Attributes
    ----------
    basis : numpy.ndarray
        ``(2 * block_y * block_x, k)`` orthonormal columns, over one frame's ``(component, block_y,
        block_x)`` map flattened in that order.
    eigenvalues : numpy.ndarray
        The contrast's eigenvalues, largest first (``k`` is read from their gap).
    grid : (int, int)
        ``(block_y, block_x)``.
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    grid: tuple[int, int]

    @property
    def k(self) -> int:
        """The number of directions."""
        return int(self.basis.shape[1])

    def maps(self) -> np.ndarray:
        """The directions as ``(k, component, block_y, block_x)`` maps."""
        return self.basis.T.reshape(self.k, 2, *self.grid)


def _departures(x: Any) -> Any:
    """Per-frame departure maps ``(clip * frame, component * block_y * block_x)``, float64."""
    d = (x - camera_motion(x)).permute(0, 2, 1, 3, 4)
    return d.reshape(-1, d.shape[2] * d.shape[3] * d.shape[4]).double()


def departure_directions(x_artifact: Any, x_clean: Any, k: int | None = None, *, max_k: int = 8) -> DepartureArtifact:
    """The artifact's directions from clips marked as carrying it and clips of the same class without it.

    The leading eigenvectors of ``E[d d^T | artifact] - E[d d^T | clean]`` over per-frame departure maps
    ``d`` (one ``(component, block_y, block_x)`` map per frame of ``x - camera_motion(x)``): the directions
    in which the marked clips depart from their camera more than the others do, whatever the sign.

    Parameters
    ----------
    x_artifact, x_clean : MotionField list or tensor ``(clip, 2, frame, block_y, block_x)``
        E.g. the clips of the cluster SpRAy found and the class's other clips.
    k : int, optional
        Number of directions; by default the largest gap among the first ``max_k + 1`` positive
        eigenvalues (as SpRAy reads its number of clusters).
    max_k : int

    Returns
    -------
    DepartureArtifact
    """
    xa, _ = _tensor(x_artifact)
    xc, _ = _tensor(x_clean)
    if len(xa) < 1 or len(xc) < 1:
        raise InputError("departure_directions needs at least one marked and one clean clip")
    if xa.shape[1:] != xc.shape[1:]:
        raise InputError(f"the marked and clean clips differ in shape: {tuple(xa.shape[1:])} vs {tuple(xc.shape[1:])}")
    Da, Dc = _departures(xa), _departures(xc)
    contrast = Da.T @ Da / len(Da) - Dc.T @ Dc / len(Dc)
    values, vectors = torch.linalg.eigh(contrast)
    values, vectors = values.flip(0).numpy(), vectors.flip(1).numpy()
    positive = int((values > 1e-9 * max(abs(values[0]), 1e-300)).sum())
    if positive == 0:
        raise InputError("the marked clips depart from their camera motion no more than the clean ones in any "
                         "direction: no artifact to remove")
    if k is None:
        top = np.r_[values[:min(max_k + 1, positive)], 0.0]
        k = int(np.argmax(-np.diff(top))) + 1
        k = min(k, max_k)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= positive:
        raise InputError(f"k must be an integer from 1 to {positive} (the positive eigenvalues), got {k!r}")
    return DepartureArtifact(basis=vectors[:, :int(k)].copy(), eigenvalues=values, grid=tuple(xa.shape[3:]))


class CameraPClArC(nn.Module):
    """P-ClArC relative to the camera: the artifact's departure from the camera's motion set to zero.

    ``h(x) = x - P (x - c(x))`` in every frame, with ``c`` :func:`camera_motion` and ``P = V V^T`` the
    projection on the artifact's span (:func:`departure_directions`); the model then runs on ``h(x)``.
    Where the blocks of a clip already move with the camera nothing changes; a still logo's blocks get
    the camera's motion back. No training; the wrapped model is a copy.

    Explain it with ``explain_from_reference`` (integrated gradients; the median of :func:`camera_motion`
    has no LRP rule).

    Parameters
    ----------
    model : torch.nn.Module
    artifact : DepartureArtifact
    """

    def __init__(self, model: Any, artifact: DepartureArtifact) -> None:
        import copy

        super().__init__()
        if not isinstance(artifact, DepartureArtifact):
            raise InputError(f"artifact must be a DepartureArtifact (from departure_directions), got "
                             f"{type(artifact).__name__}")
        self.model = copy.deepcopy(model).eval()
        V = torch.as_tensor(artifact.basis, dtype=torch.float32)
        self.register_buffer("projection", V @ V.T)
        self.grid = artifact.grid
        self.classes = getattr(model, "classes", None)
        self.block = getattr(model, "block", None)
        self.min_frames = getattr(model, "min_frames", 1)
        self.eval()

    def correct(self, x: Any) -> Any:
        """``h(x)``: the input with the artifact's departure from the camera removed."""
        if tuple(x.shape[3:]) != tuple(self.grid):
            raise InputError(f"the clips' block grid {tuple(x.shape[3:])} differs from the artifact's {self.grid}")
        d = (x - camera_motion(x)).permute(0, 2, 1, 3, 4)
        shape = d.shape
        removed = (d.reshape(*shape[:2], -1) @ self.projection).reshape(shape).permute(0, 2, 1, 3, 4)
        return x - removed

    def forward(self, x: Any) -> Any:
        """The model on the corrected input."""
        return self.model(self.correct(x))


def logit_effect(model: Any, x_with: Any, x_without: Any, target: int | Sequence[int]) -> np.ndarray:
    """``f(x_with) - f(x_without)`` of the target logit per clip (paired clips; a check, not an explanation)."""
    xa, _ = _tensor(x_with)
    xb, _ = _tensor(x_without)
    t = torch.as_tensor(np.broadcast_to(np.asarray(target), (len(xa),)).copy())
    with torch.no_grad():
        fa = model(xa)[torch.arange(len(xa)), t]
        fb = model(xb)[torch.arange(len(xb)), t]
    return (fa - fb).double().numpy()
