"""PixelFolder-256 on LSUN Church with the authors' hyper-parameters (see ffhq256.py).

These are the PixelFolder authors' training settings, kept as they published them: R1 gamma 10
and EMA 10 kimg are tuned for 64 images per step at 256; for small datasets see
recipes/small_data.py (ADA, --r1-gamma auto).

Default dataset: ``tglcourse/lsun_church_train`` on the Hugging Face Hub (119,915 LSUN Church
outdoor training images, column ``image``); images are resized (box filter) and center-cropped
to 256x256.

    accelerate launch recipes/church256.py --output-dir runs/church256
"""

import sys

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

DEFAULTS = TrainConfig(
    output_dir="outputs/church256",
    dataset="tglcourse/lsun_church_train",
    image_column="image",
    resolution=256,
    preset="pixelfolder-256",
    batch_size=8,
    kimg=25_000,
    r1_gamma=10.0,
    jpeg_quality=85,
    checkpointing_steps=5000,
    sample_every=1000,
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=" ".join(__doc__.split("\n\n")[:2])))
