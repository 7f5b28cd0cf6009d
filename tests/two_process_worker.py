"""Run by tests/test_training.py under `accelerate launch --multi_gpu --num_processes 2`:
a few training steps on CPU (gloo), then each rank writes what it saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pixelfold.training import GANTrainer, TrainConfig


def main(root: str) -> None:
    cfg = TrainConfig(output_dir=os.path.join(root, "run"), dataset=os.path.join(root, "images"),
                      resolution=32, preset="pixelfolder-tiny-32",
                      d_channels={32: 16, 16: 32, 8: 32, 4: 32}, batch_size=2, max_steps=2,
                      checkpointing_steps=2, sample_every=2, report_to="none",
                      progress_bar=False, num_samples=4, d_reg_interval=1)
    trainer = GANTrainer(cfg)
    trainer.train()
    acc = trainer.accelerator
    digest = float(sum(p.double().sum() for p in trainer.G.parameters()))
    Path(root, f"rank{acc.process_index}.json").write_text(json.dumps(
        {"rank": acc.process_index, "world": acc.num_processes, "digest": digest,
         "nimg": trainer.state.nimg, "distributed_type": str(acc.distributed_type)}))


if __name__ == "__main__":
    main(sys.argv[1])
