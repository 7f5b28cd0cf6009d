"""Training configuration and the command line shared by every recipe."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..utils.errors import ConfigError

__all__ = ["REPORT_TO", "RESUME_ADJUSTABLE", "TrainConfig", "build_arg_parser", "parse_args",
           "tracker_names"]

REPORT_TO = {"tensorboard": ("tensorboard",), "wandb": ("wandb",),
             "all": ("tensorboard", "wandb"), "none": ()}
"""The values of ``report_to`` and the Accelerate trackers each one logs to."""


def tracker_names(report_to: str) -> tuple[str, ...]:
    """The Accelerate trackers of a ``report_to`` value (``"all"``: TensorBoard and Weights &
    Biases; ``"none"``: none)."""
    if report_to not in REPORT_TO:
        raise ConfigError(f"report_to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
    return REPORT_TO[report_to]

RESUME_ADJUSTABLE = frozenset({
    "dataset", "image_column", "split", "max_steps", "kimg", "lr", "betas", "r1_gamma",
    "pl_weight", "style_mixing_prob", "ema_kimg", "ema_rampup", "hflip", "resize_filter",
    "jpeg_quality", "mixed_precision", "cudnn_benchmark", "checkpointing_steps",
    "checkpoints_total_limit", "sample_every", "num_samples", "log_every", "num_workers",
    "report_to", "progress_bar", "augment", "augment_p", "ada_target", "ada_kimg",
    "ada_interval", "diffaugment_policy", "metrics", "metrics_every_kimg", "metrics_num_gen",
    "metrics_num_real", "best_metric", "inception_weights", "vgg16_weights", "lpips_weights",
    "dinov2_weights",
})
"""Settings a resumed run may change: its value is used from then on (learning rate and betas
are applied to the restored optimizers) and the change is recorded in ``trainer_state.json``.
Every other setting (architecture, discriminator widths, resolution, batch layout, seed,
lazy-regularization intervals, streaming) is fixed for a run: a resume with another value is
refused."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the PixelFolder authors' settings
    (their released training code): Adam lr 0.002, betas (0, 0.99), lazy R1 gamma 10 every 16
    D steps, no path length regularization, no style mixing, EMA half-life 10 kimg, batch 64
    in total.

    Args:
        output_dir: where checkpoints, samples, logs and ``generator_ema/`` go.
        dataset: Hub id, image folder, saved dataset folder, or ``"digits"`` (scikit-learn's
            handwritten digits, offline).
        image_column: image column of the dataset (auto-detected when ``None``).
        cond: train a class-conditional model on the dataset's labels (see
            [Conditional](../training/conditional.md)): ``c_dim`` of G and D comes from the
            number of classes, which must match a ``generator_config`` that sets it.
        class_column: the label column for ``cond`` (a ``ClassLabel`` or integer column;
            ``None``: the first ``ClassLabel`` column, e.g. the ``label`` of an image folder
            with one subfolder per class, else ``label``).
        d_mapping_layers: depth of the conditional discriminator's label mapping
            (StyleGAN2-ADA: 8; fewer layers keep the classes' projection vectors further
            apart at the start, which short runs of small models learn from sooner).
        split: dataset split.
        streaming: stream the dataset.
        resolution: training resolution (must equal the generator's).
        preset: generator preset name.
        generator_config: path to a generator ``config.json`` (overrides ``preset``).
        d_channels: discriminator width by resolution, e.g. ``{32: 64, 16: 64, 8: 64, 4: 64}``
            (``None``: the StyleGAN2 table).
        batch_size: images per device per optimizer step (before accumulation).
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_steps: optimizer steps to run (``kimg`` wins when set).
        kimg: thousands of real images to show the discriminator.
        lr: Adam learning rate of both networks (before the lazy-regularization correction).
        betas: Adam betas.
        r1_gamma: R1 weight, or ``"auto"``: NVlabs' heuristic ``0.0002 * resolution² /
            total batch`` (StyleGAN2-ADA's ``--gamma`` default; 0.0064 at 32x32 with 32
            images per step, 8.2 at 256x256 with 8).
        d_reg_interval: lazy R1 interval (D steps).
        g_reg_interval: G's lazy interval used for its Adam correction (the authors' code
            corrects G's Adam for an interval of 4 even without a G regularizer).
        pl_weight: path-length regularization weight (0: off, the authors' setting).
        style_mixing_prob: style-mixing probability (0: off, the authors' setting).
        ema_kimg: EMA half-life in thousands of images, or ``"auto"``: ``total batch * 10 /
            32`` (StyleGAN2-ADA's default: 10 kimg at 32 images per step).
        ema_rampup: EMA ramp-up (NVlabs; ``None``: off).
        hflip: random horizontal flips of the real images.
        augment: augmentation of every image the discriminator sees (reals, fakes, the reals
            of R1): ``"none"``, ``"ada"`` (StyleGAN2-ADA's ``bgc`` pipeline; adaptive unless
            ``augment_p`` is set) or ``"diffaugment"`` (color, translation, cutout). See
            [`build_augment`][pixelfold.training.augment.build_augment].
        augment_p: a fixed ADA strength in ``[0, 1]`` instead of the adaptive one.
        ada_target: adaptive ADA's target for ``r_t = E[sign(D(real))]``, in ``(0, 1)``.
        ada_kimg: adaptive ADA: thousands of images for ``p`` to go from 0 to 1.
        ada_interval: adaptive ADA: steps between adjustments of ``p``.
        diffaugment_policy: DiffAugment's comma-separated policy.
        metrics: metrics of the EMA generator during training, comma-separated from
            [`TRAIN_METRICS`][pixelfold.training.evaluation.TRAIN_METRICS] (``"fid,kid"``;
            ``None`` or ``"none"``: none). See
            [`TrainingMetrics`][pixelfold.training.evaluation.TrainingMetrics].
        metrics_every_kimg: evaluate every this many thousand images (``None``: with every
            checkpoint); always at the end of the run.
        metrics_num_gen: generated images per evaluation.
        metrics_num_real: real images at most.
        best_metric: the value that picks ``generator_ema-best/`` (default: the first
            metric's, e.g. ``"fid"``).
        inception_weights: local Inception-v3 weights file for FID/KID/IS (else
            ``PIXELFOLD_INCEPTION_WEIGHTS``, the caches, a download).
        vgg16_weights: local VGG16 weights file for precision/recall and PPL.
        lpips_weights: local LPIPS weights file for PPL.
        dinov2_weights: local DINOv2 weights file for FD-DINOv2.
        resize_filter: resize filter for the data.
        jpeg_quality: re-encode training images as JPEG at this quality first (authors: 85).
        mixed_precision: ``"no"``, ``"bf16"`` or ``"fp16"``.
        cudnn_benchmark: on CUDA, let cuDNN time its convolution algorithms for the (fixed)
            shapes of training and keep the fastest (``torch.backends.cudnn.benchmark``, as
            NVlabs' StyleGAN2 trainers do); ignored elsewhere.
        seed: global seed.
        checkpointing_steps: save a checkpoint every N steps.
        checkpoints_total_limit: keep the last K checkpoints.
        resume_from_checkpoint: ``"latest"``, a checkpoint folder, or ``None``.
        init_from: fine-tune: start from these weights instead of random ones: a
            ``save_pretrained`` generator folder (with its ``discriminator/`` when it has one),
            a training checkpoint or run folder, an authors' ``.pt`` or a Hub repo id (see
            [`load_init_weights`][pixelfold.training.finetune.load_init_weights]). Weights
            only: optimizers, step count and RNG start afresh; the EMA starts from the loaded
            EMA generator. The architecture must be the run's. Recorded in the run's settings;
            resuming the run continues from its own checkpoint and does not read it again.
        freeze_d: FreezeD: freeze D's from-RGB layer and its first ``freeze_d`` residual
            blocks, counted from the image (see
            [`freeze_discriminator`][pixelfold.training.finetune.freeze_discriminator]);
            0 freezes nothing.
        sample_every: write a sample grid every N steps.
        num_samples: images in a sample grid.
        log_every: log scalars every N steps.
        num_workers: dataloader workers.
        report_to: Accelerate trackers for the losses, learning rates, metrics and sample
            grids: ``"tensorboard"`` (in ``logs/``), ``"wandb"`` (Weights & Biases, the
            ``tracking`` extra; its files in ``logs/wandb`` unless ``WANDB_DIR`` is set, and
            ``WANDB_MODE=offline`` keeps them local), ``"all"`` (both) or ``"none"``.
            ``metrics.jsonl`` is written whatever the trackers.
        progress_bar: show a tqdm bar on the main process.
        overwrite: start afresh in an ``output_dir`` that holds another run, removing that
            run's checkpoints, samples, logs and ``generator_ema/`` (without it such a folder
            is refused, unless the run resumes it).
    """

    output_dir: str = "outputs/run"
    dataset: str = "digits"
    image_column: str | None = None
    #: train a class-conditional model on the dataset's labels
    cond: bool = False
    #: the label column for ``cond`` (``None``: found, see ``dataset_classes``)
    class_column: str | None = None
    #: depth of a conditional discriminator's label mapping (StyleGAN2-ADA: 8)
    d_mapping_layers: int = 8
    split: str = "train"
    streaming: bool = False
    resolution: int = 256
    preset: str = "pixelfolder-256"
    generator_config: str | None = None
    d_channels: dict[int, int] | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 100_000
    kimg: float | None = None
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float | str = 10.0
    d_reg_interval: int = 16
    g_reg_interval: int = 4
    pl_weight: float = 0.0
    style_mixing_prob: float = 0.0
    ema_kimg: float | str = 10.0
    ema_rampup: float | None = None
    hflip: bool = True
    augment: str = "none"
    augment_p: float | None = None
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ada_interval: int = 4
    diffaugment_policy: str = "color,translation,cutout"
    metrics: str | None = None
    metrics_every_kimg: float | None = None
    metrics_num_gen: int = 10_000
    metrics_num_real: int = 50_000
    best_metric: str | None = None
    inception_weights: str | None = None
    vgg16_weights: str | None = None
    lpips_weights: str | None = None
    dinov2_weights: str | None = None
    resize_filter: str = "box"
    jpeg_quality: int | None = None
    mixed_precision: str = "no"
    cudnn_benchmark: bool = True
    seed: int = 0
    checkpointing_steps: int = 5000
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = None
    init_from: str | None = None
    freeze_d: int = 0
    sample_every: int = 1000
    num_samples: int = 16
    log_every: int = 50
    num_workers: int = 0
    report_to: str = "tensorboard"
    progress_bar: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

        for name in ("kimg", "lr", "r1_gamma", "pl_weight", "style_mixing_prob", "ema_kimg",
                     "ema_rampup", "augment_p", "ada_target", "ada_kimg", "metrics_every_kimg"):
            value = getattr(self, name)
            if value is None and name in ("kimg", "ema_rampup", "augment_p",
                                          "metrics_every_kimg"):
                continue
            if value == "auto" and name in ("r1_gamma", "ema_kimg"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")

        for name in ("resolution", "batch_size", "gradient_accumulation_steps", "max_steps",
                     "d_reg_interval", "g_reg_interval", "checkpointing_steps", "sample_every",
                     "num_samples", "log_every"):
            positive(name)
        if self.resolution & (self.resolution - 1):
            raise ConfigError(f"resolution must be a power of two, got {self.resolution}")
        if self.kimg is not None and self.kimg <= 0:
            raise ConfigError(f"kimg must be positive, got {self.kimg!r}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ConfigError(f"style_mixing_prob must be in [0, 1], got "
                              f"{self.style_mixing_prob}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be 'no', 'bf16' or 'fp16', "
                              f"got {self.mixed_precision!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        for name in ("r1_gamma", "pl_weight", "ema_kimg"):
            if getattr(self, name) != "auto" and getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        positive("ada_interval")
        positive("metrics_num_gen")
        positive("metrics_num_real")
        if self.metrics_every_kimg is not None and self.metrics_every_kimg <= 0:
            raise ConfigError(f"metrics_every_kimg must be positive, got "
                              f"{self.metrics_every_kimg!r}")
        if isinstance(self.metrics, str) and self.metrics.strip().lower() in ("", "none"):
            self.metrics = None  # --metrics none: a recipe's metrics turned off
        if self.metrics:
            from .evaluation import TrainingMetrics

            TrainingMetrics(metrics=self.metrics, real=None,
                            best_metric=self.best_metric)  # the checks, with their messages
            if self.streaming:
                raise ConfigError("--metrics needs a map-style dataset; they do not run on "
                                  "--streaming data")
            if self.cond and "ppl" in str(self.metrics).lower().replace(" ", "").split(","):
                raise ConfigError("--metrics ppl is not computed for class-conditional models "
                                  "(--cond); the other metrics are, over all classes")
        elif self.best_metric is not None:
            raise ConfigError(f"--best-metric {self.best_metric} needs --metrics")
        if self.ada_kimg <= 0:
            raise ConfigError(f"ada_kimg must be positive, got {self.ada_kimg!r}")
        from .augment import build_augment

        build_augment(self.augment, p=self.augment_p, target=self.ada_target,
                      ada_kimg=self.ada_kimg, interval=self.ada_interval, batch_total=1,
                      policy=self.diffaugment_policy)  # the checks, with their messages
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 0:
            raise ConfigError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        from .data import RESIZE_FILTERS

        if self.resize_filter not in RESIZE_FILTERS:
            raise ConfigError(f"resize_filter must be one of {', '.join(RESIZE_FILTERS)}, got "
                              f"{self.resize_filter!r}")
        blocks = self.resolution.bit_length() - 3  # D's residual blocks: resolution .. 8
        if isinstance(self.freeze_d, bool) or not isinstance(self.freeze_d, int) \
                or not 0 <= self.freeze_d <= blocks:
            raise ConfigError(f"freeze_d must be in 0..{blocks} at resolution {self.resolution} "
                              f"(the discriminator's residual blocks, counted from the image), "
                              f"got {self.freeze_d!r}")
        if self.freeze_d and not (self.init_from or self.resume_from_checkpoint):
            raise ConfigError(f"--freeze-d {self.freeze_d} needs --init-from: it keeps "
                              f"pretrained layers of D as they are (random ones would never "
                              f"learn)")
        if not isinstance(self.cond, bool):
            raise ConfigError(f"cond must be True or False, got {self.cond!r}")
        if self.class_column is not None and not self.cond:
            raise ConfigError(f"--class-column {self.class_column} needs --cond (training "
                              f"on labels is off by default)")
        positive("d_mapping_layers")
        if self.class_column is not None and not str(self.class_column).strip():
            raise ConfigError("--class-column is empty: give the name of the label column")
        if self.init_from is not None and not str(self.init_from).strip():
            raise ConfigError("init_from is empty: give a model folder, checkpoint or .pt file")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ConfigError(f"checkpoints_total_limit must be >= 1, got "
                              f"{self.checkpoints_total_limit}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.ema_rampup is not None and self.ema_rampup <= 0:
            raise ConfigError(f"ema_rampup must be positive or None, got {self.ema_rampup!r}")
        if not self.generator_config:
            from ..models import presets

            if self.preset not in presets.names():
                raise ConfigError(f"unknown preset {self.preset!r}; choose one of "
                                  f"{', '.join(presets.names())}")
        tracker_names(self.report_to)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.d_channels is not None:
            self.d_channels = {int(k): int(v) for k, v in self.d_channels.items()}

    def resolved_r1_gamma(self, batch_total: int) -> float:
        """``r1_gamma``, with ``"auto"`` resolved for ``batch_total`` images per step."""
        if self.r1_gamma == "auto":
            return 0.0002 * self.resolution ** 2 / batch_total
        return float(self.r1_gamma)

    def resolved_ema_kimg(self, batch_total: int) -> float:
        """``ema_kimg``, with ``"auto"`` resolved for ``batch_total`` images per step."""
        if self.ema_kimg == "auto":
            return batch_total * 10 / 32
        return float(self.ema_kimg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        if self.d_channels is not None:
            data["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        return data

    def to_json(self) -> str:
        """JSON text of [`to_dict`][pixelfold.training.config.TrainConfig.to_dict]."""
        return json.dumps(self.to_dict(), indent=2)


def _d_channels(text: str) -> dict[int, int]:
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        return {int(r): int(c) for r, c in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--d-channels expects RES:CH pairs separated by commas, e.g. 32:64,16:64, "
            f"got {text!r}") from None


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _float_or_auto(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--betas expects two numbers like 0,0.99, got "
                                         f"{text!r}") from None
    return b1, b2


def build_arg_parser(defaults: TrainConfig | None = None,
                     description: str | None = None,
                     prog: str | None = None) -> argparse.ArgumentParser:
    """The shared recipe command line, with ``defaults`` shown and used."""
    d = defaults or TrainConfig()
    p = argparse.ArgumentParser(prog=prog,
                                description=description or "Train a pixelfold generator.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument("--dataset", default=d.dataset,
                   help="Hub id, image folder, saved dataset folder, or 'digits'")
    p.add_argument("--image-column", default=d.image_column)
    p.add_argument("--cond", action=argparse.BooleanOptionalAction, default=d.cond,
                   help="train a class-conditional model on the dataset's labels")
    p.add_argument("--class-column", default=d.class_column, metavar="NAME",
                   help="label column for --cond: a ClassLabel or integer column (default: "
                        "the first ClassLabel, e.g. an image folder's subfolders, else "
                        "'label')")
    p.add_argument("--d-mapping-layers", type=int, default=d.d_mapping_layers, metavar="N",
                   help="depth of a conditional D's label mapping (StyleGAN2-ADA: 8)")
    p.add_argument("--split", default=d.split)
    p.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=d.streaming)
    p.add_argument("--resolution", type=int, default=d.resolution)
    p.add_argument("--preset", default=d.preset, help="generator preset")
    p.add_argument("--generator-config", default=d.generator_config,
                   help="generator config.json (overrides --preset)")
    p.add_argument("--d-channels", type=_d_channels, default=d.d_channels,
                   help="discriminator widths as RES:CH,RES:CH,...")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per device")
    p.add_argument("--gradient-accumulation-steps", type=int,
                   default=d.gradient_accumulation_steps)
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--kimg", type=float, default=d.kimg,
                   help="thousands of real images to train on (overrides --max-steps)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--betas", type=_betas, default=d.betas, metavar="B1,B2",
                   help="Adam betas, e.g. 0,0.99")
    p.add_argument("--r1-gamma", type=_float_or_auto, default=d.r1_gamma,
                   help="R1 weight, or 'auto': 0.0002 * resolution^2 / total batch (NVlabs)")
    p.add_argument("--d-reg-interval", type=int, default=d.d_reg_interval)
    p.add_argument("--g-reg-interval", type=int, default=d.g_reg_interval,
                   help="G's lazy interval for its Adam correction")
    p.add_argument("--pl-weight", type=float, default=d.pl_weight)
    p.add_argument("--style-mixing-prob", type=float, default=d.style_mixing_prob)
    p.add_argument("--ema-kimg", type=_float_or_auto, default=d.ema_kimg,
                   help="EMA half-life in kimg, or 'auto': total batch * 10 / 32 (NVlabs)")
    p.add_argument("--ema-rampup", type=_optional_float, default=d.ema_rampup,
                   help="EMA ramp-up ratio (NVlabs), 'none' for off")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=d.hflip)
    p.add_argument("--augment", default=d.augment, choices=["none", "ada", "diffaugment"],
                   help="augmentation of every image D sees: ADA (adaptive unless --augment-p) "
                        "or DiffAugment")
    p.add_argument("--augment-p", type=_optional_float, default=d.augment_p,
                   help="a fixed ADA strength in [0, 1] ('none': adaptive)")
    p.add_argument("--ada-target", type=float, default=d.ada_target,
                   help="adaptive ADA's target for r_t = E[sign(D(real))]")
    p.add_argument("--ada-kimg", type=float, default=d.ada_kimg,
                   help="adaptive ADA: kimg for p to go from 0 to 1")
    p.add_argument("--ada-interval", type=int, default=d.ada_interval,
                   help="adaptive ADA: steps between adjustments of p")
    p.add_argument("--metrics", default=d.metrics, metavar="LIST",
                   help="metrics of the EMA generator during training, e.g. fid,kid "
                        "(fid, kid, pr, is, ppl, fd-dinov2; 'none': no metrics)")
    p.add_argument("--metrics-every-kimg", type=_optional_float, default=d.metrics_every_kimg,
                   help="evaluate every N kimg ('none': with every checkpoint); always at the "
                        "end")
    p.add_argument("--metrics-num-gen", type=int, default=d.metrics_num_gen,
                   help="generated images per evaluation")
    p.add_argument("--metrics-num-real", type=int, default=d.metrics_num_real,
                   help="real images at most")
    p.add_argument("--best-metric", default=d.best_metric,
                   help="the value that picks generator_ema-best/ (default: the first metric's)")
    for name in ("inception", "vgg16", "lpips", "dinov2"):
        p.add_argument(f"--{name}-weights", default=getattr(d, f"{name}_weights"),
                       metavar="PATH", help=f"local {name} weights file for the metrics "
                                            f"(offline use)")
    p.add_argument("--diffaugment-policy", default=d.diffaugment_policy,
                   help="DiffAugment's policy: color, translation, cutout, comma-separated")
    p.add_argument("--resize-filter", default=d.resize_filter,
                   choices=["box", "bilinear", "bicubic", "lanczos", "nearest"])
    p.add_argument("--jpeg-quality", type=_optional_int, default=d.jpeg_quality)
    p.add_argument("--mixed-precision", default=d.mixed_precision, choices=["no", "bf16", "fp16"])
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction,
                   default=d.cudnn_benchmark)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpointing-steps", type=int, default=d.checkpointing_steps)
    p.add_argument("--checkpoints-total-limit", type=_optional_int,
                   default=d.checkpoints_total_limit)
    p.add_argument("--resume-from-checkpoint", default=d.resume_from_checkpoint,
                   help="'latest' or a checkpoint folder")
    p.add_argument("--init-from", default=d.init_from, metavar="MODEL",
                   help="fine-tune: start from the weights of a save_pretrained generator "
                        "folder (and its discriminator/), a training checkpoint or run folder, "
                        "or an authors' .pt (fresh optimizers and step count)")
    p.add_argument("--freeze-d", type=int, default=d.freeze_d, metavar="N",
                   help="FreezeD: freeze D's from-RGB layer and first N residual blocks, "
                        "counted from the image (needs --init-from)")
    p.add_argument("--sample-every", type=int, default=d.sample_every)
    p.add_argument("--num-samples", type=int, default=d.num_samples)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--report-to", default=d.report_to, choices=list(REPORT_TO),
                   help="trackers: tensorboard, wandb (pip install wandb), all (both) or none; "
                        "metrics.jsonl is written in any case (default: %(default)s)")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=d.progress_bar)
    p.add_argument("--overwrite", action="store_true", default=d.overwrite,
                   help="start afresh in an --output-dir that holds another run, removing its "
                        "checkpoints, samples, logs and generator_ema/")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of every error (also PIXELFOLD_DEBUG=1)")
    return p


def parse_args(argv: Sequence[str] | None = None, defaults: TrainConfig | None = None,
               description: str | None = None, prog: str | None = None) -> TrainConfig:
    """Parse the recipe command line into a [`TrainConfig`][pixelfold.training.TrainConfig];
    a bad value exits with argparse's one-line error."""
    d = defaults or TrainConfig()
    parser = build_arg_parser(d, description, prog)
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k != "debug"}
    kwargs = dataclasses.asdict(d)
    kwargs.update(values)
    try:
        return TrainConfig(**kwargs)
    except ValueError as exc:
        parser.error(str(exc))
