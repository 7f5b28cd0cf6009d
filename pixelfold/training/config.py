"""Training configuration and the command line shared by every recipe."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..utils.errors import ConfigError
from ..utils.spec import (
    SpecMixin,
    check_bool,
    check_choice,
    check_int,
    check_number,
    field_docs,
    format_resolution,
    parse_resolution,
)

__all__ = ["REPORT_TO", "RESUME_ADJUSTABLE", "TrainConfig", "build_arg_parser", "parse_args",
           "tracker_names"]

REPORT_TO = {"tensorboard": ("tensorboard",), "wandb": ("wandb",),
             "all": ("tensorboard", "wandb"), "none": ()}
"""The values of ``report_to`` and the Accelerate trackers each one logs to."""


MIXED_PRECISION = ("no", "bf16", "fp16")
"""The values of ``mixed_precision`` (Accelerate's)."""


def tracker_names(report_to: str) -> tuple[str, ...]:
    """The Accelerate trackers of a ``report_to`` value (``"all"``: TensorBoard and Weights &
    Biases; ``"none"``: none)."""
    return REPORT_TO[check_choice(report_to, "report_to", REPORT_TO)]

RESUME_ADJUSTABLE = frozenset({
    "dataset", "image_column", "split", "max_steps", "kimg", "lr", "betas", "r1_gamma",
    "pl_weight", "style_mixing_prob", "ema_kimg", "ema_rampup", "hflip", "resize_filter",
    "jpeg_quality", "mixed_precision", "cudnn_benchmark", "cpu_memory_cache",
    "checkpointing_steps",
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
class TrainConfig(SpecMixin):
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
        resolution: training resolution: one side (a square, which must equal the generator's)
            or ``(height, width)`` (``"HxW"`` on the command line). A rectangular resolution
            with a square preset or config reshapes it with
            [`GeneratorSpec.with_resolution`][pixelfold.models.GeneratorSpec.with_resolution]
            (a one-line error names the divisibility each stage needs); see [Image
            shapes](../training/image-shapes.md).
        preset: generator preset name.
        generator_config: path to a generator ``config.json`` (overrides ``preset``).
        image_channels: channels of the images to train on: 1 (grayscale), 3 (RGB) or 4
            (RGBA); ``None``: the generator's (3 for every preset). The generator's ToRGB
            layers and D's from-RGB layer get this width; the data are converted to it (see
            [`preprocess_image`][pixelfold.training.data.preprocess_image]).
        d_channels: discriminator width by resolution, e.g. ``{32: 64, 16: 64, 8: 64, 4: 64}``,
            on the command line ``32:64,16:64,8:64,4:64`` (``None``: the StyleGAN2 table).
        batch_size: images per device per optimizer step (before accumulation).
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_steps: optimizer steps to run (``kimg`` wins when set).
        kimg: thousands of real images to show the discriminator.
        lr: Adam learning rate of both networks (before the lazy-regularization correction).
        betas: Adam betas (on the command line ``0,0.99``).
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
        cpu_memory_cache: on a CPU run, keep freed memory in the process for reuse instead of
            returning it to the system after every tensor (glibc ``malloc`` settings, see
            [`enable_cpu_memory_cache`][pixelfold.utils.allocator.enable_cpu_memory_cache]):
            faster steps, at the price of holding the peak memory (measured at 256, batch 2,
            2 cores: a trainer step about 13% faster, a discriminator forward+backward
            20-30%, resident memory up to 1.8x); process-wide, and it stays on once set.
            Ignored on CUDA and where the C library is not glibc.
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
    resolution: int | tuple[int, int] = 256
    #: channels of the images: 1, 3 or 4; None: the generator's
    image_channels: int | None = None
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
    cpu_memory_cache: bool = True
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
        optional = ("kimg", "ema_rampup", "augment_p", "metrics_every_kimg")
        for name in ("kimg", "lr", "r1_gamma", "pl_weight", "style_mixing_prob", "ema_kimg",
                     "ema_rampup", "augment_p", "ada_target", "ada_kimg", "metrics_every_kimg"):
            check_number(getattr(self, name), name, optional=name in optional,
                         words=("auto",) if name in ("r1_gamma", "ema_kimg") else ())
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if isinstance(self.resolution, (str, list, tuple)):
            h, w = parse_resolution(self.resolution)
            self.resolution = h if h == w else (h, w)
        square = not isinstance(self.resolution, tuple)
        for name in (("resolution",) if square else ()) + (
                "batch_size", "gradient_accumulation_steps", "max_steps", "d_reg_interval",
                "g_reg_interval", "checkpointing_steps", "sample_every", "num_samples",
                "log_every", "ada_interval", "metrics_num_gen", "metrics_num_real"):
            check_int(getattr(self, name), name)
        check_int(self.num_workers, "num_workers", low=0)
        check_int(self.checkpoints_total_limit, "checkpoints_total_limit", optional=True)
        check_int(self.jpeg_quality, "jpeg_quality", high=100, optional=True)
        check_int(self.seed, "seed", low=0, high=2**32 - 1)  # NumPy's seed range
        if not square:
            from ..models.discriminator import check_resolution

            check_resolution(self.resolution)  # D's rule for rectangles, with its message
        elif self.resolution & (self.resolution - 1):
            raise ConfigError(f"resolution must be a power of two, got {self.resolution}")
        if self.image_channels is not None and (isinstance(self.image_channels, bool) or
                                                self.image_channels not in (1, 3, 4)):
            raise ConfigError(f"image_channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got "
                              f"{self.image_channels!r}")
        for name in ("kimg", "lr", "ema_rampup", "ada_kimg", "metrics_every_kimg"):
            check_number(getattr(self, name), name, low=0, low_open=True, optional=True)
        for name in ("r1_gamma", "pl_weight", "ema_kimg"):
            check_number(getattr(self, name), name, low=0, words=("auto",))
        check_number(self.style_mixing_prob, "style_mixing_prob", low=0, high=1)
        check_choice(self.mixed_precision, "mixed_precision", MIXED_PRECISION)
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
        from .augment import build_augment

        build_augment(self.augment, p=self.augment_p, target=self.ada_target,
                      ada_kimg=self.ada_kimg, interval=self.ada_interval, batch_total=1,
                      policy=self.diffaugment_policy)  # the checks, with their messages
        from .data import RESIZE_FILTERS

        check_choice(self.resize_filter, "resize_filter", RESIZE_FILTERS)
        blocks = min(self.size).bit_length() - 3  # D's residual blocks: resolution .. 8
        if isinstance(self.freeze_d, bool) or not isinstance(self.freeze_d, int) \
                or not 0 <= self.freeze_d <= blocks:
            where = self.resolution if square else format_resolution(self.resolution)
            raise ConfigError(f"freeze_d must be in 0..{blocks} at resolution {where} "
                              f"(the discriminator's residual blocks, counted from the image), "
                              f"got {self.freeze_d!r}")
        if self.freeze_d and not (self.init_from or self.resume_from_checkpoint):
            raise ConfigError(f"--freeze-d {self.freeze_d} needs --init-from: it keeps "
                              f"pretrained layers of D as they are (random ones would never "
                              f"learn)")
        if self.class_column is not None and not self.cond:
            raise ConfigError(f"--class-column {self.class_column} needs --cond (training "
                              f"on labels is off by default)")
        check_int(self.d_mapping_layers, "d_mapping_layers")
        if self.class_column is not None and not str(self.class_column).strip():
            raise ConfigError("--class-column is empty: give the name of the label column")
        if self.init_from is not None and not str(self.init_from).strip():
            raise ConfigError("init_from is empty: give a model folder, checkpoint or .pt file")
        if not self.generator_config:
            from ..models import presets

            if self.preset not in presets.names():
                raise ConfigError(f"unknown preset {self.preset!r}; choose one of "
                                  f"{', '.join(presets.names())}")
        tracker_names(self.report_to)
        for name in ("cond", "streaming", "hflip", "cudnn_benchmark", "cpu_memory_cache",
                     "progress_bar", "overwrite"):
            check_bool(getattr(self, name), name)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.d_channels is not None:
            self.d_channels = {int(k): int(v) for k, v in self.d_channels.items()}

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of ``resolution``."""
        return parse_resolution(self.resolution)

    def resolved_r1_gamma(self, batch_total: int) -> float:
        """``r1_gamma``, with ``"auto"`` resolved for ``batch_total`` images per step."""
        if self.r1_gamma == "auto":
            h, w = self.size
            return 0.0002 * h * w / batch_total
        return float(self.r1_gamma)

    def resolved_ema_kimg(self, batch_total: int) -> float:
        """``ema_kimg``, with ``"auto"`` resolved for ``batch_total`` images per step."""
        if self.ema_kimg == "auto":
            return batch_total * 10 / 32
        return float(self.ema_kimg)


def _d_channels(text: str) -> dict[int, int]:
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        return {int(r): int(c) for r, c in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--d-channels expects RES:CH pairs separated by commas, e.g. 32:64,16:64, "
            f"got {text!r}") from None


def _resolution(text: str) -> int | str:
    """``--resolution``: one side, or ``HxW`` (checked by ``TrainConfig``)."""
    text = text.strip()
    return int(text) if text.isdigit() else text


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


_PARSERS: dict[str, Any] = {
    "int": int, "float": float, "str": str, "str | None": str,
    "int | None": _optional_int, "float | None": _optional_float, "float | str": _float_or_auto,
    "tuple[float, float]": _betas, "dict[int, int] | None": _d_channels,
    "int | tuple[int, int]": _resolution,
}
"""How the command line reads a value of each field type of ``TrainConfig``."""

_METAVARS = {"resolution": "N|HxW", "image_channels": "C", "d_channels": "RES:CH,...",
             "betas": "B1,B2", "metrics": "LIST", "class_column": "NAME", "d_mapping_layers": "N",
             "init_from": "MODEL", "freeze_d": "N", "inception_weights": "PATH",
             "vgg16_weights": "PATH", "lpips_weights": "PATH", "dinov2_weights": "PATH"}


def _choices() -> dict[str, Sequence[str]]:
    """The fields whose values are a fixed list, from the modules that define the lists."""
    from .augment import AUGMENT_KINDS
    from .data import RESIZE_FILTERS

    return {"augment": AUGMENT_KINDS, "resize_filter": tuple(RESIZE_FILTERS),
            "mixed_precision": MIXED_PRECISION, "report_to": tuple(REPORT_TO)}


def build_arg_parser(defaults: TrainConfig | None = None,
                     description: str | None = None,
                     prog: str | None = None) -> argparse.ArgumentParser:
    """The recipe command line, generated from [`TrainConfig`][pixelfold.training.TrainConfig]:
    one flag per field (``batch_size`` is ``--batch-size``; a bool is ``--x`` / ``--no-x``),
    its help the field's description in ``TrainConfig``'s docstring, its default taken from
    ``defaults`` and shown, plus ``--debug``. An optional number is turned off with ``none``
    (``--jpeg-quality none``)."""
    d = defaults or TrainConfig()
    p = argparse.ArgumentParser(prog=prog,
                                description=description or "Train a pixelfold generator.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = field_docs(TrainConfig)
    choices = _choices()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = docs.get(f.name, "").replace("%", "%%")
        default = getattr(d, f.name)
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
            continue
        if f.type not in _PARSERS:  # a new field type needs a reader above
            raise TypeError(f"TrainConfig.{f.name}: no command-line reader for type {f.type}")
        p.add_argument(flag, type=_PARSERS[f.type], default=default, help=help_text,
                       choices=choices.get(f.name), metavar=_METAVARS.get(f.name))
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
