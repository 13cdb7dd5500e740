"""Gradient-based methods beside LRP, returning the same labelled contract.

``gradient``            df/dx                                   decomposes nothing
``sensitivity``         (df/dx)^2 (Simonyan et al.; Montavon et al. 2017, Sec. 4.1)
                        sums to the squared gradient norm
``gradient_x_input``    x * df/dx, simple Taylor decomposition at the root 0; ``absorbed`` is
                        the Taylor remainder f(x) - sum R (f(0) plus higher-order terms)
``integrated_gradients`` (x - x') * mean gradient on the path from the baseline x'; sums to
                        f(x) - f(x') up to the integration error; ``absorbed`` = f(x) - sum R
``smoothgrad``          mean gradient over noisy copies                 decomposes nothing
``deconvnet``           backward pass with ReLUs replaced by ReLU on the signal
``guided_backprop``     backward pass that also masks negative signals  decomposes nothing

All of them run on the same recorded forward pass as LRP, so a final softmax is stripped the
same way and the explained quantity is the same logit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError, UnsupportedModelError
from ..rules.propagation import per_sample_sum
from ..kinds.context import local_vjp
from ..kinds.registry import REGISTRY
from ..record.op_names import IDENTITY_LIKE
from ..record.tape import Ref, replay_args

from .call import Call as Explainer
from .forward import default_dims, explained_text, prediction, start_vector, targets
from .walk import reverse_walk

if TYPE_CHECKING:  # pragma: no cover
    from .forward import Forward

_DECOMPOSES = {"gradient": "none", "sensitivity": "squared gradient norm", "gradient_x_input": "f(x)",
               "integrated_gradients": "f(x) - f(baseline)", "smoothgrad": "none", "deconvnet": "none",
               "guided_backprop": "none"}


def _select(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 2:
        return logits[torch.arange(logits.shape[0], device=logits.device), t.to(logits.device)]
    return logits


def _grad(ex: Explainer, x: torch.Tensor, t: torch.Tensor | None, target: Any = None):
    """Gradient of the target logit w.r.t. the input (or the embedding outputs for token input)."""
    fw = ex._forward(x, grad=True, leaf_names=set())
    if t is None:
        t = targets(target, fw.logits)
    sel = _select(fw.logits, t)
    if x.is_floating_point():
        (g,) = torch.autograd.grad(sel.sum(), fw.leaf, allow_unused=True)
        g = torch.zeros_like(fw.leaf) if g is None else g
        return fw, t, g, None
    emb = [n for n in fw.tape.nodes if REGISTRY.classify(n).category == "embedding" and n.parents
           and n.parents[0].node == 0]
    if not emb:
        raise UnsupportedModelError("integer input without an embedding lookup of it; gradient methods "
                                    "need a float input or an embedding of the token ids")
    outs = [n.outputs[0] for n in emb]
    grads = torch.autograd.grad(sel.sum(), outs, allow_unused=True)
    return fw, t, grads, outs


def run(ex: Explainer, x: torch.Tensor, target: Any, dims, coords):
    """Run ``ex.method`` (not LRP) and build the result."""
    from ..result.contract import build_result
    method = ex.method
    opts = dict(ex.options)
    attrs: dict[str, Any] = {}
    if method in ("gradient", "sensitivity", "gradient_x_input"):
        fw, t, g, embs = _grad(ex, x, None, target)
        if embs is None:
            R = {"gradient": g, "sensitivity": g ** 2, "gradient_x_input": g * x}[method]
        else:
            if method == "gradient":
                raise InputError("method='gradient' on token ids has no per-token value; use "
                                 "'gradient_x_input' or 'sensitivity'")
            R = sum((gi ** 2).sum(-1) if method == "sensitivity" else (gi * e.detach()).sum(-1)
                    for gi, e in zip(g, embs))
    elif method == "integrated_gradients":
        fw, t, R, attrs = _integrated_gradients(ex, x, target, opts)
    elif method == "smoothgrad":
        fw, t, R, attrs = _smoothgrad(ex, x, target, opts)
    else:
        fw, t, R = _modified_backward(ex, x, target, guided=method == "guided_backprop")
    R = R.detach()
    pred = prediction(fw.logits, t)
    decomposes = _DECOMPOSES[method]
    if decomposes.startswith("f(x)"):
        absorbed = pred - per_sample_sum(R).double().cpu().numpy()
        attrs["absorbed_note"] = ("absorbed = f(x) - sum(R): the Taylor remainder" if method == "gradient_x_input"
                                  else "absorbed = f(x) - sum(R): f(baseline) plus the integration error")
    else:
        absorbed = np.full(len(pred), np.nan)
        attrs["absorbed_note"] = "absorbed is defined for decompositions of f(x) only"
    attrs["explained"] = explained_text(fw, ex.max_pool)
    return build_result(R, dims=dims or default_dims(R.ndim), coords=coords, prediction=pred,
                        target=t.numpy(), absorbed=absorbed, method=method, rules="none",
                        decomposes=decomposes, attrs=attrs)


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, disable=not progress, total=math.ceil(n / batch_size))


def _integrated_gradients(ex: Explainer, x: torch.Tensor, target: Any, opts: dict):
    steps = int(opts.get("steps", 32))
    batch_size = int(opts.get("batch_size", 64))
    if steps < 1 or batch_size < 1:
        raise InputError("integrated_gradients: steps and batch_size must be >= 1")
    if not x.is_floating_point():
        raise InputError("integrated_gradients needs a float input (for token ids, interpolate embeddings)")
    baseline = opts.get("baseline", 0.0)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        base = torch.broadcast_to(base, x.shape).clone()
    except RuntimeError:
        raise InputError(f"baseline of shape {tuple(base.shape)} does not broadcast to x {tuple(x.shape)}") from None
    if not bool(torch.isfinite(base).all()):
        raise InputError("baseline contains NaN/Inf")
    fw, t, _, _ = _grad(ex, x, None, target)
    # midpoint rule on [0, 1]: exact for linear paths of piecewise-linear networks away from kinks
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    B = x.shape[0]
    total = torch.zeros_like(x)
    path = [(i, a) for a in alphas for i in range(B)]
    for s in _batches(len(path), batch_size, bool(opts.get("progress", False)), "integrated gradients"):
        chunk = path[s: s + batch_size]
        idx = torch.tensor([i for i, _ in chunk], device="cpu")  # targets stay on the CPU
        xi = idx.to(x.device)
        al = torch.stack([a for _, a in chunk]).reshape(-1, *[1] * (x.ndim - 1))
        xs = base[xi] + al * (x[xi] - base[xi])
        _, _, g, _ = _grad(ex, xs, t[idx])
        total.index_add_(0, xi, g.detach())
    R = (x - base) * total / steps
    fb, _, _, _ = _grad(ex, base, t)
    attrs = {"steps": steps, "baseline": float(base.flatten()[0]) if bool((base == base.flatten()[0]).all())
             else "tensor"}
    attrs["baseline_prediction"] = _select(fb.logits, t).detach().double().cpu().numpy()
    return fw, t, R, attrs


def _smoothgrad(ex: Explainer, x: torch.Tensor, target: Any, opts: dict):
    n = int(opts.get("n_samples", 50))
    noise = float(opts.get("noise", 0.15))
    batch_size = int(opts.get("batch_size", 64))
    if n < 1 or batch_size < 1 or not (noise >= 0):
        raise InputError("smoothgrad: n_samples and batch_size must be >= 1 and noise >= 0")
    if not x.is_floating_point():
        raise InputError("smoothgrad needs a float input")
    gen = torch.Generator(device="cpu").manual_seed(int(opts.get("seed", 0)))
    fw, t, _, _ = _grad(ex, x, None, target)
    B = x.shape[0]
    flat = x.reshape(B, -1)
    sigma = noise * (flat.max(dim=1).values - flat.min(dim=1).values)
    total = torch.zeros_like(x)
    jobs = [i for _ in range(n) for i in range(B)]
    for s in _batches(len(jobs), batch_size, bool(opts.get("progress", False)), "smoothgrad"):
        idx = torch.tensor(jobs[s: s + batch_size], device="cpu")  # targets stay on the CPU
        xi = idx.to(x.device)
        # the noise is drawn on the CPU, so a seed gives the same noise on every device
        eps = torch.randn((len(idx),) + tuple(x.shape[1:]), generator=gen, dtype=x.dtype, device="cpu").to(x.device)
        xs = x[xi] + eps * sigma[xi].reshape(-1, *[1] * (x.ndim - 1))
        _, _, g, _ = _grad(ex, xs, t[idx])
        total.index_add_(0, xi, g.detach())
    return fw, t, total / n, {"n_samples": n, "noise": noise, "seed": int(opts.get("seed", 0))}


def _modified_backward(ex: Explainer, x: torch.Tensor, target: Any, guided: bool):
    """Deconvnet / guided backprop: a backward walk over the tape with ReLUs modified."""
    if not x.is_floating_point():
        raise InputError("deconvnet/guided_backprop need a float input")
    fw: Forward = ex._forward(x, grad=False, leaf_names=set())
    t = targets(target, fw.logits)
    G = {fw.logits_ref: start_vector(fw.logits, t, "one")}
    name = "guided_backprop" if guided else "deconvnet"
    for node, outs in reverse_walk(fw, G):
        kind = REGISTRY.classify(node)
        if kind.category == "pass" and not kind.relu_like and kind.detail not in IDENTITY_LIKE:
            raise UnsupportedModelError(f"{name} is defined for ReLU networks; {node.name} is "
                                        f"{kind.detail}. Use gradient, LRP or another method.")
        grads = local_vjp(fw, node, outs)
        if kind.relu_like:
            (ref, g), = grads
            up = outs[0].clamp(min=0)
            if guided:
                g = up * _derivative(fw, node)  # positive signal, through units active in the forward pass
            else:
                g = up
            grads = [(ref, g)]
        for ref, g in grads:
            G[ref] = g if ref not in G else G[ref] + g
    R = G.get(Ref(0, 0), torch.zeros_like(x))
    return fw, t, R


def _derivative(fw: Forward, node) -> torch.Tensor:
    """Element-wise derivative of an activation at its recorded input."""
    x = fw.value(node.parents[0]).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        args, kwargs = replay_args(node, {node.parents[0]: x.clone()})
        y = node.target(*args, **kwargs)
        (d,) = torch.autograd.grad(y.sum(), x)
    return d
