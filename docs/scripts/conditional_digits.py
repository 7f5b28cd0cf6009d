"""Class-conditional PixelFolder on the digits: train, then measure how often a classifier
agrees with the asked class, and the time per training step against an unconditional model.

A tiny conditional model is trained on scikit-learn's 1,797 handwritten digits (10 classes,
upsampled to 16x16) with ``--cond``; then ``pixelfold generate --class K`` makes
``--per-class`` images of every class, and a logistic regression trained on the real 8x8
digits (scikit-learn) classifies them, downsampled back to 8x8 (2x2 means, ink scale 0..16).
The accuracy is the share of images whose predicted digit is the asked ``K`` (chance: 10%).

The timing interleaves steps of the same tiny spec with and without labels (one trainer of
each, alternating rounds, median per round), on one thread: the machine may be shared, so the
ratio is the number to read. Offline, from the repository root::

    python docs/scripts/conditional_digits.py --steps 1500      # 3-6 minutes on 1 CPU
    python docs/scripts/conditional_digits.py --steps 0 --model RUN/generator_ema
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pixelfold.models import GeneratorSpec, presets  # noqa: E402
from pixelfold.training import TrainConfig  # noqa: E402

RESOLUTION = 16
# Settings for short runs of a small model, measured on this project's CPU machine (the
# table of docs/training/conditional.md): StyleGAN2-ADA's mapping learning-rate multiplier
# 0.01 and D label mapping of 8 layers, with lr 0.002, learn the classes slowly (2% after 300
# steps, 24% after 800 with multiplier 0.1); multiplier 1, 2 layers and lr 0.004 reached 78%
# after 500 steps and 100% after 1,500.
MAPPING_LR_MUL = 1.0
D_MAPPING_LAYERS = 2
LR = 0.004
D_CHANNELS = {16: 32, 8: 32, 4: 32}


def tiny_spec() -> GeneratorSpec:
    """A two-stage PixelFolder at 16x16 (stages at 4 and 16), 32 channels, z and w of 32."""
    spec = presets.pixelfolder((4, RESOLUTION), channels={1: 32, 2: 32, 4: 32, 8: 32, 16: 16},
                               z_dim=32, w_dim=32, mapping_layers=2, stage0_projection=4)
    return dataclasses.replace(spec, mapping_lr_mul=MAPPING_LR_MUL)


def config(output_dir: Path, steps: int, *, cond: bool = True, **kw) -> TrainConfig:
    """The run: the tiny spec (written beside the run) on the digits, batch 32."""
    spec_path = output_dir.parent / f"{output_dir.name}-generator.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(tiny_spec().to_json())
    base = dict(output_dir=str(output_dir), dataset="digits", resolution=RESOLUTION,
                generator_config=str(spec_path), d_channels=D_CHANNELS, cond=cond,
                batch_size=32, max_steps=max(steps, 1), lr=LR, r1_gamma=0.1, ema_kimg=1.0,
                hflip=False, checkpointing_steps=max(steps, 1), sample_every=max(steps, 1),
                log_every=max(steps, 1), report_to="none", progress_bar=False, seed=0,
                d_mapping_layers=D_MAPPING_LAYERS)
    base.update(kw)
    return TrainConfig(**base)


def digit_classifier():
    """A logistic regression on the real 8x8 digits (ink 0..16), with its training accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    clf = LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)
    return clf


def to_digit_features(images: torch.Tensor) -> np.ndarray:
    """Generated ``(N, 3, 16, 16)`` images in ``[-1, 1]`` (dark ink on white) as the
    classifier's ``(N, 64)`` ink features: gray, 2x2 means down to 8x8, ink = 1 - gray."""
    gray = (images.float().clamp(-1, 1).mean(1, keepdim=True) + 1) / 2
    small = torch.nn.functional.avg_pool2d(gray, RESOLUTION // 8)
    return (1 - small).flatten(1).numpy()


def class_accuracy(model: str | os.PathLike, per_class: int = 50, seed0: int = 0
                   ) -> tuple[float, list[float]]:
    """``pixelfold generate MODEL --class K --seeds ... --grid`` for every class, classified:
    the overall share of matches and the share per class."""
    from PIL import Image

    from pixelfold.cli import main

    clf = digit_classifier()
    per = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(10):
            out = Path(tmp) / f"class{k}"
            seeds = f"{seed0 + k * per_class}-{seed0 + (k + 1) * per_class - 1}"
            assert main(["generate", str(model), "--class", str(k), "--seeds", seeds,
                         "--out", str(out)]) == 0
            images = torch.stack([
                torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32))
                .permute(2, 0, 1) / 127.5 - 1 for p in sorted(out.glob("*.png"))])
            per.append(float((clf.predict(to_digit_features(images)) == k).mean()))
    return float(np.mean(per)), per


def time_steps(rounds: int = 5, steps_per_round: int = 5) -> tuple[float, float]:
    """Median seconds per training step of the tiny spec, unconditional and conditional,
    interleaved round by round in this process."""
    from accelerate.state import AcceleratorState, GradientState

    from pixelfold.training import GANTrainer

    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cond in (False, True):
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
            trainers[cond] = GANTrainer(config(Path(tmp) / f"run-{cond}", 1000, cond=cond))
        for t in trainers.values():
            t.train_step()  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for cond, t in trainers.items():
                start = time.perf_counter()
                for _ in range(steps_per_round):
                    t.train_step()
                times[cond].append((time.perf_counter() - start) / steps_per_round)
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps (0: --model)")
    parser.add_argument("--model", default=None, help="a trained conditional generator folder")
    parser.add_argument("--output-dir", default=None, help="the run's folder (default: temp)")
    parser.add_argument("--per-class", type=int, default=50, help="images per class")
    parser.add_argument("--no-timing", action="store_true", help="skip the step timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = args.model
    tmp = tempfile.TemporaryDirectory()
    if args.steps > 0:
        from pixelfold.training import train

        out = Path(args.output_dir or tmp.name) / "cond-digits"
        start = time.perf_counter()
        model = train(config(out, args.steps))
        print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s: {model}")
    if model is None:
        parser.error("give --steps N to train, or --model")
    accuracy, per = class_accuracy(model, args.per_class)
    print(f"classifier agrees with --class K on {accuracy:.1%} of {10 * args.per_class} "
          f"images (chance 10%); per class: " + " ".join(f"{k}:{a:.0%}"
                                                          for k, a in enumerate(per)))
    if not args.no_timing:
        plain, cond = time_steps()
        print(f"time per training step (batch 32, 16x16, 1 thread): unconditional "
              f"{plain * 1000:.1f} ms, conditional {cond * 1000:.1f} ms "
              f"({cond / plain - 1:+.1%})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
