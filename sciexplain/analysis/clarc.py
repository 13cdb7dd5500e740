"""Class artifact compensation (ClArC): remove a Clever Hans shortcut found by SpRAy from a model.

Anders, Weber, Neumann, Samek, Mueller & Lapuschkin, "Finding and removing Clever Hans: using
explanation methods to debug and improve deep models", Information Fusion 77:261-295 (2022).

The artifact is modelled as a linear direction ``v`` (unit length) in the activations ``a`` of
one layer. The paper's artifact model is the affine map

    h(a) = a - v v^T a + v v^T z = (I - v v^T) a + (v^T z) v,

which replaces the component of ``a`` along ``v`` by that of a reference point ``z`` and leaves
everything orthogonal to ``v`` as it was:

* **P-ClArC** (projective): ``z`` is the mean activation of clean samples (without the artifact);
  ``h`` runs at inference in front of the rest of the model, no training. :class:`PClArC`.
* **A-ClArC** (augmentative): ``z`` is the mean activation of artifact samples; ``h`` *adds* the
  artifact to the training samples of every class and the layers above are fine-tuned on them,
  so that the artifact no longer tells the classes apart. At inference the fine-tuned model runs
  without ``h``. :class:`AClArC`.

Several artifacts (say one header per class) are removed together by projecting out the span of
their directions: with ``V`` (d x k) an orthonormal basis of ``span(v_1, ..., v_k)``,

    h(a) = a - V V^T (a - z) = (I - V V^T) a + V V^T z,

where ``z`` is any point with ``v_i^T z = r_i`` for the references ``r_i`` of the directions (the
clean or artifact means along each ``v_i``); for k = 1 this is the map above.

``h`` is one affine layer (``nn.Linear`` with weight ``I - V V^T`` and bias ``V V^T z`` on the
flattened activations), so :func:`sciexplain.explain` explains the corrected model with its usual
rules and an exact ledger. The user's model is never modified: the wrappers hold a copy.
How much a corrected model still uses the artifact is measured by :mod:`sciexplain.analysis.clarc_report`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import InputError, MissingDependencyError

__all__ = ["ArtifactDirection", "artifact_direction", "ArtifactProjection", "PClArC", "AClArC"]

_MAX_FEATURES = 16384  # the projection is a dense D x D matrix: 1 GiB of float32 at D = 16384


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n][:20]
        raise InputError(f"the model has no submodule {layer!r}; named submodules are e.g. {names}")
    return modules[layer]


def _set_module(model: nn.Module, layer: str, new: nn.Module) -> None:
    parent_name, _, child = layer.rpartition(".")
    parent = _module(model, parent_name) if parent_name else model
    setattr(parent, child, new)


def _as_tensor(x: Any, like: nn.Module) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    p = next(iter(like.parameters()), None)
    if p is not None:
        t = t.to(device=p.device, dtype=p.dtype if t.is_floating_point() else t.dtype)
    return t


@torch.no_grad()
def layer_activations(model: nn.Module, layer: str, x: Any, batch_size: int = 256) -> torch.Tensor:
    """The output of the named submodule for every sample of ``x`` (eval mode, the model left as it was)."""
    module = _module(model, layer)
    x = _as_tensor(x, model)
    outs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: outs.append(o.detach()))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(x), batch_size):
            model(x[s:s + batch_size])
    finally:
        handle.remove()
        model.train(was_training)
    if not outs or not isinstance(outs[0], torch.Tensor):
        raise InputError(f"submodule {layer!r} did not return a tensor")
    return torch.cat(outs)


@dataclass(frozen=True)
class ArtifactDirection:
    """A linear concept vector of an artifact in one layer's activations.

    Attributes
    ----------
    layer : str
        The named submodule whose output ``a`` the direction lives in.
    vector : torch.Tensor
        ``v``, unit length, shaped like one sample's activations.
    artifact_value, clean_value : float
        ``v^T mean(a)`` over the artifact and over the clean samples: the references ``v^T z`` of
        A-ClArC and P-ClArC.
    method : str
        How ``v`` was found (see :func:`artifact_direction`).
    """

    layer: str
    vector: torch.Tensor
    artifact_value: float
    clean_value: float
    method: str

    @property
    def separation(self) -> float:
        """``artifact_value - clean_value``: how far the two means lie apart along ``v``."""
        return self.artifact_value - self.clean_value


def artifact_direction(model: nn.Module, layer: str, x_artifact: Any, x_clean: Any, *,
                       method: str = "mean-difference", batch_size: int = 256) -> ArtifactDirection:
    """The artifact's direction ``v`` in a layer's activations, from samples with and without it.

    Parameters
    ----------
    model : torch.nn.Module
        Left unchanged.
    layer : str
        A named submodule (``dict(model.named_modules())``), e.g. ``"features.4"``.
    x_artifact, x_clean : array or tensor
        Inputs with the artifact (e.g. the cluster SpRAy found) and without it.
    method : {"mean-difference", "logistic"}
        ``"mean-difference"``: ``v = mean(a | artifact) - mean(a | clean)``, normalised (the
        "pattern" of the artifact signal; it points where the artifact moves the activations).
        ``"logistic"``: the normal of an L2-regularised logistic regression separating the two sets
        (a linear classifier's normal, the CAV of Kim et al. 2018 that the paper uses with a linear
        SVM; scikit-learn), oriented so that artifact samples lie on the positive side.

    Returns
    -------
    ArtifactDirection
    """
    if method not in ("mean-difference", "logistic"):
        raise InputError(f"method must be 'mean-difference' or 'logistic', got {method!r}")
    a_art = layer_activations(model, layer, x_artifact, batch_size).double()
    a_cln = layer_activations(model, layer, x_clean, batch_size).double()
    if len(a_art) < 1 or len(a_cln) < 1:
        raise InputError("artifact_direction needs at least one artifact and one clean sample")
    shape = a_art.shape[1:]
    A, C = a_art.reshape(len(a_art), -1), a_cln.reshape(len(a_cln), -1)
    if method == "mean-difference":
        v = A.mean(0) - C.mean(0)
    else:
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as err:  # pragma: no cover
            raise MissingDependencyError("method='logistic' needs scikit-learn: pip install scikit-learn") from err
        X = torch.cat([A, C]).cpu().numpy()
        y = np.r_[np.ones(len(A)), np.zeros(len(C))]
        scale = X.std(0).mean() or 1.0
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(X / scale, y)
        v = torch.as_tensor(clf.coef_[0], dtype=torch.float64)
    norm = torch.linalg.vector_norm(v)
    if not torch.isfinite(norm) or norm <= 0:
        raise InputError(f"the artifact and clean activations of {layer!r} do not differ: no direction to remove")
    v = v / norm
    return ArtifactDirection(layer=layer, vector=v.reshape(shape).float().cpu(),
                             artifact_value=float(A.mean(0) @ v), clean_value=float(C.mean(0) @ v), method=method)


class ArtifactProjection(nn.Sequential):
    """``h(a) = a - V V^T (a - z)``: the components of ``a`` in the artifact span set to those of ``z``.

    One direction ``v`` (``V = v / |v|``): ``h(a) = (I - v v^T) a + r v`` with ``r = v^T z``.
    Several directions ``v_1, ..., v_k``: ``V`` (d x k) is an orthonormal basis of their span (QR
    of the unit directions) and ``z`` any point with ``v_i^T z = r_i`` (unit ``v_i``), so
    ``V^T z = R^-T r`` with ``[v_1 ... v_k] = V R``; the bias ``V V^T z`` does not depend on which
    such ``z``. An ``nn.Flatten``, one ``nn.Linear`` (weight ``I - V V^T``, bias ``V V^T z``) and an
    ``nn.Unflatten``, so every LRP rule for dense layers applies to it.

    Parameters
    ----------
    direction : torch.Tensor
        One direction shaped like one sample's activations, or ``k`` directions stacked along a
        first dim ``(k, *shape)`` when ``reference`` is a sequence.
    reference : float or sequence of float
        ``r = v^T z`` along the unit direction; a sequence of ``k`` for ``k`` directions.

    Attributes
    ----------
    reference : float or tuple of float
        As given (a tuple for several directions).
    basis : torch.Tensor
        ``V``, float64, shape ``(d, k)``, orthonormal columns.
    """

    def __init__(self, direction: torch.Tensor, reference: float | Sequence[float] | torch.Tensor) -> None:
        several = _is_sequence(reference)
        refs = [float(r) for r in (reference if several else [reference])]
        vectors = direction.detach() if several else direction.detach()[None]
        if len(vectors) != len(refs) or len(refs) == 0:
            raise InputError(f"{len(vectors)} directions but {len(refs)} references: give one reference per "
                             "direction (directions stacked along the first dim)")
        shape = tuple(vectors.shape[1:])
        flat = vectors.reshape(len(vectors), -1).double().cpu()
        d = flat.shape[1]
        if d > _MAX_FEATURES:
            raise InputError(f"the layer has {d} activations per sample; the projection is a dense {d} x {d} "
                             f"matrix: choose a later (smaller) layer, at most {_MAX_FEATURES} activations")
        basis, coefficients = _orthonormal_span(flat, torch.tensor(refs, dtype=torch.float64))
        linear = nn.utils.skip_init(nn.Linear, d, d)  # no random init: it would draw from the caller's RNG
        with torch.no_grad():
            if basis.shape[1] == 1:  # one direction: (I - v v^T) a + r v, as the single-artifact model is written
                v = basis[:, 0]
                weight, bias = torch.eye(d, dtype=torch.float64) - torch.outer(v, v), float(coefficients[0]) * v
            else:
                weight, bias = torch.eye(d, dtype=torch.float64) - basis @ basis.T, basis @ coefficients
            linear.weight.copy_(weight.float())
            linear.bias.copy_(bias.float())
        linear.requires_grad_(False)
        super().__init__(nn.Flatten(), linear, nn.Unflatten(1, shape))
        self.reference = tuple(refs) if several else refs[0]
        self.basis = basis


def _is_sequence(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dim() > 0
    if isinstance(x, np.ndarray):
        return x.ndim > 0
    return isinstance(x, Sequence) and not isinstance(x, str)


def _orthonormal_span(vectors: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V, V^T z)`` for float64 directions ``(k, d)`` and references ``r_i = u_i^T z`` along the unit ``u_i``."""
    units = []
    for i, u in enumerate(vectors):
        norm = torch.linalg.vector_norm(u)
        if not torch.isfinite(norm) or norm <= 0:
            raise InputError(f"direction {i} is zero or not finite: nothing to project out")
        units.append(u / norm)
    if len(units) == 1:
        return units[0][:, None], references
    if len(units) > vectors.shape[1]:
        raise InputError(f"{len(units)} directions in {vectors.shape[1]} activations are linearly dependent")
    U = torch.stack(units, 1)  # (d, k), unit columns
    Q, R = torch.linalg.qr(U)  # U = Q R
    # unit columns: |R_ii| is the part of u_i outside the span of the earlier ones (1: orthogonal, 0: inside)
    dependent = np.flatnonzero(R.diagonal().abs().numpy() < 1e-6)
    if len(dependent):
        raise InputError(f"direction {int(dependent[0])} lies in the span of the ones before it (linearly "
                         "dependent directions have no single reference point z): drop it")
    # U^T z = r  <=>  R^T (Q^T z) = r
    coefficients = torch.linalg.solve_triangular(R.T, references[:, None], upper=False)[:, 0]
    return Q, coefficients


def _with_projection(model: nn.Module, layer: str, projection: nn.Module) -> None:
    _set_module(model, layer, nn.Sequential(_module(model, layer), projection))


Directions = ArtifactDirection | Sequence[ArtifactDirection] | torch.Tensor


class PClArC(nn.Module):
    """Projective ClArC: the model with the artifact projected out of a layer at inference.

    ``h(a) = a - v v^T (a - z)`` after ``layer`` (Anders et al. 2022, Sec. 4: P-ClArC), with
    ``v^T z`` the clean samples' mean along ``v`` (``direction.clean_value``) unless ``reference``
    is given. Several directions (several artifacts, e.g. one per class) are projected out
    together: ``h(a) = a - V V^T (a - z)`` with ``V`` an orthonormal basis of their span and
    ``v_i^T z`` the clean mean along each (see :class:`ArtifactProjection`). No training. The
    wrapped model is a copy; the user's model is untouched.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str
        The named submodule after whose output the projection runs (``direction.layer`` if None).
    direction : ArtifactDirection, sequence of ArtifactDirection, or torch.Tensor
        ``v``, or several directions of the same layer. A tensor needs ``layer`` and
        ``reference``: shaped like one sample's activations with one ``reference``, or
        ``(k, *shape)`` (e.g. ``(k, d)``) with ``k`` references.
    reference : float or sequence of float, optional
        ``v^T z`` (per direction; default: each direction's ``clean_value``).
    """

    def __init__(self, model: nn.Module, layer: str | None, direction: Directions,
                 reference: float | Sequence[float] | None = None) -> None:
        super().__init__()
        vectors, layer, reference = _unpack(direction, layer, reference, "clean_value")
        self.layer = layer
        self.model = copy.deepcopy(model)
        _with_projection(self.model, layer, ArtifactProjection(vectors, reference))
        self.eval()

    @property
    def projection(self) -> ArtifactProjection:
        """The projection module inside the copy (registered once, at ``<layer>.1``)."""
        return _module(self.model, self.layer)[1]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The copy's forward with the projection inside."""
        return self.model(*args, **kwargs)


def _unpack(direction: Any, layer: str | None, reference: Any,
            which: str) -> tuple[torch.Tensor, str, float | tuple[float, ...]]:
    """(direction(s), layer, reference(s)) for :class:`ArtifactProjection`: a tuple of references for several."""
    if isinstance(direction, ArtifactDirection) and _is_sequence(reference):
        direction = [direction]
    if isinstance(direction, ArtifactDirection):
        if layer is not None and layer != direction.layer:
            raise InputError(f"the direction was found in layer {direction.layer!r}, not {layer!r}")
        return direction.vector, direction.layer, float(getattr(direction, which) if reference is None else reference)
    if isinstance(direction, Sequence) and direction and all(isinstance(d, ArtifactDirection) for d in direction):
        layers = sorted({d.layer for d in direction})
        if len(layers) > 1:
            raise InputError(f"the directions were found in different layers {layers}: project each layer's "
                             "directions with its own wrapper")
        if layer is not None and layer != layers[0]:
            raise InputError(f"the directions were found in layer {layers[0]!r}, not {layer!r}")
        shapes = {tuple(d.vector.shape) for d in direction}
        if len(shapes) > 1:
            raise InputError(f"the directions have different shapes {sorted(shapes)}")
        refs = [float(getattr(d, which)) for d in direction] if reference is None else _references(reference)
        if len(refs) != len(direction):
            raise InputError(f"{len(direction)} directions but {len(refs)} references")
        return torch.stack([d.vector for d in direction]), layers[0], tuple(refs)
    if not isinstance(direction, torch.Tensor) or layer is None or reference is None:
        raise InputError("pass an ArtifactDirection (from artifact_direction) or a list of them, or a tensor with "
                         "layer= and reference= (a (k, d) tensor of k directions with k references)")
    if _is_sequence(reference):
        refs = _references(reference)
        if direction.dim() < 2 or len(direction) != len(refs):
            raise InputError(f"{len(refs)} references need a tensor of {len(refs)} directions stacked along its "
                             f"first dim, got shape {tuple(direction.shape)}")
        return direction, layer, tuple(refs)
    return direction, layer, float(reference)


def _references(reference: Any) -> list[float]:
    return [float(r) for r in (reference.tolist() if isinstance(reference, (torch.Tensor, np.ndarray)) else reference)]


class _AutogradFrom(nn.Module):
    """Runs ``module``, then turns autograd on for the rest of the forward.

    :meth:`AClArC.fit` runs the model under ``torch.no_grad()``: the frozen layers below ``layer``
    build no graph, and only the layers above are differentiated.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        out = self.module(a)
        torch.set_grad_enabled(True)  # the no_grad block in fit restores the caller's mode on exit
        return out


class AClArC(nn.Module):
    """Augmentative ClArC: fine-tune the model on samples to which the artifact is added.

    During :meth:`fit`, ``h(a) = a - v v^T (a - z)`` with ``v^T z`` the artifact samples' mean along
    ``v`` (``direction.artifact_value``) runs after ``layer``, so every training sample of every
    class carries the artifact, and the parameters after ``layer`` are fine-tuned with
    cross-entropy (Anders et al. 2022, Sec. 4: A-ClArC). The model then no longer links the artifact
    to one class. Several directions (several artifacts) are added together:
    ``h(a) = a - V V^T (a - z)`` with ``V`` an orthonormal basis of their span and ``v_i^T z`` each
    direction's artifact mean (see :class:`ArtifactProjection`). At inference the fine-tuned copy
    runs without ``h``; the user's model is untouched.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str
        The named submodule after whose output ``h`` runs during fitting (``direction.layer`` if None).
    direction : ArtifactDirection, sequence of ArtifactDirection, or torch.Tensor
        As for :class:`PClArC`.
    reference : float or sequence of float, optional
        ``v^T z`` (per direction; default: each direction's ``artifact_value``).
    """

    def __init__(self, model: nn.Module, layer: str | None, direction: Directions,
                 reference: float | Sequence[float] | None = None) -> None:
        super().__init__()
        vectors, layer, reference = _unpack(direction, layer, reference, "artifact_value")
        self.layer = layer
        self.model = copy.deepcopy(model)
        self.eval()
        # kept outside the module tree: it runs only inside fit()
        self.__dict__["projection"] = ArtifactProjection(vectors, reference)

    def _split(self) -> tuple[list[nn.Parameter], list[nn.Module]]:
        """(the parameters registered after ``layer``, the modules registered up to it and ``layer`` itself)."""
        frozen: set[int] = set()
        below: list[nn.Module] = []
        ancestors = {self.layer.rsplit(".", i)[0] for i in range(1, self.layer.count(".") + 1)} | {""}
        for name, module in self.model.named_modules():
            frozen.update(id(p) for p in module.parameters(recurse=False))
            if name == self.layer:
                frozen.update(id(p) for p in module.parameters())
                below.append(module)
                break
            if name not in ancestors:
                below.append(module)
        return [p for p in self.model.parameters() if id(p) not in frozen], below

    def fit(self, x: Any, y: Any, *, epochs: int = 3, lr: float = 1e-3, batch_size: int = 64,
            seed: int = 0) -> AClArC:
        """Fine-tune the layers after ``layer`` (in registration order) on ``(x, y)`` with the artifact added.

        The layers up to ``layer`` are frozen: they run in eval mode (their dropout off, their
        batch-norm statistics kept) and without autograd, so only the layers above are
        differentiated. The layers above run in training mode (their dropout on).

        Parameters
        ----------
        x, y : array or tensor
            Training inputs (all classes) and their labels.
        epochs, lr, batch_size
            Adam with learning rate ``lr`` on cross-entropy, ``epochs`` passes in batches.
        seed : int
            Seeds the batch order and every random draw of the forward passes (dropout): the same
            seed, data and thread count give the same weights. The caller's global random state
            is left as it was (the draws run on a forked RNG).

        Returns
        -------
        AClArC
            ``self``, in eval mode.
        """
        x = _as_tensor(x, self.model)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=x.device)
        if len(x) != len(y):
            raise InputError(f"x has {len(x)} samples but y has {len(y)} labels")
        params, below = self._split()
        if not params:
            raise InputError(f"no parameters after layer {self.layer!r} to fine-tune")
        original = _module(self.model, self.layer)
        _set_module(self.model, self.layer, nn.Sequential(original, _AutogradFrom(self.projection)))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(params, lr=lr)
        cuda = x.device.type == "cuda"
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if cuda else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.default_generator.manual_seed(seed)
                if cuda:
                    torch.cuda.default_generators[devices[0]].manual_seed(seed)
                self.model.train()
                for module in below:
                    module.eval()
                for _ in range(epochs):
                    for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                        idx = idx.to(x.device)
                        opt.zero_grad()
                        with torch.no_grad():  # until the projection: see _AutogradFrom
                            out = self.model(x[idx])
                        if not out.requires_grad:
                            raise InputError(f"the output does not depend on the parameters after layer "
                                             f"{self.layer!r} (does the model's forward run {self.layer!r}?)")
                        nn.functional.cross_entropy(out, y[idx]).backward()
                        opt.step()
        finally:
            _set_module(self.model, self.layer, original)
            self.model.eval()
        self.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The fine-tuned copy's forward (no projection at inference)."""
        return self.model(*args, **kwargs)
