"""The torch operations the tape records, named by family: the vocabulary shared by the operation
kinds (:mod:`sciexplain.kinds`) and the batch-axis rules (:mod:`sciexplain.record.axis_rules`)."""

from __future__ import annotations

from torch import nn

_ACT_FUNCS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "tanh", "tanh_", "sigmoid",
    "sigmoid_", "softplus", "hardswish", "hardsigmoid", "softsign", "prelu", "rrelu", "clamp",
    "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "threshold",
    "threshold_", "logsigmoid", "tanhshrink", "silu_", "mish_", "hardswish_", "gelu_", "softplus_", "rrelu_",
    "hardshrink", "softshrink", "softshrink_", "selu_", "celu_",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "clone", "contiguous", "detach", "float", "double", "half", "to", "type", "type_as",
}
#: pass-through operations that do not change values (a gate stays a gate through them;
#: deconvnet and guided backprop pass through them)
IDENTITY_LIKE = frozenset({"Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "dropout", "clone",
                           "contiguous", "detach", "float", "double", "half", "to", "type", "type_as"})
_RELU_LIKE_FUNCS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_"}
_LAYOUT_FUNCS = {
    "flatten", "view", "reshape", "view_as", "reshape_as", "permute", "transpose", "transpose_", "t",
    "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "repeat", "tile",
    "repeat_interleave", "__getitem__", "narrow", "select", "index_select", "gather", "take_along_dim",
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "movedim", "moveaxis",
    "swapaxes", "swapdims", "flip", "roll", "unflatten", "pad", "max_pool1d", "max_pool2d",
    "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "amax", "max", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "split", "chunk", "unbind", "tensor_split", "split_with_sizes", "unfold",
    "where",
}
#: writes into a tensor (in place or into a copy): the written entries come from the value (a
#: constant's relevance is absorbed); the tape records ``x[i] = v`` as its written ``x``
_WRITE_FUNCS = {"__setitem__", "index_put_", "index_put", "masked_fill_", "masked_fill", "fill_", "zero_", "copy_",
                "index_fill_", "index_fill"}
_LAYOUT_FUNCS |= _WRITE_FUNCS
_WEIGHT_FREE_FUNCS = {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
                      "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean", "sum"}
_SUM_FUNCS = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
              "__isub__", "subtract", "rsub", "__rsub__"}
_SCALE_FUNCS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "div", "div_",
                "__truediv__", "__itruediv__", "true_divide", "divide", "neg", "negative", "neg_"}
_MATMUL_FUNCS = {"matmul", "mm", "bmm", "__matmul__", "__rmatmul__"}
_CONV_FUNCS = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv3d": nn.Conv3d}
_SQUASH_FUNCS = {"softmax", "log_softmax", "sigmoid"}
_SQUASH_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid)

_ACT_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU, nn.Softsign,
    nn.Threshold, nn.LogSigmoid, nn.Tanhshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity, nn.RReLU, nn.Hardshrink,
    nn.Softshrink,
)
_RELU_LIKE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)
_LAYOUT_MODULES = (
    nn.Flatten, nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
    nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ChannelShuffle,
)
_POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAX_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                nn.AdaptiveMaxPool3d)
_MAX_FUNCS = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
              "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d",
              "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
              "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices", "amax", "max"}


#: element-wise maps beyond the activations, as real networks use them (ShallowFBCSPNet's
#: ``log`` of pooled power, ``exp``, ``sqrt``, squaring): the identity rule of
#: :mod:`sciexplain.kinds.elementwise`
_ELEMENTWISE_MAPS = {"exp", "exp_", "exp2", "expm1", "log", "log_", "log1p", "log2", "log10", "sqrt", "sqrt_",
                     "rsqrt", "square", "square_", "pow", "pow_", "__pow__", "__ipow__", "__rpow__", "float_power",
                     "abs", "abs_", "erf", "erfc", "reciprocal"}
#: ``masked_fill``: entries of constant value where a constant mask is set (layout: relevance of the
#: filled entries is absorbed)
_MASKED_FILL_FUNCS = {"masked_fill", "masked_fill_"}
#: normalisation layers (AttnLRP's rule: the normalising scale held constant), :mod:`sciexplain.kinds.normalisation`
_NORM_MODULES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_NORM_FUNCS = {"layer_norm", "rms_norm", "group_norm", "instance_norm"}
#: transposed convolutions: affine layers like the convolutions (their presets' conv rule applies)
_CONV_TRANSPOSE_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV_TRANSPOSE_FUNCS = {"conv_transpose1d": nn.ConvTranspose1d, "conv_transpose2d": nn.ConvTranspose2d,
                         "conv_transpose3d": nn.ConvTranspose3d}
#: operations that only change the shape of a tensor (or copy it): a final softmax followed by
#: them alone is still the final squash
_SHAPE_ONLY_FUNCS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose", "t",
                     "__getitem__", "select", "narrow", "movedim", "moveaxis", "swapaxes", "swapdims",
                     "unflatten", "contiguous", "clone", "float", "double", "to", "type_as"}
_SHAPE_ONLY_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity)
