"""PixelFolder on a small dataset of your own: adaptive augmentation and resolution-aware R1.

The settings StyleGAN2-ADA recommends for a few thousand images, on PixelFolder-256:
adaptive discriminator augmentation (``--augment ada``: the ``bgc`` pipeline, target r_t 0.6,
p from 0 to 1 in 500 kimg), R1 gamma from NVlabs' heuristic (``--r1-gamma auto`` =
0.0002 * resolution^2 / total batch: 8.2 at 256 with 8 images per step), EMA half-life
``--ema-kimg auto`` (total batch * 10 / 32 kimg), horizontal flips. Give your folder with
``--dataset``; for another resolution also ``--resolution`` and a ``--preset`` of that size
(``pixelfolder-tiny-64`` at 64, ...). Add ``--metrics fid --metrics-every-kimg 50`` (with
``--inception-weights`` offline) to follow FID and keep the best generator.

    accelerate launch recipes/small_data.py --dataset path/to/images --output-dir runs/mine
"""

import sys

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

DEFAULTS = TrainConfig(
    output_dir="outputs/small_data",
    dataset="digits",
    resolution=256,
    preset="pixelfolder-256",
    batch_size=8,
    kimg=5_000,
    augment="ada",
    ada_target=0.6,
    ada_kimg=500,
    r1_gamma="auto",
    ema_kimg="auto",
    hflip=True,
    checkpointing_steps=2500,
    sample_every=500,
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=__doc__.splitlines()[0]))
