"""The built-in operation kinds, registered in :data:`sciexplain.kinds.registry.REGISTRY` in one fixed order.

Each family of modules and functions has a small recogniser, registered by type or by name; the
recogniser returns a :class:`~sciexplain.kinds.registry.Kind` naming the entry that propagates it:

``affine``     z = lin(x; W) + b: the node's LRP rule (Linear, Conv, BatchNorm, average
               pooling, mean/sum, multiplication by a constant, matmul with a constant...)
               (:mod:`~sciexplain.kinds.affine`, :mod:`~sciexplain.kinds.pooling`,
               :mod:`~sciexplain.kinds.products`)
``pass``       element-wise activations (ReLU, tanh, sigmoid inside the network), dropout,
               identity: relevance passes unchanged (:mod:`~sciexplain.kinds.activations`)
``layout``     operations that only move or copy entries (view, permute, cat, slicing,
               padding, max pooling as winner-take-all, nearest upsampling): relevance moves
               with the entries, through the operation's own vector-Jacobian product
               (:mod:`~sciexplain.kinds.layout`)
``sum``        ``x + y``, ``x - y`` (residuals): proportional to each operand's contribution
               (:mod:`~sciexplain.kinds.sums`)
``product``    ``a * b`` of two input-dependent tensors (gates): a product rule
               (signal-take-all by default) (:mod:`~sciexplain.kinds.products`)
``embedding``  an embedding lookup of integer inputs: relevance of the looked-up vectors is
               summed over the embedding dimension onto each index (:mod:`~sciexplain.kinds.embedding`)
``squash``     softmax / log-softmax: stripped when final (a final sigmoid too); inside the network a
               log-softmax is an error, a softmax the ``softmax`` kind
``softmax``, ``bilinear``, ``attention``, ``einsum``  a softmax inside the network, matmul/bmm/einsum
               of two input-dependent tensors, ``F.scaled_dot_product_attention``, einsum with a
               constant: AttnLRP's rules, CP-LRP as an option (:mod:`~sciexplain.kinds.attention`)
``leaf``       a module registered with :func:`sciexplain.register` (:mod:`~sciexplain.kinds.leaves`)
``normalisation`` LayerNorm, RMSNorm, GroupNorm, InstanceNorm: AttnLRP's rule, the normalising
               scale held constant (:mod:`~sciexplain.kinds.normalisation`)

Element-wise maps (exp, log, sqrt, pow by a constant, ``x * x``) are ``pass`` nodes and
``masked_fill`` a ``layout`` node (:mod:`~sciexplain.kinds.elementwise`); transposed convolutions
are ``affine`` (:mod:`~sciexplain.kinds.affine`).

Anything else is ``unsupported`` and becomes an error naming the node. What each kind adds to
the ledger:

``affine``    the rule's own bias and stabiliser terms (:func:`sciexplain.rules.propagation.lrp_affine`)
``folded``    nothing: a BatchNorm folded into its neighbour is part of that layer's rule
``pass``      nothing: relevance passes unchanged
``layout``    the relevance that moves onto constant entries (padding values, constant operands)
``sum``       the stabiliser's share and the constant operands' shares
``product``   the share of a constant or the eps of a proportional split (signal-take-all and
              uniform lose nothing)
``embedding`` nothing: the looked-up vector's relevance is summed onto its index
``leaf``      what the registered propagator reports (or entering - leaving)
``normalisation`` the affine part's bias and stabiliser terms and the centring's stabiliser share
"""

from __future__ import annotations

from torch import nn

from ..record.op_names import (_ACT_FUNCS, _ACT_MODULES, _BN_MODULES, _CONV_FUNCS, _CONV_MODULES,
                               _CONV_TRANSPOSE_FUNCS, _CONV_TRANSPOSE_MODULES, _ELEMENTWISE_MAPS, _LAYOUT_FUNCS,
                               _LAYOUT_MODULES, _MASKED_FILL_FUNCS, _MATMUL_FUNCS, _NORM_FUNCS, _NORM_MODULES,
                               _POOL_MODULES, _SCALE_FUNCS, _SQUASH_FUNCS, _SUM_FUNCS, _WEIGHT_FREE_FUNCS)
from .activations import (_activation_function, _activation_module, _sigmoid_module, _softmax_module,
                          _squash_function, propagate_pass)
from .attention import (_einsum_function, _multihead_module, _sdpa_function, propagate_attention,
                        propagate_bilinear, propagate_einsum, propagate_softmax)
from .affine import (_batch_norm_function, _batchnorm_module, _conv_function, _conv_transpose_function,
                     _conv_transpose_module, _linear_function, _matmul_function, _weighted_module, propagate_affine,
                     propagate_folded)
from .elementwise import _elementwise_function
from .embedding import _embedding_function, _embedding_module, propagate_embedding
from .layout import _layout_function, _layout_module, propagate_layout
from .leaves import describe_leaf, propagate_leaf
from .normalisation import _normalisation_function, _normalisation_module, propagate_normalisation
from .pooling import _interpolate_function, _pool_module, _upsample_module, _weight_free_function
from .products import _scale_function, propagate_product
from .registry import REGISTRY, OpKind
from .sums import _sum_function, propagate_sum

REGISTRY.recognise_modules((nn.Linear, *_CONV_MODULES), _weighted_module)
REGISTRY.recognise_modules(_BN_MODULES, _batchnorm_module)
REGISTRY.recognise_modules(_POOL_MODULES, _pool_module)
REGISTRY.recognise_modules((nn.Upsample,), _upsample_module)
REGISTRY.recognise_modules((nn.Softmax, nn.LogSoftmax), _softmax_module)
REGISTRY.recognise_modules((nn.Sigmoid, nn.Hardsigmoid), _sigmoid_module)
REGISTRY.recognise_modules(tuple(t for t in _ACT_MODULES if t not in (nn.Sigmoid, nn.Hardsigmoid)),
                           _activation_module)
REGISTRY.recognise_modules(_LAYOUT_MODULES, _layout_module)
REGISTRY.recognise_modules((nn.Embedding,), _embedding_module)

REGISTRY.recognise_functions(sorted(_SQUASH_FUNCS | {"sigmoid_", "hardsigmoid"}), _squash_function)
REGISTRY.recognise_functions(sorted(_ACT_FUNCS - _SQUASH_FUNCS - {"sigmoid_", "hardsigmoid"}), _activation_function)
REGISTRY.recognise_functions(sorted(_LAYOUT_FUNCS), _layout_function)
REGISTRY.recognise_functions(sorted(_SUM_FUNCS), _sum_function)
REGISTRY.recognise_functions(sorted(_WEIGHT_FREE_FUNCS), _weight_free_function)
REGISTRY.recognise_functions(["interpolate"], _interpolate_function)
REGISTRY.recognise_functions(sorted(_SCALE_FUNCS), _scale_function)
REGISTRY.recognise_functions(sorted(_MATMUL_FUNCS), _matmul_function)
REGISTRY.recognise_functions(["linear"], _linear_function)
REGISTRY.recognise_functions(sorted(_CONV_FUNCS), _conv_function)
REGISTRY.recognise_functions(["batch_norm"], _batch_norm_function)
REGISTRY.recognise_functions(["embedding"], _embedding_function)
REGISTRY.recognise_modules(_NORM_MODULES, _normalisation_module)
REGISTRY.recognise_functions(sorted(_NORM_FUNCS), _normalisation_function)
REGISTRY.recognise_modules(_CONV_TRANSPOSE_MODULES, _conv_transpose_module)
REGISTRY.recognise_functions(sorted(_CONV_TRANSPOSE_FUNCS), _conv_transpose_function)
REGISTRY.recognise_functions(sorted(_ELEMENTWISE_MAPS), _elementwise_function)
REGISTRY.recognise_functions(sorted(_MASKED_FILL_FUNCS), _layout_function)

for _kind in (
    OpKind("affine", propagate_affine, "LRP rule", takes_rule="affine"),
    OpKind("folded", propagate_folded, "folded into its neighbour", transparent=True),
    OpKind("pass", propagate_pass, "pass-through", transparent=True),
    OpKind("layout", propagate_layout, "moves with entries", transparent=True),
    OpKind("sum", propagate_sum, "proportional", takes_rule="sum"),
    OpKind("product", propagate_product, "product rule", takes_rule="product"),
    OpKind("embedding", propagate_embedding, "sum over embedding"),
    OpKind("leaf", propagate_leaf, "registered module", takes_rule="leaf", describe=describe_leaf),
    OpKind("normalisation", propagate_normalisation, "AttnLRP: normalising scale held constant",
           takes_rule="affine"),
):
    REGISTRY.add_kind(_kind)

# attention (sciexplain.kinds.attention): a softmax inside the network, matmul/bmm/einsum of two
# input-dependent tensors, F.scaled_dot_product_attention (AttnLRP; CP-LRP as an option)
REGISTRY.recognise_functions(["einsum"], _einsum_function)
REGISTRY.recognise_functions(["scaled_dot_product_attention"], _sdpa_function)
REGISTRY.recognise_modules((nn.MultiheadAttention,), _multihead_module)
for _kind in (
    OpKind("softmax", propagate_softmax, "linearised softmax (AttnLRP)", takes_rule="product"),
    OpKind("bilinear", propagate_bilinear, "product rule of two input-dependent tensors", takes_rule="product"),
    OpKind("attention", propagate_attention, "scaled dot-product attention, decomposed", takes_rule="product"),
    OpKind("einsum", propagate_einsum, "LRP rule (einsum with a constant)", takes_rule="affine"),
):
    REGISTRY.add_kind(_kind)
