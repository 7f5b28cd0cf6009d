"""GAN training on one Accelerator: G and D, lazy R1, EMA, checkpoints, samples, exact resume.

One script runs on CPU, one GPU, several GPUs or several machines (``accelerate launch``). What
a run writes in ``output_dir``:

* ``checkpoints/checkpoint-<step>/``: models, optimizers, RNG states and trainer state as
  safetensors and JSON ([`pixelfold.training.checkpoint`][pixelfold.training.checkpoint]: no
  pickles, nothing that can run code), written to a temporary folder, checked complete
  (``checkpoint.json`` with every file's size and SHA-256) and renamed into place;
* ``generator_ema/``: ``config.json`` + ``model.safetensors`` of the EMA generator (at every
  checkpoint and at the end), loadable with ``Generator.from_pretrained``;
* ``samples/step-<step>.png``: grids from fixed latents;
* ``trainer_state.json``: step, kimg, losses of the last step, resumes;
* ``train_config.json``: the settings of the run;
* ``logs/``: scalars and sample grids through Accelerate's trackers (``report_to``:
  TensorBoard event files, and Weights & Biases' files in ``logs/wandb`` unless ``WANDB_DIR``
  says otherwise); ``metrics.jsonl`` holds every evaluation whatever the trackers;
* ``.lock`` while the run is on: the folder belongs to one process at a time.

Safety rules: a folder that holds another run is refused unless the run resumes it or
``overwrite`` is set; parameters and optimizer states are checked finite before anything is
written; a resume refuses changed fixed settings (architecture, batch layout) and applies
changed adjustable ones (learning rate, lengths, intervals, regularization weights); Ctrl-C or
SIGTERM finishes the step, writes a checkpoint and stops with
[`TrainingInterrupted`][pixelfold.utils.errors.TrainingInterrupted]; a full disk is reported as
such and leaves no partial checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec, presets
from ..models.pretrained import load_state_dict_strict
from ..utils.allocator import cpu_memory_cache_enabled, enable_cpu_memory_cache
from ..utils.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DiskFullError,
    NonFiniteError,
    RunFolderError,
    TrainingInterrupted,
    one_line,
)
from ..utils.files import (
    RunLock,
    apply_default_modes,
    atomic_write_bytes,
    atomic_write_text,
    cleanup_leftovers,
    disk_errors,
    swap_into_place,
)
from ..utils.memory import available_memory, check_fits
from ..utils.tensors import frozen_parameters, non_finite, save_state
from .augment import build_augment
from .checkpoint import (
    MODEL_FILES,
    OPTIMIZERS_FILE,
    Checkpoint,
    capture_rng,
    find_resumable,
    list_checkpoints,
    restore_rng,
    rng_file,
    write_manifest,
)
from .config import RESUME_ADJUSTABLE, TrainConfig, tracker_names
from .data import (
    DatasetClasses,
    ImageDataset,
    IterableImageDataset,
    dataset_classes,
    digits_dataset,
    load_image_dataset,
)
from .evaluation import TrainingMetrics, steps_between
from .finetune import (
    apply_init_weights,
    check_init_weights,
    freeze_discriminator,
    load_init_weights,
)
from .losses import (
    EMA,
    discriminator_loss,
    ema_beta,
    generator_loss,
    lazy_adam_params,
    lazy_r1_loss,
    path_length_penalty,
    r1_penalty,
    style_mixing_ws,
)

__all__ = ["GANTrainer", "NonFiniteLossError", "TrainerState", "check_trackers",
           "list_checkpoints", "save_image_grid", "train"]

logger = logging.getLogger(__name__)

MAX_GRID_CLASSES = 16
"""A conditional run's sample grids show one row per class, for the first this many classes."""

RUN_FILES = ("checkpoints", "generator_ema", "generator_ema-best", "samples", "logs",
             "trainer_state.json", "train_config.json", "metrics.jsonl")
"""What a run writes in its output folder (and ``overwrite`` removes)."""


class NonFiniteLossError(NonFiniteError, RuntimeError):
    """A loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainerState:
    """What the models and optimizers do not hold: the step, images seen, the epoch and the
    position in it, the path-length mean, the last losses and the history of resumes. Saved in
    every checkpoint's manifest (JSON)."""

    step: int = 0
    nimg: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    pl_mean: float = 0.0
    last_losses: dict[str, float] = field(default_factory=dict)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    augment: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serializable copy."""
        return {"step": self.step, "nimg": self.nimg, "epoch": self.epoch,
                "batches_in_epoch": self.batches_in_epoch, "pl_mean": self.pl_mean,
                "last_losses": dict(self.last_losses), "resumes": list(self.resumes),
                "augment": dict(self.augment), "best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from [`state_dict`][pixelfold.training.trainer.TrainerState.state_dict]."""
        known = set(self.state_dict())
        for key, value in state.items():
            if key in known:
                setattr(self, key, value)


def check_trackers(report_to: str) -> tuple[str, ...]:
    """The Accelerate trackers of ``report_to``, each checked importable (Accelerate itself
    leaves out a tracker whose package is missing, silently).

    Raises:
        ConfigError: a bad value, or a tracker whose package is not installed (the message
            says what to install).
    """
    import importlib.util

    names = tracker_names(report_to)
    packages = {"tensorboard": "tensorboard", "wandb": "wandb"}
    for name in names:
        if importlib.util.find_spec(packages[name]) is None:
            raise ConfigError(f"report_to {report_to!r} logs to {name}, which is not installed: "
                              f"pip install {packages[name]} (or pip install "
                              f"'pixelfold[tracking]'), or pick another --report-to")
    return names


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write images in ``[-1, 1]`` ``(N, C, H, W)`` as one PNG grid, atomically."""
    import io

    from PIL import Image

    images = images.detach().float().cpu()
    if not bool(torch.isfinite(images).all()):
        raise NonFiniteError(f"not writing {path}: the images hold NaN or infinity")
    images = images.clamp(-1, 1)
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = torch.full((c, ncol * h, nrow * w), -1.0)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = images[i]
    array = ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if c == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _json_normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


class _StopRequest:
    """Turns the first SIGINT / SIGTERM into a request to stop after the current step; the
    second one interrupts at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s received: finishing this step, then writing a checkpoint and "
                       "stopping (press Ctrl-C again to quit at once, without saving)",
                       self.signal_name)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class GANTrainer:
    """Trains a [`Generator`][pixelfold.models.Generator] against a
    [`Discriminator`][pixelfold.models.Discriminator] with Accelerate.

    Args:
        config: the run's settings.
        dataset: an already loaded ``datasets.Dataset`` to use instead of ``config.dataset``.
        accelerator: an ``accelerate.Accelerator`` to use (one is created otherwise).
    """

    def __init__(self, config: TrainConfig, dataset: Any = None, accelerator: Any = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        _check_output_dir(self.output_dir)
        self.trackers = check_trackers(config.report_to)
        if accelerator is None:
            accelerator = Accelerator(
                mixed_precision=config.mixed_precision,
                log_with=list(self.trackers) or None,
                project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                    logging_dir=str(self.output_dir / "logs")),
                dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            )
        self.accelerator = accelerator
        if accelerator.device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        elif accelerator.device.type == "cpu" and config.cpu_memory_cache \
                and not cpu_memory_cache_enabled():
            if enable_cpu_memory_cache():
                logger.info("CPU run: freed memory is kept for reuse (glibc malloc; "
                            "--no-cpu-memory-cache turns this off)")
        self.evaluator = self._build_evaluator(dataset)  # before any big work
        self._dataset = dataset
        self.classes: DatasetClasses | None = self._find_classes() if config.cond else None
        from accelerate.utils import set_seed

        # the same initial weights in every process (the EMA copy is never synchronized by
        # DDP), then per-process randomness for the noise inputs
        set_seed(config.seed)
        self.G, self.D = self._build_models()
        self.ema = EMA(self.G)
        if config.init_from and not config.resume_from_checkpoint:
            self.load_init_weights()  # a resumed run loads them only if it finds no checkpoint
        set_seed(config.seed, device_specific=True)
        self.state = TrainerState()
        self._iter: Any = None
        self.data = self._build_data(dataset)
        self._check_step_memory()
        self._build_optimizers()
        self.r1_gamma = config.resolved_r1_gamma(self.batch_total)
        self.ema_kimg = config.resolved_ema_kimg(self.batch_total)
        self.augment = build_augment(
            config.augment, p=config.augment_p, target=config.ada_target,
            ada_kimg=config.ada_kimg, interval=config.ada_interval,
            batch_total=self.batch_total, policy=config.diffaugment_policy)
        self.latent_gen = torch.Generator().manual_seed(
            config.seed * 1000 + 2 * accelerator.process_index + 1)
        self.aug_gen = torch.Generator().manual_seed(
            config.seed * 1000 + 2 * accelerator.process_index + 2)
        self.sample_z = torch.randn(config.num_samples, self.G.z_dim,
                                    generator=torch.Generator().manual_seed(config.seed))
        self.sample_c: torch.Tensor | None = None
        self.label_probs: torch.Tensor | None = None
        if self.classes is not None:  # one row per class (the first 16), the same latents
            rows = min(self.G.c_dim, MAX_GRID_CLASSES)
            self.sample_columns = max(1, math.ceil(config.num_samples / rows))
            first = torch.randn(self.sample_columns, self.G.z_dim,
                                generator=torch.Generator().manual_seed(config.seed))
            self.sample_z = first.repeat(rows, 1)
            self.sample_c = torch.arange(rows).repeat_interleave(self.sample_columns)
            # fakes get classes drawn from the training set's label distribution (ADA)
            counts = self.classes.counts or (1,) * self.classes.num_classes
            self.label_probs = torch.tensor(counts, dtype=torch.float64)
        (self.G_train, self.D_ddp, self.opt_G, self.opt_D, self.loader) = accelerator.prepare(
            _TrainingGenerator(self.G), self.D, self.opt_G, self.opt_D, self.loader)
        self._lock: RunLock | None = None
        self._saved_step: int | None = None

    # ---------------------------------------------------------------- setup
    def _build_models(self) -> tuple[Generator, Discriminator]:
        c = self.config
        if c.generator_config:
            path = Path(c.generator_config)
            if not path.is_file():
                raise ConfigError(f"--generator-config {path}: no such file")
            try:
                spec = GeneratorSpec.from_json(path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--generator-config {path}: {one_line(exc)}") from None
        else:
            spec = presets.get(c.preset)
        if isinstance(c.resolution, tuple) and spec.resolution != c.size:
            spec = spec.with_resolution(c.size)  # a rectangular run of a square architecture
        if c.image_channels is not None and c.image_channels != spec.image_channels:
            spec = dataclasses.replace(spec, image_channels=c.image_channels)
        spec = self._conditional_spec(spec)
        G = Generator(spec)
        if G.resolution != c.size:
            raise ConfigError(f"the generator makes {G.resolution[0]}x{G.resolution[1]} images "
                              f"but --resolution is {c.resolution}")
        try:
            dspec = DiscriminatorSpec(resolution=c.resolution, image_channels=spec.image_channels,
                                      c_dim=spec.c_dim, mapping_layers=c.d_mapping_layers,
                                      **({"channels": c.d_channels} if c.d_channels else {}))
        except ValueError as exc:
            raise ConfigError(f"--d-channels: {one_line(exc)}" if c.d_channels
                              else one_line(exc)) from None
        D = Discriminator(dspec)
        freeze_discriminator(D, c.freeze_d)
        return G, D

    def _raw_dataset(self) -> Any:
        """The ``datasets`` dataset of the run (loaded once)."""
        c = self.config
        if self._dataset is None:
            self._dataset = digits_dataset(c.size) if c.dataset == "digits" else \
                load_image_dataset(c.dataset, split=c.split, streaming=c.streaming)
        return self._dataset

    def _find_classes(self) -> DatasetClasses:
        """The label column and classes of a ``cond`` run's dataset."""
        classes = dataset_classes(self._raw_dataset(), self.config.class_column)
        if classes.num_classes < 1:
            raise DataError(f"--class-column {classes.column}: the dataset has no classes")
        logger.info("conditional: %d classes from column %r", classes.num_classes,
                    classes.column)
        return classes

    def _conditional_spec(self, spec: GeneratorSpec) -> GeneratorSpec:
        """The generator spec with the classes of a ``cond`` run: ``c_dim`` and
        ``class_names`` from the data when the spec leaves them out (a preset), checked
        against them otherwise."""
        c = self.config
        name = f"--generator-config {c.generator_config}" if c.generator_config \
            else f"--preset {c.preset}"
        if self.classes is None:
            if spec.c_dim:
                raise ConfigError(f"{name} is class-conditional (c_dim {spec.c_dim}): pass "
                                  f"--cond (and --class-column if the labels are not found)")
            return spec
        n, names = self.classes.num_classes, self.classes.names
        where = f"--dataset {c.dataset} has {n} classes (column {self.classes.column!r})"
        if spec.c_dim and spec.c_dim != n:
            raise ConfigError(f"{name} has c_dim {spec.c_dim} but {where}")
        if spec.class_names and spec.class_names != names:
            raise ConfigError(f"{name} names the classes {list(spec.class_names)[:8]} but "
                              f"{where}: {list(names)[:8]}")
        return dataclasses.replace(spec, c_dim=n, class_names=names)

    def load_init_weights(self) -> None:
        """Fine-tuning: load ``init_from`` into G, the EMA and D (weights only), after checking
        that its architecture is the run's."""
        c = self.config
        init = load_init_weights(c.init_from)
        check_init_weights(init, self.G.spec, self.D.spec,
                           run_name=c.generator_config or c.preset)
        loaded = apply_init_weights(init, self.G, self.ema.module, self.D)
        logger.info("fine-tuning from %s: loaded %s", c.init_from, loaded)

    def _build_data(self, dataset: Any) -> Any:
        c = self.config
        dataset = self._raw_dataset()
        import datasets

        labels = self.classes.column if self.classes is not None else None
        if isinstance(dataset, datasets.IterableDataset):
            ds = IterableImageDataset(dataset, c.size, image_column=c.image_column,
                                      resize_filter=c.resize_filter,
                                      jpeg_quality=c.jpeg_quality, seed=c.seed,
                                      image_channels=self.G.image_channels,
                                      label_column=labels)
            shuffle = False
        else:
            ds = ImageDataset(dataset, c.size, image_column=c.image_column,
                              resize_filter=c.resize_filter, jpeg_quality=c.jpeg_quality,
                              image_channels=self.G.image_channels, label_column=labels)
            shuffle = True
            ds.probe()
            processes = self.accelerator.num_processes
            if len(ds) < c.batch_size * processes:
                batch = f"--batch-size {c.batch_size}" + (
                    f" on each of {processes} processes = {c.batch_size * processes}"
                    if processes > 1 else "")
                raise DataError(f"--dataset {c.dataset} has {len(ds)} image(s), fewer than one "
                                f"batch ({batch}); use a smaller --batch-size or more images")
        # a generator of its own: creating a dataloader iterator must not draw from the global
        # RNG (which drives the noise inputs), or resuming mid-run would shift the noise
        self.loader = torch.utils.data.DataLoader(
            ds, batch_size=c.batch_size, shuffle=shuffle, drop_last=True,
            num_workers=c.num_workers, persistent_workers=c.num_workers > 0,
            generator=torch.Generator().manual_seed(c.seed))
        return ds

    def _build_evaluator(self, dataset: Any) -> TrainingMetrics | None:
        """The metrics of the run, with their weights found now (a run that could not
        evaluate fails before training)."""
        c = self.config
        if not c.metrics:
            return None
        evaluator = TrainingMetrics(
            metrics=c.metrics, real=dataset if dataset is not None else c.dataset,
            best_metric=c.best_metric, num_gen=c.metrics_num_gen, num_real=c.metrics_num_real,
            batch_size=max(c.batch_size, 16), seed=c.seed, resize_filter=c.resize_filter,
            weights={"inception_weights": c.inception_weights,
                     "vgg16_weights": c.vgg16_weights, "lpips_weights": c.lpips_weights,
                     "dinov2_weights": c.dinov2_weights})
        evaluator.check_weights()
        self.eval_steps = steps_between(c.metrics_every_kimg, c.checkpointing_steps,
                                        self.batch_total)
        if c.metrics_every_kimg is not None and self.eval_steps > self.total_steps:
            logger.warning("--metrics-every-kimg %g is longer than the run (%.3g kimg): the "
                           "metrics are computed at its end only", c.metrics_every_kimg,
                           self.total_steps * self.batch_total / 1000)
        return evaluator

    def _check_step_memory(self) -> None:
        """Refuse a batch whose training step cannot fit in the device's memory, with the
        estimate, before anything big is allocated. The estimate (a step measured on the meta
        device) runs only when the batch's images alone take a noticeable share of the
        memory: activations are over a hundred times the images for these networks."""
        c = self.config
        device = self.accelerator.device
        free = available_memory(device)
        h, w = c.size
        if free is None or 100 * c.batch_size * self.G.image_channels * h * w * 4 < free:
            return
        need = estimate_step_bytes(self.G.spec, self.D.spec, c.batch_size)
        check_fits(need, f"a training step of --batch-size {c.batch_size} at "
                   f"{h}x{w}", device=device,
                   hint="use a smaller --batch-size (and --gradient-accumulation-steps to keep "
                        "the total batch)")

    def _build_optimizers(self) -> None:
        self.opt_G = torch.optim.Adam(self.G.parameters(), eps=1e-8, **self._adam("G"))
        trainable = [p for p in self.D.parameters() if p.requires_grad]  # not FreezeD's
        self.opt_D = torch.optim.Adam(trainable, eps=1e-8, **self._adam("D"))

    def _adam(self, which: str) -> dict[str, Any]:
        """Learning rate and betas of G's or D's Adam, with the lazy-regularization
        correction."""
        c = self.config
        interval = c.g_reg_interval if which == "G" else c.d_reg_interval
        lr, betas = lazy_adam_params(c.lr, c.betas, interval)
        return {"lr": lr, "betas": betas}

    @property
    def batch_total(self) -> int:
        """Images per optimizer step over all processes."""
        c = self.config
        return c.batch_size * c.gradient_accumulation_steps * self.accelerator.num_processes

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run."""
        c = self.config
        if c.kimg is not None:
            return max(1, math.ceil(c.kimg * 1000 / self.batch_total))
        return c.max_steps

    # ---------------------------------------------------------------- data
    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real images (augmented) and, in a conditional run, their one-hot
        labels."""
        while True:
            if self._iter is None:
                if hasattr(self.loader, "set_epoch"):
                    self.loader.set_epoch(self.state.epoch)
                loader = self.loader
                if self.state.batches_in_epoch:
                    loader = self.accelerator.skip_first_batches(self.loader,
                                                                 self.state.batches_in_epoch)
                self._iter = iter(loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = None
                self.state.epoch += 1
                self.state.batches_in_epoch = 0
                continue
            self.state.batches_in_epoch += 1
            if self.classes is None:
                return self._augment(batch), None
            images, labels = batch
            return self._augment(images), self._one_hot(labels)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        if self.config.hflip:
            flip = torch.rand(batch.shape[0], generator=self.aug_gen) < 0.5
            flip = flip.to(batch.device)[:, None, None, None]
            batch = torch.where(flip, batch.flip(-1), batch)
        return batch

    def _latents(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.G.z_dim, generator=self.latent_gen)
        return z.to(self.accelerator.device)

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Class indices as one-hot float vectors on the device, by a scatter: neither it nor
        the models (which check float labels for shape only) synchronize with the device
        every step, as ``one_hot`` and the range check of integer labels would."""
        labels = labels.to(self.accelerator.device).long()
        out = torch.zeros(labels.shape[0], self.G.c_dim, device=labels.device)
        return out.scatter_(1, labels[:, None], 1.0)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        """Labels of ``n`` fakes, drawn from the training set's label distribution (uniform
        for a streamed dataset), from the latent generator; ``None`` when unconditional."""
        if self.label_probs is None:
            return None
        return self._one_hot(torch.multinomial(self.label_probs, n, replacement=True,
                                               generator=self.latent_gen))

    def _forward_G(self, batch: int, *, update_w_avg: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Generate ``batch`` images through the (possibly DDP-wrapped) training module, with
        style mixing with probability ``style_mixing_prob``; returns ``(images, ws,
        labels)``."""
        z = self._latents(batch)
        labels = self._fake_labels(batch)
        fake, ws = self.G_train(z, self.config.style_mixing_prob, self.latent_gen,
                                update_w_avg, labels)
        return fake, ws, labels

    # ---------------------------------------------------------------- one step
    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                      D: nn.Module | None = None) -> torch.Tensor:
        """D's logits of ``images`` (with their ``labels`` in a conditional run) after the
        augmentation (every image D sees goes through it: reals, fakes, the reals of R1);
        the draws come from the augmentation generator. ``D``: the module to run (default:
        the DDP-wrapped discriminator)."""
        if self.augment.active:
            images = self.augment.module(images, self.aug_gen)
        return (self.D_ddp if D is None else D)(images, labels)

    def _micro_batches(self, model: nn.Module):
        n = self.config.gradient_accumulation_steps
        for i in range(n):
            ctx = self.accelerator.no_sync(model) if i < n - 1 else nullcontext()
            yield i, ctx

    def train_step(self) -> dict[str, float]:
        """One optimizer step of D (with lazy R1 every ``d_reg_interval`` steps) then G."""
        c = self.config
        acc = self.accelerator
        n = c.gradient_accumulation_steps
        losses: dict[str, float] = {}
        G, D = self.G_train, self.D_ddp
        step = self.state.step

        # --- D: logistic loss on real vs fake
        self.opt_D.zero_grad(set_to_none=True)
        d_total = 0.0
        reals = []
        for _, ctx in self._micro_batches(D):
            real, real_c = self._next_batch()
            real = real.to(acc.device)
            reals.append((real, real_c))
            with ctx:
                with torch.no_grad(), acc.autocast():
                    fake, _, fake_c = self._forward_G(real.shape[0], update_w_avg=True)
                with acc.autocast():
                    real_logits = self._discriminate(real, real_c)
                    loss = discriminator_loss(real_logits,
                                              self._discriminate(fake.detach(), fake_c)) / n
                self._check(loss, "D loss")
                acc.backward(loss)
            if self.augment.controller is not None:
                self.augment.controller.observe(real_logits.detach())
            d_total += float(loss.detach())
        self.opt_D.step()
        losses["loss/D"] = d_total

        # --- D: lazy R1
        if self.r1_gamma > 0 and step % c.d_reg_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            r1_total = 0.0
            for i, ctx in self._micro_batches(D):
                real = reals[i][0].detach().requires_grad_(True)
                with ctx:
                    with acc.autocast():  # the gradient with respect to the un-augmented reals
                        logits = self._discriminate(real, reals[i][1])
                    penalty = r1_penalty(real, logits)
                    loss = lazy_r1_loss(penalty, self.r1_gamma, c.d_reg_interval) / n
                    # keeps every D parameter in the graph for DDP
                    loss = loss + 0.0 * logits.float().sum()
                    self._check(loss, "R1 penalty")
                    acc.backward(loss)
                r1_total += float(penalty.detach()) / n
            self.opt_D.step()
            losses["loss/R1"] = r1_total

        # --- G: non-saturating loss through D with D's weights frozen (as NVlabs and the
        # authors): the backward computes no D weight gradient, and D runs unwrapped, since
        # nothing of D is synchronized for this pass
        self.opt_G.zero_grad(set_to_none=True)
        g_total = 0.0
        with frozen_parameters(self.D):
            for _, ctx in self._micro_batches(G):
                with ctx:
                    with acc.autocast():
                        fake, _, fake_c = self._forward_G(c.batch_size)
                        loss = generator_loss(self._discriminate(fake, fake_c, D=self.D)) / n
                    self._check(loss, "G loss")
                    acc.backward(loss)
                g_total += float(loss.detach())
        self.opt_G.step()
        losses["loss/G"] = g_total

        # --- G: lazy path-length regularization (optional)
        if c.pl_weight > 0 and step % c.g_reg_interval == 0:
            self.opt_G.zero_grad(set_to_none=True)
            batch = max(1, c.batch_size // 2)
            with acc.autocast():
                fake, ws, _ = self._forward_G(batch)
            penalty, new_mean = path_length_penalty(fake, ws, self.state.pl_mean)
            self.state.pl_mean = float(new_mean)
            loss = penalty * c.pl_weight * c.g_reg_interval + 0.0 * fake.float().sum()
            self._check(loss, "path-length penalty")
            acc.backward(loss)
            self.opt_G.step()
            losses["loss/PL"] = float(penalty)

        # --- EMA
        self.state.nimg += self.batch_total
        beta = ema_beta(self.batch_total, self.ema_kimg, c.ema_rampup, self.state.nimg)
        self.ema.update(self.G, beta)

        # --- adaptive augmentation: p follows r_t = E[sign(D(real))] over all processes
        controller = self.augment.controller
        if controller is not None:
            reduce = None if acc.num_processes == 1 else \
                (lambda t: acc.reduce(t, reduction="sum"))
            self.augment.step(reduce)
        self.state.step += 1
        self.state.last_losses = losses
        return losses

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"{what} is {float(loss.detach())} at step {self.state.step}: training stopped "
                f"({self._newest_note()}); try a lower --lr or --mixed-precision no")

    def _newest_note(self) -> str:
        found, _ = find_resumable(self.checkpoint_dir)
        return (f"the newest checkpoint, {found.name}, is untouched" if found is not None
                else "no checkpoint was written")

    # ---------------------------------------------------------------- checks before writing
    def check_finite(self) -> None:
        """Raise [`NonFiniteError`][pixelfold.utils.errors.NonFiniteError] if a parameter,
        buffer or optimizer state of G, D or the EMA holds NaN or infinity, naming the tensor
        and the step. Run before anything is written."""
        groups = {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                  "EMA generator": self.ema.module.state_dict(),
                  "generator's optimizer": self.opt_G.state_dict()["state"],
                  "discriminator's optimizer": self.opt_D.state_dict()["state"]}
        for what, tensors in groups.items():
            bad = non_finite(tensors)
            if bad:
                name, count, numel = bad[0]
                more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
                raise NonFiniteError(
                    f"the {what}'s {name} holds {count} non-finite value(s) of {numel} at step "
                    f"{self.state.step}{more}: nothing was saved for this step "
                    f"({self._newest_note()}); try a lower --lr or --mixed-precision no")

    # ---------------------------------------------------------------- outputs
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/checkpoint-<step>`` (checked finite first, through a temporary
        folder, complete once its manifest is written) and rotate old ones; also write
        ``generator_ema/`` and ``trainer_state.json``."""
        acc = self.accelerator
        step = self.state.step
        self.check_finite()
        if self.augment.controller is not None:  # read here: it synchronizes with the device
            self.state.augment = self.augment.controller.state_dict()
        final = self.checkpoint_dir / f"checkpoint-{step}"
        tmp = self.checkpoint_dir / f".checkpoint-{step}.tmp"
        if acc.is_main_process:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        acc.wait_for_everyone()
        try:
            with disk_errors(final, cleanup=tmp if acc.is_main_process else None):
                save_state(tmp / rng_file(acc.process_index),
                           capture_rng({"latent": self.latent_gen, "augment": self.aug_gen}))
                if acc.is_main_process:
                    self._write_checkpoint_files(tmp)
                acc.wait_for_everyone()
                if acc.is_main_process:
                    write_manifest(tmp, step=step, trainer_state=self.state.state_dict(),
                                   num_processes=acc.num_processes)
                    apply_default_modes(tmp)
                    swap_into_place(tmp, final)
        except DiskFullError as exc:
            raise DiskFullError(exc.errno, f"{exc.strerror}; training stopped at step {step} "
                                f"({self._newest_note()})", exc.filename) from None
        if acc.is_main_process:
            limit = self.config.checkpoints_total_limit
            if limit is not None:
                for old in list_checkpoints(self.checkpoint_dir)[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
            self.save_generator()
            self.write_state()
        self._saved_step = step
        acc.wait_for_everyone()
        return final

    def _write_checkpoint_files(self, folder: Path) -> None:
        from safetensors.torch import save_file

        def tensors(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

        for name, module in (("generator", self.G), ("generator_ema", self.ema.module),
                             ("discriminator", self.D)):
            save_file(tensors(module), str(folder / MODEL_FILES[name]),
                      metadata={"format": "pt"})
        scaler = getattr(self.accelerator, "scaler", None)
        save_state(folder / OPTIMIZERS_FILE, {
            "G": self.opt_G.state_dict(), "D": self.opt_D.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None})
        for name, data in (("train_config.json", self.config.to_dict()),
                           ("generator_config.json", self.G.spec.to_dict()),
                           ("discriminator_config.json", self.D.spec.to_dict())):
            (folder / name).write_text(json.dumps(data, indent=2) + "\n")

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """Compute the run's metrics on the EMA generator (main process; the others wait),
        append them to ``metrics.jsonl``, log them, and keep ``generator_ema-best/`` when the
        best metric improved. Returns the row written (``None`` on other processes)."""
        acc = self.accelerator
        row = None
        if acc.is_main_process and self.evaluator is not None:
            started = time.perf_counter()
            logger.info("step %d: computing %s of %d generated images (minutes on a CPU; the "
                        "real images' features are cached after the first time)",
                        self.state.step, ", ".join(self.evaluator.metrics),
                        self.evaluator.num_gen)
            G = self.ema.module
            if self.label_probs is not None:  # classes drawn as the training data has them
                from ..metrics import ClassConditioned

                report = self.evaluator.evaluate(
                    ClassConditioned(G, self.label_probs.tolist()), acc.device)
            else:
                report = self.evaluator.evaluate(G, acc.device)
            row = self.evaluator.append(self.output_dir / "metrics.jsonl", step=self.state.step,
                                        kimg=self.state.nimg / 1000, report=report,
                                        seconds=time.perf_counter() - started,
                                        extra=self._augment_logs())
            if self.trackers:
                acc.log({f"metrics/{k}": v for k, v in row["metrics"].items()},
                        step=self.state.step)
            name = self.evaluator.best_metric
            value = row["metrics"][name]
            if self.evaluator.is_better(value, self.state.best.get("value")):
                self.state.best = {"metric": name, "value": value, "step": self.state.step,
                                   "kimg": row["kimg"]}
                folder = G.save_pretrained(self.output_dir / "generator_ema-best")
                atomic_write_text(folder / "best.json", json.dumps(self.state.best) + "\n")
            logger.info("step %d: %s", self.state.step, ", ".join(
                f"{k} {v:.4g}" for k, v in row["metrics"].items()))
        acc.wait_for_everyone()
        return row

    def save_generator(self) -> Path:
        """``generator_ema/`` via ``save_pretrained`` (main process)."""
        return self.ema.module.save_pretrained(self.output_dir / "generator_ema")

    def write_state(self) -> None:
        """``trainer_state.json``: step, kimg, the last losses and the resumes."""
        data = {
            "step": self.state.step, "kimg": self.state.nimg / 1000, "nimg": self.state.nimg,
            "epoch": self.state.epoch, "total_steps": self.total_steps,
            "batch_total": self.batch_total, "losses": self.state.last_losses,
            "skipped_images": self.data.skipped, "resumes": self.state.resumes,
            "r1_gamma": self.r1_gamma, "ema_kimg": self.ema_kimg, **(
                {"augment": self._augment_logs()} if self.augment.kind == "ada" else {}),
            **({"best": self.state.best} if self.state.best else {}),
        }
        atomic_write_text(self.output_dir / "trainer_state.json",
                          json.dumps(data, indent=2) + "\n")

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """A grid from the fixed latents with the EMA generator (main process)."""
        if not self.accelerator.is_main_process:
            return None
        G = self.ema.module
        z = self.sample_z.to(self.accelerator.device)
        c = None if self.sample_c is None else self.sample_c.to(self.accelerator.device)
        images = G(z, c, noise_mode="const")
        path = save_image_grid(images, self.output_dir / "samples" /
                               f"step-{self.state.step:07d}.png",
                               nrow=None if c is None else self.sample_columns)
        for name in self.trackers:
            try:
                tracker = self.accelerator.get_tracker(name)
                if name == "tensorboard":
                    grid = (images.clamp(-1, 1) + 1) / 2
                    tracker.tracker.add_images("samples", grid.float().cpu(), self.state.step)
                else:  # the grid as written
                    import numpy as np
                    from PIL import Image

                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    tracker.log_images({"samples": [pixels]}, step=self.state.step)
            except Exception as exc:  # a tracker problem must not stop training
                logger.warning("could not log samples to %s: %s", name, exc)
        return path

    def _start_trackers(self) -> None:
        """``init_trackers`` with the run's settings. Weights & Biases writes under ``logs/``
        (unless ``WANDB_DIR`` is set) and keeps one run id per output folder, in
        ``logs/wandb-run-id``, so that a resumed run continues the same W&B run. The RNG
        states are kept as they were: starting a tracker must not change the training."""
        c = self.config
        acc = self.accelerator
        init_kwargs: dict[str, Any] = {}
        if "wandb" in self.trackers and acc.is_main_process:
            logs = self.output_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            id_file = logs / "wandb-run-id"
            run_id = id_file.read_text().strip() if id_file.is_file() else ""
            if not run_id:
                import uuid

                run_id = uuid.uuid4().hex[:16]
                atomic_write_text(id_file, run_id + "\n")
            wandb = {"id": run_id, "resume": "allow", "name": self.output_dir.resolve().name}
            if not os.environ.get("WANDB_DIR"):
                wandb["dir"] = str(logs)
            init_kwargs["wandb"] = wandb
        rng = capture_rng({})  # the global generators (the trainer's own are not shared)
        acc.init_trackers("pixelfold", init_kwargs=init_kwargs,
                          config={k: v for k, v in c.to_dict().items()
                                  if isinstance(v, (int, float, str, bool))})
        restore_rng(rng, {})

    # ---------------------------------------------------------------- the run folder
    def _agree(self, error: BaseException | None) -> None:
        """Raise ``error`` on every process if any process has one (the main process's
        message wins), so that no process waits for a peer that stopped."""
        acc = self.accelerator
        if acc.num_processes == 1:
            if error is not None:
                raise error
            return
        flag = torch.tensor([0 if error is None else 1 + acc.process_index],
                            device=acc.device)
        flag = acc.reduce(flag, reduction="sum")
        if error is not None:
            raise error
        if int(flag.item()):
            raise RunFolderError("another process of this run stopped with an error (see its "
                                 "message)")

    @contextlib.contextmanager
    def own_output_dir(self) -> Iterator[None]:
        """Hold the run folder for the body: take its lock (main process), recover and remove
        leftovers of killed runs, and refuse a folder that holds another run unless this one
        resumes it or ``overwrite`` is set (which removes the old run's files)."""
        acc = self.accelerator
        error: BaseException | None = None
        created = not self.output_dir.exists()
        if acc.is_main_process:
            try:
                self._lock = RunLock(self.output_dir).acquire()
                self._recover_leftovers()
                self._refuse_or_clear_existing_run()
            except (RunFolderError, ConfigError) as exc:
                error = exc
            except OSError as exc:
                error = ConfigError(f"--output-dir {self.output_dir}: cannot create or lock it "
                                    f"({one_line(exc)})")
        ok = False
        try:
            self._agree(error)
            yield
            ok = True
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if not ok and created and acc.is_main_process:  # a run that never started
                with contextlib.suppress(OSError):
                    self.output_dir.rmdir()  # only if empty

    def _recover_leftovers(self) -> None:
        out = self.output_dir
        for folder in ("generator_ema", "generator_ema-best"):
            cleanup_leftovers(out / folder, force=True)
        for name in ("trainer_state.json", "train_config.json", "metrics.jsonl"):
            for leftover in out.glob(f".{name}.tmp-*"):
                leftover.unlink(missing_ok=True)
        if self.checkpoint_dir.is_dir():
            for leftover in self.checkpoint_dir.glob(".checkpoint-*"):
                logger.warning("removing %s, left by a run that stopped while writing it",
                               leftover)
                shutil.rmtree(leftover, ignore_errors=True)
        samples = out / "samples"
        if samples.is_dir():
            for leftover in samples.glob(".*.tmp-*"):
                leftover.unlink(missing_ok=True)

    def _existing_run(self) -> str | None:
        out = self.output_dir
        state = out / "trainer_state.json"
        if state.is_file():
            try:
                step = json.loads(state.read_text()).get("step")
                return f"a run at step {step} (trainer_state.json)"
            except (OSError, ValueError, AttributeError):
                return "a run (trainer_state.json)"
        found = [name for name in RUN_FILES if (out / name).exists()
                 and not (name in ("samples", "logs", "checkpoints") and not any(
                     (out / name).iterdir()))]
        return f"a run ({', '.join(found)})" if found else None

    def _refuse_or_clear_existing_run(self) -> None:
        c = self.config
        existing = self._existing_run()
        if existing is None:
            return
        if c.overwrite:
            for name in RUN_FILES:
                path = self.output_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            logger.warning("--overwrite: removed %s from %s", existing, self.output_dir)
            return
        if c.resume_from_checkpoint == "latest":
            found, skipped = find_resumable(self.checkpoint_dir)
            if found is None:
                why = "; ".join(f"{p.name}: {r}" for p, r in skipped) or "no checkpoints"
                raise RunFolderError(
                    f"--output-dir {self.output_dir} holds {existing} but no complete checkpoint "
                    f"to resume ({why}); pass --overwrite to start afresh there")
            return
        if c.resume_from_checkpoint:
            return
        raise RunFolderError(
            f"--output-dir {self.output_dir} already holds {existing}: pass "
            f"--resume-from-checkpoint latest to continue it, --overwrite to replace it, or "
            f"another --output-dir")

    # ---------------------------------------------------------------- resume
    def resolve_checkpoint(self, which: str) -> Path | None:
        """``"latest"`` -> the newest complete checkpoint (``None`` if there is none; newer
        incomplete or unreadable ones are skipped with a warning naming them), else the given
        folder, which must be a complete checkpoint."""
        if which == "latest":
            found, skipped = find_resumable(self.checkpoint_dir)
            for path, reason in skipped:
                logger.warning("skipping %s: %s", path, reason)
            return found
        path = Path(which)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume-from-checkpoint {which}: no such checkpoint folder")
        Checkpoint.open(path)  # complete, or an error naming why not
        return path

    def resume(self, which: str) -> bool:
        """Load a checkpoint; returns whether one was loaded.

        Fixed settings (architecture, batch layout, seed, lazy-regularization intervals) must
        equal the checkpoint's, or a [`CheckpointError`][pixelfold.utils.errors.CheckpointError]
        names each difference; adjustable ones (see
        [`RESUME_ADJUSTABLE`][pixelfold.training.config.RESUME_ADJUSTABLE]) take this run's
        values, are applied to the restored optimizers and recorded in
        ``trainer_state.json``'s ``resumes``.
        """
        path = self.resolve_checkpoint(which)
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.checkpoint_dir)
            return False
        ckpt = Checkpoint.open(path)
        changed = self._compare_settings(ckpt)
        if self.config.init_from is None:  # the run keeps the record of what it started from
            self.config.init_from = ckpt.json("train_config.json").get("init_from")
        if ckpt.step > self.total_steps:
            c = self.config
            asked = f"--kimg {c.kimg:g} ({self.total_steps} steps)" if c.kimg is not None \
                else f"--max-steps {c.max_steps}"
            raise ConfigError(f"{asked} is below the step of {path}, {ckpt.step}: raise it to "
                              f"continue training")
        for name, module in (("generator", self.G), ("discriminator", self.D),
                             ("generator_ema", self.ema.module)):
            state = ckpt.model_state(name)
            bad = non_finite(state)
            if bad:
                raise CheckpointError(f"{path / MODEL_FILES[name]}: {bad[0][0]} holds non-finite "
                                      f"values")
            load_state_dict_strict(module, state, source=str(path / MODEL_FILES[name]))
        optimizers = ckpt.optimizers()
        try:
            self.opt_G.load_state_dict(optimizers["G"])
            self.opt_D.load_state_dict(optimizers["D"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path / OPTIMIZERS_FILE}: the optimizer states do not fit "
                                  f"the models ({exc})") from None
        for opt, which_net in ((self.opt_G, "G"), (self.opt_D, "D")):
            for group in opt.param_groups:
                group.update(self._adam(which_net))
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and optimizers.get("scaler") is not None:
            scaler.load_state_dict(optimizers["scaler"])
        self.state.load_state_dict(ckpt.trainer_state)
        self._adopt_best_on_disk()
        controller = self.augment.controller
        if controller is not None and self.state.augment:
            controller.load_state_dict(self.state.augment)
            self.augment.module.p = controller.p
        rng = ckpt.rng(self.accelerator.process_index)
        if rng is None:
            raise CheckpointError(f"{path} has no RNG state for process "
                                  f"{self.accelerator.process_index}")
        restore_rng(rng, {"latent": self.latent_gen, "augment": self.aug_gen})
        self._iter = None  # the data position comes from the loaded state
        self._saved_step = ckpt.step
        if changed:
            self.state.resumes.append({"step": ckpt.step, "checkpoint": path.name,
                                       "changed": changed})
            logger.warning("resuming %s with changed settings: %s", path, ", ".join(
                f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
        logger.info("resumed from %s at step %d", path, self.state.step)
        return True

    def _adopt_best_on_disk(self) -> None:
        """``generator_ema-best/`` may come from after the checkpoint (a run that went on and
        was killed): keep comparing against it, so a better generator is never replaced by a
        worse one."""
        path = self.output_dir / "generator_ema-best" / "best.json"
        if self.evaluator is None or not path.is_file():
            return
        try:
            best = json.loads(path.read_text())
            value = float(best["value"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring %s: not a best.json pixelfold wrote", path)
            return
        if best.get("metric") == self.evaluator.best_metric and self.evaluator.is_better(
                value, self.state.best.get("value")):
            self.state.best = best

    def _compare_settings(self, ckpt: Checkpoint) -> dict[str, list[Any]]:
        """Refuse changed fixed settings (one error naming each); return the changed
        adjustable ones as ``{name: [checkpoint's, this run's]}``."""
        old = ckpt.json("train_config.json")
        new = _json_normal(self.config.to_dict())
        fixed, adjustable = [], {}
        for key, value in new.items():
            if key in ("output_dir", "resume_from_checkpoint", "overwrite", "preset",
                       "generator_config", "d_channels") or key not in old:
                continue
            if key == "init_from" and value is None:  # not repeated on resume: inherited
                continue
            if _json_normal(old[key]) != value:
                if key in RESUME_ADJUSTABLE:
                    adjustable[key] = [old[key], value]
                else:
                    fixed.append(f"{key} {old[key]!r} -> {value!r}")
        g_old = ckpt.json("generator_config.json")
        if _json_normal(g_old) != _json_normal(self.G.spec.to_dict()):
            names = (old.get("generator_config") or old.get("preset"),
                     self.config.generator_config or self.config.preset)
            diff = sorted(k for k in set(g_old) | set(self.G.spec.to_dict())
                          if _json_normal(g_old.get(k)) !=
                          _json_normal(self.G.spec.to_dict().get(k)))
            fixed.append(f"generator {names[0]!r} -> {names[1]!r} (differs in "
                         f"{', '.join(diff[:6])})")
        d_old = ckpt.json("discriminator_config.json")
        if _json_normal(d_old) != _json_normal(self.D.spec.to_dict()):
            fixed.append(f"discriminator channels {d_old.get('channels')} -> "
                         f"{self.D.spec.to_dict().get('channels')}")
        processes = int(ckpt.manifest.get("num_processes", 1))
        if processes != self.accelerator.num_processes:
            fixed.append(f"processes {processes} -> {self.accelerator.num_processes}")
        if fixed:
            raise CheckpointError(
                f"cannot resume {ckpt.folder} with changed fixed settings: {'; '.join(fixed)}. "
                f"They cannot change during a run: keep them, or start a new run in another "
                f"--output-dir")
        return adjustable

    # ---------------------------------------------------------------- the loop
    def _augment_logs(self) -> dict[str, float]:
        """``augment/p`` (and ``augment/rt`` once measured) of an ADA run."""
        if self.augment.kind != "ada":
            return {}
        logs = {"augment/p": float(self.augment.module.p)}
        controller = self.augment.controller
        if controller is not None and controller.rt is not None:
            logs["augment/rt"] = float(controller.rt)
        return logs

    def _stop_requested(self, stop: _StopRequest) -> bool:
        acc = self.accelerator
        if acc.num_processes == 1:
            return stop.signal_name is not None
        flag = torch.tensor([1 if stop.signal_name else 0], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item())

    def train(self) -> Path:
        """Run to ``total_steps``; returns the ``generator_ema`` folder.

        Raises:
            TrainingInterrupted: on Ctrl-C or SIGTERM, after writing a checkpoint of the last
                finished step.
        """
        c = self.config
        acc = self.accelerator
        with self.own_output_dir():
            if c.resume_from_checkpoint and not self.resume(c.resume_from_checkpoint) \
                    and c.init_from:
                self.load_init_weights()  # no checkpoint yet: the run starts from init_from
            if acc.is_main_process:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.output_dir / "train_config.json", c.to_json() + "\n")
            if self.trackers:
                self._start_trackers()
            try:
                with _StopRequest() as stop:
                    self._loop(stop)
            finally:
                if self.trackers:
                    acc.end_training()
        skipped = self.data.skipped
        if skipped:
            logger.warning("%d unreadable image(s) were skipped on process %d", skipped,
                           acc.process_index)
        return self.output_dir / "generator_ema"

    def _loop(self, stop: _StopRequest) -> None:
        c = self.config
        acc = self.accelerator
        total = self.total_steps
        bar = None
        if c.progress_bar and acc.is_local_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.state.step, unit="step", dynamic_ncols=True)
        t0, n0 = time.perf_counter(), self.state.nimg
        self.G_train.train()
        self.D_ddp.train()
        try:
            while self.state.step < total:
                losses = self.train_step()
                step = self.state.step
                if bar is not None:
                    rate = (self.state.nimg - n0) / max(time.perf_counter() - t0, 1e-9)
                    bar.update(1)
                    bar.set_postfix(kimg=f"{self.state.nimg / 1000:.1f}", img_s=f"{rate:.1f}",
                                    **{k.split("/")[1]: f"{v:.3f}" for k, v in
                                       {**losses, **self._augment_logs()}.items()})
                if step % c.log_every == 0 or step == total:
                    logs = dict(losses)
                    logs["kimg"] = self.state.nimg / 1000
                    logs["lr/G"] = self.opt_G.param_groups[0]["lr"]
                    logs["lr/D"] = self.opt_D.param_groups[0]["lr"]
                    logs.update(self._augment_logs())
                    if self.trackers:
                        acc.log(logs, step=step)
                sample = step % c.sample_every == 0 or step == total
                checkpoint = step % c.checkpointing_steps == 0 or step == total
                evaluate = self.evaluator is not None and (step % self.eval_steps == 0
                                                           or step == total)
                if sample or checkpoint or evaluate:
                    self.check_finite()  # before anything of this step is written
                if sample:
                    self.save_samples()
                if evaluate:  # before the checkpoint, which then keeps the best so far
                    self.evaluate()
                if checkpoint:
                    self.save_checkpoint()
                if self._stop_requested(stop):
                    if self._saved_step != step:
                        self.save_checkpoint()
                    raise TrainingInterrupted(
                        f"stopped by {stop.signal_name or 'a peer process'} at step {step}: "
                        f"wrote {self.checkpoint_dir / f'checkpoint-{step}'}; continue with "
                        f"--resume-from-checkpoint latest")
            if self._saved_step != self.state.step:  # e.g. resumed a finished run
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()


def estimate_step_bytes(gspec: GeneratorSpec, dspec: DiscriminatorSpec, batch_size: int) -> int:
    """Estimated peak memory of one float32 training step (D loss, R1, G loss) of
    ``batch_size`` images: the weights, their gradients and Adam moments of G, D and the EMA,
    plus the activations of a step measured on the meta device at batch 1 and 2 and
    extrapolated linearly (allocator caches and library workspaces come on top)."""
    from ..utils.memory import peak_forward_bytes

    with torch.device("meta"):
        G, D = Generator(gspec), Discriminator(dspec)
    res = G.resolution

    def step(batch: int) -> int:
        def run() -> None:
            z = torch.randn(batch, G.z_dim, device="meta")
            real = torch.randn(batch, dspec.image_channels, *res, device="meta")
            c = torch.zeros(batch, gspec.c_dim, device="meta") if gspec.c_dim else None
            with torch.no_grad():
                fake = G(z, c)
            discriminator_loss(D(real, c), D(fake, c)).backward()
            x = real.requires_grad_(True)
            r1_penalty(x, D(x, c)).backward()
            generator_loss(D(G(z, c), c)).backward()

        return peak_forward_bytes(run)

    one, two = step(1), step(2)
    weights = sum(p.numel() for m in (G, D) for p in m.parameters()) * 4
    return int(weights * 3 + weights // 2 + one + (two - one) * (batch_size - 1))


def _check_output_dir(path: Path) -> None:
    """An output folder must be a folder (or not exist yet) in a writable place."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output-dir {path} exists and is not a folder")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--output-dir {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output-dir {path}: cannot write in {probe}")


class _TrainingGenerator(nn.Module):
    """What the trainer hands to ``accelerator.prepare``: mapping (with optional style mixing)
    and synthesis in one forward, so DDP sees the whole generator in one call."""

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, mixing_prob: float = 0.0,
                generator: torch.Generator | None = None,
                update_w_avg: bool = False,
                c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # a mixed-in second latent keeps the sample's label (as StyleGAN2-ADA)
        ws = style_mixing_ws(lambda zz: self.G.mapping(zz, c, update_w_avg=update_w_avg), z,
                             mixing_prob, generator)
        return self.G.synthesis(ws), ws


def train(config: TrainConfig, dataset: Any = None) -> Path:
    """Build a [`GANTrainer`][pixelfold.training.GANTrainer] for ``config`` and run it; returns
    the ``generator_ema`` folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    return GANTrainer(config, dataset=dataset).train()
