"""Reuse PixelFold / PixelUnfold inside your own model: a tiny U-Net-like denoiser.

PixelFolder folds a pixel tensor (``PixelFold``) so that its 3x3 convolutions run at a fraction
of the resolution, then unfolds it (``PixelUnfold``) back. Both layers are exact, parameter-free
permutations of tensor elements, so they also make a lossless downsample / upsample pair for any
encoder-decoder. This script shows that outside of a GAN:

1. ``PixelFold(2).inverse()`` is a ``PixelUnfold(2)`` that undoes the fold exactly, and
   ``channel_order="pixel_shuffle"`` matches ``torch.nn.functional.pixel_unshuffle`` /
   ``pixel_shuffle`` (the default ``"pixelfolder"`` order, needed for the authors' weights,
   stacks the channels differently).
2. A small U-Net whose down- and up-sampling are folds and unfolds, with skip connections,
   is trained with Adam for a few dozen steps to denoise procedurally generated 32x32 images
   (random smooth colored blobs plus Gaussian noise). The loss on a fixed held-out batch is
   printed before and after training, and the script checks that it went down.

Run it from the repository root (about 5 s on 2 CPU cores)::

    .venv/bin/python examples/fold_in_your_model.py
    .venv/bin/python examples/fold_in_your_model.py --steps 200 --seed 1
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from pixelfold.layers import PixelFold, PixelUnfold

IMAGE_SIZE = 32
NOISE_STD = 0.3  # std of the Gaussian noise added to images in [-1, 1]


# ------------------------------------------------------------------------------------------
# 1. Fold, inverse and channel order
# ------------------------------------------------------------------------------------------


def demo_fold_properties(generator: torch.Generator) -> None:
    """Check (and print) the identities that make folds safe to drop into a model."""
    x = torch.randn(2, 3, 8, 8, generator=generator)

    fold = PixelFold(2)
    unfold = fold.inverse()  # a PixelUnfold(2) with the same channel order
    assert isinstance(unfold, PixelUnfold) and unfold.factor == fold.factor
    folded = fold(x)
    print(f"PixelFold(2):       {tuple(x.shape)} -> {tuple(folded.shape)}")
    print(f"fold.inverse():     {type(unfold).__name__}({unfold.extra_repr()})")
    # A fold is a permutation, so the round trip is exact (bit for bit, not approximately).
    assert torch.equal(unfold(folded), x)
    print("unfold(fold(x)) == x exactly: True")

    # With channel_order="pixel_shuffle" the layers are PyTorch's pixel_(un)shuffle.
    shuffle_fold = PixelFold(2, channel_order="pixel_shuffle")
    shuffle_unfold = PixelUnfold(2, channel_order="pixel_shuffle")
    assert torch.equal(shuffle_fold(x), F.pixel_unshuffle(x, 2))
    assert torch.equal(shuffle_unfold(folded), F.pixel_shuffle(folded, 2))
    assert torch.equal(shuffle_fold.inverse()(shuffle_fold(x)), x)
    print('PixelFold(2, channel_order="pixel_shuffle")(x) == F.pixel_unshuffle(x, 2): True')
    print('PixelUnfold(2, channel_order="pixel_shuffle")(y) == F.pixel_shuffle(y, 2): True '
          '(y = a folded tensor)')

    # The default "pixelfolder" order holds the same values with the channels permuted:
    # (p1 p2 c) instead of (c p1 p2).
    same_values = torch.equal(folded.sort(dim=1).values, F.pixel_unshuffle(x, 2).sort(dim=1).values)
    print(f"default order == pixel_unshuffle: {torch.equal(folded, F.pixel_unshuffle(x, 2))} "
          f"(same values per pixel, different channel order: {same_values})")


# ------------------------------------------------------------------------------------------
# 2. Data: random smooth blobs
# ------------------------------------------------------------------------------------------


def make_blobs(batch_size: int, generator: torch.Generator, num_blobs: int = 4) -> torch.Tensor:
    """Images ``(B, 3, 32, 32)`` in ``[-1, 1]``: a few soft Gaussian blobs of random color,
    position and size on a dark background."""
    coords = torch.linspace(-1.0, 1.0, IMAGE_SIZE)
    ys, xs = coords[:, None], coords[None, :]  # (H, 1), (1, W): broadcast to (H, W)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    cx = rand(batch_size, num_blobs, 1, 1) * 1.6 - 0.8
    cy = rand(batch_size, num_blobs, 1, 1) * 1.6 - 0.8
    radius = rand(batch_size, num_blobs, 1, 1) * 0.3 + 0.15
    color = rand(batch_size, num_blobs, 3)
    # One soft mask per blob: (B, num_blobs, H, W).
    masks = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
    # Weighted sum of colors: (B, 3, H, W), then map [0, 1] -> [-1, 1].
    images = torch.einsum("bnhw,bnc->bchw", masks, color).clamp(0.0, 1.0)
    return images * 2.0 - 1.0


def add_noise(clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``clean + N(0, NOISE_STD**2)`` noise."""
    return clean + NOISE_STD * torch.randn(clean.shape, generator=generator)


# ------------------------------------------------------------------------------------------
# 3. A U-Net whose down/up-sampling are PixelFold / PixelUnfold
# ------------------------------------------------------------------------------------------


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (resolution kept) + SiLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.SiLU())


class FoldUNet(nn.Module):
    """Tiny denoising U-Net: every downsample is a ``PixelFold(2)`` (channels x4, resolution
    /2) and every upsample is its inverse ``PixelUnfold(2)`` (channels /4, resolution x2).

    Shapes for a 32x32 input with ``width=16``::

        enc0    conv      3 -> 16             32x32  ------------ skip0 ----.
        fold              16 -> 64            16x16                          |
        enc1    conv      64 -> 32            16x16  -- skip1 --.            |
        fold              32 -> 128            8x8              |            |
        mid     2 convs   128 -> 128           8x8              |            |
        unfold            128 -> 32           16x16             |            |
        dec1    conv      cat(32, 32) -> 64   16x16  <----------'            |
        unfold            64 -> 16            32x32                          |
        dec0    conv      cat(16, 16) -> 16   32x32  <-----------------------'
        out     conv      16 -> 3             32x32  (predicted noise: output = input - it)

    Nothing is lost by the folds themselves: all the model's capacity goes into the convs.
    """

    def __init__(self, channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.fold = PixelFold(2)
        self.unfold = self.fold.inverse()  # PixelUnfold(2), same channel order
        self.enc0 = conv_block(channels, width)
        self.enc1 = conv_block(4 * width, 2 * width)
        self.mid = nn.Sequential(conv_block(8 * width, 8 * width), conv_block(8 * width, 8 * width))
        self.dec1 = conv_block(2 * width + 2 * width, 4 * width)
        self.dec0 = conv_block(width + width, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        skip0 = self.enc0(noisy)  # (B, w, 32, 32)
        skip1 = self.enc1(self.fold(skip0))  # (B, 2w, 16, 16)
        h = self.mid(self.fold(skip1))  # (B, 8w, 8, 8)
        h = self.dec1(torch.cat([self.unfold(h), skip1], dim=1))  # (B, 4w, 16, 16)
        h = self.dec0(torch.cat([self.unfold(h), skip0], dim=1))  # (B, w, 32, 32)
        # Residual learning: predict the noise and subtract it.
        return noisy - self.out(h)


# ------------------------------------------------------------------------------------------
# 4. Training
# ------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """Mean squared error of the denoised images against the clean ones."""
    model.eval()
    loss = F.mse_loss(model(noisy), clean).item()
    model.train()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="Adam steps (default: 60)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")

    torch.manual_seed(args.seed)  # model initialization
    data_gen = torch.Generator().manual_seed(args.seed)  # images and noise

    print("== PixelFold / PixelUnfold identities ==")
    demo_fold_properties(data_gen)

    print("\n== Training a fold/unfold U-Net to denoise 32x32 blobs ==")
    model = FoldUNet()
    num_params = sum(p.numel() for p in model.parameters())
    print(f"FoldUNet: {num_params:,} parameters (PixelFold/PixelUnfold add none)")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    # A fixed held-out batch, so that start and end losses are comparable.
    val_clean = make_blobs(128, data_gen)
    val_noisy = add_noise(val_clean, data_gen)
    identity_loss = F.mse_loss(val_noisy, val_clean).item()
    start_loss = evaluate(model, val_clean, val_noisy)
    report = lambda label, mse: print(f"{label:<40} {mse:.5f}")
    report("held-out MSE of the noisy input itself", identity_loss)  # "do nothing" baseline
    report("held-out MSE at step 0", start_loss)

    start_time = time.perf_counter()
    log_every = max(1, args.steps // 5)
    for step in range(1, args.steps + 1):
        clean = make_blobs(args.batch_size, data_gen)
        noisy = add_noise(clean, data_gen)
        loss = F.mse_loss(model(noisy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:4d}/{args.steps}  train MSE {loss.item():.5f}")
    elapsed = time.perf_counter() - start_time

    end_loss = evaluate(model, val_clean, val_noisy)
    psnr = lambda mse: 10 * math.log10(4.0 / mse)  # peak-to-peak range of [-1, 1] is 2
    report(f"held-out MSE after {args.steps} steps", end_loss)
    print(f"PSNR: noisy {psnr(identity_loss):.2f} dB, step 0 {psnr(start_loss):.2f} dB, "
          f"trained {psnr(end_loss):.2f} dB  ({elapsed:.1f} s of training)")
    assert end_loss < start_loss, f"loss did not go down: {start_loss:.5f} -> {end_loss:.5f}"
    print(f"loss went down: {start_loss:.5f} -> {end_loss:.5f}")


if __name__ == "__main__":
    main()
