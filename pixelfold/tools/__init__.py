"""Image and profiling tools behind the ``pixelfold`` command line, usable from Python.

``from pixelfold.tools import generate_images, image_grid, save_image, profile_generator``.

- [`latents`][pixelfold.tools.latents]: seed lists, seeded latents, lerp / slerp.
- [`images`][pixelfold.tools.images]: samples, style mixing, interpolation, per-stage outputs
  (tensors in ``[-1, 1]``).
- [`figures`][pixelfold.tools.figures]: grids, labeled figures, GIF / MP4, atomic writes.
- [`profile`][pixelfold.tools.profile]: parameters, GMACs, images per second, peak memory.
- [`device`][pixelfold.tools.device]: device strings.
- [`plots`][pixelfold.tools.plots]: a training run's metrics against kimg.
"""

from .device import resolve_device
from .figures import (
    image_grid,
    mix_figure,
    save_gif,
    save_image,
    save_mp4,
    stages_figure,
    to_pil,
)
from .images import (
    HELD_BYTES_PER_PIXEL,
    Crossover,
    check_batch_memory,
    check_finite_images,
    check_held_memory,
    generate_images,
    interpolation_frames,
    iter_images,
    resolve_crossovers,
    stage_images,
    style_mix_images,
)
from .latents import MAX_SEED, SeedList, lerp, parse_seeds, seed_latents, slerp
from .plots import plot_metrics
from .profile import DTYPES, format_profile, profile_generator

__all__ = [
    "DTYPES",
    "plot_metrics",
    "HELD_BYTES_PER_PIXEL",
    "MAX_SEED",
    "Crossover",
    "SeedList",
    "check_batch_memory",
    "check_finite_images",
    "check_held_memory",
    "format_profile",
    "generate_images",
    "image_grid",
    "interpolation_frames",
    "iter_images",
    "lerp",
    "mix_figure",
    "parse_seeds",
    "profile_generator",
    "resolve_device",
    "resolve_crossovers",
    "save_gif",
    "save_image",
    "save_mp4",
    "seed_latents",
    "slerp",
    "stage_images",
    "stages_figure",
    "style_mix_images",
    "to_pil",
]
