"""Building blocks of progressive pixel-regression generators, usable in any PyTorch model.

Everything is re-exported flat: ``from pixelfold.layers import PixelFold, ModulatedConv2d``.

The ops with a fast path (``modulated_conv2d``, ``upfirdn2d`` / ``filter2d`` / ``upsample2d``,
``conv2d``, ``bias_leaky_relu``) have their readable definition in
[`pixelfold.layers.ops.reference`][pixelfold.layers.ops.reference] and their fast
implementation beside it in ``pixelfold/layers/ops/``; ``impl=`` on each op, or
[`use_impl`][pixelfold.layers.use_impl] for a whole model, picks one.
"""

from .activation import BiasLeakyReLU, bias_leaky_relu
from .checks import InputError, check_input
from .conv import conv2d
from .equalized import EqualConv2d, EqualLinear
from .fold import (
    ChannelOrder,
    PixelFold,
    PixelUnfold,
    fold_pattern,
    pixel_fold,
    pixel_unfold,
    unfold_pattern,
)
from .labels import LabelError, label_vectors
from .mapping import MappingNetwork, PixelNorm, pixel_norm
from .minibatch_std import MinibatchStdDev
from .modulated import ModConvPath, ModulatedConv2d, StyledConv2d, ToRGB, modulated_conv2d
from .noise import NOISE_MODES, NoiseInjection, NoiseMode, check_noise_mode, set_noise_skipping
from .ops import Impl, get_impl, use_impl
from .positional import (
    EMBEDDING_PADDINGS,
    CoordinateEmbedding,
    CoordinateWindow,
    FourierFeatures,
    coordinate_grid,
)
from .upfirdn import (
    Blur,
    Downsample,
    Upsample,
    filter2d,
    make_kernel,
    separable_taps,
    upfirdn2d,
    upsample2d,
)

__all__ = [
    "EMBEDDING_PADDINGS",
    "NOISE_MODES",
    "BiasLeakyReLU",
    "Blur",
    "ChannelOrder",
    "CoordinateEmbedding",
    "CoordinateWindow",
    "Downsample",
    "EqualConv2d",
    "EqualLinear",
    "FourierFeatures",
    "Impl",
    "InputError",
    "LabelError",
    "MappingNetwork",
    "MinibatchStdDev",
    "ModConvPath",
    "ModulatedConv2d",
    "NoiseInjection",
    "NoiseMode",
    "PixelFold",
    "PixelNorm",
    "PixelUnfold",
    "StyledConv2d",
    "ToRGB",
    "Upsample",
    "bias_leaky_relu",
    "check_input",
    "check_noise_mode",
    "conv2d",
    "coordinate_grid",
    "filter2d",
    "fold_pattern",
    "get_impl",
    "label_vectors",
    "make_kernel",
    "modulated_conv2d",
    "pixel_fold",
    "pixel_norm",
    "pixel_unfold",
    "separable_taps",
    "set_noise_skipping",
    "unfold_pattern",
    "upfirdn2d",
    "upsample2d",
    "use_impl",
]
