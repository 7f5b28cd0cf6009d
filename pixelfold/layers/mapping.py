"""The StyleGAN mapping network z -> w (optionally conditioned on a class label c), with pixel
norm and a tracked average w."""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_input
from .equalized import EqualLinear
from .labels import label_vectors

__all__ = ["MappingNetwork", "PixelNorm", "pixel_norm"]


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector along ``dim`` to unit root-mean-square: ``x / sqrt(mean(x**2) + eps)``."""
    return x * torch.rsqrt(x.square().mean(dim=dim, keepdim=True) + eps)


class PixelNorm(nn.Module):
    """Module form of [`pixel_norm`][pixelfold.layers.pixel_norm] (normalizes along dim 1)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x, 1, self.eps)


class MappingNetwork(nn.Module):
    """Map latent codes ``z`` to intermediate latents ``w``: PixelNorm, then ``num_layers``
    equalized linear layers with bias + leaky ReLU and a learning-rate multiplier.

    The network keeps ``w_avg``, an exponential moving average of ``w`` updated when
    ``forward(..., update_w_avg=True)`` (the trainer does this), used for the truncation trick
    ``w_avg + psi * (w - w_avg)``.

    Class-conditional (``c_dim > 0``), it follows StyleGAN2-ADA: the label ``c`` (one-hot) is
    embedded by an equalized linear layer ``c_dim -> embed_dim`` (``embed``, learning-rate
    multiplier 1, no activation), the embedding and ``z`` are each pixel-normalized and
    concatenated, so the first layer reads ``z_dim + embed_dim`` features. ``z_dim = 0`` maps
    the label alone (the discriminator's label mapping). With ``c_dim = 0`` nothing of this
    exists: the parameters, their initialization and the outputs are those of the
    unconditional network.

    Args:
        z_dim: latent width.
        w_dim: output width.
        num_layers: number of linear layers (8 in StyleGAN2 / PixelFolder).
        hidden_dim: width of hidden layers (default ``w_dim``).
        lr_mul: learning-rate multiplier of every layer (0.01).
        w_avg_beta: decay of the ``w_avg`` moving average.
        normalize_z: apply pixel norm to ``z`` first.
        num_ws: default for ``forward(num_ws=...)``: broadcast ``w`` to ``(B, num_ws, w_dim)``
            (the number of layers of the synthesis network that take a style).
        c_dim: number of classes of the label input (0: unconditional).
        embed_dim: width of the label embedding (default ``w_dim``, as StyleGAN2-ADA).
        track_w_avg: keep the ``w_avg`` buffer (``False`` for a mapping that is never
            truncated, such as the discriminator's: then it has no buffer).
    """

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        num_layers: int = 8,
        *,
        hidden_dim: int | None = None,
        lr_mul: float = 0.01,
        w_avg_beta: float = 0.995,
        normalize_z: bool = True,
        num_ws: int | None = None,
        c_dim: int = 0,
        embed_dim: int | None = None,
        track_w_avg: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim!r}")
        if z_dim < 0 or (z_dim == 0 and c_dim == 0):
            raise ValueError(f"z_dim must be positive (or 0 with c_dim > 0), got {z_dim!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        if not 0.0 <= w_avg_beta < 1.0:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {w_avg_beta!r}")
        hidden_dim = w_dim if hidden_dim is None else hidden_dim
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if num_ws is not None and num_ws < 1:
            raise ValueError(f"num_ws must be >= 1, got {num_ws!r}")
        self.num_ws = num_ws
        self.c_dim = c_dim
        self.norm = PixelNorm() if normalize_z else nn.Identity()
        embed_dim = (w_dim if embed_dim is None else embed_dim) if c_dim else 0
        # built first (as StyleGAN2-ADA does), and only when conditional: an unconditional
        # network draws the same initial weights as before labels existed
        self.embed = EqualLinear(c_dim, embed_dim, device=device, dtype=dtype) if c_dim \
            else None
        widths = [z_dim + embed_dim] + [hidden_dim] * (num_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(
            EqualLinear(widths[i], widths[i + 1], lr_mul=lr_mul, activation="lrelu",
                        device=device, dtype=dtype)
            for i in range(num_layers)
        )
        self.w_avg: torch.Tensor | None
        if track_w_avg:
            self.register_buffer("w_avg", torch.zeros(w_dim, device=device, dtype=dtype))
        else:
            self.w_avg = None

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | int | None = None,
        *,
        num_ws: int | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """Map ``z`` ``(B, z_dim)`` (and the labels ``c``) to ``w``.

        Args:
            z: latent codes (``None`` when ``z_dim = 0``).
            c: class labels of a conditional network: integer classes ``(B,)`` (or an int
                for the whole batch) or one-hot / soft vectors ``(B, c_dim)``; ``None`` for an
                unconditional one (see [`label_vectors`][pixelfold.layers.label_vectors]).
            num_ws: if given (or set at construction), broadcast to ``(B, num_ws, w_dim)``;
                else return ``(B, w_dim)``. The broadcast is a view: ``.clone()`` it before
                writing into it in place (e.g. for style mixing).
            truncation_psi: 1 disables truncation; 0 returns ``w_avg``.
            truncation_cutoff: truncate only the first ``truncation_cutoff`` of the ``num_ws``
                latents (``None``: all).
            update_w_avg: update the moving average with this batch (training only; an
                empty batch leaves it as it is).

        Raises:
            InputError: ``z`` is not a floating-point tensor on the device of the weights, or
                has another dtype than them outside ``torch.autocast``.
            LabelError: ``c`` missing for a conditional network, given to an unconditional
                one, a class out of range or a wrong shape.
        """
        weight = self.layers[0].weight
        if self.z_dim:
            check_input(z, weight, "z", "the mapping network", var="mapping",
                        float_hint=f" (e.g. torch.randn(B, {self.z_dim}))")
            if z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"MappingNetwork expects z of shape (B, {self.z_dim}), "
                                 f"got {tuple(z.shape)}")
            batch = z.shape[0]
        elif isinstance(c, torch.Tensor):
            batch = c.shape[0]
        else:
            raise ValueError("a mapping network without z (z_dim 0) needs labels c as a tensor")
        labels = label_vectors(c, self.c_dim, batch, owner="the mapping network", like=weight)
        x = self._map(z, labels)
        if update_w_avg and x.shape[0] > 0:  # an empty batch has no mean
            if self.w_avg is None:
                raise ValueError("this mapping network does not track w_avg (track_w_avg=False)")
            self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg.float(),
                                                              self.w_avg_beta))
        num_ws = self.num_ws if num_ws is None else num_ws
        if num_ws is not None:
            x = x[:, None, :].expand(-1, num_ws, -1)
        if truncation_psi != 1.0:
            x = self.truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _map(self, z: torch.Tensor | None, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(z) if self.z_dim else None
        if self.embed is not None and labels is not None:
            y = pixel_norm(self.embed(labels))
            x = y if x is None else torch.cat([x, y], dim=1)
        assert x is not None
        for layer in self.layers:
            x = layer(x)
        return x

    def truncate(
        self, w: torch.Tensor, psi: float, cutoff: int | None = None
    ) -> torch.Tensor:
        """``w_avg + psi * (w - w_avg)``; with ``(B, N, w_dim)`` input and ``cutoff``, only the
        first ``cutoff`` latents are truncated."""
        if self.w_avg is None:
            raise ValueError("this mapping network has no w_avg (track_w_avg=False): it cannot "
                             "truncate")
        avg = self.w_avg.to(w.dtype)
        if cutoff is None or w.ndim == 2:
            return avg.lerp(w, psi)
        if not 0 <= cutoff <= w.shape[1]:
            raise ValueError(f"truncation_cutoff must be in [0, {w.shape[1]}], got {cutoff!r}")
        return torch.cat([avg.lerp(w[:, :cutoff], psi), w[:, cutoff:]], dim=1)

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 10_000, *, seed: int = 0,
                       batch_size: int = 1000) -> torch.Tensor:
        """Set ``w_avg`` to the mean ``w`` of ``num_samples`` random ``z`` (for models, such as
        converted checkpoints, that were not trained with a tracked average; a conditional
        network draws classes uniformly). Returns it."""
        if self.w_avg is None:
            raise ValueError("this mapping network has no w_avg (track_w_avg=False)")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = torch.randn(n, self.z_dim, generator=gen).to(self.w_avg.device)
            labels = None
            if self.c_dim:
                classes = torch.randint(self.c_dim, (n,), generator=gen)
                labels = torch.nn.functional.one_hot(classes, self.c_dim).to(self.w_avg)
            total += self._map(z.to(self.w_avg.dtype), labels).double().sum(0).cpu()
            done += n
        self.w_avg.copy_((total / num_samples).to(self.w_avg))
        return self.w_avg

    def extra_repr(self) -> str:
        cond = f", c_dim={self.c_dim}" if self.c_dim else ""
        return f"z_dim={self.z_dim}{cond}, w_dim={self.w_dim}, num_layers={self.num_layers}"
