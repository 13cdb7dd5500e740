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

``h`` is one affine layer (``nn.Linear`` with weight ``I - v v^T`` and bias ``(v^T z) v`` on the
flattened activations), so :func:`sciexplain.explain` explains the corrected model with its usual
rules and an exact ledger. The user's model is never modified: the wrappers hold a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._version import __version__
from ..errors import InputError, MissingDependencyError

__all__ = ["ArtifactDirection", "artifact_direction", "ArtifactProjection", "PClArC", "AClArC", "clarc_report",
           "relevance_share"]

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
    """``h(a) = (I - v v^T) a + r v``: the component of ``a`` along ``v`` set to ``r = v^T z``.

    An ``nn.Flatten``, one ``nn.Linear`` (weight ``I - v v^T``, bias ``r v``) and an
    ``nn.Unflatten``, so every LRP rule for dense layers applies to it.
    """

    def __init__(self, direction: torch.Tensor, reference: float) -> None:
        shape = tuple(direction.shape)
        v = direction.detach().reshape(-1).double()
        d = v.numel()
        if d > _MAX_FEATURES:
            raise InputError(f"the layer has {d} activations per sample; the projection is a dense {d} x {d} "
                             f"matrix: choose a later (smaller) layer, at most {_MAX_FEATURES} activations")
        v = v / torch.linalg.vector_norm(v)
        linear = nn.Linear(d, d)
        with torch.no_grad():
            linear.weight.copy_((torch.eye(d, dtype=torch.float64) - torch.outer(v, v)).float())
            linear.bias.copy_((float(reference) * v).float())
        linear.requires_grad_(False)
        super().__init__(nn.Flatten(), linear, nn.Unflatten(1, shape))
        self.reference = float(reference)


def _with_projection(model: nn.Module, layer: str, projection: nn.Module) -> None:
    _set_module(model, layer, nn.Sequential(_module(model, layer), projection))


class PClArC(nn.Module):
    """Projective ClArC: the model with the artifact projected out of a layer at inference.

    ``h(a) = a - v v^T (a - z)`` after ``layer`` (Anders et al. 2022, Sec. 4: P-ClArC), with
    ``v^T z`` the clean samples' mean along ``v`` (``direction.clean_value``) unless ``reference``
    is given. No training. The wrapped model is a copy; the user's model is untouched.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str
        The named submodule after whose output the projection runs (``direction.layer`` if None).
    direction : ArtifactDirection or torch.Tensor
        ``v``; a tensor needs ``reference``.
    reference : float, optional
        ``v^T z``.
    """

    def __init__(self, model: nn.Module, layer: str | None, direction: ArtifactDirection | torch.Tensor,
                 reference: float | None = None) -> None:
        super().__init__()
        vector, layer, reference = _unpack(direction, layer, reference, "clean_value")
        self.layer = layer
        self.model = copy.deepcopy(model)
        _with_projection(self.model, layer, ArtifactProjection(vector, reference))
        self.eval()

    @property
    def projection(self) -> ArtifactProjection:
        """The projection module inside the copy (registered once, at ``<layer>.1``)."""
        return _module(self.model, self.layer)[1]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The copy's forward with the projection inside."""
        return self.model(*args, **kwargs)


def _unpack(direction: Any, layer: str | None, reference: float | None, which: str) -> tuple[torch.Tensor, str, float]:
    if isinstance(direction, ArtifactDirection):
        if layer is not None and layer != direction.layer:
            raise InputError(f"the direction was found in layer {direction.layer!r}, not {layer!r}")
        return direction.vector, direction.layer, float(getattr(direction, which) if reference is None else reference)
    if not isinstance(direction, torch.Tensor) or layer is None or reference is None:
        raise InputError("pass an ArtifactDirection (from artifact_direction), or a tensor with layer= and reference=")
    return direction, layer, float(reference)


class AClArC(nn.Module):
    """Augmentative ClArC: fine-tune the model on samples to which the artifact is added.

    During :meth:`fit`, ``h(a) = a - v v^T (a - z)`` with ``v^T z`` the artifact samples' mean along
    ``v`` (``direction.artifact_value``) runs after ``layer``, so every training sample of every
    class carries the artifact, and the parameters after ``layer`` are fine-tuned with
    cross-entropy (Anders et al. 2022, Sec. 4: A-ClArC). The model then no longer links the artifact
    to one class. At inference the fine-tuned copy runs without ``h``; the user's model is untouched.
    """

    def __init__(self, model: nn.Module, layer: str | None, direction: ArtifactDirection | torch.Tensor,
                 reference: float | None = None) -> None:
        super().__init__()
        vector, layer, reference = _unpack(direction, layer, reference, "artifact_value")
        self.layer = layer
        self.model = copy.deepcopy(model)
        self.eval()
        # kept outside the module tree: it runs only inside fit()
        self.__dict__["projection"] = ArtifactProjection(vector, reference)

    def _parameters_after(self) -> list[nn.Parameter]:
        frozen: set[int] = set()
        for name, module in self.model.named_modules():
            frozen.update(id(p) for p in module.parameters(recurse=False))
            if name == self.layer:
                frozen.update(id(p) for p in module.parameters())
                break
        return [p for p in self.model.parameters() if id(p) not in frozen]

    def fit(self, x: Any, y: Any, *, epochs: int = 3, lr: float = 1e-3, batch_size: int = 64,
            seed: int = 0) -> AClArC:
        """Fine-tune the layers after ``layer`` (in registration order) on ``(x, y)`` with the artifact added.

        Returns ``self``, in eval mode.
        """
        x = _as_tensor(x, self.model)
        y = torch.as_tensor(np.asarray(y), dtype=torch.long, device=x.device)
        if len(x) != len(y):
            raise InputError(f"x has {len(x)} samples but y has {len(y)} labels")
        params = self._parameters_after()
        if not params:
            raise InputError(f"no parameters after layer {self.layer!r} to fine-tune")
        original = _module(self.model, self.layer)
        _set_module(self.model, self.layer, nn.Sequential(original, self.projection))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(params, lr=lr)
        try:
            self.model.train()
            for _ in range(epochs):
                for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(self.model(x[idx.to(x.device)]), y[idx.to(x.device)])
                    loss.backward()
                    opt.step()
        finally:
            _set_module(self.model, self.layer, original)
            self.model.eval()
        self.eval()
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The fine-tuned copy's forward (no projection at inference)."""
        return self.model(*args, **kwargs)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Any, y: Any, batch_size: int = 512) -> float:
    x = _as_tensor(x, model)
    y = np.asarray(y)
    was = model.training
    model.eval()
    try:
        pred = torch.cat([model(x[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(x), batch_size)])
    finally:
        model.train(was)
    return float((pred.numpy() == y).mean())


def relevance_share(R: xr.DataArray, mask: Any) -> np.ndarray:
    """Per sample: the share of absolute relevance inside ``mask``, ``sum_mask |R| / sum |R|``.

    ``mask`` is boolean, shaped like one sample's map (or broadcastable to it).
    """
    values = np.abs(np.asarray(R.values, dtype=np.float64))
    m = np.broadcast_to(np.asarray(mask, dtype=bool), values.shape[1:])
    flat = values.reshape(len(values), -1)
    inside = (flat * m.reshape(1, -1)).sum(1)
    total = flat.sum(1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def clarc_report(models: Mapping[str, nn.Module], x_clean: Any, y_clean: Any, x_artifact: Any, y_artifact: Any,
                 mask: Any, *, explain_target: Any = None, **explain_kwargs: Any) -> xr.Dataset:
    """Accuracy on clean and on artifact data, and the artifact region's share of relevance, per model.

    Parameters
    ----------
    models : mapping of name -> torch.nn.Module
        E.g. ``{"original": model, "P-ClArC": PClArC(...), "A-ClArC": AClArC(...).fit(...)}``.
    x_clean, y_clean : the clean test inputs and labels.
    x_artifact, y_artifact : the same kind of inputs with the artifact planted, and their true labels.
    mask : boolean array
        Where the artifact lies in one input (shaped like one input sample).
    explain_target : optional
        The class explained on the artifact data (default: each model's prediction).
    **explain_kwargs
        Passed to :func:`sciexplain.explain` (``preset=...``).

    Returns
    -------
    xarray.Dataset
        Dim ``model``: ``accuracy_clean``, ``accuracy_artifact``, ``artifact_share`` (mean over the
        artifact samples of :func:`relevance_share` of the LRP explanation).
    """
    from ..explain.engine import explain

    names = list(models)
    acc_c, acc_a, share = [], [], []
    for name in names:
        m = models[name]
        acc_c.append(_accuracy(m, x_clean, y_clean))
        acc_a.append(_accuracy(m, x_artifact, y_artifact))
        R = explain(m, _as_tensor(x_artifact, m), explain_target, **explain_kwargs)
        share.append(float(relevance_share(R, mask).mean()))
    return xr.Dataset(
        {"accuracy_clean": ("model", acc_c), "accuracy_artifact": ("model", acc_a),
         "artifact_share": ("model", share)},
        coords={"model": names},
        attrs={"analysis": "ClArC report (Anders et al. 2022)", "sciexplain_version": __version__,
               "artifact_share": "mean over artifact samples of sum_mask |R| / sum |R|"},
    )
