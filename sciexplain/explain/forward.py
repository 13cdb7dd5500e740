"""The forward side of an explanation: validate the batch, run and record the model once.

Also the small pieces every method shares: the targets, the start vector of a backward walk,
the explained prediction, default dims, and explaining in eval mode with the user's training
flags restored.
"""

from __future__ import annotations

import copy
import itertools
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExplainWarning, InputError, SciexplainError, UnsupportedModelError
from ..kinds.activations import strip_squash_before_shape_ops
from ..kinds.registry import REGISTRY, Registry
from ..record.state_guard import parameters_kept
from ..record.tape import Ref, Tape, _flatten, record, record_call
from .inputs import ModelInputs, check_device
from .outputs import select_output

__all__ = ["Forward", "record_forward", "as_input", "targets", "eval_mode", "start_vector",
           "prediction", "default_dims", "explained_text", "float32_model", "to_float32"]


def _caller_stacklevel() -> int:
    """The stacklevel that attributes a warning to the first frame outside sciexplain."""
    import inspect
    import os
    pkg = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe().f_back, 1  # level 1 = the function that calls warn()
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(pkg + os.sep) and "contextlib" not in fname:
            return level
        frame, level = frame.f_back, level + 1
    return level


# explanations of one model may run concurrently (Dask's threaded scheduler shares the model
# object): the first to enter switches it to eval mode, the last to leave restores the flags
_EVAL_LOCK = threading.Lock()
_EVAL_USERS: dict[int, list] = {}  # id(model) -> [number of explanations inside, saved flags]


@contextmanager
def eval_mode(model: nn.Module):
    """Explain in eval mode; restore every module's own training flag afterwards, and the
    parameters and buffers that the model's forward writes in place (max-norm renormalisation
    inside ``forward``, :func:`~sciexplain.record.state_guard.parameters_kept`).

    Safe for concurrent explanations of the same model in several threads: the flags are saved
    by the first explanation that enters and restored when the last one leaves.
    """
    key = id(model)
    with _EVAL_LOCK:
        entry = _EVAL_USERS.get(key)
        if entry is None:
            flags = [(m, m.training) for m in model.modules()]
            entry = _EVAL_USERS[key] = [0, flags]
            for m, _ in flags:
                m.training = False
        else:
            flags = entry[1]
        entry[0] += 1
    if any(f for _, f in flags):
        warnings.warn("the model is in training mode; it is explained in eval mode (dropout off, "
                      "BatchNorm running statistics) and its training flag is restored afterwards",
                      ExplainWarning, stacklevel=_caller_stacklevel())
    try:
        with parameters_kept(model):
            yield
    finally:
        with _EVAL_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _EVAL_USERS[key]
                for m, f in entry[1]:
                    m.training = f


def as_input(x: Any) -> torch.Tensor:
    """Validate and copy the batch; the caller's array is never modified."""
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError("x is an object array; pass a numeric array or tensor")
        x = torch.from_numpy(np.array(x, copy=True))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor or numpy array of shape (batch, ...), got "
                         f"{type(x).__name__}; for data such as mne.Epochs install the matching "
                         "sciexplain plugin")
    check_device(x)
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"x has dtype {x.dtype}; pass real numbers (or integer token ids)")
    if x.ndim < 2:
        raise InputError(f"x has shape {tuple(x.shape)}: it needs a batch dim first, shape "
                         "(batch, ...); for a single sample pass x[None]")
    if x.shape[0] == 0:
        raise InputError("x is an empty batch (0 samples): nothing to explain")
    if x.numel() == 0:
        raise InputError(f"x has shape {tuple(x.shape)} with a zero-sized dim")
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):  # fast path: one reduction
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise InputError(f"x contains {int(bad.sum())} NaN/Inf value(s), the first at index {idx}; "
                             "clean or impute the data before explaining")
    return x.detach().clone()


#: floating-point types in which a model is explained on a float32 copy
LOW_PRECISION = (torch.float16, torch.bfloat16)


def low_precision(model: nn.Module) -> torch.dtype | None:
    """The half-precision dtype of the model's parameters or buffers, or None."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.dtype in LOW_PRECISION:
            return t.dtype
    return None


def float32_model(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The model to explain and a note: a float16 / bfloat16 model is explained on a float32 copy.

    The LRP rules divide by sums of contributions (z_j + eps): in half precision the stabiliser
    vanishes below the type's resolution and the ledger cannot balance beyond three digits, so
    the forward pass and every rule run in float32 on a copy of the model (the user's model stays
    untouched), and the ledger is exact in float32 terms. The prediction is the float32 copy's.
    """
    dtype = low_precision(model)
    if dtype is None:
        return model, None
    copy_ = copy.deepcopy(model).float()
    return copy_, (f"the {str(dtype).replace('torch.', '')} model was explained on a float32 copy: the "
                   "prediction and the relevance are float32 computations")


def to_float32(x: torch.Tensor) -> torch.Tensor:
    """A half-precision input as float32 (other tensors unchanged)."""
    return x.float() if x.dtype in LOW_PRECISION else x


def targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    B = logits.shape[0]
    K = logits.shape[1] if logits.ndim == 2 else 1
    if target is None:
        t = logits.argmax(dim=1) if logits.ndim == 2 else torch.zeros(B, dtype=torch.long, device="cpu")
        return t.detach().long().cpu()
    try:
        t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target, device="cpu")
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"target must be an int, one int per sample, or None; got {target!r}")
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise InputError(f"target must be integer class indices, got {target!r}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(B)
    if t.numel() != B:
        raise InputError(f"target has {t.numel()} entries for a batch of {B}; give one int, "
                         "one per sample, or None for the predicted class")
    if bool(((t < 0) | (t >= K)).any()):
        raise InputError(f"target {t.tolist()} out of range: the model has {K} output(s), "
                         f"valid classes are 0..{K - 1}")
    return t.clone()


@dataclass
class Forward:
    """One recorded forward pass: the tape, the input leaf and the explained output.

    With several explained inputs, ``leaves`` holds one leaf per input (input node ``i`` of the
    tape is ``leaves[i]``) and ``leaf`` is the first."""

    tape: Tape
    leaf: torch.Tensor
    logits_ref: Ref
    logits: torch.Tensor
    squash: str | None
    steps: dict = field(default_factory=dict)  # node index -> plan.Step, filled by the plan
    leaves: list = field(default_factory=list)

    def value(self, ref: Ref) -> torch.Tensor:
        return self.tape.node_of(ref).value(ref.k)


def _leaf_and_input(x: torch.Tensor, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The autograd leaf of an input, and the tensor the model is given (a clone of a leaf that
    requires grad: in-place operations on such a leaf are not allowed)."""
    # x is already a private copy (as_input); the model may even modify its input in place
    leaf = x.detach()
    if leaf.is_floating_point() and grad:
        leaf.requires_grad_(True)
        return leaf, leaf.clone()
    return leaf, leaf


def record_forward(model: nn.Module, x: torch.Tensor | ModelInputs, grad: bool,
                   leaf_names: set[str] | frozenset = frozenset(), registry: Registry = REGISTRY,
                   output: int | str | None = None, batch: int | None = None) -> Forward:
    """Run the model once on the private batch ``x`` and return its recorded :class:`Forward`.

    With ``grad`` the recording keeps the autograd graph (LRP's epsilon layers reuse it, gradient
    methods differentiate it). A final softmax / log-softmax / sigmoid is stripped: the
    explained output is the logits. ``x`` may be several inputs (:class:`ModelInputs`, one input
    node per explained input); ``output`` chooses the explained output of a model that returns
    a tuple or a dict (:func:`sciexplain.explain.outputs.select_output`); ``batch`` is the
    number of output rows expected (default: the input batch).
    """
    try:
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            if isinstance(x, ModelInputs):
                pairs = {name: _leaf_and_input(x.values[name], grad) for name in x.explained}
                live = {name: inp for name, (_, inp) in pairs.items()}
                args, kwargs = x.call(live)
                tape = record_call(model, args, kwargs, live, leaf_names, registry.leaf_types())
                leaves = [leaf for leaf, _ in pairs.values()]
            else:
                leaf, inp = _leaf_and_input(x, grad)
                tape = record(model, inp, leaf_names, registry.leaf_types())
                leaves = [leaf]
    except SciexplainError:  # the library's own errors (from plugins' modules too) say what to do
        raise
    except Exception as err:
        what = (f"the inputs {x.describe()}" if isinstance(x, ModelInputs) else
                f"x of shape {tuple(x.shape)} and dtype {x.dtype}")
        raise InputError(f"the model's forward pass failed on {what}: {type(err).__name__}: {err}. Check "
                         "that x has the shape and scaling the model expects (batch dim first).") from err
    out = select_output(tape.output, output)
    ref = next((r for o, r in zip(_flatten(tape.output), tape.output_refs) if o is out), None)
    if ref is None:
        raise UnsupportedModelError("the model output does not depend on the input x (or depends on "
                                    "it only through operations that are not differentiable)")
    squash = None
    node = tape.node_of(ref)
    kind = registry.classify(node)
    if kind.final_squash:
        squash = kind.detail
        ref = node.parents[0]
    else:
        squash = strip_squash_before_shape_ops(tape, ref, registry)
    logits = tape.node_of(ref).value(ref.k)
    B = (x.batch if isinstance(x, ModelInputs) else x.shape[0]) if batch is None else batch
    if logits.ndim not in (1, 2) or logits.shape[0] != B:
        raise UnsupportedModelError(f"the model output has shape {tuple(logits.shape)}; explanations "
                                    f"need (batch, n_outputs) or (batch,) with batch = {B}")
    return Forward(tape, leaves[0], ref, logits, squash, leaves=leaves)


def start_vector(logits: torch.Tensor, target: torch.Tensor, value: str) -> torch.Tensor:
    """What enters the backward walk at the output: the target's logit (``value="logit"``, LRP)
    or a one (``value="one"``, gradient-type walks), zero for the other outputs."""
    logits = logits.detach()
    if logits.ndim == 1:
        return logits.clone() if value == "logit" else torch.ones_like(logits)
    out = torch.zeros_like(logits)
    rows = torch.arange(logits.shape[0], device=logits.device)
    target = target.to(logits.device)
    out[rows, target] = logits[rows, target] if value == "logit" else 1.0
    return out


def prediction(logits: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    l = logits.detach().cpu()
    if l.ndim == 2:
        return l[torch.arange(l.shape[0], device="cpu"), t.cpu()].double().numpy()
    return l.double().numpy()


def default_dims(ndim: int) -> tuple[str, ...]:
    return ("sample",) + tuple(f"dim_{i}" for i in range(ndim - 1))


def explained_text(fw: Forward, max_pool: str) -> str:
    node = fw.tape.node_of(fw.logits_ref)
    text = f"output of {node.name}"
    if fw.squash:
        text += f" before the final {fw.squash}"
    return text + f"; max pooling: {max_pool}"
