"""GAN losses, regularizers and training-time helpers of StyleGAN2-style training, as the
PixelFolder authors use them.

- [`generator_loss`][pixelfold.training.generator_loss] /
  [`discriminator_loss`][pixelfold.training.discriminator_loss]: non-saturating logistic loss.
- [`r1_penalty`][pixelfold.training.r1_penalty] and
  [`lazy_r1_loss`][pixelfold.training.lazy_r1_loss]: R1 on real images, applied lazily
  (the authors: gamma 10 every 16 discriminator steps).
- [`path_length_penalty`][pixelfold.training.path_length_penalty]: StyleGAN2's path length
  regularizer (the authors do not use it).
- [`lazy_adam_params`][pixelfold.training.lazy_adam_params]: Adam hyper-parameters corrected
  for lazy regularization.
- [`ema_beta`][pixelfold.training.ema_beta] and [`EMA`][pixelfold.training.EMA]: the moving
  average of the generator weights, with a half-life in images instead of steps.
- [`style_mixing_ws`][pixelfold.training.style_mixing_ws]: mixing regularization.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EMA",
    "discriminator_loss",
    "ema_beta",
    "generator_loss",
    "lazy_adam_params",
    "lazy_r1_loss",
    "path_length_penalty",
    "r1_penalty",
    "style_mixing_ws",
]


# ---- adversarial losses -----------------------------------------------------------------------


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic generator loss ``mean(softplus(-D(G(z))))``.

    Args:
        fake_logits: discriminator logits of generated images, any shape.

    Returns:
        a scalar (float32 when the logits are of lower precision).
    """
    return F.softplus(-_as_float(fake_logits)).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss ``mean(softplus(-D(x))) + mean(softplus(D(G(z))))``.

    Args:
        real_logits: logits of real images.
        fake_logits: logits of generated images (detached from the generator).

    Returns:
        a scalar; ``2·log 2`` when every logit is 0.
    """
    return F.softplus(-_as_float(real_logits)).mean() + F.softplus(_as_float(fake_logits)).mean()


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# ---- regularizers -----------------------------------------------------------------------------


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``E_x[ ||∇_x D(x)||² ]`` on real images (Mescheder et al. 2018).

    The gradient of ``real_logits.sum()`` (summed in float32, so it is safe under
    ``torch.autocast``) with respect to ``real_images`` is taken with ``create_graph=True``,
    squared, summed over every non-batch dimension and averaged over the batch.

    Pass **unscaled** logits: compute them under autocast if you like, but do not multiply them
    by a ``GradScaler`` scale before this call (``torch.autograd.grad`` bypasses the scaler, and
    Accelerate only scales inside ``accelerator.backward``). Scale the returned penalty through
    ``accelerator.backward(lazy_r1_loss(...))`` as any other loss.

    Args:
        real_images: the real batch ``(B, C, H, W)``; it must have ``requires_grad=True`` and
            ``real_logits`` must have been computed from it.
        real_logits: ``D(real_images)``.

    Returns:
        a float32 scalar.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images with requires_grad=True (call "
                         "real_images.requires_grad_() before running the discriminator)")
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def lazy_r1_loss(penalty: torch.Tensor, gamma: float, interval: int | None = 1) -> torch.Tensor:
    """The R1 term added to the discriminator loss when R1 runs every ``interval`` steps:
    ``penalty · gamma / 2 · interval`` (the authors: gamma 10, interval 16).

    Args:
        penalty: the output of [`r1_penalty`][pixelfold.training.r1_penalty].
        gamma: R1 weight.
        interval: steps between two regularization steps (``None`` or ``0`` mean 1).
    """
    return penalty * (gamma / 2 * (interval or 1))


def path_length_penalty(
    images: torch.Tensor,
    ws: torch.Tensor,
    mean_path_length: torch.Tensor | float,
    decay: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path length regularizer.

    With ``y ~ N(0, I) / sqrt(H·W)`` and ``J = ∂G(w)/∂w``, the path length of a sample is
    ``a = sqrt(mean_over_ws(sum_over_w_dim((Jᵀy)²)))``; the target ``ā`` is an exponential
    moving average of the batch mean, ``ā ← ā + decay·(mean(a) − ā)``, and the penalty is
    ``mean((a − ā)²)`` with the updated ``ā``.

    Args:
        images: generated images ``(B, C, H, W)``, computed from ``ws``.
        ws: the styles ``(B, num_ws, w_dim)`` (or ``(B, w_dim)``) the images were generated
            from; they must require grad (or be part of a graph that does).
        mean_path_length: the current ``ā`` (start at 0).
        decay: EMA rate of ``ā``.
        generator: random generator for ``y`` (on the images' device).

    Returns:
        ``(penalty, new_mean_path_length)``: a float32 scalar to multiply by the regularizer
        weight (and the interval when lazy), and the detached float32 scalar ``ā`` to keep.
    """
    if ws.ndim not in (2, 3):
        raise ValueError(f"path_length_penalty expects ws of shape (B, num_ws, w_dim) or "
                         f"(B, w_dim), got {tuple(ws.shape)}")
    h, w = images.shape[-2:]
    noise = torch.randn(images.shape, generator=generator, device=images.device,
                        dtype=torch.float32) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
    grad = grad.float()
    if grad.ndim == 2:
        grad = grad[:, None]
    lengths = grad.square().sum(2).mean(1).sqrt()
    mean = torch.as_tensor(mean_path_length, dtype=torch.float32, device=lengths.device)
    new_mean = mean.lerp(lengths.detach().mean(), decay)
    penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean


# ---- optimizer and weight averaging -----------------------------------------------------------


def lazy_adam_params(
    lr: float, betas: tuple[float, float], reg_interval: int | None
) -> tuple[float, tuple[float, float]]:
    """Adam's learning rate and betas corrected for lazy regularization (StyleGAN2, App. B).

    When a regularizer runs every ``k`` steps, a network takes ``k + 1`` optimizer steps per
    ``k`` minibatches; with ``c = k / (k + 1)`` the corrected values are ``lr·c`` and
    ``(beta1**c, beta2**c)``. The authors: D with ``k = 16`` gets ``0.002·16/17`` and
    ``0.99**(16/17)``.

    Args:
        lr: nominal learning rate.
        betas: nominal ``(beta1, beta2)``.
        reg_interval: steps between two regularization steps; ``None`` or ``0``: no correction.
    """
    if not reg_interval:
        return lr, (betas[0], betas[1])
    if reg_interval < 0:
        raise ValueError(f"reg_interval must be >= 0 or None, got {reg_interval!r}")
    c = reg_interval / (reg_interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def ema_beta(
    batch_size: int,
    ema_kimg: float = 10.0,
    ema_rampup: float | None = None,
    cur_nimg: int = 0,
) -> float:
    """Per-step decay of the generator's moving average, from a half-life in images.

    ``ema_nimg = ema_kimg · 1000`` (with a ramp-up: ``min(ema_nimg, cur_nimg · ema_rampup)``)
    and ``beta = 0.5 ** (batch_size / ema_nimg)``, so the average forgets half of its past every
    ``ema_nimg`` images whatever the batch size. The authors' fixed ``0.5 ** (32 / 10000)`` is
    ``ema_beta(32, ema_kimg=10)``: right for a batch of 32, not for their total batch of 64.

    Args:
        batch_size: images per optimizer step (summed over all processes).
        ema_kimg: half-life in thousands of images.
        ema_rampup: if set, the half-life grows as ``cur_nimg · ema_rampup`` until it reaches
            ``ema_kimg`` (NVlabs uses 0.05 for small datasets).
        cur_nimg: images seen so far.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if ema_kimg < 0:
        raise ValueError(f"ema_kimg must be >= 0, got {ema_kimg!r}")
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


class EMA:
    """An exponential moving average of a module's parameters.

    ``module`` is a deep copy of the model in eval mode with ``requires_grad=False``;
    [`update`][pixelfold.training.losses.EMA.update] moves each parameter toward the model's
    (``p_ema ← beta·p_ema + (1 − beta)·p``) and copies every buffer (``w_avg``, constant
    noise, ...) as is.

    Args:
        model: the module to average (unwrapped: not a DDP / Accelerate wrapper).

    Example:
        >>> G = torch.nn.Linear(2, 2)
        >>> ema = EMA(G)
        >>> ema.update(G, beta=ema_beta(32))
        >>> ema.module(torch.zeros(1, 2)).shape
        torch.Size([1, 2])
    """

    def __init__(self, model: nn.Module) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, beta: float) -> None:
        """Average ``model`` into ``module`` with decay ``beta`` (0: copy, 1: keep) and
        copy its buffers.

        Args:
            model: the trained module, with the same parameter and buffer names as the copy.
            beta: decay, in ``[0, 1]``.
        """
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"EMA beta must be in [0, 1], got {beta!r}")
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        for kind, ours, theirs in (("parameter", dict(self.module.named_parameters()), params),
                                   ("buffer", dict(self.module.named_buffers()), buffers)):
            if ours.keys() != theirs.keys():
                diff = sorted(set(ours) ^ set(theirs))[:5]
                raise ValueError(f"EMA.update: the model's {kind} names differ from the "
                                 f"average's (e.g. {diff}); pass the unwrapped model "
                                 f"(accelerator.unwrap_model)")
        for name, p_ema in self.module.named_parameters():
            p_ema.lerp_(params[name].detach().to(p_ema.dtype), 1.0 - beta)
        for name, b_ema in self.module.named_buffers():
            b_ema.copy_(buffers[name])

    def state_dict(self) -> dict[str, Any]:
        """The averaged module's ``state_dict`` (for checkpoints)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        """Load a ``state_dict`` saved by
        [`state_dict`][pixelfold.training.losses.EMA.state_dict]."""
        return self.module.load_state_dict(state_dict, strict=strict)

    def to(self, *args: Any, **kwargs: Any) -> EMA:
        """Move the averaged module (``nn.Module.to`` arguments); returns ``self``."""
        self.module.to(*args, **kwargs)
        return self


# ---- style mixing -----------------------------------------------------------------------------


def style_mixing_ws(
    mapping_fn_or_generator: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    z: torch.Tensor,
    prob: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Map ``z`` to styles, mixing in a second latent with probability ``prob`` (StyleGAN2's
    mixing regularization, drawn per batch as NVlabs does).

    One crossover ``c`` is drawn uniformly from ``[1, num_ws - 1]`` and kept with probability
    ``prob``; when kept, ``ws[:, c:]`` is replaced by the mapping of a fresh ``z2 ~ N(0, I)``.
    With ``prob = 0`` nothing random is drawn and the plain mapping is returned.

    Args:
        mapping_fn_or_generator: an object with a ``.mapping`` method (a
            [`Generator`][pixelfold.models.Generator]), or a function ``z -> ws``; either must
            return ``(B, num_ws, w_dim)``.
        z: latents ``(B, z_dim)``.
        prob: mixing probability in ``[0, 1]`` (the authors: 0).
        generator: random generator for the crossover, the coin and ``z2`` (the crossover and
            coin are drawn on its device, ``z2`` too, then moved to ``z``'s device).

    Returns:
        ``ws`` ``(B, num_ws, w_dim)``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"style mixing prob must be in [0, 1], got {prob!r}")
    mapping = getattr(mapping_fn_or_generator, "mapping", mapping_fn_or_generator)
    ws = mapping(z)
    if ws.ndim != 3:
        raise ValueError(f"style_mixing_ws needs a mapping that returns (B, num_ws, w_dim), "
                         f"got {tuple(ws.shape)}")
    num_ws = ws.shape[1]
    if prob == 0 or num_ws < 2:
        return ws
    device = generator.device if generator is not None else torch.device("cpu")
    cutoff = int(torch.randint(1, num_ws, (), generator=generator, device=device))
    if float(torch.rand((), generator=generator, device=device)) >= prob:
        return ws
    z2 = torch.randn(z.shape, generator=generator,
                     device=generator.device if generator is not None else z.device,
                     dtype=z.dtype).to(z.device)
    return torch.cat([ws[:, :cutoff], mapping(z2)[:, cutoff:]], dim=1)
