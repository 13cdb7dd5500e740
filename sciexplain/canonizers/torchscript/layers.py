"""Rebuilding standard ``torch.nn`` layers: a script module of torch's own layer class becomes the real eager layer.

Hyper-parameters come from a scripted layer's attributes, or from the constant arguments of a
traced layer's one operation; a layer that fits neither is interpreted instead.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


_NN_PREFIX = "__torch__.torch.nn.modules."
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: constructor parameters that only set initial values (the copied parameters replace them)
_INIT_ONLY = {"device", "dtype", "_weight", "_freeze", "init"}
_RNN_PARAMS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
               "proj_size")
_MISSING = object()


def _training(sm: Any) -> bool:
    # a frozen module (torch.jit.freeze) keeps no training flag: it is in eval mode
    try:
        return bool(sm.training)
    except AttributeError:
        return False


def _qualified_name(sm: Any) -> str:
    return sm._c._type().qualified_name()


def _standard_class(sm: Any) -> type | None:
    """The torch.nn class of a script module compiled from torch's own layer, else None.

    Decided by the class's qualified name in the file (``__torch__.torch.nn.modules.conv.Conv2d``), not
    by ``original_name`` alone: a user's own class called ``Linear`` lives elsewhere."""
    qualified = _qualified_name(sm)
    if not qualified.startswith(_NN_PREFIX):
        return None
    name = [p for p in qualified.split(".") if not p.startswith("___torch_mangle")][-1]
    cls = getattr(nn, name, None)
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__.startswith("torch.nn.modules"):
        return cls
    return None


def _init_params(cls: type) -> list[str]:
    if issubclass(cls, nn.RNNBase):
        # GRU and RNN refuse a proj_size argument (LSTM only), even 0
        params = [p for p in _RNN_PARAMS if p != "proj_size" or issubclass(cls, nn.LSTM)]
        return params + (["nonlinearity"] if cls is nn.RNN else [])
    sig = inspect.signature(cls.__init__)
    return [p.name for p in list(sig.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _INIT_ONLY]


#: constructor arguments that a layer keeps under another name
_DERIVED: dict[type, dict[str, Any]] = {
    nn.MultiheadAttention: {"bias": lambda sm: getattr(sm, "in_proj_bias", None) is not None,
                            "add_bias_kv": lambda sm: getattr(sm, "bias_k", None) is not None},
}


def _kwargs_from_attributes(cls: type, sm: Any) -> dict | None:
    """Constructor arguments from a scripted layer's attributes (``torch.jit.script`` keeps them)."""
    kwargs = {}
    derived = _DERIVED.get(cls, {})
    for name in _init_params(cls):
        try:
            value = derived[name](sm) if name in derived else getattr(sm, name)
        except AttributeError:
            return None
        if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        elif isinstance(value, (torch.Tensor, torch.jit.ScriptModule)):
            return None
        kwargs[name] = value
    if issubclass(cls, nn.LSTM) and kwargs.get("proj_size") is None:
        kwargs["proj_size"] = 0
    return kwargs


class _Static:
    """What a traced layer's graph computes, read without running it: its one operation (``core``),
    the constant values of that operation's arguments and how the graph's outputs are made of the
    operation's outputs."""

    _SHAPE_NODES = {"aten::size", "prim::NumToTensor", "aten::Int", "aten::zeros"}

    def __init__(self, graph: Any):
        inputs = list(graph.inputs())
        self.self_id = inputs[0].unique()
        self.inputs = {v.unique(): ("input", i) for i, v in enumerate(inputs[1:])}
        self.known: dict[int, Any] = dict(self.inputs)
        self.core: list[Any] = []
        self.zeros: set[int] = set()
        for node in graph.nodes():
            kind, outs = node.kind(), [v.unique() for v in node.outputs()]
            ins = [v.unique() for v in node.inputs()]
            if kind == "prim::Constant":
                self.known[outs[0]] = node.output().toIValue() if node.hasAttribute("value") else None
            elif kind == "prim::GetAttr" and ins[0] == self.self_id:
                self.known[outs[0]] = ("attr", node.s("name"))
            elif kind == "prim::ListConstruct":
                self.known[outs[0]] = [self.known.get(i, _MISSING) for i in ins]
            elif kind == "prim::TupleConstruct":
                continue  # how outputs are grouped: read by returned()
            elif kind in self._SHAPE_NODES:
                if kind == "aten::zeros":
                    self.zeros.update(outs)
                self.known[outs[0]] = ("shape",)
            else:
                self.core.append(node)
        self.outputs = [v.unique() for v in graph.outputs()]
        self.graph = graph

    def single(self, kinds: set[str]) -> tuple[str, list] | None:
        if len(self.core) == 1 and self.core[0].kind() in kinds:
            node = self.core[0]
            return node.kind().split("::")[1], [self.known.get(v.unique(), _MISSING) for v in node.inputs()]
        return None

    def returned(self) -> Any:
        """The graph's output as indices into the core operation's outputs (tuples nest)."""
        if not self.core:
            return _MISSING
        core_outs = {v.unique(): k for k, v in enumerate(self.core[0].outputs())}
        producers = {v.unique(): n for n in self.graph.nodes() for v in n.outputs()}

        def resolve(vid):
            if vid in core_outs:
                return core_outs[vid]
            node = producers.get(vid)
            if node is not None and node.kind() == "prim::TupleConstruct":
                return tuple(resolve(v.unique()) for v in node.inputs())
            return _MISSING
        outs = [resolve(v) for v in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _is_input(v: Any) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and v[0] == "input" and v[1] == 0


def _consts(*values: Any) -> bool:
    def ok(v):
        if isinstance(v, list):
            return all(ok(x) for x in v)
        return v is not _MISSING and not isinstance(v, tuple)
    return all(ok(v) for v in values)


def _traced_kwargs(cls: type, sm: Any, st: _Static) -> tuple[dict, Any] | None:
    """Constructor arguments of a traced layer from the constants of its one operation, and the
    selection of the eager module's outputs that the traced graph returns (None: all of them)."""
    params = dict(sm.named_parameters(recurse=False))
    ret = st.returned()
    simple = _SIMPLE_TRACED.get(cls)
    if simple is not None:
        kinds, read = simple
        hit = st.single(kinds)
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        op, args = hit
        if not _consts(*args[1:]):
            return None
        kwargs = read(op, args)
        return (kwargs, None) if kwargs is not None else None
    if cls is nn.Linear:
        hit = st.single({"aten::linear"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        w = params["weight"]
        return {"in_features": w.shape[1], "out_features": w.shape[0], "bias": "bias" in params}, None
    if cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        hit = st.single({"aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                         "aten::_convolution_mode"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        op, a = hit
        if op == "_convolution":
            if a[6] is not False or not _consts(a[3], a[4], a[5], a[8]):
                return None
            stride, padding, dilation, groups = a[3], a[4], a[5], a[8]
        else:
            if not _consts(a[3], a[4], a[5], a[6]):
                return None
            stride, padding, dilation, groups = a[3], a[4], a[5], a[6]
        w = params["weight"]
        return {"in_channels": w.shape[1] * groups, "out_channels": w.shape[0], "kernel_size": tuple(w.shape[2:]),
                "stride": _tuple(stride), "padding": _tuple(padding), "dilation": _tuple(dilation), "groups": groups,
                "bias": "bias" in params}, None
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        hit = st.single({"aten::batch_norm"})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        a = hit[1]
        if a[5] is not False or not _consts(a[6], a[7]):
            return None  # traced with batch statistics: interpreted as such
        buffers = dict(sm.named_buffers(recurse=False))
        ref = buffers.get("running_mean", params.get("weight"))
        if ref is None:
            return None
        return {"num_features": ref.shape[0], "eps": a[7], "momentum": a[6], "affine": "weight" in params,
                "track_running_stats": "running_mean" in buffers}, None
    if cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
               nn.AdaptiveMaxPool3d):
        n = cls.__name__[-2]
        adaptive = cls.__name__.startswith("Adaptive")
        base = f"aten::adaptive_max_pool{n}d" if adaptive else f"aten::max_pool{n}d"
        hit = st.single({base, base + "_with_indices"} if not adaptive else {base})
        if hit is None or not _is_input(hit[1][0]) or not _consts(*hit[1][1:]):
            return None
        op, a = hit
        indices = adaptive or op.endswith("_with_indices")
        if ret == 0:
            selector, return_indices = None, False
        elif indices and ret == (0, 1):
            selector, return_indices = None, True
        elif indices and ret == 1:
            selector, return_indices = 1, True
        else:
            return None
        if adaptive:
            return {"output_size": _tuple(a[1]), "return_indices": return_indices}, selector
        return {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]), "padding": _tuple(a[3]),
                "dilation": _tuple(a[4]), "ceil_mode": a[5], "return_indices": return_indices}, selector
    if cls is nn.Embedding:
        hit = st.single({"aten::embedding"})
        if hit is None or not _is_input(hit[1][1]) or ret != 0 or not _consts(*hit[1][2:]):
            return None
        a = hit[1]
        w = params["weight"]
        return {"num_embeddings": w.shape[0], "embedding_dim": w.shape[1],
                "padding_idx": None if a[2] < 0 else a[2], "scale_grad_by_freq": a[3], "sparse": a[4]}, None
    if cls in (nn.LSTM, nn.GRU, nn.RNN):
        return _traced_rnn(cls, sm, st, params, ret)
    if cls is nn.Upsample:
        hit = st.single({f"aten::upsample_{m}" for m in ("nearest1d", "nearest2d", "nearest3d", "linear1d",
                                                          "bilinear2d", "bicubic2d", "trilinear3d")})
        if hit is None or not _is_input(hit[1][0]) or ret != 0 or ".vec(" not in st.core[0].schema():
            return None
        op, a = hit
        mode = {"nearest": "nearest", "linear": "linear", "bilinear": "bilinear", "bicubic": "bicubic",
                "trilinear": "trilinear"}[op[len("upsample_"):-2]]
        size, scales = a[1], a[-1]
        align = None if mode == "nearest" else a[2]
        if not _consts(size, scales, align):
            return None  # e.g. recompute_scale_factor: a size computed from the traced input
        return {"size": _tuple(size), "scale_factor": _tuple(scales), "mode": mode, "align_corners": align}, None
    if cls in (nn.LayerNorm, nn.GroupNorm, nn.PReLU):
        op = {nn.LayerNorm: "aten::layer_norm", nn.GroupNorm: "aten::group_norm", nn.PReLU: "aten::prelu"}[cls]
        hit = st.single({op})
        if hit is None or not _is_input(hit[1][0]) or ret != 0:
            return None
        a = hit[1]
        if cls is nn.PReLU:
            return {"num_parameters": params["weight"].numel()}, None
        if not _consts(a[1], a[4]) or "weight" not in params and cls is nn.GroupNorm:
            return None
        if cls is nn.LayerNorm:
            return {"normalized_shape": _tuple(a[1]), "eps": a[4], "elementwise_affine": "weight" in params,
                    "bias": "bias" in params}, None
        return {"num_groups": a[1], "num_channels": params["weight"].shape[0], "eps": a[4], "affine": True}, None
    return None


def _traced_rnn(cls, sm, st, params, ret):
    kinds = {nn.LSTM: {"aten::lstm"}, nn.GRU: {"aten::gru"}, nn.RNN: {"aten::rnn_tanh", "aten::rnn_relu"}}[cls]
    hit = st.single(kinds)
    if hit is None or not _is_input(hit[1][0]):
        return None
    op, a = hit
    node = st.core[0]
    hx_value = node.inputsAt(1)
    hx_parts = [v.unique() for v in hx_value.node().inputs()] if cls is nn.LSTM else [hx_value.unique()]
    if not all(h in st.zeros for h in hx_parts):
        return None  # an explicit initial state: interpreted instead
    if not _consts(a[3], a[4], a[5], a[6], a[7], a[8]) or a[6] is not False:
        return None
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}[cls]
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    kwargs = {"input_size": w_ih.shape[1], "hidden_size": w_hh.shape[0] // gates, "num_layers": a[4],
              "bias": a[3], "batch_first": a[8], "dropout": a[5], "bidirectional": a[7]}
    if cls is nn.LSTM:
        kwargs["proj_size"] = params["weight_hr_l0"].shape[0] if "weight_hr_l0" in params else 0
    if cls is nn.RNN:
        kwargs["nonlinearity"] = "tanh" if op == "rnn_tanh" else "relu"
    full = (0, (1, 2)) if cls is nn.LSTM else (0, 1)
    if ret is _MISSING:
        return None
    return kwargs, (None if ret == full else ret)


def _act(**fixed):
    def read(op, args):
        return dict(fixed)
    return read


def _inplace(op, args):
    return {"inplace": op.endswith("_")}


_SIMPLE_TRACED: dict[type, tuple[set, Any]] = {
    nn.ReLU: ({"aten::relu", "aten::relu_"}, _inplace),
    nn.ReLU6: ({"aten::relu6", "aten::relu6_", "aten::hardtanh", "aten::hardtanh_"},
               lambda op, a: {"inplace": op.endswith("_")} if op.startswith("relu6") or (a[1] == 0 and a[2] == 6)
               else None),
    nn.Hardtanh: ({"aten::hardtanh", "aten::hardtanh_"},
                  lambda op, a: {"min_val": a[1], "max_val": a[2], "inplace": op.endswith("_")}),
    nn.LeakyReLU: ({"aten::leaky_relu", "aten::leaky_relu_"},
                   lambda op, a: {"negative_slope": a[1], "inplace": op.endswith("_")}),
    nn.ELU: ({"aten::elu", "aten::elu_"},
             lambda op, a: {"alpha": a[1], "inplace": op.endswith("_")} if a[2] == 1 and a[3] == 1 else None),
    nn.GELU: ({"aten::gelu"}, lambda op, a: {"approximate": a[1]}),
    nn.SiLU: ({"aten::silu", "aten::silu_"}, _inplace),
    nn.Softmax: ({"aten::softmax"}, lambda op, a: {"dim": a[1]} if a[2] is None else None),
    nn.LogSoftmax: ({"aten::log_softmax"}, lambda op, a: {"dim": a[1]} if a[2] is None else None),
    nn.Softplus: ({"aten::softplus"}, lambda op, a: {"beta": a[1], "threshold": a[2]}),
    nn.Dropout: ({"aten::dropout", "aten::dropout_"},
                 lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout1d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout2d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Dropout3d: ({"aten::feature_dropout", "aten::feature_dropout_"},
                   lambda op, a: {"p": a[1], "inplace": op.endswith("_")} if a[2] is False else None),
    nn.Flatten: ({"aten::flatten"}, lambda op, a: {"start_dim": a[1], "end_dim": a[2]}),
    nn.AvgPool1d: ({"aten::avg_pool1d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5]}),
    nn.AvgPool2d: ({"aten::avg_pool2d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5], "divisor_override": a[6]}),
    nn.AvgPool3d: ({"aten::avg_pool3d"}, lambda op, a: {"kernel_size": _tuple(a[1]), "stride": _tuple(a[2]),
                                                       "padding": _tuple(a[3]), "ceil_mode": a[4],
                                                       "count_include_pad": a[5], "divisor_override": a[6]}),
    nn.AdaptiveAvgPool1d: ({"aten::adaptive_avg_pool1d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.AdaptiveAvgPool2d: ({"aten::adaptive_avg_pool2d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.AdaptiveAvgPool3d: ({"aten::adaptive_avg_pool3d"}, lambda op, a: {"output_size": _tuple(a[1])}),
    nn.ZeroPad1d: ({"aten::constant_pad_nd", "aten::pad"}, lambda op, a: {"padding": _tuple(a[1])}
                   if not a[2:] or (a[2] in (0, 0.0, "constant") and (len(a) < 4 or a[3] in (None, 0, 0.0))) else None),
}
_SIMPLE_TRACED[nn.Unflatten] = ({"aten::unflatten"}, lambda op, a: {"dim": a[1], "unflattened_size": _tuple(a[2])})
_SIMPLE_TRACED[nn.ZeroPad2d] = _SIMPLE_TRACED[nn.ZeroPad3d] = _SIMPLE_TRACED[nn.ZeroPad1d]


def _float_dtype(sm: Any) -> torch.dtype | None:
    dtypes = {t.dtype for t in list(sm.parameters()) + list(sm.buffers()) if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _build(cls: type, kwargs: dict, sm: Any) -> nn.Module | None:
    dtype = _float_dtype(sm)
    try:
        accepts_dtype = "dtype" in inspect.signature(cls.__init__).parameters or issubclass(cls, nn.RNNBase)
        extra = {"dtype": dtype} if dtype is not None and accepts_dtype else {}
        with torch.no_grad():
            module = cls(**kwargs, **extra)
            module.load_state_dict({k: v.detach() for k, v in sm.state_dict().items()}, strict=True)
    except Exception:  # noqa: BLE001 -- hyper-parameters that do not fit: interpret the layer instead
        return None
    return module
