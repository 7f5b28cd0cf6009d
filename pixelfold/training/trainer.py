"""GAN training on one Accelerator: G and D, lazy R1, EMA, checkpoints, samples, exact resume.

One script runs on CPU, one GPU, several GPUs or several machines (``accelerate launch``). What
a run writes in ``output_dir``:

* ``checkpoints/checkpoint-<step>/``: ``accelerator.save_state`` (models, optimizers, EMA,
  trainer state with the step and the samplers' RNG, Accelerate's RNG states), written to a
  temporary folder and renamed when complete, so the newest folder is always whole;
* ``generator_ema/``: ``config.json`` + ``model.safetensors`` of the EMA generator (at every
  checkpoint and at the end), loadable with ``Generator.from_pretrained``;
* ``samples/step-<step>.png``: grids from fixed latents;
* ``trainer_state.json``: step, kimg, losses of the last step;
* ``logs/``: TensorBoard scalars and sample grids through Accelerate's trackers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec, presets
from .config import TrainConfig
from .data import ImageDataset, IterableImageDataset, digits_dataset, load_image_dataset
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

__all__ = ["GANTrainer", "NonFiniteLossError", "TrainerState", "save_image_grid", "train"]

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainerState:
    """What Accelerate cannot know: the step, images seen, the epoch and position in it, and
    the RNG of the latent and augmentation samplers. Saved in every checkpoint."""

    step: int = 0
    nimg: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    pl_mean: float = 0.0
    latent_rng: torch.Tensor | None = None
    aug_rng: torch.Tensor | None = None
    last_losses: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """For ``accelerator.register_for_checkpointing``."""
        return {"step": self.step, "nimg": self.nimg, "epoch": self.epoch,
                "batches_in_epoch": self.batches_in_epoch, "pl_mean": self.pl_mean,
                "latent_rng": self.latent_rng, "aug_rng": self.aug_rng,
                "last_losses": dict(self.last_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from [`state_dict`][pixelfold.training.trainer.TrainerState.state_dict]."""
        for key, value in state.items():
            setattr(self, key, value)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write images in ``[-1, 1]`` ``(N, C, H, W)`` as one PNG grid, atomically."""
    from PIL import Image

    images = images.detach().float().cpu().clamp(-1, 1)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints in ``checkpoint_dir``, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


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
        if accelerator is None:
            accelerator = Accelerator(
                mixed_precision=config.mixed_precision,
                log_with=None if config.report_to == "none" else config.report_to,
                project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                    logging_dir=str(self.output_dir / "logs")),
                dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            )
        self.accelerator = accelerator
        if accelerator.device.type == "cuda":
            torch.backends.cudnn.benchmark = config.cudnn_benchmark
        from accelerate.utils import set_seed

        set_seed(config.seed, device_specific=True)
        self.G, self.D = self._build_models()
        self.ema = EMA(self.G)
        self.state = TrainerState()
        self._iter: Any = None
        self.data = self._build_data(dataset)
        self._build_optimizers()
        self.latent_gen = torch.Generator().manual_seed(
            config.seed * 1000 + 2 * accelerator.process_index + 1)
        self.aug_gen = torch.Generator().manual_seed(
            config.seed * 1000 + 2 * accelerator.process_index + 2)
        self.sample_z = torch.randn(config.num_samples, self.G.z_dim,
                                    generator=torch.Generator().manual_seed(config.seed))
        (self.G_train, self.D_ddp, self.opt_G, self.opt_D, self.loader) = accelerator.prepare(
            _TrainingGenerator(self.G), self.D, self.opt_G, self.opt_D, self.loader)
        accelerator.register_for_checkpointing(self.ema, self.state)

    # ---------------------------------------------------------------- setup
    def _build_models(self) -> tuple[Generator, Discriminator]:
        c = self.config
        if c.generator_config:
            spec = GeneratorSpec.from_json(Path(c.generator_config))
        else:
            spec = presets.get(c.preset)
        G = Generator(spec)
        if G.resolution != (c.resolution, c.resolution):
            raise ValueError(f"the generator makes {G.resolution[0]}x{G.resolution[1]} images "
                             f"but --resolution is {c.resolution}")
        dspec = DiscriminatorSpec(resolution=c.resolution,
                                  **({"channels": c.d_channels} if c.d_channels else {}))
        return G, Discriminator(dspec)

    def _build_data(self, dataset: Any) -> Any:
        c = self.config
        if dataset is None:
            dataset = digits_dataset(c.resolution) if c.dataset == "digits" else \
                load_image_dataset(c.dataset, split=c.split, streaming=c.streaming)
        import datasets

        if isinstance(dataset, datasets.IterableDataset):
            ds = IterableImageDataset(dataset, c.resolution, image_column=c.image_column,
                                      resize_filter=c.resize_filter,
                                      jpeg_quality=c.jpeg_quality, seed=c.seed)
            shuffle = False
        else:
            ds = ImageDataset(dataset, c.resolution, image_column=c.image_column,
                              resize_filter=c.resize_filter, jpeg_quality=c.jpeg_quality)
            shuffle = True
        # a generator of its own: creating a dataloader iterator must not draw from the global
        # RNG (which drives the noise inputs), or resuming mid-run would shift the noise
        self.loader = torch.utils.data.DataLoader(
            ds, batch_size=c.batch_size, shuffle=shuffle, drop_last=True,
            num_workers=c.num_workers, persistent_workers=c.num_workers > 0,
            generator=torch.Generator().manual_seed(c.seed))
        if not isinstance(ds, IterableImageDataset) and len(ds) < c.batch_size:
            raise ValueError(f"the dataset has {len(ds)} images, fewer than one batch "
                             f"({c.batch_size})")
        return ds

    def _build_optimizers(self) -> None:
        c = self.config
        g_lr, g_betas = lazy_adam_params(c.lr, c.betas, c.g_reg_interval)
        d_lr, d_betas = lazy_adam_params(c.lr, c.betas, c.d_reg_interval)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas, eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8)

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
    def _next_batch(self) -> torch.Tensor:
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
            return self._augment(batch)

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        if self.config.hflip:
            flip = torch.rand(batch.shape[0], generator=self.aug_gen) < 0.5
            flip = flip.to(batch.device)[:, None, None, None]
            batch = torch.where(flip, batch.flip(-1), batch)
        return batch

    def _latents(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.G.z_dim, generator=self.latent_gen)
        return z.to(self.accelerator.device)

    def _forward_G(self, batch: int, *, update_w_avg: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate ``batch`` images through the (possibly DDP-wrapped) training module, with
        style mixing with probability ``style_mixing_prob``."""
        return self.G_train(self._latents(batch), self.config.style_mixing_prob,
                            self.latent_gen, update_w_avg)

    # ---------------------------------------------------------------- one step
    def _micro_batches(self, model: nn.Module):
        n = self.config.gradient_accumulation_steps
        for i in range(n):
            ctx = self.accelerator.no_sync(model) if i < n - 1 else _nullcontext()
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
            real = self._next_batch().to(acc.device)
            reals.append(real)
            with ctx:
                with torch.no_grad(), acc.autocast():
                    fake, _ = self._forward_G(real.shape[0], update_w_avg=True)
                with acc.autocast():
                    loss = discriminator_loss(D(real), D(fake.detach())) / n
                self._check(loss, "D loss")
                acc.backward(loss)
            d_total += float(loss.detach())
        self.opt_D.step()
        losses["loss/D"] = d_total

        # --- D: lazy R1
        if c.r1_gamma > 0 and step % c.d_reg_interval == 0:
            self.opt_D.zero_grad(set_to_none=True)
            r1_total = 0.0
            for i, ctx in self._micro_batches(D):
                real = reals[i].detach().requires_grad_(True)
                with ctx:
                    with acc.autocast():
                        logits = D(real)
                    penalty = r1_penalty(real, logits)
                    loss = lazy_r1_loss(penalty, c.r1_gamma, c.d_reg_interval) / n
                    # keeps every D parameter in the graph for DDP
                    loss = loss + 0.0 * logits.float().sum()
                    self._check(loss, "R1 penalty")
                    acc.backward(loss)
                r1_total += float(penalty.detach()) / n
            self.opt_D.step()
            losses["loss/R1"] = r1_total

        # --- G: non-saturating loss
        self.opt_G.zero_grad(set_to_none=True)
        g_total = 0.0
        for _, ctx in self._micro_batches(G):
            with ctx:
                with acc.autocast():
                    fake, _ = self._forward_G(c.batch_size)
                    loss = generator_loss(D(fake)) / n
                self._check(loss, "G loss")
                acc.backward(loss)
            g_total += float(loss.detach())
        self.opt_G.step()
        self.opt_D.zero_grad(set_to_none=True)  # D's gradients from the G pass are not used
        losses["loss/G"] = g_total

        # --- G: lazy path-length regularization (optional)
        if c.pl_weight > 0 and step % c.g_reg_interval == 0:
            self.opt_G.zero_grad(set_to_none=True)
            batch = max(1, c.batch_size // 2)
            with acc.autocast():
                fake, ws = self._forward_G(batch)
            penalty, new_mean = path_length_penalty(fake, ws, self.state.pl_mean)
            self.state.pl_mean = float(new_mean)
            loss = penalty * c.pl_weight * c.g_reg_interval + 0.0 * fake.float().sum()
            self._check(loss, "path-length penalty")
            acc.backward(loss)
            self.opt_G.step()
            losses["loss/PL"] = float(penalty)

        # --- EMA
        self.state.nimg += self.batch_total
        beta = ema_beta(self.batch_total, c.ema_kimg, c.ema_rampup, self.state.nimg)
        self.ema.update(self.G, beta)
        self.state.step += 1
        self.state.last_losses = losses
        return losses

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"{what} is {float(loss.detach())} at step {self.state.step}: training stopped "
                f"(the last checkpoint is untouched); try a lower --lr or --mixed-precision no")

    # ---------------------------------------------------------------- outputs
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/checkpoint-<step>`` atomically and rotate old ones; also write
        ``generator_ema/`` and ``trainer_state.json``."""
        acc = self.accelerator
        step = self.state.step
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"checkpoint-{step}"
        tmp = self.checkpoint_dir / f".checkpoint-{step}.tmp"
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            limit = self.config.checkpoints_total_limit
            if limit is not None:
                for old in list_checkpoints(self.checkpoint_dir)[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
            self.save_generator()
            self.write_state()
        acc.wait_for_everyone()
        return final

    def save_generator(self) -> Path:
        """``generator_ema/`` via ``save_pretrained`` (main process)."""
        return self.ema.module.save_pretrained(self.output_dir / "generator_ema")

    def write_state(self) -> None:
        """``trainer_state.json``: step, kimg and the last losses."""
        _write_json_atomic(self.output_dir / "trainer_state.json", {
            "step": self.state.step, "kimg": self.state.nimg / 1000, "nimg": self.state.nimg,
            "epoch": self.state.epoch, "total_steps": self.total_steps,
            "batch_total": self.batch_total, "losses": self.state.last_losses,
            "skipped_images": self.data.skipped,
        })

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """A grid from the fixed latents with the EMA generator (main process)."""
        if not self.accelerator.is_main_process:
            return None
        G = self.ema.module
        z = self.sample_z.to(self.accelerator.device)
        images = G(z, noise_mode="const")
        path = save_image_grid(images, self.output_dir / "samples" /
                               f"step-{self.state.step:07d}.png")
        if self.config.report_to != "none":
            try:
                tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
                grid = (images.clamp(-1, 1) + 1) / 2
                tracker.add_images("samples", grid.float().cpu(), self.state.step)
            except Exception as exc:  # a tracker problem must not stop training
                logger.warning("could not log samples to the tracker: %s", exc)
        return path

    # ---------------------------------------------------------------- resume and loop
    def resolve_checkpoint(self, which: str) -> Path | None:
        """``"latest"`` -> the newest complete checkpoint (``None`` if there is none), else the
        given folder, which must exist."""
        if which == "latest":
            found = list_checkpoints(self.checkpoint_dir)
            return found[-1] if found else None
        path = Path(which)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume-from-checkpoint {which}: no such checkpoint folder")
        return path

    def resume(self, which: str) -> bool:
        """Load a checkpoint; returns whether one was loaded."""
        path = self.resolve_checkpoint(which)
        if path is None:
            logger.info("no checkpoint in %s: starting from scratch", self.checkpoint_dir)
            return False
        self.accelerator.load_state(str(path))
        self._iter = None  # the data position comes from the loaded state
        if self.state.latent_rng is not None:
            self.latent_gen.set_state(self.state.latent_rng)
        if self.state.aug_rng is not None:
            self.aug_gen.set_state(self.state.aug_rng)
        logger.info("resumed from %s at step %d", path, self.state.step)
        return True

    def _snapshot_rng(self) -> None:
        self.state.latent_rng = self.latent_gen.get_state()
        self.state.aug_rng = self.aug_gen.get_state()

    def train(self) -> Path:
        """Run to ``total_steps``; returns the ``generator_ema`` folder."""
        c = self.config
        acc = self.accelerator
        if c.resume_from_checkpoint:
            self.resume(c.resume_from_checkpoint)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.output_dir / "train_config.json", c.to_dict())
        if c.report_to != "none":
            acc.init_trackers("pixelfold", config={k: v for k, v in c.to_dict().items()
                                                   if isinstance(v, (int, float, str, bool))})
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
                                    **{k.split("/")[1]: f"{v:.3f}" for k, v in losses.items()})
                if step % c.log_every == 0 or step == total:
                    logs = dict(losses)
                    logs["kimg"] = self.state.nimg / 1000
                    logs["lr/G"] = self.opt_G.param_groups[0]["lr"]
                    logs["lr/D"] = self.opt_D.param_groups[0]["lr"]
                    if c.report_to != "none":
                        acc.log(logs, step=step)
                if step % c.sample_every == 0 or step == total:
                    self.save_samples()
                if step % c.checkpointing_steps == 0 or step == total:
                    self._snapshot_rng()
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if c.report_to != "none":
                acc.end_training()
        skipped = self.data.skipped
        if skipped:
            logger.warning("%d unreadable image(s) were skipped on process %d", skipped,
                           acc.process_index)
        return self.output_dir / "generator_ema"


class _TrainingGenerator(nn.Module):
    """What the trainer hands to ``accelerator.prepare``: mapping (with optional style mixing)
    and synthesis in one forward, so DDP sees the whole generator in one call."""

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, mixing_prob: float = 0.0,
                generator: torch.Generator | None = None,
                update_w_avg: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ws = style_mixing_ws(lambda zz: self.G.mapping(zz, update_w_avg=update_w_avg), z,
                             mixing_prob, generator)
        return self.G.synthesis(ws), ws


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def train(config: TrainConfig, dataset: Any = None) -> Path:
    """Build a [`GANTrainer`][pixelfold.training.GANTrainer] for ``config`` and run it; returns
    the ``generator_ema`` folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    return GANTrainer(config, dataset=dataset).train()
