"""Perturbation tests for EEG explanations: remove channel-time blocks, watch the logit.

Region perturbation (Samek et al. 2017) on epochs: the relevance of each channel is summed in
blocks of consecutive samples (``block`` samples long, one channel tall), the blocks are
ranked by that sum, and removed cumulatively, most relevant first (MoRF) or least relevant
first (LeRF), while the explained logit is recorded. A removed block is replaced by the
epoch's own mean of that channel (``kind="mean"``, the default: the block then carries no
deviation from the channel's level in that epoch) or by zero (``kind="zero"``: zero in the
model's input units, which for unreferenced offsets is a large change). A faithful
explanation makes the MoRF curve fall fast (large AOPC) and the LeRF curve stay high or
rise; a random order is the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sciexplain.errors import InputError

__all__ = ["BlockRemoval", "block_removal", "perturbation_comparison", "PerturbationResult",
           "DEFAULT_METHODS"]

#: methods compared by default: (row name, explain_epochs keyword arguments)
DEFAULT_METHODS: tuple[tuple[str, dict], ...] = (
    ("LRP", {"method": "lrp"}),
    ("gradient x input", {"method": "gradient_x_input"}),
    ("sensitivity", {"method": "sensitivity"}),
)


class BlockRemoval:
    """``removal(x_batch, mask) -> x_batch`` for :func:`sciexplain.evaluate.perturbation_curve`.

    ``x_batch`` is (epoch, channel, time) as the model sees it, ``mask`` a bool tensor of the
    same shape, True where removed. Removed entries become the epoch's mean of that channel
    over time, computed on the unperturbed epoch (``kind="mean"``), or 0 (``kind="zero"``).
    """

    def __init__(self, kind: str = "mean") -> None:
        if kind not in ("mean", "zero"):
            raise InputError(f"kind must be 'mean' (the epoch's channel mean) or 'zero', got {kind!r}")
        self.kind = kind

    def __call__(self, x_batch, mask):
        import torch

        if x_batch.ndim != 3 or mask.shape != x_batch.shape:
            raise InputError(f"block removal works on (epoch, channel, time) batches with a mask of the same "
                             f"shape, got x {tuple(x_batch.shape)} and mask {tuple(mask.shape)}")
        if self.kind == "zero":
            fill = torch.zeros_like(x_batch)
        else:
            fill = x_batch.mean(dim=-1, keepdim=True).expand_as(x_batch)
        return torch.where(mask, fill, x_batch)

    def __repr__(self) -> str:
        return f"BlockRemoval(kind={self.kind!r})"


def block_removal(kind: str = "mean") -> BlockRemoval:
    """The EEG removal strategy (see :class:`BlockRemoval`); ``EEGDomain.removal`` returns it."""
    return BlockRemoval(kind)


@dataclass
class PerturbationResult:
    """Curves and AOPC of :func:`perturbation_comparison`.

    Attributes
    ----------
    curves : dict of (method name, order) -> xarray.DataArray
        ``(epoch, step)`` curves from :func:`sciexplain.evaluate.perturbation_curve`.
    rows : list of dict
        Per method: ``method``, ``aopc_morf`` and ``aopc_lerf`` (means over epochs), and
        ``abpc = aopc_morf - aopc_lerf``, the mean area between the LeRF and the MoRF curve
        (larger is better).
    settings : dict
        Block size, steps, removal, number of epochs.
    """

    curves: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table, methods in order of MoRF AOPC (largest first)."""
        rows = sorted(self.rows, key=lambda r: -r["aopc_morf"])
        s = self.settings
        lines = [f"{s['n_epochs']} epochs, blocks of 1 channel x {s['block']} samples "
                 f"({s['n_blocks']} blocks), {s['steps']} steps, removal: {s['removal']}", "",
                 "| method | AOPC MoRF (higher is better) | AOPC LeRF (lower is better) | ABPC = MoRF - LeRF |",
                 "|---|---|---|---|"]
        for r in rows:
            lerf = "" if np.isnan(r["aopc_lerf"]) else f"{r['aopc_lerf']:.3f}"
            diff = "" if np.isnan(r["abpc"]) else f"{r['abpc']:.3f}"
            lines.append(f"| {r['method']} | {r['aopc_morf']:.3f} | {lerf} | {diff} |")
        return "\n".join(lines)


def perturbation_comparison(model: Any, epochs: Any, *, methods: Sequence[tuple[str, dict]] = DEFAULT_METHODS,
                            block: int = 4, steps: int | None = None, removal: str = "mean",
                            include_random: bool = True, target: Any = None, seed: int = 0,
                            explain_kwargs: dict | None = None) -> PerturbationResult:
    """MoRF and LeRF curves and AOPC of several explanation methods on the same epochs.

    Parameters
    ----------
    model : torch.nn.Module
    epochs : mne.Epochs
        The epochs to explain and perturb (as for :func:`explain_epochs`).
    methods : sequence of (name, explain_epochs keyword arguments)
        Default: LRP (the domain preset), gradient x input, sensitivity.
    block : int
        Samples per block (one channel tall); blocks at the end of the epoch may be shorter.
    steps : int, optional
        Blocks removed (one per step); default: half of all blocks.
    removal : {"mean", "zero"}
        See :class:`BlockRemoval`.
    include_random : bool
        Add a "random" row (random block order, seeded).
    target : optional
        The class explained and recorded (default: the predicted class).
    seed : int
        Seeds the random order.
    explain_kwargs : dict, optional
        Further arguments of :func:`explain_epochs` for every method (``scaling``, ``picks``...).

    Returns
    -------
    PerturbationResult
    """
    import sciexplain as sx

    from .explain import epochs_to_tensor, explain_epochs

    explain_kwargs = dict(explain_kwargs or {})
    tensor_kwargs = {k: v for k, v in explain_kwargs.items()
                     if k in ("scaling", "picks", "ch_names", "sfreq", "n_times", "allow_bads")}
    x, _ = epochs_to_tensor(epochs, model, **tensor_kwargs)
    n_ch, n_t = x.shape[1:]
    if int(block) < 1:
        raise InputError(f"block must be a positive number of samples, got {block!r}")
    n_blocks = n_ch * int(np.ceil(n_t / int(block)))
    steps = n_blocks // 2 if steps is None else int(steps)
    remover = block_removal(removal)
    result = PerturbationResult(settings={"block": int(block), "steps": steps, "removal": repr(remover),
                                          "n_epochs": int(x.shape[0]), "n_blocks": n_blocks, "seed": seed})
    first = None
    for name, kwargs in methods:
        R = explain_epochs(model, epochs, target, **{**explain_kwargs, **kwargs})
        first = R if first is None else first
        row = {"method": name}
        for order in ("morf", "lerf"):
            curve = sx.evaluate.perturbation_curve(model, x, R, steps=steps, order=order, removal=remover,
                                                   patch=(1, int(block)), seed=seed)
            result.curves[(name, order)] = curve
            row[f"aopc_{order}"] = float(sx.evaluate.aopc(curve).mean())
        row["abpc"] = row["aopc_morf"] - row["aopc_lerf"]
        result.rows.append(row)
    if include_random and first is not None:
        curve = sx.evaluate.perturbation_curve(model, x, first, steps=steps, order="random", removal=remover,
                                               patch=(1, int(block)), seed=seed)
        result.curves[("random", "random")] = curve
        result.rows.append({"method": "random", "aopc_morf": float(sx.evaluate.aopc(curve).mean()),
                            "aopc_lerf": float("nan"), "abpc": float("nan")})
    return result
