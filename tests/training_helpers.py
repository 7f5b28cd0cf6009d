"""What the training tests share: an image folder with every kind of file, a tiny
configuration, and the check that a stopped and resumed run ends where an uninterrupted one
does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelfold.training import GANTrainer, TrainConfig

D_CHANNELS = {32: 16, 16: 32, 8: 32, 4: 32}


def _write_images(folder: Path, n: int = 12, size: int = 40) -> Path:
    """An image folder with RGB, grayscale, RGBA, CMYK and palette images, one truncated and
    one garbage file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "CMYK", "P"]
    for i in range(n):
        arr = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
        img = Image.fromarray(arr, "RGB")
        mode = modes[i % len(modes)]
        img = img.convert(mode) if mode != "P" else img.quantize(16)
        ext = "jpg" if mode == "CMYK" else "png"
        img.save(folder / f"img{i:03d}.{ext}")
    good = (folder / "img000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "garbage.png").write_bytes(b"this is not an image")
    return folder


def _config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / "run"), dataset=str(tmp_path / "images"),
                resolution=32, preset="pixelfolder-tiny-32", d_channels=D_CHANNELS,
                batch_size=4, max_steps=4, checkpointing_steps=2, sample_every=2, log_every=1,
                num_samples=4, ema_kimg=0.05, d_reg_interval=2, report_to="none",
                progress_bar=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def reset_accelerate() -> None:
    """Forget Accelerate's process-wide state (between trainers in one process)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def resumed_run(tmp_path: Path, stop: int, total: int, **kw) -> GANTrainer:
    """Train ``stop`` steps of ``_config(tmp_path, **kw)`` in ``tmp_path/split``, then resume
    that run to ``total`` steps (Accelerate's state reset before each): the resumed trainer,
    trained."""
    out = str(tmp_path / "split")
    reset_accelerate()
    GANTrainer(_config(tmp_path, output_dir=out, max_steps=stop, **kw)).train()
    reset_accelerate()
    second = GANTrainer(_config(tmp_path, output_dir=out, max_steps=total,
                                resume_from_checkpoint="latest", **kw))
    second.train()
    return second


def assert_same_weights(a: GANTrainer, b: GANTrainer) -> None:
    """G, D and the EMA generator of two trainers hold the same tensors, bit for bit."""
    for want, have in ((a.G, b.G), (a.D, b.D), (a.ema.module, b.ema.module)):
        sa, sb = want.state_dict(), have.state_dict()
        assert list(sa) == list(sb)
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
