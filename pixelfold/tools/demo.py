"""An interactive page for a generator: ``pixelfold demo MODEL`` (Gradio, the optional extra
``pixelfold[demo]``).

The page has a seed slider, a truncation slider and the noise mode for the main image;
per-stage style mixing with a second seed (the stages ticked take their styles from it); an
interpolation strip from the first seed to the second (in z with slerp, or in w with lerp);
and the first SeFa edit directions (see [Edit directions](../tools/edit.md)) with a strength
slider. Every control re-renders only the images it affects.

[`DemoRenderer`][pixelfold.tools.demo.DemoRenderer] makes the images (tensors to PIL, no
Gradio), [`build_demo`][pixelfold.tools.demo.build_demo] lays out the page and
[`launch_demo`][pixelfold.tools.demo.launch_demo] serves it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from .figures import image_grid, to_pil
from .images import check_finite_images, interpolation_frames, resolve_crossovers
from .latents import seed_latents

if TYPE_CHECKING:
    from ..models import Generator

__all__ = ["DEMO_INSTALL", "MAX_DEMO_SEED", "DemoRenderer", "build_demo", "edit_directions",
           "gradio_available", "launch_demo", "require_gradio"]

logger = logging.getLogger(__name__)

DEMO_INSTALL = 'pip install "pixelfold[demo]"'
"""How to install what the demo needs."""
MAX_DEMO_SEED = 100_000
"""The seed sliders' range is 0 to this (the number box beside a slider takes the same)."""
_DISPLAY = 256  # images are enlarged (nearest) to at least this side for the page
_STRIP_FRAME = 96  # side of each frame of the interpolation strip on the page


def gradio_available() -> bool:
    """Whether gradio is installed (without importing it, which takes seconds)."""
    return importlib.util.find_spec("gradio") is not None


def require_gradio() -> Any:
    """The ``gradio`` module.

    Raises:
        ModuleNotFoundError: gradio is not installed (the message says how to install it).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio
    except ImportError:
        raise ModuleNotFoundError(f"the demo needs gradio, which is not installed: "
                                  f"{DEMO_INSTALL}") from None
    return gradio


def edit_directions(G: Generator, k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` SeFa edit directions of ``G`` ``(k, w_dim)`` and their eigenvalues
    ``(k,)``, from [`sefa_directions`][pixelfold.tools.edit.sefa_directions] over all layers."""
    from .edit import sefa_directions

    directions, values = sefa_directions(G)
    return directions[:k], values[:k]


def _enlarge(image: Image.Image, side: int, resolution: int) -> Image.Image:
    """``image`` (of frames ``resolution`` pixels high) enlarged by the whole factor that
    makes its frames at least ``side`` pixels (nearest: every pixel stays a square)."""
    factor = max(1, -(-side // resolution))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


class DemoRenderer:
    """The images of the demo page, as PIL images enlarged (nearest) for display.

    Args:
        G: the generator (in eval mode, on its device).
        directions: edit directions ``(k, w_dim)`` (``None``: no edits).
        display: images are enlarged by a whole factor to at least this side (the strip's
            frames to 96 pixels).
    """

    def __init__(self, G: Generator, *, directions: torch.Tensor | None = None,
                 display: int = _DISPLAY) -> None:
        self.G = G.eval()
        self.display = display
        self.directions = None if directions is None else directions.to(G.device, torch.float32)
        self.stage_labels = [f"stage {i} (ws {r.start}-{r.stop - 1})" for i, r in
                             enumerate(G.synthesis.style_ranges())]

    def _dtype(self) -> torch.dtype:
        return next(self.G.parameters()).dtype

    def _ws(self, seed: int, truncation_psi: float) -> torch.Tensor:
        z = seed_latents([int(seed)], self.G.z_dim).to(self.G.device, self._dtype())
        return self.G.mapping(z, truncation_psi=float(truncation_psi))

    def _image(self, ws: torch.Tensor, noise_mode: str, side: int | None = None) -> Image.Image:
        images = self.G.synthesis(ws, noise_mode=noise_mode)
        check_finite_images(self.G, images, None)
        grid = image_grid(images.float().clamp(-1, 1).cpu(), ncols=images.shape[0]) \
            if images.shape[0] > 1 else to_pil(images[0].float().clamp(-1, 1).cpu())
        return _enlarge(grid, side or self.display, images.shape[-2])

    @torch.inference_mode()
    def sample(self, seed: int, truncation_psi: float = 1.0,
               noise_mode: str = "const") -> Image.Image:
        """The image of ``seed``."""
        return self._image(self._ws(seed, truncation_psi), noise_mode)

    @torch.inference_mode()
    def mix(self, seed: int, seed_b: int, stages: Sequence[str], truncation_psi: float = 1.0,
            noise_mode: str = "const") -> Image.Image:
        """``seed``'s image with the styles of the ticked ``stages`` (labels of
        ``stage_labels``) taken from ``seed_b``: the second seed's image, then the mix."""
        ws_a = self._ws(seed, truncation_psi)
        ws_b = self._ws(seed_b, truncation_psi)
        chosen = [self.stage_labels.index(s) for s in stages]
        mixed = ws_a.clone()
        if chosen:
            for _, idx in resolve_crossovers(self.G, [f"stage:{i}" for i in chosen]):
                mixed[:, idx.start:idx.stop] = ws_b[:, idx.start:idx.stop]
        return self._image(torch.cat([ws_b, mixed]), noise_mode)

    @torch.inference_mode()
    def strip(self, seed: int, seed_b: int, steps: int = 7, space: str = "z",
              truncation_psi: float = 1.0, noise_mode: str = "const") -> Image.Image:
        """``steps`` frames from ``seed`` to ``seed_b`` in one row (z: slerp, w: lerp)."""
        frames = interpolation_frames(self.G, [int(seed), int(seed_b)], int(steps),
                                      space=space, truncation_psi=float(truncation_psi),
                                      noise_mode=noise_mode, batch_size=int(steps))
        return _enlarge(image_grid(frames, ncols=frames.shape[0]), _STRIP_FRAME,
                        frames.shape[-2])

    @torch.inference_mode()
    def edit(self, seed: int, direction: int, strength: float, truncation_psi: float = 1.0,
             noise_mode: str = "const") -> Image.Image | None:
        """``seed``'s image moved by ``strength`` along edit direction ``direction`` (every
        layer's w); ``None`` without directions."""
        if self.directions is None:
            return None
        ws = self._ws(seed, truncation_psi)
        step = self.directions[int(direction)].to(ws.dtype) * float(strength)
        return self._image(ws + step, noise_mode)


def _title(name: str, G: Generator, preset: bool) -> str:
    spec_name = getattr(G.spec, "name", None) or type(G).__name__
    side = G.resolution
    size = "x".join(map(str, side)) if isinstance(side, (tuple, list)) else f"{side}x{side}"
    text = (f"## pixelfold demo: {name}\n\n`{spec_name}`: {size} images, z_dim {G.z_dim}, "
            f"{G.num_ws} style vectors (ws) in {len(G.synthesis.stages)} stages.")
    if preset:
        text += (" **A preset name: randomly initialized, untrained weights** (give a "
                 "save_pretrained folder or a Hub id for a trained model).")
    return text


def build_demo(G: Generator, *, name: str = "generator", preset: bool = False,
               directions: torch.Tensor | None | str = "auto") -> Any:
    """The demo page of ``G`` as a ``gradio.Blocks`` (not launched).

    Args:
        G: the generator.
        name: what the title calls it (the model argument).
        preset: ``G`` is a randomly initialized preset (the page says so).
        directions: edit directions ``(k, w_dim)``; ``"auto"``: from
            [`edit_directions`][pixelfold.tools.demo.edit_directions]; ``None``: no edit
            control.

    Raises:
        ModuleNotFoundError: gradio is not installed.
    """
    gr = require_gradio()
    values = None
    if isinstance(directions, str):
        if directions != "auto":
            raise ValueError(f"directions must be a tensor, None or 'auto', got {directions!r}")
        directions, values = edit_directions(G)
    renderer = DemoRenderer(G, directions=directions)
    seed_range = dict(minimum=0, maximum=MAX_DEMO_SEED, step=1)
    common = dict(show_progress="hidden", trigger_mode="always_last")

    def image(label: str, elem_id: str) -> Any:
        return gr.Image(label=label, elem_id=elem_id, type="pil", format="png",
                        interactive=False, buttons=["download"])

    with gr.Blocks(title=f"pixelfold demo: {name}") as demo:
        gr.Markdown(_title(name, G, preset))
        with gr.Row():
            with gr.Column(scale=1):
                seed = gr.Slider(label="seed", value=0, elem_id="seed", **seed_range)
                psi = gr.Slider(label="truncation psi", minimum=-1.0, maximum=2.0, step=0.05,
                                value=1.0, elem_id="psi")
                noise = gr.Radio(["const", "random", "none"], value="const", label="noise",
                                 elem_id="noise")
            with gr.Column(scale=1):
                main = image("sample", "sample")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("### Style mixing\nThe ticked stages take their styles from the "
                            "second seed (left: its image; right: the mix).")
                seed_b = gr.Slider(label="second seed", value=1, elem_id="seed-b",
                                   **seed_range)
                stages = gr.CheckboxGroup(renderer.stage_labels,
                                          value=renderer.stage_labels[:1],
                                          label="stages from the second seed",
                                          elem_id="stages")
            with gr.Column(scale=1):
                mixed = image("second seed | mix", "mix")
        gr.Markdown("### Interpolation from the first seed to the second")
        with gr.Row():
            steps = gr.Slider(label="frames", minimum=3, maximum=12, step=1, value=7,
                              elem_id="steps")
            space = gr.Radio(["z", "w"], value="z", label="space (z: slerp, w: lerp)",
                             elem_id="space")
        strip = image("interpolation", "strip")
        edit_inputs: list[Any] = []
        edited = None
        if renderer.directions is not None:
            labels = [f"direction {i}" + (f" ({float(values[i]):.3g})" if values is not None
                                          else "")
                      for i in range(renderer.directions.shape[0])]
            gr.Markdown("### Edit directions (SeFa: pixelfold.tools.edit)")
            with gr.Row():
                with gr.Column(scale=1):
                    direction = gr.Dropdown(list(zip(labels, range(len(labels)), strict=True)),
                                            value=0, label="direction", elem_id="direction")
                    strength = gr.Slider(label="strength", minimum=-10.0, maximum=10.0,
                                         step=0.5, value=3.0, elem_id="strength")
                    edit_inputs = [direction, strength]
                with gr.Column(scale=1):
                    edited = image("edited", "edited")

        look = [psi, noise]
        panels: list[tuple[Any, list[Any], Any]] = [
            (lambda s, p, n: renderer.sample(s, p, n), [seed, *look], main),
            (lambda s, b, st, p, n: renderer.mix(s, b, st, p, n),
             [seed, seed_b, stages, *look], mixed),
            (lambda s, b, k, sp, p, n: renderer.strip(s, b, k, sp, p, n),
             [seed, seed_b, steps, space, *look], strip),
        ]
        if edited is not None:
            panels.append((lambda s, d, a, p, n: renderer.edit(s, d, a, p, n),
                           [seed, *edit_inputs, *look], edited))
        for fn, inputs, output in panels:
            for control in inputs:
                control.change(fn, inputs, output, **common)
            demo.load(fn, inputs, output, **common)
    return demo


def launch_demo(model: Any, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
                device: str | torch.device | None = None, block: bool = True,
                directions: torch.Tensor | None | str = "auto", name: str | None = None
                ) -> Any:
    """Serve the demo of ``model`` on ``http://host:port``.

    Args:
        model: a Generator, a preset name, a ``save_pretrained`` folder or a Hub id.
        host: the address to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: every
            interface).
        port: the port (``0``: a free one).
        share: also open a public ``gradio.live`` link (needs internet).
        device: where the generator runs (``None``: CUDA when available).
        block: wait until Ctrl-C (``False``: return at once, the server running in the
            background; ``demo.close()`` stops it).
        directions: as in [`build_demo`][pixelfold.tools.demo.build_demo].
        name: what the page's title calls the model (``None``: ``model`` itself, or the
            class name of a module); a preset name makes the page say the weights are
            untrained.

    Returns:
        The launched ``gradio.Blocks`` (its ``local_url`` is the page).

    Raises:
        ModuleNotFoundError: gradio is not installed.
        FileNotFoundError: no such model.
        OSError: the port is taken.
    """
    from torch import nn

    from ..models import load_generator, presets
    from .device import resolve_device

    require_gradio()
    if isinstance(model, nn.Module):
        G = model.eval()
        name = name or type(model).__name__
    else:
        G = load_generator(model, device=resolve_device(device))
        name = name or str(model)
    preset = name in presets.names()
    demo = build_demo(G, name=name, preset=preset, directions=directions)
    if port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=int(port), share=share,
                prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False,
                inbrowser=False)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo
