"""Draw images with an untrained miniature PixelFolder built from ``pixelfold.layers`` alone.

Until the training recipe exists, this is pixelfold's "main job" in miniature: a
pixel-regression generator that turns a latent ``z`` into an image by predicting every pixel
from its coordinates, in the way one stage of PixelFolder does (the architecture is described
in docs/models/spec.md):

1. ``MappingNetwork``: ``z -> w``, the style of every modulated layer.
2. Pixel tensor initialization at full resolution: per-pixel ``FourierFeatures`` of the
   ``coordinate_grid`` concatenated with a learned ``CoordinateEmbedding``, projected by 1x1
   ``EqualConv2d`` layers (no bias) each followed by ``BiasLeakyReLU`` (which carries the bias).
3. ``PixelFold`` twice: the thin full-resolution tensor becomes a wide one at 1/4 resolution.
4. Twice: ``StyledConv2d`` (3x3 ModConv + noise + activation) -> ``PixelUnfold`` ->
   ``StyledConv2d`` -> ``ToRGB``, whose running RGB skip is upsampled x2 with the [1, 3, 3, 1]
   FIR filter. The image is thus drawn at 1/2 resolution and refined at full resolution.

The weights are random (seeded), so the pictures are abstract patterns, not faces. An untrained
generator has no reason to output values in [-1, 1], so by default each image is stretched to
its own range (per-image min/max mapped to [-1, 1]) before the usual [-1, 1] -> uint8
conversion; ``--no-normalize`` clamps to [-1, 1] instead, as you would for a trained model.

Run it from the repository root (a few seconds on 2 CPU cores)::

    .venv/bin/python examples/draw_with_layers.py
    .venv/bin/python examples/draw_with_layers.py --seed 3 --num-images 9 --resolution 128 \\
        --out outputs/pattern.png
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pixelfold.layers import (
    BiasLeakyReLU,
    CoordinateEmbedding,
    EqualConv2d,
    FourierFeatures,
    MappingNetwork,
    NoiseMode,
    PixelFold,
    PixelUnfold,
    StyledConv2d,
    ToRGB,
    coordinate_grid,
)


class MiniPixelFolder(nn.Module):
    """One PixelFolder stage as a whole generator: ``z (B, style_dim) -> images (B, 3, R, R)``.

    Widths follow the 256 model's proportions scaled down: the 1x1 projection ends at
    ``channels // 16`` so that two 2x2 folds give exactly ``channels`` (32 -> 512 there).

    Shapes for ``resolution=64, channels=128, fourier_channels=32``::

        fourier(grid) 32 + embedding 32   64x64
        1x1 64 -> 64, 1x1 64 -> 8         64x64
        fold, fold       8 -> 128         16x16
        conv0 128 -> 128, unfold -> 32    32x32
        conv1  32 -> 128, ToRGB           32x32  (first RGB)
        conv2 128 -> 128, unfold -> 32    64x64
        conv3  32 -> 128, ToRGB           64x64  (+ upsampled RGB skip)

    Args:
        resolution: output side, divisible by 4 (the pixel tensor is folded twice).
        style_dim: width of ``z`` and ``w``.
        channels: width of the modulated convolutions.
        fourier_channels: width of the Fourier features and of the coordinate embedding.
        mapping_layers: depth of the mapping network (8 in PixelFolder).
    """

    def __init__(
        self,
        resolution: int = 64,
        *,
        style_dim: int = 128,
        channels: int = 128,
        fourier_channels: int = 32,
        mapping_layers: int = 4,
    ) -> None:
        super().__init__()
        if resolution < 4 or resolution % 4:
            raise ValueError(f"resolution must be a positive multiple of 4, got {resolution}")
        if channels % 16:
            raise ValueError(f"channels must be divisible by 16 (two 2x2 folds), got {channels}")
        self.resolution = resolution
        self.style_dim = style_dim
        self.mapping = MappingNetwork(style_dim, style_dim, mapping_layers)

        # Pixel tensor initialization: features of every output pixel, from its coordinates.
        self.fourier = FourierFeatures(fourier_channels)
        self.embedding = CoordinateEmbedding(fourier_channels, resolution)
        thin = channels // 16  # after two folds: thin * 4 * 4 == channels
        self.project = nn.Sequential(
            EqualConv2d(2 * fourier_channels, 2 * fourier_channels, 1, bias=False),
            BiasLeakyReLU(2 * fourier_channels),
            EqualConv2d(2 * fourier_channels, thin, 1, bias=False),
            BiasLeakyReLU(thin),
        )
        self.fold = nn.Sequential(PixelFold(2), PixelFold(2))

        # Two blocks of ModConv -> unfold -> ModConv -> ToRGB. The second conv of each block
        # takes channels // 4 inputs because the unfold moved 3/4 of the channels into pixels.
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for _ in range(2):
            self.convs.append(StyledConv2d(channels, channels, 3, style_dim))
            self.convs.append(StyledConv2d(channels // 4, channels, 3, style_dim))
            self.to_rgbs.append(ToRGB(channels, style_dim))  # upsamples the skip by 2
        self.unfold = PixelUnfold(2)

        # Latent layout of PixelFolder: 4 * stages + 1 latents; conv k uses w[k] and ToRGB j
        # uses w[2j + 2]. Without style mixing they are all the same w.
        self.num_ws = len(self.convs) + 1  # 4 * stages + 1 = 5

    def forward(self, z: torch.Tensor, noise_mode: NoiseMode = "random") -> torch.Tensor:
        batch = z.shape[0]
        ws = self.mapping(z, num_ws=self.num_ws)  # (B, num_ws, style_dim)

        grid = coordinate_grid(self.resolution, batch_size=batch, device=z.device)
        x = torch.cat([self.fourier(grid), self.embedding(batch)], dim=1)
        x = self.fold(self.project(x))  # (B, channels, R/4, R/4)

        rgb = None
        for j, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * j](x, ws[:, 2 * j], noise_mode=noise_mode)
            x = self.unfold(x)  # channels / 4, resolution x 2
            x = self.convs[2 * j + 1](x, ws[:, 2 * j + 1], noise_mode=noise_mode)
            rgb = to_rgb(x, ws[:, 2 * j + 2], skip=rgb)  # first call: no skip yet
        return rgb


def to_uint8(images: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Map generator output ``(B, 3, H, W)`` to uint8 ``[0, 255]``.

    With ``normalize``, each image's own min/max are first stretched to [-1, 1]; then the
    standard ``(x + 1) * 127.5`` conversion of a [-1, 1] generator output is applied.
    """
    if normalize:
        lo = images.amin(dim=(1, 2, 3), keepdim=True)
        hi = images.amax(dim=(1, 2, 3), keepdim=True)
        images = (images - lo) / (hi - lo).clamp_min(1e-8) * 2.0 - 1.0
    return ((images.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, padding: int = 2) -> np.ndarray:
    """Tile uint8 images ``(B, 3, H, W)`` into one ``(H', W', 3)`` array, about square,
    separated by ``padding`` black pixels."""
    b, c, h, w = images.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding,
                       dtype=torch.uint8)
    for i in range(b):
        top = padding + (i // cols) * (h + padding)
        left = padding + (i % cols) * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.permute(1, 2, 0).numpy()


def save_png_atomically(array: np.ndarray, path: Path) -> None:
    """Write ``array`` as a PNG at ``path`` without ever leaving a partial file there: write a
    temporary file in the same folder, then ``os.replace`` it (atomic on one filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(array).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600 files; make it an ordinary file
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/draw_with_layers.png"),
                        help="PNG to write (default: outputs/draw_with_layers.png)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and of z")
    parser.add_argument("--num-images", type=int, default=16, help="images in the grid")
    parser.add_argument("--resolution", type=int, default=64,
                        help="image side, a multiple of 4 (default: 64)")
    parser.add_argument("--no-normalize", action="store_true",
                        help="clamp the raw output to [-1, 1] instead of stretching each image")
    args = parser.parse_args()
    if args.num_images < 1:
        parser.error(f"--num-images must be >= 1, got {args.num_images}")
    if args.resolution < 4 or args.resolution % 4:
        parser.error(f"--resolution must be a positive multiple of 4, got {args.resolution}")

    torch.manual_seed(args.seed)  # weights (and the per-layer noise)
    generator = MiniPixelFolder(args.resolution).eval()
    num_params = sum(p.numel() for p in generator.parameters())

    z_gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.num_images, generator.style_dim, generator=z_gen)
    with torch.inference_mode():
        images = generator(z)

    grid = make_grid(to_uint8(images, normalize=not args.no_normalize))
    save_png_atomically(grid, args.out)
    print(f"generator: {num_params:,} parameters")
    print(f"raw output range: [{images.min().item():.3f}, {images.max().item():.3f}]")
    print(f"wrote {args.num_images} images of {args.resolution}x{args.resolution} "
          f"({grid.shape[1]}x{grid.shape[0]} grid) to {args.out.resolve()}")


if __name__ == "__main__":
    main()
