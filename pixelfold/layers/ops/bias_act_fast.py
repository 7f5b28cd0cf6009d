"""Fast bias + scaled leaky ReLU: the same values as
[`reference.bias_leaky_relu`][pixelfold.layers.ops.reference.bias_leaky_relu] with fewer
passes over memory.

Two forms:

* [`bias_leaky_relu`][pixelfold.layers.ops.bias_act_fast.bias_leaky_relu], standalone: the
  leaky ReLU runs in place on the fresh sum ``x + bias`` (which the addition's backward does not
  need), and without autograd the gain too.
* [`leaky_relu_`][pixelfold.layers.ops.bias_act_fast.leaky_relu_], the epilogue of a layer that
  folded the bias and the (positive) gain into the operation that made its input:
  ``g * leaky_relu(y + b) == leaky_relu(g y + g b)`` for ``g > 0`` (the leaky ReLU is positively
  homogeneous), so only the nonlinearity is left, run in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._util import may_write_in_place

__all__ = ["bias_leaky_relu", "leaky_relu_"]


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float,
                    scale: float) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale`` (bias along dim 1), one or two fresh tensors instead of
    three."""
    if bias is None:
        return F.leaky_relu(x, negative_slope) * scale
    y = x + bias.to(x.dtype).view([1, -1] + [1] * (x.ndim - 2))
    if may_write_in_place(x, bias):
        return F.leaky_relu_(y, negative_slope).mul_(scale)
    return F.leaky_relu(y, negative_slope, inplace=True) * scale


def leaky_relu_(y: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """The leaky ReLU of a layer's fresh output ``y`` whose bias and gain are already folded
    in, in place (``y`` must be a tensor nothing else holds)."""
    return F.leaky_relu_(y, negative_slope)
