"""Building blocks of progressive pixel-regression generators, usable in any PyTorch model.

Everything is re-exported flat: ``from pixelfold.layers import PixelFold, ModulatedConv2d``.
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
from .mapping import MappingNetwork, PixelNorm, pixel_norm
from .minibatch_std import MinibatchStdDev
from .modulated import ModConvPath, ModulatedConv2d, StyledConv2d, ToRGB, modulated_conv2d
from .noise import NOISE_MODES, NoiseInjection, NoiseMode, check_noise_mode, set_noise_skipping
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
    "InputError",
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
]
