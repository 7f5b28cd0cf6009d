"""PixelFolder-1024 on FFHQ at 1024x1024 with the authors' hyper-parameters (see ffhq256.py).

These are the PixelFolder authors' training settings, kept as they published them: R1 gamma 10
and EMA 10 kimg are tuned for 64 images per step at 256; for small datasets see
recipes/small_data.py (ADA, --r1-gamma auto).

Default dataset: the local folder ``data/ffhq/images1024x1024`` that NVlabs' ffhq-dataset
download script creates (70,000 PNGs); ``--dataset`` takes any image folder or Hub id.

    accelerate launch recipes/ffhq1024.py --dataset /data/ffhq/images1024x1024
"""

import sys

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

DEFAULTS = TrainConfig(
    output_dir="outputs/ffhq1024",
    dataset="data/ffhq/images1024x1024",
    resolution=1024,
    preset="pixelfolder-1024",
    batch_size=4,
    gradient_accumulation_steps=2,
    kimg=25_000,
    r1_gamma=10.0,
    jpeg_quality=85,
    checkpointing_steps=2500,
    sample_every=1000,
    num_samples=8,
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=" ".join(__doc__.split("\n\n")[:2])))
