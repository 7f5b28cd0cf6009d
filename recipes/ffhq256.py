"""PixelFolder-256 on FFHQ with the authors' hyper-parameters.

These are the PixelFolder authors' training settings, kept as they published them: R1 gamma 10
and EMA 10 kimg are tuned for 64 images per step at 256; for small datasets see
recipes/small_data.py (ADA, --r1-gamma auto).

Adam lr 0.002, betas (0, 0.99) with the lazy-regularization correction, R1 gamma 10 every 16
D steps, no path-length regularization, no style mixing, EMA half-life 10 kimg, horizontal
flips, images re-encoded as JPEG quality 85, and 64 images per step in total: 8 per GPU on 8
GPUs (``--batch-size`` is per device; scale it, or ``--gradient-accumulation-steps``, to keep
64 on fewer GPUs). Default dataset: ``bitmind/ffhq-256`` on the Hugging Face Hub (70,000 FFHQ
images at 256x256, column ``image``); ``--dataset`` takes any Hub id or image folder.

    accelerate launch recipes/ffhq256.py --output-dir runs/ffhq256
"""

import sys

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

DEFAULTS = TrainConfig(
    output_dir="outputs/ffhq256",
    dataset="bitmind/ffhq-256",
    image_column="image",
    resolution=256,
    preset="pixelfolder-256",
    batch_size=8,
    kimg=25_000,
    lr=0.002,
    betas=(0.0, 0.99),
    r1_gamma=10.0,
    d_reg_interval=16,
    g_reg_interval=4,
    pl_weight=0.0,
    style_mixing_prob=0.0,
    ema_kimg=10.0,
    hflip=True,
    jpeg_quality=85,
    checkpointing_steps=5000,
    sample_every=1000,
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=" ".join(__doc__.split("\n\n")[:2])))
