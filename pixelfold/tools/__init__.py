"""Image and profiling tools behind the ``pixelfold`` command line, usable from Python.

``from pixelfold.tools import generate_images, image_grid, save_image, profile_generator``.

- [`latents`][pixelfold.tools.latents]: seed lists, seeded latents, given ``ws``
  ([`WLatents`][pixelfold.tools.WLatents]), lerp / slerp.
- [`images`][pixelfold.tools.images]: samples, style mixing, interpolation, per-stage outputs
  (tensors in ``[-1, 1]``).
- [`figures`][pixelfold.tools.figures]: grids, labeled figures, GIF / MP4, atomic writes.
- [`project`][pixelfold.tools.project]: images into latents (NVlabs' projector), pivotal
  tuning (PTI), ``.npz`` files of projected ``ws``.
- [`edit`][pixelfold.tools.edit]: closed-form edit directions (SeFa) and edit grids.
- [`coordinates`][pixelfold.tools.coordinates]: shifted and zoomed coordinate windows,
  panoramas.
- [`profile`][pixelfold.tools.profile]: parameters, GMACs, images per second, peak memory.
- [`device`][pixelfold.tools.device]: device strings.
- [`plots`][pixelfold.tools.plots]: a training run's metrics against kimg.
"""

from .coordinates import (
    MAX_PANORAMA,
    aligned_shift,
    make_window,
    panorama_images,
    panorama_windows,
    parse_shift,
    parse_zoom,
)
from .device import resolve_device
from .edit import (
    edit_figure,
    edit_images,
    edit_ws,
    parse_strengths,
    resolve_layers,
    sefa_directions,
    style_layers,
)
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
from .latents import MAX_SEED, SeedList, WLatents, lerp, parse_seeds, seed_latents, slerp
from .plots import plot_metrics
from .profile import DTYPES, format_profile, profile_generator
from .project import (
    DISTANCES,
    IMAGE_SUFFIXES,
    PROJECTED_W_FORMAT,
    SPACES,
    ProjectionResult,
    find_targets,
    image_distance,
    learning_rate_schedule,
    load_projected_w,
    load_targets,
    lpips_size,
    noise_regularization,
    project,
    save_projected_w,
    target_names,
    tune_generator,
)

__all__ = [
    "DISTANCES",
    "DTYPES",
    "plot_metrics",
    "HELD_BYTES_PER_PIXEL",
    "IMAGE_SUFFIXES",
    "MAX_PANORAMA",
    "MAX_SEED",
    "PROJECTED_W_FORMAT",
    "SPACES",
    "Crossover",
    "ProjectionResult",
    "SeedList",
    "WLatents",
    "aligned_shift",
    "check_batch_memory",
    "check_finite_images",
    "check_held_memory",
    "edit_figure",
    "edit_images",
    "edit_ws",
    "find_targets",
    "format_profile",
    "generate_images",
    "image_distance",
    "image_grid",
    "interpolation_frames",
    "iter_images",
    "learning_rate_schedule",
    "lerp",
    "load_projected_w",
    "load_targets",
    "lpips_size",
    "make_window",
    "mix_figure",
    "noise_regularization",
    "panorama_images",
    "panorama_windows",
    "parse_seeds",
    "parse_shift",
    "parse_strengths",
    "parse_zoom",
    "profile_generator",
    "project",
    "resolve_crossovers",
    "resolve_device",
    "resolve_layers",
    "save_gif",
    "save_image",
    "save_mp4",
    "save_projected_w",
    "seed_latents",
    "sefa_directions",
    "slerp",
    "stage_images",
    "stages_figure",
    "style_layers",
    "style_mix_images",
    "target_names",
    "to_pil",
    "tune_generator",
]
