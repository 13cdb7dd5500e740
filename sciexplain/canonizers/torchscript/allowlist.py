"""The operator allowlist: the TorchScript operators the interpreter runs, by family; nothing else runs.

A TorchScript graph may name any operator torch has, among them operators that read or write
files (``aten::from_file``, ``aten::save``), print (``prim::Print``) or start work elsewhere.
The interpreter only runs tensor mathematics: an ``aten::`` operator runs when its name (or,
for an in-place ``name_`` variant, ``name``) is in one of the families below; any other
``aten::`` operator and ``prim::Print`` are refused with :class:`ScriptOperatorError`, which
names every refused operator and where the scripted code wrote it. :func:`check_operators`
finds them without running anything (``to_eager`` calls it first, and ``sciexplain check``
through :func:`script_file_problems`); the interpreter refuses them again if one is reached.

``aten::warn`` (``warnings.warn`` in scripted code, which torch's own layers use for
deprecations) is allowed: it goes through Python's warnings machinery, which the caller
controls. Operators of other namespaces and unknown ``prim::`` nodes are never run either: the
interpreter has no handler for them (an error when reached, see :mod:`.compiler`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import ScriptConversionError

__all__ = ["ScriptOperatorError", "ALLOWED_FAMILIES", "operator_allowed", "refused_operators", "check_operators",
           "script_file_problems"]


class ScriptOperatorError(ScriptConversionError):
    """A TorchScript graph names an operator outside the allowlist (files, processes, network,
    printing, or anything else that is not tensor mathematics); the message names each one."""


_CREATION = """tensor scalar_tensor as_tensor zeros ones full empty empty_strided arange linspace logspace eye
zeros_like ones_like full_like empty_like rand_like randn_like randint_like new_zeros new_ones new_full new_empty
new_tensor rand randn randint randperm normal bernoulli multinomial tril_indices triu_indices clone detach contiguous
to type_as _to_copy numpy_T lift_fresh lift_fresh_copy alias"""

_ARITHMETIC = """add sub rsub mul div true_divide floor_divide remainder fmod pow float_power neg negative abs absolute
sign sgn exp exp2 expm1 log log2 log10 log1p sqrt rsqrt square reciprocal sin cos tan asin acos atan atan2 arctan2
sinh cosh tanh asinh acosh atanh erf erfc erfinv lgamma digamma floor ceil round trunc frac clamp clamp_min clamp_max
clip lerp addcmul addcdiv hypot logaddexp logaddexp2 xlogy logit maximum minimum fmax fmin nan_to_num copysign
deg2rad rad2deg bitwise_and bitwise_or bitwise_xor bitwise_not bitwise_left_shift bitwise_right_shift logical_and
logical_or logical_xor logical_not __and__ __or__ __xor__ __lshift__ __rshift__ __iand__ __ior__ __ixor__ __ilshift__
__irshift__ floordiv real imag conj sigmoid heaviside"""

_LINEAR_ALGEBRA = """matmul mm bmm addmm addbmm baddbmm addmv mv dot vdot outer ger einsum tensordot linear bilinear
norm frobenius_norm nuclear_norm linalg_vector_norm linalg_matrix_norm linalg_norm renorm cdist cosine_similarity
pairwise_distance kron cross"""

_COMPARISON = """eq ne lt le gt ge greater greater_equal less less_equal not_equal equal allclose isclose isnan isinf
isfinite isneginf isposinf isreal where"""

_REDUCTION = """sum mean prod max min amax amin aminmax argmax argmin std var std_mean var_mean logsumexp cumsum
cumprod cummax cummin all any median nanmedian mode topk kthvalue sort argsort msort count_nonzero nansum nanmean
unique_consecutive _unique2 bincount histc"""

_SHAPE = """view view_as reshape reshape_as _reshape_alias flatten unflatten squeeze unsqueeze permute transpose t
expand expand_as repeat repeat_interleave tile cat concat concatenate stack hstack vstack dstack column_stack split
split_with_sizes unsafe_split chunk unsafe_chunk unbind tensor_split narrow movedim moveaxis swapaxes swapdims flip
fliplr flipud roll rot90 unfold pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle diag diagonal
diag_embed diagflat tril triu broadcast_to broadcast_tensors meshgrid atleast_1d atleast_2d atleast_3d pad
constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d
replication_pad3d _pad_circular _pad_enum im2col col2im size sym_size dim numel stride len is_contiguous
is_floating_point is_complex is_nonzero element_size __len__ resolve_conj resolve_neg"""

_INDEXING = """select slice index index_select gather scatter scatter_add scatter_reduce index_put _index_put_impl
index_fill index_copy index_add masked_fill masked_select masked_scatter take take_along_dim nonzero argwhere
__getitem__ copy fill zero one_hot embedding embedding_bag _embedding_bag _embedding_bag_forward_only
embedding_renorm bucketize searchsorted"""

_LAYERS = """_convolution _convolution_mode convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d
conv_transpose3d batch_norm _batch_norm_impl_index native_batch_norm instance_norm layer_norm native_layer_norm
group_norm native_group_norm rms_norm dropout feature_dropout alpha_dropout feature_alpha_dropout native_dropout relu
relu6 leaky_relu elu selu celu gelu silu mish hardtanh hardswish hardsigmoid softplus softshrink hardshrink
tanhshrink softsign threshold prelu _prelu_kernel rrelu glu log_sigmoid softmax log_softmax _softmax
_log_softmax softmin max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices
max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
_adaptive_avg_pool2d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d upsample_nearest1d
upsample_nearest2d upsample_nearest3d upsample_linear1d upsample_bilinear2d upsample_trilinear3d upsample_bicubic2d
_upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d _upsample_bilinear2d_aa
_upsample_bicubic2d_aa _upsample_lanczos2d_aa grid_sampler affine_grid_generator lstm gru rnn_tanh rnn_relu lstm_cell
gru_cell rnn_tanh_cell rnn_relu_cell scaled_dot_product_attention _native_multi_head_attention
_transformer_encoder_layer_fwd _masked_softmax"""

#: scalars, strings, lists, dicts, tuples and control flow (Python's semantics, see .operators)
_PYTHON = """Int Float Bool IntImplicit FloatImplicit ScalarImplicit item tolist __contains__ __derive_index __is__
__isnot__ __not__ __range_length append extend insert pop list copy format str keys values items get setdefault
_set_item dict clear reverse sorted sort slice __getitem__ floor ceil sqrt log exp min max abs sum round divmod
gcd __round_to_zero_floordiv warn is_autocast_enabled is_grad_enabled is_scripting __interpolate __upsample wait
device dtype layout requires_grad is_cuda __isinstance__ __and__ __or__ __xor__ __not__ count index
__upsample_bilinear"""

ALLOWED_FAMILIES: dict[str, frozenset[str]] = {
    name: frozenset(text.split()) for name, text in (
        ("tensor creation from values", _CREATION), ("arithmetic", _ARITHMETIC),
        ("linear algebra", _LINEAR_ALGEBRA), ("comparison", _COMPARISON), ("reductions", _REDUCTION),
        ("shape and layout", _SHAPE), ("indexing", _INDEXING), ("layers", _LAYERS),
        ("scalars, containers and control flow", _PYTHON))
}
"""The allowed ``aten::`` operator names, by family (an in-place ``name_`` variant follows ``name``)."""

_ALLOWED = frozenset().union(*ALLOWED_FAMILIES.values())

#: prim nodes refused although the interpreter could run them (printing)
_REFUSED_PRIM = frozenset({"prim::Print"})


def operator_allowed(kind: str) -> bool:
    """True when the interpreter may run the graph node ``kind`` (e.g. ``"aten::add"``).

    ``aten::`` operators need their name (or for ``name_``, ``name``) in :data:`ALLOWED_FAMILIES`;
    ``prim::Print`` is refused; every other node is the compiler's business (nodes it has no
    handler for are never run).
    """
    if kind in _REFUSED_PRIM:
        return False
    if not kind.startswith("aten::"):
        return True
    name = kind[len("aten::"):]
    if name in _ALLOWED:
        return True
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else None
    if base is None and name.startswith("__i") and name.endswith("__"):  # __iadd__ -> add
        base = name[3:-2]
    return base is not None and base in _ALLOWED


def _where(node: Any) -> str:
    try:
        src = node.sourceRange().strip().splitlines()[0]
    except Exception:  # noqa: BLE001 -- a node without a source range
        src = ""
    return f"{node.kind()}{' at ' + src if src else ''}"


def _walk(block: Any, found: dict[str, None]) -> None:
    for node in block.nodes():
        if not operator_allowed(node.kind()):
            found[_where(node)] = None
        for sub in node.blocks():
            _walk(sub, found)


def refused_operators(script_module: Any) -> list[str]:
    """Every refused operator in a TorchScript module's graphs, as ``kind at source``; runs nothing.

    All compiled methods of the module and of its submodules are read, with the TorchScript
    functions they call inlined, also branches a given input would not take.
    """
    found: dict[str, None] = {}
    for module in script_module.modules():
        if not isinstance(module, torch.jit.ScriptModule):
            continue
        for name in module._c._method_names():
            _walk(module._c._get_method(name).inlined_graph, found)
    return list(found)


def check_operators(script_module: Any) -> None:
    """Raise :class:`ScriptOperatorError` when a TorchScript module's graphs name a refused operator.

    Nothing is run. Call it before explaining a TorchScript file (``sciexplain check`` does).
    """
    refused = refused_operators(script_module)
    if refused:
        listed = "; ".join(refused[:10]) + (f"; and {len(refused) - 10} more" if len(refused) > 10 else "")
        raise ScriptOperatorError(
            f"the TorchScript module {getattr(script_module, 'original_name', '?')} calls operators that sciexplain "
            f"does not run: {listed}. Only tensor mathematics is interpreted ({', '.join(ALLOWED_FAMILIES)}); "
            "operators that touch files, processes or the network, or print, are refused. Remove them from the "
            "model's forward (or explain the model from its Python class with its weights as a state dict)")


def script_file_problems(base: str | Path, value: Any) -> list[str]:
    """What :func:`check_operators` says about the TorchScript file ``value`` (relative to ``base``).

    An empty list when ``value`` is not a path to an existing file (reported elsewhere) or when
    the file's operators are all allowed; a file ``torch.jit.load`` cannot read gives one message.
    Loading runs the file's own loading code, as the run itself does; the model is not run.
    """
    if not isinstance(value, str):
        return []
    path = Path(value) if Path(value).is_absolute() else Path(base) / value
    if not path.is_file():
        return []
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 -- any reason torch gives is the user's to read
        return [f"{value!r} is not a TorchScript file (torch.jit.save): {type(err).__name__}: {err}"]
    try:
        check_operators(module)
    except ScriptOperatorError as err:
        return [str(err)]
    return []
