"""braindecode's EEG networks (ShallowFBCSPNet, Deep4Net, EEGNetv4, EEGConformer, ATCNet) as plugin models.

A braindecode network takes ``(batch, n_chans, n_times)`` and ends in a log-softmax; the plugin's
models carry ``n_channels``, ``n_times``, ``ch_names``, ``sfreq`` and ``scaling`` so that
:func:`sciexplain_eeg.fit` and :func:`sciexplain_eeg.explain_epochs` (``sx.explain(model, epochs)``)
can check and label epochs. :class:`BraindecodeEEG` wraps a braindecode network with those
attributes; :func:`make_braindecode` builds one from the registry :data:`ZOO` (architectures sized
for 1 s epochs at 100 Hz, the plugin's synthetic epochs, or with ``size="finger"`` for the 280 ms
FingerMovements epochs), :func:`wrap_braindecode` wraps a network built or trained elsewhere,
:func:`load_zoo` loads the weights shipped with the plugin (trained here on the synthetic
ground-truth epochs by ``benchmarks/bench_eeg_zoo.py``; their sha256 is checked), and
:func:`zoo_models` lists the registry with its measured numbers.

The registry itself (:data:`ZOO`, :func:`zoo_models`, the default presets and why) is
:mod:`sciexplain_eeg.zoo_registry`; its names are importable from here too.

The core explains the networks as braindecode builds them, with one exception that is adapted
here, not in the core: ATCNet's multi-head attention folds its heads into the batch dim
(``torch.cat(q.split(head_dim, -1), 0)``), which LRP cannot follow per sample. The wrappers swap
each such block for :class:`HeadsApartMHA`, the same computation with the heads on their own dim,
reusing the block's own ``nn.Linear`` layers (state dict keys unchanged); and ATCNet's ``MaxNormLinear``
rescales its weight in place in every forward, also in eval mode, which the wrappers restrict to
training mode so that the explained network is a fixed function. The registry's networks are
built without braindecode's final log-softmax (``add_log_softmax=False``), so they return logits like
the plugin's own networks; a wrapped network that keeps it is explained before it (the core strips a
final log-softmax), while perturbation curves then follow its log-probabilities.
"""

from __future__ import annotations

import copy
import hashlib
import json
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from sciexplain.errors import ComputationError, DataNotFoundError, InputError, MissingDependencyError

from .models import _EEGModel
from .zoo_registry import SIZES, ZOO, ZooEntry, _preset_name, conserving_preset, zoo_models, zoo_weights_path

__all__ = ["ZOO", "ZooEntry", "BraindecodeEEG", "HeadsApartMHA", "make_braindecode", "wrap_braindecode",
           "load_zoo", "zoo_models", "zoo_weights_path", "conserving_preset"]


class HeadsApartMHA(nn.Module):
    """ATCNet's multi-head attention with the heads on their own dim instead of folded into the batch.

    ``softmax(q_h k_h^T / sqrt(d)) v_h`` per head ``h``, heads concatenated along features, then
    ``fc_o`` and dropout: the computation of ``braindecode.models.atcnet._MHA``, with the same
    ``fc_q``, ``fc_k``, ``fc_v``, ``fc_o`` and ``dropout`` modules (so the same state dict keys).
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.head_dim = int(source.head_dim)
        self.n_heads = int(source.embed_dim) // self.head_dim
        self.fc_q, self.fc_k, self.fc_v = source.fc_q, source.fc_k, source.fc_v
        self.fc_o, self.dropout = source.fc_o, source.dropout

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, s, _ = t.shape
        return t.reshape(b, s, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """(batch, seq, input_dim) x 3 -> (batch, seq, output_dim)."""
        q, k, v = self._heads(self.fc_q(Q)), self._heads(self.fc_k(K)), self._heads(self.fc_v(V))
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), -1)
        h = (w @ v).transpose(1, 2)
        return self.dropout(self.fc_o(h.reshape(h.shape[0], h.shape[1], -1)))


def _max_norm_in_training_only(module: nn.Module) -> None:
    """Make a braindecode ``MaxNormLinear`` apply its weight constraint only in training mode.

    braindecode's ``MaxNormLinear.forward`` rescales its weight in place on every call, in eval mode
    too, by ``norm / (1e-5 + norm)`` even when the norm is within the limit: each forward shrinks
    the weights by about 1e-4 relative, so an explanation would not explain the model the caller
    keeps (and repeated calls drift). A constraint is a training device (Keras applies it after
    each optimiser step); with this the evaluated network is a fixed function.
    """
    original = type(module).forward

    def forward(X, _self=module, _original=original):
        if _self.training:
            return _original(_self, X)
        return nn.Linear.forward(_self, X)

    module.forward = forward


def _swap_attention(net: nn.Module) -> int:
    """Adapt a braindecode network in place (it must be the plugin's own copy) so that LRP can follow it.

    Every ``atcnet._MHA`` becomes :class:`HeadsApartMHA`, and every ``MaxNormLinear`` applies its
    constraint in training mode only (:func:`_max_norm_in_training_only`). Returns how many
    attention blocks were swapped.
    """
    swapped = 0
    for module in list(net.modules()):
        if type(module).__name__ == "MaxNormLinear" and isinstance(module, nn.Linear):
            _max_norm_in_training_only(module)
        for child_name, child in list(module.named_children()):
            if type(child).__name__ == "_MHA" and type(child).__module__.endswith("atcnet"):
                setattr(module, child_name, HeadsApartMHA(child))
                swapped += 1
    return swapped


class BraindecodeEEG(_EEGModel):
    """A braindecode network with the plugin's model attributes: input (batch, channel, time).

    Parameters
    ----------
    net : torch.nn.Module
        The braindecode network (used as given: wrap a copy, see :func:`wrap_braindecode`).
    n_channels, n_times, n_classes : int
        Its input shape and number of outputs.
    architecture : str
        The braindecode class name (the registry key).
    default_preset : str or mapping, optional
        The LRP preset used when :func:`sciexplain_eeg.explain_epochs` gets none; default the
        registry's choice for ``architecture``, else the plugin's default.
    default_preset_name : str, optional
        Its readable name (the result's ``preset`` attribute); default the registry's name when the
        preset is the registry's, else the preset's name or ``"custom mapping (base=...)"``.

    Attributes
    ----------
    net : torch.nn.Module
    ch_names, sfreq, scaling
        As for the plugin's other models (set by :func:`sciexplain_eeg.fit`).
    default_preset : str or dict
        A preset mapping is the model's own copy (changing it leaves the registry alone).
    default_preset_name : str
    params : dict
        The braindecode keyword arguments it was built with (empty when wrapped).
    """

    def __init__(self, net: nn.Module, n_channels: int, n_times: int, n_classes: int, *,
                 architecture: str, default_preset: str | Mapping[Any, Any] | None = None,
                 default_preset_name: str | None = None, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(n_channels, n_times, n_classes)
        self.net = net
        self.architecture = str(architecture)
        entry = ZOO.get(self.architecture)
        if default_preset is None:
            from .explain import DEFAULT_PRESET
            default_preset = entry.default_preset if entry is not None else DEFAULT_PRESET
            if default_preset_name is None and entry is not None:
                default_preset_name = entry.default_preset_name
        if not isinstance(default_preset, (str, Mapping)):
            raise InputError(f"default_preset must be a preset name or a preset mapping, got "
                             f"{type(default_preset).__name__}")
        self.default_preset = default_preset if isinstance(default_preset, str) else dict(default_preset)
        self.default_preset_name = str(default_preset_name or _preset_name(default_preset))
        self.params = dict(params or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (batch, n_classes): logits for the registry's networks."""
        self._check_input(x)
        return self.net(x)

    def extra_repr(self) -> str:
        return f"architecture={self.architecture!r}, default_preset={self.default_preset_name!r}"


def _braindecode_class(name: str):
    if name not in ZOO:
        raise InputError(f"unknown braindecode network {name!r}; the registry has {sorted(ZOO)}")
    try:
        import braindecode.models as bd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("the braindecode networks need braindecode 0.8.1: pip install --no-deps "
                          "braindecode==0.8.1 skorch einops torchinfo docstring-inheritance pandas h5py "
                          "(braindecode >= 1.0 imports torchaudio)") from exc
    return getattr(bd, name)


def make_braindecode(name: str, n_channels: int, n_times: int, *, n_classes: int = 2, sfreq: float = 100.0,
                     seed: int | None = 0, size: str = "synthetic", **params: Any) -> BraindecodeEEG:
    """Build a registry network for epochs of ``n_channels`` x ``n_times`` samples.

    Parameters
    ----------
    name : str
        A key of :data:`ZOO`.
    n_channels, n_times, n_classes : int
        Input shape and outputs.
    sfreq : float
        Sampling rate in Hz (ATCNet needs it; recorded as ``model.sfreq``).
    seed : int or None
        Seeds the initial weights (the global torch RNG is left as it was); None draws from it.
    size : {"synthetic", "finger"}
        Which of the registry's arguments: ``"synthetic"`` (:attr:`ZooEntry.params`, 1 s epochs at
        100 Hz) or ``"finger"`` (those updated with :attr:`ZooEntry.finger_params`, kernels and pooling
        short enough for FingerMovements' 28 samples).
    **params
        Override the registry's braindecode keyword arguments.

    Returns
    -------
    BraindecodeEEG
        In eval mode; ``ch_names`` and ``scaling`` stay None until :func:`sciexplain_eeg.fit`.
    """
    import warnings

    cls = _braindecode_class(name)
    if size not in SIZES:
        raise InputError(f"size must be one of {sorted(SIZES)}, not {size!r}")
    kwargs = {**ZOO[name].params, **(ZOO[name].finger_params if size == "finger" else {}), **params}
    if "add_log_softmax" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("add_log_softmax", False)  # logits, as the plugin's own networks return
    if name == "ATCNet":
        kwargs.setdefault("sfreq", float(sfreq))
        kwargs.setdefault("input_window_seconds", None)
    with warnings.catch_warnings():  # braindecode warns about its own deprecated argument names
        warnings.simplefilter("ignore")
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            try:
                net = cls(n_chans=int(n_channels), n_outputs=int(n_classes), n_times=int(n_times), **kwargs)
            except (ValueError, RuntimeError) as exc:
                raise InputError(f"braindecode could not build {name} for {n_channels} channels x {n_times} "
                                 f"samples with {kwargs}: {exc}. Shorter kernels or pooling (pass them as "
                                 "keyword arguments) fit shorter epochs.") from exc
    _swap_attention(net)
    model = BraindecodeEEG(net, n_channels, n_times, n_classes, architecture=name, params=kwargs)
    model.sfreq = float(sfreq)
    return model.eval()


def wrap_braindecode(net: nn.Module, *, ch_names: list[str] | None = None, sfreq: float | None = None,
                     scaling: float | None = None, default_preset: str | Mapping[Any, Any] | None = None,
                     default_preset_name: str | None = None) -> BraindecodeEEG:
    """Wrap a braindecode network built or trained elsewhere, so the plugin can check and label epochs.

    The network is copied (the caller's object is left untouched), attention blocks that fold heads
    into the batch are swapped for :class:`HeadsApartMHA`, and the copy is put in eval mode.

    Parameters
    ----------
    net : torch.nn.Module
        A braindecode model (``n_chans``, ``n_times``, ``n_outputs`` are read from it).
    ch_names : list of str, optional
        Its channels in training order; default the names in ``net.chs_info`` if braindecode has them.
    sfreq : float, optional
        Its sampling rate; default braindecode's, if it knows it.
    scaling : float, optional
        Factor from volts to its input units (1e6 if it was trained on microvolts).
    default_preset : str or mapping, optional
        The LRP preset for it; default the registry's choice for its class.
    default_preset_name : str, optional
        A readable name for ``default_preset`` (the result's ``preset`` attribute).

    Returns
    -------
    BraindecodeEEG
        In eval mode.
    """
    for attr in ("n_chans", "n_times", "n_outputs"):
        try:
            if getattr(net, attr) is None:
                raise ValueError
        except (AttributeError, ValueError):
            raise InputError(f"{type(net).__name__} does not say its {attr}; wrap_braindecode takes braindecode "
                             "models built with n_chans, n_times and n_outputs") from None
    copy_ = copy.deepcopy(net)
    _swap_attention(copy_)
    model = BraindecodeEEG(copy_, int(net.n_chans), int(net.n_times), int(net.n_outputs),
                           architecture=type(net).__name__, default_preset=default_preset,
                           default_preset_name=default_preset_name)
    if ch_names is None:
        try:
            info = net.chs_info
            ch_names = [c["ch_name"] for c in info] if info else None
        except (AttributeError, ValueError, KeyError, TypeError):
            ch_names = None
    if sfreq is None:
        try:
            sfreq = float(net.sfreq)
        except (AttributeError, ValueError, TypeError):
            sfreq = None
    model.ch_names = None if ch_names is None else [str(c) for c in ch_names]
    model.sfreq = sfreq
    model.scaling = scaling
    return model.eval()


#: the sha256 of each shipped weight file, written beside them by :func:`save_zoo`
SHA256_FILE = "zoo_sha256.json"


def _sha256(path: Any) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def load_zoo(name: str) -> BraindecodeEEG:
    """A registry network with the weights shipped in the plugin (trained on the synthetic epochs).

    Trained by ``python benchmarks/bench_eeg_zoo.py --write-weights`` on 200 epochs of
    ``make_synthetic_epochs(seed=0)`` (30 channels, 101 samples at 100 Hz, microvolts), seed 0.
    The file's sha256 is checked against ``weights/zoo_sha256.json`` and it is read with
    ``torch.load(..., weights_only=True)``: tensors and plain values only.

    Returns
    -------
    BraindecodeEEG
        In eval mode, with ``ch_names``, ``sfreq`` and ``scaling`` as in training.

    Raises
    ------
    DataNotFoundError
        If the weights or their sha256 record are missing.
    ComputationError
        If the file's sha256 differs from the record (changed or damaged weights).
    """
    path = zoo_weights_path(name)
    record = path.parent / SHA256_FILE
    for needed in (path, record):
        if not needed.is_file():
            raise DataNotFoundError(f"no shipped weights for {name}: {needed} is missing; train them with "
                                    "python benchmarks/bench_eeg_zoo.py --write-weights or reinstall sciexplain-eeg")
    expected = json.loads(record.read_text(encoding="utf-8")).get(path.name)
    digest = _sha256(path)
    if digest != expected:
        raise ComputationError(f"{path} has sha256 {digest} but {SHA256_FILE} records {expected}: the weights were "
                               "changed or damaged; reinstall sciexplain-eeg or retrain with "
                               "python benchmarks/bench_eeg_zoo.py --write-weights")
    with path.open("rb") as fh:
        saved = torch.load(fh, map_location="cpu", weights_only=True)
    meta = saved["meta"]
    model = make_braindecode(name, meta["n_channels"], meta["n_times"], n_classes=meta["n_classes"],
                             sfreq=meta["sfreq"], seed=None, **meta.get("overrides", {}))
    model.load_state_dict(saved["state_dict"])
    model.ch_names = list(meta["ch_names"])
    model.scaling = float(meta["scaling"])
    return model.eval()


def save_zoo(model: BraindecodeEEG, path: Any, *, overrides: Mapping[str, Any] | None = None) -> None:
    """Write a trained registry network as the file :func:`load_zoo` reads (state dict + plain metadata),
    and its sha256 into ``zoo_sha256.json`` in the same folder."""
    from pathlib import Path

    path = Path(path)
    meta = {"architecture": model.architecture, "n_channels": model.n_channels, "n_times": model.n_times,
            "n_classes": model.n_classes, "sfreq": float(model.sfreq), "ch_names": list(model.ch_names or []),
            "scaling": float(model.scaling if model.scaling is not None else 1.0),
            "overrides": dict(overrides or {})}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    record = path.parent / SHA256_FILE
    digests = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    digests[path.name] = _sha256(path)
    record.write_text(json.dumps(dict(sorted(digests.items())), indent=1) + "\n", encoding="utf-8")
