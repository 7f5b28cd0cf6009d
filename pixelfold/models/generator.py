"""The multi-stage pixel-regression generator, assembled from a
[`GeneratorSpec`][pixelfold.models.GeneratorSpec]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..layers import (
    BiasLeakyReLU,
    CoordinateEmbedding,
    CoordinateWindow,
    EqualConv2d,
    FourierFeatures,
    MappingNetwork,
    NoiseInjection,
    NoiseMode,
    PixelFold,
    PixelUnfold,
    StyledConv2d,
    ToRGB,
    check_input,
    check_noise_mode,
    coordinate_grid,
)
from ..layers.cache import InferenceCache
from ..utils.errors import ConfigError
from ..utils.memory import check_fits, generator_values
from .pretrained import PretrainedMixin, apply_memory_format
from .spec import GeneratorSpec, StageSpec

__all__ = ["Generator", "PointwiseConv", "StageBlock", "SynthesisNetwork", "SynthesisStage",
           "check_model_fits", "style_mix"]


class PointwiseConv(nn.Module):
    """Equalized 1x1 convolution without bias, then bias + leaky ReLU (style-free).

    Args:
        in_channels: input width.
        out_channels: output width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_channels, out_channels, 1, bias=False)
        self.act = BiasLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """``act(conv(cat([x, *more], dim=1)))`` without building the concatenation: each part
        may have a batch of 1 (a style-free input shared by the batch, convolved once and
        broadcast). See [`EqualConv2d.forward`][pixelfold.layers.equalized.EqualConv2d.forward]."""
        return self.conv(x, *more, activation=self.act)


class StageBlock(nn.Module):
    """ModConv -> growth -> ModConv -> ToRGB: one resolution step of a stage.

    Args:
        in_channels: input width.
        out_channels: output width.
        spec: the stage this block belongs to (kernel size, growth, noise).
        style_dim: width of ``w``.
        resolution: ``(H, W)`` of the block input.
        rgb_upsample: whether the ToRGB upsamples the running RGB by 2.
        blur_kernel: FIR taps.
        channel_order: channel layout of unfolding.
        mid_channels: width after the growth (the input of the second ModConv); default: the
            growth's own (``out_channels / reduce_factor²`` after an unfold, else
            ``out_channels``). The first ModConv outputs it (times ``reduce_factor²`` before an
            unfold).
        image_channels: channels of the ToRGB output (1, 3 or 4).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: StageSpec,
        style_dim: int,
        resolution: tuple[int, int],
        rgb_upsample: bool,
        blur_kernel: tuple[int, ...],
        channel_order: str,
        mid_channels: int | None = None,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        h, w = resolution
        g = spec.grow_factor
        out_res = (h * g, w * g)
        k = spec.kernel_size
        f2 = spec.reduce_factor**2
        if mid_channels is None:
            mid_channels = out_channels // f2 if spec.grow == "unfold" else out_channels
        mid = mid_channels
        self.grow: nn.Module
        if spec.grow == "deconv":
            self.conv0 = StyledConv2d(in_channels, mid, k, style_dim, up=2,
                                      noise=spec.noise, resolution=out_res)
            self.grow = nn.Identity()
        else:
            first = mid * f2 if spec.grow == "unfold" else mid
            self.conv0 = StyledConv2d(in_channels, first, k, style_dim,
                                      noise=spec.noise, resolution=resolution)
            if spec.grow == "unfold":
                self.grow = PixelUnfold(spec.reduce_factor,
                                        channel_order=channel_order)  # type: ignore[arg-type]
            elif spec.grow == "nearest":
                self.grow = nn.Upsample(scale_factor=2, mode="nearest")
            else:
                self.grow = nn.Identity()
        self.conv1 = StyledConv2d(mid, out_channels, k, style_dim, noise=spec.noise,
                                  resolution=out_res)
        self.to_rgb = ToRGB(out_channels, style_dim, out_channels=image_channels,
                            upsample=rgb_upsample, blur_kernel=blur_kernel)
        self.output_resolution = out_res

    def forward(
        self,
        x: torch.Tensor,
        ws: torch.Tensor,
        rgb: torch.Tensor | None,
        noise_mode: NoiseMode,
        noise: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``ws`` holds the three styles this block reads, ``(B, 3, w_dim)``: conv0, conv1 and
        ToRGB; the ToRGB's is also the next block's conv0 style (blocks advance by two).
        ``noise``: explicit noise images of conv0 and conv1 (``None``: ``noise_mode``)."""
        x = self.conv0(x, ws[:, 0], noise_mode, noise[0])
        x = self.grow(x)
        x = self.conv1(x, ws[:, 1], noise_mode, noise[1])
        rgb = self.to_rgb(x, ws[:, 2], rgb)
        return x, rgb


class SynthesisStage(nn.Module):
    """One stage: positional encoding -> input layers -> reduction -> merge -> blocks.

    Args:
        spec: the whole generator spec.
        index: which stage of ``spec`` to build.
        w_offset: index in ``ws`` of this stage's first style.
        rgb_resolution: resolution of the running RGB entering the stage (``None`` for the
            first stage).
    """

    def __init__(self, spec: GeneratorSpec, index: int, w_offset: int,
                 rgb_resolution: tuple[int, int] | None) -> None:
        super().__init__()
        st = spec.stages[index]
        self.spec = st
        self.index = index
        self.w_offset = w_offset
        self.style_free_input = st.input_layer == "conv"
        # the style-free stage input, computed once per weight update without autograd
        self._input_cache = InferenceCache()
        InferenceCache.attach(self, "_input_cache")
        h, w = st.resolution
        self.register_buffer("coords", coordinate_grid(h, w), persistent=False)
        self.fourier = (FourierFeatures(st.fourier_channels, learned=st.fourier_learned)
                        if st.fourier_channels else None)
        self.coord_embedding = (CoordinateEmbedding(st.coord_embedding_channels, h, w)
                                if st.coord_embedding_channels else None)

        layers: list[nn.Module] = []
        cin = st.positional_channels
        for cout in st.input_channels:
            if st.input_layer == "conv":
                layers.append(PointwiseConv(cin, cout))
            else:
                layers.append(StyledConv2d(cin, cout, 1, spec.w_dim, noise=st.noise,
                                           resolution=st.resolution))
            cin = cout
        self.input_layers = nn.ModuleList(layers)

        self.reduce: nn.Module
        if st.reduce_steps == 0:
            self.reduce = nn.Identity()
        elif st.reduce == "fold":
            self.reduce = nn.Sequential(*[
                PixelFold(st.reduce_factor, channel_order=spec.channel_order)  # type: ignore[arg-type]
                for _ in range(st.reduce_steps)
            ])
        else:
            self.reduce = nn.AvgPool2d(st.reduction)

        block_in = spec.block_input_channels(index)
        self.merge = None
        if index > 0 and st.merge == "concat":
            self.merge = PointwiseConv(st.reduced_channels + block_in, block_in)

        blocks = []
        res = st.reduced_resolution
        cin = block_in
        for cout, mid in zip(st.block_channels, st.block_mid_channels, strict=True):
            out_res = (res[0] * st.grow_factor, res[1] * st.grow_factor)
            upsample = rgb_resolution is not None and out_res != rgb_resolution
            blocks.append(StageBlock(cin, cout, st, spec.w_dim, res, upsample, spec.blur_kernel,
                                     spec.channel_order, mid_channels=mid,
                                     image_channels=spec.image_channels))
            rgb_resolution = out_res
            res = out_res
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = st.num_modconvs

    def positional_input(self, batch_size: int,
                         window: CoordinateWindow | None = None) -> torch.Tensor:
        """The positional encoding (Fourier features and coordinate embedding, concatenated)
        ``(batch_size, positional_channels, H, W)`` of the coordinate ``window`` (default:
        the training frame), expanded over the batch."""
        feats = []
        if self.fourier is not None:
            coords = self.coords if window is None else window.grid(
                *self.coords.shape[2:], device=self.coords.device, dtype=self.coords.dtype)
            feats.append(self.fourier(coords))
        if self.coord_embedding is not None:
            feats.append(self.coord_embedding(1, window))
        x = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        return x.expand(batch_size, -1, -1, -1)

    def stage_input(self, ws: torch.Tensor, noise_mode: NoiseMode = "random",
                    noise: Mapping[str, torch.Tensor] | None = None,
                    window: CoordinateWindow | None = None) -> torch.Tensor:
        """Positional encoding of ``window`` -> input layers -> reduction: the input of the
        merge, at the reduced resolution, in the dtype of ``ws``. A style-free input (1x1
        convolutions, PixelFolder) does not depend on ``ws``: it has a batch of 1, and without
        autograd (``torch.no_grad``, ``torch.inference_mode``) and outside ``torch.compile``
        it is computed once per window and kept until a tensor it depends on changes (an
        optimizer step, ``load_state_dict``, a move to another device, dtype or layout) or
        another window is asked for."""
        if window is not None and window.is_identity:
            window = None
        if self.style_free_input:
            return self._input_cache.get(lambda: self._style_free_input(window),
                                         self._style_free_sources, key=window).to(ws.dtype)
        noise = noise or {}
        x = self.positional_input(ws.shape[0], window).to(ws.dtype)
        for i, layer in enumerate(self.input_layers):
            x = layer(x, ws[:, self.w_offset + i], noise_mode, noise.get(f"input_layers.{i}.noise"))
        return self.reduce(x)

    def _style_free_input(self, window: CoordinateWindow | None = None) -> torch.Tensor:
        x = self.positional_input(1, window)
        for layer in self.input_layers:
            x = layer(x)
        return self.reduce(x)

    def _style_free_sources(self) -> list[torch.Tensor]:
        """Every tensor the style-free input depends on."""
        modules = [m for m in (self.fourier, self.coord_embedding, self.input_layers)
                   if m is not None]
        return [self.coords] + [t for m in modules for t in (*m.parameters(), *m.buffers())]

    def _apply(self, fn: Any, recurse: bool = True) -> SynthesisStage:
        self._input_cache.clear()  # new tensors (device, dtype, layout)
        return super()._apply(fn, recurse)

    def forward(
        self,
        prev: torch.Tensor | None,
        ws: torch.Tensor,
        rgb: torch.Tensor | None,
        noise_mode: NoiseMode = "random",
        noise: Mapping[str, torch.Tensor] | None = None,
        window: CoordinateWindow | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the stage. ``ws`` is the full ``(B, num_ws, w_dim)``; ``prev`` the previous
        stage's output features; ``rgb`` the running RGB; ``noise`` explicit noise images by
        module name within the stage (``"blocks.0.conv0.noise"``; the others follow
        ``noise_mode``); ``window`` the coordinate window of the positional encoding.
        Returns ``(features, rgb)``."""
        noise = noise or {}
        batch = ws.shape[0]
        # a style-free input is the same for every sample: it keeps its batch of 1 as long as
        # possible (the merge convolves it once)
        x = self.stage_input(ws, noise_mode, noise, window)
        k = self.w_offset + (0 if self.style_free_input else len(self.input_layers))
        if prev is not None and self.spec.merge == "concat":
            # merge(cat([x, prev])), the concatenation never built
            x = self.merge(x, prev)  # type: ignore[misc]
        elif prev is not None and self.spec.merge == "add":
            x = x + prev
        else:
            x = x.expand(batch, -1, -1, -1)
        for j, block in enumerate(self.blocks):
            x, rgb = block(x, ws[:, k:k + 3], rgb, noise_mode,
                           (noise.get(f"blocks.{j}.conv0.noise"),
                            noise.get(f"blocks.{j}.conv1.noise")))
            k += 2
        return x, rgb  # type: ignore[return-value]


class SynthesisNetwork(nn.Module):
    """All stages: ``ws (B, num_ws, w_dim) -> image (B, image_channels, H, W)``.

    Args:
        spec: the generator spec.
    """

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.num_ws = spec.num_ws
        self.w_dim = spec.w_dim
        self.resolution = spec.resolution
        self.image_channels = spec.image_channels
        stages = []
        offset = 0
        rgb_res: tuple[int, int] | None = None
        for i in range(len(spec.stages)):
            stage = SynthesisStage(spec, i, offset, rgb_res)
            stages.append(stage)
            offset += stage.num_ws
            rgb_res = stage.blocks[-1].output_resolution
        self.stages = nn.ModuleList(stages)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "random",
        return_stages: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
        window: CoordinateWindow | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Synthesize images.

        Args:
            ws: per-layer styles ``(B, num_ws, w_dim)``.
            noise_mode: ``"random"`` (fresh noise), ``"const"`` (the stored noise images) or
                ``"none"``.
            return_stages: also return the running RGB at the end of every stage.
            noise: explicit noise images by name (the keys of
                [`noise_layers()`][pixelfold.models.SynthesisNetwork.noise_layers]), each
                ``(B, 1, H, W)`` or ``(1, 1, H, W)`` at that layer's resolution, used instead
                of ``noise_mode`` for those layers (the others follow ``noise_mode``).
                Gradients flow into them: the projector optimizes them this way.
            window: the part of the coordinate plane to render, a
                [`CoordinateWindow`][pixelfold.layers.CoordinateWindow] (shift in frames, zoom)
                taken alike by every stage's positional encoding; ``None`` (or the identity
                window): the training frame, bit for bit. The image keeps its size; noise
                images stay tied to its pixels, not to the coordinates (``"const"`` noise
                does not move with the window). See [Coordinate
                rendering](../tools/coordinates.md) for what trained models give.

        Returns:
            images ``(B, image_channels, H, W)``, or ``(images, [rgb of stage 0, stage 1,
            ...])``. An empty batch (``B = 0``) gives empty images.

        Raises:
            InputError: ``ws`` is not a floating-point tensor on the device of the weights, or
                has another dtype outside ``torch.autocast``.
            ValueError: ``ws`` has the wrong shape, or ``noise`` names a layer that does not
                exist or holds an image of the wrong shape.
            TypeError: ``window`` is not a ``CoordinateWindow``.
        """
        first = self.stages[0].blocks[0].conv0.conv.weight
        check_input(ws, first, "ws", "the synthesis network", var="G")
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws of shape (B, {self.num_ws}, {self.w_dim}), "
                             f"got {tuple(ws.shape)}")
        if window is not None and not isinstance(window, CoordinateWindow):
            raise TypeError(f"window must be a CoordinateWindow (pixelfold.layers) or None, got "
                            f"{type(window).__name__}")
        per_stage = self._split_noise(noise, ws) if noise else {}
        if ws.shape[0] == 0:
            return self._empty(ws, return_stages)
        x: torch.Tensor | None = None
        rgb: torch.Tensor | None = None
        stage_rgbs = []
        for i, stage in enumerate(self.stages):
            x, rgb = stage(x, ws, rgb, noise_mode, per_stage.get(i), window)
            stage_rgbs.append(rgb)
        assert rgb is not None
        if return_stages:
            return rgb, stage_rgbs
        return rgb

    def _empty(self, ws: torch.Tensor, return_stages: bool
               ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The output of an empty batch: ``(0, image_channels, H, W)`` images (and stage
        outputs)."""
        rgbs = [ws.new_zeros((0, self.image_channels, *stage.blocks[-1].output_resolution))
                for stage in self.stages]
        return (rgbs[-1], rgbs) if return_stages else rgbs[-1]

    def noise_layers(self) -> dict[str, NoiseInjection]:
        """Every noise input by name (its module path in the synthesis network, e.g.
        ``"stages.0.blocks.0.conv0.noise"``), in the order the forward pass reads them: the
        names that ``forward(..., noise=...)`` takes. Each layer's ``noise_const`` buffer
        ``(1, 1, H, W)`` gives its resolution."""
        return {name: m for name, m in self.named_modules() if isinstance(m, NoiseInjection)}

    def _split_noise(self, noise: Mapping[str, torch.Tensor], ws: torch.Tensor
                     ) -> dict[int, dict[str, torch.Tensor]]:
        """Check explicit noise images against the layers and group them by stage (names
        relative to the stage)."""
        layers = self.noise_layers()
        batch = ws.shape[0]
        out: dict[int, dict[str, torch.Tensor]] = {}
        for name, image in noise.items():
            layer = layers.get(name)
            if layer is None:
                known = ", ".join(list(layers)[:3])
                raise ValueError(f"noise {name!r} is not a noise layer of this synthesis "
                                 f"network ({len(layers)} layers: {known}, ...; see "
                                 f"noise_layers())")
            if not isinstance(image, torch.Tensor) or not image.is_floating_point():
                got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"noise {name!r} must be a floating-point tensor, got {got}")
            size = None if layer.noise_const is None else tuple(layer.noise_const.shape[2:])
            if image.ndim != 4 or image.shape[1] != 1 or image.shape[0] not in (1, batch) \
                    or (size is not None and tuple(image.shape[2:]) != size):
                want = f"({batch} or 1, 1, {size[0]}, {size[1]})" if size else "(B, 1, H, W)"
                raise ValueError(f"noise {name!r} must have shape {want}, got "
                                 f"{tuple(image.shape)}")
            if image.device != ws.device:
                raise ValueError(f"noise {name!r} is on {image.device}, the styles on "
                                 f"{ws.device}")
            _, stage, rest = name.split(".", 2)
            out.setdefault(int(stage), {})[rest] = image
        return out

    def style_ranges(self) -> list[range]:
        """For each stage, the indices of ``ws`` it reads (its last ToRGB reads the next
        stage's first index): useful for stage-wise style mixing."""
        return [range(s.w_offset, s.w_offset + s.num_ws + 1) for s in self.stages]


class Generator(PretrainedMixin, nn.Module):
    """Multi-stage pixel-regression generator built from a
    [`GeneratorSpec`][pixelfold.models.GeneratorSpec].

    NVlabs-style parts: ``G.mapping(z) -> ws``, ``G.synthesis(ws) -> image`` and ``G(z)``.
    A class-conditional generator (``spec.c_dim > 0``) takes the labels too:
    ``G.mapping(z, c)``, ``G(z, c)``, with ``c`` integer classes ``(B,)`` or one-hot / soft
    vectors ``(B, c_dim)`` (see [Conditional](../training/conditional.md)).

    Args:
        spec: the architecture, a [`GeneratorSpec`][pixelfold.models.GeneratorSpec] (or its
            dict form).
        memory_format: layout of the convolution weights, which the activations follow.
            Channels-last by default: it is the fast layout of oneDNN on CPU (25-60% faster
            3x3 convolutions at these shapes) and of tensor cores on GPU.
            ``torch.contiguous_format`` gives a plain NCHW model, as does
            ``G.to(memory_format=torch.contiguous_format)`` later; ``None`` leaves the layout
            as the layers create it. Saved weights are always stored contiguous.

    Raises:
        ConfigError: ``spec`` is not a valid spec.
        MemoryLimitError: the weights and buffers of ``spec`` need more memory than the
            default device (where they are created) has available; the size is computed from
            the spec before anything is allocated.

    Example:
        >>> G = Generator.from_preset("pixelfolder-tiny-32")
        >>> G(torch.randn(2, G.z_dim)).shape
        torch.Size([2, 3, 32, 32])
    """

    spec_class = GeneratorSpec

    def __init__(self, spec: GeneratorSpec | dict, *,
                 memory_format: torch.memory_format | None = torch.channels_last) -> None:
        super().__init__()
        if isinstance(spec, dict):
            spec = GeneratorSpec.from_dict(spec)
        if not isinstance(spec, GeneratorSpec):
            raise ConfigError(f"Generator needs a GeneratorSpec, got {type(spec).__name__}")
        check_model_fits("generator", spec, generator_values(spec))
        self.spec = spec
        self.z_dim = spec.z_dim
        self.w_dim = spec.w_dim
        self.num_ws = spec.num_ws
        self.resolution = spec.resolution
        #: channels of the images: 1 (grayscale), 3 (RGB) or 4 (RGBA)
        self.image_channels = spec.image_channels
        self.c_dim = spec.c_dim
        self.mapping = MappingNetwork(spec.z_dim, spec.w_dim, spec.mapping_layers,
                                      lr_mul=spec.mapping_lr_mul, w_avg_beta=spec.w_avg_beta,
                                      num_ws=spec.num_ws, c_dim=spec.c_dim)
        self.synthesis = SynthesisNetwork(spec)
        apply_memory_format(self, memory_format)

    @classmethod
    def from_preset(cls, name: str, *,
                    memory_format: torch.memory_format | None = torch.channels_last
                    ) -> Generator:
        """Build a freshly initialized generator from a named preset
        (see [`presets.names()`][pixelfold.models.presets.names]); ``memory_format`` as in
        the constructor."""
        from . import presets

        return cls(presets.get(name), memory_format=memory_format)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | int | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: NoiseMode = "random",
        return_stages: bool = False,
        update_w_avg: bool = False,
        window: CoordinateWindow | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``synthesis(mapping(z, c, ...), ...)``.

        Args:
            z: latents ``(B, z_dim)``.
            c: class labels of a conditional generator: integer classes ``(B,)`` (or one int
                for the whole batch) or one-hot / soft vectors ``(B, c_dim)``; ``None`` for an
                unconditional one. [`class_index`][pixelfold.models.Generator.class_index]
                turns a class name into its index.
            truncation_psi: truncation strength (1: none).
            truncation_cutoff: truncate only the first ``truncation_cutoff`` styles.
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            return_stages: also return every stage's RGB.
            update_w_avg: update the tracked average ``w`` (training).
            window: the coordinate window to render (see
                [`SynthesisNetwork.forward`][pixelfold.models.SynthesisNetwork.forward]).

        Returns:
            images ``(B, image_channels, H, W)`` (or with ``return_stages``, ``(images, stage
            RGBs)``); an empty batch gives empty images.

        Raises:
            InputError: ``z`` is not a floating-point tensor on the device of the weights, or
                has another dtype than them outside ``torch.autocast`` (the message says how
                to convert one of them).
            ValueError: ``z`` is not ``(B, z_dim)``.
            LabelError: ``c`` missing for a conditional generator, given to an unconditional
                one, a class out of range or a wrong shape (the message names the value).
        """
        check_input(z, self.mapping.w_avg, "z", "the generator", var="G",
                    float_hint=f" (e.g. torch.randn(B, {self.z_dim}))")
        ws = self.mapping(z, c, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg)
        return self.synthesis(ws, noise_mode=noise_mode, return_stages=return_stages,
                              window=window)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each class: the spec's ``class_names``, else the indices as strings
        (empty for an unconditional generator)."""
        return self.spec.class_names or tuple(str(i) for i in range(self.c_dim))

    def class_index(self, which: int | str) -> int:
        """The index of a class given by index (an int or a string of digits) or by name.

        A string is first looked up among the class names, then read as an index, so a
        class named ``"3"`` is found by name.

        Raises:
            LabelError: the generator is unconditional, or no class is called or numbered
                ``which`` (the message lists the classes).
        """
        from ..layers import LabelError

        if not self.c_dim:
            raise LabelError(f"the generator is unconditional (c_dim 0): it has no class "
                             f"{which!r}")
        names = self.class_names
        if isinstance(which, str):
            text = which.strip()
            if text in names:
                return names.index(text)
            if not text.lstrip("-").isdigit():
                raise LabelError(f"no class is called {which!r}; the classes are "
                                 f"{_list_classes(names)}")
            which = int(text)
        if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which < self.c_dim:
            raise LabelError(f"class {which!r} is out of range: the generator has {self.c_dim} "
                             f"classes (0 to {self.c_dim - 1}: {_list_classes(names)})")
        return which

    def extra_repr(self) -> str:
        cond = f", c_dim={self.c_dim}" if self.c_dim else ""
        return (f"name={self.spec.name!r}, resolution={self.resolution}, "
                f"num_ws={self.num_ws}{cond}")


def _list_classes(names: Sequence[str], limit: int = 12) -> str:
    """``0: cat, 1: dog, ...`` (the first ``limit``)."""
    shown = ", ".join(f"{i}: {n}" if n != str(i) else n for i, n in enumerate(names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_model_fits(kind: str, spec: object, values: int) -> None:
    """Refuse to build a model whose ``values`` (parameters and buffers, computed from
    ``spec``) cannot fit in the memory of the default device, before allocating any of it.
    Nothing is checked on the ``meta`` device (where nothing is allocated).

    Raises:
        MemoryLimitError: with the estimate and the memory available.
    """
    device = torch.get_default_device()
    if device.type == "meta":
        return
    nbytes = values * torch.get_default_dtype().itemsize
    name = getattr(spec, "name", None)
    check_fits(nbytes, f"the {kind}{f' {name!r}' if name else ''} ({values:,d} weight and "
               f"buffer values)", device=device,
               hint="make the spec smaller (channels, resolution, z_dim/w_dim)")


def style_mix(ws_a: torch.Tensor, ws_b: torch.Tensor, crossover: int | range) -> torch.Tensor:
    """Mix two batches of styles ``(B, num_ws, w_dim)``.

    Args:
        ws_a: the styles kept outside the crossover.
        ws_b: the styles taken inside it.
        crossover: an int ``c`` takes ``ws_b[:, c:]`` (StyleGAN's mixing at a crossover
            point); a ``range`` takes exactly those indices (stage-wise mixing with
            [`SynthesisNetwork.style_ranges`][pixelfold.models.SynthesisNetwork.style_ranges]).
    """
    if ws_a.shape != ws_b.shape or ws_a.ndim != 3:
        raise ValueError(f"style_mix needs two (B, num_ws, w_dim) tensors of one shape, got "
                         f"{tuple(ws_a.shape)} and {tuple(ws_b.shape)}")
    n = ws_a.shape[1]
    idx = range(crossover, n) if isinstance(crossover, int) else crossover
    if len(idx) and (idx.start < 0 or idx.stop > n):
        raise ValueError(f"crossover {crossover!r} is outside [0, {n}]")
    mask = torch.zeros(n, dtype=torch.bool, device=ws_a.device)
    mask[list(idx)] = True
    return torch.where(mask[None, :, None], ws_b, ws_a)
