"""Quickstart: train a tiny PixelFolder on handwritten digits, fully offline, in minutes on CPU.

The data is scikit-learn's 1,797 handwritten digits (8x8, shipped inside the pip package),
upsampled to 32x32. Writes ``outputs/quickstart/{samples,generator_ema,checkpoints,logs}``.

    python recipes/quickstart.py                      # about 5 minutes on 2 CPU cores
    accelerate launch recipes/quickstart.py --max-steps 200
"""

import sys

from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

DEFAULTS = TrainConfig(
    output_dir="outputs/quickstart",
    dataset="digits",
    resolution=32,
    preset="pixelfolder-tiny-32",
    d_channels={32: 32, 16: 64, 8: 64, 4: 64},
    batch_size=32,
    max_steps=1500,
    ema_kimg=2.0,
    hflip=False,  # digits are not mirror-symmetric
    checkpointing_steps=500,
    sample_every=250,
    log_every=25,
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=__doc__.splitlines()[0]))
