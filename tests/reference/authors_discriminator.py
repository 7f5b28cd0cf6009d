"""Independent oracle: the authors' discriminator (rosinality's residual StyleGAN2
``Discriminator``), re-implemented from REFERENCE.md only.

Like :mod:`tests.reference.authors_pixelfold`, this module is a test oracle that imports nothing
from :mod:`pixelfold`: pixelfold's own discriminator and its conversion of the authors' ``d``
entry are checked against this second implementation, written from the description of the
authors' discriminator in ``/work/shared/REFERENCE.md`` ("Training setup" and "Checkpoint layout").
Its ``state_dict()`` has exactly the authors' key names and shapes (50 tensors at 256: 38
parameters and 12 blur kernels), and :func:`authors_checkpoint_with_d` puts it in the ``d`` entry
of a dict shaped like the authors' ``.pt`` files.

Plain PyTorch, any device: the blur is a depthwise convolution of the padded input with the
flipped kernel (a true convolution; [1, 3, 3, 1] is symmetric anyway), the equalized layers scale
their raw ``N(0, 1)`` weights by ``1/sqrt(fan_in)`` at run time, and every activation is the
"fused leaky ReLU" ``leaky_relu(x + bias, 0.2) * sqrt(2)``.

Layout for an input size ``R`` and channel table ``C`` (REFERENCE.md, 256 model: from-RGB 1x1
3->128, blocks 256->128->...->4 with widths 128, 256, 512, 512, 512, 512, 512):

* ``convs.0``: 1x1 conv ``3 -> C[R]`` (keys ``0.weight``) + fused leaky ReLU (``1.bias``);
* ``convs.b`` for ``b = 1 .. log2(R) - 2``, the residual block from ``r = R / 2**(b-1)`` to
  ``r / 2``, ``in = C[r]``, ``out = C[r / 2]``:
  ``conv1`` = 3x3 ``in -> in`` (padding 1) + act; ``conv2`` = blur, 3x3 ``in -> out`` stride 2,
  no padding, + act; ``skip`` = blur, 1x1 ``in -> out`` stride 2, no bias, no act;
  output ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``;
* minibatch standard deviation (group 4, 1 feature), ``final_conv`` 3x3 ``C[4] + 1 -> C[4]``
  + act, flatten (channel, row, column order), ``final_linear.0`` equalized ``C[4]*16 -> C[4]``
  + act, ``final_linear.1`` equalized ``C[4] -> 1``.

INTERPRETATIONS (not spelled out in REFERENCE.md, taken from the StyleGAN2 family's published
description of these layers):

* Blur padding before a stride-2 convolution with kernel ``k``: ``p = taps - 2 + k - 1`` split
  ``((p + 1) // 2, p // 2)``, i.e. (2, 2) for the 3x3 convs and (1, 1) for the 1x1 skips, so
  that each block halves the resolution exactly.
* Minibatch std groups: with ``G = min(4, B)`` and ``M = B / G``, sample ``i`` belongs to group
  ``i mod M`` (the batch viewed as ``(G, M, ...)``); the statistic is the standard deviation
  over the group (biased variance + 1e-8, then the square root), averaged over channels and
  pixels, broadcast as one extra feature map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AuthorsDiscriminator", "CHANNELS", "authors_checkpoint_with_d", "blur_kernel"]

#: Channel table by resolution (REFERENCE.md; the same table as the generator's).
CHANNELS: dict[int, int] = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                            512: 64, 1024: 32}


def blur_kernel() -> Tensor:
    """The [1, 3, 3, 1] outer product normalized to sum 1 (REFERENCE.md: no x4 here)."""
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k1[:, None] * k1[None, :]
    return k / k.sum()


def _act(x: Tensor, bias: Tensor) -> Tensor:
    return F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2.0)


class Blur(nn.Module):
    """Depthwise FIR filter with explicit padding (key ``kernel``, a persistent buffer)."""

    def __init__(self, pad: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel())
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        k = torch.flip(self.kernel, (0, 1)).to(x)
        return F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)


class EqualConv(nn.Module):
    """Equalized conv without bias (key ``weight``), scale ``1/sqrt(in * k * k)``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.scale = 1.0 / math.sqrt(cin * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, stride=self.stride, padding=self.padding)


class Act(nn.Module):
    """The fused leaky ReLU, owning the bias of the layer before it (key ``bias``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return _act(x, self.bias)


def conv_layer(cin: int, cout: int, k: int, *, down: bool = False,
               activate: bool = True) -> nn.Sequential:
    """``[Blur,] EqualConv[, Act]`` as an ``nn.Sequential``: its indices give the authors' keys
    (``0.weight 1.bias``; with ``down``: ``0.kernel 1.weight 2.bias``)."""
    layers: list[nn.Module] = []
    if down:
        p = 4 - 2 + k - 1
        layers.append(Blur(((p + 1) // 2, p // 2)))
        layers.append(EqualConv(cin, cout, k, stride=2, padding=0))
    else:
        layers.append(EqualConv(cin, cout, k, stride=1, padding=k // 2))
    if activate:
        layers.append(Act(cout))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv_layer(cin, cin, 3)
        self.conv2 = conv_layer(cin, cout, 3, down=True)
        self.skip = conv_layer(cin, cout, 1, down=True, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class EqualLinear(nn.Module):
    """Equalized linear (keys ``weight``, ``bias``), optionally with the fused leaky ReLU."""

    def __init__(self, cin: int, cout: int, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1.0 / math.sqrt(cin)
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.scale)
        if self.activate:
            return F.leaky_relu(out + self.bias, 0.2) * math.sqrt(2.0)
        return out + self.bias


class AuthorsDiscriminator(nn.Module):
    """The authors' discriminator (oracle) for input size ``size`` (a power of two >= 8).

    Args:
        size: input resolution.
        channels: channel table by resolution (default: REFERENCE.md's); a small table gives a
            tiny discriminator with the same layout and key names.
        group: minibatch-std group size.
    """

    def __init__(self, size: int = 256, channels: dict[int, int] | None = None,
                 group: int = 4) -> None:
        super().__init__()
        ch = dict(CHANNELS if channels is None else channels)
        n_blocks = int(math.log2(size)) - 2
        if size != 4 * 2 ** n_blocks or n_blocks < 1:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size, self.group = size, group
        convs: list[nn.Module] = [conv_layer(3, ch[size], 1)]
        res = size
        for _ in range(n_blocks):
            convs.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.convs = nn.Sequential(*convs)
        self.final_conv = conv_layer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activate=True),
                                          EqualLinear(ch[4], 1))

    def minibatch_std(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        y = x.reshape(g, b // g, 1, c, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # (M, 1, C, H, W)
        y = y.mean(dim=(2, 3, 4))  # (M, 1)
        y = y.view(b // g, 1, 1, 1).repeat(g, 1, h, w)  # sample i gets group i mod M
        return torch.cat([x, y], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.convs(images)
        x = self.final_conv(self.minibatch_std(x))
        return self.final_linear(x.reshape(x.shape[0], -1))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every bias a non-trivial value, so that a wrongly mapped bias changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def authors_checkpoint_with_d(generator: nn.Module | None, discriminator: nn.Module) -> dict:
    """A dict shaped like the authors' ``.pt``: ``g``, ``g_ema`` (copies of ``generator``'s
    state dict, or empty without one), ``d`` (``discriminator``'s) and empty optimizer states."""
    g = {} if generator is None else {k: v.detach().clone()
                                      for k, v in generator.state_dict().items()}
    d = {k: v.detach().clone() for k, v in discriminator.state_dict().items()}
    return {"g": g, "d": d, "g_ema": {k: v.clone() for k, v in g.items()}, "g_optim": {},
            "d_optim": {}}
