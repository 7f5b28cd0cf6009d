"""Run by tests/test_training.py under `accelerate launch --multi_gpu --num_processes 2`:
a few training steps on CPU (gloo), a stop and an exact resume, then each rank writes what it
saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from pixelfold.training import GANTrainer, TrainConfig


def _config(root: str, name: str, steps: int, **kw) -> TrainConfig:
    return TrainConfig(output_dir=os.path.join(root, name),
                       dataset=os.path.join(root, "images"), resolution=32,
                       preset="pixelfolder-tiny-32", d_channels={32: 16, 16: 32, 8: 32, 4: 32},
                       batch_size=2, max_steps=steps, checkpointing_steps=2, sample_every=2,
                       report_to="none", progress_bar=False, num_samples=4, d_reg_interval=1,
                       style_mixing_prob=0.5, **kw)


def _digest(trainer: GANTrainer) -> list[float]:
    return [float(sum(p.double().sum() for p in m.parameters()))
            for m in (trainer.G, trainer.D, trainer.ema.module)]


def _fresh_accelerator_state() -> None:
    """A second trainer in this process: keep the process group, forget the rest."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def main(root: str) -> None:
    trainer = GANTrainer(_config(root, "run", 3))
    trainer.train()
    acc = trainer.accelerator
    rank, world = acc.process_index, acc.num_processes
    full = _digest(trainer)
    nimg = trainer.state.nimg
    distributed_type = str(acc.distributed_type)
    _fresh_accelerator_state()
    GANTrainer(_config(root, "split", 2)).train()
    _fresh_accelerator_state()
    resumed = GANTrainer(_config(root, "split", 3, resume_from_checkpoint="latest"))
    resumed.train()
    ckpt = Path(root, "split", "checkpoints", "checkpoint-2")
    Path(root, f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world": world, "digest": full, "resumed_digest": _digest(resumed),
         "nimg": nimg, "distributed_type": distributed_type,
         "rng_files": sorted(p.name for p in ckpt.glob("rng-*")),
         "latent_state": resumed.latent_gen.get_state().double().sum().item(),
         "torch_cuda": torch.cuda.is_available()}))


if __name__ == "__main__":
    main(sys.argv[1])
